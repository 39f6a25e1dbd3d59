//! The CRIU 4.2 page-server protocol over a real socketpair.

mod common;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use common::{Testee, PAGE};
use criu_pages::page_server::*;
use criu_pages::{present_ranges, read_vmas, PageReader, PageSink, VecSink};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Open(PagemapId),
    Pages {
        vaddr: u64,
        flags: u32,
        data: Vec<u8>,
    },
    Hole {
        vaddr: u64,
        nr_pages: u64,
        flags: u32,
    },
    Close,
}

#[derive(Default)]
struct Recorder {
    events: Vec<Event>,
    parent: bool,
    fail_close: bool,
}

impl PageServerTarget for Recorder {
    fn open(&mut self, dst: PagemapId) -> io::Result<bool> {
        self.events.push(Event::Open(dst));
        Ok(self.parent)
    }
    fn has_parent(&mut self, _dst: PagemapId) -> io::Result<bool> {
        Ok(self.parent)
    }
    fn add_pages(
        &mut self,
        vaddr: u64,
        nr_pages: u64,
        flags: u32,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let mut buf = vec![0; (nr_pages * PAGE) as usize];
        data.read_exact(&mut buf)?;
        self.events.push(Event::Pages {
            vaddr,
            flags,
            data: buf,
        });
        Ok(())
    }
    fn add_hole(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> io::Result<()> {
        self.events.push(Event::Hole {
            vaddr,
            nr_pages,
            flags,
        });
        Ok(())
    }
    fn close(&mut self) -> io::Result<()> {
        self.events.push(Event::Close);
        if self.fail_close {
            return Err(io::Error::other("disk full"));
        }
        Ok(())
    }
}

fn serve_in_thread(
    mut socket: UnixStream,
    mut recorder: Recorder,
) -> std::thread::JoinHandle<(Result<ServeSummary, PageServerError>, Recorder)> {
    std::thread::spawn(move || {
        let result = serve(&mut socket, &mut recorder);
        (result, recorder)
    })
}

#[test]
fn iov_wire_format_is_32_bytes_little_endian() {
    let iov = PageServerIov::new(
        PS_IOV_ADD_F,
        PE_PRESENT | PE_LAZY,
        3,
        0x7f00_0000_1000,
        PagemapId::Pid(42).encode(),
    );
    let bytes = iov.to_bytes();
    assert_eq!(bytes.len(), 32);
    assert_eq!(&bytes[0..4], &0x0006_0006u32.to_le_bytes());
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0]);
    assert_eq!(&bytes[8..16], &3u64.to_le_bytes());
    assert_eq!(&bytes[16..24], &0x7f00_0000_1000u64.to_le_bytes());
    assert_eq!(&bytes[24..32], &0x2a01u64.to_le_bytes());
    assert_eq!(PageServerIov::from_bytes(&bytes), iov);
    assert_eq!(iov.op(), PS_IOV_ADD_F);
    assert_eq!(iov.flags(), PE_PRESENT | PE_LAZY);
    assert_eq!(PagemapId::Shmem(7).encode(), 0x702);
    assert_eq!(PagemapId::decode(0x702).unwrap(), PagemapId::Shmem(7));
    // Type numbers of CRIU 1.x-3.x are still understood.
    assert_eq!(PagemapId::decode(5 << 8 | 11).unwrap(), PagemapId::Pid(5));
    assert_eq!(PagemapId::decode(5 << 8 | 34).unwrap(), PagemapId::Shmem(5));
    assert!(matches!(
        PagemapId::decode(5 << 8 | 3),
        Err(PageServerError::BadDestination(0x503))
    ));
}

#[test]
fn pages_of_a_live_process_reach_the_server_intact() {
    let testee = Testee::layout();
    let pid = testee.pid();
    let vmas = read_vmas(pid).unwrap();
    let ranges = present_ranges(pid, &vmas).unwrap();
    let reader = PageReader::new(pid).unwrap();
    let mut direct = VecSink::new();
    reader.read(&ranges, &mut direct).unwrap();

    let (client_socket, server_socket) = UnixStream::pair().unwrap();
    let server = serve_in_thread(
        server_socket,
        Recorder {
            parent: true,
            ..Recorder::default()
        },
    );
    let mut client = PageServerClient::new(client_socket);
    assert!(client.has_parent(PagemapId::Pid(pid as u64)).unwrap());
    let (anon, _) = testee.region("anon");
    {
        let mut sink = client.open(PagemapId::Pid(pid as u64)).unwrap();
        assert!(sink.has_parent());
        sink.set_page_flags(move |vaddr| if vaddr == anon { PE_LAZY } else { 0 });
        reader.read(&ranges, &mut sink).unwrap();
        sink.add_hole(0x1000_0000, 5, PE_PARENT).unwrap();
    }
    client.close(false).unwrap();
    let (result, recorder) = server.join().unwrap();
    let summary = result.unwrap();
    assert_eq!(summary.opens, 1);
    assert_eq!(summary.hole_pages, 5);
    assert!(!summary.forced_close);

    let total: u64 = ranges.iter().map(|range| range.nr_pages).sum();
    assert_eq!(summary.pages_received, total);
    assert_eq!(recorder.events[0], Event::Open(PagemapId::Pid(pid as u64)));
    assert_eq!(recorder.events.last(), Some(&Event::Close));
    let mut received = VecSink::new();
    for event in &recorder.events {
        match event {
            Event::Pages { vaddr, flags, data } => {
                let expected = if *vaddr == anon {
                    PE_PRESENT | PE_LAZY
                } else {
                    PE_PRESENT
                };
                assert_eq!(*flags, expected, "flags at {vaddr:#x}");
                received.add_pages(*vaddr, data).unwrap();
            }
            Event::Hole {
                vaddr,
                nr_pages,
                flags,
            } => received.add_hole(*vaddr, *nr_pages, *flags).unwrap(),
            Event::Open(_) | Event::Close => {}
        }
    }
    assert_eq!(received.runs, direct.runs);
    assert_eq!(received.holes.len(), 1);
    assert_eq!(received.holes[0].flags, PE_PARENT);
}

