//! Stage `align`: identify the page (AprilTag id) and its orientation, and fit the homography
//! from template millimetres to image pixels from the registration marks.
//!
//! Method:
//! 1. Work on a box-downscaled copy (long side about [`WORK_LONG_SIDE`] px): adaptive threshold,
//!    shrink dark regions by one pixel so the two squares of a mark (which touch at a corner)
//!    separate, label connected components, keep square-like blobs.
//! 2. Pair squares whose centres are about `sqrt(2)` sides apart: mark candidates.
//! 3. Try 4-subsets of candidates (convex hull corners first) in each of the 4 cyclic
//!    assignments to the template's corner marks; for each, read the AprilTag's 6x6 data modules
//!    through the implied homography and compare with every page's printed code. The tag decides
//!    the page and the orientation (0/90/180/270 and anything between).
//!    When fewer than three marks are seen, `tagfirst` finds the tag among the dark blobs
//!    directly and predicts the marks from it.
//! 4. Refine: locate every mark square's centroid in the full-resolution photo and fit the final
//!    homography by RANSAC over all of them; report the reprojection error in mm.
//!
//!    When no pose reads the tag (heavy blur washes out single modules), `softtag` compares the
//!    whole tag, through poses from four marks, with every page's code blurred alike.
//!
//! Invariant: an [`Alignment`] is only returned when the tag matched a page of the template with
//! at most [`MAX_TAG_HAMMING`] wrong modules, or, through four marks, when its whole pattern
//! matched one page's code far better than any other code and than a plain dark square
//! (`softtag`), so a non-form photo cannot be "aligned" by chance.

pub mod homography;
pub mod sample;
pub mod snap;
mod softtag;
mod tagfirst;

pub use homography::Homography;

use crate::template::{Page, RectMm, Template};
use image::GrayImage;
use sample::downscale;
use serde::{Deserialize, Serialize};

/// Detection runs on an integer-factor downscaled copy whose long side is at least this many
/// pixels: marks (7 mm squares) stay >= ~6 px wide for a page filling half the photo's long side.
pub const WORK_LONG_SIDE: u32 = 1300;
/// Working long side of the second, finer attempt when the coarse one finds no page.
pub const FINE_WORK_LONG_SIDE: u32 = 2000;
/// Adaptive-threshold window radius as a fraction of the working long side; must exceed a mark
/// square's size so square interiors are compared with surrounding paper, not with themselves.
const THRESHOLD_RADIUS_FRACTION: f64 = 1.0 / 50.0;
/// A pixel is dark when this many grey levels below its local mean.
const DARK_DELTA: i32 = 25;
/// Square blobs smaller than this (px, working scale) are noise.
const MIN_SQUARE_AREA: u32 = 12;
/// Largest accepted square blob as a fraction of the working image area.
const MAX_SQUARE_AREA_FRACTION: f64 = 0.01;
/// Square-ness: ratio of the principal second moments (1 for a square; (a/b)^2 for an a x b
/// rectangle). Perspective stretches the far marks' squares: a photo of a form on a wall taken
/// from below reaches 2.8 at its top corners (the top edge at 0.6 of the bottom one). At 1.8
/// such pages were refused or not trusted (test `strong_perspective_is_aligned`); at 3.0, 11
/// screen-photo pages of seed 144 became trusted, and no paper page of seeds 141-143 changed
/// its page or trust (one untrusted cut-corner page got another fit).
const MAX_MOMENT_RATIO: f64 = 3.0;
/// Area relative to that of a square with the same second moments (1 for a square).
const SQUARE_AREA_RANGE: (f64, f64) = (0.8, 1.2);
/// Centre distance of a mark's two squares over their side (sqrt(2) ideally). The side is
/// estimated from the blob area plus the pixels lost on each side to the shrink.
const PAIR_DISTANCE_RANGE: (f64, f64) = (1.15, 1.75);
/// Areas of the two squares of one mark differ by at most this ratio.
const PAIR_AREA_RATIO: f64 = 1.8;
/// Most mark candidates considered in the combinatorial search (best square-ness first).
const MAX_CANDIDATES: usize = 14;
/// A tag is accepted with at most this many wrong data modules. tag36h10 codes differ in at
/// least 10 modules (under all rotations), so 3 errors can never turn one page into another.
pub const MAX_TAG_HAMMING: u32 = 3;
/// Border modules of the tag (all black when printed) that may read white.
const MAX_TAG_BORDER_ERRORS: u32 = 3;
/// Minimum grey-level difference between the tag's black border and its white quiet zone.
const MIN_TAG_CONTRAST: f64 = 25.0;
/// RANSAC inlier threshold for square centroids, in template mm.
const RANSAC_THRESHOLD_MM: f64 = 1.5;
/// Alignment is reported as poor (and its page's readings are never auto-accepted) above this
/// RMS reprojection error of the square centroids, in mm.
pub const MAX_GOOD_RMS_MM: f64 = 0.8;
/// Mark squares (of 8) that must be found and agree for an alignment to be trusted.
const MIN_GOOD_SQUARES: usize = 7;
/// Four-mark poses (largest quadrilaterals first) the blurred-tag fallback tries: the real marks
/// span the page, so they are among the first few.
const SOFT_TAG_MAX_QUADS: usize = 6;
/// Marks that must be seen before the tag may take a missing one's place in the fit.
const MIN_MARKS_WITH_TAG: usize = 3;
/// Share of the four marks' quadrilateral the three seen marks and the tag must still span for
/// a fit through the tag to be trusted: about 0.9 with the tag for the top-right mark, under
/// 0.5 for any other.
const MIN_TAG_STAND_IN_SPREAD: f64 = 0.75;
/// Growth of a mark's other square (fraction of its side) excluded from a square's centroid.
const OTHER_SQUARE_GROW: f64 = 0.15;

#[derive(Debug, thiserror::Error)]
pub enum AlignError {
    #[error("{}", not_a_form_message(*marks))]
    NotAForm { marks: usize },
    #[error(
        "template page {0} has no registration marks named top_left/top_right/bottom_right/bottom_left"
    )]
    TemplateMarks(u32),
}

/// Mark candidates from which a refusal suggests a form page whose tag could not be read.
const FORM_LIKE_MARKS: usize = 3;

fn not_a_form_message(marks: usize) -> String {
    let mut m = format!(
        "not a form page: found {marks} registration-mark candidates, no AprilTag of this template"
    );
    if marks >= FORM_LIKE_MARKS {
        // Glare over the tag (printed top right) or heavy blur leaves the marks visible and the
        // tag unreadable: say so, so that an operator retakes the photo instead of discarding it.
        m.push_str(
            " (if this is a page of the form, its tag at the top right may be covered by glare \
             or blurred: retake the photo)",
        );
    }
    m
}

/// Where a page is in a photo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alignment {
    /// Page number from the AprilTag.
    pub page: u32,
    pub tag_id: u32,
    /// Template mm -> image px, row-major.
    pub homography: [f64; 9],
    /// In-plane rotation of the page in the photo, degrees clockwise as seen on screen, in [0, 360).
    pub rotation_deg: f64,
    /// Wrong tag data modules (0 = perfect read).
    pub tag_hamming: u32,
    /// Mark squares found and used (inliers) out of those in the template.
    pub squares_used: usize,
    pub squares_expected: usize,
    /// RMS and max reprojection error of the square centroids, in mm; infinite (written as
    /// `null`) when too few squares were found to fit anything.
    #[serde(with = "finite_or_null")]
    pub rms_error_mm: f64,
    #[serde(with = "finite_or_null")]
    pub max_error_mm: f64,
    /// Photo pixels per template mm at the page centre.
    pub px_per_mm: f64,
    /// How far (mm, on the page) the printed tag lies from where the fitted homography puts it:
    /// an independent check of the fit, which uses the marks only. `null` when the tag could not
    /// be located near its predicted place.
    #[serde(default, with = "finite_or_null")]
    pub tag_offset_mm: f64,
    /// The same check for each registration mark (template order): how far its printed pattern
    /// lies from where the fit puts it; `null` where the pattern is not there (cut off, covered,
    /// or a different blob was taken for the mark).
    #[serde(default)]
    pub mark_offsets_mm: Vec<Option<f64>>,
    /// True when the fit is good enough to trust readings: enough mark squares, a small
    /// reprojection error ([`MAX_GOOD_RMS_MM`]), the tag where the fit expects it
    /// ([`MAX_GOOD_TAG_OFFSET_MM`]) and every mark's printed pattern there too
    /// ([`MAX_GOOD_MARK_OFFSET_MM`]).
    pub good: bool,
    /// True when one mark was not found and the tag's corners took its place in the fit (see
    /// `tag_stands_in`); the tag offset then checks the fit less independently.
    #[serde(default)]
    pub tag_in_fit: bool,
}

/// JSON has no infinity: a non-finite error is written as `null` and read back as infinite.
mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

impl Alignment {
    pub fn h(&self) -> Option<Homography> {
        Homography::from_array(self.homography)
    }
}

/// A blob that looks like a filled square, in working-image pixels.
#[derive(Debug, Clone, Copy)]
struct Square {
    cx: f64,
    cy: f64,
    area: f64,
    /// 1 = perfect square moments, larger is worse.
    badness: f64,
}

/// A registration-mark candidate (two touching squares) in full-resolution pixels.
#[derive(Debug, Clone, Copy)]
struct MarkCandidate {
    x: f64,
    y: f64,
    badness: f64,
}

const CORNER_ORDER: [&str; 4] = ["top_left", "top_right", "bottom_right", "bottom_left"];

/// Identify and align one photo against every page of `template`.
pub fn align_page(gray: &GrayImage, template: &Template) -> Result<Alignment, AlignError> {
    // Coarse first (fast); if the page is not found, once more at a finer working scale, which
    // rescues pages that fill little of a large photo.
    let (w, h) = gray.dimensions();
    let coarse = (w.max(h) / WORK_LONG_SIDE).max(1);
    let fine = (w.max(h) / FINE_WORK_LONG_SIDE).max(1);
    let groups = page_groups(template)?;
    // Attempts in order of cost: coarse, finer, and finer with a stronger shrink (blur can keep
    // a mark's two squares joined by more than one pixel).
    let mut attempts = vec![(coarse, 1u32)];
    if fine < coarse {
        attempts.push((fine, 1));
    }
    attempts.push((fine, 2));
    let mut last = Err(AlignError::NotAForm { marks: 0 });
    // The coarse attempt's marks, kept for the blurred-tag fallback (the first attempt).
    let mut coarse_marks: Option<Detection> = None;
    let mut found_coarse = false;
    for (factor, shrink) in attempts {
        let det = detect(gray, factor, shrink);
        last = align_at(gray, &groups, &det);
        if !matches!(last, Err(AlignError::NotAForm { .. })) {
            found_coarse = coarse_marks.is_none();
            break;
        }
        coarse_marks.get_or_insert(det);
    }
    // No tag read anywhere: a heavily blurred tag may still show one page's code as a whole.
    if matches!(last, Err(AlignError::NotAForm { .. }))
        && let Some(det) = &coarse_marks
        && let Some(al) = align_soft(gray, template, &groups, det)
    {
        return Ok(al);
    }
    // Found but not trusted at the coarse scale: a mark too small to pass the square tests
    // there leaves the pose to the other marks or the tag alone. The finer scale sees such
    // marks (12 MP photos work at 2/3 of the resolution 3 MP photos get); its fit is taken
    // only when it passes every check. (A page found at a finer attempt was found there
    // already.)
    if let Ok(al) = &last
        && !al.good
        && found_coarse
        && fine < coarse
        && let Ok(fine_al) = align_at(gray, &groups, &detect(gray, fine, 1))
        && fine_al.good
    {
        return Ok(fine_al);
    }
    last
}

