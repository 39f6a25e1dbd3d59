//! `criu check`: real probes of the kernel interfaces criu-rs depends on, and
//! the `--feature NAME` / RPC FEATURE_CHECK answers.
//!
//! Memory tracking: this kernel family may lack soft-dirty
//! (CONFIG_MEM_SOFT_DIRTY), which is what CRIU's `mem_dirty_track` means.
//! criu-rs tracks dirty memory only with PAGEMAP_SCAN + userfaultfd
//! write-protect in async mode (criu_dump::track; soft-dirty is never used),
//! so "memory tracking is available" (`mem_track`) means: PAGEMAP_SCAN works
//! AND userfaultfd offers WP_ASYNC + WP_UNPOPULATED.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{socket, socketpair, AddressFamily, SockFlag, SockProtocol, SockType};
use nix::unistd::getpid;

use crate::sys;

/// One failed probe: what was tried and what the kernel said.
pub type CheckResult = Result<(), String>;

/// A named probe.
struct Probe {
    name: &'static str,
    run: fn() -> CheckResult,
}

/// userfaultfd feature bits (linux/userfaultfd.h).
mod uffd_feature {
    pub const EVENT_FORK: u64 = 1 << 1;
    pub const EVENT_REMAP: u64 = 1 << 2;
    pub const EVENT_REMOVE: u64 = 1 << 3;
    pub const EVENT_UNMAP: u64 = 1 << 6;
    pub const WP_UNPOPULATED: u64 = 1 << 13;
    pub const WP_ASYNC: u64 = 1 << 15;
}

/// The probes `criu check` runs by default (CRIU's category 1 plus what the
/// ptrace-only design of criu-rs needs): all must pass.
const REQUIRED: &[Probe] = &[
    Probe {
        name: "map_files",
        run: check_map_files,
    },
    Probe {
        name: "sock_diag",
        run: check_sock_diag,
    },
    Probe {
        name: "ns_last_pid",
        run: check_ns_last_pid,
    },
    Probe {
        name: "so_peek_off",
        run: check_peek_off,
    },
    Probe {
        name: "kcmp",
        run: check_kcmp,
    },
    Probe {
        name: "prctl_mm_map",
        run: check_prctl_mm_map,
    },
    Probe {
        name: "fcntl_getowner_uids",
        run: check_getowner_uids,
    },
    Probe {
        name: "proc_stat",
        run: check_proc_stat,
    },
    Probe {
        name: "ptrace_seize_peeksiginfo",
        run: check_ptrace_seize,
    },
    Probe {
        name: "pidfd",
        run: check_pidfd_store,
    },
    Probe {
        name: "clone3_set_tid",
        run: check_clone3_set_tid,
    },
    Probe {
        name: "pagemap_scan",
        run: check_pagemap_scan,
    },
    Probe {
        name: "userfaultfd",
        run: check_uffd,
    },
];

