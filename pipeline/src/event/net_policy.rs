//! [`NetPolicy`]: one decision of the network policy the kernel enforces
//! (issue #17) — a connect denied, audited, or a deny only reported in dry
//! run — and [`RuleNames`], what turns the kernel's rule key back into the
//! operator's rule id.
//!
//! A declared kind like the security ones (see `security.rs`): one record
//! with its [`Columns`], so the spool, NDJSON, protobuf and replay carry it
//! without a line of their own. The kernel knows rules only by a 32-bit key
//! (FNV-1a of the id, `policy::rule_key`); the id and the digest of the
//! policy in force are names user space gives it. They live here, beside
//! the kind, because both the applier (which writes them at every apply)
//! and the ebpf source's reader (which reads them for every batch holding
//! such events) can reach this crate without a dependency cycle.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use super::columns::{write_key, ColumnError, ColumnReader, ColumnWriter, Columns};
use super::context::wire_enum;
use super::{Event, EventMeta, ProcessContext, ProcessKey, Protocol};

wire_enum! {
    /// What the matched rule did to the connect.
    PolicyAction {
        /// Let through (only reported by a rule that asks for it).
        Allow = "allow",
        /// Refused with `EPERM`, unless `dry_run`.
        Deny = "deny",
        /// Let through and reported.
        Audit = "audit",
    }
}

/// One connect a network-policy rule decided about (issue #17).
#[derive(Clone, Debug, PartialEq)]
pub struct NetPolicy {
    pub meta: EventMeta,
    /// The process that called `connect`.
    pub process: ProcessKey,
    /// The operator's id of the matched rule; empty when user space no
    /// longer (or not yet) knows the key.
    pub rule_id: Arc<str>,
    /// What the kernel carries: FNV-1a 32 of the rule id.
    pub rule_key: u32,
    pub action: PolicyAction,
    /// A deny that was only reported: the policy runs in dry-run mode and
    /// the connect went through.
    pub dry_run: bool,
    /// `udp` for a datagram socket, `tcp` otherwise (as `net_connect`).
    pub protocol: Protocol,
    pub dst_addr: IpAddr,
    pub dst_port: u16,
    /// The caller's cgroup (v2 id); 0 when unknown.
    pub cgroup_id: u64,
    /// The applier's generation counter of the policy that decided (one
    /// run of the agent); what [`RuleNames`] resolves the digest by.
    pub generation: u32,
    /// Digest of the policy of that generation; empty when unknown.
    pub policy_digest: Arc<str>,
    /// Set by enrichment (see [`ProcessContext`]).
    pub context: Option<Arc<ProcessContext>>,
}

impl Columns for NetPolicy {
    fn write_columns(&self, w: &mut dyn ColumnWriter) {
        write_key(w, &self.process);
        w.str(&self.rule_id);
        w.u32(self.rule_key);
        w.str(self.action.as_str());
        w.bool(self.dry_run);
        w.str(self.protocol.as_str());
        w.str(&self.dst_addr.to_string());
        w.u16(self.dst_port);
        w.u64(self.cgroup_id);
        w.u32(self.generation);
        w.str(&self.policy_digest);
    }

    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<NetPolicy, ColumnError> {
        Ok(NetPolicy {
            meta,
            process: r.key()?,
            rule_id: r.str()?,
            rule_key: r.u32()?,
            action: r.parsed("policy action", PolicyAction::from_name)?,
            dry_run: r.bool()?,
            protocol: r.parsed("protocol", |text| match text {
                "tcp" => Some(Protocol::Tcp),
                "udp" => Some(Protocol::Udp),
                _ => None,
            })?,
            dst_addr: r.ip()?,
            dst_port: r.u16()?,
            cgroup_id: r.u64()?,
            generation: r.u32()?,
            policy_digest: r.str()?,
            context: None,
        })
    }
}

/// How many applied policies [`RuleNames`] remembers: events of an older
/// generation still in the ring when the next one is applied keep their
/// digest, and a rule id is kept until this many publishes in a row lacked
/// it.
pub const REMEMBERED_GENERATIONS: usize = 16;

