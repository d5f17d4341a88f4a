//! Handwriting on the page canvas: digits from real handwriting (IDX images) scaled, slanted and
//! thickened into their boxes, `X` marks, tally strokes and bubble fills, with pen-pressure
//! variation and the occasional stroke crossing a box line.

use super::draw::Canvas;
use super::idx::IDX_SIDE;
use crate::template::RectMm;
use rand::{Rng, RngExt};

/// Blue ballpoint and black pen ink colours (as they photograph, not pure).
const BLUE_INK: [u8; 3] = [32, 52, 150];
const BLACK_INK: [u8; 3] = [30, 30, 40];
/// Graphite, for the occasional pencil-filled bubble.
const PENCIL: [u8; 3] = [95, 95, 100];
/// MNIST values at or above this count as ink when finding the digit's extent.
const MNIST_INK: f32 = 0.3;
/// Digit height as a fraction of the box height (brief: 60-95 %).
const DIGIT_HEIGHT: (f64, f64) = (0.6, 0.95);
/// Half-width of the soft edge between paper and ink on the MNIST grey scale.
const STROKE_SOFTNESS: f32 = 0.16;
/// A digit's ink threshold varies around its hand's by up to this much.
const THRESHOLD_JITTER: f32 = 0.05;
/// Least ink a written digit leaves, in MNIST pixels at full ink (at its hand's palest
/// threshold). A fine pen thins strokes, it does not erase them: thinning a digit of one-pixel
/// strokes and then thresholding it high could leave nothing, a digit in the truth with no ink
/// on the paper (about 2 % of MNIST digits at a threshold of 0.7, 5 % of the 1s). Such a digit
/// is written unthinned (its lightest MNIST digits keep about 26 pixels of ink).
const MIN_DIGIT_INK_PX: f32 = 6.0;
/// Least share of its unthinned ink a thinned digit keeps (at its hand's palest threshold).
/// Soft erosion followed by a high threshold does not only thin a stroke, it breaks it: at a
/// threshold of 0.6, 5.8 % of the MNIST t10k digits keep under 30 % of their ink, fragments
/// that, blurred at 3 MP, photograph as an empty box (session 12: on seed 131 the third box of
/// 175 and of 125, both named 5 by the truth, showed no stroke at all). A real fine pen draws
/// the whole digit with a thinner line; a digit that thinning would break that far is written
/// unthinned instead.
const MIN_THINNED_INK_SHARE: f32 = 0.5;

/// The writing habits of one officer on one form.
#[derive(Debug, Clone, Copy)]
pub struct Hand {
    pub ink: [u8; 3],
    /// Pen line width in mm for X marks and tally strokes.
    pub pen_mm: f64,
    /// Threshold on the MNIST grey level: lower = bolder digits.
    pub threshold: f32,
    /// 0 = keep, 1 = dilate (felt-tip), -1 = thin (fine ballpoint).
    pub weight: i8,
    /// Mean digit height as a fraction of the box height.
    pub size: f64,
    /// Mean slant (horizontal shear per unit height; positive leans right).
    pub slant: f64,
    /// Maximum opacity of the ink (ballpoints are not fully opaque).
    pub opacity: f32,
    /// Relative depth of pressure variation along strokes.
    pub pressure: f32,
}

impl Hand {
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Hand {
        let weight = match rng.random_range(0..10) {
            0..=2 => 1,
            3..=4 => -1,
            _ => 0,
        };
        Hand {
            ink: if rng.random_bool(0.65) {
                BLUE_INK
            } else {
                BLACK_INK
            },
            pen_mm: rng.random_range(0.45..1.0),
            threshold: rng.random_range(0.35..0.65),
            weight,
            size: rng.random_range(DIGIT_HEIGHT.0 + 0.05..DIGIT_HEIGHT.1 - 0.05),
            slant: rng.random_range(-0.1..0.3),
            opacity: rng.random_range(0.8..1.0),
            pressure: rng.random_range(0.05..0.35),
        }
    }
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// 3x3 grey morphology on a 28x28 image: `grow` = max filter, else a soft min filter.
fn morph(img: &[f32], grow: bool) -> Vec<f32> {
    let n = IDX_SIDE as i32;
    let mut out = vec![0.0; img.len()];
    for y in 0..n {
        for x in 0..n {
            let mut m: f32 = if grow { 0.0 } else { 1.0 };
            for (dx, dy) in [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)] {
                let (xx, yy) = (x + dx, y + dy);
                let v = if (0..n).contains(&xx) && (0..n).contains(&yy) {
                    img[(yy * n + xx) as usize]
                } else {
                    0.0
                };
                m = if grow { m.max(v) } else { m.min(v) };
            }
            let i = (y * n + x) as usize;
            // Soft erosion: half way to the min keeps thin strokes from vanishing.
            out[i] = if grow { m } else { 0.5 * (m + img[i]) };
        }
    }
    out
}

