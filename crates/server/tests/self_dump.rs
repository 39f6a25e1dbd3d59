//! Self-dump: a client asks `criu swrk` (spawned detached, so it is not in
//! the client's tree) to DUMP without a pid, i.e. to dump the client itself.
//! The client is a stdlib-only Python program sending bytes we encoded.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use criu_proto::{CriuReqType, CriuResp};
use prost::Message;

const CLIENT: &str = r#"
import os, socket, sys
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        a.close()
        os.set_inheritable(b.fileno(), True)
        os.execv(sys.argv[1], [sys.argv[1], 'swrk', str(b.fileno())])
    os._exit(0)
os.waitpid(pid, 0)
b.close()
print("sending", flush=True)
a.send(bytes.fromhex(sys.argv[2]))
print(a.recv(1 << 20).hex(), flush=True)
"#;

/// The same client, but swrk stays its child (no double fork).
const CLIENT_WITH_CHILD_SWRK: &str = r#"
import os, socket, sys
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
if os.fork() == 0:
    a.close()
    os.set_inheritable(b.fileno(), True)
    os.execv(sys.argv[1], [sys.argv[1], 'swrk', str(b.fileno())])
b.close()
print("sending", flush=True)
a.send(bytes.fromhex(sys.argv[2]))
print(a.recv(1 << 20).hex(), flush=True)
os.wait()
"#;

fn self_dump(images: &Path, leave_running: bool) -> (std::process::Output, i32) {
    self_dump_with(CLIENT, images, leave_running)
}

fn self_dump_with(client: &str, images: &Path, leave_running: bool) -> (std::process::Output, i32) {
    let mut req = request(CriuReqType::Dump);
    let mut options = opts();
    options.images_dir = Some(images.display().to_string());
    options.shell_job = Some(true);
    options.leave_running = Some(leave_running);
    req.opts = Some(options);
    let hex: String = req
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(client)
        .arg(BIN)
        .arg(hex)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 is needed for the self-dump client");
    let pid = child.id() as i32;
    (child.wait_with_output().unwrap(), pid)
}

#[test]
fn self_dump_with_leave_running_is_answered() {
    let images = tempfile::tempdir().unwrap();
    let (out, pid) = self_dump(images.path(), true);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.lines().nth(1).expect("no reply");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let resp = CriuResp::decode(bytes.as_slice()).unwrap();
    assert_eq!(resp.r#type, CriuReqType::Dump as i32);
    assert!(resp.success, "{:?}", resp.cr_errmsg);
    assert_eq!(resp.dump.unwrap().restored, Some(false));
    assert!(images.path().join(format!("core-{pid}.img")).exists());
}

#[test]
fn successful_self_dump_without_leave_running_sends_nothing() {
    let images = tempfile::tempdir().unwrap();
    let (out, pid) = self_dump(images.path(), false);
    use std::os::unix::process::ExitStatusExt;
    // The dump killed the client while it waited for an answer that, by
    // design, never comes.
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "sending\n");
    assert!(images.path().join("inventory.img").exists());
    assert!(images.path().join(format!("core-{pid}.img")).exists());
}

#[test]
fn criu_inside_the_dumped_tree_is_refused_by_name() {
    let images = tempfile::tempdir().unwrap();
    let (out, _pid) = self_dump_with(CLIENT_WITH_CHILD_SWRK, images.path(), true);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.lines().nth(1).expect("no reply");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let resp = CriuResp::decode(bytes.as_slice()).unwrap();
    assert!(!resp.success);
    let message = resp.cr_errmsg.unwrap();
    assert!(
        message.contains("The criu itself is within dumped tree"),
        "{message}"
    );
    let log = std::fs::read_to_string(images.path().join("criu.log")).unwrap();
    assert!(
        log.contains("The criu itself is within dumped tree"),
        "{log}"
    );
}
