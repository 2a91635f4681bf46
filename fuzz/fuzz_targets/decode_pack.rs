#![no_main]
//! A whole pack as read from an untrusted store: header, footer, sealed directory.
use amber_engine::crypto::SealKey;
use amber_engine::format::pack::{decode_directory, read_directory};
use amber_engine::id::{Hash32, PackId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = SealKey::new(&[7u8; 32]) {
        let _ = read_directory(&key, PackId::new(Hash32::default()), data);
    }
    // The directory plaintext decoder on its own (reached only after authentication,
    // but checked anyway).
    let _ = decode_directory(data, data.len() as u64);
});