/// Ink a 28x28 MNIST image leaves at threshold `thr`, in pixels at full ink.
fn ink_mass(img: &[f32], thr: f32) -> f32 {
    img.iter()
        .map(|&g| smoothstep(thr - STROKE_SOFTNESS, thr + STROKE_SOFTNESS, g))
        .sum()
}

fn bilinear(img: &[f32], u: f64, v: f64) -> f32 {
    let n = IDX_SIDE as i64;
    let (x, y) = (u - 0.5, v - 0.5);
    let (x0, y0) = (x.floor() as i64, y.floor() as i64);
    let (fx, fy) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32);
    let at = |xx: i64, yy: i64| -> f32 {
        if (0..n).contains(&xx) && (0..n).contains(&yy) {
            img[(yy * n + xx) as usize]
        } else {
            0.0
        }
    };
    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
    let bot = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
    top * (1.0 - fy) + bot * fy
}

/// Write a handwritten digit image (28x28, 255 = ink) into box `r`.
pub fn write_digit<R: Rng + ?Sized>(
    c: &mut Canvas,
    r: RectMm,
    digit: &[u8; IDX_SIDE * IDX_SIDE],
    hand: &Hand,
    rng: &mut R,
) {
    let mut img: Vec<f32> = digit.iter().map(|&v| v as f32 / 255.0).collect();
    match hand.weight {
        1 => img = morph(&img, true),
        -1 => {
            let thin = morph(&img, false);
            let palest = (hand.threshold + THRESHOLD_JITTER).clamp(0.15, 0.85);
            let kept = ink_mass(&thin, palest);
            if kept >= MIN_DIGIT_INK_PX && kept >= MIN_THINNED_INK_SHARE * ink_mass(&img, palest) {
                img = thin;
            }
        }
        _ => {}
    }
    // Ink extent of the digit in MNIST pixels.
    let n = IDX_SIDE;
    let (mut x0, mut y0, mut x1, mut y1) = (n, n, 0, 0);
    for y in 0..n {
        for x in 0..n {
            if img[y * n + x] >= MNIST_INK {
                x0 = x0.min(x);
                x1 = x1.max(x + 1);
                y0 = y0.min(y);
                y1 = y1.max(y + 1);
            }
        }
    }
    if x1 <= x0 || y1 <= y0 {
        return;
    }
    let (uc, vc) = ((x0 + x1) as f64 / 2.0, (y0 + y1) as f64 / 2.0);
    let (dw, dh) = ((x1 - x0) as f64, (y1 - y0) as f64);
    let height =
        (hand.size + rng.random_range(-0.06..0.06)).clamp(DIGIT_HEIGHT.0, DIGIT_HEIGHT.1) * r[3];
    let mut k = height / dh; // mm per MNIST pixel
    // Wide digits in a narrow box get smaller (a little crossing of the line is allowed).
    let max_w = r[2] * 1.02;
    if dw * k > max_w {
        k = max_w / dw;
    }
    let (tw, th) = (dw * k, dh * k);
    let slant = hand.slant + rng.random_range(-0.08..0.08);
    let theta: f64 = rng.random_range(-0.08..0.08);
    // Centre offset: mostly inside, sometimes touching or crossing the line a little.
    let free_x = ((r[2] - tw) / 2.0).max(0.0) + r[2] * 0.04;
    let free_y = ((r[3] - th) / 2.0).max(0.0) + r[3] * 0.04;
    let cx = r[0] + r[2] / 2.0 + rng.random_range(-1.0..1.0) * free_x * 0.8;
    let cy = r[1] + r[3] / 2.0 + rng.random_range(-1.0..1.0) * free_y * 0.8;
    let (st, ct) = theta.sin_cos();
    let thr =
        (hand.threshold + rng.random_range(-THRESHOLD_JITTER..THRESHOLD_JITTER)).clamp(0.15, 0.85);
    let soft = STROKE_SOFTNESS;
    let (f1, f2, ph) = (
        rng.random_range(0.1..0.35),
        rng.random_range(0.1..0.35),
        rng.random_range(0.0..std::f64::consts::TAU),
    );
    let opacity = hand.opacity;
    let pressure = hand.pressure;
    let ext = (tw.max(th) * 0.75) + th * slant.abs();
    let bbox = [cx - ext, cy - ext, cx + ext, cy + ext];
    c.paint(bbox, hand.ink, 1.0, |x, y| {
        let (dx, dy) = (x - cx, y - cy);
        // Undo rotation, then shear.
        let a1 = ct * dx + st * dy;
        let b = -st * dx + ct * dy;
        let a = a1 + slant * b;
        let u = a / k + uc;
        let v = b / k + vc;
        if !(0.0..n as f64).contains(&u) || !(0.0..n as f64).contains(&v) {
            return 0.0;
        }
        let g = bilinear(&img, u, v);
        let ink = smoothstep(thr - soft, thr + soft, g);
        let p = 1.0 - pressure * (0.5 + 0.5 * ((u * f1 + v * f2) + ph).sin() as f32);
        (ink * p * opacity) as f64
    });
}

