//! Stage `store`: the review database. SQLite in a data folder (`DATA_DIR/rekap.sqlite3`) plus
//! content-addressed files (`DATA_DIR/photos/ab/cdef...`, named by their sha256, never modified);
//! or PostgreSQL with the content-addressed files in a folder shared by every server and worker.
//!
//! Everything that changes a number goes through [`Store`], whose narrow API (no SQL outside this
//! module) is the same on both backends: its SQL is written once over [`db::Conn`], with the same
//! numbered migrations in each dialect. The work queue of `rekap worker` is in `queue`.
//! Invariants kept here:
//! * a submission is identified by the set of its photos' sha256 (`photo_key`): ingesting the same
//!   photos again returns the existing submission and adds nothing;
//! * every change of a field's value or provenance appends one entry to the hash-chained audit log
//!   in the same transaction (see [`audit`]); the audit table refuses UPDATE and DELETE;
//! * a review is committed (synchronous=FULL) before the caller is answered;
//! * one item (submission, field) is leased to at most one reviewer at a time.

pub mod audit;
pub mod db;
mod queue;
mod review;

pub use audit::{AuditEntry, AuditProblem};
pub use db::{describe_postgres_url, postgres_url_with_db};
pub use queue::{IngestOutcome, Job, JobFate, JobRow, QueueStats};
pub use review::{
    ExportField, ExportSubmission, ItemKey, Provenance, QueueItem, ReviewAction, ReviewInput,
    ReviewOutcome,
};

use crate::decide::{FieldStatus, FlagCode};
use crate::pipeline::SubmissionReport;
use db::{Conn, Dialect, TxKind, args};
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
    #[error("database: {}", pg_error_text(.0))]
    Postgres(#[from] postgres::Error),
    #[error("database schema version {found}, this rekap needs {expected}{}", schema_hint(*.found, *.expected))]
    Schema { found: i64, expected: i64 },
    #[error("database value: {0}")]
    Decode(String),
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

/// PostgreSQL errors with the server's own message and detail (the crate's Display says only
/// "db error").
fn pg_error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({})", db.message(), d),
            None => db.message().to_string(),
        },
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

fn schema_hint(found: i64, expected: i64) -> &'static str {
    if found < expected {
        " (an empty or older database: `rekap serve --db URL` or `rekap worker --migrate` applies the migrations)"
    } else {
        " (the database was migrated by a newer rekap: upgrade this program)"
    }
}

