//! Client behaviour the real server cannot be made to show on demand (very large answers, a
//! descriptor attached to a notification, an answer that never comes), checked against a scripted
//! server thread on the other end of a real SOCK_SEQPACKET socketpair.

use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use criu_client::{Client, ClientError, ConnectionError, CriuReq, CriuReqType, CriuResp, Options};
use criu_proto::{CriuNotify, CriuRestoreResp};
use nix::sys::socket::{
    recv, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use prost::Message;

fn pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap()
}

fn read_request(server: &OwnedFd) -> CriuReq {
    let mut buffer = vec![0u8; 1 << 16];
    let len = recv(server.as_raw_fd(), &mut buffer, MsgFlags::empty()).unwrap();
    CriuReq::decode(&buffer[..len]).unwrap()
}

fn answer(server: &OwnedFd, resp: &CriuResp, fd: Option<&OwnedFd>) {
    let bytes = resp.encode_to_vec();
    let fds: Vec<i32> = fd.map(AsRawFd::as_raw_fd).into_iter().collect();
    let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&fds)]
    };
    sendmsg::<()>(
        server.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        &cmsgs,
        MsgFlags::empty(),
        None,
    )
    .unwrap();
}

fn response(kind: CriuReqType, success: bool) -> CriuResp {
    CriuResp {
        r#type: kind as i32,
        success,
        ..CriuResp::default()
    }
}

#[test]
fn answers_larger_than_any_fixed_buffer_are_read_whole() {
    let (client_end, server) = pair();
    // Above runc's 40960-byte buffer and the 64 KiB many clients use, below the socket buffer.
    let message = "x".repeat(150_000);
    let expected = message.clone();
    let peer = std::thread::spawn(move || {
        assert_eq!(read_request(&server).r#type, CriuReqType::Check as i32);
        let mut resp = response(CriuReqType::Check, false);
        resp.cr_errmsg = Some(message);
        answer(&server, &resp, None);
    });
    let error = Client::from_socket(client_end).check().unwrap_err();
    peer.join().unwrap();
    assert_eq!(error.cr_errmsg(), Some(expected.as_str()));
}

#[test]
fn notifications_reach_the_callback_with_their_descriptor_and_are_answered() {
    let (client_end, server) = pair();
    let peer = std::thread::spawn(move || {
        let req = read_request(&server);
        assert_eq!(req.r#type, CriuReqType::Restore as i32);
        assert_eq!(
            req.opts.as_ref().and_then(|opts| opts.notify_scripts),
            Some(true),
            "a registered callback must turn notify_scripts on"
        );
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let mut reader = std::fs::File::from(reader);
        let mut notify = response(CriuReqType::Notify, true);
        notify.notify = Some(notification("orphan-pts-master", None));
        answer(&server, &notify, Some(&writer));
        drop(writer);
        let reply = read_request(&server);
        assert_eq!(reply.r#type, CriuReqType::Notify as i32);
        assert_eq!(reply.notify_success, Some(true));
        let mut written = String::new();
        reader.read_to_string(&mut written).unwrap();
        assert_eq!(written, "from the callback");

        let mut post = response(CriuReqType::Notify, true);
        post.notify = Some(notification("post-restore", Some(4242)));
        answer(&server, &post, None);
        let reply = read_request(&server);
        assert_eq!(
            reply.notify_success,
            Some(false),
            "the callback refused post-restore"
        );

        let mut done = response(CriuReqType::Restore, false);
        done.restore = Some(CriuRestoreResp { pid: -1 });
        answer(&server, &done, None);
    });
    let mut client = Client::from_socket(client_end);
    let mut seen = Vec::new();
    let (sender, receiver) = std::sync::mpsc::channel();
    client.on_notification(move |notification| {
        sender
            .send((notification.script.clone(), notification.pid))
            .unwrap();
        if let Some(fd) = notification.fd {
            let mut pipe = std::fs::File::from(fd);
            pipe.write_all(b"from the callback").unwrap();
            true
        } else {
            false
        }
    });
    let error = client.restore(&Options::new()).unwrap_err();
    peer.join().unwrap();
    seen.extend(receiver.try_iter());
    assert_eq!(
        seen,
        [
            ("orphan-pts-master".to_owned(), None),
            ("post-restore".to_owned(), Some(4242))
        ]
    );
    assert!(matches!(error, ClientError::Failed { .. }), "{error:?}");
}

fn notification(script: &str, pid: Option<i32>) -> CriuNotify {
    CriuNotify {
        script: Some(script.to_owned()),
        pid,
    }
}

#[test]
fn a_silent_server_hits_the_receive_timeout() {
    let (client_end, server) = pair();
    let mut client = Client::from_socket(client_end);
    client
        .set_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let error = client.version().unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(
            error,
            ClientError::Connection(ConnectionError::Recv {
                errno: nix::errno::Errno::EAGAIN,
                ..
            })
        ),
        "{error:?}"
    );
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    drop(server);
}

#[test]
fn a_server_that_closes_without_answering_is_reported_as_closed() {
    let (client_end, server) = pair();
    let peer = std::thread::spawn(move || {
        read_request(&server);
        drop(server);
    });
    let error = Client::from_socket(client_end).check().unwrap_err();
    peer.join().unwrap();
    assert!(
        matches!(error, ClientError::Closed { request, swrk_status: None }
            if request == CriuReqType::Check.into()),
        "{error:?}"
    );
}

#[test]
fn a_given_socket_is_not_reopened_once_spent() {
    let (client_end, server) = pair();
    let peer = std::thread::spawn(move || {
        read_request(&server);
        answer(&server, &response(CriuReqType::Check, true), None);
    });
    let mut client = Client::from_socket(client_end);
    client.check().unwrap();
    peer.join().unwrap();
    let error = client.check().unwrap_err();
    assert!(
        matches!(error, ClientError::Closed { request, .. } if request == CriuReqType::Check.into()),
        "{error:?}"
    );
}

#[test]
fn an_answer_that_is_not_a_criu_resp_is_a_decode_error() {
    let (client_end, server) = pair();
    let peer = std::thread::spawn(move || {
        read_request(&server);
        nix::sys::socket::send(server.as_raw_fd(), b"\x08", MsgFlags::empty()).unwrap();
    });
    let error = Client::from_socket(client_end).check().unwrap_err();
    peer.join().unwrap();
    assert!(
        matches!(
            error,
            ClientError::Connection(ConnectionError::Decode { len: 1, .. })
        ),
        "{error:?}"
    );
}
