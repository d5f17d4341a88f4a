//! The durable work queue: one job per submission (so jobs are idempotent by photo sha256: the
//! same photos make the same submission), claimed by workers under a lease.
//!
//! States: `queued` -> `processing` (claimed: `attempts` + 1, `worker`, `lease_until_ms`) ->
//! `done` (report ingested) | back to `queued` (an attempt failed and attempts remain, or the
//! worker released it) | `failed` (parked after `max_attempts`, with the reason in `error`).
//!
//! Invariants:
//! * a claim takes one job no other worker holds: PostgreSQL `FOR UPDATE SKIP LOCKED` (claims do
//!   not wait for each other), SQLite an exclusive write transaction;
//! * a job whose lease expired (its worker died or hung) is claimable again; once it has used
//!   `max_attempts` it is parked `failed` instead, so a job that kills its worker cannot block
//!   the queue or kill workers forever;
//! * completion ingests the report and marks the job done in one transaction, only while the
//!   worker still holds the job and only if no report exists: a job done twice changes nothing;
//! * lease times come from the database server's clock.

use super::db::{TxKind, args};
use super::{Result, Store};
use crate::pipeline::SubmissionReport;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub submission_id: i64,
    pub name: String,
    /// 1 for the first attempt.
    pub attempt: i64,
    /// The submission's photos in the shared store.
    pub files: Vec<PathBuf>,
}

/// What completing a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// The report is stored; the job is done.
    Ingested,
    /// A report was stored before (by another worker, or an earlier attempt): nothing changed.
    AlreadyDone,
    /// The worker no longer holds the job (its lease expired and another worker took it):
    /// nothing changed.
    LeaseLost,
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFate {
    /// Queued again for another attempt.
    Retry,
    /// Parked as `failed` after its last attempt.
    Parked,
    /// The worker no longer held the job (nothing changed).
    NotHeld,
}

/// Queue and review counts for the metrics endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueStats {
    /// Submissions by state (`queued`, `processing`, `done`, `failed`).
    pub by_state: BTreeMap<String, i64>,
    /// Jobs held by a worker whose lease has expired (dead or hung workers).
    pub expired_leases: i64,
    /// Processing attempts made so far (retries included).
    pub attempts: i64,
    /// Jobs completed in the last minute (jobs per second = this / 60).
    pub done_last_minute: i64,
    /// Fields waiting for a reviewer (open or disputed).
    pub review_backlog: i64,
}

/// A job's queue state (diagnostics and tests).
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub submission_id: i64,
    pub name: String,
    pub state: String,
    pub attempts: i64,
    /// The worker holding it, or the last one that did.
    pub worker: Option<String>,
    pub error: Option<String>,
    pub has_report: bool,
    /// When it was done (database clock, ms since the Unix epoch).
    pub done_ms: Option<i64>,
}

/// Time window of [`QueueStats::done_last_minute`], ms.
const RATE_WINDOW_MS: i64 = 60_000;

impl Store {
    /// Claim the oldest claimable job for `worker` for `lease_ms`. Jobs whose lease expired after
    /// their last allowed attempt are parked `failed` first.
    pub fn claim_job(
        &mut self,
        worker: &str,
        lease_ms: i64,
        max_attempts: i64,
    ) -> Result<Option<Job>> {
        let d = self.db.dialect();
        let now = d.now_ms();
        let tx = self.db.begin(TxKind::Rows)?;
        let parked = tx.execute(
            &format!(
                "UPDATE submissions SET state = 'failed', lease_until_ms = NULL, \
                 error = 'gave up after ' || attempts || ' attempts: the lease of worker ' || COALESCE(worker, '?') || \
                 ' expired (it stopped or hung while processing)' \
                 WHERE id IN (SELECT id FROM submissions WHERE state = 'processing' AND lease_until_ms < {now} \
                 AND attempts >= ?1{})",
                d.for_update_skip_locked()
            ),
            args![max_attempts],
        )?;
        if parked > 0 {
            tracing::warn!(
                "queue: parked {parked} job(s) whose workers died on their last attempt"
            );
        }
        let row = tx.query_opt(
            &format!(
                "UPDATE submissions SET state = 'processing', attempts = attempts + 1, worker = ?1, \
                 lease_until_ms = {now} + ?2, \
                 error = CASE WHEN state = 'processing' THEN 'attempt ' || attempts || \
                 ': the lease of worker ' || COALESCE(worker, '?') || ' expired' ELSE error END \
                 WHERE id = (SELECT id FROM submissions WHERE (state = 'queued' OR (state = 'processing' \
                 AND lease_until_ms < {now})) AND attempts < ?3 ORDER BY id LIMIT 1{}) \
                 RETURNING id, name, attempts",
                d.for_update_skip_locked()
            ),
            args![worker, lease_ms, max_attempts],
        )?;
        tx.commit()?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.get(0)?;
        Ok(Some(Job {
            submission_id: id,
            name: row.get(1)?,
            attempt: row.get(2)?,
            files: self.submission_files(id)?,
        }))
    }

