//! L3's two scores, as plain functions of counts so they can be checked
//! by hand.
//!
//! - [`kl`]: the Kullback-Leibler divergence D(window ‖ baseline) in nats,
//!   both distributions smoothed by adding [`ALPHA`] to every bin of the
//!   support. The support is the bins seen in the window *or* the
//!   baseline: a bin seen in neither says nothing, and counting it would
//!   add a bias that grows with the domain and shrinks with the window
//!   (smoothing mass on empty bins weighs more in a 20-event window than
//!   in a 20 000-event baseline).
//! - [`robust_z`]: (x − median) / (1.4826 · MAD) over the baseline's
//!   per-window counts, the MAD floored at [`mad_floor`] so a perfectly
//!   regular entity (MAD 0) does not fire on one extra event.

use super::domain::MAX_BINS;

/// Additive smoothing per bin (Krichevsky-Trofimov: ½).
pub const ALPHA: f64 = 0.5;
/// Scales a MAD to a standard deviation under normality.
pub const MAD_SCALE: f64 = 1.4826;

/// Smoothed D(window ‖ baseline) over the first `bins` bins, in nats.
pub fn kl(window: &[u32], base: &[u64], bins: usize) -> f64 {
    let bins = bins.min(window.len()).min(base.len());
    let mut support = 0u32;
    let (mut w_total, mut b_total) = (0.0, 0.0);
    for i in 0..bins {
        if window[i] > 0 || base[i] > 0 {
            support += 1;
            w_total += f64::from(window[i]);
            b_total += base[i] as f64;
        }
    }
    if support == 0 {
        return 0.0;
    }
    let k = f64::from(support) * ALPHA;
    let mut d = 0.0;
    for i in 0..bins {
        if window[i] > 0 || base[i] > 0 {
            let p = (f64::from(window[i]) + ALPHA) / (w_total + k);
            let q = (base[i] as f64 + ALPHA) / (b_total + k);
            d += p * (p / q).ln();
        }
    }
    d.max(0.0)
}

/// The bins that drove a KL score most: `(bin, window share, baseline
/// share)` of the (at most) `n` largest contributions, largest first, ties
/// by bin. Shares are unsmoothed (what a reader expects to see).
pub fn drivers(window: &[u32], base: &[u64], bins: usize, n: usize) -> Vec<(usize, f64, f64)> {
    let bins = bins.min(MAX_BINS).min(window.len()).min(base.len());
    let w_total: f64 = window[..bins].iter().map(|&c| f64::from(c)).sum();
    let b_total: f64 = base[..bins].iter().map(|&c| c as f64).sum();
    let support = (0..bins).filter(|&i| window[i] > 0 || base[i] > 0).count() as f64;
    let k = support * ALPHA;
    let mut terms: Vec<(f64, usize)> = (0..bins)
        .filter(|&i| window[i] > 0 || base[i] > 0)
        .map(|i| {
            let p = (f64::from(window[i]) + ALPHA) / (w_total + k);
            let q = (base[i] as f64 + ALPHA) / (b_total + k);
            ((p * (p / q).ln()).abs(), i)
        })
        .collect();
    terms.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let share = |c: f64, total: f64| if total > 0.0 { c / total } else { 0.0 };
    terms
        .into_iter()
        .take(n)
        .map(|(_, i)| (i, share(f64::from(window[i]), w_total), share(base[i] as f64, b_total)))
        .collect()
}

/// The median of `values` (the mean of the two middle ones for an even
/// count; 0 for none). Sorts `values`.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// `(median, MAD)` of per-window counts.
pub fn median_mad(counts: &[u32]) -> (f64, f64) {
    let mut values: Vec<f64> = counts.iter().map(|&c| f64::from(c)).collect();
    let med = median(&mut values);
    for v in &mut values {
        *v = (*v - med).abs();
    }
    (med, median(&mut values))
}

/// The smallest MAD a z-score divides by: one event, or a tenth of the
/// median, whichever is larger.
pub fn mad_floor(median: f64) -> f64 {
    (median / 10.0).max(1.0)
}

/// The robust z-score of `x` against a baseline's median and MAD.
pub fn robust_z(x: f64, median: f64, mad: f64) -> f64 {
    (x - median) / (MAD_SCALE * mad.max(mad_floor(median)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn kl_on_hand_checked_numbers() {
        // p = (3.5, 1.5) / 5 = (0.7, 0.3); q = (1.5, 3.5) / 5 = (0.3, 0.7):
        // 0.7 ln(7/3) + 0.3 ln(3/7) = 0.4 ln(7/3).
        close(kl(&[3, 1], &[1, 3], 2), 0.4 * (7.0f64 / 3.0).ln());
        close(kl(&[3, 1], &[1, 3], 2), 0.338_919_144_154_881_5);
        // Bins seen in neither are outside the support: same value.
        close(kl(&[3, 0, 1, 0], &[1, 0, 3, 0], 4), 0.4 * (7.0f64 / 3.0).ln());
        // Identical shares: 0.
        close(kl(&[2, 2], &[10, 10], 2), 0.0);
        // A bin the baseline never saw: p = (9.5, 0.5)/10 over q = (0.5, 99.5)/100
        // … reversed: window all in bin 1, baseline all in bin 0.
        let p: [f64; 2] = [0.5 / 10.0, 9.5 / 10.0];
        let q: [f64; 2] = [99.5 / 100.0, 0.5 / 100.0];
        let expected = p[0] * (p[0] / q[0]).ln() + p[1] * (p[1] / q[1]).ln();
        close(kl(&[0, 9], &[99, 0], 2), expected);
        close(kl(&[], &[], 0), 0.0);
    }

    #[test]
    fn drivers_name_the_largest_terms() {
        // Terms: bin 0 −0.135, bin 1 +4.23, bin 2 +0.283 (by magnitude).
        let d = drivers(&[0, 9, 1], &[99, 0, 1], 3, 2);
        assert_eq!(d.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2]);
        close(d[0].1, 0.9);
        close(d[0].2, 0.0);
        close(d[1].1, 0.1);
        close(d[1].2, 0.01);
        let all = drivers(&[0, 9, 1], &[99, 0, 1], 3, 5);
        assert_eq!(all.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2, 0]);
    }

    #[test]
    fn robust_z_on_hand_checked_numbers() {
        // Sorted 10 20 30 40 100: median 30; deviations 0 10 10 20 70: MAD 10.
        let (med, mad) = median_mad(&[40, 10, 100, 30, 20]);
        close(med, 30.0);
        close(mad, 10.0);
        close(robust_z(80.0, med, mad), 50.0 / 14.826);
        // Even count: median of 1 2 3 4 is 2.5; deviations 0.5 0.5 1.5 1.5: MAD 1.
        let (med, mad) = median_mad(&[4, 1, 3, 2]);
        close(med, 2.5);
        close(mad, 1.0);
        // MAD 0 is floored: median 60 → floor 6.
        let (med, mad) = median_mad(&[60, 60, 60]);
        close(mad, 0.0);
        close(robust_z(66.0, med, mad), 6.0 / (1.4826 * 6.0));
        close(robust_z(3.0, 1.0, 0.0), 2.0 / 1.4826);
    }
}
