//! Local snapping of printed boxes: paper curls and lenses bend, so the page homography can be a
//! millimetre or two off in the middle of the page. For each group of boxes we search a small
//! translation (in template mm) that puts the expected box lines on the darkest printed lines.
//! x and y are searched separately (vertical edges fix x, horizontal edges fix y), which is
//! valid for the small offsets searched here.

use super::Homography;
use super::sample::Sampler;
use crate::template::{Field, FieldKind, RectMm};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Largest offset searched, mm.
pub const MAX_SNAP_MM: f64 = 3.0;
/// Coarse and fine search steps, mm.
const COARSE_STEP_MM: f64 = 0.25;
const FINE_STEP_MM: f64 = 0.05;
/// Photo pixels per mm from which the coarse search scores every other edge point and the
/// re-fit of x searches only near the first fit: a 0.5 mm line is then nearly two pixels wide. The form's 12 MP photos of seed 52 have 3.4-4.1 px/mm
/// (5th-95th percentile; 80 % of pages at 3.5 or more), its 3 MP ones 1.7-2.1.
const COARSE_SUBSET_MIN_PX_PER_MM: f64 = 3.5;
/// Sample points per box edge (corners excluded, where neighbouring lines cross).
const POINTS_PER_EDGE: usize = 10;
/// Distance of the paper reference samples from the line centre, beyond half the line width, mm.
const PAPER_OFFSET_MM: f64 = 1.0;
/// A line is considered found when it is at least this many grey levels darker than the paper
/// beside it; otherwise the offset is 0 and `found` is false.
const MIN_LINE_CONTRAST: f64 = 18.0;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Snap {
    pub dx_mm: f64,
    pub dy_mm: f64,
    /// Mean grey-level darkness of the lines at the chosen offset relative to nearby paper.
    pub contrast: f64,
    pub found: bool,
}

/// Which edges of a box a sample belongs to.
#[derive(Clone, Copy)]
enum Axis {
    /// Vertical edge: its position fixes x.
    X,
    /// Horizontal edge: fixes y.
    Y,
}

/// Edge samples: point on the line centre and the unit normal (pointing along the axis).
fn edge_samples(boxes: &[RectMm], line_mm: f64, axis: Axis) -> Vec<[f64; 2]> {
    let half = line_mm / 2.0;
    let mut out = Vec::new();
    for r in boxes {
        let (x0, y0, x1, y1) = (
            r[0] - half,
            r[1] - half,
            r[0] + r[2] + half,
            r[1] + r[3] + half,
        );
        for k in 0..POINTS_PER_EDGE {
            let t = 0.15 + 0.7 * (k as f64 + 0.5) / POINTS_PER_EDGE as f64;
            match axis {
                Axis::X => {
                    let y = y0 + t * (y1 - y0);
                    out.push([x0, y]);
                    out.push([x1, y]);
                }
                Axis::Y => {
                    let x = x0 + t * (x1 - x0);
                    out.push([x, y0]);
                    out.push([x, y1]);
                }
            }
        }
    }
    out
}

/// The points of every other sample position along each edge (both edges of the pair kept),
/// for the coarse step of [`search`] on sharp photos: half the cost, and the fine step still
/// uses them all.
fn coarse_subset(pts: &[[f64; 2]]) -> Vec<[f64; 2]> {
    // `edge_samples` pushes the points of one position on both edges together: pairs.
    pts.chunks(2).step_by(2).flatten().copied().collect()
}

/// Reusable buffers for [`score`]: template points and their images.
#[derive(Default)]
struct Scratch {
    xs: Vec<f64>,
    ys: Vec<f64>,
    px: Vec<f64>,
    py: Vec<f64>,
}

avx2_clone! {
#[allow(clippy::too_many_arguments)]
fn score(
    sampler: &Sampler,
    h: &Homography,
    pts: &[[f64; 2]],
    axis: Axis,
    off: f64,
    other: f64,
    line_mm: f64,
    buf: &mut Scratch,
) -> f64 {
    let side = line_mm / 2.0 + PAPER_OFFSET_MM;
    // Per point three template positions: on the line, and paper on either side of it.
    let (dx, dy) = match axis {
        Axis::X => ([0.0, -side, side], [0.0; 3]),
        Axis::Y => ([0.0; 3], [0.0, -side, side]),
    };
    buf.xs.clear();
    buf.ys.clear();
    for p in pts {
        let (px, py) = match axis {
            Axis::X => (p[0] + off, p[1] + other),
            Axis::Y => (p[0] + other, p[1] + off),
        };
        for k in 0..3 {
            buf.xs.push(px + dx[k]);
            buf.ys.push(py + dy[k]);
        }
    }
    h.apply_points(&buf.xs, &buf.ys, &mut buf.px, &mut buf.py);
    let mut total = 0.0;
    let mut n = 0usize;
    for (qx, qy) in buf.px.chunks_exact(3).zip(buf.py.chunks_exact(3)) {
        let (line, a, b) = (
            sampler.at(qx[0], qy[0]),
            sampler.at(qx[1], qy[1]),
            sampler.at(qx[2], qy[2]),
        );
        if let (Some(l), Some(a), Some(b)) = (line, a, b) {
            // The brighter side is paper for sure (the other may hold ink or a neighbour line).
            total += a.max(b) - l;
            n += 1;
        }
    }
    if n == 0 {
        f64::NEG_INFINITY
    } else {
        total / n as f64
    }
}
}

