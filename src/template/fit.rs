//! How well the template's digit boxes fit a page image: for each box edge, find the printed
//! line near the expected inside edge and measure the offset.
//!
//! The image must be the upright, full page (e.g. a `pdftoppm` render or a scan cropped to the
//! page), so template mm map to pixels by a plain scale `px_per_mm = width / width_mm`.
//!
//! Method, per edge: a grey profile perpendicular to the edge, averaged over the middle
//! `PROFILE_SPAN` of the edge's length, sampled at every pixel from `SEARCH_MM` inside the
//! expected edge to `SEARCH_MM` outside it. The printed edge is where the profile, walking
//! outwards, first falls below the midpoint between the paper (brightest sample) and the line
//! (darkest sample), interpolated linearly between pixel centres (sub-pixel). For an
//! anti-aliased render that crossing is the geometric edge.

use super::{Template, TemplateError};
use image::GrayImage;
use serde::Serialize;

/// Search window either side of the expected edge, in mm (the contract: +-2 mm).
pub const SEARCH_MM: f64 = 2.0;
/// Fraction of the edge length (centred) averaged into the profile: stays clear of the corners
/// and of neighbouring lines that meet the box there.
const PROFILE_SPAN: f64 = 0.6;
/// Minimum paper-to-line contrast (grey levels) to accept a line; the faintest printed box line
/// on the form (the grey row-total boxes) has about 50 at 150 dpi.
const MIN_CONTRAST: f64 = 25.0;
/// Largest acceptable offset in mm (the template's accuracy contract).
pub const TOLERANCE_MM: f64 = 0.5;
/// Allowed relative difference between the image's aspect ratio and the page's: the image must
/// be the full page.
const ASPECT_TOLERANCE: f64 = 0.01;

/// Edge names in the order of `BoxFit::offsets_mm`.
pub const EDGE_NAMES: [&str; 4] = ["left", "top", "right", "bottom"];

/// Fit of one digit box.
#[derive(Debug, Clone, Serialize)]
pub struct BoxFit {
    pub field: String,
    /// 0-based index of the box within the field.
    pub index: usize,
    /// Signed offset per edge (left, top, right, bottom) of the printed inside edge from the
    /// template's, in mm; positive = the printed edge lies outwards. `None`: no line found.
    pub offsets_mm: [Option<f64>; 4],
}

impl BoxFit {
    /// Largest absolute offset, `f64::INFINITY` when an edge has no line.
    pub fn max_abs_mm(&self) -> f64 {
        self.offsets_mm
            .iter()
            .map(|o| o.map_or(f64::INFINITY, f64::abs))
            .fold(0.0, f64::max)
    }
}

/// Fit of all digit boxes of one page, and of its registration-mark squares and tag.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub page: u32,
    pub px_per_mm: f64,
    /// Digit boxes (digits, row_totals, date).
    pub boxes: Vec<BoxFit>,
    /// Outer edges of the filled mark squares (`field` = `mark:<name>`, `index` = square) and of
    /// the tag (`field` = `tag`); positive offset = the printed edge lies inwards.
    pub marks: Vec<BoxFit>,
}

impl FitReport {
    /// Largest absolute offset over all boxes and marks (`INFINITY` when a line is missing, 0
    /// when there is nothing to check).
    pub fn max_abs_mm(&self) -> f64 {
        self.all().map(BoxFit::max_abs_mm).fold(0.0, f64::max)
    }

    fn all(&self) -> impl Iterator<Item = &BoxFit> {
        self.boxes.iter().chain(&self.marks)
    }

    /// Boxes and marks whose offset exceeds `tol_mm`.
    pub fn misfits(&self, tol_mm: f64) -> Vec<&BoxFit> {
        self.all().filter(|b| b.max_abs_mm() > tol_mm).collect()
    }

    /// The `n` worst boxes or marks, worst first.
    pub fn worst(&self, n: usize) -> Vec<&BoxFit> {
        let mut v: Vec<&BoxFit> = self.all().collect();
        v.sort_by(|a, b| b.max_abs_mm().total_cmp(&a.max_abs_mm()));
        v.truncate(n);
        v
    }
}

