//! Secret scrubbing at capture (issue #14): argv, command-line strings and
//! environment entries lose password/token/key values before an event
//! leaves its source, so no topology can route around it. On by default;
//! the flag names and keys are kept, each value becomes `***`, and every
//! call says how many values it replaced (the sources count them).
//!
//! Plain string scanning, no regex (the workspace has no regex crate and
//! the rules are simple): every rule is a pass over bytes with ASCII case
//! folding, and a call that finds nothing allocates nothing. Configured
//! extras are checked and normalised once, in `Scrubber::new`.
//!
//! # Rules
//!
//! Per argument (or per whitespace-separated word of a command-line string,
//! and of any argument that itself holds one, as in `sh -c "…"`):
//!
//! * **Secret flags.** `--NAME=VALUE`, `--NAME VALUE` (also with one dash,
//!   Go-style) where NAME, lower-cased with `_` read as `-`, *is* a secret
//!   word or *ends in* one after `-`, `_`, `.` or a camelCase boundary: `password`, `passwd`, `pass`,
//!   `passphrase`, `passin`, `passout`, `token`, `secret`, `api-key`,
//!   `apikey`, `access-key`, `secret-key`, `private-key`, `client-secret`,
//!   `bearer`; plus configured `extra_flags` (exact). So `--db-password`,
//!   `--aws-secret-access-key` and `--auth-token` are scrubbed, while
//!   `--pass-through`, `--password-file`, `--token-file` and `--key-file`
//!   are not (the secret word is not the flag's last word: their values
//!   are modes and paths), nor is `--key` (curl's and most tools' `--key`
//!   is a file). `--no-password` and other `--no-*` flags are booleans.
//!   The separate VALUE is taken unless it looks like the next option
//!   (`-` then a letter or `-`): a password that starts that way leaks,
//!   while taking it would hide an option of every boolean `--password`.
//! * **Known tools** (by the basename of `argv[0]`, or of any later word
//!   naming one, so `sudo -u root mysql -pX` and `sh -c "cd /x && mysql
//!   -pX"` are covered): `-pX` for the mysql/mariadb clients (their `-p`
//!   never takes a separate value: `mysql -p db` prompts and opens `db`, so
//!   `db` is kept, and their `--password VALUE` is not taken either);
//!   `-pX`/`-p X` for sshpass and the mongo clients; `-aX`/`-a X` for
//!   redis-cli; `-u user:pass` / `--user=user:pass` for curl (the user is
//!   kept). psql's family has a boolean `--password`.
//! * **Secret keys.** `KEY=VALUE` where KEY matches a key pattern: globs
//!   with `*`, matched case-insensitively with `-` and `.` read as `_`;
//!   defaults `*PASSWORD*`, `*PASSWD*`, `*PASSPHRASE*`, `*SECRET*`,
//!   `*TOKEN*`, `*API_KEY*`, `*APIKEY*`, `*ACCESS_KEY*`, `*PRIVATE_KEY*`,
//!   plus `extra_key_patterns`. Found at the start of a word, after `=`
//!   (`--env=DB_PASSWORD=x`), as `-DKEY=VALUE` (Java/Maven properties), as
//!   a query parameter (`?access_token=x&…`, value up to `&` or `#`) and in
//!   comma lists (`-o user=u,password=x`, value up to `,`). False positives
//!   accepted: non-secret keys containing a secret word lose their value
//!   (`TOKENIZERS_PARALLELISM=false`, `*_PASSWORD_FILE=/path`) — a lost
//!   knob costs less than a leaked credential.
//! * **URL credentials.** `scheme://user:pass@host` → `scheme://user:***@host`.
//!   A user without a password (`https://ghp_token@github.com`) is kept: a
//!   known gap, as a token there is indistinguishable from a user name.
//! * **Authorization headers.** `Authorization:` / `Proxy-Authorization:`
//!   (any case): the scheme word (`Bearer`, `Basic`, `Digest`, `Token`, …)
//!   is kept and the rest of the argument is scrubbed; in a command-line
//!   string, where argument boundaries are lost, up to the next whitespace.
//!   Without a known scheme the first word is the secret.
//! * **Echoes.** Once a value is scrubbed, any other argument whose value
//!   equals it is scrubbed too: the whole argument, the part after its
//!   first `=`, or after a single-dash letter (`-pX`). This is how the
//!   issue's `python3 -c … --password=Hunter2 -pHunter2` loses all copies
//!   without scrubbing `-pVALUE` for every program (that would hit gcc's
//!   `-pthread`, ssh's `-p22` and every `-p<port>`). Its false-positive
//!   cost: an unrelated argument equal to a secret is hidden too — which
//!   only happens when it *is* the secret. The program (`argv[0]`) and
//!   words naming a known tool are never echoes: they choose the rules.
//!
//! `scrub_env` treats `KEY=VALUE` as a whole: a secret KEY hides the entire
//! value (spaces included); otherwise the value gets the URL and header
//! rules. Quoting inside a command-line string is not parsed, so
//! `--password='two words'` in one string hides only `'two`.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;

