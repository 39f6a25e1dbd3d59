//! `criu-server service` spoken to over raw SOCK_SEQPACKET.

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use criu_proto::{CriuFeatures, CriuReqType};
use prost::Message;

#[test]
fn version_reports_criu_4_2_without_gitid() {
    let service = Service::start();
    let resp = service.client().call(&request(CriuReqType::Version));
    assert_eq!(resp.r#type, CriuReqType::Version as i32);
    assert!(resp.success);
    let version = resp.version.unwrap();
    assert_eq!((version.major_number, version.minor_number), (4, 2));
    assert_eq!(version.gitid, None, "a gitid would make clients round up");
    assert_eq!(version.name.as_deref(), Some("criu-rs"));
}

#[test]
fn keep_open_serves_several_requests_then_closes() {
    let service = Service::start();
    let client = service.client();
    let mut req = request(CriuReqType::Version);
    req.keep_open = Some(true);
    assert!(client.call(&req).success);
    let mut feature = request(CriuReqType::FeatureCheck);
    feature.keep_open = Some(true);
    feature.features = Some(CriuFeatures {
        mem_track: Some(true),
        lazy_pages: None,
        pidfd_store: Some(true),
    });
    let resp = client.call(&feature);
    assert_eq!(resp.r#type, CriuReqType::FeatureCheck as i32);
    let features = resp.features.unwrap();
    // All three are always present; the one not asked for is false.
    assert_eq!(features.lazy_pages, Some(false));
    assert_eq!(features.pidfd_store, Some(true));
    assert_eq!(features.mem_track, Some(true));
    // Without keep_open the worker answers and then closes.
    assert!(client.call(&request(CriuReqType::Version)).success);
    assert!(client.recv().is_none());
}

#[test]
fn keep_open_on_a_non_whitelisted_request_closes_without_reply() {
    let service = Service::start();
    let client = service.client();
    let mut req = request(CriuReqType::Check);
    req.keep_open = Some(true);
    client.send(&req);
    assert!(client.recv().is_none());
    assert!(service.log().contains("keep_open is not allowed"));
}

#[test]
fn invalid_request_types_get_an_empty_failure() {
    let service = Service::start();
    for kind in [0, CriuReqType::Notify as i32, 99] {
        let mut req = request(CriuReqType::Empty);
        req.r#type = kind;
        let resp = service.client().call(&req);
        assert_eq!(resp.r#type, CriuReqType::Empty as i32, "type {kind}");
        assert!(!resp.success);
        let message = resp.cr_errmsg.unwrap_or_default();
        assert!(message.contains("Invalid req"), "{message}");
    }
}

#[test]
fn check_runs_the_kernel_probes() {
    let service = Service::start();
    let resp = service.client().call(&request(CriuReqType::Check));
    assert_eq!(resp.r#type, CriuReqType::Check as i32);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
}

#[test]
fn malformed_and_random_packets_close_the_connection_and_the_service_lives_on() {
    let service = Service::start();
    let client = service.client();
    // Field 1 declared as a length-delimited blob that runs past the end.
    client.send_raw(&[0x0a, 0x7f, 1, 2, 3]).unwrap();
    assert!(client.recv().is_none());
    let mut state = 0x1234_5678_u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    let client = service.client();
    client.send_raw(&noise).unwrap();
    // Either undecodable (closed) or decodable garbage (an error reply).
    if let Some(resp) = client.recv() {
        assert!(!resp.success);
    }
    assert!(
        service
            .client()
            .call(&request(CriuReqType::Version))
            .success
    );
}

#[test]
fn missing_images_dir_is_ebadrqc() {
    let service = Service::start();
    let mut req = request(CriuReqType::Dump);
    req.opts = Some(opts());
    let resp = service.client().call(&req);
    assert_eq!(resp.r#type, CriuReqType::Dump as i32);
    assert!(!resp.success);
    assert_eq!(resp.cr_errno, Some(libc::EBADRQC));
    let message = resp.cr_errmsg.unwrap();
    assert!(
        message.contains("Neither images_dir_fd nor images_dir"),
        "{message}"
    );
    assert!(message.starts_with("Error ("), "{message}");
}

#[test]
fn log_file_with_a_slash_is_refused() {
    let service = Service::start();
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    let mut req = request(CriuReqType::Dump);
    let mut options = opts();
    options.images_dir_fd = dir.as_raw_fd();
    options.log_file = Some("../escape.log".into());
    options.pid = Some(1);
    req.opts = Some(options);
    let resp = service.client().call(&req);
    assert!(!resp.success);
    assert_eq!(resp.cr_errno, Some(libc::EBADRQC));
    assert!(resp
        .cr_errmsg
        .unwrap()
        .contains("No subdirs are allowed in log_file name"));
    assert!(!images.path().join("../escape.log").exists());
}

#[test]
fn the_largest_packet_the_kernel_carries_is_read_whole() {
    // A 16 MiB SOCK_SEQPACKET message is refused by the sender's kernel
    // (EMSGSIZE/ENOBUFS: one unix datagram is one skb), so send the largest
    // request this kernel accepts, starting from 16 MiB and halving.
    let service = Service::start();
    let client = service.client();
    nix::sys::socket::setsockopt(
        &client.fd,
        nix::sys::socket::sockopt::SndBufForce,
        &(64 << 20),
    )
    .unwrap();
    let mut size = 16 << 20;
    let sent = loop {
        let mut req = request(CriuReqType::Version);
        let mut options = opts();
        options.external = vec!["x".repeat(size)];
        req.opts = Some(options);
        let bytes = req.encode_to_vec();
        match client.send_raw(&bytes) {
            Ok(_) => break bytes.len(),
            Err(nix::errno::Errno::EMSGSIZE | nix::errno::Errno::ENOBUFS) if size > 4096 => {
                size /= 2
            }
            Err(other) => panic!("send of {} bytes: {other}", bytes.len()),
        }
    };
    assert!(sent > 64 << 10, "only {sent} bytes fit in one packet");
    let resp = client.recv().expect("no answer to a large request");
    assert_eq!(resp.r#type, CriuReqType::Version as i32);
    assert!(resp.success);
}

#[test]
fn a_client_that_leaves_mid_request_leaks_nothing() {
    let service = Service::start();
    // Warm up so lazily opened fds are in place. The service closes its copy
    // of a connection right after forking the worker, which may answer
    // first: let it settle before counting.
    assert!(
        service
            .client()
            .call(&request(CriuReqType::Version))
            .success
    );
    let pid = service.pid();
    assert!(wait_until(Duration::from_secs(20), || children_states(pid).is_empty()));
    std::thread::sleep(Duration::from_millis(200));
    let fds_before = fd_count(pid);
    for _ in 0..10 {
        let client = service.client();
        client.send(&request(CriuReqType::Check));
        drop(client);
        let client = service.client();
        client.send_raw(b"\x08").unwrap();
        drop(client);
        let client = service.client();
        assert!(client.call(&request(CriuReqType::Version)).success);
    }
    assert!(
        wait_until(Duration::from_secs(20), || children_states(pid).is_empty()),
        "workers left behind: {:?}",
        children_states(pid)
    );
    assert_eq!(
        fd_count(service.pid()),
        fds_before,
        "service leaked descriptors"
    );
}

#[test]
fn a_killed_worker_does_not_take_the_service_down() {
    let service = Service::start();
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    let sleeper = spawn_sleeper();
    let client = service.client();
    let mut req = request(CriuReqType::Dump);
    let mut options = opts();
    options.images_dir_fd = dir.as_raw_fd();
    options.pid = Some(sleeper);
    options.leave_running = Some(true);
    options.notify_scripts = Some(true);
    options.shell_job = Some(true);
    req.opts = Some(options);
    let notify = client.call(&req);
    assert_eq!(notify.r#type, CriuReqType::Notify as i32);
    assert_eq!(notify.notify.unwrap().script.as_deref(), Some("pre-dump"));
    // The worker now blocks waiting for our NOTIFY answer: kill it.
    let workers = children_states(service.pid());
    assert_eq!(workers.len(), 1, "{workers:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(workers[0].0),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(client.recv().is_none());
    assert!(
        service
            .client()
            .call(&request(CriuReqType::Version))
            .success
    );
    let pid = service.pid();
    assert!(wait_until(Duration::from_secs(10), || children_states(pid).is_empty()));
    assert!(std::path::Path::new(&format!("/proc/{sleeper}")).exists());
    kill_and_wait_gone(sleeper);
}

#[test]
fn sigterm_removes_the_socket() {
    let mut service = Service::start();
    assert!(service.socket.exists());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(service.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = service.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!service.socket.exists());
}

#[test]
fn pidfile_and_socket_mode() {
    let service = Service::start_with(&["--pidfile", "service.pid"]);
    let pid: i32 = std::fs::read_to_string(service.dir.path().join("service.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, service.pid());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&service.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666);
}

#[test]
fn daemon_mode_detaches_and_writes_the_daemon_pid() {
    let mut service = Service::start_with(&["-d", "--pidfile", "service.pid"]);
    // The process we started returns once the daemon is running.
    let status = service.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let daemon: i32 = std::fs::read_to_string(service.dir.path().join("service.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(daemon, service.pid());
    assert!(
        service
            .client()
            .call(&request(CriuReqType::Version))
            .success
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(10), || !service
        .socket
        .exists()));
}

#[test]
fn concurrent_connections_are_served_by_separate_workers() {
    let service = Service::start();
    let clients: Vec<Client> = (0..4).map(|_| service.client()).collect();
    // Hold one connection open with a pending keep_open session, so the
    // others can only be answered by other workers.
    let mut hold = request(CriuReqType::Version);
    hold.keep_open = Some(true);
    assert!(clients[0].call(&hold).success);
    for client in &clients[1..] {
        client.send(&request(CriuReqType::Check));
    }
    for client in &clients[1..] {
        let resp = client
            .recv()
            .expect("no answer while another worker is busy");
        assert_eq!(resp.r#type, CriuReqType::Check as i32);
        assert!(resp.success);
    }
    assert!(clients[0].call(&request(CriuReqType::Version)).success);
}

#[test]
fn a_client_that_never_reads_only_blocks_its_own_worker() {
    let service = Service::start();
    let greedy = service.client();
    let mut req = request(CriuReqType::Version);
    req.keep_open = Some(true);
    let bytes = req.encode_to_vec();
    // Queue requests without reading a single answer until the kernel
    // pushes back: the worker ends up blocked writing answers.
    let mut sent = 0;
    while sent < 100_000 {
        match nix::sys::socket::send(
            greedy.fd.as_raw_fd(),
            &bytes,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(_) => sent += 1,
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(other) => panic!("send: {other}"),
        }
    }
    assert!(sent > 10);
    // Others are still served.
    assert!(service.client().call(&request(CriuReqType::Check)).success);
    // Once the greedy client goes away its worker notices and exits.
    drop(greedy);
    let pid = service.pid();
    assert!(
        wait_until(Duration::from_secs(20), || children_states(pid).is_empty()),
        "{:?}",
        children_states(pid)
    );
    assert!(
        service
            .client()
            .call(&request(CriuReqType::Version))
            .success
    );
}
