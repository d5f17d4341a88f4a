//! `rekap eval --truth DIR RESULTS.jsonl [RESULTS_B.jsonl]`: measure OCR error rates and trust
//! against ground truth; terminal summary on stdout, optional HTML report, JSON metrics, per-box
//! CSV, and `--tune` of the acceptance threshold. Exit status 1 only when nothing could be scored;
//! 2 when `--tune` cannot meet its target on this set (everything else is still written).

use crate::cli::process::{DEFAULT_DECIDE_CONFIG, load_config, project_file};
use crate::eval::crops::{attach_images, select_cases};
use crate::eval::metrics::{Evaluation, Metrics, evaluate, headline};
use crate::eval::report_html::{ReportInput, Run, render};
use crate::eval::tune::{TuneResult, tune};
use crate::eval::{
    Problem, ResultsFile, Scored, common_submissions, pair_with_truth, read_results,
    whole_file_template_mismatch,
};
use crate::template::{DEFAULT_TEMPLATE_PATH, Template};
use anyhow::{Context, bail};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Format version of `--json` output.
pub const EVAL_SCHEMA: &str = "rekap-eval/1";
/// Flagged fields shown in the report's gallery (besides every silent error).
const DEFAULT_GALLERY_FLAGS: usize = 50;
/// Exit status when everything was scored and written but `--tune` could not meet its target
/// (so scripts do not go on with an old threshold).
pub const TUNE_FAILED_EXIT: i32 = 2;
/// Fields listed by name in the terminal summary's silent errors (the report lists all).
const SUMMARY_WORST_FIELDS: usize = 10;
/// Missed officer errors listed by name in the terminal summary (the report lists all).
const SUMMARY_MISSED_OFFICER_ERRORS: usize = 10;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Results of `rekap process` (JSONL); a second file is compared with the first. With
    /// `--db`: optional, one file of the same photos, scored against the reviewed values.
    #[arg(required_unless_present = "db", num_args = 0..=2, value_name = "RESULTS.jsonl")]
    pub results: Vec<PathBuf>,
    /// Ground truth: a folder holding `<submission>/truth.json` (as written by `rekap synth`).
    #[arg(long, value_name = "DIR", required_unless_present = "db")]
    pub truth: Option<PathBuf>,
    /// Reviewer corrections as truth: the review service's data folder or `postgres://` URL.
    /// Scores the stored machine readings on the fields reviewers checked (and a results file
    /// of the same photos, if given); `--csv` then writes one row per reviewed field.
    #[arg(long, value_name = "DB", conflicts_with_all = ["truth", "tune", "report"])]
    pub db: Option<PathBuf>,
    /// Write a self-contained HTML report.
    #[arg(long, value_name = "report.html")]
    pub report: Option<PathBuf>,
    /// Write every metric as JSON.
    #[arg(long, value_name = "metrics.json")]
    pub json: Option<PathBuf>,
    /// Write one row per digit box (truth, reading, confidence, conditions).
    #[arg(long, value_name = "boxes.csv")]
    pub csv: Option<PathBuf>,
    /// Choose the acceptance threshold whose 95% upper bound on the field silent error rate is
    /// at most TARGET (e.g. 0.001) with the fewest reviews. Tune and measure on different sets.
    #[arg(long, value_name = "TARGET")]
    pub tune: Option<f64>,
    /// Decision settings file that `--tune` updates (its other settings are kept).
    #[arg(long, value_name = "decide.toml", default_value = DEFAULT_DECIDE_CONFIG)]
    pub tune_out: PathBuf,
    /// Template (default: `templates/<id>.toml` for the id named in the truth).
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Flagged fields sampled into the report's gallery.
    #[arg(long, default_value_t = DEFAULT_GALLERY_FLAGS)]
    pub gallery_flags: usize,
}

/// One results file, paired with truth and scored.
struct RunData {
    name: String,
    path: PathBuf,
    problems: Vec<Problem>,
    eval: Evaluation,
}

#[derive(Serialize)]
struct JsonRun<'a> {
    results: String,
    problems: &'a [Problem],
    metrics: &'a Metrics,
}

#[derive(Serialize)]
struct JsonComparison {
    measure: String,
    first: f64,
    second: f64,
    delta: f64,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    schema: &'static str,
    truth: String,
    runs: Vec<JsonRun<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    comparison: Vec<JsonComparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tune: Option<&'a TuneResult>,
}

