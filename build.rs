//! Links the agent with the code an idle agent runs at the front of
//! `.text` (issue #12: RSS ≤ 12 MB idle). Once start-up settles the agent
//! unmaps its own code (src/memory.rs) and idle work faults back what it
//! runs; the kernel maps 16 pages around each fault, so idle functions
//! scattered through a 14 MiB `.text` kept 8.7 MiB resident, and packed
//! together 3.4–3.7 MiB (BENCHMARKS.md, "Footprint").
//!
//! `src/code-order/*.txt` list those functions, one file per build (the
//! names carry symbol hashes, which depend on the profile and on the
//! crates' unified features): `release.txt` for `cargo build --release
//! --bin hostflow`, `dist.txt` for `--profile dist`. They are written by
//! `testbed/bench/code-order.sh` and joined here; rust-lld's
//! `--symbol-ordering-file` places the names a build has first and skips
//! the rest, so a stale list costs resident pages, never a failed build.
//! Only rust-lld knows the option: it is passed when rustc links with its
//! own rust-lld (the default for x86_64-unknown-linux-gnu since Rust 1.90)
//! and nothing in the environment chose another linker.
//! `HOSTFLOW_CODE_ORDER=0` turns it off.
//!
//! With rust-lld and a glibc ≥ 2.36 (which reads `DT_RELR`), the agent is
//! also linked with `-z pack-relative-relocs`: a position-independent
//! binary carries one relocation per pointer in its read-only data, 24
//! bytes each in `.rela.dyn` (0.85 MB of the 20.3 MB agent), and RELR
//! packs them into bitmaps of a few KiB. The binary then needs glibc
//! ≥ 2.36 to start, which the machine that built it has.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The lists, in the order they are joined.
const LISTS: [&str; 2] = ["src/code-order/release.txt", "src/code-order/dist.txt"];

fn main() {
    for list in LISTS {
        println!("cargo:rerun-if-changed={list}");
    }
    println!("cargo:rerun-if-env-changed=HOSTFLOW_CODE_ORDER");
    if !links_with_rust_lld() {
        return;
    }
    if glibc_reads_relr() {
        println!("cargo:rustc-link-arg-bin=hostflow=-Wl,-z,pack-relative-relocs");
    }
    if env::var("HOSTFLOW_CODE_ORDER").is_ok_and(|v| v == "0") {
        return;
    }
    let (Some(manifest_dir), Some(out_dir)) = (env::var_os("CARGO_MANIFEST_DIR"), env::var_os("OUT_DIR")) else {
        return;
    };
    let mut joined = String::new();
    for list in LISTS {
        // A missing list orders nothing; the build goes on.
        joined.push_str(&std::fs::read_to_string(Path::new(&manifest_dir).join(list)).unwrap_or_default());
    }
    let order = PathBuf::from(out_dir).join("code-order.txt");
    if std::fs::write(&order, joined).is_err() {
        return;
    }
    let Some(order) = order.to_str().filter(|path| !path.contains(',')) else { return };
    println!("cargo:rustc-link-arg-bin=hostflow=-Wl,--symbol-ordering-file={order}");
    println!("cargo:rustc-link-arg-bin=hostflow=-Wl,--no-warn-symbol-ordering");
}

/// Whether rustc will link with its bundled rust-lld: the target whose
/// default it is, a rustc new enough, and no linker chosen by flags or
/// the environment.
fn links_with_rust_lld() -> bool {
    if env::var("TARGET").ok().as_deref() != Some("x86_64-unknown-linux-gnu") {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.split('\x1f').any(|flag| ["linker", "link-self-contained", "fuse-ld"].iter().any(|k| flag.contains(k))) {
        return false;
    }
    if env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(output) = Command::new(rustc).arg("-V").output() else { return false };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&output.stdout);
    major_minor(version.split_whitespace().nth(1).unwrap_or("")).is_some_and(|(major, minor)| major == 1 && minor >= 90)
}

/// Whether the C library the agent links against loads `DT_RELR`
/// relocations (glibc 2.36 and later), from `getconf GNU_LIBC_VERSION`
/// ("glibc 2.36"); anything unclear says no.
fn glibc_reads_relr() -> bool {
    let Ok(output) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else { return false };
    let version = String::from_utf8_lossy(&output.stdout);
    major_minor(version.trim().strip_prefix("glibc ").unwrap_or("")).is_some_and(|version| version >= (2, 36))
}

/// "1.95.0" or "2.36": the first two numbers.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut numbers = version.split('.').map(|n| n.parse::<u32>().ok());
    Some((numbers.next()??, numbers.next()??))
}
