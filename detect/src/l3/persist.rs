//! L3 baselines on disk: the file format, atomic owner-only writes, the
//! writer thread, and the `anomaly` options of the `detect` transform.
//!
//! The file (`<state_dir>/l3-baselines.json`; also the export format — an
//! import file is one of these, e.g. copied from a host whose baselines a
//! fleet trusts) is JSON:
//!
//! ```json
//! {"format": "hostflow-l3-baselines", "version": 1,
//!  "domains": {"kinds": [...], "port_class": [["web", [80, 443, …]], …],
//!              "path_prefix": [["etc", ["/etc"]], …], "rate_buckets": 64},
//!  "models": [{"entity": "exe", "feature": "kinds",
//!              "kinds": ["process_exec", "net_connect", "file_open"],
//!              "window_ns": 60000000000,
//!              "baselines": [{"exe": "/usr/sbin/nginx", "parent": "",
//!                             "events": 5120, "windows": 40,
//!                             "counts": [/* one per bin of the domain */],
//!                             "rates": [/* per-window counts, oldest first (rate) */]}]}]}
//! ```
//!
//! A model's baselines are used by the rules whose `(entity, feature,
//! kinds, window)` are the model's; others are ignored. `domains` is
//! compared with this build's ([`super::domain::definition`]): a file
//! counted over other bins is refused whole. Anything wrong — unreadable,
//! not JSON, another format or version, other domains, a count list of
//! the wrong length — is reported (log, `hostflow_detect_l3_baseline_load_failures_total`
//! by reason, `/health`) and the baselines are relearned; it never stops
//! the agent. Files are written owner-only (0600) as `…json.tmp`, synced,
//! then renamed over the old one, by a writer thread (transforms do no
//! I/O on their task): every `save_interval_secs` when something was
//! learned, and once more, waited for, at shutdown.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use pipeline::EventKind;
use serde::{Deserialize, Serialize};

use super::domain::MAX_BINS;
use super::{bins_of, defined_kinds, Baseline, EntityKey, ModelKey, RATE_BUCKETS};
use crate::rule::{Entity, Feature, KindSet};

/// The `format` field.
pub const FORMAT: &str = "hostflow-l3-baselines";
/// The `version` field; another version is refused (and relearned).
pub const VERSION: u32 = 1;
/// The file's name under `state_dir`.
pub const FILE_NAME: &str = "l3-baselines.json";

/// `anomaly = { … }` of `[transforms.NAME] type = "detect"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Where baselines are saved and loaded from; none: nothing persisted.
    pub state_dir: Option<PathBuf>,
    /// A baseline file read at start when `state_dir` holds none.
    pub import: Option<PathBuf>,
    #[serde(default = "default_true")]
    pub learn: bool,
    #[serde(default = "default_warmup_events")]
    pub warmup_events: u64,
    #[serde(default = "default_warmup_windows")]
    pub warmup_windows: u32,
    #[serde(default = "default_max_entities")]
    pub max_entities: usize,
    #[serde(default = "default_save_interval_secs")]
    pub save_interval_secs: u64,
}