fn load(truth: &Path, path: &Path) -> anyhow::Result<(ResultsFile, Vec<Scored>, Vec<Problem>)> {
    let rf = read_results(path)?;
    let (scored, problems) = pair_with_truth(truth, &rf);
    if scored.is_empty()
        && let Some((res, tr)) = whole_file_template_mismatch(&rf, truth)
    {
        bail!(
            "{} is from another template: its results name template {res:?} but the truth \
             in {} is for template {tr:?}; nothing scored",
            path.display(),
            truth.display()
        );
    }
    Ok((rf, scored, problems))
}

fn load_template(args: &EvalArgs, scored: &[Scored]) -> Option<Template> {
    let path = match &args.template {
        Some(p) => p.clone(),
        None => {
            let id = &scored.first()?.truth.template;
            let named = project_file(&PathBuf::from(format!("templates/{id}.toml")));
            if named.exists() {
                named
            } else {
                project_file(Path::new(DEFAULT_TEMPLATE_PATH))
            }
        }
    };
    match Template::load(&path) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("warning: no template ({e}); alignment error in mm not measured");
            None
        }
    }
}

/// Terminal summary of one or two runs.
pub fn summary_text(runs: &[(&str, &Metrics)]) -> String {
    let mut s = String::new();
    let heads: Vec<Vec<(&str, f64)>> = runs.iter().map(|(_, m)| headline(m)).collect();
    let Some(first) = heads.first() else {
        return s;
    };
    let labels = ["first", "second"];
    for (i, (n, _)) in runs.iter().enumerate() {
        let _ = writeln!(s, "{}: {n}", labels[i % 2]);
    }
    let _ = write!(s, "{:<42}", "measure");
    for i in 0..runs.len() {
        let _ = write!(s, " {:>16}", labels[i % 2]);
    }
    if runs.len() == 2 {
        let _ = write!(s, " {:>14}", "delta");
    }
    s.push('\n');
    for (k, v) in first {
        let _ = write!(s, "{k:<42} {:>16}", fmt_num(*v));
        if let Some(second) = heads.get(1)
            && let Some((_, v2)) = second.iter().find(|(k2, _)| k2 == k)
        {
            let _ = write!(s, " {:>16} {:>+14.6}", fmt_num(*v2), v2 - v);
        }
        s.push('\n');
    }
    for (name, m) in runs {
        let _ = writeln!(s, "\n== {name}");
        let f = &m.fields;
        let _ = writeln!(
            s,
            "fields: {} scored, {} accepted, {} flagged, {} missing; SILENT ERRORS {} \
             ({:.4}%, one-sided 95% upper bound {:.4}%); among accepted {:.4}% (bound {:.4}%)",
            f.scored,
            f.accepted,
            f.flagged,
            f.missing,
            f.silent_errors.count,
            100.0 * f.silent_errors.rate,
            100.0 * f.silent_errors.upper95,
            100.0 * f.silent_errors_among_accepted.rate,
            100.0 * f.silent_errors_among_accepted.upper95
        );
        let sb = &m.submissions;
        let _ = writeln!(
            s,
            "submissions: {} scored, {} accepted, {} needs_review, {} failed; silently wrong {} \
             (bound {:.4}%)",
            sb.scored,
            sb.accepted,
            sb.needs_review,
            sb.failed,
            sb.silently_wrong.count,
            100.0 * sb.silently_wrong.upper95
        );
        let _ = writeln!(
            s,
            "submissions without an officer error: {} of {} accepted ({:.1}%)",
            sb.clean_accepted.count,
            sb.clean_accepted.total,
            100.0 * sb.clean_accepted.rate
        );
        let mut worst: Vec<_> = f
            .per_field
            .iter()
            .filter(|p| p.silent_errors.count > 0)
            .collect();
        worst.sort_by_key(|p| std::cmp::Reverse(p.silent_errors.count));
        if worst.len() > SUMMARY_WORST_FIELDS {
            let _ = writeln!(
                s,
                "  ({} fields have silent errors; the {SUMMARY_WORST_FIELDS} worst:)",
                worst.len()
            );
        }
        for p in worst.iter().take(SUMMARY_WORST_FIELDS) {
            let _ = writeln!(
                s,
                "  silent errors in {}: {} of {} (bound {:.4}%)",
                p.field,
                p.silent_errors.count,
                p.scored,
                100.0 * p.silent_errors.upper95
            );
        }
        let _ = writeln!(s, "flag precision by code:");
        s.push_str(&crate::eval::metrics::flag_rows_text(
            &f.flag_precision_by_code,
        ));
        let o = &m.officer_errors;
        for (k, r) in &o.by_kind {
            let _ = writeln!(s, "officer errors {k}: {} of {} flagged", r.count, r.total);
        }
        // The missed ones by name (the report lists them all): each is a place to look.
        let missed: Vec<_> = o.errors.iter().filter(|e| !e.found).collect();
        for e in missed.iter().take(SUMMARY_MISSED_OFFICER_ERRORS) {
            let _ = writeln!(
                s,
                "  missed: {} {} {} ({})",
                e.submission,
                e.kind,
                e.rule.as_deref().unwrap_or("-"),
                e.fields.join(", ")
            );
        }
        if missed.len() > SUMMARY_MISSED_OFFICER_ERRORS {
            let _ = writeln!(
                s,
                "  ... and {} more (see --report)",
                missed.len() - SUMMARY_MISSED_OFFICER_ERRORS
            );
        }
        let hn = &m.hints;
        let _ = writeln!(
            s,
            "rule hints: {} of {} hard rules broken by a misreading have one, {} of them right \
             (field and value as the truth); {} of {} broken only by an officer's arithmetic have one",
            hn.hinted, hn.broken_by_misreading, hn.right, hn.officer_only_hinted, hn.officer_only
        );
        let _ = writeln!(s, "box accuracy by condition:");
        for c in &m.boxes.by_condition {
            let _ = writeln!(
                s,
                "  {:<10} {:<12} {:>7} boxes {:>8.3}%",
                c.condition,
                c.bucket,
                c.accuracy.total,
                100.0 * c.accuracy.rate
            );
        }
        let _ = write!(s, "confusion (rows truth, columns read):\n{:>6}", "");
        for l in &m.boxes.labels {
            let _ = write!(s, " {:>6}", l);
        }
        s.push('\n');
        for (i, row) in m.boxes.confusion.iter().enumerate() {
            let _ = write!(s, "{:>6}", m.boxes.labels[i]);
            for c in row {
                let _ = write!(s, " {c:>6}");
            }
            s.push('\n');
        }
        let c = &m.confidence;
        let _ = write!(s, "calibration (bin: fields, confidence, accuracy):");
        for b in c.bins.iter().filter(|b| b.count > 0) {
            let _ = write!(
                s,
                " [{:.1}: {}, {:.3}, {:.3}]",
                b.lower, b.count, b.mean_confidence, b.accuracy
            );
        }
        s.push('\n');
        if let Some(op) = &c.operating_point {
            let _ = writeln!(
                s,
                "risk-coverage operating point: coverage {:.4}, risk {:.6} ({} accepted, {} wrong, \
                 of {} threshold-decided fields)",
                op.coverage, op.risk, op.accepted, op.errors, c.threshold_decided
            );
        }
        let _ = write!(s, "ms per page:");
        for (k, v) in &m.speed.ms_per_page {
            let _ = write!(s, " {k} {v:.1}");
        }
        s.push('\n');
    }
    s
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.6}")
    }
}

