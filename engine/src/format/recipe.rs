//! Stream recipes: what rebuilds a compressed layer stream, byte for byte, from its
//! uncompressed stream ([`format-spec/recipe.md`]).
//!
//! A recipe is a byte stream (stored like file content, in chunks of kind
//! [`crate::format::blob::BlobKind::Chunk`]):
//!
//! ```text
//! u8 version (1)
//! op*:
//!   0x01 LITERAL  u32 length, bytes       (bytes of the stream as given, copied)
//!   0x02 BEGIN                            (a new deflate stream starts here)
//!   0x03 DEFLATE  u64 plain length, u32 length, corrections
//!                                         (the next `plain length` uncompressed bytes,
//!                                          deflated again as preflate-rs rebuilds them)
//!   0x04 END
//! ```

use crate::format::FormatError;
use crate::format::codec::{Reader, Writer};

const RECIPE_VERSION: u8 = 1;
/// Largest LITERAL payload.
pub const MAX_LITERAL: usize = 1024 * 1024;
/// Largest DEFLATE corrections payload.
pub const MAX_CORRECTIONS: usize = 64 * 1024 * 1024;
/// Largest plain length of one DEFLATE op.
pub const MAX_PLAIN: u64 = 256 * 1024 * 1024;

/// One recipe operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipeOp {
    /// Bytes copied to the output as they are.
    Literal(Vec<u8>),
    /// Start a new deflate stream (a new gzip member).
    Begin,
    /// Deflate the next `plain` bytes of the uncompressed stream with these corrections.
    Deflate {
        /// Uncompressed bytes this op consumes.
        plain: u64,
        /// preflate-rs corrections for them.
        corrections: Vec<u8>,
    },
    /// End of the recipe.
    End,
}

/// The version byte that starts every recipe.
pub fn recipe_start() -> [u8; 1] {
    [RECIPE_VERSION]
}

/// Encodes one operation.
pub fn encode(op: &RecipeOp) -> Vec<u8> {
    let mut w = Writer::new();
    match op {
        RecipeOp::Literal(bytes) => {
            w.u8(1);
            w.bytes32(bytes);
        }
        RecipeOp::Begin => w.u8(2),
        RecipeOp::Deflate { plain, corrections } => {
            w.u8(3);
            w.u64(*plain);
            w.bytes32(corrections);
        }
        RecipeOp::End => w.u8(4),
    }
    w.into_bytes()
}

/// Reads operations from a recipe that arrives in pieces.
#[derive(Default, Debug)]
pub struct RecipeReader {
    buf: Vec<u8>,
    started: bool,
}

impl RecipeReader {
    /// A reader at the start of a recipe.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next bytes of the recipe.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when no partial operation is buffered.
    pub fn is_drained(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next complete operation, `None` when more bytes are needed.
    ///
    /// # Errors
    /// [`FormatError`] for a malformed operation.
    pub fn next_op(&mut self) -> Result<Option<RecipeOp>, FormatError> {
        if !self.started {
            let Some(&v) = self.buf.first() else { return Ok(None) };
            if v != RECIPE_VERSION {
                return Err(FormatError::UnsupportedVersion {
                    object: "stream recipe",
                    version: u16::from(v),
                    supported: u16::from(RECIPE_VERSION),
                });
            }
            self.buf.drain(..1);
            self.started = true;
        }
        let Some(len) = op_len(&self.buf)? else { return Ok(None) };
        if self.buf.len() < len {
            return Ok(None);
        }
        let mut r = Reader::new(self.buf.get(..len).unwrap_or_default());
        let op = decode_one(&mut r)?;
        r.finish()?;
        self.buf.drain(..len);
        Ok(Some(op))
    }
}

fn op_len(buf: &[u8]) -> Result<Option<usize>, FormatError> {
    let u32_at = |i: usize| {
        buf.get(i..i + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_le_bytes(b) as usize)
    };
    let Some(&tag) = buf.first() else { return Ok(None) };
    Ok(match tag {
        1 => match u32_at(1) {
            Some(n) if n > MAX_LITERAL => return Err(FormatError::invalid("recipe literal", format!("{n} bytes"))),
            n => n.map(|n| 5 + n),
        },
        2 | 4 => Some(1),
        3 => match u32_at(9) {
            Some(n) if n > MAX_CORRECTIONS => {
                return Err(FormatError::invalid("recipe corrections", format!("{n} bytes")));
            }
            n => n.map(|n| 13 + n),
        },
        other => return Err(FormatError::invalid("recipe op", format!("unknown tag {other}"))),
    })
}

fn decode_one(r: &mut Reader<'_>) -> Result<RecipeOp, FormatError> {
    Ok(match r.u8("recipe op")? {
        1 => RecipeOp::Literal(r.bytes32("recipe literal", MAX_LITERAL)?.to_vec()),
        2 => RecipeOp::Begin,
        3 => {
            let plain = r.u64("recipe plain length")?;
            if plain > MAX_PLAIN {
                return Err(FormatError::invalid("recipe plain length", format!("{plain} bytes")));
            }
            RecipeOp::Deflate {
                plain,
                corrections: r.bytes32("recipe corrections", MAX_CORRECTIONS)?.to_vec(),
            }
        }
        4 => RecipeOp::End,
        other => return Err(FormatError::invalid("recipe op", format!("unknown tag {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_pieces() {
        let ops = vec![
            RecipeOp::Literal(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]),
            RecipeOp::Begin,
            RecipeOp::Deflate {
                plain: 10240,
                corrections: vec![9; 40],
            },
            RecipeOp::Literal(vec![1, 2, 3, 4, 0, 40, 0, 0]),
            RecipeOp::End,
        ];
        let mut bytes = recipe_start().to_vec();
        for op in &ops {
            bytes.extend(encode(op));
        }
        let mut reader = RecipeReader::new();
        let mut got = Vec::new();
        for piece in bytes.chunks(5) {
            reader.push(piece);
            while let Some(op) = reader.next_op().unwrap() {
                got.push(op);
            }
        }
        assert_eq!(got, ops);
        assert!(reader.is_drained());
    }

    #[test]
    fn bad_tags_versions_and_sizes_are_refused() {
        let mut r = RecipeReader::new();
        r.push(&[2]);
        assert!(r.next_op().is_err());
        let mut r = RecipeReader::new();
        r.push(&[1, 9]);
        assert!(r.next_op().is_err());
        let mut r = RecipeReader::new();
        r.push(&[1, 1, 0xff, 0xff, 0xff, 0xff]);
        assert!(r.next_op().is_err());
        let mut r = RecipeReader::new();
        let mut huge = vec![1, 3];
        huge.extend(u64::MAX.to_le_bytes());
        huge.extend(0u32.to_le_bytes());
        r.push(&huge);
        assert!(r.next_op().is_err());
    }
}
