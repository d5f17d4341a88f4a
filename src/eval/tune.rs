//! `rekap eval --tune TARGET`: the acceptance threshold that keeps the one-sided 95 % upper
//! bound on the field silent error rate (accepted-and-wrong fields among all scored fields) at
//! or below TARGET on this set, with the fewest fields sent to review.
//!
//! Only fields whose acceptance the threshold alone decides (read, flagged for nothing but low
//! confidence, and at or above their `reading_floor` on their own evidence) move; fields with
//! any other flag, or held back by that reading floor, stay in review whatever the threshold.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::FieldStatus;
    use crate::recognize::Label;

    fn outcome(confidence: f64, reading: Option<f64>, correct: bool) -> FieldOutcome {
        FieldOutcome {
            submission: "s".into(),
            field: "f".into(),
            page: Some(1),
            truth: Some(1),
            truth_boxes: vec![Label::Digit(1)],
            read: Some(if correct { 1 } else { 7 }),
            read_boxes: vec![Label::Digit(if correct { 1 } else { 7 })],
            status: FieldStatus::Flagged,
            confidence,
            reading_confidence: reading,
            reading_floor: 0.99,
            flags: vec!["low_confidence".into()],
            correct,
            officer_related: false,
            source: None,
        }
    }

    #[test]
    fn fields_held_by_the_reading_floor_are_not_the_thresholds_to_move() {
        // 40 sure fields, and one wrong field the rules lifted to 0.9999 although its own
        // reading was 0.9: no threshold accepts it (the floor holds it), so the tuner must not
        // count it as an error of the threshold, nor as a field it could accept.
        let mut fields: Vec<FieldOutcome> =
            (0..40).map(|_| outcome(0.999, Some(0.999), true)).collect();
        fields.push(outcome(0.9999, Some(0.9), false));
        let t = tune(&fields, 0.1).unwrap();
        assert_eq!((t.accepted, t.silent_errors), (40, 0), "{t:?}");
        assert!((t.threshold - 0.999).abs() < 1e-12);
        // Without the reading confidence (old results) the lifted field counts, and the bound
        // forbids accepting anything at or below its confidence.
        fields[40].reading_confidence = None;
        let t = tune(&fields, 0.1).unwrap();
        assert_eq!((t.accepted, t.silent_errors), (0, 0), "{t:?}");
    }
}
