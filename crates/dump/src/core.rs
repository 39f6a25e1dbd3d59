//! Building `core_entry` messages (`core-<tid>.img`) from collected state, with
//! exactly the fields CRIU 4.2 sets.

use criu_compel::{words, xfeature, UserRegs, XState};
use criu_proto::{
    core_entry::March, CoreEntry, CredsEntry, ItimerEntry, PosixTimerEntry, RlimitEntry, RseqEntry,
    SaEntry, SeccompMode, SiginfoEntry, SignalQueueEntry, TaskCoreEntry, TaskRlimitsEntry,
    TaskTimersEntry, ThreadCoreEntry, ThreadInfoX86, ThreadSasEntry, UserDescT, UserX86CetEntry,
    UserX86FpregsEntry, UserX86RegsEntry, UserX86RegsMode, UserX86XsaveEntry,
};

use crate::proc::status::cap_words;
use crate::seccomp::ThreadSeccomp;
use crate::sys;
use crate::thread::{ProcessState, ThreadState};

/// task_core_entry.task_state values.
pub const TASK_ALIVE: u32 = 1;
/// A zombie.
pub const TASK_DEAD: u32 = 2;
/// Group-stopped.
pub const TASK_STOPPED: u32 = 3;

fn gpregs(r: &UserRegs) -> UserX86RegsEntry {
    UserX86RegsEntry {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        bp: r.bp,
        bx: r.bx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        ax: r.ax,
        cx: r.cx,
        dx: r.dx,
        si: r.si,
        di: r.di,
        orig_ax: r.orig_ax,
        ip: r.ip,
        cs: r.cs,
        flags: r.flags,
        sp: r.sp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
        mode: Some(UserX86RegsMode::Native as i32),
    }
}

fn u64_words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

/// Whether the CPU reports CET shadow stacks (CPUID.7.0:ECX[7]); CRIU then
/// always records a (zero) `cet` entry.
fn cpu_has_shstk() -> bool {
    // `__cpuid_count` is a safe function: CPUID exists on every x86_64 CPU.
    std::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 7) != 0
}

fn fpregs(x: &XState) -> UserX86FpregsEntry {
    let fx = x.legacy();
    let features = XState::xfeatures(x);
    let has = |f: u32| features & (1u64 << f) != 0;
    let comp = |f: u32| if has(f) { x.component(f) } else { None };
    let xsave = UserX86XsaveEntry {
        xstate_bv: x.xstate_bv(),
        ymmh_space: comp(xfeature::YMM).map(words).unwrap_or_default(),
        bndreg_state: comp(xfeature::BNDREGS).map(u64_words).unwrap_or_default(),
        bndcsr_state: comp(xfeature::BNDCSR).map(u64_words).unwrap_or_default(),
        opmask_reg: comp(xfeature::OPMASK).map(u64_words).unwrap_or_default(),
        zmm_upper: comp(xfeature::ZMM_HI256).map(u64_words).unwrap_or_default(),
        hi16_zmm: comp(xfeature::HI16_ZMM).map(u64_words).unwrap_or_default(),
        pkru: comp(xfeature::PKRU).map(words).unwrap_or_default(),
        cet: cpu_has_shstk().then_some(UserX86CetEntry { cet: 0, ssp: 0 }),
    };
    UserX86FpregsEntry {
        cwd: u32::from(fx.cwd),
        swd: u32::from(fx.swd),
        twd: u32::from(fx.twd),
        fop: u32::from(fx.fop),
        rip: fx.rip,
        rdp: fx.rdp,
        mxcsr: fx.mxcsr,
        mxcsr_mask: fx.mxcsr_mask,
        st_space: fx.st_space.to_vec(),
        xmm_space: fx.xmm_space.to_vec(),
        padding: Vec::new(),
        xsave: Some(xsave),
    }
}

