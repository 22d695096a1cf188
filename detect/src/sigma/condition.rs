//! Sigma's `condition`: a small tokenizer and a precedence-climbing parser
//! (`not` binds tighter than `and`, `and` tighter than `or`; parentheses;
//! `1 of pattern*`, `all of pattern*`, `1 of them`, `all of them`), and
//! the resolution of its names against a rule's selections.

use crate::rule::Expr;

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    /// A selection by name.
    Sel(String),
    /// `1 of …` (`all: false`) or `all of …`.
    Of {
        all: bool,
        pattern: Pattern,
    },
}

/// What `x of` ranges over.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Pattern {
    /// Every selection whose name does not start with `_`.
    Them,
    /// Selections whose names match; `*` is any run of characters.
    Glob(String),
}

/// A condition that cannot be used: what is wrong, and what to do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CondError {
    pub message: String,
    pub hint: Option<String>,
}

fn error(message: impl Into<String>) -> CondError {
    CondError { message: message.into(), hint: None }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok<'a> {
    Open,
    Close,
    And,
    Or,
    Not,
    Of,
    All,
    Them,
    Word(&'a str),
}

/// Nesting deeper than this is rejected (it is never written by hand, and
/// the parser and the compiler recurse).
const MAX_DEPTH: usize = 64;

fn tokenize(text: &str) -> Result<Vec<Tok<'_>>, CondError> {
    let mut tokens = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else { break };
        match c {
            '(' | ')' => {
                tokens.push(if c == '(' { Tok::Open } else { Tok::Close });
                rest = &rest[1..];
            }
            '|' => {
                return Err(CondError {
                    message: "aggregations in a condition (`| count() …`) are not supported".into(),
                    hint: Some("write a Sigma correlation rule (event_count, value_count) instead".into()),
                })
            }
            _ => {
                let end = rest.find(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '|')).unwrap_or(rest.len());
                let word = &rest[..end];
                rest = &rest[end..];
                tokens.push(match word.to_ascii_lowercase().as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "of" => Tok::Of,
                    "all" => Tok::All,
                    "them" => Tok::Them,
                    "near" => {
                        return Err(CondError {
                            message: "`near` (Sigma 1 temporal condition) is not supported".into(),
                            hint: Some("write a Sigma correlation rule (temporal) instead".into()),
                        })
                    }
                    _ => Tok::Word(word),
                });
            }
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Tok<'a>>,
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Tok<'a>> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Tok<'a>> {
        let tok = self.tokens.get(self.at).cloned();
        self.at += 1;
        tok
    }

    /// Binary operators at or above `min` (`or` = 1, `and` = 2), left to
    /// right.
    fn expr(&mut self, min: u8, depth: usize) -> Result<Cond, CondError> {
        let mut lhs = self.unary(depth)?;
        loop {
            let prec = match self.peek() {
                Some(Tok::Or) => 1,
                Some(Tok::And) => 2,
                _ => break,
            };
            if prec < min {
                break;
            }
            self.next();
            let rhs = self.expr(prec + 1, depth)?;
            lhs = match (prec, lhs) {
                (2, Cond::All(mut parts)) => {
                    parts.push(rhs);
                    Cond::All(parts)
                }
                (2, lhs) => Cond::All(vec![lhs, rhs]),
                (_, Cond::Any(mut parts)) => {
                    parts.push(rhs);
                    Cond::Any(parts)
                }
                (_, lhs) => Cond::Any(vec![lhs, rhs]),
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self, depth: usize) -> Result<Cond, CondError> {
        if depth > MAX_DEPTH {
            return Err(error(format!("the condition nests deeper than {MAX_DEPTH} levels")));
        }
        match self.next() {
            Some(Tok::Not) => Ok(Cond::Not(Box::new(self.unary(depth + 1)?))),
            Some(Tok::Open) => {
                let inner = self.expr(1, depth + 1)?;
                match self.next() {
                    Some(Tok::Close) => Ok(inner),
                    _ => Err(error("a `(` is not closed")),
                }
            }
            Some(Tok::All) => self.of(true),
            Some(Tok::Word(word)) if word.bytes().all(|b| b.is_ascii_digit()) => {
                if word.trim_start_matches('0') == "1" {
                    self.of(false)
                } else {
                    Err(CondError {
                        message: format!("`{word} of` is not supported"),
                        hint: Some("only `1 of` and `all of` are".into()),
                    })
                }
            }
            Some(Tok::Word(word)) => Ok(Cond::Sel(word.to_owned())),
            Some(tok) => Err(error(format!("unexpected {} in the condition", describe(&tok)))),
            None => Err(error("the condition ends too early")),
        }
    }

    fn of(&mut self, all: bool) -> Result<Cond, CondError> {
        if self.next() != Some(Tok::Of) {
            return Err(error("expected `of` after `1` or `all`"));
        }
        match self.next() {
            Some(Tok::Them) => Ok(Cond::Of { all, pattern: Pattern::Them }),
            Some(Tok::Word(word)) => Ok(Cond::Of { all, pattern: Pattern::Glob(word.to_owned()) }),
            _ => Err(error("`of` takes a selection name pattern (e.g. `selection_*`) or `them`")),
        }
    }
}

fn describe(tok: &Tok<'_>) -> String {
    match tok {
        Tok::Open => "`(`".into(),
        Tok::Close => "`)`".into(),
        Tok::And => "`and`".into(),
        Tok::Or => "`or`".into(),
        Tok::Not => "`not`".into(),
        Tok::Of => "`of`".into(),
        Tok::All => "`all`".into(),
        Tok::Them => "`them`".into(),
        Tok::Word(w) => format!("`{w}`"),
    }
}

/// Parses one condition string.
pub(crate) fn parse(text: &str) -> Result<Cond, CondError> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(error("the condition is empty"));
    }
    let mut parser = Parser { tokens, at: 0 };
    let cond = parser.expr(1, 0)?;
    match parser.peek() {
        None => Ok(cond),
        Some(tok) => Err(error(format!("unexpected {} in the condition", describe(tok)))),
    }
}