/// Pages that share the mark layout and tag position (all pages of the shipped template do):
/// one tag read per candidate pose then serves every page of the group.
type Group<'a> = ([[f64; 2]; 4], RectMm, Vec<&'a Page>);

/// `template`'s pages grouped by mark layout and tag position, in page order.
fn page_groups(template: &Template) -> Result<Vec<Group<'_>>, AlignError> {
    let mut groups: Vec<Group> = Vec::new();
    for page in &template.pages {
        let Some(marks) = corner_marks(page) else {
            return Err(AlignError::TemplateMarks(page.number));
        };
        match groups
            .iter_mut()
            .find(|g| g.0 == marks && g.1 == page.tag.rect)
        {
            Some(g) => g.2.push(page),
            None => groups.push((marks, page.tag.rect, vec![page])),
        }
    }
    Ok(groups)
}

/// Mark detection at one working scale: the binarised downscaled photo and the mark candidates
/// (full-resolution pixels).
struct Detection {
    bin: GrayImage,
    candidates: Vec<MarkCandidate>,
    factor: f64,
    shrink: f64,
}

/// Find the mark candidates on a copy of `gray` downscaled by `factor`, squares separated by
/// `shrink`.
fn detect(gray: &GrayImage, factor: u32, shrink: u32) -> Detection {
    let t0 = std::time::Instant::now();
    let small = downscale(gray, factor);
    let t1 = t0.elapsed();
    let (squares, bowties, bin) = find_squares(&small, shrink);
    let t2 = t0.elapsed();
    let (factor, shrink) = (f64::from(factor), f64::from(shrink));
    let candidates = pair_marks(&bin, &squares, &bowties, factor, shrink);
    tracing::debug!(
        factor,
        ?t1,
        ?t2,
        squares = squares.len(),
        candidates = candidates.len(),
        "align: detection"
    );
    Detection {
        bin,
        candidates,
        factor,
        shrink,
    }
}

/// Find and identify the page from one scale's marks `det`.
fn align_at(gray: &GrayImage, groups: &[Group], det: &Detection) -> Result<Alignment, AlignError> {
    let t0 = std::time::Instant::now();
    let candidates = &det.candidates;
    let mut best: Option<(Alignment, u32)> = None;
    for (marks, rect, pages) in groups {
        let found = search_quads(gray, candidates, marks, rect, pages)
            .or_else(|| search_triples(gray, candidates, marks, rect, pages))
            .or_else(|| {
                tagfirst::search(
                    gray, &det.bin, det.factor, det.shrink, candidates, marks, rect, pages,
                )
            });
        if let Some((h0, page, hamming)) = found {
            let better = best.as_ref().is_none_or(|(_, bh)| hamming < *bh);
            if better && let Some(al) = refine(gray, h0, page, hamming) {
                best = Some((al, hamming));
            }
        }
        if best.as_ref().is_some_and(|(_, hm)| *hm == 0) {
            break;
        }
    }
    tracing::debug!(total = ?t0.elapsed(), "align: done");
    best.map(|(a, _)| a).ok_or(AlignError::NotAForm {
        marks: candidates.len(),
    })
}

/// The last resort for a tag too blurred to read module by module ([`softtag`]): through poses
/// from four of `det`'s marks only.
fn align_soft(
    gray: &GrayImage,
    template: &Template,
    groups: &[Group],
    det: &Detection,
) -> Option<Alignment> {
    let mut quads = page_quads(&det.candidates);
    quads.truncate(SOFT_TAG_MAX_QUADS);
    let codes: Vec<&str> = template.pages.iter().map(|p| p.tag.bits.as_str()).collect();
    groups.iter().find_map(|(marks, rect, pages)| {
        let (h0, page, hamming) = softtag::search(gray, &quads, marks, rect, pages, &codes)?;
        refine(gray, h0, page, hamming)
    })
}

fn corner_marks(page: &Page) -> Option<[[f64; 2]; 4]> {
    let mut out = [[0.0; 2]; 4];
    for (i, name) in CORNER_ORDER.iter().enumerate() {
        out[i] = page.marks.iter().find(|m| m.name == *name)?.center;
    }
    Some(out)
}

/// Square-like blobs, and bowtie-shaped blobs (a mark whose two squares stayed joined at their
/// touching corner) as mark candidates in working-image pixels.
fn find_squares(small: &GrayImage, shrink: u32) -> (Vec<Square>, Vec<MarkCandidate>, GrayImage) {
    let (w, h) = small.dimensions();
    let radius = ((w.max(h) as f64 * THRESHOLD_RADIUS_FRACTION).round() as u32).max(4);
    let mut bin = dark_mask(small, radius, DARK_DELTA);
    // Dark = 0. Grow the white by one pixel so squares touching at a corner separate.
    for _ in 0..shrink {
        max3x3_in_place(&mut bin);
    }
    let m = dark_component_moments(&bin);
    let max_area = (w as f64 * h as f64 * MAX_SQUARE_AREA_FRACTION).max(MIN_SQUARE_AREA as f64);
    let mut out = Vec::new();
    let mut bowties = Vec::new();
    for e in m.iter() {
        let a = e[0];
        if a < MIN_SQUARE_AREA as f64 || a > 2.0 * max_area {
            continue;
        }
        let (cx, cy) = (e[1] / a, e[2] / a);
        let vxx = e[3] / a - cx * cx;
        let vyy = e[4] / a - cy * cy;
        let vxy = e[5] / a - cx * cy;
        let tr = vxx + vyy;
        let det = vxx * vyy - vxy * vxy;
        if det <= 0.0 {
            continue;
        }
        let disc = (tr * tr / 4.0 - det).max(0.0).sqrt();
        let (l1, l2) = (tr / 2.0 + disc, tr / 2.0 - disc);
        if l2 <= 0.0 {
            continue;
        }
        let ratio = l1 / l2;
        if let Some(b) = bowtie(&bin, a, cx, cy, vxx, vxy, l1, l2, shrink as f64) {
            bowties.push(b);
            continue;
        }
        if a > max_area {
            continue;
        }
        // A w x w square (discrete pixels) has variance (w^2 - 1)/12 per axis.
        let area_rel = a / (12.0 * (l1 * l2).sqrt() + 1.0);
        if ratio > MAX_MOMENT_RATIO
            || area_rel < SQUARE_AREA_RANGE.0
            || area_rel > SQUARE_AREA_RANGE.1
        {
            continue;
        }
        out.push(Square {
            cx,
            cy,
            area: a,
            badness: ratio * (1.0 + (area_rel - 1.0).abs()),
        });
    }
    (out, bowties, bin)
}

/// Two squares of side `s` touching at a corner: area `2 s^2`, principal variances `7 s^2 / 12`
/// (along the diagonal) and `s^2 / 12`, i.e. `7A/24` and `A/24`.
const BOWTIE_MAJOR: f64 = 7.0 / 24.0;
const BOWTIE_MINOR: f64 = 1.0 / 24.0;
/// Accepted ratio of measured to expected principal variance.
const BOWTIE_TOLERANCE: (f64, f64) = (0.6, 1.6);

/// Recognise a joined mark from its moments, then confirm its shape: dark at both square
/// centres, light in the two empty quadrants beside the touching corner.
#[allow(clippy::too_many_arguments)]
fn bowtie(
    bin: &GrayImage,
    a: f64,
    cx: f64,
    cy: f64,
    vxx: f64,
    vxy: f64,
    l1: f64,
    l2: f64,
    shrink: f64,
) -> Option<MarkCandidate> {
    let r1 = l1 / (BOWTIE_MAJOR * a);
    let r2 = l2 / (BOWTIE_MINOR * a);
    let ok = |r: f64| r >= BOWTIE_TOLERANCE.0 && r <= BOWTIE_TOLERANCE.1;
    if !ok(r1) || !ok(r2) {
        return None;
    }
    // Major axis direction.
    let (mut ux, mut uy) = (vxy, l1 - vxx);
    if ux.abs() + uy.abs() < 1e-12 {
        (ux, uy) = (1.0, 0.0);
    }
    let n = (ux * ux + uy * uy).sqrt();
    let (ux, uy) = (ux / n, uy / n);
    let side = (a / 2.0).sqrt() + 2.0 * shrink;
    let d = side / std::f64::consts::SQRT_2;
    let iso = mark_shape(bin, [cx, cy], [2.0 * d * ux, 2.0 * d * uy])?;
    Some(MarkCandidate {
        x: cx,
        y: cy,
        badness: (r1 - 1.0).abs() + (r2 - 1.0).abs() + 2.0 + ISOLATION_WEIGHT * (1.0 - iso),
    })
}

/// Moments `[count, Σx, Σy, Σx², Σy², Σxy]` (pixel centres) of every 4-connected dark (0)
/// component of `bin`, in the order of each component's first pixel in raster order.
fn dark_component_moments(bin: &GrayImage) -> Vec<[f64; 6]> {
    fold_dark_components(bin, [0.0; 6], |e, y, x0, x1| {
        let n = (x1 - x0 + 1) as f64;
        // Sums over pixel centres x + 0.5 for x in x0..=x1:
        // Σ(x+0.5) = Σx + n/2 and Σ(x+0.5)² = Σx² + Σx + n/4, with Σx² = f(x1) - f(x0-1).
        let f = |k: f64| k * (k + 1.0) * (2.0 * k + 1.0) / 6.0;
        let s1 = n * (x0 as f64 + x1 as f64) / 2.0;
        let s2 = f(x1 as f64) - f(x0 as f64 - 1.0);
        let sx = s1 + n / 2.0;
        let sxx = s2 + s1 + n / 4.0;
        let yc = y as f64 + 0.5;
        e[0] += n;
        e[1] += sx;
        e[2] += n * yc;
        e[3] += sxx;
        e[4] += n * yc * yc;
        e[5] += yc * sx;
    })
}

/// Bounding box `(x0, y0, x1, y1)` (inclusive) and pixel count of every 4-connected dark (0)
/// component of `bin`, in the order of each component's first pixel in raster order (the order
/// of imageproc's `connected_components` labels).
pub(super) fn dark_component_boxes(bin: &GrayImage) -> Vec<(u32, u32, u32, u32, u32)> {
    fold_dark_components(bin, (u32::MAX, u32::MAX, 0, 0, 0), |e, y, x0, x1| {
        // Coordinates fit u32: they index a GrayImage, whose sides are u32.
        let (y, x0, x1) = (y as u32, x0 as u32, x1 as u32);
        *e = (
            e.0.min(x0),
            e.1.min(y),
            e.2.max(x1),
            e.3.max(y),
            e.4 + (x1 - x0 + 1),
        );
    })
}

