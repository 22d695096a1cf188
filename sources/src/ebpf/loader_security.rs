//! The security programs' part of the loader (a child module of
//! [`super`], so it shares its private `Function` table type): which
//! tracepoints each program attaches to, the file selection maps it fills,
//! and the agent's own tgid (its BPF loads are not reported).
//!
//! Required and optional functions: the `*at` syscalls exist everywhere;
//! the old path syscalls (`chmod`, `unlink`, `rename`, `link`, `symlink`)
//! and `accept` only on some architectures (x86-64, not arm64), `fchmodat2`
//! from 6.6, `sendmmsg` is a bonus: those are optional (the program runs,
//! `partial`, without them).

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{HashMap, MapData};
use aya::Ebpf;

use super::{chain, tracepoint, Function, LoadError, LoadSettings};
use crate::ebpf::records_security::{encode_basename, encode_path_entry, RawBasename, RawPathData};
use crate::ebpf::Program;

/// The LPM trie of prefixes and exact paths (`bpf/files.bpf.h`).
pub(super) const SELECT_PATHS_MAP: &str = "hf_select_paths";
/// The basename hash.
pub(super) const SELECT_BASENAMES_MAP: &str = "hf_select_basenames";
/// The agent's tgid, a read-only global (`bpf/privilege.bpf.h`).
pub(super) const AGENT_TGID_GLOBAL: &str = "hf_agent_tgid";

/// A syscall's enter and exit tracepoints.
macro_rules! pair {
    ($enter:literal, $exit:literal, $syscall:literal, $required:expr) => {
        [
            tracepoint($enter, "syscalls", concat!("sys_enter_", $syscall), $required),
            tracepoint($exit, "syscalls", concat!("sys_exit_", $syscall), $required),
        ]
    };
}

const FILE_CHANGE: &[Function] = &flatten::<12, 24>([
    pair!("hf_chmod_enter", "hf_chmod_exit", "chmod", false),
    pair!("hf_fchmodat_enter", "hf_fchmodat_exit", "fchmodat", true),
    pair!("hf_fchmodat2_enter", "hf_fchmodat2_exit", "fchmodat2", false),
    pair!("hf_unlink_enter", "hf_unlink_exit", "unlink", false),
    pair!("hf_unlinkat_enter", "hf_unlinkat_exit", "unlinkat", true),
    pair!("hf_rename_enter", "hf_rename_exit", "rename", false),
    pair!("hf_renameat_enter", "hf_renameat_exit", "renameat", false),
    pair!("hf_renameat2_enter", "hf_renameat2_exit", "renameat2", true),
    pair!("hf_link_enter", "hf_link_exit", "link", false),
    pair!("hf_linkat_enter", "hf_linkat_exit", "linkat", true),
    pair!("hf_symlink_enter", "hf_symlink_exit", "symlink", false),
    pair!("hf_symlinkat_enter", "hf_symlinkat_exit", "symlinkat", true),
]);

const CREDENTIALS: &[Function] = &flatten::<9, 18>([
    pair!("hf_setuid_enter", "hf_setuid_exit", "setuid", true),
    pair!("hf_setreuid_enter", "hf_setreuid_exit", "setreuid", true),
    pair!("hf_setresuid_enter", "hf_setresuid_exit", "setresuid", true),
    pair!("hf_setfsuid_enter", "hf_setfsuid_exit", "setfsuid", true),
    pair!("hf_setgid_enter", "hf_setgid_exit", "setgid", true),
    pair!("hf_setregid_enter", "hf_setregid_exit", "setregid", true),
    pair!("hf_setresgid_enter", "hf_setresgid_exit", "setresgid", true),
    pair!("hf_setfsgid_enter", "hf_setfsgid_exit", "setfsgid", true),
    pair!("hf_capset_enter", "hf_capset_exit", "capset", true),
]);

const NAMESPACE: &[Function] = &flatten::<2, 4>([
    pair!("hf_setns_enter", "hf_setns_exit", "setns", true),
    pair!("hf_unshare_enter", "hf_unshare_exit", "unshare", true),
]);

const PTRACE: &[Function] = &pair!("hf_ptrace_enter", "hf_ptrace_exit", "ptrace", true);

/// Both module syscalls are required: a kernel built without module
/// support has neither tracepoint, and then the program is `unsupported`
/// (nothing can be loaded, so nothing is missed), not failed.
const MODULE_LOAD: &[Function] = &flatten::<2, 4>([
    pair!("hf_init_module_enter", "hf_init_module_exit", "init_module", true),
    pair!("hf_finit_module_enter", "hf_finit_module_exit", "finit_module", true),
]);

