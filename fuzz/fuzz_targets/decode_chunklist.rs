#![no_main]
//! Chunk-list nodes: decode never panics, and decoding is canonical.
use amber_engine::format::chunklist::ListNode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = ListNode::decode(data) {
        assert_eq!(node.encode(), data);
    }
});
