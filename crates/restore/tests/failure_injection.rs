//! A failure at any stage kills and reaps every task created so far.

mod common;

use std::time::Duration;

use criu_image::ImageDir;
use criu_restore::{restore, FailStage, RestoreError, RestoreOptions};

#[test]
fn failure_at_every_stage_leaves_no_process() {
    common::init_logging();
    for stage in FailStage::ALL {
        let (dir, pid) = common::fixture_at_free_pid();
        let mut opts = RestoreOptions::new(ImageDir::open(dir.path()).unwrap());
        opts.fail_at = Some(stage);
        let err = restore(&opts, &mut |_, _| Ok(())).unwrap_err();
        assert!(
            matches!(err, RestoreError::Injected(s) if s == stage),
            "stage {}: {err}",
            stage.name()
        );
        assert!(
            common::wait_gone(pid, Duration::from_secs(5)),
            "pid {pid} still exists after a failure at {}",
            stage.name()
        );
    }
}

#[test]
fn notify_hook_failure_aborts_and_cleans_up() {
    let (dir, pid) = common::fixture_at_free_pid();
    let opts = RestoreOptions::new(ImageDir::open(dir.path()).unwrap());
    let err = restore(&opts, &mut |action, _| {
        if action == "pre-resume" {
            Err("no thanks".into())
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("pre-resume") && err.to_string().contains("no thanks"),
        "{err}"
    );
    assert!(
        common::wait_gone(pid, Duration::from_secs(5)),
        "pid {pid} remains"
    );
}
