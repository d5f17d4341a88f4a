//! `rekap crops --truth DIR --out PREFIX`: cut every digit box of a `rekap synth` set exactly as
//! `rekap process` does (its own alignment, snapping, segmentation and normalisation) and write
//! the normalised 28x28 tensors with their true labels as an IDX pair
//! (`PREFIX-images-idx3-ubyte.gz`, `PREFIX-labels-idx1-ubyte.gz`; labels 0-9, 10 = X,
//! 11 = blank) plus `PREFIX-meta.jsonl` (submission, field, box, page conditions).
//!
//! This is what the digit model sees in production, so it serves to train on the pipeline's own
//! crops (from sets written with MNIST's train digits) and to measure X/blank recall on crops
//! cut from synthetic photos.
//!
//! `--db DB` cuts from the review service's stored photos instead, through the homography and
//! snaps stored with the machine's reading (the boxes the reviewer saw): the boxes of every field
//! a reviewer checked, labelled with the reviewer's value ([`review_labels`]), with the photo's
//! sha256, page, field, box and label source in the meta lines: training data from reviewed
//! real photos (`train.py --extra PREFIX`).
//!
//! `--true-geometry` cuts the boxes through the truth's homography instead (no alignment, no
//! snapping): the reading alone, without alignment errors. `--score` reads every crop with the
//! model and prints (and writes as `PREFIX-score.json`) accuracy and per-class recall, for all
//! pages and for the pages without a hard case.

use crate::align::{self, Homography, snap};
use crate::eval::reviewed::{ReviewedField, reviewed_fields};
use crate::load;
use crate::recognize::{DEFAULT_MODEL_CARD, Label, ModelPool, NUM_CLASSES, OrtModel};
use crate::segment::{self, normalize};
use crate::synth::truth::{FieldTruth, Truth};
use crate::template::{DEFAULT_TEMPLATE_PATH, Field, Template};
use anyhow::Context;
use flate2::Compression;
use flate2::write::GzEncoder;
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct CropsArgs {
    /// A `rekap synth` output folder (submission folders with truth.json).
    #[arg(long, required_unless_present = "db")]
    pub truth: Option<PathBuf>,
    /// Instead of a synth set: the review service's data folder or `postgres://` URL. Cuts the
    /// boxes of the fields reviewers checked, labelled with what the reviewer recorded (see
    /// `review_labels`), for training on reviewed real photos.
    #[arg(long, value_name = "DB", conflicts_with_all = ["truth", "true_geometry"])]
    pub db: Option<PathBuf>,
    /// With a PostgreSQL `--db`: the shared photo folder.
    #[arg(long, value_name = "DIR", requires = "db")]
    pub photos: Option<PathBuf>,
    /// Output prefix, e.g. `training/data/pipeline-crops`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = DEFAULT_TEMPLATE_PATH)]
    pub template: PathBuf,
    /// Also write each box's grey crop (as sampled, before ink extraction) as
    /// `DIR/NNNNNN.png`, numbered like the IDX records, for studying ink extraction.
    #[arg(long, value_name = "DIR")]
    pub gray: Option<PathBuf>,
    /// Cut through the truth's homography (the template's true geometry on the photo) instead
    /// of rekap's own alignment and snapping.
    #[arg(long)]
    pub true_geometry: bool,
    /// Read every crop with the model and report accuracy and per-class recall.
    #[arg(long)]
    pub score: bool,
    /// Model card for `--score`.
    #[arg(long, default_value = DEFAULT_MODEL_CARD)]
    pub model: PathBuf,
}

/// Class index of a truth box label (card order).
fn class_of(label: &str) -> Option<u8> {
    match label {
        "X" => Some(10),
        "blank" | "" => Some(11),
        d if d.len() == 1 => d.parse::<u8>().ok().filter(|v| *v <= 9),
        _ => None,
    }
}

struct Sample {
    tensor: Vec<u8>,
    gray: Option<image::GrayImage>,
    label: u8,
    /// Class the model read (with `--score`).
    read: Option<u8>,
    /// The page has a hard case (glare, blur, cut off, ...).
    hard: bool,
    meta: serde_json::Value,
}

