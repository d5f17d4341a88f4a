//! `rekap eval --db`: reviewer corrections in the review database as truth, on SQLite and on
//! PostgreSQL (see `tests/store_support`).

mod serve_support;
mod store_support;

use rekap::store::{ReviewAction, ReviewInput};
use serde_json::Value;
use serve_support::*;
use std::process::Command;
use store_support::TestDb;

/// The fixture submission with three fields reviewed: dpt.p corrected (machine 130, paper 180),
/// b1.l confirmed (7), dpt.lp kept as an officer inconsistency (300 as written). dpt.l stays
/// machine-accepted and `valid` missing. Returns the photo's sha256.
fn reviewed(db: &TestDb) -> String {
    let sid = setup_store(db.open());
    let mut store = db.open();
    for (field, action, value) in [
        ("dpt.p", ReviewAction::Correct, Some(180)),
        ("b1.l", ReviewAction::Confirm, None),
        ("dpt.lp", ReviewAction::OfficerInconsistency, None),
    ] {
        let input = ReviewInput {
            action,
            value,
            reason: Some("as on the photo".into()),
        };
        review_as(&mut store, REVIEWER, sid, field, &input);
    }
    store.export().unwrap()[0].photos[0].clone()
}

fn eval(db: &TestDb, extra: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .args(["eval", "--db"])
        .arg(db.db_arg())
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

both!(reviewed_fields_are_the_truth, |db| {
    let sha = reviewed(&db);
    let json = db.dir.path().join("m.json");
    let csv = db.dir.path().join("fields.csv");
    let (code, out) = eval(
        &db,
        &[
            "--json".as_ref(),
            json.as_os_str(),
            "--csv".as_ref(),
            csv.as_os_str(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("reviewed fields: 3; machine reading differs from the reviewer's in 1"),
        "{out}"
    );
    assert!(out.contains("not measured here"), "{out}");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(m["schema"], "rekap-eval-review/1");
    let metrics = &m["metrics"];
    assert_eq!(metrics["machine_errors"]["count"], 1);
    assert_eq!(metrics["machine_errors"]["total"], 3);
    assert_eq!(metrics["officer_inconsistencies"], 1);
    assert_eq!(metrics["fields_by_provenance"]["machine_accepted"], 1);
    let row = |code: &str| {
        metrics["flag_precision"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["code"] == code)
            .map(|r| {
                (
                    r["precision"]["count"].clone(),
                    r["precision"]["total"].clone(),
                )
            })
    };
    // dpt.p (misread) carries both codes; dpt.lp (read right) rule_violated; b1.l low_confidence.
    assert_eq!(row("rule_violated"), Some((1.into(), 2.into())));
    assert_eq!(row("low_confidence"), Some((1.into(), 2.into())));
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let p = lines
        .iter()
        .find(|l| l.starts_with("tps-001,dpt.p,"))
        .expect(&text);
    assert!(
        p.contains(",180,reviewer_corrected,130,") && p.contains(&sha),
        "{p}"
    );

    // A results file of the same photos (another run): read dpt.p right, b1.l wrong and
    // accepted (a silent error against the reviewer).
    let mut report = fixture_report(&sha, "renamed");
    report.fields.get_mut("dpt.p").unwrap().value = Some(180);
    let b1 = report.fields.get_mut("b1.l").unwrap();
    b1.value = Some(1);
    b1.status = rekap::decide::FieldStatus::Accepted;
    let results = db.dir.path().join("other.jsonl");
    std::fs::write(&results, serde_json::to_string(&report).unwrap() + "\n").unwrap();
    let json2 = db.dir.path().join("m2.json");
    let (code, out) = eval(
        &db,
        &[results.as_os_str(), "--json".as_ref(), json2.as_os_str()],
    );
    assert_eq!(code, 0, "{out}");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&json2).unwrap()).unwrap();
    let r = &m["results"]["against_review"];
    assert_eq!(r["matched_submissions"], 1, "{m}");
    assert_eq!(r["fields"], 3);
    assert_eq!(r["errors"]["count"], 1);
    assert_eq!(r["silent_errors"]["count"], 1);
    assert_eq!(
        (r["fixed"].clone(), r["broken"].clone()),
        (1.into(), 1.into())
    );
});

#[test]
fn no_database_is_a_clear_error_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none");
    let out = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .args(["eval", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no review database"), "{err}");
    assert!(!db.exists());
}

#[test]
fn db_excludes_truth_and_tune() {
    let out = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .args(["eval", "--db", "x", "--truth", "y"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
