//! zstd compression, keeping the raw bytes when compression does not make them smaller.

/// How a blob's body is stored inside its sealed envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    /// Stored as is.
    None = 0,
    /// zstd frame.
    Zstd = 1,
}

impl Compression {
    /// Decodes the on-disk tag.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Default zstd level for data blobs.
pub const DEFAULT_LEVEL: i32 = 3;

/// Compresses `data` at `level`; returns `None` when the result would not be smaller.
pub fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    let out = zstd::bulk::compress(data, level).ok()?;
    (out.len() < data.len()).then_some(out)
}

/// Decompresses a zstd frame that must expand to exactly `raw_len` bytes.
///
/// # Errors
/// A message when the frame is malformed or expands to another length.
pub fn decompress(data: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let out = zstd::bulk::decompress(data, raw_len).map_err(|e| format!("zstd: {e}"))?;
    if out.len() != raw_len {
        return Err(format!("expanded to {} bytes, expected {raw_len}", out.len()));
    }
    Ok(out)
}

/// Decompresses a zstd frame of unknown expanded size, refusing more than `max` bytes.
///
/// # Errors
/// A message when the frame is malformed or too large.
pub fn decompress_bounded(data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| format!("zstd: {e}"))?;
    let mut out = Vec::new();
    decoder
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() > max {
        return Err(format!("expands beyond {max} bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_round_trips() {
        let data = vec![7u8; 100_000];
        let c = compress(&data, DEFAULT_LEVEL).unwrap();
        assert!(c.len() < 1000);
        assert_eq!(decompress(&c, data.len()).unwrap(), data);
    }

    #[test]
    fn incompressible_is_kept_raw() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let small = b"abc";
        assert!(compress(small, DEFAULT_LEVEL).is_none());
        let _ = compress(&data, DEFAULT_LEVEL);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let data = vec![1u8; 5000];
        let c = compress(&data, DEFAULT_LEVEL).unwrap();
        assert!(decompress(&c, 4999).is_err());
        assert!(decompress(&c, 6000).is_err());
        assert!(decompress(b"not zstd", 10).is_err());
    }
}
