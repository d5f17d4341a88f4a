//! The reading pipeline: photos of one polling station (a submission) in, one
//! [`SubmissionReport`] out. Stages: [`crate::load`] -> [`crate::align`] -> [`crate::segment`]
//! -> [`crate::recognize`] -> [`crate::decide`].

use crate::align::{self, Alignment, Homography, snap};
use crate::decide::{
    self, CheckReport, DecideConfig, FieldEvidence, FieldReport, FieldSource, Flag, FlagCode,
};
use crate::load;
use crate::recognize::{Model, ModelPool, Prediction};
use crate::segment::{self, normalize};
use crate::template::{FieldKind, Template};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Results format version.
pub const RESULTS_SCHEMA: &str = "rekap-results/1";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionStatus {
    Accepted,
    NeedsReview,
    Failed,
}

/// One input photo and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageReport {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Page number from the tag; null when the photo could not be identified.
    pub page: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alignment: Option<Alignment>,
    /// Set when this photo's reading was not used (duplicate page).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set when the page showed a screen's pixel lattice (a photo of a screen): the page's fine
    /// texture in grey levels; its boxes were read through descreening (`segment::cut_page`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen_texture: Option<f64>,

    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// Milliseconds spent per stage (summed over the submission's pages).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    pub decode_ms: f64,
    pub align_ms: f64,
    pub segment_ms: f64,
    pub recognize_ms: f64,
    pub decide_ms: f64,
}

/// The result for one submission (one line of the results JSONL).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmissionReport {
    pub schema: String,
    pub submission: String,
    pub status: SubmissionStatus,
    pub template: String,
    pub model: String,
    /// The decision settings the fields were judged with (absent in results written before
    /// they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<DecideConfig>,
    pub pages: Vec<PageReport>,
    pub fields: BTreeMap<String, FieldReport>,
    pub checks: Vec<CheckReport>,
    pub flags: Vec<Flag>,
    pub timings: Timings,
}

/// A field's boxes cut on a page, waiting for the model: where its tensors start in the page's
/// batch, how many there are, and what the crops said about them.
struct PendingField {
    id: String,
    start: usize,
    n: usize,
    off_photo: bool,
    doubtful: Vec<usize>,
    quiet: Vec<usize>,
    source: FieldSource,
}

/// Everything read from one photo before recognition is merged.
struct PageRead {
    report: PageReport,
    evidence: Vec<FieldEvidence>,
    timings: Timings,
}

/// Where `--crops` writes field crops, and at what resolution.
pub const CROP_PX_PER_MM: f64 = 4.0;
/// A page is read only when at least this many mark squares took part in its homography:
/// three of the four corner marks (two squares each). With fewer the page is identified (by its
/// tag) but the pose far from the marks seen is off by centimetres (measured on cut-corner
/// synth photos: 3-100 mm), so its fields are reported missing with the reason.
pub const MIN_SQUARES_TO_READ: usize = 6;

/// Is a page with this alignment identified but not read (see [`MIN_SQUARES_TO_READ`])?
fn left_unread(a: &align::Alignment) -> bool {
    a.squares_used < MIN_SQUARES_TO_READ
}
/// Margin around a field's boxes in its crop, mm.
const CROP_MARGIN_MM: f64 = 2.0;

pub struct Pipeline<M: Model> {
    pub template: Template,
    pub config: DecideConfig,
    pub pool: ModelPool<M>,
    pub model_name: String,
    /// Write each field's crop under this directory (`<dir>/<submission>/<field>.png`).
    pub crops_dir: Option<PathBuf>,
}

impl<M: Model> Pipeline<M> {
    /// Read one submission made of `files` (page photos in any order).
    pub fn process_submission(&self, name: &str, files: &[PathBuf]) -> SubmissionReport {
        let reads: Vec<PageRead> = files.par_iter().map(|f| self.read_page(name, f)).collect();
        self.assemble(name, reads)
    }

