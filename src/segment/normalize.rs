//! Digit normalisation `rekap-mnist-v1`: the Rust reference implementation of the contract in
//! docs/interfaces.md ("Digit normalisation"). The Python mirror is
//! `training/rekap_train/preprocess.py`; `tests/parity.rs` checks both agree within 1e-5.
//!
//! Invariants:
//! * [`normalize`] is a pure function of the ink map; all arithmetic is `f64`, the result is
//!   emitted as `f32`, row-major `[1, 28, 28]`, values in `[0, 1]`, ink = 1.
//! * An ink map with no pixel at or above [`INK_THRESHOLD`] (including an empty map) gives all
//!   zeros.
//! * [`ink_map_from_gray`] maps a near-uniform crop to an all-zero ink map, so it normalises to
//!   all zeros (a blank box).

use image::GrayImage;
use ndarray::Array2;

/// Side of the square output canvas (MNIST size).
pub const CANVAS: usize = 28;
/// Number of values in one normalised tensor (`1 x 28 x 28`).
pub const TENSOR_LEN: usize = CANVAS * CANVAS;
/// The mark is scaled so its larger side is this many pixels (MNIST: 20x20 inside 28x28).
pub const TARGET: f64 = 20.0;
/// Ink values at or above this count as ink for the bounding box (contract step 1).
pub const INK_THRESHOLD: f64 = 0.5;
/// Marks smaller than this fraction of the box height are not blown up to [`TARGET`] (step 3),
/// so a small dash stays small and is not mistaken for a `1` or a `-` filling the box.
pub const MIN_SCALE_FRACTION_OF_HEIGHT: f64 = 0.5;

/// Name of this normalisation, as it appears in the model card's `input.preprocessing`.
pub const PREPROCESSING_ID: &str = "rekap-mnist-v1";

/// Ink map of one box interior: `H x W` (`[[y, x]]` indexing), values in `[0, 1]`,
/// 0 = paper, 1 = full ink.
pub type InkMap = Array2<f64>;

/// One normalised digit tensor, row-major `[1, 28, 28]`.
pub type DigitTensor = [f32; TENSOR_LEN];

/// Rounding used throughout the contract: `floor(x + 0.5)`.
fn round_half_up(x: f64) -> i64 {
    // `as` saturates (NaN -> 0); the callers clamp the result into range afterwards.
    (x + 0.5).floor() as i64
}

/// Sparse rows of the area-resample matrix `R` (`out_n x in_n`) of contract step 4:
/// `R[i][j] = |[i*in/out, (i+1)*in/out) ∩ [j, j+1)| / (in/out)`. Row `i` is returned as the
/// list of its non-zero `(j, weight)` entries; every row's weights sum to 1.
fn resample_rows(out_n: usize, in_n: usize) -> Vec<Vec<(usize, f64)>> {
    let step = in_n as f64 / out_n as f64;
    (0..out_n)
        .map(|i| {
            let lo = i as f64 * in_n as f64 / out_n as f64;
            let hi = (i + 1) as f64 * in_n as f64 / out_n as f64;
            let j0 = lo.floor() as usize;
            let j1 = ((hi.ceil() as usize).saturating_sub(1)).min(in_n - 1);
            (j0..=j1)
                .filter_map(|j| {
                    let overlap = hi.min(j as f64 + 1.0) - lo.max(j as f64);
                    (overlap > 0.0).then_some((j, overlap / step))
                })
                .collect()
        })
        .collect()
}

/// Is `t` the all-zero tensor, what [`normalize`] gives an ink map with no ink (an empty box)?
pub fn is_empty_tensor(t: &DigitTensor) -> bool {
    t.iter().all(|v| *v == 0.0)
}

