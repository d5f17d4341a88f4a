//! Stage `segment`: cut every box from the photo through the page homography (never warping the
//! whole page), turn it into an ink map for the digit model, and measure bubbles and tally cells.

pub mod lines;
pub mod normalize;

use crate::align::Homography;
use crate::align::sample::Sampler;
use crate::decide::{BubbleColumn, BubbleState, TallyRange};
use crate::template::{Field, RectMm};
use image::GrayImage;
use normalize::{InkMap, ink_map_with_levels};

/// Box crops are resampled at this many pixels per mm (a 17 mm box becomes ~50 px, the size the
/// model's training crops have; phone photos of the whole page rarely hold more than 4 px/mm).
pub const SAMPLE_PX_PER_MM: f64 = 3.0;
/// The crop stops this far inside the box's inner edge so that the printed line (already
/// snapped to within ~0.2 mm) stays out.
pub const BOX_MARGIN_MM: f64 = 0.45;
/// Grey value used for samples outside the photo (counted separately as off-photo).
const OFF_PHOTO_FILL: u8 = 255;
/// Supersampling per axis when the photo has more pixels per mm than the crop.
const SUPERSAMPLE_ABOVE_RATIO: f64 = 1.3;

/// One digit box, cut and cleaned.
#[derive(Debug, Clone)]
pub struct BoxCrop {
    pub gray: GrayImage,
    pub ink: InkMap,
    /// Share of the crop's samples that fell outside the photo.
    pub off_photo: f64,
    /// The crop's corners in photo pixels (top-left, top-right, bottom-right, bottom-left).
    pub quad_px: [[f64; 2]; 4],
    /// Paper grey level (80th percentile) and paper-minus-ink range (80th - 1st percentile);
    /// when box-line remnants were erased, the range is that of what is left.
    pub paper: f64,
    pub range: f64,
    /// Separate box-line remnants erased from `ink` (`gray` keeps them, for review).
    pub edge_lines: usize,
    /// Paper minus the dark level of the box's printed outline ([`frame_contrast`]), measured
    /// only when the paper is saturated ([`SATURATED_PAPER`]); `None` otherwise.
    pub frame_contrast: Option<f64>,
    /// Samples (row-major, one per pixel of `gray`) the faint-mark test leaves out: the track
    /// of a printed guide ([`without_guide`]). Empty: none.
    pub hidden: Vec<bool>,
}

/// A crop whose tensor came out empty although its grey range is at least this: a faint mark
/// under the ink threshold may be there. Measured on `rekap crops` of a synth set (seed 31): empty
/// truly-blank boxes have range median 11, 90th percentile 22; vanished digits 9-27.
pub const DOUBTFUL_EMPTY_RANGE: f64 = 20.0;
/// Paper at or above this grey level is saturated (glare, overexposure): strokes may be gone.
pub const SATURATED_PAPER: f64 = 250.0;
/// How far beyond the box's printed outline the outline test samples, mm (the line itself is
/// about 0.3 mm wide; the margin absorbs alignment and snap error).
pub const FRAME_BAND_MM: f64 = 0.6;
/// Share of the outline test's samples taken as the outline's dark level (a low quantile: the
/// printed line covers about a tenth of the sampled rectangle).
pub const FRAME_DARK_QUANTILE: f64 = 0.05;
/// Saturated paper washes strokes out only where the light also lifts the print: an empty box on
/// saturated paper whose printed outline still stands at least this far below the paper is read
/// like any other box (an overexposed photo), one whose outline is fainter stays doubtful
/// (glare). Empty crops on saturated paper, seeds 161 (3 MP) / 162 (12 MP): blank boxes on pages
/// without glare measure 110-205 / 123-227 (373 of 405 / 355 of 362 at this bar or more); the
/// digits glare erased 0-61 / 1-71, erased X marks 4-104 / 4-84.
pub const MIN_FRAME_CONTRAST: f64 = 140.0;

/// Is this box's paper saturated with its printed outline washed out too (glare), so that a
/// stroke there may be gone without a trace?
pub fn washed_out(c: &BoxCrop) -> bool {
    c.paper >= SATURATED_PAPER && c.frame_contrast.is_none_or(|f| f < MIN_FRAME_CONTRAST)
}

/// Should an empty reading of this box be distrusted?
pub fn is_doubtful(c: &BoxCrop, tensor_empty: bool) -> bool {
    tensor_empty && (c.range >= DOUBTFUL_EMPTY_RANGE || washed_out(c))
}

/// How far around each printed guide dot (template `guide_dots`) [`without_guide`] hides the
/// crop, mm: the photo's blur spreads a dot by a few tenths of a millimetre, and snapping leaves
/// the box a tenth or two off. Tuning seed 161 (3 MP, the official guide), empty boxes of page 2
/// without a hard case: at margins 0.3 / 0.5 / 0.7 / 0.9 mm, 158 / 166 / 164 / 166 of 175 pass
/// the faint-mark test (10 with the guide left in view).
pub const GUIDE_MASK_MARGIN_MM: f64 = 0.5;

/// The crop the emptiness tests ([`is_quiet`], [`is_doubtful`]) should judge for a box with a
/// printed guide (the faint dotted "8" of page 2): `c` with every sample within
/// [`GUIDE_MASK_MARGIN_MM`] of one of the guide's `dots` (mm from the box's top-left corner)
/// set to the crop's paper level, its paper and range then read again as [`cut_page`] reads
/// them (`descreened`: from a smoothed copy); the faint-mark test then also leaves those samples
/// out (`hidden`). Without this, an empty box of page 2 shows the guide's range (median 23 grey
/// levels on seed 161, 3 MP) and faint-mark score (median 4.5, 10 of 175 under the bar), so
/// it is hardly ever quiet and mostly doubtful, which flags page-2 numbers written without an
/// `X`; with it, median range 10 and score 2.1, 166 of 175 quiet.
/// What is hidden is the guide's own track: a faint stroke elsewhere in the box still counts,
/// while one traced exactly over the dots does not (the bubbles of its column still speak).
pub fn without_guide(c: &BoxCrop, dots: &[RectMm], descreened: bool) -> BoxCrop {
    let mut gray = c.gray.clone();
    let paper = c.paper.round().clamp(0.0, 255.0) as u8;
    let m = GUIDE_MASK_MARGIN_MM;
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    let mut hidden = vec![false; w * h];
    // Centre of sample `i` along an axis, in mm from the box's top-left corner (the crop
    // starts `BOX_MARGIN_MM` inside the box, at `SAMPLE_PX_PER_MM`).
    let centre = |i: usize| (i as f64 + 0.5) / SAMPLE_PX_PER_MM + BOX_MARGIN_MM;
    // The samples whose centre lies in `[lo, hi]` mm: found from the inverse of `centre`
    // with a sample of slack either way, then kept by the exact test.
    let span = |lo: f64, hi: f64, n: usize| {
        let first = ((lo - BOX_MARGIN_MM) * SAMPLE_PX_PER_MM - 1.5)
            .floor()
            .max(0.0) as usize;
        let last = (((hi - BOX_MARGIN_MM) * SAMPLE_PX_PER_MM + 0.5)
            .ceil()
            .max(0.0) as usize)
            .min(n.saturating_sub(1));
        (first..=last).filter(move |&i| i < n && (lo..=hi).contains(&centre(i)))
    };
    for d in dots {
        for y in span(d[1] - m, d[1] + d[3] + m, h) {
            for x in span(d[0] - m, d[0] + d[2] + m, w) {
                hidden[y * w + x] = true;
            }
        }
    }
    for (p, hide) in gray.pixels_mut().zip(&hidden) {
        if *hide {
            p.0[0] = paper;
        }
    }
    let (_, paper, range, edge_lines) = if descreened {
        let smooth = imageproc::filter::gaussian_blur_f32(&gray, DESCREEN_SIGMA_PX);
        read_ink(&smooth, DESCREEN_PAPER_QUANTILE)
    } else {
        read_ink(&gray, normalize::PAPER_QUANTILE)
    };
    BoxCrop {
        gray,
        ink: c.ink.clone(),
        off_photo: c.off_photo,
        quad_px: c.quad_px,
        paper,
        range,
        edge_lines,
        frame_contrast: c.frame_contrast,
        hidden,
    }
}

/// The crop of box `c` of `field` that the emptiness tests judge: [`without_guide`] when the
/// box has a printed guide and its ink map came out `empty`, `c` itself otherwise.
pub fn emptiness_view<'a>(
    c: &'a BoxCrop,
    field: &Field,
    empty: bool,
    descreened: bool,
) -> std::borrow::Cow<'a, BoxCrop> {
    if empty && field.guide != crate::template::Guide::None {
        std::borrow::Cow::Owned(without_guide(c, &field.guide_dots, descreened))
    } else {
        std::borrow::Cow::Borrowed(c)
    }
}

/// Paper level `paper` minus the dark level ([`FRAME_DARK_QUANTILE`]) of the template box `b`
/// (mm, shifted by `(dx, dy)`) grown by [`FRAME_BAND_MM`] on every side: how dark its printed
/// outline shows in the photo. `None` when the grown box falls outside the photo.
pub fn frame_contrast(
    gray: &GrayImage,
    h: &Homography,
    b: &RectMm,
    dx: f64,
    dy: f64,
    paper: f64,
) -> Option<f64> {
    let r = [
        b[0] + dx - FRAME_BAND_MM,
        b[1] + dy - FRAME_BAND_MM,
        b[2] + 2.0 * FRAME_BAND_MM,
        b[3] + 2.0 * FRAME_BAND_MM,
    ];
    let (crop, off) = sample_rect(gray, h, &r, SAMPLE_PX_PER_MM);
    if off > 0.0 {
        return None;
    }
    let hist = normalize::grey_histogram(&crop);
    let n = crop.pixels().len();
    Some(paper - normalize::quantile_level(&hist, n, FRAME_DARK_QUANTILE))
}