/// Fold every 4-connected dark (0) component of `bin` from its horizontal runs `(y, x0, x1)`
/// (inclusive), joined by union-find: cost and memory grow with the number of runs, not pixels,
/// which matters on multi-megapixel photos where ink covers a few percent (a per-pixel labelling
/// of a 3 MP working image held 60 MB). Components come in the order of their first run in
/// raster order; `init` is each component's starting value.
fn fold_dark_components<A: Clone>(
    bin: &GrayImage,
    init: A,
    mut fold: impl FnMut(&mut A, usize, usize, usize),
) -> Vec<A> {
    let (w, h) = (bin.width() as usize, bin.height() as usize);
    let raw = bin.as_raw();
    // Runs: (y, x0, x1 inclusive).
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    let mut row_start = Vec::with_capacity(h + 1);
    for y in 0..h {
        row_start.push(runs.len());
        let row = &raw[y * w..(y + 1) * w];
        let mut x = 0;
        // Paper dominates: the next dark pixel is found by a vectorised byte search
        // (`memchr`), the run's end pixel by pixel (runs are short).
        while let Some(k) = row.get(x..).and_then(|rest| memchr::memchr(0, rest)) {
            let x0 = x + k;
            x = row[x0..].iter().position(|&v| v != 0).map_or(w, |n| x0 + n);
            runs.push((y, x0, x - 1));
        }
    }
    row_start.push(runs.len());
    let mut parent: Vec<usize> = (0..runs.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for y in 1..h {
        let (mut i, iend) = (row_start[y], row_start[y + 1]);
        let (mut j, jend) = (row_start[y - 1], row_start[y]);
        // Two-pointer sweep over overlapping runs of consecutive rows.
        while i < iend && j < jend {
            let (_, a0, a1) = runs[i];
            let (_, b0, b1) = runs[j];
            if a0 <= b1 && b0 <= a1 {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                if ri != rj {
                    parent[ri.max(rj)] = ri.min(rj);
                }
            }
            if a1 < b1 { i += 1 } else { j += 1 }
        }
    }
    let mut index = vec![usize::MAX; runs.len()];
    let mut out: Vec<A> = Vec::new();
    for (k, &(y, x0, x1)) in runs.iter().enumerate() {
        let r = find(&mut parent, k);
        if index[r] == usize::MAX {
            index[r] = out.len();
            out.push(init.clone());
        }
        fold(&mut out[index[r]], y, x0, x1);
    }
    out
}

avx2_clone! {
/// Adaptive threshold: 0 where a pixel is more than `delta` below the mean of the
/// `(2r+1)^2` window around it (clipped at the borders), 255 elsewhere. O(1) per pixel: running
/// column sums over the window's rows, then a prefix sum along each row, so only two rows of
/// sums are held (not a whole-image integral image) and the interior loop vectorises.
fn dark_mask(img: &GrayImage, r: u32, delta: i32) -> GrayImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    let r = r as usize;
    let mut out = vec![255u8; w * h];
    // col[x] = sum of column x over the window's rows [y0, y1); prefix[x] = sum of col[..x].
    // Invariant: every sum is at most (2r+1)^2 * 255, far below i32::MAX for the radii used
    // (r <= 200 keeps it under 2^26), so the comparison is exact in i32.
    let mut col = vec![0i32; w];
    let mut prefix = vec![0i32; w + 1];
    let (mut cy0, mut cy1) = (0usize, 0usize);
    for y in 0..h {
        let y0 = y.saturating_sub(r);
        let y1 = (y + r + 1).min(h);
        while cy1 < y1 {
            for (c, &v) in col.iter_mut().zip(&raw[cy1 * w..(cy1 + 1) * w]) {
                *c += i32::from(v);
            }
            cy1 += 1;
        }
        while cy0 < y0 {
            for (c, &v) in col.iter_mut().zip(&raw[cy0 * w..(cy0 + 1) * w]) {
                *c -= i32::from(v);
            }
            cy0 += 1;
        }
        let mut acc = 0i32;
        for (p, &c) in prefix[1..].iter_mut().zip(&col) {
            acc += c;
            *p = acc;
        }
        let rows = (y1 - y0) as i32;
        let row = &raw[y * w..(y + 1) * w];
        let orow = &mut out[y * w..(y + 1) * w];
        // v < mean - delta  <=>  v * n < sum - delta * n
        let mut put = |x: usize, x0: usize, x1: usize| {
            let n = rows * (x1 - x0) as i32;
            let sum = prefix[x1] - prefix[x0];
            if i32::from(row[x]) * n < sum - delta * n {
                orow[x] = 0;
            }
        };
        // Interior columns have the full window width 2r+1.
        let lo = r.min(w);
        let hi = w.saturating_sub(r).max(lo);
        for x in (0..lo).chain(hi..w) {
            put(x, x.saturating_sub(r), (x + r + 1).min(w));
        }
        if hi > lo {
            let n = rows * (2 * r + 1) as i32;
            let dn = delta * n;
            let sums = prefix[lo + r + 1..=hi + r]
                .iter()
                .zip(&prefix[lo - r..hi - r]);
            // A select rather than a conditional store, so the loop vectorises.
            for ((o, &v), (&a, &b)) in orow[lo..hi].iter_mut().zip(&row[lo..hi]).zip(sums) {
                *o = if i32::from(v) * n < (a - b) - dn {
                    0
                } else {
                    255
                };
            }
        }
    }
    GrayImage::from_raw(w as u32, h as u32, out)
        .unwrap_or_else(|| GrayImage::new(w as u32, h as u32))
}
}

/// 3x3 maximum filter (grows white, shrinks dark by one pixel), separable; edges replicate.
/// 3x3 maximum with replicated edges, as a new image (tests; the pipeline filters in place).
#[cfg(test)]
fn max3x3(img: &GrayImage) -> GrayImage {
    let mut out = img.clone();
    max3x3_in_place(&mut out);
    out
}

/// [`max3x3`] overwriting its input, with three rows of scratch instead of two more images
/// (fresh megabyte buffers on every photo cost more in page faults than the filter itself).
/// Invariant: when row `y` is written, `prev`, `cur` and `next` hold the horizontal maxima of
/// the *original* rows `y - 1`, `y` and `y + 1` (edges replicated); row `y + 1` is still original.
fn max3x3_in_place(img: &mut GrayImage) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        *img = max3x3_simple(img);
        return;
    }
    let hmax = |row: &[u8], out: &mut [u8]| {
        out[0] = row[0].max(row[1]);
        out[w - 1] = row[w - 2].max(row[w - 1]);
        for (t, ((&a, &b), &c)) in out[1..w - 1]
            .iter_mut()
            .zip(row.iter().zip(&row[1..]).zip(&row[2..]))
        {
            *t = a.max(b).max(c);
        }
    };
    let raw: &mut [u8] = img;
    let (mut prev, mut cur, mut next) = (vec![0u8; w], vec![0u8; w], vec![0u8; w]);
    hmax(&raw[..w], &mut cur);
    prev.copy_from_slice(&cur);
    for y in 0..h {
        if y + 1 < h {
            hmax(&raw[(y + 1) * w..(y + 2) * w], &mut next);
        } else {
            next.copy_from_slice(&cur);
        }
        let orow = &mut raw[y * w..(y + 1) * w];
        for (o, ((&a, &b), &c)) in orow.iter_mut().zip(prev.iter().zip(&cur).zip(&next)) {
            *o = a.max(b).max(c);
        }
        // Rotate: the row just read becomes current, the current one previous.
        std::mem::swap(&mut prev, &mut cur);
        std::mem::swap(&mut cur, &mut next);
    }
}

/// Pixel-by-pixel 3x3 maximum with replicated edges (tiny images, and the reference in tests).
fn max3x3_simple(img: &GrayImage) -> GrayImage {
    let (w, h) = img.dimensions();
    GrayImage::from_fn(w, h, |x, y| {
        let mut m = 0u8;
        for yy in y.saturating_sub(1)..=(y + 1).min(h - 1) {
            for xx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                m = m.max(img.get_pixel(xx, yy)[0]);
            }
        }
        image::Luma([m])
    })
}

/// Share of the isolation ring around a mark that must be paper: marks sit in the margin.
const MIN_ISOLATION: f64 = 0.75;
/// Radius of the isolation ring in units of the square-centre distance.
const ISOLATION_RADIUS: f64 = 1.6;
const ISOLATION_SAMPLES: usize = 24;
/// Weight of missing isolation in a candidate's badness.
const ISOLATION_WEIGHT: f64 = 5.0;

/// Check the shape of a mark candidate on the dark mask: centre `c`, `diag` the vector from one
/// square's centre to the other's. Dark at both square centres, light at the two empty
/// quadrants, and mostly light on a ring around it. Returns the ring's light share.
fn mark_shape(bin: &GrayImage, c: [f64; 2], diag: [f64; 2]) -> Option<f64> {
    let dark_at = |x: f64, y: f64| -> Option<bool> {
        if x < 0.0 || y < 0.0 || x >= bin.width() as f64 || y >= bin.height() as f64 {
            return None;
        }
        Some(bin.get_pixel(x as u32, y as u32)[0] == 0)
    };
    let (hx, hy) = (diag[0] / 2.0, diag[1] / 2.0);
    // The squares' edges run at 45 degrees to `diag`; side = |diag| / sqrt(2).
    let len = (diag[0] * diag[0] + diag[1] * diag[1]).sqrt();
    if len < 1e-9 {
        return None;
    }
    let side = len / std::f64::consts::SQRT_2;
    let e1 = [
        (diag[0] - diag[1]) / (len * std::f64::consts::SQRT_2),
        (diag[1] + diag[0]) / (len * std::f64::consts::SQRT_2),
    ];
    let e2 = [-e1[1], e1[0]];
    // 3x3 samples over the inner part of a square centred at q (offsets `f` of the side: the
    // dark squares have lost pixels to the shrink and blur, so their grid is tighter); count
    // those matching `dark`.
    let grid = |q: [f64; 2], dark: bool| -> Option<usize> {
        let f = if dark { 0.18 } else { 0.25 };
        let mut hits = 0;
        for a in [-f, 0.0, f] {
            for b in [-f, 0.0, f] {
                let x = q[0] + side * (a * e1[0] + b * e2[0]);
                let y = q[1] + side * (a * e1[1] + b * e2[1]);
                if dark_at(x, y)? == dark {
                    hits += 1;
                }
            }
        }
        Some(hits)
    };
    // At most one sample per square may disagree (noise, a stray speck).
    const MIN_GRID_HITS: usize = 8;
    let squares_dark = grid([c[0] + hx, c[1] + hy], true)? >= MIN_GRID_HITS
        && grid([c[0] - hx, c[1] - hy], true)? >= MIN_GRID_HITS;
    let quadrants_light = grid([c[0] - hy, c[1] + hx], false)? >= MIN_GRID_HITS
        && grid([c[0] + hy, c[1] - hx], false)? >= MIN_GRID_HITS;
    if !(squares_dark && quadrants_light) {
        return None;
    }
    let r = ISOLATION_RADIUS * (diag[0] * diag[0] + diag[1] * diag[1]).sqrt();
    let mut light = 0usize;
    let mut n = 0usize;
    for k in 0..ISOLATION_SAMPLES {
        let a = k as f64 * std::f64::consts::TAU / ISOLATION_SAMPLES as f64;
        if let Some(d) = dark_at(c[0] + r * a.cos(), c[1] + r * a.sin()) {
            n += 1;
            if !d {
                light += 1;
            }
        }
    }
    let share = if n == 0 { 0.0 } else { light as f64 / n as f64 };
    (share >= MIN_ISOLATION).then_some(share)
}

