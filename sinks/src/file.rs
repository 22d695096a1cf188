//! `file`: events as NDJSON lines appended to a file.
//!
//! File I/O is blocking, so every write runs on tokio's blocking pool with
//! the file handed over and back; the async worker only encodes. A batch
//! counts as sent once its bytes are written to the file (in the page
//! cache); `flush` at shutdown fsyncs, so a clean stop is durable.

use std::io::Write as _;
use std::path::PathBuf;

use async_trait::async_trait;
use pipeline::{Batch, ComponentError, ComponentOptions, ConfigError, Sink};
use serde::Deserialize;

/// `[sinks.NAME] type = "file"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where to write. Parent directories are created.
    pub path: PathBuf,
    /// Append to an existing file (default) or truncate it at start.
    #[serde(default = "default_append")]
    pub append: bool,
}

fn default_append() -> bool {
    true
}

/// Builds a file sink from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Sink>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: FileConfig, options| {
        if config.path.as_os_str().is_empty() {
            return Err(vec![options.error("`path` must not be empty")]);
        }
        Ok(Box::new(FileSink { config, file: None, buffer: Vec::new() }) as Box<dyn Sink>)
    })
}

/// A file sink; the file is opened by [`Sink::open`], not at build time.
pub struct FileSink {
    config: FileConfig,
    file: Option<std::fs::File>,
    buffer: Vec<u8>,
}

#[async_trait]
impl Sink for FileSink {
    async fn open(&mut self) -> Result<(), ComponentError> {
        let path = self.config.path.clone();
        let append = self.config.append;
        let opened = tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| ComponentError::io(format!("cannot create directory {}", parent.display()), e))?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(append)
                .write(true)
                .truncate(!append)
                .open(&path)
                .map_err(|e| ComponentError::io(format!("cannot open {} for writing", path.display()), e))
        })
        .await
        .map_err(|e| ComponentError::Failed(format!("open task failed: {e}")))??;
        self.file = Some(opened);
        Ok(())
    }

    async fn write(&mut self, batch: Batch) -> Result<(), ComponentError> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        crate::ndjson::encode_batch(&batch, &mut buffer);
        drop(batch);
        let mut file = self
            .file
            .take()
            .ok_or_else(|| ComponentError::Failed("file sink written before it was opened".to_owned()))?;
        let path = self.config.path.clone();
        let (file, buffer, result) = tokio::task::spawn_blocking(move || {
            let result = file
                .write_all(&buffer)
                .map_err(|e| ComponentError::io(format!("cannot write to {}", path.display()), e));
            (file, buffer, result)
        })
        .await
        .map_err(|e| ComponentError::Failed(format!("write task failed: {e}")))?;
        self.file = Some(file);
        self.buffer = buffer;
        result
    }

    async fn flush(&mut self) -> Result<(), ComponentError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let path = self.config.path.clone();
        tokio::task::spawn_blocking(move || {
            file.sync_all().map_err(|e| ComponentError::io(format!("cannot fsync {}", path.display()), e))
        })
        .await
        .map_err(|e| ComponentError::Failed(format!("flush task failed: {e}")))?
    }
}
