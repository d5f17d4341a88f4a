//! Page raster in template millimetres and the printed artwork of a page drawn from the template:
//! registration marks, AprilTag, digit boxes (with the dotted-8 guide), bubbles, row-total boxes,
//! tally grids, table rules and text blocks in a built-in 5x7 font.
//!
//! Invariant: canvas pixel `(i, j)` covers `[i, i+1) x [j, j+1)` raster units, i.e. template mm
//! `[i/ppm, (i+1)/ppm)`; its centre is at `((i + 0.5) / ppm, (j + 0.5) / ppm)` mm.

use crate::font::{GLYPH_H, GLYPH_W, glyph};
use crate::template::{Field, FieldKind, Guide, Page, RectMm, Template};
use image::RgbImage;

/// Colour of clean paper (slightly warm off-white).
pub const PAPER: [u8; 3] = [246, 244, 236];
/// Printing ink (near black).
pub const PRINT: [u8; 3] = [28, 28, 32];
/// Grey of a printed guide whose template gives none (the official artwork's: 201 of 255).
const DEFAULT_GUIDE_GREY: u8 = 201;
/// Tally-grid inner lines (printed light).
const GRID_GREY: [u8; 3] = [120, 120, 125];
/// Width of bubble outlines, tally lines and table rules in mm (thin print, as on the form).
const BUBBLE_LINE_MM: f64 = 0.3;
const GRID_LINE_MM: f64 = 0.2;
const RULE_MM: f64 = 0.35;

/// An RGB raster of a page in template millimetres.
#[derive(Clone)]
pub struct Canvas {
    pub img: RgbImage,
    /// Pixels per millimetre.
    pub ppm: f64,
}

/// Exact overlap length of `[a0, a1)` with pixel `[p, p+1)`.
fn overlap(a0: f64, a1: f64, p: f64) -> f64 {
    (a1.min(p + 1.0) - a0.max(p)).max(0.0)
}

impl Canvas {
    pub fn new(width_mm: f64, height_mm: f64, ppm: f64, paper: [u8; 3]) -> Self {
        let w = (width_mm * ppm).round().max(1.0) as u32;
        let h = (height_mm * ppm).round().max(1.0) as u32;
        Canvas {
            img: RgbImage::from_pixel(w, h, image::Rgb(paper)),
            ppm,
        }
    }

    /// Multiply-blend `ink` with opacity `a` (0..1) into pixel `(x, y)`: ink layers darken like
    /// real pigment, so crossing strokes get darker and never lighter.
    #[inline]
    pub fn blend(&mut self, x: u32, y: u32, ink: [u8; 3], a: f32) {
        if a <= 0.0 || x >= self.img.width() || y >= self.img.height() {
            return;
        }
        let a = a.min(1.0);
        let p = self.img.get_pixel_mut(x, y);
        for (v, i) in p.0.iter_mut().zip(ink) {
            let f = 1.0 - a * (1.0 - i as f32 / 255.0);
            *v = (*v as f32 * f + 0.5) as u8;
        }
    }

