//! The photo model: a page raster (template mm) photographed by a phone.
//!
//! Geometry: the page plane is tilted in 3-D, rolled in-plane (small angle, sometimes plus a
//! quarter turn), projected by a pinhole camera and framed in the photo; this gives the truth
//! homography `H` (template mm -> output pixel, pixel (0,0) covering [0,1)^2). Paper curl adds a
//! smooth displacement (at most `curl_mm`) on the page *before* `H`, so a page point `p` is seen at
//! `H(p + d(p))` with `|d| <= curl_mm`.
//! Photometry, per output pixel: page or background texture (with a soft drop shadow at the page
//! edge), crease shading, uneven light (gradient, vignette, shadow blob), white balance, glare,
//! then defocus/motion blur, sensor noise and JPEG compression.
//!
//! Rendering is an inverse warp: for each output pixel the page is sampled (bilinear). The
//! mapping and the light field are evaluated on a grid every `GRID` pixels and interpolated
//! (the fields are smooth; the error is far below a pixel), rows run in parallel (rayon) and every
//! random draw is a pure function of (seed, pixel), so the output does not depend on threads.

use super::draw::Canvas;
use nalgebra::{Matrix3, Vector3};
use rand::{Rng, RngExt};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Grid step in output pixels for the mapping and light fields.
const GRID: usize = 8;
/// Probability that a page is rotated by a quarter/half turn (photo taken sideways/upside down).
const QUARTER_TURN_P: f64 = 0.12;

/// Background surface under the page.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    Wood,
    Table,
    Cloth,
}

/// A soft elliptic shadow (hand / phone) in output coordinates normalised to 0..1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Blob {
    pub centre: [f64; 2],
    pub radius: [f64; 2],
    pub strength: f64,
}

/// A fold line across the page (template mm).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Crease {
    pub point_mm: [f64; 2],
    pub angle_deg: f64,
    /// Brightness change across the fold (fraction).
    pub strength: f64,
}

/// Everything random about one photo (recorded in truth.pages[].conditions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    /// Total in-plane rotation of the page in the photo, degrees (quarter turns included).
    pub rotation_deg: f64,
    pub quarter_turns: u8,
    /// Out-of-plane tilt about the page's x and y axes, degrees.
    pub tilt_deg: [f64; 2],
    /// Camera distance / page diagonal (smaller = stronger perspective).
    pub distance: f64,
    /// Fraction of the limiting frame dimension the page spans.
    pub page_fraction: f64,
    /// Maximum paper-curl displacement, mm.
    pub curl_mm: f64,
    pub light_gradient: f64,
    pub vignette: f64,
    pub exposure: f64,
    pub white_balance: [f64; 3],
    pub shadow: Option<Blob>,
    pub crease: Option<Crease>,
    pub glare: Option<Blob>,
    /// Gaussian defocus sigma in pixels.
    pub blur_px: f64,
    /// Motion-blur length in pixels and its direction.
    pub motion_px: f64,
    pub motion_deg: f64,
    /// Sensor noise standard deviation (0..255 scale).
    pub noise: f64,
    pub jpeg_quality: u8,
    pub background: Surface,
    pub background_rgb: [u8; 3],
    /// Hard-case tags: `glare`, `cut_corner`, `heavy_blur`, `screen`.
    pub hard: Vec<String>,
    /// The page was photographed off a screen showing it (tag `screen`): see [`Screen`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<Screen>,
    /// Internal seeds and parameters of the random fields (curl, noise, texture).
    pub field_seed: u64,
    #[serde(skip)]
    pub framing: [f64; 2],
}

/// A phone photo of a screen that shows the page (someone photographing the commission's web
/// page, or another phone): the screen's pixel lattice, red/green/blue sub-pixel stripes with a
/// dark gap between rows, sampled by the camera's pixels at a pitch close to theirs, aliases into
/// moire bands. The page itself is shown at the screen's resolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Screen {
    /// Screen pixel pitch in photo pixels (a whole monitor in the frame: about 0.6-2).
    pub pitch_px: f64,
    /// Rotation of the pixel lattice in the photo, degrees.
    pub angle_deg: f64,
    /// Dark share of each screen pixel row (the gap between pixel rows).
    pub gap: f64,
    /// Black level of the screen as a share of white (screens are never black; ambient light).
    pub black: f64,
}