/// What a scrubbed value becomes.
pub const MASK: &str = "***";

/// `scrub` options of a capturing source.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// Scrubbing is on unless turned off explicitly.
    pub enabled: bool,
    /// More flags whose value is secret, matched exactly (case-insensitive,
    /// `_` as `-`): `"--db-pw"`, `"-secretz"`.
    pub extra_flags: Vec<String>,
    /// More key globs (`*` wildcard), added to the defaults: `"*_PW"`.
    pub extra_key_patterns: Vec<String>,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig { enabled: true, extra_flags: Vec::new(), extra_key_patterns: Vec::new() }
    }
}

/// A configured extra that cannot be used; names it and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrubError {
    #[error("invalid scrub flag `{flag}`: {reason}")]
    InvalidFlag { flag: String, reason: &'static str },
    #[error("invalid scrub key pattern `{pattern}`: {reason}")]
    InvalidKeyPattern { pattern: String, reason: &'static str },
}

/// Flag words: a flag is secret if its name is one or ends in `-` + one.
const FLAG_WORDS: [&str; 15] = [
    "password",
    "passwd",
    "pass",
    "passphrase",
    "passin",
    "passout",
    "token",
    "secret",
    "api-key",
    "apikey",
    "access-key",
    "secret-key",
    "private-key",
    "client-secret",
    "bearer",
];

const DEFAULT_KEY_PATTERNS: [&str; 9] = [
    "*PASSWORD*",
    "*PASSWD*",
    "*PASSPHRASE*",
    "*SECRET*",
    "*TOKEN*",
    "*API_KEY*",
    "*APIKEY*",
    "*ACCESS_KEY*",
    "*PRIVATE_KEY*",
];

/// Authorization schemes whose word is kept in front of the secret.
const AUTH_SCHEMES: [&str; 11] =
    ["basic", "bearer", "digest", "token", "negotiate", "ntlm", "apikey", "aws4-hmac-sha256", "hoba", "mutual", "dpop"];

/// How a tool's own flag carries its secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Only glued on: `-pSECRET`.
    Attached,
    /// Glued on or the next argument.
    AttachedOrNext,
    /// `user:secret`, glued on (or after `=` for a long flag) or next.
    UserColonSecret,
}

struct Tool {
    names: &'static [&'static str],
    flags: &'static [(&'static str, Shape)],
    /// Whether the generic `--password VALUE` form takes the next argument.
    long_takes_next: bool,
}

