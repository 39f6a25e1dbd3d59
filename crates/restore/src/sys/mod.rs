//! The raw system calls of the restore engine: the blank child made with
//! `clone3(set_tid)`, the trampoline mapping in the tracer,
//! `prlimit` on another process and CPUID. Everything above this module is
//! safe Rust.

pub(crate) mod blank;
pub(crate) mod local;
