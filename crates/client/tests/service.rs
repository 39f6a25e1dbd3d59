//! The client against a real `criu-server service`.

mod common;

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use common::{images_dir, kill_and_wait, Service, Sleeper};
use criu_client::{Client, ClientError, CriuReq, Features, Options, RequestName};

#[test]
fn version_is_criu_4_2_without_gitid() {
    let service = Service::start();
    let version = Client::connect(&service.socket).unwrap().version().unwrap();
    assert_eq!((version.major, version.minor), (4, 2));
    assert_eq!(version.gitid, None);
    assert_eq!(version.code(), 40200);
}

#[test]
fn check_passes_on_this_kernel() {
    let service = Service::start();
    Client::connect(&service.socket).unwrap().check().unwrap();
}

#[test]
fn feature_check_tests_only_the_requested_features() {
    let service = Service::start();
    let mut client = Client::connect(&service.socket).unwrap();
    let wanted = Features {
        pidfd_store: true,
        ..Features::default()
    };
    let found = client.feature_check(wanted).unwrap();
    assert_eq!(
        found, wanted,
        "pidfd_store exists on this kernel; the others were not asked"
    );
}

#[test]
fn keep_open_requests_reuse_the_connection_and_others_end_it() {
    let service = Service::start();
    let mut client = Client::connect(&service.socket).unwrap();
    client.version().unwrap();
    let after_version = client
        .socket()
        .map(|fd| nix::sys::stat::fstat(fd).unwrap().st_ino);
    assert!(
        after_version.is_some(),
        "VERSION is sent with keep_open: the connection stays"
    );
    client.feature_check(Features::all()).unwrap();
    let after_feature_check = client
        .socket()
        .map(|fd| nix::sys::stat::fstat(fd).unwrap().st_ino);
    assert_eq!(
        after_version, after_feature_check,
        "same connection for both requests"
    );
    client.check().unwrap();
    assert!(client.socket().is_none(), "CHECK ends the connection");
    // The next request connects again by itself.
    client.check().unwrap();
    client.reuse_connections(false);
    client.version().unwrap();
    assert!(
        client.socket().is_none(),
        "without reuse VERSION ends the connection"
    );
}

#[test]
fn cpuinfo_dump_writes_the_image_through_the_images_dir_fd() {
    let service = Service::start();
    let (dir, fd) = images_dir();
    let options = Options::new()
        .images_dir_fd(fd.as_fd())
        .log_file("cpuinfo.log");
    let mut client = Client::connect(&service.socket).unwrap();
    client.cpuinfo_dump(&options).unwrap();
    assert!(dir.path().join("cpuinfo.img").exists());
    assert!(dir.path().join("cpuinfo.log").exists());
    client.cpuinfo_check(&options).unwrap();
}

#[test]
fn cpuinfo_check_without_an_image_fails_with_the_servers_message() {
    let service = Service::start();
    let (_dir, fd) = images_dir();
    let error = Client::connect(&service.socket)
        .unwrap()
        .cpuinfo_check(&Options::new().images_dir_fd(fd.as_fd()))
        .unwrap_err();
    assert!(matches!(error, ClientError::Failed { .. }), "{error:?}");
    assert!(
        error.cr_errmsg().unwrap_or_default().contains("cpuinfo"),
        "{error}"
    );
}

#[test]
fn log_file_with_a_slash_fails_with_ebadrqc() {
    let service = Service::start();
    let (_dir, fd) = images_dir();
    let mut sleeper = Sleeper::start();
    let options = Options::new()
        .images_dir_fd(fd.as_fd())
        .pid(sleeper.pid())
        .log_file("sub/dump.log");
    let error = Client::connect(&service.socket)
        .unwrap()
        .dump(&options)
        .unwrap_err();
    assert_eq!(error.cr_errno(), Some(libc::EBADRQC), "{error}");
    assert!(
        error
            .cr_errmsg()
            .unwrap_or_default()
            .contains("No subdirs are allowed in log_file name"),
        "{error}"
    );
    assert!(sleeper.is_running());
}

#[test]
fn dump_of_a_missing_pid_fails_with_esrch() {
    let service = Service::start();
    let (_dir, fd) = images_dir();
    let mut sleeper = Sleeper::start();
    let pid = sleeper.pid();
    drop(std::mem::replace(&mut sleeper, Sleeper::start()));
    assert!(common::wait_gone(pid));
    let options = Options::new().images_dir_fd(fd.as_fd()).pid(pid);
    let error = Client::connect(&service.socket)
        .unwrap()
        .dump(&options)
        .unwrap_err();
    assert!(matches!(error, ClientError::Failed { .. }), "{error:?}");
    assert_eq!(error.cr_errno(), Some(libc::ESRCH), "{error}");
}

#[test]
fn unknown_request_type_is_refused_as_invalid() {
    let service = Service::start();
    let error = Client::connect(&service.socket)
        .unwrap()
        .request(CriuReq {
            r#type: 77,
            ..CriuReq::default()
        })
        .unwrap_err();
    match error {
        ClientError::Invalid {
            request,
            ref cr_errmsg,
            ..
        } => {
            assert_eq!(request, RequestName(77));
            assert!(cr_errmsg
                .as_deref()
                .unwrap_or_default()
                .contains("Invalid req"));
        }
        other => panic!("want Invalid, got {other:?}"),
    }
}

