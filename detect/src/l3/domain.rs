//! L3's fixed feature domains: what bin an event falls in for each
//! distribution feature. Fixed, small and closed, so an entity's counters
//! are plain arrays (no map per event) and a saved baseline can say
//! exactly which domains it was counted over ([`definition`]): a file
//! counted over other bins is refused on load, never misread.
//!
//! - **Event kinds**: [`EventKind::ALL`], bin = `EventKind::index()`.
//! - **Port classes** ([`PORT_CLASSES`]): the destination port of a
//!   connect or send, the local port of a listen or accept, grouped by
//!   what usually answers there.
//! - **Path prefixes** ([`PATH_PREFIXES`]): the first one or two
//!   components of the path of a file open, a file change or a module
//!   load. (Not an exec's: an exec's entity is the executable itself, so
//!   its path never varies within an entity.)

use pipeline::{Event, EventKind};

/// Bins of the largest domain (event kinds): the size of every counter
/// array.
pub const MAX_BINS: usize = EventKind::ALL.len();

/// "This event has no value for the feature."
pub const NONE: u8 = u8::MAX;

/// Port classes, in bin order: `(name, ports)`; `other_privileged` is
/// every other port below 1024, `registered` every other port from 1024
/// to 32767, `ephemeral` 32768 and up (Linux's default local range starts
/// at 32768), `zero` port 0.
pub const PORT_CLASSES: [(&str, &[u16]); 10] = [
    ("web", &[80, 443, 8080, 8443]),
    ("dns", &[53, 853]),
    ("ssh", &[22]),
    ("mail", &[25, 110, 143, 465, 587, 993, 995]),
    ("db", &[1433, 1521, 3306, 5432, 6379, 9042, 9200, 11211, 27017]),
    ("infra", &[67, 68, 88, 123, 161, 389, 514, 636]),
    ("other_privileged", &[]),
    ("registered", &[]),
    ("ephemeral", &[]),
    ("zero", &[]),
];

/// Path prefixes, in bin order: `(name, prefixes)`. A path is matched by
/// its components (`/etcetera` is not `/etc`); the first listed match
/// wins, so `/dev/shm` comes before `/dev` and `/var/log` before `/var`.
/// `other`: relative paths and everything else.
pub const PATH_PREFIXES: [(&str, &[&str]); 16] = [
    ("etc", &["/etc"]),
    ("tmp", &["/tmp"]),
    ("dev_shm", &["/dev/shm", "/run/shm"]),
    ("var_tmp", &["/var/tmp"]),
    ("home", &["/home"]),
    ("root", &["/root"]),
    ("system", &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot"]),
    ("opt", &["/opt", "/srv"]),
    ("proc", &["/proc"]),
    ("sys", &["/sys"]),
    ("dev", &["/dev"]),
    ("var_log", &["/var/log"]),
    ("var_lib", &["/var/lib", "/var/cache"]),
    ("run", &["/run", "/var/run"]),
    ("var", &["/var"]),
    ("other", &[]),
];

/// The class of a port.
pub fn port_class(port: u16) -> u8 {
    for (bin, (_, ports)) in PORT_CLASSES.iter().enumerate().take(6) {
        if ports.contains(&port) {
            return bin as u8;
        }
    }
    match port {
        0 => 9,
        1..=1023 => 6,
        1024..=32767 => 7,
        _ => 8,
    }
}

/// The prefix bin of a path.
pub fn path_prefix(path: &str) -> u8 {
    let last = PATH_PREFIXES.len() - 1;
    for (bin, (_, prefixes)) in PATH_PREFIXES.iter().enumerate().take(last) {
        let hit =
            prefixes.iter().any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
        if hit {
            return bin as u8;
        }
    }
    last as u8
}

/// The port an event contributes to `port_class` ([`NONE`]: none).
pub fn event_port(event: &Event) -> u8 {
    match event {
        Event::NetConnect(e) => port_class(e.dst_port),
        Event::NetSend(e) => port_class(e.dst_port),
        Event::NetListen(e) => port_class(e.port),
        Event::NetAccept(e) => port_class(e.local_port),
        _ => NONE,
    }
}

/// The path an event contributes to `path_prefix` ([`NONE`]: none).
pub fn event_path(event: &Event) -> u8 {
    match event {
        Event::FileOpen(e) => path_prefix(&e.path),
        Event::FileChange(e) => path_prefix(&e.path),
        Event::ModuleLoad(e) if !e.path.is_empty() => path_prefix(&e.path),
        _ => NONE,
    }
}

/// The kinds that carry a port, and those that carry a path.
pub const PORT_KINDS: [EventKind; 4] =
    [EventKind::NetConnect, EventKind::NetSend, EventKind::NetListen, EventKind::NetAccept];
pub const PATH_KINDS: [EventKind; 3] = [EventKind::FileOpen, EventKind::FileChange, EventKind::ModuleLoad];

/// Name of bin `bin` of a feature's domain (for summaries).
pub fn bin_name(feature: crate::rule::Feature, bin: usize) -> &'static str {
    use crate::rule::Feature;
    match feature {
        Feature::Kinds => EventKind::ALL.get(bin).map_or("?", |k| k.as_str()),
        Feature::PortClass => PORT_CLASSES.get(bin).map_or("?", |c| c.0),
        Feature::PathPrefix => PATH_PREFIXES.get(bin).map_or("?", |c| c.0),
        Feature::Rate => "events",
    }
}