    /// Pixel range covering `[x0, x1) x [y0, y1)` mm, clipped to the canvas.
    fn pixel_range(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> (u32, u32, u32, u32) {
        let cl = |v: f64, max: u32| -> u32 { v.clamp(0.0, max as f64) as u32 };
        (
            cl((x0 * self.ppm).floor(), self.img.width()),
            cl((y0 * self.ppm).floor(), self.img.height()),
            cl((x1 * self.ppm).ceil(), self.img.width()),
            cl((y1 * self.ppm).ceil(), self.img.height()),
        )
    }

    /// Paint with a coverage function of the pixel centre in mm (returns 0..1), over a bbox in mm.
    pub fn paint<F: Fn(f64, f64) -> f64>(
        &mut self,
        bbox: [f64; 4],
        ink: [u8; 3],
        alpha: f32,
        coverage: F,
    ) {
        let (px0, py0, px1, py1) = self.pixel_range(bbox[0], bbox[1], bbox[2], bbox[3]);
        for y in py0..py1 {
            let ym = (y as f64 + 0.5) / self.ppm;
            for x in px0..px1 {
                let xm = (x as f64 + 0.5) / self.ppm;
                let c = coverage(xm, ym);
                if c > 0.0 {
                    self.blend(x, y, ink, alpha * c as f32);
                }
            }
        }
    }

    /// Coverage from a signed distance in mm (negative inside), anti-aliased over one pixel.
    #[inline]
    pub fn sdf_cov(&self, d_mm: f64) -> f64 {
        (0.5 - d_mm * self.ppm).clamp(0.0, 1.0)
    }

    /// Axis-aligned filled rectangle `[x, y, w, h]` mm with exact area coverage.
    pub fn fill_rect(&mut self, r: RectMm, ink: [u8; 3], alpha: f32) {
        let (x0, y0, x1, y1) = (
            r[0] * self.ppm,
            r[1] * self.ppm,
            (r[0] + r[2]) * self.ppm,
            (r[1] + r[3]) * self.ppm,
        );
        let (px0, py0, px1, py1) = self.pixel_range(r[0], r[1], r[0] + r[2], r[1] + r[3]);
        for y in py0..py1 {
            let cy = overlap(y0, y1, y as f64);
            for x in px0..px1 {
                let c = cy * overlap(x0, x1, x as f64);
                self.blend(x, y, ink, alpha * c as f32);
            }
        }
    }

    /// Fill a rectangle with an opaque colour (replacing what is there).
    pub fn clear_rect(&mut self, r: RectMm, colour: [u8; 3]) {
        let (px0, py0, px1, py1) = self.pixel_range(r[0], r[1], r[0] + r[2], r[1] + r[3]);
        for y in py0..py1 {
            for x in px0..px1 {
                self.img.put_pixel(x, y, image::Rgb(colour));
            }
        }
    }

    /// The printed line around a box whose inside edge is `r`.
    pub fn box_outline(&mut self, r: RectMm, line: f64, ink: [u8; 3]) {
        let [x, y, w, h] = r;
        self.fill_rect([x - line, y - line, w + 2.0 * line, line], ink, 1.0);
        self.fill_rect([x - line, y + h, w + 2.0 * line, line], ink, 1.0);
        self.fill_rect([x - line, y, line, h], ink, 1.0);
        self.fill_rect([x + w, y, line, h], ink, 1.0);
    }

    /// Circle outline centred on `c` with radius `r` to the line centre.
    pub fn ring(&mut self, c: [f64; 2], r: f64, width: f64, ink: [u8; 3], alpha: f32) {
        let e = r + width;
        let bbox = [c[0] - e, c[1] - e, c[0] + e, c[1] + e];
        let ppm = self.ppm;
        self.paint(bbox, ink, alpha, |x, y| {
            let d = ((x - c[0]).hypot(y - c[1]) - r).abs() - width / 2.0;
            (0.5 - d * ppm).clamp(0.0, 1.0)
        });
    }

    /// Filled disk.
    pub fn disk(&mut self, c: [f64; 2], r: f64, ink: [u8; 3], alpha: f32) {
        let e = r + 1.0 / self.ppm;
        let bbox = [c[0] - e, c[1] - e, c[0] + e, c[1] + e];
        let ppm = self.ppm;
        self.paint(bbox, ink, alpha, |x, y| {
            let d = (x - c[0]).hypot(y - c[1]) - r;
            (0.5 - d * ppm).clamp(0.0, 1.0)
        });
    }

    /// A stroke through `pts` of width `widths[i]` at each point (linearly varying per segment),
    /// painted once per pixel (no darker beads at the joints). `alpha_at(t)` (t in 0..1 along the
    /// stroke) models pen pressure.
    pub fn stroke<A: Fn(f64) -> f32>(
        &mut self,
        pts: &[[f64; 2]],
        widths: &[f64],
        ink: [u8; 3],
        alpha_at: A,
    ) {
        if pts.len() < 2 || widths.len() != pts.len() {
            return;
        }
        let wmax = widths.iter().cloned().fold(0.0, f64::max);
        let e = wmax / 2.0 + 1.0 / self.ppm;
        let mut bbox = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        for p in pts {
            bbox[0] = bbox[0].min(p[0] - e);
            bbox[1] = bbox[1].min(p[1] - e);
            bbox[2] = bbox[2].max(p[0] + e);
            bbox[3] = bbox[3].max(p[1] + e);
        }
        let n = pts.len() - 1;
        let ppm = self.ppm;
        let (px0, py0, px1, py1) = self.pixel_range(bbox[0], bbox[1], bbox[2], bbox[3]);
        for y in py0..py1 {
            let ym = (y as f64 + 0.5) / ppm;
            for x in px0..px1 {
                let xm = (x as f64 + 0.5) / ppm;
                let mut best = f64::MAX;
                let mut best_t = 0.0;
                for i in 0..n {
                    let (a, b) = (pts[i], pts[i + 1]);
                    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
                    let l2 = dx * dx + dy * dy;
                    let t = if l2 > 0.0 {
                        (((xm - a[0]) * dx + (ym - a[1]) * dy) / l2).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    let w = widths[i] + (widths[i + 1] - widths[i]) * t;
                    let d = (xm - a[0] - t * dx).hypot(ym - a[1] - t * dy) - w / 2.0;
                    if d < best {
                        best = d;
                        best_t = (i as f64 + t) / n as f64;
                    }
                }
                let c = (0.5 - best * ppm).clamp(0.0, 1.0);
                if c > 0.0 {
                    let a = alpha_at(best_t) * c as f32;
                    self.blend(x, y, ink, a);
                }
            }
        }
    }

    /// Text in the built-in font; `(x, y)` = top-left in mm, `height` = capital height in mm.
    /// Returns the width drawn in mm.
    pub fn text(&mut self, x: f64, y: f64, height: f64, s: &str, ink: [u8; 3]) -> f64 {
        let cell = height / GLYPH_H as f64;
        let mut cx = x;
        for ch in s.chars() {
            if let Some(g) = glyph(ch.to_ascii_uppercase()) {
                for (row, bits) in g.iter().enumerate() {
                    for col in 0..GLYPH_W {
                        if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                            let r = [
                                cx + col as f64 * cell,
                                y + row as f64 * cell,
                                cell * 1.05,
                                cell * 1.05,
                            ];
                            self.fill_rect(r, ink, 1.0);
                        }
                    }
                }
            }
            cx += cell * (GLYPH_W as f64 + 1.0);
        }
        cx - x
    }

    /// Width in mm of `s` drawn at `height`.
    pub fn text_width(height: f64, s: &str) -> f64 {
        height / GLYPH_H as f64 * (GLYPH_W as f64 + 1.0) * s.chars().count() as f64
    }

    /// Text centred on `cx`.
    pub fn text_centered(&mut self, cx: f64, y: f64, height: f64, s: &str, ink: [u8; 3]) {
        let w = Self::text_width(height, s);
        self.text(cx - w / 2.0, y, height, s, ink);
    }
}

/// Heading lines of each page (the real form's wording, shortened).
fn heading_lines(page: u32) -> &'static [&'static str] {
    match page {
        1 => &[
            "BERITA ACARA, SERTIFIKAT DAN CATATAN HASIL PENGHITUNGAN PEROLEHAN SUARA",
            "DI TEMPAT PEMUNGUTAN SUARA DALAM PEMILIHAN UMUM",
            "PRESIDEN DAN WAKIL PRESIDEN",
            "REPUBLIK INDONESIA",
            "TAHUN 2024",
        ],
        2 => &[
            "PROVINSI : ....................    KECAMATAN : ....................",
            "KABUPATEN / KOTA : ..............  KELURAHAN / DESA : ..............",
            "NOMOR TPS : ......",
            "IV. DATA RINCIAN PEROLEHAN SUARA PASANGAN CALON PRESIDEN DAN WAKIL PRESIDEN",
        ],
        _ => &[
            "PROVINSI : ....................    KECAMATAN : ....................",
            "KABUPATEN / KOTA : ..............  KELURAHAN / DESA : ..............",
            "NOMOR TPS : ......",
            "V. DATA SUARA SAH DAN SUARA TIDAK SAH",
        ],
    }
}

