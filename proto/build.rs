//! Compiles `amber/v1/*.proto` with protox (pure Rust, no protoc) and generates the tonic
//! client and server code, plus a file descriptor set for server reflection.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "amber/v1/common.proto",
    "amber/v1/ingest.proto",
    "amber/v1/restore.proto",
    "amber/v1/catalog.proto",
    "amber/v1/admin.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for f in FILES {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(FILES, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("amber_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
