//! Stage `store`: the review database. SQLite in a data folder (`DATA_DIR/rekap.sqlite3`) plus
//! content-addressed files (`DATA_DIR/photos/ab/cdef...`, named by their sha256, never modified).
//!
//! Everything that changes a number goes through [`Store`], whose narrow API (no SQL outside this
//! module) is what a second backend (PostgreSQL) would implement. Invariants kept here:
//! * a submission is identified by the set of its photos' sha256 (`photo_key`): ingesting the same
//!   photos again returns the existing submission and adds nothing;
//! * every change of a field's value or provenance appends one entry to the hash-chained audit log
//!   in the same transaction (see [`audit`]); the audit table refuses UPDATE and DELETE;
//! * a review is committed (synchronous=FULL) before the caller is answered;
//! * one item (submission, field) is leased to at most one reviewer at a time.

pub mod audit;
mod review;

pub use audit::{AuditEntry, AuditProblem};
pub use review::{
    ExportField, ExportSubmission, ItemKey, Provenance, QueueItem, ReviewAction, ReviewInput,
    ReviewOutcome,
};

use crate::decide::{FieldStatus, FlagCode};
use crate::pipeline::SubmissionReport;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Database file inside the data folder.
pub const DB_FILE: &str = "rekap.sqlite3";
/// Folder of content-addressed files inside the data folder.
pub const BLOB_DIR: &str = "photos";
/// Session lifetime: one working day, so a reviewer logs in once per shift.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Shortest password accepted for an account.
pub const MIN_PASSWORD_LEN: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("password hashing: {0}")]
    Password(String),
    #[error("random source: {0}")]
    Random(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `n` random bytes from the OS, as lower-case hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Account roles, each including the rights of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Reviewer,
    Supervisor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reviewer => "reviewer",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reviewer" => Some(Role::Reviewer),
            "supervisor" => Some(Role::Supervisor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub expires_ms: i64,
}

/// Processing state of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionState {
    Queued,
    Processing,
    Done,
    Failed,
}

