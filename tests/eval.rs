//! `rekap eval` on a small truth/results pair written by hand, with every metric checked against
//! answers worked out on paper (see the comments), plus bad input and the HTML report.

use rekap::cli::eval::{EvalArgs, run};
use rekap::eval::metrics::{
    Evaluation, alignment_errors_mm, box_corners, calibration, evaluate, risk_coverage,
};
use rekap::eval::stats::{clopper_pearson_upper, ratio};
use rekap::eval::tune::tune;
use rekap::eval::{Scored, pair_with_truth, read_results};
use rekap::template::Template;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const TEMPLATE: &str = "c-hasil-ppwp-2024";
const EPS: f64 = 1e-12;

fn template() -> Template {
    Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/c-hasil-ppwp-2024.toml"))
        .unwrap()
}

/// Truth homography: 5 px per mm, no rotation.
const H_TRUTH: [f64; 9] = [5.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 1.0];
/// Result homography 1 mm off in x (5 px).
const H_OFF_1MM_X: [f64; 9] = [5.0, 0.0, 5.0, 0.0, 5.0, 0.0, 0.0, 0.0, 1.0];
/// Result homography 2 mm off in y (10 px).
const H_OFF_2MM_Y: [f64; 9] = [5.0, 0.0, 0.0, 0.0, 5.0, 10.0, 0.0, 0.0, 1.0];

fn truth_page(n: u32, w: u32, h: u32, rot: f64, hard: &[&str]) -> Value {
    json!({"file": format!("page{n}.jpg"), "page": n, "width": w, "height": h,
           "homography": H_TRUTH,
           "conditions": {"rotation_deg": rot, "blur_px": 0.5, "jpeg_quality": 85, "hard": hard}})
}

fn tf(value: Option<i64>, boxes: &[&str]) -> Value {
    json!({"value": value, "boxes": boxes})
}

fn truth(sub: &str, pages: Vec<Value>, fields: Value, officer: Value) -> Value {
    json!({"schema": "rekap-truth/1", "template": TEMPLATE, "submission": sub, "seed": 7,
           "index": 0, "pages": pages, "fields": fields, "officer_errors": officer})
}

fn rpage(sub: &str, n: u32, page: Option<u32>, h: [f64; 9], good: bool) -> Value {
    let mut p = json!({"file": format!("synth/{sub}/page{n}.jpg"), "sha256": "00", "page": page});
    if let Some(pg) = page {
        p["alignment"] = json!({"page": pg, "tag_id": 100 + pg, "homography": h,
            "rotation_deg": 0.0, "tag_hamming": 0, "squares_used": 8, "squares_expected": 8,
            "rms_error_mm": 0.2, "max_error_mm": 0.4, "px_per_mm": 5.0, "good": good});
    }
    p
}

fn rf(value: Option<i64>, status: &str, conf: f64, labels: &[&str], flags: &[&str]) -> Value {
    let boxes: Vec<Value> = labels
        .iter()
        .map(|l| json!({"label": l, "confidence": 0.9, "top": [[l, 0.9]]}))
        .collect();
    let mut f = json!({"value": value, "status": status, "confidence": conf, "boxes": boxes,
                       "channels": {}, "alternatives": [{"value": value, "probability": conf}]});
    if !flags.is_empty() {
        f["flags"] = json!(flags);
    }
    f
}

fn timings() -> Value {
    // 100 ms per submission in all.
    json!({"decode_ms": 10.0, "align_ms": 20.0, "segment_ms": 30.0, "recognize_ms": 35.0,
           "decide_ms": 5.0})
}

fn result(
    sub: &str,
    status: &str,
    pages: Vec<Value>,
    fields: Value,
    checks: Value,
    flags: Value,
) -> Value {
    json!({"schema": "rekap-results/1", "submission": sub, "status": status,
           "template": TEMPLATE, "model": "test", "pages": pages, "fields": fields,
           "checks": checks, "flags": flags, "timings": timings()})
}