#[test]
fn legacy_commands_are_served() {
    let (mut client, server_socket) = UnixStream::pair().unwrap();
    let server = serve_in_thread(server_socket, Recorder::default());
    let dst = PagemapId::Shmem(9).encode();
    // OPEN has no answer; ADD implies PE_PRESENT; HOLE implies PE_PARENT.
    client
        .write_all(&PageServerIov::new(PS_IOV_OPEN, 0, 0, 0, dst).to_bytes())
        .unwrap();
    client
        .write_all(&PageServerIov::new(PS_IOV_ADD, 0, 1, 0x2000, dst).to_bytes())
        .unwrap();
    client.write_all(&[0xab; PAGE as usize]).unwrap();
    client
        .write_all(&PageServerIov::new(PS_IOV_HOLE, 0, 2, 0x3000, dst).to_bytes())
        .unwrap();
    client
        .write_all(&PageServerIov::new(PS_IOV_PARENT, 0, 0, 0, dst).to_bytes())
        .unwrap();
    let mut answer = [0u8; 4];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(i32::from_le_bytes(answer), 0);
    client
        .write_all(&PageServerIov::new(PS_IOV_FORCE_CLOSE, 0, 0, 0, 0).to_bytes())
        .unwrap();
    client.read_exact(&mut answer).unwrap();
    assert_eq!(i32::from_le_bytes(answer), 0);
    let (result, recorder) = server.join().unwrap();
    assert!(result.unwrap().forced_close);
    assert_eq!(
        recorder.events,
        vec![
            Event::Open(PagemapId::Shmem(9)),
            Event::Pages {
                vaddr: 0x2000,
                flags: PE_PRESENT,
                data: vec![0xab; PAGE as usize]
            },
            Event::Hole {
                vaddr: 0x3000,
                nr_pages: 2,
                flags: PE_PARENT
            },
            Event::Close,
        ]
    );
}

#[test]
fn protocol_violations_are_typed_errors() {
    // Connection dropped before CLOSE.
    let (client, server_socket) = UnixStream::pair().unwrap();
    let server = serve_in_thread(server_socket, Recorder::default());
    let mut client = PageServerClient::new(client);
    {
        let mut sink = client.open(PagemapId::Pid(1)).unwrap();
        sink.add_pages(0x1000, &[1; PAGE as usize]).unwrap();
    }
    drop(client);
    assert!(matches!(
        server.join().unwrap().0,
        Err(PageServerError::NotFlushed)
    ));

    // GET (lazy pages) is not served.
    let (mut client, server_socket) = UnixStream::pair().unwrap();
    let server = serve_in_thread(server_socket, Recorder::default());
    client
        .write_all(&PageServerIov::new(PS_IOV_GET, 0, 1, 0x1000, 0x101).to_bytes())
        .unwrap();
    assert!(matches!(
        server.join().unwrap().0,
        Err(PageServerError::UnsupportedCommand { op: PS_IOV_GET, .. })
    ));

    // A storage failure at CLOSE reaches the client as a status.
    let (client, server_socket) = UnixStream::pair().unwrap();
    let server = serve_in_thread(
        server_socket,
        Recorder {
            fail_close: true,
            ..Recorder::default()
        },
    );
    let client = PageServerClient::new(client);
    assert!(matches!(
        client.close(false),
        Err(PageServerError::CloseStatus(-1))
    ));
    assert!(matches!(
        server.join().unwrap().0,
        Err(PageServerError::CloseStatus(-1))
    ));

    // Truncated page data.
    let (mut client, server_socket) = UnixStream::pair().unwrap();
    let server = serve_in_thread(server_socket, Recorder::default());
    client
        .write_all(&PageServerIov::new(PS_IOV_ADD_F, PE_PRESENT, 2, 0x1000, 0x101).to_bytes())
        .unwrap();
    client.write_all(&[0; 100]).unwrap();
    drop(client);
    assert!(matches!(
        server.join().unwrap().0,
        Err(PageServerError::Target { vaddr: 0x1000, .. })
    ));
}