fn write_tuned(path: &Path, threshold: f64) -> anyhow::Result<()> {
    let mut cfg = if path.exists() {
        load_config(path)?
    } else {
        crate::decide::DecideConfig::default()
    };
    cfg.accept_threshold = threshold;
    let text = toml::to_string_pretty(&cfg).context("serialising decision settings")?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let header = "# Decision settings read by `rekap process` (written by `rekap eval --tune`).\n";
    std::fs::write(path, format!("{header}{text}"))
        .with_context(|| format!("writing {}", path.display()))
}

fn write_csv(path: &Path, runs: &[RunData]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(
        f,
        "run,submission,field,page,box,truth,read,correct,confidence,field_status,size,hard,rotation"
    )?;
    for r in runs {
        for b in &r.eval.boxes {
            let status = serde_json::to_value(b.field_status)?;
            writeln!(
                f,
                "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_cell(&r.name),
                csv_cell(&b.submission),
                csv_cell(&b.field),
                b.page,
                b.index,
                b.truth,
                b.read,
                u8::from(b.truth == b.read),
                b.confidence,
                status.as_str().unwrap_or(""),
                csv_cell(b.size),
                csv_cell(&b.hard),
                b.rotation
            )?;
        }
    }
    f.flush()?;
    Ok(())
}

