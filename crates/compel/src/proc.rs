//! `/proc/PID/stat`: the one parser of a task's stat line, shared by the dump and restore engines.
//!
//! ```no_run
//! let stat = criu_compel::proc::read_stat(1)?;
//! assert_eq!(stat.pid, 1);
//! println!("{} is in state {} (process group {})", stat.comm, stat.state, stat.pgid);
//! # Ok::<(), criu_compel::proc::ProcError>(())
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::Pid;

/// The fields of `/proc/PID/stat` the engines use (numbered as in proc(5)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 1.
    pub pid: i32,
    /// Field 2, without the parentheses. The kernel prints comm raw, so bytes that are not UTF-8
    /// come back as U+FFFD.
    pub comm: String,
    /// Field 3 (R, S, D, T, t, Z, X...).
    pub state: char,
    /// Field 4.
    pub ppid: i32,
    /// Field 5.
    pub pgid: i32,
    /// Field 6.
    pub sid: i32,
    /// Field 7.
    pub tty_nr: i32,
    /// Field 9 (PF_*).
    pub flags: u32,
    /// Field 19.
    pub nice: i64,
    /// Field 20.
    pub num_threads: i64,
    /// Field 22, clock ticks since boot.
    pub start_time: u64,
    /// Field 26.
    pub start_code: u64,
    /// Field 27.
    pub end_code: u64,
    /// Field 28.
    pub start_stack: u64,
    /// Field 38.
    pub exit_signal: i32,
    /// Field 45.
    pub start_data: u64,
    /// Field 46.
    pub end_data: u64,
    /// Field 47.
    pub start_brk: u64,
    /// Field 48.
    pub arg_start: u64,
    /// Field 49.
    pub arg_end: u64,
    /// Field 50.
    pub env_start: u64,
    /// Field 51.
    pub env_end: u64,
    /// Field 52 (the wait status of a zombie).
    pub exit_code: i32,
}

/// Why a `/proc` file could not be read or understood: the stat parser here, and dump's parsers of
/// the other `/proc` files, which use this same type.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read (ENOENT or ESRCH when the task is gone).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The stat file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The line does not have the shape proc(5) describes.
    #[error("cannot parse {path}: {what}")]
    Parse {
        /// The stat file.
        path: PathBuf,
        /// What was wrong, with the offending text.
        what: String,
    },
}

impl ProcError {
    /// The OS errno behind a read failure (ENOENT or ESRCH when the task is gone).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            ProcError::Read { source, .. } => source.raw_os_error(),
            ProcError::Parse { .. } => None,
        }
    }
}

/// The highest field number [`ProcStat`] holds (exit_code, since Linux 3.5).
const LAST_FIELD: usize = 52;
/// The number of the first field after comm (state).
const FIRST_FIELD_AFTER_COMM: usize = 3;

/// Parses the content of a stat file; `path` only names it in errors. comm may contain spaces and
/// parentheses (even ") ("), so it runs from the first `(` to the last `)`.
pub fn parse_stat(content: &[u8], path: &Path) -> Result<ProcStat, ProcError> {
    let bad = |what: String| ProcError::Parse {
        path: path.to_path_buf(),
        what,
    };
    let open = content
        .iter()
        .position(|&b| b == b'(')
        .ok_or_else(|| bad("no '(' before comm".into()))?;
    let close = content
        .iter()
        .rposition(|&b| b == b')')
        .ok_or_else(|| bad("no ')' after comm".into()))?;
    if close < open {
        return Err(bad("the last ')' comes before the first '('".into()));
    }
    let pid_text = String::from_utf8_lossy(&content[..open]);
    let pid = pid_text
        .trim()
        .parse()
        .map_err(|_| bad(format!("bad pid {pid_text:?}")))?;
    let comm = String::from_utf8_lossy(&content[open + 1..close]).into_owned();
    let after_comm = std::str::from_utf8(&content[close + 1..])
        .map_err(|_| bad("the fields after comm are not text".into()))?;
    let fields = Fields {
        after_comm: after_comm.split_whitespace().collect(),
        path,
    };
    let found = fields.after_comm.len() + FIRST_FIELD_AFTER_COMM - 1;
    if found < LAST_FIELD {
        return Err(bad(format!("expected {LAST_FIELD} fields, found {found}")));
    }
    Ok(ProcStat {
        pid,
        comm,
        state: fields.state()?,
        ppid: fields.number(4)?,
        pgid: fields.number(5)?,
        sid: fields.number(6)?,
        tty_nr: fields.number(7)?,
        flags: fields.number(9)?,
        nice: fields.number(19)?,
        num_threads: fields.number(20)?,
        start_time: fields.number(22)?,
        start_code: fields.number(26)?,
        end_code: fields.number(27)?,
        start_stack: fields.number(28)?,
        exit_signal: fields.number(38)?,
        start_data: fields.number(45)?,
        end_data: fields.number(46)?,
        start_brk: fields.number(47)?,
        arg_start: fields.number(48)?,
        arg_end: fields.number(49)?,
        env_start: fields.number(50)?,
        env_end: fields.number(51)?,
        exit_code: fields.number(52)?,
    })
}

