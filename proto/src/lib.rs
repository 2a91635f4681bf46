//! Amber wire protocol.
