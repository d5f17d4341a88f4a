//! HTTP routes and handlers.

use super::auth::{ApiError, Auth, session_cookie};
use super::{AppState, MAX_UPLOAD_PHOTOS};
use crate::store::{ItemKey, ReviewInput, Role, sniff_image_type};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;

/// Content-Security-Policy on every response: nothing but this origin, no inline script or style,
/// no framing. Photos are drawn into canvases from same-origin URLs.
pub const CSP: &str = "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

const INDEX_HTML: &str = include_str!("static/index.html");
const APP_JS: &str = include_str!("static/app.js");
const APP_CSS: &str = include_str!("static/app.css");
const OPENAPI: &str = include_str!("openapi.json");

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        ApiError::new(e.status(), "bad_request", e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
    }
}

/// JSON body whose rejections are answered in the API's error format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// Path parameters whose rejections are answered in the API's error format.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

type ApiResult<T> = Result<T, ApiError>;

pub fn router(state: AppState) -> Router {
    let upload_limit = state.config.max_upload_bytes;
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/api/health", get(health))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route(
            "/api/submissions",
            get(list_submissions)
                .post(upload)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/api/submissions/{id}", get(get_submission))
        .route("/api/queue", get(queue))
        .route("/api/queue/next", post(queue_next))
        .route("/api/queue/release", post(queue_release))
        .route("/api/items/{sid}/{field}", get(item))
        .route("/api/items/{sid}/{field}/claim", post(claim))
        .route("/api/items/{sid}/{field}/review", post(review))
        .route("/api/photos/{sha}", get(photo))
        .route("/api/export.json", get(export_json))
        .route("/api/export.csv", get(export_csv))
        .route("/api/audit", get(audit_log))
        .route("/api/audit/verify", get(audit_verify))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn security_headers(req: axum::extract::Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

fn asset(ct: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, ct)], body).into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}
async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}
async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn health() -> Json<Value> {
    Json(json!({"ok": true}))
}

/// Liveness and readiness for load balancers: 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    let r = tokio::task::spawn_blocking(move || state.store().ping()).await;
    match r {
        Ok(Ok(())) => Json(json!({"ok": true, "database": "ok"})).into_response(),
        Ok(Err(e)) => {
            tracing::warn!("healthz: database: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"ok": false, "database": e.to_string()})),
            )
                .into_response()
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Queue and review counts in the Prometheus text format (no session needed, like health:
/// restrict it at the reverse proxy; it shows counts only).
async fn metrics(State(state): State<AppState>) -> Response {
    let r = tokio::task::spawn_blocking(move || state.store().queue_stats()).await;
    match r {
        Ok(Ok(stats)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            crate::serve::prometheus_text(&stats),
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!("metrics: database: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn openapi(_auth: Auth) -> Response {
    asset("application/json", OPENAPI)
}

#[derive(Deserialize)]
struct LoginBody {
    name: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    ext: axum::http::Extensions,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Response> {
    let ip = ext
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "local".into());
    if !state.allow_login_attempt(&format!("ip:{ip}"))
        || !state.allow_login_attempt(&format!("name:{}", body.name))
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many login attempts; wait a minute",
        ));
    }
    let record = state.store().login_record(&body.name)?;
    // Password hashing is deliberately slow: verify off the async workers and outside the
    // store lock.
    let user =
        tokio::task::spawn_blocking(move || crate::store::verify_login(record, &body.password))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
    let Some(user) = user else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong name or password",
        ));
    };
    let (token, csrf) = state.store().create_session(user.id)?;
    let cookie = session_cookie(Some(&token), state.config.secure_cookie);
    tracing::info!("login: {} ({})", user.name, user.role.as_str());
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({"user": user.name, "role": user.role, "csrf": csrf,
                    "double_entry": state.config.double_entry})),
    )
        .into_response())
}

async fn logout(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    let st = state.store();
    st.release(&auth.session.user)?;
    st.delete_session(&auth.token)?;
    let cookie = session_cookie(None, state.config.secure_cookie);
    Ok(([(header::SET_COOKIE, cookie)], Json(json!({"ok": true}))).into_response())
}

async fn me(State(state): State<AppState>, auth: Auth) -> Json<Value> {
    Json(
        json!({"user": auth.session.user.name, "role": auth.session.user.role,
                "csrf": auth.session.csrf, "double_entry": state.config.double_entry}),
    )
}

async fn list_submissions(State(state): State<AppState>, _auth: Auth) -> ApiResult<Json<Value>> {
    let subs = state.store().submissions()?;
    Ok(Json(json!({ "submissions": subs })))
}

