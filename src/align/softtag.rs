//! Last-resort page identification for a blurred tag, through a pose from four marks.
//!
//! Under heavy blur (a shaken or out-of-focus 3 MP photo) the four registration marks are still
//! found, but the tag's single modules wash out: read through the true pose, blurred tags of
//! seed 177 came out 4-10 modules wrong, beyond [`super::MAX_TAG_HAMMING`], and such pages were
//! refused as "not a form". Their pattern is still there, only blurred, so instead of deciding
//! each module on its own, the whole tag (8x8 modules and the white ring around it) is compared
//! with every page's printed code blurred by the same amount: the linear correlation of the
//! sampled module means with the code convolved with a Gaussian of a few widths (the best width
//! counts). On those pages the printed code scored 0.99-0.998 and the other pages' codes at most
//! 0.85.
//!
//! Invariant: a page is taken only when its code explains the samples far better than every
//! other page's code and than a featureless dark square (which, blurred, resembles any blurred
//! tag): a lone blob or clutter where the tag should be matches all codes about equally and is
//! refused. Only poses from four marks are tried, so the tag is looked for in one place.

use super::{Homography, TagMatch};
use crate::template::{Page, RectMm};
use image::GrayImage;

/// Side of the sampled grid in modules: the tag's 8 plus the white ring on each side.
const GRID: usize = 10;
/// Gaussian widths (in modules) the printed codes are blurred by before comparison.
const BLUR_WIDTHS: [f64; 6] = [0.0, 0.3, 0.5, 0.7, 0.9, 1.1];
/// Least correlation of the chosen code with the samples (blurred tags of seed 177 scored
/// 0.99 and more, clean ones 0.996-1.0).
pub const MIN_CORRELATION: f64 = 0.97;
/// Least ratio of unexplained variance, `1 - r^2`, of every other candidate (another page's
/// code, a plain dark square) over that of the chosen code: at r = 0.99 against 0.85 (the
/// largest rival seen) the ratio is about 14.
pub const MIN_MARGIN: f64 = 5.0;
/// Least contrast (grey levels) between the white ring and the tag's border: below it nothing
/// printed is there to compare.
const MIN_CONTRAST: f64 = 12.0;

/// Darkness of the module grid through `h` (row-major, [`GRID`] x [`GRID`], grey levels
/// negated so ink is high): grid row and column 0 are the white ring outside the tag; `None`
/// where a sample falls outside the photo.
fn sample_grid(gray: &GrayImage, h: &Homography, rect: &RectMm) -> Option<Vec<f64>> {
    let sampler = super::sample::Sampler::new(gray);
    let mut out = Vec::with_capacity(GRID * GRID);
    for r in 0..GRID {
        for c in 0..GRID {
            let v = super::tag_module_mean(&sampler, h, rect, r as f64 - 1.0, c as f64 - 1.0)?;
            out.push(-v);
        }
    }
    Some(out)
}

/// The printed pattern on the same grid: 1 for black (border and set data modules), 0 for
/// white (clear data modules and the ring outside).
fn code_pattern(bits: &str) -> Option<Vec<f64>> {
    let b = bits.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = vec![0.0; GRID * GRID];
    for r in 1..GRID - 1 {
        for c in 1..GRID - 1 {
            let (tr, tc) = (r - 1, c - 1);
            let border = tr == 0 || tc == 0 || tr == 7 || tc == 7;
            out[r * GRID + c] = if border || b[(tr - 1) * 6 + (tc - 1)] == b'1' {
                1.0
            } else {
                0.0
            };
        }
    }
    Some(out)
}

/// A plain dark square the size of the tag: the rival a lone blob would match.
fn solid_pattern() -> Vec<f64> {
    let mut out = vec![0.0; GRID * GRID];
    for r in 1..GRID - 1 {
        for c in 1..GRID - 1 {
            out[r * GRID + c] = 1.0;
        }
    }
    out
}

/// Separable Gaussian blur of a grid (edges clamped), width `sigma` in modules.
fn blurred(p: &[f64], sigma: f64) -> Vec<f64> {
    if sigma <= 0.0 {
        return p.to_vec();
    }
    let reach = (3.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-reach..=reach)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let ks: f64 = k.iter().sum();
    let n = GRID as i64;
    let pass = |src: &[f64], along_row: bool| -> Vec<f64> {
        let mut out = vec![0.0; GRID * GRID];
        for r in 0..n {
            for c in 0..n {
                let mut a = 0.0;
                for (j, w) in k.iter().enumerate() {
                    let d = j as i64 - reach;
                    let (rr, cc) = if along_row {
                        (r, (c + d).clamp(0, n - 1))
                    } else {
                        ((r + d).clamp(0, n - 1), c)
                    };
                    a += w * src[(rr * n + cc) as usize];
                }
                out[(r * n + c) as usize] = a / ks;
            }
        }
        out
    };
    pass(&pass(p, true), false)
}

