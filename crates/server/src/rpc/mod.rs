//! The RPC protocol: framing on the socket ([`conn`]), per-request option
//! setup ([`setup`]), and the worker that answers each `criu_req_type`
//! ([`worker`]).
//!
//! Behaviour choices where CRIU leaves room (all covered by tests):
//! - An undecodable packet closes the connection without an answer, as in
//!   CRIU. Missing `required` fields are accepted with their defaults (prost
//!   does not enforce them): a missing `type` is EMPTY and gets "Invalid req",
//!   a missing `images_dir_fd` is -1.
//! - VERSION answers major 4, minor 2, name "criu-rs", and no gitid or
//!   sublevel: clients compute 40200 and do not round up.
//! - FEATURE_CHECK `mem_track` means "this kernel offers what criu-rs tracks
//!   dirty memory with": PAGEMAP_SCAN plus userfaultfd WP_ASYNC/WP_UNPOPULATED
//!   (see [`crate::check`]).
//! - CHECK, CPUINFO_* and each PRE_DUMP iteration run in a forked helper, as
//!   in CRIU; the first error of the helper reaches `cr_errmsg` through shared
//!   memory. FEATURE_CHECK runs in the worker itself. Dirty-memory tracking
//!   survives the helper without any fd plumbing here: a successful pre-dump
//!   leaves its uffds with a keeper process named after its images directory,
//!   and the next PRE_DUMP or DUMP whose `parent_img` (relative to its images
//!   directory, as in CRIU) points there takes them over (criu_dump::track).
//! - `opts.pid == 0` counts as absent (self-dump of the peer).
//! - PAGE_SERVER / PAGE_SERVER_CHLD answer type PAGE_SERVER with the pid and
//!   the port actually bound (port 0 picks one); the server stores one
//!   connection's pages as pagemap/pages images ([`crate::page_server`]).
//! - A non-root client may only dump trees whose tasks all carry its uid and
//!   gid (or it holds CAP_SYS_PTRACE), may only use directories it owns, and
//!   its restores run as itself (keeping only CAP_CHECKPOINT_RESTORE).
//!   Refusals carry cr_errno EPERM and name the pid.
//! - `criu swrk` exits 0 when its last request succeeded and 1 otherwise.
//! - Not implemented yet: the obsolete `status_fd` option, `pidfd_store_sk`,
//!   the `orphan-pts-master` fd notification, `query-ext-files` externals.

pub mod conn;
pub mod setup;
pub mod worker;
