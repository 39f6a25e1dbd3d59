//! `/proc/PID/fdinfo/FD`: the common header (pos, flags, mnt_id, ino) and the
//! per-type lines of eventfd, epoll, signalfd, inotify and timerfd files.

use super::{parse_error, proc_path, read_text, ProcError};

/// One `tfd:` line of an epoll file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpollTarget {
    /// The target fd number (in the owner's table).
    pub tfd: i32,
    /// Event mask.
    pub events: u32,
    /// User data.
    pub data: u64,
    /// File position of the target (newer kernels).
    pub pos: Option<u64>,
    /// Inode of the target (newer kernels).
    pub inode: Option<u64>,
    /// Device of the target (newer kernels).
    pub dev: Option<u32>,
}

/// One `inotify wd:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InotifyWatch {
    /// Watch descriptor.
    pub wd: i32,
    /// Inode watched.
    pub ino: u64,
    /// Its device (kernel's s_dev encoding).
    pub s_dev: u32,
    /// Event mask.
    pub mask: u32,
    /// Ignored mask.
    pub ignored_mask: u32,
    /// File handle length in bytes.
    pub fhandle_bytes: u32,
    /// File handle type.
    pub fhandle_type: i32,
    /// File handle bytes.
    pub fhandle: Vec<u8>,
}

/// timerfd state from fdinfo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerfdState {
    /// The clock.
    pub clockid: u32,
    /// Expirations not yet read.
    pub ticks: u64,
    /// TFD_TIMER_* flags given to timerfd_settime.
    pub settime_flags: u32,
    /// Time to next expiry.
    pub value: (u64, u64),
    /// Interval.
    pub interval: (u64, u64),
}

/// Type-specific content of an fdinfo file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FdInfoExtra {
    /// Nothing type-specific.
    #[default]
    None,
    /// eventfd counter and mode.
    Eventfd {
        /// The counter.
        counter: u64,
        /// EFD_SEMAPHORE (`eventfd-semaphore: 1`; false when the kernel
        /// does not print the line, as older kernels do not).
        semaphore: bool,
    },
    /// epoll targets.
    Epoll(Vec<EpollTarget>),
    /// signalfd mask.
    Signalfd {
        /// Signal mask.
        sigmask: u64,
    },
    /// inotify watches.
    Inotify(Vec<InotifyWatch>),
    /// timerfd state.
    Timerfd(TimerfdState),
}

/// A parsed fdinfo file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FdInfo {
    /// File position.
    pub pos: u64,
    /// Open flags (O_*), including O_CLOEXEC when the fd has FD_CLOEXEC.
    pub flags: u32,
    /// Mount id.
    pub mnt_id: i32,
    /// Inode number.
    pub ino: u64,
    /// Type-specific lines.
    pub extra: FdInfoExtra,
    /// Raw `lock:` lines (file locks), if any.
    pub locks: Vec<String>,
}

fn after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.strip_prefix(key)
        .and_then(|r| r.strip_prefix(':'))
        .map(str::trim)
}

/// Splits `k1:v1 k2:v2 ...` (values may be preceded by spaces) into pairs.
fn key_values(line: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while let Some(colon) = rest.find(':') {
        let key = rest[..colon].trim();
        let after_colon = rest[colon + 1..].trim_start();
        let end = after_colon
            .find(char::is_whitespace)
            .unwrap_or(after_colon.len());
        out.push((key, &after_colon[..end]));
        rest = after_colon[end..].trim_start();
    }
    out
}