/// Whether `name` matches a `*` glob.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Turns a condition into an expression over the named selections (in
/// written order). Every problem is returned.
pub(crate) fn resolve(cond: &Cond, selections: &[(String, Expr)]) -> Result<Expr, Vec<CondError>> {
    let mut errors = Vec::new();
    let expr = walk(cond, selections, &mut errors);
    if errors.is_empty() {
        Ok(expr)
    } else {
        Err(errors)
    }
}

fn walk(cond: &Cond, selections: &[(String, Expr)], errors: &mut Vec<CondError>) -> Expr {
    match cond {
        Cond::All(parts) => Expr::All(parts.iter().map(|c| walk(c, selections, errors)).collect()),
        Cond::Any(parts) => Expr::Any(parts.iter().map(|c| walk(c, selections, errors)).collect()),
        Cond::Not(inner) => Expr::Not(Box::new(walk(inner, selections, errors))),
        Cond::Sel(name) => match selections.iter().find(|(n, _)| n == name) {
            Some((_, expr)) => expr.clone(),
            None => {
                if !errors.iter().any(|e| e.message.contains(&format!("`{name}`"))) {
                    errors.push(CondError {
                        message: format!("the condition names `{name}`, which is not a selection of this rule"),
                        hint: Some(format!(
                            "selections: {}",
                            selections.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                        )),
                    });
                }
                Expr::always()
            }
        },
        Cond::Of { all, pattern } => {
            let chosen: Vec<Expr> = selections
                .iter()
                .filter(|(name, _)| match pattern {
                    Pattern::Them => !name.starts_with('_'),
                    Pattern::Glob(glob_pattern) => glob(glob_pattern, name),
                })
                .map(|(_, expr)| expr.clone())
                .collect();
            if chosen.is_empty() {
                let what = match pattern {
                    Pattern::Them => "them".to_owned(),
                    Pattern::Glob(p) => format!("`{p}`"),
                };
                errors.push(error(format!("{} of {what} matches no selection", if *all { "all" } else { "1" })));
            }
            if *all {
                Expr::All(chosen)
            } else {
                Expr::Any(chosen)
            }
        }
    }
}
