//! `blackhole`: accepts and forgets every event. For benchmarks and for
//! measuring a topology without a destination's cost; the engine still
//! counts everything it receives. An optional `rate` makes it a slow
//! destination on purpose, to exercise backpressure and drop policies.

use std::time::Duration;

use async_trait::async_trait;
use pipeline::{Batch, ComponentError, ComponentOptions, ConfigError, Sink};
use serde::Deserialize;
use toml::Spanned;

/// `[sinks.NAME] type = "blackhole"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {
    /// Accept at most this many events per second (a deliberately slow
    /// sink). Absent: as fast as possible.
    #[serde(default)]
    pub rate: Option<Spanned<f64>>,
}

/// Builds a blackhole from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Sink>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: BlackholeConfig, options| {
        let rate = match config.rate {
            Some(rate) if !(rate.get_ref().is_finite() && *rate.get_ref() > 0.0) => {
                return Err(vec![options.error_at(
                    rate.span(),
                    format!("rate must be a positive number of events per second, got {}", rate.get_ref()),
                )]);
            }
            Some(rate) => Some(rate.into_inner()),
            None => None,
        };
        Ok(Box::new(Blackhole { rate }) as Box<dyn Sink>)
    })
}

/// The sink that keeps nothing.
pub struct Blackhole {
    rate: Option<f64>,
}

#[async_trait]
impl Sink for Blackhole {
    async fn write(&mut self, batch: Batch) -> Result<(), ComponentError> {
        if let Some(rate) = self.rate {
            tokio::time::sleep(Duration::from_secs_f64(batch.len() as f64 / rate)).await;
        }
        drop(batch);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ComponentError> {
        Ok(())
    }
}
