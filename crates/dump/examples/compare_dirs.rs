//! Compares two image directories entry by entry (e.g. CRIU's dump and ours of
//! the same frozen state): `compare_dirs <a> <b>`. Prints every image that is
//! missing on one side and every differing entry, as Debug text.

use criu_image::{ImageDir, ImageKind, ImageReader};

fn entries<M: prost::Message + Default + std::fmt::Debug>(r: &mut ImageReader) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(Some(e)) = r.next_entry::<M>() {
        out.push(format!("{e:?}"));
    }
    out
}

fn decode(dir: &ImageDir, kind: ImageKind, id: u64) -> Vec<String> {
    use criu_proto::*;
    let Ok(mut r) = dir.reader(kind, id) else {
        return vec!["<unreadable>".into()];
    };
    match kind {
        ImageKind::Inventory => entries::<InventoryEntry>(&mut r),
        ImageKind::Pstree => entries::<PstreeEntry>(&mut r),
        ImageKind::Core => entries::<CoreEntry>(&mut r),
        ImageKind::Ids => entries::<TaskKobjIdsEntry>(&mut r),
        ImageKind::Mm => entries::<MmEntry>(&mut r),
        ImageKind::Pagemap | ImageKind::ShmemPagemap => {
            let mut v = entries::<PagemapHead>(&mut r);
            v.truncate(1);
            v.extend(entries::<PagemapEntry>(&mut r));
            v
        }
        ImageKind::Fs => entries::<FsEntry>(&mut r),
        ImageKind::Fdinfo => entries::<FdinfoEntry>(&mut r),
        ImageKind::Files => entries::<FileEntry>(&mut r),
        ImageKind::Seccomp => entries::<SeccompEntry>(&mut r),
        ImageKind::Timens => vec!["<clock values>".into()],
        ImageKind::StatsDump => vec!["<timing>".into()],
        ImageKind::MemfdInode => entries::<MemfdInodeEntry>(&mut r),
        ImageKind::RemapFpath => entries::<RemapFilePathEntry>(&mut r),
        _ => vec!["<raw>".into()],
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (da, db) = (
        ImageDir::open(&a[1]).expect("a"),
        ImageDir::open(&a[2]).expect("b"),
    );
    let names = |p: &str| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| ImageKind::from_file_name(n).is_some())
            .collect();
        v.sort();
        v
    };
    let (na, nb) = (names(&a[1]), names(&a[2]));
    for n in na.iter().filter(|n| !nb.contains(n)) {
        println!("only in A: {n}");
    }
    for n in nb.iter().filter(|n| !na.contains(n)) {
        println!("only in B: {n}");
    }
    for n in na.iter().filter(|n| nb.contains(n)) {
        let (kind, id) = ImageKind::from_file_name(n).unwrap();
        if kind == ImageKind::Pages {
            let (sa, sb) = (
                std::fs::read(format!("{}/{n}", a[1])).unwrap(),
                std::fs::read(format!("{}/{n}", a[2])).unwrap(),
            );
            if sa != sb {
                println!("{n}: contents differ ({} vs {} bytes)", sa.len(), sb.len());
            }
            continue;
        }
        let (ea, eb) = (decode(&da, kind, id), decode(&db, kind, id));
        if ea.len() != eb.len() {
            println!("{n}: {} vs {} entries", ea.len(), eb.len());
        }
        for (i, (x, y)) in ea.iter().zip(&eb).enumerate() {
            if x != y {
                // Show only the differing comma-separated tokens, with context.
                let ta: Vec<&str> = x.split(", ").collect();
                let tb: Vec<&str> = y.split(", ").collect();
                let mut shown = 0;
                for (j, (p, q)) in ta.iter().zip(&tb).enumerate() {
                    if p != q && shown < 12 {
                        let ctx = if j > 0 { ta[j - 1] } else { "" };
                        println!("{n} entry {i} token {j} (after {ctx}): A {p} | B {q}");
                        shown += 1;
                    }
                }
                if ta.len() != tb.len() {
                    println!("{n} entry {i}: {} vs {} tokens", ta.len(), tb.len());
                }
            }
        }
    }
}