/// The hand-made set. Worked answers:
///
/// s1 (accepted; page 1 only): dpt.l 123 read 123 accepted 0.999; dpt.p 45 [X 4 5] read 45
///   [blank 4 5] accepted 0.998 (box wrong, field right); dpt.lp 168 read 169 accepted 0.997
///   (SILENT ERROR). Result H = truth H (0 mm).
/// s2 (needs_review; pages 1, 2): dpt.l 200 accepted 0.999; dpt.p 100 read 700 flagged
///   low_confidence 0.6 (misread: justified); dpt.lp 310 (officer sum error, rule dpt.lp_sum)
///   read 310 flagged rule_violated 0.99 (justified); votes.1 57 [X 5 7] read 57 flagged
///   channel_disagreement 0.9 (officer bubble mismatch: justified). Page 1 H 1 mm off, page 2
///   (3 MP, rotation 90, glare) 2 mm off and alignment not good.
/// s3 (needs_review; page 2 photo identified as page 3): dpt.l 10 read 10 flagged low_confidence
///   0.95 (not justified); dpt.p blank read blank flagged blank_field 0.99 (not justified);
///   dpt.lp 10 accepted 0.999; votes.1 8 missing (page not found). Officer errors: one with rule
///   votes.1.rows not flagged (missed), one with no rule (not checkable).
fn write_set(dir: &Path) -> (PathBuf, PathBuf) {
    let truth_dir = dir.join("truth");
    let truths = [
        truth(
            "s1",
            vec![truth_page(1, 3000, 4000, 358.0, &[])],
            json!({"dpt.l": tf(Some(123), &["1","2","3"]), "dpt.p": tf(Some(45), &["X","4","5"]),
                   "dpt.lp": tf(Some(168), &["1","6","8"]),
                   "votes.1.bubbles": {"filled": [[0],[1],[5]]}}),
            json!([]),
        ),
        truth(
            "s2",
            vec![
                truth_page(1, 3000, 4000, 0.0, &[]),
                truth_page(2, 1500, 2000, 91.0, &["glare"]),
            ],
            json!({"dpt.l": tf(Some(200), &["2","0","0"]), "dpt.p": tf(Some(100), &["1","0","0"]),
                   "dpt.lp": tf(Some(310), &["3","1","0"]), "votes.1": tf(Some(57), &["X","5","7"]),
                   "votes.1.tally": {"count": 57}}),
            json!([{"kind": "sum_mismatch", "rule": "dpt.lp_sum", "fields": ["dpt.lp"], "note": ""},
                   {"kind": "bubble_mismatch", "rule": null, "fields": ["votes.1"], "note": ""}]),
        ),
        truth(
            "s3",
            vec![
                truth_page(1, 3000, 4000, 0.0, &[]),
                truth_page(2, 3000, 4000, 0.0, &[]),
            ],
            json!({"dpt.l": tf(Some(10), &["X","1","0"]), "dpt.p": tf(None, &["blank","blank","blank"]),
                   "dpt.lp": tf(Some(10), &["X","1","0"]), "votes.1": tf(Some(8), &["X","X","8"])}),
            json!([{"kind": "row_total_mismatch", "rule": "votes.1.rows", "fields": ["votes.1.row1"], "note": ""},
                   {"kind": "smudge", "rule": null, "fields": [], "note": "not checkable"}]),
        ),
    ];
    for t in &truths {
        let sub = t["submission"].as_str().unwrap();
        std::fs::create_dir_all(truth_dir.join(sub)).unwrap();
        std::fs::write(truth_dir.join(sub).join("truth.json"), t.to_string()).unwrap();
    }
    let results = [
        result(
            "s1",
            "accepted",
            vec![rpage("s1", 1, Some(1), H_TRUTH, true)],
            json!({"dpt.l": rf(Some(123), "accepted", 0.999, &["1","2","3"], &[]),
                   "dpt.p": rf(Some(45), "accepted", 0.998, &["blank","4","5"], &[]),
                   "dpt.lp": rf(Some(169), "accepted", 0.997, &["1","6","9"], &[])}),
            json!([]),
            json!([]),
        ),
        result(
            "s2",
            "needs_review",
            vec![
                rpage("s2", 1, Some(1), H_OFF_1MM_X, true),
                rpage("s2", 2, Some(2), H_OFF_2MM_Y, false),
            ],
            json!({"dpt.l": rf(Some(200), "accepted", 0.999, &["2","0","0"], &[]),
                   "dpt.p": rf(Some(700), "flagged", 0.6, &["7","0","0"], &["low_confidence"]),
                   "dpt.lp": rf(Some(310), "flagged", 0.99, &["3","1","0"], &["rule_violated"]),
                   "votes.1": rf(Some(57), "flagged", 0.9, &["X","5","7"], &["channel_disagreement"])}),
            json!([{"rule": "dpt.lp_sum", "kind": "hard", "status": "violated",
                    "check": "dpt.lp == dpt.l + dpt.p", "lhs": 310.0, "rhs": 900.0,
                    "values": {"dpt.l": 200, "dpt.p": 700, "dpt.lp": 310}}]),
            json!([{"code": "low_confidence", "message": "m", "field": "dpt.p"},
                   {"code": "rule_violated", "message": "m", "rule": "dpt.lp_sum", "field": "dpt.lp"},
                   {"code": "channel_disagreement", "message": "m", "field": "votes.1"}]),
        ),
        result(
            "s3",
            "needs_review",
            vec![
                rpage("s3", 1, Some(1), H_TRUTH, true),
                rpage("s3", 2, Some(3), H_TRUTH, true),
            ],
            json!({"dpt.l": rf(Some(10), "flagged", 0.95, &["X","1","0"], &["low_confidence"]),
                   "dpt.p": rf(None, "flagged", 0.99, &["blank","blank","blank"], &["blank_field"]),
                   "dpt.lp": rf(Some(10), "accepted", 0.999, &["X","1","0"], &[]),
                   "votes.1": rf(None, "missing", 0.0, &[], &["page_missing"])}),
            json!([]),
            json!([{"code": "page_missing", "message": "m", "page": 2}]),
        ),
    ];
    let path = dir.join("results.jsonl");
    let text: Vec<String> = results.iter().map(|r| r.to_string()).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    (truth_dir, path)
}

