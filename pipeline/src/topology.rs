//! Stage 2 of configuration: a parsed topology + the registry → a checked,
//! built graph, or every problem in it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use crate::component::{Built, ComponentSpec};
use crate::config::{
    closest, ApiConfig, ComponentDecl, ConfigError, ConfigErrors, Role, TopologyConfig, TopologySource,
};
use crate::edge::BufferConfig;

/// A checked topology whose components are built and ready to run.
pub struct Topology {
    /// The file or config directory it was read from.
    pub source: TopologySource,
    pub api: ApiConfig,
    /// Sources, then transforms, then sinks, each in file order (and for a
    /// config directory, files in name order).
    pub nodes: Vec<Node>,
    /// How disk buffers encode batches; set by the binary (the engine
    /// knows no wire format). Needed only when a buffer has `type = "disk"`.
    pub batch_codec: Option<std::sync::Arc<dyn crate::batch_codec::BatchCodec>>,
}

/// One built component and its wiring.
pub struct Node {
    pub name: String,
    pub role: Role,
    pub type_name: String,
    pub inputs: Vec<String>,
    pub buffer: BufferConfig,
    pub component: Built,
}

impl Topology {
    /// Checks the graph and builds every component, collecting every
    /// problem rather than stopping at the first.
    pub fn build(config: TopologyConfig, registry: &[ComponentSpec]) -> Result<Topology, ConfigErrors> {
        let TopologyConfig { source, api, components, problems, unparsed } = config;
        let mut errors = problems;
        let has_unparsed = |role: Role| unparsed.iter().any(|(r, _)| *r == role);
        if !components.iter().any(|c| c.role == Role::Source) && !has_unparsed(Role::Source) {
            errors.push(
                ConfigError::unlocated(source.name(), "the topology declares no sources, so it would do nothing")
                    .with_hint("add a source, e.g. [sources.gen] with type = \"generator\", and a sink that reads it"),
            );
        }
        // Every span of a component is in the file it is declared in.
        let here = |decl: &ComponentDecl, span: Range<usize>, message: String| {
            ConfigError::at(&decl.source_file, Some(span), message)
        };

        // Names are unique across all three sections and all files.
        let mut by_name: HashMap<&str, &ComponentDecl> = HashMap::new();
        for decl in &components {
            if let Some(first) = by_name.get(decl.name.as_str()) {
                errors.push(duplicate_name(decl, first));
            } else {
                by_name.insert(&decl.name, decl);
            }
        }

        // Inputs name existing, non-sink components; non-sources have some.
        let mut has_consumer: HashMap<&str, bool> = HashMap::new();
        for decl in &components {
            if decl.role != Role::Source && decl.inputs.is_empty() && !decl.inputs_malformed {
                errors.push(
                    here(decl, decl.inputs_span.clone(), format!("{} `{}` has no inputs", decl.role.noun(), decl.name))
                        .with_hint(format!("add `inputs = [\"...\"]` naming the components that feed `{}`", decl.name)),
                );
            }
            let mut seen = Vec::new();
            for input in &decl.inputs {
                let input_name = input.get_ref().as_str();
                if seen.contains(&input_name) {
                    errors.push(here(
                        decl,
                        input.span(),
                        format!("{} `{}` lists input `{input_name}` twice", decl.role.noun(), decl.name),
                    ));
                    continue;
                }
                seen.push(input_name);
                if unparsed.iter().any(|(_, name)| name == input_name) {
                    has_consumer.insert(input_name, true);
                    continue;
                }
                match by_name.get(input_name) {
                    Some(upstream) if upstream.role == Role::Sink => errors.push(
                        here(
                            decl,
                            input.span(),
                            format!("{} `{}` reads from `{input_name}`, which is a sink", decl.role.noun(), decl.name),
                        )
                        .with_hint("sinks produce no events; read from a source or transform"),
                    ),
                    Some(_) => {
                        has_consumer.insert(input_name, true);
                    }
                    None => {
                        let mut error = here(
                            decl,
                            input.span(),
                            format!(
                                "{} `{}` reads from `{input_name}`, but no component has that name",
                                decl.role.noun(),
                                decl.name
                            ),
                        );
                        let candidates = components.iter().filter(|c| c.role != Role::Sink).map(|c| c.name.as_str());
                        if let Some(near) = closest(input_name, candidates) {
                            error = error.with_hint(format!("did you mean `{near}`?"));
                        }
                        errors.push(error);
                    }
                }
            }
        }
        let wiring_is_readable = components.iter().all(|c| !c.inputs_malformed) && unparsed.is_empty();
        for decl in components.iter().filter(|_| wiring_is_readable) {
            if decl.role != Role::Sink && !has_consumer.contains_key(decl.name.as_str()) {
                errors.push(
                    here(
                        decl,
                        decl.name_span.clone(),
                        format!("{} `{}` has no consumers: its events would go nowhere", decl.role.noun(), decl.name),
                    )
                    .with_hint(format!("name `{}` in the `inputs` of a transform or sink, or remove it", decl.name)),
                );
            }
        }

        errors.extend(find_cycles(&components));

        // Types exist for their role, and every component builds.
        let mut nodes = Vec::new();
        for decl in components {
            let Some(type_name) = &decl.type_name else { continue };
            let Some(spec) = registry.iter().find(|spec| spec.type_name == type_name && spec.role() == decl.role)
            else {
                errors.push(unknown_type(&decl, type_name, registry));
                continue;
            };
            match spec.build(&decl.options) {
                Ok(component) => nodes.push(Node {
                    name: decl.name,
                    role: decl.role,
                    type_name: spec.type_name.to_owned(),
                    inputs: decl.inputs.into_iter().map(toml::Spanned::into_inner).collect(),
                    buffer: decl.buffer.clone(),
                    component,
                }),
                Err(mut problems) => errors.append(&mut problems),
            }
        }

        if errors.is_empty() {
            // A config directory declares by file; the graph lists by role.
            nodes.sort_by_key(|node| node.role);
            Ok(Topology { source, api, nodes, batch_codec: None })
        } else {
            // Problems with the whole topology first, then file by file in
            // merge order, each file's in line order.
            let file_rank = |error: &ConfigError| {
                source.files().iter().position(|file| file.name == error.file).map_or(0, |index| index + 1)
            };
            errors.sort_by_key(|error| (file_rank(error), error.position));
            Err(ConfigErrors(errors))
        }
    }

