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

/// The evaluator's regex state: one cache per slot set (owned here rather
/// than by the regex's thread pool, so an agent holds one lazy DFA per set,
/// not one per worker thread that ever ran it; each grows as new input
/// meets new states, up to `hybrid_cache_capacity`) and one reused set of
/// matched patterns (a `PatternSet` was allocated per search before).
/// Both grow on first use to the slots and sets they meet.
/// Tried and not kept: replacing a cache once it grew by 256 KiB cut the
/// L1 bench by 10-47 %: the bench's 200 Sigma rules grow their sets'
/// caches past that in normal work (issue #12's note).
#[derive(Debug)]
pub(super) struct RegexScratch {
    caches: Vec<Option<meta::Cache>>,
    matched: PatternSet,
}

impl Default for RegexScratch {
    fn default() -> RegexScratch {
        RegexScratch { caches: Vec::new(), matched: PatternSet::new(0) }
    }
}

/// Calls `on_match` with the index (in `set`'s pattern order) of each
/// pattern that matches `text` anywhere; `slot` names `set`'s cache.
pub(super) fn for_each_match(
    set: &RegexSet,
    slot: usize,
    scratch: &mut RegexScratch,
    text: &[u8],
    mut on_match: impl FnMut(usize),
) {
    let RegexScratch { caches, matched } = scratch;
    if caches.len() <= slot {
        caches.resize_with(slot + 1, || None);
    }
    if matched.capacity() < set.pattern_len() {
        *matched = PatternSet::new(set.pattern_len());
    }
    let cache = caches[slot].get_or_insert_with(|| set.create_cache());
    matched.clear();
    set.which_overlapping_matches_with(cache, &Input::new(text), matched);
    matched.iter().for_each(|pattern| on_match(pattern.as_usize()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the cache and pattern set reused across searches, the matches
    /// are the regex crate's; the empty scratch grows to the slot and the
    /// set.
    #[test]
    fn matches_with_a_reused_scratch_are_the_regex_crates() {
        let patterns: Vec<Arc<str>> =
            [r"(?i)curl\s+-[a-z]*k", r"\d{1,3}(\.\d{1,3}){3}", r"base64\s+(-d|--decode)", r"^/tmp/\w+$"]
                .map(Arc::from)
                .to_vec();
        let set = regex_set(&patterns).expect("compiles");
        let reference = regex::bytes::RegexSet::new(patterns.iter().map(|p| format!("(?-u){p}"))).expect("compiles");
        let texts = [
            "CURL -sk https://10.0.0.1/x | base64 --decode",
            "/tmp/payload",
            "/tmp/a/b",
            "echo 999.1.2 base64 -d",
            "",
            "curl -k 192.168.1.20",
        ];
        let mut scratch = RegexScratch::default();
        for (round, text) in texts.iter().cycle().take(30).enumerate() {
            let mut found = Vec::new();
            for_each_match(&set, 3, &mut scratch, text.as_bytes(), |i| found.push(i));
            let expected: Vec<usize> = reference.matches(text.as_bytes()).into_iter().collect();
            assert_eq!(found, expected, "{text:?}, round {round}");
        }
    }
}