const TOOLS: [Tool; 6] = [
    Tool {
        names: &[
            "mysql",
            "mysqladmin",
            "mysqldump",
            "mysqlimport",
            "mysqlcheck",
            "mysqlshow",
            "mysqlpump",
            "mysqlslap",
            "mysqlbinlog",
            "mariadb",
            "mariadb-dump",
            "mariadb-admin",
            "mariadb-import",
            "mariadb-check",
        ],
        flags: &[("-p", Shape::Attached)],
        long_takes_next: false,
    },
    Tool { names: &["sshpass"], flags: &[("-p", Shape::AttachedOrNext)], long_takes_next: true },
    Tool {
        names: &["mongo", "mongosh", "mongodump", "mongorestore", "mongoexport", "mongoimport"],
        flags: &[("-p", Shape::AttachedOrNext)],
        long_takes_next: true,
    },
    Tool { names: &["redis-cli"], flags: &[("-a", Shape::AttachedOrNext)], long_takes_next: true },
    Tool {
        names: &["curl"],
        flags: &[
            ("-u", Shape::UserColonSecret),
            ("--user", Shape::UserColonSecret),
            ("-U", Shape::UserColonSecret),
            ("--proxy-user", Shape::UserColonSecret),
        ],
        long_takes_next: true,
    },
    Tool {
        names: &[
            "psql",
            "pg_dump",
            "pg_dumpall",
            "pg_restore",
            "pg_basebackup",
            "createdb",
            "dropdb",
            "createuser",
            "dropuser",
            "vacuumdb",
            "reindexdb",
            "clusterdb",
        ],
        flags: &[],
        long_takes_next: false,
    },
];

/// A byte range of one unit (an argument, or the whole string) to mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cut {
    unit: usize,
    start: usize,
    end: usize,
}

/// The compiled scrubbing rules. Cheap to share (`Arc`) between a
/// source's readers; every method takes `&self`.
#[derive(Clone, Debug)]
pub struct Scrubber {
    enabled: bool,
    /// Normalised: no leading dashes, lower case, `_` as `-`.
    extra_flags: Vec<Box<[u8]>>,
    /// Normalised: upper case, `-` and `.` as `_`.
    key_patterns: Vec<Box<[u8]>>,
}

impl Scrubber {
    /// Checks and compiles the configuration; an unusable extra is an error
    /// naming it (the caller adds its location).
    pub fn new(config: &ScrubConfig) -> Result<Scrubber, ScrubError> {
        let mut extra_flags = Vec::with_capacity(config.extra_flags.len());
        for flag in &config.extra_flags {
            let invalid = |reason| ScrubError::InvalidFlag { flag: flag.clone(), reason };
            if !flag.starts_with('-') {
                return Err(invalid("a flag starts with `-`"));
            }
            let name = strip_dashes(flag);
            if name.is_empty() {
                return Err(invalid("no name after the dashes"));
            }
            if !name.bytes().all(is_key_byte) || name.starts_with('-') {
                return Err(invalid("only letters, digits, `_`, `-` and `.` may follow one or two dashes"));
            }
            extra_flags.push(name.bytes().map(fold_flag).collect());
        }
        let mut key_patterns: Vec<Box<[u8]>> =
            DEFAULT_KEY_PATTERNS.iter().map(|p| p.bytes().map(fold_key).collect()).collect();
        for pattern in &config.extra_key_patterns {
            let invalid = |reason| ScrubError::InvalidKeyPattern { pattern: pattern.clone(), reason };
            if pattern.is_empty() {
                return Err(invalid("empty"));
            }
            if !pattern.bytes().all(|b| b == b'*' || is_key_byte(b)) {
                return Err(invalid("only letters, digits, `_`, `-`, `.` and the `*` wildcard are allowed"));
            }
            if pattern.bytes().all(|b| b == b'*') {
                return Err(invalid("matches every key; name at least one character"));
            }
            key_patterns.push(pattern.bytes().map(fold_key).collect());
        }
        Ok(Scrubber { enabled: config.enabled, extra_flags, key_patterns })
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether an environment or `KEY=VALUE` key looks secret.
    pub fn key_is_secret(&self, key: &str) -> bool {
        self.key_patterns.iter().any(|p| glob(p, key.as_bytes()))
    }

    /// Scrubs a process's arguments in place (`argv[0]` first) and returns
    /// how many values were replaced with `***`.
    pub fn scrub_argv(&self, argv: &mut [String]) -> usize {
        if !self.enabled {
            return 0;
        }
        let mut cuts = Vec::new();
        let args = || argv.iter().enumerate().map(|(i, a)| (i, 0, a.as_str()));
        self.plan_args(args(), &mut cuts);
        if cuts.is_empty() {
            return 0;
        }
        add_echoes(args(), |u| argv[u].as_str(), &mut cuts);
        for cut in cuts.iter().rev() {
            let arg = &mut argv[cut.unit];
            if arg.is_char_boundary(cut.start) && arg.is_char_boundary(cut.end) {
                arg.replace_range(cut.start..cut.end, MASK);
            }
        }
        cuts.len()
    }

    /// Scrubs arguments held as one string, each followed by a NUL (the
    /// kernel's layout, and `pipeline::event::Argv::as_nul_terminated`), so
    /// a source can scrub an `Argv` without splitting it into `String`s:
    /// rebuild with `Argv::from_nul_separated` only when `Cow::Owned`.
    pub fn scrub_nul_terminated<'a>(&self, args: &'a str) -> (Cow<'a, str>, usize) {
        if !self.enabled {
            return (Cow::Borrowed(args), 0);
        }
        let base = args.as_ptr() as usize;
        let split = || args.split_terminator('\0').map(move |a| (0, a.as_ptr() as usize - base, a));
        let mut cuts = Vec::new();
        self.plan_args(split(), &mut cuts);
        if cuts.is_empty() {
            return (Cow::Borrowed(args), 0);
        }
        add_echoes(split(), |_| args, &mut cuts);
        (Cow::Owned(apply(args, &cuts)), cuts.len())
    }

