//! The numbers an officer writes on one submission: plausible, consistent TPS figures (every hard
//! and soft rule of the template holds), optionally with one deliberate officer error.
//!
//! Invariants of [`Filled`]:
//! * `numbers` has an entry for every numeric field of the template (digits, row_totals, date);
//!   `boxes` has exactly one label per template box; `value` is the number written (leading boxes
//!   `X` or blank), `None` only when every box is blank;
//! * without officer errors, every rule instance of the template that can be evaluated holds;
//!   with one, the violated instances are exactly `rule` + `also_breaks` of the recorded error;
//! * tally counts are what was counted (the true number of votes), so a sum error on `invalid`
//!   shows up against its tally and row totals.

use super::SynthError;
use crate::template::rules::{Rule, RuleOutcome};
use crate::template::{FieldKind, RuleKind, Template};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Tally strokes per grid cell (4 vertical + 1 diagonal).
pub const STROKES_PER_CELL: u32 = 5;
/// The form's per-TPS ceiling printed as a rule (`count_max_300`).
const MAX_COUNT: i64 = 300;
/// Ballot reserve: 2 % of the DPT, rounded up (KPU practice).
const RESERVE_FRACTION: f64 = 0.02;
/// Largest DPT drawn so that DPT + reserve stays <= 300.
const MAX_DPT: i64 = 294;
const MIN_DPT: i64 = 150;
/// How many random officer-error scenarios are tried before giving up.
const ERROR_TRIES: usize = 40;

/// A numeric field as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumberField {
    pub value: Option<i64>,
    pub boxes: Vec<String>,
}

/// One deliberate officer error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfficerError {
    /// `sum_mismatch`, `count_over_300`, `row_total_mismatch` or `bubble_mismatch`.
    pub kind: String,
    /// The (main) rule instance it breaks; `None` for a bubble mismatch.
    pub rule: Option<String>,
    /// Fields whose written value differs from a consistent form.
    pub fields: Vec<String>,
    pub note: String,
    /// Other rule instances broken by the same error (e.g. soft rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_breaks: Vec<String>,
}

/// Per-form habits of the officer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FormHabits {
    /// Unused leading boxes get an `X` (else they stay blank).
    pub lead_x: bool,
    /// Leading bubble columns get the `0` bubble (else none).
    pub bubble_lead_zero: bool,
}

/// Everything written on one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Filled {
    pub numbers: BTreeMap<String, NumberField>,
    /// Bubbles field id -> per column, the digits whose bubble is marked.
    pub bubbles: BTreeMap<String, Vec<Vec<u8>>>,
    /// Tally field id -> number of strokes.
    pub tallies: BTreeMap<String, u32>,
    pub officer_errors: Vec<OfficerError>,
    pub habits: FormHabits,
}

impl Filled {
    /// Field values as the rule evaluator wants them.
    pub fn values(&self) -> BTreeMap<String, Option<i64>> {
        self.numbers
            .iter()
            .map(|(k, v)| (k.clone(), v.value))
            .collect()
    }
}

