//! Helpers shared by the workspace's integration tests.
//!
//! Several crates' tests need the same real-process plumbing and the same
//! look into the images a dump wrote; each helper lives here once so the
//! copies cannot drift apart (a fix to one copy, e.g. closing inherited
//! descriptors, used to miss the others).
//!
//! - [`process`]: start a target process detached from the test (own
//!   session, not our child, only stdio open), wait on `/proc`, kill it and
//!   wait until it is gone.
//! - [`images`]: which pages of a pagemap carry data and which are left in
//!   the parent images, and the dump statistics image.
//!
//! This crate is a dev-dependency only. It depends on the image and proto
//! crates but on no engine (dump, restore, server), so every engine's tests
//! can use it without a dependency cycle.
//!
//! The helpers panic with a message instead of returning errors: they run
//! inside tests, where a failed set-up step must stop the test and say why.

pub mod images;
pub mod process;
