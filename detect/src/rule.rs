//! The rule model every front end produces and every layer compiles: what a
//! rule says, with no trace of the syntax it was written in. The native
//! YAML front end ([`crate::native`]) and the Sigma one ([`crate::sigma`])
//! both end here, so a Sigma rule and a native rule with the same meaning
//! compile to the same matcher.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use pipeline::{Confidence, EventKind, Field, Severity};

mod anomaly;
mod chain;

pub use anomaly::{Anomaly, Entity, Feature};
pub use chain::{Chain, Stage};

/// One loaded rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub meta: RuleMeta,
    pub body: Body,
    /// Where it was written (file, line of the rule's first key).
    pub origin: Origin,
}

/// What a rule's firing says about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleMeta {
    /// Unique across the loaded set; a detection's `rule_id`.
    pub id: Arc<str>,
    pub title: Arc<str>,
    pub description: Arc<str>,
    pub severity: Severity,
    pub confidence: Confidence,
    /// ATT&CK technique ids, upper case (`T1059.004`).
    pub attack: Vec<Arc<str>>,
    pub tags: Vec<Arc<str>>,
    /// A disabled rule is loaded and checked but never evaluated.
    pub enabled: bool,
    pub exceptions: Exceptions,
}

/// Allow-lists that silence a rule whose body matched.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exceptions {
    /// The acting process's executable (exact path; a trailing `*` is a
    /// prefix).
    pub exe: Vec<Arc<str>>,
    /// Any ancestor's executable (same syntax): "anything started under
    /// the package manager".
    pub lineage: Vec<Arc<str>>,
}

/// Where a rule was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub file: Arc<Path>,
    pub line: usize,
    pub format: Format,
}

/// The syntax a rule was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Native,
    Sigma,
}

/// The layer-specific part of a rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// L1: one event is enough.
    Indicator(Match),
    /// L2: steps in order (or in any order) within a window.
    Sequence(Sequence),
    /// L2: more than a threshold of matching events (or distinct values)
    /// within a window.
    Count(Count),
    /// L3: an entity's recent behaviour against its learned baseline.
    Anomaly(Anomaly),
    /// L4: kill-chain stages over one process lineage.
    Chain(Chain),
}

impl Body {
    /// The detection layer the body belongs to.
    pub fn layer(&self) -> pipeline::DetectionLayer {
        match self {
            Body::Indicator(_) => pipeline::DetectionLayer::L1,
            Body::Sequence(_) | Body::Count(_) => pipeline::DetectionLayer::L2,
            Body::Anomaly(_) => pipeline::DetectionLayer::L3,
            Body::Chain(_) => pipeline::DetectionLayer::L4,
        }
    }
}

/// A single-event condition: the event's kind is one of `kinds`, and
/// `expr` holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub kinds: KindSet,
    pub expr: Expr,
}

/// A set of event kinds (bit `EventKind::index()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KindSet(pub u64);

impl KindSet {
    pub const ALL: KindSet = KindSet(u64::MAX);

    pub fn of(kinds: &[EventKind]) -> KindSet {
        KindSet(kinds.iter().fold(0, |bits, kind| bits | 1 << kind.index()))
    }

    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & (1 << kind.index()) != 0
    }

    pub fn intersect(self, other: KindSet) -> KindSet {
        KindSet(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A boolean expression over one event's fields.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Every one holds (an empty list holds).
    All(Vec<Expr>),
    /// At least one holds (an empty list does not).
    Any(Vec<Expr>),
    Not(Box<Expr>),
    Pred(Pred),
}

impl Expr {
    /// Always true.
    pub fn always() -> Expr {
        Expr::All(Vec::new())
    }
}

/// One test of one value of the event.
#[derive(Clone, Debug, PartialEq)]
pub struct Pred {
    pub target: Target,
    pub test: Test,
}

/// The value a predicate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A named field ([`pipeline::Field`]).
    Field(Field),
    /// One argument of the command line, `argv[i]` (Sigma's auditd
    /// `a0`…`aN`): an exec's own argv, else the context's.
    Arg(u16),
}

/// What a predicate checks. A field the event does not have fails every
/// test except `Exists(false)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    /// Text against literals: any of `values` (or all, when `all`), ASCII
    /// case-insensitive unless `cased`.
    Text { op: TextOp, values: Vec<Arc<str>>, all: bool, cased: bool },
    /// Regular expressions (Rust `regex` syntax, unanchored); any of them,
    /// or all when `all`. Case follows the pattern (`(?i)`).
    Regex { patterns: Vec<Arc<str>>, all: bool },
    /// An address inside any of the networks.
    Cidr(Vec<Cidr>),
    /// A number compared with a literal.
    Num { op: CmpOp, value: i128 },
    /// A number equal to one of the values.
    NumIn(Vec<i128>),
    /// Any bit of `mask` set (`file_mode` setuid: 0o4000).
    BitsAny(u64),
    /// The value is in a named IOC set ([`IocSet`]).
    InSet(Arc<str>),
    /// The field is present (`true`) or absent (`false`) on this event.
    Exists(bool),
}

