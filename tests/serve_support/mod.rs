//! Shared fixtures for the store and review-service tests: a small page photo, a report that
//! references it, a store with accounts, and request helpers.
#![allow(dead_code)]

use rekap::pipeline::SubmissionReport;
use rekap::serve::{AppState, ServeConfig};
use rekap::store::{ItemKey, ReviewInput, Role, Store};
use rekap::template::{DEFAULT_TEMPLATE_PATH, Template};
use serde_json::{Value, json};
use std::path::Path;

pub const PASSWORD: &str = "correct horse battery";
/// Accounts created by [`setup`]: two reviewers, a supervisor, an admin.
pub const REVIEWER: &str = "rita";
pub const REVIEWER2: &str = "rob";
pub const SUPERVISOR: &str = "sam";
pub const ADMIN: &str = "ann";

/// A 600x900 greyscale JPEG with dark box outlines (stands in for a page photo).
pub fn fixture_photo() -> Vec<u8> {
    let img = image::GrayImage::from_fn(600, 900, |x, y| {
        let on_box = (100..=400).contains(&x) && (y == 100 || y == 160)
            || (100..=160).contains(&y) && (x == 100 || x == 200 || x == 300 || x == 400);
        image::Luma([if on_box { 20 } else { 235 - (y / 10) as u8 }])
    });
    let mut out = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut out),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    out
}

fn field(value: Option<i64>, status: &str, conf: f64, flags: &[&str], sha: &str, y: f64) -> Value {
    let quad = |x: f64| json!([[x, y], [x + 100.0, y], [x + 100.0, y + 60.0], [x, y + 60.0]]);
    json!({
        "value": value, "status": status, "confidence": conf,
        "boxes": [
            {"label": "1", "confidence": 0.99, "top": [["1", 0.99], ["7", 0.01]]},
            {"label": "3", "confidence": 0.6, "top": [["3", 0.6], ["8", 0.35]]},
            {"label": "0", "confidence": 0.99, "top": [["0", 0.99]]}
        ],
        "channels": {},
        "alternatives": [{"value": value, "probability": conf}, {"value": 180, "probability": 0.3}],
        "flags": flags,
        "source": {"file": "page1.jpg", "sha256": sha, "page": 1,
                   "boxes_px": [quad(100.0), quad(200.0), quad(300.0)], "snap_mm": [0.0, 0.0]}
    })
}

/// A report for one photo: dpt.l accepted (120), dpt.p low confidence (130, paper says 180),
/// dpt.lp 300 (so dpt.lp == dpt.l + dpt.p is violated), b1.l low confidence, page 2/3 fields
/// missing.
pub fn fixture_report(sha: &str, name: &str) -> SubmissionReport {
    let v = json!({
        "schema": "rekap-results/1", "submission": name, "status": "needs_review",
        "template": "c-hasil-ppwp-2024", "model": "fixture",
        "pages": [{"file": "page1.jpg", "sha256": sha, "page": 1, "width": 600, "height": 900}],
        "fields": {
            "dpt.l": field(Some(120), "accepted", 0.999, &[], sha, 100.0),
            "dpt.p": field(Some(130), "flagged", 0.6, &["low_confidence", "rule_violated"], sha, 200.0),
            "dpt.lp": field(Some(300), "flagged", 0.999, &["rule_violated"], sha, 300.0),
            "b1.l": field(Some(7), "flagged", 0.9, &["low_confidence"], sha, 400.0),
            "valid": {"value": null, "status": "missing", "confidence": 0.0, "boxes": [],
                      "channels": {}, "alternatives": [], "flags": ["page_missing"]}
        },
        "checks": [{"rule": "dpt.lp_sum", "kind": "hard", "status": "violated",
                    "check": "dpt.lp == dpt.l + dpt.p", "lhs": 300.0, "rhs": 250.0,
                    "values": {"dpt.lp": 300, "dpt.l": 120, "dpt.p": 130}}],
        "flags": [
            {"code": "low_confidence", "message": "dpt.p: read as 130 with probability 0.600", "field": "dpt.p"},
            {"code": "rule_violated", "message": "dpt.lp_sum (hard): dpt.lp == dpt.l + dpt.p", "rule": "dpt.lp_sum"},
            {"code": "low_confidence", "message": "b1.l: read as 7", "field": "b1.l"},
            {"code": "page_missing", "message": "page 2 missing", "page": 2}
        ],
        "timings": {"decode_ms": 0.0, "align_ms": 0.0, "segment_ms": 0.0, "recognize_ms": 0.0, "decide_ms": 0.0}
    });
    serde_json::from_value(v).unwrap()
}

