//! The worker's PRE_DUMP → DUMP request sequencing: which job each request
//! becomes, with which parent, and the "Bad req seq" answer. A recording
//! engine (it notes what it was asked, in the images dir) stands in for the
//! dump engine so that the test sees exactly what the worker passed on; the
//! worker, sockets, forks and files are all real. The real engine's chain of
//! PRE_DUMP, PRE_DUMP, DUMP with dirty tracking is tested in incremental.rs. One test per binary keeps
//! the process single-threaded for the worker's forks: this binary has no
//! libtest harness (`harness = false`), so `main` runs on the only thread.

use std::os::fd::AsRawFd;
use std::path::Path;

use criu_proto::{CriuOpts, CriuReq, CriuReqType, CriuResp};
use criu_server::engine::{
    DumpEngine, DumpJob, DumpOutcome, EngineError, Engines, Missing, Notify,
};
use criu_server::rpc::conn::RpcSocket;
use criu_server::rpc::worker::{Worker, WorkerKind};
use criu_server::Options;
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use prost::Message;

/// Records each call as a file named after the job in its images dir.
struct RecordingDump;

impl DumpEngine for RecordingDump {
    fn dump(
        &self,
        job: &DumpJob<'_>,
        _notify: &mut Notify<'_>,
    ) -> Result<DumpOutcome, EngineError> {
        let name = format!(
            "{}-{}",
            if job.pre_dump { "pre-dump" } else { "dump" },
            job.options
                .prev_images_dir
                .as_deref()
                .unwrap_or("none")
                .replace('/', "_")
        );
        std::fs::write(job.images_dir_path.join(name), job.pid.to_string())
            .map_err(|e| EngineError::new(e.to_string()))?;
        Ok(DumpOutcome { tasks: 1 })
    }
}

fn request(kind: CriuReqType, images: &Path, parent: Option<&str>) -> Vec<u8> {
    CriuReq {
        r#type: kind as i32,
        opts: Some(CriuOpts {
            images_dir_fd: -1,
            images_dir: Some(images.display().to_string()),
            pid: Some(std::process::id() as i32),
            parent_img: parent.map(str::to_string),
            ..CriuOpts::default()
        }),
        ..CriuReq::default()
    }
    .encode_to_vec()
}

fn main() {
    pre_dumps_then_dump_then_bad_sequence();
    println!("test pre_dumps_then_dump_then_bad_sequence ... ok");
}

fn pre_dumps_then_dump_then_bad_sequence() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..4).map(|i| root.path().join(i.to_string())).collect();
    for dir in &dirs {
        std::fs::create_dir(dir).unwrap();
    }
    let engines = Engines {
        dump: Box::new(RecordingDump),
        restore: Box::new(Missing("restore")),
        page_server: Box::new(Missing("page-server")),
    };

    let run = |packets: Vec<Vec<u8>>| -> (bool, Vec<CriuResp>) {
        let (client, server) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        for packet in &packets {
            send(client.as_raw_fd(), packet, MsgFlags::empty()).unwrap();
        }
        let ok = Worker::new(
            RpcSocket::new(server),
            WorkerKind::Swrk,
            Options::default(),
            &engines,
        )
        .serve();
        let mut replies = Vec::new();
        let mut buffer = vec![0u8; 65536];
        loop {
            let len = recv(client.as_raw_fd(), &mut buffer, MsgFlags::MSG_DONTWAIT).unwrap_or(0);
            if len == 0 {
                break;
            }
            replies.push(CriuResp::decode(&buffer[..len]).unwrap());
        }
        (ok, replies)
    };

    // PRE_DUMP, PRE_DUMP (with a parent), DUMP (with a parent): three answers.
    let (ok, replies) = run(vec![
        request(CriuReqType::PreDump, &dirs[0], None),
        request(CriuReqType::PreDump, &dirs[1], Some("../0")),
        request(CriuReqType::Dump, &dirs[2], Some("../1")),
    ]);
    assert!(ok);
    let kinds: Vec<i32> = replies.iter().map(|r| r.r#type).collect();
    assert_eq!(
        kinds,
        vec![
            CriuReqType::PreDump as i32,
            CriuReqType::PreDump as i32,
            CriuReqType::Dump as i32
        ]
    );
    assert!(replies.iter().all(|r| r.success), "{replies:?}");
    assert!(dirs[0].join("pre-dump-none").exists());
    assert!(dirs[1].join("pre-dump-.._0").exists());
    assert!(dirs[2].join("dump-.._1").exists());
    assert_eq!(
        std::fs::read_link(dirs[2].join("parent")).unwrap(),
        Path::new("../1")
    );

    // Anything but PRE_DUMP or DUMP after a PRE_DUMP is "Bad req seq".
    let (ok, replies) = run(vec![
        request(CriuReqType::PreDump, &dirs[3], None),
        request(CriuReqType::Version, &dirs[3], None),
    ]);
    assert!(!ok);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1].r#type, CriuReqType::Empty as i32);
    assert!(!replies[1].success);
    assert!(replies[1]
        .cr_errmsg
        .as_deref()
        .unwrap()
        .contains("Bad req seq"));
}
