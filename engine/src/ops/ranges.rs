//! Changed-range lists, as a cloud block-volume change API reports them.
//!
//! Text, one range per line: `OFFSET LENGTH` in bytes, decimal or `0x` hexadecimal,
//! separated by white space or a comma. Blank lines and lines starting with `#` are
//! ignored. Ranges may overlap and come in any order.

use crate::error::{Error, Result};

/// A byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteRange {
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

fn number(text: &str, line: usize) -> Result<u64> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| Error::InvalidArgument(format!("changed ranges, line {line}: {text:?} is not a number")))
}

/// What to tell a user whose changed-ranges file lists no range.
pub const NOTHING_CHANGED: &str =
    "the changed-ranges file lists no range: nothing changed since the parent, every block is taken from it";

/// Reads and parses a changed-ranges file.
///
/// # Errors
/// [`Error::Io`] when unreadable; as [`parse_ranges`].
pub fn load_ranges(path: &std::path::Path) -> Result<Vec<ByteRange>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_ranges(&text)
}

/// Parses a changed-ranges file.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the line.
pub fn parse_ranges(text: &str) -> Result<Vec<ByteRange>> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|f| !f.is_empty())
            .collect();
        let [offset, len] = fields.as_slice() else {
            return Err(Error::InvalidArgument(format!(
                "changed ranges, line {}: expected OFFSET LENGTH",
                n + 1
            )));
        };
        let len = number(len, n + 1)?;
        if len == 0 {
            return Err(Error::InvalidArgument(format!(
                "changed ranges, line {}: a range of length 0 changes nothing; leave it out (an empty \
                 list means nothing changed)",
                n + 1
            )));
        }
        out.push(ByteRange {
            offset: number(offset, n + 1)?,
            len,
        });
    }
    Ok(out)
}

/// The set of block indices touched by some ranges, as sorted disjoint intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockSet {
    intervals: Vec<(u64, u64)>,
}

impl BlockSet {
    /// The blocks of `block` bytes touched by `ranges` in a volume of `size` bytes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a range that reaches past the end of the volume.
    pub fn from_ranges(ranges: &[ByteRange], size: u64, block: u64) -> Result<Self> {
        let block = block.max(1);
        let blocks = spans(ranges, size)?
            .into_iter()
            .map(|(a, b)| (a / block, (b - 1) / block + 1))
            .collect();
        Ok(BlockSet {
            intervals: merged(blocks),
        })
    }

    /// True when block `i` is touched.
    pub fn contains(&self, i: u64) -> bool {
        let pos = self.intervals.partition_point(|&(_, end)| end <= i);
        self.intervals.get(pos).is_some_and(|&(start, _)| start <= i)
    }

    /// Number of blocks touched.
    pub fn count(&self) -> u64 {
        self.intervals.iter().map(|(a, b)| b - a).sum()
    }
}

/// The changed bytes of each block: `ranges` sorted, merged and cut at block boundaries,
/// as (block index, offset within the block, length), in order. A client and a server
/// that compute this from the same list agree on exactly which bytes cross the wire.
///
/// # Errors
/// [`Error::InvalidArgument`] for a range that reaches past the end of the volume.
pub fn block_pieces(ranges: &[ByteRange], size: u64, block: u64) -> Result<Vec<(u64, u64, u64)>> {
    let block = block.max(1);
    let mut pieces = Vec::new();
    for (mut a, b) in spans(ranges, size)? {
        while a < b {
            let i = a / block;
            let cut = ((i + 1) * block).min(b);
            pieces.push((i, a - i * block, cut - a));
            a = cut;
        }
    }
    Ok(pieces)
}

/// The non-empty ranges as sorted, merged byte spans `[start, end)`.
fn spans(ranges: &[ByteRange], size: u64) -> Result<Vec<(u64, u64)>> {
    let mut spans = Vec::with_capacity(ranges.len());
    for r in ranges {
        let end = r.offset.checked_add(r.len).filter(|&e| e <= size).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "changed range {}+{} lies outside the volume of {size} bytes",
                r.offset, r.len
            ))
        })?;
        if r.len > 0 {
            spans.push((r.offset, end));
        }
    }
    Ok(merged(spans))
}

/// Sorts intervals and merges those that overlap or touch.
fn merged(mut intervals: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    intervals.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for (a, b) in intervals {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_merge() {
        let r = parse_ranges("# changed\n0 10\n0x100000,4096\n\n8 4\n").unwrap();
        assert_eq!(r.len(), 3);
        let set = BlockSet::from_ranges(&r, 4 << 20, 1 << 20).unwrap();
        assert!(set.contains(0) && set.contains(1) && !set.contains(2));
        assert_eq!(set.count(), 2);
        assert!(parse_ranges("12").is_err());
        assert!(parse_ranges("a b").is_err());
        assert!(
            BlockSet::from_ranges(
                &[ByteRange {
                    offset: 10,
                    len: u64::MAX
                }],
                100,
                10
            )
            .is_err()
        );
        assert!(BlockSet::from_ranges(&[ByteRange { offset: 95, len: 6 }], 100, 10).is_err());
        let edge = BlockSet::from_ranges(&[ByteRange { offset: 95, len: 5 }], 100, 10).unwrap();
        assert!(edge.contains(9) && !edge.contains(8));
    }

    #[test]
    fn pieces_merge_and_split_at_block_boundaries() {
        let r = [
            ByteRange { offset: 25, len: 10 },
            ByteRange { offset: 5, len: 3 },
            ByteRange { offset: 7, len: 2 },
            ByteRange { offset: 30, len: 2 },
        ];
        let p = block_pieces(&r, 100, 10).unwrap();
        assert_eq!(p, vec![(0, 5, 4), (2, 5, 5), (3, 0, 5)]);
        assert!(block_pieces(&[ByteRange { offset: 99, len: 2 }], 100, 10).is_err());
        assert!(block_pieces(&[], 100, 10).unwrap().is_empty());
    }
}
