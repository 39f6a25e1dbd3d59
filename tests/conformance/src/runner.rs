//! Runs each program in each mode: start it, checkpoint it with our criu, check the images,
//! restore it (once or twice), then let it verify its own state.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::catalog::{Kind, Program};
use crate::engine::{Criu, Failure};
use crate::images::Crit;
use crate::launch::{self, CellDir, Instance, LaunchOptions};
use crate::process::{self, Exit};
use crate::report::{Cell, Mode, Outcome, Report};

/// What to run and with which tools.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our criu.
    pub criu: Criu,
    /// crit used to decode the images.
    pub crit: Crit,
    /// Programs to run.
    pub programs: Vec<&'static Program>,
    /// Modes to run.
    pub modes: Vec<Mode>,
    /// Timeout for one step (ready, one criu operation).
    pub timeout: Duration,
    /// How long a program may take to verify after SIGTERM.
    pub verdict_timeout: Duration,
    /// Total time for the run; cells left when it is used up are not run and count as failures.
    pub budget: Duration,
    /// Size of big_memory in MiB.
    pub big_mb: u64,
    /// Where cells and the report go.
    pub out_dir: PathBuf,
    /// Keep pages-*.img of passed cells too (by default only failed cells keep them).
    pub keep_pages: bool,
}

/// Runs every selected cell sequentially (pids must not collide) and returns the report.
pub fn run(config: &Config, mut progress: impl FnMut(&Cell)) -> Report {
    let mut cells = Vec::new();
    let run_started = Instant::now();
    for program in &config.programs {
        for &mode in &config.modes {
            let started = Instant::now();
            let dir = config
                .out_dir
                .join("runs")
                .join(program.name)
                .join(mode.name());
            let outcome = if run_started.elapsed() >= config.budget {
                Outcome::Fail(format!(
                    "not run: the time budget of {:?} was used up",
                    config.budget
                ))
            } else {
                run_cell(config, program, mode, &dir)
            };
            let cell = Cell {
                program: program.name.to_string(),
                mode,
                outcome,
                seconds: started.elapsed().as_secs_f64(),
                dir,
            };
            progress(&cell);
            cells.push(cell);
        }
    }
    Report {
        criu: config.criu.bin.clone(),
        modes: config.modes.clone(),
        cells,
    }
}

/// Extra time for big_memory: about 1 s per GiB for each of generate, checksum, dump and restore
/// on these machines, with a wide margin.
fn big_allowance(config: &Config, program: &Program) -> Duration {
    if program.kind == Kind::Big {
        Duration::from_secs(config.big_mb / 1024 * 60 + 30)
    } else {
        Duration::ZERO
    }
}

fn timeout_for(config: &Config, program: &Program) -> Duration {
    config.timeout + big_allowance(config, program)
}

fn verdict_timeout_for(config: &Config, program: &Program) -> Duration {
    config.verdict_timeout + big_allowance(config, program)
}

fn run_cell(
    config: &Config,
    program: &'static Program,
    mode: Mode,
    dir: &std::path::Path,
) -> Outcome {
    if matches!(mode, Mode::Rpc | Mode::RpcService)
        && matches!(program.kind, Kind::SelfDump | Kind::ShellJob)
    {
        let why = match program.kind {
            Kind::SelfDump => "the program itself is the RPC client",
            _ => "an RPC worker has no terminal to restore a shell job onto (pycriu's swrk closes stdio)",
        };
        return Outcome::NotApplicable(why.into());
    }
    if mode == Mode::PreDump && program.kind == Kind::SelfDump {
        return Outcome::NotApplicable("the program dumps itself, without a pre-dump".into());
    }
    if let Err(err) = process::kill_everything_below_us(&BTreeSet::new()) {
        return Outcome::Fail(format!("leftovers of an earlier cell: {err}"));
    }
    let outcome = match CellDir::create(dir) {
        Ok(cell) => {
            let mut run = CellRun {
                config,
                program,
                mode,
                cell,
                timeout: timeout_for(config, program),
                verdict_timeout: verdict_timeout_for(config, program),
                image_problems: Vec::new(),
            };
            match run.execute() {
                Ok(()) if run.image_problems.is_empty() => Outcome::Pass,
                Ok(()) => Outcome::Fail(format!(
                    "state survived, but images: {}",
                    run.image_problems.join("; ")
                )),
                Err(outcome) if !run.image_problems.is_empty() => match outcome {
                    Outcome::NotYet(reason) | Outcome::Fail(reason) => Outcome::Fail(format!(
                        "{reason}; images: {}",
                        run.image_problems.join("; ")
                    )),
                    other => other,
                },
                Err(outcome) => outcome,
            }
        }
        Err(err) => Outcome::Fail(err.to_string()),
    };
    if let Err(err) = process::kill_everything_below_us(&BTreeSet::new()) {
        return match outcome {
            Outcome::Pass => Outcome::Fail(format!("cleanup: {err}")),
            other => other,
        };
    }
    if outcome == Outcome::Pass && !config.keep_pages {
        drop_page_files(&dir.join("images"));
        drop_page_files(&dir.join(PRE_DUMP_DIR));
    }
    outcome
}

