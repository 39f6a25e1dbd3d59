//! `inventory.img` and the `stats-*` service files, as CRIU 4.2 writes them.
//!
//! Note: the inventory's `network_lock_method` holds CRIU's *internal* enum
//! (iptables 0, nftables 1, skip 2), not the 1-based RPC enum.

use criu_proto::{
    DumpStatsEntry, InventoryEntry, Lsmtype, PluginsEntry, RestoreStatsEntry, StatsEntry,
    TaskKobjIdsEntry,
};

use crate::dir::ImageDir;
use crate::error::ImageError;
use crate::kind::{ImageKind, IMAGES_V1_1};

/// Errors of inventory and stats images.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// Reading or writing the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The image exists but has no entry.
    #[error("{file}: no entry")]
    Empty {
        /// The file name.
        file: String,
    },
    /// An inventory restore cannot use.
    #[error("{file}: {reason}")]
    Unsupported {
        /// The file name.
        file: String,
        /// Why.
        reason: String,
    },
}

/// How the network was locked during the dump (inventory values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NetworkLockMethod {
    /// iptables rules (CRIU's default).
    #[default]
    Iptables,
    /// an nftables table named after the run id.
    Nftables,
    /// no locking.
    Skip,
}

impl NetworkLockMethod {
    /// The value stored in `inventory_entry.network_lock_method`.
    pub fn image_value(self) -> u32 {
        match self {
            NetworkLockMethod::Iptables => 0,
            NetworkLockMethod::Nftables => 1,
            NetworkLockMethod::Skip => 2,
        }
    }

    /// The method an inventory value names.
    pub fn from_image_value(value: u32) -> Option<NetworkLockMethod> {
        match value {
            0 => Some(NetworkLockMethod::Iptables),
            1 => Some(NetworkLockMethod::Nftables),
            2 => Some(NetworkLockMethod::Skip),
            _ => None,
        }
    }
}

/// What a dump records in its inventory besides the fixed fields.
#[derive(Clone, Debug, Default)]
pub struct DumpInventory {
    /// Namespace and object ids of the dumping process itself (decides which
    /// namespaces count as "host" at restore).
    pub root_ids: TaskKobjIdsEntry,
    /// cgroup set id of the dumping process; `None` for unprivileged dumps.
    pub root_cg_set: Option<u32>,
    /// The host LSM.
    pub lsmtype: Lsmtype,
    /// Network lock method used.
    pub network_lock: NetworkLockMethod,
    /// The run id (nftables table name).
    pub criu_run_id: String,
    /// `--tcp-close` was given.
    pub tcp_close: bool,
    /// `/proc/uptime` in µs, recorded with `--track-mem` (pid reuse detection).
    pub dump_uptime: Option<u64>,
    /// Plugins the restore needs.
    pub plugins: Vec<String>,
    /// `--allow-uprobes` was given.
    pub allow_uprobes: bool,
}

impl DumpInventory {
    /// The `inventory_entry` CRIU 4.2 writes at the end of a dump.
    pub fn to_entry(&self) -> InventoryEntry {
        InventoryEntry {
            img_version: IMAGES_V1_1,
            fdinfo_per_id: Some(true),
            root_ids: Some(self.root_ids),
            ns_per_id: Some(true),
            root_cg_set: self.root_cg_set,
            lsmtype: Some(self.lsmtype as i32),
            dump_uptime: self.dump_uptime,
            pre_dump_mode: None,
            tcp_close: self.tcp_close.then_some(true),
            network_lock_method: Some(self.network_lock.image_value()),
            plugins_entry: Some(PluginsEntry {
                plugins: self.plugins.clone(),
            }),
            dump_criu_run_id: Some(self.criu_run_id.clone()),
            allow_uprobes: self.allow_uprobes.then_some(true),
        }
    }
}

/// The inventory a pre-dump writes: only `img_version` (0), the uptime (with
/// track-mem) and the pre-dump mode (1 splice, 2 read), plus the plugins list.
pub fn pre_dump_inventory(dump_uptime: Option<u64>, pre_dump_mode: u32) -> InventoryEntry {
    InventoryEntry {
        img_version: 0,
        dump_uptime,
        pre_dump_mode: Some(pre_dump_mode),
        plugins_entry: Some(PluginsEntry::default()),
        ..InventoryEntry::default()
    }
}

