//! Reviewer corrections as truth (`rekap eval --db`): how often the machine's readings were
//! right on the fields that a person reviewed in the review service, per flag code and per
//! confidence band; and, for a results file of the same photos (another model, other settings),
//! how its readings fare against the same reviewed values.
//!
//! Only reviewed fields have truth here. Fields the machine accepted are not reviewed, so their
//! error rate (the silent error rate) cannot be measured from a review database: the summary
//! says so instead of reporting a number. Reviewed fields are the flagged ones, a harder sample
//! than the form as a whole; rates are over that sample.
//!
//! Invariant: a field counts as reviewed only with a reviewer's provenance
//! (`reviewer_confirmed`, `reviewer_corrected`, `officer_inconsistency`); its `value` is then
//! what the reviewer recorded as written on the paper.

use crate::eval::metrics::{BoundedRate, CalibrationBin, FlagCodeRow, Rate, calibration};
use crate::pipeline::SubmissionReport;
use crate::store::{ExportField, ExportSubmission, photo_key};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Provenances that carry a reviewer's reading.
pub const REVIEWED_PROVENANCES: [&str; 3] = [
    "reviewer_confirmed",
    "reviewer_corrected",
    "officer_inconsistency",
];

/// One reviewed field of an export: the machine's reading beside the reviewer's (`read.value`
/// is what the reviewer recorded as written; `None`: left empty on the paper).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReviewedField<'a> {
    pub submission: &'a str,
    pub field: &'a str,
    pub read: &'a ExportField,
}

impl ReviewedField<'_> {
    pub fn machine_right(&self) -> bool {
        self.read.machine_value == self.read.value
    }
}

/// The reviewed fields of every submission in an export, in export order.
pub fn reviewed_fields(export: &[ExportSubmission]) -> Vec<ReviewedField<'_>> {
    export
        .iter()
        .flat_map(|s| {
            s.fields
                .iter()
                .filter(|(_, f)| REVIEWED_PROVENANCES.contains(&f.provenance.as_str()))
                .map(|(id, f)| ReviewedField {
                    submission: &s.submission,
                    field: id,
                    read: f,
                })
        })
        .collect()
}

/// How the stored machine readings fare against the reviewers.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewedMetrics {
    pub submissions: u64,
    /// Fields of those submissions by provenance (`machine_accepted`, `unreviewed`, ...).
    pub fields_by_provenance: BTreeMap<String, u64>,
    /// Reviewed fields whose machine reading differs from the reviewer's.
    pub machine_errors: BoundedRate,
    /// Reviewed fields the reviewer marked as written inconsistently by the officers.
    pub officer_inconsistencies: u64,
    /// Per flag code: reviewed fields carrying it, and how many of them the machine misread.
    pub flag_precision: Vec<FlagCodeRow>,
    /// Machine confidence against being right, on reviewed fields.
    pub ece: f64,
    pub calibration: Vec<CalibrationBin>,
}

