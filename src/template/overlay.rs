//! Draw a template page over an image: marks, tag (modules included), digit boxes, bubbles,
//! tally grids and field ids. Geometry is mapped from mm to pixels by a caller-supplied function
//! (a plain scale for an upright full-page render, or a homography), so lines stay correct under
//! perspective: every rectangle is drawn as four mapped segments, every circle as a polygon.

use super::{FieldKind, PointMm, RectMm, Template, rect_corners};
use crate::font::{self, GLYPH_H, GLYPH_W};
use image::{Rgb, RgbImage};
use imageproc::drawing::draw_line_segment_mut;

/// Colours: marks/tag green, digit boxes red, row totals orange, date magenta, bubbles blue,
/// tally grid cyan, text dark blue.
const MARK: Rgb<u8> = Rgb([0, 170, 0]);
const BOX: Rgb<u8> = Rgb([230, 0, 0]);
const ROW_TOTALS: Rgb<u8> = Rgb([255, 120, 0]);
const DATE: Rgb<u8> = Rgb([200, 0, 200]);
const BUBBLE: Rgb<u8> = Rgb([0, 60, 255]);
const GRID: Rgb<u8> = Rgb([0, 170, 200]);
const TEXT: Rgb<u8> = Rgb([0, 0, 150]);
/// Segments used to draw a circle (smooth enough at any practical scale).
const CIRCLE_SEGMENTS: usize = 36;
/// Height of a field-id label in mm on the page (readable at 100-300 dpi).
const LABEL_HEIGHT_MM: f64 = 3.0;
/// Gap between a label and the printed line it sits above, in mm.
const LABEL_GAP_MM: f64 = 0.4;

/// Draw page `page` of `t` over `img`, mapping template mm to pixels with `map`.
pub fn draw_overlay(
    img: &mut RgbImage,
    t: &Template,
    page: u32,
    map: &dyn Fn(PointMm) -> (f32, f32),
) {
    let Some(p) = t.page(page) else {
        tracing::warn!("overlay: template has no page {page}");
        return;
    };
    let mut d = Drawer { img, map };
    for m in &p.marks {
        for s in &m.squares {
            d.rect(s, MARK);
        }
        d.cross(m.center, 2.0, MARK);
    }
    d.rect(&p.tag.rect, MARK);
    // the tag's black modules, crossed, so a wrong bit pattern stands out against the print
    let grid = p.tag.module_grid();
    for (r, row) in grid.iter().enumerate() {
        for (c, black) in row.iter().enumerate() {
            let m = p.tag.module_rect(r, c);
            if *black {
                d.line([m[0], m[1]], [m[0] + m[2], m[1] + m[3]], MARK);
            } else {
                d.rect(&m, MARK);
            }
        }
    }
    let px_per_mm = d.px_per_mm([p.width_mm / 2.0, p.height_mm / 2.0]);
    for f in t.fields_on_page(page) {
        match f.kind {
            FieldKind::Digits | FieldKind::RowTotals | FieldKind::Date => {
                let colour = match f.kind {
                    FieldKind::RowTotals => ROW_TOTALS,
                    FieldKind::Date => DATE,
                    _ => BOX,
                };
                for b in &f.boxes {
                    d.rect(b, colour);
                }
            }
            FieldKind::Bubbles => {
                let r = f.radius_mm.unwrap_or(1.0);
                for (_, _, c) in f.bubble_centres() {
                    d.circle(c, r, BUBBLE);
                    d.cross(c, 0.8, BUBBLE);
                }
            }
            FieldKind::TallyGrid => {
                if let (Some(&x0), Some(&x1), Some(&y0), Some(&y1)) = (
                    f.col_edges_mm.first(),
                    f.col_edges_mm.last(),
                    f.row_edges_mm.first(),
                    f.row_edges_mm.last(),
                ) {
                    for &x in &f.col_edges_mm {
                        d.line([x, y0], [x, y1], GRID);
                    }
                    for &y in &f.row_edges_mm {
                        d.line([x0, y], [x1, y], GRID);
                    }
                }
            }
        }
        // labels: digits/date just above the printed line of the first box; row totals (packed
        // one under another) only their `rowK` suffix inside the first box; bubbles below the
        // last row of bubbles; grids just inside their top-left corner
        if let Some(b) = f.bounds() {
            let scale = ((LABEL_HEIGHT_MM * px_per_mm) / GLYPH_H as f64)
                .round()
                .max(1.0) as i64;
            let text_h = (GLYPH_H as i64 * scale) as f32;
            let short = f.id.rsplit('.').next().unwrap_or(&f.id);
            let (text, (x, y)) = match f.kind {
                FieldKind::Digits | FieldKind::Date => {
                    let above = b[1] - f.line_mm.unwrap_or(0.0) - LABEL_GAP_MM;
                    let (x, y) = (d.map)([b[0], above]);
                    (f.id.as_str(), (x, y - text_h))
                }
                FieldKind::RowTotals => {
                    (short, (d.map)([b[0] + LABEL_GAP_MM, b[1] + LABEL_GAP_MM]))
                }
                FieldKind::Bubbles => (f.id.as_str(), (d.map)([b[0], b[1] + b[3] + LABEL_GAP_MM])),
                FieldKind::TallyGrid => (
                    f.id.as_str(),
                    (d.map)([b[0] + LABEL_GAP_MM, b[1] + LABEL_GAP_MM]),
                ),
            };
            draw_text(d.img, text, x as i64, y as i64, scale, TEXT);
        }
    }
}

