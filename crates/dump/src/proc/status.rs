//! `/proc/PID/status`.

use super::{parse_error, proc_path, read_text, ProcError};

/// The fields of `/proc/PID/status` the dump uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStatus {
    /// `Umask:` (absent on very old kernels).
    pub umask: Option<u32>,
    /// First letter of `State:`.
    pub state: char,
    /// `PPid:`.
    pub ppid: i32,
    /// `TracerPid:`.
    pub tracer_pid: i32,
    /// `Uid:` real, effective, saved, fs.
    pub uids: [u32; 4],
    /// `Gid:` real, effective, saved, fs.
    pub gids: [u32; 4],
    /// `Groups:` supplementary groups.
    pub groups: Vec<u32>,
    /// `NSpid:` pid in every nested pid namespace, outermost first.
    pub ns_pid: Vec<i32>,
    /// `NSpgid:`.
    pub ns_pgid: Vec<i32>,
    /// `NSsid:`.
    pub ns_sid: Vec<i32>,
    /// `SigPnd:` thread-private pending signals.
    pub sig_pending: u64,
    /// `ShdPnd:` shared pending signals.
    pub shd_pending: u64,
    /// `SigBlk:`.
    pub sig_blocked: u64,
    /// `CapInh:`.
    pub cap_inh: u64,
    /// `CapPrm:`.
    pub cap_prm: u64,
    /// `CapEff:`.
    pub cap_eff: u64,
    /// `CapBnd:`.
    pub cap_bnd: u64,
    /// `CapAmb:`.
    pub cap_amb: u64,
    /// `NoNewPrivs:`.
    pub no_new_privs: u32,
    /// `Seccomp:` 0 disabled, 1 strict, 2 filter.
    pub seccomp_mode: u32,
    /// `Threads:`.
    pub threads: u32,
}

/// Parses the text of `/proc/PID/status`.
pub fn parse_status(text: &str, path: &str) -> Result<ProcStatus, ProcError> {
    let mut st = ProcStatus::default();
    let mut seen_uid = false;
    let mut seen_gid = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let bad = || parse_error(path, format!("bad {key} line {line:?}"));
        let hex = || u64::from_str_radix(value, 16).map_err(|_| bad());
        let list = || -> Result<Vec<i64>, ProcError> {
            value
                .split_whitespace()
                .map(|w| w.parse::<i64>().map_err(|_| bad()))
                .collect()
        };
        match key {
            "Umask" => st.umask = Some(u32::from_str_radix(value, 8).map_err(|_| bad())?),
            "State" => st.state = value.chars().next().unwrap_or('?'),
            "PPid" => st.ppid = value.parse().map_err(|_| bad())?,
            "TracerPid" => st.tracer_pid = value.parse().map_err(|_| bad())?,
            "Uid" | "Gid" => {
                let ids = list()?;
                if ids.len() != 4 {
                    return Err(bad());
                }
                let ids = [ids[0] as u32, ids[1] as u32, ids[2] as u32, ids[3] as u32];
                if key == "Uid" {
                    st.uids = ids;
                    seen_uid = true;
                } else {
                    st.gids = ids;
                    seen_gid = true;
                }
            }
            "Groups" => st.groups = list()?.into_iter().map(|g| g as u32).collect(),
            "NSpid" => st.ns_pid = list()?.into_iter().map(|p| p as i32).collect(),
            "NSpgid" => st.ns_pgid = list()?.into_iter().map(|p| p as i32).collect(),
            "NSsid" => st.ns_sid = list()?.into_iter().map(|p| p as i32).collect(),
            "SigPnd" => st.sig_pending = hex()?,
            "ShdPnd" => st.shd_pending = hex()?,
            "SigBlk" => st.sig_blocked = hex()?,
            "CapInh" => st.cap_inh = hex()?,
            "CapPrm" => st.cap_prm = hex()?,
            "CapEff" => st.cap_eff = hex()?,
            "CapBnd" => st.cap_bnd = hex()?,
            "CapAmb" => st.cap_amb = hex()?,
            "NoNewPrivs" => st.no_new_privs = value.parse().map_err(|_| bad())?,
            "Seccomp" => st.seccomp_mode = value.parse().map_err(|_| bad())?,
            "Threads" => st.threads = value.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    if !seen_uid || !seen_gid {
        return Err(parse_error(path, "no Uid:/Gid: lines"));
    }
    Ok(st)
}

/// Reads `/proc/PID/status`.
pub fn read_status(pid: i32) -> Result<ProcStatus, ProcError> {
    let path = proc_path(pid, "status");
    let text = read_text(path.clone())?;
    parse_status(&text, &path.to_string_lossy())
}

/// Splits a 64-bit capability set into CRIU's two 32-bit words (low first).
pub fn cap_words(caps: u64) -> Vec<u32> {
    vec![caps as u32, (caps >> 32) as u32]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nPPid:\t1\n\
        TracerPid:\t0\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t6\t7\t8\nGroups:\t27 48244 \n\
        NSpid:\t300\t1\nNSpgid:\t300\t1\nNSsid:\t290\t0\nThreads:\t3\nSigPnd:\t0000000000000100\n\
        ShdPnd:\t0000000000004000\nSigBlk:\t0000000000010000\nCapInh:\t0000000000000000\n\
        CapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n\
        CapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";

    #[test]
    fn sample_status() {
        let st = parse_status(SAMPLE, "s").unwrap();
        assert_eq!(st.umask, Some(0o22));
        assert_eq!(st.state, 'S');
        assert_eq!(st.uids, [1000, 1001, 1002, 1003]);
        assert_eq!(st.gids, [5, 6, 7, 8]);
        assert_eq!(st.groups, vec![27, 48244]);
        assert_eq!(st.ns_pid, vec![300, 1]);
        assert_eq!(st.ns_sid, vec![290, 0]);
        assert_eq!(st.sig_pending, 0x100);
        assert_eq!(st.shd_pending, 0x4000);
        assert_eq!(st.sig_blocked, 0x10000);
        assert_eq!(cap_words(st.cap_prm), vec![0xfeffffff, 0x1ff]);
        assert_eq!(st.no_new_privs, 1);
        assert_eq!(st.seccomp_mode, 2);
        assert_eq!(st.threads, 3);
    }

    #[test]
    fn missing_uid_is_an_error() {
        assert!(parse_status("Name:\tx\n", "s").is_err());
        assert!(parse_status("Uid:\t1 2\nGid:\t1 2 3 4\n", "s").is_err());
    }

    #[test]
    fn own_status() {
        let st = read_status(std::process::id() as i32).unwrap();
        assert!(st.umask.is_some());
        assert_eq!(st.uids[0], nix::unistd::getuid().as_raw());
    }
}