/// Bounding box `[x0, y0, x1, y1]` of everything a field prints.
fn field_extent(f: &crate::template::Field) -> Option<[f64; 4]> {
    let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    let mut add = |x: f64, y: f64| {
        b[0] = b[0].min(x);
        b[1] = b[1].min(y);
        b[2] = b[2].max(x);
        b[3] = b[3].max(y);
    };
    for r in &f.boxes {
        add(r[0], r[1]);
        add(r[0] + r[2], r[1] + r[3]);
    }
    let rad = f.radius_mm.unwrap_or(0.0);
    for c in f.columns.iter().flatten() {
        add(c[0] - rad, c[1] - rad);
        add(c[0] + rad, c[1] + rad);
    }
    if let (Some(x0), Some(x1), Some(y0), Some(y1)) = (
        f.col_edges_mm.first(),
        f.col_edges_mm.last(),
        f.row_edges_mm.first(),
        f.row_edges_mm.last(),
    ) {
        add(*x0, *y0);
        add(*x1, *y1);
    }
    (b[0] <= b[2]).then_some(b)
}

/// The guide printed faintly inside box `r` of field `f` (the dotted "8" of page 2): the
/// template's dots, in its grey.
fn guide(c: &mut Canvas, f: &Field, r: RectMm) {
    let g = f.guide_grey.unwrap_or(DEFAULT_GUIDE_GREY);
    for d in &f.guide_dots {
        c.fill_rect([r[0] + d[0], r[1] + d[1], d[2], d[3]], [g, g, g], 1.0);
    }
}