    fn read_page(&self, submission: &str, file: &Path) -> PageRead {
        let mut timings = Timings::default();
        let fname = file.display().to_string();
        let mut report = PageReport {
            file: fname.clone(),
            sha256: None,
            page: None,
            alignment: None,
            superseded: false,
            error: None,
            screen_texture: None,
            width: None,
            height: None,
        };
        let t0 = Instant::now();
        let loaded = load::read_file(file).and_then(|data| {
            load::decode_photo(&data, &fname).inspect_err(|_| {
                // An unreadable upload is still named by its bytes, so a reviewer can tell
                // which file it was; one that cannot even be read has none.
                report.sha256 = Some(load::sha256_hex(&data));
            })
        });
        let photo = match loaded {
            Ok(p) => p,
            Err(e) => {
                report.error = Some(e.to_string());
                return PageRead {
                    report,
                    evidence: Vec::new(),
                    timings,
                };
            }
        };
        timings.decode_ms = ms(t0);
        report.sha256 = Some(photo.sha256.clone());
        report.width = Some(photo.gray.width());
        report.height = Some(photo.gray.height());
        let t1 = Instant::now();
        let al = match align::align_page(&photo.gray, &self.template) {
            Ok(a) => a,
            Err(e) => {
                timings.align_ms = ms(t1);
                report.error = Some(e.to_string());
                return PageRead {
                    report,
                    evidence: Vec::new(),
                    timings,
                };
            }
        };
        timings.align_ms = ms(t1);
        report.page = Some(al.page);
        if left_unread(&al) {
            // Identified by its tag, but with fewer than three marks the homography far from
            // them is a guess: crops would come from the wrong places. Nothing is read.
            report.error = Some(format!(
                "page {} identified by its tag, but only {} of {} registration-mark squares were \
                 found (a corner cut off or covered?): its numbers are not read; retake the photo \
                 with the whole page in view",
                al.page, al.squares_used, al.squares_expected
            ));
            report.alignment = Some(al);
            return PageRead {
                report,
                evidence: Vec::new(),
                timings,
            };
        }
        let Some(h) = al.h() else {
            report.error = Some("alignment produced a singular homography".into());
            return PageRead {
                report,
                evidence: Vec::new(),
                timings,
            };
        };
        let t2 = Instant::now();
        let gray = &photo.gray;
        let page_fields: Vec<_> = self.template.fields_on_page(al.page).collect();
        // Snap every field with boxes; channels without boxes borrow the offset of the field
        // they back up (bubbles sit right under their digit boxes).
        let offsets = snap::snap_fields(gray, &h, &page_fields);
        let offset_of = |id: &str| offsets.get(id).copied().unwrap_or_default();
        let mut tensors: Vec<normalize::DigitTensor> = Vec::new();
        let mut pending: Vec<PendingField> = Vec::new();
        let mut bubbles: HashMap<String, Vec<decide::BubbleColumn>> = HashMap::new();
        let mut tallies: HashMap<String, decide::TallyRange> = HashMap::new();
        let digit_fields = segment::snapped_digit_fields(&page_fields, &offsets);
        let page_crops = segment::cut_page(gray, &h, &digit_fields);
        let stroke_contrast = segment::tally_stroke_contrast(&page_crops);
        let trusts_empty = page_crops.trusts_empty_boxes(al.px_per_mm);
        if page_crops.descreened {
            report.screen_texture = Some(page_crops.texture);
        }
        for ((f, _, _), crops) in digit_fields.iter().zip(page_crops.fields) {
            let s = offset_of(&f.id);
            let start = tensors.len();
            let off = crops.iter().any(|c| c.off_photo > 0.0);
            let mut doubtful = Vec::new();
            let mut quiet = Vec::new();
            for (i, c) in crops.iter().enumerate() {
                let t = normalize::normalize(&c.ink);
                let empty = normalize::is_empty_tensor(&t);
                let c = segment::emptiness_view(c, f, empty, page_crops.descreened);
                if segment::is_quiet(&c, empty, trusts_empty) {
                    quiet.push(i);
                } else if segment::is_doubtful(&c, empty) {
                    doubtful.push(i);
                }
                tensors.push(t);
            }
            let crop_path = self.write_crop(submission, &f.id, gray, &h, &f.boxes, s);
            pending.push(PendingField {
                id: f.id.clone(),
                start,
                n: crops.len(),
                off_photo: off,
                doubtful,
                quiet,
                source: FieldSource {
                    file: fname.clone(),
                    sha256: photo.sha256.clone(),
                    page: al.page,
                    boxes_px: crops.iter().map(|c| c.quad_px).collect(),
                    snap_mm: [s.dx_mm, s.dy_mm],
                    crop: crop_path,
                },
            });
        }
        for f in &page_fields {
            match f.kind {
                FieldKind::Digits | FieldKind::RowTotals | FieldKind::Date => {}
                FieldKind::Bubbles => {
                    if let Some(of) = &f.of {
                        let s = offset_of(of);
                        bubbles.insert(
                            of.clone(),
                            segment::read_bubbles(gray, &h, f, s.dx_mm, s.dy_mm),
                        );
                    }
                }
                FieldKind::TallyGrid => {
                    if let Some(of) = &f.of {
                        // The grid sits beside the row totals, which borrow the snap of the
                        // field they back (`snap::snap_fields`): use that snap.
                        let s = offset_of(of);
                        let read =
                            segment::read_tally(gray, &h, f, s.dx_mm, s.dy_mm, stroke_contrast);
                        // Each row total is backed by its own row of the grid.
                        for g in page_fields.iter().filter(|g| {
                            g.kind == FieldKind::RowTotals && g.of.as_deref() == Some(of)
                        }) {
                            let row = g
                                .row
                                .and_then(|r| read.rows.get((r as usize).checked_sub(1)?));
                            if let Some(t) = row {
                                tallies.insert(g.id.clone(), *t);
                            }
                        }
                        tallies.insert(of.clone(), read.total);
                    }
                }
            }
        }
        timings.segment_ms = ms(t2);
        // Every pixel the page needs has been sampled: its buffer serves the next photo.
        load::recycle(photo);
        let t3 = Instant::now();
        let preds: Result<Vec<Prediction>, _> = self.pool.predict(&tensors);
        timings.recognize_ms = ms(t3);
        let preds = match preds {
            Ok(p) => p,
            Err(e) => {
                report.error = Some(format!("recognition failed: {e}"));
                report.alignment = Some(al);
                return PageRead {
                    report,
                    evidence: Vec::new(),
                    timings,
                };
            }
        };
        let page_good = al.good;
        let evidence = pending
            .into_iter()
            .map(|p| FieldEvidence {
                boxes: preds[p.start..p.start + p.n].to_vec(),
                bubbles: bubbles.get(&p.id).cloned(),
                tally: tallies.get(&p.id).copied(),
                page_good,
                off_photo: p.off_photo,
                doubtful: p.doubtful,
                quiet: p.quiet,
                source: Some(p.source),
                id: p.id,
            })
            .collect();
        report.alignment = Some(al);
        PageRead {
            report,
            evidence,
            timings,
        }
    }

