//! Store tests: idempotent ingest, content-addressed photos, and the audit log's tamper
//! detection through `rekap audit verify`.

mod serve_support;

use rekap::store::{ItemKey, ReviewAction, ReviewInput, Store};
use serve_support::*;
use std::path::Path;
use std::process::Command;

fn verify_cli(dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .args(["audit", "verify", "--db"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A store with one submission and two reviews (audit entries 1 = ingest, 2 and 3 = reviews).
fn reviewed_store() -> (tempfile::TempDir, i64) {
    let dir = tempfile::tempdir().unwrap();
    let sid = setup(dir.path());
    let mut store = Store::open(dir.path()).unwrap();
    let user = store
        .users()
        .unwrap()
        .into_iter()
        .find(|u| u.name == REVIEWER)
        .unwrap();
    for (field, value) in [("dpt.p", 180), ("b1.l", 1)] {
        let key = ItemKey {
            submission_id: sid,
            field: field.into(),
        };
        store.claim(&user, &key, false).unwrap();
        store
            .review(
                &user,
                &key,
                &ReviewInput {
                    action: ReviewAction::Correct,
                    value: Some(value),
                    reason: None,
                },
                false,
            )
            .unwrap();
    }
    (dir, sid)
}

/// Run SQL as an attacker with database access would (dropping the append-only triggers).
fn tamper(dir: &Path, sql: &str) {
    let store = Store::open(dir).unwrap();
    let c = store.connection_for_tests();
    c.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn untouched_log_verifies() {
    let (dir, _) = reviewed_store();
    let (code, out) = verify_cli(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: 3 entries"), "{out}");
}

#[test]
fn the_log_refuses_updates_and_deletes() {
    let (dir, _) = reviewed_store();
    let store = Store::open(dir.path()).unwrap();
    let c = store.connection_for_tests();
    assert!(
        c.execute("UPDATE audit SET new_value = '999' WHERE seq = 2", [])
            .is_err()
    );
    assert!(c.execute("DELETE FROM audit WHERE seq = 3", []).is_err());
}

#[test]
fn edited_entry_is_named() {
    let (dir, _) = reviewed_store();
    tamper(
        dir.path(),
        "UPDATE audit SET actor = 'mallory' WHERE seq = 2;",
    );
    let (code, out) = verify_cli(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at entry 2"), "{out}");
}

#[test]
fn edited_entry_with_recomputed_hash_breaks_the_chain_after_it() {
    let (dir, _) = reviewed_store();
    let store = Store::open(dir.path()).unwrap();
    let mut e = store.audit_entries(None).unwrap()[1].clone();
    e.new_value = Some("999".into());
    let h = e.compute_hash();
    drop(store);
    tamper(
        dir.path(),
        &format!(
            "UPDATE audit SET new_value = '999', hash = '{h}' WHERE seq = 2; UPDATE fields SET value = 999 WHERE field = 'dpt.p';"
        ),
    );
    let (code, out) = verify_cli(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at entry 3"), "{out}");
}

#[test]
fn deleted_entries_are_found() {
    let (dir, _) = reviewed_store();
    tamper(dir.path(), "DELETE FROM audit WHERE seq = 2;");
    let (code, out) = verify_cli(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at entry 2"), "{out}");
    // Deleting the newest entry leaves a valid chain, but its value no longer matches the log.
    let (dir, _) = reviewed_store();
    tamper(dir.path(), "DELETE FROM audit WHERE seq = 3;");
    let (code, out) = verify_cli(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("b1.l"), "{out}");
}

#[test]
fn values_changed_without_an_entry_are_found() {
    let (dir, _) = reviewed_store();
    tamper(
        dir.path(),
        "UPDATE fields SET value = 652 WHERE field = 'dpt.lp';",
    );
    let (code, out) = verify_cli(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("dpt.lp"), "{out}");
    let (dir, _) = reviewed_store();
    tamper(
        dir.path(),
        "UPDATE submissions SET report = replace(report, '\"value\":120', '\"value\":620');",
    );
    let (code, out) = verify_cli(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at entry 1"), "{out}");
}

#[test]
fn same_photos_are_ingested_once_and_stored_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
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
    let stored = dir.path().join("photos").join(&sha[..2]).join(&sha[2..]);
    assert_eq!(std::fs::read(stored).unwrap(), fixture_photo());
}

#[test]
fn expired_leases_return_items_to_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let sid = setup(dir.path());
    let mut store = Store::open(dir.path()).unwrap();
    let users = store.users().unwrap();
    let a = users.iter().find(|u| u.name == REVIEWER).unwrap().clone();
    let b = users.iter().find(|u| u.name == REVIEWER2).unwrap().clone();
    let first = store.claim_next(&a, false, &[]).unwrap().unwrap();
    assert_eq!(first.field, "dpt.p");
    let other = store.claim_next(&b, false, &[]).unwrap().unwrap();
    assert_ne!(other, first);
    // a walks away: once the lease expires, b may take the item.
    store
        .connection_for_tests()
        .execute(
            "UPDATE leases SET expires_ms = 0 WHERE user_id = ?1",
            [a.id],
        )
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
}

#[test]
fn user_add_reads_the_password_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .args([
            "user",
            "add",
            "--role",
            "supervisor",
            "--password-stdin",
            "--db",
        ])
        .arg(dir.path())
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
    let store = Store::open(dir.path()).unwrap();
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
        .arg(dir.path())
        .arg("budi")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    assert!(!child.wait().unwrap().success());
}
