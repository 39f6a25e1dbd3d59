//! Keeping the tracer and the tasks it restores on one CPU while the restore
//! runs.
//!
//! Every remote call resumes a stopped task (PTRACE_SINGLESTEP) and waits for
//! its next stop. When the task sits on another CPU than the tracer, each
//! resume wakes that CPU with an inter-processor interrupt and each stop wakes
//! the tracer back; in a VM both are exits to the hypervisor, and they made
//! up most of the time of a remote call (profile of a 100-process restore:
//! the ptrace resume and the scheduler took two thirds of the tracer's CPU).
//! On one CPU a resume only queues the task, and the tracer's wait hands it
//! the CPU: pinned, a 100-thread restore took 27 ms instead of 39 and a
//! 100-process one 153 ms instead of 209 on our 2-CPU VM, and with both CPUs
//! busy with other work 37 ms instead of 429 and 229 ms instead of 753.
//!
//! The tracer thread is pinned to the CPU it runs on; the blank tasks are
//! cloned from it and inherit that single-CPU mask, as do their threads. Each
//! restored thread gets the tracer's original mask back before it is
//! detached (the mask it would have inherited without the pin), and the
//! tracer gets it back when the pin is dropped.

use nix::errno::Errno;
use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use tracing::{debug, warn};

/// The calling thread pinned to its current CPU; unpinned when dropped.
#[derive(Debug)]
pub(crate) struct CpuPin {
    /// The calling thread's mask before the pin.
    original: CpuSet,
    cpu: usize,
}

/// pid 0 names the calling thread in sched_{get,set}affinity.
fn calling_thread() -> Pid {
    Pid::from_raw(0)
}

impl CpuPin {
    /// Pins the calling thread to the CPU it runs on. `None` (and nothing
    /// changed) when it may run on one CPU only anyway or the mask cannot be
    /// read or set.
    pub fn current_cpu() -> Option<CpuPin> {
        let original = sched_getaffinity(calling_thread()).ok()?;
        let allowed = (0..CpuSet::count())
            .filter(|&cpu| original.is_set(cpu).unwrap_or(false))
            .count();
        if allowed < 2 {
            return None;
        }
        let cpu = sched_getcpu().ok()?;
        if !original.is_set(cpu).unwrap_or(false) {
            return None;
        }
        let mut one = CpuSet::new();
        one.set(cpu).ok()?;
        match sched_setaffinity(calling_thread(), &one) {
            Ok(()) => {
                debug!(cpu, "tracer pinned for the restore");
                Some(CpuPin { original, cpu })
            }
            Err(errno) => {
                debug!(%errno, "tracer not pinned");
                None
            }
        }
    }

    /// The CPU everything runs on while pinned.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Gives thread `tid` of a restored task the mask the tracer had before
    /// the pin.
    pub fn release(&self, tid: i32) -> Result<(), Errno> {
        sched_setaffinity(Pid::from_raw(tid), &self.original)
    }
}

impl Drop for CpuPin {
    fn drop(&mut self) {
        if let Err(errno) = sched_setaffinity(calling_thread(), &self.original) {
            warn!(%errno, "could not unpin the tracer thread");
        }
    }
}
