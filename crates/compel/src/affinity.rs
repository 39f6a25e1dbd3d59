//! Pinning the tracer to the CPU it runs on, so that every ptrace round trip with a task on the
//! same CPU is a switch on one CPU instead of a cross-CPU wake-up (in a VM both sides of such a
//! wake-up are exits to the hypervisor). The restore pins itself for the whole restore (its tasks
//! are cloned from the pinned tracer and inherit the mask); [`crate::FreezeOptions::colocate`]
//! pins the tracer and moves a frozen tree's threads to its CPU.

use std::io;

use crate::sys::{self, CpuMask};
use crate::Pid;

/// The calling thread pinned to the CPU it was running on; its own mask comes back with
/// [`CpuPin::unpin`] or when this is dropped.
#[derive(Debug)]
pub struct CpuPin {
    /// The calling thread's mask before the pin.
    original: CpuMask,
    cpu: usize,
    pinned: bool,
}

impl CpuPin {
    /// Pins the calling thread to the CPU it runs on. `None` (nothing changed) when it may run on
    /// one CPU only anyway, or its mask cannot be read or set.
    pub fn current_cpu() -> Option<CpuPin> {
        let original = sys::get_affinity(0).ok()?;
        let cpu = sys::current_cpu().ok()?;
        if original.count() < 2 || !original.contains(cpu) {
            return None;
        }
        match sys::set_affinity(0, &CpuMask::single(cpu)) {
            Ok(()) => {
                tracing::debug!(cpu, "tracer pinned");
                Some(CpuPin {
                    original,
                    cpu,
                    pinned: true,
                })
            }
            Err(error) => {
                tracing::debug!(%error, "tracer not pinned");
                None
            }
        }
    }

    /// The CPU the tracer is pinned to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Gives thread `tid` the mask the tracer had before the pin (the mask a task cloned from the
    /// tracer would have had without it).
    pub fn release(&self, tid: Pid) -> io::Result<()> {
        sys::set_affinity(tid, &self.original)
    }

    /// Gives the tracer its own mask back (once; later calls and the drop do nothing).
    pub fn unpin(&mut self) -> io::Result<()> {
        if !self.pinned {
            return Ok(());
        }
        sys::set_affinity(0, &self.original)?;
        self.pinned = false;
        Ok(())
    }
}

impl Drop for CpuPin {
    fn drop(&mut self) {
        if let Err(error) = self.unpin() {
            tracing::warn!(%error, "could not unpin the tracer thread");
        }
    }
}