async fn get_submission(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    let st = state.store();
    let sub = st
        .submission(id)?
        .ok_or_else(|| ApiError::not_found(format!("submission {id}")))?;
    let report = st.report(id)?;
    let values = st.current_values(id)?;
    Ok(Json(
        json!({ "submission": sub, "results": report, "values": values }),
    ))
}

/// Upload: multipart with `photo` parts (the page photos), optional `tps` (JSON object of polling
/// station metadata) and `name`. Stored, then processed in the background.
async fn upload(
    State(state): State<AppState>,
    auth: Auth,
    mut mp: Multipart,
) -> ApiResult<Response> {
    auth.require(Role::Supervisor)?;
    let mut photos: Vec<(Vec<u8>, String)> = Vec::new();
    let mut tps: Option<Value> = None;
    let mut name: Option<String> = None;
    let mp_err = |e: axum::extract::multipart::MultipartError| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "too_large",
                format!(
                    "upload larger than {} MB",
                    state.config.max_upload_bytes / (1024 * 1024)
                ),
            )
        } else {
            ApiError::new(status, "bad_request", e.body_text())
        }
    };
    while let Some(field) = mp.next_field().await.map_err(mp_err)? {
        match field.name().unwrap_or("") {
            "photo" | "photos" | "file" => {
                if photos.len() == MAX_UPLOAD_PHOTOS {
                    return Err(ApiError::bad_request(format!(
                        "at most {MAX_UPLOAD_PHOTOS} photos per submission"
                    )));
                }
                let fname = field.file_name().unwrap_or("photo").to_string();
                let bytes = field.bytes().await.map_err(mp_err)?;
                photos.push((bytes.to_vec(), fname));
            }
            "tps" => {
                let text = field.text().await.map_err(mp_err)?;
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| ApiError::bad_request(format!("tps is not JSON: {e}")))?;
                if !v.is_object() || text.len() > 4096 {
                    return Err(ApiError::bad_request(
                        "tps must be a JSON object of at most 4096 bytes",
                    ));
                }
                tps = Some(v);
            }
            "name" => {
                let text = field.text().await.map_err(mp_err)?;
                name = Some(text.chars().take(100).collect());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form field `{other}`"
                )));
            }
        }
    }
    if photos.is_empty() {
        return Err(ApiError::bad_request(
            "no photo in the upload (form field `photo`)",
        ));
    }
    // Check every photo's type and pixel budget from its header before storing anything.
    for (bytes, fname) in &photos {
        let kind = crate::load::sniff(bytes);
        if kind.and_then(crate::load::FileKind::content_type).is_none() {
            let what = match kind {
                Some(crate::load::FileKind::Unsupported(what)) => what,
                _ => "not a JPEG, PNG or WebP photo",
            };
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_type",
                format!("{fname}: {what}"),
            ));
        }
        let dims = image::ImageReader::new(std::io::Cursor::new(bytes.as_slice()))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok());
        let Some((w, h)) = dims else {
            return Err(ApiError::bad_request(format!(
                "{fname}: unreadable image header"
            )));
        };
        if u64::from(w) * u64::from(h) > crate::load::MAX_PIXELS
            || w > crate::load::MAX_SIDE
            || h > crate::load::MAX_SIDE
        {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_pixels",
                format!(
                    "{fname}: {w}x{h} pixels exceeds the budget of {} pixels; retake the photo \
                     at the camera's default resolution (12 MP is plenty) or scale it down",
                    crate::load::MAX_PIXELS
                ),
            ));
        }
    }
    let name = name
        .filter(|n| !n.trim().is_empty())
        .or_else(|| {
            tps.as_ref()
                .and_then(|t| t.get("code").or_else(|| t.get("tps")))
                .and_then(|c| c.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| format!("upload-{}", &crate::load::sha256_hex(&photos[0].0)[..8]));
    let (id, created) = {
        let mut st = state.store();
        let mut refs = Vec::new();
        for (bytes, fname) in &photos {
            let sha = st.put_blob(bytes, sniff_image_type(bytes))?;
            refs.push((sha, fname.clone()));
        }
        st.create_submission(&name, &refs, tps.as_ref(), Some(&auth.session.user.name))?
    };
    if created && state.config.process_uploads {
        state.spawn_processing(id);
    }
    let sub = state.store().submission(id)?;
    Ok((
        if created {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        },
        Json(json!({"id": id, "duplicate": !created, "submission": sub})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct QueueQuery {
    limit: Option<usize>,
}

async fn queue(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<QueueQuery>,
) -> ApiResult<Json<Value>> {
    let items = state.store().queue(
        &auth.session.user,
        state.config.double_entry,
        q.limit.unwrap_or(100).min(1000),
    )?;
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize, Default)]
struct NextBody {
    #[serde(default)]
    skip: Vec<ItemKey>,
}

/// Lease the next item and return its details (`{"item": null}` when the queue is empty).
async fn queue_next(
    State(state): State<AppState>,
    auth: Auth,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    // The body is optional: empty means nothing to skip.
    let skip = if body.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        serde_json::from_slice::<NextBody>(&body)
            .map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))?
            .skip
    };
    let key = state
        .store()
        .claim_next(&auth.session.user, state.config.double_entry, &skip)?;
    match key {
        None => Ok(Json(json!({ "item": null }))),
        Some(k) => Ok(Json(json!({ "item": item_detail(&state, &auth, &k)? }))),
    }
}

async fn queue_release(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    state.store().release(&auth.session.user)?;
    Ok(Json(json!({"ok": true})))
}

async fn item(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((sid, field)): ApiPath<(i64, String)>,
) -> ApiResult<Json<Value>> {
    let key = ItemKey {
        submission_id: sid,
        field,
    };
    Ok(Json(json!({ "item": item_detail(&state, &auth, &key)? })))
}

async fn claim(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((sid, field)): ApiPath<(i64, String)>,
) -> ApiResult<Json<Value>> {
    let key = ItemKey {
        submission_id: sid,
        field,
    };
    let expires = state
        .store()
        .claim(&auth.session.user, &key, state.config.double_entry)?;
    Ok(Json(
        json!({ "lease_expires_ms": expires, "item": item_detail(&state, &auth, &key)? }),
    ))
}

async fn review(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((sid, field)): ApiPath<(i64, String)>,
    JsonBody(input): JsonBody<ReviewInput>,
) -> ApiResult<Json<Value>> {
    let key = ItemKey {
        submission_id: sid,
        field,
    };
    let tf = state
        .template
        .field(&key.field)
        .ok_or_else(|| ApiError::not_found(format!("no field {}", key.field)))?;
    if let Some(v) = input.value {
        let max = 10i64.saturating_pow(tf.boxes.len() as u32) - 1;
        if v < 0 || v > max {
            return Err(ApiError::bad_request(format!(
                "{} has {} boxes: the value must be 0..={max}",
                key.field,
                tf.boxes.len()
            )));
        }
    }
    let outcome =
        state
            .store()
            .review(&auth.session.user, &key, &input, state.config.double_entry)?;
    // Committed (synchronous=FULL) before this answer is sent.
    tracing::info!(
        "review by {}: submission {} {} -> {:?}",
        auth.session.user.name,
        key.submission_id,
        key.field,
        outcome
    );
    let state_now = state.store().field_state(&key)?;
    Ok(Json(json!({ "outcome": outcome, "field": state_now })))
}

/// Everything the review page needs for one field.
fn item_detail(state: &AppState, auth: &Auth, key: &ItemKey) -> ApiResult<Value> {
    let st = state.store();
    let fs = st.field_state(key)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "field {} of submission {}",
            key.field, key.submission_id
        ))
    })?;
    let sub = st
        .submission(key.submission_id)?
        .ok_or_else(|| ApiError::not_found(format!("submission {}", key.submission_id)))?;
    let report = st.report(key.submission_id)?;
    let values = st.current_values(key.submission_id)?;
    // Double entry is blind: the entries are shown only to a supervisor deciding a dispute.
    let entries = if fs.state == "disputed" && auth.session.user.role >= Role::Supervisor {
        st.entries_for(key)?
            .into_iter()
            .map(|(user, action, value)| json!({"user": user, "action": action, "value": value}))
            .collect()
    } else {
        Vec::new()
    };
    drop(st);
    let reading = report
        .as_ref()
        .and_then(|r| r.fields.get(&key.field))
        .cloned();
    let tf = state.template.field(&key.field);
    let rules: Vec<&crate::template::Rule> = state
        .rules
        .iter()
        .filter(|r| r.fields.iter().any(|f| f == &key.field))
        .collect();
    let rule_ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
    let flags: Vec<&crate::decide::Flag> = report
        .as_ref()
        .map(|r| {
            r.flags
                .iter()
                .filter(|f| {
                    f.field.as_deref() == Some(key.field.as_str())
                        || f.rule.as_deref().is_some_and(|x| rule_ids.contains(&x))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut rule_values = serde_json::Map::new();
    for r in &rules {
        for f in &r.fields {
            rule_values.insert(f.clone(), json!(values.get(f).copied().flatten()));
        }
    }
    let photo = reading.as_ref().and_then(|r| r.source.as_ref()).map(|s| {
        let page = report.as_ref().and_then(|r| {
            r.pages
                .iter()
                .find(|p| p.sha256.as_deref() == Some(s.sha256.as_str()))
        });
        json!({
            "sha256": s.sha256,
            "url": format!("/api/photos/{}", s.sha256),
            "page": s.page,
            "width": page.and_then(|p| p.width),
            "height": page.and_then(|p| p.height),
            "boxes_px": s.boxes_px,
        })
    });
    let labels: serde_json::Map<String, Value> = rules
        .iter()
        .flat_map(|r| r.fields.iter())
        .filter_map(|f| {
            state
                .template
                .field(f)
                .map(|t| (f.clone(), json!(t.label_en)))
        })
        .collect();
    Ok(json!({
        "key": key,
        "submission": {"id": sub.id, "name": sub.name, "tps": sub.tps},
        "field": {
            "id": key.field,
            "label_en": tf.map(|t| t.label_en.clone()),
            "label_id": tf.map(|t| t.label_id.clone()),
            "boxes": tf.map_or(0, |t| t.boxes.len()),
        },
        "state": fs,
        "reading": reading,
        "flags": flags,
        "rules": rules,
        "values": rule_values,
        "labels": labels,
        "photo": photo,
        "crop_url": fs.crop_sha256.as_ref().map(|c| format!("/api/photos/{c}")),
        "entries": entries,
        "you": auth.session.user.name,
    }))
}

/// A stored photo or crop, served only as the image type sniffed from its bytes at upload.
async fn photo(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(sha): ApiPath<String>,
) -> ApiResult<Response> {
    let st = state.store();
    if !st.blob_is_referenced(&sha)? {
        return Err(ApiError::not_found("no such photo"));
    }
    let Some((bytes, ct)) = st.get_blob(&sha)? else {
        return Err(ApiError::not_found("no such photo"));
    };
    drop(st);
    let ct = match ct.as_str() {
        "image/jpeg" => "image/jpeg",
        "image/png" => "image/png",
        "image/webp" => "image/webp",
        _ => {
            return Err(ApiError::forbidden(
                "this file is not an image and is not served",
            ));
        }
    };
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("inline; filename=\"photo\""),
    );
    // Content-addressed: never changes, but private to logged-in users.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400, immutable"),
    );
    Ok((h, bytes).into_response())
}

async fn export_json(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    auth.require(Role::Supervisor)?;
    let rows = state.store().export()?;
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"rekap-results.json\"",
        )],
        Json(json!({"schema": "rekap-export/1", "submissions": rows})),
    )
        .into_response())
}

