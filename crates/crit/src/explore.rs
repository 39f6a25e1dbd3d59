//! `crit x DIR ps|fds|mems|rss`: summaries of a whole images directory, in
//! the same layout as CRIU's crit prints them.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::convert::Schema;
use crate::error::CritError;
use crate::images::{decode_image, DecodeOptions};
use crate::json::Json;

/// What to explore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Explorer {
    /// The process tree.
    Ps,
    /// Open files of each task.
    Fds,
    /// Memory mappings of each task.
    Mems,
    /// Dumped pages against the mappings.
    Rss,
}

impl Explorer {
    /// Parses crit's name for the explorer.
    pub fn from_name(name: &str) -> Option<Explorer> {
        Some(match name {
            "ps" => Explorer::Ps,
            "fds" => Explorer::Fds,
            "mems" => Explorer::Mems,
            "rss" => Explorer::Rss,
            _ => return None,
        })
    }
}

struct Dir<'a> {
    schema: &'a Schema,
    path: PathBuf,
    files: Option<Vec<Json>>,
    legacy: HashMap<&'static str, Vec<Json>>,
    names: HashMap<(String, u64), String>,
}

fn uint(value: Option<&Json>) -> u64 {
    match value {
        Some(Json::UInt(n)) => *n,
        _ => 0,
    }
}

fn text(value: Option<&Json>) -> &str {
    match value {
        Some(Json::Str(s)) => s,
        _ => "",
    }
}

fn list(value: Option<&Json>) -> &[Json] {
    match value {
        Some(Json::List(items)) => items,
        _ => &[],
    }
}

/// `get_task_id`: `pid` or, in newer pstrees, `ns_pid[0]`.
fn task_id(entry: &Json, name: &str) -> u64 {
    match entry.get(name) {
        Some(value) => uint(Some(value)),
        None => uint(list(entry.get(&format!("ns_{name}"))).first()),
    }
}

