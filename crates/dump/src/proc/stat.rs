//! `/proc/PID/stat`.

use super::{parse_error, proc_path, read_text, ProcError};

/// The fields of `/proc/PID/stat` the dump uses (see proc(5) for numbering).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 1.
    pub pid: i32,
    /// Field 2, without the parentheses.
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

/// Parses the text of `/proc/PID/stat`. `comm` may contain spaces and
/// parentheses, so it runs from the first `(` to the last `)`.
pub fn parse_stat(text: &str, path: &str) -> Result<ProcStat, ProcError> {
    let open = text
        .find('(')
        .ok_or_else(|| parse_error(path, "no '(' before comm"))?;
    let close = text
        .rfind(')')
        .ok_or_else(|| parse_error(path, "no ')' after comm"))?;
    if close < open {
        return Err(parse_error(path, "')' before '('"));
    }
    let pid = text[..open]
        .trim()
        .parse()
        .map_err(|_| parse_error(path, format!("bad pid {:?}", &text[..open])))?;
    let comm = text[open + 1..close].to_string();
    // rest[0] is field 3.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    if rest.len() < 50 {
        return Err(parse_error(
            path,
            format!("expected 52 fields, found {}", rest.len() + 2),
        ));
    }
    let field = |n: usize| rest[n - 3];
    fn num<T: std::str::FromStr>(s: &str, n: usize, path: &str) -> Result<T, ProcError> {
        s.parse()
            .map_err(|_| parse_error(path, format!("field {n} is not a number: {s:?}")))
    }
    Ok(ProcStat {
        pid,
        comm,
        state: field(3).chars().next().unwrap_or('?'),
        ppid: num(field(4), 4, path)?,
        pgid: num(field(5), 5, path)?,
        sid: num(field(6), 6, path)?,
        tty_nr: num(field(7), 7, path)?,
        flags: num(field(9), 9, path)?,
        nice: num(field(19), 19, path)?,
        num_threads: num(field(20), 20, path)?,
        start_time: num(field(22), 22, path)?,
        start_code: num(field(26), 26, path)?,
        end_code: num(field(27), 27, path)?,
        start_stack: num(field(28), 28, path)?,
        exit_signal: num(field(38), 38, path)?,
        start_data: num(field(45), 45, path)?,
        end_data: num(field(46), 46, path)?,
        start_brk: num(field(47), 47, path)?,
        arg_start: num(field(48), 48, path)?,
        arg_end: num(field(49), 49, path)?,
        env_start: num(field(50), 50, path)?,
        env_end: num(field(51), 51, path)?,
        exit_code: num(field(52), 52, path)?,
    })
}

/// Reads `/proc/PID/stat`.
pub fn read_stat(pid: i32) -> Result<ProcStat, ProcError> {
    let path = proc_path(pid, "stat");
    let text = read_text(path.clone())?;
    parse_stat(&text, &path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_with_spaces_and_parens() {
        let text = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    5555 1000 10 18446744073709551615 94000 95000 140000 0 0 0 0 0 0 0 0 0 17 1 \
                    0 0 0 0 0 96000 97000 98000 141000 141100 141100 141200 0\n";
        let st = parse_stat(text, "x").unwrap();
        assert_eq!(st.pid, 1234);
        assert_eq!(st.comm, "a (b) c");
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 1);
        assert_eq!(st.pgid, 1234);
        assert_eq!(st.sid, 1234);
        assert_eq!(st.flags, 4194560);
        assert_eq!(st.start_time, 5555);
        assert_eq!(st.start_code, 94000);
        assert_eq!(st.end_code, 95000);
        assert_eq!(st.start_stack, 140000);
        assert_eq!(st.exit_signal, 17);
        assert_eq!(st.start_data, 96000);
        assert_eq!(st.end_data, 97000);
        assert_eq!(st.start_brk, 98000);
        assert_eq!(st.arg_start, 141000);
        assert_eq!(st.env_end, 141200);
        assert_eq!(st.exit_code, 0);
    }

    #[test]
    fn truncated_stat_is_an_error() {
        let err = parse_stat("12 (x) S 1 2 3", "/proc/12/stat").unwrap_err();
        assert!(err.to_string().contains("/proc/12/stat"), "{err}");
    }

    #[test]
    fn own_stat() {
        let me = std::process::id() as i32;
        let st = read_stat(me).unwrap();
        assert_eq!(st.pid, me);
        assert!(st.start_code > 0 && st.arg_start < st.arg_end);
    }
}
