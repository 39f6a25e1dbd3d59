//! criu-client: a Rust client for the CRIU RPC protocol, for programs that would otherwise shell out
//! to `criu` or link libcriu.
//!
//! A [`Client`] talks to a `criu service` socket ([`Client::connect`]) or to a `criu swrk` child it
//! starts over a socketpair ([`Client::spawn_swrk`]). Requests are typed methods ([`Client::version`],
//! [`Client::check`], [`Client::dump`], [`Client::restore`], ...) built on the `criu_proto` messages;
//! their options come from the [`Options`] builder, which passes directories as descriptors of this
//! process as CRIU expects. Failures are a [`ClientError`], which carries the server's `cr_errno` and
//! `cr_errmsg` when it sent them. NOTIFY round trips go to a callback ([`Client::on_notify`]).
//!
//! ```no_run
//! # fn main() -> Result<(), criu_client::ClientError> {
//! use std::os::fd::AsFd;
//! let images = std::fs::File::open("/tmp/images").expect("images dir");
//! let mut client = criu_client::Client::connect("/run/criu_service.socket")?;
//! let options = criu_client::Options::new()
//!     .images_dir_fd(images.as_fd())
//!     .pid(1234)
//!     .log_file("dump.log");
//! client.dump(&options)?;
//! let pid = client.restore(&criu_client::Options::new().images_dir_fd(images.as_fd()))?;
//! println!("restored as {pid}");
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

mod client;
mod connection;
mod options;
#[allow(unsafe_code)]
mod sys;

pub use client::{
    Client, ClientError, DumpOutcome, Features, Notification, PageServerInfo, RequestName, Version,
};
pub use connection::ConnectionError;
pub use criu_proto::{CriuOpts, CriuReq, CriuReqType, CriuResp};
pub use options::Options;
