//! Content-defined chunking: a push scanner over FastCDC 2020 with a keyed gear table.
//!
//! Give it bytes with [`ContentChunker::push`]; take chunks with
//! [`ContentChunker::next_chunk`], which answers `None` when it needs more input.
//! After [`ContentChunker::finish`] the rest is handed out.

use std::sync::Arc;

use fastcdc::v2020::{self, Normalization};

use crate::format::FormatError;

/// Smallest minimum chunk size accepted.
pub const MIN_CHUNK_FLOOR: u32 = 64 * 1024;
/// Largest maximum chunk size accepted (also caps every blob a peer may announce).
pub const MAX_CHUNK_CEILING: u32 = 8 * 1024 * 1024;

/// FastCDC parameters, fixed in the vault config at init.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkerParams {
    min: u32,
    avg: u32,
    max: u32,
}

impl ChunkerParams {
    /// Amber's default: 512 KiB / 1 MiB / 4 MiB.
    pub const DEFAULT: ChunkerParams = ChunkerParams {
        min: 512 * 1024,
        avg: 1024 * 1024,
        max: 4 * 1024 * 1024,
    };

    /// Validates the sizes: powers of two, `min < avg < max`, within the fixed bounds.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] naming the offending size.
    pub fn new(min: u32, avg: u32, max: u32) -> Result<Self, FormatError> {
        let ok = min >= MIN_CHUNK_FLOOR
            && max <= MAX_CHUNK_CEILING
            && min < avg
            && avg < max
            && [min, avg, max].iter().all(|v| v.is_power_of_two());
        if !ok {
            return Err(FormatError::invalid(
                "chunker sizes",
                format!(
                    "min {min}, avg {avg}, max {max}: need powers of two with \
                     {MIN_CHUNK_FLOOR} <= min < avg < max <= {MAX_CHUNK_CEILING}"
                ),
            ));
        }
        Ok(ChunkerParams { min, avg, max })
    }
    /// Minimum chunk size.
    pub fn min(&self) -> u32 {
        self.min
    }
    /// Average (target) chunk size.
    pub fn avg(&self) -> u32 {
        self.avg
    }
    /// Maximum chunk size.
    pub fn max(&self) -> u32 {
        self.max
    }
}

/// Normalization level used by every vault (format v1).
const NORMALIZATION: Normalization = Normalization::Level1;

/// A gear table drawn entirely from a vault key: 256 × 64 bits of keyed BLAKE3 output,
/// so every bit of every entry is secret (XOR-ing one 64-bit seed into the public table,
/// as `fastcdc` offers, leaves only 48 effective key bits).
pub struct GearTable {
    gear: Vec<u64>,
    gear_ls: Vec<u64>,
}

impl GearTable {
    /// Derives the table from the vault's chunker key.
    pub fn keyed(key: &[u8; 32]) -> Self {
        let mut xof = blake3::Hasher::new_keyed(key)
            .update(b"amber gear table v1")
            .finalize_xof();
        let mut bytes = [0u8; 256 * 8];
        xof.fill(&mut bytes);
        let gear: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let gear_ls = gear.iter().map(|g| g << 1).collect();
        GearTable { gear, gear_ls }
    }
}

impl std::fmt::Debug for GearTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GearTable(..)")
    }
}

/// Push-style FastCDC 2020 scanner with a per-vault gear table.
pub struct ContentChunker {
    params: ChunkerParams,
    table: Arc<GearTable>,
    mask_s: u64,
    mask_l: u64,
    buf: Vec<u8>,
    start: usize,
    finished: bool,
}

impl ContentChunker {
    /// A chunker using the vault's gear table.
    pub fn new(params: ChunkerParams, table: Arc<GearTable>) -> Self {
        let (mask_s, mask_l) = v2020::select_masks(params.avg as usize, NORMALIZATION);
        ContentChunker {
            params,
            table,
            mask_s,
            mask_l,
            buf: Vec::new(),
            start: 0,
            finished: false,
        }
    }

    /// Bytes buffered and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True when the chunker holds a full maximum-size window and must be drained
    /// with [`ContentChunker::next_chunk`] before more is pushed.
    pub fn is_full(&self) -> bool {
        self.buffered() >= self.params.max as usize
    }