/// Pearson correlation; 0 when either side is constant.
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return 0.0;
    }
    sab / (saa * sbb).sqrt()
}

/// Best correlation of `samples` with `pattern` over the blur widths.
fn best_fit(samples: &[f64], pattern: &[f64]) -> f64 {
    BLUR_WIDTHS
        .iter()
        .map(|s| correlation(samples, &blurred(pattern, *s)))
        .fold(f64::NEG_INFINITY, f64::max)
}

/// The page whose printed code the tag through `h` shows, blurred or not, with the number of
/// modules a plain read gets wrong against it (36 when no plain read is possible); `None` unless
/// one code wins by [`MIN_MARGIN`] over every rival. `all_codes` are the codes of every page of
/// the template (rivals even when `pages` holds only some of them).
pub(super) fn match_page<'p>(
    gray: &GrayImage,
    h: &Homography,
    rect: &RectMm,
    pages: &[&'p Page],
    all_codes: &[&str],
) -> Option<(&'p Page, u32)> {
    let samples = sample_grid(gray, h, rect)?;
    // Contrast: the ring (white) against the border (black), medians, in darkness units.
    let mut ring: Vec<f64> = (0..GRID * GRID)
        .filter(|i| {
            let (r, c) = (i / GRID, i % GRID);
            r == 0 || c == 0 || r == GRID - 1 || c == GRID - 1
        })
        .map(|i| samples[i])
        .collect();
    let mut border: Vec<f64> = (0..GRID * GRID)
        .filter(|i| {
            let (r, c) = (i / GRID, i % GRID);
            (1..GRID - 1).contains(&r)
                && (1..GRID - 1).contains(&c)
                && (r == 1 || c == 1 || r == GRID - 2 || c == GRID - 2)
        })
        .map(|i| samples[i])
        .collect();
    if crate::upper_median(&mut border) - crate::upper_median(&mut ring) < MIN_CONTRAST {
        return None;
    }
    let mut scored: Vec<(Option<&'p Page>, f64)> = Vec::new();
    for page in pages {
        scored.push((
            Some(*page),
            best_fit(&samples, &code_pattern(&page.tag.bits)?),
        ));
    }
    for code in all_codes {
        if !pages.iter().any(|p| p.tag.bits == *code) {
            scored.push((None, best_fit(&samples, &code_pattern(code)?)));
        }
    }
    scored.push((None, best_fit(&samples, &solid_pattern())));
    let (best_i, best) = scored
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.1.total_cmp(&b.1.1))
        .map(|(i, s)| (i, s.1))?;
    let page = scored[best_i].0?;
    if best < MIN_CORRELATION {
        return None;
    }
    let unexplained = |r: f64| 1.0 - r.max(0.0).powi(2);
    let rivals_ok = scored
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != best_i)
        .all(|(_, (_, r))| unexplained(*r) >= MIN_MARGIN * unexplained(best));
    if !rivals_ok {
        return None;
    }
    let hamming = super::read_tag(gray, h, rect)
        .map_or(36, |read| super::hamming(&read.bits, &page.tag.bits));
    Some((page, hamming))
}

