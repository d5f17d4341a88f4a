//! Sessions, CSRF and roles; the JSON error type.

use super::AppState;
use crate::store::{Role, Session, StoreError};
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, Method, StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};

/// Cookie name over https (`__Host-`: browsers only accept it Secure, host-only, Path=/).
pub const COOKIE_SECURE: &str = "__Host-rekap_session";
/// Cookie name for plain-http local development.
pub const COOKIE_DEV: &str = "rekap_session";
/// Header carrying the CSRF token on every mutation.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An error answered as `{ "error": { "code", "message" } }`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => ApiError::bad_request(m),
            other => {
                tracing::error!("store error: {other}");
                ApiError::internal("internal error (logged on the server)")
            }
        }
    }
}

/// The session token from the request's cookies.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    for h in headers.get_all(axum::http::header::COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for part in s.split(';') {
            let part = part.trim();
            if let Some((k, v)) = part.split_once('=')
                && (k == COOKIE_SECURE || k == COOKIE_DEV)
                && !v.is_empty()
            {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// `Set-Cookie` value for a new session (or, with `token` None, one that clears it).
pub fn session_cookie(token: Option<&str>, secure: bool) -> String {
    let name = if secure { COOKIE_SECURE } else { COOKIE_DEV };
    let (value, age) = match token {
        Some(t) => (t, crate::store::SESSION_TTL_MS / 1000),
        None => ("", 0),
    };
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Constant-time equality (the CSRF token must not leak through timing).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An authenticated request. Extracting it refuses requests without a live session (401) and
/// mutations without the session's CSRF token (403).
pub struct Auth {
    pub session: Session,
    pub token: String,
}

impl Auth {
    /// Refuse (403) unless the user has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.session.user.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role (you are {})",
                role.as_str(),
                self.session.user.role.as_str()
            )))
        }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = session_token(&parts.headers) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "log in first",
            ));
        };
        let session = state.store().session(&token)?;
        let Some(session) = session else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "session expired or unknown; log in again",
            ));
        };
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let given = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct_eq(given.as_bytes(), session.csrf.as_bytes()) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "missing or wrong X-CSRF-Token header",
                ));
            }
        }
        Ok(Auth { session, token })
    }
}
