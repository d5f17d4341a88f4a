//! `rekap synth`: realistic synthetic photos of filled forms with exact ground truth.
//!
//! One submission = one photo per template page (`page{N}.jpg`) + `truth.json`
//! ([`truth::Truth`], documented in docs/truth.md). Stages:
//! [`fill`] (plausible, rule-consistent numbers and officer errors), [`draw`] (printed artwork from
//! the template, or a given blank page image), [`hand`] (handwriting from IDX digit images,
//! X marks, tally strokes, bubble fills), [`camera`] (perspective, light, blur, noise, JPEG).
//!
//! Determinism: submission `index` of a run with `seed` uses a ChaCha8 stream `(seed, index)` only,
//! so its bytes do not depend on `--jobs` or on the other submissions.

pub mod camera;
pub mod draw;
pub mod fill;
pub mod hand;
pub mod idx;
pub mod truth;

use crate::template::{FieldKind, Page, Template};
use draw::Canvas;
use idx::DigitBank;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use truth::{FieldTruth, PageTruth, Truth};

/// Errors from the synthetic generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {message}")]
    Output { path: String, message: String },
    #[error("digit images {path}: {message}")]
    Digits { path: String, message: String },
    #[error("template: {message}")]
    Template { message: String },
    #[error("bad --size `{spec}`: {message}")]
    Size { spec: String, message: String },
    #[error("image {path}: {message}")]
    Image { path: String, message: String },
}

/// Smallest and largest accepted photo side in pixels.
pub const MIN_SIDE: u32 = 320;
pub const MAX_SIDE: u32 = 12_000;
/// Largest accepted photo area (pixels); 48 MP covers every current phone.
pub const MAX_PIXELS: u64 = 48_000_000;

/// Photo size: a fixed portrait `width x height`, or a random choice per page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    Fixed(u32, u32),
    Mixed,
}

/// Named sizes (portrait, 3:4 like phone cameras).
pub const SIZE_12MP: (u32, u32) = (3000, 4000);
pub const SIZE_3MP: (u32, u32) = (1500, 2000);
pub const SIZE_1_5MP: (u32, u32) = (1062, 1416);

impl FromStr for SizeSpec {
    type Err = SynthError;
    fn from_str(s: &str) -> Result<Self, SynthError> {
        let bad = |m: &str| SynthError::Size {
            spec: s.to_string(),
            message: m.to_string(),
        };
        let t = s.trim().to_ascii_lowercase();
        let (w, h) = match t.as_str() {
            "mixed" => return Ok(SizeSpec::Mixed),
            "12mp" => SIZE_12MP,
            "3mp" => SIZE_3MP,
            "1.5mp" => SIZE_1_5MP,
            _ => {
                let Some((a, b)) = t.split_once('x') else {
                    return Err(bad(
                        "use 12mp, 3mp, 1.5mp, mixed or WIDTHxHEIGHT (e.g. 1500x2000)",
                    ));
                };
                let w = a
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| bad("width is not a whole number"))?;
                let h = b
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| bad("height is not a whole number"))?;
                (w, h)
            }
        };
        if w < MIN_SIDE || h < MIN_SIDE || w > MAX_SIDE || h > MAX_SIDE {
            return Err(bad(&format!(
                "each side must be {MIN_SIDE}..={MAX_SIDE} pixels"
            )));
        }
        if w as u64 * h as u64 > MAX_PIXELS {
            return Err(bad(&format!("at most {MAX_PIXELS} pixels")));
        }
        Ok(SizeSpec::Fixed(w, h))
    }
}

/// Generator options (see `rekap synth --help`).
#[derive(Debug, Clone)]
pub struct Options {
    pub size: SizeSpec,
    /// Fraction of pages photographed as a hard case (glare, cut corner, heavy blur).
    pub hard_cases: f64,
    /// Fraction of submissions carrying one deliberate officer error.
    pub officer_errors: f64,
    /// Fraction of submissions photographed off a screen (every page; moire). Drawn from a
    /// stream of its own, so a set made with 0 is the same as before the option existed.
    pub screen: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            size: SizeSpec::Mixed,
            hard_cases: 0.1,
            officer_errors: 0.15,
            screen: 0.0,
        }
    }
}