/// The names of the policy rules the kernel knows by key, per generation:
/// written by whatever applies policy ([`RuleNames::publish`], once per
/// apply, rollback or clear), read by the ebpf source for every batch that
/// holds [`NetPolicy`] events ([`RuleNames::fill`]). Cloning shares it.
///
/// A rule key is stable across policies (it is a hash of the id), so ids
/// are kept once per key, not per generation (a policy of 100 000 rules
/// applied again and again costs its ids once), and an event of a
/// generation no longer remembered still gets its rule id; only its digest
/// is then unknown (empty). Two ids with the same key in different
/// policies: the one published last names it.
#[derive(Clone, Debug, Default)]
pub struct RuleNames {
    inner: Arc<RwLock<Generations>>,
}

#[derive(Debug, Default)]
struct Generations {
    /// Publishes so far.
    publishes: u64,
    /// Digest per generation, oldest first; at most
    /// [`REMEMBERED_GENERATIONS`].
    digests: VecDeque<(u32, Arc<str>)>,
    /// Rule id per key, with the last publish whose policy had it.
    ids: HashMap<u32, (Arc<str>, u64)>,
}

impl RuleNames {
    pub fn new() -> RuleNames {
        RuleNames::default()
    }

    /// Records the policy applied as `generation`: its digest and every
    /// rule as `(rule_key, id)`. Publishing a generation again replaces it.
    pub fn publish<'a>(&self, generation: u32, digest: &str, rules: impl IntoIterator<Item = (u32, &'a str)>) {
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let names = &mut *guard;
        names.publishes += 1;
        let now = names.publishes;
        names.digests.retain(|(known, _)| *known != generation);
        names.digests.push_back((generation, digest.into()));
        while names.digests.len() > REMEMBERED_GENERATIONS {
            names.digests.pop_front();
        }
        for (key, id) in rules {
            match names.ids.entry(key) {
                Entry::Occupied(mut known) if &*known.get().0 == id => known.get_mut().1 = now,
                Entry::Occupied(mut known) => *known.get_mut() = (id.into(), now),
                Entry::Vacant(slot) => {
                    slot.insert((id.into(), now));
                }
            }
        }
        names.ids.retain(|_, (_, seen)| now - *seen < REMEMBERED_GENERATIONS as u64);
    }

    /// `(rule_id, policy_digest)` of `rule_key` under `generation`; empty
    /// text for what is not known.
    pub fn resolve(&self, generation: u32, rule_key: u32) -> (Arc<str>, Arc<str>) {
        let guard = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        guard.resolve(generation, rule_key)
    }

    /// Sets `rule_id` and `policy_digest` of every [`NetPolicy`] event in
    /// `events` that lacks them (one lock for the batch; none when the
    /// batch has no such event).
    pub fn fill(&self, events: &mut [Event]) {
        let mut policy = events.iter_mut().filter_map(|event| match event {
            Event::NetPolicy(e) => Some(e),
            _ => None,
        });
        let Some(first) = policy.next() else { return };
        let guard = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        for event in std::iter::once(first).chain(policy) {
            let (id, digest) = guard.resolve(event.generation, event.rule_key);
            if event.rule_id.is_empty() {
                event.rule_id = id;
            }
            if event.policy_digest.is_empty() {
                event.policy_digest = digest;
            }
        }
    }
}

