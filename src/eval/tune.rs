//! `rekap eval --tune TARGET`: the acceptance threshold that keeps the one-sided 95 % upper
//! bound on the field silent error rate (accepted-and-wrong fields among all scored fields) at
//! or below TARGET on this set, with the fewest fields sent to review.
//!
//! A set without errors among its sure fields bounds the overall rate but says little about
//! the few fields a much lower threshold would add (on seed 57 every field the threshold decides
//! happened to be right, so the bound alone allowed a threshold of 0). So the confidences must
//! agree too: the errors they predict, the sum of `1 - confidence` over the accepted fields
//! (calibrated probabilities; `eval` reports their ECE), divided by the scored fields, must
//! also stay at or below TARGET; and the threshold never goes under `MIN_TUNED_THRESHOLD`
//! (0.5: an accepted field must at least be more likely right than wrong).
//!
//! Only fields whose acceptance the threshold alone decides (read, flagged for nothing but low
//! confidence, and at or above their `reading_floor` on their own evidence) move; fields with
//! any other flag, or held back by that reading floor, stay in review whatever the threshold.
//! This is exact for the decision rule `confidence >= accept_threshold` on the confidences of
//! this run; rules that resolve alternatives also consult the threshold, so a re-run at the new
//! threshold can differ slightly, and fields no equality rule checks (or none through sure,
//! uncontested partners) keep their own, stricter `unchecked_accept_threshold` (so a re-run
//! accepts at most what the tuner counted: the bound stays an upper bound). Measure on a
//! different set (another synth seed) than you tune on: a threshold measured on its own tuning
//! set is optimistic.

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
    /// Silent errors the accepted fields' confidences predict (sum of `1 - confidence`).
    pub expected_errors: f64,
}

/// The tuned threshold never goes below this: a field accepted must at least be more likely
/// right than wrong by its own confidence, whatever the error budget of the set allows.
pub const MIN_TUNED_THRESHOLD: f64 = 0.5;

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
        expected_errors: 0.0,
    };
    let (mut acc, mut err, mut expected) = (0u64, 0u64, 0.0f64);
    let mut i = 0;
    while i < movable.len() {
        let t = movable[i].0;
        if t < MIN_TUNED_THRESHOLD {
            break;
        }
        while i < movable.len() && movable[i].0 == t {
            acc += 1;
            err += u64::from(!movable[i].1);
            expected += (1.0 - movable[i].0).max(0.0);
            i += 1;
        }
        let ub = clopper_pearson_upper(err, n, CONFIDENCE);
        // Both the bound and the predicted errors only grow as the threshold falls, so the
        // last threshold that meets the target on both accepts the most.
        if ub <= target && expected / n as f64 <= target {
            best = TuneResult {
                target,
                threshold: t,
                fields: n,
                accepted: acc,
                reviews: n - acc,
                silent_errors: err,
                upper95: ub,
                expected_errors: expected,
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

    #[test]
    fn an_error_free_set_does_not_admit_what_the_confidences_call_unsure() {
        // 5,000 sure fields and 20 unsure ones (0.5), all of them right on this set: the bound
        // on the observed errors would allow accepting everything, but 20 fields at 0.5 predict
        // 10 errors in 5,020 (0.2 %), over a target of 0.1 %.
        let mut fields: Vec<FieldOutcome> = (0..5000)
            .map(|_| outcome(0.9995, Some(0.9995), true))
            .collect();
        fields.extend((0..20).map(|_| outcome(0.5, Some(0.999), true)));
        let t = tune(&fields, 0.001).unwrap();
        assert_eq!((t.accepted, t.silent_errors), (5000, 0), "{t:?}");
        assert!((t.threshold - 0.9995).abs() < 1e-12, "{t:?}");
        assert!((t.expected_errors - 2.5).abs() < 1e-6, "{t:?}");
        // Two of them at 0.5 predict one error in 5,002 (0.02 %): accepted.
        fields.truncate(5002);
        let t = tune(&fields, 0.001).unwrap();
        assert_eq!(t.accepted, 5002, "{t:?}");
        assert!(t.threshold <= 0.5, "{t:?}");
        // One at 0.4 is never accepted, even where the budget would allow it.
        fields.push(outcome(0.4, Some(0.999), true));
        let t = tune(&fields, 0.001).unwrap();
        assert_eq!(t.accepted, 5002, "{t:?}");
        assert!((t.threshold - 0.5).abs() < 1e-12, "{t:?}");
    }
}
