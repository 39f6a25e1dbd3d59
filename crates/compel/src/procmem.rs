//! Another process's memory through /proc/PID/mem (FOLL_FORCE: works on read-only and PROT_NONE pages).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use crate::{CompelError, Pid};

/// An open /proc/PID/mem of one process.
#[derive(Debug)]
pub struct ProcMem {
    pid: Pid,
    file: File,
}

impl ProcMem {
    /// Opens /proc/PID/mem for reading and writing (the caller must be allowed to ptrace the process).
    pub fn open(pid: Pid) -> Result<Self, CompelError> {
        let path = format!("/proc/{pid}/mem");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| CompelError::proc(path, e))?;
        Ok(ProcMem { pid, file })
    }

    /// Opens /proc/PID/mem read-only.
    pub fn open_read_only(pid: Pid) -> Result<Self, CompelError> {
        let path = format!("/proc/{pid}/mem");
        let file = File::open(&path).map_err(|e| CompelError::proc(path, e))?;
        Ok(ProcMem { pid, file })
    }

    /// A second handle on the same open file (dup): cheaper than opening /proc/PID/mem again, e.g. for
    /// one [`crate::RemoteSession`] per thread of a process.
    pub fn try_clone(&self) -> Result<Self, CompelError> {
        let file = self.file.try_clone().map_err(|source| CompelError::Mem {
            op: "dup",
            pid: self.pid,
            addr: 0,
            len: 0,
            source,
        })?;
        Ok(ProcMem {
            pid: self.pid,
            file,
        })
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Reads up to `buf.len()` bytes at `addr`; returns how many were read (short at an unmapped page).
    pub fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<usize, CompelError> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], addr + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if done > 0 && e.raw_os_error() == Some(libc::EIO) => break,
                Err(source) => {
                    return Err(CompelError::Mem {
                        op: "read",
                        pid: self.pid,
                        addr,
                        len: buf.len(),
                        source,
                    })
                }
            }
        }
        Ok(done)
    }

    /// Reads exactly `buf.len()` bytes at `addr`.
    pub fn read_exact_at(&self, addr: u64, buf: &mut [u8]) -> Result<(), CompelError> {
        let done = self.read_at(addr, buf)?;
        if done != buf.len() {
            return Err(CompelError::ShortMem {
                op: "read",
                pid: self.pid,
                addr,
                len: buf.len(),
                done,
            });
        }
        Ok(())
    }

    /// Reads `len` bytes at `addr` into a new vector.
    pub fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, CompelError> {
        let mut buf = vec![0u8; len];
        self.read_exact_at(addr, &mut buf)?;
        Ok(buf)
    }

    /// Writes all of `data` at `addr`.
    pub fn write_all_at(&self, addr: u64, data: &[u8]) -> Result<(), CompelError> {
        let mut done = 0;
        while done < data.len() {
            match self.file.write_at(&data[done..], addr + done as u64) {
                Ok(0) => {
                    return Err(CompelError::ShortMem {
                        op: "write",
                        pid: self.pid,
                        addr,
                        len: data.len(),
                        done,
                    })
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(CompelError::Mem {
                        op: "write",
                        pid: self.pid,
                        addr,
                        len: data.len(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}
