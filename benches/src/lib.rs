//! Input generators shared by Amber's criterion benches (`benches/benches/engine.rs`) and
//! the comparison script (`benches/compare.sh`, through the `amber-bench-tree` binary), so
//! both measure the same bytes.
//!
//! Everything is deterministic: the same seed gives the same data on every machine.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let spec = amber_benches::TreeSpec { small_files: 20, large_files: 1, ..amber_benches::TreeSpec::DEFAULT };
//! let stats = amber_benches::generate_tree(dir.path(), &spec)?;
//! assert_eq!(stats.files, 21);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs;
use std::io;
use std::path::Path;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// xorshift64* generator: fast, deterministic, good enough to defeat compression and dedup.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a seed (a zero seed is replaced, xorshift would stay at zero).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..=hi` (`lo` when `hi <= lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo + 1)
        }
    }
}

/// `len` bytes of incompressible pseudo-random data.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Words that text-like content is drawn from: source code, notebooks, CSV and logs.
const WORDS: &[&str] = &[
    "import",
    "numpy",
    "as",
    "np",
    "pandas",
    "pd",
    "def",
    "return",
    "self",
    "data",
    "for",
    "in",
    "range",
    "if",
    "else",
    "print",
    "model",
    "train",
    "loss",
    "epoch",
    "batch",
    "size",
    "the",
    "of",
    "and",
    "to",
    "a",
    "is",
    "value",
    "result",
    "config",
    "path",
    "file",
    "open",
    "with",
    "None",
    "True",
    "False",
    "np.array",
    "df",
    "plt.plot",
    "cell",
    "source",
    "outputs",
    "execution_count",
    "metadata",
    "x",
    "y",
    "z",
    "sample",
    "mean",
    "std",
    "lambda",
    "class",
    "__init__",
    "assert",
    "experiment",
    "run",
    "seed",
    "lr",
    "0.001",
    "weights",
    "=",
    "==",
];

/// Punctuation placed between words, most often a space.
const SEPARATORS: &[&str] = &[" ", " ", " ", " ", " ", ", ", "(", ")", ": ", ".", "\n", "\n    "];

/// `len` bytes of text-like data: lines of words and numbers, which zstd -3 shrinks
/// several-fold but which never repeat exactly, so chunks do not deduplicate.
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(len + 64);
    let pick = |rng: &mut XorShift, list: &[&'static str]| -> &'static str {
        let at = usize::try_from(rng.next_u64() % list.len() as u64).unwrap_or(0);
        list.get(at).copied().unwrap_or(" ")
    };
    while out.len() < len {
        let r = rng.next_u64();
        if r.is_multiple_of(8) {
            // A number: the part that keeps the text from being a pure dictionary.
            out.extend_from_slice((r >> 40).to_string().as_bytes());
        } else {
            out.extend_from_slice(pick(&mut rng, WORDS).as_bytes());
        }
        out.extend_from_slice(pick(&mut rng, SEPARATORS).as_bytes());
    }
    out.truncate(len);
    out
}

/// Shape of a generated source tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeSpec {
    /// Small text-like files.
    pub small_files: u64,
    /// Smallest small file, bytes.
    pub small_min: u64,
    /// Largest small file, bytes.
    pub small_max: u64,
    /// Large files of random data.
    pub large_files: u64,
    /// Smallest large file, bytes.
    pub large_min: u64,
    /// Largest large file, bytes.
    pub large_max: u64,
    /// Seed of all content and sizes.
    pub seed: u64,
}

impl TreeSpec {
    /// About 100 MiB: 2000 text-like files of 1–64 KiB (skewed towards small, as in a
    /// home directory of notebooks and scripts) and 10 random files of 4–8 MiB.
    pub const DEFAULT: TreeSpec = TreeSpec {
        small_files: 2000,
        small_min: KIB,
        small_max: 64 * KIB,
        large_files: 10,
        large_min: 4 * MIB,
        large_max: 8 * MIB,
        seed: 0x00A3_BE12,
    };
}

/// What [`generate_tree`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Regular files written.
    pub files: u64,
    /// Content bytes written.
    pub bytes: u64,
}

/// Small-file extensions, cycled through.
const EXTENSIONS: &[&str] = &["py", "ipynb", "csv", "txt", "json", "md"];

/// Writes the tree described by `spec` below `root` (created if missing):
/// `notebooks/dNN/sN/fNNNN.ext` for small files and `data/blobNN.bin` for large ones.
///
/// # Errors
/// Any I/O error creating directories or writing files.
pub fn generate_tree(root: &Path, spec: &TreeSpec) -> io::Result<TreeStats> {
    let mut rng = XorShift::new(spec.seed);
    let mut stats = TreeStats::default();
    for i in 0..spec.small_files {
        let dir = root
            .join("notebooks")
            .join(format!("d{:02}", i / 100))
            .join(format!("s{}", (i / 10) % 10));
        fs::create_dir_all(&dir)?;
        // u² skews sizes towards the small end: mean about a third of the way up.
        let u = rng.next_u64() % 1024;
        let size = spec.small_min + (spec.small_max.saturating_sub(spec.small_min)) * u * u / (1023 * 1023);
        let ext = EXTENSIONS
            .get(usize::try_from(i % EXTENSIONS.len() as u64).unwrap_or(0))
            .copied()
            .unwrap_or("txt");
        let content = text_bytes(rng.next_u64(), to_usize(size)?);
        fs::write(dir.join(format!("f{i:04}.{ext}")), &content)?;
        stats.files += 1;
        stats.bytes += size;
    }
    let data = root.join("data");
    fs::create_dir_all(&data)?;
    for i in 0..spec.large_files {
        let size = rng.range(spec.large_min, spec.large_max);
        fs::write(
            data.join(format!("blob{i:02}.bin")),
            random_bytes(rng.next_u64(), to_usize(size)?),
        )?;
        stats.files += 1;
        stats.bytes += size;
    }
    Ok(stats)
}

fn to_usize(size: u64) -> io::Result<usize> {
    usize::try_from(size).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("size {size} too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_sized() {
        assert_eq!(random_bytes(1, 1000), random_bytes(1, 1000));
        assert_ne!(random_bytes(1, 1000), random_bytes(2, 1000));
        assert_eq!(random_bytes(1, 1001).len(), 1001);
        assert_eq!(text_bytes(3, 5000).len(), 5000);
        assert!(random_bytes(0, 64).iter().any(|&b| b != 0));
    }

    #[test]
    fn tree_matches_its_stats() {
        let dir = tempfile::tempdir().unwrap();
        let spec = TreeSpec {
            small_files: 30,
            large_files: 2,
            large_min: 100 * KIB,
            large_max: 200 * KIB,
            ..TreeSpec::DEFAULT
        };
        let stats = generate_tree(dir.path(), &spec).unwrap();
        assert_eq!(stats.files, 32);
        let mut on_disk = 0;
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    on_disk += e.metadata().unwrap().len();
                }
            }
        }
        assert_eq!(on_disk, stats.bytes);
    }
}