impl StoreError {
    /// Whether retrying later may help (the database is unreachable or restarting), as opposed
    /// to a problem in the request or the data.
    pub fn is_connection(&self) -> bool {
        match self {
            StoreError::Postgres(e) => e.is_closed() || e.as_db_error().is_none(),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Columns of one `fields` row as ingested (the multi-row INSERT's stride).
const FIELD_COLUMNS: usize = 12;

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

/// Migrations (SQLite dialect), applied in order; `PRAGMA user_version` counts those applied.
/// Append only, and always together with [`PG_MIGRATIONS`] (same count, same meaning).
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    MIGRATION_2_QUEUE_SQLITE,
];

/// Migration 2: the work queue lives on the submissions themselves (one job per submission,
/// identified by its photo set): attempts made, the lease of the worker holding it, and when it
/// finished (for the jobs-per-second metric).
const MIGRATION_2_QUEUE_SQLITE: &str = r#"
ALTER TABLE submissions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE submissions ADD COLUMN lease_until_ms INTEGER;
ALTER TABLE submissions ADD COLUMN worker TEXT;
ALTER TABLE submissions ADD COLUMN done_ms INTEGER;
CREATE INDEX submissions_queue ON submissions (state, id);
"#;

/// The same migrations for PostgreSQL (`rekap_schema.version` counts those applied). Integers
/// are BIGINT (Rust i64 throughout), reals DOUBLE PRECISION; the audit table's append-only rule
/// is a PL/pgSQL trigger function.
const PG_MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('reviewer', 'supervisor', 'admin')),
    password_hash TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    bytes BIGINT NOT NULL,
    content_type TEXT NOT NULL
);
CREATE TABLE submissions (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    photo_key TEXT NOT NULL UNIQUE,
    tps TEXT,
    state TEXT NOT NULL,
    report TEXT,
    error TEXT,
    created_ms BIGINT NOT NULL,
    uploaded_by TEXT
);
CREATE TABLE submission_photos (
    submission_id BIGINT NOT NULL REFERENCES submissions(id),
    position BIGINT NOT NULL,
    sha256 TEXT NOT NULL REFERENCES blobs(sha256),
    original_name TEXT NOT NULL,
    PRIMARY KEY (submission_id, position)
);
CREATE TABLE fields (
    submission_id BIGINT NOT NULL REFERENCES submissions(id),
    field TEXT NOT NULL,
    ord BIGINT NOT NULL,
    machine_value BIGINT,
    machine_status TEXT NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    flags TEXT NOT NULL,
    severity BIGINT NOT NULL,
    value BIGINT,
    provenance TEXT NOT NULL,
    state TEXT NOT NULL,
    crop_sha256 TEXT,
    reviewed_by TEXT,
    reviewed_ms BIGINT,
    PRIMARY KEY (submission_id, field)
);
CREATE INDEX fields_queue ON fields (state, severity, submission_id, ord);
CREATE TABLE leases (
    submission_id BIGINT NOT NULL,
    field TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (submission_id, field)
);
CREATE TABLE entries (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    submission_id BIGINT NOT NULL,
    field TEXT NOT NULL,
    round BIGINT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    action TEXT NOT NULL,
    value BIGINT,
    reason TEXT,
    at_ms BIGINT NOT NULL,
    UNIQUE (submission_id, field, round, user_id)
);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    submission_id BIGINT NOT NULL,
    field TEXT,
    old_value TEXT,
    new_value TEXT,
    provenance TEXT,
    reason TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
"#,
    r#"
ALTER TABLE submissions ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE submissions ADD COLUMN lease_until_ms BIGINT;
ALTER TABLE submissions ADD COLUMN worker TEXT;
ALTER TABLE submissions ADD COLUMN done_ms BIGINT;
CREATE INDEX submissions_queue ON submissions (state, id);
"#,
];

const _: () = assert!(MIGRATIONS.len() == PG_MIGRATIONS.len());

/// The schema version this program uses (the number of migrations).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Whether opening a PostgreSQL store may change its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrate {
    /// Apply pending migrations (the server, `--migrate`).
    Apply,
    /// Refuse a database whose schema is not exactly this program's (workers: they must not
    /// race a server's migration or run against a schema they do not know).
    Check,
}

/// Which database a store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Whether `db` (a `--db` argument) names a PostgreSQL database rather than a data folder.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// The review store: SQLite in a data folder, or PostgreSQL with photos in a shared folder.
pub struct Store {
    db: Conn,
    /// Data folder (SQLite) or the shared photo folder (PostgreSQL).
    dir: PathBuf,
    /// Content-addressed files: `DATA_DIR/photos` (SQLite) or the shared photo folder; `None`
    /// for a PostgreSQL store opened without one (accounts, audit: no photos involved).
    blob_dir: Option<PathBuf>,
    /// Field ids in form order (the template's), for the review order of new submissions;
    /// fields not listed come after, alphabetically.
    field_order: Vec<String>,
}

