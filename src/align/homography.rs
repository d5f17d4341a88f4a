//! Planar homographies: estimation (normalised DLT), robust fitting (RANSAC) and application.

use nalgebra::{DMatrix, Matrix3, Vector3};
use serde::{Deserialize, Serialize};

/// A 3x3 projective map, here always from template millimetres to image pixels.
/// Invariant: `m[(2,2)]` is normalised to 1 when possible, and the matrix is invertible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography {
    m: Matrix3<f64>,
}

/// Serialised form: 9 numbers, row-major.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct HomographyArray(pub [f64; 9]);

/// Points with |w| below this are at infinity for our purposes.
const MIN_W: f64 = 1e-12;
/// Determinant below which a normalised homography is treated as degenerate.
const MIN_DET: f64 = 1e-12;

impl Homography {
    pub fn identity() -> Self {
        Self {
            m: Matrix3::identity(),
        }
    }

    /// From a row-major array. Returns `None` for a singular matrix.
    pub fn from_array(a: [f64; 9]) -> Option<Self> {
        let m = Matrix3::from_row_slice(&a);
        Self::from_matrix(m)
    }

    fn from_matrix(m: Matrix3<f64>) -> Option<Self> {
        let scale = if m[(2, 2)].abs() > MIN_W {
            m[(2, 2)]
        } else {
            m.norm()
        };
        if scale.abs() < MIN_W || !scale.is_finite() {
            return None;
        }
        let m = m / scale;
        if m.determinant().abs() < MIN_DET || m.iter().any(|v| !v.is_finite()) {
            return None;
        }
        Some(Self { m })
    }

    pub fn to_array(&self) -> [f64; 9] {
        let m = &self.m;
        [
            m[(0, 0)],
            m[(0, 1)],
            m[(0, 2)],
            m[(1, 0)],
            m[(1, 1)],
            m[(1, 2)],
            m[(2, 0)],
            m[(2, 1)],
            m[(2, 2)],
        ]
    }

    /// Map a point; `None` when it maps to infinity.
    #[inline]
    pub fn apply(&self, p: [f64; 2]) -> Option<[f64; 2]> {
        let m = &self.m;
        let w = m[(2, 0)] * p[0] + m[(2, 1)] * p[1] + m[(2, 2)];
        if w.abs() < MIN_W {
            return None;
        }
        Some([
            (m[(0, 0)] * p[0] + m[(0, 1)] * p[1] + m[(0, 2)]) / w,
            (m[(1, 0)] * p[0] + m[(1, 1)] * p[1] + m[(1, 2)]) / w,
        ])
    }

    /// [`Homography::apply`] to the points `(xs[i], ys[i])`, into `px`/`py` (resized to
    /// `xs.len()`), bit-identical to `apply`; a point at infinity is written as NaN.
    pub fn apply_points(&self, xs: &[f64], ys: &[f64], px: &mut Vec<f64>, py: &mut Vec<f64>) {
        let m = &self.m;
        let (m00, m01, m02) = (m[(0, 0)], m[(0, 1)], m[(0, 2)]);
        let (m10, m11, m12) = (m[(1, 0)], m[(1, 1)], m[(1, 2)]);
        let (m20, m21, m22) = (m[(2, 0)], m[(2, 1)], m[(2, 2)]);
        let n = xs.len().min(ys.len());
        px.clear();
        px.resize(n, 0.0);
        py.clear();
        py.resize(n, 0.0);
        // One pass: the denominator is computed once per point.
        for (((ox, oy), &x), &y) in px.iter_mut().zip(py.iter_mut()).zip(xs).zip(ys) {
            let w = m20 * x + m21 * y + m22;
            if w.abs() < MIN_W {
                *ox = f64::NAN;
                *oy = f64::NAN;
            } else {
                *ox = (m00 * x + m01 * y + m02) / w;
                *oy = (m10 * x + m11 * y + m12) / w;
            }
        }
    }

