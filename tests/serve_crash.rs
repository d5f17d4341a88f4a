//! Killing the server (SIGKILL of the `rekap serve` process) loses no acknowledged review, and
//! the reviews are there after a restart.

mod serve_support;

use rekap::store::Store;
use serde_json::json;
use serve_support::*;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

fn spawn_server(dir: &std::path::Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-cookie",
            "--model",
            "no-model.json",
            "--db",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server exited before listening");
        };
        if let Some(rest) = line.strip_prefix("listening on http://") {
            let addr: SocketAddr = rest.trim_end_matches('/').parse().unwrap();
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (child, addr);
        }
    }
}

#[test]
fn acknowledged_reviews_survive_a_killed_server() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    {
        let mut st = Store::open(dir.path()).unwrap();
        add_fixture_submission(&mut st, "tps-002");
    }
    let (mut child, addr) = spawn_server(dir.path());
    let (cookie, csrf) = http_login(addr, REVIEWER);
    let mut acked: Vec<(i64, String, i64)> = Vec::new();
    for i in 0..4 {
        let next = http(
            addr,
            "POST",
            "/api/queue/next",
            Some(&cookie),
            Some(&csrf),
            None,
        )
        .unwrap();
        assert_eq!(next.status, 200, "{}", next.body);
        let item = next.json()["item"].clone();
        let sid = item["key"]["submission_id"].as_i64().unwrap();
        let field = item["key"]["field"].as_str().unwrap().to_string();
        let value = 11 + i;
        let r = http(
            addr,
            "POST",
            &format!("/api/items/{sid}/{field}/review"),
            Some(&cookie),
            Some(&csrf),
            Some(&json!({"action": "correct", "value": value})),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        acked.push((sid, field, value));
    }
    // Kill -9 right after the last acknowledgement: no shutdown, no flush.
    child.kill().unwrap();
    child.wait().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (sid, field, value) in &acked {
        assert_eq!(
            store.current_values(*sid).unwrap()[field],
            Some(*value),
            "{sid} {field}"
        );
    }
    assert_eq!(store.verify_audit().unwrap(), Ok(1 + 1 + acked.len()));
    drop(store);
    // After a restart the reviewed items are not offered again, and the export has them.
    let (mut child, addr) = spawn_server(dir.path());
    let (cookie, csrf) = http_login(addr, SUPERVISOR);
    let q = http(addr, "GET", "/api/queue", Some(&cookie), None, None)
        .unwrap()
        .json();
    let left: Vec<(i64, String)> = q["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["submission_id"].as_i64().unwrap(),
                i["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(left.len(), 6 - acked.len());
    for (sid, field, _) in &acked {
        assert!(!left.contains(&(*sid, field.clone())));
    }
    let ex = http(
        addr,
        "GET",
        "/api/export.json",
        Some(&cookie),
        Some(&csrf),
        None,
    )
    .unwrap()
    .json();
    let subs = ex["submissions"].as_array().unwrap();
    for (sid, field, value) in &acked {
        let s = subs.iter().find(|s| s["id"] == *sid).unwrap();
        assert_eq!(s["fields"][field]["value"], *value);
        assert_eq!(s["fields"][field]["provenance"], "reviewer_corrected");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