fn pair_marks(
    bin: &GrayImage,
    squares: &[Square],
    bowties: &[MarkCandidate],
    factor: f64,
    shrink: f64,
) -> Vec<MarkCandidate> {
    let mut out: Vec<MarkCandidate> = bowties
        .iter()
        .map(|b| MarkCandidate {
            x: b.x * factor,
            y: b.y * factor,
            badness: b.badness,
        })
        .collect();
    for (i, a) in squares.iter().enumerate() {
        for b in squares.iter().skip(i + 1) {
            let ratio = a.area.max(b.area) / a.area.min(b.area);
            if ratio > PAIR_AREA_RATIO {
                continue;
            }
            let side = ((a.area + b.area) / 2.0).sqrt() + 2.0 * shrink;
            let d = ((a.cx - b.cx).powi(2) + (a.cy - b.cy).powi(2)).sqrt();
            let rel = d / side;
            if rel < PAIR_DISTANCE_RANGE.0 || rel > PAIR_DISTANCE_RANGE.1 {
                continue;
            }
            let c = [(a.cx + b.cx) / 2.0, (a.cy + b.cy) / 2.0];
            let Some(iso) = mark_shape(bin, c, [b.cx - a.cx, b.cy - a.cy]) else {
                continue;
            };
            out.push(MarkCandidate {
                x: c[0] * factor,
                y: c[1] * factor,
                badness: a.badness
                    + b.badness
                    + ratio
                    + (rel - std::f64::consts::SQRT_2).abs()
                    + ISOLATION_WEIGHT * (1.0 - iso),
            });
        }
    }
    out.sort_by(|p, q| p.badness.total_cmp(&q.badness));
    // Merge near-duplicates (a square can pair with two neighbours in a tag's checkerboard).
    let mut merged: Vec<MarkCandidate> = Vec::new();
    for c in out {
        if merged
            .iter()
            .all(|m| (m.x - c.x).abs() + (m.y - c.y).abs() > 4.0 * factor)
        {
            merged.push(c);
        }
    }
    merged
}

/// Order four points clockwise in image coordinates (y down) starting anywhere.
fn clockwise(pts: &mut [[f64; 2]; 4]) {
    let cx = pts.iter().map(|p| p[0]).sum::<f64>() / 4.0;
    let cy = pts.iter().map(|p| p[1]).sum::<f64>() / 4.0;
    pts.sort_by(|a, b| {
        let ta = (a[1] - cy).atan2(a[0] - cx);
        let tb = (b[1] - cy).atan2(b[0] - cx);
        ta.total_cmp(&tb)
    });
}

fn is_convex(q: &[[f64; 2]; 4]) -> bool {
    let mut sign = 0.0;
    for i in 0..4 {
        let a = q[i];
        let b = q[(i + 1) % 4];
        let c = q[(i + 2) % 4];
        let cross = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]);
        if cross.abs() < 1e-9 {
            return false;
        }
        if sign == 0.0 {
            sign = cross.signum();
        } else if cross.signum() != sign {
            return false;
        }
    }
    true
}

/// A pose whose tag matched a page: homography, page, wrong tag modules.
type TagMatch<'p> = (Homography, &'p Page, u32);

/// The best [`MAX_CANDIDATES`] mark candidates (they are sorted best first) as points.
fn top_points(cands: &[MarkCandidate]) -> Vec<[f64; 2]> {
    cands
        .iter()
        .take(MAX_CANDIDATES)
        .map(|c| [c.x, c.y])
        .collect()
}

/// Fallback when no four marks are seen (a corner cut off, a finger over a mark): every triple
/// of candidates, in every order, against every three of the template's four marks, through
/// the affine map the triple defines; the tag decides as in [`search_quads`].
fn search_triples<'p>(
    gray: &GrayImage,
    cands: &[MarkCandidate],
    tmpl: &[[f64; 2]; 4],
    rect: &RectMm,
    pages: &[&'p Page],
) -> Option<TagMatch<'p>> {
    let top = top_points(cands);
    let n = top.len();
    let mut best: Option<TagMatch<'p>> = None;
    const ORDERS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    // Every pose first, then the tag is read through the most page-like ones first: a wrong
    // pairing of marks shears or squashes the page, the right one maps it with nearly equal
    // scale along both axes (perspective aside). The first perfect tag read ends the search,
    // so on a page with one mark missed it usually takes one or two reads instead of dozens.
    let mut poses: Vec<(f64, Homography)> = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            for c in b + 1..n {
                let tri = [top[a], top[b], top[c]];
                for missing in 0..4 {
                    let src: Vec<[f64; 2]> =
                        (0..4).filter(|&k| k != missing).map(|k| tmpl[k]).collect();
                    for order in ORDERS {
                        let dst = [tri[order[0]], tri[order[1]], tri[order[2]]];
                        if let Some(h) = affine_from_3(&[src[0], src[1], src[2]], &dst) {
                            poses.push((anisotropy(&h), h));
                        }
                    }
                }
            }
        }
    }
    // Stable: equally page-like poses keep the enumeration order.
    poses.sort_by(|x, y| x.0.total_cmp(&y.0));
    for (_, h) in poses {
        if try_pose(gray, h, rect, pages, &mut best) {
            return best;
        }
    }
    best
}

/// Ratio of the larger to the smaller singular value of a homography's linear part (1 for a
/// similarity; infinite when degenerate).
fn anisotropy(h: &Homography) -> f64 {
    let m = h.to_array();
    let (a, b, c, d) = (m[0], m[1], m[3], m[4]);
    // Singular values of [[a, b], [c, d]]: sqrt of the eigenvalues of its Gram matrix.
    let t = a * a + b * b + c * c + d * d;
    let det = (a * d - b * c).abs();
    let disc = (t * t - 4.0 * det * det).max(0.0).sqrt();
    let (s1, s2) = (
        ((t + disc) / 2.0).sqrt(),
        ((t - disc) / 2.0).max(0.0).sqrt(),
    );
    if s2 > 0.0 { s1 / s2 } else { f64::INFINITY }
}

/// The affine map sending three points onto three others, as a homography.
fn affine_from_3(src: &[[f64; 2]; 3], dst: &[[f64; 2]; 3]) -> Option<Homography> {
    let m = nalgebra::Matrix3::new(
        src[0][0], src[0][1], 1.0, src[1][0], src[1][1], 1.0, src[2][0], src[2][1], 1.0,
    );
    let inv = m.try_inverse()?;
    let xs = inv * nalgebra::Vector3::new(dst[0][0], dst[1][0], dst[2][0]);
    let ys = inv * nalgebra::Vector3::new(dst[0][1], dst[1][1], dst[2][1]);
    Homography::from_array([xs[0], xs[1], xs[2], ys[0], ys[1], ys[2], 0.0, 0.0, 1.0])
}

/// Read the tag through a candidate pose and keep it in `best` when it matches a page's code
/// better than before. Returns true on a perfect match (the search can stop).
fn try_pose<'p>(
    gray: &GrayImage,
    h: Homography,
    rect: &RectMm,
    pages: &[&'p Page],
    best: &mut Option<TagMatch<'p>>,
) -> bool {
    let Some(read) = read_tag_within(gray, &h, rect, MAX_TAG_BORDER_ERRORS) else {
        return false;
    };
    for page in pages {
        let hd = hamming(&read.bits, &page.tag.bits);
        if hd <= MAX_TAG_HAMMING && best.as_ref().is_none_or(|(_, _, b)| hd < *b) {
            *best = Some((h, page, hd));
            if hd == 0 {
                return true;
            }
        }
    }
    false
}

/// Search 4-subsets of candidates, largest quads first; return the homography (from the group's
/// marks) whose tag read best matches one of `pages`' codes, with that page and the Hamming
/// distance.
fn search_quads<'p>(
    gray: &GrayImage,
    cands: &[MarkCandidate],
    tmpl: &[[f64; 2]; 4],
    rect: &RectMm,
    pages: &[&'p Page],
) -> Option<TagMatch<'p>> {
    let mut best: Option<TagMatch<'p>> = None;
    for q in page_quads(cands) {
        for h in quad_poses(&q, tmpl) {
            if try_pose(gray, h, rect, pages, &mut best) {
                return best;
            }
        }
    }
    best
}

/// The homographies sending the template's four marks `tmpl` onto the corners of `q`
/// (clockwise) in each of the four cyclic assignments: the page at each quarter turn.
fn quad_poses(q: &[[f64; 2]; 4], tmpl: &[[f64; 2]; 4]) -> impl Iterator<Item = Homography> {
    let (q, tmpl) = (*q, *tmpl);
    (0..4).filter_map(move |shift| {
        let dst = [
            q[shift],
            q[(shift + 1) % 4],
            q[(shift + 2) % 4],
            q[(shift + 3) % 4],
        ];
        Homography::fit(&tmpl, &dst)
    })
}

/// Convex quadrilaterals of the best candidates (corners clockwise), largest first: the real
/// marks span the page, clutter inside the page does not.
fn page_quads(cands: &[MarkCandidate]) -> Vec<[[f64; 2]; 4]> {
    let top = top_points(cands);
    let n = top.len();
    let mut quads: Vec<(f64, [[f64; 2]; 4])> = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            for c in b + 1..n {
                for d in c + 1..n {
                    let mut q = [top[a], top[b], top[c], top[d]];
                    clockwise(&mut q);
                    if !is_convex(&q) {
                        continue;
                    }
                    quads.push((quad_area(&q), q));
                }
            }
        }
    }
    // Stable: equal areas keep the enumeration order.
    quads.sort_by(|x, y| y.0.total_cmp(&x.0));
    quads.into_iter().map(|(_, q)| q).collect()
}

fn quad_area(q: &[[f64; 2]; 4]) -> f64 {
    let mut s = 0.0;
    for i in 0..4 {
        let a = q[i];
        let b = q[(i + 1) % 4];
        s += a[0] * b[1] - a[1] * b[0];
    }
    s.abs() / 2.0
}

/// Mean grey level of the tag module at row `r`, column `c` (module units from the tag's
/// top-left module, fractions and the ring outside allowed) through `h`: 3x3 samples over the
/// inner half of the module. `None` where a sample falls outside the photo.
fn tag_module_mean(
    sampler: &sample::Sampler,
    h: &Homography,
    rect: &RectMm,
    r: f64,
    c: f64,
) -> Option<f64> {
    let m = rect[2] / 8.0;
    let mut s = 0.0;
    for dy in [-0.25, 0.0, 0.25] {
        for dx in [-0.25, 0.0, 0.25] {
            let p = h.apply([rect[0] + (c + 0.5 + dx) * m, rect[1] + (r + 0.5 + dy) * m])?;
            s += sampler.at(p[0], p[1])?;
        }
    }
    Some(s / 9.0)
}

/// A read of a tag's modules.
#[derive(Debug, Clone)]
pub struct TagRead {
    /// 36 data modules, '1' = black, upright-page row-major order.
    pub bits: String,
    pub border_errors: u32,
    pub contrast: f64,
}

/// Sample the tag's 8x8 modules (and the white quiet zone around them) through `h`.
pub fn read_tag(gray: &GrayImage, h: &Homography, rect: &RectMm) -> Option<TagRead> {
    read_tag_within(gray, h, rect, u32::MAX)
}