/// Border of a crop left out of the faint-mark test (crop pixels at [`SAMPLE_PX_PER_MM`], 2 mm):
/// box-line remnants and shadows of the printed edge sit there. On small, blurred photos the
/// printed frame shows as a ring in the crop's outer 4 samples ([`lines::EDGE_BAND_PX`]), and
/// the test's smoothing reaches 2 samples further in, so a border of 3 saw the ring of most empty
/// row-total boxes and never trusted them (`rekap crops` on seed 182: 349 empty blank crops
/// outside hard cases neither quiet nor doubtful, 188 at 6). On the 26 sets of sessions 12-17
/// (the README's "What changed in session 17"): the digit crops quiet at 6 are the two quiet at
/// 3 (both in fields flagged for other reasons; the second lies under [`QUIET_MIN_PX_PER_MM`]),
/// fields accepted +0.8 %, no silent error.
const QUIET_BORDER_PX: u32 = 6;
/// Smoothing of the faint-mark test (Gaussian sigma, crop pixels): averages sensor and JPEG
/// noise over about the width of a thin stroke, which keeps its darkness.
const QUIET_SIGMA_PX: f32 = 0.8;
/// Median absolute deviation to standard deviation, for Gaussian noise.
const MAD_TO_SIGMA: f64 = 1.4826;
/// Noise floor of the faint-mark test (grey levels): JPEG flattens 8x8 blocks of a blank crop
/// to within a level or two, so their measured spread understates the noise and the step
/// between two blocks reads as a mark. Tuning seeds 43 and 44 (empty ink maps on clear pages):
/// floor 0.5 / 1 passes 1,561 + 3,246 / 2,055 + 3,608 blanks and 3 / 5 digits (1.5, in a
/// Python replica: 2,249 + 3,634 and 8); at 1 the five digits that pass are three the old generator drew with no ink and two
/// boxes whose whole grey range is 4 levels (nothing visible was written there either).
const QUIET_NOISE_FLOOR: f64 = 1.0;
/// A crop whose ink map came out empty and whose faint-mark score is below this holds no trace
/// of a mark: its blank reading is trusted ([`is_quiet`]). Chosen with `rekap crops --gray` on
/// tuning seeds 43 (3 MP) and 44 (12 MP) when the noise floor was half a grey level: of the
/// empty ink maps with a grey range under 20 on pages without a hard case, below 2.9 lay 65 %
/// (3 MP) and 88 % (12 MP) of the blank boxes and 3 of 59 digits (all three drawn with no ink
/// by the generator); see the README ("Empty boxes").
pub const QUIET_MAX_SCORE: f64 = 2.9;

/// Evidence of a mark too faint for the ink map: how far the darkest spot of the lightly
/// smoothed crop (inside a 1 mm border) lies below its paper (the median grey level), in units
/// of the smoothed crop's own noise (`MAD_TO_SIGMA` x its median absolute deviation, plus
/// `QUIET_NOISE_FLOOR`). A stroke, even a faint one, is a connected run of darker samples and
/// survives the smoothing; noise does not. An empty or all-border crop scores 0.
pub fn faint_mark_score(gray: &GrayImage) -> f64 {
    faint_mark_score_outside(gray, &[])
}

/// [`faint_mark_score`] over the samples that `hidden` (row-major, one flag per crop pixel;
/// empty: none hidden) does not hide: hidden samples are neither the paper, the noise nor the
/// darkest spot. A crop with nothing left to judge scores 0.
pub fn faint_mark_score_outside(gray: &GrayImage, hidden: &[bool]) -> f64 {
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    let b = QUIET_BORDER_PX as usize;
    if w <= 2 * b || h <= 2 * b {
        return 0.0;
    }
    let seen = |i: usize| hidden.get(i).is_none_or(|h| !h);
    let kernel = quiet_kernel();
    let r = kernel.len() / 2;
    // Invariant: the border is at least the kernel's radius, so every smoothed sample of the
    // inner region is a full weighted sum of crop pixels (no edge handling involved).
    debug_assert!(b >= r);
    let px = gray.as_raw();
    let (x0, x1, y0, y1) = (b, w - b, b, h - b);
    // Horizontal pass on the inner columns of every row the vertical pass reads.
    let iw = x1 - x0;
    let mut horiz = vec![0f32; iw * (y1 - y0 + 2 * r)];
    for (row, y) in (y0 - r..y1 + r).enumerate() {
        let line = &px[y * w..(y + 1) * w];
        for (i, x) in (x0..x1).enumerate() {
            horiz[row * iw + i] = kernel
                .iter()
                .enumerate()
                .map(|(k, kv)| kv * f32::from(line[x + k - r]))
                .sum();
        }
    }
    let mut smooth: Vec<f64> = Vec::with_capacity(iw * (y1 - y0));
    let mut hist = [0usize; 256];
    for (row, y) in (y0..y1).enumerate() {
        for i in 0..iw {
            let v: f32 = kernel
                .iter()
                .enumerate()
                .map(|(k, kv)| kv * horiz[(row + k) * iw + i])
                .sum();
            if seen(y * w + x0 + i) {
                smooth.push(f64::from(v));
                hist[usize::from(px[y * w + x0 + i])] += 1;
            }
        }
    }
    if smooth.is_empty() {
        return 0.0;
    }
    // Paper: the median grey level of the inner crop (the same sample as `median` picks).
    let paper = normalize::quantile_level(&hist, smooth.len(), 0.5);
    let darkest = smooth.iter().copied().fold(f64::INFINITY, f64::min);
    // (the median reorders `smooth`; the deviations do not depend on the order)
    let centre = crate::upper_median(&mut smooth);
    let mut dev: Vec<f64> = smooth.iter().map(|v| (v - centre).abs()).collect();
    let noise = MAD_TO_SIGMA * crate::upper_median(&mut dev) + QUIET_NOISE_FLOOR;
    ((paper - darkest) / noise).max(0.0)
}

/// The faint-mark test's smoothing kernel: a Gaussian of [`QUIET_SIGMA_PX`] sampled out to
/// twice sigma, normalised (as `imageproc::filter::gaussian_blur_f32` builds it).
fn quiet_kernel() -> Vec<f32> {
    let radius = (2.0 * QUIET_SIGMA_PX).ceil() as i32;
    let k: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * QUIET_SIGMA_PX * QUIET_SIGMA_PX)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.into_iter().map(|v| v / sum).collect()
}

/// Least median handwriting range ([`PageCrops::ink_range`]) of a page whose empty boxes may be
/// trusted: on a heavily blurred photo a thin digit can fade into the paper without a trace.
/// Tuning seeds 43 and 44: three of the six digits whose boxes passed the faint-mark test sat on
/// heavily blurred 3 MP pages with a median range of 46-51; clean 3 MP pages measure 57 or more
/// (1st percentile), 12 MP ones 87; the bar costs 7 of 4,080 quiet boxes there.
pub const QUIET_MIN_PAGE_INK_RANGE: f64 = 60.0;

/// Least resolution (photo pixels per mm of the page, [`crate::align::Alignment::px_per_mm`])
/// at which empty boxes may be trusted: coarser, a stroke can vanish from the ink map and leave
/// too faint a trace for the faint-mark test. `rekap crops` of the 26 sets of sessions 12-17
/// (843,000 crops): the only digits whose ink map came out empty on a page without a hard case
/// lay at 1.23 and 1.30 px/mm (seed 179, the official artwork photographed from afar), and
/// the second passed the faint-mark test (score 1.9); at 1.6 px/mm and above no digit's ink
/// vanished outside the hard cases. Below the bar lie 12,000 crops and 445 quiet blank or X
/// crops, all on 1.5 MP photos and pages taken from afar at 3 MP.
pub const QUIET_MIN_PX_PER_MM: f64 = 1.6;

/// Is an empty reading of this box to be trusted? Its ink map came out empty, its paper is not
/// washed out ([`SATURATED_PAPER`]), its page shows handwriting clearly and is no photo of a
/// screen (`page_trusts_empty`, see [`PageCrops::trusts_empty_boxes`]), and
/// [`faint_mark_score`] finds no trace of a mark. A quiet crop is not [`is_doubtful`] even when
/// its grey range is wide: the range then comes from noise or remnants, not from a stroke
/// (tuning seeds 43 and 44: of the empty crops with a range of 20 or more on clear pages, 736 of
/// 1,021 blanks pass the faint-mark test and 1 of 64 digits, one the generator drew with no
/// ink).
pub fn is_quiet(c: &BoxCrop, tensor_empty: bool, page_trusts_empty: bool) -> bool {
    tensor_empty
        && page_trusts_empty
        && !washed_out(c)
        && faint_mark_score_outside(&c.gray, &c.hidden) < QUIET_MAX_SCORE
}

avx2_clone! {
/// Resample template rectangle `rect` (mm) from the photo at `px_per_mm`.
/// Returns the crop and the share of samples outside the photo.
pub fn sample_rect(
    gray: &GrayImage,
    h: &Homography,
    rect: &RectMm,
    px_per_mm: f64,
) -> (GrayImage, f64) {
    let w = ((rect[2] * px_per_mm).round() as u32).max(1);
    let hh = ((rect[3] * px_per_mm).round() as u32).max(1);
    let centre = [rect[0] + rect[2] / 2.0, rect[1] + rect[3] / 2.0];
    let ratio = h.local_scale(centre) / px_per_mm;
    let ss: u32 = if ratio > SUPERSAMPLE_ABOVE_RATIO {
        (ratio.ceil() as u32).min(3)
    } else {
        1
    };
    let mut off = 0usize;
    let step = 1.0 / px_per_mm;
    let sub = step / ss as f64;
    let sampler = Sampler::new(gray);
    let (wu, ssu) = (w as usize, ss as usize);
    // Template x of every sample column (x-major, then sx): the same for every row.
    let mxs: Vec<f64> = (0..wu * ssu)
        .map(|k| rect[0] + (k / ssu) as f64 * step + ((k % ssu) as f64 + 0.5) * sub)
        .collect();
    let (mut px, mut py) = (Vec::with_capacity(mxs.len()), Vec::with_capacity(mxs.len()));
    let mut acc = vec![0.0f64; wu];
    let mut cnt = vec![0u32; wu];
    let mut pixels = Vec::with_capacity(wu * hh as usize);
    for y in 0..hh {
        acc.iter_mut().for_each(|a| *a = 0.0);
        cnt.iter_mut().for_each(|c| *c = 0);
        // Each pixel's samples are summed in the order (sy, sx), as one pixel at a time would.
        for sy in 0..ss {
            let my = rect[1] + y as f64 * step + (sy as f64 + 0.5) * sub;
            h.apply_row(&mxs, my, &mut px, &mut py);
            // Output pixel j owns sample columns j*ss .. (j+1)*ss (no division per sample).
            for (((a, n), xs), ys) in acc
                .iter_mut()
                .zip(cnt.iter_mut())
                .zip(px.chunks_exact(ssu))
                .zip(py.chunks_exact(ssu))
            {
                for (&x, &y) in xs.iter().zip(ys) {
                    if let Some(v) = sampler.at(x, y) {
                        *a += v;
                        *n += 1;
                    }
                }
            }
        }
        for (&a, &n) in acc.iter().zip(&cnt) {
            pixels.push(if n == 0 {
                off += 1;
                OFF_PHOTO_FILL
            } else {
                round_to_u8(a / f64::from(n))
            });
        }
    }
    let img = GrayImage::from_raw(w, hh, pixels).unwrap_or_else(|| GrayImage::new(w, hh));
    let share = off as f64 / (w as f64 * hh as f64);
    (img, share)
}
}