    /// [`Homography::apply`] to the row of points `(x, y)` for `x` in `xs`, into `px`/`py`
    /// (which are resized to `xs.len()`). Same arithmetic as `apply`, so bit-identical
    /// results, in one tight loop over the row; a point `apply` maps to
    /// infinity (`None`) is written as NaN, which [`super::sample::bilinear`] rejects.
    pub fn apply_row(&self, xs: &[f64], y: f64, px: &mut Vec<f64>, py: &mut Vec<f64>) {
        let m = &self.m;
        let (m00, m01, m02) = (m[(0, 0)], m[(0, 1)], m[(0, 2)]);
        let (m10, m11, m12) = (m[(1, 0)], m[(1, 1)], m[(1, 2)]);
        let (m20, m21, m22) = (m[(2, 0)], m[(2, 1)], m[(2, 2)]);
        // The y products are the same for every point; the sums keep `apply`'s order
        // ((a*x + b*y) + c), so each result equals `apply`'s to the bit.
        let (t0, t1, t2) = (m01 * y, m11 * y, m21 * y);
        px.clear();
        px.resize(xs.len(), 0.0);
        py.clear();
        py.resize(xs.len(), 0.0);
        // One pass: the denominator is computed once per point.
        for ((ox, oy), &x) in px.iter_mut().zip(py.iter_mut()).zip(xs) {
            let w = m20 * x + t2 + m22;
            if w.abs() < MIN_W {
                *ox = f64::NAN;
                *oy = f64::NAN;
            } else {
                *ox = (m00 * x + t0 + m02) / w;
                *oy = (m10 * x + t1 + m12) / w;
            }
        }
    }

    pub fn inverse(&self) -> Option<Self> {
        self.m.try_inverse().and_then(Self::from_matrix)
    }

    /// `self ∘ other`: first `other`, then `self`.
    pub fn compose(&self, other: &Homography) -> Option<Self> {
        Self::from_matrix(self.m * other.m)
    }

    /// Pure translation.
    pub fn translation(dx: f64, dy: f64) -> Self {
        Self {
            m: Matrix3::new(1.0, 0.0, dx, 0.0, 1.0, dy, 0.0, 0.0, 1.0),
        }
    }

    /// Local scale (image pixels per template unit) at a template point: square root of the
    /// Jacobian determinant.
    pub fn local_scale(&self, p: [f64; 2]) -> f64 {
        const EPS: f64 = 1.0;
        let (Some(a), Some(b), Some(c)) = (
            self.apply(p),
            self.apply([p[0] + EPS, p[1]]),
            self.apply([p[0], p[1] + EPS]),
        ) else {
            return 0.0;
        };
        let (ux, uy) = (b[0] - a[0], b[1] - a[1]);
        let (vx, vy) = (c[0] - a[0], c[1] - a[1]);
        (ux * vy - uy * vx).abs().sqrt() / EPS
    }