#[test]
fn page_server_child_is_collected_with_wait_pid() {
    let service = Service::start();
    let (_dir, fd) = images_dir();
    let mut client = Client::connect(&service.socket).unwrap();
    let options = Options::new()
        .images_dir_fd(fd.as_fd())
        .log_file("ps.log")
        .page_server(None, 0);
    let info = client.page_server_chld(&options).unwrap();
    let pid = info.pid.expect("page server pid");
    assert!(info.port.unwrap_or(0) > 0, "{info:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = client.wait_pid(pid as u32).unwrap();
    assert_eq!(status & 0x7f, libc::SIGKILL, "raw wait status {status:#x}");
}

#[test]
fn wait_pid_on_a_fresh_connection_fails() {
    let service = Service::start();
    let sleeper = Sleeper::start();
    let error = Client::connect(&service.socket)
        .unwrap()
        .wait_pid(sleeper.pid() as u32)
        .unwrap_err();
    assert!(matches!(error, ClientError::Failed { .. }), "{error:?}");
}

#[test]
fn dump_and_restore_report_every_action_to_the_notify_callback() {
    let service = Service::start();
    let (dir, fd) = images_dir();
    let mut sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let actions = Arc::new(Mutex::new(Vec::new()));
    let mut client = Client::connect(&service.socket).unwrap();
    let seen = Arc::clone(&actions);
    client.on_notify(move |action, pid| {
        seen.lock().unwrap().push((action.to_owned(), pid));
        true
    });
    let options = Options::new()
        .images_dir_fd(fd.as_fd())
        .pid(pid)
        .log_file("dump.log")
        .log_level(4);
    let outcome = client.dump(&options).unwrap();
    assert!(!outcome.restored);
    assert!(dir.path().join("inventory.img").exists());
    sleeper.reap_after_dump();
    let dumped: Vec<String> = actions
        .lock()
        .unwrap()
        .drain(..)
        .map(|(action, _)| action)
        .collect();
    assert_eq!(
        dumped.first().map(String::as_str),
        Some("pre-dump"),
        "{dumped:?}"
    );
    assert!(
        dumped.iter().any(|action| action == "post-dump"),
        "{dumped:?}"
    );

    let options = Options::new()
        .images_dir_fd(fd.as_fd())
        .log_file("restore.log")
        .log_level(4);
    let restored = client.restore(&options).unwrap();
    assert_eq!(restored, pid);
    assert_eq!(
        common::wait_state(pid, 'S'),
        Some('S'),
        "restored sleep is not sleeping"
    );
    let restore_actions = actions.lock().unwrap().clone();
    assert_eq!(
        restore_actions.first().map(|(action, _)| action.as_str()),
        Some("pre-restore"),
        "{restore_actions:?}"
    );
    assert!(
        restore_actions.contains(&("post-restore".to_owned(), Some(pid))),
        "post-restore must carry the root pid: {restore_actions:?}"
    );
    kill_and_wait(pid);
}

#[test]
fn refusing_a_notification_fails_the_dump_and_leaves_the_tree_running() {
    let service = Service::start();
    let (dir, fd) = images_dir();
    let mut sleeper = Sleeper::start();
    let mut client = Client::connect(&service.socket).unwrap();
    client.on_notify(|action, _| action != "pre-dump");
    let options = Options::new()
        .images_dir_fd(fd.as_fd())
        .pid(sleeper.pid())
        .log_file("dump.log");
    let error = client.dump(&options).unwrap_err();
    assert!(matches!(error, ClientError::Failed { .. }), "{error:?}");
    assert!(!dir.path().join("inventory.img").exists());
    assert!(sleeper.is_running(), "the tree must survive a refused dump");
}

#[test]
fn pre_dump_keeps_the_connection_and_a_request_out_of_sequence_is_refused() {
    let service = Service::start();
    let (_dir, fd) = images_dir();
    let mut sleeper = Sleeper::start();
    let mut client = Client::connect(&service.socket).unwrap();
    let options = Options::new()
        .images_dir_fd(fd.as_fd())
        .pid(sleeper.pid())
        .log_file("pre.log");
    client.pre_dump(&options).unwrap();
    assert!(
        client.socket().is_some(),
        "the pre-dump loop keeps the connection"
    );
    client.reuse_connections(false);
    let error = client.version().unwrap_err();
    assert!(matches!(error, ClientError::Invalid { .. }), "{error:?}");
    assert!(
        error
            .cr_errmsg()
            .unwrap_or_default()
            .contains("Bad req seq"),
        "{error}"
    );
    assert!(sleeper.is_running());
}

#[test]
fn a_missing_service_socket_is_a_connect_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody-listens.socket");
    let error = Client::connect(&path).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("nobody-listens.socket"), "{text}");
    assert!(matches!(error, ClientError::Connection(_)));
}
