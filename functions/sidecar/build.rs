//! Compiles `proto/prometheus/remote.proto` (Prometheus's remote-read messages) with
//! protox (pure Rust, no system `protoc`) into prost messages.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("../../proto");
    let file = "prometheus/remote.proto";
    println!("cargo:rerun-if-changed={}", root.join(file).display());
    let fds = protox::compile([file], [&root])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