fn scored(truth: &Path, results: &Path) -> Vec<Scored> {
    let rf = read_results(results).unwrap();
    let (s, problems) = pair_with_truth(truth, &rf);
    assert!(problems.is_empty(), "{problems:?}");
    s
}

fn eval_set() -> (tempfile::TempDir, Evaluation) {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = write_set(dir.path());
    let e = evaluate(&scored(&t, &r), Some(&template()));
    (dir, e)
}

fn idx(l: &str) -> usize {
    match l {
        "X" => 10,
        "blank" => 11,
        d => d.parse().unwrap(),
    }
}

#[test]
fn box_level() {
    let (_d, e) = eval_set();
    let b = &e.metrics.boxes;
    // s1 9 boxes (X->blank, 8->9 wrong), s2 12 (1->7 wrong), s3 9 (votes.1 missing: not counted).
    assert_eq!((b.accuracy.count, b.accuracy.total), (27, 30));
    assert!((b.accuracy.rate - 0.9).abs() < EPS);
    let c = &b.confusion;
    assert_eq!(c[idx("X")][idx("blank")], 1);
    assert_eq!(c[idx("8")][idx("9")], 1);
    assert_eq!(c[idx("1")][idx("7")], 1);
    assert_eq!(c[idx("blank")][idx("blank")], 3);
    assert_eq!(c[idx("X")][idx("X")], 3); // s2 votes.1, s3 dpt.l, s3 dpt.lp
    // Truth "0" boxes: s2 dpt.l 2, dpt.p 2, dpt.lp 1; s3 dpt.l 1, dpt.lp 1 = 7, all read "0".
    assert_eq!(c[idx("0")][idx("0")], 7);
    let row0: u64 = c[idx("0")].iter().sum();
    assert_eq!(row0, 7);
    let total: u64 = c.iter().flatten().sum();
    assert_eq!(total, 30);
    let cond = |k: &str, bucket: &str| {
        b.by_condition
            .iter()
            .find(|r| r.condition == k && r.bucket == bucket)
            .map(|r| (r.accuracy.count, r.accuracy.total))
    };
    // s2 page 2 (votes.1, 3 boxes, all right) is 3 MP, rotation 91 -> 90, glare.
    assert_eq!(cond("size", "2-6 MP"), Some((3, 3)));
    assert_eq!(cond("size", ">= 6 MP"), Some((24, 27)));
    assert_eq!(cond("hard_case", "yes"), Some((3, 3)));
    assert_eq!(cond("hard_case", "no"), Some((24, 27)));
    assert_eq!(cond("hard", "glare"), Some((3, 3)));
    assert_eq!(cond("rotation", "90"), Some((3, 3)));
    // s1's 358 degrees rounds to the 0 bucket.
    assert_eq!(cond("rotation", "0"), Some((24, 27)));
    assert_eq!(cond("rotation", "270"), None);
}