/// Page raster resolutions (px/mm) the artwork is drawn at; the generator uses the coarsest one
/// that is still at least [`MIN_OVERSAMPLE`] times the photo's resolution on the page.
const PAGE_PPM_LEVELS: [f64; 4] = [1.25, 2.5, 5.0, 10.0];
/// Page raster px/mm relative to photo px/mm below which detail would be lost.
const MIN_OVERSAMPLE: f64 = 0.95;
/// Chance that a bubble field carries a stray pen mark outside the bubbles.
const STRAY_MARK_P: f64 = 0.08;

/// One generated submission, in memory.
pub struct Submission {
    pub name: String,
    pub truth: Truth,
    /// (file name, JPEG bytes), one per page.
    pub pages: Vec<(String, Vec<u8>)>,
}

/// The generator: template, handwriting, optional blank page images and cached artwork.
pub struct Generator {
    template: Template,
    bank: DigitBank,
    blank: HashMap<u32, image::RgbImage>,
    options: Options,
    cache: Mutex<HashMap<(u32, usize), Arc<Canvas>>>,
}

/// Directory name of submission `index` (0-based): `s0001`, `s0002`, ...
pub fn submission_name(index: u64) -> String {
    format!("s{:04}", index + 1)
}

/// Mixed into the seed of the stream that draws screen photos.
const SCREEN_STREAM_SALT: u64 = 0x5C2E_E4F0_70A5_0001;

/// The RNG of submission `index` of a run with `seed`.
pub fn submission_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

