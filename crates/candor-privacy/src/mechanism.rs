//! Noise for counts and sums: the discrete Laplace mechanism on integers, and the
//! quantization that turns clamped real values into integers first.
//!
//! **Guarantee.** For an integer-valued query with L1 sensitivity `Δ` (under the
//! subject-level neighbouring relation, made finite by `bounds`), releasing
//! `x + Z` with `Z ~ L_Z(0, b)` (discrete Laplace, `P[Z = z] ∝ exp(-|z|/b)`) is
//! `Δ/b`-DP (pure). We do not do this arithmetic ourselves: the measurement is OpenDP's
//! `make_laplace` over `AtomDomain<i64>` / `AbsoluteDistance<i64>`, whose privacy map is
//! proven in OpenDP (`measurements/noise/…`); we pick `b = Δ/ε` and then *ask that privacy
//! map* what ε it certifies for `Δ`, nudging `b` up one ulp at a time until the certified ε
//! is ≤ the ε we charged. So floating-point rounding in `Δ/ε` can never spend more than
//! was charged.
//!
//! **Sampler.** OpenDP's exact sampler of Canonne, Kamath & Steinke, *The Discrete
//! Gaussian for Differential Privacy* (NeurIPS 2020, arXiv:2004.00010): rational
//! arithmetic and Bernoulli(exp(-x)) trials, no floating-point inverse CDF, so none of the
//! Mironov (CCS 2012) floating-point attacks apply. The sampler cannot be seeded; the
//! statistical tests below use enough draws to be stable.
//!
//! **Real values.** Sums of reals are computed on a grid: each clamped value `v ∈ [lo, hi]`
//! becomes the integer `round(v / u)` where `u` is a power of two with
//! `max(|lo|, |hi|) / u ≤ 2^20`. Division by a power of two is exact, so every subject's
//! per-group contribution is an integer of magnitude ≤ `ceil(max(|lo|,|hi|)/u)`, which is the
//! exact integer sensitivity used. No floating-point sum ever meets the noise (the
//! problem described by Casacuberta et al., *Widespread Underestimation of Sensitivity in
//! Differentially Private Libraries*, CCS 2022, cannot occur). The grid adds at most `u/2`
//! error per subject, below `2^-21` of the clamp range.
//!
//! **Intervals.** `ci95` is `value ± floor(a)` with `a` from OpenDP's
//! `discrete_laplacian_scale_to_accuracy(b, 0.05)`, i.e. `P[|Z| ≥ a] = 0.05` for the
//! continuous extension of the tail; for integer noise `P[|Z| ≤ floor(a)] ≥ 0.95`. It is an
//! interval for the (bounded) pre-noise aggregate, not for the unbounded one.

use dashu::rational::RBig;
use opendp::core::Measurement;
use opendp::domains::AtomDomain;
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::AbsoluteDistance;

/// Errors from building or running a mechanism (never data-dependent).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoiseError {
    #[error("epsilon must be finite and > 0, got {0}")]
    Epsilon(f64),
    #[error("invalid clamp bounds [{0}, {1}]")]
    Bounds(f64, f64),
    #[error("could not calibrate noise: {0}")]
    Calibration(String),
    #[error("random number generator failed: {0}")]
    Rng(String),
}

type LaplaceMeasurement = Measurement<AtomDomain<i64>, AbsoluteDistance<i64>, MaxDivergence, i64>;

/// A calibrated discrete Laplace mechanism for one integer statistic.
pub struct DiscreteLaplace {
    scale: f64,
    epsilon: f64,
    measurement: LaplaceMeasurement,
}

impl std::fmt::Debug for DiscreteLaplace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscreteLaplace")
            .field("scale", &self.scale)
            .field("epsilon", &self.epsilon)
            .finish()
    }
}

