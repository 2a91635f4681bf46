#![no_main]
//! Push messages come from any client holding a sidecar token: whatever decodes must
//! convert to engine entries or be refused, and every entry a tree node accepts must
//! encode and decode back to itself.
use amber_engine::format::tree::{TreeNode, validate_name};
use amber_proto::v1::PushRequest;
use amber_proto::v1::push_request::Frame;
use amber_server::serve::convert;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = PushRequest::decode(data) else { return };
    if let Some(Frame::Entries(batch)) = req.frame {
        for e in batch.entries {
            let Ok(entry) = convert::entry(e.name, e.meta.as_ref()) else { continue };
            if validate_name(&entry.name).is_ok()
                && let Ok(node) = TreeNode::new(vec![entry])
            {
                let bytes = node.encode();
                assert_eq!(TreeNode::decode(&bytes).ok(), Some(node), "an accepted entry round-trips");
            }
        }
    }
});
