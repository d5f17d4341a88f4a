//! Every figure `rekap eval` reports, computed from per-box and per-field outcomes. The
//! definitions are those of README.md, section "Measuring accuracy (`rekap eval`)".

use super::stats::{CONFIDENCE, clopper_pearson_upper, ratio};
use super::{Scored, Truth, base_name};
use crate::align::Homography;
use crate::decide::{Channel, CheckStatus, FieldSource, FieldStatus, FlagCode};
use crate::pipeline::{PageReport, SubmissionStatus};
use crate::recognize::Label;
use crate::template::{RuleKind, Template};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Number of equal-width confidence bins for the expected calibration error.
pub const ECE_BINS: usize = 10;
/// Points kept on the risk-coverage curve (evenly spaced in coverage; enough for a smooth plot).
pub const RISK_COVERAGE_POINTS: usize = 200;
/// Photo-size buckets (megapixels, lower edges): the synthetic sizes are 1.5, 3 and 12 MP.
const SIZE_BUCKETS_MP: [(f64, &str); 3] = [(0.0, "< 2 MP"), (2.0, "2-6 MP"), (6.0, ">= 6 MP")];
/// Flags that say only "not sure enough": fields carrying no other flag are the ones a
/// different acceptance threshold would accept or reject.
const THRESHOLD_FLAG: &str = "low_confidence";

/// `count` of `total`, and their ratio.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct Rate {
    pub count: u64,
    pub total: u64,
    pub rate: f64,
}

impl Rate {
    pub fn new(count: u64, total: u64) -> Self {
        Rate {
            count,
            total,
            rate: ratio(count, total),
        }
    }
}

/// A rate with its one-sided 95 % Clopper-Pearson upper bound.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct BoundedRate {
    pub count: u64,
    pub total: u64,
    pub rate: f64,
    /// One-sided exact (Clopper-Pearson) upper bound at 95 % confidence.
    pub upper95: f64,
}

impl BoundedRate {
    pub fn new(count: u64, total: u64) -> Self {
        BoundedRate {
            count,
            total,
            rate: ratio(count, total),
            upper95: clopper_pearson_upper(count, total, CONFIDENCE),
        }
    }
}

/// What became of one numeric field of one submission.
#[derive(Debug, Clone, Serialize)]
pub struct FieldOutcome {
    pub submission: String,
    pub field: String,
    pub page: Option<u32>,
    pub truth: Option<i64>,
    pub truth_boxes: Vec<Label>,
    pub read: Option<i64>,
    pub read_boxes: Vec<Label>,
    pub status: FieldStatus,
    pub confidence: f64,
    /// Probability on the field's own evidence, when the results report it.
    pub reading_confidence: Option<f64>,
    /// The reading confidence this field needed (its `reading_floor`; for older results the
    /// run's `min_reading_confidence`, 0 for results written without settings).
    pub reading_floor: f64,
    pub flags: Vec<String>,
    /// The value read equals the value written.
    pub correct: bool,
    /// The field is named by an officer error of the truth, or read by a rule an officer error
    /// breaks.
    pub officer_related: bool,
    #[serde(skip)]
    pub source: Option<FieldSource>,
}

impl FieldOutcome {
    /// The field's page was found and read (it has box readings).
    pub fn read_at_all(&self) -> bool {
        !self.read_boxes.is_empty()
    }
    /// Accepted, and wrong.
    pub fn silent_error(&self) -> bool {
        self.status == FieldStatus::Accepted && !self.correct
    }
    /// Flagged for a real problem: misread, or concerned by an officer error.
    pub fn justified_flag(&self) -> bool {
        self.status == FieldStatus::Flagged && (!self.correct || self.officer_related)
    }
    /// Read, flagged (if at all) only for low confidence, and sure enough on its own evidence
    /// for the run's reading floor: the acceptance threshold alone decides whether it is
    /// accepted. A field held back by the floor carries the same `low_confidence` code, but no
    /// threshold would accept it, so it is not counted here.
    pub fn threshold_decides(&self) -> bool {
        self.read_at_all()
            && self.status != FieldStatus::Missing
            && self.flags.iter().all(|f| f == THRESHOLD_FLAG)
            && self
                .reading_confidence
                .is_none_or(|p| p >= self.reading_floor)
    }
}