/// Draw the printed artwork of template page `page` onto a blank canvas.
pub fn draw_page(t: &Template, page: &Page, c: &mut Canvas) {
    // Registration marks.
    for m in &page.marks {
        for s in &m.squares {
            c.fill_rect(*s, PRINT, 1.0);
        }
    }
    // AprilTag with its white quiet zone (one module wide).
    let tag = &page.tag;
    let module = tag.rect[2] / 8.0;
    let moduleh = tag.rect[3] / 8.0;
    c.clear_rect(
        [
            tag.rect[0] - module,
            tag.rect[1] - moduleh,
            tag.rect[2] + 2.0 * module,
            tag.rect[3] + 2.0 * moduleh,
        ],
        PAPER,
    );
    for row in 0..8 {
        for col in 0..8 {
            let border = row == 0 || col == 0 || row == 7 || col == 7;
            let bit = if border {
                true
            } else {
                tag.bits.as_bytes().get((row - 1) * 6 + (col - 1)) == Some(&b'1')
            };
            if bit {
                c.fill_rect(
                    [
                        tag.rect[0] + col as f64 * module,
                        tag.rect[1] + row as f64 * moduleh,
                        module,
                        moduleh,
                    ],
                    PRINT,
                    1.0,
                );
            }
        }
    }
    let fields: Vec<_> = t.fields.iter().filter(|f| f.page == page.number).collect();
    // Free band for the heading: below the top marks, above the first field.
    let marks_top = page
        .marks
        .iter()
        .flat_map(|m| m.squares.iter().map(|s| s[1] + s[3]))
        .fold(0.0, f64::max)
        .min(page.height_mm * 0.15);
    let first_field = fields
        .iter()
        .filter_map(|f| field_extent(f))
        .map(|b| b[1])
        .fold(page.height_mm, f64::min);
    let left = page
        .marks
        .iter()
        .flat_map(|m| m.squares.iter().map(|s| s[0]))
        .fold(page.width_mm, f64::min)
        + 15.0;
    let right = page
        .marks
        .iter()
        .flat_map(|m| m.squares.iter().map(|s| s[0] + s[2]))
        .fold(0.0, f64::max)
        - 15.0;
    let band = first_field - marks_top - 20.0;
    if band > 20.0 {
        let lines = heading_lines(page.number);
        let step = (band / (lines.len() as f64 + 1.0)).min(12.0);
        let h = (step * 0.45).min(5.0);
        let mut y = marks_top + 15.0;
        for (i, line) in lines.iter().enumerate() {
            let hh = if page.number == 1 && (i == 2 || i == 3) {
                h * 1.3
            } else {
                h
            };
            if page.number == 1 {
                c.text_centered(page.width_mm / 2.0, y, hh, line, PRINT);
            } else {
                c.text(left + 20.0, y, hh, line, PRINT);
            }
            y += step;
        }
        // Filler paragraphs below the heading, like the form's printed preamble.
        let mut seed = 0x2545_F491_4F6C_DD1Du64 ^ page.number as u64;
        let para_h = 2.6;
        while y + para_h < first_field - 25.0 {
            let mut x = left + 10.0;
            while x < right - 40.0 {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let letters = 2 + (seed >> 61) as usize; // 2..=9 letters, shifts stay < 64
                let word: String = (0..letters)
                    .map(|k| (b'A' + ((seed >> (8 + 5 * k)) % 26) as u8) as char)
                    .collect();
                x += c.text(x, y, para_h, &word, PRINT) + para_h;
            }
            y += para_h * 2.6;
        }
        // Form id box next to the tag.
        let bx = [
            tag.rect[0] - 8.0,
            tag.rect[1] - 24.0,
            tag.rect[2] + 16.0,
            12.0,
        ];
        if bx[1] > marks_top {
            c.box_outline(bx, RULE_MM, PRINT);
            c.text_centered(bx[0] + bx[2] / 2.0, bx[1] + 2.0, 3.0, "MODEL", PRINT);
            c.text_centered(bx[0] + bx[2] / 2.0, bx[1] + 6.5, 3.0, "C.HASIL-PPWP", PRINT);
        }
    }
    // Table rows: group digit fields by their vertical position; label at the left, rules around.
    let mut rows: Vec<(f64, f64, f64, f64, &str)> = Vec::new(); // y0, y1, x0, x1, label
    for f in fields.iter().filter(|f| f.kind == FieldKind::Digits) {
        let Some(b) = field_extent(f) else { continue };
        match rows
            .iter_mut()
            .find(|r| (r.0 - b[1]).abs() < 2.0 && (r.1 - b[3]).abs() < 2.0)
        {
            Some(r) => {
                r.2 = r.2.min(b[0]);
                r.3 = r.3.max(b[2]);
            }
            None => rows.push((b[1], b[3], b[0], b[2], f.label_id.as_str())),
        }
    }
    // Extents of the non-digit fields: a table row must not cross them (page 2 layout).
    let others: Vec<[f64; 4]> = fields
        .iter()
        .filter(|f| f.kind != FieldKind::Digits)
        .filter_map(|f| field_extent(f))
        .collect();
    rows.retain(|(y0, y1, x0, _, _)| {
        !others
            .iter()
            .any(|b| b[0] < *x0 && b[2] > left && b[1] < *y1 && b[3] > *y0)
    });
    for (y0, y1, x0, x1, label) in &rows {
        let pad = 4.0;
        let (ty0, ty1) = (y0 - pad, y1 + pad);
        let tx1 = (x1 + pad).min(right + 10.0);
        for yy in [ty0, ty1] {
            c.fill_rect([left, yy - RULE_MM / 2.0, tx1 - left, RULE_MM], PRINT, 1.0);
        }
        for xx in [left, x0 - pad, tx1] {
            c.fill_rect([xx - RULE_MM / 2.0, ty0, RULE_MM, ty1 - ty0], PRINT, 1.0);
        }
        let avail = x0 - pad - left - 8.0;
        let th = ((y1 - y0) * 0.18).clamp(2.0, 3.5);
        let mut s: String = label.to_string();
        while !s.is_empty() && Canvas::text_width(th, &s) > avail {
            s.pop();
        }
        c.text(left + 4.0, (y0 + y1) / 2.0 - th / 2.0, th, &s, PRINT);
    }
    for f in &fields {
        match f.kind {
            FieldKind::Digits | FieldKind::Date | FieldKind::RowTotals => {
                let line = f.line_mm.unwrap_or(0.5);
                for r in &f.boxes {
                    c.box_outline(*r, line, PRINT);
                    if f.guide != Guide::None {
                        guide(c, f, *r);
                    }
                }
            }
            FieldKind::Bubbles => {
                let rad = f.radius_mm.unwrap_or(2.5);
                for col in &f.columns {
                    for (d, centre) in col.iter().enumerate() {
                        c.ring(*centre, rad, BUBBLE_LINE_MM, PRINT, 1.0);
                        let th = rad * 0.9;
                        c.text_centered(centre[0], centre[1] - th / 2.0, th, &d.to_string(), PRINT);
                    }
                }
            }
            FieldKind::TallyGrid => {
                let (Some(&x0), Some(&x1), Some(&y0), Some(&y1)) = (
                    f.col_edges_mm.first(),
                    f.col_edges_mm.last(),
                    f.row_edges_mm.first(),
                    f.row_edges_mm.last(),
                ) else {
                    continue;
                };
                for &x in &f.col_edges_mm {
                    c.fill_rect(
                        [x - GRID_LINE_MM / 2.0, y0, GRID_LINE_MM, y1 - y0],
                        GRID_GREY,
                        1.0,
                    );
                }
                for &y in &f.row_edges_mm {
                    c.fill_rect(
                        [x0, y - GRID_LINE_MM / 2.0, x1 - x0, GRID_LINE_MM],
                        GRID_GREY,
                        1.0,
                    );
                }
                c.box_outline([x0, y0, x1 - x0, y1 - y0], RULE_MM, PRINT);
                // The block left of the grid: candidate number and names (or the label).
                if x0 - left > 40.0 {
                    let bx = [left, y0 - 8.0, x0 - left, y1 - y0 + 8.0];
                    c.box_outline(bx, RULE_MM, PRINT);
                    let mid = bx[0] + bx[2] / 2.0;
                    let of = f.of.as_deref().unwrap_or_default();
                    let mut ty = y0;
                    if let Some(n) = of.strip_prefix("votes.") {
                        c.text_centered(mid, ty, 9.0, n, PRINT);
                        ty += 14.0;
                        c.text_centered(mid, ty, 3.0, "NAMA CALON PRESIDEN", PRINT);
                        c.text_centered(mid, ty + 5.0, 3.0, "NAMA CALON WAKIL PRESIDEN", PRINT);
                    } else {
                        let mut words = f.label_id.split_whitespace().peekable();
                        while words.peek().is_some() && ty < y1 - 4.0 {
                            let mut line = String::new();
                            while let Some(w) = words.peek() {
                                if Canvas::text_width(3.0, &format!("{line} {w}")) > bx[2] - 8.0
                                    && !line.is_empty()
                                {
                                    break;
                                }
                                if !line.is_empty() {
                                    line.push(' ');
                                }
                                line.push_str(w);
                                words.next();
                            }
                            c.text_centered(mid, ty, 3.0, &line, PRINT);
                            ty += 5.0;
                        }
                    }
                }
                // Column numbers above the grid.
                let th = 2.0;
                for (i, w) in f.col_edges_mm.windows(2).enumerate() {
                    c.text_centered(
                        (w[0] + w[1]) / 2.0,
                        y0 - th - 1.5,
                        th,
                        &(i + 1).to_string(),
                        PRINT,
                    );
                }
            }
        }
    }
    // Signature table in the free band above the bottom marks, as on the form.
    let last_field = fields
        .iter()
        .filter_map(|f| field_extent(f))
        .map(|b| b[3])
        .fold(0.0, f64::max);
    let marks_bottom = page
        .marks
        .iter()
        .flat_map(|m| m.squares.iter().map(|s| s[1]))
        .fold(page.height_mm, f64::min)
        .max(page.height_mm * 0.85);
    let band = marks_bottom - last_field - 20.0;
    if band > 40.0 {
        let h = band.min(90.0);
        let y0 = marks_bottom - 10.0 - h;
        let w = right - left;
        c.box_outline([left, y0, w, h], RULE_MM, PRINT);
        c.fill_rect([left, y0 + 8.0, w, RULE_MM], PRINT, 1.0);
        c.text_centered(
            left + w / 2.0,
            y0 + 2.5,
            3.0,
            "NAMA DAN TANDA TANGAN KELOMPOK PENYELENGGARA PEMUNGUTAN SUARA",
            PRINT,
        );
        for k in 1..7 {
            let x = left + w * k as f64 / 7.0;
            c.fill_rect([x, y0 + 8.0, RULE_MM, h * 0.3], PRINT, 1.0);
        }
        c.fill_rect([left, y0 + 8.0 + h * 0.3, w, RULE_MM], PRINT, 1.0);
        for k in 0..7 {
            c.text(
                left + w * k as f64 / 7.0 + 3.0,
                y0 + 12.0,
                3.0,
                &format!("{}.", k + 1),
                PRINT,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rect_coverage_is_exact() {
        let mut c = Canvas::new(10.0, 10.0, 2.0, [255, 255, 255]);
        // Covers pixel (2,2) fully and half of pixel (3,2) in x.
        c.fill_rect([1.0, 1.0, 0.75, 0.5], [0, 0, 0], 1.0);
        assert_eq!(c.img.get_pixel(2, 2).0[0], 0);
        assert!((c.img.get_pixel(3, 2).0[0] as i32 - 128).abs() <= 1);
        assert_eq!(c.img.get_pixel(4, 2).0[0], 255);
    }
}
