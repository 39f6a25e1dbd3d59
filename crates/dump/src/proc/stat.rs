//! `/proc/PID/stat`: compel's parser ([`criu_compel::proc`]), returning dump's [`ProcError`].

use super::ProcError;

pub use criu_compel::proc::ProcStat;

/// Reads `/proc/PID/stat`.
pub fn read_stat(pid: i32) -> Result<ProcStat, ProcError> {
    Ok(criu_compel::proc::read_stat(pid)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn own_stat() {
        let me = std::process::id() as i32;
        let st = read_stat(me).unwrap();
        assert_eq!(st.pid, me);
        assert!(st.start_code > 0 && st.arg_start < st.arg_end);
    }

    #[test]
    fn stat_errors_keep_their_message_and_errno() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let err = read_stat(pid).unwrap_err();
        assert!(matches!(err, ProcError::Read { .. }), "{err:?}");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read /proc/{pid}/stat: ")),
            "{err}"
        );

        let parse_error =
            criu_compel::proc::parse_stat(b"12 (x) S", Path::new("/proc/12/stat")).unwrap_err();
        let message = parse_error.to_string();
        let err = ProcError::from(parse_error);
        assert!(matches!(err, ProcError::Parse { .. }), "{err:?}");
        assert_eq!(err.to_string(), message);
    }
}
