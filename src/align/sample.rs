//! Pixel sampling helpers shared by `align` and `segment`.

use image::GrayImage;

/// Bilinear sample at continuous pixel coordinates (pixel centres at +0.5). Outside the image the
/// nearest edge pixel is used, and `None` is returned when the point is farther than one pixel
/// outside (so callers can tell "off the photo" from "white paper").
#[inline]
pub fn bilinear(img: &GrayImage, x: f64, y: f64) -> Option<f64> {
    Sampler::new(img).at(x, y)
}

/// `GREY_F64[v] == f64::from(v)` for every grey level `v`.
static GREY_F64: [f64; 256] = {
    let mut t = [0.0; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as f64;
        i += 1;
    }
    t
};

/// [`bilinear`] with the image's dimensions hoisted, for loops that sample one image many times.
/// Gives bit-for-bit the same values as [`bilinear`].
#[derive(Clone, Copy)]
pub struct Sampler<'a> {
    raw: &'a [u8],
    w: u32,
    h: u32,
    /// Largest valid pixel index per axis, as f64 (the clamp bounds).
    xmax: f64,
    ymax: f64,
    /// Farthest accepted coordinate per axis (one pixel beyond the edge).
    xlim: f64,
    ylim: f64,
}

impl<'a> Sampler<'a> {
    pub fn new(img: &'a GrayImage) -> Self {
        let (w, h) = img.dimensions();
        Self {
            raw: img.as_raw(),
            w,
            h,
            xmax: w.saturating_sub(1) as f64,
            ymax: h.saturating_sub(1) as f64,
            xlim: w as f64 + 1.0,
            ylim: h as f64 + 1.0,
        }
    }

    /// See [`bilinear`].
    #[inline(always)]
    pub fn at(&self, x: f64, y: f64) -> Option<f64> {
        if !(x >= -1.0 && y >= -1.0 && x <= self.xlim && y <= self.ylim)
            || self.w == 0
            || self.h == 0
        {
            return None;
        }
        let fx = (x - 0.5).clamp(0.0, self.xmax);
        let fy = (y - 0.5).clamp(0.0, self.ymax);
        // fx, fy >= 0 after the clamp, so truncation is floor (and avoids a libm call per sample).
        let x0 = fx as u32;
        let y0 = fy as u32;
        let x1 = (x0 + 1).min(self.w - 1);
        let y1 = (y0 + 1).min(self.h - 1);
        let ax = fx - x0 as f64;
        let ay = fy - y0 as f64;
        let wu = self.w as usize;
        let (r0, r1) = (y0 as usize * wu, y1 as usize * wu);
        // Grey levels as f64 through a table (a load from L1) rather than an integer-to-float
        // conversion per pixel; the same values.
        let p = |i: usize| self.raw.get(i).map_or(0.0, |&v| GREY_F64[usize::from(v)]);
        let top = p(r0 + x0 as usize) * (1.0 - ax) + p(r0 + x1 as usize) * ax;
        let bot = p(r1 + x0 as usize) * (1.0 - ax) + p(r1 + x1 as usize) * ax;
        Some(top * (1.0 - ay) + bot * ay)
    }
}

avx2_clone! {
/// Downscale by an integer factor with box averaging (fast, alias-free enough for detection).
///
/// Compiled twice (`avx2_clone!`, as are the other hot loops after decoding: `align::dark_mask`,
/// `segment::sample_rect`, `align::snap::score`): the baseline build cannot vectorise its
/// stride-3 sums.
pub fn downscale(img: &GrayImage, factor: u32) -> GrayImage {
    // Common factors get a monomorphised inner loop the compiler can unroll and vectorise.
    match factor {
        0 | 1 => img.clone(),
        2 => downscale_k::<2>(img),
        3 => downscale_k::<3>(img),
        4 => downscale_k::<4>(img),
        f => downscale_dyn(img, f as usize),
    }
}
}

