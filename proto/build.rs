//! Compiles every `.proto` under `proto/prism/` with protox (pure Rust, no
//! system protoc) and generates the Rust messages and gRPC stubs.

use std::path::{Path, PathBuf};

use protox::prost::Message;

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_protos(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let mut protos = Vec::new();
    collect_protos(&root.join("prism"), &mut protos);
    println!("cargo:rerun-if-changed={}", root.join("prism").display());

    let fds = protox::compile(&protos, [&root]).unwrap_or_else(|e| panic!("compiling protos: {e}"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out_dir.join("prism_descriptor.bin"), fds.encode_to_vec())
        .expect("writing the descriptor set");

    // Decoding errors are marked and bounded (src/codec.rs).
    tonic_prost_build::configure()
        .codec_path("crate::codec::PrismCodec")
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("generating code: {e}"));
}