    fn write_crop(
        &self,
        submission: &str,
        field: &str,
        gray: &image::GrayImage,
        h: &Homography,
        boxes: &[[f64; 4]],
        s: snap::Snap,
    ) -> Option<String> {
        let dir = self.crops_dir.as_ref()?.join(sanitize(submission));
        let x0 =
            boxes.iter().map(|b| b[0]).fold(f64::INFINITY, f64::min) - CROP_MARGIN_MM + s.dx_mm;
        let y0 =
            boxes.iter().map(|b| b[1]).fold(f64::INFINITY, f64::min) - CROP_MARGIN_MM + s.dy_mm;
        let x1 = boxes
            .iter()
            .map(|b| b[0] + b[2])
            .fold(f64::NEG_INFINITY, f64::max)
            + CROP_MARGIN_MM
            + s.dx_mm;
        let y1 = boxes
            .iter()
            .map(|b| b[1] + b[3])
            .fold(f64::NEG_INFINITY, f64::max)
            + CROP_MARGIN_MM
            + s.dy_mm;
        let (img, _) = segment::sample_rect(gray, h, &[x0, y0, x1 - x0, y1 - y0], CROP_PX_PER_MM);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!("cannot create crop folder {}: {e}", dir.display());
            return None;
        }
        let path = dir.join(format!("{field}.png"));
        match img.save(&path) {
            Ok(()) => Some(path.display().to_string()),
            Err(e) => {
                tracing::warn!("cannot write crop {}: {e}", path.display());
                None
            }
        }
    }

    fn assemble(&self, name: &str, mut reads: Vec<PageRead>) -> SubmissionReport {
        // Which of two photos of the same page to use: a trusted alignment first, then the one
        // built on more mark squares, then the smaller error (a fit on just four squares has
        // zero error by construction, so the error alone would prefer it).
        fn alignment_rank(a: &align::Alignment) -> (bool, std::cmp::Reverse<usize>, f64) {
            (!a.good, std::cmp::Reverse(a.squares_used), a.rms_error_mm)
        }
        let mut flags: Vec<Flag> = Vec::new();
        let mut timings = Timings::default();
        for r in &reads {
            timings.decode_ms += r.timings.decode_ms;
            timings.align_ms += r.timings.align_ms;
            timings.segment_ms += r.timings.segment_ms;
            timings.recognize_ms += r.timings.recognize_ms;
        }
        // Duplicates: keep the best-aligned photo of each page, flag the rest.
        let mut best_for_page: HashMap<u32, usize> = HashMap::new();
        for (i, r) in reads.iter().enumerate() {
            if let (Some(p), Some(a)) = (r.report.page, &r.report.alignment) {
                match best_for_page.get(&p) {
                    Some(&j) => {
                        let better = reads[j]
                            .report
                            .alignment
                            .as_ref()
                            .is_none_or(|b| alignment_rank(a) < alignment_rank(b));
                        if better {
                            best_for_page.insert(p, i);
                        }
                    }
                    None => {
                        best_for_page.insert(p, i);
                    }
                }
            }
        }
        for (i, r) in reads.iter_mut().enumerate() {
            if let Some(p) = r.report.page
                && best_for_page.get(&p) != Some(&i)
            {
                r.report.superseded = true;
                flags.push(Flag {
                    code: FlagCode::PageDuplicate,
                    message: format!(
                        "page {p} appears more than once; {} was not used",
                        r.report.file
                    ),
                    field: None,
                    rule: None,
                    page: Some(p),
                    file: Some(r.report.file.clone()),
                    channel: None,
                });
            }
            if let Some(err) = &r.report.error {
                // The size is known exactly when the file decoded.
                let code = if r.report.width.is_none() {
                    FlagCode::UnreadableFile
                } else if r.report.page.is_none() {
                    FlagCode::NotAForm
                } else if r.report.alignment.as_ref().is_some_and(left_unread) {
                    FlagCode::AlignmentPoor
                } else {
                    FlagCode::UnreadableFile
                };
                flags.push(Flag {
                    code,
                    message: format!("{}: {err}", r.report.file),
                    field: None,
                    rule: None,
                    page: r.report.page,
                    file: Some(r.report.file.clone()),
                    channel: None,
                });
            }
            // (A page left unread for its alignment already has its flag, with the reason.)
            if let Some(a) = &r.report.alignment
                && !a.good
                && !left_unread(a)
            {
                flags.push(Flag {
                    code: FlagCode::AlignmentPoor,
                    message: format!(
                        "{}: page {} aligned with {:.2} mm RMS error using {}/{} mark squares",
                        r.report.file, a.page, a.rms_error_mm, a.squares_used, a.squares_expected
                    ),
                    field: None,
                    rule: None,
                    page: Some(a.page),
                    file: Some(r.report.file.clone()),
                    channel: None,
                });
            }
        }
        for p in &self.template.pages {
            if !best_for_page.contains_key(&p.number) {
                flags.push(Flag {
                    code: FlagCode::PageMissing,
                    message: format!(
                        "page {} (tag {}) was not found among the photos",
                        p.number, p.tag.id
                    ),
                    field: None,
                    rule: None,
                    page: Some(p.number),
                    file: None,
                    channel: None,
                });
            }
        }
        // Pages identified by their tag but left unread (too few marks): their fields are
        // missing for that reason, not because the page is absent.
        let unread_pages: std::collections::HashSet<u32> = reads
            .iter()
            .filter(|r| !r.report.superseded)
            .filter_map(|r| r.report.alignment.as_ref().filter(|a| left_unread(a)))
            .map(|a| a.page)
            .collect();
        let evidence: Vec<FieldEvidence> = reads
            .iter_mut()
            .filter(|r| !r.report.superseded)
            .flat_map(|r| std::mem::take(&mut r.evidence))
            .collect();
        let t = Instant::now();
        let decision = decide::decide_pages(&self.template, &evidence, &unread_pages, &self.config);
        timings.decide_ms = ms(t);
        flags.extend(decision.flags);
        let any_page = !best_for_page.is_empty();
        let status = if !any_page {
            SubmissionStatus::Failed
        } else if flags.is_empty()
            && decision
                .fields
                .values()
                .all(|f| f.status == decide::FieldStatus::Accepted)
        {
            SubmissionStatus::Accepted
        } else {
            SubmissionStatus::NeedsReview
        };
        let mut pages: Vec<PageReport> = reads.into_iter().map(|r| r.report).collect();
        pages.sort_by(|a, b| a.page.cmp(&b.page).then(a.file.cmp(&b.file)));
        SubmissionReport {
            schema: RESULTS_SCHEMA.into(),
            submission: name.to_string(),
            status,
            template: self.template.id.clone(),
            model: self.model_name.clone(),
            settings: Some(self.config.clone()),
            pages,
            fields: decision.fields,
            checks: decision.checks,
            flags,
            timings,
        }
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// A file-system-safe version of a submission name.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// File extensions taken as page photos. Besides what rekap decodes, the formats a phone, a
/// scanner or a messaging app may hand over instead (HEIC, AVIF, TIFF, PDF...): such a file is
/// then reported as unreadable with what to do about it, where skipping it would lose a page
/// without a word.
const PHOTO_EXTENSIONS: [&str; 14] = [
    "jpg", "jpeg", "jpe", "jfif", "png", "webp", "heic", "heif", "avif", "tif", "tiff", "pdf",
    "gif", "bmp",
];

/// A page photo: a file with a photo extension (whatever its content, so that an empty or
/// broken `page1.jpg` is reported), or any other file whose first bytes are an image's or a
/// PDF's (uploads saved without an extension, or under a wrong one).
fn is_photo(p: &Path) -> bool {
    if !p.is_file() {
        return false;
    }
    let by_name = p
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PHOTO_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)));
    by_name || sniff_file(p).is_some()
}