/// Pitch of the screen's pixel lattice in photo pixels.
const SCREEN_PITCH_PX: std::ops::Range<f64> = 0.6..2.0;
/// Sub-samples per photo pixel side when integrating the sub-pixel mask (a camera pixel
/// averages light over its area; point samples would alias even more than real sensors).
const SCREEN_SUBSAMPLES: usize = 3;
/// Camera defocus on a screen photo: small, or the lattice (and the moire) would blur away.
const SCREEN_BLUR_PX: std::ops::Range<f64> = 0.3..0.8;

/// Draw the screen of a screen photo.
pub fn random_screen<R: Rng + ?Sized>(rng: &mut R) -> Screen {
    Screen {
        pitch_px: rng.random_range(SCREEN_PITCH_PX),
        angle_deg: rng.random_range(-6.0..6.0),
        gap: rng.random_range(0.1..0.35),
        black: rng.random_range(0.03..0.15),
    }
}

/// Make `cond` a photo of a screen: tag it, and keep the camera sharp enough to resolve the
/// lattice (motion blur off, defocus small).
pub fn photograph_screen<R: Rng + ?Sized>(rng: &mut R, cond: &mut Conditions) {
    cond.screen = Some(random_screen(rng));
    cond.hard.push("screen".into());
    cond.blur_px = rng.random_range(SCREEN_BLUR_PX);
    cond.motion_px = 0.0;
}

/// Draw photo conditions. `hard` selects one or two hard cases.
pub fn random_conditions<R: Rng + ?Sized>(rng: &mut R, hard: bool) -> Conditions {
    let quarter_turns = if rng.random_bool(QUARTER_TURN_P) {
        rng.random_range(1..=3u8)
    } else {
        0
    };
    let roll = rng.random_range(-6.0..6.0);
    let mut hard_tags: Vec<String> = Vec::new();
    if hard {
        let all = ["glare", "cut_corner", "heavy_blur"];
        let first = rng.random_range(0..all.len());
        hard_tags.push(all[first].into());
        if rng.random_bool(0.25) {
            let second = (first + rng.random_range(1..all.len())) % all.len();
            hard_tags.push(all[second].into());
        }
    }
    let has = |t: &str| hard_tags.iter().any(|h| h == t);
    let blur_px = if has("heavy_blur") {
        rng.random_range(2.5..4.5)
    } else if rng.random_bool(0.2) {
        rng.random_range(1.0..1.8)
    } else {
        rng.random_range(0.35..1.0)
    };
    let motion_px = if has("heavy_blur") && rng.random_bool(0.5) {
        rng.random_range(4.0..9.0)
    } else if rng.random_bool(0.15) {
        rng.random_range(1.0..3.0)
    } else {
        0.0
    };
    let background = match rng.random_range(0..3) {
        0 => Surface::Wood,
        1 => Surface::Table,
        _ => Surface::Cloth,
    };
    let background_rgb = match background {
        Surface::Wood => [
            rng.random_range(110..170),
            rng.random_range(70..110),
            rng.random_range(40..70),
        ],
        Surface::Table => {
            let g = rng.random_range(60..200);
            [g, g + rng.random_range(0..15), g + rng.random_range(0..20)]
        }
        Surface::Cloth => {
            // Muted dyed cloth: a grey base with a moderate tint.
            let g: i32 = rng.random_range(50..170);
            let tint = |rng: &mut R| (g + rng.random_range(-45..45)).clamp(20, 230) as u8;
            [tint(rng), tint(rng), tint(rng)]
        }
    };
    let warm = rng.random_range(-0.06..0.08);
    Conditions {
        rotation_deg: quarter_turns as f64 * 90.0 + roll,
        quarter_turns,
        tilt_deg: [rng.random_range(-14.0..14.0), rng.random_range(-12.0..12.0)],
        distance: rng.random_range(1.1..2.2),
        page_fraction: rng.random_range(0.78..0.97),
        curl_mm: if rng.random_bool(0.6) {
            rng.random_range(0.3..2.0)
        } else {
            0.0
        },
        light_gradient: rng.random_range(0.0..0.35),
        vignette: rng.random_range(0.0..0.25),
        exposure: rng.random_range(0.8..1.08),
        white_balance: [1.0 + warm, 1.0, 1.0 - warm * 1.2],
        shadow: rng.random_bool(0.45).then(|| Blob {
            centre: [rng.random_range(0.0..1.0), rng.random_range(0.0..1.0)],
            radius: [rng.random_range(0.15..0.5), rng.random_range(0.15..0.6)],
            strength: rng.random_range(0.15..0.45),
        }),
        crease: rng.random_bool(0.3).then(|| Crease {
            point_mm: [
                rng.random_range(150.0..450.0),
                rng.random_range(200.0..700.0),
            ],
            angle_deg: if rng.random_bool(0.5) { 0.0 } else { 90.0 } + rng.random_range(-4.0..4.0),
            strength: rng.random_range(0.03..0.1),
        }),
        glare: has("glare").then(|| Blob {
            centre: [rng.random_range(0.2..0.8), rng.random_range(0.2..0.8)],
            radius: [rng.random_range(0.06..0.18), rng.random_range(0.06..0.18)],
            strength: rng.random_range(0.8..1.6),
        }),
        blur_px,
        motion_px,
        motion_deg: rng.random_range(0.0..180.0),
        noise: rng.random_range(1.0..6.0),
        jpeg_quality: rng.random_range(60..=95),
        background,
        background_rgb,
        hard: hard_tags.clone(),
        screen: None,
        field_seed: rng.random(),
        framing: if has("cut_corner") {
            // Push the page towards a frame corner far enough to lose one of its corners.
            let sx = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            let sy = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            // Fractions of the page size in the frame beyond the frame edge, each way.
            [
                sx * rng.random_range(0.03..0.1),
                sy * rng.random_range(0.03..0.1),
            ]
        } else {
            [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)]
        },
    }
}

