//! `rekap process PATH...`: read submissions of form photos into checked numbers with flags.
//! One JSON object per submission goes to `--out` (JSONL; stdout when absent); a progress bar and
//! a summary table go to stderr. Exit status 1 when some file could not be read at all.

use crate::decide::{DecideConfig, FlagCode};
use crate::pipeline::{Pipeline, SubmissionReport, SubmissionStatus, discover};
use crate::recognize::{DEFAULT_MODEL_CARD, ModelCard, ModelPool, OrtModel};
use crate::template::{DEFAULT_TEMPLATE_PATH, Template};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Default decision settings written by `rekap eval --tune`; built-in defaults when absent.
pub const DEFAULT_DECIDE_CONFIG: &str = "models/decide.toml";
/// Submissions processed (in parallel) and written per round: results reach the output file
/// every round, so an interrupted batch keeps everything finished before.
const SUBMISSIONS_PER_ROUND: usize = 8;

#[derive(clap::Args, Debug)]
pub struct ProcessArgs {
    /// Photos, folders of one submission's photos, or folders of such folders.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Results file (JSON Lines, one submission per line); stdout when absent.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Write each field's crop to `DIR/<submission>/<field>.png` and name it in the results.
    #[arg(long, value_name = "DIR")]
    pub crops: Option<PathBuf>,
    #[command(flatten)]
    pub files: PipelineFiles,
    /// Also ingest submissions, photos, readings, crops and flags into the review store in DIR
    /// (re-processing the same photos adds nothing).
    #[arg(long, value_name = "DIR")]
    pub db: Option<PathBuf>,
    /// No progress bar or summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The files every command that reads forms needs: template, digit model, decision settings.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineFiles {
    #[arg(long, default_value = DEFAULT_TEMPLATE_PATH)]
    pub template: PathBuf,
    /// Digit model card (the .onnx lies next to it).
    #[arg(long, default_value = DEFAULT_MODEL_CARD)]
    pub model: PathBuf,
    /// Decision settings (acceptance threshold...).
    #[arg(long, default_value = DEFAULT_DECIDE_CONFIG)]
    pub config: PathBuf,
}

impl PipelineFiles {
    pub fn load_template(&self) -> anyhow::Result<Template> {
        Ok(Template::load(&project_file(&self.template))?)
    }
}

/// The reading pipeline with the ONNX digit model of `card_path` and the decision settings of
/// `config` (also returned: the settings file actually read, `None` for built-in defaults).
pub(crate) fn build_pipeline(
    card_path: &Path,
    config: &Path,
    template: &Template,
    crops_dir: Option<PathBuf>,
) -> anyhow::Result<(Pipeline<OrtModel>, Option<PathBuf>)> {
    let card = ModelCard::read(card_path)
        .with_context(|| format!("reading model card {}", card_path.display()))?;
    let pool: ModelPool<OrtModel> = ModelPool::ort(
        card_path.to_path_buf(),
        crate::recognize::DEFAULT_BATCH_SIZE,
    )?;
    let (config, settings_file) = load_config_with_source(config)?;
    Ok((
        Pipeline {
            template: template.clone(),
            config,
            pool,
            model_name: format!("{} sha256:{}", card.name, &card.sha256),
            crops_dir,
        },
        settings_file,
    ))
}

/// Resolve a default project file: as given, else relative to the crate's folder (so the
/// binary works from any working directory of a checkout).
pub fn project_file(p: &Path) -> PathBuf {
    if p.exists() || p.is_absolute() {
        return p.to_path_buf();
    }
    let alt = Path::new(env!("CARGO_MANIFEST_DIR")).join(p);
    if alt.exists() { alt } else { p.to_path_buf() }
}

/// Load decision settings; a missing default file means built-in defaults.
pub fn load_config(path: &Path) -> anyhow::Result<DecideConfig> {
    load_config_with_source(path).map(|(c, _)| c)
}

