//! `criu-server swrk FD` over a socketpair: single requests, keep_open,
//! config precedence, stdio closed, and real dump/restore with notify.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use common::*;
use criu_proto::{CriuReq, CriuReqType};

#[test]
fn serves_one_request_and_exits_zero() {
    let swrk = Swrk::start();
    let resp = swrk.client.call(&request(CriuReqType::Version));
    assert!(resp.success);
    assert!(
        swrk.client.recv().is_none(),
        "swrk must exit after one request"
    );
    assert_eq!(swrk.wait(), 0);
}

#[test]
fn failed_request_exits_one() {
    let swrk = Swrk::start();
    let resp = swrk.client.call(&request(CriuReqType::Empty));
    assert!(!resp.success);
    assert_eq!(swrk.wait(), 1);
}

#[test]
fn keep_open_loops_until_the_client_closes() {
    let swrk = Swrk::start();
    let mut req = request(CriuReqType::Version);
    req.keep_open = Some(true);
    for _ in 0..3 {
        assert!(swrk.client.call(&req).success);
    }
    assert_eq!(swrk.wait(), 0);
}

#[test]
fn usage_error_without_exactly_one_argument() {
    for args in [vec!["swrk"], vec!["swrk", "3", "4"]] {
        let out = std::process::Command::new(BIN)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: criu swrk <fd>"));
    }
}

#[test]
fn works_with_stdio_closed_and_keeps_the_log_off_fds_0_to_2() {
    let swrk = Swrk::start_with_stdio_closed();
    let mut hello = request(CriuReqType::Version);
    hello.keep_open = Some(true);
    assert!(swrk.client.call(&hello).success);
    let pid = swrk.child.id();
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
    }
    let images = tempfile::tempdir().unwrap();
    let mut req = request(CriuReqType::CpuinfoDump);
    let mut options = opts();
    options.images_dir = Some(images.path().display().to_string());
    options.log_file = Some("cpuinfo.log".into());
    options.log_level = Some(4);
    req.opts = Some(options);
    let resp = swrk.client.call(&req);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    assert_eq!(swrk.wait(), 0);
    assert!(images.path().join("cpuinfo.img").exists());
    assert!(images.path().join("cpuinfo.log").exists());
}

#[test]
fn cpuinfo_check_matches_this_cpu_and_reports_enotsup_otherwise() {
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    for kind in [CriuReqType::CpuinfoDump, CriuReqType::CpuinfoCheck] {
        let swrk = Swrk::start();
        let mut req = request(kind);
        let mut options = opts();
        options.images_dir_fd = dir.as_raw_fd();
        req.opts = Some(options);
        let resp = swrk.client.call(&req);
        assert_eq!(resp.r#type, kind as i32);
        assert!(resp.success, "{kind:?}: {:?}", resp.cr_errmsg);
        swrk.wait();
    }
    // A cpuinfo.img from a CPU with an XSAVE feature this one lacks.
    let bogus = criu_proto::CpuinfoEntry {
        x86_entry: vec![{
            let mut entry = criu_server::cpuinfo::current();
            entry.xfeatures_mask = Some(entry.xfeatures_mask.unwrap_or(0) | (1 << 62));
            entry
        }],
        ..Default::default()
    };
    let image_dir = criu_image::ImageDir::open(images.path()).unwrap();
    let mut writer = image_dir.writer(criu_image::ImageKind::Cpuinfo, 0).unwrap();
    writer.write_entry(&bogus).unwrap();
    writer.finish().unwrap();
    let swrk = Swrk::start();
    let mut req = request(CriuReqType::CpuinfoCheck);
    let mut options = opts();
    options.images_dir_fd = dir.as_raw_fd();
    req.opts = Some(options);
    let resp = swrk.client.call(&req);
    assert!(!resp.success);
    assert_eq!(resp.cr_errno, Some(libc::ENOTSUP));
    assert!(resp.cr_errmsg.unwrap().contains("XSAVE features"));
}

fn check_with_log(
    swrk: &Swrk,
    images: &Path,
    log_file: Option<&str>,
    config: Option<&Path>,
) -> bool {
    let mut req = request(CriuReqType::CpuinfoDump);
    let mut options = opts();
    options.images_dir = Some(images.display().to_string());
    options.log_file = log_file.map(str::to_string);
    options.config_file = config.map(|c| c.display().to_string());
    req.opts = Some(options);
    swrk.client.call(&req).success
}

#[test]
fn config_precedence_env_below_rpc_below_rpc_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let env_conf = dir.path().join("env.conf");
    std::fs::write(&env_conf, "log-file env.log\n").unwrap();
    let rpc_conf = dir.path().join("rpc.conf");
    std::fs::write(&rpc_conf, "log-file conf.log\n").unwrap();
    let env = [("CRIU_CONFIG_FILE", env_conf.to_str().unwrap())];

    // The env config alone decides the log name...
    let swrk = Swrk::start_with_env(&env);
    assert!(check_with_log(&swrk, dir.path(), None, None));
    swrk.wait();
    assert!(dir.path().join("env.log").exists());

    // ...but must not override the RPC log_file...
    let swrk = Swrk::start_with_env(&env);
    assert!(check_with_log(&swrk, dir.path(), Some("rpc.log"), None));
    swrk.wait();
    assert!(dir.path().join("rpc.log").exists());

    // ...while the RPC config file overrides the RPC options.
    let swrk = Swrk::start_with_env(&env);
    assert!(check_with_log(
        &swrk,
        dir.path(),
        Some("rpc2.log"),
        Some(&rpc_conf)
    ));
    swrk.wait();
    assert!(dir.path().join("conf.log").exists());
    assert!(!dir.path().join("rpc2.log").exists());
}