/// The domains as data: saved with every baseline file, compared on load.
pub fn definition() -> serde_json::Value {
    serde_json::json!({
        "kinds": EventKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "port_class": PORT_CLASSES.iter().map(|(n, p)| serde_json::json!([n, p])).collect::<Vec<_>>(),
        "path_prefix": PATH_PREFIXES.iter().map(|(n, p)| serde_json::json!([n, p])).collect::<Vec<_>>(),
        "rate_buckets": super::RATE_BUCKETS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_fall_in_their_class() {
        let name = |p| PORT_CLASSES[port_class(p) as usize].0;
        assert_eq!(name(443), "web");
        assert_eq!(name(53), "dns");
        assert_eq!(name(22), "ssh");
        assert_eq!(name(587), "mail");
        assert_eq!(name(5432), "db");
        assert_eq!(name(123), "infra");
        assert_eq!(name(111), "other_privileged");
        assert_eq!(name(4444), "registered");
        assert_eq!(name(45000), "ephemeral");
        assert_eq!(name(0), "zero");
    }

    #[test]
    fn paths_fall_in_their_prefix_by_components() {
        let name = |p| PATH_PREFIXES[path_prefix(p) as usize].0;
        assert_eq!(name("/etc/passwd"), "etc");
        assert_eq!(name("/etc"), "etc");
        assert_eq!(name("/etcetera/x"), "other");
        assert_eq!(name("/tmp/x"), "tmp");
        assert_eq!(name("/dev/shm/a"), "dev_shm");
        assert_eq!(name("/dev/null"), "dev");
        assert_eq!(name("/var/tmp/a"), "var_tmp");
        assert_eq!(name("/var/log/syslog"), "var_log");
        assert_eq!(name("/var/lib/dpkg/status"), "var_lib");
        assert_eq!(name("/var/run/x.pid"), "run");
        assert_eq!(name("/var/spool/cron"), "var");
        assert_eq!(name("/usr/lib/x86_64-linux-gnu/libc.so.6"), "system");
        assert_eq!(name("/lib64/ld-linux-x86-64.so.2"), "system");
        assert_eq!(name("/home/alice/.bashrc"), "home");
        assert_eq!(name("/root/.ssh/authorized_keys"), "root");
        assert_eq!(name("/proc/self/status"), "proc");
        assert_eq!(name("relative/path"), "other");
        assert_eq!(name(""), "other");
    }
}
