//! Starting a conformance program, waiting for "ready", and collecting its verdict.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::catalog::{Kind, Program};
use crate::process::{self, Exit};

/// Errors while starting a program or collecting its verdict.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A directory or file of the cell could not be prepared.
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The executable could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    /// No pty for a shell job.
    #[error("cannot open a pty for {program}: {source}")]
    Pty {
        program: &'static str,
        source: nix::Error,
    },
    /// The program did not become ready.
    #[error("{program} did not become ready: {reason}")]
    NotReady {
        program: &'static str,
        reason: String,
    },
    /// pty_shell did not report the exit of its command.
    #[error("pty_shell running {command} did not report its exit within {waited:?}")]
    ShellNoStatus { command: String, waited: Duration },
}

/// The files and directories of one cell (program × mode).
#[derive(Debug, Clone)]
pub struct CellDir {
    /// The cell's directory.
    pub root: PathBuf,
    /// The program's starting working directory.
    pub work: PathBuf,
    /// The images directory.
    pub images: PathBuf,
    /// The program's out file.
    pub out: PathBuf,
    /// The program's ready file.
    pub ready: PathBuf,
}

impl CellDir {
    /// Creates an empty cell directory at `root` (removing an old one).
    pub fn create(root: &Path) -> Result<Self, LaunchError> {
        let prepare = |path: &Path, source| LaunchError::Prepare {
            path: path.to_path_buf(),
            source,
        };
        if root.exists() {
            std::fs::remove_dir_all(root).map_err(|e| prepare(root, e))?;
        }
        let cell = CellDir {
            root: root.to_path_buf(),
            work: root.join("work"),
            images: root.join("images"),
            out: root.join("out"),
            ready: root.join("ready"),
        };
        for dir in [&cell.work, &cell.images] {
            std::fs::create_dir_all(dir).map_err(|e| prepare(dir, e))?;
        }
        Ok(cell)
    }

    /// The out file's contents (empty if missing).
    pub fn out_text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

/// A pty pair for shell jobs.
#[derive(Debug)]
pub struct Pty {
    /// The terminal side the runner types into.
    pub master: OwnedFd,
    /// The job's terminal.
    pub slave: OwnedFd,
}

impl Pty {
    fn open(program: &'static str) -> Result<Self, LaunchError> {
        let pair =
            nix::pty::openpty(None, None).map_err(|source| LaunchError::Pty { program, source })?;
        // openpty's fds are inheritable: without CLOEXEC the master would leak into the job (and
        // into every later child), which would then hold both ends of its own terminal.
        for fd in [&pair.master, &pair.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .map_err(|source| LaunchError::Pty { program, source })?;
        }
        Ok(Pty {
            master: pair.master,
            slave: pair.slave,
        })
    }

    fn stdio(&self) -> Result<Stdio, std::io::Error> {
        Ok(Stdio::from(self.slave.try_clone()?))
    }
}

/// Launch parameters that do not depend on the program.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Size of the big memory test in MiB.
    pub big_mb: u64,
    /// Our criu binary (the self-dump program execs it as `criu swrk`).
    pub criu: PathBuf,
    /// "kill" or "leave-running" for the self-dump program.
    pub selfdump_mode: &'static str,
    /// How long to wait for ready / for the verdict.
    pub timeout: Duration,
}

/// A started program.
#[derive(Debug)]
pub struct Instance {
    /// The program.
    pub program: &'static Program,
    /// The pid written to the ready file: the root of the tree that is checkpointed.
    pub root: i32,
    /// The pid the runner spawned (pty_shell for a shell job, else `root`).
    pub spawned: i32,
    /// The terminal of a shell job.
    pub pty: Option<Pty>,
}

