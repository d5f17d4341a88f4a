//! `rekap eval`: measure a results file (`rekap-results/1` JSONL) against ground truth
//! (`truth.json` per submission, `rekap-truth/1`, written by `rekap synth`).
//!
//! Submodules: [`stats`] (exact binomial bounds), [`metrics`] (every figure, from per-box and
//! per-field outcomes), [`tune`] (acceptance threshold for a target silent error bound),
//! [`crops`] (evidence images for the gallery), [`report_html`] (the self-contained report),
//! [`reviewed`] (reviewer corrections in the review database as truth, `--db`).
//!
//! Invariant: a submission is scored only when its truth exists and both name the same
//! template; everything that cannot be scored is recorded as a [`Problem`] and the rest is scored.

pub mod crops;
pub mod metrics;
pub mod report_html;
pub mod reviewed;
pub mod stats;
pub mod tune;

use crate::pipeline::SubmissionReport;
use crate::recognize::Label;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Ground-truth format version this module reads.
pub const TRUTH_SCHEMA: &str = "rekap-truth/1";
/// File name of a submission's truth inside `<truth dir>/<submission>/`.
pub const TRUTH_FILE: &str = "truth.json";

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid {what}: {message}")]
    Parse {
        path: String,
        what: &'static str,
        message: String,
    },
    #[error(
        "the acceptance target {target} cannot be met on this set: even with nothing accepted the \
         95% upper bound on the silent error rate is {bound:.6} with {fields} fields; at least \
         {needed} scored fields are needed"
    )]
    TargetUnreachable {
        target: f64,
        bound: f64,
        fields: u64,
        needed: u64,
    },
}

/// One page of a submission's truth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageTruth {
    /// File name inside the submission folder (`page1.jpg`).
    pub file: String,
    pub page: u32,
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
    /// Template mm -> image px, row-major.
    pub homography: [f64; 9],
    /// Photo conditions; only `rotation_deg` and `hard` are read here.
    #[serde(default)]
    pub conditions: serde_json::Value,
}

/// One field's truth. Numeric fields (digits, row totals, date) carry `boxes`; bubbles and
/// tally grids carry `filled` / `count` and are not scored as numbers.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct FieldTruth {
    #[serde(default)]
    pub value: Option<i64>,
    #[serde(default)]
    pub boxes: Option<Vec<Label>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filled: Option<Vec<Vec<u8>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// A deliberate officer error written on the paper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfficerErrorTruth {
    pub kind: String,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub also_breaks: Vec<String>,
}

/// `truth.json` of one submission.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Truth {
    pub schema: String,
    pub template: String,
    pub submission: String,
    #[serde(default)]
    pub seed: u64,
    pub pages: Vec<PageTruth>,
    pub fields: BTreeMap<String, FieldTruth>,
    #[serde(default)]
    pub officer_errors: Vec<OfficerErrorTruth>,
}

impl Truth {
    pub fn page(&self, number: u32) -> Option<&PageTruth> {
        self.pages.iter().find(|p| p.page == number)
    }
}

