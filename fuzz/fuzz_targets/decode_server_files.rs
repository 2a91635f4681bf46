#![no_main]
//! The server's own files (token file, resume journal lines, layer spool headers) and the
//! bearer header every call carries: a forged or damaged input must be refused, never
//! panic.
use std::sync::OnceLock;

use amber_server::serve::ingest::{journal, spool};
use amber_server::serve::tokens::{TokenStore, check_file};
use libfuzzer_sys::fuzz_target;

fn store() -> &'static TokenStore {
    static STORE: OnceLock<TokenStore> = OnceLock::new();
    STORE.get_or_init(|| {
        // A missing file is an empty store: verification parses the header, then finds no id.
        TokenStore::open(std::path::Path::new("/nonexistent-amber-fuzz/tokens.json")).expect("empty store")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = check_file(data);
    let _ = spool::read_header(&mut std::io::Cursor::new(data));
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            let _ = journal::decode(line);
        }
        assert!(store().verify(Some(text)).is_err());
    }
});
