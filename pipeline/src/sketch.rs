//! `LogSketch`: a DDSketch-style quantile sketch whose mapping and bins are
//! plain, wire-visible data, so any merger can rebuild and merge it.
//!
//! Values are sorted into logarithmic bins: with `gamma` (γ) > 1, bin `i`
//! holds the values in (γ^i, γ^(i+1)]. That is exactly OpenTelemetry's
//! ExponentialHistogram bucket convention, so at the default γ = 2^(1/64)
//! the bins are the buckets of an ExponentialHistogram at scale 6,
//! index for index ([`LogSketch::otel_scale`]). Every value in a bin is
//! within relative error α = (γ−1)/(γ+1) of the bin's representative value
//! 2·γ^(i+1)/(γ+1), which is what [`LogSketch::quantile`] returns; the
//! default γ gives α ≈ 0.54 %.
//!
//! Why not the `sketches-ddsketch` crate: it keeps its bins private, and
//! the wire envelope needs them. This type has no dependencies beyond std.
//!
//! Layout: a dense positive store (`Vec<u64>` counts from a first index,
//! growing both ways), a mirrored negative store keyed by |v|, a zero count
//! (for 0 and for |v| below the smallest positive normal f64), and the exact
//! count, sum, min and max. NaN and ±∞ are rejected: [`LogSketch::add`]
//! returns `false` and records nothing. Each store keeps at most
//! [`MAX_BINS`] bins: when a new high value would exceed that, the lowest
//! bins are collapsed into the lowest kept one (DataDog's
//! "collapsing lowest" store). Collapsing depends only on the highest index
//! ever seen, so the state is a function of the multiset of values added:
//! merging sketches gives the same bins as sketching the union.

use std::iter;

/// Bins kept per store (positive, negative). At the default γ = 2^(1/64),
/// 4096 bins span a factor of 2^64 between the lowest and highest value;
/// beyond that the lowest values lose their accuracy guarantee (they are
/// counted in the lowest kept bin), never their count.
pub const MAX_BINS: usize = 4096;

/// The OpenTelemetry ExponentialHistogram scale of the default mapping:
/// γ = 2^(2^−6) = 2^(1/64).
pub const DEFAULT_SCALE: i32 = 6;

/// The DataDog `IndexMapping.indexOffset` under which a DataDog reader puts
/// each of our bins at the same value range: **0**.
///
/// DataDog's `LogarithmicMapping` (github.com/DataDog/sketches-go,
/// `ddsketch/mapping/logarithmic_mapping.go`, commit 36e98e0) computes
/// `Index(v) = floor(ln(v)·(1/ln γ) + indexOffset)` and
/// `LowerBound(j) = exp((j − indexOffset)·ln γ)`, so its bin `j` covers
/// [γ^(j−indexOffset), γ^(j+1−indexOffset)). Ours computes
/// `ceil(log_γ v) − 1`, bin `i` covering (γ^i, γ^(i+1)]. With indexOffset =
/// 0 the two agree for every value except exact bin boundaries (our bins
/// are closed above, theirs below: a value exactly equal to γ^k — in
/// practice an exact power of two at scale 6 — sits one bin lower here).
/// Their representative value `Value(j) = LowerBound(j)·(1 + α)` =
/// γ^j·2γ/(γ+1) is also ours, so a DataDog reader returns the same
/// quantiles. No other offset helps: any non-zero offset shifts every
/// boundary. The wire's `interpolation` is `NONE` (an exact logarithm).
pub fn ddsketch_index_offset() -> f64 {
    0.0
}

/// Why a sketch could not be made, merged or rebuilt.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum SketchError {
    /// γ must be finite and > 1, and not so close to 1 that bin indexes of
    /// finite values overflow 32 bits (log2 γ ≥ ~5.2e-7).
    #[error("gamma must be a finite number greater than 1 (and at least 1 + 3.6e-7), got {0}")]
    InvalidGamma(f64),
    /// α must be in (0, 1).
    #[error("relative accuracy must be greater than 0 and less than 1, got {0}")]
    InvalidRelativeAccuracy(f64),
    /// Sketches with different mappings cannot be merged without re-binning.
    #[error("cannot merge sketches with different gamma ({ours} and {theirs})")]
    GammaMismatch { ours: f64, theirs: f64 },
    /// Decoded parts that no sketch could have produced.
    #[error("inconsistent sketch parts: {0}")]
    InvalidParts(&'static str),
}

