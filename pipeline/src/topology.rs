//! Stage 2 of configuration: a parsed topology + the registry → a checked,
//! built graph, or every problem in it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use crate::component::{Built, ComponentSpec};
use crate::config::{closest, ApiConfig, ComponentDecl, ConfigError, ConfigErrors, Role, SourceFile, TopologyConfig};
use crate::edge::BufferConfig;

/// A checked topology whose components are built and ready to run.
pub struct Topology {
    pub source_file: Arc<SourceFile>,
    pub api: ApiConfig,
    /// Sources, then transforms, then sinks, each in file order.
    pub nodes: Vec<Node>,
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
        let TopologyConfig { source_file, api, components, problems, unparsed } = config;
        let mut errors = problems;
        let has_unparsed = |role: Role| unparsed.iter().any(|(r, _)| *r == role);
        if !components.iter().any(|c| c.role == Role::Source) && !has_unparsed(Role::Source) {
            errors.push(
                ConfigError::at(&source_file, None, "the topology declares no sources, so it would do nothing")
                    .with_hint("add a source, e.g. [sources.gen] with type = \"generator\", and a sink that reads it"),
            );
        }
        let here = |span: std::ops::Range<usize>, message: String| ConfigError::at(&source_file, Some(span), message);

        // Names are unique across all three sections.
        let mut by_name: HashMap<&str, &ComponentDecl> = HashMap::new();
        for decl in &components {
            if let Some(first) = by_name.get(decl.name.as_str()) {
                let (line, _) = source_file.line_column(first.name_span.start);
                errors.push(
                    here(
                        decl.name_span.clone(),
                        format!(
                            "duplicate component name `{}`: [{}.{}] here and [{}.{}] at line {line}",
                            decl.name,
                            decl.role.section(),
                            decl.name,
                            first.role.section(),
                            first.name
                        ),
                    )
                    .with_hint("component names are shared by sources, transforms and sinks; rename one"),
                );
            } else {
                by_name.insert(&decl.name, decl);
            }
        }

        // Inputs name existing, non-sink components; non-sources have some.
        let mut has_consumer: HashMap<&str, bool> = HashMap::new();
        for decl in &components {
            if decl.role != Role::Source && decl.inputs.is_empty() && !decl.inputs_malformed {
                errors.push(
                    here(decl.inputs_span.clone(), format!("{} `{}` has no inputs", decl.role.noun(), decl.name))
                        .with_hint(format!("add `inputs = [\"...\"]` naming the components that feed `{}`", decl.name)),
                );
            }
            let mut seen = Vec::new();
            for input in &decl.inputs {
                let input_name = input.get_ref().as_str();
                if seen.contains(&input_name) {
                    errors.push(here(
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
                        decl.name_span.clone(),
                        format!("{} `{}` has no consumers: its events would go nowhere", decl.role.noun(), decl.name),
                    )
                    .with_hint(format!("name `{}` in the `inputs` of a transform or sink, or remove it", decl.name)),
                );
            }
        }

        errors.extend(find_cycles(&components, &source_file));

        // Types exist for their role, and every component builds.
        let mut nodes = Vec::new();
        for decl in components {
            let Some(type_name) = &decl.type_name else { continue };
            let Some(spec) = registry.iter().find(|spec| spec.type_name == type_name && spec.role() == decl.role)
            else {
                errors.push(unknown_type(&source_file, &decl, type_name, registry));
                continue;
            };
            match spec.build(&decl.options) {
                Ok(component) => nodes.push(Node {
                    name: decl.name,
                    role: decl.role,
                    type_name: spec.type_name.to_owned(),
                    inputs: decl.inputs.into_iter().map(toml::Spanned::into_inner).collect(),
                    buffer: decl.buffer,
                    component,
                }),
                Err(mut problems) => errors.append(&mut problems),
            }
        }

        if errors.is_empty() {
            Ok(Topology { source_file, api, nodes })
        } else {
            errors.sort_by_key(|error| error.position);
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
                    "  {} -> {} [label=\"{} {}\"];",
                    quote(input),
                    quote(&node.name),
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

fn unknown_type(
    source_file: &SourceFile,
    decl: &ComponentDecl,
    type_name: &str,
    registry: &[ComponentSpec],
) -> ConfigError {
    let known: Vec<&str> = registry.iter().filter(|s| s.role() == decl.role).map(|s| s.type_name).collect();
    if let Some(other) = registry.iter().find(|s| s.type_name == type_name) {
        return ConfigError::at(
            source_file,
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
        source_file,
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
fn find_cycles(components: &[ComponentDecl], source_file: &SourceFile) -> Vec<ConfigError> {
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
                            source_file,
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