#[test]
fn field_level() {
    let (_d, e) = eval_set();
    let f = &e.metrics.fields;
    assert_eq!((f.scored, f.accepted, f.flagged, f.missing), (11, 5, 5, 1));
    // Accepted: s1 x3 (dpt.lp wrong), s2 dpt.l, s3 dpt.lp.
    assert_eq!(
        (f.accepted_accuracy.count, f.accepted_accuracy.total),
        (4, 5)
    );
    assert_eq!((f.silent_errors.count, f.silent_errors.total), (1, 11));
    assert!((f.silent_errors.rate - 1.0 / 11.0).abs() < EPS);
    assert!((f.silent_errors.upper95 - clopper_pearson_upper(1, 11, 0.95)).abs() < EPS);
    // P(X <= 1 | n = 11, p = bound) = 0.05 at the one-sided bound.
    let p = f.silent_errors.upper95;
    let tail = (1.0 - p).powi(11) + 11.0 * p * (1.0 - p).powi(10);
    assert!((tail - 0.05).abs() < 1e-9, "{p} {tail}");
    assert_eq!(
        (
            f.silent_errors_among_accepted.count,
            f.silent_errors_among_accepted.total
        ),
        (1, 5)
    );
    // Review: 5 flagged + 1 missing of 11.
    assert_eq!((f.review.count, f.review.total), (6, 11));
    // Flag precision: s2 dpt.p (misread), s2 dpt.lp (officer rule), s2 votes.1 (bubble
    // mismatch) are real; s3 dpt.l (low confidence, right) and s3 dpt.p (blank, right) are not.
    assert_eq!((f.flag_precision.count, f.flag_precision.total), (3, 5));
    let code = |c: &str| {
        f.flag_precision_by_code
            .iter()
            .find(|r| r.code == c)
            .map(|r| (r.precision.count, r.precision.total))
    };
    assert_eq!(code("low_confidence"), Some((1, 2)));
    assert_eq!(code("rule_violated"), Some((1, 1)));
    assert_eq!(code("channel_disagreement"), Some((1, 1)));
    assert_eq!(code("blank_field"), Some((0, 1)));
    let per = |id: &str| f.per_field.iter().find(|p| p.field == id).unwrap();
    assert_eq!(per("dpt.lp").scored, 3);
    assert_eq!(per("dpt.lp").silent_errors.count, 1);
    assert_eq!(per("dpt.l").silent_errors.count, 0);
    assert!((per("dpt.l").silent_errors.upper95 - (1.0 - 0.05f64.powf(1.0 / 3.0))).abs() < 1e-12);
    assert_eq!(
        (per("votes.1").review.count, per("votes.1").review.total),
        (2, 2)
    );
    // Bubbles/tally truth entries are not numeric fields.
    assert!(
        f.per_field
            .iter()
            .all(|p| !p.field.contains("bubbles") && !p.field.contains("tally"))
    );
}

#[test]
fn submission_level_and_officer_errors() {
    let (_d, e) = eval_set();
    let s = &e.metrics.submissions;
    assert_eq!(
        (s.scored, s.accepted, s.needs_review, s.failed),
        (3, 1, 2, 0)
    );
    assert_eq!(s.silently_wrong_names, vec!["s1".to_string()]);
    assert_eq!((s.silently_wrong.count, s.silently_wrong.total), (1, 3));
    assert!((s.silently_wrong.upper95 - clopper_pearson_upper(1, 3, 0.95)).abs() < EPS);
    assert_eq!((s.review.count, s.review.total), (2, 3));
    // Only s1 has no officer error, and it is accepted.
    assert_eq!((s.clean_accepted.count, s.clean_accepted.total), (1, 1));
    let o = &e.metrics.officer_errors;
    // s2 sum_mismatch (rule flag) and bubble_mismatch (channel flag) found; s3 row total missed.
    assert_eq!((o.recall.count, o.recall.total), (2, 3));
    assert_eq!(o.not_checkable, 1);
    assert_eq!(o.by_kind["row_total_mismatch"].count, 0);
    assert_eq!(o.by_kind["bubble_mismatch"].count, 1);
    assert!(o.errors.iter().any(|r| r.submission == "s3" && !r.found));
}

