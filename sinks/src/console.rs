//! `console`: events as NDJSON lines on standard output (or error), for
//! looking at a topology by eye or piping it into `jq`.

use async_trait::async_trait;
use pipeline::{Batch, ComponentError, ComponentOptions, ConfigError, Sink};
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

/// `[sinks.NAME] type = "console"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `stdout` (default) or `stderr`.
    #[serde(default)]
    pub target: Target,
}

/// Which standard stream.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    #[default]
    Stdout,
    Stderr,
}

/// Builds a console sink from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Sink>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: ConsoleConfig, _| {
        Ok(Box::new(ConsoleSink { target: config.target, buffer: Vec::new() }) as Box<dyn Sink>)
    })
}

/// A console sink.
pub struct ConsoleSink {
    target: Target,
    buffer: Vec<u8>,
}

#[async_trait]
impl Sink for ConsoleSink {
    async fn write(&mut self, batch: Batch) -> Result<(), ComponentError> {
        self.buffer.clear();
        crate::ndjson::encode_batch(&batch, &mut self.buffer);
        let result = match self.target {
            Target::Stdout => tokio::io::stdout().write_all(&self.buffer).await,
            Target::Stderr => tokio::io::stderr().write_all(&self.buffer).await,
        };
        result.map_err(|e| ComponentError::io("cannot write to the console", e))
    }

    async fn flush(&mut self) -> Result<(), ComponentError> {
        let result = match self.target {
            Target::Stdout => tokio::io::stdout().flush().await,
            Target::Stderr => tokio::io::stderr().flush().await,
        };
        result.map_err(|e| ComponentError::io("cannot flush the console", e))
    }
}
