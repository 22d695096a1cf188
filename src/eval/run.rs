//! One pass of recorded events through the real `detect` transform, in
//! this process: a topology text (the replay source `hostflow replay`
//! appends → `detect` → a `file` sink), run to its end by the engine, and
//! the NDJSON it wrote read back into [`Detection`]s. `hostflow eval` and
//! the rule what-if both score rules this way, so what they measure is
//! exactly what an agent with that topology would emit — no second,
//! simplified evaluator to drift from the real one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use detect::RuleSet;
use pipeline::event::Detection;
use pipeline::{Event, SourceFile, TopologySource};

use crate::commands::{self, Outcome};

/// A `--rules` value: the compiled-in pack, or a directory (or file).
#[derive(Clone, Debug)]
pub enum Rules {
    Builtin,
    Path(PathBuf),
}

impl Rules {
    /// `builtin` selects the compiled-in pack, as `rules = "builtin"` does
    /// in a topology; anything else is a path (`./builtin` for a directory
    /// of that name).
    ///
    /// A path is made absolute here, once: the set's digest covers its
    /// files' paths, so loading it here and in `detect` from the same
    /// spelling gives the digest the detections carry.
    pub fn from_arg(arg: &Path) -> Rules {
        if arg.as_os_str() == detect::builtin::BUILTIN {
            Rules::Builtin
        } else {
            Rules::Path(std::path::absolute(arg).unwrap_or_else(|_| arg.to_path_buf()))
        }
    }

    /// As the topology's `rules` value.
    fn toml_value(&self) -> String {
        let text = match self {
            Rules::Builtin => detect::builtin::BUILTIN.to_owned(),
            Rules::Path(path) => path.display().to_string(),
        };
        toml::Value::String(text).to_string()
    }

    /// Loads and compiles the set as `detect` will, printing every problem;
    /// the set, or `InvalidConfig` (exit 78) when it would be refused.
    pub fn load(&self) -> Result<RuleSet, Outcome> {
        let loaded = match self {
            Rules::Builtin => detect::builtin::load(),
            Rules::Path(path) => {
                if !path.exists() {
                    eprintln!("{}: error: no such rule directory or file", path.display());
                    eprintln!("hint: pass a directory of rule files, or `builtin` for the compiled-in pack");
                    return Err(Outcome::Unreadable);
                }
                detect::load(path)
            }
        };
        for rejected in loaded.rejected() {
            eprintln!("warning: Sigma rule skipped: {rejected}");
        }
        match loaded.set {
            Some(set) => Ok(set),
            None => {
                for problem in loaded.problems() {
                    eprintln!("{problem}");
                }
                eprintln!("error: the rule set has problems and would be refused (see `hostflow rules check`)");
                Err(Outcome::InvalidConfig)
            }
        }
    }
}

/// What the replay reads.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// An Arrow spool directory.
    Spool(&'a Path),
    /// An NDJSON file (a shuffled copy of a spool).
    Ndjson(&'a Path),
}

/// What one pass produced.
#[derive(Debug)]
pub struct DetectRun {
    /// In the order the sink wrote them.
    pub detections: Vec<Detection>,
    /// Events the replay source sent into `detect`.
    pub replayed: u64,
}

/// A directory removed when dropped: the topology's file sink writes here.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(purpose: &str) -> Result<Scratch, Outcome> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        for _ in 0..100 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("hostflow-{purpose}-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Scratch { path }),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    eprintln!("error: cannot create a scratch directory under {}: {error}", base.display());
                    eprintln!("hint: set TMPDIR to a writable directory");
                    return Err(Outcome::RunFailed);
                }
            }
        }
        eprintln!("error: cannot create a scratch directory under {}", base.display());
        Err(Outcome::RunFailed)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `detect` options beyond the rules.
#[derive(Clone, Debug, Default)]
pub struct DetectOptions<'a> {
    /// An L3 baseline to import, frozen (`anomaly = { import, learn = false }`).
    pub baseline: Option<&'a Path>,
}

/// Replays `input` through `detect` on `rules` and returns every
/// detection. `name` keeps the files of several passes in one scratch
/// directory apart.
pub fn detect_pass(
    input: Input<'_>,
    rules: &Rules,
    options: &DetectOptions<'_>,
    scratch: &Scratch,
    name: &str,
) -> Result<DetectRun, Outcome> {
    let output = scratch.path().join(format!("{name}.ndjson"));
    let quoted = |path: &Path| toml::Value::String(path.display().to_string()).to_string();
    let anomaly = match options.baseline {
        Some(path) => format!("anomaly = {{ import = {}, learn = false }}\n", quoted(path)),
        None => String::new(),
    };
    let text = format!(
        "# written by hostflow for a detection pass over recorded events\n\
         [api]\nenabled = false\n\n\
         [transforms.detect]\ntype = \"detect\"\ninputs = [\"{replay}\"]\nrules = {rules}\nwatch = false\n\
         pass_through = false\n{anomaly}\n\
         [sinks.detections]\ntype = \"file\"\ninputs = [\"detect\"]\npath = {output}\nappend = false\n",
        replay = commands::REPLAY_SOURCE,
        rules = rules.toml_value(),
        output = quoted(&output),
    );
    let (path, format) = match input {
        Input::Spool(path) => (path, None),
        Input::Ndjson(path) => (path, Some("ndjson")),
    };
    let source: TopologySource = SourceFile::new(format!("<{name} topology>"), text).into();
    let source = source.with_appended(&commands::replay_source_text(path, "max", format));
    let report = commands::run_to_end(source)?;

    let count = |component: &str, pick: fn(&pipeline::metrics::ComponentReport) -> u64| {
        report.components.get(component).map_or(0, pick)
    };
    let replayed = count(commands::REPLAY_SOURCE, |c| c.sent);
    let received = count("detect", |c| c.received);
    let written = count("detections", |c| c.sent);
    let lost: u64 = ["detect", "detections"]
        .iter()
        .filter_map(|name| report.components.get(*name))
        .flat_map(|c| c.discarded.iter().filter(|(reason, _)| **reason != "filtered").map(|(_, n)| *n))
        .sum();
    if received != replayed || lost > 0 {
        eprintln!(
            "error: the detection pass lost events: the replay sent {replayed}, detect received {received}, \
             {lost} discarded on the way"
        );
        return Err(Outcome::RunFailed);
    }

    let text = match std::fs::read(&output) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => {
            eprintln!("{}: error: cannot read the detections back: {error}", output.display());
            return Err(Outcome::RunFailed);
        }
    };
    let mut detections = Vec::new();
    for (index, line) in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        match sources::replay::decode_line(line) {
            Ok(Event::Detection(detection)) => detections.push(detection),
            Ok(other) => {
                eprintln!(
                    "{}:{}: error: a {} event among detections",
                    output.display(),
                    index + 1,
                    other.kind().as_str()
                );
                return Err(Outcome::RunFailed);
            }
            Err(error) => {
                eprintln!("{}:{}: error: cannot decode a detection: {error}", output.display(), index + 1);
                return Err(Outcome::RunFailed);
            }
        }
    }
    if detections.len() as u64 != written {
        eprintln!("error: the sink wrote {written} detections but {} read back", detections.len());
        return Err(Outcome::RunFailed);
    }
    Ok(DetectRun { detections, replayed })
}