#[test]
fn a_tally_alarm_does_not_find_a_bubble_mismatch() {
    // The same set, with s2's channel flag on votes.1 naming its channel: the bubbles find the
    // officer's bubble/box mismatch, a tally alarm on the same field does not.
    let found_with = |channel: &str| {
        let dir = tempfile::tempdir().unwrap();
        let (t, r) = write_set(dir.path());
        let text = std::fs::read_to_string(&r).unwrap().replace(
            r#"{"code":"channel_disagreement","field":"votes.1","message":"m"}"#,
            &format!(
                r#"{{"channel":"{channel}","code":"channel_disagreement","field":"votes.1","message":"m"}}"#
            ),
        );
        assert!(
            text.contains(&format!(r#""channel":"{channel}""#)),
            "{text}"
        );
        std::fs::write(&r, text).unwrap();
        let e = evaluate(&scored(&t, &r), Some(&template()));
        e.metrics.officer_errors.by_kind["bubble_mismatch"].count
    };
    assert_eq!(found_with("bubbles"), 1);
    assert_eq!(found_with("tally"), 0);
}

#[test]
fn rule_hints_are_scored_against_the_truth() {
    // s2's broken dpt.lp_sum reads dpt.p 700 for 100 (a misreading beside the officer's sum
    // error): no hint as written; a hint naming dpt.p is right only with the true value. Read
    // as 100, the rule is broken by the officer alone, and any hint there is counted apart.
    const VALUES: &str = r#""values":{"dpt.l":200,"dpt.lp":310,"dpt.p":700}"#;
    let hints_with = |dpt_p: i64, hint: Option<(&str, i64)>| {
        let dir = tempfile::tempdir().unwrap();
        let (t, r) = write_set(dir.path());
        let text = std::fs::read_to_string(&r).unwrap();
        assert!(text.contains(VALUES), "{text}");
        let values = VALUES.replace("700", &dpt_p.to_string());
        let hint = hint.map_or(String::new(), |(field, value)| {
            format!(r#","suggestion":{{"field":"{field}","value":{value},"probability":0.01}}"#)
        });
        std::fs::write(&r, text.replace(VALUES, &format!("{values}{hint}"))).unwrap();
        let h = evaluate(&scored(&t, &r), Some(&template())).metrics.hints;
        (
            h.broken_by_misreading,
            h.hinted,
            h.right,
            h.officer_only,
            h.officer_only_hinted,
        )
    };
    assert_eq!(hints_with(700, None), (1, 0, 0, 0, 0));
    assert_eq!(hints_with(700, Some(("dpt.p", 110))), (1, 1, 0, 0, 0));
    assert_eq!(hints_with(700, Some(("dpt.p", 100))), (1, 1, 1, 0, 0));
    assert_eq!(hints_with(100, None), (0, 0, 0, 1, 0));
    assert_eq!(hints_with(100, Some(("dpt.p", 110))), (0, 0, 0, 1, 1));
}

#[test]
fn page_level_and_alignment_error() {
    let (_d, e) = eval_set();
    let p = &e.metrics.pages;
    // 5 truth pages; s3 page 2 was identified as page 3.
    assert_eq!((p.identification.count, p.identification.total), (4, 5));
    assert_eq!(p.misidentified, 1);
    // Good: s1 p1, s2 p1, s3 p1 (s2 p2 not good, s3 p2 misidentified).
    assert_eq!((p.alignment_good.count, p.alignment_good.total), (3, 5));
    let t = template();
    let (n1, n2) = (
        box_corners(&t, 1).len() as f64,
        box_corners(&t, 2).len() as f64,
    );
    assert!(n1 > 0.0 && n2 > 0.0);
    let a = p.alignment_error.as_ref().unwrap();
    assert_eq!(a.pages, 4);
    assert_eq!(a.corners as f64, 3.0 * n1 + n2);
    // s1 p1 0 mm, s2 p1 1 mm, s2 p2 2 mm, s3 p1 0 mm at every corner.
    let want = (n1 * 1.0 + n2 * 2.0) / (3.0 * n1 + n2);
    assert!((a.mean_mm - want).abs() < 1e-9, "{} vs {want}", a.mean_mm);
    assert!((a.max_mm - 2.0).abs() < 1e-9);
}

#[test]
fn alignment_error_with_perspective() {
    // Truth H with perspective; result H = truth H after a (3, -4) mm shift of the template:
    // H_r^-1 H_t p = p - (3, -4), so every corner is exactly 5 mm off.
    let ht = [4.0, 0.3, 120.0, -0.2, 4.5, 80.0, 1e-4, -5e-5, 1.0];
    let m = |a: &[f64; 9], b: &[f64; 9]| {
        let mut o = [0.0; 9];
        for r in 0..3 {
            for c in 0..3 {
                o[r * 3 + c] = (0..3).map(|k| a[r * 3 + k] * b[k * 3 + c]).sum();
            }
        }
        o
    };
    let shift = [1.0, 0.0, 3.0, 0.0, 1.0, -4.0, 0.0, 0.0, 1.0];
    let hr = m(&ht, &shift);
    let errs = alignment_errors_mm(
        ht,
        hr,
        &[[0.0, 0.0], [600.0, 0.0], [600.0, 900.0], [10.0, 20.0]],
    );
    assert_eq!(errs.len(), 4);
    for e in errs {
        assert!((e - 5.0).abs() < 1e-6, "{e}");
    }
}

#[test]
fn confidence_calibration_and_risk_coverage() {
    // Hand case: bin 0.9-1.0 holds four at 0.9 with 3 right (gap 0.15); bin 0.5-0.6 holds two at
    // 0.55 with both right (gap 0.45). ECE = 4/6 * 0.15 + 2/6 * 0.45 = 0.25.
    let pts = [
        (0.9, true),
        (0.9, true),
        (0.9, true),
        (0.9, false),
        (0.55, true),
        (0.55, true),
    ];
    let (ece, bins) = calibration(&pts);
    assert!((ece - 0.25).abs() < 1e-12, "{ece}");
    assert_eq!(bins.len(), 10);
    assert_eq!(bins[9].count, 4);
    assert!((bins[9].accuracy - 0.75).abs() < EPS);
    assert_eq!(bins[5].count, 2);

    let (_d, e) = eval_set();
    let c = &e.metrics.confidence;
    // 10 fields read: nine in 0.9-1.0 (sum of confidences 8.822, 8 right), one at 0.6 (wrong).
    // ECE = 9/10 * |8/9 - 8.822/9| + 1/10 * 0.6 = 0.0822 + 0.06.
    assert_eq!(c.fields, 10);
    assert!((c.ece - 0.1422).abs() < 1e-9, "{}", c.ece);
    // Threshold-decided: the 7 fields flagged for nothing or only low confidence.
    assert_eq!(c.threshold_decided, 7);
    let rc: Vec<(u64, u64)> = c
        .risk_coverage
        .iter()
        .map(|p| (p.accepted, p.errors))
        .collect();
    assert_eq!(rc, vec![(3, 0), (4, 0), (5, 1), (6, 1), (7, 2)]);
    assert!((c.risk_coverage[2].threshold - 0.997).abs() < EPS);
    assert!((c.risk_coverage[2].risk - 0.2).abs() < EPS);
    let op = c.operating_point.unwrap();
    assert_eq!((op.accepted, op.errors), (5, 1));
    assert!((op.coverage - 5.0 / 7.0).abs() < EPS && (op.threshold - 0.997).abs() < EPS);
    // Ties are accepted together.
    let tied = risk_coverage(&[(0.5, true), (0.5, false), (0.9, true)]);
    assert_eq!(tied.len(), 2);
    assert_eq!((tied[1].accepted, tied[1].errors), (3, 1));
}

#[test]
fn speed() {
    let (_d, e) = eval_set();
    let s = &e.metrics.speed;
    // 5 result pages, 3 x 100 ms.
    assert_eq!((s.submissions, s.pages), (3, 5));
    assert!((s.total_ms - 300.0).abs() < EPS);
    assert!((s.pages_per_second - 5.0 / 0.3).abs() < 1e-9);
    assert!((s.ms_per_page["recognize"] - 3.0 * 35.0 / 5.0).abs() < EPS);
}

#[test]
fn clopper_pearson_known_values() {
    let b = clopper_pearson_upper(0, 300, 0.95);
    assert!((b - (1.0 - 0.05f64.powf(1.0 / 300.0))).abs() < 1e-12);
    assert!((b - 0.009_936).abs() < 5e-7, "{b}");
    assert_eq!(ratio(0, 0), 0.0);
}

#[test]
fn tuning_meets_target_with_fewest_reviews() {
    let (_d, e) = eval_set();
    // 11 fields: 0 errors gives bound 1 - 0.05^(1/11) = 0.2384 <= 0.3; accepting down to 0.997
    // adds an error (bound for 1 of 11 is 0.3813 > 0.3). So accept down to 0.998: 4 accepted.
    let t = tune(&e.fields, 0.3).unwrap();
    assert!((t.threshold - 0.998).abs() < EPS, "{t:?}");
    assert_eq!(
        (t.accepted, t.reviews, t.silent_errors, t.fields),
        (4, 7, 0, 11)
    );
    assert!((t.upper95 - (1.0 - 0.05f64.powf(1.0 / 11.0))).abs() < 1e-12);
    assert!(clopper_pearson_upper(1, 11, 0.95) > 0.3);
    // 0.1 needs at least 29 fields even with no error.
    let err = tune(&e.fields, 0.1).unwrap_err().to_string();
    assert!(err.contains("29"), "{err}");
}

#[test]
fn the_summary_names_the_officer_errors_it_missed() {
    // With the tally as the channel, s2's bubble/box mismatch is not found: the terminal
    // summary names it (submission, kind, fields), so nobody needs the report to find it.
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = write_set(dir.path());
    let summary = |r: &Path| {
        let e = evaluate(&scored(&t, r), Some(&template()));
        rekap::cli::eval::summary_text(&[("r", &e.metrics)])
    };
    let before = summary(&r);
    assert!(!before.contains("missed: s2"), "{before}");
    // s3's row total written against its tally is missed in both (no flag names its rule).
    assert!(
        before.contains("  missed: s3 row_total_mismatch"),
        "{before}"
    );
    let text = std::fs::read_to_string(&r).unwrap().replace(
        r#"{"code":"channel_disagreement","field":"votes.1","message":"m"}"#,
        r#"{"channel":"tally","code":"channel_disagreement","field":"votes.1","message":"m"}"#,
    );
    std::fs::write(&r, text).unwrap();
    let s = summary(&r);
    assert!(
        s.contains("  missed: s2 bubble_mismatch - (votes.1)"),
        "{s}"
    );
}

#[test]
fn cli_unreachable_tune_target_writes_no_toml_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = write_set(dir.path());
    let out = dir.path().join("decide.toml");
    let mut a = args(&t, vec![r]);
    a.tune = Some(0.1);
    a.tune_out = out.clone();
    a.json = Some(dir.path().join("m.json"));
    assert_eq!(run(a).unwrap(), rekap::cli::eval::TUNE_FAILED_EXIT);
    assert!(!out.exists());
    assert!(dir.path().join("m.json").exists());
}

fn args(truth: &Path, results: Vec<PathBuf>) -> EvalArgs {
    EvalArgs {
        results,
        truth: Some(truth.to_path_buf()),
        db: None,
        report: None,
        json: None,
        csv: None,
        tune: None,
        tune_out: PathBuf::from("models/decide.toml"),
        template: None,
        gallery_flags: 50,
    }
}

#[test]
fn cli_tune_writes_decide_toml_and_json_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = write_set(dir.path());
    let out = dir.path().join("models/decide.toml");
    let mut a = args(&t, vec![r]);
    a.tune = Some(0.3);
    a.tune_out = out.clone();
    a.json = Some(dir.path().join("m.json"));
    a.csv = Some(dir.path().join("b.csv"));
    assert_eq!(run(a).unwrap(), 0);
    let cfg: rekap::decide::DecideConfig =
        toml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!((cfg.accept_threshold - 0.998).abs() < EPS);
    assert_eq!(
        cfg.max_alternatives,
        rekap::decide::DecideConfig::default().max_alternatives
    );
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap();
    assert_eq!(j["schema"], "rekap-eval/1");
    assert_eq!(
        j["runs"][0]["metrics"]["fields"]["silent_errors"]["count"],
        1
    );
    assert_eq!(j["tune"]["accepted"], 4);
    let csv = std::fs::read_to_string(dir.path().join("b.csv")).unwrap();
    assert_eq!(csv.lines().count(), 31); // header + 30 boxes
    assert!(csv.lines().any(|l| l.contains(",s1,dpt.lp,1,2,8,9,0,")));
}

#[test]
fn missing_truth_and_truncated_line_are_reported_and_rest_scored() {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = write_set(dir.path());
    let mut text = std::fs::read_to_string(&r).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Line 2 truncated; a 4th submission with no truth.
    let half = lines[1].len() / 2;
    lines[1].truncate(half);
    let extra = lines[0].replace("\"s1\"", "\"s9\"");
    lines.push(extra);
    text = lines.join("\n");
    std::fs::write(&r, &text).unwrap();
    let rf = read_results(&r).unwrap();
    assert_eq!(rf.problems.len(), 1);
    assert_eq!(rf.problems[0].line, Some(2));
    let (s, problems) = pair_with_truth(&t, &rf);
    assert_eq!(s.len(), 2);
    assert_eq!(problems.len(), 2);
    let p9 = problems
        .iter()
        .find(|p| p.submission.as_deref() == Some("s9"))
        .unwrap();
    assert_eq!(p9.line, Some(4));
    assert!(p9.message.contains("no usable truth"), "{}", p9.message);
    assert_eq!(run(args(&t, vec![r])).unwrap(), 0);
}

#[test]
fn results_from_another_template_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = write_set(dir.path());
    let text = std::fs::read_to_string(&r)
        .unwrap()
        .replace(TEMPLATE, "other-form-2019");
    std::fs::write(&r, text).unwrap();
    let err = run(args(&t, vec![r])).unwrap_err().to_string();
    assert!(
        err.contains("another template") && err.contains("other-form-2019"),
        "{err}"
    );
}