/// What became of one page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PageOutcome {
    /// Its boxes were cut.
    Cut,
    /// The photo could not be read.
    Unreadable,
    /// rekap's alignment found no page, or another page than the truth's.
    NotFound,
    /// Found, but the fit failed its checks (`alignment.good` false): `rekap process` flags
    /// every field of such a page, and its boxes can be centimetres off, so cutting them would
    /// label crops of empty paper or of a neighbouring box with this box's truth.
    PoorFit,
}

/// How the boxes of a page are located.
#[derive(Clone, Copy)]
enum Geometry {
    /// rekap's own alignment and snapping, as `rekap process` does.
    Pipeline,
    /// The truth's homography, no snapping.
    True,
}

/// rekap's own fit and snaps of a photo expected to show page `page`, as `rekap process` cuts
/// it; the page's outcome when it cannot be cut.
fn pipeline_geometry(
    gray: &image::GrayImage,
    template: &Template,
    page: u32,
    page_fields: &[&Field],
) -> Result<
    (
        Homography,
        f64,
        std::collections::HashMap<String, snap::Snap>,
    ),
    PageOutcome,
> {
    let al = align::align_page(gray, template).map_err(|_| PageOutcome::NotFound)?;
    let h = al.h().ok_or(PageOutcome::NotFound)?;
    if al.page != page {
        return Err(PageOutcome::NotFound);
    }
    if !al.good {
        return Err(PageOutcome::PoorFit);
    }
    let offsets = snap::snap_fields(gray, &h, page_fields);
    Ok((h, al.px_per_mm, offsets))
}

fn tensor_u8(t: &normalize::DigitTensor) -> Vec<u8> {
    t.iter()
        .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

fn page_samples(
    template: &Template,
    truth: &Truth,
    dir: &Path,
    page_idx: usize,
    keep_gray: bool,
    geometry: Geometry,
) -> (Vec<Sample>, PageOutcome) {
    let pt = &truth.pages[page_idx];
    let file = dir.join(&pt.file);
    let Ok(photo) = load::load_photo(&file) else {
        return (Vec::new(), PageOutcome::Unreadable);
    };
    let page_fields: Vec<&Field> = template.fields_on_page(pt.page).collect();
    let (h, px_per_mm, offsets) = match geometry {
        Geometry::Pipeline => match pipeline_geometry(&photo.gray, template, pt.page, &page_fields)
        {
            Ok(g) => g,
            Err(outcome) => return (Vec::new(), outcome),
        },
        Geometry::True => {
            let Some(h) = Homography::from_array(pt.homography) else {
                return (Vec::new(), PageOutcome::NotFound);
            };
            let centre = template
                .page(pt.page)
                .map(|p| [p.width_mm / 2.0, p.height_mm / 2.0])
                .unwrap_or_default();
            let px_per_mm = h.local_scale(centre);
            (h, px_per_mm, Default::default())
        }
    };
    let mut out = Vec::new();
    // Every field with boxes is cut (the page's texture is measured over all of them, as the
    // pipeline does); only those with truth are written.
    let fields = segment::snapped_digit_fields(&page_fields, &offsets);
    let page = segment::cut_page(&photo.gray, &h, &fields);
    for ((f, _, _), crops) in fields.iter().zip(&page.fields) {
        let Some(FieldTruth::Number { boxes, .. }) = truth.fields.get(&f.id) else {
            continue;
        };
        for (i, (c, lab)) in crops.iter().zip(boxes).enumerate() {
            let Some(label) = class_of(lab) else {
                continue;
            };
            let t = normalize::normalize(&c.ink);
            let zero = normalize::is_empty_tensor(&t);
            // What the pipeline's emptiness tests see (the printed guide left out).
            let seen = segment::emptiness_view(c, f, zero, page.descreened);
            out.push(Sample {
                tensor: tensor_u8(&t),
                label,
                read: None,
                hard: !pt.conditions.hard.is_empty(),
                gray: keep_gray.then(|| c.gray.clone()),
                meta: serde_json::json!({
                    "submission": truth.submission,
                    "file": pt.file,
                    "page": pt.page,
                    "field": f.id,
                    "box": i,
                    "label": lab,
                    "hard": pt.conditions.hard,
                    "px_per_mm": px_per_mm,
                    "paper": seen.paper,
                    "range": seen.range,
                    "zero": zero,
                    "doubtful": segment::is_doubtful(&seen, zero),
                    "washed_out": segment::washed_out(&seen),
                    "faint_score": zero.then(|| segment::faint_mark_score_outside(&seen.gray, &seen.hidden)),
                    "quiet": segment::is_quiet(&seen, zero, page.trusts_empty_boxes(px_per_mm)),
                }),
            });
        }
    }
    (out, PageOutcome::Cut)
}

/// Crops of every page of the synth set `dir`, with their truth labels; scored on the way when
/// `pool` is given. Returns the samples, the pages' outcomes and the number of submissions.
fn truth_samples(
    args: &CropsArgs,
    dir: &Path,
    template: &Template,
    pool: Option<&ModelPool<OrtModel>>,
) -> anyhow::Result<(Vec<Sample>, Outcomes, usize)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("truth.json").exists())
        .collect();
    dirs.sort();
    let truths: Vec<(PathBuf, Truth)> = dirs
        .into_iter()
        .filter_map(|d| {
            let text = std::fs::read_to_string(d.join("truth.json")).ok()?;
            match serde_json::from_str::<Truth>(&text) {
                Ok(t) => Some((d, t)),
                Err(e) => {
                    tracing::warn!("{}: bad truth.json: {e}", d.display());
                    None
                }
            }
        })
        .collect();
    let jobs: Vec<(usize, usize)> = truths
        .iter()
        .enumerate()
        .flat_map(|(i, (_, t))| (0..t.pages.len()).map(move |p| (i, p)))
        .collect();
    let geometry = if args.true_geometry {
        Geometry::True
    } else {
        Geometry::Pipeline
    };
    let bar = indicatif::ProgressBar::new(jobs.len() as u64);
    let pages: Vec<anyhow::Result<(Vec<Sample>, PageOutcome)>> = jobs
        .par_iter()
        .map(|&(i, p)| {
            let (d, t) = &truths[i];
            let (mut s, outcome) = page_samples(template, t, d, p, args.gray.is_some(), geometry);
            if let Some(pool) = pool {
                score_samples(pool, &mut s)?;
            }
            bar.inc(1);
            Ok((s, outcome))
        })
        .collect();
    bar.finish_and_clear();
    let mut samples = Vec::new();
    let mut outcomes = Outcomes::new();
    for p in pages {
        let (s, outcome) = p?;
        samples.extend(s);
        *outcomes.entry(format!("{outcome:?}")).or_default() += 1;
    }
    Ok((samples, outcomes, truths.len()))
}

