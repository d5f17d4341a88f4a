//! Pixel sampling helpers shared by `align` and `segment`.

use image::GrayImage;

/// Bilinear sample at continuous pixel coordinates (pixel centres at +0.5). Outside the image the
/// nearest edge pixel is used, and `None` is returned when the point is farther than one pixel
/// outside (so callers can tell "off the photo" from "white paper").
#[inline]
pub fn bilinear(img: &GrayImage, x: f64, y: f64) -> Option<f64> {
    let (w, h) = img.dimensions();
    if !(x >= -1.0 && y >= -1.0 && x <= w as f64 + 1.0 && y <= h as f64 + 1.0) {
        return None;
    }
    let fx = (x - 0.5).clamp(0.0, (w - 1) as f64);
    let fy = (y - 0.5).clamp(0.0, (h - 1) as f64);
    // fx, fy >= 0 after the clamp, so truncation is floor (and avoids a libm call per sample).
    let x0 = fx as u32;
    let y0 = fy as u32;
    let x1 = (x0 + 1).min(w - 1);
    let y1 = (y0 + 1).min(h - 1);
    let ax = fx - x0 as f64;
    let ay = fy - y0 as f64;
    let raw = img.as_raw();
    let wu = w as usize;
    let p = |xx: u32, yy: u32| raw[yy as usize * wu + xx as usize] as f64;
    let top = p(x0, y0) * (1.0 - ax) + p(x1, y0) * ax;
    let bot = p(x0, y1) * (1.0 - ax) + p(x1, y1) * ax;
    Some(top * (1.0 - ay) + bot * ay)
}

/// Downscale by an integer factor with box averaging (fast, alias-free enough for detection).
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

fn downscale_k<const K: usize>(img: &GrayImage) -> GrayImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = ((w / K).max(1), (h / K).max(1));
    let raw = img.as_raw();
    let mut out = vec![0u8; ow * oh];
    let mut acc = vec![0u32; ow];
    let n = (K * K) as u32;
    for oy in 0..oh {
        acc.iter_mut().for_each(|a| *a = 0);
        for dy in 0..K {
            let start = (oy * K + dy) * w;
            let row = &raw[start..start + ow * K];
            for (a, chunk) in acc.iter_mut().zip(row.chunks_exact(K)) {
                let mut s = 0u32;
                for &v in chunk.iter().take(K) {
                    s += u32::from(v);
                }
                *a += s;
            }
        }
        for (o, a) in out[oy * ow..(oy + 1) * ow].iter_mut().zip(&acc) {
            *o = ((a + n / 2) / n) as u8;
        }
    }
    GrayImage::from_raw(ow as u32, oh as u32, out)
        .unwrap_or_else(|| GrayImage::new(ow as u32, oh as u32))
}

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
            let start = (oy * f + dy) * w;
            let row = &raw[start..start + ow * f];
            for (a, chunk) in acc.iter_mut().zip(row.chunks_exact(f)) {
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
    fn bilinear_hits_pixel_centres_exactly() {
        let img = GrayImage::from_fn(4, 3, |x, y| image::Luma([(x * 10 + y * 50) as u8]));
        assert_eq!(bilinear(&img, 2.5, 1.5), Some(70.0));
        assert_eq!(bilinear(&img, 2.0, 1.5), Some(65.0));
        assert!(bilinear(&img, -5.0, 1.0).is_none());
    }

    #[test]
    fn downscale_fast_paths_match_the_general_one() {
        let img = GrayImage::from_fn(37, 29, |x, y| image::Luma([((x * 7 + y * 13) % 256) as u8]));
        for k in 2..=5u32 {
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