    /// Extend the lease on a job `worker` holds; false when it no longer holds it.
    pub fn renew_job(&self, id: i64, worker: &str, lease_ms: i64) -> Result<bool> {
        let now = self.db.dialect().now_ms();
        let n = self.db.execute(
            &format!(
                "UPDATE submissions SET lease_until_ms = {now} + ?3 \
                 WHERE id = ?1 AND worker = ?2 AND state = 'processing'"
            ),
            args![id, worker, lease_ms],
        )?;
        Ok(n == 1)
    }

    /// Store the report of a job `worker` holds and mark it done (see the module invariants).
    pub fn complete_job(
        &mut self,
        id: i64,
        worker: &str,
        report: &SubmissionReport,
    ) -> Result<IngestOutcome> {
        self.ingest(id, report, Some(worker))
    }

    /// Record a failed attempt: queued again, or parked `failed` when it was the last allowed.
    pub fn fail_job(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        max_attempts: i64,
    ) -> Result<JobFate> {
        let row = self.db.query_opt(
            "UPDATE submissions SET \
             state = CASE WHEN attempts >= ?4 THEN 'failed' ELSE 'queued' END, \
             error = CASE WHEN attempts >= ?4 THEN 'gave up after ' || attempts || ' attempts; last error: ' || ?3 \
             ELSE 'attempt ' || attempts || ': ' || ?3 END, \
             lease_until_ms = NULL \
             WHERE id = ?1 AND worker = ?2 AND state = 'processing' RETURNING state",
            args![id, worker, error, max_attempts],
        )?;
        Ok(match row {
            None => JobFate::NotHeld,
            Some(r) if r.get::<String>(0)? == "failed" => JobFate::Parked,
            Some(_) => JobFate::Retry,
        })
    }

    /// Give a job back untouched (shutdown before processing it): queued again, the attempt not
    /// counted.
    pub fn release_job(&self, id: i64, worker: &str) -> Result<bool> {
        let n = self.db.execute(
            "UPDATE submissions SET state = 'queued', attempts = attempts - 1, lease_until_ms = NULL \
             WHERE id = ?1 AND worker = ?2 AND state = 'processing'",
            args![id, worker],
        )?;
        Ok(n == 1)
    }

    /// Whether any job is waiting or being processed (a drained queue has none).
    pub fn queue_busy(&self) -> Result<bool> {
        let n: i64 = self
            .db
            .query_one(
                "SELECT COUNT(*) FROM submissions WHERE state IN ('queued', 'processing')",
                &[],
            )?
            .get(0)?;
        Ok(n > 0)
    }

    /// Every job with its queue state, in id order.
    pub fn jobs(&self) -> Result<Vec<JobRow>> {
        self.db
            .query(
                "SELECT id, name, state, attempts, worker, error, report IS NOT NULL, done_ms FROM submissions ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(JobRow {
                    submission_id: r.get(0)?,
                    name: r.get(1)?,
                    state: r.get(2)?,
                    attempts: r.get(3)?,
                    worker: r.get(4)?,
                    error: r.get(5)?,
                    has_report: r.get::<i64>(6)? != 0,
                    done_ms: r.get(7)?,
                })
            })
            .collect()
    }

    /// Counts for the metrics endpoint.
    pub fn queue_stats(&self) -> Result<QueueStats> {
        let now = self.db.dialect().now_ms();
        let mut s = QueueStats::default();
        for state in ["queued", "processing", "done", "failed"] {
            s.by_state.insert(state.to_string(), 0);
        }
        for r in self.db.query(
            "SELECT state, COUNT(*) FROM submissions GROUP BY state",
            &[],
        )? {
            s.by_state.insert(r.get(0)?, r.get(1)?);
        }
        let r = self.db.query_one(
            &format!(
                "SELECT \
                 (SELECT COUNT(*) FROM submissions WHERE state = 'processing' AND lease_until_ms < {now}), \
                 (SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM submissions), \
                 (SELECT COUNT(*) FROM submissions WHERE done_ms > {now} - ?1), \
                 (SELECT COUNT(*) FROM fields WHERE state IN ('open', 'disputed'))"
            ),
            args![RATE_WINDOW_MS],
        )?;
        s.expired_leases = r.get(0)?;
        s.attempts = r.get(1)?;
        s.done_last_minute = r.get(2)?;
        s.review_backlog = r.get(3)?;
        Ok(s)
    }
}
