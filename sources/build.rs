//! Builds the eBPF programs in `bpf/` with clang into `OUT_DIR`, where the
//! `ebpf` source embeds them (`aya::include_bytes_aligned!`).
//!
//! The build never fails for want of clang: without it (or when clang
//! cannot compile the programs) it prints a `cargo:warning=` saying eBPF is
//! disabled and why, and sets `cfg(hostflow_ebpf_disabled)` plus the
//! reason in `HOSTFLOW_EBPF_DISABLED_REASON`; the crate then compiles
//! without the object and the source reports "built without eBPF: <reason>"
//! when it runs (and falls back to procfs). `CLANG` names the compiler
//! (default `clang`); `LLVM_STRIP` an optional `llvm-strip` used to drop
//! DWARF (BTF stays, CO-RE needs it).

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: &str = "hostflow.bpf.c";
const OBJECT: &str = "hostflow.bpf.o";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hostflow_ebpf_disabled)");
    println!("cargo::rerun-if-env-changed=CLANG");
    println!("cargo::rerun-if-env-changed=LLVM_STRIP");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let bpf_dir = manifest_dir.join("..").join("bpf");
    println!("cargo::rerun-if-changed={}", bpf_dir.display());
    if let Ok(entries) = std::fs::read_dir(&bpf_dir) {
        for entry in entries.flatten() {
            println!("cargo::rerun-if-changed={}", entry.path().display());
        }
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    match compile(&bpf_dir, &out_dir.join(OBJECT)) {
        Ok(()) => {}
        Err(reason) => {
            let reason = reason.replace('\n', " ");
            println!("cargo::warning=eBPF is disabled in this build: {reason}");
            println!("cargo::rustc-cfg=hostflow_ebpf_disabled");
            println!("cargo::rustc-env=HOSTFLOW_EBPF_DISABLED_REASON={reason}");
        }
    }
}

fn compile(bpf_dir: &Path, object: &Path) -> Result<(), String> {
    let source = bpf_dir.join(PROGRAMS);
    if !source.exists() {
        return Err(format!("{} is missing", source.display()));
    }
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => return Err(format!("no eBPF programs for target architecture {other}")),
        Err(_) => "x86",
    };
    let output = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v3", "-nostdinc", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg("-I")
        .arg(bpf_dir)
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(object)
        .output()
        .map_err(|error| format!("cannot run clang `{clang}` ({error}); install clang or set CLANG"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first_lines: Vec<&str> = stderr.lines().take(6).collect();
        return Err(format!("`{clang}` failed to compile {PROGRAMS} ({}): {}", output.status, first_lines.join(" | ")));
    }
    // Optional: DWARF is only for humans; .BTF and .BTF.ext stay.
    let strip = std::env::var("LLVM_STRIP").unwrap_or_else(|_| "llvm-strip".to_owned());
    if let Ok(status) = Command::new(&strip).arg("-g").arg(object).status() {
        if !status.success() {
            println!("cargo::warning=`{strip} -g` failed ({status}); the eBPF object keeps its DWARF");
        }
    }
    Ok(())
}
