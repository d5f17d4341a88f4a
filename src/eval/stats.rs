//! Exact binomial confidence bounds (Clopper-Pearson) from the regularised incomplete beta
//! function. Zero errors observed is not a zero error rate: with `n` trials and no error, the
//! one-sided 95 % upper bound is `1 - 0.05^(1/n)` (about `3/n`).

/// Confidence level used for every bound `rekap eval` reports.
pub const CONFIDENCE: f64 = 0.95;

/// Relative precision at which the continued fraction of the incomplete beta stops.
const BETA_CF_EPS: f64 = 1e-15;
/// Guard against division by zero in Lentz's method.
const BETA_CF_TINY: f64 = 1e-300;
/// Most terms of the continued fraction (it converges in O(sqrt(max(a, b))) terms).
const BETA_CF_MAX_ITER: usize = 10_000;
/// Bisection steps for the beta quantile: 2^-100 is far below f64 resolution on [0, 1].
const QUANTILE_BISECTIONS: usize = 100;

/// ln Gamma(x) for x > 0 (Lanczos approximation, g = 7, 9 terms; ~1e-15 relative).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Gamma(x) Gamma(1-x) = pi / sin(pi x).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEF[0];
    let t = x + G + 0.5;
    for (i, c) in COEF.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction for the incomplete beta (Numerical Recipes `betacf`, modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < BETA_CF_TINY {
        d = BETA_CF_TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=BETA_CF_MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < BETA_CF_TINY {
            d = BETA_CF_TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < BETA_CF_TINY {
            c = BETA_CF_TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < BETA_CF_TINY {
            d = BETA_CF_TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < BETA_CF_TINY {
            c = BETA_CF_TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < BETA_CF_EPS {
            break;
        }
    }
    h
}

/// Regularised incomplete beta function I_x(a, b) for a, b > 0, x in [0, 1].
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // The continued fraction converges fast for x < (a+1)/(a+b+2); use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Quantile of the Beta(a, b) distribution: the x with I_x(a, b) = p (bisection; I_x is
/// monotone in x).
pub fn beta_quantile(p: f64, a: f64, b: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..QUANTILE_BISECTIONS {
        let mid = 0.5 * (lo + hi);
        if beta_inc(a, b, mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= f64::EPSILON * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// One-sided Clopper-Pearson upper bound on a binomial proportion: the largest rate p for
/// which seeing `k` or fewer events in `n` trials still has probability >= 1 - `confidence`.
/// Returns 1 when `n == 0` (nothing observed, nothing known) or `k >= n`.
pub fn clopper_pearson_upper(k: u64, n: u64, confidence: f64) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    beta_quantile(confidence, k as f64 + 1.0, (n - k) as f64)
}

/// Two-sided Clopper-Pearson interval `(lower, upper)` at `confidence` (each tail (1-c)/2).
pub fn clopper_pearson_interval(k: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let tail = (1.0 - confidence) / 2.0;
    let lower = if k == 0 {
        0.0
    } else {
        beta_quantile(tail, k as f64, (n - k + 1) as f64)
    };
    let upper = if k >= n {
        1.0
    } else {
        beta_quantile(1.0 - tail, k as f64 + 1.0, (n - k) as f64)
    };
    (lower, upper)
}

/// `k / n`, or 0 when `n == 0` (callers report `n` beside it).
pub fn ratio(k: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { k as f64 / n as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 1.0_f64;
        for n in 1..30u32 {
            // Gamma(n) = (n-1)!
            assert!((ln_gamma(n as f64) - f.ln()).abs() < 1e-10, "n = {n}");
            f *= n as f64;
        }
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
    }

    #[test]
    fn beta_inc_closed_forms() {
        // I_x(1, b) = 1 - (1-x)^b ; I_x(a, 1) = x^a
        for &x in &[0.001, 0.1, 0.5, 0.9, 0.999] {
            assert!((beta_inc(1.0, 7.0, x) - (1.0 - (1.0 - x).powi(7))).abs() < 1e-12);
            assert!((beta_inc(3.0, 1.0, x) - x.powi(3)).abs() < 1e-12);
        }
    }

    #[test]
    fn zero_of_n_upper_bound() {
        for &n in &[1u64, 10, 300, 10_000] {
            let want = 1.0 - 0.05_f64.powf(1.0 / n as f64);
            let got = clopper_pearson_upper(0, n, 0.95);
            assert!((got - want).abs() < 1e-12, "n = {n}: {got} vs {want}");
        }
        assert!((clopper_pearson_upper(0, 300, 0.95) - 0.009_936).abs() < 1e-6);
    }

    #[test]
    fn known_values() {
        // n-1 of n: the upper bound is 1 - lower bound of 1 of n: ((1-c))^(1/n) ... check via
        // the binomial tail: P(X <= 1 | n=20, p) = 0.05 at the one-sided upper bound.
        let n = 20u64;
        let p = clopper_pearson_upper(1, n, 0.95);
        let tail = (1.0 - p).powi(20) + 20.0 * p * (1.0 - p).powi(19);
        assert!((tail - 0.05).abs() < 1e-10, "{p} {tail}");
        // Two-sided 95 % for 5 of 10 (standard table): 0.1871 .. 0.8129.
        let (lo, hi) = clopper_pearson_interval(5, 10, 0.95);
        assert!(
            (lo - 0.187_086).abs() < 1e-5 && (hi - 0.812_914).abs() < 1e-5,
            "{lo} {hi}"
        );
        assert_eq!(clopper_pearson_upper(0, 0, 0.95), 1.0);
        assert_eq!(clopper_pearson_upper(4, 4, 0.95), 1.0);
    }
}