/// A slightly bowed pen stroke from `a` to `b` with tapering ends.
fn pen_line<R: Rng + ?Sized>(c: &mut Canvas, a: [f64; 2], b: [f64; 2], hand: &Hand, rng: &mut R) {
    let len = (b[0] - a[0]).hypot(b[1] - a[1]);
    let bow = rng.random_range(-0.06..0.06) * len;
    let (nx, ny) = if len > 0.0 {
        (-(b[1] - a[1]) / len, (b[0] - a[0]) / len)
    } else {
        (0.0, 0.0)
    };
    const SEGMENTS: usize = 6;
    let mut pts = Vec::with_capacity(SEGMENTS + 1);
    let mut widths = Vec::with_capacity(SEGMENTS + 1);
    let w = hand.pen_mm * rng.random_range(0.85..1.15);
    for i in 0..=SEGMENTS {
        let t = i as f64 / SEGMENTS as f64;
        let s = 4.0 * t * (1.0 - t);
        pts.push([
            a[0] + (b[0] - a[0]) * t + nx * bow * s,
            a[1] + (b[1] - a[1]) * t + ny * bow * s,
        ]);
        // Thinner where the pen lands and lifts.
        widths.push(w * (0.7 + 0.3 * s.sqrt()));
    }
    let pressure = hand.pressure;
    let opacity = hand.opacity;
    let ph: f64 = rng.random_range(0.0..std::f64::consts::TAU);
    c.stroke(&pts, &widths, hand.ink, |t| {
        opacity * (1.0 - pressure * 0.5 * (1.0 + (t * 5.0 + ph).sin()) as f32)
    });
}

/// An `X` (two crossing strokes) in an unused leading box.
pub fn write_x<R: Rng + ?Sized>(c: &mut Canvas, r: RectMm, hand: &Hand, rng: &mut R) {
    let mut inset = || rng.random_range(0.05..0.25);
    let (l, rr, t, b) = (
        r[0] + r[2] * inset(),
        r[0] + r[2] * (1.0 - inset()),
        r[1] + r[3] * inset(),
        r[1] + r[3] * (1.0 - inset()),
    );
    pen_line(c, [l, t], [rr, b], hand, rng);
    let (l2, r2) = (l + rng.random_range(-0.05..0.05) * r[2], rr);
    pen_line(
        c,
        [r2, t + rng.random_range(-0.05..0.05) * r[3]],
        [l2, b],
        hand,
        rng,
    );
}