/// Measure the fit of every digit box (digits, row_totals, date), mark square and the tag of
/// `page` on `img`.
pub fn measure_fit(img: &GrayImage, t: &Template, page: u32) -> Result<FitReport, TemplateError> {
    let invalid = |message: String| TemplateError::Invalid {
        path: t.id.clone(),
        key: format!("pages[number={page}]"),
        message,
    };
    let p = t
        .page(page)
        .ok_or_else(|| invalid(format!("the template has no page {page}")))?;
    let s = img.width() as f64 / p.width_mm;
    let expected_h = p.height_mm * s;
    if (img.height() as f64 - expected_h).abs() > ASPECT_TOLERANCE * expected_h {
        return Err(invalid(format!(
            "image {}x{} px does not have the page's aspect ({} x {} mm); the fit check needs the \
             upright full page",
            img.width(),
            img.height(),
            p.width_mm,
            p.height_mm
        )));
    }
    let mut boxes = Vec::new();
    for f in t.fields_on_page(page).filter(|f| f.kind.has_boxes()) {
        for (index, r) in f.boxes.iter().enumerate() {
            let (x0, y0, x1, y1) = (r[0] * s, r[1] * s, (r[0] + r[2]) * s, (r[1] + r[3]) * s);
            let offsets_px = [
                edge_offset(img, Axis::X, x0, -1.0, (y0, y1), s),
                edge_offset(img, Axis::Y, y0, -1.0, (x0, x1), s),
                edge_offset(img, Axis::X, x1, 1.0, (y0, y1), s),
                edge_offset(img, Axis::Y, y1, 1.0, (x0, x1), s),
            ];
            boxes.push(BoxFit {
                field: f.id.clone(),
                index,
                offsets_mm: offsets_px.map(|o| o.map(|v| v / s)),
            });
        }
    }
    // filled squares: walk from the paper outside inwards to the first ink
    let mut marks = Vec::new();
    let solid = |field: String, index: usize, r: &[f64; 4]| {
        let (x0, y0, x1, y1) = (r[0] * s, r[1] * s, (r[0] + r[2]) * s, (r[1] + r[3]) * s);
        let offsets_px = [
            edge_offset(img, Axis::X, x0, 1.0, (y0, y1), s),
            edge_offset(img, Axis::Y, y0, 1.0, (x0, x1), s),
            edge_offset(img, Axis::X, x1, -1.0, (y0, y1), s),
            edge_offset(img, Axis::Y, y1, -1.0, (x0, x1), s),
        ];
        BoxFit {
            field,
            index,
            offsets_mm: offsets_px.map(|o| o.map(|v| v / s)),
        }
    };
    for m in &p.marks {
        for (i, sq) in m.squares.iter().enumerate() {
            marks.push(solid(format!("mark:{}", m.name), i, sq));
        }
    }
    marks.push(solid("tag".into(), 0, &p.tag.rect));
    Ok(FitReport {
        page,
        px_per_mm: s,
        boxes,
        marks,
    })
}

#[derive(Clone, Copy)]
enum Axis {
    /// The edge is vertical (constant x); the profile runs along x.
    X,
    /// The edge is horizontal (constant y); the profile runs along y.
    Y,
}

