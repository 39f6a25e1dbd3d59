//! `/proc/PID/limits`: the resource limits of a task.
//!
//! Why not prlimit64(pid, res, NULL, &old): the kernel checks the caller
//! against the target's uids even for a read, and without CAP_SYS_RESOURCE a
//! root dumper gets EPERM for a task running as another user. The limits file
//! is world-readable and exact: the kernel prints each value with `%lu` and
//! RLIM_INFINITY as `unlimited`, so every value round-trips.
//!
//! Layout (fs/proc/base.c): a header line, then one line per resource in
//! resource-number order, `%-25s %-20s %-20s %-10s`: the name padded to 25
//! columns and a space, then soft and hard limit, then the unit (absent for
//! the priorities). Names contain spaces, so the values are read after the
//! fixed 26-column name field.

use super::{parse_error, proc_path, read_text, ProcError};

/// Number of resources (RLIM_NLIMITS) the kernel prints and CRIU records.
pub const RLIMIT_COUNT: usize = 16;

/// The width of the name field plus its separating space.
const NAME_COLUMNS: usize = 26;

/// Parses the text of a limits file into (soft, hard) pairs indexed by
/// resource number; `unlimited` is RLIM_INFINITY (`u64::MAX`).
pub fn parse_limits(text: &str, path: &str) -> Result<Vec<(u64, u64)>, ProcError> {
    let mut lines = text.lines();
    match lines.next() {
        Some(header) if header.starts_with("Limit") => {}
        other => {
            return Err(parse_error(
                path,
                format!("expected the \"Limit\" header, found {other:?}"),
            ))
        }
    }
    let mut limits = Vec::with_capacity(RLIMIT_COUNT);
    for line in lines.take(RLIMIT_COUNT) {
        let bad = |what: &str| parse_error(path, format!("{what} in line {line:?}"));
        let values = line
            .get(NAME_COLUMNS..)
            .ok_or_else(|| bad("no values after the name column"))?;
        let mut fields = values.split_whitespace();
        let soft = parse_limit(fields.next()).ok_or_else(|| bad("bad soft limit"))?;
        let hard = parse_limit(fields.next()).ok_or_else(|| bad("bad hard limit"))?;
        limits.push((soft, hard));
    }
    if limits.len() != RLIMIT_COUNT {
        return Err(parse_error(
            path,
            format!("expected {RLIMIT_COUNT} limits, found {}", limits.len()),
        ));
    }
    Ok(limits)
}

fn parse_limit(field: Option<&str>) -> Option<u64> {
    match field? {
        "unlimited" => Some(libc::RLIM_INFINITY),
        number => number.parse().ok(),
    }
}

/// Reads `/proc/PID/limits`.
pub fn read_limits(pid: i32) -> Result<Vec<(u64, u64)>, ProcError> {
    let path = proc_path(pid, "limits");
    let text = read_text(path.clone())?;
    parse_limits(&text, &path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max data size             unlimited            unlimited            bytes     
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max resident set          unlimited            unlimited            bytes     
Max processes             95542                95542                processes 
Max open files            1024                 524288               files     
Max locked memory         8388608              8388608              bytes     
Max address space         unlimited            unlimited            bytes     
Max file locks            unlimited            unlimited            locks     
Max pending signals       95542                95542                signals   
Max msgqueue size         819200               819200               bytes     
Max nice priority         0                    0                    
Max realtime priority     0                    0                    
Max realtime timeout      18446744073709551614 unlimited            us        
";

    #[test]
    fn every_resource_in_order_with_unlimited_as_infinity() {
        let limits = parse_limits(SAMPLE, "limits").unwrap();
        assert_eq!(limits.len(), RLIMIT_COUNT);
        assert_eq!(limits[0], (u64::MAX, u64::MAX));
        assert_eq!(limits[libc::RLIMIT_STACK as usize], (8388608, u64::MAX));
        assert_eq!(limits[libc::RLIMIT_NOFILE as usize], (1024, 524288));
        assert_eq!(limits[libc::RLIMIT_RTPRIO as usize], (0, 0));
        // A 20-digit value fills its column and still parses exactly.
        assert_eq!(
            limits[libc::RLIMIT_RTTIME as usize],
            (u64::MAX - 1, u64::MAX)
        );
    }

    #[test]
    fn matches_getrlimit_of_ourselves() {
        use nix::sys::resource::{getrlimit, Resource};
        let limits = read_limits(std::process::id() as i32).unwrap();
        let resources = [
            Resource::RLIMIT_CPU,
            Resource::RLIMIT_FSIZE,
            Resource::RLIMIT_DATA,
            Resource::RLIMIT_STACK,
            Resource::RLIMIT_CORE,
            Resource::RLIMIT_RSS,
            Resource::RLIMIT_NPROC,
            Resource::RLIMIT_NOFILE,
            Resource::RLIMIT_MEMLOCK,
            Resource::RLIMIT_AS,
            Resource::RLIMIT_LOCKS,
            Resource::RLIMIT_SIGPENDING,
            Resource::RLIMIT_MSGQUEUE,
            Resource::RLIMIT_NICE,
            Resource::RLIMIT_RTPRIO,
            Resource::RLIMIT_RTTIME,
        ];
        for (number, resource) in resources.into_iter().enumerate() {
            assert_eq!(resource as usize, number);
            assert_eq!(limits[number], getrlimit(resource).unwrap(), "{resource:?}");
        }
    }

    #[test]
    fn truncated_or_garbled_files_are_errors_naming_the_file() {
        let short: String = SAMPLE.lines().take(5).collect::<Vec<_>>().join("\n");
        let err = parse_limits(&short, "/proc/9/limits").unwrap_err();
        assert!(err.to_string().contains("/proc/9/limits"), "{err}");
        assert!(err.to_string().contains("expected 16 limits"), "{err}");
        let garbled = SAMPLE.replace("95542                95542", "lots                 95542");
        let err = parse_limits(&garbled, "/proc/9/limits").unwrap_err();
        assert!(err.to_string().contains("bad soft limit"), "{err}");
        assert!(parse_limits("", "x").is_err());
    }
}