/// `v.round().clamp(0, 255)` as u8 for a finite `v >= 0` (an average of samples), without the
/// libm `round` call: `v - trunc(v)` is exact, so this rounds half away from zero like `round`.
#[inline(always)]
fn round_to_u8(v: f64) -> u8 {
    let t = v.min(255.0) as u32 as f64;
    let r = if v - t >= 0.5 { t + 1.0 } else { t };
    r.min(255.0) as u8
}

/// Cut every digit box of `field`, shifted by the snap offset `(dx, dy)` mm, and read its ink
/// the plain way (see [`cut_page`] for a whole page, which also handles screen photos).
pub fn cut_boxes(
    gray: &GrayImage,
    h: &Homography,
    field: &Field,
    dx: f64,
    dy: f64,
) -> Vec<BoxCrop> {
    field
        .boxes
        .iter()
        .map(|b| {
            let r = [
                b[0] + dx + BOX_MARGIN_MM,
                b[1] + dy + BOX_MARGIN_MM,
                b[2] - 2.0 * BOX_MARGIN_MM,
                b[3] - 2.0 * BOX_MARGIN_MM,
            ];
            let (crop, off) = sample_rect(gray, h, &r, SAMPLE_PX_PER_MM);
            let corners = [
                [r[0], r[1]],
                [r[0] + r[2], r[1]],
                [r[0] + r[2], r[1] + r[3]],
                [r[0], r[1] + r[3]],
            ];
            let quad_px = corners.map(|c| h.apply(c).unwrap_or([f64::NAN, f64::NAN]));
            let (ink, paper, range, edge_lines) = read_ink(&crop, normalize::PAPER_QUANTILE);
            let frame_contrast = if paper >= SATURATED_PAPER {
                frame_contrast(gray, h, b, dx, dy, paper)
            } else {
                None
            };
            BoxCrop {
                gray: crop,
                ink,
                off_photo: off,
                quad_px,
                paper,
                range,
                edge_lines,
                frame_contrast,
                hidden: Vec::new(),
            }
        })
        .collect()
}

/// A crop's ink map, paper level, range and erased edge lines, read from `gray` (the crop's own
/// grey image, or a smoothed copy of it) with the paper level at `paper_quantile`.
fn read_ink(gray: &GrayImage, paper_quantile: f64) -> (InkMap, f64, f64, usize) {
    let (mut ink, paper, mut range) = ink_map_with_levels(gray, paper_quantile);
    let edge_lines = lines::erase_edge_lines(&mut ink);
    if edge_lines > 0 {
        range *= normalize::ink_quantile_of_map(&ink);
    }
    (ink, paper, range, edge_lines)
}

/// A page whose median box texture ([`fine_texture`]) exceeds this many grey levels shows a
/// screen's pixel lattice (a photo of a screen). Measured on box crops: photographed paper pages
/// at most 3.4 (119 pages, synth seed 45, all sizes and hard cases); screen photos median 10.9
/// (120 pages, seed 62 with `--screen 1`; a few screens too fine for the camera to resolve stay
/// under 3 and are read as paper).
pub const SCREEN_TEXTURE: f64 = 5.0;
/// Descreening: Gaussian smoothing of each crop (crop pixels, at [`SAMPLE_PX_PER_MM`]) and the
/// paper quantile then used, so that what is left of the lattice maps to paper. Chosen on the
/// seed-62 screen crops (box accuracy through the model 68.6 % -> 78.3 %, errors among
/// readings at >= 0.99 0.93 % -> 0.46 %); pages under [`SCREEN_TEXTURE`] never take this path.
pub const DESCREEN_SIGMA_PX: f32 = 1.4;
pub const DESCREEN_PAPER_QUANTILE: f64 = 0.40;
/// Border left out of the texture measure (the 3x3 mean needs neighbours; crop edges hold
/// box-line remnants).
const TEXTURE_BORDER_PX: u32 = 2;
/// Largest |9 v - s| of [`fine_texture`]: a pixel against eight neighbours at the other end of
/// the grey range.
const TEXTURE_MAX_NINTHS: usize = 8 * 255;

avx2_clone! {
/// Fine texture of a grey crop: the median absolute difference between each pixel and the mean
/// of its 3x3 neighbourhood. Strokes touch a minority of a box's pixels, so the median measures
/// the paper: sensor noise gives ~1 grey level, a screen lattice 5-25.
pub fn fine_texture(gray: &GrayImage) -> f64 {
    const { assert!(TEXTURE_BORDER_PX >= 1) };
    let (w, h) = gray.dimensions();
    let b = TEXTURE_BORDER_PX;
    if w <= 2 * b || h <= 2 * b {
        return 0.0;
    }
    let (w, h, b) = (w as usize, h as usize, b as usize);
    let raw = gray.as_raw();
    // Each difference is |9 v - s| / 9 with s the exact 3x3 sum: the integer |9 v - s| is at
    // most 8 * 255 (a pixel against eight opposite neighbours), so the differences are counted
    // by that integer instead of sorted, and the median read off the counts.
    let mut counts = [0u32; TEXTURE_MAX_NINTHS + 1];
    let mut cols = vec![0u16; w];
    for y in b..h - b {
        // Column sums of rows y-1..=y+1 (at most 3 * 255), then the row's 3x3 sums from them.
        let rows = &raw[(y - 1) * w..(y + 2) * w];
        let (r0, rest) = rows.split_at(w);
        let (r1, r2) = rest.split_at(w);
        for (((c, &a), &m), &z) in cols.iter_mut().zip(r0).zip(r1).zip(r2) {
            *c = u16::from(a) + u16::from(m) + u16::from(z);
        }
        for x in b..w - b {
            let sum = i32::from(cols[x - 1]) + i32::from(cols[x]) + i32::from(cols[x + 1]);
            let k = (9 * i32::from(r1[x]) - sum).unsigned_abs() as usize;
            if let Some(c) = counts.get_mut(k) {
                *c += 1;
            }
        }
    }
    // The element at index n / 2 in sorted order, as `crate::upper_median` picks it.
    let mid = ((w - 2 * b) * (h - 2 * b) / 2) as u64;
    let mut seen = 0u64;
    for (k, &c) in counts.iter().enumerate() {
        seen += u64::from(c);
        if seen > mid {
            return k as f64 / 9.0;
        }
    }
    0.0
}
}

/// The digit boxes of one page, field by field.
#[derive(Debug, Clone)]
pub struct PageCrops {
    /// One entry per requested field, in order: its box crops.
    pub fields: Vec<Vec<BoxCrop>>,
    /// Median [`fine_texture`] over the page's boxes.
    pub texture: f64,
    /// The page showed a screen lattice and its ink was read through descreening.
    pub descreened: bool,
    /// Median paper-minus-ink range of the boxes holding a mark: how dark this photo shows the
    /// page's handwriting (`None` when no box holds a mark).
    pub ink_range: Option<f64>,
}

impl PageCrops {
    /// May an empty box of this page, photographed at `px_per_mm`, be trusted as blank
    /// ([`is_quiet`])? Not on a photo of a screen (descreening smooths away what the faint-mark
    /// test looks for), nor where the photo shows the page's handwriting faintly
    /// ([`QUIET_MIN_PAGE_INK_RANGE`]) or too coarsely ([`QUIET_MIN_PX_PER_MM`]).
    pub fn trusts_empty_boxes(&self, px_per_mm: f64) -> bool {
        !self.descreened
            && px_per_mm >= QUIET_MIN_PX_PER_MM
            && self
                .ink_range
                .is_some_and(|r| r >= QUIET_MIN_PAGE_INK_RANGE)
    }
}

/// The fields of `page_fields` that have digit boxes, each with its snap offset in mm from
/// `offsets` (none: no offset): the list [`cut_page`] takes.
pub fn snapped_digit_fields<'t>(
    page_fields: &[&'t Field],
    offsets: &std::collections::HashMap<String, crate::align::snap::Snap>,
) -> Vec<(&'t Field, f64, f64)> {
    page_fields
        .iter()
        .filter(|f| f.kind.has_digit_boxes())
        .map(|f| {
            let s = offsets.get(&f.id).copied().unwrap_or_default();
            (*f, s.dx_mm, s.dy_mm)
        })
        .collect()
}