/// CRIU's `--feature` names and how we answer each.
const FEATURES: &[Probe] = &[
    Probe {
        name: "mnt_id",
        run: check_mnt_id,
    },
    Probe {
        name: "mem_dirty_track",
        run: check_mem_track,
    },
    Probe {
        name: "aio_remap",
        run: unsupported,
    },
    Probe {
        name: "timerfd",
        run: check_timerfd,
    },
    Probe {
        name: "tun",
        run: unsupported,
    },
    Probe {
        name: "tun_ns",
        run: unsupported,
    },
    Probe {
        name: "userns",
        run: check_userns,
    },
    Probe {
        name: "fdinfo_lock",
        run: check_fdinfo_lock,
    },
    Probe {
        name: "seccomp_suspend",
        run: check_seccomp_suspend,
    },
    Probe {
        name: "seccomp_filters",
        run: check_seccomp_filters,
    },
    Probe {
        name: "loginuid",
        run: check_loginuid,
    },
    Probe {
        name: "cgroupns",
        run: check_cgroupns,
    },
    Probe {
        name: "autofs",
        run: unsupported,
    },
    Probe {
        name: "tcp_half_closed",
        run: unsupported,
    },
    Probe {
        name: "compat_cr",
        run: unsupported,
    },
    Probe {
        name: "uffd",
        run: check_uffd,
    },
    Probe {
        name: "uffd-noncoop",
        run: check_uffd_noncoop,
    },
    Probe {
        name: "can_map_vdso",
        run: unsupported,
    },
    Probe {
        name: "sk_ns",
        run: unsupported,
    },
    Probe {
        name: "sk_unix_file",
        run: unsupported,
    },
    Probe {
        name: "net_diag_raw",
        run: unsupported,
    },
    Probe {
        name: "nsid",
        run: unsupported,
    },
    Probe {
        name: "link_nsid",
        run: unsupported,
    },
    Probe {
        name: "kcmp_epoll",
        run: unsupported,
    },
    Probe {
        name: "timens",
        run: check_timens,
    },
    Probe {
        name: "external_net_ns",
        run: always,
    },
    Probe {
        name: "clone3_set_tid",
        run: check_clone3_set_tid,
    },
    Probe {
        name: "newifindex",
        run: unsupported,
    },
    Probe {
        name: "nftables",
        run: unsupported,
    },
    Probe {
        name: "has_ipt_legacy",
        run: unsupported,
    },
    Probe {
        name: "pidfd_store",
        run: check_pidfd_store,
    },
    Probe {
        name: "ns_pid",
        run: check_ns_pid,
    },
    Probe {
        name: "apparmor_stacking",
        run: unsupported,
    },
    Probe {
        name: "network_lock_nftables",
        run: unsupported,
    },
    Probe {
        name: "sockopt_buf_lock",
        run: unsupported,
    },
    Probe {
        name: "memfd_hugetlb",
        run: unsupported,
    },
    Probe {
        name: "move_mount_set_group",
        run: unsupported,
    },
    Probe {
        name: "openat2",
        run: check_openat2,
    },
    Probe {
        name: "get_rseq_conf",
        run: check_rseq_conf,
    },
    Probe {
        name: "ipv6_freebind",
        run: unsupported,
    },
    Probe {
        name: "pagemap_scan",
        run: check_pagemap_scan,
    },
    Probe {
        name: "timer_cr_ids",
        run: unsupported,
    },
    Probe {
        name: "overlayfs_maps",
        run: unsupported,
    },
    Probe {
        name: "breakpoints",
        run: unsupported,
    },
    Probe {
        name: "pagemap_scan_guard_pages",
        run: unsupported,
    },
];

/// Whether `name` is one of CRIU's `--feature` names.
pub fn is_known_feature(name: &str) -> bool {
    FEATURES.iter().any(|f| f.name == name)
}

/// Every feature name, for `--feature list`.
pub fn feature_names() -> Vec<&'static str> {
    FEATURES.iter().map(|f| f.name).collect()
}

/// Runs the `--feature NAME` probe.
pub fn check_feature(name: &str) -> CheckResult {
    let probe = FEATURES
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| format!("Unknown feature {name}"))?;
    (probe.run)()
}

/// Runs every required probe; logs each failure as an error and returns the
/// names that failed.
pub fn check_all() -> Vec<&'static str> {
    let mut failed = Vec::new();
    for probe in REQUIRED {
        match (probe.run)() {
            Ok(()) => tracing::info!("check {}: ok", probe.name),
            Err(why) => {
                tracing::error!("check {} failed: {why}", probe.name);
                failed.push(probe.name);
            }
        }
    }
    failed
}

/// Category 2 (`criu check --extra`): features needed only by some trees.
const EXTRA: &[&str] = &[
    "mem_dirty_track",
    "uffd",
    "uffd-noncoop",
    "clone3_set_tid",
    "pidfd_store",
    "timens",
    "pagemap_scan",
    "get_rseq_conf",
    "openat2",
    "cgroupns",
    "ns_pid",
];

/// Runs the category 2 probes; logs a warning for each missing one and
/// returns how many are missing.
pub fn check_extra() -> usize {
    let mut missing = 0;
    for name in EXTRA {
        if let Err(why) = check_feature(name) {
            tracing::warn!("{name} is not available: {why}");
            missing += 1;
        }
    }
    missing
}