/// [`read_tag`], giving up (`None`) as soon as more than `max_border_errors` of the black border's
/// modules read white: the border and the quiet zone, which set the threshold, are sampled
/// first and the 36 data modules only for a read that can still be kept. A pose search tries
/// dozens of wrong poses per page (about 50 on 12 MP photos), nearly all of which fail here.
/// Invariant: a read it returns is exactly [`read_tag`]'s (the same modules, each sampled the
/// same way, and the medians do not depend on the order they were sampled in).
fn read_tag_within(
    gray: &GrayImage,
    h: &Homography,
    rect: &RectMm,
    max_border_errors: u32,
) -> Option<TagRead> {
    let sampler = sample::Sampler::new(gray);
    let module_mean = |r: f64, c: f64| tag_module_mean(&sampler, h, rect, r, c);
    // The border ring of the 8x8 grid, row-major.
    let mut border = Vec::with_capacity(28);
    for r in 0..8 {
        for c in 0..8 {
            if r == 0 || r == 7 || c == 0 || c == 7 {
                border.push(module_mean(f64::from(r), f64::from(c))?);
            }
        }
    }
    // Quiet zone: the ring just outside the border (half a module out).
    let mut quiet = Vec::with_capacity(32);
    for i in 0..8 {
        let i = f64::from(i);
        for (r, c) in [(-0.75, i), (7.75, i), (i, -0.75), (i, 7.75)] {
            quiet.push(module_mean(r, c)?);
        }
    }
    let white = crate::upper_median(&mut quiet);
    let black = crate::upper_median(&mut border);
    let contrast = white - black;
    if contrast < MIN_TAG_CONTRAST {
        return None;
    }
    let thr = (white + black) / 2.0;
    let border_errors = border.iter().filter(|v| **v > thr).count() as u32;
    if border_errors > max_border_errors {
        return None;
    }
    let mut bits = String::with_capacity(36);
    for r in 1..7 {
        for c in 1..7 {
            let v = module_mean(f64::from(r), f64::from(c))?;
            bits.push(if v < thr { '1' } else { '0' });
        }
    }
    Some(TagRead {
        bits,
        border_errors,
        contrast,
    })
}

fn hamming(a: &str, b: &str) -> u32 {
    if a.len() != b.len() {
        return u32::MAX;
    }
    a.bytes().zip(b.bytes()).filter(|(x, y)| x != y).count() as u32
}

/// Refine a coarse homography from the centroids of every mark square, found in the
/// full-resolution photo near their predicted positions.
fn refine(gray: &GrayImage, h0: Homography, page: &Page, hamming: u32) -> Option<Alignment> {
    let mut h = h0;
    let mut used = 0;
    let mut expected = 0;
    let mut rms = f64::INFINITY;
    let mut max_err = f64::INFINITY;
    let mut tag_in_fit = false;
    let mut marks_seen = 0;
    // Two rounds on the marks alone: the second starts from the better first fit. Then, only
    // where exactly one mark is still missing, two more with the tag in its place: a page
    // whose marks were all found keeps exactly the fit of the marks (with the tag in the first
    // rounds, a tag located a little off under glare once pulled the fit from a fourth mark it
    // would have found, seed 183).
    // Exactly one mark missing, and enough seen for the tag to be a fourth place.
    let one_short = |seen: usize| seen + 1 == page.marks.len() && seen >= MIN_MARKS_WITH_TAG;
    for round in 0..4 {
        let allow_tag = round >= 2;
        if allow_tag && !one_short(marks_seen) {
            break;
        }
        let mut src = Vec::new();
        let mut dst = Vec::new();
        expected = 0;
        marks_seen = 0;
        for mark in &page.marks {
            let mut seen = false;
            for (i, sq) in mark.squares.iter().enumerate() {
                expected += 1;
                let others: Vec<RectMm> = mark
                    .squares
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    // Grown a little so blur around the touching corner does not pull the centroid.
                    .map(|(_, r)| {
                        let g = r[2] * OTHER_SQUARE_GROW;
                        [r[0] - g, r[1] - g, r[2] + 2.0 * g, r[3] + 2.0 * g]
                    })
                    .collect();
                if let Some(c) = square_centroid(gray, &h, sq, &others) {
                    src.push([sq[0] + sq[2] / 2.0, sq[1] + sq[3] / 2.0]);
                    dst.push(c);
                    seen = true;
                }
            }
            marks_seen += usize::from(seen);
        }
        let squares_found = src.len();
        // One mark short (a corner cut off or covered): the tag's corners, where its printed
        // pattern lies, are the fit's fourth place. Only then: with every mark seen the fit
        // stays on the marks alone, and the tag remains an independent check of it.
        tag_in_fit = false;
        // The tag is first looked for through the pose that read it: a fit on three marks alone
        // may put it beyond the search (seed 183).
        let h_tag = if round == 2 { &h0 } else { &h };
        if allow_tag
            && one_short(marks_seen)
            && let Some(d) = tag_offset(gray, h_tag, &page.tag.rect, &page.tag.bits)
        {
            for c in crate::template::rect_corners(&page.tag.rect) {
                if let Some(p) = h_tag.apply([c[0] + d[0], c[1] + d[1]]) {
                    src.push(c);
                    dst.push(p);
                }
            }
            tag_in_fit = true;
        }
        if src.len() < 4 {
            break;
        }
        let scale = h.local_scale([page.width_mm / 2.0, page.height_mm / 2.0]);
        let fit = homography::ransac(&src, &dst, RANSAC_THRESHOLD_MM * scale)?;
        h = fit.h;
        // Squares only: the tag's corners are not marks.
        used = fit.inliers.iter().filter(|&&i| i < squares_found).count();
        let inv = h.inverse()?;
        let errs: Vec<f64> = fit
            .inliers
            .iter()
            .filter_map(|&i| {
                inv.apply(dst[i])
                    .map(|p| ((p[0] - src[i][0]).powi(2) + (p[1] - src[i][1]).powi(2)).sqrt())
            })
            .collect();
        if errs.is_empty() {
            break;
        }
        rms = (errs.iter().map(|e| e * e).sum::<f64>() / errs.len() as f64).sqrt();
        max_err = errs.iter().copied().fold(0.0, f64::max);
    }
    let centre = [page.width_mm / 2.0, page.height_mm / 2.0];
    let a = h.apply(centre)?;
    let b = h.apply([centre[0] + 1.0, centre[1]])?;
    // Image y points down, so atan2 in pixel coordinates is a clockwise angle as seen on screen.
    let angle = (b[1] - a[1])
        .atan2(b[0] - a[0])
        .to_degrees()
        .rem_euclid(360.0);
    // All four marks must take part, or three with the tag in the missing top-right mark's place
    // (`tag_stands_in`): with three marks alone (a corner cut off) the perspective far from them
    // is poorly determined, so such pages are read but never trusted. A mark matched to the
    // wrong blob can still fit with a small error (the perspective terms absorb one corner), so
    // the tag, which a fit on four marks does not use, must also be where the fit puts it, and
    // each mark's whole printed pattern (both squares and the white around them), not just a
    // dark centroid, must be found at its place.
    let tag_offset = tag_offset_mm(gray, &h, &page.tag.rect, &page.tag.bits);
    let mark_offsets: Vec<f64> = page
        .marks
        .iter()
        .map(|m| mark_offset_mm(gray, &h, m))
        .collect();
    let all_marks =
        used >= MIN_GOOD_SQUARES && mark_offsets.iter().all(|o| *o <= MAX_GOOD_MARK_OFFSET_MM);
    let good = rms <= MAX_GOOD_RMS_MM
        && tag_offset <= MAX_GOOD_TAG_OFFSET_MM
        && (all_marks || (tag_in_fit && tag_stands_in(page, used, &mark_offsets)));
    Some(Alignment {
        page: page.number,
        tag_id: page.tag.id,
        homography: h.to_array(),
        rotation_deg: angle,
        tag_hamming: hamming,
        squares_used: used,
        squares_expected: expected,
        rms_error_mm: rms,
        max_error_mm: max_err,
        px_per_mm: h.local_scale(centre),
        tag_offset_mm: tag_offset,
        mark_offsets_mm: mark_offsets
            .iter()
            .map(|o| o.is_finite().then_some(*o))
            .collect(),
        good,
        tag_in_fit,
    })
}

/// A fit that used the tag for a missing mark is trusted only when the three marks seen are
/// whole (both squares of each in the fit, each printed pattern where the fit puts it) and the
/// tag takes the missing mark's place in the page's spread: the marks' quadrilateral with the
/// tag's centre instead of the missing mark keeps at least [`MIN_TAG_STAND_IN_SPREAD`] of its
/// area. The tag sits beside the top-right mark, so it stands in for that one; for any other
/// mark the four places collapse to three and the perspective far from them rests on the
/// tag's 32 mm alone (such a page is read, not trusted).
fn tag_stands_in(page: &Page, used: usize, mark_offsets: &[f64]) -> bool {
    let Some(corners) = corner_marks(page) else {
        return false;
    };
    let missing: Vec<usize> = (0..mark_offsets.len())
        .filter(|&i| mark_offsets[i] > MAX_GOOD_MARK_OFFSET_MM)
        .collect();
    let squares_seen: usize = page
        .marks
        .iter()
        .zip(mark_offsets)
        .filter(|(_, o)| **o <= MAX_GOOD_MARK_OFFSET_MM)
        .map(|(m, _)| m.squares.len())
        .sum();
    let [gone] = missing.as_slice() else {
        return false;
    };
    // `corner_marks` is in CORNER_ORDER; the offsets are in the template's mark order.
    let Some(slot) = CORNER_ORDER
        .iter()
        .position(|name| page.marks[*gone].name == *name)
    else {
        return false;
    };
    let r = page.tag.rect;
    let mut quad = corners;
    quad[slot] = [r[0] + r[2] / 2.0, r[1] + r[3] / 2.0];
    used >= squares_seen && quad_area(&quad) >= MIN_TAG_STAND_IN_SPREAD * quad_area(&corners)
}

/// Largest offset (mm) between the printed tag and where the fitted homography puts it on a
/// page whose fit is trusted. Measured by [`tag_offset_mm`] on pages whose fit was within 2 mm
/// of the truth everywhere: at most 0.71 mm (866 paper pages, seed 45) and 1.12 mm (291 screen
/// photos, seed 63); fits with a mark matched to the wrong blob put the tag 2-6 mm off (seed 63;
/// seed 46 has three such pages with the tag 3.8-8.7 mm off).
pub const MAX_GOOD_TAG_OFFSET_MM: f64 = 1.5;
/// Patterns (tag, marks) are searched this far (mm) around their predicted place, in steps of
/// [`PATTERN_SEARCH_STEP_MM`]: comfortably beyond the largest offset a trusted fit may show, so a
/// pattern further off is simply not found (and the fit not trusted).
const PATTERN_SEARCH_MM: f64 = 4.0;
const PATTERN_SEARCH_STEP_MM: f64 = 0.5;
/// Offsets scoring at least this share of the best score form the plateau whose centroid is
/// the tag's offset (with one sample per module centre, every offset under half a module
/// matches all modules equally well).
const PATTERN_PLATEAU_SHARE: f64 = 0.97;

/// Offset (mm) between the printed tag (`rect`, data `bits`) and its place under `h` (see
/// `pattern_offset`); infinite when no offset matches the pattern (no tag there, or glare).
pub fn tag_offset_mm(gray: &GrayImage, h: &Homography, rect: &RectMm, bits: &str) -> f64 {
    tag_offset(gray, h, rect, bits).map_or(f64::INFINITY, |d| d[0].hypot(d[1]))
}