/// Pages by outcome (`Cut`, `NotFound`, ...).
type Outcomes = std::collections::BTreeMap<String, usize>;

/// Class labels of a reviewed field's boxes, right-aligned from the reviewer's value: each
/// digit box gets the reviewer's digit; a leading box without a digit takes the machine's
/// reading when that was `X` or blank (the value cannot tell them apart, and the reviewer's
/// value says no digit is there), and is skipped (`None`) when the machine read a digit there
/// (a written leading zero, or a misread). A value with more digits than the field has boxes
/// labels nothing. The second element says where the label comes from.
pub fn review_labels(value: Option<i64>, read: &[Label]) -> Vec<Option<(Label, &'static str)>> {
    let n = read.len();
    let digits: Vec<u8> = match value {
        Some(v) if v >= 0 => v.to_string().bytes().map(|b| b - b'0').collect(),
        Some(_) => return vec![None; n],
        None => Vec::new(),
    };
    if digits.len() > n {
        return vec![None; n];
    }
    let lead = n - digits.len();
    (0..n)
        .map(|i| {
            if i >= lead {
                Some((Label::Digit(digits[i - lead]), "reviewer"))
            } else {
                match read[i] {
                    Label::X => Some((Label::X, "machine_x_or_blank")),
                    Label::Blank => Some((Label::Blank, "machine_x_or_blank")),
                    Label::Digit(_) => None,
                }
            }
        })
        .collect()
}