/// Cut the digit boxes of the page's `fields` (each with its snap offset in mm), measure the
/// page's fine texture, and when it is a screen photo (texture above [`SCREEN_TEXTURE`]) read
/// every box's ink from a smoothed crop with a lower paper level. Invariant: a page at or below
/// the limit gets exactly what [`cut_boxes`] gives; `gray` in every crop is always the
/// unsmoothed sample (for review).
pub fn cut_page(gray: &GrayImage, h: &Homography, fields: &[(&Field, f64, f64)]) -> PageCrops {
    let mut out: Vec<Vec<BoxCrop>> = fields
        .iter()
        .map(|(f, dx, dy)| cut_boxes(gray, h, f, *dx, *dy))
        .collect();
    let mut tex: Vec<f64> = out
        .iter()
        .flatten()
        .map(|c| fine_texture(&c.gray))
        .collect();
    let texture = crate::upper_median(&mut tex);
    let descreened = texture > SCREEN_TEXTURE;
    if descreened {
        for c in out.iter_mut().flatten() {
            let smooth = imageproc::filter::gaussian_blur_f32(&c.gray, DESCREEN_SIGMA_PX);
            (c.ink, c.paper, c.range, c.edge_lines) = read_ink(&smooth, DESCREEN_PAPER_QUANTILE);
        }
    }
    let ink_range = median_ink_range(&out);
    PageCrops {
        fields: out,
        texture,
        descreened,
        ink_range,
    }
}

/// Inside of a bubble sampled for fill, as a share of its outline radius (keeps clear of the
/// printed ring).
const BUBBLE_INNER_FRACTION: f64 = 0.72;
/// Paper reference ring around a bubble, as multiples of its radius.
const BUBBLE_PAPER_RING: (f64, f64) = (1.12, 1.25);
/// A sample is inked when darker than paper by this share of the paper level.
const BUBBLE_DARK_SHARE: f64 = 0.35;
/// A bubble is filled above this inked share of its inside; empty below `BUBBLE_EMPTY`; in
/// between it is in doubt. An empty bubble's printed digit inks ~10-20 % of its inside.
pub const BUBBLE_FILLED: f64 = 0.55;
pub const BUBBLE_EMPTY: f64 = 0.35;
/// Sampling step inside bubbles, mm.
const BUBBLE_STEP_MM: f64 = 0.35;

/// Measure every bubble column of a `bubbles` field.
pub fn read_bubbles(
    gray: &GrayImage,
    h: &Homography,
    field: &Field,
    dx: f64,
    dy: f64,
) -> Vec<BubbleColumn> {
    let r = field.radius_mm.unwrap_or(4.0);
    field
        .columns
        .iter()
        .map(|col| {
            let fill: Vec<f64> = col
                .iter()
                .map(|c| bubble_fill(gray, h, [c[0] + dx, c[1] + dy], r))
                .collect();
            let filled: Vec<usize> = (0..fill.len())
                .filter(|&i| fill[i] >= BUBBLE_FILLED)
                .collect();
            let doubtful = fill
                .iter()
                .filter(|f| **f > BUBBLE_EMPTY && **f < BUBBLE_FILLED)
                .count();
            let state = match (filled.as_slice(), doubtful) {
                ([], 0) => BubbleState::Empty,
                ([d], 0) => BubbleState::One(*d as u8),
                _ => BubbleState::Ambiguous,
            };
            BubbleColumn { fill, state }
        })
        .collect()
}

avx2_clone! {
fn bubble_fill(gray: &GrayImage, h: &Homography, c: [f64; 2], r: f64) -> f64 {
    let sampler = Sampler::new(gray);
    let sample = |x: f64, y: f64| h.apply([x, y]).and_then(|p| sampler.at(p[0], p[1]));
    // Paper level: brightest half of the ring samples (neighbouring ink may touch the ring).
    let mut ring = Vec::new();
    for k in 0..24 {
        let a = k as f64 * std::f64::consts::TAU / 24.0;
        for rr in [BUBBLE_PAPER_RING.0, BUBBLE_PAPER_RING.1] {
            if let Some(v) = sample(c[0] + rr * r * a.cos(), c[1] + rr * r * a.sin()) {
                ring.push(v);
            }
        }
    }
    if ring.is_empty() {
        return 0.0;
    }
    let k = ring.len() / 4;
    let paper = *ring.select_nth_unstable_by(k, |a, b| b.total_cmp(a)).1;
    let thr = paper * (1.0 - BUBBLE_DARK_SHARE);
    let ri = r * BUBBLE_INNER_FRACTION;
    let n = (ri / BUBBLE_STEP_MM).ceil() as i32;
    let (mut inked, mut total) = (0usize, 0usize);
    for iy in -n..=n {
        for ix in -n..=n {
            let (x, y) = (ix as f64 * BUBBLE_STEP_MM, iy as f64 * BUBBLE_STEP_MM);
            if x * x + y * y > ri * ri {
                continue;
            }
            if let Some(v) = sample(c[0] + x, c[1] + y) {
                total += 1;
                if v < thr {
                    inked += 1;
                }
            }
        }
    }
    if total == 0 {
        0.0
    } else {
        inked as f64 / total as f64
    }
}
}

/// A tally cell holds strokes when this share of its inside is inked.
const TALLY_CELL_INKED: f64 = 0.03;
/// A sample is a stroke when this many grey levels darker than the cell's paper: thin pen
/// strokes in a 3 MP photo of a 600 mm page are blurred to mid-grey, far below the ~10-level
/// noise of paper. This is the most a page is asked for; a dim or low-contrast photo asks for
/// less (see [`tally_stroke_contrast`]).
pub const TALLY_STROKE_CONTRAST: f64 = 40.0;
/// The least contrast asked of a tally stroke: twice the ~10-level noise of paper, so that an
/// empty cell's noise does not count as strokes.
const MIN_TALLY_STROKE_CONTRAST: f64 = 20.0;
/// A tally stroke is asked to reach this share of the page's handwriting contrast (the same pen
/// wrote the digits and the strokes; a single stroke is thinner than a digit's crossings).
const TALLY_STROKE_SHARE: f64 = 0.5;
/// A box crop holds a mark when some of its ink reaches this (ink units, 0 = paper).
const MARK_INK: f64 = 0.5;

/// Inside of a tally cell sampled, as a share of its size (keeps clear of the grid lines).
const TALLY_INNER: f64 = 0.8;
/// Share of a cell kept clear on a side that lies on the grid's heavy outer border: a page's
/// curl can move the grid a few millimetres against the snap it borrows from its digit boxes
/// (seed 162, s0079: the left border inside the first column marked a cell in each empty row).
/// Seeds 161 / 162 (3 / 12 MP): rows flagged by their tally although read right fell from 63 /
/// 37 to 31 / 24 on pages without a hard case (0.3: 28 / 21), and the tally still caught every
/// misread it caught before.
const TALLY_OUTER_MARGIN: f64 = 0.2;
const TALLY_STEP_MM: f64 = 0.5;
/// Each cell of the grid holds one group of at most five strokes.
pub const STROKES_PER_CELL: u32 = 5;

/// What a tally grid shows: the count range of the whole grid and of each of its rows (row `r`
/// of the grid backs row total `r + 1`).
#[derive(Debug, Clone, PartialEq)]
pub struct TallyRead {
    pub total: TallyRange,
    pub rows: Vec<TallyRange>,
}

/// Strokes allowed beyond the marked cells: one cell holding one to four strokes may go unseen.
/// A single stroke inks about 3 % of its cell, the share a cell needs to count, and blurs below
/// the bar in a 3 MP photo; on seed 56, 108 of the 128 correct fields flagged by the tally alone
/// for lying above its range were 1-4 above it (68 of them ending in a 1: the grid's last,
/// single-stroke cell unseen).
const UNSEEN_TAIL_STROKES: u32 = STROKES_PER_CELL - 1;

fn tally_range(marked: u32) -> TallyRange {
    TallyRange {
        cells_marked: marked,
        min: marked,
        max: marked * STROKES_PER_CELL + UNSEEN_TAIL_STROKES,
    }
}

/// The contrast a tally stroke must reach on this page: `TALLY_STROKE_SHARE` of the median
/// paper-minus-ink range of the page's digit boxes that hold a mark, within
/// `MIN_TALLY_STROKE_CONTRAST`..=[`TALLY_STROKE_CONTRAST`]; the upper bound when no box holds
/// a mark. On a dim 12 MP photo of seed 52 the strokes of a full row, plain to see, stayed
/// under the fixed 40 in all 12 cells, and the row's correct total (60) was flagged.
pub fn tally_stroke_contrast(page: &PageCrops) -> f64 {
    page.ink_range.map_or(TALLY_STROKE_CONTRAST, |r| {
        (TALLY_STROKE_SHARE * r).clamp(MIN_TALLY_STROKE_CONTRAST, TALLY_STROKE_CONTRAST)
    })
}

/// Median paper-minus-ink range of the boxes of `fields` that hold a mark (an ink map sample
/// at [`MARK_INK`] or more); `None` when none does.
fn median_ink_range(fields: &[Vec<BoxCrop>]) -> Option<f64> {
    let mut ranges: Vec<f64> = fields
        .iter()
        .flatten()
        .filter(|c| c.ink.iter().any(|v| *v >= MARK_INK))
        .map(|c| c.range)
        .filter(|r| r.is_finite())
        .collect();
    (!ranges.is_empty()).then(|| crate::upper_median(&mut ranges))
}