/// Tally strokes: `count` strokes in groups of 5 per cell (4 vertical + 1 diagonal), cells filled
/// row by row, left to right.
pub fn write_tally<R: Rng + ?Sized>(
    c: &mut Canvas,
    col_edges: &[f64],
    row_edges: &[f64],
    count: u32,
    hand: &Hand,
    rng: &mut R,
) {
    let cols = col_edges.len().saturating_sub(1);
    let rows = row_edges.len().saturating_sub(1);
    let mut left = count;
    let thin = Hand {
        pen_mm: hand.pen_mm * 0.8,
        ..*hand
    };
    'outer: for row in 0..rows {
        for col in 0..cols {
            if left == 0 {
                break 'outer;
            }
            let n = left.min(super::fill::STROKES_PER_CELL);
            left -= n;
            let (x0, x1) = (col_edges[col], col_edges[col + 1]);
            let (y0, y1) = (row_edges[row], row_edges[row + 1]);
            let (w, h) = (x1 - x0, y1 - y0);
            let lean = rng.random_range(-0.08..0.12) * h;
            let mut xs = Vec::new();
            for i in 0..n.min(4) {
                let x = x0 + w * (0.2 + 0.2 * i as f64) + rng.random_range(-0.04..0.04) * w;
                xs.push(x);
                let top = y0 + h * rng.random_range(0.1..0.25);
                let bot = y1 - h * rng.random_range(0.1..0.25);
                pen_line(c, [x + lean / 2.0, top], [x - lean / 2.0, bot], &thin, rng);
            }
            if n == 5 {
                let a = [
                    x0 + w * rng.random_range(0.02..0.15),
                    y1 - h * rng.random_range(0.15..0.35),
                ];
                let b = [
                    x1 - w * rng.random_range(0.02..0.15),
                    y0 + h * rng.random_range(0.15..0.35),
                ];
                pen_line(c, a, b, &thin, rng);
            }
        }
    }
}

/// How a bubble was marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BubbleFill {
    Solid,
    Partial,
    Scribble,
    Pencil,
}

impl BubbleFill {
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> BubbleFill {
        match rng.random_range(0..20) {
            0..=12 => BubbleFill::Solid,
            13..=15 => BubbleFill::Partial,
            16..=18 => BubbleFill::Scribble,
            _ => BubbleFill::Pencil,
        }
    }
}

/// Mark the bubble centred on `c0` with outline radius `rad`.
pub fn fill_bubble<R: Rng + ?Sized>(
    c: &mut Canvas,
    c0: [f64; 2],
    rad: f64,
    style: BubbleFill,
    hand: &Hand,
    rng: &mut R,
) {
    let off = [
        rng.random_range(-0.2..0.2) * rad,
        rng.random_range(-0.2..0.2) * rad,
    ];
    let centre = [c0[0] + off[0], c0[1] + off[1]];
    let r = rad * rng.random_range(0.75..1.15);
    let ppm = c.ppm;
    match style {
        BubbleFill::Solid => c.disk(centre, r, hand.ink, hand.opacity),
        BubbleFill::Pencil => c.disk(centre, r, PENCIL, rng.random_range(0.35..0.6)),
        BubbleFill::Partial => {
            let ang: f64 = rng.random_range(0.0..std::f64::consts::TAU);
            let (nx, ny) = (ang.cos(), ang.sin());
            let cut = rng.random_range(-0.2..0.5) * r;
            let e = r + 1.0;
            c.paint(
                [centre[0] - e, centre[1] - e, centre[0] + e, centre[1] + e],
                hand.ink,
                hand.opacity,
                |x, y| {
                    let (dx, dy) = (x - centre[0], y - centre[1]);
                    let d = dx.hypot(dy) - r;
                    let d2 = dx * nx + dy * ny - cut;
                    (0.5 - d.max(d2) * ppm).clamp(0.0, 1.0)
                },
            );
        }
        BubbleFill::Scribble => {
            let n = rng.random_range(4..8);
            let mut pts = Vec::new();
            for i in 0..=n {
                let t = i as f64 / n as f64;
                let y = centre[1] - r * 0.8 + 1.6 * r * t;
                let half = (r * r - (y - centre[1]).powi(2)).max(0.0).sqrt();
                let x = if i % 2 == 0 {
                    centre[0] - half
                } else {
                    centre[0] + half
                };
                pts.push([x, y]);
            }
            let widths = vec![hand.pen_mm.max(0.6) * 1.3; pts.len()];
            let op = hand.opacity;
            c.stroke(&pts, &widths, hand.ink, |_| op);
        }
    }
}