impl DiscreteLaplace {
    /// The smallest scale (up to a few ulps) for which OpenDP certifies that an
    /// L1-sensitivity-`sensitivity` statistic is `epsilon`-DP.
    pub fn calibrate(sensitivity: u64, epsilon: f64) -> Result<Self, NoiseError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(NoiseError::Epsilon(epsilon));
        }
        let d_in =
            i64::try_from(sensitivity).map_err(|e| NoiseError::Calibration(e.to_string()))?;
        let mut scale = sensitivity as f64 / epsilon;
        for _ in 0..64 {
            let measurement = make_laplace(
                AtomDomain::<i64>::default(),
                AbsoluteDistance::<i64>::default(),
                scale,
                None,
            )
            .map_err(|e| NoiseError::Calibration(e.to_string()))?;
            let certified = measurement
                .map(&d_in)
                .map_err(|e| NoiseError::Calibration(e.to_string()))?;
            if certified <= epsilon {
                return Ok(Self {
                    scale,
                    epsilon: certified,
                    measurement,
                });
            }
            scale = f64::from_bits(scale.to_bits() + 1);
        }
        Err(NoiseError::Calibration(format!(
            "no scale certifies ε={epsilon} for Δ={sensitivity}"
        )))
    }

    /// Noise scale `b` (in the statistic's integer units).
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The ε OpenDP's privacy map certifies (≤ the requested ε).
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// `x + Z`, `Z ~ L_Z(0, scale)` (saturating at the i64 range).
    pub fn release(&self, x: i64) -> Result<i64, NoiseError> {
        self.measurement
            .invoke(&x)
            .map_err(|e| NoiseError::Rng(e.to_string()))
    }

    /// Half-width `h` with `P[|Z| ≤ h] ≥ 0.95`.
    pub fn ci95_halfwidth(&self) -> i64 {
        discrete_laplace_halfwidth(self.scale, 0.05)
    }
}

/// Half-width `h` (an integer) with `P[|Z| ≤ h] ≥ 1 - alpha` for `Z ~ L_Z(0, scale)`.
pub fn discrete_laplace_halfwidth(scale: f64, alpha: f64) -> i64 {
    match opendp::accuracy::discrete_laplacian_scale_to_accuracy(scale, alpha) {
        // `as` saturates; a NaN cannot come out of a valid scale/alpha
        Ok(a) => a.floor().max(0.0) as i64,
        Err(_) => i64::MAX,
    }
}

/// Draws one discrete Laplace sample directly (used by tests and by callers that do their
/// own accounting). Prefer [`DiscreteLaplace`], which ties the scale to a certified ε.
pub fn sample_discrete_laplace(scale: f64) -> Result<i64, NoiseError> {
    let scale = RBig::try_from(scale).map_err(|e| NoiseError::Calibration(format!("{e:?}")))?;
    let z = opendp::traits::samplers::sample_discrete_laplace(scale)
        .map_err(|e| NoiseError::Rng(e.to_string()))?;
    i64::try_from(z).map_err(|e| NoiseError::Rng(e.to_string()))
}

/// Maps clamped reals in `[lo, hi]` to integers on a power-of-two grid (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    lo: f64,
    hi: f64,
    unit: f64,
}

/// Grid resolution: `max(|lo|, |hi|) / unit ≤ 2^GRID_BITS`.
const GRID_BITS: i32 = 20;

