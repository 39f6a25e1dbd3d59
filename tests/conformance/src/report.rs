//! Cell outcomes, the program × mode table, and the JSON report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The checkpoint/restore modes a program is run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `criu dump` (tree killed), `criu restore -d`.
    Dump,
    /// `criu dump --leave-running`, tree killed by the runner, restore.
    LeaveRunning,
    /// Dump and restore over RPC with pycriu (`criu swrk`).
    Rpc,
    /// Dump and restore over RPC with pycriu through a `criu service` socket.
    RpcService,
    /// Dump, restore, kill, restore again from the same images.
    RestoreTwice,
    /// `criu pre-dump` (the tree keeps running), then `criu dump --prev-images-dir` on top of it,
    /// then restore from the chain of the two.
    PreDump,
}

impl Mode {
    /// Every mode, in table order.
    pub const ALL: [Mode; 6] = [
        Mode::Dump,
        Mode::LeaveRunning,
        Mode::Rpc,
        Mode::RpcService,
        Mode::RestoreTwice,
        Mode::PreDump,
    ];

    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dump => "dump",
            Mode::LeaveRunning => "leave-running",
            Mode::Rpc => "rpc",
            Mode::RpcService => "rpc-service",
            Mode::RestoreTwice => "restore-twice",
            Mode::PreDump => "pre-dump",
        }
    }

    /// Parses a mode name.
    pub fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

/// The result of one cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "kebab-case")]
pub enum Outcome {
    /// The state survived.
    Pass,
    /// Anything that is not a pass and not a clear refusal.
    Fail(String),
    /// The engine refused with a clear "unsupported" error.
    NotYet(String),
    /// The mode does not apply to this program.
    NotApplicable(String),
}

impl Outcome {
    /// Short label for the table.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "FAIL",
            Outcome::NotYet(_) => "not-yet",
            Outcome::NotApplicable(_) => "n/a",
        }
    }

    /// The reason, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Pass => None,
            Outcome::Fail(r) | Outcome::NotYet(r) | Outcome::NotApplicable(r) => Some(r),
        }
    }
}

/// One program × mode result.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Program name.
    pub program: String,
    /// Mode.
    pub mode: Mode,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Wall time of the cell.
    pub seconds: f64,
    /// The cell's directory (images, logs, out file).
    pub dir: PathBuf,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The criu binary under test.
    pub criu: PathBuf,
    /// Modes run, in order.
    pub modes: Vec<Mode>,
    /// Every cell.
    pub cells: Vec<Cell>,
}

/// Errors writing the report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The JSON file could not be written.
    #[error("cannot write report {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Report {
    /// True if any cell failed.
    pub fn has_failures(&self) -> bool {
        self.cells
            .iter()
            .any(|cell| matches!(cell.outcome, Outcome::Fail(_)))
    }

    /// The program × mode table, counts per mode, then the reasons.
    pub fn table(&self) -> String {
        let mut programs: Vec<&str> = Vec::new();
        for cell in &self.cells {
            if !programs.contains(&cell.program.as_str()) {
                programs.push(&cell.program);
            }
        }
        let width = programs.iter().map(|p| p.len()).max().unwrap_or(7).max(7);
        let mut text = String::new();
        let _ = write!(text, "{:width$}", "program");
        for mode in &self.modes {
            let _ = write!(text, "  {:>13}", mode.name());
        }
        text.push('\n');
        for program in &programs {
            let _ = write!(text, "{program:width$}");
            for mode in &self.modes {
                let label = self
                    .cell(program, *mode)
                    .map_or("-", |cell| cell.outcome.label());
                let _ = write!(text, "  {label:>13}");
            }
            text.push('\n');
        }
        let _ = write!(text, "{:width$}", "pass");
        for mode in &self.modes {
            let cells: Vec<&Cell> = self.cells.iter().filter(|c| c.mode == *mode).collect();
            let passed = cells.iter().filter(|c| c.outcome == Outcome::Pass).count();
            let applicable = cells
                .iter()
                .filter(|c| !matches!(c.outcome, Outcome::NotApplicable(_)))
                .count();
            let _ = write!(text, "  {:>13}", format!("{passed}/{applicable}"));
        }
        text.push('\n');
        for cell in &self.cells {
            if let Some(reason) = cell.outcome.reason() {
                let _ = writeln!(
                    text,
                    "  {} / {}: {}: {}",
                    cell.program,
                    cell.mode.name(),
                    cell.outcome.label(),
                    reason
                );
            }
        }
        text
    }

    fn cell(&self, program: &str, mode: Mode) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.program == program && c.mode == mode)
    }

    /// Writes the report as pretty JSON to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        let write = |source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        let json =
            serde_json::to_string_pretty(self).map_err(|e| write(std::io::Error::other(e)))?;
        std::fs::write(path, json + "\n").map_err(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(program: &str, mode: Mode, outcome: Outcome) -> Cell {
        Cell {
            program: program.into(),
            mode,
            outcome,
            seconds: 0.5,
            dir: PathBuf::from("/x"),
        }
    }

    #[test]
    fn table_counts_passes_per_mode_and_lists_reasons() {
        let report = Report {
            criu: "/bin/criu".into(),
            modes: vec![Mode::Dump, Mode::Rpc],
            cells: vec![
                cell("a", Mode::Dump, Outcome::Pass),
                cell(
                    "a",
                    Mode::Rpc,
                    Outcome::NotYet("timerfd unsupported".into()),
                ),
                cell("b", Mode::Dump, Outcome::Fail("FAIL: cwd".into())),
                cell("b", Mode::Rpc, Outcome::NotApplicable("self".into())),
            ],
        };
        let table = report.table();
        assert!(table.contains("1/2"), "{table}");
        assert!(table.contains("0/1"), "{table}");
        assert!(
            table.contains("a / rpc: not-yet: timerfd unsupported"),
            "{table}"
        );
        assert!(report.has_failures());
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["cells"][1]["outcome"], "not-yet");
        assert_eq!(json["cells"][1]["reason"], "timerfd unsupported");
        assert_eq!(json["cells"][0]["mode"], "dump");
    }

    #[test]
    fn not_yet_alone_is_not_a_failure() {
        let report = Report {
            criu: "/c".into(),
            modes: vec![Mode::Dump],
            cells: vec![cell("a", Mode::Dump, Outcome::NotYet("x".into()))],
        };
        assert!(!report.has_failures());
    }
}