const BPF_LOAD: &[Function] = &pair!("hf_bpf_enter", "hf_bpf_exit", "bpf", true);

const LISTEN: &[Function] = &pair!("hf_listen_enter", "hf_listen_exit", "listen", true);

const ACCEPT: &[Function] = &[
    tracepoint("hf_accept4_exit", "syscalls", "sys_exit_accept4", true),
    tracepoint("hf_accept_exit_accept", "syscalls", "sys_exit_accept", false),
];

const UDP_SEND: &[Function] = &[
    tracepoint("hf_sendto", "syscalls", "sys_enter_sendto", true),
    tracepoint("hf_sendmsg", "syscalls", "sys_enter_sendmsg", true),
    tracepoint("hf_sendmmsg", "syscalls", "sys_enter_sendmmsg", false),
];

/// `N` enter/exit pairs as one list (const: the tables are static).
const fn flatten<const N: usize, const M: usize>(pairs: [[Function; 2]; N]) -> [Function; M] {
    assert!(M == 2 * N);
    let mut out = [pairs[0][0]; M];
    let mut i = 0;
    while i < N {
        out[2 * i] = pairs[i][0];
        out[2 * i + 1] = pairs[i][1];
        i += 1;
    }
    out
}

/// The functions of a security program; `None` for the others.
pub(super) fn functions(program: Program) -> Option<&'static [Function]> {
    Some(match program {
        Program::FileChange => FILE_CHANGE,
        Program::Credentials => CREDENTIALS,
        Program::Namespace => NAMESPACE,
        Program::Ptrace => PTRACE,
        Program::ModuleLoad => MODULE_LOAD,
        Program::BpfLoad => BPF_LOAD,
        Program::Listen => LISTEN,
        Program::Accept => ACCEPT,
        Program::UdpSend => UDP_SEND,
        _ => return None,
    })
}

/// Whether a program whose every hook is missing from this kernel is
/// `unsupported` rather than failed: true where a missing hook means the
/// kernel cannot do what the program watches.
pub(super) fn unsupported_when_absent(program: Program) -> bool {
    program == Program::ModuleLoad
}

/// Fills the selection maps: prefixes and exact paths into the LPM trie,
/// basenames into the hash. The entries were checked by the source's
/// configuration; one that still does not encode is a map error.
pub(super) fn fill_selection(ebpf: &mut Ebpf, settings: &LoadSettings) -> Result<(), LoadError> {
    let paths_error = |reason: String| LoadError::Map { map: SELECT_PATHS_MAP, reason };
    let map = ebpf.map_mut(SELECT_PATHS_MAP).ok_or_else(|| paths_error("not in the object".into()))?;
    let mut trie: LpmTrie<&mut MapData, RawPathData, u32> =
        LpmTrie::try_from(map).map_err(|e| paths_error(chain(&e)))?;
    let entries =
        settings.file_prefixes.iter().map(|p| (p, false)).chain(settings.file_paths.iter().map(|p| (p, true)));
    for (path, exact) in entries {
        let (bits, data, value) = encode_path_entry(path, exact)
            .ok_or_else(|| paths_error(format!("{path:?} is empty, too long or holds a NUL")))?;
        trie.insert(&Key::new(bits, data), value, 0).map_err(|e| paths_error(format!("{path:?}: {}", chain(&e))))?;
    }
    let names_error = |reason: String| LoadError::Map { map: SELECT_BASENAMES_MAP, reason };
    let map = ebpf.map_mut(SELECT_BASENAMES_MAP).ok_or_else(|| names_error("not in the object".into()))?;
    let mut names: HashMap<&mut MapData, RawBasename, u32> =
        HashMap::try_from(map).map_err(|e| names_error(chain(&e)))?;
    for name in &settings.file_basenames {
        let key = encode_basename(name)
            .ok_or_else(|| names_error(format!("{name:?} is empty, too long or holds a '/' or a NUL")))?;
        names.insert(key, 1, 0).map_err(|e| names_error(format!("{name:?}: {}", chain(&e))))?;
    }
    Ok(())
}

#[cfg(test)]
impl super::Loaded {
    /// Loads one tracepoint program (the verifier runs) without attaching
    /// it: proves a program whose tracepoints this kernel lacks would load.
    pub(crate) fn verify_only(&mut self, name: &str) -> Result<(), String> {
        match self.ebpf.program_mut(name) {
            Some(aya::programs::Program::TracePoint(tp)) => tp.load().map_err(|e| super::program_error(&e)),
            Some(other) => Err(format!("{name} is a {:?}, not a tracepoint", other.prog_type())),
            None => Err(format!("{name} is not in the object")),
        }
    }
}