/// Consistent values of a typical TPS for the standard field ids (see docs/interfaces.md).
pub fn consistent_values<R: Rng + ?Sized>(rng: &mut R) -> BTreeMap<String, i64> {
    let mut v = BTreeMap::new();
    let dpt = rng.random_range(MIN_DPT..=MAX_DPT);
    let dpt_l = ((dpt as f64) * rng.random_range(0.45..0.55)).round() as i64;
    let dpt_p = dpt - dpt_l;
    let received = (dpt as f64 * (1.0 + RESERVE_FRACTION)).ceil() as i64;
    let turnout: f64 = rng.random_range(0.55..0.92);
    let b1_l = ((dpt_l as f64) * turnout * rng.random_range(0.94..1.06)).round() as i64;
    let b1_p = ((dpt_p as f64) * turnout * rng.random_range(0.94..1.06)).round() as i64;
    let (b1_l, b1_p) = (b1_l.clamp(0, dpt_l), b1_p.clamp(0, dpt_p));
    let small = |rng: &mut R, max: i64| -> i64 {
        // Mostly zero, sometimes a few.
        if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(1..=max)
        }
    };
    let returned = small(rng, 3);
    // DPTb / DPK voters use the reserve: keep b4 + returned within the ballots received.
    // floor(1.02 * DPT) keeps `votes_le_dpt` (valid <= 1.02 * DPT) true as well.
    let cap = (dpt as f64 * (1.0 + RESERVE_FRACTION)).floor() as i64;
    let room = (cap - b1_l - b1_p - returned).max(0);
    let mut b2_l = small(rng, 5);
    let mut b2_p = small(rng, 5);
    let mut b3_l = small(rng, 4);
    let mut b3_p = small(rng, 4);
    while b2_l + b2_p + b3_l + b3_p > room {
        // Shrink the largest until it fits (terminates: room >= 0).
        let m = [&mut b2_l, &mut b2_p, &mut b3_l, &mut b3_p]
            .into_iter()
            .max_by_key(|x| **x);
        if let Some(m) = m {
            *m -= 1;
        }
    }
    let b4_l = b1_l + b2_l + b3_l;
    let b4_p = b1_p + b2_p + b3_p;
    let total = b4_l + b4_p;
    let invalid = small(rng, 8).min(total);
    let valid = total - invalid;
    // Split valid votes among 3 candidates with uneven shares.
    let w: Vec<f64> = (0..3)
        .map(|_| rng.random_range(0.05f64..1.0).powf(1.5))
        .collect();
    let ws: f64 = w.iter().sum();
    let mut votes: Vec<i64> = w
        .iter()
        .map(|x| (valid as f64 * x / ws).floor() as i64)
        .collect();
    let rest = valid - votes.iter().sum::<i64>();
    let lucky = rng.random_range(0..3);
    votes[lucky] += rest;
    let dis_l = small(rng, 2).min(b4_l);
    let dis_p = small(rng, 2).min(b4_p);
    let day = if rng.random_bool(0.85) { 14 } else { 15 };
    for (k, x) in [
        ("dpt.l", dpt_l),
        ("dpt.p", dpt_p),
        ("dpt.lp", dpt),
        ("b1.l", b1_l),
        ("b1.p", b1_p),
        ("b1.lp", b1_l + b1_p),
        ("b2.l", b2_l),
        ("b2.p", b2_p),
        ("b2.lp", b2_l + b2_p),
        ("b3.l", b3_l),
        ("b3.p", b3_p),
        ("b3.lp", b3_l + b3_p),
        ("b4.l", b4_l),
        ("b4.p", b4_p),
        ("b4.lp", total),
        ("ballots.received", received),
        ("ballots.used", total),
        ("ballots.returned", returned),
        ("ballots.unused", received - total - returned),
        ("disabled.l", dis_l),
        ("disabled.p", dis_p),
        ("disabled.lp", dis_l + dis_p),
        ("votes.1", votes[0]),
        ("votes.2", votes[1]),
        ("votes.3", votes[2]),
        ("valid", valid),
        ("invalid", invalid),
        ("total", total),
        ("date.day", day),
        ("date.month", 2),
        ("date.year", 2024),
    ] {
        v.insert(k.to_string(), x);
    }
    v
}

/// Strokes in tally row `row` (1-based) of a grid with `cols` cells per row holding `count`.
pub fn row_strokes(count: u32, row: u32, cols: u32) -> u32 {
    let per_row = cols * STROKES_PER_CELL;
    count
        .saturating_sub(per_row * row.saturating_sub(1))
        .min(per_row)
}

/// Box labels for `value` in `n` boxes; leading boxes `X` or blank; `pad_zero` writes leading
/// zeros instead (dates). `None` if the value does not fit.
pub fn box_labels(value: i64, n: usize, lead_x: bool, pad_zero: bool) -> Option<Vec<String>> {
    if value < 0 {
        return None;
    }
    let s = value.to_string();
    if s.len() > n {
        return None;
    }
    let lead = if pad_zero {
        "0"
    } else if lead_x {
        "X"
    } else {
        "blank"
    };
    let mut out: Vec<String> = std::iter::repeat_n(lead.to_string(), n - s.len()).collect();
    out.extend(s.chars().map(|c| c.to_string()));
    Some(out)
}

