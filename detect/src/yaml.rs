//! A thin, read-only view of YAML with the line of every node, shared by
//! the native and the Sigma front ends. Parsing is saphyr's; this module
//! only turns its node tree into something a hand-written walk can read
//! without matching on saphyr's types everywhere, and turns its scan errors
//! into [`Problem`]s.
//!
//! Why not serde: a serde loader stops at the first error, and a rule file
//! with five mistakes should be reported once, with five lines.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

use crate::problem::Problem;

/// The documents of one YAML text (`---` separates them).
pub fn parse(text: &str) -> Result<Vec<MarkedYamlOwned>, (usize, String)> {
    MarkedYamlOwned::load_from_str(text).map_err(|e| (e.marker().line(), e.info().to_string()))
}

/// One node and its line (1-based).
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    raw: &'a MarkedYamlOwned,
}

/// A scalar's value as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl<'a> Node<'a> {
    pub fn new(raw: &'a MarkedYamlOwned) -> Node<'a> {
        Node { raw }
    }

    /// 1-based line of the node's first character.
    pub fn line(self) -> usize {
        self.raw.span.start.line()
    }

    fn data(self) -> &'a YamlDataOwned<MarkedYamlOwned> {
        match &self.raw.data {
            YamlDataOwned::Tagged(_, inner) => &inner.data,
            data => data,
        }
    }

    /// The scalar, or `None` for a mapping or a sequence.
    pub fn scalar(self) -> Option<Scalar<'a>> {
        match self.data() {
            YamlDataOwned::Value(ScalarOwned::Null) => Some(Scalar::Null),
            YamlDataOwned::Value(ScalarOwned::Boolean(b)) => Some(Scalar::Bool(*b)),
            YamlDataOwned::Value(ScalarOwned::Integer(i)) => Some(Scalar::Int(*i)),
            YamlDataOwned::Value(ScalarOwned::FloatingPoint(f)) => Some(Scalar::Float(f.into_inner())),
            YamlDataOwned::Value(ScalarOwned::String(s)) => Some(Scalar::Str(s)),
            YamlDataOwned::Representation(s, _, _) => Some(Scalar::Str(s)),
            _ => None,
        }
    }

    /// A scalar as text (numbers and booleans as written in YAML's canonical
    /// form: Sigma writes `DestinationPort: 4444` and means the text too).
    pub fn text(self) -> Option<String> {
        Some(match self.scalar()? {
            Scalar::Null => String::new(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Str(s) => s.to_owned(),
        })
    }

    /// A string scalar (not a number or a boolean).
    pub fn str(self) -> Option<&'a str> {
        match self.scalar()? {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(self) -> bool {
        matches!(self.scalar(), Some(Scalar::Null))
    }

    /// The entries of a mapping, in written order, with keys as text.
    /// `None` when this is not a mapping. A key that is not a scalar is
    /// shown as `?`.
    pub fn entries(self) -> Option<Vec<(String, Node<'a>, Node<'a>)>> {
        match self.data() {
            YamlDataOwned::Mapping(map) => Some(
                map.iter()
                    .map(|(k, v)| {
                        let key = Node::new(k);
                        (key.text().unwrap_or_else(|| "?".to_owned()), key, Node::new(v))
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(self, key: &str) -> Option<Node<'a>> {
        match self.data() {
            YamlDataOwned::Mapping(map) => {
                map.iter().find(|(k, _)| Node::new(k).text().as_deref() == Some(key)).map(|(_, v)| Node::new(v))
            }
            _ => None,
        }
    }

    pub fn is_mapping(self) -> bool {
        matches!(self.data(), YamlDataOwned::Mapping(_))
    }

    /// The items of a sequence; `None` when this is not a sequence.
    pub fn items(self) -> Option<Vec<Node<'a>>> {
        match self.data() {
            YamlDataOwned::Sequence(items) => Some(items.iter().map(Node::new).collect()),
            _ => None,
        }
    }

    /// A sequence's items, or the node itself as a one-item list (YAML
    /// rule files let a single value stand for a list of one).
    pub fn one_or_many(self) -> Vec<Node<'a>> {
        self.items().unwrap_or_else(|| vec![self])
    }

    /// What kind of node this is, for messages.
    pub fn describe(self) -> &'static str {
        match self.data() {
            YamlDataOwned::Mapping(_) => "a mapping",
            YamlDataOwned::Sequence(_) => "a list",
            YamlDataOwned::Value(ScalarOwned::Null) => "empty",
            YamlDataOwned::Value(ScalarOwned::Boolean(_)) => "a boolean",
            YamlDataOwned::Value(ScalarOwned::Integer(_)) => "an integer",
            YamlDataOwned::Value(ScalarOwned::FloatingPoint(_)) => "a number",
            YamlDataOwned::Alias(_) => "an alias",
            _ => "text",
        }
    }
}

/// Parses a duration: `500ms`, `10s`, `5m`, `1h`, `2d` (Sigma's
/// `timespan` units plus `ms`), or a bare number of seconds.
pub fn duration_ns(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 10s, 5m, 1h)"))?;
    let scale: u64 = match unit.trim() {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        other => return Err(format!("`{other}` is not a duration unit (ms, s, m, h, d)")),
    };
    number.checked_mul(scale).ok_or_else(|| format!("`{text}` is too long a duration"))
}

/// Collects problems of one file as a walk finds them.
#[derive(Debug)]
pub struct Problems<'f> {
    pub file: &'f std::path::Path,
    pub rule_id: Option<String>,
    pub list: Vec<Problem>,
}