fn hex_u64(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// Parses the text of an fdinfo file.
pub fn parse_fdinfo(text: &str, path: &str) -> Result<FdInfo, ProcError> {
    let mut info = FdInfo::default();
    let mut epoll = Vec::new();
    let mut watches = Vec::new();
    let mut timerfd: Option<TimerfdState> = None;
    for line in text.lines() {
        let bad = || parse_error(path, format!("bad line {line:?}"));
        if let Some(v) = after(line, "pos") {
            info.pos = v.parse().map_err(|_| bad())?;
        } else if let Some(v) = after(line, "flags") {
            info.flags = u32::from_str_radix(v, 8).map_err(|_| bad())?;
        } else if let Some(v) = after(line, "mnt_id") {
            info.mnt_id = v.parse().map_err(|_| bad())?;
        } else if let Some(v) = after(line, "ino") {
            info.ino = v.parse().map_err(|_| bad())?;
        } else if let Some(v) = after(line, "eventfd-count") {
            let counter = hex_u64(v).ok_or_else(bad)?;
            match &mut info.extra {
                FdInfoExtra::Eventfd { counter: c, .. } => *c = counter,
                extra => {
                    *extra = FdInfoExtra::Eventfd {
                        counter,
                        semaphore: false,
                    }
                }
            }
        } else if let Some(v) = after(line, "eventfd-semaphore") {
            let semaphore = match v {
                "0" => false,
                "1" => true,
                _ => return Err(bad()),
            };
            match &mut info.extra {
                FdInfoExtra::Eventfd { semaphore: s, .. } => *s = semaphore,
                extra => {
                    *extra = FdInfoExtra::Eventfd {
                        counter: 0,
                        semaphore,
                    }
                }
            }
        } else if let Some(v) = after(line, "sigmask") {
            info.extra = FdInfoExtra::Signalfd {
                sigmask: hex_u64(v).ok_or_else(bad)?,
            };
        } else if line.starts_with("tfd:") {
            let kv = key_values(line);
            let get = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
            let tfd = get("tfd").and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let events = get("events")
                .and_then(|v| u32::from_str_radix(v, 16).ok())
                .ok_or_else(bad)?;
            let data = get("data").and_then(hex_u64).ok_or_else(bad)?;
            let pos = get("pos").and_then(|v| v.parse().ok());
            let inode = get("ino").and_then(hex_u64);
            let dev = get("sdev").and_then(|v| u32::from_str_radix(v, 16).ok());
            epoll.push(EpollTarget {
                tfd,
                events,
                data,
                pos,
                inode,
                dev,
            });
        } else if let Some(rest) = line.strip_prefix("inotify ") {
            let (head, handle) = match rest.find("f_handle:") {
                Some(i) => (&rest[..i], rest[i + "f_handle:".len()..].trim()),
                None => (rest, ""),
            };
            let kv = key_values(head);
            let get = |k: &str| {
                kv.iter()
                    .find(|(key, _)| *key == k)
                    .and_then(|(_, v)| u64::from_str_radix(v, 16).ok())
                    .ok_or_else(bad)
            };
            let mut fhandle = Vec::new();
            let hex = handle.as_bytes();
            let mut i = 0;
            while i + 1 < hex.len() {
                let byte = std::str::from_utf8(&hex[i..i + 2])
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 16).ok())
                    .ok_or_else(bad)?;
                fhandle.push(byte);
                i += 2;
            }
            watches.push(InotifyWatch {
                wd: get("wd")? as i32,
                ino: get("ino")?,
                s_dev: get("sdev")? as u32,
                mask: get("mask")? as u32,
                ignored_mask: get("ignored_mask")? as u32,
                fhandle_bytes: get("fhandle-bytes")? as u32,
                fhandle_type: get("fhandle-type")? as i32,
                fhandle,
            });
        } else if let Some(v) = after(line, "clockid") {
            timerfd.get_or_insert_with(Default::default).clockid = v.parse().map_err(|_| bad())?;
        } else if let Some(v) = after(line, "ticks") {
            timerfd.get_or_insert_with(Default::default).ticks = v.parse().map_err(|_| bad())?;
        } else if let Some(v) = after(line, "settime flags") {
            timerfd.get_or_insert_with(Default::default).settime_flags =
                u32::from_str_radix(v, 8).map_err(|_| bad())?;
        } else if let Some(v) = after(line, "it_value") {
            timerfd.get_or_insert_with(Default::default).value = parse_pair(v).ok_or_else(bad)?;
        } else if let Some(v) = after(line, "it_interval") {
            timerfd.get_or_insert_with(Default::default).interval =
                parse_pair(v).ok_or_else(bad)?;
        } else if let Some(v) = after(line, "lock") {
            info.locks.push(v.to_string());
        }
    }
    if !epoll.is_empty() {
        info.extra = FdInfoExtra::Epoll(epoll);
    } else if !watches.is_empty() {
        info.extra = FdInfoExtra::Inotify(watches);
    } else if let Some(t) = timerfd {
        info.extra = FdInfoExtra::Timerfd(t);
    }
    Ok(info)
}