impl<'a> Dir<'a> {
    fn load(&self, name: &str) -> Result<Vec<Json>, CritError> {
        let path = self.path.join(name);
        let bytes = std::fs::read(&path).map_err(|source| CritError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let image = decode_image(self.schema, name, bytes, DecodeOptions::default())?;
        Ok(list(image.get("entries")).to_vec())
    }

    fn first(&self, name: &str) -> Result<Json, CritError> {
        self.load(name)?
            .into_iter()
            .next()
            .ok_or_else(|| CritError::Explore {
                file: name.to_owned(),
                reason: "no entries".into(),
            })
    }

    /// The object of type `kind` with `id`: from files.img (field `field`),
    /// or from the legacy per-type image when files.img lacks the id.
    fn find(&mut self, field: &str, legacy: &'static str, id: u64) -> Option<Json> {
        if self.files.is_none() {
            self.files = Some(self.load("files.img").unwrap_or_default());
        }
        let files = self.files.as_deref().unwrap_or_default();
        if !files.is_empty() {
            if let Some(file) = files.iter().find(|f| uint(f.get("id")) == id) {
                return file.get(field).cloned();
            }
            return None;
        }
        if !self.legacy.contains_key(legacy) {
            let loaded = self.load(legacy).unwrap_or_default();
            self.legacy.insert(legacy, loaded);
        }
        self.legacy
            .get(legacy)?
            .iter()
            .find(|f| uint(f.get("id")) == id)
            .cloned()
    }

    fn file_str(&mut self, kind: &str, id: u64) -> String {
        let key = (kind.to_owned(), id);
        if let Some(name) = self.names.get(&key) {
            return name.clone();
        }
        let name = match kind {
            "REG" => match self.find("reg", "reg-files.img", id) {
                Some(reg) if !text(reg.get("name")).is_empty() => text(reg.get("name")).to_owned(),
                _ => "unknown path".to_owned(),
            },
            "PIPE" => match self.find("pipe", "pipes.img", id) {
                Some(pipe) => format!("pipe[{}]", uint(pipe.get("pipe_id"))),
                None => "pipe[?]".to_owned(),
            },
            "UNIXSK" => match self.find("usk", "unixsk.img", id) {
                Some(sk) => {
                    let name = text(sk.get("name"));
                    let name = if name.is_empty() {
                        String::new()
                    } else {
                        format!(" {name}")
                    };
                    format!(
                        "unix[{} ({}){}]",
                        uint(sk.get("ino")),
                        uint(sk.get("peer")),
                        name
                    )
                }
                None => "unix[?]".to_owned(),
            },
            other => format!("{other}.{id}"),
        };
        self.names.insert(key, name.clone());
        name
    }
}

/// Runs an explorer on the images directory `dir` and returns its output.
pub fn explore(schema: &Schema, dir: &Path, what: Explorer) -> Result<String, CritError> {
    let mut dir = Dir {
        schema,
        path: dir.to_owned(),
        files: None,
        legacy: HashMap::new(),
        names: HashMap::new(),
    };
    let mut out = String::new();
    match what {
        Explorer::Ps => explore_ps(&mut dir, &mut out)?,
        Explorer::Fds => explore_fds(&mut dir, &mut out)?,
        Explorer::Mems => explore_mems(&mut dir, &mut out)?,
        Explorer::Rss => explore_rss(&mut dir, &mut out)?,
    }
    Ok(out)
}

fn explore_ps(dir: &mut Dir<'_>, out: &mut String) -> Result<(), CritError> {
    struct Task {
        pid: u64,
        pgid: u64,
        sid: u64,
        comm: String,
        kids: Vec<usize>,
    }
    let pstree = dir.load("pstree.img")?;
    let mut tasks: Vec<Task> = Vec::new();
    let mut parents = Vec::new();
    for entry in &pstree {
        let pid = task_id(entry, "pid");
        let core = dir.first(&format!("core-{pid}.img"))?;
        let comm = text(core.get("tc").and_then(|tc| tc.get("comm"))).to_owned();
        tasks.push(Task {
            pid,
            pgid: task_id(entry, "pgid"),
            sid: task_id(entry, "sid"),
            comm,
            kids: Vec::new(),
        });
        parents.push(uint(entry.get("ppid")));
    }
    let mut root = None;
    for (index, ppid) in parents.iter().enumerate() {
        if *ppid == 0 {
            root = Some(index);
            continue;
        }
        let parent =
            tasks
                .iter()
                .position(|t| t.pid == *ppid)
                .ok_or_else(|| CritError::Explore {
                    file: "pstree.img".into(),
                    reason: format!(
                        "task {} has parent {ppid}, which is not in the tree",
                        tasks[index].pid
                    ),
                })?;
        tasks[parent].kids.push(index);
    }
    let _ = writeln!(out, "{:>7}{:>7}{:>7}   COMM", "PID", "PGID", "SID");
    fn show(tasks: &[Task], index: usize, depth: usize, out: &mut String) {
        let t = &tasks[index];
        let _ = writeln!(
            out,
            "{:>7}{:>7}{:>7}   {}{}",
            t.pid,
            t.pgid,
            t.sid,
            " ".repeat(4 * depth),
            t.comm
        );
        for kid in &t.kids {
            show(tasks, *kid, depth + 1, out);
        }
    }
    if let Some(root) = root {
        show(&tasks, root, 0, out);
    }
    Ok(())
}

fn explore_fds(dir: &mut Dir<'_>, out: &mut String) -> Result<(), CritError> {
    for entry in dir.load("pstree.img")? {
        let pid = task_id(&entry, "pid");
        let ids = dir.first(&format!("ids-{pid}.img"))?;
        let files_id = uint(ids.get("files_id"));
        let fdinfo = dir.load(&format!("fdinfo-{files_id}.img"))?;
        let _ = writeln!(out, "{pid}");
        for fd in &fdinfo {
            let name = dir.file_str(text(fd.get("type")), uint(fd.get("id")));
            let _ = writeln!(out, "\t{:>7}: {}", uint(fd.get("fd")), name);
        }
        let fs = dir.first(&format!("fs-{pid}.img"))?;
        let cwd = dir.file_str("REG", uint(fs.get("cwd_id")));
        let _ = writeln!(out, "\t{:>7}: {}", "cwd", cwd);
        let root = dir.file_str("REG", uint(fs.get("root_id")));
        let _ = writeln!(out, "\t{:>7}: {}", "root", root);
    }
    Ok(())
}

fn explore_mems(dir: &mut Dir<'_>, out: &mut String) -> Result<(), CritError> {
    let mut vids: HashMap<u64, u64> = HashMap::new();
    let mut vid = |shmid: u64| {
        let next = vids.len() as u64 + 1;
        *vids.entry(shmid).or_insert(next)
    };
    for entry in dir.load("pstree.img")? {
        let pid = task_id(&entry, "pid");
        let mm = dir.first(&format!("mm-{pid}.img"))?;
        let _ = writeln!(out, "{pid}");
        let exe = dir.file_str("REG", uint(mm.get("exe_file_id")));
        let _ = writeln!(out, "\t{:<36}    {}", "exe", exe);
        for vma in list(mm.get("vmas")) {
            let status = uint(vma.get("status"));
            let shmid = uint(vma.get("shmid"));
            let mut name = if status & (1 << 10) != 0 {
                format!(" ips[{:x}]", vid(shmid))
            } else if status & (1 << 8) != 0 {
                format!(" shmem[{:x}]", vid(shmid))
            } else if status & (1 << 11) != 0 {
                format!(" packet[{:x}]", vid(shmid))
            } else if status & ((1 << 6) | (1 << 7)) != 0 {
                let mut name = format!(" {}", dir.file_str("REG", shmid));
                let pgoff = uint(vma.get("pgoff"));
                if pgoff != 0 {
                    let _ = write!(name, " + {pgoff:#x}");
                }
                if status & (1 << 7) != 0 {
                    name.push_str(" (s)");
                }
                name
            } else if status & (1 << 1) != 0 {
                " [stack]".to_owned()
            } else if status & (1 << 2) != 0 {
                " [vsyscall]".to_owned()
            } else if status & (1 << 3) != 0 {
                " [vdso]".to_owned()
            } else if uint(vma.get("flags")) & 0x0100 != 0 {
                " [stack?]".to_owned()
            } else {
                String::new()
            };
            if status & 1 == 0 {
                name.push_str(" *");
            }
            let prot = uint(vma.get("prot"));
            let prot_text: String = [(1, 'r'), (2, 'w'), (4, 'x')]
                .iter()
                .map(|(bit, c)| if prot & bit != 0 { *c } else { '-' })
                .collect();
            let range = format!(
                "{:08x}-{:08x}",
                uint(vma.get("start")),
                uint(vma.get("end"))
            );
            let _ = writeln!(out, "\t{range:<36}{prot_text}{name}");
        }
    }
    Ok(())
}

fn explore_rss(dir: &mut Dir<'_>, out: &mut String) -> Result<(), CritError> {
    for entry in dir.load("pstree.img")? {
        let pid = task_id(&entry, "pid");
        let mm = dir.first(&format!("mm-{pid}.img"))?;
        let vmas = list(mm.get("vmas")).to_vec();
        let pagemap = dir.load(&format!("pagemap-{pid}.img"))?;
        let _ = writeln!(out, "{pid}");
        let mut vmi = 0usize;
        let mut previous: Option<usize> = None;
        for pm in pagemap.iter().skip(1) {
            let vaddr = uint(pm.get("vaddr"));
            let nr_pages = uint(pm.get("nr_pages"));
            let page_text = format!("\t{vaddr:x} / {nr_pages:<8}");
            while vmi < vmas.len() && uint(vmas[vmi].get("end")) <= vaddr {
                vmi += 1;
            }
            let pm_end = vaddr + (nr_pages << 12);
            let mut vma_text = String::new();
            while vmi < vmas.len() && uint(vmas[vmi].get("start")) < pm_end {
                let vma = &vmas[vmi];
                if previous == Some(vmi) {
                    vma_text.push_str(" ~");
                } else {
                    let start = uint(vma.get("start"));
                    let pages = (uint(vma.get("end")) - start) >> 12;
                    let _ = write!(vma_text, " {start:08x} / {pages:<8}");
                    if uint(vma.get("status")) & ((1 << 6) | (1 << 7)) != 0 {
                        let name = dir.file_str("REG", uint(vma.get("shmid")));
                        let _ = write!(vma_text, " {name}");
                    }
                    previous = Some(vmi);
                }
                let _ = write!(vma_text, "\n\t{:23}", "");
                vmi += 1;
            }
            vmi = vmi.saturating_sub(1);
            let _ = writeln!(out, "{page_text:<24}{vma_text}");
        }
    }
    Ok(())
}
