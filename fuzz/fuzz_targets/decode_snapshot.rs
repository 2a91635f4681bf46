#![no_main]
//! Snapshot objects and their file framing.
use amber_engine::format::snapshot::{Snapshot, unframe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = unframe(data);
    if let Ok(s) = Snapshot::decode(data) {
        let _ = s.validate();
    }
});
