//! A test subject for criu-pages' real-process tests and benchmark: it builds a precise memory
//! layout, prints where everything is (`name=start,len` lines, then `ready`), and then obeys
//! commands on stdin (`write <hex addr> <hex byte>` fills that page, answered by `ok`), until
//! stdin closes.
//!
//! Modes:
//! - `layout <dir>`: anonymous pages with patterns and holes, a PROT_NONE region holding data, a
//!   private file mapping with one COW-ed page, a shared file mapping, a heap block, a shared
//!   anonymous region, and a page that is only read (mapped to the zero page).
//! - `bench <MiB>`: one anonymous region of that size, every page written.
//! - `uffd <pages>`: an anonymous region registered for async uffd-wp (the fd is kept open).
//! - `sparse <pages>`: one anonymous region where every 64th page is never touched (one PAGEMAP_SCAN
//!   region per 63 pages, more than one batch of regions).
//! - `uffd-sparse <pages>`: the same, but only the first half of the pages is written before
//!   registration (the rest is never touched).
#![deny(unsafe_code)]

use std::io::{BufRead, Write};
use std::path::Path;

const PAGE: usize = 4096;
/// MADV_GUARD_INSTALL (linux/mman.h, 6.13+).
const MADV_GUARD_INSTALL: i32 = 102;

fn pattern_byte(region_seed: u8, page: usize) -> u8 {
    region_seed.wrapping_add((page as u8).wrapping_mul(7)) | 1
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut out = std::io::stdout().lock();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    // Mappings must live until exit; leak them.
    match mode {
        "layout" => layout(Path::new(&args[2]), &mut out),
        "bench" => {
            let mib: usize = args[2].parse().expect("MiB count");
            let len = mib << 20;
            let region = sys::map_anon(len, libc::PROT_READ | libc::PROT_WRITE, false);
            let memory = sys::slice_mut(region, len);
            for (page, chunk) in memory.chunks_mut(PAGE).enumerate() {
                chunk.fill(pattern_byte(0x40, page));
            }
            writeln!(out, "bench={region:#x},{len:#x}").unwrap();
        }
        "sparse" => {
            let pages: usize = args[2].parse().expect("page count");
            let len = pages * PAGE;
            let region = sys::map_anon(len, libc::PROT_READ | libc::PROT_WRITE, false);
            let memory = sys::slice_mut(region, len);
            for (page, chunk) in memory.chunks_mut(PAGE).enumerate() {
                if page % 64 != 63 {
                    chunk.fill(pattern_byte(0x20, page));
                }
            }
            writeln!(out, "sparse={region:#x},{len:#x}").unwrap();
        }
        "uffd" | "uffd-sparse" => {
            let pages: usize = args[2].parse().expect("page count");
            let len = pages * PAGE;
            let region = sys::map_anon(len, libc::PROT_READ | libc::PROT_WRITE, false);
            let filled = if mode == "uffd" {
                len
            } else {
                pages / 2 * PAGE
            };
            sys::slice_mut(region, filled).fill(0x11);
            let uffd = sys::register_uffd_wp_async(region, len);
            writeln!(out, "uffd={region:#x},{len:#x}").unwrap();
            writeln!(out, "uffd_fd={uffd}").unwrap(); // stays open until exit
        }
        other => panic!("unknown mode {other:?}"),
    }
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    drop(out);
    serve_commands();
}

fn serve_commands() {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["write", addr, byte] => {
                let addr = usize::from_str_radix(addr.trim_start_matches("0x"), 16).unwrap();
                let byte = u8::from_str_radix(byte.trim_start_matches("0x"), 16).unwrap();
                sys::slice_mut(addr, PAGE).fill(byte);
            }
            _ => panic!("unknown command {line:?}"),
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "ok").unwrap();
        out.flush().unwrap();
    }
}

