//! Fallback pose search that starts from the AprilTag instead of the registration marks.
//!
//! The mark-based searches ([`super::search_quads`], [`super::search_triples`]) need three or
//! four marks. A photo with a corner (or two) cut off, or with marks lost to glare, may still
//! show the tag plainly: then the tag alone says which page this is and how it is turned, and a
//! pose taken from the tag's square predicts where the marks that *are* in the photo should be.
//!
//! Method: every dark blob of the working image whose bounding box is square-ish is a tag
//! candidate. A square turned by `θ` has a bounding box of side `s (|cos θ| + |sin θ|)` centred
//! on the square's centre, so scanning `θ` over a quarter turn (and the four quarter-turns)
//! gives poses whose tag read decides, exactly as in the mark searches (same Hamming and border
//! limits, so a non-form cannot match by chance). The tag's four corners and every mark
//! candidate found near its predicted place then give the coarse homography that
//! [`super::refine`] starts from; where fewer than two marks are seen the refinement finds too
//! few squares and the page comes out identified but not `good` (its fields are flagged).

use super::{MarkCandidate, TagMatch, try_pose};
use crate::align::Homography;
use crate::template::{Page, RectMm, rect_corners};
use image::GrayImage;

/// Smallest bounding-box side (working pixels) of a tag candidate: the tag's 8 modules need at
/// least ~1.5 px each to be read at all.
const MIN_TAG_SIDE_PX: u32 = 12;
/// Largest tag side as a share of the working image's short side (the tag is ~1/20 of the
/// page width; even a page filling the frame keeps it far below this).
const MAX_TAG_SIDE_FRACTION: f64 = 0.2;
/// Bounding-box aspect ratio accepted (a square under up to ~35 degrees of tilt).
const MAX_TAG_ASPECT: f64 = 1.5;
/// Share of the bounding box that is dark: the tag's black border plus about half its data
/// modules cover roughly 0.35-0.75 of it when axis-aligned, less when turned.
const TAG_FILL_RANGE: (f64, f64) = (0.2, 0.9);
/// Candidates tried, most square first.
const MAX_TAG_CANDIDATES: usize = 40;
/// Angle step of the in-plane rotation scan, degrees: at 3 degrees the worst-case module
/// misplacement at the tag's corner is ~0.1 module.
const TAG_ANGLE_STEP_DEG: f64 = 3.0;
/// A mark candidate is matched to a template mark when it lies within this share of the page
/// diagonal (in pixels, through the tag-only pose) from where that pose puts the mark: the
/// tag-only pose ignores perspective, which moves far marks by a few percent of the page.
const MARK_MATCH_FRACTION: f64 = 0.12;

/// Marks matched near their places from which the coarse pose is a full homography (over the
/// tag's corners and the marks) rather than an affine map: three marks and the tag are four
/// places spread over the page.
const MIN_MARKS_FOR_HOMOGRAPHY: usize = 3;

/// Singular values below this (relative to coordinates in mm) make the affine fit refuse.
const AFFINE_RANK_EPS: f64 = 1e-9;

/// Search tag candidates among the dark blobs of `bin` (the working image, `factor` times
/// smaller than `gray`, dark regions shrunk by `shrink` px). Returns the best pose, its page and
/// the tag's Hamming distance, with the pose improved by the marks found near their places.
#[allow(clippy::too_many_arguments)]
pub(super) fn search<'p>(
    gray: &GrayImage,
    bin: &GrayImage,
    factor: f64,
    shrink: f64,
    cands: &[MarkCandidate],
    marks: &[[f64; 2]; 4],
    rect: &RectMm,
    pages: &[&'p Page],
) -> Option<TagMatch<'p>> {
    let blobs = tag_blobs(bin);
    let mut best: Option<TagMatch<'p>> = None;
    let steps = (90.0 / TAG_ANGLE_STEP_DEG).round() as usize;
    'blobs: for b in blobs {
        // Full-resolution centre and bounding side; dark regions were shrunk by `shrink` px on
        // every side.
        let c = [b.cx * factor, b.cy * factor];
        let side_box = (b.side + 2.0 * shrink) * factor;
        for step in 0..steps {
            let theta = (step as f64 * TAG_ANGLE_STEP_DEG).to_radians();
            let s = side_box / (theta.cos() + theta.sin());
            for quarter in 0..4 {
                let a = theta + quarter as f64 * std::f64::consts::FRAC_PI_2;
                let Some(h) = square_pose(rect, c, s, a) else {
                    continue;
                };
                if try_pose(gray, h, rect, pages, &mut best) {
                    break 'blobs;
                }
            }
        }
    }
    let (h_tag, page, hamming) = best?;
    Some((with_marks(h_tag, rect, cands, marks, page), page, hamming))
}

