//! Compiles `proto/*.proto` into prost types at build time with `protox`, a
//! pure-Rust protobuf compiler, so no build needs a system `protoc`.
//!
//! Writes two files to `OUT_DIR`: `hostflow.v1.rs` (the generated types,
//! `include!`d by `src/proto.rs`) and `hostflow_descriptor.bin` (the encoded
//! `FileDescriptorSet` without source info, exported as
//! `FILE_DESCRIPTOR_SET` and read by the frozen-tag test).

use std::path::PathBuf;

use prost::Message as _;

/// Every contract file, in dependency order.
const PROTOS: &[&str] =
    &["ddsketch.proto", "process.proto", "sketch.proto", "diag.proto", "security.proto", "detection.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }

    // Source info carries the .proto comments, which become the doc comments
    // of the generated types (the crate denies missing docs).
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let mut bare = descriptors.clone();
    for file in &mut bare.file {
        file.source_code_info = None;
    }
    std::fs::write(out_dir.join("hostflow_descriptor.bin"), bare.encode_to_vec())?;

    // A BTreeMap encodes its entries in key order, so the same sketch always
    // gives the same bytes (deterministic replay); a HashMap would not.
    // `ProcessExec.attributes` is boxed: inline, its ~30 fields would make
    // every `SecurityEvent.detail` as large as an exec with attributes.
    prost_build::Config::new()
        .btree_map([".hostflow.v1.Store.binCounts"])
        .boxed(".hostflow.v1.ProcessExec.attributes")
        .compile_fds(descriptors)?;
    Ok(())
}