impl Default for AnomalyConfig {
    fn default() -> AnomalyConfig {
        AnomalyConfig {
            state_dir: None,
            import: None,
            learn: true,
            warmup_events: default_warmup_events(),
            warmup_windows: default_warmup_windows(),
            max_entities: default_max_entities(),
            save_interval_secs: default_save_interval_secs(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_warmup_events() -> u64 {
    200
}
fn default_warmup_windows() -> u32 {
    5
}
fn default_max_entities() -> usize {
    4096
}
fn default_save_interval_secs() -> u64 {
    60
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    format: String,
    version: u32,
    domains: serde_json::Value,
    models: Vec<ModelRepr>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelRepr {
    entity: String,
    feature: String,
    kinds: Vec<String>,
    window_ns: u64,
    baselines: Vec<BaselineRepr>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselineRepr {
    exe: String,
    #[serde(default)]
    parent: String,
    events: u64,
    windows: u32,
    #[serde(default)]
    counts: Vec<u64>,
    #[serde(default)]
    rates: Vec<u32>,
}

/// Baselines per model, entities in key order.
pub type Baselines = BTreeMap<ModelKey, Vec<(EntityKey, Baseline)>>;

/// Why a baseline file was not used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a baseline file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} is version {found} of the baseline format; this build reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("{path} was counted over other feature domains than this build's")]
    Domains { path: PathBuf },
}

impl LoadError {
    pub const REASONS: [&'static str; 4] = ["unreadable", "corrupt", "version", "domains"];

    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            LoadError::Unreadable { .. } => "unreadable",
            LoadError::Corrupt { .. } => "corrupt",
            LoadError::Version { .. } => "version",
            LoadError::Domains { .. } => "domains",
        }
    }
}

/// The file's bytes for `baselines` (canonical: the same baselines give
/// the same bytes).
pub fn encode(baselines: &Baselines) -> Vec<u8> {
    let models = baselines
        .iter()
        .map(|(key, list)| ModelRepr {
            entity: key.entity.as_str().into(),
            feature: key.feature.as_str().into(),
            kinds: EventKind::ALL
                .iter()
                .filter(|k| key.kinds & (1 << k.index()) != 0)
                .map(|k| k.as_str().into())
                .collect(),
            window_ns: key.window_ns,
            baselines: list
                .iter()
                .map(|(entity, base)| BaselineRepr {
                    exe: entity.exe.to_string(),
                    parent: entity.parent.to_string(),
                    events: base.events,
                    windows: base.windows,
                    counts: base.counts[..bins_of(key.feature)].to_vec(),
                    rates: base.rates.iter().copied().collect(),
                })
                .collect(),
        })
        .collect();
    let file = FileRepr { format: FORMAT.into(), version: VERSION, domains: super::domain::definition(), models };
    let mut bytes = serde_json::to_vec(&file).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Reads and checks a baseline file.
pub fn read(path: &Path) -> Result<Baselines, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Unreadable { path: path.into(), source })?;
    decode(path, &bytes)
}

/// Checks and converts a file's bytes.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Baselines, LoadError> {
    let corrupt = |reason: String| LoadError::Corrupt { path: path.into(), reason };
    // The header first, so another version is named as such even when
    // the rest would not parse.
    let header: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if header.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(corrupt(format!("no `\"format\": \"{FORMAT}\"`")));
    }
    match header.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => return Err(LoadError::Version { path: path.into(), found: u32::try_from(v).unwrap_or(u32::MAX) }),
        None => return Err(corrupt("no `version`".into())),
    }
    if header.get("domains") != Some(&super::domain::definition()) {
        return Err(LoadError::Domains { path: path.into() });
    }
    let file: FileRepr = serde_json::from_value(header).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Baselines::new();
    for model in file.models {
        let entity = Entity::from_name(&model.entity).ok_or_else(|| corrupt(format!("entity `{}`", model.entity)))?;
        let feature =
            Feature::from_name(&model.feature).ok_or_else(|| corrupt(format!("feature `{}`", model.feature)))?;
        let mut kinds = KindSet::default();
        for name in &model.kinds {
            let kind = EventKind::from_name(name).ok_or_else(|| corrupt(format!("event kind `{name}`")))?;
            kinds = KindSet(kinds.0 | KindSet::of(&[kind]).0);
        }
        if model.window_ns == 0 {
            return Err(corrupt("a model with `window_ns` 0".into()));
        }
        let key = ModelKey { entity, feature, kinds: kinds.0 & defined_kinds(), window_ns: model.window_ns };
        let bins = bins_of(feature);
        let mut list = Vec::with_capacity(model.baselines.len());
        for b in model.baselines {
            if b.counts.len() != bins
                || b.rates.len() > RATE_BUCKETS
                || (feature != Feature::Rate) != b.rates.is_empty()
            {
                return Err(corrupt(format!(
                    "the baseline of `{}` does not fit its feature `{}`",
                    b.exe,
                    feature.as_str()
                )));
            }
            let mut counts = [0u64; MAX_BINS];
            counts[..bins].copy_from_slice(&b.counts);
            let base = Baseline {
                events: b.events,
                windows: b.windows,
                counts,
                rates: VecDeque::from(b.rates),
                ..Baseline::default()
            };
            list.push((EntityKey { exe: b.exe.into(), parent: b.parent.into() }, base));
        }
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list.dedup_by(|a, b| a.0 == b.0);
        out.insert(key, list);
    }
    Ok(out)
}

