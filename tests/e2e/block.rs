//! Block volumes: real ext4 images, made with `mkfs.ext4 -d` from a real Python
//! environment, edited with `debugfs -w`, checked with `e2fsck -fn`.

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use crate::common::{Repo, id_of, num, p, python_venv};

const IMAGE_MIB: u64 = 1024;
const MIB: u64 = 1 << 20;

fn tool(name: &str, args: &[&str]) {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e} (scripts/setup installs e2fsprogs)"));
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A sparse ext4 image holding `dir`.
fn make_image(dir: &Path, img: &Path) {
    let f = fs::File::create(img).unwrap();
    f.set_len(IMAGE_MIB * MIB).unwrap();
    drop(f);
    tool("mkfs.ext4", &["-q", "-F", "-b", "4096", "-d", p(dir), p(img)]);
}

/// Byte ranges (4 KiB granularity, merged) where two equally long images differ, as a
/// cloud block-volume change API would report them.
fn changed_ranges(a: &Path, b: &Path) -> Vec<(u64, u64)> {
    let (fa, fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let size = fa.metadata().unwrap().len();
    assert_eq!(size, fb.metadata().unwrap().len());
    let (mut ba, mut bb) = (vec![0u8; 4096], vec![0u8; 4096]);
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut off = 0;
    while off < size {
        fa.read_exact_at(&mut ba, off).unwrap();
        fb.read_exact_at(&mut bb, off).unwrap();
        if ba != bb {
            match out.last_mut() {
                Some((start, len)) if *start + *len == off => *len += 4096,
                _ => out.push((off, 4096)),
            }
        }
        off += 4096;
    }
    out
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    let status = Command::new("cmp").args(["-s", p(a), p(b)]).status().unwrap();
    status.success()
}

#[test]
fn ext4_image_round_trip_changed_ranges_and_seed() {
    let repo = Repo::init();
    let venv = python_venv();
    let img = repo.scratch("env.img");
    make_image(&venv, &img);

    let first = repo.ok(&["snapshot", "--block", p(&img)]);
    assert_eq!(num(&first, "size"), IMAGE_MIB * MIB);
    assert!(num(&first, "holes") > 0, "an ext4 image has all-zero blocks: {first}");
    let first_id = id_of(&first);

    let out = repo.scratch("restored.img");
    let r = repo.ok(&["restore", &first_id, "--block", p(&out)]);
    assert_eq!(num(&r, "holes"), num(&first, "holes"));
    assert!(same_bytes(&img, &out), "restored image differs from the original");
    let meta = fs::metadata(&out).unwrap();
    assert!(
        meta.blocks() * 512 < meta.len(),
        "holes are left sparse: {} allocated of {}",
        meta.blocks() * 512,
        meta.len()
    );
    tool("e2fsck", &["-fn", p(&out)]);

    // Edit one file inside the image without mounting it.
    let edited = repo.scratch("edited.img");
    fs::copy(&img, &edited).unwrap();
    let new_cfg = repo.scratch("pyvenv.cfg");
    fs::write(
        &new_cfg,
        "home = /opt/python\ninclude-system-site-packages = false\nversion = 3.11.99\n",
    )
    .unwrap();
    let cmds = repo.scratch("debugfs.cmds");
    fs::write(&cmds, format!("rm /pyvenv.cfg\nwrite {} /pyvenv.cfg\n", p(&new_cfg))).unwrap();
    tool("debugfs", &["-w", "-f", p(&cmds), p(&edited)]);
    let ranges = changed_ranges(&img, &edited);
    assert!(!ranges.is_empty(), "debugfs changed the image");
    let ranges_file = repo.scratch("ranges.txt");
    let text: String = ranges.iter().map(|(o, l)| format!("{o} {l}\n")).collect();
    fs::write(&ranges_file, format!("# offset length\n{text}")).unwrap();

    let second = repo.ok(&[
        "snapshot",
        "--block",
        p(&edited),
        "--changed-ranges",
        p(&ranges_file),
        "--parent",
        &first_id,
    ]);
    // Exactly the 1 MiB blocks the ranges touch were read, nothing else.
    let block = num(&second, "block_size");
    let mut touched: Vec<u64> = ranges
        .iter()
        .flat_map(|(o, l)| (o / block)..=((o + l - 1) / block))
        .collect();
    touched.sort_unstable();
    touched.dedup();
    assert_eq!(num(&second, "bytes_read"), touched.len() as u64 * block, "{second}");
    let changed_bytes: u64 = ranges.iter().map(|(_, l)| l).sum();
    assert!(
        num(&second, "bytes_read") < IMAGE_MIB * MIB / 20,
        "read far less than the image: {second}"
    );
    assert!(
        num(&second, "raw_bytes_new") <= touched.len() as u64 * block + 256 * 1024,
        "{second} (changed {changed_bytes} bytes)"
    );

    let out2 = repo.scratch("restored2.img");
    repo.ok(&["restore", &id_of(&second), "--block", p(&out2)]);
    assert!(same_bytes(&edited, &out2), "restored edited image differs");
    tool("e2fsck", &["-fn", p(&out2)]);

    // Seeded restore: start from the first restored image, rewrite only what differs.
    let seeded = repo.ok(&["restore", &id_of(&second), "--block", p(&out), "--seed", p(&out)]);
    assert!(same_bytes(&edited, &out), "seeded restore differs");
    assert_eq!(
        num(&seeded, "from_repo"),
        touched.len() as u64,
        "only changed blocks come from the repository: {seeded}"
    );
}

#[test]
fn bad_volume_input_is_refused_and_changes_nothing() {
    let repo = Repo::init();
    let img = repo.scratch("small.img");
    let f = fs::File::create(&img).unwrap();
    f.set_len(8 * MIB).unwrap();
    f.write_all_at(b"some data", 3 * MIB).unwrap();
    drop(f);
    let first = id_of(&repo.ok(&["snapshot", "--block", p(&img)]));
    let before = repo.listing();

    let ranges = repo.scratch("outside.txt");
    fs::write(&ranges, format!("{} 4096\n", 8 * MIB - 100)).unwrap();
    repo.run(&[
        "snapshot",
        "--block",
        p(&img),
        "--changed-ranges",
        p(&ranges),
        "--parent",
        &first,
    ])
    .expect_error(&["outside the volume"]);
    fs::write(&ranges, "12 lots\n").unwrap();
    repo.run(&[
        "snapshot",
        "--block",
        p(&img),
        "--changed-ranges",
        p(&ranges),
        "--parent",
        &first,
    ])
    .expect_error(&["line 1"]);

    let bigger = repo.scratch("bigger.img");
    fs::File::create(&bigger).unwrap().set_len(9 * MIB).unwrap();
    repo.run(&["snapshot", "--block", p(&bigger), "--parent", &first])
        .expect_error(&["size"]);
    assert_eq!(repo.listing(), before, "refused snapshots wrote nothing");
    assert_eq!(repo.snapshots().len(), 1);
}