/// Open a store in `dir` with the four accounts and one ingested submission; returns its id.
pub fn setup(dir: &Path) -> i64 {
    setup_store(Store::open(dir).unwrap())
}

/// [`setup`] on an opened store (any backend).
pub fn setup_store(store: Store) -> i64 {
    let order = template().numeric_fields().map(|f| f.id.clone()).collect();
    let mut store = store.with_field_order(order);
    for (name, role) in [
        (REVIEWER, Role::Reviewer),
        (REVIEWER2, Role::Reviewer),
        (SUPERVISOR, Role::Supervisor),
        (ADMIN, Role::Admin),
    ] {
        store.add_user(name, role, PASSWORD).unwrap();
    }
    add_fixture_submission(&mut store, "tps-001")
}

/// The fixture photo made unique per submission name (bytes after the JPEG end are ignored).
pub fn fixture_photo_for(name: &str) -> Vec<u8> {
    let mut p = fixture_photo();
    p.extend_from_slice(name.as_bytes());
    p
}

pub fn add_fixture_submission(store: &mut Store, name: &str) -> i64 {
    let photo = fixture_photo_for(name);
    let sha = store.put_blob(&photo, "image/jpeg").unwrap();
    let (id, created) = store
        .create_submission(name, &[(sha.clone(), "page1.jpg".into())], None, None)
        .unwrap();
    assert!(created);
    assert!(
        store
            .ingest_report(id, &fixture_report(&sha, name))
            .unwrap()
    );
    id
}

pub fn template() -> Template {
    Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_TEMPLATE_PATH)).unwrap()
}

pub fn state(dir: &Path, config: ServeConfig) -> AppState {
    AppState::new(Store::open(dir).unwrap(), template(), config, None)
}

/// A minimal HTTP/1.1 client over a loopback TCP socket (one request per connection).
pub struct HttpResp {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpResp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<HttpResp> {
    use std::io::{Read, Write};
    assert!(addr.ip().is_loopback(), "tests only talk to loopback");
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if let Some(t) = csrf {
        req.push_str(&format!("X-CSRF-Token: {t}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("truncated response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok(HttpResp {
        status,
        headers: head.to_string(),
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Log in over HTTP; returns (cookie pair, CSRF token).
pub fn http_login(addr: std::net::SocketAddr, name: &str) -> (String, String) {
    let r = http(
        addr,
        "POST",
        "/api/login",
        None,
        None,
        Some(&json!({"name": name, "password": PASSWORD})),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap();
    let pair = cookie.split(';').next().unwrap().to_string();
    (pair, r.json()["csrf"].as_str().unwrap().to_string())
}

/// Claim and review one field of submission `sid` as the account `user` (single entry).
pub fn review_as(store: &mut Store, user: &str, sid: i64, field: &str, input: &ReviewInput) {
    let user = store
        .users()
        .unwrap()
        .into_iter()
        .find(|u| u.name == user)
        .unwrap();
    let key = ItemKey {
        submission_id: sid,
        field: field.into(),
    };
    store.claim(&user, &key, false).unwrap();
    store.review(&user, &key, input, false).unwrap();
}
