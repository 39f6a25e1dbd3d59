//! CRIU-style logging on top of `tracing`.
//!
//! One global subscriber writes lines like
//! `(00.001234) Error (crates/x/src/y.rs:12): message` to the current output
//! (a log file in the work dir, stderr, or nothing) at CRIU's log levels
//! (0 msg, 1 error, 2 warn, 3 info, 4 debug). Independently of the level, it
//! records the FIRST error line of the current request (`cr_errmsg`, capped
//! at 1023 bytes) and the first errno (`cr_errno`), in memory shared with
//! forked helpers so their errors reach the reply too.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use thiserror::Error;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::sys::SharedMemory;

/// Longest `cr_errmsg`, as CRIU's buffer allows.
pub const MAX_ERRMSG: usize = 1023;

const ERRNO_OFFSET: usize = 0;
/// The write-once first-error record (claim word, length, text).
const FIRST_ERROR_OFFSET: usize = 4;
const SLOT_SIZE: usize = 4096;

/// Errors setting up logging.
#[derive(Debug, Error)]
pub enum LogError {
    /// The log file cannot be created.
    #[error("Can't open log file {path}: {source}")]
    Open {
        /// The path as given.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The shared first-error slot cannot be mapped.
    #[error("Can't map the shared error slot: {0}")]
    Shared(#[source] std::io::Error),
}

/// Where log lines go.
#[derive(Debug)]
pub enum Output {
    /// Nowhere (swrk before its first request).
    Discard,
    /// Standard error.
    Stderr,
    /// A file.
    File(File),
}

struct LogState {
    output: Output,
    started: Instant,
}

struct Hub {
    state: Mutex<LogState>,
    level: AtomicI32,
    slot: Mutex<Option<SharedMemory>>,
}

fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| Hub {
        state: Mutex::new(LogState {
            output: Output::Stderr,
            started: Instant::now(),
        }),
        level: AtomicI32::new(2),
        slot: Mutex::new(None),
    })
}

/// Installs the global subscriber once. Later calls are no-ops, so tests and
/// binaries may both call it.
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let _ = tracing_subscriber::registry().with(CriuLayer).try_init();
    });
}

/// Sets CRIU's log level (0..=4, larger values mean "everything").
pub fn set_level(level: i32) {
    hub().level.store(level, Ordering::Relaxed);
}

/// The current CRIU log level.
pub fn level() -> i32 {
    hub().level.load(Ordering::Relaxed)
}

/// Routes log lines to `output` and restarts the timestamp clock.
pub fn set_output(output: Output) {
    let mut state = lock(&hub().state);
    state.output = output;
    state.started = Instant::now();
}

/// Opens (truncating) `path` as the log file, CRIU's `log_init`.
pub fn open_file(path: &Path) -> Result<(), LogError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.display().to_string(),
            source,
        })?;
    set_output(Output::File(file));
    Ok(())
}

/// Duplicates the current log file descriptor (for `exec_cmd`, whose stdout
/// and stderr go to the log), or None when logging to stderr / nowhere.
pub fn output_fd() -> Option<std::os::fd::OwnedFd> {
    let state = lock(&hub().state);
    match &state.output {
        Output::File(file) => file.as_fd().try_clone_to_owned().ok(),
        Output::Stderr => std::io::stderr().as_fd().try_clone_to_owned().ok(),
        Output::Discard => None,
    }
}

/// Starts a new request: a fresh first-error slot and errno, shared with any
/// child forked from now on (CRIU's `log_keep_err`).
pub fn begin_request() -> Result<(), LogError> {
    let memory =
        SharedMemory::new(SLOT_SIZE).map_err(|e| LogError::Shared(std::io::Error::other(e)))?;
    *lock(&hub().slot) = Some(memory);
    Ok(())
}

/// Records `errno` as the request's `cr_errno` unless one is already set.
pub fn set_cr_errno(errno: i32) {
    if errno == 0 {
        return;
    }
    if let Some(slot) = lock(&hub().slot).as_ref() {
        if let Ok(word) = slot.atomic_i32(ERRNO_OFFSET) {
            let _ = word.compare_exchange(0, errno, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// The request's `cr_errno` (0 when none).
pub fn cr_errno() -> i32 {
    lock(&hub().slot).as_ref().map_or(0, |slot| {
        slot.atomic_i32(ERRNO_OFFSET)
            .map_or(0, |word| word.load(Ordering::Acquire))
    })
}

/// The first error line of the request, if any.
pub fn first_error() -> Option<String> {
    let guard = lock(&hub().slot);
    let slot = guard.as_ref()?;
    let text = slot.read_published(FIRST_ERROR_OFFSET).ok()??;
    Some(String::from_utf8_lossy(&text[..text.len().min(MAX_ERRMSG)]).into_owned())
}

fn record_first_error(line: &str) {
    let guard = lock(&hub().slot);
    let Some(slot) = guard.as_ref() else {
        return;
    };
    let mut end = line.len().min(MAX_ERRMSG);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    // Only the first error of the request (in any process) is kept.
    let _ = slot.publish_once(FIRST_ERROR_OFFSET, &line.as_bytes()[..end]);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while logging must not silence every later line.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// CRIU level of a tracing level.
fn criu_level(level: &Level) -> i32 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

struct CriuLayer;

#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

impl<S: Subscriber> Layer<S> for CriuLayer {
    fn register_callsite(
        &self,
        _metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // The level changes at run time (per request), so ask every time.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        let event_level = criu_level(metadata.level());
        event_level == 1 || event_level <= level()
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let event_level = criu_level(metadata.level());
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let location = format!(
            "{}:{}",
            metadata.file().unwrap_or("?"),
            metadata.line().unwrap_or(0)
        );
        let body = match event_level {
            1 => format!(
                "Error ({location}): {}{}\n",
                visitor.message, visitor.fields
            ),
            2 => format!(
                "Warn  ({location}): {}{}\n",
                visitor.message, visitor.fields
            ),
            _ => format!("{}{}\n", visitor.message, visitor.fields),
        };
        if event_level == 1 {
            record_first_error(&body);
        }
        if event_level > level() {
            return;
        }
        let mut state = lock(&hub().state);
        let elapsed = state.started.elapsed();
        let line = format!(
            "({:02}.{:06}) {body}",
            elapsed.as_secs(),
            elapsed.subsec_micros()
        );
        let _ = match &mut state.output {
            Output::Discard => Ok(()),
            Output::Stderr => std::io::stderr().write_all(line.as_bytes()),
            Output::File(file) => file.write_all(line.as_bytes()),
        };
    }
}

/// Borrowed view of the current log file (tests).
pub fn with_output_fd<R>(f: impl FnOnce(Option<BorrowedFd<'_>>) -> R) -> R {
    let state = lock(&hub().state);
    match &state.output {
        Output::File(file) => f(Some(file.as_fd())),
        _ => f(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_error_wins_and_is_capped() {
        install();
        set_output(Output::Discard);
        begin_request().unwrap();
        assert_eq!(first_error(), None);
        tracing::error!("the first {}", "x".repeat(2000));
        tracing::error!("second error");
        let first = first_error().unwrap();
        assert!(first.starts_with("Error ("), "{first}");
        assert!(first.contains("the first"), "{first}");
        assert_eq!(first.len(), MAX_ERRMSG);
        set_cr_errno(56);
        set_cr_errno(3);
        assert_eq!(cr_errno(), 56);
        begin_request().unwrap();
        assert_eq!(first_error(), None);
        assert_eq!(cr_errno(), 0);
    }
}
