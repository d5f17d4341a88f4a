//! Evidence images for the report's gallery: every silent error and a sample of flagged
//! fields, each with the crop of its boxes. A crop written by `rekap process --crops` is embedded
//! as is; otherwise one is cut from the photo on the fly (rectified through the box corners).

use super::metrics::FieldOutcome;
use crate::align::Homography;
use crate::align::sample::bilinear;
use crate::decide::{FieldSource, FieldStatus};
use base64::Engine;
use image::GrayImage;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Height of a crop cut on the fly, pixels (the box height; margins come on top).
const CUT_BOX_HEIGHT_PX: f64 = 64.0;
/// Widest crop cut on the fly, pixels (a 4-box field at 64 px is about 200 px wide).
const CUT_MAX_WIDTH_PX: f64 = 600.0;
/// Margin around the boxes, as a share of the box height (shows the printed lines).
const CUT_MARGIN: f64 = 0.25;
/// Grey shown where the crop leaves the photo.
const OFF_PHOTO_GREY: u8 = 128;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    SilentError,
    Flag,
}

#[derive(Debug, Clone, Serialize)]
pub struct GalleryCase {
    pub kind: CaseKind,
    pub outcome: FieldOutcome,
    /// `data:image/png;base64,...`, when a crop could be found or cut.
    #[serde(skip)]
    pub image: Option<String>,
    /// Where the image came from, or why there is none.
    pub image_note: String,
}

/// Every silent error, then up to `max_flags` flagged fields spread evenly over all flagged
/// fields (misread ones first, so the sample shows what the flags caught).
pub fn select_cases(fields: &[FieldOutcome], max_flags: usize) -> Vec<GalleryCase> {
    let case = |kind, f: &FieldOutcome| GalleryCase {
        kind,
        outcome: f.clone(),
        image: None,
        image_note: String::new(),
    };
    let mut out: Vec<GalleryCase> = fields
        .iter()
        .filter(|f| f.silent_error())
        .map(|f| case(CaseKind::SilentError, f))
        .collect();
    let mut flagged: Vec<&FieldOutcome> = fields
        .iter()
        .filter(|f| f.status == FieldStatus::Flagged)
        .collect();
    flagged.sort_by_key(|f| f.correct);
    let n = flagged.len();
    let take = n.min(max_flags);
    for k in 0..take {
        // Evenly spaced indices 0 .. n-1.
        out.push(case(CaseKind::Flag, flagged[k * n / take.max(1)]));
    }
    out
}

/// Resolve a path named in the results: as given, else relative to each of `bases`.
fn resolve(p: &str, bases: &[PathBuf]) -> Option<PathBuf> {
    let path = Path::new(p);
    if path.exists() {
        return Some(path.to_path_buf());
    }
    bases.iter().map(|b| b.join(p)).find(|c| c.exists())
}