impl<'f> Problems<'f> {
    pub fn new(file: &'f std::path::Path) -> Problems<'f> {
        Problems { file, rule_id: None, list: Vec::new() }
    }

    /// Records a problem at `line`, for the rule being walked.
    pub fn at(&mut self, line: usize, message: impl Into<String>) {
        self.list.push(Problem::new(self.file, line, self.rule_id.clone(), message.into(), None));
    }

    /// Records a problem with a hint on what to do.
    pub fn hint(&mut self, line: usize, message: impl Into<String>, hint: impl Into<String>) {
        self.list.push(Problem::new(self.file, line, self.rule_id.clone(), message.into(), Some(hint.into())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_values_of_a_two_document_file() {
        let docs = parse("a: 1\nb:\n  - x\n  - 'y'\n---\nc: true\n").expect("parses");
        assert_eq!(docs.len(), 2);
        let first = Node::new(&docs[0]);
        let entries = first.entries().expect("mapping");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, "a");
        assert_eq!(entries[0].2.scalar(), Some(Scalar::Int(1)));
        let b = first.get("b").expect("b");
        let items = b.items().expect("list");
        assert_eq!(items[1].str(), Some("y"));
        assert_eq!(items[1].line(), 4);
        assert_eq!(Node::new(&docs[1]).get("c").and_then(|c| c.scalar()), Some(Scalar::Bool(true)));
    }

    #[test]
    fn scan_errors_carry_their_line() {
        let (line, message) = parse("a: 1\nb: [unclosed\n").expect_err("bad yaml");
        assert!(line >= 2, "line {line}: {message}");
        let (line, _) = parse("a: 1\na: 2\n").expect_err("duplicate key");
        assert_eq!(line, 2);
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ns("10s"), Ok(10_000_000_000));
        assert_eq!(duration_ns("500ms"), Ok(500_000_000));
        assert_eq!(duration_ns("5m"), Ok(300_000_000_000));
        assert_eq!(duration_ns("3"), Ok(3_000_000_000));
        assert!(duration_ns("10x").is_err());
        assert!(duration_ns("s").is_err());
        assert!(duration_ns("99999999999999999d").is_err());
    }
}
