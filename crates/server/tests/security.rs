//! Non-root clients of a root service: they may only dump what they could
//! ptrace themselves. The client is a tiny stdlib-only Python program run as
//! uid/gid 65534 that sends the bytes we encoded and prints the reply in hex.

mod common;

use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::*;
use criu_proto::{CriuReq, CriuReqType, CriuResp};
use prost::Message;

const NOBODY: u32 = 65534;

const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.send(bytes.fromhex(sys.argv[2]))
print(s.recv(1 << 20).hex())
"#;

fn call_as_nobody(service: &Service, req: &CriuReq) -> CriuResp {
    let hex: String = req
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(&service.socket)
        .arg(hex)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("/usr/bin/python3 is needed for the non-root client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let bytes: Vec<u8> = (0..text.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text.trim()[i..i + 2], 16).unwrap())
        .collect();
    CriuResp::decode(bytes.as_slice()).unwrap()
}

fn nobody_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    dir
}

fn service_reachable_by_nobody() -> Service {
    let service = Service::start();
    // The temp dir holding the socket must be searchable by the client.
    std::fs::set_permissions(service.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    service
}

fn dump_request(images: &Path, pid: i32) -> CriuReq {
    let mut req = request(CriuReqType::Dump);
    let mut options = opts();
    options.images_dir = Some(images.display().to_string());
    options.pid = Some(pid);
    options.shell_job = Some(true);
    options.leave_running = Some(true);
    req.opts = Some(options);
    req
}

#[test]
fn a_non_root_client_cannot_dump_a_root_process() {
    let service = service_reachable_by_nobody();
    let images = nobody_dir();
    let victim = spawn_sleeper();
    let resp = call_as_nobody(&service, &dump_request(images.path(), victim));
    assert_eq!(resp.r#type, CriuReqType::Dump as i32);
    assert!(!resp.success);
    assert_eq!(resp.cr_errno, Some(libc::EPERM));
    let message = resp.cr_errmsg.unwrap();
    assert!(message.contains(&format!("pid {victim}")), "{message}");
    assert!(Path::new(&format!("/proc/{victim}")).exists());
    // Nothing was written but the request's log.
    let files: Vec<_> = std::fs::read_dir(images.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(files.iter().all(|f| f == "criu.log"), "{files:?}");
    kill_and_wait_gone(victim);
}

#[test]
fn a_non_root_client_cannot_use_a_directory_it_does_not_own() {
    let service = service_reachable_by_nobody();
    let images = tempfile::tempdir().unwrap();
    std::fs::set_permissions(images.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let resp = call_as_nobody(&service, &dump_request(images.path(), 1));
    assert!(!resp.success);
    let message = resp.cr_errmsg.unwrap();
    assert!(message.contains("not owned by the client"), "{message}");
    assert_eq!(std::fs::read_dir(images.path()).unwrap().count(), 0);
}

#[test]
fn a_non_root_client_may_dump_its_own_process() {
    let service = service_reachable_by_nobody();
    let images = nobody_dir();
    let pid = spawn_detached_sleep_as(1000, Some(NOBODY));
    let resp = call_as_nobody(&service, &dump_request(images.path(), pid));
    // The permission check passed: whatever happened next was the engine's
    // business (on these machines, without CAP_SYS_RESOURCE, dumping another
    // uid's rlimits can fail), not our refusal.
    let message = resp.cr_errmsg.clone().unwrap_or_default();
    assert!(!message.contains("may not dump"), "{message}");
    if resp.success {
        assert!(images.path().join("inventory.img").exists());
    }
    kill_and_wait_gone(pid);
}

#[test]
fn a_non_root_client_cannot_restore_a_root_process() {
    // Dumped by root...
    let images = nobody_dir();
    let victim = spawn_sleeper();
    let swrk = Swrk::start();
    let mut req = dump_request(images.path(), victim);
    req.opts.as_mut().unwrap().leave_running = Some(false);
    let resp = swrk.client.call(&req);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    swrk.wait();
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{victim}")).exists()
    }));
    // ...restored on behalf of nobody: the worker runs as nobody, so the
    // kernel refuses to recreate a root-owned task.
    let service = service_reachable_by_nobody();
    let mut req = request(CriuReqType::Restore);
    let mut options = opts();
    options.images_dir = Some(images.path().display().to_string());
    options.shell_job = Some(true);
    req.opts = Some(options);
    let resp = call_as_nobody(&service, &req);
    assert_eq!(resp.r#type, CriuReqType::Restore as i32);
    assert!(
        !resp.success,
        "a root task was restored for an unprivileged client"
    );
    let message = resp.cr_errmsg.unwrap_or_default();
    assert!(message.contains("Operation not permitted"), "{message}");
    assert_eq!(resp.restore.unwrap().pid, -1);
    assert!(!Path::new(&format!("/proc/{victim}")).exists());
}