/// A quantile sketch with relative-error guarantees. Plain data: clone it,
/// compare it, take it apart with [`LogSketch::to_parts`] and rebuild it
/// with [`LogSketch::from_parts`].
#[derive(Clone, Debug, PartialEq)]
pub struct LogSketch {
    mapping: Mapping,
    positive: Store,
    negative: Store,
    zero_count: u64,
    count: u64,
    sum: f64,
    /// +∞ while empty.
    min: f64,
    /// −∞ while empty.
    max: f64,
}

/// A sketch taken apart, field for field, for wire encoders and decoders
/// (DataDog `ddsketch.proto`: `mapping.gamma`, `positiveValues` /
/// `negativeValues` as `contiguousBinCounts` from `contiguousBinIndexOffset`,
/// `zeroCount`; `indexOffset` is [`ddsketch_index_offset`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SketchParts {
    pub gamma: f64,
    /// Values recorded: the bins plus `zero_count`.
    pub count: u64,
    /// Sum of the values; 0 when empty.
    pub sum: f64,
    /// Exact smallest value; 0 when empty.
    pub min: f64,
    /// Exact largest value; 0 when empty.
    pub max: f64,
    pub zero_count: u64,
    /// Index of `positive_bins[0]`.
    pub positive_offset: i32,
    pub positive_bins: Vec<u64>,
    /// Index of `negative_bins[0]` (negative values are binned by |v|).
    pub negative_offset: i32,
    pub negative_bins: Vec<u64>,
}

impl Default for LogSketch {
    /// γ = 2^(1/64): OpenTelemetry scale 6, α ≈ 0.54 %.
    fn default() -> LogSketch {
        LogSketch::empty(Mapping::from_log2_gamma(f64::from(-DEFAULT_SCALE).exp2(), Some(DEFAULT_SCALE)))
    }
}

impl LogSketch {
    /// An empty sketch with base `gamma`. A γ within 1e-12 (relative, in
    /// log2) of 2^(2^−s) for an OpenTelemetry scale s in −10..=20 is snapped
    /// to exactly that, so its bins line up with the scale's buckets.
    pub fn new(gamma: f64) -> Result<LogSketch, SketchError> {
        Mapping::new(gamma).map(LogSketch::empty)
    }

