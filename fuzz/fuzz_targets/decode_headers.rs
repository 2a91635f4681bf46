#![no_main]
//! Config, key slot and index segment decoders.
use amber_engine::format::{config::VaultConfig, keyslot::KeySlot, segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = VaultConfig::decode(data);
    let _ = KeySlot::decode(data);
    let _ = segment::decode(data);
    let _ = segment::unframe(data);
});