/// Try the four-mark poses (largest quadrilaterals first, at most `max_quads`) in every cyclic
/// assignment; the first pose through which one page's code clearly wins decides.
pub(super) fn search<'p>(
    gray: &GrayImage,
    quads: &[[[f64; 2]; 4]],
    tmpl: &[[f64; 2]; 4],
    rect: &RectMm,
    pages: &[&'p Page],
    all_codes: &[&str],
) -> Option<TagMatch<'p>> {
    for q in quads {
        for h in super::quad_poses(q, tmpl) {
            if let Some((page, hamming)) = match_page(gray, &h, rect, pages, all_codes) {
                return Some((h, page, hamming));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::template::{DEFAULT_TEMPLATE_PATH, Template};
    use image::Luma;

    /// The template's tag area drawn at 2 px per mm on white paper (tag at 40..104 px), dark
    /// where `dark(module row, module column)` says (modules 0..8), blurred by `sigma` px.
    fn tag_photo(
        rect: &RectMm,
        sigma: f32,
        dark: impl Fn(usize, usize) -> bool,
    ) -> (GrayImage, Homography) {
        let h = Homography::from_array([
            2.0,
            0.0,
            40.0 - 2.0 * rect[0],
            0.0,
            2.0,
            40.0 - 2.0 * rect[1],
            0.0,
            0.0,
            1.0,
        ])
        .expect("scale");
        let img = GrayImage::from_fn(144, 144, |x, y| {
            let (mx, my) = (x as i64 - 40, y as i64 - 40);
            let inside = (0..64).contains(&mx) && (0..64).contains(&my);
            let ink = inside && dark((my / 8) as usize, (mx / 8) as usize);
            Luma([if ink { 35 } else { 215 }])
        });
        let img = if sigma > 0.0 {
            imageproc::filter::gaussian_blur_f32(&img, sigma)
        } else {
            img
        };
        (img, h)
    }

    #[test]
    fn each_code_blurred_picks_its_page_and_a_dark_square_none() {
        let t = Template::load(std::path::Path::new(DEFAULT_TEMPLATE_PATH)).expect("template");
        let pages: Vec<&Page> = t.pages.iter().collect();
        let codes: Vec<&str> = t.pages.iter().map(|p| p.tag.bits.as_str()).collect();
        let rect = t.pages[0].tag.rect;
        for page in &t.pages {
            let bits = page.tag.bits.as_bytes();
            for sigma in [0.0f32, 4.0, 6.0] {
                let (img, h) = tag_photo(&rect, sigma, |r, c| {
                    r == 0 || c == 0 || r == 7 || c == 7 || bits[(r - 1) * 6 + (c - 1)] == b'1'
                });
                let (got, _) = match_page(&img, &h, &rect, &pages, &codes)
                    .unwrap_or_else(|| panic!("page {} at blur {sigma}", page.number));
                assert_eq!(got.number, page.number, "blur {sigma}");
            }
        }
        // A dark square, blurred by half a module to two: refused, and the plain-square rival
        // explains it better than any code (the codes reach 0.78-0.92 here, under the bar).
        for sigma in [4.0f32, 8.0, 16.0] {
            let (img, h) = tag_photo(&rect, sigma, |_, _| true);
            assert!(
                match_page(&img, &h, &rect, &pages, &codes).is_none(),
                "blur {sigma}"
            );
            let samples = sample_grid(&img, &h, &rect).expect("inside");
            let best_code = codes
                .iter()
                .map(|c| best_fit(&samples, &code_pattern(c).expect("code")))
                .fold(f64::NEG_INFINITY, f64::max);
            assert!(best_fit(&samples, &solid_pattern()) > best_code);
        }
        // Plain paper: nothing to compare.
        let (img, h) = tag_photo(&rect, 0.0, |_, _| false);
        assert!(match_page(&img, &h, &rect, &pages, &codes).is_none());
    }

    #[test]
    fn blur_keeps_the_mean_and_spreads_a_module() {
        let mut p = vec![0.0; GRID * GRID];
        p[5 * GRID + 5] = 1.0;
        let b = blurred(&p, 0.7);
        assert!((b[5 * GRID + 5] - 1.0).abs() > 0.5, "the peak must spread");
        assert!(b[5 * GRID + 6] > 0.05 && b[4 * GRID + 5] > 0.05);
        let sum: f64 = b.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        assert_eq!(blurred(&p, 0.0), p);
    }

    #[test]
    fn a_code_is_its_own_best_match_and_the_solid_square_a_rival() {
        let a = "101100111000101011001110010101001011";
        let b = "010011000111010100110001101010110100";
        let (pa, pb) = (code_pattern(a).unwrap(), code_pattern(b).unwrap());
        for s in BLUR_WIDTHS {
            let seen = blurred(&pa, s);
            assert!(best_fit(&seen, &pa) > 0.999);
            assert!(best_fit(&seen, &pb) < best_fit(&seen, &pa));
        }
        // A featureless blob correlates with a blurred code nearly as well as that code.
        let blob = blurred(&solid_pattern(), 1.1);
        assert!(best_fit(&blob, &solid_pattern()) > 0.999);
        assert!(best_fit(&blob, &pa) > 0.8);
        assert!(code_pattern("0101").is_none());
    }
}