/// [`crate::load::sniff`] on a file's first bytes; `None` when it cannot be read (a file that
/// vanished or is unreadable is not taken for a photo by its content).
fn sniff_file(p: &Path) -> Option<crate::load::FileKind> {
    use std::io::Read;
    let mut head = Vec::with_capacity(crate::load::SNIFF_BYTES);
    std::fs::File::open(p)
        .ok()?
        .take(crate::load::SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .ok()?;
    crate::load::sniff(&head)
}

/// A submission found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionInput {
    pub name: String,
    pub files: Vec<PathBuf>,
}

/// Expand command-line paths into submissions: a photo file is a submission of one page; a
/// folder holding photos is one submission; a folder of such folders is a batch. Sorted by name.
pub fn discover(paths: &[PathBuf]) -> std::io::Result<Vec<SubmissionInput>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_file() {
            out.push(SubmissionInput {
                name: p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                files: vec![p.clone()],
            });
            continue;
        }
        if !p.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no such file or folder", p.display()),
            ));
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        let photos: Vec<PathBuf> = entries.iter().filter(|e| is_photo(e)).cloned().collect();
        if !photos.is_empty() {
            out.push(SubmissionInput {
                name: p
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                files: photos,
            });
        }
        for d in entries.iter().filter(|e| e.is_dir()) {
            out.extend(discover(std::slice::from_ref(d))?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photos_are_found_by_extension_or_by_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("tps-007");
        std::fs::create_dir(&sub).expect("mkdir");
        let write =
            |name: &str, bytes: &[u8]| std::fs::write(sub.join(name), bytes).expect("write");
        // Taken by name, whatever the content: an empty page1.jpg must be reported, not skipped.
        write("page1.jpg", b"");
        write("IMG_0002.HEIC", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic");
        write("scan.jfif", &[0xFF, 0xD8, 0xFF, 0xE0]);
        // Taken by content: an upload saved without an extension, and one under a wrong name.
        write("upload-3", b"RIFF\x10\0\0\0WEBPVP8L");
        write("page4.dat", b"%PDF-1.7\n");
        // Not photos: the generator's truth, notes, a file that only starts like a BMP.
        write("truth.json", b"{\"pages\": []}");
        write("notes.txt", b"BMI of the officer");
        std::fs::create_dir(sub.join("empty-folder")).expect("mkdir");
        let subs = discover(&[dir.path().to_path_buf()]).expect("discover");
        assert_eq!(subs.len(), 1, "{subs:?}");
        let names: Vec<String> = subs[0]
            .files
            .iter()
            .map(|f| {
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "IMG_0002.HEIC",
                "page1.jpg",
                "page4.dat",
                "scan.jfif",
                "upload-3"
            ]
        );
    }
}