/// A CSV cell: quoted when needed, and never starting with a formula character (spreadsheets
/// would execute `=...` from an uploaded submission name).
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

async fn export_csv(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    auth.require(Role::Supervisor)?;
    let rows = state.store().export()?;
    let mut out = String::from(
        "submission_id,submission,tps,field,value,provenance,machine_value,machine_confidence,flags,reviewed_by,reviewed_ms,photo_sha256,page\n",
    );
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for s in &rows {
        let tps = s.tps.as_ref().map(|t| t.to_string()).unwrap_or_default();
        for (fid, f) in &s.fields {
            let cells = [
                s.id.to_string(),
                s.submission.clone(),
                tps.clone(),
                fid.clone(),
                opt(f.value),
                f.provenance.clone(),
                opt(f.machine_value),
                format!("{:.6}", f.machine_confidence),
                f.flags.join(";"),
                f.reviewed_by.clone().unwrap_or_default(),
                opt(f.reviewed_ms),
                f.photo_sha256.clone().unwrap_or_default(),
                f.page.map(|p| p.to_string()).unwrap_or_default(),
            ];
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"rekap-results.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    submission: Option<i64>,
}

async fn audit_log(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    auth.require(Role::Supervisor)?;
    let entries = state.store().audit_entries(q.submission)?;
    Ok(Json(json!({ "entries": entries })))
}

async fn audit_verify(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require(Role::Supervisor)?;
    let v = state.store().verify_audit()?;
    Ok(Json(match v {
        Ok(n) => json!({"ok": true, "entries": n}),
        Err(p) => json!({"ok": false, "problem": p}),
    }))
}