/// The three FEATURE_CHECK answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// Dirty memory tracking (see the module docs).
    pub mem_track: bool,
    /// userfaultfd with the non-cooperative events.
    pub lazy_pages: bool,
    /// pidfd_open + pidfd_getfd.
    pub pidfd_store: bool,
}

/// Tests only the features `wanted` asks for; the others stay false.
pub fn feature_check(wanted: Features) -> Features {
    Features {
        mem_track: wanted.mem_track && check_mem_track().is_ok(),
        lazy_pages: wanted.lazy_pages && check_uffd_noncoop().is_ok(),
        pidfd_store: wanted.pidfd_store && check_pidfd_store().is_ok(),
    }
}

fn unsupported() -> CheckResult {
    Err("criu-rs does not implement this feature".into())
}

fn always() -> CheckResult {
    Ok(())
}

fn read_to_string(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("can't read {path}: {e}"))
}

fn check_map_files() -> CheckResult {
    let maps = read_to_string("/proc/self/maps")?;
    let first = maps
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().next())
        .ok_or("empty /proc/self/maps")?;
    let path = format!("/proc/self/map_files/{first}");
    std::fs::read_link(&path).map_err(|e| format!("readlink {path}: {e}"))?;
    Ok(())
}

fn check_sock_diag() -> CheckResult {
    socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(|e| format!("NETLINK_SOCK_DIAG socket: {e}"))?;
    Ok(())
}

fn check_ns_last_pid() -> CheckResult {
    let path = "/proc/sys/kernel/ns_last_pid";
    nix::unistd::access(path, nix::unistd::AccessFlags::W_OK)
        .map_err(|e| format!("{path} is not writable: {e}"))
}

fn check_peek_off() -> CheckResult {
    let (one, _two) = socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    sys::set_peek_off(&one, 0).map_err(|e| format!("SO_PEEK_OFF: {e}"))
}

fn check_kcmp() -> CheckResult {
    let file = File::open("/proc/self/stat").map_err(|e| e.to_string())?;
    let dup = file.try_clone().map_err(|e| e.to_string())?;
    match sys::kcmp_file(getpid(), file.as_raw_fd(), dup.as_raw_fd()) {
        Ok(0) => Ok(()),
        Ok(other) => Err(format!("kcmp says a dup is a different file ({other})")),
        Err(e) => Err(format!("kcmp: {e}")),
    }
}

fn check_prctl_mm_map() -> CheckResult {
    let size = sys::prctl_mm_map_size().map_err(|e| format!("PR_SET_MM_MAP_SIZE: {e}"))?;
    if size == 0 {
        return Err("PR_SET_MM_MAP_SIZE returned 0".into());
    }
    Ok(())
}

fn check_getowner_uids() -> CheckResult {
    let (one, _two) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    sys::getowner_uids(&one)
        .map(|_| ())
        .map_err(|e| format!("F_GETOWNER_UIDS: {e}"))
}

