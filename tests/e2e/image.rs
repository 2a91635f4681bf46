//! Container images built for real, without a daemon: umoci writes OCI image layouts
//! (its layers gzip-compressed by Go), skopeo converts them to docker archives and
//! inspects the results.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::cli::{Mode, check};
use crate::common::{Repo, id_of, num, p, python_venv, run_command};

pub(crate) fn tool(name: &str, args: &[&str]) -> String {
    let mut c = Command::new(name);
    c.args(args);
    let out = run_command(c);
    assert_eq!(
        out.code,
        Some(0),
        "{name} failed (scripts/setup installs umoci and skopeo)\n{out}"
    );
    out.stdout
}

/// A minimal root file system: a shell, a few tools, the C library and a passwd file.
pub(crate) fn minimal_rootfs(dir: &Path) {
    for sub in ["bin", "etc", "lib"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for bin in ["/bin/sh", "/bin/ls", "/bin/cat"] {
        fs::copy(bin, dir.join("bin").join(Path::new(bin).file_name().unwrap())).unwrap();
    }
    for lib in ["libc.so.6", "libm.so.6"] {
        fs::copy(
            Path::new("/usr/lib/x86_64-linux-gnu").join(lib),
            dir.join("lib").join(lib),
        )
        .unwrap();
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/os-release"), "NAME=amber-test\n").unwrap();
}

/// Copies `from` (its contents) into `to`, keeping modes and times, with `cp -a`.
pub(crate) fn cp_a(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    tool("cp", &["-a", &format!("{}/.", from.display()), p(to)]);
}

/// An OCI layout at `layout` with tag `tag`: one layer per step, each step run on the
/// unpacked root file system and repacked by umoci.
pub(crate) struct Builder {
    layout: PathBuf,
    bundle: PathBuf,
    tag: String,
}

impl Builder {
    pub(crate) fn new(layout: &Path, tag: &str) -> Builder {
        tool("umoci", &["init", "--layout", p(layout)]);
        let image = format!("{}:{tag}", layout.display());
        tool("umoci", &["new", "--image", &image]);
        let bundle = layout.with_extension("bundle");
        tool("umoci", &["unpack", "--image", &image, p(&bundle)]);
        Builder {
            layout: layout.to_path_buf(),
            bundle,
            tag: tag.into(),
        }
    }

    /// Starts from an existing image's tag (the base layers are the same blobs).
    fn from(existing: &Path, tag: &str, copy_to: &Path, new_tag: &str) -> Builder {
        cp_a(existing, copy_to);
        let image = format!("{}:{tag}", copy_to.display());
        tool("umoci", &["tag", "--image", &image, new_tag]);
        tool("umoci", &["rm", "--image", &image]);
        let bundle = copy_to.with_extension("bundle");
        tool(
            "umoci",
            &[
                "unpack",
                "--image",
                &format!("{}:{new_tag}", copy_to.display()),
                p(&bundle),
            ],
        );
        Builder {
            layout: copy_to.to_path_buf(),
            bundle,
            tag: new_tag.into(),
        }
    }

    fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    pub(crate) fn layer(&self, step: impl FnOnce(&Path)) -> &Builder {
        step(&self.rootfs());
        let image = format!("{}:{}", self.layout.display(), self.tag);
        tool(
            "umoci",
            &["repack", "--refresh-bundle", "--image", &image, p(&self.bundle)],
        );
        self
    }

    pub(crate) fn finish(&self) {
        tool("umoci", &["gc", "--layout", p(&self.layout)]);
        fs::remove_dir_all(&self.bundle).unwrap();
    }
}

fn inspect(reference: &str, extra: &[&str]) -> Value {
    let mut args = vec!["inspect"];
    args.extend_from_slice(extra);
    args.push(reference);
    serde_json::from_str(&tool("skopeo", &args)).unwrap()
}

/// Every file under `a` has the same bytes under `b`, and `b` has no others.
pub(crate) fn same_files(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let out = tool("find", &[p(root), "-type", "f", "-printf", "%P\n"]);
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(la, lb, "the same files");
    for f in la {
        assert!(
            fs::read(a.join(&f)).unwrap() == fs::read(b.join(&f)).unwrap(),
            "{f} differs"
        );
    }
}

/// Image `lab`: a minimal root file system, then the test venv under /opt/venv.
pub(crate) fn lab_image(dir: &Path) -> PathBuf {
    let layout = dir.join("lab-oci");
    let b = Builder::new(&layout, "lab");
    b.layer(minimal_rootfs);
    b.layer(|root| cp_a(&python_venv(), &root.join("opt/venv")));
    b.finish();
    layout
}

#[test]
fn an_oci_image_round_trips_in_both_formats_and_a_shared_base_costs_nothing() {
    let repo = Repo::init();
    let layout = lab_image(repo.root());
    let snap = repo.ok(&["snapshot", "--image", p(&layout), "--env", "lab-1"]);
    let id = id_of(&snap);
    check("snapshot", &snap, Mode::Local);
    assert_eq!(snap["kind"], "image");
    assert_eq!(snap["format"], "oci");
    let layers = snap["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{snap}");
    for l in layers {
        assert_eq!(l["compression"], "gzip");
        // umoci compresses with Go, which preflate-rs 0.7.6 has no model of: the
        // compressed bytes are kept, and the snapshot says so.
        let why = l["kept_compressed"].as_str().unwrap_or_default();
        assert!(why.contains("NoCompressionCandidates"), "{l}");
    }

    let out = repo.scratch("restored-oci");
    let r = repo.ok(&["restore", &id, "--image", p(&out)]);
    check("restore-image", &r, Mode::Local);
    assert_eq!((r["format"].as_str(), num(&r, "layers")), (Some("oci"), 2));
    same_files(&layout, &out);
    let original = format!("oci:{}:lab", layout.display());
    let restored = format!("oci:{}:lab", out.display());
    assert_eq!(inspect(&original, &[]), inspect(&restored, &[]), "skopeo inspect");
    assert_eq!(
        inspect(&original, &["--raw"]),
        inspect(&restored, &["--raw"]),
        "the manifest"
    );

    let archive = repo.scratch("restored.tar");
    repo.ok(&["restore", &id, "--image", p(&archive), "--format", "docker-archive"]);
    let docker = format!("docker-archive:{}", archive.display());
    assert_eq!(
        inspect(&original, &["--config"]),
        inspect(&docker, &["--config"]),
        "the config"
    );
    let diff_ids = inspect(&original, &["--config"])["rootfs"]["diff_ids"].clone();
    assert_eq!(
        inspect(&docker, &[])["Layers"],
        diff_ids,
        "docker layers are the uncompressed streams"
    );

    // A second image on the same base layers, with notebooks on top.
    let second = repo.scratch("notebooks-oci");
    let b = Builder::from(&layout, "lab", &second, "nb");
    b.layer(|root| {
        fs::create_dir_all(root.join("home/jovyan")).unwrap();
        fs::write(
            root.join("home/jovyan/analysis.ipynb"),
            r#"{"cells": [], "nbformat": 4}"#,
        )
        .unwrap();
        fs::remove_file(root.join("etc/os-release")).unwrap();
    });
    b.finish();
    let snap2 = repo.ok(&["snapshot", "--image", p(&second)]);
    let layers2 = snap2["layers"].as_array().unwrap();
    assert_eq!(layers2.len(), 3);
    for before in layers {
        let shared = layers2
            .iter()
            .find(|l| l["digest"] == before["digest"])
            .expect("same base blob");
        let size = num(shared, "size");
        assert!(shared["already_stored"].as_bool().unwrap(), "{shared}");
        assert!(
            num(shared, "bytes_new") * 20 < size,
            "a shared layer adds under 5% of its {size} bytes: {shared}"
        );
    }
    let id2 = id_of(&snap2);

    // ls shows layers and their members; diff compares layer by layer and flattened.
    let ls = repo.ok(&["ls", &id]);
    let venv_layer = layers.iter().max_by_key(|l| num(l, "size")).unwrap()["path"]
        .as_str()
        .unwrap();
    assert!(
        ls.as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == format!("{venv_layer}/opt/venv/pyvenv.cfg")),
        "ls lists the members of each layer"
    );
    let d = repo.ok(&["diff", &id, &id2]);
    check("diff", &d, Mode::Local);
    let changes: Vec<Value> = d["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["change"].clone())
        .collect();
    assert_eq!(changes, vec!["same", "same", "added"], "{d}");
    let flat: Vec<(String, String)> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        flat.contains(&("home/jovyan/analysis.ipynb".into(), "added".into())),
        "{flat:?}"
    );
    assert!(
        flat.contains(&("etc/os-release".into(), "removed".into())),
        "a whiteout applied: {flat:?}"
    );
    assert!(!flat.iter().any(|(path, _)| path.starts_with("opt/venv")), "{flat:?}");
}

#[test]
fn a_docker_archive_round_trips_and_keeps_its_members() {
    let repo = Repo::init();
    let layout = repo.scratch("small-oci");
    let b = Builder::new(&layout, "small");
    b.layer(minimal_rootfs);
    b.finish();
    let archive = repo.scratch("small.tar");
    let source = format!("docker-archive:{}:lab/small:1", archive.display());
    tool("skopeo", &["copy", &format!("oci:{}:small", layout.display()), &source]);
    let snap = repo.ok(&["snapshot", "--image", p(&archive)]);
    assert_eq!(snap["format"], "docker-archive");
    assert_eq!(snap["layers"].as_array().unwrap().len(), 1);
    let out = repo.scratch("back.tar");
    repo.ok(&["restore", &id_of(&snap), "--image", p(&out)]);
    let back = format!("docker-archive:{}", out.display());
    let given = format!("docker-archive:{}", archive.display());
    assert_eq!(inspect(&given, &[]), inspect(&back, &[]), "skopeo inspect");
    let (x, y) = (repo.scratch("x"), repo.scratch("y"));
    for (tarball, dir) in [(&archive, &x), (&out, &y)] {
        fs::create_dir_all(dir).unwrap();
        tool("tar", &["-xf", p(tarball), "-C", p(dir)]);
    }
    same_files(&x, &y);

    // Converted to an OCI layout: the same config, the same layers.
    let layout_out = repo.scratch("converted-oci");
    let r = repo.ok(&["restore", &id_of(&snap), "--image", p(&layout_out), "--format", "oci"]);
    assert_eq!(r["format"], "oci");
    let converted = format!("oci:{}", layout_out.display());
    assert_eq!(
        inspect(&given, &["--config"]),
        inspect(&converted, &["--config"]),
        "the config"
    );
    assert_eq!(
        inspect(&given, &[])["Layers"],
        inspect(&converted, &[])["Layers"],
        "the layers"
    );
}

/// Bad images are refused and commit nothing.
#[test]
fn a_bad_digest_a_missing_blob_and_an_escaping_archive_are_refused() {
    let repo = Repo::init();
    let layout = repo.scratch("bad-oci");
    let b = Builder::new(&layout, "t");
    b.layer(minimal_rootfs);
    b.finish();
    let blobs = layout.join("blobs/sha256");
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_hex = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: Value = serde_json::from_slice(&fs::read(blobs.join(&manifest_hex)).unwrap()).unwrap();
    let hex = |d: &Value| d["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let (config, layer) = (hex(&manifest["config"]), hex(&manifest["layers"][0]));

    let flipped = repo.scratch("flipped-oci");
    cp_a(&layout, &flipped);
    let mut bytes = fs::read(flipped.join("blobs/sha256").join(&config)).unwrap();
    bytes[10] ^= 1;
    fs::write(flipped.join("blobs/sha256").join(&config), bytes).unwrap();
    repo.run(&["snapshot", "--image", p(&flipped)])
        .expect_error(&["does not match its digest"]);

    let missing = repo.scratch("missing-oci");
    cp_a(&layout, &missing);
    fs::remove_file(missing.join("blobs/sha256").join(&layer)).unwrap();
    repo.run(&["snapshot", "--image", p(&missing)])
        .expect_error(&["missing", &layer]);

    let escaping = repo.scratch("escaping.tar");
    fs::write(
        &escaping,
        archive_with(&[("manifest.json", b"[]".as_slice()), ("../outside", b"x")]),
    )
    .unwrap();
    repo.run(&["snapshot", "--image", p(&escaping)])
        .expect_error(&["leaves the archive"]);
    let absolute = repo.scratch("absolute.tar");
    fs::write(
        &absolute,
        archive_with(&[("/etc/passwd", b"x".as_slice()), ("manifest.json", b"[]")]),
    )
    .unwrap();
    repo.run(&["snapshot", "--image", p(&absolute)])
        .expect_error(&["absolute"]);
    assert!(repo.snapshots().is_empty(), "nothing committed");
}

/// A tar archive of regular files, written by hand so that it may hold any path.
fn archive_with(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in members {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn an_image_pushed_through_a_server_sends_nothing_for_its_shared_layers() {
    use crate::server::harness::Server;
    let server = Server::start();
    let admin = server.admin();
    let dir = server.scratch("images");
    fs::create_dir_all(&dir).unwrap();
    let layout = lab_image(&dir);
    let first = server.push(&admin, &["--image", p(&layout)]);
    check("snapshot", &first, Mode::Server);
    let venv_blob = num(&first, "bytes_sent");
    assert!(venv_blob > 50_000_000, "the first push sends the layers: {first}");

    let second = dir.join("nb-oci");
    let b = Builder::from(&layout, "lab", &second, "nb");
    b.layer(|root| {
        fs::create_dir_all(root.join("home/jovyan")).unwrap();
        fs::write(
            root.join("home/jovyan/analysis.ipynb"),
            r#"{"cells": [], "nbformat": 4}"#,
        )
        .unwrap();
    });
    b.finish();
    let pushed = server.push(&admin, &["--image", p(&second)]);
    let sent = num(&pushed, "bytes_sent");
    assert!(
        sent < 256 * 1024,
        "only the new layer and the small files cross the wire: {pushed}"
    );
    // ls and diff through the server show what they show locally.
    let ls = server.ok(&admin, &["ls", &id_of(&first)]);
    let venv = first["layers"].as_array().map_or(0, Vec::len);
    assert!(venv == 0, "a push reports no per-layer document");
    assert!(
        ls.as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"].as_str().unwrap().ends_with("/opt/venv/pyvenv.cfg")),
        "ls lists the members of each layer"
    );
    let d = server.ok(&admin, &["diff", &id_of(&first), &id_of(&pushed)]);
    check("diff", &d, Mode::Server);
    let added: Vec<&str> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"] == "added")
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(added.contains(&"home/jovyan/analysis.ipynb"), "{added:?}");
    let listed = server.ok(&admin, &["snapshots"]);
    let kinds: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "image").count(), 2, "{kinds:?}");

    // Restored through the server, in both formats, every digest as the original's.
    let out = dir.join("restored");
    let r = server.ok(&admin, &["restore", &id_of(&pushed), "--image", p(&out)]);
    check("restore-image", &r, Mode::Server);
    same_files(&second, &out);
    let (a, b) = (
        format!("oci:{}:nb", second.display()),
        format!("oci:{}:nb", out.display()),
    );
    assert_eq!(inspect(&a, &["--raw"]), inspect(&b, &["--raw"]));
    let archive = dir.join("restored.tar");
    server.ok(
        &admin,
        &[
            "restore",
            &id_of(&pushed),
            "--image",
            p(&archive),
            "--format",
            "docker-archive",
        ],
    );
    let docker = format!("docker-archive:{}", archive.display());
    assert_eq!(inspect(&a, &["--config"]), inspect(&docker, &["--config"]));

    // A file that does not match its descriptor is refused before anything is sent (the
    // server's own checks: server::bad_input::image_headers_are_checked).
    let bad = dir.join("bad-oci");
    cp_a(&second, &bad);
    let index: Value = serde_json::from_slice(&fs::read(bad.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let mut bytes = fs::read(bad.join("blobs/sha256").join(&manifest)).unwrap();
    bytes.push(b' ');
    fs::write(bad.join("blobs/sha256").join(&manifest), bytes).unwrap();
    server
        .run(&admin, &["--json", "push", "--image", p(&bad)])
        .expect_error(&["663 bytes, its descriptor says 662"]);
}
