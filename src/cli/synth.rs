//! `rekap synth`: write synthetic photos of filled forms with exact ground truth.

use crate::synth::{self, Generator, Options, SizeSpec, idx::DigitBank};
use crate::template::{DEFAULT_TEMPLATE_PATH, Template};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Generate synthetic phone photos of filled forms (`DIR/<submission>/page{N}.jpg` + `truth.json`).
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Number of submissions to generate.
    #[arg(long)]
    pub count: u64,
    /// Random seed; the same seed gives byte-identical output (whatever --jobs is).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Form template.
    #[arg(long, default_value = DEFAULT_TEMPLATE_PATH)]
    pub template: PathBuf,
    /// Handwritten digits: an IDX images file (gzip or plain); the labels file must sit next to
    /// it with `labels-idx1` in place of `images-idx3`.
    #[arg(long, default_value = synth::idx::DEFAULT_DIGITS_PATH)]
    pub digits: PathBuf,
    /// Photo size: 12mp, 3mp, 1.5mp, WIDTHxHEIGHT or mixed (random per page).
    #[arg(long, default_value = "mixed")]
    pub size: String,
    /// Fraction of pages photographed as a hard case (glare, cut-off corner, heavy blur).
    #[arg(long, default_value_t = 0.1)]
    pub hard_cases: f64,
    /// Fraction of submissions carrying one deliberate officer error.
    #[arg(long, default_value_t = 0.15)]
    pub officer_errors: f64,
    /// Fraction of submissions photographed off a screen showing the form (every page; moire
    /// from the screen's pixel lattice). Tagged `screen` among the hard cases.
    #[arg(long, default_value_t = 0.0)]
    pub screen: f64,
    /// Use a blank page image instead of drawn artwork: PAGE_N=PNG (repeatable), e.g. a
    /// `pdftoppm -r 150 -png` render of the official form.
    #[arg(long = "blank-page", value_name = "PAGE_N=PNG")]
    pub blank_page: Vec<String>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
}

fn fraction(name: &str, v: f64) -> anyhow::Result<f64> {
    if !(0.0..=1.0).contains(&v) {
        bail!("--{name} must be between 0 and 1, got {v}");
    }
    Ok(v)
}

/// Resolve a default data path relative to the working directory, falling back to the crate
/// root (so the binary also works when run from elsewhere in a checkout).
fn resolve(path: &Path, default: &str) -> PathBuf {
    if path.exists() || path != Path::new(default) {
        return path.to_path_buf();
    }
    let alt = Path::new(env!("CARGO_MANIFEST_DIR")).join(default);
    if alt.exists() {
        alt
    } else {
        path.to_path_buf()
    }
}

pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let size: SizeSpec = args.size.parse()?;
    let options = Options {
        size,
        hard_cases: fraction("hard-cases", args.hard_cases)?,
        officer_errors: fraction("officer-errors", args.officer_errors)?,
        screen: fraction("screen", args.screen)?,
    };
    synth::prepare_output(&args.out)?;
    let template_path = resolve(&args.template, DEFAULT_TEMPLATE_PATH);
    let template = Template::load(&template_path)
        .with_context(|| format!("loading template {}", template_path.display()))?;
    let digits_path = resolve(&args.digits, synth::idx::DEFAULT_DIGITS_PATH);
    let bank = DigitBank::load(&digits_path)?;
    let mut blank = HashMap::new();
    for spec in &args.blank_page {
        let Some((n, p)) = spec.split_once('=') else {
            bail!("--blank-page wants PAGE_N=PNG, got `{spec}`");
        };
        let n: u32 = n
            .trim()
            .parse()
            .with_context(|| format!("--blank-page `{spec}`: page number"))?;
        blank.insert(n, synth::load_blank_page(Path::new(p))?);
    }
    let generator = Generator::new(template, bank, blank, options)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.jobs)
        .build()
        .context("starting worker threads")?;
    let bar = ProgressBar::new(args.count);
    bar.set_style(
        ProgressStyle::with_template("{spinner} synth [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let out = args.out.clone();
    let result: anyhow::Result<()> = pool.install(|| {
        (0..args.count).into_par_iter().try_for_each(|i| {
            let s = generator
                .submission(args.seed, i)
                .with_context(|| format!("submission {}", synth::submission_name(i)))?;
            synth::write_submission(&out, &s)?;
            bar.inc(1);
            Ok(())
        })
    });
    bar.finish_and_clear();
    result?;
    let secs = started.elapsed().as_secs_f64();
    let pages = args.count as f64 * generator.template().pages.len() as f64;
    eprintln!(
        "wrote {} submissions ({} pages) to {} in {:.1} s ({:.2} pages/s)",
        args.count,
        pages,
        args.out.display(),
        secs,
        pages / secs.max(1e-9)
    );
    Ok(())
}