/// Starts `program` in `cell` and waits until it is ready.
pub fn start(
    program: &'static Program,
    cell: &CellDir,
    options: &LaunchOptions,
) -> Result<Instance, LaunchError> {
    let mut argv: Vec<OsString> = vec![cell.out.clone().into(), cell.ready.clone().into()];
    argv.extend(program.args.iter().map(OsString::from));
    if program.kind == Kind::SelfDump {
        argv.push(options.criu.clone().into());
        argv.push(cell.images.clone().into());
        argv.push(options.selfdump_mode.into());
    }
    let mut pty = None;
    let mut command = if program.kind == Kind::ShellJob {
        let terminal = Pty::open(program.name)?;
        let mut command = Command::new(crate::catalog::pty_shell_path());
        command
            .arg(cell.root.join("shell.status"))
            .arg(program.path())
            .args(&argv);
        let stdio = |t: &Pty| {
            t.stdio().map_err(|e| LaunchError::Prepare {
                path: "pty".into(),
                source: e,
            })
        };
        command
            .stdin(stdio(&terminal)?)
            .stdout(stdio(&terminal)?)
            .stderr(stdio(&terminal)?);
        pty = Some(terminal);
        command
    } else {
        let mut command = Command::new(program.path());
        command
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    command.current_dir(&cell.work);
    for (key, value) in program.env {
        command.env(key, value);
    }
    if program.kind == Kind::Big {
        command.env("CONF_BIG_MB", options.big_mb.to_string());
    }
    let child = command.spawn().map_err(|source| LaunchError::Spawn {
        program: program.path(),
        source,
    })?;
    let spawned = child.id() as i32;
    // The child is reaped with waitpid by pid (process::wait_exit), not through `Child`.
    drop(child);
    let root = wait_ready(program, cell, spawned, options.timeout)?;
    if program.kind != Kind::ShellJob && root != spawned {
        return Err(LaunchError::NotReady {
            program: program.name,
            reason: format!("ready file names pid {root}, spawned {spawned}"),
        });
    }
    Ok(Instance {
        program,
        root,
        spawned,
        pty,
    })
}

fn wait_ready(
    program: &'static Program,
    cell: &CellDir,
    spawned: i32,
    timeout: Duration,
) -> Result<i32, LaunchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(&cell.ready).unwrap_or_default();
        if let Some(pid) = text
            .strip_prefix("ready ")
            .and_then(|rest| rest.trim().parse::<i32>().ok())
        {
            return Ok(pid);
        }
        if !process::is_running(spawned) {
            let exit = process::wait_exit(spawned, Duration::from_secs(1));
            return Err(LaunchError::NotReady {
                program: program.name,
                reason: format!(
                    "it ended ({}) before ready: {}",
                    exit.map_or("?".into(), |e| e.to_string()),
                    last_line(&cell.out_text())
                ),
            });
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::NotReady {
                program: program.name,
                reason: format!("no ready file after {timeout:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The last non-empty line of a text.
pub fn last_line(text: &str) -> String {
    crate::engine::printable(
        text.lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or(""),
    )
}

/// What the program reported after SIGTERM.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// How the root ended (`None`: it did not end in time).
    pub exit: Option<Exit>,
    /// Last line of the out file.
    pub last_line: String,
    /// Why no verdict came, when the runner could tell (e.g. the root stays stopped).
    pub problem: Option<String>,
}

impl Verdict {
    /// `Ok` on PASS, otherwise what went wrong.
    pub fn result(&self) -> Result<(), String> {
        match self.exit {
            None => Err(format!(
                "no verdict: {} (last out line '{}')",
                self.problem
                    .as_deref()
                    .unwrap_or("the test did not exit after SIGTERM"),
                self.last_line
            )),
            Some(exit)
                if self.last_line == "PASS" && matches!(exit, Exit::Code(0) | Exit::Unknown) =>
            {
                Ok(())
            }
            Some(exit) if self.last_line.starts_with("FAIL") => {
                Err(format!("{} ({exit})", self.last_line))
            }
            Some(exit) => Err(format!("{exit}, last out line '{}'", self.last_line)),
        }
    }
}

/// Types the shell job's expected line (when `type_line`), sends SIGTERM to `root` and waits for the verdict.
pub fn finish(
    root: i32,
    pty: Option<&Pty>,
    type_line: bool,
    cell: &CellDir,
    timeout: Duration,
) -> Verdict {
    if let (Some(pty), true) = (pty, type_line) {
        let typed = pty
            .master
            .try_clone()
            .and_then(|fd| std::fs::File::from(fd).write_all(b"typed after restore\n"));
        if let Err(err) = typed {
            return Verdict {
                exit: None,
                last_line: last_line(&cell.out_text()),
                problem: Some(format!("cannot type on the pty: {err}")),
            };
        }
    }
    // ESRCH means it already ended (e.g. it failed on its own); its status is still collected below.
    let _ = kill(Pid::from_raw(root), Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    let mut stopped_since: Option<Instant> = None;
    let problem = loop {
        if let Some(exit) = process::wait_exit(root, Duration::from_millis(20)) {
            return Verdict {
                exit: Some(exit),
                last_line: last_line(&cell.out_text()),
                problem: None,
            };
        }
        // A root left stopped or traced (state T/t) never handles SIGTERM: say so early.
        let state = process::proc_stat(root).map(|stat| stat.state);
        if matches!(state, Some('T' | 't')) {
            let since = *stopped_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= STOPPED_GRACE {
                break format!(
                    "root {root} stays in state '{}' (stopped or traced) after SIGTERM",
                    state.unwrap_or('?')
                );
            }
        } else {
            stopped_since = None;
        }
        if Instant::now() >= deadline {
            break format!("root {root} did not exit within {timeout:?} after SIGTERM");
        }
    };
    Verdict {
        exit: None,
        last_line: last_line(&cell.out_text()),
        problem: Some(problem),
    }
}

/// How long a root may stay stopped after SIGTERM before the runner gives up on it.
const STOPPED_GRACE: Duration = Duration::from_secs(2);

/// Runs `argv` as the child of a new `pty_shell` on `pty` (new session, pty as controlling terminal)
/// and waits for its exit status. Returns the shell's pid (it stays alive) and the command's exit.
pub fn run_in_pty_shell(
    pty: &Pty,
    status_file: &Path,
    argv: &[OsString],
    timeout: Duration,
) -> Result<(i32, Exit), LaunchError> {
    let _ = std::fs::remove_file(status_file);
    let stdio = || {
        pty.stdio().map_err(|e| LaunchError::Prepare {
            path: "pty".into(),
            source: e,
        })
    };
    let child = Command::new(crate::catalog::pty_shell_path())
        .arg(status_file)
        .args(argv)
        .stdin(stdio()?)
        .stdout(stdio()?)
        .stderr(stdio()?)
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            program: crate::catalog::pty_shell_path(),
            source,
        })?;
    let shell = child.id() as i32;
    drop(child);
    let deadline = Instant::now() + timeout;
    let command = argv
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    loop {
        if let Ok(text) = std::fs::read_to_string(status_file) {
            let mut words = text.split_whitespace();
            let exit = match (words.next(), words.next().and_then(|n| n.parse().ok())) {
                (Some("exit"), Some(code)) => Exit::Code(code),
                (Some("signal"), Some(sig)) => Exit::Signal(sig),
                _ => Exit::Unknown,
            };
            return Ok((shell, exit));
        }
        if Instant::now() >= deadline || !process::is_running(shell) {
            return Err(LaunchError::ShellNoStatus {
                command,
                waited: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
