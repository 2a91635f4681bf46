//! Tar layouts: what, besides member contents, rebuilds a tar stream byte for byte.
//!
//! A layout is a byte stream (stored like file content, in chunks of kind
//! [`crate::format::blob::BlobKind::Layout`], which live in metadata packs):
//!
//! ```text
//! u8 version (1)
//! record*:
//!   0x01 HEADER  512 raw bytes of a header block
//!   0x02 RAW     u32 length, bytes        (data of PAX / GNU long-name records, non-zero padding)
//!   0x03 MEMBER  u64 size, content        (a member's data, chunked like a file's; content
//!                                          encoded as in tree entries)
//!   0x04 ZEROS   u32 length               (zero padding)
//!   0x05 TAIL    u64 size, content        (everything from the first end-of-archive block on)
//!   0x06 END
//! ```

use crate::format::FormatError;
use crate::format::codec::{Reader, Writer};
use crate::format::tarhdr::BLOCK;
use crate::format::tree::{Content, decode_content, encode_content};

const LAYOUT_VERSION: u8 = 1;
/// Largest RAW record.
pub const MAX_RAW: usize = 16 * 1024 * 1024 + BLOCK;

/// One layout record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A header block.
    Header(Box<[u8; BLOCK]>),
    /// Bytes kept verbatim.
    Raw(Vec<u8>),
    /// A member's data.
    Member {
        /// Bytes.
        size: u64,
        /// Where they are.
        content: Content,
    },
    /// Zero bytes.
    Zeros(u32),
    /// The end-of-archive blocks and whatever follows them.
    Tail {
        /// Bytes.
        size: u64,
        /// Where they are.
        content: Content,
    },
    /// End of the layout.
    End,
}

/// The version byte that starts every layout stream.
pub fn layout_start() -> [u8; 1] {
    [LAYOUT_VERSION]
}

/// Encodes one record.
pub fn encode(record: &Record) -> Vec<u8> {
    let mut w = Writer::new();
    match record {
        Record::Header(block) => {
            w.u8(1);
            w.bytes(&block[..]);
        }
        Record::Raw(bytes) => {
            w.u8(2);
            w.bytes32(bytes);
        }
        Record::Member { size, content } => {
            w.u8(3);
            w.u64(*size);
            encode_content(&mut w, content);
        }
        Record::Zeros(n) => {
            w.u8(4);
            w.u32(*n);
        }
        Record::Tail { size, content } => {
            w.u8(5);
            w.u64(*size);
            encode_content(&mut w, content);
        }
        Record::End => w.u8(6),
    }
    w.into_bytes()
}

/// Reads records from a layout stream that arrives in pieces.
#[derive(Default, Debug)]
pub struct LayoutReader {
    buf: Vec<u8>,
    started: bool,
}

impl LayoutReader {
    /// A reader at the start of a layout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next bytes of the layout.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete record, `None` when more bytes are needed.
    ///
    /// # Errors
    /// [`FormatError`] for a malformed record.
    pub fn next_record(&mut self) -> Result<Option<Record>, FormatError> {
        if !self.started {
            let Some(&v) = self.buf.first() else { return Ok(None) };
            if v != LAYOUT_VERSION {
                return Err(FormatError::UnsupportedVersion {
                    object: "tar layout",
                    version: u16::from(v),
                    supported: u16::from(LAYOUT_VERSION),
                });
            }
            self.buf.drain(..1);
            self.started = true;
        }
        let Some(len) = record_len(&self.buf)? else {
            return Ok(None);
        };
        if self.buf.len() < len {
            return Ok(None);
        }
        let mut r = Reader::new(self.buf.get(..len).unwrap_or_default());
        let record = decode_one(&mut r)?;
        r.finish()?;
        self.buf.drain(..len);
        Ok(Some(record))
    }

    /// True when no partial record is buffered.
    pub fn is_drained(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The length of the record at the start of `buf`, once enough of it is there to tell.
fn record_len(buf: &[u8]) -> Result<Option<usize>, FormatError> {
    let at = |i: usize| buf.get(i).copied();
    let u32_at = |i: usize| {
        buf.get(i..i + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_le_bytes(b) as usize)
    };
    let content_len = |i: usize| -> Option<usize> {
        Some(match at(i)? {
            1 => 5 + 36 * u32_at(i + 1)?,
            2 => 34,
            3 => 33,
            _ => 1,
        })
    };
    let Some(tag) = at(0) else { return Ok(None) };
    Ok(match tag {
        1 => Some(1 + BLOCK),
        2 => match u32_at(1) {
            Some(n) if n > MAX_RAW => return Err(FormatError::invalid("layout raw", format!("{n} bytes"))),
            n => n.map(|n| 5 + n),
        },
        3 | 5 => content_len(9).map(|c| 9 + c),
        4 => Some(5),
        6 => Some(1),
        other => return Err(FormatError::invalid("layout record", format!("unknown tag {other}"))),
    })
}

fn decode_one(r: &mut Reader<'_>) -> Result<Record, FormatError> {
    Ok(match r.u8("layout record")? {
        1 => {
            let mut block = Box::new([0u8; BLOCK]);
            block.copy_from_slice(r.take(BLOCK, "layout header")?);
            Record::Header(block)
        }
        2 => Record::Raw(r.bytes32("layout raw", MAX_RAW)?.to_vec()),
        3 => Record::Member {
            size: r.u64("layout member size")?,
            content: decode_content(r)?,
        },
        4 => Record::Zeros(r.u32("layout zeros")?),
        5 => Record::Tail {
            size: r.u64("layout tail size")?,
            content: decode_content(r)?,
        },
        6 => Record::End,
        other => return Err(FormatError::invalid("layout record", format!("unknown tag {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::ChunkRef;
    use crate::id::{ChunkId, Hash32};

    #[test]
    fn round_trip_in_pieces() {
        let records = vec![
            Record::Header(Box::new([7u8; BLOCK])),
            Record::Raw(b"30 path=some/very/long/name\n".to_vec()),
            Record::Member {
                size: 0,
                content: Content::None,
            },
            Record::Member {
                size: 20,
                content: Content::Inline(vec![
                    ChunkRef {
                        id: ChunkId::new(Hash32::from_bytes([1; 32])),
                        len: 10,
                    },
                    ChunkRef {
                        id: ChunkId::new(Hash32::from_bytes([2; 32])),
                        len: 10,
                    },
                ]),
            },
            Record::Zeros(100),
            Record::Tail {
                size: 1024,
                content: Content::None,
            },
            Record::End,
        ];
        let mut bytes = layout_start().to_vec();
        for r in &records {
            bytes.extend(encode(r));
        }
        let mut reader = LayoutReader::new();
        let mut got = Vec::new();
        for piece in bytes.chunks(7) {
            reader.push(piece);
            while let Some(r) = reader.next_record().unwrap() {
                got.push(r);
            }
        }
        assert_eq!(got, records);
        assert!(reader.is_drained());
        let mut bad = LayoutReader::new();
        bad.push(&[1, 9]);
        assert!(bad.next_record().is_err());
    }
}