fn layout(dir: &Path, out: &mut impl Write) {
    let rw = libc::PROT_READ | libc::PROT_WRITE;

    // 64 anonymous pages: a few written with patterns, one written with zeroes, one only read.
    let anon_len = 64 * PAGE;
    let anon = sys::map_anon(anon_len, rw, false);
    let memory = sys::slice_mut(anon, anon_len);
    for page in [0usize, 1, 2, 10, 40, 63] {
        memory[page * PAGE..(page + 1) * PAGE].fill(pattern_byte(0xa0, page));
        memory[page * PAGE] = page as u8; // first byte distinguishes pages
    }
    memory[30 * PAGE..31 * PAGE].fill(0);
    memory[30 * PAGE + 5] = 0; // a write of zeroes still makes a real page
    let zero_read = sys::read_byte(anon + 20 * PAGE);
    assert_eq!(zero_read, 0);
    writeln!(out, "anon={anon:#x},{anon_len:#x}").unwrap();

    // PROT_NONE region: pages 0 and 2 hold data, then the protection is dropped.
    let none_len = 4 * PAGE;
    let none = sys::map_anon(none_len, rw, false);
    let memory = sys::slice_mut(none, none_len);
    memory[0..PAGE].fill(0x5a);
    memory[2 * PAGE..3 * PAGE].fill(0xa5);
    sys::protect(none, none_len, libc::PROT_NONE);
    writeln!(out, "protnone={none:#x},{none_len:#x}").unwrap();

    // Private file mapping: every page read (page cache), page 1 written (COW).
    let private_path = dir.join("private file with spaces");
    std::fs::write(&private_path, vec![b'F'; 4 * PAGE]).unwrap();
    let private_len = 4 * PAGE;
    let private = sys::map_file(&private_path, private_len, rw, false);
    for page in 0..4 {
        assert_eq!(sys::read_byte(private + page * PAGE), b'F');
    }
    sys::slice_mut(private + PAGE, PAGE).fill(0xc0);
    writeln!(out, "fileprivate={private:#x},{private_len:#x}").unwrap();

    // Shared file mapping, written.
    let shared_path = dir.join("shared-file");
    std::fs::write(&shared_path, vec![b'S'; 2 * PAGE]).unwrap();
    let shared_len = 2 * PAGE;
    let shared = sys::map_file(&shared_path, shared_len, rw, true);
    sys::slice_mut(shared, PAGE).fill(0x33);
    writeln!(out, "fileshared={shared:#x},{shared_len:#x}").unwrap();

    // Shared anonymous memory, written.
    let shanon_len = 2 * PAGE;
    let shanon = sys::map_anon(shanon_len, rw, true);
    sys::slice_mut(shanon, shanon_len).fill(0x77);
    writeln!(out, "anonshared={shanon:#x},{shanon_len:#x}").unwrap();

    // Shared anonymous memory with holes: pages 1, 5 and 6 written.
    let holes_len = 8 * PAGE;
    let holes = sys::map_anon(holes_len, rw, true);
    for page in [1usize, 5, 6] {
        sys::slice_mut(holes + page * PAGE, PAGE).fill(0x80 + page as u8);
    }
    writeln!(out, "shmemholes={holes:#x},{holes_len:#x}").unwrap();

    // Guard region: 4 written pages, a MADV_GUARD_INSTALL marker on page 2 (it replaces the data).
    let guard_len = 4 * PAGE;
    let guard = sys::map_anon(guard_len, rw, false);
    sys::slice_mut(guard, guard_len).fill(0x6b);
    sys::advise(guard + 2 * PAGE, PAGE, MADV_GUARD_INSTALL);
    writeln!(out, "guard={guard:#x},{guard_len:#x}").unwrap();

    // Transparent huge pages: 2 MiB only read (the huge zero page), 2 MiB with one byte written.
    let huge = 2 << 20;
    let thp_area = sys::map_anon(3 * huge, rw, false);
    let thp = thp_area.next_multiple_of(huge);
    sys::advise(thp, 2 * huge, libc::MADV_HUGEPAGE);
    assert_eq!(sys::read_byte(thp), 0);
    sys::slice_mut(thp + huge, 1)[0] = 0x3c;
    writeln!(out, "thp={thp:#x},{:#x}", 2 * huge).unwrap();

    // A heap block (small enough for brk, not mmap).
    let block = vec![0x99u8; 16 * PAGE].leak();
    let heap = block.as_ptr() as usize;
    writeln!(out, "heapblock={heap:#x},{:#x}", block.len()).unwrap();
}