/// Where the printed tag lies relative to its place under `h` (template mm, see
/// `pattern_offset`); `None` when no offset matches the pattern.
fn tag_offset(gray: &GrayImage, h: &Homography, rect: &RectMm, bits: &str) -> Option<[f64; 2]> {
    let m = rect[2] / 8.0;
    let data: Vec<bool> = bits.bytes().map(|b| b == b'1').collect();
    if data.len() != 36 {
        return None;
    }
    // Module centres in template mm with their expected colour (true = black); the quiet zone
    // ring half a module outside the border is white.
    let mut points: Vec<([f64; 2], bool)> = Vec::with_capacity(100);
    for r in 0..8 {
        for c in 0..8 {
            let border = r == 0 || r == 7 || c == 0 || c == 7;
            let black = border || data[(r - 1) * 6 + (c - 1)];
            points.push((
                [
                    rect[0] + (c as f64 + 0.5) * m,
                    rect[1] + (r as f64 + 0.5) * m,
                ],
                black,
            ));
        }
    }
    for i in 0..8 {
        let i = i as f64 + 0.5;
        for (x, y) in [(i, -0.25), (i, 8.25), (-0.25, i), (8.25, i)] {
            points.push(([rect[0] + x * m, rect[1] + y * m], false));
        }
    }
    match pattern_offset(gray, h, &points, TAG_WINDOW_STEPS) {
        Some((offset, score)) if score > MIN_TAG_SEPARATION => Some(offset),
        _ => None,
    }
}

/// Sample points of a registration mark (two squares touching at a corner, a 2x2 checkerboard
/// with the other two quadrants white) and the white margin around it, in template mm.
fn mark_pattern(mark: &crate::template::Mark) -> Option<Vec<([f64; 2], bool)>> {
    let [a, b] = mark.squares.as_slice() else {
        return None;
    };
    // The bounding box of both squares; `a` is one diagonal quadrant, `b` the other.
    let (x0, y0) = (a[0].min(b[0]), a[1].min(b[1]));
    let (x1, y1) = (
        (a[0] + a[2]).max(b[0] + b[2]),
        (a[1] + a[3]).max(b[1] + b[3]),
    );
    let inside = |r: &RectMm, p: [f64; 2]| {
        p[0] >= r[0] && p[0] <= r[0] + r[2] && p[1] >= r[1] && p[1] <= r[1] + r[3]
    };
    let mut points = Vec::new();
    const GRID: usize = 6;
    for j in 0..GRID {
        for i in 0..GRID {
            let p = [
                x0 + (i as f64 + 0.5) / GRID as f64 * (x1 - x0),
                y0 + (j as f64 + 0.5) / GRID as f64 * (y1 - y0),
            ];
            points.push((p, inside(a, p) || inside(b, p)));
        }
    }
    let ring = MARK_MARGIN_SAMPLE_MM;
    for k in 0..GRID {
        let t = (k as f64 + 0.5) / GRID as f64;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        for p in [
            [x, y0 - ring],
            [x, y1 + ring],
            [x0 - ring, y],
            [x1 + ring, y],
        ] {
            points.push((p, false));
        }
    }
    Some(points)
}

/// Largest offset (mm) of a mark's printed pattern from its place under a trusted fit. The
/// marks are the fit's own points, so a correct fit leaves them within about a millimetre (at
/// most 1.41 mm on 278 screen photos, seed 63, and 2.06 mm on 857 paper pages, seed 46); a
/// mark matched to the wrong blob has no mark pattern near its place at all. Every wrongly fitted
/// page of those sets (13 of them, 3-230 mm off somewhere) failed this check for at least one
/// mark; so did 4 correctly fitted pages, all with a corner cut off.
pub const MAX_GOOD_MARK_OFFSET_MM: f64 = 2.5;
/// The white margin around a mark is sampled this far (mm) outside its squares.
const MARK_MARGIN_SAMPLE_MM: f64 = 1.5;

/// Offset (mm) of a mark from its place under `h`, or infinite when its pattern is not there
/// (cut off, covered, or the fit put a different blob in its place).
pub fn mark_offset_mm(gray: &GrayImage, h: &Homography, mark: &crate::template::Mark) -> f64 {
    let Some(points) = mark_pattern(mark) else {
        return f64::INFINITY;
    };
    match pattern_offset(gray, h, &points, MARK_WINDOW_STEPS) {
        Some((offset, score)) if score > MIN_MARK_SEPARATION => offset[0].hypot(offset[1]),
        _ => f64::INFINITY,
    }
}

/// A mark pattern must separate its black and white samples by at least this many spreads.
const MIN_MARK_SEPARATION: f64 = 2.0;

/// Half-widths, in steps of [`PATTERN_SEARCH_STEP_MM`], of the window [`pattern_offset`]
/// scores first, for the tag and for a mark (2.5 and 1.5 mm: 11 x 11 and 7 x 7 offsets
/// instead of the full search's 17 x 17). The tag's plateau reaches about half its 4 mm
/// module from its place; a mark's samples lie 2.4 mm apart, and a correct fit leaves a mark
/// within about a millimetre. The full search runs only when the window cannot settle the
/// answer (see [`window_settles`]).
const TAG_WINDOW_STEPS: i32 = 5;
const MARK_WINDOW_STEPS: i32 = 3;

/// One scored offset of a pattern: `(score, dx, dy)`, offsets in template mm.
type PatternScore = (f64, f64, f64);

/// Where a printed pattern lies relative to its place under `h`: the pattern (sample points in
/// template mm, true = black) is slid over the photo by up to [`PATTERN_SEARCH_MM`] and scored at
/// every offset by how well it separates what should be black from what should be white (mean
/// difference over spread); the centroid of the best-scoring offsets is the pattern's offset.
/// Returns the offset (template mm, the pattern's place minus its predicted place) and the best
/// score; `None` when no offset could be sampled entirely inside the photo.
///
/// The offsets within `window` steps are scored first; when the window settles the
/// answer ([`window_settles`]) it is returned without scoring the rest. Invariant: the answer is
/// then the full search's whenever no offset outside the window scores within the plateau share
/// of the window's best, which holds while the score falls off away from the pattern, as it
/// does around a printed pattern (the window's edge already lies below the plateau). The
/// plateau's offsets are summed in the full search's order, so the centroid is the same to the
/// bit.
fn pattern_offset(
    gray: &GrayImage,
    h: &Homography,
    points: &[([f64; 2], bool)],
    window: i32,
) -> Option<([f64; 2], f64)> {
    let full = (PATTERN_SEARCH_MM / PATTERN_SEARCH_STEP_MM).round() as i32;
    let window = window.min(full);
    let mut scorer = PatternScorer::new(gray, points.len());
    let inner = scorer.scores(h, points, window);
    // A window as wide as the full search is the full search.
    if window == full || window_settles(&inner, window) {
        return plateau_centroid(inner.iter().flatten());
    }
    let all = scorer.scores_around(h, points, full, &inner, window);
    plateau_centroid(all.iter().flatten())
}

/// Whether the scores of the offsets within `window` steps (row-major, `None` where the pattern
/// could not be sampled whole) settle [`pattern_offset`]'s answer: some offset scored above 0,
/// every offset on the window's edge was sampled, and all of them score below the plateau share
/// of the best, so the plateau lies strictly inside the window.
fn window_settles(scores: &[Option<PatternScore>], window: i32) -> bool {
    let side = (2 * window + 1) as usize;
    let best = scores
        .iter()
        .flatten()
        .map(|s| s.0)
        .fold(f64::NEG_INFINITY, f64::max);
    if !best.is_finite() || best <= 0.0 {
        return false;
    }
    let bar = best * PATTERN_PLATEAU_SHARE;
    scores.iter().enumerate().all(|(k, s)| {
        let (row, col) = (k / side, k % side);
        let edge = row == 0 || col == 0 || row + 1 == side || col + 1 == side;
        !edge || s.is_some_and(|s| s.0 < bar)
    })
}

/// Centroid of the offsets scoring at least [`PATTERN_PLATEAU_SHARE`] of the best, with the best
/// score; `None` when no offset scored above 0.
fn plateau_centroid<'a>(
    scores: impl Iterator<Item = &'a PatternScore> + Clone,
) -> Option<([f64; 2], f64)> {
    let best = scores
        .clone()
        .map(|s| s.0)
        .fold(f64::NEG_INFINITY, f64::max);
    if !best.is_finite() || best <= 0.0 {
        return None;
    }
    let plateau: Vec<&PatternScore> = scores
        .filter(|s| s.0 >= best * PATTERN_PLATEAU_SHARE)
        .collect();
    let n = plateau.len() as f64;
    let (sx, sy) = plateau
        .iter()
        .fold((0.0, 0.0), |(a, b), s| (a + s.1, b + s.2));
    Some(([sx / n, sy / n], best))
}

/// Scores a pattern at a square of offsets, reusing its buffers between calls.
struct PatternScorer<'a> {
    sampler: sample::Sampler<'a>,
    xs: Vec<f64>,
    ys: Vec<f64>,
    px: Vec<f64>,
    py: Vec<f64>,
    vals: Vec<(f64, bool)>,
}

impl<'a> PatternScorer<'a> {
    fn new(gray: &'a GrayImage, n: usize) -> Self {
        Self {
            sampler: sample::Sampler::new(gray),
            xs: Vec::with_capacity(n),
            ys: Vec::with_capacity(n),
            px: Vec::new(),
            py: Vec::new(),
            vals: Vec::with_capacity(n),
        }
    }

    /// The pattern's score at every offset within `steps` steps of its place, row-major
    /// (dy outer, dx inner, both ascending); `None` where a point fell off the photo.
    fn scores(
        &mut self,
        h: &Homography,
        points: &[([f64; 2], bool)],
        steps: i32,
    ) -> Vec<Option<PatternScore>> {
        // A window of -1 steps holds no offset: every one is scored.
        self.scores_around(h, points, steps, &[], -1)
    }

    /// [`PatternScorer::scores`], taking the offsets within `window` steps from `known` (that
    /// window's scores, as `scores` gives them) instead of scoring them again.
    fn scores_around(
        &mut self,
        h: &Homography,
        points: &[([f64; 2], bool)],
        steps: i32,
        known: &[Option<PatternScore>],
        window: i32,
    ) -> Vec<Option<PatternScore>> {
        let side = 2 * window + 1;
        let mut out = Vec::with_capacity(((2 * steps + 1) * (2 * steps + 1)) as usize);
        for iy in -steps..=steps {
            for ix in -steps..=steps {
                if ix.abs() <= window && iy.abs() <= window {
                    // Invariant: `known` holds the window's (2 window + 1)^2 offsets, row-major.
                    let k = ((iy + window) * side + ix + window) as usize;
                    out.push(known.get(k).copied().flatten());
                    continue;
                }
                let (dx, dy) = (
                    f64::from(ix) * PATTERN_SEARCH_STEP_MM,
                    f64::from(iy) * PATTERN_SEARCH_STEP_MM,
                );
                out.push(score_at(self, h, points, dx, dy).map(|score| (score, dx, dy)));
            }
        }
        out
    }
}

