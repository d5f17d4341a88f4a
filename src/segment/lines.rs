//! Printed box-line remnants along the edges of a digit-box crop.
//!
//! The crop stops [`super::BOX_MARGIN_MM`] inside the snapped box edge, yet a blurred or slightly
//! mis-snapped printed line often leaves a thin dark strip along a crop edge. When such a strip
//! stands apart from any handwriting, the normalisation blows it up into a perfect `1` (in an
//! empty box) or stretches the ink bounding box over the whole crop (shrinking the digit beside
//! it). Measured on `rekap crops --gray` of training synth photos (seed 9001): every such strip
//! lay within the outer 4 samples of the crop.
//!
//! Only ink that is *separate* from everything else and lies *entirely* inside the edge band,
//! running along the edge, is removed. A stroke of handwriting that touches the strip is part
//! of the same connected mark and reaches beyond the band, so the whole mark is kept: this never
//! cuts a digit, it can only leave a remnant in place (as before this step existed).
//!
//! Invariants: the ink map keeps its shape; values only ever go down (to 0), and only inside
//! the outer [`EDGE_BAND_PX`] samples.

use super::normalize::{INK_THRESHOLD, InkMap};

/// Width (in crop samples, 3 per mm) of the edge band a remnant lies in: at most 4 samples in
/// every remnant measured (line 0.3-0.5 mm plus blur, after snapping to within ~0.2 mm).
pub const EDGE_BAND_PX: usize = 4;
/// A separate mark inside the band is a line remnant when it runs along the edge for at least
/// this share of the edge's length; shorter specks are left to the model, which is trained on
/// them.
pub const EDGE_LINE_MIN_SHARE: f64 = 0.3;

/// Remove separate line remnants from the ink map of one box crop; returns how many were
/// removed.
pub fn erase_edge_lines(ink: &mut InkMap) -> usize {
    let (h, w) = ink.dim();
    // Room for the band on both sides and something in between, else nothing to tell apart.
    if h < 3 * EDGE_BAND_PX || w < 3 * EDGE_BAND_PX {
        return 0;
    }
    if !may_hold_remnant(ink) {
        return 0;
    }
    erase_labelled(ink)
}