/// Output frame size for a requested portrait size: a sideways photo (odd quarter turns) is
/// landscape, as a phone held sideways without EXIF rotation produces.
pub fn frame_size(requested: (u32, u32), cond: &Conditions) -> (u32, u32) {
    let (w, h) = (requested.0.min(requested.1), requested.0.max(requested.1));
    if cond.quarter_turns % 2 == 1 {
        (h, w)
    } else {
        (w, h)
    }
}

fn rot_x(a: f64) -> Matrix3<f64> {
    let (s, c) = a.sin_cos();
    Matrix3::new(1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c)
}
fn rot_y(a: f64) -> Matrix3<f64> {
    let (s, c) = a.sin_cos();
    Matrix3::new(c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c)
}
fn rot_z(a: f64) -> Matrix3<f64> {
    let (s, c) = a.sin_cos();
    Matrix3::new(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
}

/// Apply a homography to a point.
pub fn apply(h: &Matrix3<f64>, x: f64, y: f64) -> [f64; 2] {
    let v = h * Vector3::new(x, y, 1.0);
    [v.x / v.z, v.y / v.z]
}

/// The truth homography (template mm -> output pixel) for a page of `page_mm` in a frame.
pub fn homography(cond: &Conditions, page_mm: (f64, f64), frame: (u32, u32)) -> Matrix3<f64> {
    let (pw, ph) = page_mm;
    let r = rot_z(cond.rotation_deg.to_radians())
        * rot_x(cond.tilt_deg[0].to_radians())
        * rot_y(cond.tilt_deg[1].to_radians());
    let d = cond.distance * pw.hypot(ph);
    let t = r * Vector3::new(-pw / 2.0, -ph / 2.0, 0.0) + Vector3::new(0.0, 0.0, d);
    let k = Matrix3::from_columns(&[r.column(0).into_owned(), r.column(1).into_owned(), t]);
    // Fit the projected page into the frame.
    let corners = [(0.0, 0.0), (pw, 0.0), (0.0, ph), (pw, ph)].map(|(x, y)| apply(&k, x, y));
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for c in corners {
        x0 = x0.min(c[0]);
        x1 = x1.max(c[0]);
        y0 = y0.min(c[1]);
        y1 = y1.max(c[1]);
    }
    let (fw, fh) = (frame.0 as f64, frame.1 as f64);
    let s = (fw * cond.page_fraction / (x1 - x0)).min(fh * cond.page_fraction / (y1 - y0));
    let (bw, bh) = ((x1 - x0) * s, (y1 - y0) * s);
    let cut = cond.hard.iter().any(|h| h == "cut_corner");
    // framing in -1..1 spreads over the free margin; a cut corner pushes past the frame edge.
    let (ox, oy) = if cut {
        (
            (fw - bw) / 2.0 * cond.framing[0].signum() + cond.framing[0] * bw,
            (fh - bh) / 2.0 * cond.framing[1].signum() + cond.framing[1] * bh,
        )
    } else {
        (
            (fw - bw) / 2.0 * cond.framing[0],
            (fh - bh) / 2.0 * cond.framing[1],
        )
    };
    let tx = fw / 2.0 + ox - s * (x0 + x1) / 2.0;
    let ty = fh / 2.0 + oy - s * (y0 + y1) / 2.0;
    Matrix3::new(s, 0.0, tx, 0.0, s, ty, 0.0, 0.0, 1.0) * k
}

/// Output pixels per page millimetre near the page centre.
pub fn output_scale(h: &Matrix3<f64>, page_mm: (f64, f64)) -> f64 {
    let (cx, cy) = (page_mm.0 / 2.0, page_mm.1 / 2.0);
    let c = apply(h, cx, cy);
    let a = apply(h, cx + 1.0, cy);
    let b = apply(h, cx, cy + 1.0);
    let ax = [a[0] - c[0], a[1] - c[1]];
    let bx = [b[0] - c[0], b[1] - c[1]];
    (ax[0] * bx[1] - ax[1] * bx[0]).abs().sqrt()
}

/// SplitMix64: a fast stateless hash used for per-pixel noise (pure function of its input).
#[inline]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Approximately standard normal from a 64-bit hash (Irwin-Hall with 4 uniforms).
#[inline]
fn gauss(h: u64) -> f32 {
    let s = (h & 0xFFFF) + ((h >> 16) & 0xFFFF) + ((h >> 32) & 0xFFFF) + (h >> 48);
    (s as f32 / 65535.0 - 2.0) * 1.732
}

/// Smooth value noise on a lattice of `n` cells over 0..1, seeded.
struct ValueNoise {
    n: usize,
    v: Vec<f32>,
}

impl ValueNoise {
    fn new(seed: u64, n: usize) -> Self {
        let v = (0..(n + 1) * (n + 1))
            .map(|i| {
                (mix(seed ^ (i as u64).wrapping_mul(0x1234_5678_9ABC)) >> 40) as f32
                    / (1u64 << 24) as f32
            })
            .collect();
        ValueNoise { n, v }
    }
    /// Value in 0..1 at (x, y) in 0..1 (clamped).
    fn at(&self, x: f64, y: f64) -> f32 {
        let n = self.n as f64;
        let (x, y) = (
            (x.clamp(0.0, 1.0) * n).min(n - 1e-9),
            (y.clamp(0.0, 1.0) * n).min(n - 1e-9),
        );
        let (i, j) = (x as usize, y as usize);
        let (fx, fy) = ((x - i as f64) as f32, (y - j as f64) as f32);
        let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
        let w = self.n + 1;
        let a = self.v[j * w + i] * (1.0 - sx) + self.v[j * w + i + 1] * sx;
        let b = self.v[(j + 1) * w + i] * (1.0 - sx) + self.v[(j + 1) * w + i + 1] * sx;
        a * (1.0 - sy) + b * sy
    }
}

/// Paper-curl displacement in mm at page point (x, y): a smooth field, |d| <= amp.
struct Curl {
    amp: f64,
    kx: f64,
    ky: f64,
    px: f64,
    py: f64,
}

impl Curl {
    fn new(seed: u64, amp: f64, page: (f64, f64)) -> Self {
        let u = |k: u64| (mix(seed ^ k) >> 11) as f64 / (1u64 << 53) as f64;
        Curl {
            amp,
            kx: std::f64::consts::PI * (0.5 + u(1)) / page.0,
            ky: std::f64::consts::PI * (0.5 + u(2)) / page.1,
            px: u(3) * std::f64::consts::TAU,
            py: u(4) * std::f64::consts::TAU,
        }
    }
    fn at(&self, x: f64, y: f64) -> [f64; 2] {
        if self.amp == 0.0 {
            return [0.0, 0.0];
        }
        // Each component is bounded by amp / sqrt(2), so the vector length is <= amp.
        let a = self.amp * std::f64::consts::FRAC_1_SQRT_2;
        [
            a * (y * self.ky + self.py).sin() * (x * self.kx * 0.5 + self.px).cos(),
            a * (x * self.kx + self.px).sin() * (y * self.ky * 0.5 + self.py).cos(),
        ]
    }
}

fn blob_value(b: &Blob, nx: f64, ny: f64) -> f64 {
    let dx = (nx - b.centre[0]) / b.radius[0];
    let dy = (ny - b.centre[1]) / b.radius[1];
    let r2 = dx * dx + dy * dy;
    (-r2 * 1.5).exp()
}

/// Render the photo of `page` (drawn at `page.ppm`) of size `page_mm` into a `frame`.
pub fn render(
    page: &Canvas,
    page_mm: (f64, f64),
    cond: &Conditions,
    h: &Matrix3<f64>,
    frame: (u32, u32),
) -> image::RgbImage {
    let (fw, fh) = (frame.0 as usize, frame.1 as usize);
    let hinv = h.try_inverse().unwrap_or_else(Matrix3::identity);
    let curl = Curl::new(cond.field_seed, cond.curl_mm, page_mm);
    let scale = output_scale(h, page_mm).max(1e-6);
    let bgnoise = ValueNoise::new(cond.field_seed ^ 0xB6, 24);
    let bgfine = ValueNoise::new(cond.field_seed ^ 0xF1, 160);
    // Grid of (page x mm, page y mm, light, glare, background noise).
    let gw = fw / GRID + 2;
    let gh = fh / GRID + 2;
    let mut grid = vec![[0f32; 5]; gw * gh];
    grid.par_chunks_mut(gw).enumerate().for_each(|(gy, row)| {
        for (gx, cell) in row.iter_mut().enumerate() {
            let (ux, uy) = ((gx * GRID) as f64 + 0.5, (gy * GRID) as f64 + 0.5);
            let p = apply(&hinv, ux, uy);
            let d = curl.at(p[0], p[1]);
            let (nx, ny) = (ux / fw as f64, uy / fh as f64);
            let (cx, cy) = (nx - 0.5, ny - 0.5);
            let ang = cond.field_seed as f64 * 1e-3;
            let mut light = cond.exposure
                * (1.0 + cond.light_gradient * (cx * ang.cos() + cy * ang.sin()))
                * (1.0 - cond.vignette * 2.0 * (cx * cx + cy * cy));
            if let Some(s) = &cond.shadow {
                light *= 1.0 - s.strength * blob_value(s, nx, ny);
            }
            let glare = cond
                .glare
                .as_ref()
                .map_or(0.0, |g| g.strength * blob_value(g, nx, ny));
            *cell = [
                (p[0] - d[0]) as f32,
                (p[1] - d[1]) as f32,
                light as f32,
                glare as f32,
                bgnoise.at(nx, ny),
            ];
        }
    });
    let (pw, ph) = (page_mm.0 as f32, page_mm.1 as f32);
    let ppm = page.ppm as f32;
    let (iw, ih) = (page.img.width() as i64, page.img.height() as i64);
    let src = page.img.as_raw();
    let crease = cond.crease.map(|c| {
        let a = c.angle_deg.to_radians();
        // Unit normal of the fold line.
        (
            (-a.sin()) as f32,
            a.cos() as f32,
            c.point_mm,
            c.strength as f32,
        )
    });
    let bg = cond.background_rgb.map(|v| v as f32);
    let wb = cond.white_balance.map(|v| v as f32);
    let grain_ang = (cond.field_seed % 360) as f32 * 0.01745;
    let (gsin, gcos) = grain_ang.sin_cos();
    let shadow_mm = 4.0f32;
    let scale_f = scale as f32;
    let surface = cond.background;
    let mut out = vec![0u8; fw * fh * 3];
    out.par_chunks_mut(fw * 3).enumerate().for_each(|(y, row)| {
        let gy = y / GRID;
        let fy = (y % GRID) as f32 / GRID as f32;
        // The grid row interpolated to this pixel row; then linear along x inside each cell.
        let colv: Vec<[f32; 5]> = (0..gw)
            .map(|gx| {
                let (a, b) = (&grid[gy * gw + gx], &grid[(gy + 1) * gw + gx]);
                std::array::from_fn(|k| a[k] + (b[k] - a[k]) * fy)
            })
            .collect();
        for x in 0..fw {
            let gx = x / GRID;
            let fx = (x % GRID) as f32 / GRID as f32;
            let (a, b) = (&colv[gx], &colv[gx + 1]);
            let v: [f32; 5] = std::array::from_fn(|k| a[k] + (b[k] - a[k]) * fx);
            let (px, py) = (v[0], v[1]);
            // Signed distance (mm) to the page edge, positive inside.
            let m = px.min(pw - px).min(py).min(ph - py);
            let alpha = (m * scale_f + 0.5).clamp(0.0, 1.0);
            let mut col = [0f32; 3];
            if alpha > 0.0 {
                let sx = px * ppm - 0.5;
                let sy = py * ppm - 0.5;
                // floor() without a libm call: inside the page sx, sy > -2, so shifting by 2
                // before truncating toward zero floors correctly.
                let (fxl, fyl) = (
                    ((sx + 2.0) as i64 - 2) as f32,
                    ((sy + 2.0) as i64 - 2) as f32,
                );
                let x0 = (fxl as i64).clamp(0, iw - 1);
                let y0 = (fyl as i64).clamp(0, ih - 1);
                let x1 = (x0 + 1).min(iw - 1);
                let y1 = (y0 + 1).min(ih - 1);
                let ax = (sx - fxl).clamp(0.0, 1.0);
                let ay = (sy - fyl).clamp(0.0, 1.0);
                let i00 = ((y0 * iw + x0) * 3) as usize;
                let i10 = ((y0 * iw + x1) * 3) as usize;
                let i01 = ((y1 * iw + x0) * 3) as usize;
                let i11 = ((y1 * iw + x1) * 3) as usize;
                for c in 0..3 {
                    let t = src[i00 + c] as f32 * (1.0 - ax) + src[i10 + c] as f32 * ax;
                    let b = src[i01 + c] as f32 * (1.0 - ax) + src[i11 + c] as f32 * ax;
                    col[c] = t + (b - t) * ay;
                }
                if let Some((nx, ny, p0, s)) = crease {
                    let d = (px - p0[0] as f32) * nx + (py - p0[1] as f32) * ny;
                    // One side of the fold faces the light a bit more; the fold itself is a
                    // thin darker line.
                    // (tanh saturates beyond 3, the line is negligible beyond 3 mm: skip the
                    // transcendental calls there, they dominate the warp otherwise.)
                    let side = if d.abs() < 18.0 {
                        (d / 6.0).tanh()
                    } else {
                        d.signum()
                    };
                    let line = if d.abs() < 3.0 {
                        (-(d * d) / 0.5).exp()
                    } else {
                        0.0
                    };
                    let f = 1.0 + s * side - 2.0 * s * line;
                    for cc in &mut col {
                        *cc *= f;
                    }
                }
            }
            if alpha < 1.0 {
                let (xf, yf) = (x as f32, y as f32);
                let hsh = mix(cond.field_seed ^ ((y as u64) << 32 | x as u64));
                let fine = ((hsh >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
                let t = match surface {
                    Surface::Wood => {
                        // Grain: rings across the board, fine streaks stretched along it.
                        let along = (xf * gcos + yf * gsin) / fw as f32;
                        let across = (-xf * gsin + yf * gcos) / fw as f32;
                        let streak = bgfine.at(
                            (along as f64 * 0.4).rem_euclid(1.0),
                            (across as f64 * 5.0).rem_euclid(1.0),
                        );
                        let ring = (across * 150.0 + v[4] * 5.0).sin();
                        0.82 + 0.08 * ring + 0.25 * (streak - 0.5) + 0.04 * fine
                    }
                    Surface::Table => 0.9 + 0.12 * v[4] + 0.04 * fine,
                    Surface::Cloth => {
                        let weave = (xf * 1.3).sin() * (yf * 1.3).sin();
                        0.8 + 0.1 * weave + 0.15 * v[4] + 0.08 * fine
                    }
                };
                // Soft shadow the page casts on the surface just outside its edge.
                let out_mm = (-m).max(0.0);
                let drop = if out_mm < 8.0 * shadow_mm {
                    1.0 - 0.45 * (-out_mm / shadow_mm).exp()
                } else {
                    1.0
                };
                for c in 0..3 {
                    let b = bg[c] * t * drop;
                    col[c] = col[c] * alpha + b * (1.0 - alpha);
                }
            }
            let light = v[2];
            let glare = v[3];
            for c in 0..3 {
                let val = col[c] * light * wb[c] + glare * 255.0;
                row[x * 3 + c] = val.clamp(0.0, 255.0) as u8;
            }
        }
    });
    if let Some(screen) = &cond.screen {
        screen_door(&mut out, fw, fh, screen);
    }
    let t_warp = std::time::Instant::now();
    if cond.motion_px >= 1.0 {
        out = motion_blur(&out, fw, fh, cond.motion_px, cond.motion_deg);
    }
    if cond.blur_px >= 0.3 {
        gaussian_blur(&mut out, fw, fh, cond.blur_px);
    }
    let t_blur = std::time::Instant::now();
    add_noise(&mut out, fw, fh, cond.noise as f32, cond.field_seed);
    tracing::debug!(
        blur_ms = (t_blur - t_warp).as_millis() as u64,
        noise_ms = t_blur.elapsed().as_millis() as u64,
        "synth photo post-processing"
    );
    image::RgbImage::from_raw(frame.0, frame.1, out)
        .unwrap_or_else(|| image::RgbImage::new(frame.0, frame.1))
}

/// Multiply the photo by the screen's sub-pixel mask and lift its black level. The page shown
/// is first averaged over one screen pixel (the screen's resolution), then each channel lights
/// only its third of every screen pixel, outside the row gap; the mask of each channel averages
/// to 1 over a screen pixel, so a uniform white page keeps its mean brightness.
fn screen_door(buf: &mut [u8], w: usize, h: usize, s: &Screen) {
    let shown = {
        let mut b = buf.to_vec();
        // A box blur of about one screen pixel approximates showing the page at its resolution.
        gaussian_blur(&mut b, w, h, s.pitch_px * 0.4);
        b
    };
    let (sin, cos) = s.angle_deg.to_radians().sin_cos();
    let inv = 1.0 / s.pitch_px;
    let lit = 1.0 - s.gap;
    let n = SCREEN_SUBSAMPLES;
    let norm = 3.0 / (lit * (n * n) as f64);
    buf.par_chunks_mut(w * 3)
        .zip(shown.par_chunks(w * 3))
        .enumerate()
        .for_each(|(y, (row, src))| {
            for x in 0..w {
                let mut m = [0.0f64; 3];
                for sy in 0..n {
                    for sx in 0..n {
                        let px = x as f64 + (sx as f64 + 0.5) / n as f64;
                        let py = y as f64 + (sy as f64 + 0.5) / n as f64;
                        // Screen lattice coordinates (in screen pixels) of this sub-sample.
                        let u = (px * cos + py * sin) * inv;
                        let v = (-px * sin + py * cos) * inv;
                        if v - v.floor() < lit {
                            let c = (((u - u.floor()) * 3.0) as usize).min(2);
                            m[c] += 1.0;
                        }
                    }
                }
                for c in 0..3 {
                    let shown = src[x * 3 + c] as f64 / 255.0;
                    let v = s.black + (1.0 - s.black) * shown * m[c] * norm;
                    row[x * 3 + c] = (v * 255.0).clamp(0.0, 255.0) as u8;
                }
            }
        });
}

/// Average of taps along a line of `len` pixels at `deg` (nearest-pixel offsets).
fn motion_blur(src: &[u8], w: usize, h: usize, len: f64, deg: f64) -> Vec<u8> {
    let taps = (len.ceil() as i64).max(2);
    let (s, c) = deg.to_radians().sin_cos();
    let offs: Vec<(i64, i64)> = (0..taps)
        .map(|k| {
            let t = (k as f64 / (taps - 1) as f64 - 0.5) * len;
            ((t * c).round() as i64, (t * s).round() as i64)
        })
        .collect();
    let mut out = vec![0u8; src.len()];
    let inv = 1.0 / taps as f32;
    out.par_chunks_mut(w * 3).enumerate().for_each(|(y, row)| {
        // u16 holds up to 257 taps of 255.
        let mut acc = vec![0u16; w * 3];
        for &(dx, dy) in &offs {
            let yy = (y as i64 + dy).clamp(0, h as i64 - 1) as usize;
            let srow = &src[yy * w * 3..(yy + 1) * w * 3];
            for x in 0..w {
                let xx = (x as i64 + dx).clamp(0, w as i64 - 1) as usize;
                let a = &mut acc[x * 3..x * 3 + 3];
                let s = &srow[xx * 3..xx * 3 + 3];
                a[0] += s[0] as u16;
                a[1] += s[1] as u16;
                a[2] += s[2] as u16;
            }
        }
        for (o, a) in row.iter_mut().zip(&acc) {
            *o = (*a as f32 * inv + 0.5) as u8;
        }
    });
    out
}

/// One horizontal box-blur pass of radius `r` over every row (edge pixels repeated).
fn box_rows(buf: &mut [u8], w: usize, r: usize) {
    if r == 0 || w == 0 {
        return;
    }
    let norm = 1.0 / (2 * r + 1) as f32;
    buf.par_chunks_mut(w * 3).for_each(|row| {
        // Padded copy: the border pixels repeated r + 1 times on each side, so pixel x sits at
        // padded index x + r + 1.
        let mut src = Vec::with_capacity((w + 2 * r + 2) * 3);
        for _ in 0..=r {
            src.extend_from_slice(&row[..3]);
        }
        src.extend_from_slice(row);
        for _ in 0..=r {
            src.extend_from_slice(&row[(w - 1) * 3..]);
        }
        let mut acc = [0u32; 3];
        for i in 1..=2 * r + 1 {
            for c in 0..3 {
                acc[c] += src[i * 3 + c] as u32;
            }
        }
        for x in 0..w {
            for c in 0..3 {
                row[x * 3 + c] = (acc[c] as f32 * norm + 0.5) as u8;
                acc[c] += src[(x + 2 * r + 2) * 3 + c] as u32;
                acc[c] -= src[(x + 1) * 3 + c] as u32;
            }
        }
    });
}

/// One vertical box-blur pass of radius `r` (edge rows repeated): a running sum down the image,
/// touching memory row by row (no transposition).
fn box_cols(buf: &mut [u8], w: usize, h: usize, r: usize) {
    if r == 0 || h == 0 {
        return;
    }
    let norm = 1.0 / (2 * r + 1) as f32;
    let stride = w * 3;
    let src = buf.to_vec();
    let row = |y: i64| -> &[u8] {
        let yy = y.clamp(0, h as i64 - 1) as usize;
        &src[yy * stride..(yy + 1) * stride]
    };
    let mut acc = vec![0u32; stride];
    for k in -(r as i64)..=r as i64 {
        for (a, v) in acc.iter_mut().zip(row(k)) {
            *a += *v as u32;
        }
    }
    for y in 0..h {
        let out = &mut buf[y * stride..(y + 1) * stride];
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = (*a as f32 * norm + 0.5) as u8;
        }
        let add = row(y as i64 + r as i64 + 1);
        let sub = row(y as i64 - r as i64);
        for ((a, ad), sb) in acc.iter_mut().zip(add).zip(sub) {
            *a = *a + *ad as u32 - *sb as u32;
        }
    }
}

/// Approximate Gaussian blur (three box passes each way).
fn gaussian_blur(buf: &mut [u8], w: usize, h: usize, sigma: f64) {
    // Box radius whose three-fold convolution has variance ~ sigma^2.
    let r = (((12.0 * sigma * sigma / 3.0 + 1.0).sqrt() - 1.0) / 2.0).round() as usize;
    if r == 0 {
        return;
    }
    for _ in 0..3 {
        box_rows(buf, w, r);
    }
    for _ in 0..3 {
        box_cols(buf, w, h, r);
    }
}

/// Size of the table of normal deviates used for per-pixel noise (indexed by 16 hash bits).
const NOISE_TABLE: usize = 1 << 16;

/// Signal-dependent sensor noise: luminance noise plus weaker chroma noise.
fn add_noise(buf: &mut [u8], w: usize, _h: usize, sigma: f32, seed: u64) {
    let table: Vec<f32> = (0..NOISE_TABLE as u64)
        .map(|i| gauss(mix(seed ^ (i << 20) ^ 0x5EED)))
        .collect();
    buf.par_chunks_mut(w * 3).enumerate().for_each(|(y, row)| {
        // xorshift64* stream per row, seeded from (seed, row): independent of threads.
        let mut state = mix(seed ^ 0xA5A5 ^ ((y as u64) << 32)) | 1;
        for x in 0..w {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let hsh = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let l = table[(hsh >> 48) as usize];
            let cn = table[((hsh >> 32) & 0xFFFF) as usize];
            for c in 0..3 {
                let v = row[x * 3 + c] as f32;
                // Darker pixels are noisier (shot noise dominates in shadows of a phone sensor).
                let s = sigma * (1.3 - 0.6 * v / 255.0);
                let chroma = if c == 1 { -cn } else { cn } * 0.35;
                row[x * 3 + c] = (v + s * (l + chroma)).clamp(0.0, 255.0) as u8;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn homography_fits_page_in_frame() {
        for seed in 0..50 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let cond = random_conditions(&mut rng, false);
            let frame = frame_size((1500, 2000), &cond);
            let h = homography(&cond, (600.0, 900.0), frame);
            for (x, y) in [(0.0, 0.0), (600.0, 0.0), (0.0, 900.0), (600.0, 900.0)] {
                let p = apply(&h, x, y);
                assert!(p[0] >= -1.0 && p[0] <= frame.0 as f64 + 1.0, "{seed} {p:?}");
                assert!(p[1] >= -1.0 && p[1] <= frame.1 as f64 + 1.0, "{seed} {p:?}");
            }
        }
    }

    #[test]
    fn curl_is_bounded() {
        let c = Curl::new(7, 2.0, (600.0, 900.0));
        for i in 0..100 {
            let d = c.at(i as f64 * 6.0, i as f64 * 9.0);
            assert!(d[0].hypot(d[1]) <= 2.0 + 1e-9);
        }
    }

    #[test]
    fn blur_keeps_flat_image_flat() {
        let mut b = vec![100u8; 30 * 20 * 3];
        gaussian_blur(&mut b, 30, 20, 2.0);
        assert!(b.iter().all(|&v| v == 100));
    }
}