/// A square-ish dark blob in working-image pixels.
struct Blob {
    cx: f64,
    cy: f64,
    side: f64,
    /// |log(aspect)|: 0 for a square bounding box.
    skew: f64,
}

fn tag_blobs(bin: &GrayImage) -> Vec<Blob> {
    let (w, h) = bin.dimensions();
    let max_side = f64::from(w.min(h)) * MAX_TAG_SIDE_FRACTION;
    // Per component: x0, y0, x1, y1 (inclusive), dark count.
    let boxes = super::dark_component_boxes(bin);
    let mut out: Vec<Blob> = boxes
        .into_iter()
        .filter_map(|(x0, y0, x1, y1, n)| {
            let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
            if bw.min(bh) < MIN_TAG_SIDE_PX || f64::from(bw.max(bh)) > max_side {
                return None;
            }
            let aspect = f64::from(bw.max(bh)) / f64::from(bw.min(bh));
            let fill = f64::from(n) / (f64::from(bw) * f64::from(bh));
            if aspect > MAX_TAG_ASPECT || fill < TAG_FILL_RANGE.0 || fill > TAG_FILL_RANGE.1 {
                return None;
            }
            Some(Blob {
                cx: f64::from(x0 + x1 + 1) / 2.0,
                cy: f64::from(y0 + y1 + 1) / 2.0,
                side: f64::from(bw + bh) / 2.0,
                skew: aspect.ln(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.skew.total_cmp(&b.skew));
    out.truncate(MAX_TAG_CANDIDATES);
    out
}

/// Homography sending the tag rectangle onto a square of side `s` px centred at `c`, turned by
/// `angle` radians (clockwise on screen, image y pointing down).
fn square_pose(rect: &RectMm, c: [f64; 2], s: f64, angle: f64) -> Option<Homography> {
    let (sin, cos) = angle.sin_cos();
    let src = rect_corners(rect);
    let half = s / 2.0;
    let dst = [[-half, -half], [half, -half], [half, half], [-half, half]]
        .map(|[u, v]| [c[0] + cos * u - sin * v, c[1] + sin * u + cos * v]);
    Homography::fit(&src, &dst)
}

/// Improve a tag-only pose with the mark candidates found near the marks' predicted places:
/// least squares over the tag's corners and the matched marks (the tag-only pose when no mark
/// matches or the fit fails).
fn with_marks(
    h_tag: Homography,
    rect: &RectMm,
    cands: &[MarkCandidate],
    marks: &[[f64; 2]; 4],
    page: &Page,
) -> Homography {
    let mut src: Vec<[f64; 2]> = rect_corners(rect).to_vec();
    let Some(mut dst) = src
        .iter()
        .map(|p| h_tag.apply(*p))
        .collect::<Option<Vec<[f64; 2]>>>()
    else {
        return h_tag;
    };
    let diag_px = h_tag.local_scale([page.width_mm / 2.0, page.height_mm / 2.0])
        * page.width_mm.hypot(page.height_mm);
    let tol = MARK_MATCH_FRACTION * diag_px;
    let mut used = vec![false; cands.len()];
    for m in marks {
        let Some(p) = h_tag.apply(*m) else {
            continue;
        };
        let nearest = cands
            .iter()
            .enumerate()
            .filter(|(i, _)| !used[*i])
            .map(|(i, c)| (i, (c.x - p[0]).hypot(c.y - p[1])))
            .filter(|(_, d)| *d <= tol)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, _)) = nearest {
            used[i] = true;
            src.push(*m);
            dst.push([cands[i].x, cands[i].y]);
        }
    }
    let marks_matched = src.len() - 4;
    if marks_matched == 0 {
        return h_tag;
    }
    // The tag's corners lie close together, so with one or two far marks a full homography's
    // perspective terms would rest on almost nothing: fit an affine map (least squares), which
    // the refinement then turns into a homography from the mark squares it finds. With three
    // marks the tag is a fourth place far from them, and the perspective matters: an affine
    // compromise between a tilted page's marks and its tag put the marks 2-4 mm off (seed 177,
    // a 7.6 degree tilt), beyond where the refinement looks for their squares.
    if marks_matched >= MIN_MARKS_FOR_HOMOGRAPHY
        && let Some(h) = Homography::fit(&src, &dst)
    {
        return h;
    }
    affine_fit(&src, &dst).unwrap_or(h_tag)
}

/// Least-squares affine map `src -> dst` (at least 3 points, not collinear), as a homography.
fn affine_fit(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Homography> {
    let n = src.len();
    if n < 3 || dst.len() != n {
        return None;
    }
    let a = nalgebra::DMatrix::from_fn(n, 3, |r, c| if c < 2 { src[r][c] } else { 1.0 });
    let svd = a.svd(true, true);
    let bx = nalgebra::DVector::from_fn(n, |r, _| dst[r][0]);
    let by = nalgebra::DVector::from_fn(n, |r, _| dst[r][1]);
    let px = svd.solve(&bx, AFFINE_RANK_EPS).ok()?;
    let py = svd.solve(&by, AFFINE_RANK_EPS).ok()?;
    Homography::from_array([px[0], px[1], px[2], py[0], py[1], py[2], 0.0, 0.0, 1.0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn square_pose_maps_the_tag_onto_the_turned_square() {
        let rect = [500.0, 20.0, 40.0, 40.0];
        let c = [300.0, 200.0];
        for deg in [0.0f64, 17.0, 45.0, 90.0, 200.0] {
            let h = square_pose(&rect, c, 80.0, deg.to_radians()).unwrap();
            let centre = h.apply([520.0, 40.0]).unwrap();
            assert!((centre[0] - c[0]).abs() < 1e-6 && (centre[1] - c[1]).abs() < 1e-6);
            // Side length is preserved and the top edge points along the angle.
            let a = h.apply([500.0, 20.0]).unwrap();
            let b = h.apply([540.0, 20.0]).unwrap();
            assert!(((b[0] - a[0]).hypot(b[1] - a[1]) - 80.0).abs() < 1e-6);
            let got = (b[1] - a[1])
                .atan2(b[0] - a[0])
                .to_degrees()
                .rem_euclid(360.0);
            assert!((got - deg.rem_euclid(360.0)).abs() < 1e-6, "{got} vs {deg}");
        }
    }

    #[test]
    fn affine_fit_recovers_an_affine_map() {
        let f = |p: [f64; 2]| [2.0 * p[0] - 0.5 * p[1] + 7.0, 0.3 * p[0] + 1.5 * p[1] - 4.0];
        let src = [
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 10.0],
            [0.0, 10.0],
            [300.0, 800.0],
        ];
        let dst = src.map(f);
        let h = affine_fit(&src, &dst).unwrap();
        for p in [[5.0, 5.0], [600.0, 900.0]] {
            let (a, b) = (h.apply(p).unwrap(), f(p));
            assert!((a[0] - b[0]).abs() < 1e-6 && (a[1] - b[1]).abs() < 1e-6);
        }
        assert!(affine_fit(&src[..2], &dst[..2]).is_none());
    }

    #[test]
    fn blobs_keep_squares_and_drop_lines_and_specks() {
        let mut bin = GrayImage::from_pixel(200, 200, Luma([255u8]));
        let mut dark = |x0: u32, y0: u32, x1: u32, y1: u32| {
            for y in y0..y1 {
                for x in x0..x1 {
                    bin.put_pixel(x, y, Luma([0]));
                }
            }
        };
        // A tag-like square ring with a filled module inside.
        dark(20, 20, 44, 23);
        dark(20, 41, 44, 44);
        dark(20, 20, 23, 44);
        dark(41, 20, 44, 44);
        dark(26, 26, 32, 32);
        dark(100, 10, 190, 13); // a long line
        dark(150, 150, 153, 153); // a speck
        let blobs = tag_blobs(&bin);
        assert_eq!(blobs.len(), 1);
        assert!((blobs[0].cx - 32.0).abs() < 1e-9 && (blobs[0].cy - 32.0).abs() < 1e-9);
        assert!((blobs[0].side - 24.0).abs() < 1e-9);
    }
}
