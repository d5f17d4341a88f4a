//! `rekap crops --truth DIR --out PREFIX`: cut every digit box of a `rekap synth` set exactly as
//! `rekap process` does (its own alignment, snapping, segmentation and normalisation) and write
//! the normalised 28x28 tensors with their true labels as an IDX pair
//! (`PREFIX-images-idx3-ubyte.gz`, `PREFIX-labels-idx1-ubyte.gz`; labels 0-9, 10 = X,
//! 11 = blank) plus `PREFIX-meta.jsonl` (submission, field, box, page conditions).
//!
//! This is what the digit model sees in production, so it serves to train on the pipeline's own
//! crops (from sets written with MNIST's train digits) and to measure X/blank recall on crops
//! cut from synthetic photos.

use crate::align::{self, snap};
use crate::load;
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
    #[arg(long)]
    pub truth: PathBuf,
    /// Output prefix, e.g. `training/data/pipeline-crops`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = DEFAULT_TEMPLATE_PATH)]
    pub template: PathBuf,
    /// Also write each box's grey crop (as sampled, before ink extraction) as
    /// `DIR/NNNNNN.png`, numbered like the IDX records, for studying ink extraction.
    #[arg(long, value_name = "DIR")]
    pub gray: Option<PathBuf>,
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
    meta: serde_json::Value,
}

fn page_samples(
    template: &Template,
    truth: &Truth,
    dir: &Path,
    page_idx: usize,
    keep_gray: bool,
) -> Vec<Sample> {
    let pt = &truth.pages[page_idx];
    let file = dir.join(&pt.file);
    let Ok(photo) = load::load_photo(&file) else {
        return Vec::new();
    };
    let Ok(al) = align::align_page(&photo.gray, template) else {
        return Vec::new();
    };
    let Some(h) = al.h() else {
        return Vec::new();
    };
    if al.page != pt.page {
        return Vec::new();
    }
    let mut out = Vec::new();
    // Every field with boxes is cut (the page's texture is measured over all of them, as the
    // pipeline does); only those with truth are written.
    let page_fields: Vec<&Field> = template.fields_on_page(pt.page).collect();
    let offsets = snap::snap_fields(&photo.gray, &h, &page_fields);
    let fields: Vec<(&Field, f64, f64)> = page_fields
        .iter()
        .filter(|f| f.kind.has_digit_boxes())
        .map(|f| {
            let s = offsets.get(&f.id).copied().unwrap_or_default();
            (*f, s.dx_mm, s.dy_mm)
        })
        .collect();
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
            out.push(Sample {
                tensor: t
                    .iter()
                    .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
                    .collect(),
                label,
                gray: keep_gray.then(|| c.gray.clone()),
                meta: serde_json::json!({
                    "submission": truth.submission,
                    "file": pt.file,
                    "page": pt.page,
                    "field": f.id,
                    "box": i,
                    "label": lab,
                    "hard": pt.conditions.hard,
                    "px_per_mm": al.px_per_mm,
                    "paper": c.paper,
                    "range": c.range,
                    "zero": t.iter().all(|v| *v == 0.0),
                }),
            });
        }
    }
    out
}

pub fn run(args: CropsArgs) -> anyhow::Result<()> {
    let template = Template::load(&super::process::project_file(&args.template))?;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&args.truth)
        .with_context(|| format!("reading {}", args.truth.display()))?
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
    let bar = indicatif::ProgressBar::new(jobs.len() as u64);
    let samples: Vec<Sample> = jobs
        .par_iter()
        .flat_map_iter(|&(i, p)| {
            let (d, t) = &truths[i];
            let s = page_samples(&template, t, d, p, args.gray.is_some());
            bar.inc(1);
            s
        })
        .collect();
    bar.finish_and_clear();
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
        n,
        truths.len(),
        counts
    );
    Ok(())
}