    /// Scrubs a command-line string (or any captured text). Borrowed back
    /// unchanged when nothing is secret.
    pub fn scrub_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.scrub_text_counted(text).0
    }

    /// `scrub_text` with the number of values replaced.
    pub fn scrub_text_counted<'a>(&self, text: &'a str) -> (Cow<'a, str>, usize) {
        if !self.enabled {
            return (Cow::Borrowed(text), 0);
        }
        let mut cuts = Vec::new();
        self.raw(0, text, false, &mut cuts);
        let mut tool = None;
        self.scan_words(0, text, &mut tool, &mut cuts);
        if cuts.is_empty() {
            return (Cow::Borrowed(text), 0);
        }
        add_echoes(words(text).map(|(at, w)| (0, at, w)), |_| text, &mut cuts);
        (Cow::Owned(apply(text, &cuts)), cuts.len())
    }

    /// Scrubs one environment entry `KEY=VALUE`: a secret key hides the
    /// whole value; otherwise the value gets the URL and header rules.
    pub fn scrub_env<'a>(&self, entry: &'a str) -> (Cow<'a, str>, usize) {
        if !self.enabled {
            return (Cow::Borrowed(entry), 0);
        }
        let Some(eq) = entry.find('=') else { return (Cow::Borrowed(entry), 0) };
        if eq + 1 < entry.len() && self.key_is_secret(&entry[..eq]) {
            return (Cow::Owned(format!("{}{MASK}", &entry[..=eq])), 1);
        }
        let mut cuts = Vec::new();
        self.raw(0, &entry[eq + 1..], true, &mut cuts);
        if cuts.is_empty() {
            return (Cow::Borrowed(entry), 0);
        }
        for cut in &mut cuts {
            cut.start += eq + 1;
            cut.end += eq + 1;
        }
        merge(&mut cuts);
        (Cow::Owned(apply(entry, &cuts)), cuts.len())
    }

    /// The argument rules over `args`: (unit, offset of the argument in
    /// its unit, argument), in order. Cuts are relative to the unit.
    fn plan_args<'a, I>(&self, args: I, cuts: &mut Vec<Cut>)
    where
        I: Iterator<Item = (usize, usize, &'a str)>,
    {
        let mut tool = None;
        let mut args = args.peekable();
        while let Some((unit, at, arg)) = args.next() {
            let mut push = |unit: usize, at: usize, r: Range<usize>| {
                cuts.push(Cut { unit, start: at + r.start, end: at + r.end });
            };
            let mut in_arg = Vec::new();
            self.raw(0, arg, true, &mut in_arg);
            for cut in in_arg {
                push(unit, at, cut.start..cut.end);
            }
            let next = args.peek().copied();
            let next_cut = self.word(&mut tool, arg, next.map(|n| n.2), &mut |r| push(unit, at, r));
            if arg.bytes().any(|b| b.is_ascii_whitespace()) {
                // An embedded command line (`sh -c "…"`), with its own tools.
                let mut inner = tool;
                let mut in_line = Vec::new();
                self.scan_words(0, arg, &mut inner, &mut in_line);
                for cut in in_line {
                    push(unit, at, cut.start..cut.end);
                }
            }
            if let (Some(r), Some((next_unit, next_at, _))) = (next_cut, next) {
                push(next_unit, next_at, r);
                args.next();
            }
        }
        merge(cuts);
    }

    fn scan_words(&self, unit: usize, line: &str, tool: &mut Option<&'static Tool>, cuts: &mut Vec<Cut>) {
        let mut iter = words(line).peekable();
        while let Some((at, word)) = iter.next() {
            let next = iter.peek().copied();
            let next_cut = self.word(tool, word, next.map(|n| n.1), &mut |r| {
                cuts.push(Cut { unit, start: at + r.start, end: at + r.end });
            });
            if let (Some(r), Some((next_at, _))) = (next_cut, next) {
                cuts.push(Cut { unit, start: next_at + r.start, end: next_at + r.end });
                iter.next();
            }
        }
        merge(cuts);
    }

    /// The word rules on one argument or word: emits ranges within it and
    /// returns the range to mask in the next one, if it is a value.
    fn word(
        &self,
        tool: &mut Option<&'static Tool>,
        word: &str,
        next: Option<&str>,
        emit: &mut dyn FnMut(Range<usize>),
    ) -> Option<Range<usize>> {
        if !word.starts_with('-') {
            if let Some(found) = tool_named(basename(word)) {
                *tool = Some(found);
            }
            self.pairs(word, emit);
            return None;
        }
        if let Some(t) = *tool {
            if let Some(result) = tool_flag(t, word, next, emit) {
                return result;
            }
        }
        match word.find('=') {
            Some(eq) if self.flag_is_secret(&word[..eq]) => {
                if eq + 1 < word.len() {
                    emit(eq + 1..word.len());
                }
                None
            }
            Some(_) => {
                self.pairs(word, emit);
                None
            }
            None if self.flag_is_secret(word) => {
                let takes_next = tool.is_none_or(|t| t.long_takes_next);
                let next = next?;
                (takes_next && !next.is_empty() && !looks_like_option(next)).then_some(0..next.len())
            }
            None => None,
        }
    }

    fn flag_is_secret(&self, flag: &str) -> bool {
        let name = strip_dashes(flag).as_bytes();
        if name.is_empty() || starts_with_folded(name, b"no-") {
            return false;
        }
        FLAG_WORDS.iter().any(|w| {
            let w = w.as_bytes();
            if name.len() < w.len() || !eq_folded(&name[name.len() - w.len()..], w) {
                return false;
            }
            // The whole name, or its last word: after `-`, `_` or `.`, or a
            // camelCase boundary (`-dbPassword`).
            let at = name.len() - w.len();
            at == 0
                || matches!(name[at - 1], b'-' | b'_' | b'.')
                || (name[at - 1].is_ascii_lowercase() && name[at].is_ascii_uppercase())
        }) || self.extra_flags.iter().any(|f| eq_folded(name, f))
    }

    /// `KEY=VALUE` pairs inside a word: at its start, after `=`, as query
    /// parameters, in comma or semicolon lists, and `-DKEY=VALUE`.
    fn pairs(&self, word: &str, emit: &mut dyn FnMut(Range<usize>)) {
        let b = word.as_bytes();
        let mut from = 0;
        while let Some(off) = b[from..].iter().position(|&c| c == b'=') {
            let eq = from + off;
            let mut start = eq;
            while start > 0 && is_key_byte(b[start - 1]) {
                start -= 1;
            }
            let terminators: &[u8] = match start.checked_sub(1).map(|p| b[p]) {
                None | Some(b'=') => b"",
                Some(b'?' | b'&') => b"&#",
                Some(b',') => b",",
                Some(b';') => b";",
                Some(_) => {
                    from = eq + 1;
                    continue;
                }
            };
            let name = &word[start..eq];
            let key = if name.starts_with("-D") && !name.starts_with("--") { &name[2..] } else { name };
            if key.is_empty() || key.starts_with('-') || !self.key_is_secret(key) {
                from = eq + 1;
                continue;
            }
            let end = b[eq + 1..].iter().position(|c| terminators.contains(c)).map_or(b.len(), |p| eq + 1 + p);
            if end > eq + 1 {
                emit(eq + 1..end);
            }
            if end >= b.len() {
                return;
            }
            from = end;
        }
    }

    /// Rules that look across words: URL credentials and Authorization
    /// headers. `whole_unit`: `text` is one argument, so a header's
    /// credentials run to its end.
    fn raw(&self, unit: usize, text: &str, whole_unit: bool, cuts: &mut Vec<Cut>) {
        let b = text.as_bytes();
        let mut from = 0;
        while let Some(off) = find(&b[from..], b"://") {
            let at = from + off;
            from = at + 3;
            let scheme_ok = at > 0 && b[at - 1].is_ascii_alphanumeric();
            let authority_end = b[from..]
                .iter()
                .position(|&c| {
                    matches!(c, b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'`') || c.is_ascii_whitespace()
                })
                .map_or(b.len(), |p| from + p);
            let authority = &b[from..authority_end];
            if let (true, Some(at_sign)) = (scheme_ok, authority.iter().rposition(|&c| c == b'@')) {
                if let Some(colon) = authority[..at_sign].iter().position(|&c| c == b':') {
                    if colon + 1 < at_sign {
                        cuts.push(Cut { unit, start: from + colon + 1, end: from + at_sign });
                    }
                }
            }
            from = authority_end.max(from);
        }
        let mut from = 0;
        while let Some(off) = find_folded(&b[from..], b"authorization:") {
            let mut i = from + off + "authorization:".len();
            from = i;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let word_end = |s: usize| b[s..].iter().position(|c| c.is_ascii_whitespace()).map_or(b.len(), |p| s + p);
            let first_end = word_end(i);
            if first_end == i {
                continue;
            }
            let start = if AUTH_SCHEMES.iter().any(|s| eq_folded(&b[i..first_end], s.as_bytes())) {
                let mut j = first_end;
                while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                    j += 1;
                }
                j
            } else {
                i
            };
            let end = if whole_unit { b.len() } else { word_end(start) };
            if end > start {
                cuts.push(Cut { unit, start, end });
                from = end;
            }
        }
    }
}

