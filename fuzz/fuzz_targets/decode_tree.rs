#![no_main]
//! Tree nodes come from the store; a forged one must decode to an error, never a panic,
//! and whatever decodes must re-encode to the same bytes (the encoding is canonical).
use amber_engine::format::tree::TreeNode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = TreeNode::decode(data) {
        assert_eq!(node.encode(), data);
    }
});
