//! The `criu` command line: CRIU's commands and flags over this library.
//! `criu` and `criu-server` both call [`run`].

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::check;
use crate::config;
use crate::cpuinfo;
use crate::engine::{DumpJob, Engines, PageServerJob, RestoreJob};
use crate::logging;
use crate::options::{apply_words, CommandLine, Options};
use crate::rpc::worker::{VERSION_MAJOR, VERSION_MINOR};
use crate::service;
use crate::swrk;

const USAGE: &str = "
Usage:
  criu dump|pre-dump -t PID [<options>]
  criu restore [<options>]
  criu check [--feature FEAT]
  criu page-server
  criu service [<options>]
  criu swrk <fd>
  criu cpuinfo dump|check

Commands:
  dump           checkpoint a process/tree identified by pid
  pre-dump       pre-dump task(s) minimizing their frozen time
  restore        restore a process/tree
  check          checks whether the kernel support is up-to-date
  page-server    launch page server
  service        launch service
  cpuinfo dump   writes cpu information into image file
  cpuinfo check  validates cpu information read from image file
";

/// Makes sure descriptors 0, 1 and 2 are open (on /dev/null if they were
/// closed), so no log file or socket opened later can land on them.
pub fn ensure_std_fds() {
    loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            Ok(file) if file.as_raw_fd() <= 2 => {
                // Keep it open for good: it now fills a standard slot.
                let _ = std::os::fd::IntoRawFd::into_raw_fd(file);
                continue;
            }
            _ => return,
        }
    }
}

/// Prints the usage to stdout, as CRIU's `pr_msg` does.
fn usage(error: bool) -> i32 {
    print!("{USAGE}");
    if error {
        println!("\nTry -h|--help for more info");
        1
    } else {
        0
    }
}

/// Runs the command line `args` (`args[0]` is the program name) and returns
/// the exit code.
pub fn run(args: &[String], engines: &Engines) -> i32 {
    logging::install();
    let words = args.get(1..).unwrap_or_default();
    if words.is_empty() {
        return usage(true);
    }
    if words.iter().any(|w| w == "--help" || w == "-h") {
        return usage(false);
    }
    // Pre-parse like CRIU: --no-default-config and --config FILE switch the
    // default files off before anything is parsed.
    let mut no_default_config = words.iter().any(|w| w == "--no-default-config");
    let mut config_file = None;
    for (index, word) in words.iter().enumerate() {
        if word == "--config" {
            config_file = words.get(index + 1).cloned();
            no_default_config = true;
        } else if let Some(file) = word.strip_prefix("--config=") {
            config_file = Some(file.to_string());
            no_default_config = true;
        }
    }

    let mut options = Options::default();
    if let Err(error) = config::apply_defaults(&mut options, no_default_config) {
        eprintln!("criu: {error}");
        return 1;
    }
    if let Some(file) = &config_file {
        if let Err(error) = config::apply_file(&mut options, Path::new(file)) {
            eprintln!("criu: {error}");
            return 1;
        }
    }
    // Requests served by `service`/`swrk` start from the config files only.
    let config_base = options.clone();
    let command = match apply_words(&mut options, words) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("criu: {error}");
            return usage(true);
        }
    };
    if command.help {
        return usage(false);
    }
    if command.version {
        println!("Version: {VERSION_MAJOR}.{VERSION_MINOR}");
        return 0;
    }
    logging::set_level(options.log_level);
    let Some(action) = command.operands.first().cloned() else {
        eprintln!("criu: command is required");
        return usage(true);
    };
    if action == "swrk" {
        if command.operands.len() != 2 {
            eprintln!("Usage: criu swrk <fd>");
            return 1;
        }
        let mut base = config_base;
        base.log_level = options.log_level;
        return swrk::run(&command.operands[1], &base, engines);
    }
    match dispatch(&action, &command, options, config_base, engines) {
        Ok(code) => code,
        Err(message) => {
            tracing::error!("{message}");
            1
        }
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd, String> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("Couldn't open image dir {}: {e}", path.display()))
}