/// Where [`search`] looks for the best offset.
enum Start<'a> {
    /// The whole range (`±MAX_SNAP_MM`) at the coarse step, scored on these points (a subset
    /// of the fine points: the coarse step only has to land beside the right line), then the
    /// fine step around the coarse winner.
    Coarse(&'a [[f64; 2]]),
    /// Only the fine step within `REFIT_WINDOW_MM` of an offset already found.
    Near(f64),
}

/// Half-width of the fine-only re-fit of x after y was found, mm. Moving the samples along
/// their own lines by the y offset changes the x optimum by far less than this.
const REFIT_WINDOW_MM: f64 = 0.5;

#[allow(clippy::too_many_arguments)]
fn search(
    sampler: &Sampler,
    h: &Homography,
    pts: &[[f64; 2]],
    start: Start,
    axis: Axis,
    other: f64,
    line_mm: f64,
    buf: &mut Scratch,
) -> (f64, f64) {
    let (centre, fine) = match start {
        Start::Coarse(coarse_pts) => {
            let mut best: (f64, f64) = (0.0, f64::NEG_INFINITY);
            let steps = (MAX_SNAP_MM / COARSE_STEP_MM).round() as i32;
            for i in -steps..=steps {
                let off = i as f64 * COARSE_STEP_MM;
                let s = score(sampler, h, coarse_pts, axis, off, other, line_mm, buf);
                // Prefer the smaller offset on ties so flat regions do not drift.
                if s > best.1 + 1e-9 || ((s - best.1).abs() <= 1e-9 && off.abs() < best.0.abs()) {
                    best = (off, s);
                }
            }
            (best.0, (COARSE_STEP_MM / FINE_STEP_MM).round() as i32)
        }
        Start::Near(centre) => (centre, (REFIT_WINDOW_MM / FINE_STEP_MM).round() as i32),
    };
    // The centre is scored on every point, then the fine steps around it; on ties the
    // centre (scored first) stays.
    let mut best = (
        centre,
        score(sampler, h, pts, axis, centre, other, line_mm, buf),
    );
    for i in (-fine..=fine).filter(|&i| i != 0) {
        let off = centre + i as f64 * FINE_STEP_MM;
        let s = score(sampler, h, pts, axis, off, other, line_mm, buf);
        if s > best.1 {
            best = (off, s);
        }
    }
    best
}

/// Snap offsets of a page's fields with boxes, by field id. Row totals borrow the offset of the
/// field they back up (`of`, the candidate's own digit boxes beside them): on the official form
/// their boxes are printed in light grey, next to the black border of their column, so a search
/// of their own locks onto that border or onto the handwriting (measured on renders of the
/// official PDF: half of them moved 1.5-3 mm and the crops cut the digits).
pub fn snap_fields(
    gray: &image::GrayImage,
    h: &Homography,
    fields: &[&Field],
) -> HashMap<String, Snap> {
    let own = |f: &Field| snap_boxes(gray, h, &f.boxes, f.line_mm.unwrap_or(0.5));
    let mut out: HashMap<String, Snap> = fields
        .iter()
        .filter(|f| !f.boxes.is_empty() && f.kind != FieldKind::RowTotals)
        .map(|f| (f.id.clone(), own(f)))
        .collect();
    for f in fields
        .iter()
        .filter(|f| !f.boxes.is_empty() && f.kind == FieldKind::RowTotals)
    {
        let s = match f.of.as_deref().and_then(|of| out.get(of)) {
            Some(parent) => *parent,
            None => own(f),
        };
        out.insert(f.id.clone(), s);
    }
    out
}