/// Crops of the boxes of every reviewed field in the review database, cut from the stored
/// photos through the geometry stored with the machine's reading (the page's homography and
/// each field's snap, as `rekap process` found them: the boxes the reviewer saw) and labelled
/// by [`review_labels`].
fn review_samples(
    db: &Path,
    photos: Option<&Path>,
    template: &Template,
    keep_gray: bool,
) -> anyhow::Result<(Vec<Sample>, Outcomes, usize)> {
    use std::collections::{BTreeMap, HashMap};
    let store = super::open_review_db(db, photos)?;
    let export = store.export()?;
    let reviewed = reviewed_fields(&export);
    let mut by_submission: HashMap<&str, Vec<&ReviewedField>> = HashMap::new();
    for f in &reviewed {
        by_submission.entry(f.submission).or_default().push(f);
    }
    let mut samples = Vec::new();
    let mut outcomes = Outcomes::new();
    let mut submissions = 0;
    for s in &export {
        let Some(mine) = by_submission.get(s.submission.as_str()) else {
            continue;
        };
        let Some(report) = store.report(s.id)? else {
            continue;
        };
        submissions += 1;
        // The photo and page each reviewed field was read from.
        let mut pages: BTreeMap<(&str, u32), Vec<&ReviewedField>> = BTreeMap::new();
        for f in mine {
            if let (Some(sha), Some(page)) = (&f.read.photo_sha256, f.read.page) {
                pages.entry((sha.as_str(), page)).or_default().push(f);
            }
        }
        for ((sha, page), fields) in pages {
            let cut = review_page_samples(
                &store,
                template,
                &report,
                &s.submission,
                (sha, page),
                &fields,
                keep_gray,
            )?;
            let outcome = match cut {
                Ok(mut cut) => {
                    samples.append(&mut cut);
                    PageOutcome::Cut
                }
                Err(outcome) => outcome,
            };
            *outcomes.entry(format!("{outcome:?}")).or_default() += 1;
        }
    }
    Ok((samples, outcomes, submissions))
}

/// The crops of one stored photo's page (`sha`, `page`) for its reviewed `fields`, cut through
/// the geometry stored in `report`; the page's outcome when it cannot be cut (the photo is
/// fetched only for a page that can be). Errors are the store's.
#[allow(clippy::too_many_arguments)]
fn review_page_samples(
    store: &crate::store::Store,
    template: &Template,
    report: &crate::pipeline::SubmissionReport,
    submission: &str,
    (sha, page): (&str, u32),
    fields: &[&ReviewedField],
    keep_gray: bool,
) -> anyhow::Result<Result<Vec<Sample>, PageOutcome>> {
    use std::collections::HashMap;
    let al = report
        .pages
        .iter()
        .find(|p| p.sha256.as_deref() == Some(sha) && p.page == Some(page))
        .and_then(|p| p.alignment.as_ref());
    let Some(al) = al else {
        return Ok(Err(PageOutcome::NotFound));
    };
    if !al.good {
        return Ok(Err(PageOutcome::PoorFit));
    }
    let Some(h) = al.h() else {
        return Ok(Err(PageOutcome::NotFound));
    };
    let Some(photo) = store
        .get_blob(sha)?
        .and_then(|(bytes, _)| load::decode_photo(&bytes, sha).ok())
    else {
        return Ok(Err(PageOutcome::Unreadable));
    };
    // Every field read from this page, with the snap it was read with (the page's texture is
    // measured over all of them, as the pipeline does).
    let offsets: HashMap<String, snap::Snap> = report
        .fields
        .iter()
        .filter_map(|(id, f)| {
            let src = f.source.as_ref()?;
            (src.sha256 == sha && src.page == page).then(|| {
                let snap = snap::Snap {
                    dx_mm: src.snap_mm[0],
                    dy_mm: src.snap_mm[1],
                    ..snap::Snap::default()
                };
                (id.clone(), snap)
            })
        })
        .collect();
    let page_fields: Vec<&Field> = template
        .fields_on_page(page)
        .filter(|f| offsets.contains_key(&f.id))
        .collect();
    let cut_fields = segment::snapped_digit_fields(&page_fields, &offsets);
    let crops = segment::cut_page(&photo.gray, &h, &cut_fields);
    let mut out = Vec::new();
    for ((tf, _, _), boxes) in cut_fields.iter().zip(&crops.fields) {
        let Some(rf) = fields.iter().find(|f| f.field == tf.id) else {
            continue;
        };
        let read: Vec<Label> = report
            .fields
            .get(&tf.id)
            .map(|r| r.boxes.iter().map(|b| b.label).collect())
            .unwrap_or_default();
        if read.len() != boxes.len() {
            continue;
        }
        let labels = review_labels(rf.read.value, &read);
        for (i, (c, lab)) in boxes.iter().zip(labels).enumerate() {
            let Some((label, source)) = lab else {
                continue;
            };
            out.push(Sample {
                tensor: tensor_u8(&normalize::normalize(&c.ink)),
                label: label.index() as u8,
                read: None,
                hard: false,
                gray: keep_gray.then(|| c.gray.clone()),
                meta: serde_json::json!({
                    "submission": submission,
                    "photo_sha256": sha,
                    "page": page,
                    "field": tf.id,
                    "box": i,
                    "label": label.to_string(),
                    "label_source": source,
                    "provenance": rf.read.provenance,
                    "reviewed_by": rf.read.reviewed_by,
                    "machine_read": read[i].to_string(),
                    "px_per_mm": al.px_per_mm,
                }),
            });
        }
    }
    Ok(Ok(out))
}

