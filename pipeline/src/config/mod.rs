//! Stage 1 of configuration: topology.toml text → [`TopologyConfig`].
//!
//! Each file is parsed once into a span-keeping TOML tree. The engine takes
//! off the keys every component shares (`type`, `inputs`, `buffer`) and
//! leaves the rest, still with spans, as [`ComponentOptions`] for the
//! component's own `deny_unknown_fields` struct. A topology may be split
//! over the files of a config directory ([`read`]): their components are
//! merged in file-name order, each remembering its own file. Nothing here
//! knows a concrete component; stage 2 ([`crate::topology`]) checks types
//! against the registry and the wiring of the graph.

mod error;
mod source;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::Arc;

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub use error::{closest, ConfigError, ConfigErrors, Location, Note, SourceFile};
pub use source::{read, ReadError, TopologySource};

use crate::edge::{BufferConfig, DiskConfig, WhenFull, DEFAULT_DISK_MAX_BYTES, MIN_DISK_MAX_BYTES};

/// The three roles a component can play.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    #[default]
    Source,
    Transform,
    Sink,
}

impl Role {
    /// The section name in topology.toml (`sources`, …).
    pub fn section(self) -> &'static str {
        match self {
            Role::Source => "sources",
            Role::Transform => "transforms",
            Role::Sink => "sinks",
        }
    }

    /// Singular noun for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Sink => "sink",
        }
    }
}

/// The `[api]` table: where `/metrics` and `/health` are served.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the HTTP API at all.
    #[serde(default = "default_api_enabled")]
    pub enabled: bool,
    /// Listen address; loopback by default so nothing is exposed unasked.
    #[serde(default = "default_api_address")]
    pub address: SocketAddr,
}

fn default_api_enabled() -> bool {
    true
}

fn default_api_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9598))
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { enabled: default_api_enabled(), address: default_api_address() }
    }
}

/// One component table, with the shared keys taken off.
#[derive(Debug)]
pub struct ComponentDecl {
    /// The file the component is declared in; every span below is in it.
    pub source_file: Arc<SourceFile>,
    pub name: String,
    pub name_span: Range<usize>,
    pub role: Role,
    /// `None` when `type` is missing or not a string (already reported).
    pub type_name: Option<String>,
    pub type_span: Range<usize>,
    /// Upstream component names, with where each is written.
    pub inputs: Vec<Spanned<String>>,
    /// Where the `inputs` key is, or the table header when it is missing.
    pub inputs_span: Range<usize>,
    /// `inputs` was present but not a list of names (already reported), so
    /// checks that depend on the wiring would only add noise.
    pub inputs_malformed: bool,
    pub buffer: BufferConfig,
    /// Everything else in the table, for the component's own config struct.
    pub options: ComponentOptions,
}

/// A parsed topology, before the graph is checked.
#[derive(Debug)]
pub struct TopologyConfig {
    pub source: TopologySource,
    pub api: ApiConfig,
    /// File by file in merge order; within a file, sources, then
    /// transforms, then sinks, each in the order written.
    pub components: Vec<ComponentDecl>,
    /// Problems found at this stage. Stage 2 still runs on what parsed, so
    /// one `validate` reports the problems of both stages together.
    pub problems: Vec<ConfigError>,
    /// Components declared but too malformed to parse (already reported):
    /// stage 2 treats their names as existing so it adds no false problems.
    pub unparsed: Vec<(Role, String)>,
}

/// A component's own keys, still carrying spans, so the component's
/// `deny_unknown_fields` struct reports problems at the right line.
#[derive(Debug)]
pub struct ComponentOptions {
    pub component: String,
    pub role: Role,
    source_file: Arc<SourceFile>,
    table: Spanned<DeValue<'static>>,
    sink_destinations: Arc<Vec<String>>,
}

