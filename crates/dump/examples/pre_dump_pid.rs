//! Pre-dumps a process tree: `pre_dump_pid <pid> <images dir> [parent]`.

use criu_dump::{dump, DumpOptions};
use criu_image::ImageDir;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: pre_dump_pid <pid> <images dir> [parent]");
        std::process::exit(2);
    }
    let pid: i32 = args[1].parse().expect("pid");
    std::fs::create_dir_all(&args[2]).expect("images dir");
    let mut opts = DumpOptions::new(pid, ImageDir::open(&args[2]).expect("open images dir"));
    opts.pre_dump = true;
    opts.track_mem = true;
    opts.parent_img = args.get(3).cloned();
    match dump(&opts, &mut |_, _| Ok(())) {
        Ok(report) => println!("{report:?}"),
        Err(e) => {
            eprintln!("pre-dump failed: {e} (errno {:?})", e.errno());
            std::process::exit(1);
        }
    }
}