    /// An empty sketch whose quantiles are within relative error `alpha`:
    /// γ = (1+α)/(1−α).
    pub fn with_relative_accuracy(alpha: f64) -> Result<LogSketch, SketchError> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(SketchError::InvalidRelativeAccuracy(alpha));
        }
        LogSketch::new((1.0 + alpha) / (1.0 - alpha))
    }

    fn empty(mapping: Mapping) -> LogSketch {
        LogSketch {
            mapping,
            positive: Store::default(),
            negative: Store::default(),
            zero_count: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Records one value. Returns `false` (and records nothing) for NaN and
    /// ±∞.
    pub fn add(&mut self, value: f64) -> bool {
        self.add_n(value, 1)
    }

    /// Records `n` copies of a value (`n = 0` records nothing). Returns
    /// `false` (and records nothing) for NaN and ±∞.
    pub fn add_n(&mut self, value: f64, n: u64) -> bool {
        if !value.is_finite() {
            return false;
        }
        if n == 0 {
            return true;
        }
        let magnitude = value.abs();
        if magnitude < f64::MIN_POSITIVE {
            self.zero_count += n;
        } else if value > 0.0 {
            self.positive.add(self.mapping.index(magnitude), n);
        } else {
            self.negative.add(self.mapping.index(magnitude), n);
        }
        // +0.0 for ±0, so min and max do not depend on the order of adds.
        let value = if value == 0.0 { 0.0 } else { value };
        self.count += n;
        self.sum += value * n as f64;
        if value < self.min {
            self.min = value;
        }
        if value > self.max {
            self.max = value;
        }
        true
    }

    /// Adds every value of `other`. Both must have the same γ; the result
    /// has the same bins as a sketch of both inputs' values.
    pub fn merge(&mut self, other: &LogSketch) -> Result<(), SketchError> {
        if self.mapping.gamma.to_bits() != other.mapping.gamma.to_bits() {
            return Err(SketchError::GammaMismatch { ours: self.mapping.gamma, theirs: other.mapping.gamma });
        }
        if other.count == 0 {
            return Ok(());
        }
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zero_count += other.zero_count;
        self.count += other.count;
        self.sum += other.sum;
        if other.min < self.min {
            self.min = other.min;
        }
        if other.max > self.max {
            self.max = other.max;
        }
        Ok(())
    }

    /// Forgets every value, keeping γ and the stores' allocations.
    pub fn clear(&mut self) {
        *self = LogSketch {
            positive: self.positive.cleared(),
            negative: self.negative.cleared(),
            ..Self::empty(self.mapping)
        };
    }

    /// The value at quantile `q` in [0, 1]; `None` when empty or `q` is out
    /// of range. Rank convention as DDSketch's: the value at 0-based
    /// position ⌊q·(count−1)⌋ of the sorted values, returned within relative
    /// error [`LogSketch::relative_accuracy`] (exact for q = 0 and q = 1,
    /// and for values in the zero bucket). Estimates are clamped to the
    /// exact [min, max], which can only bring them closer.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) || self.count == 0 {
            return None;
        }
        if q == 0.0 {
            return Some(self.min);
        }
        if q == 1.0 {
            return Some(self.max);
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        let n_negative = self.negative.total;
        let estimate = if rank < n_negative {
            -self.mapping.value(self.negative.key_at_rank(n_negative - 1 - rank))
        } else if rank < n_negative + self.zero_count {
            0.0
        } else {
            self.mapping.value(self.positive.key_at_rank(rank - n_negative - self.zero_count))
        };
        Some(estimate.clamp(self.min, self.max))
    }

    /// The base of the mapping (> 1).
    pub fn gamma(&self) -> f64 {
        self.mapping.gamma
    }

    /// α = (γ−1)/(γ+1): the relative error bound of [`LogSketch::quantile`].
    pub fn relative_accuracy(&self) -> f64 {
        (self.mapping.gamma - 1.0) / (self.mapping.gamma + 1.0)
    }

    /// The OpenTelemetry ExponentialHistogram scale whose buckets are these
    /// bins (γ = 2^(2^−scale)), if γ is one of them; then the positive and
    /// negative bins are the data point's `positive` / `negative` buckets
    /// (`offset`, `bucket_counts`) as they are.
    pub fn otel_scale(&self) -> Option<i32> {
        self.mapping.scale
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sum of the values recorded (0 when empty).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Exact smallest value; `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Exact largest value; `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Values equal to 0 or smaller in magnitude than the smallest positive
    /// normal f64.
    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// (index of the first bin, counts) of the positive values. Empty, or
    /// starting and ending with a non-zero count.
    pub fn positive_bins(&self) -> (i32, &[u64]) {
        (self.positive.offset, &self.positive.bins)
    }

    /// (index of the first bin, counts) of the negative values, binned by
    /// |v|. Empty, or starting and ending with a non-zero count.
    pub fn negative_bins(&self) -> (i32, &[u64]) {
        (self.negative.offset, &self.negative.bins)
    }

    /// The representative value of bin `index`: 2·γ^(index+1)/(γ+1).
    pub fn bin_value(&self, index: i32) -> f64 {
        self.mapping.value(index)
    }

    /// Takes the sketch apart for a wire encoder.
    pub fn to_parts(&self) -> SketchParts {
        SketchParts {
            gamma: self.mapping.gamma,
            count: self.count,
            sum: self.sum,
            min: self.min().unwrap_or(0.0),
            max: self.max().unwrap_or(0.0),
            zero_count: self.zero_count,
            positive_offset: self.positive.offset,
            positive_bins: self.positive.bins.clone(),
            negative_offset: self.negative.offset,
            negative_bins: self.negative.bins.clone(),
        }
    }

    /// Rebuilds a sketch from decoded wire data, checking that the parts
    /// are consistent: a valid γ, bin indexes that fit in i32, `count` equal
    /// to the bins plus `zero_count`, and (when not empty) finite
    /// `min ≤ max` and a sum that is not NaN. Leading and trailing zero bins
    /// are dropped and a store wider than [`MAX_BINS`] is collapsed, as
    /// this type would have done itself. For an empty sketch, `sum`, `min`
    /// and `max` are ignored.
    pub fn from_parts(parts: SketchParts) -> Result<LogSketch, SketchError> {
        let mut sketch = LogSketch::new(parts.gamma)?;
        sketch.positive = Store::from_parts(parts.positive_offset, parts.positive_bins)?;
        sketch.negative = Store::from_parts(parts.negative_offset, parts.negative_bins)?;
        sketch.zero_count = parts.zero_count;
        let binned = sketch
            .positive
            .total
            .checked_add(sketch.negative.total)
            .and_then(|n| n.checked_add(parts.zero_count))
            .ok_or(SketchError::InvalidParts("counts overflow 64 bits"))?;
        if binned != parts.count {
            return Err(SketchError::InvalidParts("count is not the sum of the bins and zero_count"));
        }
        if parts.count > 0 {
            if !(parts.min.is_finite() && parts.max.is_finite() && parts.min <= parts.max) {
                return Err(SketchError::InvalidParts("min and max must be finite with min <= max"));
            }
            if parts.sum.is_nan() {
                return Err(SketchError::InvalidParts("sum is NaN"));
            }
            sketch.count = parts.count;
            sketch.sum = parts.sum;
            sketch.min = if parts.min == 0.0 { 0.0 } else { parts.min };
            sketch.max = if parts.max == 0.0 { 0.0 } else { parts.max };
        }
        Ok(sketch)
    }
}

/// The logarithmic index mapping. Bin boundaries are the computed values
/// `bound(i) = 2^(i·log2 γ)`; bin `i` is (bound(i), bound(i+1)].
#[derive(Clone, Copy, Debug, PartialEq)]
struct Mapping {
    gamma: f64,
    log2_gamma: f64,
    /// 1 / log2 γ (exactly 2^scale when snapped to a scale).
    multiplier: f64,
    scale: Option<i32>,
}

/// |log2 v| of every finite non-zero-bucket f64 is below this.
const MAX_ABS_LOG2: f64 = 1100.0;

impl Mapping {
    fn new(gamma: f64) -> Result<Mapping, SketchError> {
        if !(gamma.is_finite() && gamma > 1.0) {
            return Err(SketchError::InvalidGamma(gamma));
        }
        let log2_gamma = gamma.log2();
        for scale in -10..=20 {
            let exact = f64::from(-scale).exp2();
            if ((log2_gamma - exact) / exact).abs() < 1e-12 {
                return Ok(Mapping::from_log2_gamma(exact, Some(scale)));
            }
        }
        if !(log2_gamma > 0.0 && MAX_ABS_LOG2 / log2_gamma < f64::from(i32::MAX - 2)) {
            return Err(SketchError::InvalidGamma(gamma));
        }
        Ok(Mapping { gamma, log2_gamma, multiplier: 1.0 / log2_gamma, scale: None })
    }

    fn from_log2_gamma(log2_gamma: f64, scale: Option<i32>) -> Mapping {
        Mapping { gamma: log2_gamma.exp2(), log2_gamma, multiplier: 1.0 / log2_gamma, scale }
    }

    /// Lower (exclusive) bound of bin `index`.
    fn bound(&self, index: i64) -> f64 {
        (index as f64 * self.log2_gamma).exp2()
    }

    /// The bin of a finite magnitude ≥ `f64::MIN_POSITIVE`:
    /// ⌈log_γ v⌉ − 1, decided exactly against `bound` when the logarithm
    /// lands within rounding error of a boundary.
    fn index(&self, magnitude: f64) -> i32 {
        let x = magnitude.log2() * self.multiplier;
        let nearest = x.round();
        // Generous: the logarithm and `bound` are each off by a few ulps.
        let tolerance = 1e-12 * (x.abs() + self.multiplier) + 1e-12;
        let index = if (x - nearest).abs() <= tolerance {
            let boundary = nearest as i64;
            if magnitude <= self.bound(boundary) {
                boundary - 1
            } else {
                boundary
            }
        } else {
            x.ceil() as i64 - 1
        };
        index as i32
    }

    /// 2·γ^(index+1)/(γ+1) = bound(index)·(1+α): within α of every value in
    /// the bin.
    fn value(&self, index: i32) -> f64 {
        self.bound(i64::from(index)) * (2.0 / (1.0 + 1.0 / self.gamma))
    }
}

/// Dense counts for a contiguous range of bin indexes. Invariants: empty
/// (offset 0, total 0) or first and last bins non-zero; at most
/// [`MAX_BINS`] bins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Store {
    offset: i32,
    bins: Vec<u64>,
    total: u64,
}