impl Store {
    /// Open (creating if needed) the SQLite store in `dir` and apply pending migrations.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir.join(BLOB_DIR)).map_err(io_err(dir))?;
        let conn = rusqlite::Connection::open(dir.join(DB_FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // WAL for concurrent readers; synchronous=FULL so that a committed review survives a
        // power cut or a killed process before the reviewer is told it was saved.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let db = Conn::sqlite(conn);
        db.migrate(MIGRATIONS, PG_MIGRATIONS)?;
        Ok(Store {
            db,
            dir: dir.to_path_buf(),
            blob_dir: Some(dir.join(BLOB_DIR)),
            field_order: Vec::new(),
        })
    }

    /// Open the PostgreSQL store at `url` with its content-addressed photos in `photos` (a folder
    /// every server and worker reaches, e.g. a network share).
    /// `photos` may be `None` for work that touches no photo (accounts, the audit log).
    pub fn open_postgres(url: &str, photos: Option<&Path>, migrate: Migrate) -> Result<Store> {
        if let Some(p) = photos {
            std::fs::create_dir_all(p).map_err(io_err(p))?;
        }
        let db = Conn::postgres(url)?;
        match migrate {
            Migrate::Apply => db.migrate(MIGRATIONS, PG_MIGRATIONS)?,
            Migrate::Check => {
                let found = db.schema_version()?;
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
        }
        Ok(Store {
            db,
            dir: photos.map(Path::to_path_buf).unwrap_or_default(),
            blob_dir: photos.map(Path::to_path_buf),
            field_order: Vec::new(),
        })
    }

    /// Open what a `--db` argument names: a `postgres://` URL (photos in `photos`, the folder
    /// every server and worker shares) or a SQLite data folder (photos inside it).
    pub fn open_target(db: &Path, photos: Option<&Path>, migrate: Migrate) -> Result<Store> {
        match db.to_str() {
            Some(url) if is_postgres_url(url) => Store::open_postgres(url, photos, migrate),
            _ => Store::open(db),
        }
    }

    /// Review fields of newly ingested submissions in this order (the template's field ids).
    pub fn with_field_order(mut self, order: Vec<String>) -> Store {
        self.field_order = order;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn backend(&self) -> Backend {
        match self.db.dialect() {
            Dialect::Sqlite => Backend::Sqlite,
            Dialect::Postgres => Backend::Postgres,
        }
    }

    /// Check that the database answers (health endpoint).
    pub fn ping(&self) -> Result<()> {
        self.db.query_one("SELECT 1", &[]).map(|_| ())
    }

    /// Run SQL statements directly, bypassing the store's rules: for tests that tamper with
    /// the database on purpose.
    #[doc(hidden)]
    pub fn execute_for_tests(&self, sql: &str) -> Result<()> {
        self.db.batch(sql)
    }

    // ---------------------------------------------------------------- blobs

    /// Path of a content-addressed file: `photos/ab/cdef...`.
    pub fn blob_path(&self, sha256: &str) -> Option<PathBuf> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let s = sha256.to_ascii_lowercase();
        Some(self.blob_dir.as_ref()?.join(&s[..2]).join(&s[2..]))
    }

    /// Store bytes under their sha256 (written once, then never modified). Returns the sha256.
    pub fn put_blob(&self, bytes: &[u8], content_type: &str) -> Result<String> {
        let sha = crate::load::sha256_hex(bytes);
        let path = self.blob_path(&sha).ok_or_else(|| {
            StoreError::Invalid("this store was opened without a photo folder (--photos)".into())
        })?;
        if !path.exists() {
            let parent = path.parent().unwrap_or(&self.dir);
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            // Write to a temporary name and rename, so a crash never leaves a partial file
            // under a content address (and writers on other machines never see one).
            let tmp = path.with_extension(format!("tmp{}-{}", std::process::id(), random_hex(4)?));
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
                f.write_all(bytes).map_err(io_err(&tmp))?;
                f.sync_all().map_err(io_err(&tmp))?;
            }
            std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        }
        self.db.execute(
            "INSERT INTO blobs (sha256, bytes, content_type) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            args![&sha, bytes.len() as i64, content_type],
        )?;
        Ok(sha)
    }

    /// A stored file's bytes and content type; `None` when unknown.
    pub fn get_blob(&self, sha256: &str) -> Result<Option<(Vec<u8>, String)>> {
        let Some(path) = self.blob_path(sha256) else {
            return Ok(None);
        };
        let Some(row) = self.db.query_opt(
            "SELECT content_type FROM blobs WHERE sha256 = ?1",
            args![sha256.to_ascii_lowercase()],
        )?
        else {
            return Ok(None);
        };
        let ct: String = row.get(0)?;
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
        let row = self.db.query_opt(
            "INSERT INTO users (name, role, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT DO NOTHING RETURNING id",
            args![name, role.as_str(), hash, now_ms()],
        )?;
        match row {
            Some(r) => r.get(0),
            None => Err(StoreError::Conflict(format!("user {name} exists"))),
        }
    }

    pub fn users(&self) -> Result<Vec<User>> {
        self.db
            .query("SELECT id, name, role FROM users ORDER BY name", &[])?
            .iter()
            .map(|r| {
                Ok(User {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    role: Role::parse(&r.get::<String>(2)?).unwrap_or(Role::Reviewer),
                })
            })
            .collect()
    }

    /// An account and its password hash (to verify outside any lock with [`verify_login`]).
    pub fn login_record(&self, name: &str) -> Result<Option<(User, String)>> {
        let Some(r) = self.db.query_opt(
            "SELECT id, role, password_hash FROM users WHERE name = ?1",
            args![name],
        )?
        else {
            return Ok(None);
        };
        Ok(Some((
            User {
                id: r.get(0)?,
                name: name.to_string(),
                role: Role::parse(&r.get::<String>(1)?).unwrap_or(Role::Reviewer),
            },
            r.get(2)?,
        )))
    }

    /// Check a name and password. Unknown names cost the same hashing time as known ones.
    pub fn check_password(&self, name: &str, password: &str) -> Result<Option<User>> {
        Ok(verify_login(self.login_record(name)?, password))
    }

    /// Open a session; returns (cookie token, CSRF token). Only the token's sha256 is stored.
    pub fn create_session(&self, user_id: i64) -> Result<(String, String)> {
        let token = random_hex(32)?;
        let csrf = random_hex(32)?;
        let now = now_ms();
        self.db
            .execute("DELETE FROM sessions WHERE expires_ms < ?1", args![now])?;
        self.db.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            args![crate::load::sha256_hex(token.as_bytes()), user_id, &csrf, now, now + SESSION_TTL_MS],
        )?;
        Ok((token, csrf))
    }

