//! Review queue, leases, reviews (single or double entry) and export.

use super::audit::{self, NewEntry, value_text};
use super::db::{Row, TxKind, args};
use super::{Result, Role, Store, StoreError, User, now_ms};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How long an item stays reserved for the reviewer who opened it. Long enough to look at the
/// photo carefully; short enough that an abandoned item comes back to the queue soon.
pub const LEASE_MS: i64 = 10 * 60 * 1000;
/// Largest value a field can hold (4 digit boxes at most on this form).
pub const MAX_FIELD_VALUE: i64 = 9999;

/// Where a field's final value comes from (the export's provenance column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Read by the machine and accepted on its own evidence.
    MachineAccepted,
    /// Flagged; a reviewer looked at the photo and confirmed the machine's reading.
    ReviewerConfirmed,
    /// Flagged; a reviewer typed a different value from the photo.
    ReviewerCorrected,
    /// The paper itself is inconsistent (officer error); the value is what is written.
    OfficerInconsistency,
    /// Flagged and not reviewed yet.
    Unreviewed,
    /// No reading (page not photographed).
    Missing,
}

impl Provenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::MachineAccepted => "machine_accepted",
            Provenance::ReviewerConfirmed => "reviewer_confirmed",
            Provenance::ReviewerCorrected => "reviewer_corrected",
            Provenance::OfficerInconsistency => "officer_inconsistency",
            Provenance::Unreviewed => "unreviewed",
            Provenance::Missing => "missing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    /// The reviewer typed the value seen on the photo (`value`, null = every box blank).
    Correct,
    /// The machine's reading is what the photo shows.
    Confirm,
    /// What is written is inconsistent on paper (officer error); `value` is what is written
    /// (the machine's reading when absent).
    OfficerInconsistency,
}