impl Store {
    fn cleared(&mut self) -> Store {
        let mut bins = std::mem::take(&mut self.bins);
        bins.clear();
        Store { offset: 0, bins, total: 0 }
    }

    fn hi(&self) -> i64 {
        i64::from(self.offset) + self.bins.len() as i64 - 1
    }

    fn add(&mut self, index: i32, n: u64) {
        self.total += n;
        if self.bins.is_empty() {
            self.offset = index;
            self.bins.push(n);
            return;
        }
        let index = i64::from(index);
        let (lo, hi) = (i64::from(self.offset), self.hi());
        if index < lo || index > hi {
            self.extend(index.min(lo), index.max(hi));
        }
        let lo = i64::from(self.offset);
        self.bins[(index.max(lo) - lo) as usize] += n;
    }

    fn merge(&mut self, other: &Store) {
        if other.bins.is_empty() {
            return;
        }
        if self.bins.is_empty() {
            self.clone_from(other);
            return;
        }
        let other_lo = i64::from(other.offset);
        self.extend(other_lo.min(i64::from(self.offset)), other.hi().max(self.hi()));
        let lo = i64::from(self.offset);
        for (position, &n) in other.bins.iter().enumerate() {
            if n > 0 {
                self.bins[((other_lo + position as i64).max(lo) - lo) as usize] += n;
            }
        }
        self.total += other.total;
    }