#[test]
fn unknown_option_in_a_default_config_exits_1_before_any_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let env_conf = dir.path().join("bad.conf");
    std::fs::write(&env_conf, "no-such-option\n").unwrap();
    let swrk = Swrk::start_with_env(&[("CRIU_CONFIG_FILE", env_conf.to_str().unwrap())]);
    // swrk may already be gone (EPIPE); either way nothing is answered.
    let _ = swrk
        .client
        .send_raw(&prost::Message::encode_to_vec(&request(
            CriuReqType::Version,
        )));
    assert!(swrk.client.recv().is_none());
    assert_eq!(swrk.wait(), 1);
}

#[test]
fn unknown_option_in_the_rpc_config_file_is_ebadrqc() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rpc.conf");
    std::fs::write(&conf, "no-such-option\n").unwrap();
    let swrk = Swrk::start();
    let mut req = request(CriuReqType::CpuinfoDump);
    let mut options = opts();
    options.images_dir = Some(dir.path().display().to_string());
    options.config_file = Some(conf.display().to_string());
    req.opts = Some(options);
    let resp = swrk.client.call(&req);
    assert!(!resp.success);
    assert_eq!(resp.cr_errno, Some(libc::EBADRQC));
    assert!(resp.cr_errmsg.unwrap().contains("no-such-option"));
}

