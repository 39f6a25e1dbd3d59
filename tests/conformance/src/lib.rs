//! criu-rs conformance suite: small programs that each create one precise piece of process state,
//! and a runner that checkpoints and restores them with our `criu` and lets each program check that
//! its state survived.
//!
//! Protocol (see `programs/conf.h`): a program is started as `PROG OUT_FILE READY_FILE [args]`,
//! builds its state, writes `ready PID` to READY_FILE, sleeps in FUTEX_WAIT until SIGTERM, checks
//! everything and appends `PASS` or `FAIL: <differences>` to OUT_FILE (opened with O_APPEND before
//! the checkpoint, so it is restored state too), exiting 0 or 1. The runner is a child subreaper, so
//! restored trees are reparented to it and it collects their exit codes.

#![deny(unsafe_code)]

pub mod catalog;
pub mod engine;
pub mod images;
pub mod launch;
pub mod process;
pub mod report;
pub mod runner;