impl ComponentOptions {
    /// Deserializes the options into a component's config struct; errors
    /// carry the line and column of the offending key or value.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        T::deserialize(self.table.clone().into_deserializer()).map_err(|error| {
            let span = error.span().or_else(|| Some(self.table.span()));
            let message = error.message().trim_end();
            let error = ConfigError::at(
                &self.source_file,
                span,
                format!("{} `{}`: {message}", self.role.noun(), self.component),
            );
            match unknown_field_hint(message) {
                Some(hint) => error.with_hint(hint),
                None => error,
            }
        })
    }

    /// A problem at a span inside this component's table (for checks a
    /// component makes after deserializing, e.g. an unknown field name in a
    /// filter condition).
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(
            &self.source_file,
            Some(span),
            format!("{} `{}`: {}", self.role.noun(), self.component, message.into()),
        )
    }

    /// A problem with the table as a whole.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        self.error_at(self.table.span(), message)
    }

    /// The network destinations the topology's sinks send to, as written
    /// (`host:port`, or a URL): every sink's `brokers` (a string of
    /// comma-separated brokers, or a list) and `endpoint`. Network
    /// enforcement protects them: a policy that would cut the agent off
    /// from its own sinks needs `force = true` (issue #17).
    pub fn sink_destinations(&self) -> &[String] {
        &self.sink_destinations
    }
}

/// Every sink's `brokers` and `endpoint` values, in declaration order.
fn sink_destinations(components: &[ComponentDecl]) -> Vec<String> {
    let mut out = Vec::new();
    for decl in components.iter().filter(|d| d.role == Role::Sink) {
        let DeValue::Table(table) = decl.options.table.get_ref() else { continue };
        for (key, value) in table.iter() {
            if !matches!(key.get_ref().as_ref(), "brokers" | "endpoint") {
                continue;
            }
            match value.get_ref() {
                DeValue::String(text) => out.extend(text.split(',').map(|t| t.trim().to_owned())),
                DeValue::Array(items) => out.extend(items.iter().filter_map(|item| match item.get_ref() {
                    DeValue::String(text) => Some(text.trim().to_owned()),
                    _ => None,
                })),
                _ => {}
            }
        }
    }
    out.retain(|t| !t.is_empty());
    out
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" message, a
/// "did you mean" hint naming the closest known field.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    closest(unknown, known.iter().copied()).map(|near| format!("did you mean `{near}`?"))
}

const TOP_LEVEL_KEYS: [&str; 4] = ["api", "sources", "transforms", "sinks"];

impl TopologyConfig {
    /// Parses a topology: one file, or the files of a config directory,
    /// merged in order. Fails only on TOML syntax errors (nothing after them
    /// can be trusted), reporting those of every file; other problems are
    /// kept in [`TopologyConfig::problems`] beside everything that did parse.
    ///
    /// Merged files share one set of component names (stage 2 reports a
    /// name defined in two files, naming both) and inputs may name a
    /// component of any file; `[api]` may be set in one file only.
    pub fn parse(source: impl Into<TopologySource>) -> Result<TopologyConfig, ConfigErrors> {
        let source = source.into();
        let mut documents = Vec::new();
        let mut syntax_errors = Vec::new();
        for source_file in source.files() {
            let (document, errors) = DeTable::parse_recoverable(source_file.text);
            if errors.is_empty() {
                documents.push((source_file, document.into_inner()));
            }
            syntax_errors.extend(errors.iter().map(|error| {
                ConfigError::at(source_file, error.span(), format!("TOML syntax: {}", error.message().trim_end()))
            }));
        }
        if !syntax_errors.is_empty() {
            return Err(ConfigErrors(syntax_errors));
        }
        let mut merged = Merged::default();
        for (source_file, document) in documents {
            merged.add_file(source_file, document);
        }
        let Merged { api, api_first: _, mut components, errors, unparsed } = merged;
        let destinations = Arc::new(sink_destinations(&components));
        for decl in &mut components {
            decl.options.sink_destinations = Arc::clone(&destinations);
        }
        Ok(TopologyConfig { source, api, components, problems: errors, unparsed })
    }
}

/// What stage 1 has found so far, file by file.
#[derive(Default)]
struct Merged {
    api: ApiConfig,
    /// The file that set `[api]`, and where.
    api_first: Option<(Arc<SourceFile>, Range<usize>)>,
    components: Vec<ComponentDecl>,
    errors: Vec<ConfigError>,
    unparsed: Vec<(Role, String)>,
}