impl Generations {
    fn resolve(&self, generation: u32, rule_key: u32) -> (Arc<str>, Arc<str>) {
        let empty = || Arc::<str>::from("");
        let id = self.ids.get(&rule_key).map_or_else(empty, |(id, _)| Arc::clone(id));
        let digest = self.digests.iter().find(|(known, _)| *known == generation);
        (id, digest.map_or_else(empty, |(_, digest)| Arc::clone(digest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(generation: u32, rule_key: u32) -> Event {
        Event::NetPolicy(NetPolicy {
            meta: EventMeta { ts_ns: 1, event_id: 2 },
            process: ProcessKey { pid: 3, start_time_ns: 4 },
            rule_id: "".into(),
            rule_key,
            action: PolicyAction::Deny,
            dry_run: false,
            protocol: Protocol::Tcp,
            dst_addr: IpAddr::from([127, 0, 0, 2]),
            dst_port: 8080,
            cgroup_id: 0,
            generation,
            policy_digest: "".into(),
            context: None,
        })
    }

    fn names(event: &Event) -> (&str, &str) {
        match event {
            Event::NetPolicy(e) => (&e.rule_id, &e.policy_digest),
            _ => ("?", "?"),
        }
    }

    #[test]
    fn keys_resolve_per_generation_and_unknown_ones_stay_empty() {
        let names_table = RuleNames::new();
        let mut batch = vec![event(1, 7)];
        names_table.fill(&mut batch);
        assert_eq!(names(&batch[0]), ("", ""), "nothing published yet");

        names_table.publish(1, "d1", [(7, "deny-web"), (8, "audit-dns")]);
        names_table.publish(2, "d2", [(8, "audit-dns")]);
        let mut batch = vec![event(1, 7), event(2, 8), event(2, 7), event(9, 8), event(2, 99)];
        names_table.fill(&mut batch);
        let got: Vec<_> = batch.iter().map(names).collect();
        assert_eq!(
            got,
            [("deny-web", "d1"), ("audit-dns", "d2"), ("deny-web", "d2"), ("audit-dns", ""), ("", "d2")],
            "a key removed by generation 2 still names its rule; an unknown generation has no digest"
        );
        assert_eq!(names_table.resolve(2, 8), (Arc::from("audit-dns"), Arc::from("d2")));
    }

    #[test]
    fn rules_read_its_fields_by_name() {
        use crate::event::{Field, FieldValue};
        let Event::NetPolicy(mut decision) = event(3, 7) else { unreachable!() };
        decision.rule_id = "deny-web".into();
        decision.dry_run = true;
        decision.cgroup_id = 42;
        let decision = Event::NetPolicy(decision);
        for (name, expected) in [
            ("kind", FieldValue::Str("net_policy")),
            ("rule_id", FieldValue::Str("deny-web")),
            ("rule_key", FieldValue::Int(7)),
            ("action", FieldValue::Str("deny")),
            ("dry_run", FieldValue::Int(1)),
            ("policy_digest", FieldValue::Str("")),
            ("protocol", FieldValue::Str("tcp")),
            ("dst_addr", FieldValue::Addr(IpAddr::from([127, 0, 0, 2]))),
            ("dst_port", FieldValue::Int(8080)),
            ("cgroup_id", FieldValue::Int(42)),
            ("pid", FieldValue::Int(3)),
        ] {
            let field = Field::from_name(name).unwrap_or_else(|| panic!("no field {name}"));
            assert_eq!(decision.field(field), Some(expected), "{name}");
        }
        assert_eq!(decision.field(Field::Path), None);
        assert!(decision.context_slot().is_some(), "process-bearing: enrichment attaches a context");
    }

    #[test]
    fn only_the_last_generations_are_remembered_and_a_republish_replaces() {
        let table = RuleNames::new();
        for generation in 0..(REMEMBERED_GENERATIONS as u32 + 4) {
            table.publish(generation, &format!("d{generation}"), [(generation, "r"), (1000, "every")]);
        }
        assert_eq!(table.resolve(0, 0), (Arc::from(""), Arc::from("")), "generation 0 and its rule were forgotten");
        assert_eq!(table.resolve(0, 1000).0.as_ref(), "every", "a rule of every policy stays");
        let last = REMEMBERED_GENERATIONS as u32 + 3;
        assert_eq!(table.resolve(last, last), (Arc::from("r"), Arc::from(format!("d{last}"))));
        table.publish(last, "again", [(1000, "renamed")]);
        assert_eq!(table.resolve(last, last), (Arc::from("r"), Arc::from("again")), "the digest is replaced");
        assert_eq!(table.resolve(last, 1000).0.as_ref(), "renamed", "the last id published for a key names it");
        let shared = table.clone();
        shared.publish(100, "shared", [(5, "x")]);
        assert_eq!(table.resolve(100, 5).0.as_ref(), "x", "clones share one table");
    }
}