impl SubmissionState {
    fn as_str(self) -> &'static str {
        match self {
            SubmissionState::Queued => "queued",
            SubmissionState::Processing => "processing",
            SubmissionState::Done => "done",
            SubmissionState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> SubmissionState {
        match s {
            "queued" => SubmissionState::Queued,
            "processing" => SubmissionState::Processing,
            "done" => SubmissionState::Done,
            _ => SubmissionState::Failed,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SubmissionPhoto {
    pub sha256: String,
    pub original_name: String,
    pub content_type: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubmissionRow {
    pub id: i64,
    pub name: String,
    pub state: SubmissionState,
    pub tps: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_ms: i64,
    pub uploaded_by: Option<String>,
    pub photos: Vec<SubmissionPhoto>,
    /// Review progress: fields still open / total fields.
    pub open_fields: i64,
    pub total_fields: i64,
}

/// Migrations, applied in order; `PRAGMA user_version` counts those applied. Append only.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('reviewer', 'supervisor', 'admin')),
    password_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL,
    content_type TEXT NOT NULL
);
CREATE TABLE submissions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    photo_key TEXT NOT NULL UNIQUE,
    tps TEXT,
    state TEXT NOT NULL,
    report TEXT,
    error TEXT,
    created_ms INTEGER NOT NULL,
    uploaded_by TEXT
);
CREATE TABLE submission_photos (
    submission_id INTEGER NOT NULL REFERENCES submissions(id),
    position INTEGER NOT NULL,
    sha256 TEXT NOT NULL REFERENCES blobs(sha256),
    original_name TEXT NOT NULL,
    PRIMARY KEY (submission_id, position)
);
CREATE TABLE fields (
    submission_id INTEGER NOT NULL REFERENCES submissions(id),
    field TEXT NOT NULL,
    ord INTEGER NOT NULL,
    machine_value INTEGER,
    machine_status TEXT NOT NULL,
    confidence REAL NOT NULL,
    flags TEXT NOT NULL,
    severity INTEGER NOT NULL,
    value INTEGER,
    provenance TEXT NOT NULL,
    state TEXT NOT NULL,
    crop_sha256 TEXT,
    reviewed_by TEXT,
    reviewed_ms INTEGER,
    PRIMARY KEY (submission_id, field)
);
CREATE INDEX fields_queue ON fields (state, severity, submission_id, ord);
CREATE TABLE leases (
    submission_id INTEGER NOT NULL,
    field TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id),
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (submission_id, field)
);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    submission_id INTEGER NOT NULL,
    field TEXT NOT NULL,
    round INTEGER NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id),
    action TEXT NOT NULL,
    value INTEGER,
    reason TEXT,
    at_ms INTEGER NOT NULL,
    UNIQUE (submission_id, field, round, user_id)
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    submission_id INTEGER NOT NULL,
    field TEXT,
    old_value TEXT,
    new_value TEXT,
    provenance TEXT,
    reason TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#];

/// The review store (SQLite backend).
pub struct Store {
    conn: Connection,
    dir: PathBuf,
    /// Field ids in form order (the template's), for the review order of new submissions;
    /// fields not listed come after, alphabetically.
    field_order: Vec<String>,
}

impl Store {
    /// Open (creating if needed) the store in `dir` and apply pending migrations.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir.join(BLOB_DIR)).map_err(io_err(dir))?;
        let conn = Connection::open(dir.join(DB_FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // WAL for concurrent readers; synchronous=FULL so that a committed review survives a
        // power cut or a killed process before the reviewer is told it was saved.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Store {
            conn,
            dir: dir.to_path_buf(),
            field_order: Vec::new(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
            tracing::info!("store: applied migration {}", i + 1);
        }
        Ok(())
    }

    /// Review fields of newly ingested submissions in this order (the template's field ids).
    pub fn with_field_order(mut self, order: Vec<String>) -> Store {
        self.field_order = order;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Raw connection, for tests that tamper with the database on purpose.
    #[doc(hidden)]
    pub fn connection_for_tests(&self) -> &Connection {
        &self.conn
    }

    // ---------------------------------------------------------------- blobs

    /// Path of a content-addressed file: `photos/ab/cdef...`.
    pub fn blob_path(&self, sha256: &str) -> Option<PathBuf> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let s = sha256.to_ascii_lowercase();
        Some(self.dir.join(BLOB_DIR).join(&s[..2]).join(&s[2..]))
    }

    /// Store bytes under their sha256 (written once, then never modified). Returns the sha256.
    pub fn put_blob(&self, bytes: &[u8], content_type: &str) -> Result<String> {
        let sha = crate::load::sha256_hex(bytes);
        let path = self
            .blob_path(&sha)
            .ok_or_else(|| StoreError::Invalid("bad sha256".into()))?;
        if !path.exists() {
            let parent = path.parent().unwrap_or(&self.dir);
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            // Write to a temporary name and rename, so a crash never leaves a partial file
            // under a content address.
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
                f.write_all(bytes).map_err(io_err(&tmp))?;
                f.sync_all().map_err(io_err(&tmp))?;
            }
            std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        }
        self.conn.execute(
            "INSERT OR IGNORE INTO blobs (sha256, bytes, content_type) VALUES (?1, ?2, ?3)",
            params![sha, bytes.len() as i64, content_type],
        )?;
        Ok(sha)
    }

