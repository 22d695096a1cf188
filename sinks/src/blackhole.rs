//! `blackhole`: accepts and forgets every event. For benchmarks and for
//! measuring a topology without a destination's cost; the engine still
//! counts everything it receives.

use async_trait::async_trait;
use pipeline::{Batch, ComponentError, ComponentOptions, ConfigError, Sink};
use serde::Deserialize;

/// `[sinks.NAME] type = "blackhole"` (no options).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

/// Builds a blackhole from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Sink>, Vec<ConfigError>> {
    pipeline::build_with(options, |_: BlackholeConfig, _| Ok(Box::new(Blackhole) as Box<dyn Sink>))
}

/// The sink that keeps nothing.
pub struct Blackhole;

#[async_trait]
impl Sink for Blackhole {
    async fn write(&mut self, batch: Batch) -> Result<(), ComponentError> {
        drop(batch);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ComponentError> {
        Ok(())
    }
}
