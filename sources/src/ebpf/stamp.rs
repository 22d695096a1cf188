//! The stamp that ties the committed eBPF object (`bpf/hostflow.bpf.o`) to
//! the sources it was built from, the way cilium/ebpf's bpf2go commits its
//! objects: `bpf/hostflow.bpf.stamp` lists the SHA-256 of every input
//! (`cflags` and every `*.c` and `*.h` in `bpf/`, sorted by name) and of
//! the object, in `sha256sum` format, so `cd bpf && sha256sum -c
//! hostflow.bpf.stamp` verifies it by hand. `bpf/build.sh` writes it.
//!
//! Shared by `#[path]` between `sources/build.rs` (which embeds the
//! committed object when the stamp matches and otherwise compiles) and the
//! crate's tests (which fail when it is stale). A build script has no
//! dependencies here, so this file uses std only: its own small SHA-256
//! and a hand-written error type.

use std::fmt;
use std::io;
use std::path::Path;

/// The committed object, in `bpf/`.
pub const OBJECT: &str = "hostflow.bpf.o";
/// The stamp, in `bpf/`.
pub const STAMP: &str = "hostflow.bpf.stamp";
/// The clang flags, one file in `bpf/` (lines starting with `#` are notes).
pub const CFLAGS: &str = "cflags";
/// The one compilation unit.
pub const PROGRAMS: &str = "hostflow.bpf.c";
/// The command that regenerates the object and its stamp.
pub const REGENERATE: &str = "bpf/build.sh";

/// One `sha256sum` line: a file in `bpf/` and its digest (lower-case hex).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub name: String,
    pub sha256: String,
}

/// Whether a file in `bpf/` is an input of the object.
pub fn is_input(name: &str) -> bool {
    name == CFLAGS || name.ends_with(".c") || name.ends_with(".h")
}

/// The digests of every input in `dir`, sorted by name (byte order).
pub fn inputs(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_input(&name) && entry.file_type()?.is_file() {
            let sha256 = hex(&sha256(&std::fs::read(entry.path())?));
            entries.push(Entry { name, sha256 });
        }
    }
    entries.sort();
    Ok(entries)
}

/// What a stamp file records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The inputs, sorted by name.
    pub inputs: Vec<Entry>,
    /// The object's digest.
    pub object: Option<String>,
}

/// Reads a stamp's text: `<hex>  <name>` lines (`sha256sum`'s format; a
/// `*` before the name is its binary mode), `#` lines are notes.
pub fn parse(text: &str) -> Recorded {
    let mut recorded = Recorded::default();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
        let Some((sha256, name)) = line.split_once(char::is_whitespace) else { continue };
        let name = name.trim_start().trim_start_matches('*').to_owned();
        let sha256 = sha256.to_ascii_lowercase();
        if name == OBJECT {
            recorded.object = Some(sha256);
        } else {
            recorded.inputs.push(Entry { name, sha256 });
        }
    }
    recorded.inputs.sort();
    recorded
}

/// Why the committed object cannot be trusted to match `bpf/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stale {
    /// A file could not be read (the stamp or object missing, say).
    Unreadable { path: String, error: String },
    /// Inputs differ from the ones recorded.
    Inputs { changed: Vec<String>, added: Vec<String>, removed: Vec<String> },
    /// The object is not the one the stamp records.
    Object { recorded: Option<String>, actual: String },
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stale::Unreadable { path, error } => write!(f, "cannot read {path}: {error}")?,
            Stale::Inputs { changed, added, removed } => {
                let mut parts = Vec::new();
                for (what, names) in [("changed", changed), ("new", added), ("removed", removed)] {
                    if !names.is_empty() {
                        parts.push(format!("{what}: {}", names.join(", ")));
                    }
                }
                write!(f, "bpf/ differs from what bpf/{STAMP} records ({})", parts.join("; "))?;
            }
            Stale::Object { recorded: Some(recorded), actual } => {
                write!(f, "bpf/{OBJECT} has sha256 {actual}, but bpf/{STAMP} records {recorded}")?
            }
            Stale::Object { recorded: None, .. } => write!(f, "bpf/{STAMP} records no digest for {OBJECT}")?,
        }
        write!(f, "; run `{REGENERATE}` (needs clang and llvm-strip) and commit bpf/{OBJECT} and bpf/{STAMP}")
    }
}

impl std::error::Error for Stale {}

/// Compares `dir`'s inputs and object with its stamp.
pub fn check(dir: &Path) -> Result<(), Stale> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| Stale::Unreadable { path: path.display().to_string(), error: e.to_string() })
    };
    let recorded = parse(&String::from_utf8_lossy(&read(STAMP)?));
    let actual =
        inputs(dir).map_err(|e| Stale::Unreadable { path: dir.display().to_string(), error: e.to_string() })?;
    if actual != recorded.inputs {
        let digest_of = |list: &[Entry], name: &str| list.iter().find(|e| e.name == name).map(|e| e.sha256.clone());
        let mut stale = (Vec::new(), Vec::new(), Vec::new());
        for entry in &actual {
            match digest_of(&recorded.inputs, &entry.name) {
                None => stale.1.push(entry.name.clone()),
                Some(sha256) if sha256 != entry.sha256 => stale.0.push(entry.name.clone()),
                Some(_) => {}
            }
        }
        for entry in &recorded.inputs {
            if digest_of(&actual, &entry.name).is_none() {
                stale.2.push(entry.name.clone());
            }
        }
        return Err(Stale::Inputs { changed: stale.0, added: stale.1, removed: stale.2 });
    }
    let object = hex(&sha256(&read(OBJECT)?));
    if recorded.object.as_deref() != Some(object.as_str()) {
        return Err(Stale::Object { recorded: recorded.object, actual: object });
    }
    Ok(())
}

/// The clang flags in `bpf/cflags` (whitespace-separated, `#` lines skipped).
pub fn clang_flags(dir: &Path) -> io::Result<Vec<String>> {
    let text = std::fs::read_to_string(dir.join(CFLAGS))?;
    Ok(text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

/// SHA-256 (FIPS 180-4), for a few small files at build time.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut state: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&(data.len() as u64).wrapping_mul(8).to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = state;
        for (k, w) in K.iter().zip(w) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let choose = (e & f) ^ (!e & g);
            let t1 = h.wrapping_add(s1).wrapping_add(choose).wrapping_add(*k).wrapping_add(w);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let majority = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(majority);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (word, value) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *word = word.wrapping_add(value);
        }
    }
    let mut digest = [0u8; 32];
    for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    digest
}