fn tls(desc: &sys::UserDesc) -> UserDescT {
    let bit = |n: u32| desc.flags & (1 << n) != 0;
    UserDescT {
        entry_number: desc.entry_number,
        base_addr: desc.base_addr,
        limit: desc.limit,
        seg_32bit: bit(0),
        contents_h: bit(2),
        contents_l: bit(1),
        read_exec_only: bit(3),
        limit_in_pages: bit(4),
        seg_not_present: bit(5),
        usable: bit(6),
    }
}

fn signal_queue(signals: &[criu_compel::SigInfo]) -> SignalQueueEntry {
    SignalQueueEntry {
        signals: signals
            .iter()
            .map(|s| SiginfoEntry {
                siginfo: s.0.to_vec(),
            })
            .collect(),
    }
}

fn creds(t: &ThreadState) -> CredsEntry {
    let s = &t.status;
    CredsEntry {
        uid: s.uids[0],
        gid: s.gids[0],
        euid: s.uids[1],
        egid: s.gids[1],
        suid: s.uids[2],
        sgid: s.gids[2],
        fsuid: s.uids[3],
        fsgid: s.gids[3],
        cap_inh: cap_words(s.cap_inh),
        cap_prm: cap_words(s.cap_prm),
        cap_eff: cap_words(s.cap_eff),
        cap_bnd: cap_words(s.cap_bnd),
        secbits: t.secbits,
        groups: s.groups.clone(),
        lsm_profile: None,
        lsm_sockcreate: None,
        apparmor_data: None,
        no_new_privs: (s.no_new_privs != 0).then_some(s.no_new_privs),
        cap_amb: cap_words(s.cap_amb),
    }
}

fn thread_core(
    t: &ThreadState,
    leader: bool,
    cg_set: u32,
    seccomp: ThreadSeccomp,
) -> ThreadCoreEntry {
    let seccomp_mode = match seccomp.mode {
        1 => Some(SeccompMode::Strict as i32),
        2 => Some(SeccompMode::Filter as i32),
        _ => None,
    };
    ThreadCoreEntry {
        futex_rla: t.robust_list.0,
        futex_rla_len: t.robust_list.1 as u32,
        sched_nice: Some(t.sched.nice),
        sched_policy: Some(t.sched.policy),
        sched_prio: t.sched.prio,
        blk_sigset: (!leader).then_some(t.sigmask),
        sas: Some(ThreadSasEntry {
            ss_sp: t.altstack.sp,
            ss_size: t.altstack.size,
            ss_flags: t.altstack.flags,
        }),
        pdeath_sig: (t.pdeath_sig != 0).then_some(t.pdeath_sig),
        signals_p: Some(signal_queue(&t.signals)),
        creds: Some(creds(t)),
        seccomp_mode,
        seccomp_filter: if seccomp.mode == 2 {
            seccomp.filter
        } else {
            None
        },
        comm: Some(t.comm.clone()),
        blk_sigset_extended: None,
        rseq_entry: Some(RseqEntry {
            rseq_abi_pointer: t.rseq.rseq_abi_pointer,
            rseq_abi_size: t.rseq.rseq_abi_size,
            signature: t.rseq.signature,
            rseq_cs_pointer: None,
        }),
        cg_set: Some(cg_set),
    }
}

fn thread_info(t: &ThreadState) -> ThreadInfoX86 {
    ThreadInfoX86 {
        clear_tid_addr: t.clear_tid_addr,
        gpregs: gpregs(&t.regs),
        fpregs: fpregs(&t.xstate),
        tls: t.tls.iter().map(tls).collect(),
    }
}