avx2_clone! {
/// Count the marked cells of a tally grid (whole grid and per row). A cell is marked when at
/// least `TALLY_CELL_INKED` of its samples are darker than its paper by the grid's threshold:
/// `stroke_contrast` (the page's, see [`tally_stroke_contrast`]) or less where the grid's own
/// empty cells are quiet enough to tell fainter strokes from them (see `grid_threshold`).
pub fn read_tally(
    gray: &GrayImage,
    h: &Homography,
    field: &Field,
    dx: f64,
    dy: f64,
    stroke_contrast: f64,
) -> TallyRead {
    let xs = &field.col_edges_mm;
    let ys = &field.row_edges_mm;
    let sampler = Sampler::new(gray);
    let (n_rows, n_cols) = (ys.len().saturating_sub(1), xs.len().saturating_sub(1));
    // Each cell's contrast (None: no sample inside the photo), row by row.
    let mut contrast: Vec<Option<f64>> = Vec::with_capacity(n_rows * n_cols);
    // Buffers reused across cells: one row of sample x (template mm, shifted) and its image.
    let (mut row_x, mut px, mut py) = (Vec::new(), Vec::new(), Vec::new());
    let mut vals = Vec::new();
    for r in 0..n_rows {
        for c in 0..n_cols {
            let (x0, x1, y0, y1) = (xs[c], xs[c + 1], ys[r], ys[r + 1]);
            let (mx, my) = (
                (x1 - x0) * (1.0 - TALLY_INNER) / 2.0,
                (y1 - y0) * (1.0 - TALLY_INNER) / 2.0,
            );
            // Sides on the grid's heavy outer border keep further clear of it.
            let outer = |at_edge: bool, inner: f64, size: f64| {
                if at_edge { size * TALLY_OUTER_MARGIN } else { inner }
            };
            let (left, right) = (
                outer(c == 0, mx, x1 - x0),
                outer(c + 1 == n_cols, mx, x1 - x0),
            );
            let (top, bottom) = (
                outer(r == 0, my, y1 - y0),
                outer(r + 1 == n_rows, my, y1 - y0),
            );
            // The sample grid steps by repeated addition (as it always has, so the points stay
            // the same to the bit); every row of the cell shares the same x positions.
            row_x.clear();
            let mut x = x0 + left;
            while x <= x1 - right {
                row_x.push(x + dx);
                x += TALLY_STEP_MM;
            }
            vals.clear();
            let mut y = y0 + top;
            while y <= y1 - bottom {
                h.apply_row(&row_x, y + dy, &mut px, &mut py);
                for (&qx, &qy) in px.iter().zip(&py) {
                    if let Some(v) = sampler.at(qx, qy) {
                        vals.push(v);
                    }
                }
                y += TALLY_STEP_MM;
            }
            contrast.push(cell_contrast(&mut vals));
        }
    }
    let thr = grid_threshold(&contrast, stroke_contrast);
    let mut is_marked: Vec<bool> = contrast
        .iter()
        .map(|s| s.is_some_and(|s| s > thr))
        .collect();
    drop_crease_columns(&mut is_marked, n_cols);
    let mut marked = 0u32;
    let mut rows: Vec<TallyRange> = Vec::with_capacity(n_rows);
    for row in is_marked.chunks(n_cols.max(1)).take(n_rows) {
        let in_row = row.iter().filter(|m| **m).count() as u32;
        marked += in_row;
        rows.push(tally_range(in_row));
    }
    TallyRead {
        total: tally_range(marked),
        rows,
    }
}
}

/// Unmark the cells of a column that a straight line crosses rather than strokes: a marked cell
/// whose left neighbour is unmarked (so not part of its row's run of cells from the left, which
/// is how a tally is filled, row by row or column by column) is stray, and a column holding
/// stray cells in [`CREASE_MIN_ROWS`] rows or more is a fold or crease line across the grid
/// (seed 56: a crease read as one marked cell in each of the five empty rows of a grid, flagging
/// six correct zeros). Column 0 is never touched: its marks always start a row's run.
fn drop_crease_columns(marked: &mut [bool], n_cols: usize) {
    if n_cols < 2 {
        return;
    }
    let stray = |m: &[bool], i: usize| !i.is_multiple_of(n_cols) && m[i] && !m[i - 1];
    for c in 1..n_cols {
        let rows: Vec<usize> = (c..marked.len())
            .step_by(n_cols)
            .filter(|&i| stray(marked, i))
            .collect();
        if rows.len() >= CREASE_MIN_ROWS {
            for i in rows {
                marked[i] = false;
            }
        }
    }
}

/// Stray marked cells in one column, in this many rows or more, are a line across the grid.
const CREASE_MIN_ROWS: usize = 3;

/// A cell's contrast: its paper level (the value of rank len/5 in descending order) minus its
/// m-th darkest sample, m = ceil(`TALLY_CELL_INKED` * len). At least `TALLY_CELL_INKED` of the
/// samples are darker than paper by `t` exactly when this exceeds `t`. `None` for no samples.
fn cell_contrast(vals: &mut [f64]) -> Option<f64> {
    if vals.is_empty() {
        return None;
    }
    let n = vals.len();
    // Selections, not full sorts.
    let paper = *vals.select_nth_unstable_by(n / 5, |a, b| b.total_cmp(a)).1;
    let m = ((TALLY_CELL_INKED * n as f64).ceil() as usize).clamp(1, n);
    let dark = *vals.select_nth_unstable_by(m - 1, |a, b| a.total_cmp(b)).1;
    Some(paper - dark)
}

/// The contrast a cell of this grid must exceed to count as marked: [`GRID_NOISE_FACTOR`] times
/// the grid's quiet level (the contrast of rank [`GRID_QUIET_RANK`] from the bottom: an empty
/// cell's unless most of the grid is marked) or [`GRID_STRONG_SHARE`] of its strongest cell,
/// whichever is more, within [`GRID_MIN_CONTRAST`] and the page's `stroke_contrast` (never more
/// than the page asks). A grid with bold strokes, or mostly marked, keeps the page's bar; only
/// one whose strongest strokes are faint asks less. Thin strokes on a blurred 3 MP page reach
/// only 22-32 grey levels while its empty cells stay at 2-8, under the page's bar of 40 set by
/// bolder digits (seed 56: 13 % of marked cells fell under 40, and whole rows of correct totals
/// were flagged against a range of 0).
fn grid_threshold(contrast: &[Option<f64>], stroke_contrast: f64) -> f64 {
    let mut known: Vec<f64> = contrast.iter().flatten().copied().collect();
    if known.is_empty() {
        return stroke_contrast;
    }
    let k = ((known.len() as f64 * GRID_QUIET_RANK) as usize).min(known.len() - 1);
    let quiet = *known.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1;
    let strongest = known.iter().copied().fold(0.0, f64::max);
    (GRID_NOISE_FACTOR * quiet)
        .max(GRID_STRONG_SHARE * strongest)
        .max(GRID_MIN_CONTRAST)
        .min(stroke_contrast)
}

