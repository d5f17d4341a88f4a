//! `rekap eval --tune TARGET`: the acceptance threshold that keeps the one-sided 95 % upper
//! bound on the field silent error rate (accepted-and-wrong fields among all scored fields) at
//! or below TARGET on this set, with the fewest fields sent to review.
//!
//! Only fields whose acceptance the threshold alone decides (read, and flagged for nothing but
//! low confidence) move; fields with any other flag stay in review whatever the threshold.
//! This is exact for the decision rule `confidence >= accept_threshold` on the confidences of
//! this run; rules that resolve alternatives also consult the threshold, so a re-run at the new
//! threshold can differ slightly, and fields no equality rule checks keep their own, stricter
//! `unchecked_accept_threshold` (so a re-run accepts at most what the tuner counted: the bound
//! stays an upper bound). Measure on a different set (another synth seed) than you tune
//! on: a threshold measured on its own tuning set is optimistic.

use super::EvalError;
use super::metrics::FieldOutcome;
use super::stats::{CONFIDENCE, clopper_pearson_upper};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TuneResult {
    pub target: f64,
    /// Accept a field when `confidence >= threshold` (and nothing else flags it).
    pub threshold: f64,
    /// Scored fields (the denominator of the silent error rate).
    pub fields: u64,
    pub accepted: u64,
    pub reviews: u64,
    pub silent_errors: u64,
    pub upper95: f64,
}

/// Fewest scored fields for which zero silent errors gives an upper bound <= `target`.
fn fields_needed(target: f64) -> u64 {
    // 1 - (1-c)^(1/n) <= target  <=>  n >= ln(1-c) / ln(1-target)
    if target <= 0.0 || target >= 1.0 {
        return u64::MAX;
    }
    ((1.0 - CONFIDENCE).ln() / (1.0 - target).ln()).ceil() as u64
}

/// Choose the threshold. Ties in confidence are accepted or reviewed together.
pub fn tune(fields: &[FieldOutcome], target: f64) -> Result<TuneResult, EvalError> {
    let n = fields.len() as u64;
    let mut movable: Vec<(f64, bool)> = fields
        .iter()
        .filter(|f| f.threshold_decides())
        .map(|f| (f.confidence, f.correct))
        .collect();
    movable.sort_by(|a, b| b.0.total_cmp(&a.0));
    let nothing = clopper_pearson_upper(0, n, CONFIDENCE);
    if nothing > target {
        return Err(EvalError::TargetUnreachable {
            target,
            bound: nothing,
            fields: n,
            needed: fields_needed(target),
        });
    }
    // Accepting nothing: a threshold just above every confidence.
    let top = movable.first().map(|m| m.0).unwrap_or(1.0);
    let mut best = TuneResult {
        target,
        threshold: top.next_up(),
        fields: n,
        accepted: 0,
        reviews: n,
        silent_errors: 0,
        upper95: nothing,
    };
    let (mut acc, mut err) = (0u64, 0u64);
    let mut i = 0;
    while i < movable.len() {
        let t = movable[i].0;
        while i < movable.len() && movable[i].0 == t {
            acc += 1;
            err += u64::from(!movable[i].1);
            i += 1;
        }
        let ub = clopper_pearson_upper(err, n, CONFIDENCE);
        // The bound only grows as the threshold falls (errors never decrease), so the last
        // threshold that meets the target accepts the most.
        if ub <= target {
            best = TuneResult {
                target,
                threshold: t,
                fields: n,
                accepted: acc,
                reviews: n - acc,
                silent_errors: err,
                upper95: ub,
            };
        } else {
            break;
        }
    }
    Ok(best)
}