avx2_clone! {
/// Separation of a pattern's black and white samples at offset `(dx, dy)` mm: mean difference
/// over spread; `None` when a point falls off the photo or a colour is absent.
fn score_at(
    sc: &mut PatternScorer,
    h: &Homography,
    points: &[([f64; 2], bool)],
    dx: f64,
    dy: f64,
) -> Option<f64> {
    sc.xs.clear();
    sc.ys.clear();
    sc.xs.extend(points.iter().map(|(c, _)| c[0] + dx));
    sc.ys.extend(points.iter().map(|(c, _)| c[1] + dy));
    // One offset's points mapped in one pass (`apply_points` is `apply` to the bit; a point
    // at infinity comes back NaN, which the sampler refuses like `apply`'s `None`).
    h.apply_points(&sc.xs, &sc.ys, &mut sc.px, &mut sc.py);
    sc.vals.clear();
    let (mut white, mut black, mut nw, mut nb) = (0.0, 0.0, 0u32, 0u32);
    for ((&qx, &qy), (_, is_black)) in sc.px.iter().zip(&sc.py).zip(points) {
        let v = sc.sampler.at(qx, qy)?;
        sc.vals.push((v, *is_black));
        if *is_black {
            black += v;
            nb += 1;
        } else {
            white += v;
            nw += 1;
        }
    }
    if nb == 0 || nw == 0 {
        return None;
    }
    let (mb, mw) = (black / f64::from(nb), white / f64::from(nw));
    let var = sc
        .vals
        .iter()
        .map(|(v, b)| (v - if *b { mb } else { mw }).powi(2))
        .sum::<f64>()
        / sc.vals.len() as f64;
    Some((mw - mb) / (var.sqrt() + 1.0))
}
}

/// A tag pattern must separate its black and white modules by at least this many spreads.
const MIN_TAG_SEPARATION: f64 = 2.0;