/// Normalise one ink map to the model's input tensor (`rekap-mnist-v1`, see the module docs).
pub fn normalize(ink: &InkMap) -> DigitTensor {
    let mut out = [0f32; TENSOR_LEN];
    // Only the box height enters the contract (it bounds the scale in step 3).
    let h = ink.nrows();
    // 1. mask; 2. its bounding box.
    let mut bbox: Option<(usize, usize, usize, usize)> = None; // (y0, y1, x0, x1)
    for ((y, x), &v) in ink.indexed_iter() {
        if v >= INK_THRESHOLD {
            bbox = Some(match bbox {
                None => (y, y, x, x),
                Some((y0, y1, x0, x1)) => (y0.min(y), y1.max(y), x0.min(x), x1.max(x)),
            });
        }
    }
    let Some((y0, y1, x0, x1)) = bbox else {
        return out;
    };
    let (bh, bw) = (y1 - y0 + 1, x1 - x0 + 1);
    // 3. scale and patch size. s <= 20 / max(bh, bw), so 1 <= oh, ow <= 20 < CANVAS.
    let s = TARGET
        / (bh as f64)
            .max(bw as f64)
            .max(MIN_SCALE_FRACTION_OF_HEIGHT * h as f64);
    let oh = round_half_up(bh as f64 * s).max(1) as usize;
    let ow = round_half_up(bw as f64 * s).max(1) as usize;
    let (oh, ow) = (oh.min(CANVAS), ow.min(CANVAS));
    // 4. area resample P = Ry @ C @ Rx^T, with C = ink[y0..=y1, x0..=x1].
    let ry = resample_rows(oh, bh);
    let rx = resample_rows(ow, bw);
    // T = C @ Rx^T  (bh x ow)
    let mut t = vec![0f64; bh * ow];
    for r in 0..bh {
        for (c, row) in rx.iter().enumerate() {
            t[r * ow + c] = row
                .iter()
                .map(|&(j, wgt)| ink[[y0 + r, x0 + j]] * wgt)
                .sum();
        }
    }
    // P = Ry @ T  (oh x ow)
    let mut p = vec![0f64; oh * ow];
    for (i, row) in ry.iter().enumerate() {
        for c in 0..ow {
            p[i * ow + c] = row.iter().map(|&(j, wgt)| t[j * ow + c] * wgt).sum();
        }
    }
    // 5. centre of mass with pixel-centre coordinates; placement.
    let total: f64 = p.iter().sum();
    let (cy, cx) = if total == 0.0 {
        (oh as f64 / 2.0, ow as f64 / 2.0)
    } else {
        let row_sums = (0..oh).map(|i| p[i * ow..(i + 1) * ow].iter().sum::<f64>());
        let cy = row_sums
            .enumerate()
            .map(|(i, v)| v * (i as f64 + 0.5))
            .sum::<f64>()
            / total;
        let cx = (0..ow)
            .map(|c| (0..oh).map(|i| p[i * ow + c]).sum::<f64>() * (c as f64 + 0.5))
            .sum::<f64>()
            / total;
        (cy, cx)
    };
    let half = CANVAS as f64 / 2.0;
    let top = round_half_up(half - cy).clamp(0, (CANVAS - oh) as i64) as usize;
    let left = round_half_up(half - cx).clamp(0, (CANVAS - ow) as i64) as usize;
    // 6. clip to [0, 1] (NaN, which only a malformed input can produce, becomes 0), emit f32.
    for i in 0..oh {
        for c in 0..ow {
            let v = p[i * ow + c];
            let clipped = if v > 0.0 { v.min(1.0) } else { 0.0 };
            out[(top + i) * CANVAS + left + c] = clipped as f32;
        }
    }
    out
}

/// Paper level = this quantile of the crop's grey levels. Paper covers most of a digit box (a
/// thick digit inks well under half of it), so a high quantile lands on paper, while staying
/// clear of the few brightest pixels (glare, sensor noise).
pub const PAPER_QUANTILE: f64 = 0.80;
/// Ink level = this quantile of the crop's grey levels: low enough to sit inside the strokes of
/// a thin digit (a `1` inks a few percent of its box) without being a lone noisy dark pixel.
pub const INK_QUANTILE: f64 = 0.01;
/// Minimum paper-minus-ink difference (grey levels out of 255) for a crop to hold any ink.
/// Paper texture, JPEG noise and soft shadows stay within roughly 30 levels; a pen stroke,
/// even a light one, is at least ~60 levels darker than its paper. Below this the crop is
/// treated as blank and maps to all-zero ink, so noise is never stretched into "ink".
pub const MIN_INK_CONTRAST: f64 = 28.0;

