//! Dumps a process tree: `dump_pid <pid> <images dir> [leave-running|leave-stopped|shell-job|tcp-established|ext-unix-sk]...`.

use criu_dump::{dump, DumpOptions};
use criu_image::ImageDir;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: dump_pid <pid> <images dir> [leave-running|leave-stopped|shell-job|tcp-established|ext-unix-sk]...");
        std::process::exit(2);
    }
    let pid: i32 = args[1].parse().expect("pid");
    std::fs::create_dir_all(&args[2]).expect("images dir");
    let mut opts = DumpOptions::new(pid, ImageDir::open(&args[2]).expect("open images dir"));
    for flag in &args[3..] {
        match flag.as_str() {
            "leave-running" => opts.leave_running = true,
            "leave-stopped" => opts.leave_stopped = true,
            "shell-job" => opts.shell_job = true,
            "tcp-established" => opts.tcp_established = true,
            "ext-unix-sk" => opts.ext_unix_sk = true,
            other => panic!("unknown flag {other}"),
        }
    }
    match dump(&opts, &mut |_, _| Ok(())) {
        Ok(report) => println!("{report:?}"),
        Err(e) => {
            eprintln!("dump failed: {e} (errno {:?})", e.errno());
            std::process::exit(1);
        }
    }
}
