//! Parsers for the `/proc/PID/...` files the dump reads: `status`,
//! `fdinfo/N`, `limits`, `timers`, `auxv`, `task/`, `task/*/children` and small one-value
//! files. Every parser takes the file's text (so it can be tested on fixed
//! input) and has a `read_*` companion that opens the real file. `stat` is
//! parsed by [`criu_compel::proc`], which restore shares, and re-exported here.

mod fdinfo;
mod limits;
pub(crate) mod status;

pub use criu_compel::proc::{read_stat, ProcStat};
pub use fdinfo::{
    parse_fdinfo, read_fdinfo, EpollTarget, FdInfo, FdInfoExtra, InotifyWatch, TimerfdState,
};
pub use limits::{parse_limits, read_limits, RLIMIT_COUNT};
pub use status::{cap_words, parse_status, read_status, ProcStatus};

use std::path::PathBuf;

/// Failure to read or understand a `/proc` file: compel's type, shared with its stat parser.
pub use criu_compel::proc::ProcError;

pub(crate) fn parse_error(path: impl Into<PathBuf>, what: impl Into<String>) -> ProcError {
    ProcError::Parse {
        path: path.into(),
        what: what.into(),
    }
}

/// The path of `/proc/<pid>/<name>`.
pub fn proc_path(pid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// Reads a whole `/proc` text file.
pub fn read_text(path: impl Into<PathBuf>) -> Result<String, ProcError> {
    let path = path.into();
    std::fs::read_to_string(&path).map_err(|source| ProcError::Read { path, source })
}

/// Reads a whole `/proc` binary file.
pub fn read_bytes(path: impl Into<PathBuf>) -> Result<Vec<u8>, ProcError> {
    let path = path.into();
    std::fs::read(&path).map_err(|source| ProcError::Read { path, source })
}

/// Reads a file holding one decimal number (`personality` is hex, see
/// [`read_personality`]).
pub fn read_decimal<T: std::str::FromStr>(path: impl Into<PathBuf>) -> Result<T, ProcError> {
    let path = path.into();
    let text = read_text(path.clone())?;
    text.trim()
        .parse::<T>()
        .map_err(|_| parse_error(path, format!("expected a number, found {:?}", text.trim())))
}

/// `/proc/PID/personality` (printed as 8 hex digits).
pub fn read_personality(pid: i32) -> Result<u32, ProcError> {
    let path = proc_path(pid, "personality");
    let text = read_text(path.clone())?;
    u32::from_str_radix(text.trim(), 16)
        .map_err(|_| parse_error(path, format!("expected hex, found {:?}", text.trim())))
}

/// `/proc/PID/auxv` as u64 words (type/value pairs, AT_NULL included).
pub fn parse_auxv(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
        .collect()
}

/// Thread ids of a process, ascending (`/proc/PID/task`).
pub fn read_threads(pid: i32) -> Result<Vec<i32>, ProcError> {
    let path = proc_path(pid, "task");
    let dir = std::fs::read_dir(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    let mut tids = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|source| ProcError::Read {
            path: path.clone(),
            source,
        })?;
        if let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    tids.sort_unstable();
    Ok(tids)
}

/// Children of a process: the union of `task/*/children` of all its threads, in
/// the order the kernel lists them, without duplicates.
pub fn read_children(pid: i32) -> Result<Vec<i32>, ProcError> {
    let mut children = Vec::new();
    for tid in read_threads(pid)? {
        let text = match read_text(format!("/proc/{pid}/task/{tid}/children")) {
            Ok(text) => text,
            // A thread that exited between the listing and the read has no children.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        for word in text.split_whitespace() {
            let child: i32 = word.parse().map_err(|_| {
                parse_error(
                    format!("/proc/{pid}/task/{tid}/children"),
                    format!("bad pid {word:?}"),
                )
            })?;
            if !children.contains(&child) {
                children.push(child);
            }
        }
    }
    Ok(children)
}

/// One entry of `/proc/PID/timers` (a POSIX timer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixTimerInfo {
    /// Timer id (`timer_t` as an int).
    pub id: i32,
    /// Signal delivered on expiry.
    pub signo: u32,
    /// `sigev_value.sival_ptr`.
    pub sival_ptr: u64,
    /// SIGEV_SIGNAL (0), SIGEV_NONE (1), SIGEV_THREAD (2) or SIGEV_THREAD_ID (4).
    pub sigev_notify: u32,
    /// The thread to notify, for SIGEV_THREAD_ID.
    pub notify_thread_id: Option<i32>,
    /// The timer's clock.
    pub clock_id: u32,
}