fn tally_cols(template: &Template, fid: &str) -> u32 {
    template
        .field(fid)
        .map_or(12, |f| f.col_edges_mm.len().saturating_sub(1) as u32)
}

/// Fill a submission from the template.
pub fn fill<R: Rng + ?Sized>(
    template: &Template,
    rng: &mut R,
    officer_error_rate: f64,
) -> Result<Filled, SynthError> {
    let rule_set = template.try_rules().map_err(|e| SynthError::Template {
        message: e.to_string(),
    })?;
    let base = consistent_values(rng);
    let habits = FormHabits {
        lead_x: rng.random_bool(0.6),
        bubble_lead_zero: rng.random_bool(0.75),
    };
    // Written values: standard fields, tallies and row totals derived from the true counts.
    let mut written: BTreeMap<String, i64> = BTreeMap::new();
    let mut tallies = BTreeMap::new();
    for f in &template.fields {
        match f.kind {
            FieldKind::Digits | FieldKind::Date => {
                if let Some(x) = base.get(&f.id) {
                    written.insert(f.id.clone(), *x);
                } else {
                    tracing::warn!(field = %f.id, "synth: no value model for field; left blank");
                }
            }
            FieldKind::RowTotals => {
                let of = f.of.as_deref().unwrap_or_default();
                let count = base.get(of).copied().unwrap_or(0).max(0) as u32;
                let tally_id = format!("{of}.tally");
                let cols = tally_cols(template, &tally_id);
                let row = f.row.unwrap_or(1);
                written.insert(f.id.clone(), row_strokes(count, row, cols) as i64);
            }
            FieldKind::TallyGrid => {
                let of = f.of.as_deref().unwrap_or_default();
                let count = base.get(of).copied().unwrap_or(0).clamp(0, MAX_COUNT) as u32;
                tallies.insert(f.id.clone(), count);
            }
            FieldKind::Bubbles => {}
        }
    }
    let mut officer_errors = Vec::new();
    let mut bubble_error: Option<(String, usize)> = None;
    if rng.random_bool(officer_error_rate.clamp(0.0, 1.0)) {
        match inject_error(template, &rule_set, &mut written, rng, &mut bubble_error) {
            Some(e) => officer_errors.push(e),
            None => tracing::warn!("synth: no officer-error scenario fits this template"),
        }
    }
    // Boxes.
    let mut numbers = BTreeMap::new();
    for f in template.numeric_fields() {
        let n = f.boxes.len();
        let entry = match written.get(&f.id) {
            Some(&x) => {
                let labels = box_labels(x, n, habits.lead_x, f.kind == FieldKind::Date)
                    .ok_or_else(|| SynthError::Template {
                        message: format!("value {x} does not fit the {n} boxes of {}", f.id),
                    })?;
                NumberField {
                    value: Some(x),
                    boxes: labels,
                }
            }
            None => NumberField {
                value: None,
                boxes: vec!["blank".to_string(); n],
            },
        };
        numbers.insert(f.id.clone(), entry);
    }
    // Bubbles follow the written boxes of the field they back up.
    let mut bubbles = BTreeMap::new();
    for f in template
        .fields
        .iter()
        .filter(|f| f.kind == FieldKind::Bubbles)
    {
        let of = f.of.as_deref().unwrap_or_default();
        let cols = f.columns.len();
        let mut filled: Vec<Vec<u8>> = vec![Vec::new(); cols];
        if let Some(nf) = numbers.get(of) {
            // Align the field's boxes to the right of the bubble columns.
            let off = cols.saturating_sub(nf.boxes.len());
            for (i, label) in nf.boxes.iter().enumerate() {
                let Some(col) = filled.get_mut(off + i) else {
                    continue;
                };
                if let Ok(d) = label.parse::<u8>() {
                    col.push(d);
                } else if habits.bubble_lead_zero && nf.value.is_some() {
                    col.push(0);
                }
            }
        }
        if let Some((ref bid, col)) = bubble_error
            && *bid == f.id
            && let Some(c) = filled.get_mut(col)
        {
            let old = c.first().copied().unwrap_or(0);
            let new = (old + rng.random_range(1..=9u8)) % 10;
            *c = vec![new];
            if let Some(e) = officer_errors.last_mut() {
                e.note = format!("bubble column {} marks {new}, the boxes say {old}", col + 1);
            }
        }
        bubbles.insert(f.id.clone(), filled);
    }
    Ok(Filled {
        numbers,
        bubbles,
        tallies,
        officer_errors,
        habits,
    })
}

