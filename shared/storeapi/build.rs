//! Compiles `proto/` (the workspace's Thanos-compatible .proto files) with protox,
//! a pure-Rust protobuf compiler (no system `protoc`), then generates prost
//! messages and tonic client/server stubs with tonic-prost-build.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "thanos/store/types.proto",
    "thanos/store/rpc.proto",
    "thanos/info/rpc.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    for f in FILES {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(FILES, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