#[test]
fn nothing_scored_exits_non_zero_and_a_missing_review_db_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = write_set(dir.path());
    let r = dir.path().join("bad.jsonl");
    std::fs::write(&r, "{\"schema\": \"rekap-res\n\n").unwrap();
    assert_eq!(run(args(&t, vec![r.clone()])).unwrap(), 1);
    // `--db` itself is tested in tests/eval_db.rs; a folder without a database is refused.
    let mut a = args(&t, vec![r]);
    a.truth = None;
    a.db = Some(dir.path().join("review"));
    let err = run(a).unwrap_err().to_string();
    assert!(err.contains("no review database"), "{err}");
}

#[test]
fn comparison_of_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = write_set(dir.path());
    // Run B: s1's dpt.lp read right, and s3 absent (compared on s1, s2 only).
    let text = std::fs::read_to_string(&r).unwrap();
    let b: Vec<String> = text
        .lines()
        .filter(|l| !l.contains("\"s3\""))
        .map(|l| l.replace("\"value\":169", "\"value\":168"))
        .collect();
    let rb = dir.path().join("b.jsonl");
    std::fs::write(&rb, b.join("\n")).unwrap();
    let mut a = args(&t, vec![r, rb]);
    a.json = Some(dir.path().join("m.json"));
    a.report = Some(dir.path().join("r.html"));
    assert_eq!(run(a).unwrap(), 0);
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap();
    assert_eq!(j["runs"][0]["metrics"]["submissions_scored"], 2);
    assert_eq!(j["runs"][1]["metrics"]["submissions_scored"], 2);
    let cmp = j["comparison"].as_array().unwrap();
    let silent = cmp
        .iter()
        .find(|c| c["measure"] == "field silent errors")
        .unwrap();
    assert_eq!(
        (silent["first"].as_f64(), silent["second"].as_f64()),
        (Some(1.0), Some(0.0))
    );
    assert_eq!(silent["delta"].as_f64(), Some(-1.0));
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(html.contains("delta (second - first)"));
}