/// Ids of the rule instances that `values` violates (rules naming unknown fields are skipped).
pub fn violated(rules: &[Rule], values: &BTreeMap<String, i64>) -> Vec<String> {
    let get = |f: &str| values.get(f).copied();
    rules
        .iter()
        .filter(|r| matches!(r.evaluate(&get), RuleOutcome::Violated { .. }))
        .map(|r| r.id.clone())
        .collect()
}

/// Largest value the boxes of `fid` can hold.
fn box_capacity(template: &Template, fid: &str) -> i64 {
    template
        .field(fid)
        .map_or(0, |f| 10i64.pow(f.boxes.len().min(9) as u32) - 1)
}

/// Apply one random officer-error scenario that the template's rules detect; returns its record.
fn inject_error<R: Rng + ?Sized>(
    template: &Template,
    rule_set: &[Rule],
    written: &mut BTreeMap<String, i64>,
    rng: &mut R,
    bubble_error: &mut Option<(String, usize)>,
) -> Option<OfficerError> {
    let baseline = violated(rule_set, written);
    if !baseline.is_empty() {
        tracing::warn!(
            ?baseline,
            "synth: consistent values break rules; check the value model"
        );
    }
    for _ in 0..ERROR_TRIES {
        let kind = match rng.random_range(0..10) {
            0..=4 => "sum_mismatch",
            5..=6 => "row_total_mismatch",
            7 => "count_over_300",
            _ => "bubble_mismatch",
        };
        if kind == "bubble_mismatch" {
            let fields: Vec<_> = template
                .fields
                .iter()
                .filter(|f| f.kind == FieldKind::Bubbles && !f.columns.is_empty())
                .collect();
            if fields.is_empty() {
                continue;
            }
            let f = fields[rng.random_range(0..fields.len())];
            let col = f.columns.len() - 1 - rng.random_range(0..f.columns.len().min(2));
            *bubble_error = Some((f.id.clone(), col));
            return Some(OfficerError {
                kind: kind.into(),
                rule: None,
                fields: vec![f.of.clone().unwrap_or_default()],
                note: String::new(),
                also_breaks: Vec::new(),
            });
        }
        let mut trial = written.clone();
        let mut changed: Vec<String> = Vec::new();
        match kind {
            "sum_mismatch" => {
                const SCENARIOS: &[&[&str]] = &[
                    &["total"],
                    &["valid", "total"],
                    &["dpt.lp"],
                    &["b1.lp"],
                    &["b2.lp"],
                    &["b3.lp"],
                    &["b4.lp"],
                    &["disabled.lp"],
                    &["invalid", "total"],
                    &["ballots.unused"],
                    &["b4.l"],
                    &["b4.p"],
                ];
                let sc = SCENARIOS[rng.random_range(0..SCENARIOS.len())];
                let d = rng.random_range(1..=9i64) * if rng.random_bool(0.5) { 1 } else { -1 };
                for f in sc {
                    let Some(x) = trial.get_mut(*f) else {
                        continue;
                    };
                    *x += d;
                    changed.push((*f).to_string());
                }
            }
            "row_total_mismatch" => {
                let rows: Vec<String> = template
                    .fields
                    .iter()
                    .filter(|f| f.kind == FieldKind::RowTotals)
                    .filter(|f| trial.get(&f.id).is_some_and(|&x| x > 0) || f.row == Some(1))
                    .map(|f| f.id.clone())
                    .collect();
                if rows.is_empty() {
                    continue;
                }
                let fid = &rows[rng.random_range(0..rows.len())];
                let d = rng.random_range(1..=3i64) * if rng.random_bool(0.5) { 1 } else { -1 };
                if let Some(x) = trial.get_mut(fid) {
                    *x += d;
                    changed.push(fid.clone());
                }
            }
            _ => {
                // count_over_300: the DPT of women written too large, L+P still adding up.
                let target = rng.random_range(MAX_COUNT + 1..=MAX_COUNT + 30);
                let (Some(&lp), Some(&p)) = (trial.get("dpt.lp"), trial.get("dpt.p")) else {
                    continue;
                };
                let d = target - lp;
                trial.insert("dpt.lp".into(), lp + d);
                trial.insert("dpt.p".into(), p + d);
                changed.extend(["dpt.p".to_string(), "dpt.lp".to_string()]);
            }
        }
        if changed.is_empty()
            || changed
                .iter()
                .any(|f| trial[f] < 0 || trial[f] > box_capacity(template, f))
        {
            continue;
        }
        let broken: Vec<&Rule> = {
            let ids = violated(rule_set, &trial);
            rule_set
                .iter()
                .filter(|r| ids.contains(&r.id) && !baseline.contains(&r.id))
                .collect()
        };
        let hard: Vec<&&Rule> = broken.iter().filter(|r| r.kind == RuleKind::Hard).collect();
        let primary = match kind {
            "count_over_300" => broken
                .iter()
                .find(|r| r.id.contains("300") || r.id.contains("max"))
                .map(|r| r.id.clone()),
            "sum_mismatch" if hard.len() == 1 => Some(hard[0].id.clone()),
            "sum_mismatch" if hard.is_empty() && broken.len() == 1 => Some(broken[0].id.clone()),
            "row_total_mismatch" if !hard.is_empty() => Some(hard[0].id.clone()),
            _ => None,
        };
        let Some(primary) = primary else {
            continue;
        };
        let note = changed
            .iter()
            .map(|f| format!("{f} written as {} (consistent: {})", trial[f], written[f]))
            .collect::<Vec<_>>()
            .join("; ");
        let also_breaks = broken
            .iter()
            .map(|r| r.id.clone())
            .filter(|id| *id != primary)
            .collect();
        *written = trial;
        return Some(OfficerError {
            kind: kind.into(),
            rule: Some(primary),
            fields: changed,
            note,
            also_breaks,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn labels() {
        assert_eq!(box_labels(0, 3, true, false).unwrap(), ["X", "X", "0"]);
        assert_eq!(
            box_labels(45, 3, false, false).unwrap(),
            ["blank", "4", "5"]
        );
        assert_eq!(box_labels(2, 2, true, true).unwrap(), ["0", "2"]);
        assert!(box_labels(1000, 3, true, false).is_none());
    }

    #[test]
    fn tally_rows() {
        assert_eq!(row_strokes(105, 1, 12), 60);
        assert_eq!(row_strokes(105, 2, 12), 45);
        assert_eq!(row_strokes(105, 3, 12), 0);
    }

    #[test]
    fn consistent_values_add_up() {
        for seed in 0..500 {
            let v = consistent_values(&mut ChaCha8Rng::seed_from_u64(seed));
            for g in ["dpt", "b1", "b2", "b3", "b4", "disabled"] {
                assert_eq!(
                    v[&format!("{g}.lp")],
                    v[&format!("{g}.l")] + v[&format!("{g}.p")]
                );
            }
            for s in ["l", "p", "lp"] {
                let b = |g: &str| v[&format!("{g}.{s}")];
                assert_eq!(b("b4"), b("b1") + b("b2") + b("b3"));
            }
            assert_eq!(v["valid"], v["votes.1"] + v["votes.2"] + v["votes.3"]);
            assert_eq!(v["total"], v["valid"] + v["invalid"]);
            assert_eq!(v["total"], v["b4.lp"]);
            assert_eq!(
                v["ballots.received"],
                v["ballots.used"] + v["ballots.returned"] + v["ballots.unused"]
            );
            assert!(v.values().all(|&x| x >= 0));
            assert!(
                v.iter()
                    .filter(|(k, _)| !k.starts_with("date"))
                    .all(|(_, &x)| x <= 300)
            );
            assert!(v["b1.lp"] <= v["dpt.lp"]);
        }
    }
}