/// Writes `bytes` to `path` atomically and owner-only: a `.tmp` beside
/// it (mode 0600), synced, renamed over `path`; the directory is created
/// (0700) when missing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.as_os_str().is_empty() && !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    // An existing .tmp keeps its mode on open: narrow it.
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Saves and their outcome, shared with the writer thread.
#[derive(Debug, Default)]
pub struct SaveCounters {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

type Job = (Baselines, Option<mpsc::Sender<std::io::Result<()>>>);

/// The writer thread: encodes and writes snapshots off the transform's
/// task. One snapshot at a time; a save asked for while one is being
/// written is skipped (the next tick brings a newer one).
#[derive(Debug)]
pub struct Saver {
    jobs: mpsc::SyncSender<Job>,
    pub counters: Arc<SaveCounters>,
}

impl Saver {
    pub fn spawn(path: PathBuf, component: Arc<str>) -> std::io::Result<Saver> {
        let (jobs, receive) = mpsc::sync_channel::<Job>(1);
        let counters = Arc::new(SaveCounters::default());
        let shared = counters.clone();
        std::thread::Builder::new().name(format!("detect-l3-save-{component}")).spawn(move || {
            for (baselines, reply) in receive {
                let result = write_atomic(&path, &encode(&baselines));
                match &result {
                    Ok(()) => shared.ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(component = %component, path = %path.display(), error = %e, "detect: cannot save the L3 baselines");
                        shared.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
        })?;
        Ok(Saver { jobs, counters })
    }

    /// Hands a snapshot to the thread unless it is busy; whether it took it.
    pub fn offer(&self, baselines: Baselines) -> bool {
        self.jobs.try_send((baselines, None)).is_ok()
    }

    /// Saves and waits for the write (shutdown).
    pub fn save_and_wait(&self, baselines: Baselines) -> std::io::Result<()> {
        let (reply, done) = mpsc::channel();
        self.jobs.send((baselines, Some(reply))).map_err(|_| std::io::Error::other("the L3 writer thread is gone"))?;
        done.recv().unwrap_or_else(|_| Err(std::io::Error::other("the L3 writer thread is gone")))
    }
}

/// Where the baselines of a transform come from at start.
#[derive(Debug)]
pub struct Loaded {
    pub baselines: Option<Baselines>,
    /// `(file, what happened)`, in the order tried.
    pub report: Vec<(PathBuf, Result<usize, LoadError>)>,
}

/// The state file if it is usable, else the import file: what to restore
/// at start, and what was tried. Missing files are not failures.
pub fn load_at_start(config: &AnomalyConfig) -> Loaded {
    let mut report = Vec::new();
    let candidates = config.state_dir.as_ref().map(|d| d.join(FILE_NAME)).into_iter().chain(config.import.clone());
    for (i, path) in candidates.enumerate() {
        let is_state = i == 0 && config.state_dir.is_some();
        if is_state && !path.exists() {
            continue;
        }
        match read(&path) {
            Ok(baselines) => {
                let n = baselines.values().map(Vec::len).sum();
                report.push((path, Ok(n)));
                return Loaded { baselines: Some(baselines), report };
            }
            Err(e) => report.push((path, Err(e))),
        }
    }
    Loaded { baselines: None, report }
}
