//! Stage `serve`: the review service (`rekap serve`). An axum application over [`crate::store`]:
//! log in, upload submissions (processed in the background by the pipeline), work the review
//! queue with the photo beside every number, export final results with provenance.
//!
//! Security invariants (tested in `tests/serve_api.rs`):
//! * every endpoint but `/api/login`, `/api/health`, `/healthz`, `/metrics` (counts only) and the
//!   static assets needs a live session;
//!   role checks are made in each handler through [`auth::Auth::require`];
//! * every mutation (any method but GET/HEAD) needs the session's CSRF token in `X-CSRF-Token`;
//! * the session cookie is HttpOnly, SameSite=Strict and (unless configured off for plain-http
//!   local development) Secure with the `__Host-` prefix;
//! * every response carries a strict CSP (`default-src 'self'`), `X-Content-Type-Options:
//!   nosniff` and `X-Frame-Options: DENY`; photos are only served as `image/jpeg`, `image/png` or `image/webp`;
//! * a review is committed to the database before it is acknowledged.

mod api;
pub mod auth;

pub use api::router;

use crate::pipeline::{Pipeline, SubmissionReport};
use crate::recognize::Model;
use crate::store::{Store, SubmissionState};
use crate::template::{Rule, Template};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Largest upload accepted (3 page photos of a high-resolution phone fit comfortably).
pub const MAX_UPLOAD_BYTES: usize = 40 * 1024 * 1024;
/// Most photos in one submission upload (3 pages, plus retakes).
pub const MAX_UPLOAD_PHOTOS: usize = 6;
/// Login attempts allowed per client address and per user name in one window.
pub const LOGIN_ATTEMPTS_PER_WINDOW: u32 = 10;
/// Length of the login rate-limit window.
pub const LOGIN_WINDOW_MS: i64 = 60_000;

/// Reads a submission's photos into a report (the pipeline, or a stand-in in tests).
pub trait Processor: Send + Sync {
    fn process(&self, name: &str, files: &[PathBuf]) -> SubmissionReport;
}

impl<M: Model + Send + Sync> Processor for Pipeline<M> {
    fn process(&self, name: &str, files: &[PathBuf]) -> SubmissionReport {
        self.process_submission(name, files)
    }
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Mark the session cookie Secure (needs https, except on browsers' localhost rules).
    pub secure_cookie: bool,
    /// Two reviewers enter each flagged field blind; disagreement goes to a supervisor.
    pub double_entry: bool,
    pub max_upload_bytes: usize,
    /// Read uploads in this process (the embedded SQLite set-up). Off when `rekap worker`s
    /// process the shared queue (PostgreSQL): uploads then stay queued for them.
    pub process_uploads: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            secure_cookie: true,
            double_entry: false,
            max_upload_bytes: MAX_UPLOAD_BYTES,
            process_uploads: true,
        }
    }
}