/// A known tool's own flag in `word`: `Some(next_cut)` when it matched.
fn tool_flag(
    tool: &Tool,
    word: &str,
    next: Option<&str>,
    emit: &mut dyn FnMut(Range<usize>),
) -> Option<Option<Range<usize>>> {
    for &(flag, shape) in tool.flags {
        let Some(rest) = word.strip_prefix(flag) else { continue };
        if rest.is_empty() {
            if shape == Shape::Attached {
                return Some(None);
            }
            let value = next.filter(|n| !n.is_empty() && !looks_like_option(n));
            return Some(value.and_then(|n| secret_part(shape, n, 0)));
        }
        let value_at = if flag.starts_with("--") {
            if !rest.starts_with('=') {
                continue;
            }
            flag.len() + 1
        } else {
            flag.len()
        };
        if let Some(r) = secret_part(shape, word, value_at) {
            emit(r);
        }
        return Some(None);
    }
    None
}

/// The secret in `word[value_at..]`: all of it, or what follows `user:`.
fn secret_part(shape: Shape, word: &str, value_at: usize) -> Option<Range<usize>> {
    let start = match shape {
        Shape::UserColonSecret => value_at + word[value_at..].find(':')? + 1,
        Shape::Attached | Shape::AttachedOrNext => value_at,
    };
    (start < word.len()).then_some(start..word.len())
}