/// The pre-dump's images directory inside a cell (a sibling of `images`), in [`Mode::PreDump`].
const PRE_DUMP_DIR: &str = "pre";

/// Removes the raw page files of a passed cell (5 GiB per run for big_memory alone); the logs and
/// every other image stay for inspection.
fn drop_page_files(images: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(images) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("pages-") && name.ends_with(".img") {
            // Best effort: a file that cannot be removed only costs disk space.
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

struct CellRun<'a> {
    config: &'a Config,
    program: &'static Program,
    mode: Mode,
    cell: CellDir,
    timeout: Duration,
    verdict_timeout: Duration,
    image_problems: Vec<String>,
}

fn engine(failure: Failure) -> Outcome {
    if failure.not_yet {
        Outcome::NotYet(failure.message)
    } else {
        Outcome::Fail(failure.message)
    }
}

impl CellRun<'_> {
    fn launch_options(&self) -> LaunchOptions {
        LaunchOptions {
            big_mb: self.config.big_mb,
            criu: self.config.criu.bin.clone(),
            selfdump_mode: if self.mode == Mode::LeaveRunning {
                "leave-running"
            } else {
                "kill"
            },
            timeout: self.timeout,
        }
    }

    fn execute(&mut self) -> Result<(), Outcome> {
        let mut criu = self.config.criu.clone();
        criu.timeout = self.timeout;
        let instance = launch::start(self.program, &self.cell, &self.launch_options())
            .map_err(|e| Outcome::Fail(format!("setup: {e}")))?;
        let root = instance.root;
        let mut tree: BTreeSet<i32> = process::descendants(root);
        tree.insert(root);

        self.checkpoint(&criu, &instance)?;
        if self.mode == Mode::LeaveRunning && !process::is_running(root) {
            return Err(Outcome::Fail(format!(
                "root {root} is not running after dump --leave-running"
            )));
        }
        // Kill whatever is left (leave-running tree, the shell job's pty_shell, swrk) and wait
        // until every pid is free again, reaping as subreaper.
        process::kill_everything_below_us(&tree)
            .map_err(|e| Outcome::Fail(format!("after dump: {e}")))?;
        self.image_problems = self.config.crit.check_dir(&self.cell.images);
        if self.mode == Mode::PreDump {
            let pre_dump = self.cell.root.join(PRE_DUMP_DIR);
            let problems = self.config.crit.check_dir(&pre_dump);
            self.image_problems.extend(
                problems
                    .into_iter()
                    .map(|problem| format!("pre-dump: {problem}")),
            );
        }

        let restored = self.restore(&criu, &instance, "restore.log")?;
        if restored != root {
            return Err(Outcome::Fail(format!(
                "restored root has pid {restored}, the dumped root was {root}"
            )));
        }
        if self.mode == Mode::RestoreTwice {
            std::thread::sleep(Duration::from_millis(50));
            if !process::is_running(root) {
                let exit = process::wait_exit(root, Duration::from_millis(100));
                return Err(Outcome::Fail(format!(
                    "first restore: root {root} died ({}): {}",
                    exit.map_or("?".into(), |e| e.to_string()),
                    launch::last_line(&self.cell.out_text())
                )));
            }
            process::kill_everything_below_us(&tree)
                .map_err(|e| Outcome::Fail(format!("after first restore: {e}")))?;
            let again = self.restore(&criu, &instance, "restore2.log")?;
            if again != root {
                return Err(Outcome::Fail(format!(
                    "second restore gave pid {again}, expected {root}"
                )));
            }
        }
        let verdict = launch::finish(
            root,
            instance.pty.as_ref(),
            true,
            &self.cell,
            self.verdict_timeout,
        );
        verdict.result().map_err(Outcome::Fail)
    }

    fn checkpoint(&self, criu: &Criu, instance: &Instance) -> Result<(), Outcome> {
        let root = instance.root;
        let images = &self.cell.images;
        match (self.program.kind, self.mode) {
            (Kind::SelfDump, _) => self.await_self_dump(root),
            (_, Mode::Rpc) => criu.rpc_dump(root, images).map_err(engine),
            (_, Mode::RpcService) => criu.service_dump(root, images).map_err(engine),
            (kind, Mode::PreDump) => {
                let pre_dump = self.cell.root.join(PRE_DUMP_DIR);
                std::fs::create_dir_all(&pre_dump).map_err(|e| {
                    Outcome::Fail(format!("cannot create {}: {e}", pre_dump.display()))
                })?;
                let shell_job = kind == Kind::ShellJob;
                criu.pre_dump(root, &pre_dump, shell_job).map_err(engine)?;
                if !process::is_running(root) {
                    return Err(Outcome::Fail(format!(
                        "root {root} is not running after pre-dump"
                    )));
                }
                // The tree runs between the two iterations, as in a live migration.
                std::thread::sleep(Duration::from_millis(20));
                let parent = format!("../{PRE_DUMP_DIR}");
                criu.dump(root, images, false, shell_job, Some(&parent))
                    .map_err(engine)
            }
            (kind, mode) => criu
                .dump(
                    root,
                    images,
                    mode == Mode::LeaveRunning,
                    kind == Kind::ShellJob,
                    None,
                )
                .map_err(engine),
        }
    }

    /// The self-dump program checkpoints itself right after ready: wait for it to be killed by the
    /// dump (kill mode) or to report the answer (leave-running), or to report a failed dump.
    fn await_self_dump(&self, root: i32) -> Result<(), Outcome> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let out = self.cell.out_text();
            if self.mode == Mode::LeaveRunning && out.contains("self-dump answered restored=0") {
                return Ok(());
            }
            if out.contains("self-dump failed") {
                let _ = process::wait_exit(root, Duration::from_secs(2));
                let failure = crate::engine::classify(
                    "self-dump",
                    "failed",
                    &self.cell.images.join("dump.log"),
                    &launch::last_line(&out),
                );
                return Err(engine(failure));
            }
            if !process::is_running(root) {
                let exit = process::wait_exit(root, Duration::from_secs(1));
                let out = self.cell.out_text();
                if out.contains("self-dump failed") {
                    continue;
                }
                return match exit {
                    Some(Exit::Signal(9)) | Some(Exit::Unknown)
                        if self.mode != Mode::LeaveRunning =>
                    {
                        Ok(())
                    }
                    other => Err(Outcome::Fail(format!(
                        "self-dumping program ended ({}) without an answer: {}",
                        other.map_or("?".into(), |e| e.to_string()),
                        launch::last_line(&out)
                    ))),
                };
            }
            if Instant::now() >= deadline {
                return Err(Outcome::Fail(format!(
                    "self-dump did not finish within {:?}",
                    self.timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn restore(&self, criu: &Criu, instance: &Instance, log: &str) -> Result<i32, Outcome> {
        let images = &self.cell.images;
        let pidfile = self.cell.root.join(format!("{log}.pid"));
        match (self.program.kind, self.mode) {
            (Kind::ShellJob, _) => {
                let pty = instance
                    .pty
                    .as_ref()
                    .ok_or_else(|| Outcome::Fail("shell job without a pty".into()))?;
                criu.restore_shell_job(images, log, &pidfile, pty)
                    .map(|(pid, _shell)| pid)
                    .map_err(engine)
            }
            (_, Mode::Rpc) => criu.rpc_restore(images, log).map_err(engine),
            (_, Mode::RpcService) => criu.service_restore(images, log).map_err(engine),
            _ => criu.restore(images, log, &pidfile).map_err(engine),
        }
    }
}

/// Runs one program WITHOUT checkpointing (ready → optional tamper → SIGTERM → verdict): the
/// self-check of the protocol. With `tamper`, the state is broken from outside before SIGTERM.
pub fn run_plain(
    program: &'static Program,
    dir: &std::path::Path,
    options: &LaunchOptions,
    tamper: bool,
) -> Result<(), String> {
    process::kill_everything_below_us(&BTreeSet::new()).map_err(|e| e.to_string())?;
    let cell = CellDir::create(dir).map_err(|e| e.to_string())?;
    let result = (|| {
        let instance = launch::start(program, &cell, options).map_err(|e| e.to_string())?;
        let mut type_line = true;
        if tamper {
            let spec = program
                .tamper
                .ok_or_else(|| format!("{} has no tamper", program.name))?;
            let out_text = cell.out_text();
            let target = crate::catalog::TamperTarget {
                pid: instance.root,
                work_dir: &cell.work,
                out_text: &out_text,
            };
            (spec.apply)(&target).map_err(|e| format!("tamper ({}): {e}", spec.what))?;
            type_line = program.kind != Kind::ShellJob;
        }
        launch::finish(
            instance.root,
            instance.pty.as_ref(),
            type_line,
            &cell,
            options.timeout,
        )
        .result()
    })();
    process::kill_everything_below_us(&BTreeSet::new()).map_err(|e| e.to_string())?;
    result
}
