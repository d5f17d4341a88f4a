//! `rekap classify CROP...`: read crops of single digit boxes and print what the digit model
//! sees in each. A crop that cannot be read is reported (and makes the exit status non-zero)
//! without stopping the others.

use crate::recognize::{DEFAULT_MODEL_CARD, ModelPool, OrtModel, Prediction, TOP_K};
use crate::segment::normalize::{DigitTensor, ink_map_from_gray, normalize};
use anyhow::Context;
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest accepted crop side in pixels. A digit-box crop is at most a few hundred pixels; the
/// limit makes the decoder refuse a decompression bomb from its header, before allocating.
pub const MAX_CROP_SIDE: u32 = 4096;
/// Largest decoder allocation: the biggest accepted crop (4096 x 4096) as 16-bit RGBA
/// (8 bytes per pixel) is exactly this.
pub const MAX_CROP_ALLOC: u64 = MAX_CROP_SIDE as u64 * MAX_CROP_SIDE as u64 * 8;
/// Crops decoded and classified per round, so memory stays bounded for any number of files
/// (4096 tensors = 12.8 MB).
const CROPS_PER_ROUND: usize = 4096;
/// File extensions picked up when a folder is given (explicit file arguments are always tried).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {
    /// Crop images (PNG or JPEG, one digit box each) or folders of them (searched recursively,
    /// in sorted order; only .png/.jpg/.jpeg files are taken from folders).
    #[arg(required = true, value_name = "CROP")]
    pub crops: Vec<PathBuf>,
    /// Model card; the .onnx next to it is checked against the card's sha256.
    #[arg(long, default_value = DEFAULT_MODEL_CARD)]
    pub model: PathBuf,
    /// Print one JSON object per crop instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Number of alternatives to show per crop.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=TOP_K as i64))]
    pub top: u8,
    /// Crops per ONNX Runtime call.
    #[arg(long, default_value_t = crate::recognize::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
}

/// Expand the arguments into the list of files to classify, in order. A missing path is
/// returned as an error entry so it is reported in place.
fn collect_inputs(args: &[PathBuf]) -> Vec<(PathBuf, Option<String>)> {
    let mut out = Vec::new();
    for arg in args {
        if arg.is_dir() {
            let mut files = Vec::new();
            if let Err(e) = walk(arg, &mut files) {
                out.push((arg.clone(), Some(format!("cannot read folder: {e}"))));
            }
            files.sort();
            out.extend(files.into_iter().map(|f| (f, None)));
        } else if arg.exists() {
            out.push((arg.clone(), None));
        } else {
            out.push((arg.clone(), Some("no such file or folder".to_string())));
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        // file_type() does not follow symlinks: a symlinked folder is not entered, so a link
        // cycle cannot make the walk endless.
        if entry.file_type()?.is_dir() {
            walk(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            files.push(path);
        }
    }
    Ok(())
}

/// Decode one crop to grey under the size limits and normalise it.
pub fn load_crop(path: &Path) -> anyhow::Result<DigitTensor> {
    if std::fs::metadata(path).context("cannot open")?.len() == 0 {
        anyhow::bail!("file is empty (0 bytes)");
    }
    let mut reader = image::ImageReader::open(path)
        .context("cannot open")?
        .with_guessed_format()
        .context("cannot read")?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_CROP_SIDE);
    limits.max_image_height = Some(MAX_CROP_SIDE);
    limits.max_alloc = Some(MAX_CROP_ALLOC);
    reader.limits(limits);
    if reader.format().is_none() {
        anyhow::bail!("not a PNG or JPEG image");
    }
    let img = reader.decode().context("cannot decode image")?;
    if img.width() == 0 || img.height() == 0 {
        anyhow::bail!("image is empty ({}x{})", img.width(), img.height());
    }
    Ok(normalize(&ink_map_from_gray(&img.to_luma8())))
}

fn json_line(file: &Path, result: &Result<Prediction, String>, top: usize) -> serde_json::Value {
    match result {
        Ok(p) => serde_json::json!({
            "file": file.display().to_string(),
            "label": p.label,
            "confidence": p.confidence,
            "top": p.top[..top]
                .iter()
                .map(|(l, c)| serde_json::json!({"label": l, "p": c}))
                .collect::<Vec<_>>(),
        }),
        Err(e) => serde_json::json!({"file": file.display().to_string(), "error": e}),
    }
}

fn table_line(file: &Path, result: &Result<Prediction, String>, top: usize) -> String {
    match result {
        Ok(p) => {
            let alts: Vec<String> = p.top[..top]
                .iter()
                .map(|(l, c)| format!("{l}:{c:.3}"))
                .collect();
            format!(
                "{}\t{}\t{:.3}\t{}",
                file.display(),
                p.label,
                p.confidence,
                alts.join(" ")
            )
        }
        Err(e) => format!("{}\terror\t-\t{e}", file.display()),
    }
}

pub fn run(args: ClassifyArgs) -> anyhow::Result<()> {
    // The model is checked and loaded before any crop is read: a bad model stops everything.
    let pool = ModelPool::<OrtModel>::ort(&args.model, args.batch_size).with_context(|| {
        let hint = if args.model.exists() {
            ""
        } else {
            " (no such card; pass --model CARD.json)"
        };
        format!("cannot load the digit model {}{hint}", args.model.display())
    })?;
    let inputs = collect_inputs(&args.crops);
    let top = args.top as usize;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !args.json {
        writeln!(out, "file\tlabel\tconfidence\ttop")?;
    }
    let mut failed = 0usize;
    for round in inputs.chunks(CROPS_PER_ROUND) {
        let loaded: Vec<Result<DigitTensor, String>> = round
            .par_iter()
            .map(|(path, err)| match err {
                Some(e) => Err(e.clone()),
                None => load_crop(path).map_err(|e| format!("{e:#}")),
            })
            .collect();
        let tensors: Vec<DigitTensor> = loaded
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let mut preds = pool.predict(&tensors)?.into_iter();
        for ((path, _), loaded) in round.iter().zip(loaded) {
            let result = match loaded {
                Ok(_) => preds
                    .next()
                    .ok_or_else(|| "internal error: missing prediction".to_string()),
                Err(e) => Err(e),
            };
            if let Err(e) = &result {
                failed += 1;
                tracing::debug!(file = %path.display(), "{e}");
            }
            if args.json {
                writeln!(out, "{}", json_line(path, &result, top))?;
            } else {
                writeln!(out, "{}", table_line(path, &result, top))?;
            }
        }
        out.flush()?;
    }
    if inputs.is_empty() {
        anyhow::bail!("no crop images found in the given folders");
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} crops could not be classified", inputs.len());
    }
    Ok(())
}