    /// A stored file's bytes and content type; `None` when unknown.
    pub fn get_blob(&self, sha256: &str) -> Result<Option<(Vec<u8>, String)>> {
        let Some(path) = self.blob_path(sha256) else {
            return Ok(None);
        };
        let ct: Option<String> = self
            .conn
            .query_row(
                "SELECT content_type FROM blobs WHERE sha256 = ?1",
                [sha256.to_ascii_lowercase()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(ct) = ct else { return Ok(None) };
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        Ok(Some((bytes, ct)))
    }

    // ---------------------------------------------------------------- users and sessions

    /// Create an account. Names: 1-64 of `A-Za-z0-9._-`.
    pub fn add_user(&self, name: &str, role: Role, password: &str) -> Result<i64> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            return Err(StoreError::Invalid(
                "user names are 1-64 characters of A-Z a-z 0-9 . _ -".into(),
            ));
        }
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(StoreError::Invalid(format!(
                "passwords need at least {MIN_PASSWORD_LEN} characters"
            )));
        }
        let hash = hash_password(password)?;
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO users (name, role, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), hash, now_ms()],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("user {name} exists")));
        }
        Ok(self.conn.last_insert_rowid())
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let mut st = self
            .conn
            .prepare("SELECT id, name, role FROM users ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, role) = row?;
            out.push(User {
                id,
                name,
                role: Role::parse(&role).unwrap_or(Role::Reviewer),
            });
        }
        Ok(out)
    }

    /// An account and its password hash (to verify outside any lock with [`verify_login`]).
    pub fn login_record(&self, name: &str) -> Result<Option<(User, String)>> {
        let row: Option<(i64, String, String)> = self
            .conn
            .query_row(
                "SELECT id, role, password_hash FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(row.map(|(id, role, hash)| {
            (
                User {
                    id,
                    name: name.to_string(),
                    role: Role::parse(&role).unwrap_or(Role::Reviewer),
                },
                hash,
            )
        }))
    }

    /// Check a name and password. Unknown names cost the same hashing time as known ones.
    pub fn check_password(&self, name: &str, password: &str) -> Result<Option<User>> {
        let row: Option<(i64, String, String)> = self
            .conn
            .query_row(
                "SELECT id, role, password_hash FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        match row {
            Some((id, role, hash)) => Ok(verify_password(password, &hash).then(|| User {
                id,
                name: name.to_string(),
                role: Role::parse(&role).unwrap_or(Role::Reviewer),
            })),
            None => {
                let _ = verify_password(password, DUMMY_HASH);
                Ok(None)
            }
        }
    }

    /// Open a session; returns (cookie token, CSRF token). Only the token's sha256 is stored.
    pub fn create_session(&self, user_id: i64) -> Result<(String, String)> {
        let token = random_hex(32)?;
        let csrf = random_hex(32)?;
        let now = now_ms();
        self.conn
            .execute("DELETE FROM sessions WHERE expires_ms < ?1", [now])?;
        self.conn.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![crate::load::sha256_hex(token.as_bytes()), user_id, csrf, now, now + SESSION_TTL_MS],
        )?;
        Ok((token, csrf))
    }

    /// The live session of a cookie token.
    pub fn session(&self, token: &str) -> Result<Option<Session>> {
        let row = self
            .conn
            .query_row(
                "SELECT u.id, u.name, u.role, s.csrf, s.expires_ms FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = ?1 AND s.expires_ms > ?2",
                params![crate::load::sha256_hex(token.as_bytes()), now_ms()],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()?;
        Ok(row.map(|(id, name, role, csrf, expires_ms)| Session {
            user: User {
                id,
                name,
                role: Role::parse(&role).unwrap_or(Role::Reviewer),
            },
            csrf,
            expires_ms,
        }))
    }

    pub fn delete_session(&self, token: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM sessions WHERE token_hash = ?1",
            [crate::load::sha256_hex(token.as_bytes())],
        )?;
        Ok(())
    }

    // ---------------------------------------------------------------- submissions

    /// Register a submission made of already stored photos `(sha256, original name)`.
    /// Returns `(id, created)`; `created` is false when the same photo set exists already.
    pub fn create_submission(
        &mut self,
        name: &str,
        photos: &[(String, String)],
        tps: Option<&serde_json::Value>,
        uploaded_by: Option<&str>,
    ) -> Result<(i64, bool)> {
        if photos.is_empty() {
            return Err(StoreError::Invalid(
                "a submission needs at least one photo".into(),
            ));
        }
        let key = photo_key(photos.iter().map(|p| p.0.as_str()));
        let tx = self.conn.transaction()?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM submissions WHERE photo_key = ?1",
                [&key],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Ok((id, false));
        }
        tx.execute(
            "INSERT INTO submissions (name, photo_key, tps, state, created_ms, uploaded_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                name,
                key,
                tps.map(|t| t.to_string()),
                SubmissionState::Queued.as_str(),
                now_ms(),
                uploaded_by
            ],
        )?;
        let id = tx.last_insert_rowid();
        for (i, (sha, orig)) in photos.iter().enumerate() {
            tx.execute(
                "INSERT INTO submission_photos (submission_id, position, sha256, original_name) VALUES (?1, ?2, ?3, ?4)",
                params![id, i as i64, sha, orig],
            )?;
        }
        tx.commit()?;
        Ok((id, true))
    }

    /// Store photo files and register them as one submission (the `process --db` path).
    pub fn add_submission_files(&mut self, name: &str, files: &[PathBuf]) -> Result<(i64, bool)> {
        let mut photos = Vec::new();
        for f in files {
            let bytes = std::fs::read(f).map_err(io_err(f))?;
            let sha = self.put_blob(&bytes, sniff_image_type(&bytes))?;
            let orig = f
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            photos.push((sha, orig));
        }
        self.create_submission(name, &photos, None, None)
    }

    /// Paths of a submission's photos in the blob store, in upload order.
    pub fn submission_files(&self, id: i64) -> Result<Vec<PathBuf>> {
        let mut st = self.conn.prepare(
            "SELECT sha256 FROM submission_photos WHERE submission_id = ?1 ORDER BY position",
        )?;
        let shas: Vec<String> = st
            .query_map([id], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(shas.iter().filter_map(|s| self.blob_path(s)).collect())
    }

    /// Submissions waiting to be processed (also those interrupted by a restart).
    pub fn pending_submissions(&self) -> Result<Vec<i64>> {
        let mut st = self.conn.prepare(
            "SELECT id FROM submissions WHERE state IN ('queued', 'processing') ORDER BY id",
        )?;
        let ids = st
            .query_map([], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(ids)
    }

    pub fn set_state(&self, id: i64, state: SubmissionState, error: Option<&str>) -> Result<()> {
        self.conn.execute(
            "UPDATE submissions SET state = ?2, error = ?3 WHERE id = ?1",
            params![id, state.as_str(), error],
        )?;
        Ok(())
    }

    /// Ingest the pipeline's report for submission `id`: the report JSON, one row per field with
    /// its machine reading, flags and severity, the field crops (content-addressed), and one
    /// `ingest` audit entry whose value is the sha256 of the stored report. A submission that
    /// already has a report is left unchanged (returns false).
    pub fn ingest_report(&mut self, id: i64, report: &SubmissionReport) -> Result<bool> {
        let json = serde_json::to_string(report)?;
        // Crops are files written by the pipeline; store them before the transaction.
        let mut crops: Vec<(String, String)> = Vec::new();
        for (fid, f) in &report.fields {
            if let Some(path) = f.source.as_ref().and_then(|s| s.crop.as_ref()) {
                match std::fs::read(path) {
                    Ok(bytes) => crops.push((fid.clone(), self.put_blob(&bytes, "image/png")?)),
                    Err(e) => tracing::warn!("crop {path} not stored: {e}"),
                }
            }
        }
        let tx = self.conn.transaction()?;
        let has: Option<Option<String>> = tx
            .query_row("SELECT report FROM submissions WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        match has {
            None => return Err(StoreError::NotFound(format!("submission {id}"))),
            Some(Some(_)) => return Ok(false),
            Some(None) => {}
        }
        tx.execute(
            "UPDATE submissions SET report = ?2, state = 'done', error = NULL WHERE id = ?1",
            params![id, json],
        )?;
        for (i, (fid, f)) in report.fields.iter().enumerate() {
            let ord = self
                .field_order
                .iter()
                .position(|x| x == fid)
                .unwrap_or(self.field_order.len() + i);
            let (provenance, state) = initial_state(f.status, &f.flags);
            let crop = crops.iter().find(|c| &c.0 == fid).map(|c| c.1.clone());
            tx.execute(
                "INSERT INTO fields (submission_id, field, ord, machine_value, machine_status, confidence, flags, severity, value, provenance, state, crop_sha256) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?4, ?9, ?10, ?11)",
                params![
                    id,
                    fid,
                    ord as i64,
                    f.value,
                    status_str(f.status),
                    f.confidence,
                    serde_json::to_string(&f.flags)?,
                    severity(&f.flags),
                    provenance.as_str(),
                    state,
                    crop
                ],
            )?;
        }
        audit::append(
            &tx,
            &audit::NewEntry {
                actor: "rekap-pipeline",
                action: "ingest",
                submission_id: id,
                field: None,
                old_value: None,
                new_value: Some(&crate::load::sha256_hex(json.as_bytes())),
                provenance: None,
                reason: Some(&format!("model {}", report.model)),
            },
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// The stored report of a submission.
    pub fn report(&self, id: i64) -> Result<Option<SubmissionReport>> {
        let s: Option<Option<String>> = self
            .conn
            .query_row("SELECT report FROM submissions WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        match s.flatten() {
            Some(text) => Ok(Some(serde_json::from_str(&text)?)),
            None => Ok(None),
        }
    }

    pub fn submission(&self, id: i64) -> Result<Option<SubmissionRow>> {
        Ok(self
            .submissions_where("WHERE s.id = ?1", [id])?
            .into_iter()
            .next())
    }

    pub fn submissions(&self) -> Result<Vec<SubmissionRow>> {
        self.submissions_where("", [])
    }

    fn submissions_where<P: rusqlite::Params>(
        &self,
        cond: &str,
        p: P,
    ) -> Result<Vec<SubmissionRow>> {
        let sql = format!(
            "SELECT s.id, s.name, s.state, s.tps, s.error, s.created_ms, s.uploaded_by, \
             (SELECT COUNT(*) FROM fields f WHERE f.submission_id = s.id AND f.state IN ('open', 'disputed')), \
             (SELECT COUNT(*) FROM fields f WHERE f.submission_id = s.id) \
             FROM submissions s {cond} ORDER BY s.id"
        );
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(p, |r| {
            Ok(SubmissionRow {
                id: r.get(0)?,
                name: r.get(1)?,
                state: SubmissionState::parse(&r.get::<_, String>(2)?),
                tps: r
                    .get::<_, Option<String>>(3)?
                    .and_then(|t| serde_json::from_str(&t).ok()),
                error: r.get(4)?,
                created_ms: r.get(5)?,
                uploaded_by: r.get(6)?,
                photos: Vec::new(),
                open_fields: r.get(7)?,
                total_fields: r.get(8)?,
            })
        })?;
        let mut out: Vec<SubmissionRow> = rows.collect::<std::result::Result<_, _>>()?;
        let mut st = self.conn.prepare(
            "SELECT p.sha256, p.original_name, b.content_type FROM submission_photos p JOIN blobs b ON b.sha256 = p.sha256 \
             WHERE p.submission_id = ?1 ORDER BY p.position",
        )?;
        for s in &mut out {
            s.photos = st
                .query_map([s.id], |r| {
                    Ok(SubmissionPhoto {
                        sha256: r.get(0)?,
                        original_name: r.get(1)?,
                        content_type: r.get(2)?,
                    })
                })?
                .collect::<std::result::Result<_, _>>()?;
        }
        Ok(out)
    }

    /// Whether a blob belongs to some submission (photos) or field (crops).
    pub fn blob_is_referenced(&self, sha256: &str) -> Result<bool> {
        let n: i64 = self.conn.query_row(
            "SELECT (SELECT COUNT(*) FROM submission_photos WHERE sha256 = ?1) + \
                    (SELECT COUNT(*) FROM fields WHERE crop_sha256 = ?1)",
            [sha256.to_ascii_lowercase()],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }
}

pub(crate) fn status_str(s: FieldStatus) -> &'static str {
    match s {
        FieldStatus::Accepted => "accepted",
        FieldStatus::Flagged => "flagged",
        FieldStatus::Missing => "missing",
    }
}

/// Provenance and review state of a freshly read field.
/// Invariant: `flagged` fields and `missing` ones with some flag other than `page_missing` (the
/// page was read but the boxes are blank or X) enter the review queue; a field of a page that was
/// not photographed cannot be reviewed from a photo and stays `missing`.
pub(crate) fn initial_state(status: FieldStatus, flags: &[String]) -> (Provenance, &'static str) {
    match status {
        FieldStatus::Accepted => (Provenance::MachineAccepted, "accepted"),
        FieldStatus::Flagged => (Provenance::Unreviewed, "open"),
        FieldStatus::Missing if flags.iter().any(|f| f != FlagCode::PageMissing.as_str()) => {
            (Provenance::Unreviewed, "open")
        }
        FieldStatus::Missing => (Provenance::Missing, "missing"),
    }
}

/// Review priority of a field from its flag codes: lower is more urgent. Arithmetic that fails
/// (a rule broken, a count out of range) may be a wrong number published, so it goes first; then
/// disagreeing channels; then doubtful patterns and low confidence; then geometry; blank last.
pub fn severity(flags: &[String]) -> i64 {
    flags
        .iter()
        .map(|f| match f.as_str() {
            x if x == FlagCode::RuleViolated.as_str() || x == FlagCode::OutOfRange.as_str() => 0,
            x if x == FlagCode::ChannelDisagreement.as_str() => 1,
            x if x == FlagCode::InvalidPattern.as_str() => 2,
            x if x == FlagCode::LowConfidence.as_str() => 3,
            x if x == FlagCode::AlignmentPoor.as_str() || x == FlagCode::OffPhoto.as_str() => 4,
            x if x == FlagCode::BlankField.as_str() => 5,
            _ => 6,
        })
        .min()
        .unwrap_or(9)
}

/// The identity of a photo set: sorted sha256s joined by commas.
pub fn photo_key<'a>(shas: impl Iterator<Item = &'a str>) -> String {
    let mut v: Vec<String> = shas.map(|s| s.to_ascii_lowercase()).collect();
    v.sort();
    v.dedup();
    v.join(",")
}

/// Content type from magic bytes; only the two image types we serve.
pub fn sniff_image_type(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else {
        "application/octet-stream"
    }
}

/// Verify a password against [`Store::login_record`]'s result; `None` (unknown name) costs the
/// same time as a real check, so response time does not reveal which names exist.
pub fn verify_login(record: Option<(User, String)>, password: &str) -> Option<User> {
    match record {
        Some((user, hash)) => verify_password(password, &hash).then_some(user),
        None => {
            let _ = verify_password(password, DUMMY_HASH);
            None
        }
    }
}

/// A valid argon2id hash of a random password nobody knows: verifying unknown user names against
/// it costs the same time as a real check, so response time does not reveal which names exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$7J9k1Yk4k0zJ8iN6Yt6Vw1G3QvZ0mXgQm3f2m0y1a7w";

fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| StoreError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| StoreError::Password(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Password(e.to_string()))
}

fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_orders_rules_first() {
        assert_eq!(
            severity(&["low_confidence".into(), "rule_violated".into()]),
            0
        );
        assert_eq!(severity(&["channel_disagreement".into()]), 1);
        assert!(severity(&["low_confidence".into()]) > severity(&["out_of_range".into()]));
    }

    #[test]
    fn photo_key_ignores_order() {
        assert_eq!(
            photo_key(["b", "a"].into_iter()),
            photo_key(["a", "b"].into_iter())
        );
    }

    #[test]
    fn dummy_hash_parses() {
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password("anything", DUMMY_HASH));
    }
}
