//! `SketchEvent` ⇄ `SketchEnvelope`: the histogram travels in DataDog's
//! public `ddsketch.proto` shape (mapping γ and index offset, contiguous
//! bins), so a merger in any language can rebuild and merge it.
//!
//! Decoding accepts both store layouts DataDog writers use (contiguous
//! counts and the sparse `binCounts` map, even both at once) and rejects
//! counts no sketch of ours could hold (negative, fractional, not finite).

use std::collections::BTreeMap;

use pipeline::event::SketchEvent;
use pipeline::sketch::{ddsketch_index_offset, LogSketch, SketchError, SketchParts};
use schemas::v1;

use crate::protobuf::EnvelopeContext;

/// Why a `SketchEnvelope` could not be turned back into a sketch.
#[derive(Debug, thiserror::Error)]
pub enum SketchDecodeError {
    #[error("sketch envelope has no histogram")]
    MissingHistogram,
    #[error("sketch histogram has no index mapping")]
    MissingMapping,
    #[error("unsupported index mapping: index offset {0} (hostflow writes {expected})", expected = ddsketch_index_offset())]
    UnsupportedOffset(f64),
    #[error("unsupported index mapping interpolation {0} (only NONE, an exact logarithm, is supported)")]
    UnsupportedInterpolation(i32),
    #[error("bin count {0} is not a whole, non-negative number")]
    BadCount(f64),
    #[error("bins span more indexes than a sketch can hold")]
    TooWide,
    #[error("bin counts add up to more than 2^64")]
    CountOverflow,
    #[error(transparent)]
    Sketch(#[from] SketchError),
}

/// The wire form of one sketch.
pub fn sketch_envelope(event: &SketchEvent, cx: &EnvelopeContext) -> v1::SketchEnvelope {
    let parts = event.sketch.to_parts();
    // An empty store is left out entirely (readers treat a missing store as
    // empty), which saves bytes on every all-positive sketch.
    let store = |offset: i32, bins: &[u64]| {
        (!bins.is_empty()).then(|| v1::Store {
            bin_counts: BTreeMap::new(),
            contiguous_bin_counts: bins.iter().map(|&n| n as f64).collect(),
            contiguous_bin_index_offset: offset,
        })
    };
    v1::SketchEnvelope {
        metric_name: event.metric_name.to_string(),
        gamma: parts.gamma,
        sketch_version: schemas::SKETCH_VERSION,
        histogram: Some(v1::DdSketch {
            mapping: Some(v1::IndexMapping {
                gamma: parts.gamma,
                index_offset: ddsketch_index_offset(),
                interpolation: v1::index_mapping::Interpolation::None as i32,
            }),
            positive_values: store(parts.positive_offset, &parts.positive_bins),
            negative_values: store(parts.negative_offset, &parts.negative_bins),
            zero_count: parts.zero_count as f64,
        }),
        key: event.key.to_string(),
        entity_guid: cx.entity_guid.clone(),
        window_start_ns: event.window_start_ns,
        window_end_ns: event.window_end_ns,
        count: parts.count,
        sum: parts.sum,
        min: parts.min,
        max: parts.max,
    }
}

/// Rebuilds the sketch an envelope carries.
pub fn sketch_from_envelope(envelope: &v1::SketchEnvelope) -> Result<LogSketch, SketchDecodeError> {
    let histogram = envelope.histogram.as_ref().ok_or(SketchDecodeError::MissingHistogram)?;
    let mapping = histogram.mapping.as_ref().ok_or(SketchDecodeError::MissingMapping)?;
    if mapping.index_offset != ddsketch_index_offset() {
        return Err(SketchDecodeError::UnsupportedOffset(mapping.index_offset));
    }
    if mapping.interpolation != v1::index_mapping::Interpolation::None as i32 {
        return Err(SketchDecodeError::UnsupportedInterpolation(mapping.interpolation));
    }
    let (positive_offset, positive_bins) = dense(histogram.positive_values.as_ref())?;
    let (negative_offset, negative_bins) = dense(histogram.negative_values.as_ref())?;
    let zero_count = whole(histogram.zero_count)?;
    let count = positive_bins
        .iter()
        .chain(&negative_bins)
        .try_fold(zero_count, |total, &n| total.checked_add(n))
        .ok_or(SketchDecodeError::CountOverflow)?;
    Ok(LogSketch::from_parts(SketchParts {
        gamma: mapping.gamma,
        count,
        sum: envelope.sum,
        min: envelope.min,
        max: envelope.max,
        zero_count,
        positive_offset,
        positive_bins,
        negative_offset,
        negative_bins,
    })?)
}

fn whole(count: f64) -> Result<u64, SketchDecodeError> {
    // `u64::MAX as f64` is 2^64 itself, one past the largest u64: strictly below.
    if count.is_finite() && count >= 0.0 && count.fract() == 0.0 && count < u64::MAX as f64 {
        Ok(count as u64)
    } else {
        Err(SketchDecodeError::BadCount(count))
    }
}

/// Both store layouts merged into one contiguous run of bins.
fn dense(store: Option<&v1::Store>) -> Result<(i32, Vec<u64>), SketchDecodeError> {
    let Some(store) = store else { return Ok((0, Vec::new())) };
    let mut bins: BTreeMap<i64, u64> = BTreeMap::new();
    for (i, count) in store.contiguous_bin_counts.iter().enumerate() {
        let count = whole(*count)?;
        if count > 0 {
            let bin = bins.entry(i64::from(store.contiguous_bin_index_offset) + i as i64).or_default();
            *bin = bin.checked_add(count).ok_or(SketchDecodeError::CountOverflow)?;
        }
    }
    for (index, count) in &store.bin_counts {
        let count = whole(*count)?;
        if count > 0 {
            let bin = bins.entry(i64::from(*index)).or_default();
            *bin = bin.checked_add(count).ok_or(SketchDecodeError::CountOverflow)?;
        }
    }
    let (Some((&first, _)), Some((&last, _))) = (bins.first_key_value(), bins.last_key_value()) else {
        return Ok((0, Vec::new()));
    };
    let width = usize::try_from(last - first + 1).map_err(|_| SketchDecodeError::TooWide)?;
    if width > 1 << 20 {
        return Err(SketchDecodeError::TooWide);
    }
    let mut dense = vec![0u64; width];
    for (index, count) in bins {
        dense[(index - first) as usize] = count;
    }
    let offset = i32::try_from(first).map_err(|_| SketchDecodeError::TooWide)?;
    Ok((offset, dense))
}