impl Quantizer {
    pub fn new(lo: f64, hi: f64) -> Result<Self, NoiseError> {
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(NoiseError::Bounds(lo, hi));
        }
        let m = lo.abs().max(hi.abs());
        if m == 0.0 {
            return Ok(Self { lo, hi, unit: 1.0 });
        }
        // smallest e with m ≤ 2^e
        let mut e = m.log2().ceil() as i32;
        if 2f64.powi(e) < m {
            e += 1;
        }
        let unit = 2f64.powi(e - GRID_BITS);
        if unit == 0.0 || !unit.is_finite() {
            return Err(NoiseError::Bounds(lo, hi));
        }
        Ok(Self { lo, hi, unit })
    }

    pub fn unit(&self) -> f64 {
        self.unit
    }

    /// Clamps `v` to `[lo, hi]` (NaN becomes the clamp of 0) and puts it on the grid.
    pub fn to_units(&self, v: f64) -> i64 {
        let v = if v.is_nan() { 0.0 } else { v };
        (v.clamp(self.lo, self.hi) / self.unit).round() as i64
    }

    /// L1 sensitivity, in grid units, of one subject's contribution to one group.
    pub fn sensitivity_units(&self) -> u64 {
        (self.lo.abs().max(self.hi.abs()) / self.unit).ceil() as u64
    }

    pub fn from_units(&self, u: i64) -> f64 {
        u as f64 * self.unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact P[Z = z] for the discrete Laplace with scale b.
    fn pmf(b: f64, z: i64) -> f64 {
        let q = (-1.0 / b).exp();
        (1.0 - q) / (1.0 + q) * q.powi(z.unsigned_abs() as i32)
    }

    #[test]
    fn calibration_is_certified_by_opendp() {
        for (sens, eps) in [(1u64, 1.0), (3, 0.1), (1 << 20, 0.3), (7, 1e-3)] {
            let m = DiscreteLaplace::calibrate(sens, eps).unwrap();
            assert!(m.epsilon() <= eps);
            assert!((m.scale() - sens as f64 / eps).abs() <= 1e-9 * m.scale());
        }
        assert!(DiscreteLaplace::calibrate(1, 0.0).is_err());
        assert!(DiscreteLaplace::calibrate(1, f64::NAN).is_err());
    }

    /// Chi-square goodness of fit over 20,000 draws (the sampler cannot be seeded, so the
    /// test is stable by size and a loose significance level: critical value at p = 1e-4).
    #[test]
    fn noise_matches_discrete_laplace() {
        let b = 2.0;
        let m = DiscreteLaplace::calibrate(2, 1.0).unwrap();
        assert_eq!(m.scale(), b);
        let n = 20_000;
        let cells = 8i64; // bins -7..=7 plus two tails
        let mut observed = vec![0f64; (2 * cells + 1) as usize];
        let (mut sum, mut sumsq) = (0f64, 0f64);
        for _ in 0..n {
            let z = m.release(100).unwrap() - 100;
            sum += z as f64;
            sumsq += (z * z) as f64;
            observed[(z.clamp(-cells, cells) + cells) as usize] += 1.0;
        }
        let mut expected = vec![0f64; observed.len()];
        for z in -(cells - 1)..cells {
            expected[(z + cells) as usize] = pmf(b, z) * n as f64;
        }
        let tail: f64 = (cells..200).map(|z| pmf(b, z)).sum::<f64>() * n as f64;
        expected[0] = tail;
        expected[(2 * cells) as usize] = tail;
        let chi2: f64 = observed
            .iter()
            .zip(&expected)
            .map(|(o, e)| (o - e) * (o - e) / e)
            .sum();
        // 17 cells → 16 degrees of freedom; chi2_{16}(1 - 1e-4) ≈ 42.0
        assert!(chi2 < 42.0, "chi2 = {chi2}, observed {observed:?}");
        // variance of L_Z(0, b) is 2q/(1-q)^2 with q = e^{-1/b}
        let q = (-1.0 / b).exp();
        let var = 2.0 * q / (1.0 - q).powi(2);
        let mean = sum / n as f64;
        let emp_var = sumsq / n as f64 - mean * mean;
        assert!(mean.abs() < 5.0 * (var / n as f64).sqrt(), "mean {mean}");
        assert!((emp_var / var - 1.0).abs() < 0.1, "var {emp_var} vs {var}");
    }

    #[test]
    fn ci95_covers_about_95_percent() {
        // ε = 0.1, Δ = 1 → b = 10; exact coverage of ±h is computable and ≈ 95%.
        let m = DiscreteLaplace::calibrate(1, 0.1).unwrap();
        let h = m.ci95_halfwidth();
        let exact: f64 = (-h..=h).map(|z| pmf(m.scale(), z)).sum();
        assert!(
            (0.95..0.96).contains(&exact),
            "exact coverage {exact} for h = {h}"
        );
        let truth = 1234;
        let trials = 2_000;
        let covered = (0..trials)
            .filter(|_| {
                let v = m.release(truth).unwrap();
                v - h <= truth && truth <= v + h
            })
            .count();
        let rate = covered as f64 / trials as f64;
        assert!((0.93..=0.97).contains(&rate), "coverage {rate}");
    }

    #[test]
    fn direct_sampler_is_centered() {
        let draws: Vec<i64> = (0..2_000)
            .map(|_| sample_discrete_laplace(1.0).unwrap())
            .collect();
        let mean = draws.iter().sum::<i64>() as f64 / draws.len() as f64;
        assert!(mean.abs() < 0.2, "{mean}");
        assert_eq!(sample_discrete_laplace(0.0).unwrap(), 0);
    }

    #[test]
    fn quantizer_bounds_sensitivity_exactly() {
        let q = Quantizer::new(-3.0, 1000.0).unwrap();
        assert_eq!(q.unit(), 1024.0 / (1u64 << 20) as f64);
        let s = q.sensitivity_units();
        for v in [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e300,
            -1e300,
            999.9999,
            -2.99,
            0.1,
        ] {
            assert!(q.to_units(v).unsigned_abs() <= s, "{v}");
        }
        assert_eq!(q.to_units(1e300), q.to_units(1000.0));
        assert_eq!(q.to_units(f64::NAN), 0);
        assert!((q.from_units(q.to_units(12.345)) - 12.345).abs() <= q.unit() / 2.0);
        assert!(Quantizer::new(1.0, 0.0).is_err());
        assert!(Quantizer::new(0.0, f64::INFINITY).is_err());
        assert_eq!(Quantizer::new(0.0, 0.0).unwrap().sensitivity_units(), 0);
    }
}