/// Reads and parses `/proc/PID/stat` (the thread group leader's line).
pub fn read_stat(pid: Pid) -> Result<ProcStat, ProcError> {
    read_stat_file(PathBuf::from(format!("/proc/{pid}/stat")))
}

/// Reads and parses `/proc/PID/task/TID/stat`: one thread's line (its own state, for example).
pub fn read_task_stat(pid: Pid, tid: Pid) -> Result<ProcStat, ProcError> {
    read_stat_file(PathBuf::from(format!("/proc/{pid}/task/{tid}/stat")))
}

fn read_stat_file(path: PathBuf) -> Result<ProcStat, ProcError> {
    // Bytes, not a String: comm is printed raw and need not be UTF-8.
    match std::fs::read(&path) {
        Ok(content) => parse_stat(&content, &path),
        Err(source) => Err(ProcError::Read { path, source }),
    }
}

/// The whitespace-separated fields after comm, addressed by their proc(5) number.
struct Fields<'a> {
    after_comm: Vec<&'a str>,
    path: &'a Path,
}

impl Fields<'_> {
    fn text(&self, number: usize) -> Result<&str, ProcError> {
        self.after_comm
            .get(number - FIRST_FIELD_AFTER_COMM)
            .copied()
            .ok_or_else(|| ProcError::Parse {
                path: self.path.to_path_buf(),
                what: format!("field {number} is missing"),
            })
    }

    fn state(&self) -> Result<char, ProcError> {
        let text = self.text(FIRST_FIELD_AFTER_COMM)?;
        // split_whitespace never yields an empty field.
        Ok(text.chars().next().unwrap_or('?'))
    }

    fn number<T: FromStr>(&self, number: usize) -> Result<T, ProcError> {
        let text = self.text(number)?;
        text.parse().map_err(|_| ProcError::Parse {
            path: self.path.to_path_buf(),
            what: format!("field {number} is not a number: {text:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line of a process called `comm`, with distinct values in the fields the parser reads.
    fn line(comm: &str) -> String {
        format!(
            "1234 ({comm}) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
             5555 1000 10 18446744073709551615 94000 95000 140000 0 0 0 0 0 0 0 0 0 17 1 \
             0 0 0 0 0 96000 97000 98000 141000 141100 141100 141200 0\n"
        )
    }

    fn parse(text: &str) -> Result<ProcStat, ProcError> {
        parse_stat(text.as_bytes(), Path::new("/proc/1234/stat"))
    }

    #[test]
    fn every_field_is_read_from_its_number() {
        let st = parse(&line("sleep")).unwrap();
        assert_eq!(st.pid, 1234);
        assert_eq!(st.comm, "sleep");
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 1);
        assert_eq!(st.pgid, 1234);
        assert_eq!(st.sid, 1234);
        assert_eq!(st.tty_nr, 0);
        assert_eq!(st.flags, 4194560);
        assert_eq!(st.nice, 0);
        assert_eq!(st.num_threads, 1);
        assert_eq!(st.start_time, 5555);
        assert_eq!(st.start_code, 94000);
        assert_eq!(st.end_code, 95000);
        assert_eq!(st.start_stack, 140000);
        assert_eq!(st.exit_signal, 17);
        assert_eq!(st.start_data, 96000);
        assert_eq!(st.end_data, 97000);
        assert_eq!(st.start_brk, 98000);
        assert_eq!(st.arg_start, 141000);
        assert_eq!(st.arg_end, 141100);
        assert_eq!(st.env_start, 141100);
        assert_eq!(st.env_end, 141200);
        assert_eq!(st.exit_code, 0);
    }

    #[test]
    fn comm_with_spaces_and_parens_runs_to_the_last_paren() {
        let st = parse(&line("a (b) c")).unwrap();
        assert_eq!(st.comm, "a (b) c");
        assert_eq!((st.state, st.ppid, st.pgid), ('S', 1, 1234));

        // ") (" inside comm looks like the end of comm followed by a new field.
        let st = parse(&line("x) (y")).unwrap();
        assert_eq!(st.comm, "x) (y");
        assert_eq!((st.state, st.ppid, st.pgid), ('S', 1, 1234));

        let st = parse(&line(") S 1 2 3 (")).unwrap();
        assert_eq!(st.comm, ") S 1 2 3 (");
        assert_eq!((st.state, st.ppid, st.exit_code), ('S', 1, 0));
    }

    #[test]
    fn comm_that_is_not_utf8_is_kept_lossily() {
        let mut content = b"1234 (bad\xff) (x)".to_vec();
        content.extend_from_slice(line("").split_once(')').unwrap().1.as_bytes());
        let st = parse_stat(&content, Path::new("x")).unwrap();
        assert_eq!(st.comm, "bad\u{fffd}) (x");
        assert_eq!(st.pgid, 1234);
    }

    #[test]
    fn truncated_or_garbage_lines_are_errors_naming_the_file() {
        let cases = [
            ("", "no '('"),
            ("garbage", "no '('"),
            ("12 (x", "no ')'"),
            ("12 )x( S 1", "before the first '('"),
            ("12 (x) S 1 2 3", "expected 52 fields, found 6"),
            ("twelve (x) S", "bad pid"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains("/proc/1234/stat") && err.contains(expected),
                "{text:?}: {err}"
            );
        }
        let err = parse(&line("x").replace(" 5555 ", " soon ")).unwrap_err();
        assert!(
            err.to_string()
                .contains("field 22 is not a number: \"soon\""),
            "{err}"
        );
        assert_eq!(err.raw_os_error(), None);
    }

    #[test]
    fn own_stat() {
        let me = std::process::id() as i32;
        let st = read_stat(me).unwrap();
        assert_eq!(st.pid, me);
        assert_eq!(st.ppid, std::os::unix::process::parent_id() as i32);
        assert!(st.start_code > 0 && st.arg_start < st.arg_end);
        // The leader may be asleep, but the thread reading its own line is running.
        assert_eq!(read_task_stat(me, crate::current_tid()).unwrap().state, 'R');
    }

    #[test]
    fn thread_stat_has_the_thread_id_and_its_own_comm() {
        let me = std::process::id() as i32;
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // A thread may rename itself to any bytes, not only UTF-8.
            std::fs::write("/proc/thread-self/comm", b"t\xff) (x").unwrap();
            tid_tx.send(crate::current_tid()).unwrap();
            done_rx.recv().unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        let st = read_task_stat(me, tid).unwrap();
        done_tx.send(()).unwrap();
        thread.join().unwrap();
        assert_eq!(st.pid, tid);
        assert_eq!(st.comm, "t\u{fffd}) (x");
        assert_ne!(read_stat(me).unwrap().comm, st.comm);
    }

    #[test]
    fn stat_of_a_reaped_process_is_a_read_error_with_its_errno() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let err = read_stat(pid).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read /proc/{pid}/stat: ")),
            "{err}"
        );
    }
}
