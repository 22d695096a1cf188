//! Chooses the eBPF object the `ebpf` source embeds
//! (`aya::include_bytes_aligned!(env!("HOSTFLOW_EBPF_OBJECT"))`).
//!
//! The compiled object is committed (`bpf/hostflow.bpf.o`, as cilium/ebpf's
//! bpf2go does) with a stamp (`bpf/hostflow.bpf.stamp`): the SHA-256 of
//! every input — `bpf/cflags` and every `bpf/*.c` and `*.h`, by name — and
//! of the object (`src/ebpf/stamp.rs`). So:
//!
//! - stamp matches `bpf/` (the normal case, on every machine, clang or
//!   not): embed the committed object as it is. No compiler runs; every
//!   build embeds the same bytes.
//! - stamp does not match (someone edited `bpf/` without running
//!   `bpf/build.sh`): when clang (`CLANG`, default `clang`) runs, compile
//!   into `OUT_DIR` with the flags in `bpf/cflags`, strip DWARF with
//!   `llvm-strip -g` (`LLVM_STRIP`; BTF stays, CO-RE needs it) and embed
//!   that, with a `cargo:warning` to regenerate; when clang cannot run,
//!   embed the stale committed object with a warning; when clang runs but
//!   rejects the edited sources, fail the build with its errors.
//!
//! `cfg(hostflow_ebpf_disabled)` (with the reason in
//! `HOSTFLOW_EBPF_DISABLED_REASON`) remains only for target architectures
//! the programs are not built for; the source then reports "built without
//! eBPF" and falls back to `/proc`. `HOSTFLOW_EBPF_OBJECT_ORIGIN` says which
//! object was embedded, for `hostflow probe`.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/ebpf/stamp.rs"]
mod stamp;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hostflow_ebpf_disabled)");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let bpf_dir = manifest_dir.join("..").join("bpf");
    let bpf_dir = bpf_dir.canonicalize().unwrap_or(bpf_dir);
    println!("cargo::rerun-if-changed={}", bpf_dir.display());
    if let Ok(entries) = std::fs::read_dir(&bpf_dir) {
        for entry in entries.flatten() {
            println!("cargo::rerun-if-changed={}", entry.path().display());
        }
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if !matches!(arch.as_str(), "x86_64" | "aarch64") {
        // The object is little-endian BPF whose tracepoint layouts were
        // checked on x86_64 and aarch64 only.
        let reason = format!("no eBPF programs for target architecture `{arch}` (built for x86_64 and aarch64)");
        println!("cargo::warning=eBPF is disabled in this build: {reason}");
        println!("cargo::rustc-cfg=hostflow_ebpf_disabled");
        println!("cargo::rustc-env=HOSTFLOW_EBPF_DISABLED_REASON={reason}");
        return;
    }
    let committed = bpf_dir.join(stamp::OBJECT);
    let stale = match stamp::check(&bpf_dir) {
        Ok(()) => {
            embed(&committed, &format!("bpf/{} as committed (its stamp matches bpf/)", stamp::OBJECT));
            return;
        }
        Err(stale) => stale.to_string().replace('\n', " "),
    };
    // Only now does the compiler matter.
    println!("cargo::rerun-if-env-changed=CLANG");
    println!("cargo::rerun-if-env-changed=LLVM_STRIP");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let fresh = out_dir.join(stamp::OBJECT);
    match compile(&bpf_dir, &fresh) {
        Ok(()) => {
            println!("cargo::warning=the committed eBPF object is stale: {stale}");
            println!("cargo::warning=this build embeds a fresh object compiled from bpf/ by clang instead");
            embed(&fresh, &format!("compiled from bpf/ by clang at build time (bpf/{} is stale)", stamp::OBJECT));
        }
        Err(Failure::NoCompiler(reason)) if committed.is_file() => {
            println!("cargo::warning=the committed eBPF object is stale: {stale}");
            println!("cargo::warning=clang is unavailable ({reason}): this build embeds the stale committed object");
            embed(&committed, &format!("bpf/{} as committed, STALE: {stale}", stamp::OBJECT));
        }
        Err(Failure::NoCompiler(reason)) => fail(&format!(
            "bpf/{} is missing and clang is unavailable ({reason}); restore it from git or install clang",
            stamp::OBJECT
        )),
        Err(Failure::Compile(message)) => fail(&format!("{message}\n(the sources in bpf/ changed: {stale})")),
    }
}

fn embed(object: &Path, origin: &str) {
    println!("cargo::rustc-env=HOSTFLOW_EBPF_OBJECT={}", object.display());
    println!("cargo::rustc-env=HOSTFLOW_EBPF_OBJECT_ORIGIN={origin}");
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

enum Failure {
    /// clang could not be run at all.
    NoCompiler(String),
    /// clang ran and refused the sources (or the flags file is unreadable).
    Compile(String),
}

fn compile(bpf_dir: &Path, object: &Path) -> Result<(), Failure> {
    let flags =
        stamp::clang_flags(bpf_dir).map_err(|e| Failure::Compile(format!("cannot read bpf/{}: {e}", stamp::CFLAGS)))?;
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    // Relative names from inside bpf/, as bpf/build.sh does, so the
    // object does not depend on where the checkout is.
    let output = Command::new(&clang)
        .current_dir(bpf_dir)
        .args(&flags)
        .args(["-c", stamp::PROGRAMS, "-o"])
        .arg(object)
        .output()
        .map_err(|error| Failure::NoCompiler(format!("cannot run `{clang}`: {error}; install clang or set CLANG")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Failure::Compile(format!(
            "`{clang}` failed to compile bpf/{} ({}):\n{stderr}",
            stamp::PROGRAMS,
            output.status
        )));
    }
    let strip = std::env::var("LLVM_STRIP").unwrap_or_else(|_| "llvm-strip".to_owned());
    match Command::new(&strip).arg("-g").arg(object).status() {
        Ok(status) if status.success() => {}
        Ok(status) => println!("cargo::warning=`{strip} -g` failed ({status}); the eBPF object keeps its DWARF"),
        Err(error) => println!("cargo::warning=cannot run `{strip}` ({error}); the eBPF object keeps its DWARF"),
    }
    Ok(())
}
