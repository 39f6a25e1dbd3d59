//! Prints an image's entries with Debug formatting: `show_image <dir> <kind> <id>`
//! where kind is one of core, mm, pagemap, pstree, files, fdinfo.

use criu_image::{ImageDir, ImageKind};

fn show<M: prost::Message + Default + std::fmt::Debug>(dir: &ImageDir, kind: ImageKind, id: u64) {
    let mut r = dir.reader(kind, id).expect("open image");
    if kind == ImageKind::Pagemap {
        let head: criu_proto::PagemapHead = r.next_entry().expect("read").expect("head");
        println!("{head:?}");
    }
    while let Some(e) = r.next_entry::<M>().expect("read") {
        println!("{e:?}");
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let dir = ImageDir::open(&a[1]).expect("dir");
    let id: u64 = a.get(3).map(|s| s.parse().expect("id")).unwrap_or(0);
    match a[2].as_str() {
        "core" => show::<criu_proto::CoreEntry>(&dir, ImageKind::Core, id),
        "mm" => show::<criu_proto::MmEntry>(&dir, ImageKind::Mm, id),
        "pagemap" => show::<criu_proto::PagemapEntry>(&dir, ImageKind::Pagemap, id),
        "pstree" => show::<criu_proto::PstreeEntry>(&dir, ImageKind::Pstree, id),
        "files" => show::<criu_proto::FileEntry>(&dir, ImageKind::Files, id),
        "fdinfo" => show::<criu_proto::FdinfoEntry>(&dir, ImageKind::Fdinfo, id),
        other => panic!("unknown kind {other}"),
    }
}
