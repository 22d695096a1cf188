//! The committed eBPF object against its sources, without clang or root:
//! the stamp must match `bpf/` (else `bpf/build.sh` regenerates it), the
//! check must notice a one-byte change, and the object this build embeds
//! must be the committed one, byte for byte — what a build with
//! `CLANG=/nonexistent` gets, since a matching stamp runs no compiler (the
//! kernel tests then load that embedded object and attach every program).

use std::path::{Path, PathBuf};

use super::loader;
use super::stamp::{self, Stale};

fn bpf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("bpf")
}

fn sha256_hex(data: &[u8]) -> String {
    stamp::hex(&stamp::sha256(data))
}

#[test]
fn sha256_matches_the_standard_vectors() {
    let check = |input: &[u8], expected: &str| assert_eq!(sha256_hex(input), expected, "{input:?}");
    check(b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check(b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    // 56 bytes: the padding spills into a second block.
    check(
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    );
    check(&[b'a'; 1_000_000], "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

#[test]
fn the_committed_object_matches_the_bpf_sources() {
    // The message names the changed files and the command to run.
    if let Err(stale) = stamp::check(&bpf_dir()) {
        panic!("bpf/hostflow.bpf.o is stale: {stale}");
    }
}

/// A copy of `bpf/` with a stamp written for exactly its contents, so the
/// test does not depend on the committed stamp being current.
fn consistent_copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(bpf_dir()).expect("bpf/").flatten() {
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).expect("copy");
        }
    }
    let mut text = String::from("# written by the test\n");
    for entry in stamp::inputs(copy.path()).expect("inputs") {
        text.push_str(&format!("{}  {}\n", entry.sha256, entry.name));
    }
    let object = std::fs::read(copy.path().join(stamp::OBJECT)).expect("object");
    text.push_str(&format!("{}  {}\n", sha256_hex(&object), stamp::OBJECT));
    std::fs::write(copy.path().join(stamp::STAMP), text).expect("stamp");
    assert_eq!(stamp::check(copy.path()), Ok(()), "a freshly written stamp matches");
    copy
}

fn flip_one_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn one_changed_source_byte_makes_the_stamp_stale() {
    let copy = consistent_copy();
    let before = stamp::inputs(copy.path()).expect("inputs");
    flip_one_byte(&copy.path().join("records.h"));
    let after = stamp::inputs(copy.path()).expect("inputs");
    assert_ne!(before, after, "the computed stamp changes with one byte");
    let stale = stamp::check(copy.path()).expect_err("stale");
    assert_eq!(stale, Stale::Inputs { changed: vec!["records.h".into()], added: vec![], removed: vec![] });
    let message = stale.to_string();
    assert!(message.contains("changed: records.h") && message.contains("run `bpf/build.sh`"), "{message}");
}

#[test]
fn flags_new_files_and_a_replaced_object_are_caught_too() {
    let copy = consistent_copy();
    std::fs::write(copy.path().join("extra.h"), "/* new */\n").expect("write");
    flip_one_byte(&copy.path().join(stamp::CFLAGS));
    let stale = stamp::check(copy.path()).expect_err("stale");
    assert_eq!(stale, Stale::Inputs { changed: vec!["cflags".into()], added: vec!["extra.h".into()], removed: vec![] });

    let copy = consistent_copy();
    std::fs::remove_file(copy.path().join("records.h")).expect("remove");
    let stale = stamp::check(copy.path()).expect_err("stale");
    assert_eq!(stale, Stale::Inputs { changed: vec![], added: vec![], removed: vec!["records.h".into()] });

    let copy = consistent_copy();
    flip_one_byte(&copy.path().join(stamp::OBJECT));
    assert!(matches!(stamp::check(copy.path()), Err(Stale::Object { recorded: Some(_), .. })));

    let copy = consistent_copy();
    std::fs::remove_file(copy.path().join(stamp::STAMP)).expect("remove");
    assert!(matches!(stamp::check(copy.path()), Err(Stale::Unreadable { .. })));
}

#[test]
fn the_stamp_reads_sha256sum_output() {
    let text = "# note\n\
                AB  cflags\n\
                cd *records.h\n\
                \n\
                ef  hostflow.bpf.o\n";
    let recorded = stamp::parse(text);
    assert_eq!(recorded.object.as_deref(), Some("ef"));
    let names: Vec<(&str, &str)> = recorded.inputs.iter().map(|e| (e.name.as_str(), e.sha256.as_str())).collect();
    assert_eq!(names, [("cflags", "ab"), ("records.h", "cd")]);
    assert!(stamp::is_input("x.c") && stamp::is_input("x.h") && stamp::is_input("cflags"));
    assert!(!stamp::is_input("README.md") && !stamp::is_input("build.sh") && !stamp::is_input(stamp::OBJECT));
}

#[test]
fn the_build_embeds_the_committed_object_when_its_stamp_matches() {
    let dir = bpf_dir();
    let embedded = match loader::embedded_object() {
        Ok(embedded) => embedded,
        Err(reason) => {
            pipeline::testing::skip("ebpf::the_build_embeds_the_committed_object", reason);
            return;
        }
    };
    let origin = loader::embedded_origin();
    if let Err(stale) = stamp::check(&dir) {
        // the_committed_object_matches_the_bpf_sources fails; say what this build did.
        assert!(!origin.contains("stamp matches"), "stale ({stale}) yet the build says: {origin}");
        return;
    }
    let committed = std::fs::read(dir.join(stamp::OBJECT)).expect("bpf/hostflow.bpf.o");
    assert!(embedded == committed.as_slice(), "the embedded object is not bpf/hostflow.bpf.o ({origin})");
    assert!(origin.contains("as committed"), "{origin}");
    // Built with -g and stripped with llvm-strip -g: BTF stays, DWARF goes.
    let sections = section_names(embedded);
    for needed in [".BTF", ".BTF.ext", "license"] {
        assert!(sections.iter().any(|s| s == needed), "{needed} missing: {sections:?}");
    }
    assert!(!sections.iter().any(|s| s.starts_with(".debug")), "DWARF should be stripped: {sections:?}");
}

/// The section names of a little-endian ELF64 file.
fn section_names(elf: &[u8]) -> Vec<String> {
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes")) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().expect("8 bytes")) as usize;
    assert!(elf.starts_with(b"\x7fELF\x02\x01"), "a little-endian ELF64 object");
    let (table, entry_size, count, names_index) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |index: usize| table + index * entry_size;
    let names_offset = u64_at(header(names_index) + 0x18);
    (0..count)
        .map(|index| {
            let start = names_offset + u32_at(header(index));
            let end = elf[start..].iter().position(|&b| b == 0).map_or(elf.len(), |n| start + n);
            String::from_utf8_lossy(&elf[start..end]).into_owned()
        })
        .collect()
}