/// [`erase_edge_lines`] after its size check, without the [`may_hold_remnant`] shortcut:
/// trace the marks that reach into the edge band and erase those that are remnants.
///
/// A remnant lies entirely inside one edge strip, so only marks with a sample in the band can
/// be one: each is traced (8-connected) from its first band sample in row-major order, and the
/// rest of the crop, the handwriting in the middle, is never visited. Gives exactly what
/// labelling every mark of the crop gives (`tests::erase_labelled_reference`).
fn erase_labelled(ink: &mut InkMap) -> usize {
    let (h, w) = ink.dim();
    let band = EDGE_BAND_PX;
    // The map's samples in row-major order (a map made with `InkMap::zeros` is one slice).
    let owned: Vec<f64>;
    let data: &[f64] = match ink.as_slice() {
        Some(d) => d,
        None => {
            owned = ink.iter().copied().collect();
            &owned
        }
    };
    let inked = |i: usize| data[i] >= INK_THRESHOLD;
    let in_band = |x: usize, y: usize| x < band || x >= w - band || y < band || y >= h - band;
    // Mark id per sample (row-major), 0 = not traced; ids count from 1.
    let mut mark = vec![0u32; h * w];
    let mut stack: Vec<usize> = Vec::new();
    let mut samples: Vec<usize> = Vec::new();
    let mut remnants: Vec<(u32, Vec<usize>)> = Vec::new();
    let mut next = 0u32;
    for y in 0..h {
        for x in 0..w {
            let start = y * w + x;
            if !in_band(x, y) || !inked(start) || mark[start] != 0 {
                continue;
            }
            next += 1;
            mark[start] = next;
            stack.push(start);
            samples.clear();
            let (mut x0, mut y0, mut x1, mut y1) = (x, y, x, y);
            while let Some(i) = stack.pop() {
                samples.push(i);
                let (cx, cy) = (i % w, i / w);
                (x0, y0, x1, y1) = (x0.min(cx), y0.min(cy), x1.max(cx), y1.max(cy));
                for ny in cy.saturating_sub(1)..=(cy + 1).min(h - 1) {
                    for nx in cx.saturating_sub(1)..=(cx + 1).min(w - 1) {
                        let n = ny * w + nx;
                        if mark[n] == 0 && inked(n) {
                            mark[n] = next;
                            stack.push(n);
                        }
                    }
                }
            }
            let (len_x, len_y) = ((x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64);
            let vertical = (x1 < band || x0 >= w - band) && len_y >= EDGE_LINE_MIN_SHARE * h as f64;
            let horizontal =
                (y1 < band || y0 >= h - band) && len_x >= EDGE_LINE_MIN_SHARE * w as f64;
            if vertical || horizontal {
                remnants.push((next, samples.clone()));
            }
        }
    }
    // Zero the remnant's own samples and the faint fringe next to them (below the ink
    // threshold, so not part of any mark) inside the band: collected first, as the map is read
    // until then.
    let mut zero: Vec<usize> = Vec::new();
    for (id, own) in &remnants {
        for &i in own {
            let (x, y) = (i % w, i / w);
            for (dx, dy) in [(-1i64, 0i64), (1, 0), (0, -1), (0, 1), (0, 0)] {
                let (xx, yy) = (x as i64 + dx, y as i64 + dy);
                if xx < 0 || yy < 0 || xx >= w as i64 || yy >= h as i64 {
                    continue;
                }
                let (xx, yy) = (xx as usize, yy as usize);
                let n = yy * w + xx;
                if in_band(xx, yy) && (mark[n] == *id || !inked(n)) {
                    zero.push(n);
                }
            }
        }
    }
    for n in zero {
        ink[[n / w, n % w]] = 0.0;
    }
    remnants.len()
}

/// A necessary condition for a remnant, checked before labelling (most crops have clean
/// edges): a remnant along the left edge is one 8-connected mark inside the band spanning at
/// least `EDGE_LINE_MIN_SHARE` of the rows, so it puts ink into the band on every row of a run
/// that long (8-connected steps move at most one row); likewise for the other three edges.
/// When no edge band has such a run, [`erase_edge_lines`] would find no remnant.
fn may_hold_remnant(ink: &InkMap) -> bool {
    let (h, w) = ink.dim();
    let band = EDGE_BAND_PX;
    // Longest run of consecutive `true`s.
    let longest = |hits: &mut dyn Iterator<Item = bool>| {
        let (mut best, mut run) = (0usize, 0usize);
        for hit in hits {
            run = if hit { run + 1 } else { 0 };
            best = best.max(run);
        }
        best
    };
    let inked = |y: usize, x: usize| ink[[y, x]] >= INK_THRESHOLD;
    let reaches = |run: usize, side: usize| run as f64 >= EDGE_LINE_MIN_SHARE * side as f64;
    let left = longest(&mut (0..h).map(|y| (0..band).any(|x| inked(y, x))));
    let right = longest(&mut (0..h).map(|y| (w - band..w).any(|x| inked(y, x))));
    let top = longest(&mut (0..w).map(|x| (0..band).any(|y| inked(y, x))));
    let bottom = longest(&mut (0..w).map(|x| (h - band..h).any(|y| inked(y, x))));
    reaches(left.max(right), h) || reaches(top.max(bottom), w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma};
    use imageproc::region_labelling::{Connectivity, connected_components};

    fn fill(ink: &mut InkMap, x0: usize, y0: usize, x1: usize, y1: usize, v: f64) {
        for y in y0..y1 {
            for x in x0..x1 {
                ink[[y, x]] = v;
            }
        }
    }

    #[test]
    fn separate_edge_line_is_removed_digit_kept() {
        let mut ink = InkMap::zeros((40, 36));
        fill(&mut ink, 0, 2, 2, 38, 1.0); // left remnant
        fill(&mut ink, 2, 2, 3, 38, 0.3); // its faint fringe
        fill(&mut ink, 16, 8, 20, 32, 0.9); // a "1" in the middle
        let before = ink.clone();
        assert_eq!(erase_edge_lines(&mut ink), 1);
        assert!(ink.slice(ndarray::s![.., 0..3]).iter().all(|v| *v == 0.0));
        assert_eq!(
            ink.slice(ndarray::s![.., 4..]),
            before.slice(ndarray::s![.., 4..])
        );
    }

    #[test]
    fn dashed_and_horizontal_remnants() {
        let mut ink = InkMap::zeros((40, 40));
        fill(&mut ink, 0, 38, 40, 40, 1.0); // bottom line, full length
        fill(&mut ink, 37, 0, 39, 14, 1.0); // right remnant, 35 % of the edge
        fill(&mut ink, 37, 20, 39, 22, 1.0); // a dash: too short on its own
        assert_eq!(erase_edge_lines(&mut ink), 2);
        assert!(ink.slice(ndarray::s![38..40, ..]).iter().all(|v| *v == 0.0));
        assert!(
            ink.slice(ndarray::s![0..14, 37..39])
                .iter()
                .all(|v| *v == 0.0)
        );
        assert_eq!(ink[[21, 38]], 1.0);
    }

    #[test]
    fn stroke_touching_the_line_keeps_both() {
        // A "7" bar running into the left remnant: one mark reaching beyond the band.
        let mut ink = InkMap::zeros((40, 36));
        fill(&mut ink, 0, 0, 2, 40, 1.0);
        fill(&mut ink, 0, 6, 26, 9, 1.0);
        fill(&mut ink, 22, 6, 25, 34, 1.0);
        let before = ink.clone();
        assert_eq!(erase_edge_lines(&mut ink), 0);
        assert_eq!(ink, before);
    }

    #[test]
    fn inner_marks_and_short_specks_kept() {
        let mut ink = InkMap::zeros((40, 40));
        fill(&mut ink, 1, 10, 3, 18, 1.0); // 20 % of the edge: a speck or a cut-off stroke
        fill(&mut ink, 6, 5, 9, 35, 1.0); // a tall stroke just inside the band
        let before = ink.clone();
        assert_eq!(erase_edge_lines(&mut ink), 0);
        assert_eq!(ink, before);
    }

    #[test]
    fn empty_and_tiny_maps() {
        let mut e = InkMap::zeros((40, 40));
        assert_eq!(erase_edge_lines(&mut e), 0);
        let mut t = InkMap::from_elem((8, 8), 1.0);
        assert_eq!(erase_edge_lines(&mut t), 0);
        assert!(t.iter().all(|v| *v == 1.0));
    }

    /// The labelling implementation [`erase_labelled`] replaced (every mark of the crop
    /// labelled): the reference it must match.
    fn erase_labelled_reference(ink: &mut InkMap) -> usize {
        let (h, w) = ink.dim();
        let mask = GrayImage::from_fn(w as u32, h as u32, |x, y| {
            Luma([u8::from(ink[[y as usize, x as usize]] >= INK_THRESHOLD)])
        });
        let labels = connected_components(&mask, Connectivity::Eight, Luma([0u8]));
        // Bounding box (x0, y0, x1, y1) of each label, label 0 = background.
        let n = labels.pixels().map(|p| p.0[0]).max().unwrap_or(0) as usize;
        if n == 0 {
            return 0;
        }
        let mut bbox = vec![(usize::MAX, usize::MAX, 0usize, 0usize); n + 1];
        for (x, y, p) in labels.enumerate_pixels() {
            let l = p.0[0] as usize;
            if l == 0 {
                continue;
            }
            let b = &mut bbox[l];
            *b = (
                b.0.min(x as usize),
                b.1.min(y as usize),
                b.2.max(x as usize),
                b.3.max(y as usize),
            );
        }
        let band = EDGE_BAND_PX;
        let is_remnant = |(x0, y0, x1, y1): (usize, usize, usize, usize)| {
            if x0 == usize::MAX {
                return false;
            }
            let (len_x, len_y) = ((x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64);
            let vertical = (x1 < band || x0 >= w - band) && len_y >= EDGE_LINE_MIN_SHARE * h as f64;
            let horizontal =
                (y1 < band || y0 >= h - band) && len_x >= EDGE_LINE_MIN_SHARE * w as f64;
            vertical || horizontal
        };
        let remnant: Vec<bool> = bbox.iter().map(|b| is_remnant(*b)).collect();
        let removed = remnant.iter().filter(|r| **r).count();
        if removed == 0 {
            return 0;
        }
        // Zero the remnant's own samples and the faint fringe next to them (below the ink
        // threshold, so not part of any mark) inside the band.
        let in_band = |x: usize, y: usize| x < band || x >= w - band || y < band || y >= h - band;
        // Only `labels` is read below, so the map can be cleared in place.
        for (x, y, p) in labels.enumerate_pixels() {
            let (x, y) = (x as usize, y as usize);
            if remnant[p.0[0] as usize] {
                for (dx, dy) in [(-1i64, 0i64), (1, 0), (0, -1), (0, 1), (0, 0)] {
                    let (xx, yy) = (x as i64 + dx, y as i64 + dy);
                    if xx < 0 || yy < 0 || xx >= w as i64 || yy >= h as i64 {
                        continue;
                    }
                    let (xx, yy) = (xx as usize, yy as usize);
                    let own = labels.get_pixel(xx as u32, yy as u32).0[0] as usize;
                    if in_band(xx, yy) && (own == p.0[0] as usize || own == 0) {
                        ink[[yy, xx]] = 0.0;
                    }
                }
            }
        }
        removed
    }

    proptest::proptest! {
        /// The shortcut never skips a crop that holds a remnant: wherever labelling finds one,
        /// the necessary condition holds.
        #[test]
        fn shortcut_only_skips_crops_without_remnants(
            bits in proptest::collection::vec(proptest::bool::weighted(0.15), 30 * 34),
            line in 0usize..5, from in 0usize..30, len in 0usize..30,
        ) {
            let mut ink = InkMap::from_shape_fn((30, 34), |(y, x)| if bits[y * 34 + x] { 1.0 } else { 0.0 });
            // Often add a separate line along one edge, of random length and position.
            for k in from..(from + len).min(30) {
                match line {
                    0 => ink[[k, 0]] = 1.0,
                    1 => ink[[k, 33]] = 1.0,
                    2 => ink[[0, k]] = 1.0,
                    3 => ink[[29, k]] = 1.0,
                    _ => {}
                }
            }
            if !may_hold_remnant(&ink) {
                proptest::prop_assert_eq!(erase_labelled(&mut ink.clone()), 0);
            }
        }

        /// Tracing from the band finds and erases exactly what labelling the whole crop does:
        /// sparse specks (some in the band), lines along the edges at any depth into the band
        /// (some long enough to be remnants, some touching specks), and faint fringes.
        #[test]
        fn erase_labelled_matches_labelling_every_mark(
            bits in proptest::collection::vec(proptest::bool::weighted(0.04), 30 * 34),
            lines in proptest::collection::vec((0usize..4, 0usize..5, 0usize..30, 5usize..30), 1..4),
        ) {
            let mut ink = InkMap::from_shape_fn((30, 34), |(y, x)| {
                if bits[y * 34 + x] { 1.0 } else { 0.0 }
            });
            for (edge, depth, from, len) in lines {
                for k in from..(from + len).min(30) {
                    let (y, x, fy, fx) = match edge {
                        0 => (k, depth, k, depth + 1),
                        1 => (k, 33 - depth, k, 32 - depth),
                        2 => (depth, k, depth + 1, k),
                        _ => (29 - depth, k, 28 - depth, k),
                    };
                    ink[[y, x]] = 1.0;
                    if ink[[fy, fx]] == 0.0 {
                        ink[[fy, fx]] = 0.2;
                    }
                }
            }
            let (mut fast, mut slow) = (ink.clone(), ink.clone());
            proptest::prop_assert_eq!(erase_labelled(&mut fast), erase_labelled_reference(&mut slow));
            proptest::prop_assert_eq!(fast, slow);
        }

        #[test]
        fn only_lowers_and_only_in_band(
            seed in proptest::collection::vec(0.0f64..1.0, 30 * 34)
        ) {
            let mut ink = InkMap::from_shape_vec((30, 34), seed).unwrap();
            let before = ink.clone();
            erase_edge_lines(&mut ink);
            for ((y, x), v) in ink.indexed_iter() {
                let b = before[[y, x]];
                proptest::prop_assert!(*v == b || *v == 0.0);
                if *v != b {
                    proptest::prop_assert!(
                        !(EDGE_BAND_PX..34 - EDGE_BAND_PX).contains(&x)
                            || !(EDGE_BAND_PX..30 - EDGE_BAND_PX).contains(&y)
                    );
                }
            }
        }
    }
}