#[inline(always)]
fn downscale_k<const K: usize>(img: &GrayImage) -> GrayImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = ((w / K).max(1), (h / K).max(1));
    if w < K || h < K {
        return downscale_dyn(img, K);
    }
    let raw = img.as_raw();
    let mut out = vec![0u8; ow * oh];
    // Column sums of the K rows of one output row; K * 255 fits u16 for K <= 257, so the
    // vertical pass is a plain vectorisable add over whole rows.
    let mut cols = vec![0u16; ow * K];
    let mut sums = vec![0u16; ow];
    const { assert!(K >= 2 && K <= 15) };
    let n16 = (K * K) as u16;
    for (oy, orow) in out.chunks_exact_mut(ow).enumerate() {
        cols.iter_mut().for_each(|a| *a = 0);
        for dy in 0..K {
            let start = (oy * K + dy) * w;
            for (a, &v) in cols.iter_mut().zip(&raw[start..start + ow * K]) {
                *a += u16::from(v);
            }
        }
        // Block sums in u16 (at most K * K * 255 + K * K / 2 < 2^16 for K <= 15), then the
        // rounded mean (half up), in two simple loops the compiler vectorises.
        for (s, chunk) in sums.iter_mut().zip(cols.chunks_exact(K)) {
            *s = chunk.iter().sum::<u16>();
        }
        for (o, &s) in orow.iter_mut().zip(&sums) {
            *o = ((s + n16 / 2) / n16) as u8;
        }
    }
    GrayImage::from_raw(ow as u32, oh as u32, out)
        .unwrap_or_else(|| GrayImage::new(ow as u32, oh as u32))
}

#[inline(always)]
fn downscale_dyn(img: &GrayImage, f: usize) -> GrayImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = ((w / f).max(1), (h / f).max(1));
    let raw = img.as_raw();
    let mut out = vec![0u8; ow * oh];
    let mut acc = vec![0u32; ow];
    let n = (f * f) as u32;
    for oy in 0..oh {
        acc.iter_mut().for_each(|a| *a = 0);
        for dy in 0..f {
            // A side shorter than the factor (a sliver of an image) repeats its last row and
            // leaves missing columns dark instead of reading past the buffer.
            let start = (oy * f + dy).min(h - 1) * w;
            let row = &raw[start..start + (ow * f).min(w)];
            for (a, chunk) in acc.iter_mut().zip(row.chunks(f)) {
                *a += chunk.iter().map(|&v| u32::from(v)).sum::<u32>();
            }
        }
        for (o, a) in out[oy * ow..(oy + 1) * ow].iter_mut().zip(&acc) {
            *o = ((a + n / 2) / n) as u8;
        }
    }
    GrayImage::from_raw(ow as u32, oh as u32, out)
        .unwrap_or_else(|| GrayImage::new(ow as u32, oh as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grey_table_holds_every_level() {
        for v in 0..=255u8 {
            assert_eq!(GREY_F64[usize::from(v)].to_bits(), f64::from(v).to_bits());
        }
        // Through the sampler: a pixel centre reads its own level, for every level.
        let img = GrayImage::from_fn(256, 1, |x, _| image::Luma([x as u8]));
        let s = Sampler::new(&img);
        for x in 0..256u32 {
            assert_eq!(s.at(f64::from(x) + 0.5, 0.5), Some(f64::from(x)));
        }
    }

    #[test]
    fn bilinear_hits_pixel_centres_exactly() {
        let img = GrayImage::from_fn(4, 3, |x, y| image::Luma([(x * 10 + y * 50) as u8]));
        assert_eq!(bilinear(&img, 2.5, 1.5), Some(70.0));
        assert_eq!(bilinear(&img, 2.0, 1.5), Some(65.0));
        assert!(bilinear(&img, -5.0, 1.0).is_none());
    }

    #[test]
    fn downscale_fast_paths_match_the_general_one() {
        let img = GrayImage::from_fn(37, 29, |x, y| image::Luma([((x * 7 + y * 13) % 256) as u8]));
        let tiny = GrayImage::from_fn(2, 3, |x, y| image::Luma([(x * 90 + y * 40) as u8]));
        for k in 2..=5u32 {
            assert_eq!(
                downscale(&tiny, k),
                downscale_dyn(&tiny, k as usize),
                "tiny {k}"
            );
            assert_eq!(
                downscale(&img, k),
                downscale_dyn(&img, k as usize),
                "factor {k}"
            );
        }
    }

    #[test]
    fn downscale_averages_blocks() {
        let img = GrayImage::from_fn(4, 4, |x, _| image::Luma([if x < 2 { 0 } else { 200 }]));
        let d = downscale(&img, 2);
        assert_eq!(d.dimensions(), (2, 2));
        assert_eq!(d.get_pixel(0, 0)[0], 0);
        assert_eq!(d.get_pixel(1, 1)[0], 200);
    }
}