#[test]
fn html_report_has_sections_plots_and_crops() {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = write_set(dir.path());
    // s1 dpt.lp (the silent error) has a --crops PNG; s2 dpt.p (flagged) is cut from its photo.
    let crop = dir.path().join("crop.png");
    image::GrayImage::from_pixel(30, 10, image::Luma([200u8]))
        .save(&crop)
        .unwrap();
    let photo = dir.path().join("synth/s2/page1.jpg");
    std::fs::create_dir_all(photo.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(400, 300, |x, y| image::Luma([((x + y) % 256) as u8]))
        .save(&photo)
        .unwrap();
    let mut lines: Vec<Value> = std::fs::read_to_string(&r)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[0]["fields"]["dpt.lp"]["source"] = json!({"file": "synth/s1/page1.jpg", "sha256": "00",
        "page": 1, "boxes_px": [[[0,0],[10,0],[10,10],[0,10]]], "snap_mm": [0,0],
        "crop": crop.display().to_string()});
    lines[1]["fields"]["dpt.p"]["source"] = json!({"file": "synth/s2/page1.jpg", "sha256": "00",
        "page": 1, "boxes_px": [[[100,100],[130,100],[130,140],[100,140]],
                                 [[130,100],[160,100],[160,140],[130,140]]], "snap_mm": [0,0]});
    let text: Vec<String> = lines.iter().map(|v| v.to_string()).collect();
    std::fs::write(&r, text.join("\n")).unwrap();
    let mut a = args(&t, vec![r]);
    let report = dir.path().join("report.html");
    a.report = Some(report.clone());
    assert_eq!(run(a).unwrap(), 0);
    let html = std::fs::read_to_string(&report).unwrap();
    for needle in [
        "id=\"summary\"",
        "Confusion matrix",
        "Accuracy by condition",
        "SILENT ERRORS",
        "Flag precision by flag code",
        "Officer errors",
        // s2's broken dpt.lp_sum reads dpt.p wrong and carries no hint.
        "Rule hints (the likeliest misreading named beside a broken hard rule): 0 of 1 rules",
        "alignment error at box corners",
        "Expected calibration error",
        "Reliability",
        "Risk-coverage",
        "<svg",
        "<polyline",
        "id=\"gallery\"",
        "case silent",
        "cut from the photo",
    ] {
        assert!(html.contains(needle), "report lacks {needle}");
    }
    // Two embedded images: the --crops PNG and the cut one.
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 2);
    // Self-contained: nothing fetched (the only URL is the SVG namespace).
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(!html.contains("<script") && !html.contains("<link"));
}
