//! `enforce = { ... }` on an `ebpf` source: where policies come from, which
//! cgroup is enforced, and the safety settings handed to `policy::Manager`.
//! Checked with located errors like every other option; absent = no
//! enforcement.

use std::path::PathBuf;

use pipeline::{ComponentOptions, ConfigError};
use serde::Deserialize;
use toml::Spanned;

/// The option table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforceConfig {
    /// The cgroup v2 directory whose processes are enforced, relative to
    /// the cgroup2 mount. Default `/`: every process.
    #[serde(default)]
    pub cgroup: Option<Spanned<String>>,
    /// The policy file or directory (`*.toml`), watched while the agent runs.
    pub policy: Spanned<String>,
    /// Where history, the audit log and the applied state live. Default
    /// `data/policy`.
    #[serde(default)]
    pub state_dir: Option<Spanned<String>>,
    /// The trust store: ed25519 public keys accepted for signed bundles.
    #[serde(default)]
    pub trust: Option<Spanned<String>>,
    /// Refuse a policy without a valid signature. Default false.
    #[serde(default)]
    pub require_signature: bool,
    /// Applies accepted per minute (1 to 600); the excess is rejected and
    /// counted. Default 10.
    #[serde(default)]
    pub applies_per_minute: Option<Spanned<u32>>,
    /// Applied policies kept for rollback (1 to 1000). Default 10.
    #[serde(default)]
    pub history: Option<Spanned<usize>>,
    /// How often the policy path is checked for changes, in milliseconds
    /// (100 to 60000; SIGHUP checks at once). Default 1000.
    #[serde(default)]
    pub poll_interval_ms: Option<Spanned<u64>>,
}

/// The checked settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnforceSettings {
    /// Relative to the cgroup2 mount, starting with `/`.
    pub cgroup: String,
    pub policy: PathBuf,
    pub state_dir: PathBuf,
    pub trust: Option<PathBuf>,
    pub require_signature: bool,
    pub applies_per_minute: u32,
    pub history: usize,
    pub poll_interval_ms: u64,
    /// Destinations a deny may not cover without `force = true` (the
    /// agent's own sinks: brokers, endpoints); filled from the topology by
    /// the agent, handed to `policy::ValidationContext`.
    pub protected: Vec<policy::Protected>,
}

impl EnforceSettings {
    /// Defaults around a policy path (tests, benches).
    pub fn new(policy: impl Into<PathBuf>) -> EnforceSettings {
        EnforceSettings {
            cgroup: "/".into(),
            policy: policy.into(),
            state_dir: PathBuf::from("data/policy"),
            trust: None,
            require_signature: false,
            applies_per_minute: 10,
            history: 10,
            poll_interval_ms: 1000,
            protected: Vec::new(),
        }
    }
}

/// Checks the table, pushing every problem at its value.
pub fn check(config: &EnforceConfig, options: &ComponentOptions, errors: &mut Vec<ConfigError>) -> EnforceSettings {
    let mut settings = EnforceSettings::new(config.policy.get_ref());
    if config.policy.get_ref().trim().is_empty() {
        errors.push(options.error_at(config.policy.span(), "enforce.policy must name a policy file or directory"));
    }
    if let Some(cgroup) = &config.cgroup {
        let text = cgroup.get_ref();
        if !text.starts_with('/') || text.split('/').any(|c| c == "..") {
            errors.push(options.error_at(
                cgroup.span(),
                format!(
                    "enforce.cgroup must be a cgroup v2 path relative to the cgroup2 mount, starting with `/` \
                     and without `..` (e.g. \"/\" or \"/system.slice/app.service\"), got `{text}`"
                ),
            ));
        }
        settings.cgroup = text.clone();
    }
    if let Some(dir) = &config.state_dir {
        if dir.get_ref().trim().is_empty() {
            errors.push(options.error_at(dir.span(), "enforce.state_dir must not be empty"));
        }
        settings.state_dir = PathBuf::from(dir.get_ref());
    }
    settings.trust = config.trust.as_ref().map(|t| PathBuf::from(t.get_ref()));
    settings.require_signature = config.require_signature;
    if config.require_signature && config.trust.is_none() {
        errors.push(options.error_at(
            config.policy.span(),
            "enforce.require_signature = true needs enforce.trust (the trust store of accepted keys)",
        ));
    }
    if let Some(rate) = &config.applies_per_minute {
        if !(1..=600).contains(rate.get_ref()) {
            errors.push(
                options.error_at(
                    rate.span(),
                    format!("enforce.applies_per_minute must be 1 to 600, got {}", rate.get_ref()),
                ),
            );
        }
        settings.applies_per_minute = *rate.get_ref();
    }
    if let Some(history) = &config.history {
        if !(1..=1000).contains(history.get_ref()) {
            errors.push(
                options
                    .error_at(history.span(), format!("enforce.history must be 1 to 1000, got {}", history.get_ref())),
            );
        }
        settings.history = *history.get_ref();
    }
    if let Some(poll) = &config.poll_interval_ms {
        if !(100..=60_000).contains(poll.get_ref()) {
            errors.push(options.error_at(
                poll.span(),
                format!("enforce.poll_interval_ms must be 100 to 60000, got {}", poll.get_ref()),
            ));
        }
        settings.poll_interval_ms = *poll.get_ref();
    }
    settings.protected = options.sink_destinations().iter().flat_map(|text| protected(text)).collect();
    settings
}

/// The addresses a sink destination (`host:port`, `[v6]:port`, or a URL
/// such as `http://10.0.0.5:4317`) names, for validation to protect. Only
/// IP literals and `localhost` are taken: resolving other names here would
/// make `validate` wait on DNS, and a name's addresses can change under a
/// running policy. Loopback is protected anyway.
pub fn protected(text: &str) -> Vec<policy::Protected> {
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse::<u16>().ok())),
            None => return Vec::new(),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, port.parse::<u16>().ok()),
            _ => (authority, None),
        },
    };
    let what = format!("the agent's sink destination `{text}`");
    let addrs: Vec<std::net::IpAddr> = match host {
        "localhost" => vec![std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()],
        _ => host.parse().map(|addr| vec![addr]).unwrap_or_default(),
    };
    addrs.into_iter().map(|addr| policy::Protected { addr, port, what: what.clone() }).collect()
}

#[cfg(test)]
mod tests {
    use super::protected;

    fn addrs(text: &str) -> Vec<String> {
        protected(text)
            .into_iter()
            .map(|p| format!("{} {}", p.addr, p.port.map_or("*".to_owned(), |p| p.to_string())))
            .collect()
    }

    #[test]
    fn sink_destinations_become_protected_addresses() {
        assert_eq!(addrs("10.0.0.5:9092"), ["10.0.0.5 9092"]);
        assert_eq!(addrs("http://192.0.2.7:4317/v1"), ["192.0.2.7 4317"]);
        assert_eq!(addrs("[2001:db8::1]:9093"), ["2001:db8::1 9093"]);
        assert_eq!(addrs("localhost:9092"), ["127.0.0.1 9092", "::1 9092"]);
        assert_eq!(addrs("203.0.113.9"), ["203.0.113.9 *"]);
        assert!(addrs("kafka.internal:9092").is_empty(), "names are not resolved");
        assert!(addrs("").is_empty());
        assert!(addrs("[::1").is_empty());
    }
}