fn tool_named(name: &str) -> Option<&'static Tool> {
    if name.is_empty() || name.contains('=') {
        return None;
    }
    TOOLS.iter().find(|t| t.names.contains(&name))
}

/// After scrubbing, hides other copies of the scrubbed values (see the
/// module header, "Echoes"). `tokens`: (unit, offset, text) of each
/// argument or top-level word.
fn add_echoes<'a>(
    tokens: impl Iterator<Item = (usize, usize, &'a str)>,
    unit: impl Fn(usize) -> &'a str,
    cuts: &mut Vec<Cut>,
) {
    let mut echoes = Vec::new();
    for (n, (u, at, token)) in tokens.enumerate() {
        // The program and tool names choose the rules: hiding one would
        // change how the line is read.
        if n == 0 || tool_named(basename(token)).is_some() {
            continue;
        }
        let mut parts = [Some(0), token.find('=').map(|e| e + 1), None];
        let b = token.as_bytes();
        if b.len() > 2 && b[0] == b'-' && b[1].is_ascii_alphabetic() {
            parts[2] = Some(2);
        }
        for start in parts.into_iter().flatten() {
            let value = &token[start..];
            if !value.is_empty() && cuts.iter().any(|c| unit(c.unit).get(c.start..c.end) == Some(value)) {
                echoes.push(Cut { unit: u, start: at + start, end: at + token.len() });
                break;
            }
        }
    }
    cuts.extend(echoes);
    merge(cuts);
}

