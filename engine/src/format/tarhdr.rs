//! Tar headers (ustar, GNU and PAX), parsed from raw 512-byte blocks. Pure and bounded:
//! every field is read from the block itself, nothing is allocated from a size it claims.

use crate::format::FormatError;

/// Bytes of a tar block.
pub const BLOCK: usize = 512;
/// Largest PAX or GNU long-name record kept (its data is metadata held in memory).
pub const MAX_META_RECORD: u64 = 16 * 1024 * 1024;

/// What a header describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TarKind {
    /// Regular file (`0`, NUL, `7`).
    File,
    /// Hard link (`1`).
    HardLink,
    /// Symbolic link (`2`).
    Symlink,
    /// Character device (`3`).
    CharDevice,
    /// Block device (`4`).
    BlockDevice,
    /// Directory (`5`).
    Dir,
    /// FIFO (`6`).
    Fifo,
    /// PAX extended header for the next member (`x`).
    PaxLocal,
    /// PAX global header (`g`).
    PaxGlobal,
    /// GNU long name for the next member (`L`).
    GnuLongName,
    /// GNU long link target for the next member (`K`).
    GnuLongLink,
    /// Anything else; its data is kept and restored verbatim, never extracted.
    Other(u8),
}

impl TarKind {
    fn from_flag(flag: u8) -> Self {
        match flag {
            b'0' | 0 | b'7' => TarKind::File,
            b'1' => TarKind::HardLink,
            b'2' => TarKind::Symlink,
            b'3' => TarKind::CharDevice,
            b'4' => TarKind::BlockDevice,
            b'5' => TarKind::Dir,
            b'6' => TarKind::Fifo,
            b'x' => TarKind::PaxLocal,
            b'g' => TarKind::PaxGlobal,
            b'L' => TarKind::GnuLongName,
            b'K' => TarKind::GnuLongLink,
            other => TarKind::Other(other),
        }
    }
    /// True for records whose data describes the next member rather than being content.
    pub fn is_meta(self) -> bool {
        matches!(
            self,
            TarKind::PaxLocal | TarKind::PaxGlobal | TarKind::GnuLongName | TarKind::GnuLongLink
        )
    }
}

/// A parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarHeader {
    /// Type.
    pub kind: TarKind,
    /// Path from the header (ustar prefix joined), before PAX or GNU overrides.
    pub name: Vec<u8>,
    /// Link target.
    pub link: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Size of the data that follows.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Device major and minor.
    pub dev: (u32, u32),
}

/// True for an all-zero block (end of archive).
pub fn is_zero_block(block: &[u8]) -> bool {
    block.iter().all(|&b| b == 0)
}

fn field(block: &[u8; BLOCK], at: usize, len: usize) -> &[u8] {
    block.get(at..at + len).unwrap_or_default()
}

fn cstr(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes.get(..end).unwrap_or_default()
}

/// Parses a numeric field: octal text (NUL or space terminated) or GNU base-256.
fn number(bytes: &[u8], name: &'static str) -> Result<u64, FormatError> {
    if let Some((&first, rest)) = bytes.split_first()
        && first & 0x80 != 0
    {
        if first & 0x40 != 0 {
            return Err(FormatError::invalid(name, "negative base-256 number"));
        }
        let mut v = u64::from(first & 0x3f);
        for &b in rest {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| FormatError::invalid(name, "overflows 64 bits"))?;
        }
        return Ok(v);
    }
    let text = cstr(bytes);
    let digits: &[u8] = {
        let t = text
            .iter()
            .position(|&b| b != b' ')
            .map_or(&[][..], |s| text.get(s..).unwrap_or_default());
        let e = t.iter().position(|&b| b == b' ').unwrap_or(t.len());
        t.get(..e).unwrap_or_default()
    };
    if digits.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(digits).map_err(|_| FormatError::invalid(name, "not octal"))?;
    u64::from_str_radix(s, 8).map_err(|_| FormatError::invalid(name, format!("{s:?} is not octal")))
}

/// Parses a numeric field that may be negative: a GNU base-256 field whose first byte has
/// both top bits set is a big-endian two's complement number (a time before 1970).
fn signed_number(bytes: &[u8], name: &'static str) -> Result<i64, FormatError> {
    match bytes.first() {
        Some(&first) if first & 0xc0 == 0xc0 => {
            let cut = bytes.len().saturating_sub(8);
            let (high, low) = bytes.split_at(cut);
            if !high.iter().all(|&b| b == 0xff) || low.len() != 8 {
                return Err(FormatError::invalid(name, "negative base-256 number beyond 64 bits"));
            }
            let mut raw = [0u8; 8];
            raw.copy_from_slice(low);
            let v = i64::from_be_bytes(raw);
            if v >= 0 {
                return Err(FormatError::invalid(name, "negative base-256 number beyond 64 bits"));
            }
            Ok(v)
        }
        _ => Ok(i64::try_from(number(bytes, name)?).unwrap_or(i64::MAX)),
    }
}