/// Parses `/proc/PID/timers`. Entries come back in the order CRIU dumps them
/// (reverse of the file order, since CRIU prepends each to its list).
pub fn parse_timers(text: &str, path: &str) -> Result<Vec<PosixTimerInfo>, ProcError> {
    let mut timers = Vec::new();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() % 4 != 0 {
        return Err(parse_error(path, "expected groups of 4 lines per timer"));
    }
    for group in lines.chunks(4) {
        let bad = |what: &str, line: &str| parse_error(path, format!("bad {what} line {line:?}"));
        let id = group[0]
            .strip_prefix("ID:")
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad("ID", group[0]))?;
        let (signo, sival) = group[1]
            .strip_prefix("signal:")
            .and_then(|s| s.trim().split_once('/'))
            .ok_or_else(|| bad("signal", group[1]))?;
        let signo: u32 = signo.parse().map_err(|_| bad("signal", group[1]))?;
        let sival_ptr = if sival == "(null)" {
            0
        } else {
            u64::from_str_radix(sival.trim_start_matches("0x"), 16)
                .map_err(|_| bad("signal", group[1]))?
        };
        // "notify: signal/pid.123" or "notify: thread/tid.123" etc.
        let notify = group[2]
            .strip_prefix("notify:")
            .map(str::trim)
            .ok_or_else(|| bad("notify", group[2]))?;
        let (kind, target) = notify
            .split_once('/')
            .ok_or_else(|| bad("notify", group[2]))?;
        let (who, target_id) = target
            .split_once('.')
            .ok_or_else(|| bad("notify", group[2]))?;
        let target_id: i32 = target_id.parse().map_err(|_| bad("notify", group[2]))?;
        let (sigev_notify, notify_thread_id) = if who.starts_with('t') {
            (libc::SIGEV_THREAD_ID as u32, Some(target_id))
        } else if kind.starts_with('s') {
            (libc::SIGEV_SIGNAL as u32, None)
        } else if kind.starts_with('t') {
            (libc::SIGEV_THREAD as u32, None)
        } else {
            (libc::SIGEV_NONE as u32, None)
        };
        let clock_id = group[3]
            .strip_prefix("ClockID:")
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad("ClockID", group[3]))?;
        timers.push(PosixTimerInfo {
            id,
            signo,
            sival_ptr,
            sigev_notify,
            notify_thread_id,
            clock_id,
        });
    }
    timers.reverse();
    Ok(timers)
}

/// Reads `/proc/PID/timers`.
pub fn read_timers(pid: i32) -> Result<Vec<PosixTimerInfo>, ProcError> {
    let path = proc_path(pid, "timers");
    let text = read_text(path.clone())?;
    parse_timers(&text, &path.to_string_lossy())
}

/// `/proc/uptime` in microseconds (CRIU's `dump_uptime`).
pub fn read_uptime_us() -> Result<u64, ProcError> {
    let text = read_text("/proc/uptime")?;
    let first = text.split_whitespace().next().unwrap_or("");
    let (secs, frac) = first.split_once('.').unwrap_or((first, "0"));
    let secs: u64 = secs
        .parse()
        .map_err(|_| parse_error("/proc/uptime", format!("bad uptime {first:?}")))?;
    let mut frac_us: u64 = 0;
    let mut digits = 0;
    for c in frac.chars().take(6) {
        frac_us = frac_us * 10 + u64::from(c.to_digit(10).unwrap_or(0));
        digits += 1;
    }
    for _ in digits..6 {
        frac_us *= 10;
    }
    Ok(secs * 1_000_000 + frac_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_parse_in_criu_order() {
        let text = "ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.100\nClockID: 1\n\
                    ID: 1\nsignal: 10/00007f00aa000000\nnotify: thread/tid.101\nClockID: 0\n\
                    ID: 2\nsignal: 0/(null)\nnotify: none/pid.100\nClockID: 0\n";
        let t = parse_timers(text, "t").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[2].id, 0);
        assert_eq!(t[2].signo, 14);
        assert_eq!(t[2].sigev_notify, libc::SIGEV_SIGNAL as u32);
        assert_eq!(t[2].clock_id, 1);
        assert_eq!(t[1].sival_ptr, 0x7f00aa000000);
        assert_eq!(t[1].sigev_notify, libc::SIGEV_THREAD_ID as u32);
        assert_eq!(t[1].notify_thread_id, Some(101));
        assert_eq!(t[0].sigev_notify, libc::SIGEV_NONE as u32);
        assert_eq!(t[0].sival_ptr, 0);
        assert!(parse_timers("ID: 0\n", "t").is_err());
    }

    #[test]
    fn auxv_words_of_self_end_with_at_null() {
        let words = parse_auxv(&read_bytes("/proc/self/auxv").unwrap());
        assert!(words.len() >= 2 && words.len() % 2 == 0);
        assert_eq!(&words[words.len() - 2..], &[0, 0]);
        assert!(words
            .chunks(2)
            .any(|p| p[0] == libc::AT_PAGESZ && p[1] == 4096));
    }

    #[test]
    fn threads_and_personality_of_self() {
        let me = std::process::id() as i32;
        assert!(read_threads(me).unwrap().contains(&me));
        assert_eq!(read_personality(me).unwrap(), 0);
        assert!(read_uptime_us().unwrap() > 0);
    }
}