#[test]
fn pre_dump_failure_is_answered_with_pre_dump_type() {
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    let sleeper = spawn_sleeper();
    let swrk = Swrk::start();
    let mut req = request(CriuReqType::PreDump);
    let mut options = opts();
    options.images_dir_fd = dir.as_raw_fd();
    options.pid = Some(sleeper);
    req.opts = Some(options);
    let resp = swrk.client.call(&req);
    assert_eq!(resp.r#type, CriuReqType::PreDump as i32);
    // Whatever the engine says, the task must survive a pre-dump.
    assert!(Path::new(&format!("/proc/{sleeper}")).exists());
    if resp.success {
        // The loop continues: anything but PRE_DUMP/DUMP is "Bad req seq".
        let bad = swrk.client.call(&request(CriuReqType::Version));
        assert_eq!(bad.r#type, CriuReqType::Empty as i32);
        assert!(bad.cr_errmsg.unwrap().contains("Bad req seq"));
    } else {
        assert!(resp.cr_errmsg.is_some());
    }
    swrk.wait();
    kill_and_wait_gone(sleeper);
}

fn dump_request(images: &std::os::fd::OwnedFd, pid: i32, notify: bool) -> CriuReq {
    let mut req = request(CriuReqType::Dump);
    let mut options = opts();
    options.images_dir_fd = images.as_raw_fd();
    options.pid = Some(pid);
    options.shell_job = Some(true);
    options.notify_scripts = Some(notify);
    options.log_level = Some(4);
    req.opts = Some(options);
    req
}

fn answer_notify(client: &Client, success: bool) {
    let mut reply = request(CriuReqType::Notify);
    reply.notify_success = Some(success);
    client.send(&reply);
}

#[test]
fn dump_with_notify_then_restore_gives_the_same_pid() {
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    let sleeper = spawn_sleeper();

    let swrk = Swrk::start();
    swrk.client.send(&dump_request(&dir, sleeper, true));
    let mut actions = Vec::new();
    let final_resp = loop {
        let resp = swrk.client.recv().expect("swrk closed during dump");
        if resp.r#type == CriuReqType::Notify as i32 {
            actions.push(resp.notify.unwrap().script.unwrap());
            answer_notify(&swrk.client, true);
            continue;
        }
        break resp;
    };
    assert_eq!(final_resp.r#type, CriuReqType::Dump as i32);
    assert!(final_resp.success, "{:?}", final_resp.cr_errmsg);
    assert_eq!(final_resp.dump.unwrap().restored, Some(false));
    assert_eq!(actions.first().map(String::as_str), Some("pre-dump"));
    assert!(actions.iter().any(|a| a == "post-dump"), "{actions:?}");
    assert_eq!(swrk.wait(), 0);
    assert!(images.path().join("inventory.img").exists());
    assert!(images.path().join("criu.log").exists(), "default log name");
    assert!(wait_until(Duration::from_secs(10), || !Path::new(
        &format!("/proc/{sleeper}")
    )
    .exists()));

    let swrk = Swrk::start();
    let mut req = request(CriuReqType::Restore);
    let mut options = opts();
    options.images_dir_fd = dir.as_raw_fd();
    options.shell_job = Some(true);
    options.log_file = Some("restore.log".into());
    req.opts = Some(options);
    let resp = swrk.client.call(&req);
    assert_eq!(resp.r#type, CriuReqType::Restore as i32);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    assert_eq!(resp.restore.unwrap().pid, sleeper);
    assert_eq!(swrk.wait(), 0);
    assert!(Path::new(&format!("/proc/{sleeper}")).exists());
    kill_and_wait_gone(sleeper);
}

#[test]
fn a_refused_notify_fails_the_dump_and_leaves_the_task_alive() {
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    let sleeper = spawn_sleeper();
    let swrk = Swrk::start();
    swrk.client.send(&dump_request(&dir, sleeper, true));
    let notify = swrk.client.recv().unwrap();
    assert_eq!(notify.r#type, CriuReqType::Notify as i32);
    answer_notify(&swrk.client, false);
    let resp = swrk.client.recv().unwrap();
    assert_eq!(resp.r#type, CriuReqType::Dump as i32);
    assert!(!resp.success);
    assert!(resp
        .cr_errmsg
        .unwrap()
        .contains("RPC client reported script error"));
    assert_eq!(swrk.wait(), 1);
    assert!(Path::new(&format!("/proc/{sleeper}")).exists());
    kill_and_wait_gone(sleeper);
}

#[test]
fn restore_failure_always_carries_pid_minus_one() {
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    let swrk = Swrk::start();
    let mut req = request(CriuReqType::Restore);
    let mut options = opts();
    options.images_dir_fd = dir.as_raw_fd();
    req.opts = Some(options);
    let resp = swrk.client.call(&req);
    assert!(!resp.success);
    assert_eq!(resp.restore.unwrap().pid, -1);
    assert!(resp.cr_errmsg.is_some());
}

#[test]
fn dump_of_a_missing_pid_is_esrch() {
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    let swrk = Swrk::start();
    let resp = swrk.client.call(&dump_request(&dir, 4_000_000, false));
    assert!(!resp.success);
    assert_eq!(resp.cr_errno, Some(libc::ESRCH));
}

#[test]
fn wait_pid_of_a_stranger_or_of_nobody_fails() {
    for pid in [Some(1), None, Some(u32::MAX)] {
        let swrk = Swrk::start();
        let mut req = request(CriuReqType::WaitPid);
        req.pid = pid;
        let resp = swrk.client.call(&req);
        assert_eq!(resp.r#type, CriuReqType::WaitPid as i32);
        assert!(!resp.success, "{pid:?}");
        assert!(resp.cr_errmsg.is_some());
    }
}

fn send_pages_to(port: u16, pid: u64, vaddr: u64, data: &[u8]) {
    use criu_pages::page_server::{PageServerClient, PagemapId};
    use criu_pages::PageSink;
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut client = PageServerClient::new(stream);
    {
        let mut sink = client.open(PagemapId::Pid(pid)).unwrap();
        assert!(!sink.has_parent());
        sink.add_pages(vaddr, data).unwrap();
    }
    client.close(false).unwrap();
}

fn page_server_request(kind: CriuReqType, images: &std::os::fd::OwnedFd, address: &str) -> CriuReq {
    let mut req = request(kind);
    let mut options = opts();
    options.images_dir_fd = images.as_raw_fd();
    options.ps = Some(criu_proto::CriuPageServerInfo {
        address: Some(address.into()),
        port: Some(0),
        pid: None,
        fd: None,
    });
    req.opts = Some(options);
    req
}

fn read_back(images: &Path, pid: u32, vaddr: u64, len: usize) -> Vec<u8> {
    let dir = criu_image::ImageDir::open(images).unwrap();
    let pages = criu_image::PageRead::open(&dir, criu_image::PagemapTarget::Process(pid))
        .unwrap()
        .expect("no pagemap written");
    let mut buffer = vec![0u8; len];
    pages.read_pages(vaddr, &mut buffer).unwrap();
    buffer
}

#[test]
fn page_server_chld_receives_pages_then_wait_pid_reaps_it() {
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    let swrk = Swrk::start();
    let mut req = page_server_request(CriuReqType::PageServerChld, &dir, "127.0.0.1");
    req.keep_open = Some(true);
    let resp = swrk.client.call(&req);
    assert_eq!(
        resp.r#type,
        CriuReqType::PageServer as i32,
        "CHLD answers PAGE_SERVER"
    );
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    let ps = resp.ps.unwrap();
    let (server_pid, port) = (ps.pid.unwrap(), ps.port.unwrap() as u16);
    assert_ne!(port, 0, "the bound ephemeral port is reported");

    let data: Vec<u8> = (0..3 * 4096).map(|i| (i % 251) as u8).collect();
    send_pages_to(port, 4242, 0x7f00_0000_0000, &data);

    let mut wait = request(CriuReqType::WaitPid);
    wait.pid = Some(server_pid as u32);
    let resp = swrk.client.call(&wait);
    assert_eq!(resp.r#type, CriuReqType::WaitPid as i32);
    assert!(resp.success);
    assert_eq!(resp.status, Some(0), "page server exit status");
    assert_eq!(swrk.wait(), 0);
    assert_eq!(
        read_back(images.path(), 4242, 0x7f00_0000_0000, data.len()),
        data
    );
}

#[test]
fn page_server_daemon_is_detached_and_serves_one_connection() {
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    let swrk = Swrk::start();
    let resp = swrk.client.call(&page_server_request(
        CriuReqType::PageServer,
        &dir,
        "127.0.0.1",
    ));
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    let ps = resp.ps.unwrap();
    let server_pid = ps.pid.unwrap();
    assert_eq!(swrk.wait(), 0);
    // Not a child of the worker, and still listening after it exited.
    assert!(Path::new(&format!("/proc/{server_pid}")).exists());
    let data = vec![7u8; 4096];
    send_pages_to(ps.port.unwrap() as u16, 7, 0x1000, &data);
    assert!(wait_until(Duration::from_secs(10), || !Path::new(
        &format!("/proc/{server_pid}")
    )
    .exists()));
    assert_eq!(read_back(images.path(), 7, 0x1000, 4096), data);
}

#[test]
fn page_server_bind_failure_is_reported() {
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    let swrk = Swrk::start();
    let resp = swrk.client.call(&page_server_request(
        CriuReqType::PageServerChld,
        &dir,
        "192.0.2.1",
    ));
    assert_eq!(resp.r#type, CriuReqType::PageServer as i32);
    assert!(!resp.success);
    let message = resp.cr_errmsg.unwrap();
    assert!(message.contains("Can't bind page server"), "{message}");
}

#[test]
fn restore_with_exec_cmd_execs_it_as_the_parent_of_the_tree() {
    let images = tempfile::tempdir().unwrap();
    let dir = dir_fd(images.path());
    let sleeper = spawn_sleeper();
    let swrk = Swrk::start();
    let resp = swrk.client.call(&dump_request(&dir, sleeper, false));
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    swrk.wait();
    assert!(wait_until(Duration::from_secs(10), || !Path::new(
        &format!("/proc/{sleeper}")
    )
    .exists()));

    let swrk = Swrk::start();
    let mut req = request(CriuReqType::Restore);
    let mut options = opts();
    options.images_dir_fd = dir.as_raw_fd();
    options.shell_job = Some(true);
    options.log_file = Some("restore.log".into());
    options.exec_cmd = vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo exec-cmd-ran; exec sleep 30".into(),
    ];
    req.opts = Some(options);
    let resp = swrk.client.call(&req);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    assert_eq!(resp.restore.unwrap().pid, sleeper);
    let swrk_pid = swrk.child.id() as i32;
    // The worker became the command: its output goes to the log...
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(images.path().join("restore.log"))
            .unwrap_or_default()
            .contains("exec-cmd-ran")
    }));
    // ...and it is the restored task's parent.
    let ppid = criu_dump::proc::read_stat(sleeper).unwrap().ppid;
    assert_eq!(ppid, swrk_pid);
    // The RPC socket did not leak into the command.
    assert!(swrk.client.recv().is_none());
    for pid in [sleeper, swrk_pid] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = swrk.wait();
    kill_and_wait_gone(sleeper);
}

#[test]
fn work_dir_fd_receives_the_log_and_images_dir_the_images() {
    let images = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let work_fd = dir_fd(work.path());
    let swrk = Swrk::start();
    let mut req = request(CriuReqType::CpuinfoDump);
    let mut options = opts();
    options.images_dir = Some(images.path().display().to_string());
    options.work_dir_fd = Some(work_fd.as_raw_fd());
    options.log_file = Some("work.log".into());
    req.opts = Some(options);
    assert!(swrk.client.call(&req).success);
    assert_eq!(swrk.wait(), 0);
    assert!(work.path().join("work.log").exists());
    assert!(!images.path().join("work.log").exists());
    assert!(images.path().join("cpuinfo.img").exists());
}