/// Verifies the checksum and parses a header block.
///
/// # Errors
/// [`FormatError::Invalid`] for a bad checksum or malformed number.
pub fn parse_header(block: &[u8; BLOCK]) -> Result<TarHeader, FormatError> {
    let stored = number(field(block, 148, 8), "tar checksum")?;
    let unsigned: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) })
        .sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return Err(FormatError::invalid(
            "tar header",
            format!("bad checksum (stored {stored}, computed {unsigned})"),
        ));
    }
    let flag = block.get(156).copied().unwrap_or(0);
    // Only POSIX ustar ("ustar\0") has a name prefix; GNU headers ("ustar  \0") keep
    // access and change times in those bytes.
    let ustar = field(block, 257, 6) == b"ustar\0";
    let mut name = cstr(field(block, 0, 100)).to_vec();
    let prefix = cstr(field(block, 345, 155));
    if ustar && !prefix.is_empty() {
        let mut full = prefix.to_vec();
        full.push(b'/');
        full.extend_from_slice(&name);
        name = full;
    }
    Ok(TarHeader {
        kind: TarKind::from_flag(flag),
        name,
        link: cstr(field(block, 157, 100)).to_vec(),
        mode: u32::try_from(number(field(block, 100, 8), "tar mode")? & 0o7777).unwrap_or(0),
        uid: number(field(block, 108, 8), "tar uid")?,
        gid: number(field(block, 116, 8), "tar gid")?,
        size: number(field(block, 124, 12), "tar size")?,
        mtime: signed_number(field(block, 136, 12), "tar mtime")?,
        dev: (
            u32::try_from(number(field(block, 329, 8), "tar devmajor")?).unwrap_or(0),
            u32::try_from(number(field(block, 337, 8), "tar devminor")?).unwrap_or(0),
        ),
    })
}

/// Padding after `size` bytes of data, up to the next block boundary.
pub fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Key/value pairs of a PAX header.
pub type PaxRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// PAX records (`LEN KEY=VALUE\n`) as key/value pairs.
///
/// # Errors
/// [`FormatError::Invalid`] for a malformed record.
pub fn parse_pax(data: &[u8]) -> Result<PaxRecords, FormatError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && rest.first() != Some(&0) {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| FormatError::invalid("pax record", "no length"))?;
        let len: usize = std::str::from_utf8(rest.get(..space).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| FormatError::invalid("pax record", "bad length"))?;
        let record = rest
            .get(..len)
            .filter(|r| r.len() > space + 1 && r.last() == Some(&b'\n'));
        let record = record.ok_or_else(|| FormatError::invalid("pax record", "length beyond the data"))?;
        let body = record.get(space + 1..len - 1).unwrap_or_default();
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| FormatError::invalid("pax record", "no '='"))?;
        out.push((
            body.get(..eq).unwrap_or_default().to_vec(),
            body.get(eq + 1..).unwrap_or_default().to_vec(),
        ));
        rest = rest.get(len..).unwrap_or_default();
    }
    Ok(out)
}

/// The `size` a PAX extended header gives the next member (writers put it there for
/// members of 8 GiB and more, with 0 in the ustar field), if it has a valid one.
pub fn pax_size(data: &[u8]) -> Option<u64> {
    let records = parse_pax(data).ok()?;
    let (_, v) = records.iter().rev().find(|(k, _)| k.as_slice() == b"size")?;
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_base256_times_are_times_before_1970() {
        let mut f = [0xffu8; 12];
        f[4..].copy_from_slice(&(-86_400i64).to_be_bytes());
        assert_eq!(signed_number(&f, "t").unwrap(), -86_400);
        let mut big = [0xffu8; 12];
        big[3] = 0x7f;
        assert!(signed_number(&big, "t").is_err());
        assert_eq!(signed_number(b"00000000017\0", "t").unwrap(), 15);
        let mut pos = [0u8; 12];
        pos[0] = 0x80;
        pos[11] = 5;
        assert_eq!(signed_number(&pos, "t").unwrap(), 5);
    }

    fn header(name: &str, size: u64, flag: u8) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..108].copy_from_slice(b"0000644\0");
        b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        b[156] = flag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        b
    }

    #[test]
    fn parses_and_checks() {
        let h = parse_header(&header("dir/file.txt", 1234, b'0')).unwrap();
        assert_eq!(
            (h.kind, h.name.as_slice(), h.size, h.mode),
            (TarKind::File, &b"dir/file.txt"[..], 1234, 0o644)
        );
        let mut bad = header("x", 1, b'0');
        bad[0] = b'y';
        assert!(parse_header(&bad).is_err());
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
    }

    #[test]
    fn base256_and_pax() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[11] = 5;
        assert_eq!(number(&f, "x").unwrap(), 5);
        let pax = parse_pax(b"20 path=a/long/name\n10 uid=17\n").unwrap();
        assert_eq!(
            pax,
            vec![
                (b"path".to_vec(), b"a/long/name".to_vec()),
                (b"uid".to_vec(), b"17".to_vec())
            ]
        );
        assert!(parse_pax(b"99 path=x\n").is_err());
    }
}