fn dispatch(
    action: &str,
    command: &CommandLine,
    mut options: Options,
    config_base: Options,
    engines: &Engines,
) -> Result<i32, String> {
    let known = [
        "dump",
        "pre-dump",
        "restore",
        "check",
        "page-server",
        "service",
        "cpuinfo",
        "lazy-pages",
        "dedup",
        "exec",
        "show",
    ];
    if !known.contains(&action) {
        eprintln!("criu: unknown command: {action}");
        return Ok(usage(true));
    }
    let mut operands = command.operands[1..].to_vec();
    let mut cpuinfo_action = None;
    if action == "cpuinfo" {
        match operands.first().map(String::as_str) {
            Some(sub @ ("dump" | "check")) => cpuinfo_action = Some(sub.to_string()),
            Some(other) => return Err(format!("unknown cpuinfo sub-command: {other}")),
            None => return Err("cpuinfo requires an action: dump or check".into()),
        }
        operands.remove(0);
    }
    if command.exec_cmd {
        if operands.is_empty() {
            eprintln!("criu: --exec-cmd requires a command");
            return Ok(usage(true));
        }
        if action != "restore" {
            eprintln!("criu: --exec-cmd is available for the restore command only");
            return Ok(usage(true));
        }
        if options.restore_detached {
            eprintln!("criu: --restore-detached and --exec-cmd cannot be used together");
            return Ok(usage(true));
        }
        options.exec_cmd = operands;
    } else if !operands.is_empty() {
        eprintln!(
            "criu: excessive parameter{} for command {action}",
            if operands.len() > 1 { "s" } else { "" }
        );
        return Ok(usage(true));
    }

    let images_path = options
        .images_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let work_path = options
        .work_dir
        .clone()
        .unwrap_or_else(|| images_path.clone());
    let images_dir = if action == "service" {
        None
    } else {
        Some(open_dir(&images_path)?)
    };
    std::env::set_current_dir(&work_path)
        .map_err(|e| format!("Can't change directory to {}: {e}", work_path.display()))?;
    match &options.log_file {
        Some(file) => logging::open_file(Path::new(file)).map_err(|e| e.to_string())?,
        None => logging::set_output(logging::Output::Stderr),
    }
    if let Some(parent) = &options.prev_images_dir {
        tracing::info!("Will do snapshot from {parent}");
    }
    if options.restore_sibling && !options.restore_detached {
        return Err("--restore-sibling only makes sense with --restore-detached".into());
    }
    if !options.inherit_fds.is_empty() && action != "restore" {
        return Err("--inherit-fd is restore-only option".into());
    }

    match action {
        "check" => Ok(run_check(&options)),
        "service" => {
            let mut base = config_base;
            base.log_level = options.log_level;
            service::run(&options, &base, engines).map_err(|e| e.to_string())?;
            Ok(0)
        }
        "dump" | "pre-dump" => {
            let pre_dump = action == "pre-dump";
            let Some(pid) = options.tree else {
                return Err("Tree ID (-t/--tree PID) is required for this command".into());
            };
            if pre_dump && options.lazy_pages {
                return Err("Cannot pre-dump with --lazy-pages".into());
            }
            if pre_dump {
                options.track_mem = true;
                options.final_state = crate::options::FinalState::Alive;
            }
            let images_dir = images_dir.ok_or("no images dir")?;
            let job = DumpJob {
                options: &options,
                pid,
                images_dir: &images_dir,
                images_dir_path: images_path,
                service_socket_ino: None,
                pre_dump,
            };
            let scripts = options.action_scripts.clone();
            let mut notify = |action: &str, pid: Option<i32>| {
                crate::action_script::run(&scripts, action, pid).map_err(|e| e.to_string())
            };
            match engines.dump.dump(&job, &mut notify) {
                Ok(_) => Ok(0),
                Err(error) => Err(format!("Dumping FAILED: {error}")),
            }
        }
        "restore" => run_restore(
            &options,
            images_dir.ok_or("no images dir")?,
            images_path,
            engines,
        ),
        "page-server" => {
            let images_dir = images_dir.ok_or("no images dir")?;
            let job = PageServerJob {
                options: &options,
                images_dir: &images_dir,
            };
            let mut failure = None;
            let mut listening = |port: u16| {
                tracing::info!("Page server listening on port {port}");
                if options.restore_detached {
                    if let Err(e) = nix::unistd::daemon(true, false) {
                        failure = Some(format!("Can't daemonize the page server: {e}"));
                    }
                }
                if let Some(pidfile) = &options.pidfile {
                    if let Err(e) = service::write_pidfile(pidfile, nix::unistd::getpid().as_raw())
                    {
                        failure = Some(e.to_string());
                    }
                }
                if let Some(fd) = options.status_fd {
                    if let Err(e) = service::signal_status_fd(fd) {
                        failure = Some(e.to_string());
                    }
                }
            };
            engines
                .page_server
                .serve(&job, &mut listening)
                .map_err(|e| e.to_string())?;
            failure.map_or(Ok(0), Err)
        }
        "cpuinfo" => {
            let images_dir = images_dir.ok_or("no images dir")?;
            let result = if cpuinfo_action.as_deref() == Some("dump") {
                cpuinfo::dump(&images_dir)
            } else {
                cpuinfo::check(&images_dir, options.cpu_cap)
            };
            result.map(|()| 0).map_err(|e| e.to_string())
        }
        "exec" => Err("The \"exec\" action is deprecated by the Compel library.".into()),
        "show" => Err("The \"show\" action is deprecated by the CRIT utility.".into()),
        other => Err(format!("criu-rs does not implement the {other} command")),
    }
}

