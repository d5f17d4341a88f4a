//! The audit log: append-only, hash-chained.
//!
//! Entry `n` stores `hash_n = sha256(JSON [seq, at_ms, actor, action, submission_id, field,
//! old_value, new_value, provenance, reason, prev_hash])` with `prev_hash = hash_{n-1}` (64 zeros
//! for the first entry), so editing or deleting any entry breaks every hash after it. Deleting
//! the newest entries leaves a valid chain, so [`verify`] also replays the log: each submission's
//! `ingest` entry must carry the sha256 of its stored report, and replaying the review entries
//! over the report's machine readings must give exactly the value and provenance stored for every
//! field. A value changed without an entry, or an entry removed, is therefore found.

use super::db::{Conn, Row, args};
use super::{Result, StoreError};
use serde::Serialize;
use std::collections::HashMap;

/// `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry to append (the store fills seq, time and hashes).
pub struct NewEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub submission_id: i64,
    pub field: Option<&'a str>,
    pub old_value: Option<&'a str>,
    pub new_value: Option<&'a str>,
    pub provenance: Option<&'a str>,
    pub reason: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub submission_id: i64,
    pub field: Option<String>,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub provenance: Option<String>,
    pub reason: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// The hash this entry must carry.
    pub fn compute_hash(&self) -> String {
        let body = serde_json::json!([
            self.seq,
            self.at_ms,
            self.actor,
            self.action,
            self.submission_id,
            self.field,
            self.old_value,
            self.new_value,
            self.provenance,
            self.reason,
            self.prev_hash
        ]);
        crate::load::sha256_hex(body.to_string().as_bytes())
    }
}

/// Append one entry inside the caller's transaction (so the change and its entry commit together).
pub fn append(conn: &Conn, e: &NewEntry<'_>) -> Result<AuditEntry> {
    let last = conn.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])?;
    let (seq, prev_hash) = match last {
        Some(r) => (r.get::<i64>(0)? + 1, r.get::<String>(1)?),
        None => (1, GENESIS.to_string()),
    };
    let mut entry = AuditEntry {
        seq,
        at_ms: super::now_ms(),
        actor: e.actor.to_string(),
        action: e.action.to_string(),
        submission_id: e.submission_id,
        field: e.field.map(str::to_string),
        old_value: e.old_value.map(str::to_string),
        new_value: e.new_value.map(str::to_string),
        provenance: e.provenance.map(str::to_string),
        reason: e.reason.map(str::to_string),
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    conn.execute(
        "INSERT INTO audit (seq, at_ms, actor, action, submission_id, field, old_value, new_value, provenance, reason, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        args![
            entry.seq,
            entry.at_ms,
            &entry.actor,
            &entry.action,
            entry.submission_id,
            entry.field.clone(),
            entry.old_value.clone(),
            entry.new_value.clone(),
            entry.provenance.clone(),
            entry.reason.clone(),
            &entry.prev_hash,
            &entry.hash
        ],
    )?;
    Ok(entry)
}

fn entry_row(r: &Row) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        at_ms: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        submission_id: r.get(4)?,
        field: r.get(5)?,
        old_value: r.get(6)?,
        new_value: r.get(7)?,
        provenance: r.get(8)?,
        reason: r.get(9)?,
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

/// All entries in order (optionally of one submission).
pub fn entries(conn: &Conn, submission: Option<i64>) -> Result<Vec<AuditEntry>> {
    const COLUMNS: &str = "SELECT seq, at_ms, actor, action, submission_id, field, old_value, new_value, provenance, reason, prev_hash, hash FROM audit";
    let rows = match submission {
        Some(id) => conn.query(
            &format!("{COLUMNS} WHERE submission_id = ?1 ORDER BY seq"),
            args![id],
        )?,
        None => conn.query(&format!("{COLUMNS} ORDER BY seq"), &[])?,
    };
    rows.iter().map(entry_row).collect()
}

/// What `verify` found wrong, first problem only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditProblem {
    /// The first bad entry's seq, when the problem is in an entry.
    pub seq: Option<i64>,
    pub message: String,
}