/// Sorts the cuts and merges overlapping or touching ones of a unit.
fn merge(cuts: &mut Vec<Cut>) {
    cuts.sort_unstable();
    cuts.dedup_by(|later, earlier| {
        if later.unit == earlier.unit && later.start <= earlier.end {
            earlier.end = earlier.end.max(later.end);
            true
        } else {
            false
        }
    });
}

/// `text` with every cut (sorted, merged, one unit) replaced by `***`.
fn apply(text: &str, cuts: &[Cut]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for cut in cuts {
        if cut.start < at || !text.is_char_boundary(cut.start) || !text.is_char_boundary(cut.end) {
            continue;
        }
        out.push_str(&text[at..cut.start]);
        out.push_str(MASK);
        at = cut.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Whitespace-separated words with their byte offsets.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let base = text.as_ptr() as usize;
    text.split(|c: char| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(move |w| (w.as_ptr() as usize - base, w))
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

fn strip_dashes(flag: &str) -> &str {
    let one = flag.strip_prefix('-').unwrap_or(flag);
    one.strip_prefix('-').unwrap_or(one)
}

/// The next argument is another option, not a value: `-` then a letter or `-`.
fn looks_like_option(arg: &str) -> bool {
    let b = arg.as_bytes();
    b.len() > 1 && b[0] == b'-' && (b[1].is_ascii_alphabetic() || b[1] == b'-')
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

fn fold_flag(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

fn fold_key(b: u8) -> u8 {
    if b == b'-' || b == b'.' {
        b'_'
    } else {
        b.to_ascii_uppercase()
    }
}

/// Flag-name equality: `text` folded (lower case, `_` as `-`) against an
/// already-folded `word`.
fn eq_folded(text: &[u8], word: &[u8]) -> bool {
    text.len() == word.len() && text.iter().zip(word).all(|(&t, &w)| fold_flag(t) == w)
}

fn starts_with_folded(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && eq_folded(&text[..prefix.len()], prefix)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Case-insensitive `find` for a lower-case ASCII `needle`.
fn find_folded(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w.iter().zip(needle).all(|(&h, &n)| h.to_ascii_lowercase() == n))
}

/// Glob match of a folded pattern (`*` = any run) against a key, folding
/// the key as it goes; linear in practice, no allocation.
fn glob(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, k));
            p += 1;
        } else if p < pattern.len() && pattern[p] == fold_key(key[k]) {
            p += 1;
            k += 1;
        } else if let Some((sp, sk)) = star {
            p = sp + 1;
            k = sk + 1;
            star = Some((sp, sk + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests;