#[allow(unsafe_code)]
mod sys {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    pub fn map_anon(len: usize, prot: i32, shared: bool) -> usize {
        let kind = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        // SAFETY: a new anonymous mapping at a kernel-chosen address touches nothing existing.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                kind | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED, "mmap anon {len}");
        addr as usize
    }

    pub fn map_file(path: &Path, len: usize, prot: i32, shared: bool) -> usize {
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `name` is a valid C string.
        let fd = unsafe { libc::open(name.as_ptr(), libc::O_RDWR) };
        assert!(fd >= 0, "open {path:?}");
        let kind = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        // SAFETY: a new file mapping at a kernel-chosen address touches nothing existing.
        let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, kind, fd, 0) };
        assert_ne!(addr, libc::MAP_FAILED, "mmap {path:?}");
        // SAFETY: `fd` is ours; the mapping keeps its own file reference.
        unsafe { libc::close(fd) };
        addr as usize
    }

    pub fn advise(addr: usize, len: usize, advice: i32) {
        // SAFETY: the range is a mapping this program created; advice never unmaps it.
        let ret = unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
        assert_eq!(
            ret,
            0,
            "madvise {advice}: {}",
            std::io::Error::last_os_error()
        );
    }

    pub fn protect(addr: usize, len: usize, prot: i32) {
        // SAFETY: the range is a mapping this program created and no reference into it is live.
        let ret = unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) };
        assert_eq!(ret, 0, "mprotect");
    }

    /// A mutable view of a mapping this program created and leaked for its whole life.
    pub fn slice_mut(addr: usize, len: usize) -> &'static mut [u8] {
        // SAFETY: callers pass readable+writable mappings they created and never unmap; the
        // program is single-threaded and never keeps two views of one range alive.
        unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) }
    }

    pub fn read_byte(addr: usize) -> u8 {
        // SAFETY: `addr` lies in a readable mapping this program created.
        unsafe { std::ptr::read_volatile(addr as *const u8) }
    }

    #[repr(C)]
    struct UffdioApi {
        api: u64,
        features: u64,
        ioctls: u64,
    }

    #[repr(C)]
    struct UffdioRegister {
        start: u64,
        len: u64,
        mode: u64,
        ioctls: u64,
    }

    const UFFD_API: u64 = 0xaa;
    const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
    const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
    const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
    const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
    const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;

    /// Registers `[addr, addr+len)` for async uffd-wp and returns the uffd (kept open).
    pub fn register_uffd_wp_async(addr: usize, len: usize) -> i32 {
        // SAFETY: plain syscall creating a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) } as i32;
        assert!(fd >= 0, "userfaultfd: {}", std::io::Error::last_os_error());
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
            ioctls: 0,
        };
        // SAFETY: `api` is a valid uffdio_api the kernel reads and updates.
        let ret = unsafe { libc::ioctl(fd, UFFDIO_API as _, &mut api as *mut UffdioApi) };
        assert_eq!(ret, 0, "UFFDIO_API: {}", std::io::Error::last_os_error());
        let mut register = UffdioRegister {
            start: addr as u64,
            len: len as u64,
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: `register` is a valid uffdio_register the kernel reads and updates.
        let ret = unsafe {
            libc::ioctl(
                fd,
                UFFDIO_REGISTER as _,
                &mut register as *mut UffdioRegister,
            )
        };
        assert_eq!(
            ret,
            0,
            "UFFDIO_REGISTER: {}",
            std::io::Error::last_os_error()
        );
        fd
    }
}