/// A small stray pen mark (a tick or dot) near `at`.
pub fn stray_mark<R: Rng + ?Sized>(c: &mut Canvas, at: [f64; 2], hand: &Hand, rng: &mut R) {
    let len = rng.random_range(0.8..3.0);
    let ang: f64 = rng.random_range(0.0..std::f64::consts::TAU);
    let b = [at[0] + len * ang.cos(), at[1] + len * ang.sin()];
    pen_line(c, at, b, hand, rng);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A `1` of one-pixel strokes, as the thinnest MNIST digits are.
    fn thin_one() -> [u8; IDX_SIDE * IDX_SIDE] {
        let mut d = [0u8; IDX_SIDE * IDX_SIDE];
        for y in 4..24 {
            d[y * IDX_SIDE + 14] = 255;
        }
        d
    }

    /// Sum of darkening over the canvas (0 = untouched paper).
    fn ink_on(c: &Canvas) -> f64 {
        c.img.pixels().map(|p| 255.0 - f64::from(p.0[1])).sum()
    }

    /// A vertical bar `width` MNIST pixels wide and 20 tall.
    fn bar(width: usize) -> [u8; IDX_SIDE * IDX_SIDE] {
        let mut d = [0u8; IDX_SIDE * IDX_SIDE];
        for y in 4..24 {
            for x in 12..12 + width {
                d[y * IDX_SIDE + x] = 255;
            }
        }
        d
    }

    #[test]
    fn a_fine_pen_thins_strokes_without_breaking_them() {
        let normal = Hand {
            weight: 0,
            threshold: 0.6,
            ..Hand::random(&mut rand_chacha::ChaCha8Rng::seed_from_u64(5))
        };
        let fine = Hand {
            weight: -1,
            ..normal
        };
        let write = |hand: &Hand, digit: &[u8; IDX_SIDE * IDX_SIDE]| {
            let mut c = Canvas::new(20.0, 20.0, 8.0, [255, 255, 255]);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
            write_digit(&mut c, [2.0, 2.0, 16.0, 16.0], digit, hand, &mut rng);
            ink_on(&c)
        };
        // Thinning a 3-pixel bar keeps only its middle column (a third of its ink, more than
        // MIN_DIGIT_INK_PX): that would break a real digit's strokes, so it is written as is.
        let thin3 = morph(&bar(3).map(|v| v as f32 / 255.0), false);
        let full3 = bar(3).map(|v| v as f32 / 255.0);
        assert!(ink_mass(&thin3, 0.65) >= MIN_DIGIT_INK_PX);
        assert!(ink_mass(&thin3, 0.65) < MIN_THINNED_INK_SHARE * ink_mass(&full3, 0.65));
        assert_eq!(write(&fine, &bar(3)), write(&normal, &bar(3)));
        // A 6-pixel bar keeps most of its ink when thinned, and the fine pen does thin it.
        assert!(write(&fine, &bar(6)) < 0.9 * write(&normal, &bar(6)));
    }

    #[test]
    fn a_fine_pen_never_erases_a_digit() {
        let hand = Hand {
            weight: -1,
            threshold: 0.65,
            ..Hand::random(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3))
        };
        // Thinned and thresholded high, the one-pixel 1 would keep almost nothing.
        let thinned = morph(&thin_one().map(|v| v as f32 / 255.0), false);
        assert!(ink_mass(&thinned, 0.7) < MIN_DIGIT_INK_PX);
        let mut c = Canvas::new(20.0, 20.0, 8.0, [255, 255, 255]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        write_digit(&mut c, [2.0, 2.0, 16.0, 16.0], &thin_one(), &hand, &mut rng);
        // Written unthinned: a visible stroke (tens of pixels of full ink at 8 px/mm).
        assert!(ink_on(&c) > 20.0 * 255.0, "{}", ink_on(&c));
        // The same hand still thins a digit that survives thinning.
        let thin_bold = morph(&bar(5).map(|v| v as f32 / 255.0), false);
        assert!(ink_mass(&thin_bold, 0.7) >= MIN_DIGIT_INK_PX);
    }
}