/// Find the translation (mm) that best aligns `boxes` (inside edges) with printed lines of width
/// `line_mm`.
pub fn snap_boxes(gray: &image::GrayImage, h: &Homography, boxes: &[RectMm], line_mm: f64) -> Snap {
    if boxes.is_empty() {
        return Snap::default();
    }
    let xs = edge_samples(boxes, line_mm, Axis::X);
    let ys = edge_samples(boxes, line_mm, Axis::Y);
    // Thin the coarse step's points only where lines are several pixels wide (measured: at
    // 12 MP box accuracy was unchanged, at 3 MP it fell by 0.035 points).
    let first = boxes[0];
    let scale = h.local_scale([first[0] + first[2] / 2.0, first[1] + first[3] / 2.0]);
    let sharp = scale >= COARSE_SUBSET_MIN_PX_PER_MM;
    let thinned = sharp.then(|| (coarse_subset(&xs), coarse_subset(&ys)));
    let (xs_coarse, ys_coarse): (&[[f64; 2]], &[[f64; 2]]) = match &thinned {
        Some((x, y)) => (x, y),
        None => (&xs, &ys),
    };
    let sampler = Sampler::new(gray);
    let mut buf = Scratch::default();
    let first_x = search(
        &sampler,
        h,
        &xs,
        Start::Coarse(xs_coarse),
        Axis::X,
        0.0,
        line_mm,
        &mut buf,
    );
    let (dy, sy) = search(
        &sampler,
        h,
        &ys,
        Start::Coarse(ys_coarse),
        Axis::Y,
        first_x.0,
        line_mm,
        &mut buf,
    );
    // Re-fit x with the found y (one alternation suffices for small offsets); on sharp photos
    // only near the first x (at 3 MP the full search kept 0.01 points more box accuracy on
    // seed 53). With dy = 0 the re-fit would sample exactly the first search's points: reuse it.
    let (dx, sx) = if dy == 0.0 {
        first_x
    } else {
        search(
            &sampler,
            h,
            &xs,
            if sharp {
                Start::Near(first_x.0)
            } else {
                Start::Coarse(xs_coarse)
            },
            Axis::X,
            dy,
            line_mm,
            &mut buf,
        )
    };
    let contrast = sx.min(sy);
    if contrast < MIN_LINE_CONTRAST {
        return Snap {
            dx_mm: 0.0,
            dy_mm: 0.0,
            contrast,
            found: false,
        };
    }
    Snap {
        dx_mm: dx,
        dy_mm: dy,
        contrast,
        found: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma};

    /// Draw boxes (inside edges `boxes`, line `line_mm`) at `px_per_mm`, shifted by `shift` mm.
    fn draw(boxes: &[RectMm], line_mm: f64, px_per_mm: f64, shift: [f64; 2]) -> GrayImage {
        let (w, h) = (400u32, 200u32);
        GrayImage::from_fn(w, h, |x, y| {
            let mx = (x as f64 + 0.5) / px_per_mm - shift[0];
            let my = (y as f64 + 0.5) / px_per_mm - shift[1];
            for r in boxes {
                let outer = mx >= r[0] - line_mm
                    && mx <= r[0] + r[2] + line_mm
                    && my >= r[1] - line_mm
                    && my <= r[1] + r[3] + line_mm;
                let inner = mx >= r[0] && mx <= r[0] + r[2] && my >= r[1] && my <= r[1] + r[3];
                if outer && !inner {
                    return Luma([30]);
                }
            }
            Luma([220])
        })
    }

    #[test]
    fn finds_a_known_shift() {
        let boxes = [[10.0, 10.0, 12.0, 15.0], [25.0, 10.0, 12.0, 15.0]];
        let line = 0.6;
        let ppm = 5.0;
        let img = draw(&boxes, line, ppm, [1.3, -0.8]);
        let h = Homography::from_array([ppm, 0.0, 0.0, 0.0, ppm, 0.0, 0.0, 0.0, 1.0]).unwrap();
        let s = snap_boxes(&img, &h, &boxes, line);
        assert!(s.found);
        assert!((s.dx_mm - 1.3).abs() <= 0.1, "{s:?}");
        assert!((s.dy_mm + 0.8).abs() <= 0.1, "{s:?}");
    }

    #[test]
    fn blank_image_is_not_found() {
        let img = GrayImage::from_pixel(200, 200, Luma([200]));
        let h = Homography::from_array([5.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
        let s = snap_boxes(&img, &h, &[[5.0, 5.0, 10.0, 10.0]], 0.5);
        assert!(!s.found);
        assert_eq!((s.dx_mm, s.dy_mm), (0.0, 0.0));
    }
}