/// Format version of `--json` output with `--db`.
pub const EVAL_REVIEW_SCHEMA: &str = "rekap-eval-review/1";

#[derive(Serialize)]
struct JsonReview<'a> {
    schema: &'static str,
    db: String,
    metrics: &'a crate::eval::reviewed::ReviewedMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<JsonReviewRun<'a>>,
}

#[derive(Serialize)]
struct JsonReviewRun<'a> {
    results: String,
    problems: &'a [Problem],
    against_review: &'a crate::eval::reviewed::ResultsAgainstReview,
}

/// `rekap eval --db DB [RESULTS.jsonl]`: reviewer corrections as truth.
fn run_db(args: &EvalArgs, db: &Path) -> anyhow::Result<i32> {
    use crate::eval::reviewed::{results_against_review, reviewed_fields, reviewed_metrics};
    use crate::store::is_postgres_url;
    if args.results.len() > 1 {
        bail!("with --db give at most one results file (scored against the reviewed values)");
    }
    let store = super::open_review_db(db, None)?;
    let export = store.export()?;
    let reviewed = reviewed_fields(&export);
    let metrics = reviewed_metrics(&export, &reviewed);
    let run = match args.results.first() {
        Some(p) => {
            let rf = read_results(p)?;
            for pr in &rf.problems {
                eprintln!("{}: {pr}", p.display());
            }
            let r = results_against_review(&export, &reviewed, rf.reports.iter().map(|(_, r)| r));
            Some((p.display().to_string(), rf.problems, r))
        }
        None => None,
    };
    print!(
        "{}",
        crate::eval::reviewed::summary(
            &metrics,
            run.as_ref().map(|(name, _, r)| (name.as_str(), r))
        )
    );
    if let Some(path) = &args.json {
        let out = JsonReview {
            schema: EVAL_REVIEW_SCHEMA,
            // A URL is described without its password.
            db: if is_postgres_url(&db.to_string_lossy()) {
                crate::store::describe_postgres_url(&db.to_string_lossy())
            } else {
                db.display().to_string()
            },
            metrics: &metrics,
            results: run.as_ref().map(|(name, problems, r)| JsonReviewRun {
                results: name.clone(),
                problems,
                against_review: r,
            }),
        };
        std::fs::write(path, serde_json::to_string_pretty(&out)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.csv {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?,
        );
        writeln!(
            f,
            "submission,field,value,provenance,machine_value,machine_confidence,machine_right,flags,reviewed_by,photo_sha256,page"
        )?;
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        for r in &reviewed {
            writeln!(
                f,
                "{},{},{},{},{},{},{},{},{},{},{}",
                csv_cell(r.submission),
                csv_cell(r.field),
                opt(r.read.value),
                r.read.provenance,
                opt(r.read.machine_value),
                r.read.machine_confidence,
                r.machine_right(),
                csv_cell(&r.read.flags.join(" ")),
                csv_cell(r.read.reviewed_by.as_deref().unwrap_or("")),
                r.read.photo_sha256.as_deref().unwrap_or(""),
                r.read.page.map(|p| p.to_string()).unwrap_or_default()
            )?;
        }
        f.flush()?;
    }
    if reviewed.is_empty() {
        eprintln!(
            "error: no reviewed fields in {}: nothing could be scored",
            db.display()
        );
        return Ok(1);
    }
    Ok(0)
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn run(args: EvalArgs) -> anyhow::Result<i32> {
    if let Some(db) = &args.db {
        return run_db(&args, db);
    }
    let Some(truth_dir) = args.truth.clone() else {
        bail!("--truth DIR is required");
    };
    if let Some(t) = args.tune
        && !(t > 0.0 && t < 1.0)
    {
        bail!("--tune TARGET must be a rate between 0 and 1 (e.g. 0.001), got {t}");
    }
    let mut loaded = Vec::new();
    for (i, p) in args.results.iter().enumerate() {
        match load(&truth_dir, p) {
            Ok(l) => loaded.push((p.clone(), l)),
            Err(e) if i == 0 => return Err(e),
            Err(e) => eprintln!("error: {e:#}; comparison dropped"),
        }
    }
    for (p, (_, _, problems)) in &loaded {
        for pr in problems {
            eprintln!("{}: {pr}", p.display());
        }
    }
    if loaded.iter().any(|(_, (_, s, _))| s.is_empty()) {
        let (p, _) = &loaded[0];
        if loaded[0].1.1.is_empty() {
            eprintln!(
                "error: nothing could be scored in {} (see the problems above)",
                p.display()
            );
            return Ok(1);
        }
        eprintln!("error: nothing could be scored in the second results file; comparison dropped");
        loaded.truncate(1);
    }
    if loaded.len() == 2 {
        let (first, rest) = loaded.split_at_mut(1);
        let dropped = common_submissions(&mut first[0].1.1, &mut rest[0].1.1);
        if dropped > 0 {
            eprintln!(
                "comparing the {} submissions scored in both runs",
                first[0].1.1.len()
            );
        }
    }
    let template = load_template(&args, &loaded[0].1.1);
    let runs: Vec<RunData> = loaded
        .into_iter()
        .map(|(path, (_, scored, problems))| RunData {
            name: path.display().to_string(),
            eval: evaluate(&scored, template.as_ref()),
            path,
            problems,
        })
        .collect();

    // A target this set cannot show is reported after everything else is written.
    let mut tune_error: Option<String> = None;
    let tuned = match args.tune {
        Some(target) => match tune(&runs[0].eval.fields, target) {
            Ok(t) => {
                write_tuned(&args.tune_out, t.threshold)?;
                Some(t)
            }
            Err(e) => {
                tune_error = Some(e.to_string());
                None
            }
        },
        None => None,
    };

    let pairs: Vec<(&str, &Metrics)> = runs
        .iter()
        .map(|r| (r.name.as_str(), &r.eval.metrics))
        .collect();
    print!("{}", summary_text(&pairs));
    if let Some(t) = &tuned {
        println!(
            "\ntuned acceptance threshold: {:.6} (target: 95% upper bound on the field silent \
             error rate <= {}, and as many errors predicted by the confidences; here {} \
             accepted, {} reviews, {} silent errors, bound {:.6}, predicted {:.1}); written to {}. \
             Measure it on another set (another synth seed).",
            t.threshold,
            t.target,
            t.accepted,
            t.reviews,
            t.silent_errors,
            t.upper95,
            t.expected_errors,
            args.tune_out.display()
        );
    }

    if let Some(path) = &args.json {
        let heads: Vec<Vec<(&str, f64)>> = runs.iter().map(|r| headline(&r.eval.metrics)).collect();
        let comparison = match heads.as_slice() {
            [a, b] => a
                .iter()
                .filter_map(|(k, v)| {
                    b.iter()
                        .find(|(k2, _)| k2 == k)
                        .map(|(_, v2)| JsonComparison {
                            measure: k.to_string(),
                            first: *v,
                            second: *v2,
                            delta: v2 - v,
                        })
                })
                .collect(),
            _ => Vec::new(),
        };
        let out = JsonOut {
            schema: EVAL_SCHEMA,
            truth: truth_dir.display().to_string(),
            runs: runs
                .iter()
                .map(|r| JsonRun {
                    results: r.name.clone(),
                    problems: &r.problems,
                    metrics: &r.eval.metrics,
                })
                .collect(),
            comparison,
            tune: tuned.as_ref(),
        };
        let text = serde_json::to_string_pretty(&out)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.csv {
        write_csv(path, &runs)?;
    }
    if let Some(path) = &args.report {
        let mut cases = select_cases(&runs[0].eval.fields, args.gallery_flags);
        let mut bases: Vec<PathBuf> = Vec::new();
        if let Some(dir) = runs[0].path.parent() {
            bases.push(dir.to_path_buf());
            if let Some(up) = dir.parent() {
                bases.push(up.to_path_buf());
            }
        }
        attach_images(&mut cases, &bases);
        let input = ReportInput {
            truth_dir: truth_dir.display().to_string(),
            runs: runs
                .iter()
                .map(|r| Run {
                    name: r.name.clone(),
                    eval: &r.eval,
                    problems: &r.problems,
                })
                .collect(),
            gallery: &cases,
            tune: tuned.as_ref(),
        };
        std::fs::write(path, render(&input))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if let Some(e) = tune_error {
        eprintln!(
            "error: --tune: {e}; {} not written",
            args.tune_out.display()
        );
        return Ok(TUNE_FAILED_EXIT);
    }
    Ok(0)
}