/// Text form of a value in the log.
pub fn value_text(v: Option<i64>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

/// Check the chain and replay it against the stored state. `Ok(n)` = entries checked.
pub fn verify(conn: &Conn) -> Result<std::result::Result<usize, AuditProblem>> {
    let all = entries(conn, None)?;
    let mut prev = GENESIS.to_string();
    for (i, e) in all.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if e.seq != expected_seq {
            return Ok(Err(AuditProblem {
                seq: Some(expected_seq),
                message: format!(
                    "entry {expected_seq} is missing (found entry {} in its place)",
                    e.seq
                ),
            }));
        }
        if e.prev_hash != prev {
            return Ok(Err(AuditProblem {
                seq: Some(e.seq),
                message: format!(
                    "entry {} does not follow entry {}: the log was edited or an entry deleted",
                    e.seq,
                    e.seq - 1
                ),
            }));
        }
        if e.compute_hash() != e.hash {
            return Ok(Err(AuditProblem {
                seq: Some(e.seq),
                message: format!(
                    "entry {} was edited: its content does not match its hash",
                    e.seq
                ),
            }));
        }
        prev = e.hash.clone();
    }
    // Replay: expected (value, provenance) per field.
    let mut ingests: HashMap<i64, &AuditEntry> = HashMap::new();
    let mut last: HashMap<(i64, String), &AuditEntry> = HashMap::new();
    for e in &all {
        match (e.action.as_str(), &e.field) {
            ("ingest", None) if ingests.contains_key(&e.submission_id) => {
                return Ok(Err(AuditProblem {
                    seq: Some(e.seq),
                    message: format!(
                        "entry {}: submission {} ingested twice",
                        e.seq, e.submission_id
                    ),
                }));
            }
            ("ingest", None) => {
                ingests.insert(e.submission_id, e);
            }
            ("review", Some(f)) => {
                last.insert((e.submission_id, f.clone()), e);
            }
            _ => {}
        }
    }
    let reports: Vec<(i64, String)> = conn
        .query(
            "SELECT id, report FROM submissions WHERE report IS NOT NULL ORDER BY id",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect::<Result<_>>()?;
    for (id, report) in &reports {
        let h = crate::load::sha256_hex(report.as_bytes());
        match ingests.get(id) {
            None => {
                return Ok(Err(AuditProblem {
                    seq: None,
                    message: format!("submission {id} has results but no ingest entry in the log"),
                }));
            }
            Some(e) if e.new_value.as_deref() != Some(h.as_str()) => {
                return Ok(Err(AuditProblem {
                    seq: Some(e.seq),
                    message: format!(
                        "submission {id}: the stored machine results differ from those logged in entry {}",
                        e.seq
                    ),
                }));
            }
            Some(_) => {}
        }
    }
    /// (submission, field, machine value, machine status, value, provenance)
    type FieldRow = (i64, String, Option<i64>, String, Option<i64>, String);
    let rows: Vec<FieldRow> = conn
        .query(
            "SELECT submission_id, field, machine_value, machine_status, value, provenance FROM fields ORDER BY submission_id, ord",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .collect::<Result<_>>()?;
    // Machine values must match the logged report.
    let mut parsed: HashMap<i64, serde_json::Value> = HashMap::new();
    for (id, report) in &reports {
        parsed.insert(*id, serde_json::from_str(report).map_err(StoreError::Json)?);
    }
    for (sid, field, machine, mstatus, value, prov) in &rows {
        let from_report = parsed
            .get(sid)
            .and_then(|r| r.get("fields"))
            .and_then(|f| f.get(field));
        let rep_value = from_report
            .and_then(|f| f.get("value"))
            .and_then(|v| v.as_i64());
        let rep_status: Option<crate::decide::FieldStatus> = from_report
            .and_then(|f| f.get("status"))
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let rep_flags: Vec<String> = from_report
            .and_then(|f| f.get("flags"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let Some(rep_status) = rep_status else {
            return Ok(Err(AuditProblem {
                seq: None,
                message: format!("submission {sid} field {field}: not in the logged report"),
            }));
        };
        if rep_value != *machine || super::status_str(rep_status) != mstatus {
            return Ok(Err(AuditProblem {
                seq: None,
                message: format!(
                    "submission {sid} field {field}: machine reading differs from the logged report"
                ),
            }));
        }
        let initial = super::initial_state(rep_status, &rep_flags).0;
        let (exp_value, exp_prov) = match last.get(&(*sid, field.clone())) {
            Some(e) => (
                e.new_value.clone().unwrap_or_else(|| "null".into()),
                e.provenance.clone().unwrap_or_default(),
            ),
            None => (value_text(*machine), initial.as_str().to_string()),
        };
        if value_text(*value) != exp_value || *prov != exp_prov {
            let seq = last.get(&(*sid, field.clone())).map(|e| e.seq);
            return Ok(Err(AuditProblem {
                seq,
                message: format!(
                    "submission {sid} field {field}: stored value {} ({prov}) but the log says {exp_value} ({exp_prov}){}",
                    value_text(*value),
                    seq.map_or_else(
                        || " (no review logged)".to_string(),
                        |s| format!(
                            " as of entry {s}; changed without a trace or an entry was removed"
                        )
                    )
                ),
            }));
        }
    }
    Ok(Ok(all.len()))
}