/// Writes `inventory.img`.
pub fn write_inventory(dir: &ImageDir, entry: &InventoryEntry) -> Result<(), InventoryError> {
    let mut writer = dir.writer(ImageKind::Inventory, 0)?;
    writer.write_entry(entry)?;
    writer.finish()?;
    Ok(())
}

/// Reads `inventory.img` (which must exist), whatever it holds.
pub fn read_inventory(dir: &ImageDir) -> Result<InventoryEntry, InventoryError> {
    let mut reader = dir.reader_required(ImageKind::Inventory, 0)?;
    reader
        .next_entry::<InventoryEntry>()?
        .ok_or_else(|| InventoryError::Empty {
            file: reader.file_name().to_owned(),
        })
}

/// Reads `inventory.img` and checks what CRIU's restore checks: images v1.1
/// and `fdinfo_per_id`.
pub fn read_restore_inventory(dir: &ImageDir) -> Result<InventoryEntry, InventoryError> {
    let entry = read_inventory(dir)?;
    let file = dir.label(
        &ImageKind::Inventory
            .file_name(0)
            .map_err(ImageError::from)?,
    );
    if entry.fdinfo_per_id != Some(true) {
        return Err(InventoryError::Unsupported {
            file,
            reason: "too old image: no fdinfo_per_id".into(),
        });
    }
    if entry.img_version != IMAGES_V1_1 {
        return Err(InventoryError::Unsupported {
            file,
            reason: format!(
                "images version {} is not supported (expected {IMAGES_V1_1})",
                entry.img_version
            ),
        });
    }
    if entry.root_cg_set == Some(0) {
        return Err(InventoryError::Unsupported {
            file,
            reason: "corrupted root cgset 0".into(),
        });
    }
    Ok(entry)
}

/// Writes `stats-dump` with the fields CRIU 4.2 always sets (the optional
/// counters included).
pub fn write_dump_stats(dir: &ImageDir, stats: &DumpStatsEntry) -> Result<(), InventoryError> {
    let dump = DumpStatsEntry {
        irmap_resolve: Some(stats.irmap_resolve.unwrap_or(0)),
        page_pipes: Some(stats.page_pipes.unwrap_or(0)),
        page_pipe_bufs: Some(stats.page_pipe_bufs.unwrap_or(0)),
        shpages_scanned: Some(stats.shpages_scanned.unwrap_or(0)),
        shpages_skipped_parent: Some(stats.shpages_skipped_parent.unwrap_or(0)),
        shpages_written: Some(stats.shpages_written.unwrap_or(0)),
        ..*stats
    };
    let mut writer = dir.writer(ImageKind::StatsDump, 0)?;
    writer.write_entry(&StatsEntry {
        dump: Some(dump),
        restore: None,
    })?;
    writer.finish()?;
    Ok(())
}

/// Writes `stats-restore`.
pub fn write_restore_stats(
    dir: &ImageDir,
    stats: &RestoreStatsEntry,
) -> Result<(), InventoryError> {
    let restore = RestoreStatsEntry {
        pages_restored: Some(stats.pages_restored.unwrap_or(0)),
        ..*stats
    };
    let mut writer = dir.writer(ImageKind::StatsRestore, 0)?;
    writer.write_entry(&StatsEntry {
        dump: None,
        restore: Some(restore),
    })?;
    writer.finish()?;
    Ok(())
}

/// Reads `stats-dump` or `stats-restore`; `None` if the file does not exist.
pub fn read_stats(dir: &ImageDir, kind: ImageKind) -> Result<Option<StatsEntry>, InventoryError> {
    let mut reader = dir.reader(kind, 0)?;
    if reader.is_missing() {
        return Ok(None);
    }
    match reader.next_entry::<StatsEntry>()? {
        Some(entry) => Ok(Some(entry)),
        None => Err(InventoryError::Empty {
            file: reader.file_name().to_owned(),
        }),
    }
}
