//! `cargo xtask demo`: the main job, end to end. Starts a sample counter process, checkpoints it with
//! our `criu dump` (which kills it), shows the images with our `crit`, restores it with `criu restore`
//! and shows that it carries on counting with the same pid.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::setup;

pub fn run(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err(format!("`demo` takes no arguments, got {args:?}"));
    }
    let (criu, crit) = setup::build_release_tools()?;
    let counter = setup::built_binary("release", "demo-counter");

    let work = setup::target_dir().join("demo");
    // A leftover from an earlier run would mix old images with new ones.
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .map_err(|error| format!("cannot clear {}: {error}", work.display()))?;
    }
    let images = work.join("images");
    std::fs::create_dir_all(&images)
        .map_err(|error| format!("cannot create {}: {error}", images.display()))?;
    let output = work.join("counter.out");

    // `setsid` makes the counter a session leader, as CRIU requires of a tree root without --shell-job.
    let child = Command::new("setsid")
        .arg(&counter)
        .arg(&output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", counter.display()))?;
    let pid = child.id();
    println!(
        "demo: started the counter, pid {pid}; it appends to {}",
        output.display()
    );
    wait_for_lines(&output, 3, Duration::from_secs(5))?;
    println!("demo: before the checkpoint:\n{}", last_lines(&output, 2));

    let dump_started = Instant::now();
    run_step(
        Command::new(&criu)
            .args(["dump", "-t", &pid.to_string(), "-D"])
            .arg(&images)
            .args(["-o", "dump.log", "-v4"]),
    )?;
    println!(
        "demo: `criu dump` wrote the images in {:.1} ms and killed the counter",
        dump_started.elapsed().as_secs_f64() * 1e3
    );
    // We are the counter's parent: reap it so its pid is free for the restore.
    let mut child = child;
    let _ = child.wait();

    list_images(&images, &crit)?;
    let lines_before = count_lines(&output);
    std::thread::sleep(Duration::from_millis(600));
    if count_lines(&output) != lines_before {
        return Err("the counter still ran after the dump".to_owned());
    }

    let restore_started = Instant::now();
    let pidfile = work.join("restored.pid");
    run_step(
        Command::new(&criu)
            .args(["restore", "-d", "-D"])
            .arg(&images)
            .args(["-o", "restore.log", "-v4", "--pidfile"])
            .arg(&pidfile),
    )?;
    println!(
        "demo: `criu restore` brought it back in {:.1} ms",
        restore_started.elapsed().as_secs_f64() * 1e3
    );
    let restored_pid = std::fs::read_to_string(&pidfile)
        .map_err(|error| format!("cannot read {}: {error}", pidfile.display()))?;
    let restored_pid = restored_pid.trim().to_owned();
    wait_for_lines(&output, lines_before + 3, Duration::from_secs(5))?;
    println!(
        "demo: after the restore (pid {restored_pid}):\n{}",
        last_lines(&output, 3)
    );
    if restored_pid != pid.to_string() {
        return Err(format!(
            "restored pid {restored_pid} differs from the original {pid}"
        ));
    }
    if let Ok(raw) = restored_pid.parse::<i32>() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(raw),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    println!("demo: done; images and logs are in {}", work.display());
    Ok(())
}

fn run_step(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|error| format!("cannot start {command:?}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {status} (see its log in the images directory)"
        ))
    }
}

fn list_images(images: &Path, crit: &Path) -> Result<(), String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(images)
        .map_err(|error| format!("cannot list {}: {error}", images.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    names.sort();
    println!("demo: images written:");
    for path in &names {
        let size = std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("  {name:<24} {size:>9} bytes");
    }
    println!("demo: `crit x {} ps`:", images.display());
    let _ = Command::new(crit).arg("x").arg(images).arg("ps").status();
    Ok(())
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

fn last_lines(path: &Path, count: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn wait_for_lines(path: &Path, wanted: usize, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while count_lines(path) < wanted {
        if Instant::now() > deadline {
            return Err(format!(
                "{} has {} lines after {timeout:?}, expected at least {wanted}",
                path.display(),
                count_lines(path)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