impl ReviewAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewAction::Correct => "correct",
            ReviewAction::Confirm => "confirm",
            ReviewAction::OfficerInconsistency => "officer_inconsistency",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewInput {
    pub action: ReviewAction,
    #[serde(default)]
    pub value: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub submission_id: i64,
    pub field: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueItem {
    pub submission_id: i64,
    pub submission: String,
    pub field: String,
    pub severity: i64,
    pub flags: Vec<String>,
    pub machine_value: Option<i64>,
    pub confidence: f64,
    /// `open` or `disputed` (double entry disagreed; supervisors only).
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReviewOutcome {
    /// The field has its final value.
    Resolved {
        value: Option<i64>,
        provenance: Provenance,
    },
    /// Double entry: recorded blind, waiting for a second reviewer.
    Recorded,
    /// Double entry: the two entries disagree; a supervisor decides.
    Disputed,
}

/// A field's current state.
#[derive(Debug, Clone, Serialize)]
pub struct FieldState {
    pub submission_id: i64,
    pub field: String,
    pub machine_value: Option<i64>,
    pub machine_status: String,
    pub confidence: f64,
    pub flags: Vec<String>,
    pub severity: i64,
    pub value: Option<i64>,
    pub provenance: String,
    pub state: String,
    pub crop_sha256: Option<String>,
    pub reviewed_by: Option<String>,
    pub reviewed_ms: Option<i64>,
    /// Who holds the lease now (unexpired), if anyone.
    pub leased_by: Option<String>,
    pub lease_expires_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportField {
    pub value: Option<i64>,
    pub provenance: String,
    pub machine_value: Option<i64>,
    pub machine_confidence: f64,
    pub flags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewed_ms: Option<i64>,
    /// sha256 of the photo the number was read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photo_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportSubmission {
    pub id: i64,
    pub submission: String,
    pub tps: Option<serde_json::Value>,
    pub state: String,
    /// Fields still waiting for review (0 = final).
    pub open_fields: i64,
    /// sha256 of the submission's photos, in upload order.
    pub photos: Vec<String>,
    pub fields: BTreeMap<String, ExportField>,
}

/// Filter of the items a user may take: open items (in double entry, not yet entered by this
/// user), disputed items for supervisors who did not enter them; never an item another user holds.
const AVAILABLE: &str = "( (f.state = 'open' AND (?2 = 0 OR NOT EXISTS (SELECT 1 FROM entries e WHERE e.submission_id = f.submission_id AND e.field = f.field AND e.user_id = ?1))) \
      OR (f.state = 'disputed' AND ?3 = 1 AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.submission_id = f.submission_id AND e.field = f.field AND e.user_id = ?1)) ) \
    AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.submission_id = f.submission_id AND l.field = f.field AND l.user_id <> ?1 AND l.expires_ms > ?4)";

fn queue_item(r: &Row) -> Result<QueueItem> {
    Ok(QueueItem {
        submission_id: r.get(0)?,
        submission: r.get(1)?,
        field: r.get(2)?,
        severity: r.get(3)?,
        flags: serde_json::from_str(&r.get::<String>(4)?).unwrap_or_default(),
        machine_value: r.get(5)?,
        confidence: r.get(6)?,
        state: r.get(7)?,
    })
}

impl Store {
    /// Items `user` may review now, most urgent first.
    pub fn queue(&self, user: &User, double_entry: bool, limit: usize) -> Result<Vec<QueueItem>> {
        let sql = format!(
            "SELECT f.submission_id, s.name, f.field, f.severity, f.flags, f.machine_value, f.confidence, f.state \
             FROM fields f JOIN submissions s ON s.id = f.submission_id WHERE {AVAILABLE} \
             ORDER BY f.state = 'disputed' DESC, f.severity, f.submission_id, f.ord LIMIT ?5"
        );
        self.db
            .query(
                &sql,
                args![
                    user.id,
                    double_entry as i64,
                    (user.role >= Role::Supervisor) as i64,
                    now_ms(),
                    limit as i64
                ],
            )?
            .iter()
            .map(queue_item)
            .collect()
    }

    /// Lease the most urgent available item (not in `skip`) to `user`, releasing the user's
    /// other leases. Atomic: two reviewers asking at once get different items.
    pub fn claim_next(
        &mut self,
        user: &User,
        double_entry: bool,
        skip: &[ItemKey],
    ) -> Result<Option<ItemKey>> {
        let tx = self.db.begin(TxKind::Write)?;
        let now = now_ms();
        // Enough candidates to get past the skipped ones.
        let sql = format!(
            "SELECT f.submission_id, f.field FROM fields f WHERE {AVAILABLE} \
             ORDER BY f.state = 'disputed' DESC, f.severity, f.submission_id, f.ord LIMIT ?5"
        );
        let rows = tx.query(
            &sql,
            args![
                user.id,
                double_entry as i64,
                (user.role >= Role::Supervisor) as i64,
                now,
                skip.len() as i64 + 1
            ],
        )?;
        let mut found = None;
        for r in rows {
            let key = ItemKey {
                submission_id: r.get(0)?,
                field: r.get(1)?,
            };
            if !skip.contains(&key) {
                found = Some(key);
                break;
            }
        }
        tx.execute("DELETE FROM leases WHERE user_id = ?1", args![user.id])?;
        if let Some(k) = &found {
            tx.execute(
                UPSERT_LEASE,
                args![k.submission_id, &k.field, user.id, now + LEASE_MS],
            )?;
        }
        tx.commit()?;
        Ok(found)
    }

    /// Lease one given item to `user` (refused when someone else holds it or it is not open
    /// to this user).
    pub fn claim(&mut self, user: &User, key: &ItemKey, double_entry: bool) -> Result<i64> {
        let tx = self.db.begin(TxKind::Write)?;
        let now = now_ms();
        let sql = format!(
            "SELECT COUNT(*) FROM fields f WHERE f.submission_id = ?5 AND f.field = ?6 AND {AVAILABLE}"
        );
        let n: i64 = tx
            .query_one(
                &sql,
                args![
                    user.id,
                    double_entry as i64,
                    (user.role >= Role::Supervisor) as i64,
                    now,
                    key.submission_id,
                    &key.field
                ],
            )?
            .get(0)?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "{} of submission {} is not available to you (reviewed, or held by another reviewer)",
                key.field, key.submission_id
            )));
        }
        tx.execute("DELETE FROM leases WHERE user_id = ?1", args![user.id])?;
        let expires = now + LEASE_MS;
        tx.execute(
            UPSERT_LEASE,
            args![key.submission_id, &key.field, user.id, expires],
        )?;
        tx.commit()?;
        Ok(expires)
    }

    /// Give back the leases `user` holds.
    pub fn release(&self, user: &User) -> Result<()> {
        self.db
            .execute("DELETE FROM leases WHERE user_id = ?1", args![user.id])?;
        Ok(())
    }

    pub fn field_state(&self, key: &ItemKey) -> Result<Option<FieldState>> {
        let now = now_ms();
        let Some(r) = self.db.query_opt(
            "SELECT f.machine_value, f.machine_status, f.confidence, f.flags, f.severity, f.value, f.provenance, f.state, \
                    f.crop_sha256, f.reviewed_by, f.reviewed_ms, u.name, l.expires_ms \
             FROM fields f LEFT JOIN leases l ON l.submission_id = f.submission_id AND l.field = f.field AND l.expires_ms > ?3 \
             LEFT JOIN users u ON u.id = l.user_id \
             WHERE f.submission_id = ?1 AND f.field = ?2",
            args![key.submission_id, &key.field, now],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(FieldState {
            submission_id: key.submission_id,
            field: key.field.clone(),
            machine_value: r.get(0)?,
            machine_status: r.get(1)?,
            confidence: r.get(2)?,
            flags: serde_json::from_str(&r.get::<String>(3)?).unwrap_or_default(),
            severity: r.get(4)?,
            value: r.get(5)?,
            provenance: r.get(6)?,
            state: r.get(7)?,
            crop_sha256: r.get(8)?,
            reviewed_by: r.get(9)?,
            reviewed_ms: r.get(10)?,
            leased_by: r.get(11)?,
            lease_expires_ms: r.get(12)?,
        }))
    }

    /// The double entries recorded for an item: (user, action, value).
    pub fn entries_for(&self, key: &ItemKey) -> Result<Vec<(String, String, Option<i64>)>> {
        self.db
            .query(
                "SELECT u.name, e.action, e.value FROM entries e JOIN users u ON u.id = e.user_id \
                 WHERE e.submission_id = ?1 AND e.field = ?2 ORDER BY e.id",
                args![key.submission_id, &key.field],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect()
    }

    /// Current values of every field of a submission (for live rule checks).
    pub fn current_values(&self, submission_id: i64) -> Result<BTreeMap<String, Option<i64>>> {
        self.db
            .query(
                "SELECT field, value FROM fields WHERE submission_id = ?1",
                args![submission_id],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect()
    }

    /// Record a review. The review, the field's new value and its audit entry commit in one
    /// transaction before this returns. Refused (Conflict) when another user holds the item's
    /// lease or the item is not open to this user.
    pub fn review(
        &mut self,
        user: &User,
        key: &ItemKey,
        input: &ReviewInput,
        double_entry: bool,
    ) -> Result<ReviewOutcome> {
        if let Some(v) = input.value
            && !(0..=MAX_FIELD_VALUE).contains(&v)
        {
            return Err(StoreError::Invalid(format!(
                "value {v} is outside 0..={MAX_FIELD_VALUE}"
            )));
        }
        if input.action == ReviewAction::Confirm && input.value.is_some() {
            return Err(StoreError::Invalid(
                "confirm takes no value (use correct to type one)".into(),
            ));
        }
        let reason = input
            .reason
            .as_deref()
            .map(|r| r.chars().take(500).collect::<String>());
        let tx = self.db.begin(TxKind::Write)?;
        let now = now_ms();
        let Some(row) = tx.query_opt(
            "SELECT machine_value, value, state FROM fields WHERE submission_id = ?1 AND field = ?2",
            args![key.submission_id, &key.field],
        )?
        else {
            return Err(StoreError::NotFound(format!(
                "field {} of submission {}",
                key.field, key.submission_id
            )));
        };
        let machine: Option<i64> = row.get(0)?;
        let current: Option<i64> = row.get(1)?;
        let state: String = row.get(2)?;
        let holder: Option<i64> = match tx.query_opt(
            "SELECT user_id FROM leases WHERE submission_id = ?1 AND field = ?2 AND expires_ms > ?3",
            args![key.submission_id, &key.field, now],
        )? {
            Some(r) => Some(r.get(0)?),
            None => None,
        };
        if holder.is_some_and(|h| h != user.id) {
            return Err(StoreError::Conflict(
                "another reviewer holds this item".into(),
            ));
        }
        let entered: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM entries WHERE submission_id = ?1 AND field = ?2 AND user_id = ?3",
                args![key.submission_id, &key.field, user.id],
            )?
            .get(0)?;
        let supervisor = user.role >= Role::Supervisor;
        let direct = match state.as_str() {
            "open" if !double_entry => true,
            "open" => false,
            "disputed" if supervisor && entered == 0 => true,
            "disputed" => {
                return Err(StoreError::Conflict(
                    "the double entries disagree: a supervisor who did not enter it decides".into(),
                ));
            }
            _ => {
                return Err(StoreError::Conflict(format!(
                    "{} of submission {} is not open for review (state {state})",
                    key.field, key.submission_id
                )));
            }
        };
        if !direct && entered > 0 {
            return Err(StoreError::Conflict("you entered this item already".into()));
        }
        let (value, provenance) = resolve(input, machine);
        tx.execute(
            "INSERT INTO entries (submission_id, field, round, user_id, action, value, reason, at_ms) VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7)",
            args![key.submission_id, &key.field, user.id, input.action.as_str(), value, reason.clone(), now],
        )?;
        tx.execute(
            "DELETE FROM leases WHERE submission_id = ?1 AND field = ?2",
            args![key.submission_id, &key.field],
        )?;
        let outcome = if direct {
            apply(
                &tx,
                key,
                &user.name,
                current,
                value,
                provenance,
                reason.as_deref(),
                input.action,
                now,
            )?;
            ReviewOutcome::Resolved { value, provenance }
        } else {
            // Blind entry: logged, value unchanged until a second entry agrees.
            audit::append(
                &tx,
                &NewEntry {
                    actor: &user.name,
                    action: "entry",
                    submission_id: key.submission_id,
                    field: Some(&key.field),
                    old_value: Some(&value_text(current)),
                    new_value: Some(&value_text(value)),
                    provenance: Some(provenance.as_str()),
                    reason: reason.as_deref(),
                },
            )?;
            let others: Vec<(String, String, Option<i64>)> = tx
                .query(
                    "SELECT u.name, e.action, e.value FROM entries e JOIN users u ON u.id = e.user_id \
                     WHERE e.submission_id = ?1 AND e.field = ?2 AND e.user_id <> ?3 ORDER BY e.id",
                    args![key.submission_id, &key.field, user.id],
                )?
                .iter()
                .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .collect::<Result<_>>()?;
            match others.first() {
                None => ReviewOutcome::Recorded,
                Some((other, action, other_value)) => {
                    let other_prov = match action.as_str() {
                        "officer_inconsistency" => Provenance::OfficerInconsistency,
                        _ if *other_value == machine => Provenance::ReviewerConfirmed,
                        _ => Provenance::ReviewerCorrected,
                    };
                    if *other_value == value && other_prov == provenance {
                        let actor = format!("{other}+{}", user.name);
                        apply(
                            &tx,
                            key,
                            &actor,
                            current,
                            value,
                            provenance,
                            Some("double entry agreed"),
                            input.action,
                            now,
                        )?;
                        ReviewOutcome::Resolved { value, provenance }
                    } else {
                        tx.execute(
                            "UPDATE fields SET state = 'disputed' WHERE submission_id = ?1 AND field = ?2",
                            args![key.submission_id, &key.field],
                        )?;
                        ReviewOutcome::Disputed
                    }
                }
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// Final results with provenance, one entry per submission that has results.
    pub fn export(&self) -> Result<Vec<ExportSubmission>> {
        let subs = self.submissions()?;
        let mut out = Vec::new();
        for s in subs {
            let report = self.report(s.id)?;
            let mut fields = BTreeMap::new();
            let rows = self.db.query(
                "SELECT field, value, provenance, machine_value, confidence, flags, reviewed_by, reviewed_ms \
                 FROM fields WHERE submission_id = ?1 ORDER BY ord",
                args![s.id],
            )?;
            for r in rows {
                let fid: String = r.get(0)?;
                let mut f = ExportField {
                    value: r.get(1)?,
                    provenance: r.get(2)?,
                    machine_value: r.get(3)?,
                    machine_confidence: r.get(4)?,
                    flags: serde_json::from_str(&r.get::<String>(5)?).unwrap_or_default(),
                    reviewed_by: r.get(6)?,
                    reviewed_ms: r.get(7)?,
                    photo_sha256: None,
                    page: None,
                };
                if let Some(src) = report
                    .as_ref()
                    .and_then(|r| r.fields.get(&fid))
                    .and_then(|f| f.source.as_ref())
                {
                    f.photo_sha256 = Some(src.sha256.clone());
                    f.page = Some(src.page);
                }
                fields.insert(fid, f);
            }
            out.push(ExportSubmission {
                id: s.id,
                submission: s.name,
                tps: s.tps,
                state: match s.state {
                    super::SubmissionState::Done => "done",
                    super::SubmissionState::Failed => "failed",
                    super::SubmissionState::Queued => "queued",
                    super::SubmissionState::Processing => "processing",
                }
                .into(),
                open_fields: s.open_fields,
                photos: s.photos.iter().map(|p| p.sha256.clone()).collect(),
                fields,
            });
        }
        Ok(out)
    }

    /// The audit log (optionally of one submission).
    pub fn audit_entries(&self, submission: Option<i64>) -> Result<Vec<super::AuditEntry>> {
        audit::entries(&self.db, submission)
    }

    /// Verify the audit chain and replay it against the stored values.
    pub fn verify_audit(&self) -> Result<std::result::Result<usize, super::AuditProblem>> {
        audit::verify(&self.db)
    }
}

/// Lease an item, replacing an expired lease of another user (callers check availability).
const UPSERT_LEASE: &str = "INSERT INTO leases (submission_id, field, user_id, expires_ms) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (submission_id, field) DO UPDATE SET user_id = excluded.user_id, expires_ms = excluded.expires_ms";

/// The value and provenance a review gives, relative to the machine's reading.
fn resolve(input: &ReviewInput, machine: Option<i64>) -> (Option<i64>, Provenance) {
    match input.action {
        ReviewAction::Confirm => (machine, Provenance::ReviewerConfirmed),
        ReviewAction::Correct if input.value == machine => (machine, Provenance::ReviewerConfirmed),
        ReviewAction::Correct => (input.value, Provenance::ReviewerCorrected),
        ReviewAction::OfficerInconsistency => {
            (input.value.or(machine), Provenance::OfficerInconsistency)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn apply(
    tx: &super::db::Conn,
    key: &ItemKey,
    actor: &str,
    old: Option<i64>,
    value: Option<i64>,
    provenance: Provenance,
    reason: Option<&str>,
    action: ReviewAction,
    now: i64,
) -> Result<()> {
    tx.execute(
        "UPDATE fields SET value = ?3, provenance = ?4, state = 'resolved', reviewed_by = ?5, reviewed_ms = ?6 \
         WHERE submission_id = ?1 AND field = ?2",
        args![key.submission_id, &key.field, value, provenance.as_str(), actor, now],
    )?;
    let reason = match reason {
        Some(r) if !r.is_empty() => format!("{}: {r}", action.as_str()),
        _ => action.as_str().to_string(),
    };
    audit::append(
        tx,
        &NewEntry {
            actor,
            action: "review",
            submission_id: key.submission_id,
            field: Some(&key.field),
            old_value: Some(&value_text(old)),
            new_value: Some(&value_text(value)),
            provenance: Some(provenance.as_str()),
            reason: Some(&reason),
        },
    )?;
    Ok(())
}