/// How text is compared with a literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextOp {
    Equals,
    Prefix,
    Suffix,
    Contains,
}

/// A numeric comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A network: an address and a prefix length (host bits zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128` or a bare address (a host route).
    /// Host bits must be zero: `10.0.0.1/8` is a typo more often than not.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| format!("`{text}` is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{text}`: the prefix length must be 0..={max}")),
            },
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network() != addr {
            return Err(format!("`{text}` has host bits set; the network is `{}/{prefix}`", cidr.network()));
        }
        Ok(cidr)
    }

    /// The address with the host bits cleared.
    pub fn network(self) -> IpAddr {
        mask(self.addr, self.prefix)
    }

    /// Whether `addr` lies inside. An IPv4-mapped IPv6 address matches
    /// its IPv4 network.
    pub fn contains(self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        addr.is_ipv4() == self.addr.is_ipv4() && mask(addr, self.prefix) == self.addr
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`, so IPv4 rules see IPv4 peers of dual-stack
/// sockets.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// `addr` with all but the first `prefix` bits cleared.
pub fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.min(128))) };
            IpAddr::V6((bits & keep).into())
        }
    }
}

/// L2: steps that must all be seen within `within_ns`, per group.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    /// What the steps must share ([`GroupKey::Process`] unless a step's
    /// relation says otherwise).
    pub group_by: Vec<GroupKey>,
    pub within_ns: u64,
    /// Steps must be seen in the written order (Sigma `temporal_ordered`,
    /// native sequences); `false`: in any order (Sigma `temporal`).
    pub ordered: bool,
    pub steps: Vec<Step>,
}

/// One step of a sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub matcher: Match,
    /// How this step's process relates to the previous step's.
    pub relation: Relation,
}

/// How a step's process relates to the previous step's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// Only the sequence's group has to agree.
    Any,
    /// The same process (same [`pipeline::ProcessKey`], same exec image).
    SameProcess,
    /// A direct child of the previous step's process.
    Child,
    /// Any descendant of the previous step's process (its ancestry holds it).
    Descendant,
    /// The same lineage ([`GroupKey::Lineage`]).
    SameLineage,
}

/// L2: more than `more_than` matching events (or distinct values of
/// `distinct`) within `within_ns`, per group.
#[derive(Clone, Debug, PartialEq)]
pub struct Count {
    pub matcher: Match,
    pub group_by: Vec<GroupKey>,
    /// Count distinct values of this target rather than events (Sigma
    /// `value_count`: "50 distinct destination ports").
    pub distinct: Option<Target>,
    pub more_than: u64,
    pub within_ns: u64,
}

/// What an L2 rule's state is kept per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupKey {
    /// The acting process (its key: PID reuse cannot join two processes).
    Process,
    /// The process's lineage: its audit login session when it has one,
    /// else its ancestor just below PID 1 (see [`crate::lineage_key`]).
    Lineage,
    /// A field's value (Sigma `group-by`).
    Field(Target),
}

/// A large set of indicators, loaded once and shared by the rules that
/// name it (`in_set`).
#[derive(Clone, Debug, PartialEq)]
pub struct IocSet {
    pub name: Arc<str>,
    pub kind: IocKind,
    pub values: Vec<Arc<str>>,
    pub origin: Origin,
}

/// What an IOC set holds, which decides how it is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IocKind {
    /// SHA-256 digests in hex (a hash set of 32-byte keys).
    Sha256,
    /// Addresses and networks (per-prefix-length hash sets).
    Ip,
    /// Exact paths, case-sensitive (a hash set).
    Path,
    /// Substrings of text such as a command line, case-insensitive (one
    /// Aho-Corasick automaton).
    Substring,
}

impl IocKind {
    pub const ALL: [IocKind; 4] = [IocKind::Sha256, IocKind::Ip, IocKind::Path, IocKind::Substring];

    pub fn as_str(self) -> &'static str {
        match self {
            IocKind::Sha256 => "sha256",
            IocKind::Ip => "ip",
            IocKind::Path => "path",
            IocKind::Substring => "substring",
        }
    }

    pub fn from_name(name: &str) -> Option<IocKind> {
        IocKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_checks_host_bits_and_matches_mapped_v4() {
        let net = Cidr::parse("10.1.0.0/16").expect("valid");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(Cidr::parse("10.1.0.1/16").expect_err("host bits").contains("10.1.0.0/16"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
        let host = Cidr::parse("::1").expect("host");
        assert_eq!(host.prefix, 128);
        assert!(host.contains("::1".parse().expect("ip")));
        assert!(Cidr::parse("0.0.0.0/0").expect("all").contains("8.8.8.8".parse().expect("ip")));
    }
}