pub fn run(args: CropsArgs) -> anyhow::Result<()> {
    let template = Template::load(&super::process::project_file(&args.template))?;
    // The model is loaded before any photo is read: a bad model stops everything.
    let pool = if args.score {
        Some(
            ModelPool::<OrtModel>::ort(
                super::process::project_file(&args.model),
                crate::recognize::DEFAULT_BATCH_SIZE,
            )
            .with_context(|| format!("cannot load the digit model {}", args.model.display()))?,
        )
    } else {
        None
    };
    let (samples, outcomes, submissions) = match (&args.db, &args.truth) {
        (Some(db), _) => {
            let (mut samples, outcomes, n) =
                review_samples(db, args.photos.as_deref(), &template, args.gray.is_some())?;
            if let Some(pool) = &pool {
                score_samples(pool, &mut samples)?;
            }
            (samples, outcomes, n)
        }
        (None, Some(dir)) => truth_samples(&args, dir, &template, pool.as_ref())?,
        (None, None) => anyhow::bail!("give --truth DIR (a synth set) or --db (reviewed photos)"),
    };
    eprintln!("pages: {outcomes:?} (PoorFit: the fit failed its checks; such pages are not cut)");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    let prefix = args.out.display().to_string();
    let n = samples.len() as u32;
    let mut img = GzEncoder::new(
        std::fs::File::create(format!("{prefix}-images-idx3-ubyte.gz"))?,
        Compression::default(),
    );
    img.write_all(&0x0000_0803u32.to_be_bytes())?;
    for v in [n, 28, 28] {
        img.write_all(&v.to_be_bytes())?;
    }
    let mut lab = GzEncoder::new(
        std::fs::File::create(format!("{prefix}-labels-idx1-ubyte.gz"))?,
        Compression::default(),
    );
    lab.write_all(&0x0000_0801u32.to_be_bytes())?;
    lab.write_all(&n.to_be_bytes())?;
    let mut meta = std::io::BufWriter::new(std::fs::File::create(format!("{prefix}-meta.jsonl"))?);
    let mut counts = [0usize; 12];
    if let Some(dir) = &args.gray {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for (k, s) in samples.iter().enumerate() {
        if let (Some(dir), Some(g)) = (&args.gray, &s.gray) {
            let path = dir.join(format!("{k:06}.png"));
            g.save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        img.write_all(&s.tensor)?;
        lab.write_all(&[s.label])?;
        serde_json::to_writer(&mut meta, &s.meta)?;
        meta.write_all(b"\n")?;
        counts[s.label as usize] += 1;
    }
    img.finish()?;
    lab.finish()?;
    meta.flush()?;
    eprintln!(
        "{} crops from {} submissions; per class 0-9,X,blank: {:?}",
        n, submissions, counts
    );
    if args.score {
        let all = Score::of(samples.iter());
        let easy = Score::of(samples.iter().filter(|s| !s.hard));
        let row = |name: &str, a: String, b: String| println!("{name:<28} {a:>12} {b:>12}");
        let pct = |r: Option<f64>| r.map_or("-".to_string(), |v| format!("{:.2} %", 100.0 * v));
        row("", "all pages".into(), "no hard case".into());
        row(
            "crops",
            all.total.iter().sum::<usize>().to_string(),
            easy.total.iter().sum::<usize>().to_string(),
        );
        row("accuracy", pct(all.accuracy()), pct(easy.accuracy()));
        row(
            "digit accuracy (0-9)",
            pct(all.digit_accuracy()),
            pct(easy.digit_accuracy()),
        );
        for (name, class) in [("X recall", Label::X), ("blank recall", Label::Blank)] {
            let c = class.index();
            row(
                &format!("{name} ({} / {})", easy.right[c], easy.total[c]),
                pct(all.recall(c)),
                pct(easy.recall(c)),
            );
        }
        let path = format!("{prefix}-score.json");
        let json = serde_json::json!({
            "model": args.model,
            "geometry": if args.true_geometry { "truth" } else { "pipeline" },
            "all_pages": all.to_json(),
            "pages_without_hard_case": easy.to_json(),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {path}"))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

/// Reads each sample's tensor (the u8 one written to the IDX file, as a training run would see
/// it) with the model.
fn score_samples(pool: &ModelPool<OrtModel>, samples: &mut [Sample]) -> anyhow::Result<()> {
    let tensors: Vec<normalize::DigitTensor> = samples
        .iter()
        .map(|s| {
            let mut t = [0f32; normalize::TENSOR_LEN];
            for (d, v) in t.iter_mut().zip(&s.tensor) {
                *d = f32::from(*v) / 255.0;
            }
            t
        })
        .collect();
    let preds = pool.predict(&tensors)?;
    for (s, p) in samples.iter_mut().zip(preds) {
        s.read = Some(p.label.index() as u8);
        // Per crop in the meta file too, for researchers' own breakdowns.
        s.meta["read"] = serde_json::json!(p.label.to_string());
        s.meta["read_confidence"] = serde_json::json!(p.confidence);
        s.meta["read_top"] = serde_json::json!(
            p.top
                .iter()
                .map(|(l, q)| (l.to_string(), *q))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// Per-class counts of crops (`total`) and of crops read as their true class (`right`).
struct Score {
    total: [usize; NUM_CLASSES],
    right: [usize; NUM_CLASSES],
}

impl Score {
    fn of<'a>(samples: impl Iterator<Item = &'a Sample>) -> Score {
        let mut s = Score {
            total: [0; NUM_CLASSES],
            right: [0; NUM_CLASSES],
        };
        for x in samples {
            let c = usize::from(x.label);
            if c < NUM_CLASSES {
                s.total[c] += 1;
                s.right[c] += usize::from(x.read == Some(x.label));
            }
        }
        s
    }
    fn ratio(right: usize, total: usize) -> Option<f64> {
        (total > 0).then(|| right as f64 / total as f64)
    }
    fn recall(&self, class: usize) -> Option<f64> {
        Self::ratio(self.right[class], self.total[class])
    }
    fn accuracy(&self) -> Option<f64> {
        Self::ratio(self.right.iter().sum(), self.total.iter().sum())
    }
    fn digit_accuracy(&self) -> Option<f64> {
        Self::ratio(self.right[..10].iter().sum(), self.total[..10].iter().sum())
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "crops": self.total.iter().sum::<usize>(),
            "accuracy": self.accuracy(),
            "digit_accuracy": self.digit_accuracy(),
            "x_recall": self.recall(Label::X.index()),
            "blank_recall": self.recall(Label::Blank.index()),
            "per_class": (0..NUM_CLASSES)
                .filter_map(|c| Label::from_index(c).map(|l| (l.to_string(), serde_json::json!({
                    "crops": self.total[c],
                    "recall": self.recall(c),
                }))))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviewer_digits_are_right_aligned_and_leading_boxes_keep_x_or_blank() {
        let (x, b, d) = (Label::X, Label::Blank, Label::Digit);
        let got = review_labels(Some(52), &[x, d(5), d(3)]);
        assert_eq!(
            got,
            vec![
                Some((x, "machine_x_or_blank")),
                Some((d(5), "reviewer")),
                Some((d(2), "reviewer")),
            ]
        );
        // A leading box the machine read as a digit (a written 0, or a misread) is skipped.
        assert_eq!(review_labels(Some(7), &[d(0), b, d(1)])[0], None);
        assert_eq!(
            review_labels(Some(7), &[d(0), b, d(1)])[1],
            Some((b, "machine_x_or_blank"))
        );
        // No value: every box blank or X as read; more digits than boxes: nothing.
        assert_eq!(
            review_labels(None, &[b, x]),
            vec![
                Some((b, "machine_x_or_blank")),
                Some((x, "machine_x_or_blank"))
            ]
        );
        assert_eq!(
            review_labels(Some(1234), &[d(1), d(2), d(3)]),
            vec![None; 3]
        );
    }
}