/// [`load_config`], also returning the file actually read (`None`: built-in defaults).
pub fn load_config_with_source(path: &Path) -> anyhow::Result<(DecideConfig, Option<PathBuf>)> {
    let p = project_file(path);
    if !p.exists() {
        if path == Path::new(DEFAULT_DECIDE_CONFIG) {
            return Ok((DecideConfig::default(), None));
        }
        anyhow::bail!("decision settings {} not found", path.display());
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let cfg = toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
    Ok((cfg, Some(p)))
}

pub fn run(args: ProcessArgs) -> anyhow::Result<i32> {
    if let Some(j) = args.jobs {
        rayon::ThreadPoolBuilder::new()
            .num_threads(j.max(1))
            .build_global()
            .context("setting up worker threads")?;
    }
    let template = args.files.load_template()?;
    let subs = discover(&args.paths)?;
    if subs.is_empty() {
        anyhow::bail!("no photos found under the given paths");
    }
    let crops_dir = args
        .crops
        .clone()
        .or_else(|| args.db.as_ref().map(|d| d.join("crops-work")));
    let card_path = project_file(&args.files.model);
    let (pipeline, settings_file) =
        build_pipeline(&card_path, &args.files.config, &template, crops_dir)?;
    let mut store = match &args.db {
        Some(d) => Some(
            crate::store::Store::open(d)?.with_field_order(
                pipeline
                    .template
                    .numeric_fields()
                    .map(|f| f.id.clone())
                    .collect(),
            ),
        ),
        None => None,
    };
    let total_pages: usize = subs.iter().map(|s| s.files.len()).sum();
    if !args.quiet {
        // Say which settings judge the fields: a models/decide.toml in the working folder
        // takes precedence over the project's.
        eprintln!(
            "model {} ({}); settings {} (accept at {}, unchecked fields at {}, readings need {} \
             on their own, {} beside sure partners)",
            pipeline.model_name,
            card_path.display(),
            settings_file.map_or("built-in defaults".to_string(), |p| p.display().to_string()),
            pipeline.config.accept_threshold,
            pipeline
                .config
                .accept_threshold
                .max(pipeline.config.unchecked_accept_threshold),
            pipeline.config.min_reading_confidence,
            pipeline.config.min_reading_confidence_strong_partners
        );
    }
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(total_pages as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} pages  {per_sec}  eta {eta}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let started = Instant::now();
    let mut summary = Summary::default();
    for round in subs.chunks(SUBMISSIONS_PER_ROUND) {
        let reports: Vec<SubmissionReport> = round
            .par_iter()
            .map(|s| {
                let r = pipeline.process_submission(&s.name, &s.files);
                bar.inc(s.files.len() as u64);
                r
            })
            .collect();
        for (s, r) in round.iter().zip(&reports) {
            if let Some(st) = store.as_mut() {
                let (id, _) = st.add_submission_files(&s.name, &s.files)?;
                if !st.ingest_report(id, r)? {
                    tracing::info!("{}: already in the store (submission {id})", s.name);
                }
            }
            serde_json::to_writer(&mut out, r)?;
            out.write_all(b"\n")?;
            summary.add(r);
        }
        out.flush()?;
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if !args.quiet {
        eprint!("{}", summary.render(total_pages, secs));
    }
    Ok(if summary.unreadable_files > 0 { 1 } else { 0 })
}

#[derive(Default)]
struct Summary {
    accepted: usize,
    review: usize,
    failed: usize,
    unreadable_files: usize,
    flags: BTreeMap<&'static str, usize>,
}

impl Summary {
    fn add(&mut self, r: &SubmissionReport) {
        match r.status {
            SubmissionStatus::Accepted => self.accepted += 1,
            SubmissionStatus::NeedsReview => self.review += 1,
            SubmissionStatus::Failed => self.failed += 1,
        }
        for f in &r.flags {
            *self.flags.entry(f.code.as_str()).or_default() += 1;
            if f.code == FlagCode::UnreadableFile {
                self.unreadable_files += 1;
            }
        }
    }

    fn render(&self, pages: usize, secs: f64) -> String {
        let n = self.accepted + self.review + self.failed;
        let mut s = String::new();
        s.push_str(&format!(
            "\nsubmissions {n}: accepted {}  needs_review {}  failed {}\n",
            self.accepted, self.review, self.failed
        ));
        let mut top: Vec<_> = self.flags.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        if !top.is_empty() {
            s.push_str("top flags:\n");
            for (code, count) in top.iter().take(8) {
                s.push_str(&format!("  {count:>6}  {code}\n"));
            }
        }
        s.push_str(&format!(
            "pages {pages} in {secs:.1} s: {:.2} pages/s\n",
            pages as f64 / secs.max(1e-9)
        ));
        s
    }
}