/// Offset in px of the first printed edge met when walking across `edge` (px) in direction
/// `outward` (+1/-1 along the axis), from paper at `SEARCH_MM` before it; `along` = the edge's
/// extent on the other axis (px). Positive = the printed edge lies further along `outward`.
fn edge_offset(
    img: &GrayImage,
    axis: Axis,
    edge: f64,
    outward: f64,
    along: (f64, f64),
    s: f64,
) -> Option<f64> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let len = along.1 - along.0;
    let a0 = (along.0 + len * (1.0 - PROFILE_SPAN) / 2.0).round() as i64;
    let a1 = (along.1 - len * (1.0 - PROFILE_SPAN) / 2.0).round() as i64;
    let (lim_along, lim_across) = match axis {
        Axis::X => (h, w),
        Axis::Y => (w, h),
    };
    let (a0, a1) = (a0.max(0), a1.min(lim_along));
    if a1 <= a0 {
        return None;
    }
    let reach = SEARCH_MM * s;
    // pixel indices from inside to outside
    let start = (edge - outward * reach).floor() as i64;
    let end = (edge + outward * reach).floor() as i64;
    let n = (end - start).abs() + 1;
    let step = if outward > 0.0 { 1 } else { -1 };
    let mut samples: Vec<(f64, f64)> = Vec::with_capacity(n as usize); // (centre px, grey)
    for k in 0..n {
        let c = start + k * step;
        if !(0..lim_across).contains(&c) {
            continue;
        }
        let mut sum = 0u64;
        for a in a0..a1 {
            let (x, y) = match axis {
                Axis::X => (c, a),
                Axis::Y => (a, c),
            };
            sum += img.get_pixel(x as u32, y as u32)[0] as u64;
        }
        samples.push((c as f64 + 0.5, sum as f64 / (a1 - a0) as f64));
    }
    let paper = samples.iter().map(|v| v.1).fold(f64::MIN, f64::max);
    let ink = samples.iter().map(|v| v.1).fold(f64::MAX, f64::min);
    if paper - ink < MIN_CONTRAST {
        return None;
    }
    let thr = (paper + ink) / 2.0;
    let i = samples.iter().position(|v| v.1 < thr)?;
    let found = if i == 0 {
        // already dark at the inner end of the window: the line is further in than we can see
        return None;
    } else {
        let (p0, v0) = samples[i - 1];
        let (p1, v1) = samples[i];
        p0 + (p1 - p0) * (v0 - thr) / (v0 - v1)
    };
    Some((found - edge) * outward)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    /// A synthetic page with one box whose inside edge is at known sub-pixel positions, and
    /// filled rectangles `solid`.
    fn page_with_box(s: f64, rect: [f64; 4], line_mm: f64, solid: &[[f64; 4]]) -> GrayImage {
        let (w, h) = ((600.0 * s) as u32, (900.0 * s) as u32);
        let (x0, y0, x1, y1) = (rect[0], rect[1], rect[0] + rect[2], rect[1] + rect[3]);
        let (ox0, oy0, ox1, oy1) = (x0 - line_mm, y0 - line_mm, x1 + line_mm, y1 + line_mm);
        GrayImage::from_fn(w, h, |px, py| {
            // area coverage by 4x4 supersampling
            let mut ink = 0;
            for sy in 0..4 {
                for sx in 0..4 {
                    let x = (px as f64 + (sx as f64 + 0.5) / 4.0) / s;
                    let y = (py as f64 + (sy as f64 + 0.5) / 4.0) / s;
                    let in_outer = x >= ox0 && x < ox1 && y >= oy0 && y < oy1;
                    let in_inner = x >= x0 && x < x1 && y >= y0 && y < y1;
                    let in_solid = solid
                        .iter()
                        .any(|r| x >= r[0] && x < r[0] + r[2] && y >= r[1] && y < r[1] + r[3]);
                    if (in_outer && !in_inner) || in_solid {
                        ink += 1;
                    }
                }
            }
            Luma([(255.0 - ink as f64 / 16.0 * 228.0).round() as u8])
        })
    }

    #[test]
    fn finds_sub_pixel_edges_and_detects_shifts() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/templates/c-hasil-ppwp-2024.toml"
        ))
        .unwrap();
        let mut t = Template::from_toml_str(&text, "test").unwrap();
        // keep one box on page 1 (the copy is not re-validated)
        t.fields.retain(|f| f.id == "dpt.l");
        t.fields[0].boxes.truncate(1);
        let rect = t.fields[0].boxes[0];
        let s = 2.0; // px per mm (coarse on purpose: sub-pixel accuracy is what is tested)
        let p = &t.pages[0];
        let mut solid: Vec<[f64; 4]> = p.marks.iter().flat_map(|m| m.squares.clone()).collect();
        solid.push(p.tag.rect);
        let img = page_with_box(s, rect, 1.0, &solid);
        let rep = measure_fit(&img, &t, 1).unwrap();
        assert_eq!(rep.boxes.len(), 1);
        assert_eq!(rep.marks.len(), 9);
        assert!(rep.max_abs_mm() < 0.1, "{:?}", rep.worst(3));
        // without the marks printed, every mark edge is missing
        let bare = page_with_box(s, rect, 1.0, &[]);
        let rep = measure_fit(&bare, &t, 1).unwrap();
        assert!(rep.boxes[0].max_abs_mm() < 0.1);
        assert_eq!(rep.misfits(TOLERANCE_MM).len(), 9);
        // the same image against a template moved right by 0.8 mm: the printed left edge now
        // lies 0.8 mm outwards of the expected one, the right edge 0.8 mm inwards
        let moved = t.shifted(0.8, 0.0);
        let rep = measure_fit(&img, &moved, 1).unwrap();
        let o = rep.boxes[0].offsets_mm;
        assert!((o[0].unwrap() - 0.8).abs() < 0.1, "{o:?}");
        assert!((o[2].unwrap() + 0.8).abs() < 0.1, "{o:?}");
        assert!(o[1].unwrap().abs() < 0.1, "{o:?}");
        // marks moved too: their left edges lie 0.8 mm before the expected (negative = outwards)
        let m = rep.marks[0].offsets_mm;
        assert!((m[0].unwrap() + 0.8).abs() < 0.1, "{m:?}");
        assert_eq!(rep.misfits(TOLERANCE_MM).len(), 10);
        // a blank page: no line anywhere
        let blank = GrayImage::from_pixel(img.width(), img.height(), Luma([255]));
        let rep = measure_fit(&blank, &t, 1).unwrap();
        assert_eq!(rep.boxes[0].offsets_mm, [None; 4]);
        assert!(rep.max_abs_mm().is_infinite());
        // wrong aspect
        let wide = GrayImage::new(img.width(), img.width());
        assert!(measure_fit(&wide, &t, 1).is_err());
    }
}
