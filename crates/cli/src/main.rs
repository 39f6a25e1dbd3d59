//! `criu`: the CRIU-compatible command line, a thin shell over criu-server.

fn main() {
    criu_server::cli::ensure_std_fds();
    let args: Vec<String> = std::env::args().collect();
    let engines = criu_server::Engines::builtin();
    std::process::exit(criu_server::cli::run(&args, &engines));
}
