//! Little-endian writer and bounds-checked reader shared by every layout.

use crate::format::FormatError;
use crate::id::{Hash32, ID_LEN};

/// Appends fixed-width little-endian fields to a buffer.
#[derive(Default, Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// u16 LE.
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    /// u32 LE.
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    /// u64 LE.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    /// i64 LE.
    pub fn i64(&mut self, v: i64) {
        self.bytes(&v.to_le_bytes());
    }
    /// A 32-byte id.
    pub fn id(&mut self, id: &Hash32) {
        self.bytes(id.as_bytes());
    }
    /// Bytes prefixed by a u16 length; the caller guarantees `b.len() <= u16::MAX`.
    pub fn bytes16(&mut self, b: &[u8]) {
        let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.bytes(b.get(..usize::from(len)).unwrap_or_default());
    }
    /// Bytes prefixed by a u32 length; the caller guarantees `b.len() <= u32::MAX`.
    pub fn bytes32(&mut self, b: &[u8]) {
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.bytes(b.get(..len as usize).unwrap_or_default());
    }
}

/// Reads fixed-width little-endian fields, failing cleanly on truncation.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// Fails unless every byte was read.
    ///
    /// # Errors
    /// [`FormatError::TrailingBytes`].
    pub fn finish(&self) -> Result<(), FormatError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(FormatError::TrailingBytes(n)),
        }
    }
    /// `n` raw bytes.
    ///
    /// # Errors
    /// [`FormatError::Truncated`] naming `field`.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FormatError> {
        if n > self.buf.len() {
            return Err(FormatError::Truncated(field));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FormatError> {
        let bytes = self.take(N, field)?;
        bytes.try_into().map_err(|_| FormatError::Truncated(field))
    }
    /// One byte.
    ///
    /// # Errors
    /// [`FormatError::Truncated`].
    pub fn u8(&mut self, field: &'static str) -> Result<u8, FormatError> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }
    /// u16 LE.
    ///
    /// # Errors
    /// [`FormatError::Truncated`].
    pub fn u16(&mut self, field: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    /// u32 LE.
    ///
    /// # Errors
    /// [`FormatError::Truncated`].
    pub fn u32(&mut self, field: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    /// u64 LE.
    ///
    /// # Errors
    /// [`FormatError::Truncated`].
    pub fn u64(&mut self, field: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    /// i64 LE.
    ///
    /// # Errors
    /// [`FormatError::Truncated`].
    pub fn i64(&mut self, field: &'static str) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }
    /// A 32-byte id.
    ///
    /// # Errors
    /// [`FormatError::Truncated`].
    pub fn id(&mut self, field: &'static str) -> Result<Hash32, FormatError> {
        Ok(Hash32::from_bytes(self.array::<ID_LEN>(field)?))
    }
    /// Bytes with a u16 length prefix.
    ///
    /// # Errors
    /// [`FormatError::Truncated`].
    pub fn bytes16(&mut self, field: &'static str) -> Result<&'a [u8], FormatError> {
        let n = self.u16(field)?;
        self.take(usize::from(n), field)
    }
    /// Bytes with a u32 length prefix, at most `max` long.
    ///
    /// # Errors
    /// [`FormatError::Truncated`] or [`FormatError::Invalid`] when longer than `max`.
    pub fn bytes32(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], FormatError> {
        let n = self.u32(field)? as usize;
        if n > max {
            return Err(FormatError::invalid(field, format!("length {n} exceeds {max}")));
        }
        self.take(n, field)
    }
    /// UTF-8 text with a u16 length prefix.
    ///
    /// # Errors
    /// [`FormatError::Truncated`] or [`FormatError::Invalid`] when not UTF-8.
    pub fn string16(&mut self, field: &'static str) -> Result<String, FormatError> {
        let b = self.bytes16(field)?;
        String::from_utf8(b.to_vec()).map_err(|_| FormatError::invalid(field, "not UTF-8"))
    }
    /// A count that must not exceed what the remaining bytes could hold at
    /// `min_item` bytes per item, so a forged count cannot make us allocate.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] when the count is impossible.
    pub fn count32(&mut self, field: &'static str, min_item: usize) -> Result<usize, FormatError> {
        let n = self.u32(field)? as usize;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() {
            return Err(FormatError::invalid(
                field,
                format!("count {n} larger than the bytes left"),
            ));
        }
        Ok(n)
    }
    /// Like [`Reader::count32`] for a u16 count.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] when the count is impossible.
    pub fn count16(&mut self, field: &'static str, min_item: usize) -> Result<usize, FormatError> {
        let n = usize::from(self.u16(field)?);
        if n.saturating_mul(min_item.max(1)) > self.buf.len() {
            return Err(FormatError::invalid(
                field,
                format!("count {n} larger than the bytes left"),
            ));
        }
        Ok(n)
    }
}

/// Checks and consumes a magic plus a u16 version; returns the version.
///
/// # Errors
/// [`FormatError::BadMagic`] or [`FormatError::UnsupportedVersion`].
pub fn expect_header(
    r: &mut Reader<'_>,
    magic: &'static [u8; 8],
    object: &'static str,
    supported: u16,
) -> Result<u16, FormatError> {
    expect_header_versions(r, magic, object, supported..=supported)
}

/// As [`expect_header`] for an object of which this build reads several versions.
///
/// # Errors
/// [`FormatError::BadMagic`], or [`FormatError::UnsupportedVersion`] naming the newest
/// version read.
pub fn expect_header_versions(
    r: &mut Reader<'_>,
    magic: &'static [u8; 8],
    object: &'static str,
    supported: std::ops::RangeInclusive<u16>,
) -> Result<u16, FormatError> {
    let found = r.take(8, "magic")?;
    if found != magic {
        return Err(FormatError::BadMagic {
            expected: std::str::from_utf8(magic).unwrap_or("?"),
        });
    }
    let version = r.u16("version")?;
    if !supported.contains(&version) {
        return Err(FormatError::UnsupportedVersion {
            object,
            version,
            supported: *supported.end(),
        });
    }
    Ok(version)
}

/// Reads `n` reserved bytes, which must be zero.
///
/// # Errors
/// [`FormatError::Truncated`], or [`FormatError::Invalid`] naming `field` when one is not zero.
pub fn expect_zeros(r: &mut Reader<'_>, n: usize, field: &'static str) -> Result<(), FormatError> {
    if r.take(n, field)?.iter().any(|&b| b != 0) {
        return Err(FormatError::invalid(field, "reserved bytes are not zero"));
    }
    Ok(())
}
