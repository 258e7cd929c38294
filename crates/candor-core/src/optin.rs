//! Opt-in rates with honest uncertainty: Wilson score intervals for a rate, and the
//! two-proportion z-test for whether two prompt variants differ.
//!
//! Wilson's interval (Wilson 1927; recommended by Brown, Cai & DasGupta 2001 over the
//! textbook Wald interval) stays inside [0, 1] and keeps close to its nominal coverage
//! for small counts and rates near 0 or 1, which is where opt-in rates often are. The
//! z-test pools both samples under the null hypothesis of equal rates; it is
//! approximate and should not be trusted below about five successes and five failures
//! per variant, which [`compare`] reports as "not enough data" rather than a p-value.

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval for `successes` out of `trials` (`None` for no trials).
pub fn wilson(successes: u64, trials: u64, z: f64) -> Option<(f64, f64)> {
    if trials == 0 || successes > trials {
        return None;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// The outcome of comparing two rates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Comparison {
    /// Rate of b minus rate of a.
    pub difference: f64,
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Two-proportion z-test of `a` against `b` (each `(successes, trials)`); `None` when
/// either sample is too small for the normal approximation.
pub fn compare(a: (u64, u64), b: (u64, u64)) -> Option<Comparison> {
    let enough = |(s, n): (u64, u64)| s <= n && s >= 5 && n - s >= 5;
    if !enough(a) || !enough(b) {
        return None;
    }
    let (na, nb) = (a.1 as f64, b.1 as f64);
    let (pa, pb) = (a.0 as f64 / na, b.0 as f64 / nb);
    let pooled = (a.0 + b.0) as f64 / (na + nb);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    let z = if se > 0.0 { (pb - pa) / se } else { 0.0 };
    Some(Comparison {
        difference: pb - pa,
        z,
        p_value: (2.0 * (1.0 - normal_cdf(z.abs()))).clamp(0.0, 1.0),
    })
}

/// The standard normal CDF, by W. J. Cody's rational approximation of erfc as given
/// in Numerical Recipes (`erfcc`, fractional error below 1.2e-7 everywhere).
pub fn normal_cdf(x: f64) -> f64 {
    1.0 - 0.5 * erfc(x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_known_values() {
        for (x, want) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746),
            (-1.96, 0.024_997_895),
            (3.0, 0.998_650_102),
        ] {
            assert!(
                (normal_cdf(x) - want).abs() < 1e-6,
                "{x}: {}",
                normal_cdf(x)
            );
        }
    }

    #[test]
    fn wilson_matches_published_values() {
        // Brown, Cai & DasGupta's example style: 5 of 20 → (0.1119, 0.4687) at 95%.
        let (lo, hi) = wilson(5, 20, Z95).unwrap();
        assert!(
            (lo - 0.1119).abs() < 1e-4 && (hi - 0.4687).abs() < 1e-4,
            "{lo} {hi}"
        );
        // Stays inside [0, 1] at the edges, unlike the Wald interval.
        let (lo, hi) = wilson(0, 10, Z95).unwrap();
        assert_eq!(lo, 0.0);
        assert!(hi > 0.2 && hi < 0.35);
        assert_eq!(wilson(1, 0, Z95), None);
        assert_eq!(wilson(3, 2, Z95), None);
    }

    #[test]
    fn comparison_detects_real_differences_only() {
        // 30% vs 40% on 1000 each: z ≈ 4.69, p ≈ 2.7e-6.
        let c = compare((300, 1000), (400, 1000)).unwrap();
        assert!((c.z - 4.69).abs() < 0.01, "{c:?}");
        assert!(c.p_value < 1e-5);
        assert!((c.difference - 0.1).abs() < 1e-12);
        // Equal rates: z = 0, p = 1.
        let same = compare((50, 100), (100, 200)).unwrap();
        assert!(same.z.abs() < 1e-12 && (same.p_value - 1.0).abs() < 1e-6);
        // Too little data for the approximation.
        assert_eq!(compare((2, 10), (5, 10)), None);
    }
}