    /// Grows a non-empty store to cover `[want_lo, want_hi]`, collapsing
    /// everything below `want_hi − MAX_BINS + 1` into that bin.
    fn extend(&mut self, want_lo: i64, want_hi: i64) {
        let lo = i64::from(self.offset);
        let new_lo = want_lo.max(want_hi - MAX_BINS as i64 + 1);
        if new_lo <= lo {
            self.bins.splice(0..0, iter::repeat_n(0, (lo - new_lo) as usize));
        } else {
            let n_below = ((new_lo - lo) as usize).min(self.bins.len());
            let folded: u64 = self.bins.drain(..n_below).sum();
            if self.bins.is_empty() {
                // Every old bin was below the new range.
                self.bins.push(0);
            }
            self.bins[0] += folded;
        }
        self.offset = new_lo as i32;
        self.bins.resize((want_hi - new_lo + 1) as usize, 0);
    }

    /// The index of the bin holding the value at 0-based `rank`.
    fn key_at_rank(&self, rank: u64) -> i32 {
        let mut seen = 0;
        for (position, &n) in self.bins.iter().enumerate() {
            seen += n;
            if seen > rank {
                return self.offset + position as i32;
            }
        }
        self.hi() as i32
    }

    fn from_parts(offset: i32, mut bins: Vec<u64>) -> Result<Store, SketchError> {
        let Some(first) = bins.iter().position(|&n| n > 0) else { return Ok(Store::default()) };
        let last = bins.iter().rposition(|&n| n > 0).unwrap_or(first);
        let lo = i64::from(offset) + first as i64;
        let hi = i64::from(offset) + last as i64;
        if hi > i64::from(i32::MAX) {
            return Err(SketchError::InvalidParts("bin index overflows i32"));
        }
        let total = bins[first..=last]
            .iter()
            .try_fold(0u64, |sum, &n| sum.checked_add(n))
            .ok_or(SketchError::InvalidParts("counts overflow 64 bits"))?;
        bins.truncate(last + 1);
        bins.drain(..first);
        let mut store = Store { offset: lo as i32, bins, total };
        if store.bins.len() > MAX_BINS {
            store.extend(lo, hi);
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests;