    /// Least-squares fit with Hartley normalisation. Needs >= 4 correspondences, not all collinear.
    pub fn fit(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Self> {
        if src.len() != dst.len() || src.len() < 4 {
            return None;
        }
        let (ts, ns) = normaliser(src)?;
        let (td, nd) = normaliser(dst)?;
        let n = src.len();
        // At least 9 rows so that the thin SVD exposes the null vector (extra rows are zero).
        let rows = (2 * n).max(9);
        let mut a = DMatrix::<f64>::zeros(rows, 9);
        for i in 0..n {
            let (x, y) = (ns[i][0], ns[i][1]);
            let (u, v) = (nd[i][0], nd[i][1]);
            let r = 2 * i;
            a.row_mut(r)
                .copy_from_slice(&[-x, -y, -1.0, 0.0, 0.0, 0.0, u * x, u * y, u]);
            a.row_mut(r + 1)
                .copy_from_slice(&[0.0, 0.0, 0.0, -x, -y, -1.0, v * x, v * y, v]);
        }
        let svd = a.svd(false, true);
        let v_t = svd.v_t?;
        let sv = &svd.singular_values;
        let mut order: Vec<usize> = (0..sv.len()).collect();
        order.sort_by(|&i, &j| sv[i].total_cmp(&sv[j]));
        // A unique solution needs a one-dimensional null space: the second-smallest singular
        // value must be clearly non-zero (collinear or repeated points fail this).
        const MIN_SECOND_SINGULAR: f64 = 1e-8;
        if sv[order[1]] < MIN_SECOND_SINGULAR * sv[order[sv.len() - 1]].max(1.0) {
            return None;
        }
        let h: Vec<f64> = v_t.row(order[0]).iter().copied().collect();
        let hn = Matrix3::from_row_slice(&h);
        let td_inv = td.try_inverse()?;
        Self::from_matrix(td_inv * hn * ts)
    }
}

/// Smallest |determinant| of the square-to-quad map of normalised points (mean distance
/// sqrt(2) from their centroid) for [`Homography::fit4`]: below it three of the four points
/// are (nearly) collinear and there is no unique homography.
const MIN_QUAD_DET: f64 = 1e-8;

impl Homography {
    /// The homography taking four points exactly onto four others, in closed form (each set's
    /// map from the unit square, Heckbert 1989, then one composed with the other's inverse),
    /// on Hartley-normalised points. The same map as [`Homography::fit`] up to round-off, at a
    /// fraction of the cost of its SVD: RANSAC fits one per 4-subset. `None` when three points
    /// of either set are (nearly) collinear.
    pub fn fit4(src: &[[f64; 2]; 4], dst: &[[f64; 2]; 4]) -> Option<Self> {
        let (ts, ns) = normaliser(src)?;
        let (td, nd) = normaliser(dst)?;
        let qs = square_to_quad(&ns)?;
        let qd = square_to_quad(&nd)?;
        let m = td.try_inverse()? * qd * qs.try_inverse()? * ts;
        Self::from_matrix(m)
    }
}

/// The projective map taking the unit square's corners (0,0), (1,0), (1,1), (0,1) to `q[0..4]`.
fn square_to_quad(q: &[[f64; 2]]) -> Option<Matrix3<f64>> {
    let [[x0, y0], [x1, y1], [x2, y2], [x3, y3]] = *q else {
        return None;
    };
    let (dx1, dx2, dx3) = (x1 - x2, x3 - x2, x0 - x1 + x2 - x3);
    let (dy1, dy2, dy3) = (y1 - y2, y3 - y2, y0 - y1 + y2 - y3);
    let den = dx1 * dy2 - dx2 * dy1;
    if den.abs() < MIN_QUAD_DET {
        return None;
    }
    let g = (dx3 * dy2 - dx2 * dy3) / den;
    let h = (dx1 * dy3 - dx3 * dy1) / den;
    let m = Matrix3::new(
        x1 - x0 + g * x1,
        x3 - x0 + h * x3,
        x0,
        y1 - y0 + g * y1,
        y3 - y0 + h * y3,
        y0,
        g,
        h,
        1.0,
    );
    (m.determinant().abs() >= MIN_QUAD_DET).then_some(m)
}

/// Similarity transform that centres points at the origin with mean distance sqrt(2).
fn normaliser(pts: &[[f64; 2]]) -> Option<(Matrix3<f64>, Vec<[f64; 2]>)> {
    let n = pts.len() as f64;
    let cx = pts.iter().map(|p| p[0]).sum::<f64>() / n;
    let cy = pts.iter().map(|p| p[1]).sum::<f64>() / n;
    let md = pts
        .iter()
        .map(|p| ((p[0] - cx).powi(2) + (p[1] - cy).powi(2)).sqrt())
        .sum::<f64>()
        / n;
    if md < 1e-9 || !md.is_finite() {
        return None;
    }
    let s = std::f64::consts::SQRT_2 / md;
    let t = Matrix3::new(s, 0.0, -s * cx, 0.0, s, -s * cy, 0.0, 0.0, 1.0);
    let out = pts
        .iter()
        .map(|p| {
            let v = t * Vector3::new(p[0], p[1], 1.0);
            [v[0], v[1]]
        })
        .collect();
    Some((t, out))
}

/// Result of a robust fit.
#[derive(Debug, Clone)]
pub struct RobustFit {
    pub h: Homography,
    /// Indices of the correspondences within the inlier threshold.
    pub inliers: Vec<usize>,
}

/// RANSAC over all 4-subsets (exhaustive when few points, as here: marker corners number < 20),
/// each fitted exactly in closed form ([`Homography::fit4`]), scoring by inlier count then by
/// summed residual; the winner is re-fitted on its inliers by least squares.
/// `threshold` is in destination units.
pub fn ransac(src: &[[f64; 2]], dst: &[[f64; 2]], threshold: f64) -> Option<RobustFit> {
    let n = src.len();
    if n < 4 || dst.len() != n {
        return None;
    }
    let mut best: Option<(usize, f64, Homography)> = None;
    let mut consider = |h: Homography| {
        let mut count = 0;
        let mut cost = 0.0;
        for i in 0..n {
            let r = residual(&h, src[i], dst[i]);
            if r < threshold {
                count += 1;
                cost += r;
            } else {
                cost += threshold;
            }
        }
        let better = match &best {
            None => true,
            Some((c, s, _)) => count > *c || (count == *c && cost < *s),
        };
        if better {
            best = Some((count, cost, h));
        }
    };
    // Exhaustive over subsets while cheap (n <= 16 gives <= 1820 subsets).
    const MAX_EXHAUSTIVE: usize = 16;
    if n <= MAX_EXHAUSTIVE {
        for a in 0..n {
            for b in a + 1..n {
                for c in b + 1..n {
                    for d in c + 1..n {
                        let s = [src[a], src[b], src[c], src[d]];
                        let t = [dst[a], dst[b], dst[c], dst[d]];
                        if let Some(h) = Homography::fit4(&s, &t) {
                            consider(h);
                        }
                    }
                }
            }
        }
    } else if let Some(h) = Homography::fit(src, dst) {
        consider(h);
    }
    let (_, _, h) = best?;
    let inliers: Vec<usize> = (0..n)
        .filter(|&i| residual(&h, src[i], dst[i]) < threshold)
        .collect();
    if inliers.len() < 4 {
        return None;
    }
    let s: Vec<_> = inliers.iter().map(|&i| src[i]).collect();
    let t: Vec<_> = inliers.iter().map(|&i| dst[i]).collect();
    let h = Homography::fit(&s, &t).unwrap_or(h);
    Some(RobustFit { h, inliers })
}

fn residual(h: &Homography, s: [f64; 2], d: [f64; 2]) -> f64 {
    match h.apply(s) {
        Some(p) => ((p[0] - d[0]).powi(2) + (p[1] - d[1]).powi(2)).sqrt(),
        None => f64::INFINITY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The batch maps give `apply`'s results to the bit (NaN where `apply` gives None).
        #[test]
        fn batch_apply_matches_apply(
            a in proptest::collection::vec(-5.0f64..5.0, 8),
            pts in proptest::collection::vec((-800.0f64..800.0, -800.0f64..800.0), 1..40),
            y in -800.0f64..800.0,
        ) {
            let Some(h) = Homography::from_array([
                a[0] * 10.0, a[1], a[2] * 100.0, a[3], a[4] * 10.0, a[5] * 100.0,
                a[6] * 1e-3, a[7] * 1e-3, 1.0,
            ]) else {
                return Ok(());
            };
            let bits = |p: Option<[f64; 2]>| p.map(|q| q.map(f64::to_bits));
            let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
            let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
            let (mut px, mut py) = (Vec::new(), Vec::new());
            h.apply_points(&xs, &ys, &mut px, &mut py);
            for i in 0..xs.len() {
                let got = (!px[i].is_nan()).then_some([px[i], py[i]]);
                prop_assert_eq!(bits(got), bits(h.apply([xs[i], ys[i]])));
            }
            h.apply_row(&xs, y, &mut px, &mut py);
            for i in 0..xs.len() {
                let got = (!px[i].is_nan()).then_some([px[i], py[i]]);
                prop_assert_eq!(bits(got), bits(h.apply([xs[i], y])));
            }
        }
    }

    fn sample_h(angle: f64, scale: f64, tx: f64, ty: f64, p0: f64, p1: f64) -> Homography {
        let (s, c) = angle.sin_cos();
        Homography::from_array([
            scale * c,
            -scale * s,
            tx,
            scale * s,
            scale * c,
            ty,
            p0,
            p1,
            1.0,
        ])
        .unwrap()
    }

    proptest! {
        #[test]
        fn fit_recovers_homography_any_rotation(
            angle in 0.0f64..std::f64::consts::TAU,
            scale in 1.0f64..8.0,
            tx in -500.0f64..3000.0, ty in -500.0f64..3000.0,
            p0 in -2e-4f64..2e-4, p1 in -2e-4f64..2e-4,
        ) {
            let h = sample_h(angle, scale, tx, ty, p0, p1);
            let src = [[0.0, 0.0], [600.0, 0.0], [600.0, 900.0], [0.0, 900.0], [300.0, 450.0]];
            let dst: Vec<_> = src.iter().filter_map(|p| h.apply(*p)).collect();
            prop_assume!(dst.len() == src.len());
            let fitted = Homography::fit(&src, &dst).unwrap();
            for p in [[10.0, 20.0], [590.0, 880.0], [123.0, 456.0]] {
                if let (Some(a), Some(b)) = (h.apply(p), fitted.apply(p)) {
                    prop_assert!((a[0]-b[0]).abs() < 1e-6 * (1.0 + a[0].abs()) + 1e-6);
                    prop_assert!((a[1]-b[1]).abs() < 1e-6 * (1.0 + a[1].abs()) + 1e-6);
                }
            }
        }

        /// The closed-form 4-point fit is the least-squares fit's map: on four points in any
        /// order (crossed quads too), under any rotation and perspective.
        #[test]
        fn fit4_matches_fit(
            angle in 0.0f64..std::f64::consts::TAU,
            scale in 1.0f64..8.0,
            tx in -500.0f64..3000.0, ty in -500.0f64..3000.0,
            p0 in -2e-4f64..2e-4, p1 in -2e-4f64..2e-4,
            pts in proptest::array::uniform4((0.0f64..600.0, 0.0f64..900.0)),
        ) {
            let h = sample_h(angle, scale, tx, ty, p0, p1);
            let src = pts.map(|(x, y)| [x, y]);
            let dst = src.map(|p| h.apply(p).unwrap_or([f64::NAN; 2]));
            prop_assume!(dst.iter().all(|p| p[0].is_finite()));
            let (a, b) = (Homography::fit(&src, &dst), Homography::fit4(&src, &dst));
            // Nearly collinear samples: both may refuse, and where one still fits, the other's
            // threshold differs; only well-conditioned sets are compared.
            prop_assume!(a.is_some() && b.is_some());
            let (a, b) = (a.unwrap(), b.unwrap());
            for p in src.iter().copied().chain([[300.0, 450.0]]) {
                if let (Some(u), Some(v)) = (a.apply(p), b.apply(p)) {
                    prop_assert!((u[0]-v[0]).abs() < 1e-5 * (1.0 + u[0].abs()), "{u:?} {v:?}");
                    prop_assert!((u[1]-v[1]).abs() < 1e-5 * (1.0 + u[1].abs()), "{u:?} {v:?}");
                }
            }
        }

        #[test]
        fn inverse_round_trips(
            angle in 0.0f64..std::f64::consts::TAU,
            scale in 0.5f64..8.0,
            x in 0.0f64..600.0, y in 0.0f64..900.0,
        ) {
            let h = sample_h(angle, scale, 100.0, 200.0, 1e-5, -2e-5);
            let inv = h.inverse().unwrap();
            let q = h.apply([x, y]).unwrap();
            let r = inv.apply(q).unwrap();
            prop_assert!((r[0]-x).abs() < 1e-7 && (r[1]-y).abs() < 1e-7);
        }
    }

    #[test]
    fn ransac_rejects_an_outlier() {
        let h = sample_h(0.3, 3.0, 100.0, 50.0, 1e-5, 0.0);
        let src: Vec<[f64; 2]> = (0..10)
            .map(|i| [(i * 157 % 600) as f64, (i * i * 91 % 900) as f64])
            .collect();
        let mut dst: Vec<[f64; 2]> = src.iter().map(|p| h.apply(*p).unwrap()).collect();
        dst[3][0] += 80.0;
        let fit = ransac(&src, &dst, 2.0).unwrap();
        assert_eq!(fit.inliers.len(), 9);
        assert!(!fit.inliers.contains(&3));
        let p = fit.h.apply([300.0, 300.0]).unwrap();
        let q = h.apply([300.0, 300.0]).unwrap();
        assert!((p[0] - q[0]).abs() < 1e-6 && (p[1] - q[1]).abs() < 1e-6);
    }

    #[test]
    fn degenerate_points_give_none() {
        let src = [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]];
        assert!(Homography::fit(&src, &src).is_none());
        assert!(Homography::fit4(&src, &src).is_none());
        // Three of four on one line.
        let three = [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0]];
        let square = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        assert!(Homography::fit4(&three, &square).is_none());
        assert!(Homography::fit4(&square, &three).is_none());
    }
}
