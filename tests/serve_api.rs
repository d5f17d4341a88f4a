//! Review-service API tests through the axum router (tower `oneshot`): sessions, CSRF, roles,
//! leases, reviews, export, audit tampering, upload limits, double entry.

mod serve_support;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use rekap::serve::{ServeConfig, router};
use rekap::store::Store;
use serde_json::{Value, json};
use serve_support::*;
use tower::ServiceExt;

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Resp {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Resp {
        status,
        headers,
        bytes,
    }
}

/// A logged-in user: cookie and CSRF token.
#[derive(Clone)]
struct Who {
    cookie: String,
    csrf: String,
}

async fn login(app: &Router, name: &str) -> Who {
    let r = send(
        app,
        Request::post("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"name": name, "password": PASSWORD}).to_string(),
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    Who {
        cookie: set.split(';').next().unwrap().to_string(),
        csrf: r.json()["csrf"].as_str().unwrap().to_string(),
    }
}

/// How to present credentials on a request.
#[derive(Clone, Copy)]
enum Cred<'a> {
    None,
    NoCsrf(&'a Who),
    BadCsrf(&'a Who),
    Full(&'a Who),
}

fn request(method: &str, uri: &str, cred: Cred<'_>, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    match cred {
        Cred::None => {}
        Cred::NoCsrf(w) => b = b.header(header::COOKIE, &w.cookie),
        Cred::BadCsrf(w) => {
            b = b
                .header(header::COOKIE, &w.cookie)
                .header("x-csrf-token", "0".repeat(64))
        }
        Cred::Full(w) => {
            b = b
                .header(header::COOKIE, &w.cookie)
                .header("x-csrf-token", &w.csrf)
        }
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

async fn call(app: &Router, method: &str, uri: &str, cred: Cred<'_>, body: Option<Value>) -> Resp {
    send(app, request(method, uri, cred, body)).await
}

fn multipart(parts: &[(&str, Option<&str>, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "rekapTESTboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn upload_request(cred: Cred<'_>, parts: &[(&str, Option<&str>, Vec<u8>)]) -> Request<Body> {
    let (ct, body) = multipart(parts);
    let mut b = Request::post("/api/submissions").header(header::CONTENT_TYPE, ct);
    match cred {
        Cred::None => {}
        Cred::NoCsrf(w) => b = b.header(header::COOKIE, &w.cookie),
        Cred::BadCsrf(w) => {
            b = b
                .header(header::COOKIE, &w.cookie)
                .header("x-csrf-token", "bad")
        }
        Cred::Full(w) => {
            b = b
                .header(header::COOKIE, &w.cookie)
                .header("x-csrf-token", &w.csrf)
        }
    }
    b.body(Body::from(body)).unwrap()
}

fn setup_app(config: ServeConfig) -> (tempfile::TempDir, i64, Router) {
    let dir = tempfile::tempdir().unwrap();
    let id = setup(dir.path());
    let app = router(state(dir.path(), config));
    (dir, id, app)
}

/// Everything that changes state, with a valid body for each.
fn mutations(sid: i64) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("POST", "/api/logout".into(), None),
        ("POST", "/api/queue/next".into(), Some(json!({"skip": []}))),
        ("POST", "/api/queue/release".into(), None),
        ("POST", format!("/api/items/{sid}/dpt.p/claim"), None),
        (
            "POST",
            format!("/api/items/{sid}/dpt.p/review"),
            Some(json!({"action": "correct", "value": 180})),
        ),
        (
            "POST",
            format!("/api/items/{sid}/dpt.lp/review"),
            Some(json!({"action": "confirm"})),
        ),
    ]
}

fn audit_len(dir: &std::path::Path) -> usize {
    Store::open(dir).unwrap().audit_entries(None).unwrap().len()
}

#[tokio::test]
async fn public_endpoints_and_security_headers() {
    let (_d, _id, app) = setup_app(ServeConfig::default());
    for uri in ["/", "/app.js", "/app.css", "/api/health"] {
        let r = call(&app, "GET", uri, Cred::None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    let r = call(&app, "DELETE", "/api/queue", Cred::None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error_code(), "method_not_allowed");
    let r = call(&app, "GET", "/api/nothing-here", Cred::None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");
    let html = call(&app, "GET", "/", Cred::None, None).await;
    let text = String::from_utf8(html.bytes).unwrap();
    assert!(!text.contains("<script>"), "no inline script");
    assert!(!text.contains("style="), "no inline style");
    // Everything else needs a session, with a JSON error.
    for uri in [
        "/api/me",
        "/api/queue",
        "/api/submissions",
        "/api/export.csv",
        "/api/export.json",
        "/api/audit",
        "/api/openapi.json",
        "/api/items/1/dpt.p",
    ] {
        let r = call(&app, "GET", uri, Cred::None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(r.error_code(), "unauthenticated", "{uri}");
        assert!(r.json()["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn login_sets_a_hardened_cookie_and_bad_passwords_are_refused() {
    let (_d, _id, app) = setup_app(ServeConfig::default());
    let r = call(
        &app,
        "POST",
        "/api/login",
        Cred::None,
        Some(json!({"name": REVIEWER, "password": "wrong password!"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "bad_credentials");
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    let r = send(
        &app,
        Request::post("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"name": REVIEWER, "password": PASSWORD}).to_string(),
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(cookie.starts_with("__Host-rekap_session="), "{cookie}");
    // A form post (not JSON) cannot log in (no login CSRF from other sites' forms).
    let r = send(
        &app,
        Request::post("/api/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("name={REVIEWER}&password=x")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn login_is_rate_limited() {
    let (_d, _id, app) = setup_app(ServeConfig::default());
    let mut limited = false;
    for i in 0..(rekap::serve::LOGIN_ATTEMPTS_PER_WINDOW + 2) {
        let r = call(
            &app,
            "POST",
            "/api/login",
            Cred::None,
            Some(json!({"name": "nobody", "password": format!("guess number {i}")})),
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.error_code(), "rate_limited");
            limited = true;
            break;
        }
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert!(limited, "login attempts were never limited");
}

#[tokio::test]
async fn every_mutation_needs_a_session_and_the_csrf_token() {
    let (dir, sid, app) = setup_app(ServeConfig::default());
    let who = login(&app, SUPERVISOR).await;
    let before = audit_len(dir.path());
    for (method, uri, body) in mutations(sid) {
        let r = call(&app, method, &uri, Cred::None, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri} without session");
        let r = call(&app, method, &uri, Cred::NoCsrf(&who), body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri} without CSRF");
        assert_eq!(r.error_code(), "csrf");
        let r = call(&app, method, &uri, Cred::BadCsrf(&who), body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{uri} with a wrong CSRF token"
        );
        // Another session's token does not work either.
        let other = login(&app, REVIEWER).await;
        let mixed = Who {
            cookie: who.cookie.clone(),
            csrf: other.csrf.clone(),
        };
        let r = call(&app, method, &uri, Cred::Full(&mixed), body).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{uri} with another session's token"
        );
    }
    let photo = fixture_photo();
    for cred in [Cred::None, Cred::NoCsrf(&who), Cred::BadCsrf(&who)] {
        let r = send(
            &app,
            upload_request(cred, &[("photo", Some("p.jpg"), photo.clone())]),
        )
        .await;
        assert!(r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::FORBIDDEN);
    }
    // Nothing changed: no audit entry, field values as read, no new submission.
    assert_eq!(audit_len(dir.path()), before);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.submissions().unwrap().len(), 1);
    let v = store.current_values(sid).unwrap();
    assert_eq!(v["dpt.p"], Some(130));
    // The session still works (logout was refused).
    let r = call(&app, "GET", "/api/me", Cred::NoCsrf(&who), None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn reviewers_cannot_do_supervisor_actions() {
    let (dir, _sid, app) = setup_app(ServeConfig::default());
    let rev = login(&app, REVIEWER).await;
    for uri in [
        "/api/export.csv",
        "/api/export.json",
        "/api/audit",
        "/api/audit/verify",
    ] {
        let r = call(&app, "GET", uri, Cred::Full(&rev), None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(r.error_code(), "forbidden");
    }
    let r = send(
        &app,
        upload_request(
            Cred::Full(&rev),
            &[("photo", Some("p.jpg"), fixture_photo())],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        Store::open(dir.path())
            .unwrap()
            .submissions()
            .unwrap()
            .len(),
        1
    );
    let sup = login(&app, SUPERVISOR).await;
    for uri in [
        "/api/export.csv",
        "/api/export.json",
        "/api/audit",
        "/api/audit/verify",
    ] {
        let r = call(&app, "GET", uri, Cred::Full(&sup), None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn review_flow_queue_order_correction_export_and_audit() {
    let (dir, sid, app) = setup_app(ServeConfig::default());
    let rev = login(&app, REVIEWER).await;
    let q = call(&app, "GET", "/api/queue", Cred::Full(&rev), None)
        .await
        .json();
    let order: Vec<&str> = q["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["field"].as_str().unwrap())
        .collect();
    // Rule violations first (dpt.p, dpt.lp in form order), then low confidence; accepted and
    // missing fields are not in the queue.
    assert_eq!(order, ["dpt.p", "dpt.lp", "b1.l"]);
    let next = call(&app, "POST", "/api/queue/next", Cred::Full(&rev), None).await;
    assert_eq!(next.status, StatusCode::OK);
    let item = &next.json()["item"];
    assert_eq!(item["field"]["id"], "dpt.p");
    assert_eq!(item["state"]["machine_value"], 130);
    assert_eq!(
        item["photo"]["url"].as_str().unwrap().len(),
        "/api/photos/".len() + 64
    );
    assert_eq!(item["rules"][0]["id"], "dpt.lp_sum");
    assert_eq!(item["values"]["dpt.l"], 120);
    // The photo is served as an image, never sniffable.
    let photo = call(
        &app,
        "GET",
        item["photo"]["url"].as_str().unwrap(),
        Cred::Full(&rev),
        None,
    )
    .await;
    assert_eq!(photo.status, StatusCode::OK);
    assert_eq!(photo.headers[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(photo.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(photo.bytes, fixture_photo_for("tps-001"));
    // An unknown hash is not served.
    let r = call(
        &app,
        "GET",
        &format!("/api/photos/{}", "a".repeat(64)),
        Cred::Full(&rev),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Out-of-range value: refused with a clear error.
    let r = call(
        &app,
        "POST",
        &format!("/api/items/{sid}/dpt.p/review"),
        Cred::Full(&rev),
        Some(json!({"action": "correct", "value": 1000})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &app,
        "POST",
        &format!("/api/items/{sid}/dpt.p/review"),
        Cred::Full(&rev),
        Some(json!({"action": "correct", "value": 180})),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );
    assert_eq!(r.json()["outcome"]["outcome"], "resolved");
    assert_eq!(r.json()["field"]["provenance"], "reviewer_corrected");
    // Reviewing the same item again is refused.
    let r = call(
        &app,
        "POST",
        &format!("/api/items/{sid}/dpt.p/review"),
        Cred::Full(&rev),
        Some(json!({"action": "confirm"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // dpt.lp: officer inconsistency (what is written stays).
    let next = call(&app, "POST", "/api/queue/next", Cred::Full(&rev), None)
        .await
        .json();
    assert_eq!(next["item"]["field"]["id"], "dpt.lp");
    let r = call(
        &app,
        "POST",
        &format!("/api/items/{sid}/dpt.lp/review"),
        Cred::Full(&rev),
        Some(json!({"action": "officer_inconsistency", "reason": "sum written wrong"})),
    )
    .await;
    assert_eq!(r.json()["field"]["value"], 300);
    assert_eq!(r.json()["field"]["provenance"], "officer_inconsistency");
    // Export with provenance per field.
    let sup = login(&app, SUPERVISOR).await;
    let ex = call(&app, "GET", "/api/export.json", Cred::Full(&sup), None)
        .await
        .json();
    let f = &ex["submissions"][0]["fields"];
    assert_eq!(f["dpt.p"]["value"], 180);
    assert_eq!(f["dpt.p"]["machine_value"], 130);
    assert_eq!(f["dpt.p"]["provenance"], "reviewer_corrected");
    assert_eq!(f["dpt.p"]["reviewed_by"], REVIEWER);
    assert_eq!(f["dpt.l"]["provenance"], "machine_accepted");
    assert_eq!(f["dpt.lp"]["provenance"], "officer_inconsistency");
    assert_eq!(f["b1.l"]["provenance"], "unreviewed");
    assert_eq!(f["valid"]["provenance"], "missing");
    assert_eq!(ex["submissions"][0]["open_fields"], 1);
    let csv = call(&app, "GET", "/api/export.csv", Cred::Full(&sup), None).await;
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = String::from_utf8(csv.bytes).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&format!("{sid},tps-001,,dpt.p,180,reviewer_corrected,130,"))),
        "{csv}"
    );
    // Audit: ingest + two reviews, chain verified.
    let log = call(
        &app,
        "GET",
        &format!("/api/audit?submission={sid}"),
        Cred::Full(&sup),
        None,
    )
    .await
    .json();
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1]["actor"], REVIEWER);
    assert_eq!(entries[1]["field"], "dpt.p");
    assert_eq!(entries[1]["old_value"], "130");
    assert_eq!(entries[1]["new_value"], "180");
    let v = call(&app, "GET", "/api/audit/verify", Cred::Full(&sup), None)
        .await
        .json();
    assert_eq!(v["ok"], true, "{v}");
    drop(dir);
}

#[tokio::test]
async fn two_reviewers_never_hold_the_same_item() {
    let (_d, sid, app) = setup_app(ServeConfig::default());
    let a = login(&app, REVIEWER).await;
    let b = login(&app, REVIEWER2).await;
    let ia = call(&app, "POST", "/api/queue/next", Cred::Full(&a), None)
        .await
        .json();
    let ib = call(&app, "POST", "/api/queue/next", Cred::Full(&b), None)
        .await
        .json();
    let fa = ia["item"]["field"]["id"].as_str().unwrap().to_string();
    let fb = ib["item"]["field"]["id"].as_str().unwrap().to_string();
    assert_ne!(fa, fb);
    // b may not review or claim a's item; a's queue view does not list b's item.
    let r = call(
        &app,
        "POST",
        &format!("/api/items/{sid}/{fa}/review"),
        Cred::Full(&b),
        Some(json!({"action": "confirm"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = call(
        &app,
        "POST",
        &format!("/api/items/{sid}/{fa}/claim"),
        Cred::Full(&b),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let qa = call(&app, "GET", "/api/queue", Cred::Full(&a), None)
        .await
        .json();
    assert!(
        qa["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["field"] != fb.as_str())
    );
    // Released leases come back.
    call(&app, "POST", "/api/queue/release", Cred::Full(&a), None).await;
    let r = call(
        &app,
        "POST",
        &format!("/api/items/{sid}/{fa}/claim"),
        Cred::Full(&b),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

fn encode(img: &image::GrayImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encodes");
    out
}

#[tokio::test]
async fn uploads_are_limited_and_typed() {
    let config = ServeConfig {
        max_upload_bytes: 200_000,
        ..ServeConfig::default()
    };
    let (dir, _sid, app) = setup_app(config);
    let sup = login(&app, SUPERVISOR).await;
    let big = vec![0xFFu8; 300_000];
    let r = send(
        &app,
        upload_request(Cred::Full(&sup), &[("photo", Some("big.jpg"), big)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "too_large");
    let r = send(
        &app,
        upload_request(
            Cred::Full(&sup),
            &[(
                "photo",
                Some("x.html"),
                b"<html><script>alert(1)</script>".to_vec(),
            )],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.error_code(), "unsupported_type");
    // An iPhone's HEIC photo is refused with what it is and what to do.
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\0meta".to_vec();
    let r = send(
        &app,
        upload_request(Cred::Full(&sup), &[("photo", Some("IMG_0001.HEIC"), heic)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.error_code(), "unsupported_type");
    let message = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains("IMG_0001.HEIC") && message.contains("HEIC") && message.contains("JPEG"),
        "{message}"
    );
    // A real PNG wider than the side limit (tiny file, refused from its header before decoding).
    let wide = image::GrayImage::new(rekap::load::MAX_SIDE + 1, 1);
    let png = encode(&wide, image::ImageFormat::Png);
    let r = send(
        &app,
        upload_request(Cred::Full(&sup), &[("photo", Some("bomb.png"), png)]),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );
    assert_eq!(r.error_code(), "too_many_pixels");
    let message = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("retake the photo"), "{message}");
    // A valid upload is stored and queued (no pipeline here: it ends `failed` with a reason);
    // the same photos again are recognised as a duplicate.
    let photo = fixture_photo();
    let mut other = photo.clone();
    other.extend_from_slice(b"trailing bytes make another file");
    let parts = [
        ("photo", Some("a.jpg"), other.clone()),
        (
            "tps",
            None,
            br#"{"code": "TPS-9", "village": "X"}"#.to_vec(),
        ),
    ];
    let r = send(&app, upload_request(Cred::Full(&sup), &parts)).await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );
    assert_eq!(r.json()["submission"]["name"], "TPS-9");
    let r = send(&app, upload_request(Cred::Full(&sup), &parts)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["duplicate"], true);
    // A WebP photo (what some browsers and messaging apps hand over) is taken too.
    let gray = image::load_from_memory(&photo)
        .expect("fixture decodes")
        .to_luma8();
    let webp = encode(&gray, image::ImageFormat::WebP);
    let r = send(
        &app,
        upload_request(Cred::Full(&sup), &[("photo", Some("upload.webp"), webp)]),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );
    assert_eq!(
        Store::open(dir.path())
            .unwrap()
            .submissions()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn double_entry_agreement_accepts_and_disagreement_goes_to_a_supervisor() {
    let config = ServeConfig {
        double_entry: true,
        ..ServeConfig::default()
    };
    let (dir, sid, app) = setup_app(config);
    let a = login(&app, REVIEWER).await;
    let b = login(&app, REVIEWER2).await;
    let review = |who: Who, field: &'static str, body: Value| {
        let app = app.clone();
        async move {
            call(
                &app,
                "POST",
                &format!("/api/items/{sid}/{field}/review"),
                Cred::Full(&who),
                Some(body),
            )
            .await
        }
    };
    // Agreement on dpt.p.
    let r = review(
        a.clone(),
        "dpt.p",
        json!({"action": "correct", "value": 180}),
    )
    .await;
    assert_eq!(r.json()["outcome"]["outcome"], "recorded");
    // Blind: the value did not change yet, and a cannot enter twice.
    assert_eq!(r.json()["field"]["value"], 130);
    let r2 = review(
        a.clone(),
        "dpt.p",
        json!({"action": "correct", "value": 180}),
    )
    .await;
    assert_eq!(r2.status, StatusCode::CONFLICT);
    let r = review(
        b.clone(),
        "dpt.p",
        json!({"action": "correct", "value": 180}),
    )
    .await;
    assert_eq!(r.json()["outcome"]["outcome"], "resolved");
    assert_eq!(r.json()["field"]["value"], 180);
    // Disagreement on b1.l.
    review(a.clone(), "b1.l", json!({"action": "confirm"})).await;
    let r = review(b.clone(), "b1.l", json!({"action": "correct", "value": 1})).await;
    assert_eq!(r.json()["outcome"]["outcome"], "disputed");
    let r = review(a.clone(), "b1.l", json!({"action": "confirm"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let sup = login(&app, SUPERVISOR).await;
    let q = call(&app, "GET", "/api/queue", Cred::Full(&sup), None)
        .await
        .json();
    assert_eq!(q["items"][0]["field"], "b1.l");
    assert_eq!(q["items"][0]["state"], "disputed");
    // The supervisor sees both entries; a reviewer asking for the item sees none.
    let it = call(
        &app,
        "GET",
        &format!("/api/items/{sid}/b1.l"),
        Cred::Full(&sup),
        None,
    )
    .await
    .json();
    assert_eq!(it["item"]["entries"].as_array().unwrap().len(), 2);
    let it = call(
        &app,
        "GET",
        &format!("/api/items/{sid}/b1.l"),
        Cred::Full(&a),
        None,
    )
    .await
    .json();
    assert_eq!(it["item"]["entries"].as_array().unwrap().len(), 0);
    let r = review(sup, "b1.l", json!({"action": "correct", "value": 1})).await;
    assert_eq!(r.json()["outcome"]["outcome"], "resolved");
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.current_values(sid).unwrap()["b1.l"], Some(1));
    assert!(store.verify_audit().unwrap().is_ok());
}

#[tokio::test]
async fn openapi_document_lists_the_endpoints() {
    let (_d, _sid, app) = setup_app(ServeConfig::default());
    let rev = login(&app, REVIEWER).await;
    let r = call(&app, "GET", "/api/openapi.json", Cred::Full(&rev), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/login",
        "/api/queue/next",
        "/api/items/{sid}/{field}/review",
        "/api/export.csv",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing");
    }
}

/// Stands in for the pipeline: reads the first photo's hash and returns the fixture report.
struct StubPipeline;

impl rekap::serve::Processor for StubPipeline {
    fn process(
        &self,
        name: &str,
        files: &[std::path::PathBuf],
    ) -> rekap::pipeline::SubmissionReport {
        let bytes = std::fs::read(&files[0]).unwrap();
        fixture_report(&rekap::load::sha256_hex(&bytes), name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_processed_in_the_background_and_reach_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let st = rekap::serve::AppState::new(
        Store::open(dir.path()).unwrap(),
        template(),
        ServeConfig::default(),
        Some(std::sync::Arc::new(StubPipeline)),
    );
    let app = router(st);
    let sup = login(&app, SUPERVISOR).await;
    let photo = fixture_photo_for("upload-1");
    let r = send(
        &app,
        upload_request(
            Cred::Full(&sup),
            &[
                ("photo", Some("page1.jpg"), photo),
                ("name", None, b"TPS 7 Kelurahan".to_vec()),
            ],
        ),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.bytes)
    );
    let id = r.json()["id"].as_i64().unwrap();
    let start = std::time::Instant::now();
    loop {
        let s = call(
            &app,
            "GET",
            &format!("/api/submissions/{id}"),
            Cred::Full(&sup),
            None,
        )
        .await
        .json();
        if s["submission"]["state"] == "done" {
            assert_eq!(s["results"]["submission"], "TPS 7 Kelurahan");
            assert_eq!(s["values"]["dpt.p"], 130);
            break;
        }
        assert!(start.elapsed().as_secs() < 20, "not processed: {s}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let q = call(&app, "GET", "/api/queue", Cred::Full(&sup), None)
        .await
        .json();
    let from_upload = q["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["submission_id"] == id)
        .count();
    assert_eq!(from_upload, 3);
    let v = call(&app, "GET", "/api/audit/verify", Cred::Full(&sup), None)
        .await
        .json();
    assert_eq!(v["ok"], true);
}