fn data_uri(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// Cut a field's boxes out of a photo, upright: the quad from the first box's left edge to the
/// last box's right edge is mapped to a rectangle. Returns PNG bytes.
pub fn cut_crop(photo: &GrayImage, boxes_px: &[[[f64; 2]; 4]]) -> Option<Vec<u8>> {
    let (first, last) = (boxes_px.first()?, boxes_px.last()?);
    // Corners: top-left, top-right, bottom-right, bottom-left.
    let quad = [first[0], last[1], last[2], first[3]];
    let box_h = dist(quad[0], quad[3]).max(1.0);
    let aspect = dist(quad[0], quad[1]) / box_h;
    let h = CUT_BOX_HEIGHT_PX;
    let w = (h * aspect).clamp(1.0, CUT_MAX_WIDTH_PX);
    let rect = [[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]];
    let hm = Homography::fit(&rect, &quad)?;
    let m = (h * CUT_MARGIN).round();
    let (ow, oh) = ((w + 2.0 * m).round() as u32, (h + 2.0 * m).round() as u32);
    let mut out = GrayImage::new(ow, oh);
    for (x, y, px) in out.enumerate_pixels_mut() {
        let p = [f64::from(x) + 0.5 - m, f64::from(y) + 0.5 - m];
        let v = hm
            .apply(p)
            .and_then(|q| bilinear(photo, q[0], q[1]))
            .map(|g| g.round().clamp(0.0, 255.0) as u8)
            .unwrap_or(OFF_PHOTO_GREY);
        *px = image::Luma([v]);
    }
    let mut png = Vec::new();
    out.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .ok()?;
    Some(png)
}

/// Fill in `image` for every case: the `--crops` PNG when it exists, else a crop cut from the
/// photo (each photo decoded once). Relative paths are tried as given, then under `bases`.
pub fn attach_images(cases: &mut [GalleryCase], bases: &[PathBuf]) {
    let mut by_photo: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, c) in cases.iter_mut().enumerate() {
        let Some(src) = c.outcome.source.as_ref() else {
            c.image_note = "no source (page not read)".into();
            continue;
        };
        if let Some(crop) = src.crop.as_deref()
            && let Some(bytes) = resolve(crop, bases).and_then(|p| std::fs::read(p).ok())
        {
            c.image = Some(data_uri(&bytes));
            c.image_note = format!("crop {crop}");
            continue;
        }
        by_photo.entry(src.file.clone()).or_default().push(i);
    }
    let groups: Vec<(String, Vec<usize>)> = by_photo.into_iter().collect();
    let sources: Vec<Vec<(usize, FieldSource)>> = groups
        .iter()
        .map(|(_, idx)| {
            idx.iter()
                .filter_map(|&i| cases[i].outcome.source.clone().map(|s| (i, s)))
                .collect()
        })
        .collect();
    let cut: Vec<Vec<(usize, Result<String, String>)>> = groups
        .par_iter()
        .zip(sources.par_iter())
        .map(|((file, _), srcs)| {
            let photo = resolve(file, bases)
                .ok_or_else(|| format!("photo {file} not found"))
                .and_then(|p| crate::load::load_photo(&p).map_err(|e| e.to_string()));
            srcs.iter()
                .map(|(i, s)| {
                    let r = match &photo {
                        Ok(ph) => cut_crop(&ph.gray, &s.boxes_px)
                            .map(|png| data_uri(&png))
                            .ok_or_else(|| "could not cut a crop".to_string()),
                        Err(e) => Err(e.clone()),
                    };
                    (*i, r)
                })
                .collect()
        })
        .collect();
    for (i, r) in cut.into_iter().flatten() {
        match r {
            Ok(uri) => {
                cases[i].image = Some(uri);
                cases[i].image_note = "cut from the photo".into();
            }
            Err(e) => cases[i].image_note = e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_crop_is_upright_for_a_rotated_page() {
        // Photo: left half black, right half white. The field lies rotated a quarter turn: its
        // top edge runs down the photo at x = 80 (white side), its bottom edge at x = 20 (black).
        let photo =
            GrayImage::from_fn(100, 100, |x, _| image::Luma([if x < 50 { 0 } else { 255 }]));
        let boxes = [[[80.0, 20.0], [80.0, 80.0], [20.0, 80.0], [20.0, 20.0]]];
        let png = cut_crop(&photo, &boxes).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_luma8();
        let (w, h) = img.dimensions();
        // Square box: 64 px high and wide, plus the margins.
        let m = (CUT_BOX_HEIGHT_PX * CUT_MARGIN).round() as u32;
        assert_eq!((w, h), (64 + 2 * m, 64 + 2 * m));
        assert_eq!(
            img.get_pixel(w / 2, m + 4)[0],
            255,
            "top of the field is the white side"
        );
        assert_eq!(
            img.get_pixel(w / 2, h - m - 4)[0],
            0,
            "bottom is the black side"
        );
    }

    #[test]
    fn sample_keeps_silent_errors_and_caps_flags() {
        let f = |status, correct| FieldOutcome {
            submission: "s".into(),
            field: "f".into(),
            page: Some(1),
            truth: Some(1),
            truth_boxes: vec![],
            read: Some(if correct { 1 } else { 2 }),
            read_boxes: vec![],
            status,
            confidence: 0.5,
            reading_confidence: None,
            reading_floor: 0.0,
            flags: vec![],
            correct,
            officer_related: false,
            source: None,
        };
        let mut fields = vec![f(FieldStatus::Accepted, false); 3];
        fields.extend(vec![f(FieldStatus::Flagged, true); 100]);
        fields.push(f(FieldStatus::Flagged, false));
        fields.push(f(FieldStatus::Accepted, true));
        let cases = select_cases(&fields, 10);
        assert_eq!(
            cases
                .iter()
                .filter(|c| c.kind == CaseKind::SilentError)
                .count(),
            3
        );
        let flags: Vec<_> = cases.iter().filter(|c| c.kind == CaseKind::Flag).collect();
        assert_eq!(flags.len(), 10);
        // The misread flagged field comes first in the sample.
        assert!(!flags[0].outcome.correct);
    }
}