/// Grey level at quantile `q` (0..=1) of a histogram holding `n` pixels.
pub(crate) fn quantile_level(hist: &[usize; 256], n: usize, q: f64) -> f64 {
    // Rank of the wanted pixel in sorted order, 0-based.
    let rank = ((n - 1) as f64 * q).round() as usize;
    let mut seen = 0usize;
    for (level, &count) in hist.iter().enumerate() {
        seen += count;
        if seen > rank {
            return level as f64;
        }
    }
    255.0
}

/// Paper level (the `paper_quantile` grey level, normally [`PAPER_QUANTILE`]) and
/// paper-minus-ink range (down to [`INK_QUANTILE`]) of a grey crop; an empty crop is white paper
/// with no range.
pub fn crop_levels(crop: &GrayImage, paper_quantile: f64) -> (f64, f64) {
    let n = (crop.width() * crop.height()) as usize;
    if n == 0 {
        return (255.0, 0.0);
    }
    let hist = grey_histogram(crop);
    let paper = quantile_level(&hist, n, paper_quantile);
    (paper, paper - quantile_level(&hist, n, INK_QUANTILE))
}

/// Count of each grey level in `crop`.
pub(crate) fn grey_histogram(crop: &GrayImage) -> [usize; 256] {
    let mut hist = [0usize; 256];
    for p in crop.pixels() {
        hist[usize::from(p.0[0])] += 1;
    }
    hist
}

/// Ink map of a standalone grey crop of one box (dark ink on light paper).
///
/// The paper level is the [`PAPER_QUANTILE`] grey level and the ink level the
/// [`INK_QUANTILE`] one; grey levels map linearly to ink, paper (and brighter) -> 0, ink (and
/// darker) -> 1. A crop whose paper-ink difference is below [`MIN_INK_CONTRAST`] is
/// near-uniform and maps to all zeros.
pub fn ink_map_from_gray(crop: &GrayImage) -> InkMap {
    ink_map_with_levels(crop, PAPER_QUANTILE).0
}

/// [`ink_map_from_gray`] with the paper level taken at quantile `paper_quantile` (a lower one
/// maps more of a textured paper to 0), also returning the [`crop_levels`] it used.
pub fn ink_map_with_levels(crop: &GrayImage, paper_quantile: f64) -> (InkMap, f64, f64) {
    let (w, h) = (crop.width() as usize, crop.height() as usize);
    let mut ink = InkMap::zeros((h, w));
    let (paper, range) = crop_levels(crop, paper_quantile);
    if w * h == 0 || range < MIN_INK_CONTRAST {
        return (ink, paper, range);
    }
    for (x, y, p) in crop.enumerate_pixels() {
        let v = (paper - p.0[0] as f64) / range;
        ink[[y as usize, x as usize]] = v.clamp(0.0, 1.0);
    }
    (ink, paper, range)
}

