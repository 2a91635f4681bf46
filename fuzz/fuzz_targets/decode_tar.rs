#![no_main]
//! Tar headers and PAX records (from untrusted layers), tar layouts (from the store, fed
//! in pieces as they arrive in chunks), and changed-range files (from sidecars).
use amber_engine::format::layout::LayoutReader;
use amber_engine::format::tarhdr::{BLOCK, parse_header, parse_pax};
use amber_engine::ops::ranges::{BlockSet, parse_ranges};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(block) = data.get(..BLOCK).and_then(|b| <&[u8; BLOCK]>::try_from(b).ok()) {
        let _ = parse_header(block);
    }
    let _ = parse_pax(data);
    let mut reader = LayoutReader::new();
    for piece in data.chunks(7) {
        reader.push(piece);
        while let Ok(Some(_)) = reader.next_record() {}
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(ranges) = parse_ranges(text)
    {
        let _ = BlockSet::from_ranges(&ranges, 1 << 40, 1 << 18);
    }
});
