//! `--action-script`: the user's hook commands, run through `/bin/sh -c` at
//! each notification point with CRIU's environment
//! (`CRTOOLS_SCRIPT_ACTION`, and `CRTOOLS_INIT_PID` when there is a pid).
//! Both the command line and the RPC worker run scripts through [`run`].

/// A script could not be started or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ActionScriptError {
    /// `/bin/sh` could not be started.
    #[error("can't run action script {script}: {source}")]
    Spawn {
        /// The script's command line.
        script: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The script exited unsuccessfully or was killed.
    #[error("action script {script} failed for {action}: {status}")]
    Failed {
        /// The script's command line.
        script: String,
        /// The notification it ran for.
        action: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
}

/// Runs every script for `action`, in order, stopping at the first failure.
pub fn run(scripts: &[String], action: &str, pid: Option<i32>) -> Result<(), ActionScriptError> {
    for script in scripts {
        let mut command = std::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(script)
            .env("CRTOOLS_SCRIPT_ACTION", action);
        if let Some(pid) = pid {
            command.env("CRTOOLS_INIT_PID", pid.to_string());
        }
        let status = command
            .status()
            .map_err(|source| ActionScriptError::Spawn {
                script: script.clone(),
                source,
            })?;
        if !status.success() {
            return Err(ActionScriptError::Failed {
                script: script.clone(),
                action: action.to_string(),
                status,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_see_action_and_pid_and_stop_at_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let record = format!(
            "echo \"$CRTOOLS_SCRIPT_ACTION:${{CRTOOLS_INIT_PID:-none}}\" >> {}",
            log.display()
        );
        run(std::slice::from_ref(&record), "pre-dump", Some(4242)).unwrap();
        run(std::slice::from_ref(&record), "post-dump", None).unwrap();
        let error = run(
            &[record.clone(), "exit 3".into(), record.clone()],
            "network-lock",
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&error, ActionScriptError::Failed { script, action, status }
                if script == "exit 3" && action == "network-lock" && status.code() == Some(3)),
            "{error}"
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "pre-dump:4242\npost-dump:none\nnetwork-lock:none\n"
        );
    }
}