/// The ink value reached by the darkest [`INK_QUANTILE`] share of an ink map's samples: the
/// counterpart, in ink units, of the crop's ink level. Used to re-measure a crop's range after
/// samples were erased from its map.
pub fn ink_quantile_of_map(ink: &InkMap) -> f64 {
    let mut v: Vec<f64> = ink.iter().copied().filter(|v| v.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    // The value of this rank in descending order (a selection, not a full sort).
    let rank = ((v.len() - 1) as f64 * INK_QUANTILE).round() as usize;
    *v.select_nth_unstable_by(rank, |a, b| b.total_cmp(a)).1
}

/// Ink map from an 8-bit image that already stores ink (0 = paper, 255 = full ink), as the
/// parity fixtures do: `ink = pixel / 255`.
pub fn ink_map_from_ink_image(img: &GrayImage) -> InkMap {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut ink = InkMap::zeros((h, w));
    for (x, y, p) in img.enumerate_pixels() {
        ink[[y as usize, x as usize]] = p.0[0] as f64 / 255.0;
    }
    ink
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(t: &DigitTensor, y: usize, x: usize) -> f32 {
        t[y * CANVAS + x]
    }

    fn com(t: &DigitTensor) -> (f64, f64) {
        let mut s = 0.0;
        let (mut sy, mut sx) = (0.0, 0.0);
        for y in 0..CANVAS {
            for x in 0..CANVAS {
                let v = at(t, y, x) as f64;
                s += v;
                sy += v * (y as f64 + 0.5);
                sx += v * (x as f64 + 0.5);
            }
        }
        (sy / s, sx / s)
    }

    #[test]
    fn empty_and_faint_maps_give_zeros() {
        assert!(normalize(&InkMap::zeros((0, 0))).iter().all(|&v| v == 0.0));
        assert!(
            normalize(&InkMap::zeros((40, 30)))
                .iter()
                .all(|&v| v == 0.0)
        );
        // Everything just below the threshold: no mask pixel, so nothing at all.
        let faint = InkMap::from_elem((20, 20), 0.49);
        assert!(normalize(&faint).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn single_full_pixel() {
        // H = 10: s = 20 / max(1, 1, 5) = 4, patch 4x4 of ones (area resample of a constant).
        // COM of the patch = (2, 2); top = left = floor(14 - 2 + 0.5) = 12.
        let mut ink = InkMap::zeros((10, 10));
        ink[[3, 7]] = 1.0;
        let t = normalize(&ink);
        for y in 0..CANVAS {
            for x in 0..CANVAS {
                let want = if (12..16).contains(&y) && (12..16).contains(&x) {
                    1.0
                } else {
                    0.0
                };
                assert_eq!(at(&t, y, x), want, "pixel ({y}, {x})");
            }
        }
    }

    #[test]
    fn single_pixel_in_tiny_map_fills_target() {
        // H = 1: s = 20 / max(1, 1, 0.5) = 20, patch 20x20, placed at floor(14 - 10 + 0.5) = 4.
        let ink = InkMap::from_elem((1, 1), 1.0);
        let t = normalize(&ink);
        let total: f32 = t.iter().sum();
        assert_eq!(total, 400.0);
        assert_eq!(at(&t, 4, 4), 1.0);
        assert_eq!(at(&t, 23, 23), 1.0);
        assert_eq!(at(&t, 3, 4), 0.0);
        assert_eq!(at(&t, 24, 23), 0.0);
    }

    #[test]
    fn rectangle_centre_of_mass_lands_at_14() {
        // 12 (tall) x 6 (wide) rectangle in a 24x24 map: s = 20 / max(12, 6, 12), patch 20 x 10
        // of ones, COM (10, 5), top = floor(14 - 10 + 0.5) = 4, left = floor(14 - 5 + 0.5) = 9:
        // output COM (4 + 10, 9 + 5) = (14, 14), the canvas centre.
        let mut ink = InkMap::zeros((24, 24));
        for y in 3..15 {
            for x in 11..17 {
                ink[[y, x]] = 1.0;
            }
        }
        let t = normalize(&ink);
        let (cy, cx) = com(&t);
        assert!((cy - 14.0).abs() < 1e-9, "cy = {cy}");
        assert!((cx - 14.0).abs() < 1e-9, "cx = {cx}");
        assert_eq!(at(&t, 4, 9), 1.0);
        assert_eq!(at(&t, 23, 18), 1.0);
        assert_eq!(at(&t, 3, 9), 0.0);
        assert_eq!(at(&t, 4, 19), 0.0);
        assert_eq!(t.iter().sum::<f32>(), 200.0);
    }

    #[test]
    fn odd_rectangle_lands_within_half_pixel_of_14() {
        // A 10 (tall) x 4 (wide) rectangle in a 30x30 map: s = 20 / 15, patch 13 x 5
        // (floor(13.33 + 0.5) = 13, floor(5.33 + 0.5) = 5), COM (6.5, 2.5), top = 8, left = 12:
        // the output COM is (8 + 6.5, 12 + 2.5) = (14.5, 14.5), the canvas centre within the
        // half-pixel the integer placement allows.
        let mut ink = InkMap::zeros((30, 30));
        for y in 5..15 {
            for x in 20..24 {
                ink[[y, x]] = 1.0;
            }
        }
        let t = normalize(&ink);
        let (cy, cx) = com(&t);
        assert!((cy - 14.5).abs() < 1e-9, "cy = {cy}");
        assert!((cx - 14.5).abs() < 1e-9, "cx = {cx}");
        assert_eq!(at(&t, 8, 12), 1.0);
        assert_eq!(at(&t, 20, 16), 1.0);
        assert_eq!(at(&t, 7, 12), 0.0);
        assert_eq!(at(&t, 21, 16), 0.0);
        assert_eq!(at(&t, 8, 17), 0.0);
        let total: f32 = t.iter().sum();
        assert_eq!(total, 65.0);
    }

    #[test]
    fn area_resample_rows_sum_to_one() {
        for out_n in 1..=20 {
            for in_n in 1..=45 {
                for row in resample_rows(out_n, in_n) {
                    let s: f64 = row.iter().map(|&(_, w)| w).sum();
                    assert!((s - 1.0).abs() < 1e-12, "{out_n}x{in_n}: {s}");
                }
            }
        }
    }

    #[test]
    fn crop_values_not_mask_are_resampled() {
        // The crop keeps the real values: a half-strength pixel inside the bbox survives.
        let mut ink = InkMap::zeros((2, 2));
        ink[[0, 0]] = 1.0;
        ink[[1, 1]] = 1.0;
        ink[[0, 1]] = 0.3;
        let t = normalize(&ink);
        // s = 10, patch 20x20 placed at 4; top-right quarter holds 0.3.
        assert!((at(&t, 5, 20) - 0.3).abs() < 1e-7);
        assert_eq!(at(&t, 20, 5), 0.0);
    }

    #[test]
    fn uniform_gray_crop_is_blank() {
        let img = GrayImage::from_pixel(30, 40, image::Luma([200]));
        let ink = ink_map_from_gray(&img);
        assert!(ink.iter().all(|&v| v == 0.0));
        // Noise of +-10 levels is still blank.
        let noisy = GrayImage::from_fn(30, 40, |x, y| {
            image::Luma([190 + ((x * 7 + y * 3) % 21) as u8])
        });
        assert!(ink_map_from_gray(&noisy).iter().all(|&v| v == 0.0));
        assert!(ink_map_from_gray(&GrayImage::new(0, 0)).is_empty());
    }

    #[test]
    fn dark_stroke_on_paper_is_ink() {
        let img = GrayImage::from_fn(30, 40, |x, _| {
            image::Luma([if (14..17).contains(&x) { 20 } else { 230 }])
        });
        let ink = ink_map_from_gray(&img);
        assert_eq!(ink[[10, 15]], 1.0);
        assert_eq!(ink[[10, 3]], 0.0);
        let t = normalize(&ink);
        assert!(t.iter().any(|&v| v > 0.9));
    }

    proptest! {
        #[test]
        fn output_in_unit_interval(
            h in 1usize..40, w in 1usize..40,
            vals in proptest::collection::vec(-0.5f64..1.5, 1600),
        ) {
            let ink = InkMap::from_shape_fn((h, w), |(y, x)| vals[y * 40 + x]);
            let t = normalize(&ink);
            prop_assert!(t.iter().all(|&v| (0.0..=1.0).contains(&v)));
        }

        #[test]
        fn translation_within_canvas_does_not_change_output(
            dy in 0usize..30, dx in 0usize..30,
            vals in proptest::collection::vec(0.0f64..1.0, 12 * 9),
        ) {
            // A 12x9 drawing (with one guaranteed ink pixel) pasted into a 60x60 map at two
            // offsets. The contract depends on the box height H, which stays 60.
            let mut a = InkMap::zeros((60, 60));
            let mut b = InkMap::zeros((60, 60));
            for y in 0..12 {
                for x in 0..9 {
                    let v = if (y, x) == (6, 4) { 1.0 } else { vals[y * 9 + x] };
                    a[[y + 5, x + 7]] = v;
                    b[[y + dy, x + dx]] = v;
                }
            }
            prop_assert_eq!(normalize(&a).to_vec(), normalize(&b).to_vec());
        }
    }
}