/// Rank (share from the least contrasted) of the cell whose contrast is the grid's quiet level.
const GRID_QUIET_RANK: f64 = 0.25;
/// A marked cell stands this many times above the grid's quiet level.
const GRID_NOISE_FACTOR: f64 = 3.0;
/// ... and reaches this share of the grid's strongest cell (the same pen drew every stroke).
const GRID_STRONG_SHARE: f64 = 0.5;
/// The least contrast a grid asks of its strokes. Above the page floor
/// ([`MIN_TALLY_STROKE_CONTRAST`]) because a cell's contrast also counts shading inside it (a
/// crease shadow across a column of empty cells reached 20-41 on seed 56). Chosen on seed 56
/// (300 submissions at 3 MP) among 20, 25 and 30: correct fields flagged by the tally alone
/// 321 / 275 / 327 (the page's bar alone: 451), accepted fields 7,630 / 7,663 / 7,633 (7,562).
const GRID_MIN_CONTRAST: f64 = 25.0;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::sample::bilinear;
    use image::Luma;

    /// A box crop with the given range whose ink map peaks at `peak`.
    fn crop_with(range: f64, peak: f64) -> BoxCrop {
        let mut ink = InkMap::zeros((4, 4));
        ink[[1, 1]] = peak;
        BoxCrop {
            gray: GrayImage::new(4, 4),
            ink,
            off_photo: 0.0,
            quad_px: [[0.0; 2]; 4],
            paper: 200.0,
            range,
            edge_lines: 0,
            frame_contrast: None,
            hidden: Vec::new(),
        }
    }

    #[test]
    fn tally_strokes_are_measured_against_the_page_handwriting() {
        let page = |crops: Vec<BoxCrop>| {
            let fields = vec![crops];
            PageCrops {
                ink_range: median_ink_range(&fields),
                fields,
                texture: 0.0,
                descreened: false,
            }
        };
        // Dim page: marked boxes span 50-70 grey levels; empty boxes (no ink) do not count.
        let dim = page(vec![
            crop_with(50.0, 0.9),
            crop_with(60.0, 1.0),
            crop_with(70.0, 0.8),
            crop_with(5.0, 0.0),
            crop_with(6.0, 0.1),
        ]);
        assert_eq!(tally_stroke_contrast(&dim), 30.0);
        // Bright, contrasty page: capped at the old fixed bar.
        let bright = page(vec![crop_with(150.0, 1.0), crop_with(160.0, 1.0)]);
        assert_eq!(tally_stroke_contrast(&bright), TALLY_STROKE_CONTRAST);
        // Very faint handwriting: never below twice the paper noise.
        let faint = page(vec![crop_with(24.0, 0.7)]);
        assert_eq!(tally_stroke_contrast(&faint), MIN_TALLY_STROKE_CONTRAST);
        // No box holds a mark: the fixed bar.
        assert_eq!(
            tally_stroke_contrast(&page(vec![crop_with(8.0, 0.0)])),
            TALLY_STROKE_CONTRAST
        );
    }

    /// A tally grid field of `cols` x `rows` cells of 20 x 16 mm from (10, 10) mm.
    fn grid_field(cols: usize, rows: usize) -> Field {
        let mut f: Field = toml::from_str(
            "id = 't.tally'\npage = 2\nkind = 'tally_grid'\nlabel_id = ''\nlabel_en = ''",
        )
        .expect("field");
        f.col_edges_mm = (0..=cols).map(|c| 10.0 + 20.0 * c as f64).collect();
        f.row_edges_mm = (0..=rows).map(|r| 10.0 + 16.0 * r as f64).collect();
        f
    }

    /// Paper at 200 (2 px per mm) with four vertical strokes of `depth` grey levels, 1 mm wide,
    /// in each of the first `marked` cells of `f`, row by row; plus `shade` grey levels of
    /// shadow over the right half of the last column in every row.
    fn draw_grid(f: &Field, marked: usize, depth: f64, shade: f64) -> GrayImage {
        let (xs, ys) = (&f.col_edges_mm, &f.row_edges_mm);
        let cols = xs.len() - 1;
        let px = 2.0;
        let w = (xs[cols] + 10.0) * px;
        let h = (ys[ys.len() - 1] + 10.0) * px;
        GrayImage::from_fn(w as u32, h as u32, |x, y| {
            let (mx, my) = ((x as f64 + 0.5) / px, (y as f64 + 0.5) / px);
            let (Some(c), Some(r)) = (
                xs.windows(2).position(|e| mx >= e[0] && mx < e[1]),
                ys.windows(2).position(|e| my >= e[0] && my < e[1]),
            ) else {
                return Luma([200]);
            };
            let mut v = 200.0;
            let (x0, y0) = (xs[c], ys[r]);
            let in_stroke = (0..4).any(|i| (mx - (x0 + 4.0 + 4.0 * i as f64)).abs() < 0.5);
            if r * cols + c < marked && in_stroke && my > y0 + 3.0 && my < y0 + 13.0 {
                v -= depth;
            }
            if c == cols - 1 && mx > x0 + 10.0 {
                v -= shade;
            }
            Luma([v as u8])
        })
    }

    #[test]
    fn faint_tally_strokes_count_in_a_quiet_grid() {
        let f = grid_field(12, 5);
        let h = Homography::from_array([2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 1.0]).expect("h");
        // Strokes 30 grey levels deep: under the page's bar of 40, far above empty paper.
        let img = draw_grid(&f, 7, 30.0, 0.0);
        let t = read_tally(&img, &h, &f, 0.0, 0.0, TALLY_STROKE_CONTRAST);
        assert_eq!(t.total.cells_marked, 7);
        assert_eq!((t.rows[0].min, t.rows[0].max), (7, 39));
        assert!(t.rows[1..].iter().all(|r| r.cells_marked == 0));
        // Bold strokes in 14 cells: all counted, across two rows.
        let t = read_tally(&draw_grid(&f, 14, 120.0, 0.0), &h, &f, 0.0, 0.0, 40.0);
        assert_eq!(
            t.rows.iter().map(|r| r.cells_marked).collect::<Vec<_>>(),
            [12, 2, 0, 0, 0]
        );
        // A shadow of 20 grey levels over a column of empty cells is not a stroke.
        let t = read_tally(&draw_grid(&f, 3, 60.0, 20.0), &h, &f, 0.0, 0.0, 40.0);
        assert_eq!(t.total.cells_marked, 3);
        // Strokes fainter than the grid's floor are not counted.
        let t = read_tally(&draw_grid(&f, 5, 18.0, 0.0), &h, &f, 0.0, 0.0, 40.0);
        assert_eq!(t.total.cells_marked, 0);
    }

    #[test]
    fn the_grids_outer_border_is_no_tally_in_its_first_column() {
        let f = grid_field(12, 5);
        let h = Homography::from_array([2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 1.0]).expect("h");
        // The grid's heavy left border shows 2.5-3.5 mm inside its first column (a curled page
        // against the snap it borrows), across every row; the first row holds two tally cells.
        let mut img = draw_grid(&f, 2, 120.0, 0.0);
        let x0 = f.col_edges_mm[0];
        for (x, _, p) in img.enumerate_pixels_mut() {
            let mx = (f64::from(x) + 0.5) / 2.0;
            if mx > x0 + 2.5 && mx < x0 + 3.5 {
                p.0[0] = 40;
            }
        }
        let t = read_tally(&img, &h, &f, 0.0, 0.0, 40.0);
        assert_eq!(
            t.rows.iter().map(|r| r.cells_marked).collect::<Vec<_>>(),
            [2, 0, 0, 0, 0]
        );
    }

    #[test]
    fn a_line_down_one_column_is_not_a_tally() {
        let grid = |rows: [&str; 5]| -> Vec<bool> {
            rows.iter()
                .flat_map(|r| r.bytes().map(|b| b == b'#'))
                .collect()
        };
        // A crease through column 9 of rows 1-3 goes; a lone stray cell (row 0, column 10; row 1,
        // column 5) and the run from the left in row 0 stay.
        let mut m = grid([
            "#########.#.",
            ".....#...#..",
            ".........#..",
            ".........#..",
            "............",
        ]);
        drop_crease_columns(&mut m, 12);
        assert_eq!(
            m,
            grid([
                "#########.#.",
                ".....#......",
                "............",
                "............",
                "............",
            ])
        );
        // Two stray cells in a column are left alone (they may be an officer's), and a run from
        // the left is never stray, however many rows hold it (a tally filled column by column).
        let keep = grid([
            "###.....#...",
            "###.....#...",
            "###.........",
            "###.........",
            "............",
        ]);
        let mut m = keep.clone();
        drop_crease_columns(&mut m, 12);
        assert_eq!(m, keep);
    }

    #[test]
    fn the_grid_never_asks_more_than_the_page() {
        let cells = |marked: usize, hi: f64, lo: f64| -> Vec<Option<f64>> {
            (0..60)
                .map(|i| Some(if i < marked { hi } else { lo }))
                .collect()
        };
        // Quiet grid: the floor.
        assert_eq!(
            grid_threshold(&cells(7, 30.0, 4.0), 40.0),
            GRID_MIN_CONTRAST
        );
        // Noisy empty cells (10): three times their level.
        assert_eq!(grid_threshold(&cells(7, 50.0, 10.0), 40.0), 30.0);
        // Bold strokes: half the strongest is above the page's bar, so the page's bar.
        assert_eq!(grid_threshold(&cells(7, 120.0, 4.0), 40.0), 40.0);
        // Medium strokes: half the strongest.
        assert_eq!(grid_threshold(&cells(7, 64.0, 4.0), 40.0), 32.0);
        // Mostly marked: the quiet rank is a marked cell, so the page's bar.
        assert_eq!(grid_threshold(&cells(50, 30.0, 4.0), 40.0), 40.0);
        // A page asking less (faint handwriting) is never overruled upwards.
        assert_eq!(grid_threshold(&cells(7, 30.0, 4.0), 20.0), 20.0);
        // No sample: the page's bar.
        assert_eq!(grid_threshold(&[None, None], 33.0), 33.0);
    }

    proptest! {
        /// `cell_contrast(v) > t` exactly when at least `TALLY_CELL_INKED` of the samples are
        /// more than `t` darker than paper (the test `read_tally` made per cell before).
        #[test]
        fn cell_contrast_matches_the_inked_share(
            vals in proptest::collection::vec(0u8..=255, 1..400), t in 1u8..120
        ) {
            let mut v: Vec<f64> = vals.iter().map(|x| f64::from(*x)).collect();
            let mut sorted = v.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let paper = sorted[v.len() / 5];
            let thr = paper - f64::from(t);
            let inked = v.iter().filter(|x| **x < thr).count() as f64 / v.len() as f64;
            let c = cell_contrast(&mut v).expect("samples");
            prop_assert_eq!(c > f64::from(t), inked >= TALLY_CELL_INKED);
        }
    }

    #[test]
    fn fine_texture_sees_a_lattice_not_paper_or_a_stroke() {
        // Paper with a thick dark stroke: the stroke's edges are a minority of pixels.
        let stroke = GrayImage::from_fn(40, 40, |x, _| {
            Luma([if (15..22).contains(&x) { 40 } else { 200 }])
        });
        assert!(fine_texture(&stroke) < 1.0, "{}", fine_texture(&stroke));
        // A screen lattice: one dark row in three and dim columns, amplitude 60 grey levels.
        let lattice = GrayImage::from_fn(40, 40, |x, y| {
            Luma([if y % 3 == 2 || x % 3 == 0 { 140 } else { 200 }])
        });
        assert!(
            fine_texture(&lattice) > SCREEN_TEXTURE,
            "{}",
            fine_texture(&lattice)
        );
        assert_eq!(fine_texture(&GrayImage::new(3, 3)), 0.0);
    }
    /// A 48x48 paper crop (grey 200) with Gaussian noise of `sigma` grey levels, and a
    /// vertical stroke two pixels wide, `contrast` levels darker, down its middle (none at 0).
    fn noisy_crop(sigma: f64, contrast: f64, seed: u64) -> GrayImage {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let noise = Normal::new(0.0, sigma).expect("finite sigma");
        GrayImage::from_fn(48, 48, |x, y| {
            let stroke = (23..25).contains(&x) && (10..38).contains(&y);
            let v = 200.0 - if stroke { contrast } else { 0.0 } + noise.sample(&mut rng);
            Luma([v.round().clamp(0.0, 255.0) as u8])
        })
    }

    #[test]
    fn a_faint_stroke_under_the_ink_threshold_is_not_quiet() {
        // The stroke is 14 grey levels dark: under MIN_INK_CONTRAST, so the ink map is empty,
        // but it runs 28 pixels long and the smoothing finds it; plain noise scores low.
        for seed in 0..20 {
            let plain = faint_mark_score(&noisy_crop(3.0, 0.0, seed));
            let faint = faint_mark_score(&noisy_crop(3.0, 14.0, seed));
            assert!(plain < QUIET_MAX_SCORE, "seed {seed}: noise scored {plain}");
            assert!(
                faint >= QUIET_MAX_SCORE,
                "seed {seed}: stroke scored {faint}"
            );
            let (_, range) =
                normalize::crop_levels(&noisy_crop(3.0, 14.0, seed), normalize::PAPER_QUANTILE);
            assert!(
                range < normalize::MIN_INK_CONTRAST,
                "seed {seed}: range {range}"
            );
        }
        // Dark marks in the 1 mm border (a box-line remnant) are left out.
        let mut edge = noisy_crop(3.0, 0.0, 1);
        for y in 0..48 {
            edge.put_pixel(1, y, Luma([120]));
        }
        assert!(faint_mark_score(&edge) < QUIET_MAX_SCORE);
        assert_eq!(faint_mark_score(&GrayImage::new(6, 6)), 0.0);
    }

    /// `noisy_crop` (no stroke) with a ring `dark` levels under the paper on the samples whose
    /// distance to the nearest crop edge lies in `depth`.
    fn ringed_crop(depth: std::ops::Range<u32>, dark: f64, seed: u64) -> GrayImage {
        let mut c = noisy_crop(3.0, 0.0, seed);
        darken_ring(&mut c, depth, dark);
        c
    }

    /// Darken `c` by `dark` levels on the samples whose distance to the nearest edge lies in
    /// `depth`.
    fn darken_ring(c: &mut GrayImage, depth: std::ops::Range<u32>, dark: f64) {
        let (w, h) = c.dimensions();
        for (x, y, p) in c.enumerate_pixels_mut() {
            let d = x.min(y).min(w - 1 - x).min(h - 1 - y);
            if depth.contains(&d) {
                p.0[0] = (f64::from(p.0[0]) - dark).clamp(0.0, 255.0) as u8;
            }
        }
    }

    #[test]
    fn the_printed_frames_ring_at_the_crop_edge_is_no_faint_mark() {
        // The blurred frame of a small photo: a ring over the outer 4 samples (the edge band),
        // darkest 2-3 samples in, too faint for the ink map. It lies in the border the test
        // leaves out, with the smoothing's reach, so the empty box stays quiet.
        for seed in 0..20 {
            let mut c = ringed_crop(0..4, 12.0, seed);
            darken_ring(&mut c, 2..4, 10.0);
            let score = faint_mark_score(&c);
            assert!(score < QUIET_MAX_SCORE, "seed {seed}: ring scored {score}");
            // The same ring 3 samples further in is inside the judged region: seen.
            let inner = faint_mark_score(&ringed_crop(7..9, 22.0, seed));
            assert!(inner >= QUIET_MAX_SCORE, "seed {seed}: inner ring {inner}");
        }
    }

    /// A paper crop of a page-2 vote box as cut (grey 200, noise 3 levels, blurred), its printed guide
    /// dots `guide` levels darker, and optionally a faint straight stroke (`stroke` levels)
    /// from the box's lower left to its upper right that misses no sample of its track.
    fn guided_crop(guide: f64, stroke: f64, seed: u64) -> (BoxCrop, Vec<RectMm>) {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let t = crate::template::Template::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(crate::template::DEFAULT_TEMPLATE_PATH),
        )
        .expect("bundled template");
        let f = t.field("votes.1").expect("votes.1");
        let b = f.boxes[0];
        let side = ((b[2] - 2.0 * BOX_MARGIN_MM) * SAMPLE_PX_PER_MM).round() as u32;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let noise = Normal::new(0.0, 3.0).expect("finite sigma");
        let gray = GrayImage::from_fn(side, side, |x, y| {
            let xm = (f64::from(x) + 0.5) / SAMPLE_PX_PER_MM + BOX_MARGIN_MM;
            let ym = (f64::from(y) + 0.5) / SAMPLE_PX_PER_MM + BOX_MARGIN_MM;
            let dot = f
                .guide_dots
                .iter()
                .any(|d| xm >= d[0] && xm <= d[0] + d[2] && ym >= d[1] && ym <= d[1] + d[3]);
            let on_stroke = (f64::from(x) + f64::from(y) - f64::from(side)).abs() <= 1.0
                && (8..side - 8).contains(&x);
            let mut v = 200.0 + noise.sample(&mut rng);
            if dot {
                v -= guide;
            }
            if on_stroke {
                v -= stroke;
            }
            Luma([v.round().clamp(0.0, 255.0) as u8])
        });
        // A camera's optics and JPEG smooth the paper's grain and the dots' edges.
        let gray = imageproc::filter::gaussian_blur_f32(&gray, 1.0);
        let (paper, range) = normalize::crop_levels(&gray, normalize::PAPER_QUANTILE);
        let c = BoxCrop {
            gray,
            paper,
            range,
            ..crop_with(range, 0.0)
        };
        (c, f.guide_dots.clone())
    }

    #[test]
    fn hidden_samples_take_no_part_in_the_faint_mark_test() {
        // A dark blob inside a hidden square, 3 pixels clear of its edge (more than the
        // smoothing reaches): the score over the rest is exactly that of the crop without it.
        let plain = noisy_crop(3.0, 0.0, 5);
        let mut blob = plain.clone();
        for y in 21..27 {
            for x in 21..27 {
                blob.put_pixel(x, y, Luma([120]));
            }
        }
        let hidden: Vec<bool> = (0..48 * 48)
            .map(|i| (18..30).contains(&(i % 48)) && (18..30).contains(&(i / 48)))
            .collect();
        assert!(faint_mark_score(&blob) >= QUIET_MAX_SCORE);
        assert_eq!(
            faint_mark_score_outside(&blob, &hidden),
            faint_mark_score_outside(&plain, &hidden)
        );
        assert!(faint_mark_score_outside(&blob, &hidden) < QUIET_MAX_SCORE);
        // Nothing left to judge: no evidence of a mark.
        assert_eq!(faint_mark_score_outside(&blob, &[true; 48 * 48]), 0.0);
    }

    #[test]
    fn the_guide_mask_is_every_sample_centred_near_a_dot() {
        let (c, dots) = guided_crop(45.0, 0.0, 1);
        let seen = without_guide(&c, &dots, false);
        let (w, m) = (c.gray.width() as usize, GUIDE_MASK_MARGIN_MM);
        for (i, hidden) in seen.hidden.iter().enumerate() {
            let xm = ((i % w) as f64 + 0.5) / SAMPLE_PX_PER_MM + BOX_MARGIN_MM;
            let ym = ((i / w) as f64 + 0.5) / SAMPLE_PX_PER_MM + BOX_MARGIN_MM;
            let near = dots.iter().any(|d| {
                (d[0] - m..=d[0] + d[2] + m).contains(&xm)
                    && (d[1] - m..=d[1] + d[3] + m).contains(&ym)
            });
            assert_eq!(*hidden, near, "sample {i}");
        }
        assert!(seen.hidden.iter().filter(|h| **h).count() > 400);
    }

    #[test]
    fn the_printed_guide_is_no_mark_but_a_stroke_beside_it_is() {
        for seed in 0..10 {
            // The guide's dots, 45 levels dark before the blur (about 25 after, as photographed
            // on seed 161), look like a faint mark to the plain tests: doubtful, never quiet.
            let (blank, dots) = guided_crop(45.0, 0.0, seed);
            assert!(!is_quiet(&blank, true, true), "seed {seed}");
            assert!(
                is_doubtful(&blank, true),
                "seed {seed}: range {}",
                blank.range
            );
            // With the guide's track hidden the box is quiet paper.
            let seen = without_guide(&blank, &dots, false);
            assert!(is_quiet(&seen, true, true), "seed {seed}");
            assert!(
                !is_doubtful(&seen, true),
                "seed {seed}: range {}",
                seen.range
            );
            // A faint stroke under the ink threshold, crossing the box, still counts.
            let (faint, dots) = guided_crop(45.0, 20.0, seed);
            let seen = without_guide(&faint, &dots, false);
            assert!(!is_quiet(&seen, true, true), "seed {seed}");
        }
    }

    #[test]
    fn only_empty_plain_crops_of_paper_pages_are_quiet() {
        let quiet = BoxCrop {
            gray: noisy_crop(3.0, 0.0, 7),
            range: 12.0,
            ..crop_with(12.0, 0.0)
        };
        assert!(is_quiet(&quiet, true, true));
        // Not when the model saw ink, on a page that does not trust empty boxes, or when the
        // crop is doubtful.
        assert!(!is_quiet(&quiet, false, true));
        assert!(!is_quiet(&quiet, true, false));
        // A wide grey range alone does not stop it (noise, remnants), washed-out paper does.
        let wide = BoxCrop {
            range: DOUBTFUL_EMPTY_RANGE,
            ..quiet.clone()
        };
        assert!(is_doubtful(&wide, true) && is_quiet(&wide, true, true));
        let glare = BoxCrop {
            paper: SATURATED_PAPER,
            ..quiet.clone()
        };
        assert!(!is_quiet(&glare, true, true));
        assert!(is_doubtful(&glare, true));
        // Saturated paper whose printed outline stays dark is an overexposed photo, not glare:
        // read like any other box.
        let bright = BoxCrop {
            frame_contrast: Some(MIN_FRAME_CONTRAST),
            ..glare.clone()
        };
        assert!(is_quiet(&bright, true, true) && !is_doubtful(&bright, true));
        let lifted = BoxCrop {
            frame_contrast: Some(MIN_FRAME_CONTRAST - 1.0),
            ..glare.clone()
        };
        assert!(!is_quiet(&lifted, true, true) && is_doubtful(&lifted, true));
        let faint = BoxCrop {
            gray: noisy_crop(3.0, 14.0, 7),
            ..quiet
        };
        assert!(!is_quiet(&faint, true, true));
        // A page trusts its empty boxes when its handwriting shows clearly, and not on a
        // screen photo.
        let page = |ink_range: Option<f64>, descreened: bool| PageCrops {
            fields: Vec::new(),
            texture: 0.0,
            descreened,
            ink_range,
        };
        let fine = QUIET_MIN_PX_PER_MM;
        assert!(page(Some(QUIET_MIN_PAGE_INK_RANGE), false).trusts_empty_boxes(fine));
        assert!(!page(Some(QUIET_MIN_PAGE_INK_RANGE - 1.0), false).trusts_empty_boxes(fine));
        assert!(!page(None, false).trusts_empty_boxes(fine));
        assert!(!page(Some(120.0), true).trusts_empty_boxes(fine));
        // Nor on a photo too coarse for a faint stroke to leave a trace.
        assert!(!page(Some(120.0), false).trusts_empty_boxes(fine - 0.01));
    }

    use proptest::prelude::*;

    /// The per-pixel `from_fn` sampler `sample_rect` replaced (reference for its output).
    fn sample_rect_reference(
        gray: &GrayImage,
        h: &Homography,
        rect: &RectMm,
        px_per_mm: f64,
    ) -> (GrayImage, f64) {
        let w = ((rect[2] * px_per_mm).round() as u32).max(1);
        let hh = ((rect[3] * px_per_mm).round() as u32).max(1);
        let centre = [rect[0] + rect[2] / 2.0, rect[1] + rect[3] / 2.0];
        let ratio = h.local_scale(centre) / px_per_mm;
        let ss: u32 = if ratio > SUPERSAMPLE_ABOVE_RATIO {
            (ratio.ceil() as u32).min(3)
        } else {
            1
        };
        let mut off = 0usize;
        let step = 1.0 / px_per_mm;
        let sub = step / ss as f64;
        let img = GrayImage::from_fn(w, hh, |x, y| {
            let mut acc = 0.0;
            let mut n = 0.0;
            for sy in 0..ss {
                for sx in 0..ss {
                    let mx = rect[0] + x as f64 * step + (sx as f64 + 0.5) * sub;
                    let my = rect[1] + y as f64 * step + (sy as f64 + 0.5) * sub;
                    if let Some(v) = h.apply([mx, my]).and_then(|p| bilinear(gray, p[0], p[1])) {
                        acc += v;
                        n += 1.0;
                    }
                }
            }
            if n == 0.0 {
                off += 1;
                Luma([OFF_PHOTO_FILL])
            } else {
                Luma([(acc / n).round().clamp(0.0, 255.0) as u8])
            }
        });
        (img, off as f64 / (w as f64 * hh as f64))
    }

    /// The faint-mark score as first written: imageproc's Gaussian over the whole crop, f64
    /// medians (the reference the direct version must match).
    fn faint_mark_score_reference(gray: &GrayImage) -> f64 {
        let (w, h) = gray.dimensions();
        if w <= 2 * QUIET_BORDER_PX || h <= 2 * QUIET_BORDER_PX {
            return 0.0;
        }
        let f: image::ImageBuffer<Luma<f32>, Vec<f32>> =
            image::ImageBuffer::from_fn(w, h, |x, y| Luma([f32::from(gray.get_pixel(x, y).0[0])]));
        let smooth = imageproc::filter::gaussian_blur_f32(&f, QUIET_SIGMA_PX);
        let inner = |x: u32, y: u32| {
            (QUIET_BORDER_PX..w - QUIET_BORDER_PX).contains(&x)
                && (QUIET_BORDER_PX..h - QUIET_BORDER_PX).contains(&y)
        };
        let (mut raw, mut sm) = (Vec::new(), Vec::new());
        for (x, y, p) in gray.enumerate_pixels() {
            if inner(x, y) {
                raw.push(f64::from(p.0[0]));
                sm.push(f64::from(smooth.get_pixel(x, y).0[0]));
            }
        }
        let paper = crate::upper_median(&mut raw);
        let darkest = sm.iter().copied().fold(f64::INFINITY, f64::min);
        let centre = crate::upper_median(&mut sm);
        let mut dev: Vec<f64> = sm.iter().map(|v| (v - centre).abs()).collect();
        let noise = MAD_TO_SIGMA * crate::upper_median(&mut dev) + QUIET_NOISE_FLOOR;
        ((paper - darkest) / noise).max(0.0)
    }

    proptest! {
        #[test]
        fn faint_mark_score_matches_its_reference(
            sigma in 0.5f64..12.0,
            contrast in 0.0f64..40.0,
            seed in 0u64..1000,
        ) {
            let crop = noisy_crop(sigma, contrast, seed);
            let (fast, slow) = (faint_mark_score(&crop), faint_mark_score_reference(&crop));
            prop_assert!((fast - slow).abs() <= 1e-3 * slow.max(1.0), "{fast} vs {slow}");
        }
    }

    /// Cost of one faint-mark test (not a speed assertion):
    /// `cargo test --release --lib segment::tests::profile_faint -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn profile_faint_mark_score() {
        let crops: Vec<GrayImage> = (0..200).map(|i| noisy_crop(3.0, 0.0, i)).collect();
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let s: f64 = crops.iter().map(faint_mark_score).sum();
            std::hint::black_box(s);
            best = best.min(t.elapsed().as_secs_f64() * 1e6 / crops.len() as f64);
        }
        eprintln!("faint_mark_score: {best:.1} us per 48x48 crop");
    }

    /// Per-step CPU profile of segmentation on a real 12 MP page (not a speed assertion):
    /// `REKAP_PROFILE_PAGE=photo.jpg cargo test --release --lib segment::tests::profile -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn profile_segment_steps() {
        use crate::align::snap;
        use crate::template::{FieldKind, Template};
        let Some(path) = std::env::var_os("REKAP_PROFILE_PAGE") else {
            return;
        };
        let photo = crate::load::load_photo(std::path::Path::new(&path)).expect("photo");
        let template = Template::load(std::path::Path::new(crate::template::DEFAULT_TEMPLATE_PATH))
            .expect("template");
        let gray = &photo.gray;
        let al = crate::align::align_page(gray, &template).expect("aligned");
        let h = al.h().expect("h");
        let fields: Vec<_> = template.fields_on_page(al.page).collect();
        let time = |name: &str, f: &mut dyn FnMut() -> usize| {
            let mut best = f64::INFINITY;
            let mut n = 0;
            for _ in 0..9 {
                let t = std::time::Instant::now();
                n = f();
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            eprintln!("{name:24} {best:7.3} ms (min of 9), {n} items");
        };
        time("snap_boxes", &mut || {
            fields
                .iter()
                .filter(|f| !f.boxes.is_empty())
                .map(|f| {
                    snap::snap_boxes(gray, &h, &f.boxes, f.line_mm.unwrap_or(0.5)).found as usize
                })
                .sum()
        });
        let digit = |f: &&&crate::template::Field| {
            matches!(
                f.kind,
                FieldKind::Digits | FieldKind::RowTotals | FieldKind::Date
            )
        };
        time("cut_boxes", &mut || {
            fields
                .iter()
                .filter(digit)
                .map(|f| cut_boxes(gray, &h, f, 0.0, 0.0).len())
                .sum()
        });
        time("sample_rect only", &mut || {
            fields
                .iter()
                .filter(digit)
                .flat_map(|f| f.boxes.iter())
                .map(|b| sample_rect(gray, &h, b, SAMPLE_PX_PER_MM).0.len())
                .sum()
        });
        let crops: Vec<BoxCrop> = fields
            .iter()
            .filter(digit)
            .flat_map(|f| cut_boxes(gray, &h, f, 0.0, 0.0))
            .collect();
        time("ink_map_with_levels", &mut || {
            crops
                .iter()
                .map(|c| {
                    ink_map_with_levels(&c.gray, normalize::PAPER_QUANTILE)
                        .0
                        .len()
                })
                .sum()
        });
        time("read_ink", &mut || {
            crops
                .iter()
                .map(|c| read_ink(&c.gray, normalize::PAPER_QUANTILE).3)
                .sum()
        });
        time("normalize", &mut || {
            crops
                .iter()
                .map(|c| normalize::normalize(&c.ink).len())
                .sum()
        });
        time("read_bubbles", &mut || {
            fields
                .iter()
                .filter(|f| f.kind == FieldKind::Bubbles)
                .map(|f| read_bubbles(gray, &h, f, 0.0, 0.0).len())
                .sum()
        });
        time("read_tally", &mut || {
            fields
                .iter()
                .filter(|f| f.kind == FieldKind::TallyGrid)
                .map(|f| {
                    read_tally(gray, &h, f, 0.0, 0.0, TALLY_STROKE_CONTRAST)
                        .total
                        .cells_marked as usize
                })
                .sum()
        });
    }

    #[test]
    fn round_to_u8_matches_round() {
        for i in 0..=300_000u32 {
            let v = f64::from(i) / 1000.0;
            for v in [v, v + 1e-9, (v - 1e-9).max(0.0), v + 0.5 - f64::EPSILON] {
                assert_eq!(round_to_u8(v), v.round().clamp(0.0, 255.0) as u8, "{v}");
            }
        }
    }

    /// The texture measure as first written: f64 differences, sorted for their median.
    fn fine_texture_reference(gray: &GrayImage) -> f64 {
        let (w, h) = gray.dimensions();
        let b = TEXTURE_BORDER_PX;
        if w <= 2 * b || h <= 2 * b {
            return 0.0;
        }
        let (w, h, b) = (w as usize, h as usize, b as usize);
        let raw = gray.as_raw();
        let mut d = Vec::new();
        for y in b..h - b {
            for x in b..w - b {
                let sum: u32 = (y - 1..=y + 1)
                    .flat_map(|yy| &raw[yy * w + x - 1..=yy * w + x + 1])
                    .map(|&v| u32::from(v))
                    .sum();
                d.push((f64::from(raw[y * w + x]) - f64::from(sum) / 9.0).abs());
            }
        }
        crate::upper_median(&mut d)
    }

    proptest! {
        /// Counting the integer differences gives the sorted median of the f64 ones (to the
        /// last bits of a ninth: `v - s / 9` and `|9 v - s| / 9` may round apart), on noise,
        /// on lattices and on crops too small to measure.
        #[test]
        fn fine_texture_matches_reference(
            seed in 0u64..1000,
            w in 1u32..40,
            h in 1u32..40,
            amp in 0u64..256,
            period in 1u32..5,
        ) {
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let img = GrayImage::from_fn(w, h, |x, y| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let lattice = if (x + y) % period == 0 { 60 } else { 0 };
                Luma([(100 + lattice + (state >> 32) % (amp + 1)).min(255) as u8])
            });
            let (a, b) = (fine_texture(&img), fine_texture_reference(&img));
            prop_assert!((a - b).abs() < 1e-9, "{} vs {}", a, b);
            // Whole ninths, so the page's `> SCREEN_TEXTURE` test (5 = 45 ninths) is exact.
            prop_assert_eq!((a * 9.0).round() / 9.0, a);
        }
    }

    proptest! {
        /// The streaming sampler gives exactly the reference's pixels and off-photo share, with
        /// and without supersampling, on and off the photo, under perspective.
        #[test]
        fn sample_rect_matches_reference(
            seed in 0u64..1000,
            scale in 1.0f64..12.0,
            angle in -0.6f64..0.6,
            persp in -0.002f64..0.002,
            x0 in -10.0f64..30.0,
            y0 in -10.0f64..30.0,
            rw in 0.5f64..15.0,
            rh in 0.5f64..15.0,
        ) {
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let img = GrayImage::from_fn(97, 83, |x, y| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                Luma([((x * 5 + y * 3) as u64 % 180 + (state >> 58)) as u8])
            });
            let (c, s) = (angle.cos() * scale, angle.sin() * scale);
            let Some(h) = Homography::from_array([c, -s, 3.0, s, c, 2.0, persp, 0.0, 1.0]) else {
                return Ok(());
            };
            let rect = [x0, y0, rw, rh];
            prop_assert_eq!(
                sample_rect(&img, &h, &rect, SAMPLE_PX_PER_MM),
                sample_rect_reference(&img, &h, &rect, SAMPLE_PX_PER_MM)
            );
        }
    }
}