/// Process-level facts for the leader's `task_core_entry`.
#[derive(Debug, Clone)]
pub struct TaskFacts {
    /// TASK_ALIVE or TASK_STOPPED.
    pub state: u32,
    /// The stop signal of a stopped task.
    pub stop_signo: Option<u32>,
    /// /proc/PID/personality.
    pub personality: u32,
    /// stat flags (PF_*).
    pub flags: u32,
    /// Process name (stat comm).
    pub comm: String,
    /// RLIM_NLIMITS (cur, max) pairs.
    pub rlimits: Vec<(u64, u64)>,
    /// Shared pending signals.
    pub shared_signals: Vec<criu_compel::SigInfo>,
    /// /proc/PID/loginuid.
    pub loginuid: Option<u32>,
    /// /proc/PID/oom_score_adj.
    pub oom_score_adj: Option<i32>,
    /// cgroup set id.
    pub cg_set: u32,
}

/// The leader's core entry.
pub fn leader_core(
    t: &ThreadState,
    process: &ProcessState,
    facts: &TaskFacts,
    seccomp: ThreadSeccomp,
) -> CoreEntry {
    let itimer = |i: usize| {
        let (isec, iusec, vsec, vusec) = process.itimers[i];
        ItimerEntry {
            isec,
            iusec,
            vsec,
            vusec,
        }
    };
    let tc = TaskCoreEntry {
        task_state: facts.state,
        exit_code: 0,
        personality: facts.personality,
        flags: facts.flags,
        blk_sigset: t.sigmask,
        comm: facts.comm.clone(),
        timers: Some(TaskTimersEntry {
            real: itimer(0),
            virt: itimer(1),
            prof: itimer(2),
            posix: process
                .posix_timers
                .iter()
                .map(|p| PosixTimerEntry {
                    it_id: p.info.id as u32,
                    clock_id: p.info.clock_id,
                    si_signo: p.info.signo,
                    it_sigev_notify: p.info.sigev_notify,
                    sival_ptr: p.info.sival_ptr,
                    overrun: p.overrun,
                    isec: p.setting.0,
                    insec: p.setting.1,
                    vsec: p.setting.2,
                    vnsec: p.setting.3,
                    notify_thread_id: p.info.notify_thread_id,
                })
                .collect(),
        }),
        rlimits: Some(TaskRlimitsEntry {
            rlimits: facts
                .rlimits
                .iter()
                .map(|&(cur, max)| RlimitEntry { cur, max })
                .collect(),
        }),
        cg_set: None,
        signals_s: Some(signal_queue(&facts.shared_signals)),
        old_seccomp_mode: None,
        old_seccomp_filter: None,
        loginuid: facts.loginuid,
        oom_score_adj: facts.oom_score_adj,
        sigactions: process
            .sigactions
            .iter()
            .map(|a| SaEntry {
                sigaction: a.handler,
                flags: a.flags,
                restorer: a.restorer,
                mask: a.mask,
                compat_sigaction: Some(false),
                mask_extended: None,
            })
            .collect(),
        child_subreaper: Some(process.child_subreaper),
        blk_sigset_extended: None,
        stop_signo: facts.stop_signo,
        membarrier_registration_mask: (process.membarrier_mask != 0)
            .then_some(process.membarrier_mask),
    };
    CoreEntry {
        mtype: March::X8664 as i32,
        thread_info: Some(thread_info(t)),
        tc: Some(tc),
        ids: None,
        thread_core: Some(thread_core(t, true, facts.cg_set, seccomp)),
        ..Default::default()
    }
}

/// A non-leader thread's core entry.
pub fn thread_core_entry(t: &ThreadState, cg_set: u32, seccomp: ThreadSeccomp) -> CoreEntry {
    CoreEntry {
        mtype: March::X8664 as i32,
        thread_info: Some(thread_info(t)),
        tc: None,
        ids: None,
        thread_core: Some(thread_core(t, false, cg_set, seccomp)),
        ..Default::default()
    }
}

/// The core entry of a zombie: only comm, state DEAD and the exit code.
pub fn zombie_core(comm: &str, exit_code: u32) -> CoreEntry {
    CoreEntry {
        mtype: March::X8664 as i32,
        tc: Some(TaskCoreEntry {
            task_state: TASK_DEAD,
            exit_code,
            comm: comm.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