    /// The live session of a cookie token.
    pub fn session(&self, token: &str) -> Result<Option<Session>> {
        let Some(r) = self.db.query_opt(
            "SELECT u.id, u.name, u.role, s.csrf, s.expires_ms FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = ?1 AND s.expires_ms > ?2",
            args![crate::load::sha256_hex(token.as_bytes()), now_ms()],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(Session {
            user: User {
                id: r.get(0)?,
                name: r.get(1)?,
                role: Role::parse(&r.get::<String>(2)?).unwrap_or(Role::Reviewer),
            },
            csrf: r.get(3)?,
            expires_ms: r.get(4)?,
        }))
    }

    pub fn delete_session(&self, token: &str) -> Result<()> {
        self.db.execute(
            "DELETE FROM sessions WHERE token_hash = ?1",
            args![crate::load::sha256_hex(token.as_bytes())],
        )?;
        Ok(())
    }

    // ---------------------------------------------------------------- submissions

    /// Register a submission made of already stored photos `(sha256, original name)`; it is
    /// queued for processing. Returns `(id, created)`; `created` is false when the same photo
    /// set exists already (the queue is idempotent by photo sha256).
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
        let tx = self.db.begin(TxKind::Write)?;
        if let Some(r) = tx.query_opt(
            "SELECT id FROM submissions WHERE photo_key = ?1",
            args![&key],
        )? {
            return Ok((r.get(0)?, false));
        }
        let id: i64 = tx
            .query_one(
                "INSERT INTO submissions (name, photo_key, tps, state, created_ms, uploaded_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                args![
                    name,
                    &key,
                    tps.map(|t| t.to_string()),
                    SubmissionState::Queued.as_str(),
                    now_ms(),
                    uploaded_by
                ],
            )?
            .get(0)?;
        for (i, (sha, orig)) in photos.iter().enumerate() {
            tx.execute(
                "INSERT INTO submission_photos (submission_id, position, sha256, original_name) VALUES (?1, ?2, ?3, ?4)",
                args![id, i as i64, sha, orig],
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
        let rows = self.db.query(
            "SELECT sha256 FROM submission_photos WHERE submission_id = ?1 ORDER BY position",
            args![id],
        )?;
        let mut out = Vec::new();
        for r in rows {
            let sha: String = r.get(0)?;
            out.extend(self.blob_path(&sha));
        }
        Ok(out)
    }

    /// Submissions waiting to be processed (also those interrupted by a restart).
    pub fn pending_submissions(&self) -> Result<Vec<i64>> {
        self.db
            .query(
                "SELECT id FROM submissions WHERE state IN ('queued', 'processing') ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    pub fn set_state(&self, id: i64, state: SubmissionState, error: Option<&str>) -> Result<()> {
        self.db.execute(
            "UPDATE submissions SET state = ?2, error = ?3 WHERE id = ?1",
            args![id, state.as_str(), error],
        )?;
        Ok(())
    }

    /// Ingest the pipeline's report for submission `id`: the report JSON, one row per field with
    /// its machine reading, flags and severity, the field crops (content-addressed), and one
    /// `ingest` audit entry whose value is the sha256 of the stored report. A submission that
    /// already has a report is left unchanged (returns false).
    pub fn ingest_report(&mut self, id: i64, report: &SubmissionReport) -> Result<bool> {
        Ok(self.ingest(id, report, None)? == IngestOutcome::Ingested)
    }

    /// [`Store::ingest_report`], optionally only while `worker` holds the submission's job.
    fn ingest(
        &mut self,
        id: i64,
        report: &SubmissionReport,
        worker: Option<&str>,
    ) -> Result<IngestOutcome> {
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
        let dialect = self.db.dialect();
        let tx = self.db.begin(TxKind::Write)?;
        let Some(row) = tx.query_opt(
            &format!(
                "SELECT report IS NOT NULL, state, worker FROM submissions WHERE id = ?1{}",
                dialect.for_update()
            ),
            args![id],
        )?
        else {
            return Err(StoreError::NotFound(format!("submission {id}")));
        };
        if row.get::<i64>(0)? != 0 {
            return Ok(IngestOutcome::AlreadyDone);
        }
        if let Some(w) = worker {
            let state: String = row.get(1)?;
            let holder: Option<String> = row.get(2)?;
            if state != SubmissionState::Processing.as_str() || holder.as_deref() != Some(w) {
                return Ok(IngestOutcome::LeaseLost);
            }
        }
        tx.execute(
            &format!(
                "UPDATE submissions SET report = ?2, state = 'done', error = NULL, lease_until_ms = NULL, \
                 done_ms = {} WHERE id = ?1",
                dialect.now_ms()
            ),
            args![id, &json],
        )?;
        // One multi-row INSERT for all fields: one round trip while the writers' lock is held.
        let mut values: Vec<db::Val> = Vec::with_capacity(report.fields.len() * FIELD_COLUMNS);
        let mut rows_sql: Vec<String> = Vec::with_capacity(report.fields.len());
        for (i, (fid, f)) in report.fields.iter().enumerate() {
            let ord = self
                .field_order
                .iter()
                .position(|x| x == fid)
                .unwrap_or(self.field_order.len() + i);
            let (provenance, state) = initial_state(f.status, &f.flags);
            let crop = crops.iter().find(|c| &c.0 == fid).map(|c| c.1.clone());
            let first = values.len() + 1;
            rows_sql.push(format!(
                "({})",
                (first..first + FIELD_COLUMNS)
                    .map(|k| format!("?{k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            values.extend_from_slice(args![
                id,
                fid,
                ord as i64,
                f.value,
                status_str(f.status),
                f.confidence,
                serde_json::to_string(&f.flags)?,
                severity(&f.flags),
                f.value,
                provenance.as_str(),
                state,
                crop
            ]);
        }
        if !rows_sql.is_empty() {
            tx.execute(
                &format!(
                    "INSERT INTO fields (submission_id, field, ord, machine_value, machine_status, confidence, flags, severity, value, provenance, state, crop_sha256) VALUES {}",
                    rows_sql.join(", ")
                ),
                &values,
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
        Ok(IngestOutcome::Ingested)
    }

    /// The stored report of a submission.
    pub fn report(&self, id: i64) -> Result<Option<SubmissionReport>> {
        let text: Option<String> = match self
            .db
            .query_opt("SELECT report FROM submissions WHERE id = ?1", args![id])?
        {
            Some(r) => r.get(0)?,
            None => None,
        };
        match text {
            Some(text) => Ok(Some(serde_json::from_str(&text)?)),
            None => Ok(None),
        }
    }

    pub fn submission(&self, id: i64) -> Result<Option<SubmissionRow>> {
        Ok(self
            .submissions_where("WHERE s.id = ?1", args![id])?
            .into_iter()
            .next())
    }

    pub fn submissions(&self) -> Result<Vec<SubmissionRow>> {
        self.submissions_where("", &[])
    }

    fn submissions_where(&self, cond: &str, p: &[db::Val]) -> Result<Vec<SubmissionRow>> {
        let sql = format!(
            "SELECT s.id, s.name, s.state, s.tps, s.error, s.created_ms, s.uploaded_by, \
             (SELECT COUNT(*) FROM fields f WHERE f.submission_id = s.id AND f.state IN ('open', 'disputed')), \
             (SELECT COUNT(*) FROM fields f WHERE f.submission_id = s.id) \
             FROM submissions s {cond} ORDER BY s.id"
        );
        let mut out = Vec::new();
        for r in self.db.query(&sql, p)? {
            out.push(SubmissionRow {
                id: r.get(0)?,
                name: r.get(1)?,
                state: SubmissionState::parse(&r.get::<String>(2)?),
                tps: r
                    .get::<Option<String>>(3)?
                    .and_then(|t| serde_json::from_str(&t).ok()),
                error: r.get(4)?,
                created_ms: r.get(5)?,
                uploaded_by: r.get(6)?,
                photos: Vec::new(),
                open_fields: r.get(7)?,
                total_fields: r.get(8)?,
            });
        }
        for s in &mut out {
            s.photos = self
                .db
                .query(
                    "SELECT p.sha256, p.original_name, b.content_type FROM submission_photos p JOIN blobs b ON b.sha256 = p.sha256 \
                     WHERE p.submission_id = ?1 ORDER BY p.position",
                    args![s.id],
                )?
                .iter()
                .map(|r| {
                    Ok(SubmissionPhoto {
                        sha256: r.get(0)?,
                        original_name: r.get(1)?,
                        content_type: r.get(2)?,
                    })
                })
                .collect::<Result<_>>()?;
        }
        Ok(out)
    }

    /// Whether a blob belongs to some submission (photos) or field (crops).
    pub fn blob_is_referenced(&self, sha256: &str) -> Result<bool> {
        let n: i64 = self
            .db
            .query_one(
                "SELECT (SELECT COUNT(*) FROM submission_photos WHERE sha256 = ?1) + \
                        (SELECT COUNT(*) FROM fields WHERE crop_sha256 = ?1)",
                args![sha256.to_ascii_lowercase()],
            )?
            .get(0)?;
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

/// Content type from magic bytes: the image types rekap decodes and serves (JPEG, PNG, WebP),
/// `application/octet-stream` for anything else.
pub fn sniff_image_type(bytes: &[u8]) -> &'static str {
    crate::load::sniff(bytes)
        .and_then(crate::load::FileKind::content_type)
        .unwrap_or("application/octet-stream")
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