/// Weighted centroid of the dark pixels of one printed square, searched in its predicted
/// neighbourhood (the square grown by 40 %, minus the mark's other squares).
fn square_centroid(
    gray: &GrayImage,
    h: &Homography,
    sq: &RectMm,
    others: &[RectMm],
) -> Option<[f64; 2]> {
    const GROW: f64 = 0.4;
    let (gx, gy) = (sq[2] * GROW, sq[3] * GROW);
    let region = [sq[0] - gx, sq[1] - gy, sq[2] + 2.0 * gx, sq[3] + 2.0 * gy];
    let corners = [
        h.apply([region[0], region[1]])?,
        h.apply([region[0] + region[2], region[1]])?,
        h.apply([region[0] + region[2], region[1] + region[3]])?,
        h.apply([region[0], region[1] + region[3]])?,
    ];
    let (w, hh) = gray.dimensions();
    let x0 = corners
        .iter()
        .map(|p| p[0])
        .fold(f64::INFINITY, f64::min)
        .floor()
        .max(0.0) as u32;
    let x1 = corners
        .iter()
        .map(|p| p[0])
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil()
        .min(w as f64) as u32;
    let y0 = corners
        .iter()
        .map(|p| p[1])
        .fold(f64::INFINITY, f64::min)
        .floor()
        .max(0.0) as u32;
    let y1 = corners
        .iter()
        .map(|p| p[1])
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil()
        .min(hh as f64) as u32;
    if x1 <= x0 + 2 || y1 <= y0 + 2 {
        return None;
    }
    let inv = h.inverse()?;
    let inside = |r: &RectMm, p: [f64; 2]| {
        p[0] >= r[0] && p[0] <= r[0] + r[2] && p[1] >= r[1] && p[1] <= r[1] + r[3]
    };
    let mut pix = Vec::with_capacity(((x1 - x0) * (y1 - y0)) as usize);
    // Pixel centres of one row, mapped a row at a time (bit-identical to `inv.apply`; a point
    // at infinity comes back as NaN and fails `inside`).
    let xs: Vec<f64> = (x0..x1).map(|x| x as f64 + 0.5).collect();
    let (mut tx, mut ty) = (Vec::new(), Vec::new());
    for y in y0..y1 {
        inv.apply_row(&xs, y as f64 + 0.5, &mut tx, &mut ty);
        for ((x, &u), &v) in (x0..x1).zip(&tx).zip(&ty) {
            let t = [u, v];
            if !inside(&region, t) || others.iter().any(|o| inside(o, t)) {
                continue;
            }
            pix.push((x, y, gray.get_pixel(x, y)[0]));
        }
    }
    if pix.len() < 9 {
        return None;
    }
    let mut vals: Vec<f64> = pix.iter().map(|p| p.2 as f64).collect();
    // Ranks len/10 and 9 len/10 of the sorted values, by selection: after the first select
    // everything left of `hi` is <= vals[hi], so the second one ranks within the whole.
    let (lo, hi) = (vals.len() / 10, vals.len() * 9 / 10);
    let light = *vals.select_nth_unstable_by(hi, |a, b| a.total_cmp(b)).1;
    let dark = if lo < hi {
        *vals[..hi]
            .select_nth_unstable_by(lo, |a, b| a.total_cmp(b))
            .1
    } else {
        light
    };
    if light - dark < MIN_TAG_CONTRAST {
        return None;
    }
    let thr = (dark + light) / 2.0;
    let (mut s, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for (x, y, v) in pix {
        let wgt = ((thr - v as f64) / (thr - dark)).clamp(0.0, 1.0);
        s += wgt;
        sx += wgt * (x as f64 + 0.5);
        sy += wgt * (y as f64 + 0.5);
    }
    if s < 4.0 {
        return None;
    }
    Some([sx / s, sy / s])
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;
    use imageproc::region_labelling::{Connectivity, connected_components};
    use proptest::prelude::*;
    use std::path::Path;

    /// A photo at 4 px/mm (the homography `h`) of the form's top-left registration mark,
    /// printed `shift` mm from its template place, softened like a camera would.
    fn photo_of_mark(mark: &crate::template::Mark, shift: [f64; 2]) -> (GrayImage, Homography) {
        let scale = 4.0;
        let h = Homography::from_array([scale, 0.0, -100.0, 0.0, scale, -150.0, 0.0, 0.0, 1.0])
            .unwrap();
        let img = GrayImage::from_fn(160, 160, |x, y| {
            // Supersampled coverage of the squares, so the edges are grey as in a photo.
            let mut dark = 0.0;
            for sy in 0..4 {
                for sx in 0..4 {
                    let px = f64::from(x) + (f64::from(sx) + 0.5) / 4.0;
                    let py = f64::from(y) + (f64::from(sy) + 0.5) / 4.0;
                    let (mx, my) = (
                        (px + 100.0) / scale - shift[0],
                        (py + 150.0) / scale - shift[1],
                    );
                    let inside = mark
                        .squares
                        .iter()
                        .any(|r| mx >= r[0] && mx < r[0] + r[2] && my >= r[1] && my < r[1] + r[3]);
                    dark += f64::from(u8::from(inside)) / 16.0;
                }
            }
            Luma([(235.0 - 200.0 * dark).round() as u8])
        });
        (img, h)
    }

    /// The window search answers exactly as the full search does, whether the mark lies inside
    /// the window or beyond it (where it falls back to the full search), and still finds no
    /// mark where there is none.
    #[test]
    fn windowed_pattern_search_matches_the_full_search() {
        let template = crate::template::Template::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/templates/c-hasil-ppwp-2024.toml"
        )))
        .unwrap();
        let mark = &template.pages[0].marks[0];
        let points = mark_pattern(mark).unwrap();
        for shift in [
            [0.0, 0.0],
            [0.6, -0.3],
            [-1.2, 0.9],
            [2.3, 0.4],
            [-0.2, -3.1],
        ] {
            let (img, h) = photo_of_mark(mark, shift);
            let windowed = pattern_offset(&img, &h, &points, MARK_WINDOW_STEPS);
            let full = pattern_offset(&img, &h, &points, i32::MAX);
            assert_eq!(windowed, full, "shift {shift:?}");
            let (offset, score) = full.unwrap();
            assert!(
                score > MIN_MARK_SEPARATION,
                "shift {shift:?}: score {score}"
            );
            // Found within the search step of where it was printed.
            assert!(
                (offset[0] - shift[0]).abs() <= PATTERN_SEARCH_STEP_MM
                    && (offset[1] - shift[1]).abs() <= PATTERN_SEARCH_STEP_MM,
                "shift {shift:?}: found {offset:?}"
            );
        }
        let blank = GrayImage::from_pixel(160, 160, Luma([235]));
        let h = photo_of_mark(mark, [0.0, 0.0]).1;
        assert_eq!(pattern_offset(&blank, &h, &points, MARK_WINDOW_STEPS), None);
    }

    /// A photo at 4 px/mm of page 1's tag (`module_grid`, on white paper), with the pose that
    /// maps the template onto it.
    fn photo_of_tag(tag: &crate::template::Tag) -> (GrayImage, Homography) {
        let scale = 4.0;
        let (x0, y0) = (tag.rect[0] - 20.0, tag.rect[1] - 20.0);
        let h = Homography::from_array([
            scale,
            0.0,
            -x0 * scale,
            0.0,
            scale,
            -y0 * scale,
            0.0,
            0.0,
            1.0,
        ])
        .unwrap();
        let grid = tag.module_grid();
        let m = tag.rect[2] / 8.0;
        let img = GrayImage::from_fn(
            ((tag.rect[2] + 40.0) * scale) as u32,
            ((tag.rect[3] + 40.0) * scale) as u32,
            |x, y| {
                let (mx, my) = (
                    (f64::from(x) + 0.5) / scale + x0,
                    (f64::from(y) + 0.5) / scale + y0,
                );
                let (c, r) = ((mx - tag.rect[0]) / m, (my - tag.rect[1]) / m);
                let black = (0.0..8.0).contains(&c)
                    && (0.0..8.0).contains(&r)
                    && grid[r as usize][c as usize];
                Luma([if black { 30 } else { 225 }])
            },
        );
        (img, h)
    }

    /// The early-refusing read gives exactly `read_tag`'s answer for any pose whose border
    /// reads black (the right one, and one turned a quarter), and refuses a pose `read_tag`
    /// reads with too many border errors.
    #[test]
    fn a_tag_read_that_gives_up_early_agrees_with_the_full_read() {
        let template = crate::template::Template::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/templates/c-hasil-ppwp-2024.toml"
        )))
        .unwrap();
        let tag = &template.pages[0].tag;
        let (img, h) = photo_of_tag(tag);
        let full = read_tag(&img, &h, &tag.rect).unwrap();
        assert_eq!(full.bits, tag.bits);
        assert_eq!(full.border_errors, 0);
        let early = read_tag_within(&img, &h, &tag.rect, MAX_TAG_BORDER_ERRORS).unwrap();
        assert_eq!(
            (early.bits, early.border_errors, early.contrast),
            (full.bits, 0, full.contrast)
        );
        // Wrong poses: shifted by half a module (the border ring then straddles white), and
        // turned a quarter about the tag's centre (the border still reads black, the bits turn).
        let c = [
            tag.rect[0] + tag.rect[2] / 2.0,
            tag.rect[1] + tag.rect[3] / 2.0,
        ];
        let turn =
            Homography::from_array([0.0, -1.0, c[0] + c[1], 1.0, 0.0, c[1] - c[0], 0.0, 0.0, 1.0])
                .unwrap();
        let shifted = h
            .compose(&Homography::translation(tag.rect[2] / 16.0, 0.0))
            .unwrap();
        let turned = h.compose(&turn).unwrap();
        let full = read_tag(&img, &shifted, &tag.rect).unwrap();
        assert!(full.border_errors > MAX_TAG_BORDER_ERRORS, "{full:?}");
        assert!(read_tag_within(&img, &shifted, &tag.rect, MAX_TAG_BORDER_ERRORS).is_none());
        let full = read_tag(&img, &turned, &tag.rect).unwrap();
        let early = read_tag_within(&img, &turned, &tag.rect, MAX_TAG_BORDER_ERRORS).unwrap();
        assert_eq!(full.border_errors, 0);
        assert_ne!(full.bits, tag.bits);
        assert_eq!(
            (early.bits, early.border_errors, early.contrast),
            (full.bits, full.border_errors, full.contrast)
        );
    }

    /// The window settles only when its whole edge was sampled and scores below the plateau.
    #[test]
    fn a_window_settles_only_with_its_plateau_inside() {
        // A 3 x 3 window (1 step): the centre and one edge offset.
        let grid = |edge: Option<f64>| -> Vec<Option<PatternScore>> {
            (0..9)
                .map(|k| match k {
                    4 => Some((10.0, 0.0, 0.0)),
                    1 => edge.map(|e| (e, 0.0, -0.5)),
                    _ => Some((1.0, 0.0, 0.0)),
                })
                .collect()
        };
        assert!(window_settles(&grid(Some(9.0)), 1));
        // An edge offset on the plateau (0.97 of the best or more): the plateau may go on.
        assert!(!window_settles(&grid(Some(9.7)), 1));
        // An edge offset off the photo: the full search must look.
        assert!(!window_settles(&grid(None), 1));
        // Nothing scored above 0.
        let flat: Vec<Option<PatternScore>> = (0..9).map(|_| Some((0.0, 0.0, 0.0))).collect();
        assert!(!window_settles(&flat, 1));
    }

    #[test]
    fn a_refusal_with_form_like_marks_suggests_a_retake() {
        let plain = AlignError::NotAForm { marks: 1 }.to_string();
        let form_like = AlignError::NotAForm { marks: 3 }.to_string();
        assert!(
            plain.starts_with("not a form page") && !plain.contains("retake"),
            "{plain}"
        );
        assert!(form_like.starts_with("not a form page") && form_like.contains("retake"));
    }

    #[test]
    fn alignment_without_a_fit_round_trips_through_json() {
        let al = Alignment {
            page: 2,
            tag_id: 102,
            homography: Homography::identity().to_array(),
            rotation_deg: 0.0,
            tag_hamming: 0,
            squares_used: 0,
            squares_expected: 8,
            rms_error_mm: f64::INFINITY,
            max_error_mm: f64::INFINITY,
            px_per_mm: 2.0,
            tag_offset_mm: f64::INFINITY,
            mark_offsets_mm: Vec::new(),
            good: false,
            tag_in_fit: false,
        };
        let text = serde_json::to_string(&al).unwrap();
        assert!(text.contains("\"rms_error_mm\":null"), "{text}");
        let back: Alignment = serde_json::from_str(&text).unwrap();
        assert!(back.rms_error_mm.is_infinite() && back.max_error_mm.is_infinite());
        let fine = Alignment {
            rms_error_mm: 0.25,
            ..al
        };
        let back: Alignment = serde_json::from_str(&serde_json::to_string(&fine).unwrap()).unwrap();
        assert_eq!(back.rms_error_mm, 0.25);
    }

    /// The whole-image integral-image threshold `dark_mask` replaced (reference for its output).
    fn dark_mask_integral(img: &GrayImage, r: u32, delta: i32) -> GrayImage {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let raw = img.as_raw();
        let stride = w + 1;
        let mut ii = vec![0u32; (w + 1) * (h + 1)];
        for y in 0..h {
            let mut row = 0u32;
            for x in 0..w {
                row += u32::from(raw[y * w + x]);
                ii[(y + 1) * stride + x + 1] = ii[y * stride + x + 1] + row;
            }
        }
        let r = r as usize;
        GrayImage::from_fn(w as u32, h as u32, |x, y| {
            let (x, y) = (x as usize, y as usize);
            let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(h));
            let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(w));
            let sum = ii[y1 * stride + x1] + ii[y0 * stride + x0]
                - ii[y0 * stride + x1]
                - ii[y1 * stride + x0];
            let n = ((y1 - y0) * (x1 - x0)) as i64;
            let v = i64::from(raw[y * w + x]);
            Luma([if v * n < i64::from(sum) - i64::from(delta) * n {
                0
            } else {
                255
            }])
        })
    }

    fn noise_image(seed: u64, w: u32, h: u32) -> GrayImage {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        GrayImage::from_fn(w, h, |x, y| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Smooth-ish background plus noise, so both outcomes of the threshold occur.
            let base = (x * 3 + y * 5) % 200;
            Luma([(base as u64 + ((state >> 33) % 56)) as u8])
        })
    }

    /// Per-step CPU profile of alignment on a real 12 MP page (not a speed assertion):
    /// `REKAP_PROFILE_PAGE=photo.jpg cargo test --release --lib align::tests::profile -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn profile_align_steps() {
        let Some(path) = std::env::var_os("REKAP_PROFILE_PAGE") else {
            return;
        };
        let photo = crate::load::load_photo(std::path::Path::new(&path)).expect("photo");
        let template = Template::load(std::path::Path::new(crate::template::DEFAULT_TEMPLATE_PATH))
            .expect("template");
        let gray = &photo.gray;
        let factor = (gray.width().max(gray.height()) / WORK_LONG_SIDE).max(1);
        let time = |name: &str, f: &mut dyn FnMut()| {
            let mut best = f64::INFINITY;
            for _ in 0..15 {
                let t = std::time::Instant::now();
                f();
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            eprintln!("{name:24} {best:7.3} ms (min of 15)");
        };
        let small = downscale(gray, factor);
        let (w, h) = small.dimensions();
        let radius = ((w.max(h) as f64 * THRESHOLD_RADIUS_FRACTION).round() as u32).max(4);
        let mask = dark_mask(&small, radius, DARK_DELTA);
        let bin = max3x3(&mask);
        time("downscale", &mut || {
            std::hint::black_box(downscale(gray, factor));
        });
        time("dark_mask", &mut || {
            std::hint::black_box(dark_mask(&small, radius, DARK_DELTA));
        });
        time("max3x3", &mut || {
            std::hint::black_box(max3x3(&mask));
        });
        time("component moments", &mut || {
            std::hint::black_box(dark_component_moments(&bin));
        });
        time("find_squares", &mut || {
            std::hint::black_box(find_squares(&small, 1));
        });
        time("align_page total", &mut || {
            let _ = std::hint::black_box(align_page(gray, &template));
        });
        let src: Vec<[f64; 2]> = (0..8)
            .map(|i| [(i * 37 % 11) as f64 * 50.0, (i * 13 % 7) as f64 * 80.0])
            .collect();
        let dst: Vec<[f64; 2]> = src
            .iter()
            .map(|p| {
                [
                    p[0] * 3.9 + 0.01 * p[1] + 200.0,
                    p[1] * 3.8 - 0.02 * p[0] + 90.0,
                ]
            })
            .collect();
        time("ransac of 8 points", &mut || {
            std::hint::black_box(homography::ransac(&src, &dst, 5.0));
        });
        let cands = {
            let (sq, bt, b) = find_squares(&small, 1);
            pair_marks(&b, &sq, &bt, factor as f64, 1.0)
        };
        let page = &template.pages[0];
        let marks = corner_marks(page).expect("marks");
        let pages: Vec<&Page> = template.pages.iter().collect();
        time("search_quads", &mut || {
            std::hint::black_box(search_quads(gray, &cands, &marks, &page.tag.rect, &pages));
        });
        let (h0, pg, hd) =
            search_quads(gray, &cands, &marks, &page.tag.rect, &pages).expect("found");
        time("refine", &mut || {
            std::hint::black_box(refine(gray, h0, pg, hd));
        });
    }

    proptest! {
        /// The streaming threshold gives exactly the integral-image result, borders included.
        #[test]
        fn dark_mask_matches_integral_reference(
            seed in 0u64..1000, w in 1u32..60, h in 1u32..60, r in 1u32..30, delta in 0i32..40
        ) {
            let img = noise_image(seed, w, h);
            prop_assert_eq!(dark_mask(&img, r, delta), dark_mask_integral(&img, r, delta));
        }

        /// The vectorised 3x3 maximum equals the pixel-by-pixel one.
        #[test]
        fn max3x3_matches_simple(seed in 0u64..1000, w in 1u32..40, h in 1u32..40) {
            let img = noise_image(seed, w, h);
            prop_assert_eq!(max3x3(&img), max3x3_simple(&img));
        }
    }

    /// A random binary image (dark = 0 with probability `density`) and imageproc's 4-connected
    /// labelling of its dark pixels, with the number of labels.
    fn speckles(
        seed: u64,
        density: f64,
        w: u32,
        h: u32,
    ) -> (GrayImage, image::ImageBuffer<Luma<u32>, Vec<u32>>, usize) {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let img = GrayImage::from_fn(w, h, |_, _| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 33) as f64 / (1u64 << 31) as f64;
            Luma([if u < density { 0 } else { 255 }])
        });
        let labels = connected_components(&img, Connectivity::Four, Luma([255u8]));
        let n = labels.iter().copied().max().unwrap_or(0) as usize;
        (img, labels, n)
    }

    proptest! {
        /// The run-based boxes are imageproc's components, in the order of its labels.
        #[test]
        fn run_boxes_match_pixel_labelling(seed in 0u64..1000, density in 0.05f64..0.6) {
            let (img, labels, n) = speckles(seed, density, 41, 29);
            let mut want = vec![(u32::MAX, u32::MAX, 0, 0, 0); n];
            for (x, y, l) in labels.enumerate_pixels() {
                if l[0] == 0 { continue; }
                let e = &mut want[l[0] as usize - 1];
                *e = (e.0.min(x), e.1.min(y), e.2.max(x), e.3.max(y), e.4 + 1);
            }
            prop_assert_eq!(want, dark_component_boxes(&img));
        }

        /// The run-based labelling gives the same components and moments as imageproc's.
        #[test]
        fn run_moments_match_pixel_labelling(seed in 0u64..1000, density in 0.05f64..0.6) {
            let (img, labels, n) = speckles(seed, density, 37, 23);
            let mut want = vec![[0f64; 6]; n];
            for (x, y, l) in labels.enumerate_pixels() {
                if l[0] == 0 { continue; }
                let (xf, yf) = (x as f64 + 0.5, y as f64 + 0.5);
                let e = &mut want[l[0] as usize - 1];
                e[0] += 1.0; e[1] += xf; e[2] += yf; e[3] += xf * xf; e[4] += yf * yf; e[5] += xf * yf;
            }
            let mut got = dark_component_moments(&img);
            let key = |e: &[f64; 6]| (e[0] as i64, (e[1] * 2.0) as i64, (e[2] * 2.0) as i64);
            want.sort_by_key(key);
            got.sort_by_key(key);
            prop_assert_eq!(want.len(), got.len());
            for (a, b) in want.iter().zip(&got) {
                for k in 0..6 {
                    prop_assert!((a[k] - b[k]).abs() < 1e-6, "{:?} vs {:?}", a, b);
                }
            }
        }
    }
}
