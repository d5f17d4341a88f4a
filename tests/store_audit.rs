//! Store tests: idempotent ingest, content-addressed photos, leases, and the audit log's tamper
//! detection through `rekap audit verify`. Every test runs on SQLite and on PostgreSQL (see
//! `tests/store_support`).

mod serve_support;
mod store_support;

use rekap::store::{ItemKey, ReviewAction, ReviewInput};
use serve_support::*;
use std::process::Command;
use store_support::TestDb;

fn verify_cli(db: &TestDb) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .args(["audit", "verify", "--db"])
        .arg(db.db_arg())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A store with one submission and two reviews (audit entries 1 = ingest, 2 and 3 = reviews).
fn reviewed_store(db: &TestDb) -> i64 {
    let sid = setup_store(db.open());
    let mut store = db.open();
    for (field, value) in [("dpt.p", 180), ("b1.l", 1)] {
        let input = ReviewInput {
            action: ReviewAction::Correct,
            value: Some(value),
            reason: None,
        };
        review_as(&mut store, REVIEWER, sid, field, &input);
    }
    sid
}

both!(untouched_log_verifies, |db| {
    reviewed_store(&db);
    let (code, out) = verify_cli(&db);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: 3 entries"), "{out}");
});

both!(the_log_refuses_updates_and_deletes, |db| {
    reviewed_store(&db);
    let store = db.open();
    let r = store.execute_for_tests("UPDATE audit SET new_value = '999' WHERE seq = 2");
    assert!(format!("{r:?}").contains("append-only"), "{r:?}");
    let r = store.execute_for_tests("DELETE FROM audit WHERE seq = 3");
    assert!(format!("{r:?}").contains("append-only"), "{r:?}");
    assert_eq!(store.audit_entries(None).unwrap().len(), 3);
});

both!(edited_entry_is_named, |db| {
    reviewed_store(&db);
    db.tamper("UPDATE audit SET actor = 'mallory' WHERE seq = 2;");
    let (code, out) = verify_cli(&db);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at entry 2"), "{out}");
});

both!(
    edited_entry_with_recomputed_hash_breaks_the_chain_after_it,
    |db| {
        reviewed_store(&db);
        let store = db.open();
        let mut e = store.audit_entries(None).unwrap()[1].clone();
        e.new_value = Some("999".into());
        let h = e.compute_hash();
        drop(store);
        db.tamper(&format!(
        "UPDATE audit SET new_value = '999', hash = '{h}' WHERE seq = 2; UPDATE fields SET value = 999 WHERE field = 'dpt.p';"
    ));
        let (code, out) = verify_cli(&db);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("BROKEN at entry 3"), "{out}");
    }
);

both!(deleted_entries_are_found, |db| {
    reviewed_store(&db);
    db.tamper("DELETE FROM audit WHERE seq = 2;");
    let (code, out) = verify_cli(&db);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at entry 2"), "{out}");
});

both!(deleting_the_newest_entry_is_found_by_the_replay, |db| {
    // Deleting the newest entry leaves a valid chain, but its value no longer matches the log.
    reviewed_store(&db);
    db.tamper("DELETE FROM audit WHERE seq = 3;");
    let (code, out) = verify_cli(&db);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("b1.l"), "{out}");
});

both!(values_changed_without_an_entry_are_found, |db| {
    reviewed_store(&db);
    db.tamper("UPDATE fields SET value = 652 WHERE field = 'dpt.lp';");
    let (code, out) = verify_cli(&db);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("dpt.lp"), "{out}");
});

both!(reports_changed_without_an_entry_are_found, |db| {
    reviewed_store(&db);
    db.tamper("UPDATE submissions SET report = replace(report, '\"value\":120', '\"value\":620');");
    let (code, out) = verify_cli(&db);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at entry 1"), "{out}");
});

both!(same_photos_are_ingested_once_and_stored_by_hash, |db| {
    let mut store = db.open();
    let photos = tempfile::tempdir().unwrap();
    let p = photos.path().join("page1.jpg");
    std::fs::write(&p, fixture_photo()).unwrap();
    let (id, created) = store
        .add_submission_files("tps-1", std::slice::from_ref(&p))
        .unwrap();
    assert!(created);
    let sha = rekap::load::sha256_hex(&fixture_photo());
    let report = fixture_report(&sha, "tps-1");
    assert!(store.ingest_report(id, &report).unwrap());
    let (id2, created2) = store
        .add_submission_files("tps-1 again", std::slice::from_ref(&p))
        .unwrap();
    assert_eq!((id2, created2), (id, false));
    assert!(!store.ingest_report(id2, &report).unwrap());
    assert_eq!(store.submissions().unwrap().len(), 1);
    assert_eq!(store.audit_entries(None).unwrap().len(), 1);
    let stored = db.photos().join(&sha[..2]).join(&sha[2..]);
    assert_eq!(std::fs::read(stored).unwrap(), fixture_photo());
    assert_eq!(store.verify_audit().unwrap(), Ok(1));
});

both!(expired_leases_return_items_to_the_queue, |db| {
    let sid = setup_store(db.open());
    let mut store = db.open();
    let users = store.users().unwrap();
    let a = users.iter().find(|u| u.name == REVIEWER).unwrap().clone();
    let b = users.iter().find(|u| u.name == REVIEWER2).unwrap().clone();
    let first = store.claim_next(&a, false, &[]).unwrap().unwrap();
    assert_eq!(first.field, "dpt.p");
    let other = store.claim_next(&b, false, &[]).unwrap().unwrap();
    assert_ne!(other, first);
    // a walks away: once the lease expires, b may take the item.
    store
        .execute_for_tests(&format!(
            "UPDATE leases SET expires_ms = 0 WHERE user_id = {}",
            a.id
        ))
        .unwrap();
    let key = ItemKey {
        submission_id: sid,
        field: "dpt.p".into(),
    };
    store.claim(&b, &key, false).unwrap();
    let r = store.review(
        &a,
        &key,
        &ReviewInput {
            action: ReviewAction::Confirm,
            value: None,
            reason: None,
        },
        false,
    );
    assert!(
        matches!(r, Err(rekap::store::StoreError::Conflict(_))),
        "{r:?}"
    );
});

both!(user_add_reads_the_password_from_stdin, |db| {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .args([
            "user",
            "add",
            "--role",
            "supervisor",
            "--password-stdin",
            "--db",
        ])
        .arg(db.db_arg())
        .arg("siti")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough secret\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let store = db.open();
    let u = store
        .check_password("siti", "a long enough secret")
        .unwrap()
        .unwrap();
    assert_eq!(u.role, rekap::store::Role::Supervisor);
    assert!(
        store
            .check_password("siti", "a long enough secret\n")
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .check_password("nobody", "a long enough secret")
            .unwrap()
            .is_none()
    );
    // Short passwords are refused.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .args(["user", "add", "--password-stdin", "--db"])
        .arg(db.db_arg())
        .arg("budi")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    assert!(!child.wait().unwrap().success());
});