/// One digit box (for the confusion matrix, accuracy by condition and `--csv`).
#[derive(Debug, Clone, Serialize)]
pub struct BoxRow {
    pub submission: String,
    pub field: String,
    pub page: u32,
    pub index: usize,
    pub truth: Label,
    pub read: Label,
    pub confidence: f32,
    pub field_status: FieldStatus,
    pub size: &'static str,
    pub hard: String,
    pub rotation: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConditionRow {
    /// `size`, `hard`, `hard_case` or `rotation`.
    pub condition: String,
    pub bucket: String,
    pub accuracy: Rate,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoxMetrics {
    /// Boxes read correctly of boxes of fields whose page was found.
    pub accuracy: Rate,
    /// Class order of `confusion`: "0".."9", "X", "blank".
    pub labels: Vec<String>,
    /// `confusion[truth][read]` counts.
    pub confusion: Vec<Vec<u64>>,
    pub by_condition: Vec<ConditionRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PerField {
    pub field: String,
    pub scored: u64,
    pub accepted: u64,
    pub silent_errors: BoundedRate,
    pub review: Rate,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlagCodeRow {
    pub code: String,
    /// Flagged fields carrying this code, and how many of them point at a real problem.
    pub precision: Rate,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldMetrics {
    /// Numeric fields with truth in scored submissions.
    pub scored: u64,
    pub accepted: u64,
    pub flagged: u64,
    pub missing: u64,
    /// Correct among accepted fields.
    pub accepted_accuracy: Rate,
    /// Accepted and wrong, among all scored fields (the headline "silent error rate").
    pub silent_errors: BoundedRate,
    /// Accepted and wrong, among accepted fields (the risk a user of accepted numbers takes).
    pub silent_errors_among_accepted: BoundedRate,
    /// Flagged or missing, among scored fields.
    pub review: Rate,
    /// Flagged fields that are misread or concerned by an officer error.
    pub flag_precision: Rate,
    pub flag_precision_by_code: Vec<FlagCodeRow>,
    pub per_field: Vec<PerField>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubmissionMetrics {
    pub scored: u64,
    pub accepted: u64,
    pub needs_review: u64,
    pub failed: u64,
    /// Submissions with some accepted field wrong (or accepted as a whole with a field wrong).
    pub silently_wrong: BoundedRate,
    pub silently_wrong_names: Vec<String>,
    /// needs_review or failed, among scored submissions.
    pub review: Rate,
    /// Accepted, among the submissions whose truth has no officer error (the reading
    /// pipeline's target: at least 90 %).
    pub clean_accepted: Rate,
}

#[derive(Debug, Clone, Serialize)]
pub struct OfficerErrorRow {
    pub submission: String,
    pub kind: String,
    pub rule: Option<String>,
    pub fields: Vec<String>,
    pub found: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct OfficerMetrics {
    /// Truth officer errors (with a rule id, or bubble mismatches) matched by a results flag.
    pub recall: Rate,
    pub by_kind: BTreeMap<String, Rate>,
    /// Officer errors with neither a rule id nor kind bubble_mismatch (cannot be matched).
    pub not_checkable: u64,
    pub errors: Vec<OfficerErrorRow>,
}

/// How well the hints of broken hard rules (`checks[].suggestion`) point at the misreading.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HintMetrics {
    /// Hard rules broken where some field of the rule was read wrong.
    pub broken_by_misreading: u64,
    /// Of those, rules with a hint, and hints naming a field whose truth is the hinted value.
    pub hinted: u64,
    pub right: u64,
    /// Hard rules broken with every field read right (the officer's arithmetic alone), and of
    /// those the rules with a hint (every such hint is wrong).
    pub officer_only: u64,
    pub officer_only_hinted: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlignmentError {
    /// Pages measured (identified correctly, with an alignment) and box corners used.
    pub pages: u64,
    pub corners: u64,
    pub mean_mm: f64,
    pub max_mm: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PageMetrics {
    /// Truth pages whose photo was identified as the right page number.
    pub identification: Rate,
    /// Photos identified as a wrong page number.
    pub misidentified: u64,
    /// Truth pages whose photo aligned well (`alignment.good`).
    pub alignment_good: Rate,
    /// None without a template (box corners) or without any identified page.
    pub alignment_error: Option<AlignmentError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RiskCoveragePoint {
    pub threshold: f64,
    /// Share of threshold-decided fields accepted.
    pub coverage: f64,
    /// Wrong among those accepted.
    pub risk: f64,
    pub accepted: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfidenceMetrics {
    /// Fields read (with a confidence).
    pub fields: u64,
    /// Expected calibration error over [`ECE_BINS`] equal-width bins.
    pub ece: f64,
    pub bins: Vec<CalibrationBin>,
    /// Fields whose acceptance the threshold alone decides.
    pub threshold_decided: u64,
    pub risk_coverage: Vec<RiskCoveragePoint>,
    /// What the run did: accepted share and risk among threshold-decided fields.
    pub operating_point: Option<RiskCoveragePoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpeedMetrics {
    pub submissions: u64,
    pub pages: u64,
    /// Sum of all stage times, ms (one worker's time; parallel runs finish sooner).
    pub total_ms: f64,
    pub pages_per_second: f64,
    /// Mean milliseconds per page, by stage.
    pub ms_per_page: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub submissions_scored: u64,
    pub boxes: BoxMetrics,
    pub fields: FieldMetrics,
    pub submissions: SubmissionMetrics,
    pub officer_errors: OfficerMetrics,
    pub hints: HintMetrics,
    pub pages: PageMetrics,
    pub confidence: ConfidenceMetrics,
    pub speed: SpeedMetrics,
}

/// Metrics with the outcomes they were computed from.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub metrics: Metrics,
    pub fields: Vec<FieldOutcome>,
    pub boxes: Vec<BoxRow>,
}

/// Bucket of a photo's size.
pub fn size_bucket(width: u32, height: u32) -> &'static str {
    let mp = f64::from(width) * f64::from(height) / 1e6;
    SIZE_BUCKETS_MP
        .iter()
        .rev()
        .find(|(lo, _)| mp >= *lo)
        .map(|(_, name)| *name)
        .unwrap_or(SIZE_BUCKETS_MP[0].1)
}

/// Nearest quarter turn (0, 90, 180, 270) of a rotation in degrees.
pub fn rotation_bucket(deg: f64) -> u32 {
    let q = (deg.rem_euclid(360.0) / 90.0).round() as u32 % 4;
    q * 90
}

/// Hard-case tags of a truth page's conditions.
fn hard_tags(conditions: &serde_json::Value) -> Vec<String> {
    conditions
        .get("hard")
        .and_then(|h| h.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Fields concerned by the truth's officer errors: those named, and those read by a broken rule
/// (the rule's `values` in the results' checks).
fn officer_fields(s: &Scored) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rules: BTreeSet<&str> = BTreeSet::new();
    for e in &s.truth.officer_errors {
        out.extend(e.fields.iter().cloned());
        rules.extend(e.rule.as_deref());
        rules.extend(e.also_breaks.iter().map(String::as_str));
    }
    for c in &s.result.checks {
        if rules.contains(c.rule.as_str()) {
            out.extend(c.values.keys().cloned());
        }
    }
    out
}

/// The results page that photographs truth page `tp` (same file name).
fn result_page<'a>(pages: &'a [PageReport], file: &str) -> Option<&'a PageReport> {
    let want = base_name(file);
    pages
        .iter()
        .filter(|p| !p.superseded)
        .find(|p| base_name(&p.file) == want)
        .or_else(|| pages.iter().find(|p| base_name(&p.file) == want))
}

/// Distances (mm) between template box corners and where the result homography puts them:
/// corner -> truth H -> pixel -> inverse result H -> mm.
pub fn alignment_errors_mm(
    truth_h: [f64; 9],
    result_h: [f64; 9],
    corners: &[[f64; 2]],
) -> Vec<f64> {
    let (Some(ht), Some(hr)) = (
        Homography::from_array(truth_h),
        Homography::from_array(result_h),
    ) else {
        return Vec::new();
    };
    let Some(hr_inv) = hr.inverse() else {
        return Vec::new();
    };
    corners
        .iter()
        .filter_map(|&c| {
            let px = ht.apply(c)?;
            let back = hr_inv.apply(px)?;
            Some(((back[0] - c[0]).powi(2) + (back[1] - c[1]).powi(2)).sqrt())
        })
        .collect()
}

/// Corners of every box of the template's fields on page `page`, mm.
pub fn box_corners(template: &Template, page: u32) -> Vec<[f64; 2]> {
    template
        .fields_on_page(page)
        .flat_map(|f| f.boxes.iter())
        .flat_map(|r| {
            let [x, y, w, h] = [r[0], r[1], r[2], r[3]];
            [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]
        })
        .collect()
}

/// Score every submission. `template` (the one the truth names) is only needed for the
/// alignment error in mm.
pub fn evaluate(scored: &[Scored], template: Option<&Template>) -> Evaluation {
    let mut fields: Vec<FieldOutcome> = Vec::new();
    let mut boxes: Vec<BoxRow> = Vec::new();
    let mut hints = HintMetrics::default();
    let mut officer_rows: Vec<OfficerErrorRow> = Vec::new();
    let mut not_checkable = 0u64;
    let (mut truth_pages, mut identified, mut misidentified, mut aligned_good) = (0, 0, 0, 0);
    let mut align_errs: Vec<f64> = Vec::new();
    let mut align_pages = 0u64;
    let mut sub = SubmissionMetrics {
        scored: scored.len() as u64,
        accepted: 0,
        needs_review: 0,
        failed: 0,
        silently_wrong: BoundedRate::default(),
        silently_wrong_names: Vec::new(),
        review: Rate::default(),
        clean_accepted: Rate::default(),
    };
    let (mut clean, mut clean_accepted) = (0u64, 0u64);
    let mut stage_ms: BTreeMap<String, f64> = BTreeMap::new();
    let mut result_pages = 0u64;

    for s in scored {
        let t: &Truth = &s.truth;
        let r = &s.result;
        let officer = officer_fields(s);
        let start = fields.len();
        for (id, fr) in &r.fields {
            let Some(ft) = t.fields.get(id) else { continue };
            let Some(tb) = &ft.boxes else { continue };
            let page = fr
                .source
                .as_ref()
                .map(|src| src.page)
                .or_else(|| template.and_then(|tp| tp.field(id)).map(|f| f.page));
            let outcome = FieldOutcome {
                submission: r.submission.clone(),
                field: id.clone(),
                page,
                truth: ft.value,
                truth_boxes: tb.clone(),
                read: fr.value,
                read_boxes: fr.boxes.iter().map(|b| b.label).collect(),
                status: fr.status,
                confidence: fr.confidence,
                reading_confidence: fr.reading_confidence,
                // the field's own floor; older results name only the run's
                reading_floor: fr.reading_floor.unwrap_or_else(|| {
                    r.settings
                        .as_ref()
                        .map_or(0.0, |c| c.min_reading_confidence)
                }),
                flags: fr.flags.clone(),
                correct: fr.value == ft.value,
                officer_related: officer.contains(id),
                source: fr.source.clone(),
            };
            // Box level: only fields whose page was found (box readings exist, one per box).
            if outcome.read_at_all() && outcome.read_boxes.len() == tb.len() {
                let tp = page.and_then(|p| t.page(p));
                let (size, hard, rotation) = match tp {
                    Some(tp) => {
                        let rot = tp
                            .conditions
                            .get("rotation_deg")
                            .and_then(|v| v.as_f64())
                            .unwrap_or(0.0);
                        (
                            size_bucket(tp.width, tp.height),
                            hard_tags(&tp.conditions).join("+"),
                            rotation_bucket(rot),
                        )
                    }
                    None => ("unknown", String::new(), 0),
                };
                for (i, (tl, fb)) in tb.iter().zip(&fr.boxes).enumerate() {
                    boxes.push(BoxRow {
                        submission: r.submission.clone(),
                        field: id.clone(),
                        page: page.unwrap_or(0),
                        index: i,
                        truth: *tl,
                        read: fb.label,
                        confidence: fb.confidence,
                        field_status: fr.status,
                        size,
                        hard: hard.clone(),
                        rotation,
                    });
                }
            }
            fields.push(outcome);
        }
        let mine = &fields[start..];
        let any_silent = mine.iter().any(FieldOutcome::silent_error);
        let any_wrong = mine.iter().any(|f| !f.correct);
        match r.status {
            SubmissionStatus::Accepted => sub.accepted += 1,
            SubmissionStatus::NeedsReview => sub.needs_review += 1,
            SubmissionStatus::Failed => sub.failed += 1,
        }
        if t.officer_errors.is_empty() {
            clean += 1;
            clean_accepted += u64::from(r.status == SubmissionStatus::Accepted);
        }
        if any_silent || (r.status == SubmissionStatus::Accepted && any_wrong) {
            sub.silently_wrong_names.push(r.submission.clone());
        }

        // Hints of broken hard rules.
        for c in r
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Violated && c.kind == RuleKind::Hard)
        {
            let truth_of = |f: &str| t.fields.get(f).and_then(|ft| ft.value);
            let misread = c
                .values
                .iter()
                .any(|(f, v)| t.fields.get(f).is_some_and(|ft| ft.value != *v));
            if misread {
                hints.broken_by_misreading += 1;
                if let Some(h) = &c.suggestion {
                    hints.hinted += 1;
                    if truth_of(&h.field) == Some(h.value) {
                        hints.right += 1;
                    }
                }
            } else {
                hints.officer_only += 1;
                if c.suggestion.is_some() {
                    hints.officer_only_hinted += 1;
                }
            }
        }

        // Officer errors.
        for e in &t.officer_errors {
            let found = if let Some(rule) = &e.rule {
                r.flags.iter().any(|f| {
                    matches!(f.code, FlagCode::RuleViolated | FlagCode::OutOfRange)
                        && f.rule.as_deref() == Some(rule.as_str())
                })
            } else if e.kind == "bubble_mismatch" {
                // Found by the bubbles disagreeing, not by a tally alarm that happens to sit on
                // the same field (results written before flags named their channel: any).
                r.flags.iter().any(|f| {
                    f.code == FlagCode::ChannelDisagreement
                        && f.channel.is_none_or(|c| c == Channel::Bubbles)
                        && f.field.as_ref().is_some_and(|fl| e.fields.contains(fl))
                })
            } else {
                not_checkable += 1;
                continue;
            };
            officer_rows.push(OfficerErrorRow {
                submission: r.submission.clone(),
                kind: e.kind.clone(),
                rule: e.rule.clone(),
                fields: e.fields.clone(),
                found,
            });
        }

        // Pages.
        for tp in &t.pages {
            truth_pages += 1;
            let Some(rp) = result_page(&r.pages, &tp.file) else {
                continue;
            };
            match rp.page {
                Some(n) if n == tp.page => identified += 1,
                Some(_) => {
                    misidentified += 1;
                    continue;
                }
                None => continue,
            }
            let Some(al) = &rp.alignment else { continue };
            if al.good {
                aligned_good += 1;
            }
            if let Some(tpl) = template {
                let corners = box_corners(tpl, tp.page);
                let errs = alignment_errors_mm(tp.homography, al.homography, &corners);
                if !errs.is_empty() {
                    align_pages += 1;
                    align_errs.extend(errs);
                }
            }
        }

        // Speed.
        result_pages += r.pages.len() as u64;
        let tm = &r.timings;
        for (k, v) in [
            ("decode", tm.decode_ms),
            ("align", tm.align_ms),
            ("segment", tm.segment_ms),
            ("recognize", tm.recognize_ms),
            ("decide", tm.decide_ms),
        ] {
            *stage_ms.entry(k.to_string()).or_insert(0.0) += v;
        }
    }
    sub.silently_wrong = BoundedRate::new(sub.silently_wrong_names.len() as u64, sub.scored);
    sub.review = Rate::new(sub.needs_review + sub.failed, sub.scored);
    sub.clean_accepted = Rate::new(clean_accepted, clean);

    let metrics = Metrics {
        submissions_scored: scored.len() as u64,
        boxes: box_metrics(&boxes),
        fields: field_metrics(&fields),
        submissions: sub,
        officer_errors: officer_metrics(officer_rows, not_checkable),
        hints,
        pages: PageMetrics {
            identification: Rate::new(identified, truth_pages),
            misidentified,
            alignment_good: Rate::new(aligned_good, truth_pages),
            alignment_error: (!align_errs.is_empty()).then(|| AlignmentError {
                pages: align_pages,
                corners: align_errs.len() as u64,
                mean_mm: align_errs.iter().sum::<f64>() / align_errs.len() as f64,
                max_mm: align_errs.iter().cloned().fold(0.0, f64::max),
            }),
        },
        confidence: confidence_metrics(&fields),
        speed: speed_metrics(scored.len() as u64, result_pages, stage_ms),
    };
    Evaluation {
        metrics,
        fields,
        boxes,
    }
}

fn box_metrics(boxes: &[BoxRow]) -> BoxMetrics {
    let labels = Label::all();
    let mut confusion = vec![vec![0u64; labels.len()]; labels.len()];
    let mut groups: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut correct = 0u64;
    for b in boxes {
        confusion[b.truth.index()][b.read.index()] += 1;
        let ok = b.truth == b.read;
        correct += u64::from(ok);
        let hard_case = if b.hard.is_empty() { "no" } else { "yes" };
        let mut keys = vec![
            ("size".to_string(), b.size.to_string()),
            ("hard_case".to_string(), hard_case.to_string()),
            ("rotation".to_string(), format!("{}", b.rotation)),
        ];
        for tag in b.hard.split('+').filter(|t| !t.is_empty()) {
            keys.push(("hard".to_string(), tag.to_string()));
        }
        for k in keys {
            let e = groups.entry(k).or_insert((0, 0));
            e.0 += u64::from(ok);
            e.1 += 1;
        }
    }
    BoxMetrics {
        accuracy: Rate::new(correct, boxes.len() as u64),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        confusion,
        by_condition: {
            let mut rows: Vec<ConditionRow> = groups
                .into_iter()
                .map(|((condition, bucket), (c, n))| ConditionRow {
                    condition,
                    bucket,
                    accuracy: Rate::new(c, n),
                })
                .collect();
            // Rotations in numeric order (0, 90, 180, 270), sizes small to large.
            let order = |r: &ConditionRow| {
                let rank = match r.condition.as_str() {
                    "size" => SIZE_BUCKETS_MP
                        .iter()
                        .position(|(_, n)| *n == r.bucket)
                        .unwrap_or(usize::MAX),
                    "rotation" => r.bucket.parse::<usize>().unwrap_or(usize::MAX),
                    _ => 0,
                };
                (r.condition.clone(), rank, r.bucket.clone())
            };
            rows.sort_by_key(order);
            rows
        },
    }
}

fn field_metrics(fields: &[FieldOutcome]) -> FieldMetrics {
    let n = fields.len() as u64;
    let count = |p: &dyn Fn(&FieldOutcome) -> bool| fields.iter().filter(|f| p(f)).count() as u64;
    let accepted = count(&|f| f.status == FieldStatus::Accepted);
    let flagged = count(&|f| f.status == FieldStatus::Flagged);
    let missing = count(&|f| f.status == FieldStatus::Missing);
    let silent = count(&|f| f.silent_error());
    let justified = count(&|f| f.justified_flag());

    let mut by_code: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for f in fields.iter().filter(|f| f.status == FieldStatus::Flagged) {
        let codes: BTreeSet<&String> = f.flags.iter().collect();
        for c in codes {
            let e = by_code.entry(c.clone()).or_insert((0, 0));
            e.0 += u64::from(f.justified_flag());
            e.1 += 1;
        }
    }
    let mut per: BTreeMap<&str, (u64, u64, u64, u64)> = BTreeMap::new();
    for f in fields {
        let e = per.entry(f.field.as_str()).or_insert((0, 0, 0, 0));
        e.0 += 1;
        e.1 += u64::from(f.status == FieldStatus::Accepted);
        e.2 += u64::from(f.silent_error());
        e.3 += u64::from(f.status != FieldStatus::Accepted);
    }
    FieldMetrics {
        scored: n,
        accepted,
        flagged,
        missing,
        accepted_accuracy: Rate::new(accepted - silent, accepted),
        silent_errors: BoundedRate::new(silent, n),
        silent_errors_among_accepted: BoundedRate::new(silent, accepted),
        review: Rate::new(flagged + missing, n),
        flag_precision: Rate::new(justified, flagged),
        flag_precision_by_code: by_code
            .into_iter()
            .map(|(code, (j, k))| FlagCodeRow {
                code,
                precision: Rate::new(j, k),
            })
            .collect(),
        per_field: per
            .into_iter()
            .map(|(id, (k, acc, sil, rev))| PerField {
                field: id.to_string(),
                scored: k,
                accepted: acc,
                silent_errors: BoundedRate::new(sil, k),
                review: Rate::new(rev, k),
            })
            .collect(),
    }
}

fn officer_metrics(rows: Vec<OfficerErrorRow>, not_checkable: u64) -> OfficerMetrics {
    let found = rows.iter().filter(|r| r.found).count() as u64;
    let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &rows {
        let e = by_kind.entry(r.kind.clone()).or_insert((0, 0));
        e.0 += u64::from(r.found);
        e.1 += 1;
    }
    OfficerMetrics {
        recall: Rate::new(found, rows.len() as u64),
        by_kind: by_kind
            .into_iter()
            .map(|(k, (f, n))| (k, Rate::new(f, n)))
            .collect(),
        not_checkable,
        errors: rows,
    }
}

/// One line per flag code, `  code  count of total (rate%)`, as the terminal summaries print
/// flag precision.
pub fn flag_rows_text(rows: &[FlagCodeRow]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "  {:<22} {:>6} of {:>6} ({:.1}%)\n",
                r.code,
                r.precision.count,
                r.precision.total,
                100.0 * r.precision.rate
            )
        })
        .collect()
}

/// Expected calibration error and reliability bins of field confidence vs correctness, over
/// fields that were read.
pub fn calibration(points: &[(f64, bool)]) -> (f64, Vec<CalibrationBin>) {
    let mut sums = vec![(0u64, 0.0f64, 0u64); ECE_BINS];
    for &(c, ok) in points {
        // Bin i covers [i/10, (i+1)/10); confidence 1.0 falls in the last bin.
        let i = ((c.clamp(0.0, 1.0) * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        sums[i].0 += 1;
        sums[i].1 += c;
        sums[i].2 += u64::from(ok);
    }
    let n = points.len() as f64;
    let mut ece = 0.0;
    let bins = sums
        .iter()
        .enumerate()
        .map(|(i, &(k, csum, ok))| {
            let (mc, acc) = if k == 0 {
                (0.0, 0.0)
            } else {
                (csum / k as f64, ok as f64 / k as f64)
            };
            if k > 0 {
                ece += k as f64 / n * (acc - mc).abs();
            }
            CalibrationBin {
                lower: i as f64 / ECE_BINS as f64,
                upper: (i + 1) as f64 / ECE_BINS as f64,
                count: k,
                mean_confidence: mc,
                accuracy: acc,
            }
        })
        .collect();
    (ece, bins)
}

/// Risk (wrong among accepted) against coverage (share accepted) as the threshold moves down
/// through the confidences of `points` (confidence, correct). One point per distinct
/// confidence (ties are accepted together).
pub fn risk_coverage(points: &[(f64, bool)]) -> Vec<RiskCoveragePoint> {
    let mut sorted: Vec<(f64, bool)> = points.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n = sorted.len() as f64;
    let mut out = Vec::new();
    let (mut acc, mut err) = (0u64, 0u64);
    let mut i = 0;
    while i < sorted.len() {
        let t = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == t {
            acc += 1;
            err += u64::from(!sorted[i].1);
            i += 1;
        }
        out.push(RiskCoveragePoint {
            threshold: t,
            coverage: acc as f64 / n,
            risk: ratio(err, acc),
            accepted: acc,
            errors: err,
        });
    }
    out
}

/// Keep about `max` points of a curve, evenly spaced in coverage, always with its ends.
fn thin(curve: Vec<RiskCoveragePoint>, max: usize) -> Vec<RiskCoveragePoint> {
    if curve.len() <= max {
        return curve;
    }
    let mut out = Vec::with_capacity(max + 1);
    let mut next = 0.0;
    let last = curve.len() - 1;
    for (i, p) in curve.into_iter().enumerate() {
        if i == 0 || i == last || p.coverage >= next {
            out.push(p);
            next = p.coverage + 1.0 / max as f64;
        }
    }
    out
}

fn confidence_metrics(fields: &[FieldOutcome]) -> ConfidenceMetrics {
    let read: Vec<(f64, bool)> = fields
        .iter()
        .filter(|f| f.read_at_all())
        .map(|f| (f.confidence, f.correct))
        .collect();
    let (ece, bins) = calibration(&read);
    let decided: Vec<&FieldOutcome> = fields.iter().filter(|f| f.threshold_decides()).collect();
    let pts: Vec<(f64, bool)> = decided.iter().map(|f| (f.confidence, f.correct)).collect();
    let acc: Vec<&&FieldOutcome> = decided
        .iter()
        .filter(|f| f.status == FieldStatus::Accepted)
        .collect();
    let errors = acc.iter().filter(|f| !f.correct).count() as u64;
    let operating_point = (!decided.is_empty()).then(|| RiskCoveragePoint {
        threshold: acc
            .iter()
            .map(|f| f.confidence)
            .fold(f64::INFINITY, f64::min),
        coverage: acc.len() as f64 / decided.len() as f64,
        risk: ratio(errors, acc.len() as u64),
        accepted: acc.len() as u64,
        errors,
    });
    ConfidenceMetrics {
        fields: read.len() as u64,
        ece,
        bins,
        threshold_decided: decided.len() as u64,
        risk_coverage: thin(risk_coverage(&pts), RISK_COVERAGE_POINTS),
        operating_point,
    }
}

fn speed_metrics(submissions: u64, pages: u64, stage_ms: BTreeMap<String, f64>) -> SpeedMetrics {
    let total_ms: f64 = stage_ms.values().sum();
    SpeedMetrics {
        submissions,
        pages,
        total_ms,
        pages_per_second: if total_ms > 0.0 {
            pages as f64 / (total_ms / 1000.0)
        } else {
            0.0
        },
        ms_per_page: stage_ms
            .into_iter()
            .map(|(k, v)| (k, if pages > 0 { v / pages as f64 } else { 0.0 }))
            .collect(),
    }
}

/// The headline figures (name, value) shown in the summary and compared between runs.
pub fn headline(m: &Metrics) -> Vec<(&'static str, f64)> {
    let mut v = vec![
        ("submissions scored", m.submissions_scored as f64),
        ("box accuracy", m.boxes.accuracy.rate),
        ("accepted-field accuracy", m.fields.accepted_accuracy.rate),
        ("field silent error rate", m.fields.silent_errors.rate),
        (
            "field silent error 95% upper bound",
            m.fields.silent_errors.upper95,
        ),
        ("field silent errors", m.fields.silent_errors.count as f64),
        ("field review rate", m.fields.review.rate),
        (
            "submission silent error rate",
            m.submissions.silently_wrong.rate,
        ),
        (
            "submission silent error 95% upper bound",
            m.submissions.silently_wrong.upper95,
        ),
        ("submission review rate", m.submissions.review.rate),
        (
            "accepted without officer error",
            m.submissions.clean_accepted.rate,
        ),
        ("flag precision", m.fields.flag_precision.rate),
        ("officer-error recall", m.officer_errors.recall.rate),
        ("page identification", m.pages.identification.rate),
        ("alignment good", m.pages.alignment_good.rate),
    ];
    if let Some(a) = &m.pages.alignment_error {
        v.push(("alignment error mean mm", a.mean_mm));
        v.push(("alignment error max mm", a.max_mm));
    }
    v.push(("confidence ECE", m.confidence.ece));
    v.push(("pages per second (one worker)", m.speed.pages_per_second));
    v
}
