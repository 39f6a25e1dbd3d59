//! criu-server: everything between the command line / RPC socket and the
//! checkpoint-restore engines.
//!
//! - [`options`]: one model of CRIU's options; [`getopt`] and [`config`] fill
//!   it from the command line and config files with CRIU's quirks;
//! - [`logging`]: CRIU-style log lines via `tracing`, with the first error of
//!   a request captured for `cr_errmsg`;
//! - [`rpc`]: the SOCK_SEQPACKET protocol and the per-connection worker;
//!   [`service`] (`criu service`) and [`swrk`] (`criu swrk FD`) host it;
//! - [`engine`]: the narrow traits through which dump, restore and the page
//!   server are composed;
//! - [`check`], [`cpuinfo`], [`security`]: kernel probes, cpuinfo.img, and
//!   who may ask for what;
//! - [`cli`]: the `criu` command line over all of the above.
//!
//! The server is single-threaded by design: it forks workers and request
//! helpers like CRIU does, which is only sound without other threads. The
//! fork wrapper checks this (`Threads:` in /proc/self/status) and refuses to
//! fork otherwise, so a worker must be served from a single-threaded process
//! (the `criu` binary, or a test without libtest's threads).
//!
//! [`action_script`] runs `--action-script` hooks for both the command line
//! and the RPC worker.
#![deny(unsafe_code)]

pub mod action_script;
pub mod check;
pub mod cli;
pub mod config;
pub mod cpuinfo;
pub mod engine;
pub mod getopt;
pub mod logging;
pub mod options;
pub mod page_server;
pub mod rpc;
pub mod security;
pub mod service;
pub mod swrk;
#[allow(unsafe_code)]
pub(crate) mod sys;

pub use engine::Engines;
pub use options::Options;
