//! The client driving `criu swrk` children it spawns over a socketpair.

mod common;

use std::os::fd::AsFd;
use std::process::Command;

use common::{binaries, images_dir, kill_and_wait, process_state, Sleeper};
use criu_client::{Client, ClientError, ConnectionError, CriuReq, CriuReqType, Options};

fn assert_reaped(pid: u32) {
    // Reaped means gone, not a zombie waiting for us.
    assert_eq!(process_state(pid as i32), None, "swrk {pid} was not reaped");
}

#[test]
fn version_over_swrk_and_the_child_is_reaped_on_drop() {
    let mut client = Client::spawn_swrk(&binaries().criu).unwrap();
    let pid = client.swrk_pid().expect("a swrk child");
    let version = client.version().unwrap();
    assert_eq!((version.major, version.minor), (4, 2));
    assert_eq!(
        client.swrk_pid(),
        Some(pid),
        "keep_open keeps the same swrk"
    );
    assert!(
        matches!(process_state(pid as i32), Some(state) if state != 'Z'),
        "keep_open swrk waits for more"
    );
    drop(client);
    assert_reaped(pid);
}

#[test]
fn each_spent_swrk_is_reaped_and_the_next_request_starts_a_new_one() {
    let mut client = Client::spawn_swrk(&binaries().criu).unwrap();
    let first = client.swrk_pid().unwrap();
    client.check().unwrap();
    assert_eq!(client.swrk_pid(), None, "CHECK ends the swrk");
    assert!(client.last_swrk_status().unwrap().success());
    assert_reaped(first);
    client.check().unwrap();
    let status = client.last_swrk_status().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn a_failed_request_shows_in_the_swrk_exit_status() {
    let mut client = Client::spawn_swrk(&binaries().criu).unwrap();
    let error = client
        .request(CriuReq {
            r#type: CriuReqType::Empty as i32,
            ..CriuReq::default()
        })
        .unwrap_err();
    assert!(matches!(error, ClientError::Invalid { .. }), "{error:?}");
    assert_eq!(
        client.last_swrk_status().and_then(|status| status.code()),
        Some(1)
    );
}

#[test]
fn swrk_that_cannot_start_is_a_spawn_error_naming_the_program() {
    let error = Client::spawn_swrk("/nonexistent/criu").unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Connection(ConnectionError::Spawn { .. })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("/nonexistent/criu"), "{error}");
}

#[test]
fn swrk_that_exits_before_answering_is_reported_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.conf");
    std::fs::write(&config, "hopefully-this-option-will-never=exist\n").unwrap();
    let criu = binaries().criu.clone();
    let mut client = Client::spawn_swrk_with(move || {
        let mut command = Command::new(&criu);
        command
            .env("CRIU_CONFIG_FILE", &config)
            .stderr(std::process::Stdio::null());
        command
    })
    .unwrap();
    let error = client.version().unwrap_err();
    // Whether it died before or after our request was written, the client sees it as closed.
    match error {
        ClientError::Closed { swrk_status, .. } => {
            assert_eq!(swrk_status.and_then(|status| status.code()), Some(1));
        }
        other => panic!("want Closed, got {other:?}"),
    }
}

#[test]
fn env_config_file_does_not_override_the_request_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("env.conf");
    std::fs::write(&config, "log-file from-env.log\n").unwrap();
    let (images, fd) = images_dir();
    let criu = binaries().criu.clone();
    let mut client = Client::spawn_swrk_with(move || {
        let mut command = Command::new(&criu);
        command.env("CRIU_CONFIG_FILE", &config);
        command
    })
    .unwrap();
    client
        .cpuinfo_dump(
            &Options::new()
                .images_dir_fd(fd.as_fd())
                .log_file("from-rpc.log"),
        )
        .unwrap();
    assert!(images.path().join("from-rpc.log").exists());
    assert!(!images.path().join("from-env.log").exists());
}

#[test]
fn request_config_file_overrides_the_request_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rpc.conf");
    std::fs::write(&config, "log-file from-config.log\n").unwrap();
    let (images, fd) = images_dir();
    let mut client = Client::spawn_swrk(&binaries().criu).unwrap();
    let options = Options::new()
        .images_dir_fd(fd.as_fd())
        .log_file("from-rpc.log")
        .config_file(config.to_str().unwrap());
    client.cpuinfo_dump(&options).unwrap();
    assert!(images.path().join("from-config.log").exists());
    assert!(!images.path().join("from-rpc.log").exists());
}

#[test]
fn dump_and_restore_over_swrk() {
    let (dir, fd) = images_dir();
    let mut sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let mut client = Client::spawn_swrk(&binaries().criu).unwrap();
    let options = Options::new()
        .images_dir_fd(fd.as_fd())
        .pid(pid)
        .log_file("dump.log");
    assert!(!client.dump(&options).unwrap().restored);
    assert!(dir.path().join("inventory.img").exists());
    sleeper.reap_after_dump();
    let restored = client
        .restore(
            &Options::new()
                .images_dir_fd(fd.as_fd())
                .log_file("restore.log"),
        )
        .unwrap();
    assert_eq!(restored, pid);
    assert_eq!(
        common::wait_state(pid, 'S'),
        Some('S'),
        "restored sleep is not sleeping"
    );
    kill_and_wait(pid);
}

#[test]
fn restore_onto_a_taken_pid_fails_with_eexist() {
    let (_dir, fd) = images_dir();
    let mut sleeper = Sleeper::start();
    let mut client = Client::spawn_swrk(&binaries().criu).unwrap();
    client
        .dump(
            &Options::new()
                .images_dir_fd(fd.as_fd())
                .pid(sleeper.pid())
                .leave_running(true)
                .log_file("dump.log"),
        )
        .unwrap();
    assert!(sleeper.is_running(), "leave_running");
    let error = client
        .restore(
            &Options::new()
                .images_dir_fd(fd.as_fd())
                .log_file("restore.log"),
        )
        .unwrap_err();
    assert_eq!(error.cr_errno(), Some(libc::EEXIST), "{error}");
}

#[test]
fn client_can_move_to_another_thread() {
    fn assert_send<T: Send>(_: &T) {}
    let client = Client::spawn_swrk(&binaries().criu).unwrap();
    assert_send(&client);
    let version = std::thread::spawn(move || {
        let mut client = client;
        client.version().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(version.major, 4);
}