fn parse_pair(v: &str) -> Option<(u64, u64)> {
    let inner = v.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (a, b) = inner.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Reads `/proc/PID/fdinfo/FD`.
pub fn read_fdinfo(pid: i32, fd: i32) -> Result<FdInfo, ProcError> {
    let path = proc_path(pid, &format!("fdinfo/{fd}"));
    let text = read_text(path.clone())?;
    parse_fdinfo(&text, &path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_file_header() {
        let info =
            parse_fdinfo("pos:\t12\nflags:\t02100002\nmnt_id:\t24\nino:\t77\n", "f").unwrap();
        assert_eq!(info.pos, 12);
        assert_eq!(info.flags, 0o2100002);
        assert_eq!(info.mnt_id, 24);
        assert_eq!(info.ino, 77);
        assert_eq!(info.extra, FdInfoExtra::None);
    }

    #[test]
    fn eventfd_signalfd_epoll_inotify_timerfd() {
        let e = parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1\neventfd-count:               2a\neventfd-id: 3\n", "f").unwrap();
        assert_eq!(
            e.extra,
            FdInfoExtra::Eventfd {
                counter: 42,
                semaphore: false
            }
        );
        let sem = parse_fdinfo("pos:\t0\nflags:\t04002\nmnt_id:\t15\nino:\t1\neventfd-count:                3\neventfd-id: 5\neventfd-maxcount: ffffffffffffffff\neventfd-semaphore: 1\n", "f").unwrap();
        assert_eq!(
            sem.extra,
            FdInfoExtra::Eventfd {
                counter: 3,
                semaphore: true
            }
        );
        assert!(parse_fdinfo("eventfd-count: 1\neventfd-semaphore: yes\n", "f").is_err());

        let s = parse_fdinfo(
            "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1\nsigmask:\t0000000000000200\n",
            "f",
        )
        .unwrap();
        assert_eq!(s.extra, FdInfoExtra::Signalfd { sigmask: 0x200 });

        let ep = parse_fdinfo(
            "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1\ntfd:        5 events:       19 data:                5  pos:0 ino:3f sdev:d\n",
            "f",
        )
        .unwrap();
        let FdInfoExtra::Epoll(t) = ep.extra else {
            panic!("not epoll")
        };
        assert_eq!(t[0].tfd, 5);
        assert_eq!(t[0].events, 0x19);
        assert_eq!(t[0].data, 5);
        assert_eq!(t[0].inode, Some(0x3f));
        assert_eq!(t[0].dev, Some(0xd));

        let ino = parse_fdinfo(
            "pos:\t0\nflags:\t00\nmnt_id:\t15\nino:\t1\ninotify wd:1 ino:2a sdev:800001 mask:fff ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:2a0000000100ab00\n",
            "f",
        )
        .unwrap();
        let FdInfoExtra::Inotify(w) = ino.extra else {
            panic!("not inotify")
        };
        assert_eq!(w[0].wd, 1);
        assert_eq!(w[0].ino, 0x2a);
        assert_eq!(w[0].s_dev, 0x800001);
        assert_eq!(w[0].mask, 0xfff);
        assert_eq!(w[0].fhandle_bytes, 8);
        assert_eq!(w[0].fhandle, vec![0x2a, 0, 0, 0, 1, 0, 0xab, 0]);

        let t = parse_fdinfo(
            "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1\nclockid: 1\nticks: 3\nsettime flags: 01\nit_value: (0, 49406829)\nit_interval: (1, 0)\n",
            "f",
        )
        .unwrap();
        assert_eq!(
            t.extra,
            FdInfoExtra::Timerfd(TimerfdState {
                clockid: 1,
                ticks: 3,
                settime_flags: 1,
                value: (0, 49406829),
                interval: (1, 0)
            })
        );
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let err = parse_fdinfo("pos:\tabc\n", "/proc/1/fdinfo/3").unwrap_err();
        assert!(err.to_string().contains("/proc/1/fdinfo/3"));
    }
}