    /// The graph in Graphviz DOT: sources as inverted houses, transforms as
    /// boxes, sinks as houses; edges labelled with their buffer policy.
    pub fn to_dot(&self) -> String {
        let mut dot = String::from("digraph hostflow {\n  rankdir=LR;\n");
        for node in &self.nodes {
            let shape = match node.role {
                Role::Source => "invhouse",
                Role::Transform => "box",
                Role::Sink => "house",
            };
            let _ = writeln!(
                dot,
                "  {} [shape={shape} label=\"{}\\n({})\"];",
                quote(&node.name),
                escape(&node.name),
                escape(&node.type_name)
            );
        }
        for node in &self.nodes {
            for input in &node.inputs {
                let _ = writeln!(
                    dot,
                    "  {} -> {} [label=\"{}{} {}\"];",
                    quote(input),
                    quote(&node.name),
                    if node.buffer.disk.is_some() { "disk " } else { "" },
                    node.buffer.capacity,
                    node.buffer.when_full.as_str()
                );
            }
        }
        dot.push_str("}\n");
        dot
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", escape(name))
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `decl` reuses the name of `first`, declared earlier (in the same file, or
/// in a file merged before).
fn duplicate_name(decl: &ComponentDecl, first: &ComponentDecl) -> ConfigError {
    let hint = "component names are shared by sources, transforms and sinks; rename one";
    let here = format!("[{}.{}]", decl.role.section(), decl.name);
    let there = format!("[{}.{}]", first.role.section(), first.name);
    if Arc::ptr_eq(&decl.source_file, &first.source_file) {
        let (line, _) = first.source_file.line_column(first.name_span.start);
        return ConfigError::at(
            &decl.source_file,
            Some(decl.name_span.clone()),
            format!("duplicate component name `{}`: {here} here and {there} at line {line}", decl.name),
        )
        .with_hint(hint);
    }
    ConfigError::at(
        &decl.source_file,
        Some(decl.name_span.clone()),
        format!("duplicate component name `{}`: {here} here and {there} in {}", decl.name, first.source_file.name),
    )
    .with_note(&first.source_file, first.name_span.clone(), format!("{there} first defined here"))
    .with_hint(format!("{hint}, or remove one of the two"))
}

fn unknown_type(decl: &ComponentDecl, type_name: &str, registry: &[ComponentSpec]) -> ConfigError {
    let known: Vec<&str> = registry.iter().filter(|s| s.role() == decl.role).map(|s| s.type_name).collect();
    if let Some(other) = registry.iter().find(|s| s.type_name == type_name) {
        return ConfigError::at(
            &decl.source_file,
            Some(decl.type_span.clone()),
            format!(
                "`{}` is a {} type, but `{}` is declared under [{}]; known {} types: {}",
                type_name,
                other.role().noun(),
                decl.name,
                decl.role.section(),
                decl.role.noun(),
                known.join(", ")
            ),
        )
        .with_hint(format!("move it to [{}.{}]", other.role().section(), decl.name));
    }
    let error = ConfigError::at(
        &decl.source_file,
        Some(decl.type_span.clone()),
        format!(
            "unknown {} type `{}` for `{}`; known {} types: {}",
            decl.role.noun(),
            type_name,
            decl.name,
            decl.role.noun(),
            known.join(", ")
        ),
    );
    match closest(type_name, known.iter().copied()) {
        Some(near) => error.with_hint(format!("did you mean `{near}`?")),
        None => error,
    }
}

/// Every cycle among transforms, each reported once with its path.
fn find_cycles(components: &[ComponentDecl]) -> Vec<ConfigError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    // Only transforms both read and feed, so only they can close a cycle;
    // a name declared twice (reported elsewhere) means its first holder.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, component) in components.iter().enumerate() {
        index.entry(component.name.as_str()).or_insert(i);
    }
    index.retain(|_, i| components[*i].role == Role::Transform);
    let mut marks = vec![Mark::New; components.len()];
    let mut errors = Vec::new();
    // Iterative DFS along `inputs` edges (downstream → upstream).
    for start in 0..components.len() {
        if marks[start] != Mark::New || components[start].role != Role::Transform {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next_input)) = path.last_mut() {
            let inputs = &components[node].inputs;
            if *next_input >= inputs.len() {
                marks[node] = Mark::Done;
                path.pop();
                continue;
            }
            let input = inputs[*next_input].get_ref().as_str();
            *next_input += 1;
            let Some(&upstream) = index.get(input) else {
                continue;
            };
            match marks[upstream] {
                Mark::New => {
                    marks[upstream] = Mark::OnPath;
                    path.push((upstream, 0));
                }
                Mark::OnPath => {
                    // The cycle is the path from `upstream` to here; print it
                    // in data-flow order (upstream → downstream).
                    let from = path.iter().position(|&(n, _)| n == upstream).unwrap_or(0);
                    let mut names: Vec<&str> = path[from..].iter().map(|&(n, _)| components[n].name.as_str()).collect();
                    names.reverse();
                    names.push(names[0]);
                    let decl = &components[upstream];
                    errors.push(
                        ConfigError::at(
                            &decl.source_file,
                            Some(decl.inputs_span.clone()),
                            format!("cycle in the topology: {}", names.join(" -> ")),
                        )
                        .with_hint("events must flow from sources to sinks; remove one of these inputs"),
                    );
                }
                Mark::Done => {}
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{BuildFn, BuildResult, ComponentError, Output, Sink, Source, SourceContext, Transform};
    use crate::config::{ComponentOptions, SourceFile};
    use crate::event::Batch;

    /// A component of every role that does nothing: stage 2 only needs
    /// something to build.
    struct Idle;

    #[async_trait::async_trait]
    impl Source for Idle {
        async fn run(self: Box<Self>, _cx: SourceContext) -> Result<(), ComponentError> {
            Ok(())
        }
    }

    impl Transform for Idle {
        fn process(&mut self, batch: Batch, out: &mut Output) {
            out.extend(batch);
        }
    }

    #[async_trait::async_trait]
    impl Sink for Idle {
        async fn write(&mut self, _batch: Batch) -> Result<(), ComponentError> {
            Ok(())
        }

        async fn flush(&mut self) -> Result<(), ComponentError> {
            Ok(())
        }
    }

    /// Takes no options, so an unknown key is a build problem in the
    /// component's own file.
    fn idle_options(options: &ComponentOptions) -> Result<(), Vec<ConfigError>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NoOptions {}
        options.deserialize::<NoOptions>().map(drop).map_err(|error| vec![error])
    }

    fn idle_source(options: &ComponentOptions) -> BuildResult<dyn Source> {
        idle_options(options).map(|()| Box::new(Idle) as Box<dyn Source>)
    }

    fn idle_transform(options: &ComponentOptions) -> BuildResult<dyn Transform> {
        idle_options(options).map(|()| Box::new(Idle) as Box<dyn Transform>)
    }

    fn idle_sink(options: &ComponentOptions) -> BuildResult<dyn Sink> {
        idle_options(options).map(|()| Box::new(Idle) as Box<dyn Sink>)
    }

    const REGISTRY: &[ComponentSpec] = &[
        ComponentSpec { type_name: "idle", summary: "does nothing", build: BuildFn::Source(idle_source) },
        ComponentSpec { type_name: "pass", summary: "passes events on", build: BuildFn::Transform(idle_transform) },
        ComponentSpec { type_name: "idle", summary: "does nothing", build: BuildFn::Sink(idle_sink) },
    ];

    /// Loads a topology split over `files` of a directory `d` and compares
    /// the node names (in graph order) or every problem, as printed.
    fn check(files: &[(&str, &str)], expected: &str) {
        let files = files.iter().map(|(name, text)| SourceFile::new(format!("d/{name}"), *text)).collect();
        let source = TopologySource::new("d", files).expect("at least one file");
        let shown = match TopologyConfig::parse(source).and_then(|config| Topology::build(config, REGISTRY)) {
            Ok(topology) => topology.nodes.iter().map(|node| format!("ok {}", node.name)).collect::<Vec<_>>(),
            Err(ConfigErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(shown.join("\n"), expected);
    }

    const SOURCE_AND_SINK: &str = "[sources.gen]\ntype = \"idle\"\n\n[sinks.out]\ntype = \"idle\"\ninputs = [\"f\"]\n";
    const TRANSFORM: &str = "[transforms.f]\ntype = \"pass\"\ninputs = [\"gen\"]\n";

    #[test]
    fn inputs_cross_files_and_nodes_are_listed_by_role() {
        check(&[("a.toml", SOURCE_AND_SINK), ("b.toml", TRANSFORM)], "ok gen\nok f\nok out");
    }

    #[test]
    fn a_name_defined_in_two_files_names_both() {
        check(
            &[("a.toml", SOURCE_AND_SINK), ("b.toml", "[sinks.out]\ntype = \"idle\"\ninputs = [\"gen\"]\n")],
            "d/a.toml:6:11: error: sink `out` reads from `f`, but no component has that name\n\
             d/b.toml:1:8: error: duplicate component name `out`: [sinks.out] here and [sinks.out] in d/a.toml\n\
             d/a.toml:4:8: note: [sinks.out] first defined here\n    \
             help: component names are shared by sources, transforms and sinks; rename one, or remove one of the two",
        );
        // In one file, the message stays as it always was.
        check(
            &[("a.toml", &format!("{SOURCE_AND_SINK}{TRANSFORM}\n[transforms.gen]\ntype = \"pass\"\ninputs = [\"f\"]\n"))],
            "d/a.toml:11:13: error: duplicate component name `gen`: [transforms.gen] here and [sources.gen] at line 1\n    \
             help: component names are shared by sources, transforms and sinks; rename one",
        );
    }

    #[test]
    fn problems_point_into_their_own_file_in_file_order() {
        let second = "[transforms.f]\ntype = \"pass\"\ninputs = [\"gne\"]\ncolour = \"red\"\n";
        check(
            &[("a.toml", SOURCE_AND_SINK), ("b.toml", second)],
            "d/a.toml:1:10: error: source `gen` has no consumers: its events would go nowhere\n    \
             help: name `gen` in the `inputs` of a transform or sink, or remove it\n\
             d/b.toml:3:11: error: transform `f` reads from `gne`, but no component has that name\n    \
             help: did you mean `gen`?\n\
             d/b.toml:4:1: error: transform `f`: unknown field `colour`, there are no fields",
        );
    }

    #[test]
    fn a_problem_with_the_whole_directory_names_the_directory() {
        check(
            &[("a.toml", TRANSFORM), ("b.toml", "[sinks.out]\ntype = \"idle\"\ninputs = [\"f\"]\n")],
            "d: error: the topology declares no sources, so it would do nothing\n    \
             help: add a source, e.g. [sources.gen] with type = \"generator\", and a sink that reads it\n\
             d/a.toml:3:11: error: transform `f` reads from `gen`, but no component has that name",
        );
    }

    #[test]
    fn api_is_set_in_one_file_only() {
        let api = "[api]\nenabled = false\n";
        check(
            &[("a.toml", SOURCE_AND_SINK), ("b.toml", &format!("{api}\n{TRANSFORM}")), ("c.toml", api)],
            "d/c.toml:1:2: error: [api] is already set in d/b.toml; only one file of a config directory may set it\n\
             d/b.toml:1:2: note: [api] first set here\n    \
             help: keep every [api] key in one file",
        );
        let config = TopologyConfig::parse(
            TopologySource::new(
                "d",
                vec![SourceFile::new("d/a.toml", SOURCE_AND_SINK), SourceFile::new("d/b.toml", api)],
            )
            .expect("two files"),
        )
        .expect("parses");
        assert!(!config.api.enabled, "[api] from the second file applies");
    }

    #[test]
    fn syntax_errors_of_every_file_are_reported() {
        check(
            &[("a.toml", "[sources.gen\n"), ("b.toml", "ok = 1\n"), ("c.toml", "x = \"open\n")],
            "d/a.toml:1:13: error: TOML syntax: unclosed table, expected `]`\n\
             d/c.toml:1:10: error: TOML syntax: invalid basic string, expected `\"`",
        );
    }
}