pub fn reviewed_metrics(
    export: &[ExportSubmission],
    reviewed: &[ReviewedField<'_>],
) -> ReviewedMetrics {
    let mut by_prov: BTreeMap<String, u64> = BTreeMap::new();
    for s in export {
        for f in s.fields.values() {
            *by_prov.entry(f.provenance.clone()).or_default() += 1;
        }
    }
    let wrong = reviewed.iter().filter(|f| !f.machine_right()).count() as u64;
    let mut codes: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for f in reviewed {
        let mut seen: Vec<&str> = Vec::new();
        for c in &f.read.flags {
            if seen.contains(&c.as_str()) {
                continue;
            }
            seen.push(c);
            let e = codes.entry(c).or_default();
            e.1 += 1;
            if !f.machine_right() {
                e.0 += 1;
            }
        }
    }
    let points: Vec<(f64, bool)> = reviewed
        .iter()
        .map(|f| (f.read.machine_confidence, f.machine_right()))
        .collect();
    let (ece, bins) = calibration(&points);
    ReviewedMetrics {
        submissions: export.len() as u64,
        fields_by_provenance: by_prov,
        machine_errors: BoundedRate::new(wrong, reviewed.len() as u64),
        officer_inconsistencies: reviewed
            .iter()
            .filter(|f| f.read.provenance == "officer_inconsistency")
            .count() as u64,
        flag_precision: codes
            .into_iter()
            .map(|(code, (hit, n))| FlagCodeRow {
                code: code.to_string(),
                precision: Rate::new(hit, n),
            })
            .collect(),
        ece,
        calibration: bins,
    }
}

/// A results file's readings against the reviewed values of the same photos.
#[derive(Debug, Clone, Serialize)]
pub struct ResultsAgainstReview {
    /// Submissions of the results file whose photo set is in the database.
    pub matched_submissions: u64,
    /// Submissions of the results file not found in the database (by photo set).
    pub unmatched_submissions: u64,
    /// Reviewed fields of matched submissions that the results file reads.
    pub fields: u64,
    /// Of those, read with another value than the reviewer's.
    pub errors: Rate,
    /// Of those, accepted by the results file, and accepted with another value than the
    /// reviewer's: silent errors on the reviewed sample.
    pub accepted: u64,
    pub silent_errors: BoundedRate,
    /// Reviewed fields the stored machine reading got wrong that this run reads right, and the
    /// other way round.
    pub fixed: u64,
    pub broken: u64,
}

/// Score `results` (rekap-results JSONL of the same photos) against the reviewed fields, pairing
/// submissions by the set of their photos' sha256.
pub fn results_against_review<'r>(
    export: &[ExportSubmission],
    reviewed: &[ReviewedField<'_>],
    results: impl IntoIterator<Item = &'r SubmissionReport>,
) -> ResultsAgainstReview {
    let by_key: HashMap<String, &str> = export
        .iter()
        .map(|s| {
            (
                photo_key(s.photos.iter().map(String::as_str)),
                s.submission.as_str(),
            )
        })
        .collect();
    let truth: HashMap<(&str, &str), &ReviewedField> = reviewed
        .iter()
        .map(|f| ((f.submission, f.field), f))
        .collect();
    let (mut matched, mut unmatched) = (0u64, 0u64);
    let (mut n, mut wrong, mut accepted, mut silent, mut fixed, mut broken) = (0, 0, 0, 0, 0, 0);
    for r in results {
        let key = photo_key(r.pages.iter().filter_map(|p| p.sha256.as_deref()));
        let Some(name) = by_key.get(&key) else {
            unmatched += 1;
            continue;
        };
        matched += 1;
        for (id, f) in &r.fields {
            let Some(t) = truth.get(&(*name, id.as_str())) else {
                continue;
            };
            n += 1;
            let right = f.value == t.read.value;
            if !right {
                wrong += 1;
            }
            if f.status == crate::decide::FieldStatus::Accepted {
                accepted += 1;
                if !right {
                    silent += 1;
                }
            }
            match (t.machine_right(), right) {
                (false, true) => fixed += 1,
                (true, false) => broken += 1,
                _ => {}
            }
        }
    }
    ResultsAgainstReview {
        matched_submissions: matched,
        unmatched_submissions: unmatched,
        fields: n,
        errors: Rate::new(wrong, n),
        accepted,
        silent_errors: BoundedRate::new(silent, accepted),
        fixed,
        broken,
    }
}

/// The terminal summary.
pub fn summary(m: &ReviewedMetrics, run: Option<(&str, &ResultsAgainstReview)>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let pct = |r: f64| 100.0 * r;
    let _ = writeln!(s, "submissions: {}", m.submissions);
    let provs: Vec<String> = m
        .fields_by_provenance
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    let _ = writeln!(s, "fields by provenance: {}", provs.join(", "));
    let e = &m.machine_errors;
    let _ = writeln!(
        s,
        "reviewed fields: {}; machine reading differs from the reviewer's in {} ({:.2}%, one-sided \
         95% upper bound {:.2}%); officer inconsistencies {}",
        e.total,
        e.count,
        pct(e.rate),
        pct(e.upper95),
        m.officer_inconsistencies
    );
    let _ = writeln!(
        s,
        "machine-accepted fields are not reviewed: their (silent) error rate is not measured here"
    );
    if !m.flag_precision.is_empty() {
        let _ = writeln!(
            s,
            "flag precision on reviewed fields (machine misread / flagged):"
        );
        s.push_str(&crate::eval::metrics::flag_rows_text(&m.flag_precision));
    }
    let _ = writeln!(
        s,
        "confidence calibration on reviewed fields: ECE {:.3}",
        m.ece
    );
    if let Some((name, r)) = run {
        let _ = writeln!(
            s,
            "== {name} against the reviewed values: {} submissions matched by photos ({} not in \
             the database); {} reviewed fields read, {} differ ({:.2}%); accepted {}, of which \
             wrong {} (one-sided 95% upper bound {:.2}%); fixed {} of the stored misreads, broke {} \
             stored right readings",
            r.matched_submissions,
            r.unmatched_submissions,
            r.fields,
            r.errors.count,
            pct(r.errors.rate),
            r.accepted,
            r.silent_errors.count,
            pct(r.silent_errors.upper95),
            r.fixed,
            r.broken
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ExportField;

    fn field(prov: &str, value: Option<i64>, machine: Option<i64>, flags: &[&str]) -> ExportField {
        ExportField {
            value,
            provenance: prov.into(),
            machine_value: machine,
            machine_confidence: 0.8,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            reviewed_by: None,
            reviewed_ms: None,
            photo_sha256: None,
            page: Some(1),
        }
    }

    fn export() -> Vec<ExportSubmission> {
        let mut fields = BTreeMap::new();
        fields.insert("a".into(), field("machine_accepted", Some(5), Some(5), &[]));
        fields.insert(
            "b".into(),
            field("reviewer_confirmed", Some(7), Some(7), &["low_confidence"]),
        );
        fields.insert(
            "c".into(),
            field(
                "reviewer_corrected",
                Some(152),
                Some(652),
                &["rule_violated", "low_confidence"],
            ),
        );
        fields.insert(
            "d".into(),
            field(
                "officer_inconsistency",
                Some(30),
                Some(30),
                &["rule_violated"],
            ),
        );
        fields.insert(
            "e".into(),
            field("unreviewed", Some(1), Some(1), &["low_confidence"]),
        );
        vec![ExportSubmission {
            id: 1,
            submission: "tps-1".into(),
            tps: None,
            state: "done".into(),
            open_fields: 1,
            photos: vec!["bb".into(), "aa".into()],
            fields,
        }]
    }

    #[test]
    fn only_reviewed_fields_are_truth_and_misreads_are_counted_per_code() {
        let ex = export();
        let rev = reviewed_fields(&ex);
        let ids: Vec<&str> = rev.iter().map(|f| f.field).collect();
        assert_eq!(ids, ["b", "c", "d"]);
        let m = reviewed_metrics(&ex, &rev);
        assert_eq!((m.machine_errors.count, m.machine_errors.total), (1, 3));
        assert_eq!(m.officer_inconsistencies, 1);
        assert_eq!(m.fields_by_provenance.get("machine_accepted"), Some(&1));
        let code = |c: &str| {
            m.flag_precision
                .iter()
                .find(|r| r.code == c)
                .map(|r| (r.precision.count, r.precision.total))
        };
        assert_eq!(code("low_confidence"), Some((1, 2)));
        assert_eq!(code("rule_violated"), Some((1, 2)));
        let text = summary(&m, None);
        assert!(text.contains("not measured here"), "{text}");
    }

    #[test]
    fn a_results_file_is_paired_by_photos_and_scored_on_reviewed_fields() {
        let ex = export();
        let rev = reviewed_fields(&ex);
        let report = |shas: &[&str], c: i64, c_status: &str| -> SubmissionReport {
            let pages: Vec<serde_json::Value> = shas
                .iter()
                .map(|s| serde_json::json!({"file": "p.jpg", "sha256": s, "page": 1}))
                .collect();
            let f = |v: i64, st: &str| {
                serde_json::json!({"value": v, "status": st, "confidence": 0.9, "boxes": [],
                    "channels": {}, "alternatives": [], "flags": []})
            };
            serde_json::from_value(serde_json::json!({
                "schema": "rekap-results/1", "submission": "other-name", "status": "needs_review",
                "template": "t", "model": "m", "pages": pages,
                "fields": {"b": f(8, "accepted"), "c": f(c, c_status), "d": f(30, "flagged"),
                           "a": f(5, "accepted")},
                "checks": [], "flags": [],
                "timings": {"decode_ms": 0.0, "align_ms": 0.0, "segment_ms": 0.0,
                            "recognize_ms": 0.0, "decide_ms": 0.0}
            }))
            .expect("report")
        };
        // Same photos in another order (and another submission name): paired.
        let r = results_against_review(&ex, &rev, &[report(&["aa", "bb"], 152, "accepted")]);
        assert_eq!((r.matched_submissions, r.unmatched_submissions), (1, 0));
        assert_eq!(r.fields, 3);
        // b read 8 (reviewer 7) and accepted: a silent error; c now right; d right.
        assert_eq!(
            (r.errors.count, r.accepted, r.silent_errors.count),
            (1, 2, 1)
        );
        assert_eq!((r.fixed, r.broken), (1, 1));
        let other = results_against_review(&ex, &rev, &[report(&["aa"], 152, "flagged")]);
        assert_eq!(
            (other.matched_submissions, other.unmatched_submissions),
            (0, 1)
        );
        assert_eq!(other.fields, 0);
    }
}