pub fn draw_overlay_scaled(img: &mut RgbImage, t: &Template, page: u32, px_per_mm: f64) {
    let map = move |p: PointMm| ((p[0] * px_per_mm) as f32, (p[1] * px_per_mm) as f32);
    draw_overlay(img, t, page, &map);
}

struct Drawer<'a> {
    img: &'a mut RgbImage,
    map: &'a dyn Fn(PointMm) -> (f32, f32),
}

impl Drawer<'_> {
    fn line(&mut self, a: PointMm, b: PointMm, c: Rgb<u8>) {
        draw_line_segment_mut(self.img, (self.map)(a), (self.map)(b), c);
    }

    fn rect(&mut self, r: &RectMm, c: Rgb<u8>) {
        let k = rect_corners(r);
        for i in 0..4 {
            self.line(k[i], k[(i + 1) % 4], c);
        }
    }

    fn circle(&mut self, centre: PointMm, r: f64, c: Rgb<u8>) {
        let pt = |i: usize| {
            let a = i as f64 * std::f64::consts::TAU / CIRCLE_SEGMENTS as f64;
            [centre[0] + r * a.cos(), centre[1] + r * a.sin()]
        };
        for i in 0..CIRCLE_SEGMENTS {
            self.line(pt(i), pt(i + 1), c);
        }
    }

    fn cross(&mut self, p: PointMm, half: f64, c: Rgb<u8>) {
        self.line([p[0] - half, p[1]], [p[0] + half, p[1]], c);
        self.line([p[0], p[1] - half], [p[0], p[1] + half], c);
    }

    /// Local scale near `p` (pixels per mm along x).
    fn px_per_mm(&self, p: PointMm) -> f64 {
        let a = (self.map)(p);
        let b = (self.map)([p[0] + 10.0, p[1]]);
        (((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt() / 10.0) as f64
    }
}

/// The overlay's glyph for `c`: field ids are lower case; a space is empty and characters the
/// font lacks draw as a filled block, so a missing glyph is visible.
fn glyph(c: char) -> [u8; GLYPH_H] {
    match c {
        ' ' => [0; GLYPH_H],
        _ => font::glyph(c.to_ascii_lowercase()).unwrap_or([0x1F; GLYPH_H]),
    }
}

/// Draw `text` with its top-left at pixel (x, y), each font pixel `scale` x `scale` image pixels.
/// Pixels outside the image are skipped.
pub fn draw_text(img: &mut RgbImage, text: &str, x: i64, y: i64, scale: i64, c: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    for (k, ch) in text.chars().enumerate() {
        let g = glyph(ch);
        let gx = x + k as i64 * (GLYPH_W as i64 + 1) * scale;
        for (r, bits) in g.iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (1 << (GLYPH_W - 1 - col)) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = gx + col as i64 * scale + dx;
                        let py = y + r as i64 * scale + dy;
                        if (0..w).contains(&px) && (0..h).contains(&py) {
                            img.put_pixel(px as u32, py as u32, c);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_draws_inside_and_clips_outside() {
        let mut img = RgbImage::from_pixel(40, 10, Rgb([255, 255, 255]));
        draw_text(&mut img, "1", 0, 0, 1, Rgb([0, 0, 0]));
        // '1' has its stem in column 2, rows 0..7
        assert_eq!(img.get_pixel(2, 3), &Rgb([0, 0, 0]));
        assert_eq!(img.get_pixel(0, 3), &Rgb([255, 255, 255]));
        // fully outside: no panic, nothing drawn
        draw_text(&mut img, "dpt.l", 100, 100, 2, Rgb([0, 0, 0]));
        draw_text(&mut img, "dpt.l", -100, -100, 2, Rgb([0, 0, 0]));
    }
}