    /// Adds input. Callers keep memory bounded by draining chunks between pushes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Marks the end of input: the remaining bytes become the last chunk(s).
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Resets for a new stream, keeping the gear table and allocation.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.finished = false;
    }

    /// The next complete chunk, or `None` when more input (or `finish`) is needed.
    pub fn next_chunk(&mut self) -> Option<Vec<u8>> {
        let window = self.buf.get(self.start..).unwrap_or_default();
        // Scan only a full window (or the end of input): the cut depends only on the bytes
        // from the chunk's start, and scanning a partial window again after every push
        // would read the same bytes many times over.
        if window.is_empty() || (window.len() < self.params.max as usize && !self.finished) {
            return None;
        }
        let (_, cut) = v2020::cut_gear(
            window,
            self.params.min as usize,
            self.params.avg as usize,
            self.params.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.table.gear,
            &self.table.gear_ls,
        );
        if cut == 0 {
            return None;
        }
        let chunk = window.get(..cut).map(<[u8]>::to_vec);
        self.start += cut;
        chunk
    }
}

/// Cuts a whole in-memory buffer; a convenience for tests and small inputs.
pub fn chunk_all(params: ChunkerParams, table: Arc<GearTable>, data: &[u8]) -> Vec<Vec<u8>> {
    let mut chunker = ContentChunker::new(params, table);
    chunker.push(data);
    chunker.finish();
    std::iter::from_fn(|| chunker.next_chunk()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn table(seed: u64) -> Arc<GearTable> {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        Arc::new(GearTable::keyed(&key))
    }

    const SMALL: ChunkerParams = ChunkerParams {
        min: 64 * 1024,
        avg: 128 * 1024,
        max: 512 * 1024,
    };

    #[test]
    fn rejects_bad_params() {
        assert!(ChunkerParams::new(1024, 2048, 4096).is_err());
        assert!(ChunkerParams::new(512 * 1024, 256 * 1024, 4 << 20).is_err());
        assert!(ChunkerParams::new(3 << 18, 1 << 20, 4 << 20).is_err());
        assert!(ChunkerParams::new(1 << 19, 1 << 20, 1 << 22).is_ok());
    }

    #[test]
    fn pushing_in_pieces_gives_the_same_cuts() {
        let data = pseudo_random(3_000_000, 7);
        let whole = chunk_all(SMALL, table(42), &data);
        let mut chunker = ContentChunker::new(SMALL, table(42));
        let mut pieces = Vec::new();
        for part in data.chunks(10_007) {
            chunker.push(part);
            while let Some(c) = chunker.next_chunk() {
                pieces.push(c);
            }
        }
        chunker.finish();
        while let Some(c) = chunker.next_chunk() {
            pieces.push(c);
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = pseudo_random(4_000_000, 9);
        let a: Vec<usize> = chunk_all(SMALL, table(1), &data).iter().map(Vec::len).collect();
        let b: Vec<usize> = chunk_all(SMALL, table(2), &data).iter().map(Vec::len).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn boundaries_are_stable_across_versions() {
        // If this snapshot changes, deduplication against existing vaults breaks.
        let data = pseudo_random(2_000_000, 3);
        let lens: Vec<usize> = chunk_all(SMALL, table(0x5eed), &data).iter().map(Vec::len).collect();
        insta::assert_debug_snapshot!(lens);
    }

    #[test]
    fn resynchronises_after_inserted_prefix() {
        let data = pseudo_random(3_000_000, 11);
        let mut shifted = b"a small inserted prefix".to_vec();
        shifted.extend_from_slice(&data);
        let a = chunk_all(SMALL, table(5), &data);
        let b = chunk_all(SMALL, table(5), &shifted);
        let shared = a.iter().filter(|c| b.contains(c)).count();
        assert!(shared + 2 >= a.len(), "only {shared} of {} chunks shared", a.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn chunks_concatenate_and_respect_bounds(len in 0usize..1_500_000, seed in any::<u64>()) {
            let data = pseudo_random(len, seed);
            let chunks = chunk_all(SMALL, table(seed), &data);
            let joined: Vec<u8> = chunks.concat();
            prop_assert_eq!(&joined, &data);
            let n = chunks.len();
            for (i, c) in chunks.iter().enumerate() {
                prop_assert!(c.len() <= SMALL.max as usize);
                if i + 1 < n {
                    prop_assert!(c.len() >= SMALL.min as usize);
                }
            }
        }
    }
}