/// Something that could not be scored (the rest still is).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    /// 1-based line of the results file, when the problem is a line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submission: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if let Some(s) = &self.submission {
            write!(f, "{s}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// One submission with its truth, ready to score.
#[derive(Debug, Clone)]
pub struct Scored {
    pub truth: Truth,
    pub result: SubmissionReport,
}

/// The results lines of one file that parsed, and the problems of those that did not.
#[derive(Debug, Default)]
pub struct ResultsFile {
    pub path: PathBuf,
    /// (1-based line number, submission report)
    pub reports: Vec<(usize, SubmissionReport)>,
    pub problems: Vec<Problem>,
    pub lines: usize,
}

/// Read a results JSONL file; a line that is not a valid submission report is a problem with its
/// line number, and reading goes on. Blank lines are ignored.
pub fn read_results(path: &Path) -> Result<ResultsFile, EvalError> {
    let file = std::fs::File::open(path).map_err(|source| EvalError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut out = ResultsFile {
        path: path.to_path_buf(),
        ..ResultsFile::default()
    };
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                out.problems.push(Problem {
                    line: Some(n),
                    submission: None,
                    message: format!("unreadable line: {e}"),
                });
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        out.lines += 1;
        match serde_json::from_str::<SubmissionReport>(&line) {
            Ok(r) => out.reports.push((n, r)),
            Err(e) => out.problems.push(Problem {
                line: Some(n),
                submission: None,
                message: format!("not a valid results line (skipped): {e}"),
            }),
        }
    }
    Ok(out)
}

/// Read `<dir>/<submission>/truth.json`.
pub fn read_truth(dir: &Path, submission: &str) -> Result<Truth, EvalError> {
    let path = dir.join(submission).join(TRUTH_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| EvalError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let truth: Truth = serde_json::from_str(&text).map_err(|e| EvalError::Parse {
        path: path.display().to_string(),
        what: "truth.json",
        message: e.to_string(),
    })?;
    if truth.schema != TRUTH_SCHEMA {
        return Err(EvalError::Parse {
            path: path.display().to_string(),
            what: "truth.json",
            message: format!("schema {:?}, expected {TRUTH_SCHEMA:?}", truth.schema),
        });
    }
    Ok(truth)
}

/// Pair every results line with its truth. Missing truth, a template mismatch or a repeated
/// submission become problems; those submissions are skipped.
pub fn pair_with_truth(truth_dir: &Path, results: &ResultsFile) -> (Vec<Scored>, Vec<Problem>) {
    let mut problems = results.problems.clone();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut scored = Vec::new();
    for (line, r) in &results.reports {
        let problem = |message: String| Problem {
            line: Some(*line),
            submission: Some(r.submission.clone()),
            message,
        };
        if let Some(first) = seen.get(&r.submission) {
            problems.push(problem(format!(
                "submission repeated (first on line {first}); this line is skipped"
            )));
            continue;
        }
        seen.insert(r.submission.clone(), *line);
        let truth = match read_truth(truth_dir, &r.submission) {
            Ok(t) => t,
            Err(e) => {
                problems.push(problem(format!("no usable truth, skipped: {e}")));
                continue;
            }
        };
        if truth.template != r.template {
            problems.push(problem(format!(
                "results are for template {:?} but the truth is for template {:?}; skipped",
                r.template, truth.template
            )));
            continue;
        }
        scored.push(Scored {
            truth,
            result: r.clone(),
        });
    }
    (scored, problems)
}

/// The template mismatch shared by every skipped line, if all results were skipped for it
/// (a results file from another template): `(results template, truth template)`.
pub fn whole_file_template_mismatch(
    results: &ResultsFile,
    truth_dir: &Path,
) -> Option<(String, String)> {
    let mut pair: Option<(String, String)> = None;
    for (_, r) in &results.reports {
        let t = read_truth(truth_dir, &r.submission).ok()?;
        if t.template == r.template {
            return None;
        }
        match &pair {
            None => pair = Some((r.template.clone(), t.template.clone())),
            Some(p) if p.0 == r.template && p.1 == t.template => {}
            Some(_) => return None,
        }
    }
    pair
}

/// Keep only submissions scored in both runs (for a side-by-side comparison).
pub fn common_submissions(a: &mut Vec<Scored>, b: &mut Vec<Scored>) -> usize {
    let in_a: std::collections::HashSet<String> =
        a.iter().map(|s| s.result.submission.clone()).collect();
    let in_b: std::collections::HashSet<String> =
        b.iter().map(|s| s.result.submission.clone()).collect();
    let before = a.len().max(b.len());
    a.retain(|s| in_b.contains(&s.result.submission));
    b.retain(|s| in_a.contains(&s.result.submission));
    before - a.len()
}

/// The file name of a path written with `/` or `\` separators.
pub fn base_name(p: &str) -> &str {
    p.rsplit(['/', '\\']).next().unwrap_or(p)
}