impl Generator {
    /// `blank` maps page numbers to blank page images (drawn artwork is used for other pages).
    pub fn new(
        template: Template,
        bank: DigitBank,
        blank: HashMap<u32, image::RgbImage>,
        options: Options,
    ) -> Result<Self, SynthError> {
        if template.pages.is_empty() {
            return Err(SynthError::Template {
                message: "the template has no pages".into(),
            });
        }
        for n in blank.keys() {
            if template.page(*n).is_none() {
                return Err(SynthError::Template {
                    message: format!("--blank-page names page {n}, which the template lacks"),
                });
            }
        }
        // Fail early if the rules do not compile.
        template.try_rules().map_err(|e| SynthError::Template {
            message: e.to_string(),
        })?;
        Ok(Generator {
            template,
            bank,
            blank,
            options,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn template(&self) -> &Template {
        &self.template
    }

    /// Printed page at resolution level `level` (shared, drawn once).
    fn artwork(&self, page: &Page, level: usize) -> Arc<Canvas> {
        let key = (page.number, level);
        if let Ok(cache) = self.cache.lock()
            && let Some(c) = cache.get(&key)
        {
            return c.clone();
        }
        let ppm = PAGE_PPM_LEVELS[level];
        let canvas = match self.blank.get(&page.number) {
            Some(img) => {
                let w = (page.width_mm * ppm).round().max(1.0) as u32;
                let h = (page.height_mm * ppm).round().max(1.0) as u32;
                let resized =
                    image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
                Canvas {
                    img: resized,
                    ppm: w as f64 / page.width_mm,
                }
            }
            None => {
                let mut c = Canvas::new(page.width_mm, page.height_mm, ppm, draw::PAPER);
                draw::draw_page(&self.template, page, &mut c);
                c
            }
        };
        let arc = Arc::new(canvas);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, arc.clone());
        }
        arc
    }

    /// Generate submission `index` (0-based) of a run with `seed`.
    pub fn submission(&self, seed: u64, index: u64) -> Result<Submission, SynthError> {
        let mut rng = submission_rng(seed, index);
        // Screen photos draw from their own stream: the main stream stays as it always was.
        let mut screen_rng = submission_rng(seed ^ SCREEN_STREAM_SALT, index);
        let screen = screen_rng.random_bool(self.options.screen.clamp(0.0, 1.0));
        let t = &self.template;
        let filled = fill::fill(t, &mut rng, self.options.officer_errors)?;
        let hand = hand::Hand::random(&mut rng);
        let name = submission_name(index);
        let mut pages = Vec::new();
        let mut page_truths = Vec::new();
        let mut page_list: Vec<&Page> = t.pages.iter().collect();
        page_list.sort_by_key(|p| p.number);
        for page in page_list {
            let mut prng = ChaCha8Rng::seed_from_u64(rng.random());
            let hard = prng.random_bool(self.options.hard_cases.clamp(0.0, 1.0));
            let mut cond = camera::random_conditions(&mut prng, hard);
            if screen {
                camera::photograph_screen(&mut screen_rng, &mut cond);
            }
            let requested = match self.options.size {
                SizeSpec::Fixed(w, h) => (w, h),
                SizeSpec::Mixed => {
                    [SIZE_12MP, SIZE_3MP, SIZE_3MP, SIZE_1_5MP][prng.random_range(0..4)]
                }
            };
            let frame = camera::frame_size(requested, &cond);
            let page_mm = (page.width_mm, page.height_mm);
            let h = camera::homography(&cond, page_mm, frame);
            let scale = camera::output_scale(&h, page_mm);
            let level = PAGE_PPM_LEVELS
                .iter()
                .position(|&p| p >= scale * MIN_OVERSAMPLE)
                .unwrap_or(PAGE_PPM_LEVELS.len() - 1);
            let t0 = std::time::Instant::now();
            let mut canvas = (*self.artwork(page, level)).clone();
            let t1 = std::time::Instant::now();
            self.write_page(page.number, &filled, &hand, &mut canvas, &mut prng);
            let t2 = std::time::Instant::now();
            let photo = camera::render(&canvas, page_mm, &cond, &h, frame);
            let t3 = std::time::Instant::now();
            let jpeg =
                encode_jpeg(&photo, cond.jpeg_quality).map_err(|message| SynthError::Image {
                    path: format!("{name}/page{}.jpg", page.number),
                    message,
                })?;
            tracing::debug!(
                page = page.number,
                artwork_ms = (t1 - t0).as_millis() as u64,
                handwriting_ms = (t2 - t1).as_millis() as u64,
                photo_ms = (t3 - t2).as_millis() as u64,
                jpeg_ms = t3.elapsed().as_millis() as u64,
                "synth page timings"
            );
            let file = format!("page{}.jpg", page.number);
            let hm = h / h[(2, 2)];
            page_truths.push(PageTruth {
                file: file.clone(),
                page: page.number,
                width: frame.0,
                height: frame.1,
                homography: [
                    hm[(0, 0)],
                    hm[(0, 1)],
                    hm[(0, 2)],
                    hm[(1, 0)],
                    hm[(1, 1)],
                    hm[(1, 2)],
                    hm[(2, 0)],
                    hm[(2, 1)],
                    hm[(2, 2)],
                ],
                conditions: cond,
            });
            pages.push((file, jpeg));
        }
        let mut fields = BTreeMap::new();
        for (id, nf) in &filled.numbers {
            fields.insert(
                id.clone(),
                FieldTruth::Number {
                    value: nf.value,
                    boxes: nf.boxes.clone(),
                },
            );
        }
        for (id, b) in &filled.bubbles {
            fields.insert(id.clone(), FieldTruth::Bubbles { filled: b.clone() });
        }
        for (id, c) in &filled.tallies {
            fields.insert(id.clone(), FieldTruth::Tally { count: *c });
        }
        Ok(Submission {
            truth: Truth {
                schema: truth::TRUTH_SCHEMA.into(),
                template: t.id.clone(),
                submission: name.clone(),
                seed,
                index,
                pages: page_truths,
                fields,
                officer_errors: filled.officer_errors,
            },
            name,
            pages,
        })
    }

    /// Handwriting of page `number` onto its canvas.
    fn write_page(
        &self,
        number: u32,
        filled: &fill::Filled,
        hand: &hand::Hand,
        c: &mut Canvas,
        rng: &mut ChaCha8Rng,
    ) {
        for f in self.template.fields.iter().filter(|f| f.page == number) {
            match f.kind {
                FieldKind::Digits | FieldKind::Date | FieldKind::RowTotals => {
                    let Some(nf) = filled.numbers.get(&f.id) else {
                        continue;
                    };
                    for (r, label) in f.boxes.iter().zip(&nf.boxes) {
                        match label.parse::<u8>() {
                            Ok(d) => {
                                let k = rng.random_range(0..self.bank.count(d).max(1));
                                if let Some(img) = self.bank.get(d, k) {
                                    hand::write_digit(c, *r, img, hand, rng);
                                }
                            }
                            Err(_) if label == "X" => hand::write_x(c, *r, hand, rng),
                            Err(_) => {}
                        }
                    }
                }
                FieldKind::Bubbles => {
                    let Some(cols) = filled.bubbles.get(&f.id) else {
                        continue;
                    };
                    let rad = f.radius_mm.unwrap_or(2.5);
                    let style = hand::BubbleFill::random(rng);
                    for (col, digits) in f.columns.iter().zip(cols) {
                        for &d in digits {
                            if let Some(centre) = col.get(d as usize) {
                                // Mostly the form's one style, sometimes another.
                                let s = if rng.random_bool(0.8) {
                                    style
                                } else {
                                    hand::BubbleFill::random(rng)
                                };
                                hand::fill_bubble(c, *centre, rad, s, hand, rng);
                            }
                        }
                    }
                    if rng.random_bool(STRAY_MARK_P)
                        && let Some(last) = f.columns.last()
                        && let Some(p) = last.get(rng.random_range(0..last.len().max(1)))
                    {
                        let at = [p[0] + rad * 2.2, p[1] + rad * rng.random_range(-0.5..0.5)];
                        hand::stray_mark(c, at, hand, rng);
                    }
                }
                FieldKind::TallyGrid => {
                    let count = filled.tallies.get(&f.id).copied().unwrap_or(0);
                    hand::write_tally(c, &f.col_edges_mm, &f.row_edges_mm, count, hand, rng);
                }
            }
        }
    }
}

/// Baseline JPEG with 4:2:0 chroma subsampling, like a phone camera (the `jpeg-encoder` crate is
/// several times faster than the `image` crate's encoder at 12 MP).
pub fn encode_jpeg(img: &image::RgbImage, quality: u8) -> Result<Vec<u8>, String> {
    let (w, h) = (
        u16::try_from(img.width()).map_err(|_| "image too wide for JPEG".to_string())?,
        u16::try_from(img.height()).map_err(|_| "image too tall for JPEG".to_string())?,
    );
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    enc.encode(img.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Write one submission to `out/<name>/` (page JPEGs and truth.json).
pub fn write_submission(out: &Path, s: &Submission) -> Result<(), SynthError> {
    let dir = out.join(&s.name);
    let werr = |p: &Path, e: std::io::Error| SynthError::Output {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| werr(&dir, e))?;
    for (file, bytes) in &s.pages {
        let p = dir.join(file);
        std::fs::write(&p, bytes).map_err(|e| werr(&p, e))?;
    }
    let p = dir.join("truth.json");
    let mut json = serde_json::to_string_pretty(&s.truth).map_err(|e| SynthError::Output {
        path: p.display().to_string(),
        message: e.to_string(),
    })?;
    json.push('\n');
    std::fs::write(&p, json).map_err(|e| werr(&p, e))?;
    Ok(())
}

/// Check that `out` is (or can be made) a writable directory.
pub fn prepare_output(out: &Path) -> Result<(), SynthError> {
    let err = |m: String| SynthError::Output {
        path: out.display().to_string(),
        message: m,
    };
    if out.exists() && !out.is_dir() {
        return Err(err("exists and is not a directory".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| err(format!("cannot create the directory: {e}")))?;
    let probe = out.join(".rekap-synth-write-test");
    std::fs::write(&probe, b"").map_err(|e| err(format!("directory is not writable: {e}")))?;
    std::fs::remove_file(&probe).map_err(|e| err(format!("cannot clean up a test file: {e}")))?;
    Ok(())
}

/// Load a blank page image (PNG/JPEG) for `--blank-page`.
pub fn load_blank_page(path: &Path) -> Result<image::RgbImage, SynthError> {
    image::open(path)
        .map(|i| i.to_rgb8())
        .map_err(|e| SynthError::Image {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            "12mp".parse::<SizeSpec>().unwrap(),
            SizeSpec::Fixed(3000, 4000)
        );
        assert_eq!(
            "1.5MP".parse::<SizeSpec>().unwrap(),
            SizeSpec::Fixed(1062, 1416)
        );
        assert_eq!("mixed".parse::<SizeSpec>().unwrap(), SizeSpec::Mixed);
        assert_eq!(
            "800x600".parse::<SizeSpec>().unwrap(),
            SizeSpec::Fixed(800, 600)
        );
        for bad in ["", "big", "10x10", "0x0", "99999x2", "axb", "20000x20000"] {
            let e = bad.parse::<SizeSpec>().unwrap_err().to_string();
            assert!(e.contains("bad --size"), "{bad}: {e}");
        }
    }
}
