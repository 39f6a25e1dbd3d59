//! The `criu` binary driven the way zdtm and scripts drive CRIU.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use criu_test_util::process::{
    alive, kill_and_wait_gone, spawn_detached_sleep, spawn_sleeper, wait_until,
};

const CRIU: &str = env!("CARGO_BIN_EXE_criu");

fn criu(args: &[&str]) -> Output {
    Command::new(CRIU)
        .args(args)
        .env_remove("CRIU_CONFIG_FILE")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_flag() {
    for flag in ["-V", "--version"] {
        let out = criu(&[flag]);
        assert!(out.status.success());
        assert_eq!(stdout(&out), "Version: 4.2\n");
    }
}

#[test]
fn zdtm_feature_probe_with_the_verbosity_quirk() {
    let out = criu(&[
        "check",
        "--no-default-config",
        "-verbosity=0",
        "--feature",
        "userns",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "userns is supported\n");
    let out = criu(&["check", "--feature", "pidfd_store"]);
    assert_eq!(stdout(&out), "pidfd_store is supported\n");
}

#[test]
fn unsupported_and_unknown_features() {
    let out = criu(&["check", "--feature", "tun"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains("supported"));
    let out = criu(&["check", "--feature", "no_such_thing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Unknown feature no_such_thing"));
}

#[test]
fn plain_check_looks_good() {
    let out = criu(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Looks good.\n");
}

#[test]
fn bad_command_lines_exit_1() {
    for args in [
        vec!["dump", "--no-such-flag"],
        vec!["frobnicate"],
        vec![],
        vec!["dump", "-t", "0"],
        vec!["check", "extra-word"],
        vec!["dump", "--tree"],
        vec!["swrk"],
    ] {
        let out = criu(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn help_exits_zero() {
    let out = criu(&["--help"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("Usage:"));
}

#[test]
fn unknown_option_in_criu_config_file_env_fails_before_anything() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bad.conf");
    std::fs::write(&conf, "bogus-option\n").unwrap();
    let out = Command::new(CRIU)
        .args(["check", "--feature", "userns"])
        .env("CRIU_CONFIG_FILE", &conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bogus-option"));
}

#[test]
fn dump_failure_still_writes_the_log_zdtm_reads() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().to_str().unwrap();
    let out = criu(&[
        "dump",
        "--no-default-config",
        "--log-file",
        "dump.log",
        "--images-dir",
        images,
        "--verbosity=4",
        "--tree",
        "4000000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let log = std::fs::read_to_string(dir.path().join("dump.log")).unwrap();
    assert!(log.contains("Error ("), "{log}");
}

#[test]
fn zdtm_style_dump_and_detached_restore() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("1");
    std::fs::create_dir(&images).unwrap();
    let images = images.to_str().unwrap();
    let pidfile = dir.path().join("test.pid");
    let pid = spawn_sleeper();
    let out = criu(&[
        "dump",
        "--no-default-config",
        "--log-file",
        "dump.log",
        "--images-dir",
        images,
        "--verbosity=4",
        "--tree",
        &pid.to_string(),
        "--shell-job",
        "--timeout",
        "10",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(Path::new(images).join("dump.log").exists());
    assert!(Path::new(images).join("inventory.img").exists());
    assert!(
        wait_until(Duration::from_secs(10), || !alive(pid)),
        "dump must kill"
    );

    let out = criu(&[
        "restore",
        "--no-default-config",
        "--log-file",
        "restore.log",
        "--images-dir",
        images,
        "--verbosity=4",
        "--pidfile",
        pidfile.to_str().unwrap(),
        "--shell-job",
        "--restore-detached",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restored: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(restored, pid);
    assert!(alive(pid));
    assert!(Path::new(images).join("restore.log").exists());
    kill_and_wait_gone(pid);
}

#[test]
fn restore_without_detach_waits_for_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().to_str().unwrap();
    // A task that exits on its own a moment after restore.
    let pid = spawn_detached_sleep(2);
    let out = criu(&[
        "dump",
        "-D",
        images,
        "-t",
        &pid.to_string(),
        "-j",
        "-o",
        "d.log",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
    let out = criu(&["restore", "-D", images, "-j", "-o", "r.log"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // criu returned only once the restored sleep had exited and was reaped.
    assert!(!alive(pid));
}

/// `criu page-server` on a free loopback port storing into `images`, started and ready: it has written
/// exactly one `\0` on its --status-fd and closed it.
fn start_page_server(images: &Path) -> (std::process::Child, u16) {
    use std::io::Read;
    use std::os::fd::{AsFd, AsRawFd};

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (reader, writer) = nix::unistd::pipe().unwrap();
    nix::fcntl::fcntl(
        reader.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .unwrap();
    let server = Command::new(CRIU)
        .args(["page-server", "--no-default-config", "-D"])
        .arg(images)
        .args(["--address", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "-o",
            "ps.log",
            "--status-fd",
            &writer.as_raw_fd().to_string(),
        ])
        .spawn()
        .unwrap();
    drop(writer);
    let mut status = Vec::new();
    std::fs::File::from(reader)
        .read_to_end(&mut status)
        .unwrap();
    assert_eq!(status, [0], "page server readiness on --status-fd");
    (server, port)
}

#[test]
fn page_server_signals_readiness_and_stores_one_stream() {
    use criu_pages::page_server::{PageServerClient, PagemapId};
    use criu_pages::PageSink;

    let images = tempfile::tempdir().unwrap();
    let (mut server, port) = start_page_server(images.path());

    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut client = PageServerClient::new(stream);
    let data = vec![0x5au8; 2 * 4096];
    {
        let mut sink = client.open(PagemapId::Pid(99)).unwrap();
        sink.add_pages(0x40_0000, &data).unwrap();
    }
    client.close(false).unwrap();
    assert!(server.wait().unwrap().success());
    let dir = criu_image::ImageDir::open(images.path()).unwrap();
    let pages = criu_image::PageRead::open(&dir, criu_image::PagemapTarget::Process(99))
        .unwrap()
        .unwrap();
    let mut back = vec![0u8; data.len()];
    pages.read_pages(0x40_0000, &mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn restore_with_exec_cmd_runs_the_command_as_parent() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().to_str().unwrap();
    let pid = spawn_sleeper();
    let out = criu(&[
        "dump",
        "-D",
        images,
        "-t",
        &pid.to_string(),
        "-j",
        "-o",
        "d.log",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
    let marker = dir.path().join("ppid-of-restored");
    // The command runs in place of criu, so the restored task is its child;
    // it records the restored task's parent and kills it.
    let script = format!(
        "awk '{{print $4}}' /proc/{pid}/stat > {}; echo $$ >> {}; kill -9 {pid}",
        marker.display(),
        marker.display()
    );
    let out = criu(&[
        "restore",
        "-D",
        images,
        "-j",
        "-o",
        "r.log",
        "--exec-cmd",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&marker).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(
        lines[0], lines[1],
        "restored task's parent is the exec'd command"
    );
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
}

#[test]
fn restore_sibling_needs_detach() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&[
        "restore",
        "-D",
        dir.path().to_str().unwrap(),
        "--restore-sibling",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--restore-sibling only makes sense"));
}

#[test]
fn service_writes_one_byte_on_status_fd_then_closes_it_while_serving() {
    use std::io::Read;
    use std::os::fd::{AsFd, AsRawFd};

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("criu.sock");
    let (reader, writer) = nix::unistd::pipe().unwrap();
    nix::fcntl::fcntl(
        reader.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .unwrap();
    let mut service = Command::new(CRIU)
        .args(["service", "--no-default-config", "--address"])
        .arg(&socket)
        .arg("-W")
        .arg(dir.path())
        .args(["--status-fd", &writer.as_raw_fd().to_string()])
        .spawn()
        .unwrap();
    drop(writer);
    // The service keeps running, so end-of-file can only come from it closing the status fd.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut status = Vec::new();
        let result = std::fs::File::from(reader).read_to_end(&mut status);
        let _ = sender.send(result.map(|_| status));
    });
    let status = receiver.recv_timeout(Duration::from_secs(10));
    let still_running = service.try_wait().unwrap().is_none();
    let _ = service.kill();
    let _ = service.wait();
    let status = status
        .expect("the service did not close --status-fd within 10 s")
        .unwrap();
    assert_eq!(status, [0]);
    assert!(still_running, "the service exited instead of serving");
}

#[test]
fn dump_with_page_server_sends_the_pages_there() {
    let server_dir = tempfile::tempdir().unwrap();
    let dump_dir = tempfile::tempdir().unwrap();
    let (mut server, port) = start_page_server(server_dir.path());

    let pid = spawn_sleeper();
    let out = criu(&[
        "dump",
        "-D",
        dump_dir.path().to_str().unwrap(),
        "-t",
        &pid.to_string(),
        "-j",
        "-o",
        "dump.log",
        "--page-server",
        "--address",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]);
    assert!(out.status.success(), "dump failed: {out:?}");
    assert!(server.wait().unwrap().success(), "page server failed");
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let dumped = names(dump_dir.path());
    let served = names(server_dir.path());
    assert!(
        dumped.iter().any(|name| name == "inventory.img"),
        "{dumped:?}"
    );
    assert!(
        !dumped.iter().any(|name| name.starts_with("pages-")),
        "{dumped:?}"
    );
    assert!(
        served.iter().any(|name| name.starts_with("pages-")),
        "{served:?}"
    );
    assert!(
        served
            .iter()
            .any(|name| name == &format!("pagemap-{pid}.img")),
        "{served:?}"
    );
}