fn run_check(options: &Options) -> i32 {
    if let Some(feature) = &options.feature {
        if feature == "list" {
            println!("{}", check::feature_names().join(" "));
            return 0;
        }
        return match check::check_feature(feature) {
            Ok(()) => {
                println!("{feature} is supported");
                0
            }
            Err(why) => {
                tracing::error!("{feature} is not supported: {why}");
                1
            }
        };
    }
    let failed = check::check_all();
    if failed.is_empty() {
        if options.check_extra && check::check_extra() > 0 {
            println!(
                "Looks good but some kernel features are missing\n\
                 which, depending on your process tree, may cause\n\
                 dump or restore failure."
            );
        } else {
            println!("Looks good.");
        }
        0
    } else {
        tracing::warn!("Does not look good.");
        1
    }
}

fn run_restore(
    options: &Options,
    images_dir: OwnedFd,
    images_path: PathBuf,
    engines: &Engines,
) -> Result<i32, String> {
    if options.tree.is_some() {
        tracing::warn!("Using -t with criu restore is obsoleted");
    }
    let job = RestoreJob {
        options,
        images_dir: &images_dir,
        images_dir_path: images_path,
    };
    let scripts = options.action_scripts.clone();
    let mut notify = |action: &str, pid: Option<i32>| {
        crate::action_script::run(&scripts, action, pid).map_err(|e| e.to_string())
    };
    let outcome = engines
        .restore
        .restore(&job, &mut notify)
        .map_err(|e| format!("Restoring FAILED: {e}"))?;
    if let Some(pidfile) = &options.pidfile {
        service::write_pidfile(pidfile, outcome.root_pid).map_err(|e| e.to_string())?;
    }
    if !options.exec_cmd.is_empty() {
        let args: Vec<std::ffi::CString> = options
            .exec_cmd
            .iter()
            .map(|a| std::ffi::CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad --exec-cmd: {e}"))?;
        let error = nix::unistd::execvp(&args[0], &args).unwrap_err();
        return Err(format!(
            "Failed to exec command {}: {error}",
            options.exec_cmd[0]
        ));
    }
    if !options.restore_detached {
        // Like CRIU: stay the parent of the restored tree until it is gone,
        // reaping everything, then exit 0.
        loop {
            match nix::sys::wait::wait() {
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECHILD) => break,
                Err(error) => {
                    tracing::error!("Error while waiting for pids: {error}");
                    break;
                }
            }
        }
    }
    Ok(0)
}