impl Merged {
    fn add_file(&mut self, source_file: &Arc<SourceFile>, document: DeTable<'static>) {
        let errors = &mut self.errors;
        let mut sections: [Option<Spanned<DeValue<'static>>>; 3] = [None, None, None];
        for (key, value) in document {
            let key_span = key.span();
            match key.get_ref().as_ref() {
                "api" => {
                    if let Some((first_file, first_span)) = &self.api_first {
                        errors.push(
                            ConfigError::at(
                                source_file,
                                Some(key_span),
                                format!(
                                    "[api] is already set in {}; only one file of a config directory may set it",
                                    first_file.name
                                ),
                            )
                            .with_note(first_file, first_span.clone(), "[api] first set here")
                            .with_hint("keep every [api] key in one file"),
                        );
                        continue;
                    }
                    self.api_first = Some((Arc::clone(source_file), key_span.clone()));
                    match ApiConfig::deserialize(value.into_deserializer()) {
                        Ok(parsed) => self.api = parsed,
                        Err(error) => {
                            let message = error.message().trim_end();
                            let problem = ConfigError::at(
                                source_file,
                                error.span().or(Some(key_span)),
                                format!("[api]: {message}"),
                            );
                            errors.push(if message.contains("socket address") {
                                problem.with_hint("write an IP address and port, e.g. address = \"127.0.0.1:9598\"")
                            } else {
                                match unknown_field_hint(message) {
                                    Some(hint) => problem.with_hint(hint),
                                    None => problem,
                                }
                            });
                        }
                    }
                }
                "sources" => sections[0] = Some(value),
                "transforms" => sections[1] = Some(value),
                "sinks" => sections[2] = Some(value),
                other => {
                    let mut error = ConfigError::at(
                        source_file,
                        Some(key_span),
                        format!("unknown top-level key `{other}`; expected one of: {}", TOP_LEVEL_KEYS.join(", ")),
                    );
                    if let Some(near) = closest(other, TOP_LEVEL_KEYS) {
                        error = error.with_hint(format!("did you mean `{near}`?"));
                    }
                    errors.push(error);
                }
            }
        }
        for (role, section) in [Role::Source, Role::Transform, Role::Sink].into_iter().zip(sections) {
            let Some(section) = section else { continue };
            let section_span = section.span();
            let DeValue::Table(entries) = section.into_inner() else {
                errors.push(ConfigError::at(
                    source_file,
                    Some(section_span),
                    format!("`{}` must be a table of components, e.g. [{}.my_name]", role.section(), role.section()),
                ));
                continue;
            };
            let mut entries: Vec<_> = entries.into_iter().collect();
            entries.sort_by_key(|(key, _)| key.span().start);
            for (name, table) in entries {
                let name_text = name.get_ref().to_string();
                match parse_component(source_file, role, name, table, errors) {
                    Some(decl) => self.components.push(decl),
                    None => self.unparsed.push((role, name_text)),
                }
            }
        }
    }
}

fn parse_component(
    source_file: &Arc<SourceFile>,
    role: Role,
    name: Spanned<toml::de::DeString<'static>>,
    table: Spanned<DeValue<'static>>,
    errors: &mut Vec<ConfigError>,
) -> Option<ComponentDecl> {
    let name_span = name.span();
    let name = name.into_inner().into_owned();
    let table_span = table.span();
    let here = |span: Range<usize>, message: String| ConfigError::at(source_file, Some(span), message);
    if !is_valid_name(&name) {
        errors.push(here(
            name_span.clone(),
            format!("component name `{name}` may only contain letters, digits, `_`, `-` and `.`"),
        ));
    }
    let DeValue::Table(entries) = table.into_inner() else {
        errors.push(here(
            table_span,
            format!("{} `{name}` must be a table, e.g. [{}.{name}] with a `type` key", role.noun(), role.section()),
        ));
        return None;
    };

    let mut type_name = None;
    let mut inputs = None;
    let mut buffer = None;
    let mut options = DeTable::new();
    for (key, value) in entries {
        match key.get_ref().as_ref() {
            "type" => type_name = Some((key.span(), value)),
            "inputs" => inputs = Some((key.span(), value)),
            "buffer" => buffer = Some((key.span(), value)),
            _ => {
                options.insert(key, value);
            }
        }
    }

    let (type_name, type_span) = match type_name {
        Some((_, value)) => {
            let span = value.span();
            match value.into_inner() {
                DeValue::String(s) => (Some(s.into_owned()), span),
                _ => {
                    errors.push(here(span.clone(), format!("{} `{name}`: `type` must be a string", role.noun())));
                    (None, span)
                }
            }
        }
        None => {
            errors.push(
                here(name_span.clone(), format!("{} `{name}` has no `type`", role.noun()))
                    .with_hint(format!("add a line `type = \"...\"` under [{}.{name}]", role.section())),
            );
            (None, name_span.clone())
        }
    };

    let mut input_names = Vec::new();
    let mut inputs_span = name_span.clone();
    let mut inputs_malformed = false;
    match (role, inputs) {
        (Role::Source, Some((key_span, _))) => errors.push(
            here(key_span, format!("source `{name}` has `inputs`, but sources take no inputs"))
                .with_hint("remove `inputs`, or make this component a transform"),
        ),
        (_, Some((key_span, value))) => {
            inputs_span = key_span;
            let value_span = value.span();
            match value.into_inner() {
                DeValue::Array(items) => {
                    for item in items {
                        let item_span = item.span();
                        match item.into_inner() {
                            DeValue::String(s) => input_names.push(Spanned::new(item_span, s.into_owned())),
                            _ => {
                                inputs_malformed = true;
                                errors.push(here(
                                    item_span,
                                    format!("{} `{name}`: each input must be a component name in quotes", role.noun()),
                                ));
                            }
                        }
                    }
                }
                _ => {
                    inputs_malformed = true;
                    errors.push(here(
                        value_span,
                        format!(
                            "{} `{name}`: `inputs` must be an array of component names, e.g. [\"gen\"]",
                            role.noun()
                        ),
                    ));
                }
            }
        }
        (_, None) => {}
    }

    let buffer = match (role, buffer) {
        (_, None) => BufferConfig::default(),
        (Role::Source, Some((key_span, _))) => {
            errors.push(
                here(key_span, format!("source `{name}` has a `buffer`, but buffers sit on a component's input"))
                    .with_hint("put `buffer` on the transforms or sinks that read from this source"),
            );
            BufferConfig::default()
        }
        (_, Some((_, value))) => match parse_buffer(source_file, role, &name, value) {
            Ok(buffer) => buffer,
            Err(mut problems) => {
                errors.append(&mut problems);
                BufferConfig::default()
            }
        },
    };

    Some(ComponentDecl {
        source_file: Arc::clone(source_file),
        options: ComponentOptions {
            component: name.clone(),
            role,
            source_file: Arc::clone(source_file),
            table: Spanned::new(table_span, DeValue::Table(options)),
            sink_destinations: Arc::default(),
        },
        name,
        name_span,
        role,
        type_name,
        type_span,
        inputs: input_names,
        inputs_span,
        inputs_malformed,
        buffer,
    })
}

fn parse_buffer(
    source_file: &Arc<SourceFile>,
    role: Role,
    name: &str,
    value: Spanned<DeValue<'static>>,
) -> Result<BufferConfig, Vec<ConfigError>> {
    let here = |span: Range<usize>, message: String| {
        ConfigError::at(source_file, Some(span), format!("{} `{name}`: buffer: {message}", role.noun()))
    };
    let value_span = value.span();
    let DeValue::Table(entries) = value.into_inner() else {
        return Err(vec![here(
            value_span,
            "must be a table, e.g. buffer = { capacity = 1000, when_full = \"block\" }".to_owned(),
        )]);
    };
    let mut errors = Vec::new();
    let mut buffer = BufferConfig::default();
    let mut kind: Option<(Range<usize>, bool)> = None;
    let mut disk_max_bytes: Option<(Range<usize>, u64)> = None;
    let mut disk_path: Option<(Range<usize>, std::path::PathBuf)> = None;
    for (key, value) in entries {
        let key_span = key.span();
        let span = value.span();
        match (key.get_ref().as_ref(), value.into_inner()) {
            ("capacity", DeValue::Integer(i)) => {
                let text = i.to_string();
                match text.parse::<usize>().ok().and_then(NonZeroUsize::new) {
                    Some(capacity) if capacity.get() <= MAX_BUFFER_CAPACITY => buffer.capacity = capacity,
                    Some(_) => errors.push(
                        here(
                            span,
                            format!("capacity {text} is larger than the maximum of {MAX_BUFFER_CAPACITY} events"),
                        )
                        .with_hint(
                            "a buffer that large would hold gigabytes of events in memory; use backpressure instead",
                        ),
                    ),
                    None => {
                        let error =
                            here(span, format!("capacity must be a whole number of events of at least 1, got {text}"));
                        errors.push(if text == "0" {
                            error.with_hint("a buffer of 0 events could never pass a batch; use e.g. capacity = 1000")
                        } else {
                            error
                        });
                    }
                }
            }
            ("capacity", _) => errors.push(here(span, "capacity must be an integer number of events".to_owned())),
            ("when_full", DeValue::String(s)) => match WhenFull::from_name(&s) {
                Some(policy) => buffer.when_full = policy,
                None => errors.push(
                    here(span, format!("unknown when_full `{s}`; expected \"block\" or \"drop_newest\"")).with_hint(
                        match closest(&s, ["block", "drop_newest"]) {
                            _ if s == "drop_oldest" => "drop_oldest is not supported: drop_newest keeps what is \
                                                       buffered and drops incoming events when full"
                                .to_owned(),
                            Some(near) => format!("did you mean \"{near}\"?"),
                            None => "block waits for room (backpressure); drop_newest drops and counts".to_owned(),
                        },
                    ),
                ),
            },
            ("when_full", _) => errors.push(here(span, "when_full must be a string".to_owned())),
            ("type", DeValue::String(s)) => match s.as_ref() {
                "memory" => kind = Some((span, false)),
                "disk" => kind = Some((span, true)),
                other => errors.push(
                    here(span, format!("unknown buffer type `{other}`; expected \"memory\" or \"disk\""))
                        .with_hint("memory (the default) is fastest; disk survives a crash or restart"),
                ),
            },
            ("type", _) => errors.push(here(span, "type must be a string, \"memory\" or \"disk\"".to_owned())),
            ("max_bytes", DeValue::Integer(i)) => match i.to_string().parse::<u64>() {
                Ok(n) if n >= MIN_DISK_MAX_BYTES => disk_max_bytes = Some((span, n)),
                _ => errors.push(
                    here(
                        span,
                        format!("max_bytes must be a whole number of bytes of at least {MIN_DISK_MAX_BYTES}, got {i}"),
                    )
                    .with_hint("e.g. max_bytes = 268435456 (256 MiB)"),
                ),
            },
            ("max_bytes", _) => errors.push(here(span, "max_bytes must be an integer number of bytes".to_owned())),
            ("path", DeValue::String(s)) if !s.is_empty() => {
                disk_path = Some((span, std::path::PathBuf::from(s.as_ref())))
            }
            ("path", _) => errors.push(here(span, "path must be a non-empty string (a directory)".to_owned())),
            (other, _) => errors.push(here(
                key_span,
                format!("unknown key `{other}`; expected `type`, `capacity`, `when_full`, `max_bytes` or `path`"),
            )),
        }
    }
    match kind {
        Some((_, true)) => {
            buffer.disk = Some(DiskConfig {
                path: disk_path.map(|(_, path)| path),
                max_bytes: disk_max_bytes.map_or(DEFAULT_DISK_MAX_BYTES, |(_, n)| n),
            })
        }
        _ => {
            for (span, key) in
                [disk_max_bytes.map(|(span, _)| (span, "max_bytes")), disk_path.map(|(span, _)| (span, "path"))]
                    .into_iter()
                    .flatten()
            {
                errors.push(
                    here(span, format!("`{key}` applies only to a disk buffer"))
                        .with_hint("add type = \"disk\" to this buffer, or remove the key"),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(buffer)
    } else {
        Err(errors)
    }
}

/// The largest input buffer a component may ask for, in events. Beyond
/// this a buffer stops being a shock absorber and becomes an unbounded
/// queue in disguise (and the semaphore that counts room has a limit too).
pub const MAX_BUFFER_CAPACITY: usize = 10_000_000;

fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #17: every component sees where the topology's sinks send, so
    /// network enforcement can refuse a policy that cuts the agent off.
    #[test]
    fn every_component_sees_the_sinks_destinations() {
        let text = r#"
[sources.k]
type = "ebpf"
[sinks.raw]
type = "kafka"
inputs = ["k"]
brokers = "10.0.0.5:9092, 10.0.0.6:9092"
[sinks.otel]
type = "otlp"
inputs = ["k"]
endpoint = "http://192.0.2.7:4317"
[sinks.list]
type = "kafka"
inputs = ["k"]
brokers = ["[2001:db8::1]:9093"]
[sinks.spool]
type = "arrow_spool"
inputs = ["k"]
path = "data/spool"
"#;
        let config = TopologyConfig::parse(SourceFile::new("t.toml", text)).expect("parses");
        let expected = ["10.0.0.5:9092", "10.0.0.6:9092", "http://192.0.2.7:4317", "[2001:db8::1]:9093"];
        for decl in &config.components {
            assert_eq!(decl.options.sink_destinations(), expected, "{}", decl.name);
        }
    }
}
