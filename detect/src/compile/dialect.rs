//! The one regex dialect of rules: checked at load, compiled per slot
//! into one set, matched on bytes.

use std::sync::Arc;

use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::{Input, PatternSet};

/// One slot's regexes, compiled together.
pub(super) type RegexSet = Regex;

/// Rule regexes are compiled in one dialect everywhere (loading, checking,
/// the evaluator): Rust regex syntax with **ASCII** `\w`, `\s`, `\d`, `\b`
/// and `(?i)`, matched on bytes; `(?u)` opts a pattern (or a group) into
/// Unicode. Why: Sigma's regexes are PCRE, whose classes are ASCII unless
/// asked, and Unicode classes multiply the compiled automata — the
/// built-in pack's regex sets held 2.1 MiB with Unicode classes and
/// 0.2 MiB without (heaptrack, BENCHMARKS.md), every byte of it resident in
/// every agent.
pub fn check_regex(pattern: &str) -> Result<(), regex::Error> {
    regex::bytes::RegexBuilder::new(pattern).unicode(false).build().map(drop)
}

/// One slot's regexes as one set, in [`check_regex`]'s dialect: what
/// `regex::bytes::RegexSet` builds, less its literal prefilter. Why: a
/// set runs only after the slot's own automaton found one of the gate
/// literals every match needs (`Condition::Regexes::gate`), so the
/// prefilter mostly repeated that search, and its Aho-Corasick DFAs were
/// 0.48 MB of an idle agent's heap (issue #12's 12 MB).
pub(super) fn regex_set(patterns: &[Arc<str>]) -> Result<RegexSet, String> {
    let config = meta::Config::new()
        .match_kind(regex_automata::MatchKind::All)
        .utf8_empty(false)
        .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
        .nfa_size_limit(Some(10 * (1 << 20)))
        .hybrid_cache_capacity(2 * (1 << 20))
        .auto_prefilter(false);
    meta::Builder::new()
        .configure(config)
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build_many(patterns)
        .map_err(|e| e.to_string())
}

/// Calls `on_match` with the index (in `set`'s pattern order) of each
/// pattern that matches `text` anywhere.
pub(super) fn for_each_match(set: &RegexSet, text: &[u8], mut on_match: impl FnMut(usize)) {
    let mut matched = PatternSet::new(set.pattern_len());
    set.which_overlapping_matches(&Input::new(text), &mut matched);
    matched.iter().for_each(|pattern| on_match(pattern.as_usize()));
}
