//! The kernel's policy maps, taken out of the loaded object by the `ebpf`
//! source (`Ebpf::take_map`) and owned by the applier from then on.
//!
//! Install = build a fresh LPM trie per family (`BPF_F_NO_PREALLOC`, the
//! template's flags and sizes), fill it, then put it in the family's
//! one-slot `ARRAY_OF_MAPS`: the kernel swaps one pointer under RCU, so a
//! program run that already looked the slot up finishes on the old trie,
//! which nobody modifies, and every later run sees the whole new one. The
//! old trie is freed once the last reference goes. No delete pass: an
//! apply of 100 000 prefixes costs 100 000 inserts and one swap per family.

use std::time::{Duration, Instant};

use aya::maps::{ArrayOfMaps, LpmTrie, Map, MapData, PerCpuArray};

use crate::layout::{Encoded, RawCounters, RawEntry};
use crate::{Decisions, EnforceError};

/// The IPv4 slot map in `bpf/policy.bpf.h`.
pub const V4_MAP: &str = "hf_policy_v4";
/// The IPv6 slot map.
pub const V6_MAP: &str = "hf_policy_v6";
/// The per-CPU decision counters.
pub const COUNTERS_MAP: &str = "hf_policy_counters";
/// The read-only globals the loader sets (`hf_enforce`, the cgroup's id and level).
pub const ENFORCE_GLOBAL: &str = "hf_enforce";
pub const CGROUP_ID_GLOBAL: &str = "hf_enforce_cgroup_id";
pub const CGROUP_LEVEL_GLOBAL: &str = "hf_enforce_cgroup_level";

/// `BPF_F_NO_PREALLOC`: the inner tries' flags must equal the template's.
const NO_PREALLOC: u32 = 1;

type Trie4 = LpmTrie<MapData, [u8; 4], RawEntry>;
type Trie6 = LpmTrie<MapData, [u8; 16], RawEntry>;

/// The policy maps of one loaded object.
pub struct PolicyMaps {
    v4: ArrayOfMaps<MapData, Trie4>,
    v6: ArrayOfMaps<MapData, Trie6>,
    counters: PerCpuArray<MapData, RawCounters>,
    /// Whether a family's slot holds a non-empty trie (an empty slot and an
    /// empty trie decide the same: nothing matches).
    live: [bool; 2],
}

impl std::fmt::Debug for PolicyMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyMaps").finish_non_exhaustive()
    }
}

/// What one install wrote and how long it took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstallStats {
    pub v4_prefixes: usize,
    pub v6_prefixes: usize,
    pub elapsed: Duration,
}

fn map_error(map: &'static str) -> impl Fn(String) -> EnforceError {
    move |reason| EnforceError::Map { map, reason }
}

pub(crate) use pipeline::error_chain as chain;

impl PolicyMaps {
    /// Wraps the three maps taken from the object (`V4_MAP`, `V6_MAP`,
    /// `COUNTERS_MAP`), checking their types and sizes against the layout.
    pub fn new(v4: Map, v6: Map, counters: Map) -> Result<PolicyMaps, EnforceError> {
        Ok(PolicyMaps {
            v4: ArrayOfMaps::try_from(v4).map_err(|e| map_error(V4_MAP)(chain(&e)))?,
            v6: ArrayOfMaps::try_from(v6).map_err(|e| map_error(V6_MAP)(chain(&e)))?,
            counters: PerCpuArray::try_from(counters).map_err(|e| map_error(COUNTERS_MAP)(chain(&e)))?,
            live: [false; 2],
        })
    }

    /// Writes `encoded` into fresh tries and swaps them in (IPv4 first:
    /// each family switches atomically; a connect only ever consults one).
    /// A swap returns once no program can still be using the old trie (the
    /// kernel waits for an RCU grace period, ~13 ms here), so each family
    /// costs that once; a family empty before and after is not swapped.
    pub fn install(&mut self, encoded: &Encoded) -> Result<InstallStats, EnforceError> {
        let started = Instant::now();
        let max = policy::MAX_PREFIXES as u32;
        // Both tries are built before either is swapped in, so a failure
        // leaves the running policy whole.
        let v4 = if encoded.v4.is_empty() && !self.live[0] {
            None
        } else {
            let mut trie: Trie4 = LpmTrie::create(max, NO_PREALLOC).map_err(|e| map_error(V4_MAP)(chain(&e)))?;
            for (key, value) in &encoded.v4 {
                trie.insert(key, value, 0).map_err(|e| map_error(V4_MAP)(chain(&e)))?;
            }
            Some(trie)
        };
        let v6 = if encoded.v6.is_empty() && !self.live[1] {
            None
        } else {
            let mut trie: Trie6 = LpmTrie::create(max, NO_PREALLOC).map_err(|e| map_error(V6_MAP)(chain(&e)))?;
            for (key, value) in &encoded.v6 {
                trie.insert(key, value, 0).map_err(|e| map_error(V6_MAP)(chain(&e)))?;
            }
            Some(trie)
        };
        if let Some(trie) = v4 {
            self.v4.set(0, &trie, 0).map_err(|e| map_error(V4_MAP)(chain(&e)))?;
            self.live[0] = !encoded.v4.is_empty();
        }
        if let Some(trie) = v6 {
            self.v6.set(0, &trie, 0).map_err(|e| map_error(V6_MAP)(chain(&e)))?;
            self.live[1] = !encoded.v6.is_empty();
        }
        Ok(InstallStats { v4_prefixes: encoded.v4.len(), v6_prefixes: encoded.v6.len(), elapsed: started.elapsed() })
    }

    /// The kernel's decision counters, summed over CPUs.
    pub fn decisions(&self) -> Result<Decisions, EnforceError> {
        let per_cpu = self.counters.get(&0, 0).map_err(|e| map_error(COUNTERS_MAP)(chain(&e)))?;
        let mut total = Decisions::default();
        for cpu in per_cpu.iter() {
            total.allowed += cpu.allowed;
            total.denied += cpu.denied;
            total.audited += cpu.audited;
            total.reserve_failures += cpu.reserve_failures;
        }
        Ok(total)
    }
}