fn check_proc_stat() -> CheckResult {
    // The dump needs every field up to exit_code (52); the parser refuses a shorter line.
    criu_compel::proc::read_stat(std::process::id() as criu_compel::Pid)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A sleeping child process, killed and reaped when dropped (also when a
/// probe fails or panics). Spawned with `std::process::Command` rather than
/// forked, so probing is sound from any thread (libtest's included).
struct Sleeper(std::process::Child);

impl Sleeper {
    fn spawn() -> Result<Sleeper, String> {
        std::process::Command::new("sleep")
            .arg("60")
            .stdin(std::process::Stdio::null())
            .spawn()
            .map(Sleeper)
            .map_err(|e| format!("can't start a sleep child: {e}"))
    }

    fn pid(&self) -> criu_compel::Pid {
        self.0.id() as criu_compel::Pid
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a child that sleeps, seizes it with `options` and interrupts it,
/// runs `probe` on the stopped child, then detaches, kills and reaps it.
fn with_stopped_child(
    options: criu_compel::SeizeOptions,
    probe: impl FnOnce(&criu_compel::Tracee) -> CheckResult,
) -> CheckResult {
    let child = Sleeper::spawn()?;
    let mut tracee = criu_compel::Tracee::seize(child.pid(), options)
        .map_err(|e| format!("PTRACE_SEIZE: {e}"))?;
    tracee
        .interrupt_and_wait(criu_compel::DEFAULT_STOP_TIMEOUT)
        .map_err(|e| format!("PTRACE_INTERRUPT: {e}"))?;
    let outcome = probe(&tracee);
    drop(tracee);
    drop(child);
    outcome
}

/// SEIZE + INTERRUPT + PEEKSIGINFO on a real child.
fn check_ptrace_seize() -> CheckResult {
    with_stopped_child(criu_compel::SeizeOptions::default(), |tracee| {
        tracee
            .pending_signals(false)
            .map(|_| ())
            .map_err(|e| format!("PTRACE_PEEKSIGINFO: {e}"))
    })
}

fn check_seccomp_suspend() -> CheckResult {
    let options = criu_compel::SeizeOptions {
        suspend_seccomp: true,
        ..criu_compel::SeizeOptions::default()
    };
    with_stopped_child(options, |_| Ok(()))
}

fn check_seccomp_filters() -> CheckResult {
    // The child has no filter: `Ok(None)`; a kernel without the request
    // fails with EIO.
    with_stopped_child(criu_compel::SeizeOptions::default(), |tracee| {
        tracee
            .seccomp_filter(0)
            .map(|_| ())
            .map_err(|e| format!("PTRACE_SECCOMP_GET_FILTER: {e}"))
    })
}

fn check_rseq_conf() -> CheckResult {
    with_stopped_child(criu_compel::SeizeOptions::default(), |tracee| {
        tracee
            .rseq_config()
            .map(|_| ())
            .map_err(|e| format!("PTRACE_GET_RSEQ_CONFIGURATION: {e}"))
    })
}

fn check_fdinfo_lock() -> CheckResult {
    let file = tempfile_in_tmp()?;
    let locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock)
        .map_err(|(_, e)| format!("flock: {e}"))?;
    let fdinfo = read_to_string(&format!("/proc/self/fdinfo/{}", locked.as_raw_fd()))?;
    if fdinfo.lines().any(|l| l.starts_with("lock:")) {
        Ok(())
    } else {
        Err("fdinfo shows no lock: line for a locked file".into())
    }
}

fn tempfile_in_tmp() -> Result<File, String> {
    let path = std::env::temp_dir().join(format!("criu-rs-check-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

fn check_pidfd_store() -> CheckResult {
    let file = File::open("/proc/self/stat").map_err(|e| e.to_string())?;
    criu_compel::steal_fd(getpid().as_raw(), file.as_raw_fd())
        .map(drop)
        .map_err(|e| format!("pidfd_open/pidfd_getfd: {e}"))
}

fn check_clone3_set_tid() -> CheckResult {
    let error = sys::clone3_set_tid_probe();
    match error.raw_os_error() {
        Some(libc::EINVAL) => Ok(()),
        _ => Err(format!("clone3 with set_tid is not supported: {error}")),
    }
}

fn check_pagemap_scan() -> CheckResult {
    let probe = vec![1u8; 4096 * 4];
    let address = probe.as_ptr() as u64;
    let pid = getpid().as_raw();
    let vmas = criu_pages::read_vmas(pid).map_err(|e| format!("read VMAs: {e}"))?;
    let probed: Vec<_> = vmas
        .into_iter()
        .filter(|vma| (vma.start..vma.end).contains(&address))
        .collect();
    let ranges = criu_pages::Pagemap::open(pid)
        .and_then(|pagemap| pagemap.present_ranges(&probed, criu_pages::ScanMethod::PagemapScan))
        .map_err(|e| format!("PAGEMAP_SCAN: {e}"))?;
    // The probe buffer was just written, so its pages must be reported.
    if ranges.is_empty() {
        return Err(format!(
            "PAGEMAP_SCAN reports no present page around {address:#x}"
        ));
    }
    Ok(())
}

fn uffd_features() -> Result<u64, String> {
    let uffd = sys::userfaultfd().map_err(|e| format!("userfaultfd: {e}"))?;
    sys::uffd_api_features(&uffd).map_err(|e| format!("UFFDIO_API: {e}"))
}

fn check_uffd() -> CheckResult {
    uffd_features().map(|_| ())
}

fn check_uffd_noncoop() -> CheckResult {
    use uffd_feature::*;
    let needed = EVENT_FORK | EVENT_REMAP | EVENT_REMOVE | EVENT_UNMAP;
    let features = uffd_features()?;
    if features & needed != needed {
        return Err(format!(
            "userfaultfd lacks non-cooperative events (features {features:#x})"
        ));
    }
    Ok(())
}

fn check_mem_track() -> CheckResult {
    // Soft-dirty alone is not enough: the dump tracks with uffd-wp only.
    check_pagemap_scan()?;
    let features = uffd_features()?;
    let needed = uffd_feature::WP_ASYNC | uffd_feature::WP_UNPOPULATED;
    if features & needed != needed {
        return Err(format!(
            "userfaultfd lacks WP_ASYNC/WP_UNPOPULATED (features {features:#x}), which dirty-memory tracking needs"
        ));
    }
    Ok(())
}

fn check_mnt_id() -> CheckResult {
    let fdinfo = read_to_string("/proc/self/fdinfo/0")?;
    if fdinfo.contains("mnt_id:") {
        Ok(())
    } else {
        Err("fdinfo has no mnt_id".into())
    }
}

fn check_timerfd() -> CheckResult {
    use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
    let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC)
        .map_err(|e| format!("timerfd_create: {e}"))?;
    let fdinfo = read_to_string(&format!("/proc/self/fdinfo/{}", timer.as_fd().as_raw_fd()))?;
    if fdinfo.contains("it_value:") {
        Ok(())
    } else {
        Err("timerfd fdinfo lacks it_value".into())
    }
}

fn ns_file_exists(name: &str) -> CheckResult {
    let path = format!("/proc/self/ns/{name}");
    std::fs::symlink_metadata(&path)
        .map(|_| ())
        .map_err(|e| format!("{path}: {e}"))
}

fn check_userns() -> CheckResult {
    ns_file_exists("user")?;
    check_prctl_mm_map()
}

fn check_cgroupns() -> CheckResult {
    ns_file_exists("cgroup")
}

fn check_timens() -> CheckResult {
    ns_file_exists("time")
}

fn check_ns_pid() -> CheckResult {
    let status = read_to_string("/proc/self/status")?;
    if status.lines().any(|l| l.starts_with("NSpid:")) {
        Ok(())
    } else {
        Err("/proc/self/status has no NSpid".into())
    }
}

fn check_loginuid() -> CheckResult {
    std::fs::metadata("/proc/self/loginuid")
        .map(|_| ())
        .map_err(|e| format!("/proc/self/loginuid: {e}"))
}

fn check_openat2() -> CheckResult {
    sys::openat2_probe().map_err(|e| format!("openat2: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_names_match_criu() {
        for name in [
            "mem_dirty_track",
            "userns",
            "uffd-noncoop",
            "pidfd_store",
            "pagemap_scan",
        ] {
            assert!(is_known_feature(name), "{name}");
        }
        assert!(!is_known_feature("bogus"));
        assert!(check_feature("bogus")
            .unwrap_err()
            .contains("Unknown feature"));
    }

    #[test]
    fn only_requested_features_are_tested() {
        assert_eq!(feature_check(Features::default()), Features::default());
    }

    #[test]
    fn kernel_probes_that_this_machine_passes() {
        // KERNEL.md: all of these work on the project machines.
        check_pidfd_store().unwrap();
        check_clone3_set_tid().unwrap();
        check_pagemap_scan().unwrap();
        check_kcmp().unwrap();
        check_prctl_mm_map().unwrap();
        check_peek_off().unwrap();
        check_map_files().unwrap();
        check_uffd_noncoop().unwrap();
        check_mem_track().unwrap();
        check_seccomp_suspend().unwrap();
        check_seccomp_filters().unwrap();
        check_rseq_conf().unwrap();
        check_fdinfo_lock().unwrap();
        check_ptrace_seize().unwrap();
    }
}
