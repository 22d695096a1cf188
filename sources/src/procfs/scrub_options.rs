//! The `scrub` option table of the capturing sources (`procfs` and `ebpf`:
//! `[sources.NAME.scrub]`), mapped onto [`ScrubConfig`], and the helpers
//! both use to scrub what they capture and count it in
//! `hostflow_scrubbed_values_total{component}`.
//!
//! ```toml
//! [sources.kernel.scrub]
//! enabled = true                        # default
//! extra_flags = ["--db-pw"]             # more flags whose value is secret
//! extra_key_patterns = ["*_PW"]         # more KEY=VALUE key globs
//! ```
//!
//! An extra the scrubber refuses is a configuration error at that value.

use std::sync::Arc;

use metrics::Counter;
use pipeline::event::Argv;
use pipeline::{ComponentOptions, ConfigError};
use serde::Deserialize;
use toml::Spanned;

use crate::scrub::{ScrubConfig, Scrubber};

/// `hostflow_scrubbed_values_total{component}`: values replaced by `***`.
pub const SCRUBBED_VALUES_TOTAL: &str = "hostflow_scrubbed_values_total";

/// `[sources.NAME.scrub]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubOptions {
    /// On unless `false`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// More flags whose value is secret, matched exactly (`--db-pw`).
    #[serde(default)]
    pub extra_flags: Vec<Spanned<String>>,
    /// More `KEY=VALUE` key globs, `*` as wildcard (`*_PW`).
    #[serde(default)]
    pub extra_key_patterns: Vec<Spanned<String>>,
}

impl ScrubOptions {
    /// The configuration, with every extra the scrubber refuses reported
    /// at its value.
    pub fn check(
        options: Option<&ScrubOptions>,
        component: &ComponentOptions,
        errors: &mut Vec<ConfigError>,
    ) -> ScrubConfig {
        let Some(options) = options else { return ScrubConfig::default() };
        let mut config = ScrubConfig { enabled: options.enabled.unwrap_or(true), ..ScrubConfig::default() };
        for flag in &options.extra_flags {
            let one = ScrubConfig { extra_flags: vec![flag.get_ref().clone()], ..ScrubConfig::default() };
            match Scrubber::new(&one) {
                Ok(_) => config.extra_flags.push(flag.get_ref().clone()),
                Err(error) => errors.push(component.error_at(flag.span(), error.to_string())),
            }
        }
        for pattern in &options.extra_key_patterns {
            let one = ScrubConfig { extra_key_patterns: vec![pattern.get_ref().clone()], ..ScrubConfig::default() };
            match Scrubber::new(&one) {
                Ok(_) => config.extra_key_patterns.push(pattern.get_ref().clone()),
                Err(error) => errors.push(component.error_at(pattern.span(), error.to_string())),
            }
        }
        config
    }
}

/// The scrubber of a checked configuration (see [`ScrubOptions::check`]).
pub fn compile(config: &ScrubConfig) -> Arc<Scrubber> {
    match Scrubber::new(config) {
        Ok(scrubber) => Arc::new(scrubber),
        // Unreachable after `check`; scrubbing stays on with the defaults.
        Err(error) => {
            tracing::error!(%error, "invalid scrub configuration; scrubbing with the defaults");
            Arc::new(Scrubber::new(&ScrubConfig::default()).expect("the default scrub configuration is valid"))
        }
    }
}

/// The component's `hostflow_scrubbed_values_total` handle.
pub fn scrubbed_counter(component: &str) -> Counter {
    metrics::describe_counter!(
        SCRUBBED_VALUES_TOTAL,
        metrics::Unit::Count,
        "Secret values (passwords, tokens, keys) replaced by *** in captured arguments and environment."
    );
    metrics::counter!(SCRUBBED_VALUES_TOTAL, "component" => component.to_owned())
}

/// `argv` scrubbed, and how many values were replaced (0: `argv` as is,
/// no allocation).
pub fn scrub_argv(scrubber: &Scrubber, argv: &mut Argv) -> usize {
    let (scrubbed, n) = scrubber.scrub_nul_terminated(argv.as_nul_terminated());
    if let std::borrow::Cow::Owned(text) = scrubbed {
        *argv = Argv::from_nul_separated(text.as_bytes());
    }
    n
}

/// Environment entries (`NAME=value`) scrubbed in place; values replaced.
pub fn scrub_env(scrubber: &Scrubber, env: &mut [Arc<str>]) -> usize {
    let mut total = 0;
    for entry in env {
        let (scrubbed, n) = scrubber.scrub_env(entry);
        if let std::borrow::Cow::Owned(text) = scrubbed {
            *entry = Arc::from(text);
        }
        total += n;
    }
    total
}

/// Raw `cmdline` bytes (arguments NUL-separated) scrubbed argument by
/// argument, before they are joined into one line.
pub fn scrub_cmdline_bytes(scrubber: &Scrubber, raw: Vec<u8>) -> (Vec<u8>, usize) {
    if !scrubber.is_enabled() {
        return (raw, 0);
    }
    let mut text = String::from_utf8_lossy(&raw).into_owned();
    let cut = text.ends_with('\0');
    if !cut {
        text.push('\0'); // a last argument without its NUL (a bounded read)
    }
    let (scrubbed, n) = scrubber.scrub_nul_terminated(&text);
    match scrubbed {
        std::borrow::Cow::Borrowed(_) => (raw, 0),
        std::borrow::Cow::Owned(mut text) => {
            if !cut {
                text.pop();
            }
            (text.into_bytes(), n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_env_and_cmdline_lose_their_secrets_but_keep_the_flags() {
        let scrubber = Scrubber::new(&ScrubConfig::default()).expect("defaults");
        let mut argv = Argv::from_args(["python3", "-c", "x", "--password=Hunter2", "-pHunter2", "TOKEN=Hunter2"]);
        let n = scrub_argv(&scrubber, &mut argv);
        assert!(n >= 3, "{n}: {argv:?}");
        let joined = argv.joined();
        assert!(!joined.contains("Hunter2") && joined.contains("--password=") && joined.contains("TOKEN="), "{joined}");
        let mut unchanged = Argv::from_args(["ls", "-l"]);
        assert_eq!(scrub_argv(&scrubber, &mut unchanged), 0);
        let mut env: Vec<Arc<str>> =
            vec![Arc::from("HTTP_PROXY=http://u:pw@proxy:3128"), Arc::from("LD_PRELOAD=/x.so")];
        assert_eq!(scrub_env(&scrubber, &mut env), 1);
        assert_eq!(&*env[0], "HTTP_PROXY=http://u:***@proxy:3128");
        let (raw, n) = scrub_cmdline_bytes(&scrubber, b"mysql\0-uroot\0-psecret\0db".to_vec());
        assert_eq!((String::from_utf8(raw).expect("utf-8").as_str(), n), ("mysql\0-uroot\0-p***\0db", 1));
        let off = Scrubber::new(&ScrubConfig { enabled: false, ..ScrubConfig::default() }).expect("off");
        assert_eq!(scrub_cmdline_bytes(&off, b"mysql\0-psecret\0".to_vec()).1, 0);
    }
}