/// Shared application state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    store: Mutex<Store>,
    pub template: Template,
    pub rules: Vec<Rule>,
    pub config: ServeConfig,
    processor: Option<Arc<dyn Processor>>,
    limiter: Mutex<HashMap<String, (i64, u32)>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        store: Store,
        template: Template,
        config: ServeConfig,
        processor: Option<Arc<dyn Processor>>,
    ) -> AppState {
        let rules = template.rules();
        let order = template.numeric_fields().map(|f| f.id.clone()).collect();
        AppState(Arc::new(Inner {
            store: Mutex::new(store.with_field_order(order)),
            template,
            rules,
            config,
            processor,
            limiter: Mutex::new(HashMap::new()),
        }))
    }

    /// The store, locked. Never hold the guard across an `.await`.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned lock is safe to reuse.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count a login attempt under `key`; false when over the limit.
    pub fn allow_login_attempt(&self, key: &str) -> bool {
        let now = crate::store::now_ms();
        let mut m = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, (start, _)| now - *start < LOGIN_WINDOW_MS);
        let e = m.entry(key.to_string()).or_insert((now, 0));
        e.1 += 1;
        e.1 <= LOGIN_ATTEMPTS_PER_WINDOW
    }

    /// Process a stored submission with the pipeline (blocking; run on a blocking thread).
    pub fn process_blocking(&self, id: i64) {
        let Some(proc_) = self.processor.clone() else {
            let _ = self.store().set_state(
                id,
                SubmissionState::Failed,
                Some("processing is disabled on this server (no digit model loaded)"),
            );
            return;
        };
        let (files, name) = {
            let st = self.store();
            let files = st.submission_files(id);
            let name = st.submission(id).ok().flatten().map(|s| s.name);
            let _ = st.set_state(id, SubmissionState::Processing, None);
            (files, name.unwrap_or_else(|| format!("submission-{id}")))
        };
        let files = match files {
            Ok(f) => f,
            Err(e) => {
                let _ = self
                    .store()
                    .set_state(id, SubmissionState::Failed, Some(&e.to_string()));
                return;
            }
        };
        // A panic in the pipeline must not leave the submission `processing` forever.
        let report = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            proc_.process(&name, &files)
        })) {
            Ok(r) => r,
            Err(_) => {
                tracing::error!("submission {id}: the pipeline panicked");
                let _ = self.store().set_state(
                    id,
                    SubmissionState::Failed,
                    Some("internal error while reading the photos (logged on the server)"),
                );
                return;
            }
        };
        let mut st = self.store();
        if let Err(e) = st.ingest_report(id, &report) {
            tracing::error!("submission {id}: ingest failed: {e}");
            let _ = st.set_state(id, SubmissionState::Failed, Some(&e.to_string()));
        }
    }

    /// Queue a submission for background processing.
    pub fn spawn_processing(&self, id: i64) {
        let s = self.clone();
        tokio::task::spawn_blocking(move || s.process_blocking(id));
    }

    /// Re-queue submissions left queued or half-processed by a previous run.
    pub fn resume_pending(&self) {
        if !self.config.process_uploads {
            return;
        }
        let ids = self.store().pending_submissions().unwrap_or_default();
        for id in ids {
            self.spawn_processing(id);
        }
    }
}

/// The queue and review counts in the Prometheus text exposition format.
pub fn prometheus_text(s: &crate::store::QueueStats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP rekap_submissions Submissions (queue jobs) by processing state.\n# TYPE rekap_submissions gauge"
    );
    for (state, n) in &s.by_state {
        let _ = writeln!(out, "rekap_submissions{{state=\"{state}\"}} {n}");
    }
    let get = |k: &str| s.by_state.get(k).copied().unwrap_or(0);
    let lines: [(&str, &str, &str, f64); 7] = [
        (
            "rekap_queue_depth",
            "gauge",
            "Jobs waiting for a worker.",
            get("queued") as f64,
        ),
        (
            "rekap_jobs_done_total",
            "counter",
            "Jobs processed and ingested.",
            get("done") as f64,
        ),
        (
            "rekap_jobs_failed_total",
            "counter",
            "Jobs parked as failed after their retries.",
            get("failed") as f64,
        ),
        (
            "rekap_job_attempts_total",
            "counter",
            "Processing attempts, retries included.",
            s.attempts as f64,
        ),
        (
            "rekap_jobs_per_second",
            "gauge",
            "Jobs completed per second over the last minute.",
            s.done_last_minute as f64 / 60.0,
        ),
        (
            "rekap_expired_leases",
            "gauge",
            "Jobs whose worker's lease expired (dead or hung workers).",
            s.expired_leases as f64,
        ),
        (
            "rekap_review_backlog",
            "gauge",
            "Fields waiting for a reviewer (open or disputed).",
            s.review_backlog as f64,
        ),
    ];
    for (name, kind, help, v) in lines {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
    out
}

/// Serve `state` on `listener` until ctrl-c or SIGTERM.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    state.resume_pending();
    let app = router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
}

/// Ctrl-C, or SIGTERM (what service managers and container runtimes send): in-flight requests
/// finish, new connections are refused.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
