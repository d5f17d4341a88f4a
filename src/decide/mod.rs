//! Stage `decide`: from box predictions and the independent channels (OMR bubbles, row totals,
//! tally grids) to field values, each accepted only on strong evidence, and from the template's
//! rules to checks and flags.
//!
//! Principles, enforced here:
//! * Transcribe faithfully, then judge. A field's value is what the boxes say. Rules may only
//!   choose among the model's own alternatives for boxes it was unsure of; a confidently read
//!   field is never changed to make arithmetic fit. Arithmetic that fails on paper is flagged.
//! * A field is `accepted` only when its probability of being right is at least
//!   [`DecideConfig::accept_threshold`], its page aligned well, every box was on the photo, and no
//!   channel or rule disagrees with it. Everything else is `flagged` with reasons.

use crate::recognize::{Label, Prediction};
use crate::segment::STROKES_PER_CELL;
use crate::template::{CmpOp, FieldKind, Rule, RuleKind, RuleOutcome, Template};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

mod factor;

/// Tunable decision parameters (see `rekap eval --tune`). Defaults are conservative.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DecideConfig {
    /// Minimum probability that a field's value is right for it to be accepted.
    pub accept_threshold: f64,
    /// Minimum probability for a field that no equality rule (hard or soft) checks, such as the
    /// date, or none through partners that are read, sure (`min_partner_confidence`) and read by
    /// no broken rule: its acceptance rests on the model alone, so it needs more than
    /// `accept_threshold` (the higher of the two applies).
    pub unchecked_accept_threshold: f64,
    /// Minimum probability of the reported value on the field's own evidence (its boxes and
    /// bubbles, a row total's tally range; before any sum or equality rule). Rules can confirm
    /// a reading the model is already fairly sure of, but not vouch alone for a doubtful one: a
    /// model's misreads are not independent
    /// (one officer writes every 2 alike), and two misreads of one hand can land on numbers
    /// that add up (measured: synth seed 45, where two 0.97 misreads of a submission satisfied
    /// a sum rule and were lifted to 0.998).
    pub min_reading_confidence: f64,
    /// A rule raises a field's confidence above its own reading's only when every other field
    /// it reads is at least this sure on its own evidence (see `cap_unsupported_lifts`).
    pub min_partner_confidence: f64,
    /// A reading under `min_reading_confidence` but at least this sure on its own may still be
    /// confirmed, by rules whose every other field reads at least `strong_partner_confidence`
    /// on its own (at least one such field). The correlated misreads the floor guards against
    /// need a partner that is itself unsure (seed 45: partners at 0.97 and 0.984); a sum whose
    /// other terms are sure pins the value by arithmetic. At least 0.5, so that rules only
    /// ever confirm the model's own first reading, never pick another one for acceptance.
    pub min_reading_confidence_strong_partners: f64,
    /// What "sure" means for the partners of `min_reading_confidence_strong_partners`.
    pub strong_partner_confidence: f64,
    /// Prior probability that one hard rule is broken on paper by the officer. Used when rules
    /// help choose among a field's alternative readings.
    pub officer_error_prior: f64,
    /// Prior probability that one soft rule (an expectation such as ballots balancing or the
    /// election date) does not hold on paper. An assumption, not a measurement: real forms break
    /// soft rules far more often than hard ones, so this is set ten times the hard-rule prior.
    pub soft_rule_error_prior: f64,
    /// Probability that a clearly filled bubble column states the digit written in its box.
    pub bubble_reliability: f64,
    /// Alternatives kept per field (most probable first).
    pub max_alternatives: usize,
    /// Largest number of joint assignments enumerated when rules resolve uncertain fields.
    pub max_joint_assignments: usize,
}

impl Default for DecideConfig {
    fn default() -> Self {
        DecideConfig {
            accept_threshold: 0.997,
            unchecked_accept_threshold: 0.9995,
            min_reading_confidence: 0.99,
            min_partner_confidence: 0.95,
            min_reading_confidence_strong_partners: 0.9,
            strong_partner_confidence: 0.99,
            officer_error_prior: 0.05,
            soft_rule_error_prior: 0.1,
            bubble_reliability: 0.95,
            max_alternatives: 6,
            max_joint_assignments: 50_000,
        }
    }
}

/// Chance that a number outside the model's alternatives happens to satisfy an equality rule
/// with the other fields fixed: about one value in a count's range; 0.02 assumes a range of only
/// 50 values, i.e. errs towards doubt.
const UNLISTED_SATISFIES_EQUALITY: f64 = 0.02;
/// Highest confidence of a field with a doubtful box (below any sensible acceptance threshold).
const DOUBTFUL_CONFIDENCE_CAP: f64 = 0.5;
/// The `reading_floor` of a field with a doubtful box: above any reading's probability (a
/// doubtful box reads blank at the model's 0.97 at most), so no threshold accepts it.
const DOUBTFUL_READING_FLOOR: f64 = 1.0;
/// Probability that a box read as blank is blank when its ink map came out empty and the crop
/// shows no trace of a mark (`segment::is_quiet`). The model's own answer for an all-zero input
/// is about 0.97, near the share of digits among all empty ink maps (182 of 7,425 on tuning
/// seeds 43 and 44, 2.5 %); among quiet crops they are far rarer. Session 15, from the results
/// of the 15 sets of sessions 12-14 (seeds 141-145, 151-152, 161-162, 171-176): of 34,899 quiet
/// boxes on pages that aligned well, one held a digit (a `0` under strong glare, in a field whose
/// every box was quiet, so flagged `blank_field` anyway): 2.9e-5, one-sided 95 % bound 1.4e-4;
/// on pages flagged `alignment_poor` (every field flagged) 18 of 317. 0.9998 sits above that
/// bound, and lets a number written with two blank leading boxes reach the acceptance threshold
/// (0.998, the value before, held every such field back: 0.998^2 < 0.997). README ("Empty
/// boxes").
pub const QUIET_BLANK_CONFIDENCE: f32 = 0.9998;
/// Alternatives whose probability is below this are not worth carrying.
const MIN_ALTERNATIVE_PROB: f64 = 1e-4;

/// One OMR bubble column (one digit position of a `votes.N` field).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BubbleColumn {
    /// Fill ratio of each bubble 0..9 (share of the bubble's inside that is inked).
    pub fill: Vec<f64>,
    pub state: BubbleState,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "state", content = "digit", rename_all = "snake_case")]
pub enum BubbleState {
    /// No bubble filled.
    Empty,
    /// Exactly one bubble clearly filled and no other in doubt.
    One(u8),
    /// Several filled, or some in doubt.
    Ambiguous,
}

/// Count range implied by a tally grid: marked cells hold 1..=5 strokes each, and one more cell
/// holding 1..=4 strokes may have gone unseen (`min` = cells marked, `max` = 5 x cells + 4).
/// A value outside it is flagged, and for a row total counts [`TALLY_OUTSIDE_WEIGHT`] times as
/// likely as one inside when its reading is weighed (`weigh_by_tally`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct TallyRange {
    pub cells_marked: u32,
    pub min: u32,
    pub max: u32,
}

/// Least count of a tally row whose `cells` marked cells were filled in order (every cell full,
/// five strokes, before the next one starts; the last holds at least one): `5 (cells - 1) + 1`.
/// Only a flag uses it (a spurious marked cell, a crease or shadow, can raise it by five and
/// flag a correct total for review; it never makes a reading surer). On seed 77 (official
/// artwork) a row total 35 read 25 at p = 0.9997 with 7 marked cells (31..=35 in order) and its
/// rows' sum undecidable; the plain range 7..=39 let it through.
pub fn in_order_tally_min(cells: u32) -> i64 {
    if cells == 0 {
        0
    } else {
        i64::from(STROKES_PER_CELL * (cells - 1) + 1)
    }
}

/// Everything read for one numeric field.
#[derive(Debug, Clone)]
pub struct FieldEvidence {
    pub id: String,
    pub boxes: Vec<Prediction>,
    pub bubbles: Option<Vec<BubbleColumn>>,
    pub tally: Option<TallyRange>,
    /// The page's alignment was good.
    pub page_good: bool,
    /// Some box was (partly) outside the photo.
    pub off_photo: bool,
    /// Boxes whose crop holds too little to trust an empty reading: faint marks under the ink
    /// threshold, or paper washed out by glare (see `segment::is_doubtful`).
    pub doubtful: Vec<usize>,
    /// Boxes whose ink map came out empty on a crop with no trace of a mark
    /// (`segment::is_quiet`): their blank reading gets [`QUIET_BLANK_CONFIDENCE`].
    pub quiet: Vec<usize>,
    pub source: Option<FieldSource>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FieldStatus {
    Accepted,
    Flagged,
    /// The page was not found, or every box is blank.
    Missing,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BoxReport {
    pub label: Label,
    pub confidence: f32,
    pub top: Vec<(Label, f32)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Channels {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bubbles: Option<Vec<BubbleColumn>>,
    /// Number stated by the bubbles (None when some column is empty or ambiguous).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bubbles_value: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tally: Option<TallyRange>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alternative {
    pub value: Option<i64>,
    pub probability: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FieldReport {
    pub value: Option<i64>,
    pub status: FieldStatus,
    /// Probability that `value` is what is written.
    pub confidence: f64,
    /// Probability of `value` on the field's own evidence (its boxes and bubbles, a row total's
    /// tally range, and for a field no equality rule reads the range its own rules expect: see
    /// `weigh_by_tally`, `weigh_by_range`), before any sum or equality rule; a field is
    /// accepted only when this reaches `reading_floor`. Absent for missing fields (and in
    /// results written before it was reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading_confidence: Option<f64>,
    /// The `reading_confidence` this field needed: `min_reading_confidence`, or
    /// `min_reading_confidence_strong_partners` when every partner of the rules that confirm it
    /// is sure on its own. Absent for missing fields (and in older results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading_floor: Option<f64>,
    pub boxes: Vec<BoxReport>,
    pub channels: Channels,
    pub alternatives: Vec<Alternative>,
    /// Rules whose cross-check set this value's probability (and may have chosen it among the
    /// model's alternatives).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_by: Vec<String>,
    /// Codes of the flags that concern this field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Where the number was read: photo, page, box corners in photo pixels, crop file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<FieldSource>,
}

/// Provenance of a field's reading.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FieldSource {
    pub file: String,
    pub sha256: String,
    pub page: u32,
    /// Each box's corners in photo pixels: top-left, top-right, bottom-right, bottom-left.
    pub boxes_px: Vec<[[f64; 2]; 4]>,
    /// Snap offset applied to the template boxes, mm.
    pub snap_mm: [f64; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Violated,
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckReport {
    pub rule: String,
    pub kind: RuleKind,
    pub status: CheckStatus,
    pub check: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lhs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rhs: Option<f64>,
    /// The fields the rule reads, with the values used.
    pub values: BTreeMap<String, Option<i64>>,
    /// For a broken rule: the likeliest single misreading that would explain it (see
    /// [`Suggestion`]); absent when no alternative reading of one field makes the rule hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<Suggestion>,
}

/// A possible misreading behind a broken rule, for the reviewer: one of the rule's fields read
/// as another of its alternatives makes the rule hold and breaks no other hard rule of that
/// field that held. Only a hint, never applied: the machine's value stays the reported one, since
/// a confident reading is not overruled to make arithmetic fit (the officer may have written
/// numbers that do not add up). On the synth sets of seeds 141 and 142 (600 submissions,
/// session 13): of 691 hard rules broken by a misreading, 546 got a hint and 530 of those named
/// the right field and value; of 31 broken only by an officer's arithmetic, 2 got a (wrong) hint.
/// Soft rules: 206 hints for misreadings, 194 right; 3 for the 43 officer-only violations.
/// Seeds 161-162, not looked at while building it: 503 hints for 638 hard rules, 494 right; 1 hint
/// for the 35 rules broken by an officer alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Suggestion {
    pub field: String,
    pub value: i64,
    /// The alternative's probability as the field's `alternatives` list it.
    pub probability: f64,
}

/// The likeliest single-field alternative that makes `rule` hold, keeping every hard rule of
/// that field which holds on the reported values (`value_of`) holding. Alternatives under
/// [`MIN_SUGGESTION_PROBABILITY`] are not offered.
fn suggest(
    rule: &Rule,
    rules: &[Rule],
    fields: &BTreeMap<String, FieldReport>,
    value_of: &impl Fn(&str) -> Option<i64>,
) -> Option<Suggestion> {
    let mut best: Option<Suggestion> = None;
    for fid in &rule.fields {
        let Some(report) = fields.get(fid) else {
            continue;
        };
        let current = value_of(fid);
        // The field's other hard rules that hold now must still hold.
        let keep: Vec<&Rule> = rules
            .iter()
            .filter(|r| {
                r.id != rule.id
                    && r.kind == RuleKind::Hard
                    && r.fields.contains(fid)
                    && r.evaluate(value_of) == RuleOutcome::Ok
            })
            .collect();
        for alt in &report.alternatives {
            let Some(v) = alt.value else { continue };
            if Some(v) == current
                || alt.probability < MIN_SUGGESTION_PROBABILITY
                || best
                    .as_ref()
                    .is_some_and(|b| b.probability >= alt.probability)
            {
                continue;
            }
            let with = |id: &str| if id == fid { Some(v) } else { value_of(id) };
            if rule.evaluate(&with) == RuleOutcome::Ok
                && keep.iter().all(|r| r.evaluate(&with) == RuleOutcome::Ok)
            {
                best = Some(Suggestion {
                    field: fid.clone(),
                    value: v,
                    probability: alt.probability,
                });
            }
        }
    }
    best
}

/// Alternatives less likely than this are not suggested: among the six kept per field, the
/// tail is noise that happens to fit some sum.
const MIN_SUGGESTION_PROBABILITY: f64 = 1e-6;

/// A reason for review, with a machine code and a human message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Flag {
    pub code: FlagCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// For `channel_disagreement`: which channel disagrees with the boxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
}

/// A channel that backs up a field's digit boxes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The OMR bubble columns under a candidate's boxes.
    Bubbles,
    /// The tally grid's count range.
    Tally,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FlagCode {
    LowConfidence,
    ChannelDisagreement,
    RuleViolated,
    OutOfRange,
    InvalidPattern,
    BlankField,
    AlignmentPoor,
    OffPhoto,
    PageMissing,
    PageDuplicate,
    NotAForm,
    UnreadableFile,
}

impl FlagCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagCode::LowConfidence => "low_confidence",
            FlagCode::ChannelDisagreement => "channel_disagreement",
            FlagCode::RuleViolated => "rule_violated",
            FlagCode::OutOfRange => "out_of_range",
            FlagCode::InvalidPattern => "invalid_pattern",
            FlagCode::BlankField => "blank_field",
            FlagCode::AlignmentPoor => "alignment_poor",
            FlagCode::OffPhoto => "off_photo",
            FlagCode::PageMissing => "page_missing",
            FlagCode::PageDuplicate => "page_duplicate",
            FlagCode::NotAForm => "not_a_form",
            FlagCode::UnreadableFile => "unreadable_file",
        }
    }
}

/// A candidate reading of one field.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    value: Option<i64>,
    prob: f64,
    labels: Vec<Label>,
}

/// Is a box label sequence a well-formed number? X/blank only before the first digit.
fn parse_labels(labels: &[Label]) -> Option<Option<i64>> {
    let mut value: Option<i64> = None;
    for l in labels {
        match (l, value) {
            (Label::Digit(d), v) => value = Some(v.unwrap_or(0) * 10 + i64::from(*d)),
            (Label::X | Label::Blank, None) => {}
            (Label::X | Label::Blank, Some(_)) => return None,
        }
    }
    Some(value)
}

/// Likelihood factor of a box label given its bubble column.
fn bubble_factor(label: Label, col: &BubbleColumn, reliability: f64) -> f64 {
    let miss = (1.0 - reliability) / 11.0;
    match col.state {
        BubbleState::One(d) => match label {
            Label::Digit(x) if x == d => reliability,
            // Officers may fill bubble 0 (or nothing) for an unused leading position.
            Label::X | Label::Blank if d == 0 => reliability,
            _ => miss,
        },
        BubbleState::Empty => match label {
            Label::X | Label::Blank => reliability,
            // An empty column is weak evidence: officers skip bubbles often.
            _ => 0.5,
        },
        BubbleState::Ambiguous => 1.0,
    }
}

/// `pred` with its blank reading trusted at `p_blank`: the other labels keep their shares of
/// what is left. Invariant: the top-k stays a sub-distribution (sums to at most 1) in the same
/// order; a prediction whose first label is not blank, or that is already surer, is returned
/// unchanged.
pub fn trust_blank(pred: &Prediction, p_blank: f32) -> Prediction {
    if pred.label != Label::Blank || pred.confidence >= p_blank {
        return *pred;
    }
    let scale = (1.0 - p_blank) / (1.0 - pred.confidence).max(f32::EPSILON);
    let mut top = pred.top;
    for (l, p) in top.iter_mut() {
        *p = if *l == Label::Blank {
            p_blank
        } else {
            *p * scale
        };
    }
    Prediction {
        label: Label::Blank,
        confidence: p_blank,
        top,
    }
}

/// `ev` with the blank readings of its quiet boxes trusted (see [`QUIET_BLANK_CONFIDENCE`]).
fn with_quiet_blanks(ev: &FieldEvidence) -> FieldEvidence {
    let mut out = ev.clone();
    for &i in &ev.quiet {
        if let Some(p) = out.boxes.get_mut(i) {
            *p = trust_blank(p, QUIET_BLANK_CONFIDENCE);
        }
    }
    out
}

/// Per-box probabilities over the top-k labels (optionally reweighted by bubbles), then the
/// most probable well-formed readings of the whole field.
fn candidates(ev: &FieldEvidence, cfg: &DecideConfig, use_bubbles: bool) -> Vec<Candidate> {
    let per_box: Vec<Vec<(Label, f64)>> = ev
        .boxes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut opts: Vec<(Label, f64)> =
                p.top.iter().map(|(l, pr)| (*l, f64::from(*pr))).collect();
            if use_bubbles && let Some(col) = ev.bubbles.as_ref().and_then(|b| b.get(i)) {
                // Posterior over the top-k only; mass outside top-k stays as "unexplained"
                // by scaling with the original total.
                let total: f64 = opts.iter().map(|o| o.1).sum();
                let weighted: Vec<f64> = opts
                    .iter()
                    .map(|(l, pr)| pr * bubble_factor(*l, col, cfg.bubble_reliability))
                    .collect();
                let wsum: f64 = weighted.iter().sum();
                // The mass outside the top-k: when the bubbles state a label none of the top-k
                // is, that label lies out there, so (at most) all of it agrees with them.
                // Weighting it as a disagreement would let a clear bubble vanish in the
                // renormalisation, leaving the top reading as sure as before.
                let outside_agrees = matches!(col.state, BubbleState::One(_))
                    && !opts.iter().any(|(l, _)| {
                        bubble_factor(*l, col, cfg.bubble_reliability) >= cfg.bubble_reliability
                    });
                let rest_factor = if outside_agrees {
                    cfg.bubble_reliability
                } else {
                    1.0 - cfg.bubble_reliability
                };
                let rest = (1.0 - total).max(0.0) * rest_factor;
                let norm = wsum + rest;
                if norm > 0.0 {
                    for (o, w) in opts.iter_mut().zip(weighted) {
                        o.1 = w / norm;
                    }
                }
            }
            opts
        })
        .collect();
    let mut out: Vec<Candidate> = vec![Candidate {
        value: None,
        prob: 1.0,
        labels: Vec::new(),
    }];
    for opts in &per_box {
        let mut next = Vec::with_capacity(out.len() * opts.len());
        for c in &out {
            for (l, p) in opts {
                let mut labels = c.labels.clone();
                labels.push(*l);
                next.push(Candidate {
                    value: None,
                    prob: c.prob * p,
                    labels,
                });
            }
        }
        next.sort_by(|a, b| b.prob.total_cmp(&a.prob));
        // Keep the search bounded: products of top-3 over <= 4 boxes stay small anyway.
        next.truncate(64);
        out = next;
    }
    let mut merged: Vec<Candidate> = Vec::new();
    for mut c in out {
        let Some(v) = parse_labels(&c.labels) else {
            continue;
        };
        c.value = v;
        if let Some(m) = merged.iter_mut().find(|m| m.value == c.value) {
            m.prob += c.prob;
        } else {
            merged.push(c);
        }
    }
    merged.sort_by(|a, b| b.prob.total_cmp(&a.prob));
    merged.retain(|c| c.prob >= MIN_ALTERNATIVE_PROB);
    merged.truncate(cfg.max_alternatives);
    merged
}

/// The rules that bound a field no equality rule reads, such as `date.day >= 14` and
/// `date.day <= 15`: rules that read that field alone. Such a field's own reading is its only
/// evidence, so a range its rules expect is the one thing that can tell a likely reading from an
/// unlikely one (see [`weigh_by_range`]).
fn range_only_rules<'r>(template: &Template, rules: &'r [Rule]) -> HashMap<String, Vec<&'r Rule>> {
    let unchecked = unchecked_fields(template, rules);
    let mut out: HashMap<String, Vec<&Rule>> = HashMap::new();
    for rule in rules {
        if let [only] = rule.fields.as_slice()
            && unchecked.contains(only)
        {
            out.entry(only.clone()).or_default().push(rule);
        }
    }
    out
}

/// Re-weigh a field's alternatives by the range its rules `bounds` expect (rules reading only
/// this field): a value that breaks a soft rule counts `soft_rule_error_prior` times as likely
/// as one that keeps it (a hard rule: `officer_error_prior`), as when an officer writes a date
/// outside the counting days. See [`reweigh`] for when it applies.
fn weigh_by_range(cs: &mut [Candidate], id: &str, bounds: &[&Rule], cfg: &DecideConfig) {
    reweigh(cs, |v| {
        let at = |f: &str| (f == id).then_some(v);
        bounds
            .iter()
            .filter(|rule| matches!(rule.evaluate(&at), RuleOutcome::Violated { .. }))
            .map(|rule| match rule.kind {
                RuleKind::Hard => cfg.officer_error_prior,
                RuleKind::Soft => cfg.soft_rule_error_prior,
            })
            .product()
    });
}

/// How much less likely a row total outside its tally row's range ([`TallyRange`]) is than one
/// inside it, as a likelihood ratio of the tally channel. Measured on seeds 141 (3 MP), 161
/// (3 MP) and 162 (12 MP), hard cases and officer errors included: the truth lies outside the
/// range read from the row for 93 of 5,790, 83 of 5,740 and 46 of 5,830 row totals (0.8-1.6 %,
/// a ratio of about 0.016); 0.05 errs towards doubt. Only row totals are weighed: for the grids'
/// totals (`votes.N`, `invalid`) the truth lies outside the whole grid's range for 44 of 1,158,
/// 45 of 1,148 and 16 of 1,166 (1.4-3.9 %, mostly cells missed on pages with a hard case), too
/// close to this weight to leave a margin, and those fields have bubbles or sums instead.
pub const TALLY_OUTSIDE_WEIGHT: f64 = 0.05;

/// Re-weigh a row total's alternatives by its tally row's count range, an independent channel
/// like the bubbles: a value outside `range` counts [`TALLY_OUTSIDE_WEIGHT`] times as likely as
/// one inside. See [`reweigh`] for when it applies.
fn weigh_by_tally(cs: &mut [Candidate], range: TallyRange) {
    reweigh(cs, |v| {
        if v < i64::from(range.min) || v > i64::from(range.max) {
            TALLY_OUTSIDE_WEIGHT
        } else {
            1.0
        }
    });
}

/// Multiply each alternative's probability by `weight(value)` (at most 1) and normalise.
/// Applied only when the first reading has weight 1, so evidence from outside the boxes never
/// changes what is reported, only how sure it is (a first reading the evidence speaks against is
/// flagged by its rule or channel instead); the mass outside the listed alternatives keeps its
/// full weight (it may hold values the evidence favours), as does a field read as nothing.
/// Invariants: the first reading stays first (its weight is the largest), the alternatives stay
/// sorted by probability, and with the unlisted mass they still sum to what they summed to.
fn reweigh(cs: &mut [Candidate], weight: impl Fn(i64) -> f64) {
    let w = |c: &Candidate| c.value.map_or(1.0, &weight);
    if cs.first().map(w) != Some(1.0) {
        return;
    }
    let listed: f64 = cs.iter().map(|c| c.prob).sum();
    let unlisted = (1.0 - listed).max(0.0);
    let weights: Vec<f64> = cs.iter().map(w).collect();
    let norm = cs
        .iter()
        .zip(&weights)
        .map(|(c, w)| c.prob * w)
        .sum::<f64>()
        + unlisted;
    if norm <= 0.0 {
        return;
    }
    let scale = (listed + unlisted) / norm;
    for (c, w) in cs.iter_mut().zip(&weights) {
        c.prob *= w * scale;
    }
    // Stable: the first reading, whose weight is the largest, keeps its place on a tie.
    cs.sort_by(|a, b| b.prob.total_cmp(&a.prob));
}

/// The number the bubbles state: empty leading columns count as unused positions; `None` when
/// a column is ambiguous or an empty column follows a filled one.
fn bubbles_value(cols: &[BubbleColumn]) -> Option<i64> {
    let mut v: Option<i64> = None;
    for c in cols {
        match (c.state, v) {
            (BubbleState::One(d), _) => v = Some(v.unwrap_or(0) * 10 + i64::from(d)),
            (BubbleState::Empty, None) => {}
            _ => return None,
        }
    }
    Some(v.unwrap_or(0))
}

/// A bubble holding a faint mark in a column read as empty: the only bubble inked at
/// [`FAINT_BUBBLE_MIN`] or more while every other stays at [`FAINT_OTHERS_MAX`] or less. Measured
/// on the columns read as empty in seeds 43 / 53 / 52 / 75 (245 / 266 / 274 / 119 columns, of
/// which 47 / 60 / 53 / 27 hold a mark by the truth): this finds the marked digit in 23 / 17 / 1
/// / 10 of them and names a digit in none of the others; on the screen photos of seed 66, one
/// wrong digit in 105 columns (a flag, never an acceptance: a faint mark is not used as
/// evidence for the value, only as a disagreement).
///
/// With `baseline` (each digit's fill in the submission's other bubble columns, see
/// [`bubble_baseline`]) the fills are first taken net of it: the small digit printed in each
/// bubble inks 0.1-0.26 of it on sharp photos, which hid most faint marks from the raw test
/// (seed 112, s0044: a faint 3 at 0.34 beside printed digits at 0.10-0.26, the boxes said 5).
fn faint_mark(fill: &[f64], baseline: Option<&[f64; 10]>) -> Option<u8> {
    let net: Vec<f64> = match baseline {
        Some(b) => fill.iter().zip(b).map(|(f, b)| f - b).collect(),
        None => fill.to_vec(),
    };
    let (min_top, max_others) = match baseline {
        Some(_) => (FAINT_EXCESS_MIN, FAINT_EXCESS_OTHERS_MAX),
        None => (FAINT_BUBBLE_MIN, FAINT_OTHERS_MAX),
    };
    let (m, top) = net
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(m, f)| (m, *f))?;
    let quiet = net
        .iter()
        .enumerate()
        .all(|(i, f)| i == m || *f <= max_others);
    (top >= min_top && quiet).then_some(m as u8)
}

/// Fill share from which a lone mark in an empty-read column counts as a faint mark.
const FAINT_BUBBLE_MIN: f64 = 0.15;
/// ... while every other bubble of the column stays at or under this.
const FAINT_OTHERS_MAX: f64 = 0.05;
/// The same two bounds for fills net of the submission's baseline. Chosen on the empty-read
/// columns of seeds 81, 82, 84, 101-104 and the fonts seed 105 (1,508 columns, 412 marked by the
/// truth): 0.1 / 0.05 names the marked digit in 205 (the raw test above: 86 of the 328 marked
/// columns of the paper sets among them), another digit in 10 and a mark in 4 of the 1,096
/// unmarked columns, all 4 on photos of a screen; 0.08 / 0.05 found 221 but 11 false marks.
const FAINT_EXCESS_MIN: f64 = 0.1;
const FAINT_EXCESS_OTHERS_MAX: f64 = 0.05;
/// Other bubble columns needed for a baseline (a submission's page 2 holds nine).
const MIN_BASELINE_COLUMNS: usize = 4;

/// Each digit's baseline fill for one bubble column: the median fill of that digit's bubble over
/// the submission's other columns (`all`, `skip` being the column itself) that did not read that
/// digit as filled: the ink the printed outline and digit leave in that bubble on this photo.
/// `None` when fewer than [`MIN_BASELINE_COLUMNS`] columns can tell.
fn bubble_baseline(all: &[&BubbleColumn], skip: &BubbleColumn) -> Option<[f64; 10]> {
    let mut out = [0.0; 10];
    for (d, slot) in out.iter_mut().enumerate() {
        let mut v: Vec<f64> = all
            .iter()
            .filter(|c| !std::ptr::eq(**c, skip) && c.state != BubbleState::One(d as u8))
            .filter_map(|c| c.fill.get(d).copied())
            .collect();
        if v.len() < MIN_BASELINE_COLUMNS {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        *slot = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
    }
    Some(out)
}

/// What a field's bubble columns say against its boxes (box-only reading).
#[derive(Debug, Default)]
struct BubbleFindings {
    /// Columns whose bubbles contradict the box above them: a clearly filled bubble of another
    /// digit (a non-zero one under an X/blank box), or, in a column with several or partly
    /// filled bubbles, another digit filled most, or, in a column read as empty, a faint mark
    /// of another digit ([`faint_mark`]). (column, box label, bubble digit) per conflict.
    conflicts: Vec<(usize, Label, u8)>,
    /// Columns that cannot vouch for the digit above them although the officer used the
    /// bubbles: read as empty (no faint mark either) under a digit box, in a field where
    /// another column reads one clearly filled bubble. An officer who fills bubbles fills every
    /// used position, so such a column most likely holds a mark too faint for the photo, which
    /// may state another digit: seeds 186 / 187 (300 submissions each), 17 / 24 such fields,
    /// one of them an officer's bubble 7 under a box 8 (fill 0.21 beside 0.13-0.25 in its
    /// column's other bubbles), which left unflagged with the boxes accepted. A leading 0 box
    /// (a position the officer may treat as unused) is left out; a field with no column filled
    /// has none (officers often skip the bubbles). (column, box label) per column.
    unmarked: Vec<(usize, Label)>,
}

/// [`BubbleFindings`] of the boxes `labels` over their bubble `cols` (`all`: every bubble column
/// of the submission, for the faint-mark baseline). Columns without any finding state nothing.
fn bubble_findings(
    labels: &[Label],
    cols: &[BubbleColumn],
    all: &[&BubbleColumn],
) -> BubbleFindings {
    let officer_filled = cols.iter().any(|c| matches!(c.state, BubbleState::One(_)));
    let mut out = BubbleFindings::default();
    let mut leading = true;
    for (i, (l, c)) in labels.iter().zip(cols).enumerate() {
        let expected = match l {
            Label::Digit(x) => *x,
            Label::X | Label::Blank => 0,
        };
        let leading_zero = match l {
            Label::Digit(d) => {
                let z = leading && *d == 0 && i + 1 < labels.len();
                leading &= z;
                z
            }
            Label::X | Label::Blank => false,
        };
        match c.state {
            BubbleState::One(d) if d != expected => out.conflicts.push((i, *l, d)),
            // Read as empty, yet one bubble holds a faint mark and no other any ink.
            BubbleState::Empty => match faint_mark(&c.fill, bubble_baseline(all, c).as_ref()) {
                Some(d) if d != expected => out.conflicts.push((i, *l, d)),
                None if officer_filled && matches!(l, Label::Digit(_)) && !leading_zero => {
                    out.unmarked.push((i, *l))
                }
                _ => {}
            },
            // Several or partly filled: conflicting when the most filled bubble is another
            // digit than the box's (stray marks beside the right bubble are tolerated).
            BubbleState::Ambiguous => {
                let most = c
                    .fill
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(m, f)| (m as u8, *f));
                if let Some((m, f)) = most
                    && m != expected
                    && f >= crate::segment::BUBBLE_EMPTY
                {
                    out.conflicts.push((i, *l, m));
                }
            }
            _ => {}
        }
    }
    out
}

/// Decision for a whole submission.
#[derive(Debug, Clone)]
pub struct Decision {
    pub fields: BTreeMap<String, FieldReport>,
    pub checks: Vec<CheckReport>,
    pub flags: Vec<Flag>,
}

/// Decide every numeric field of `template`. `evidence` holds the fields that were read;
/// fields of pages that were not found are absent and reported `missing`.
pub fn decide(template: &Template, evidence: &[FieldEvidence], cfg: &DecideConfig) -> Decision {
    decide_pages(template, evidence, &HashSet::new(), cfg)
}

/// [`decide`], where `unread_pages` were identified but deliberately not read (too few
/// registration marks): their fields are missing for that reason (`alignment_poor`), not because
/// the page is absent (`page_missing`).
pub fn decide_pages(
    template: &Template,
    evidence: &[FieldEvidence],
    unread_pages: &HashSet<u32>,
    cfg: &DecideConfig,
) -> Decision {
    let rules = template.rules();
    let range_rules = range_only_rules(template, &rules);
    let by_id: HashMap<&str, &FieldEvidence> =
        evidence.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut flags: Vec<Flag> = Vec::new();
    let mut fields: BTreeMap<String, FieldReport> = BTreeMap::new();
    let mut cands: HashMap<String, Vec<Candidate>> = HashMap::new();
    let mut doubtful_fields: HashSet<String> = HashSet::new();
    // Every bubble column of the submission: the baselines of the faint-mark test.
    let all_bubbles: Vec<&BubbleColumn> = evidence
        .iter()
        .filter_map(|e| e.bubbles.as_deref())
        .flatten()
        .collect();

    for f in template.numeric_fields() {
        let Some(ev) = by_id.get(f.id.as_str()) else {
            fields.insert(
                f.id.clone(),
                FieldReport {
                    value: None,
                    status: FieldStatus::Missing,
                    confidence: 0.0,
                    reading_confidence: None,
                    reading_floor: None,
                    boxes: Vec::new(),
                    channels: Channels::default(),
                    alternatives: Vec::new(),
                    resolved_by: Vec::new(),
                    flags: vec![
                        if unread_pages.contains(&f.page) {
                            FlagCode::AlignmentPoor
                        } else {
                            FlagCode::PageMissing
                        }
                        .as_str()
                        .into(),
                    ],
                    source: None,
                },
            );
            continue;
        };
        let adjusted;
        let ev = if ev.quiet.is_empty() {
            *ev
        } else {
            adjusted = with_quiet_blanks(ev);
            &adjusted
        };
        let mut cs = candidates(ev, cfg, true);
        if let Some(bounds) = range_rules.get(f.id.as_str()) {
            weigh_by_range(&mut cs, &f.id, bounds, cfg);
        }
        if let (FieldKind::RowTotals, Some(range)) = (f.kind, ev.tally) {
            weigh_by_tally(&mut cs, range);
        }
        let box_only = candidates(ev, cfg, false);
        let mut report = FieldReport {
            value: cs.first().and_then(|c| c.value),
            status: FieldStatus::Flagged,
            confidence: cs.first().map(|c| c.prob).unwrap_or(0.0),
            reading_confidence: None,
            reading_floor: None,
            boxes: ev
                .boxes
                .iter()
                .map(|p| BoxReport {
                    label: p.label,
                    confidence: p.confidence,
                    top: p.top.to_vec(),
                })
                .collect(),
            channels: Channels {
                bubbles_value: ev.bubbles.as_deref().and_then(bubbles_value),
                bubbles: ev.bubbles.clone(),
                tally: ev.tally,
            },
            alternatives: cs
                .iter()
                .map(|c| Alternative {
                    value: c.value,
                    probability: c.prob,
                })
                .collect(),
            resolved_by: Vec::new(),
            flags: Vec::new(),
            source: ev.source.clone(),
        };
        let mut field_flag = |report: &mut FieldReport,
                              code: FlagCode,
                              channel: Option<Channel>,
                              message: String| {
            report.flags.push(code.as_str().into());
            flags.push(Flag {
                code,
                message,
                field: Some(f.id.clone()),
                rule: None,
                page: Some(f.page),
                file: None,
                channel,
            });
        };
        if cs.is_empty() {
            field_flag(
                &mut report,
                FlagCode::InvalidPattern,
                None,
                format!(
                    "{}: the boxes do not read as a number (X or blank after a digit)",
                    f.id
                ),
            );
        }
        // Channel: bubbles vs boxes (box-only reading, so the bubbles cannot vote for themselves).
        if let (Some(cols), Some(top)) = (ev.bubbles.as_deref(), box_only.first()) {
            let found = bubble_findings(&top.labels, cols, &all_bubbles);
            let message = if !found.conflicts.is_empty() {
                let detail: Vec<String> = found
                    .conflicts
                    .iter()
                    .map(|(i, l, d)| format!("box {} reads {l}, its bubble {d}", i + 1))
                    .collect();
                Some(format!(
                    "{}: the bubbles disagree with the boxes ({})",
                    f.id,
                    detail.join("; ")
                ))
            } else if !found.unmarked.is_empty() {
                let detail: Vec<String> = found
                    .unmarked
                    .iter()
                    .map(|(i, l)| format!("box {} reads {l}, its bubble column is empty", i + 1))
                    .collect();
                Some(format!(
                    "{}: the bubbles do not confirm the boxes ({}), though the officer filled \
                     other columns: a mark too faint for the photo may state another digit; \
                     check the bubbles",
                    f.id,
                    detail.join("; ")
                ))
            } else {
                None
            };
            if let Some(message) = message {
                field_flag(
                    &mut report,
                    FlagCode::ChannelDisagreement,
                    Some(Channel::Bubbles),
                    message,
                );
            }
        }
        if let (Some(t), Some(v)) = (ev.tally, report.value) {
            let in_order_min = in_order_tally_min(t.cells_marked);
            let message = if v < i64::from(t.min) || v > i64::from(t.max) {
                Some(format!(
                    "{}: value {v} is outside the tally grid's range {}..={} ({} cells marked)",
                    f.id, t.min, t.max, t.cells_marked
                ))
            } else if f.kind == FieldKind::RowTotals && v < in_order_min {
                Some(format!(
                    "{}: value {v} is below what the tally row's {} marked cells hold when filled \
                     in order (at least {in_order_min})",
                    f.id, t.cells_marked
                ))
            } else {
                None
            };
            if let Some(message) = message {
                field_flag(
                    &mut report,
                    FlagCode::ChannelDisagreement,
                    Some(Channel::Tally),
                    message,
                );
            }
        }
        if !ev.page_good {
            field_flag(
                &mut report,
                FlagCode::AlignmentPoor,
                None,
                format!("{}: the page could not be aligned precisely", f.id),
            );
        }
        if !ev.doubtful.is_empty() {
            // The model cannot see what the photo lost; never accept such a reading.
            report.confidence = report.confidence.min(DOUBTFUL_CONFIDENCE_CAP);
            field_flag(
                &mut report,
                FlagCode::LowConfidence,
                None,
                format!(
                    "{}: faint ink or glare in box {} (too little contrast to read)",
                    f.id,
                    ev.doubtful
                        .iter()
                        .map(|i| (i + 1).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if ev.off_photo {
            field_flag(
                &mut report,
                FlagCode::OffPhoto,
                None,
                format!("{}: part of the boxes is outside the photo", f.id),
            );
        }
        if !ev.doubtful.is_empty() {
            doubtful_fields.insert(f.id.clone());
        }
        cands.insert(f.id.clone(), cs);
        fields.insert(f.id.clone(), report);
    }

    // What the rules may change, as read before them (for `relift_through_sure_partners`).
    let unresolved: HashMap<String, (Option<i64>, f64)> = fields
        .iter()
        .map(|(id, r)| (id.clone(), (r.value, r.confidence)))
        .collect();
    // The range rules already weighed their field's alternatives (`weigh_by_range`); the joint
    // search over the other rules must not count them a second time.
    let joint_rules: Vec<Rule> = rules
        .iter()
        .filter(|r| !matches!(r.fields.as_slice(), [only] if range_rules.contains_key(only)))
        .cloned()
        .collect();
    resolve_with_rules(&joint_rules, &mut fields, &cands, &doubtful_fields, cfg);
    let capped = cap_unsupported_lifts(&joint_rules, &mut fields, &cands, cfg);
    if !capped.is_empty() {
        relift_through_sure_partners(
            &joint_rules,
            &unresolved,
            &mut fields,
            &cands,
            &doubtful_fields,
            cfg,
            &capped,
        );
    }

    // Fields no equality rule reads are accepted on the model's word alone: stricter threshold.
    // So are fields whose every equality rule reads another field that is unsure on its own: such
    // a rule cannot catch a misread, since the unsure partner may be misread to match (seed 45,
    // a fine-tuned model: invalid.row1 read 6 for 5 at p = 0.995 while the total, read 6 at
    // p = 0.50, made the rows' sum hold).
    let unchecked_ids = unchecked_fields(template, &rules);
    // A row total whose boxes are all blank or X is reported missing (flagged), but an officer
    // leaves the rows a tally did not reach empty: the checks count such a row as 0, so a sum
    // over the rows stays decidable (seed 77: row 5 left empty made the rows' sum unknown, and a
    // misread row 2 went unchecked). Only the checks do: no reading is lifted by it.
    let blank_rows: HashSet<String> = template
        .numeric_fields()
        .filter(|f| f.kind == FieldKind::RowTotals)
        .filter(|f| {
            fields
                .get(&f.id)
                .is_some_and(|r| r.value.is_none() && !r.alternatives.is_empty())
        })
        .map(|f| f.id.clone())
        .collect();
    // The values are final from here on (the acceptance below changes statuses and flags only),
    // so each rule is evaluated once: for the contested fields now and the checks below.
    let outcomes: Vec<RuleOutcome> = rules
        .iter()
        .map(|rule| rule.evaluate(&|id: &str| checked_value(&fields, &blank_rows, id)))
        .collect();
    let contested = contested_fields(&rules, &outcomes);
    // Each field's reading on its own evidence (a missing field: 0). The acceptance below only
    // turns fields without a value into missing ones, which the partner test skips anyway.
    let mut own = own_confidences(&fields, &cands);
    let sure_checked = checked_by_sure_partners(&rules, &fields, &own, &contested, cfg);
    let threshold_of = |id: &str| {
        if unchecked_ids.contains(id) || !sure_checked.contains(id) {
            cfg.accept_threshold.max(cfg.unchecked_accept_threshold)
        } else {
            cfg.accept_threshold
        }
    };

    // Accept or flag each field on its own evidence.
    for f in template.numeric_fields() {
        let Some(r) = fields.get_mut(&f.id) else {
            continue;
        };
        if r.status == FieldStatus::Missing {
            continue;
        }
        if r.value.is_none() && !r.alternatives.is_empty() {
            r.status = FieldStatus::Missing;
            r.flags.push(FlagCode::BlankField.as_str().into());
            flags.push(Flag {
                code: FlagCode::BlankField,
                message: format!("{}: every box is blank or X", f.id),
                field: Some(f.id.clone()),
                rule: None,
                page: Some(f.page),
                file: None,
                channel: None,
            });
            continue;
        }
        let needed = threshold_of(&f.id);
        if r.confidence < needed && r.flags.is_empty() {
            r.flags.push(FlagCode::LowConfidence.as_str().into());
            flags.push(Flag {
                code: FlagCode::LowConfidence,
                message: format!(
                    "{}: read as {} with probability {:.3} (needs {:.3})",
                    f.id,
                    r.value.map_or("nothing".into(), |v| v.to_string()),
                    r.confidence,
                    needed
                ),
                field: Some(f.id.clone()),
                rule: None,
                page: Some(f.page),
                file: None,
                channel: None,
            });
        }
    }

    // Checks on the final values (empty row totals as 0); violations flag every field they read.
    let value_of = |id: &str| checked_value(&fields, &blank_rows, id);
    let mut checks = Vec::new();
    let mut rule_flags: Vec<(Vec<String>, Flag)> = Vec::new();
    for (rule, outcome) in rules.iter().zip(&outcomes) {
        let values: BTreeMap<String, Option<i64>> = rule
            .fields
            .iter()
            .map(|f| (f.clone(), value_of(f)))
            .collect();
        let (status, lhs, rhs) = match outcome {
            RuleOutcome::Ok => (CheckStatus::Ok, None, None),
            RuleOutcome::Violated { lhs, rhs } => (CheckStatus::Violated, Some(*lhs), Some(*rhs)),
            RuleOutcome::Unknown { .. } => (CheckStatus::Unknown, None, None),
        };
        let suggestion = if status == CheckStatus::Violated {
            suggest(rule, &rules, &fields, &value_of)
        } else {
            None
        };
        if status == CheckStatus::Violated {
            let hint = suggestion.as_ref().map_or(String::new(), |s| {
                let p = if s.probability >= 1e-3 {
                    format!("{:.3}", s.probability)
                } else {
                    format!("{:.1e}", s.probability)
                };
                format!(
                    " Possible misreading: {} may be {} (an alternative reading, p = {p}), \
                     which makes this rule hold; check the photo.",
                    s.field, s.value
                )
            });
            let code = if rule.id.starts_with("count_max") {
                FlagCode::OutOfRange
            } else {
                FlagCode::RuleViolated
            };
            rule_flags.push((
                rule.fields.clone(),
                Flag {
                    code,
                    message: format!(
                        "{} ({}): {} — {}{hint}",
                        rule.id,
                        match rule.kind {
                            RuleKind::Hard => "hard",
                            RuleKind::Soft => "soft",
                        },
                        rule.check_text(),
                        rule.message_en
                    ),
                    field: None,
                    rule: Some(rule.id.clone()),
                    page: None,
                    file: None,
                    channel: None,
                },
            ));
        }
        checks.push(CheckReport {
            rule: rule.id.clone(),
            kind: rule.kind,
            status,
            check: rule.check_text(),
            lhs,
            rhs,
            values,
            suggestion,
        });
    }
    for (fs, flag) in rule_flags {
        for fid in &fs {
            if let Some(r) = fields.get_mut(fid) {
                let code = flag.code.as_str().to_string();
                if !r.flags.contains(&code) {
                    r.flags.push(code);
                }
            }
        }
        flags.push(flag);
    }
    // Rules may confirm a reading only when it was already fairly sure on its own evidence;
    // a less sure one only through partners that are sure on theirs.
    // A partner that a broken rule contradicts is no witness, however sure its reading (seed 91,
    // handwriting fonts: ballots.used read 103 for 183 at p = 1.0, broken against the total,
    // confirmed ballots.received read 210 for 290 at 0.98 through the ballots' balance).
    for (id, r) in &fields {
        if r.status == FieldStatus::Missing {
            own.insert(id.clone(), 0.0);
        }
    }
    let witness: HashMap<String, f64> = own
        .iter()
        .map(|(id, p)| (id.clone(), if contested.contains(id) { 0.0 } else { *p }))
        .collect();
    let by_id: HashMap<&str, &Rule> = rules.iter().map(|r| (r.id.as_str(), r)).collect();
    for (id, r) in fields.iter_mut() {
        if r.status == FieldStatus::Missing {
            continue;
        }
        let mine = own.get(id).copied().unwrap_or(0.0);
        let floor = match weakest_partner(&by_id, &r.resolved_by, id, &witness) {
            // A box that may have lost a faint stroke: no reading of it is sure enough, at any
            // threshold (`rekap eval --tune` must not count such a field as the threshold's).
            _ if doubtful_fields.contains(id) => DOUBTFUL_READING_FLOOR,
            // No rule can vouch for it (no sure partners, or blind to a repeated misread): the
            // rules may not lift it either, its own reading must pass the stricter threshold.
            _ if !sure_checked.contains(id) => cfg.unchecked_accept_threshold,
            Some(p) if p >= cfg.strong_partner_confidence => cfg
                .min_reading_confidence_strong_partners
                .clamp(MIN_CONFIRMABLE_READING, cfg.min_reading_confidence),
            _ => cfg.min_reading_confidence,
        };
        r.reading_confidence = Some(mine);
        r.reading_floor = Some(floor);
        let passes = r.flags.is_empty() && r.confidence >= threshold_of(id);
        if passes && mine < floor {
            r.flags.push(FlagCode::LowConfidence.as_str().into());
            flags.push(Flag {
                code: FlagCode::LowConfidence,
                message: if sure_checked.contains(id) {
                    format!(
                        "{id}: read as {} with p = {mine:.3} on its own; the rules agree, but a \
                         reading needs p >= {} (or {} where every partner of those rules reads \
                         p >= {}) before they may confirm it",
                        r.value.map_or("blank".to_string(), |v| v.to_string()),
                        cfg.min_reading_confidence,
                        cfg.min_reading_confidence_strong_partners,
                        cfg.strong_partner_confidence
                    )
                } else {
                    format!(
                        "{id}: read as {} with p = {mine:.4} on its own; no rule can vouch for it \
                         (its partners are unsure, or a misread repeated in a partner would \
                         still add up), so it needs p >= {floor} on its own",
                        r.value.map_or("blank".to_string(), |v| v.to_string()),
                    )
                },
                field: Some(id.clone()),
                rule: None,
                page: None,
                file: None,
                channel: None,
            });
        }
        r.status = if passes && mine >= floor {
            FieldStatus::Accepted
        } else {
            FieldStatus::Flagged
        };
    }
    Decision {
        fields,
        checks,
        flags,
    }
}

/// Probability of reading `value` in field `id` on its own evidence (boxes, bubbles).
fn own_confidence(cands: &HashMap<String, Vec<Candidate>>, id: &str, value: Option<i64>) -> f64 {
    cands
        .get(id)
        .and_then(|cs| cs.iter().find(|c| c.value == value))
        .map_or(0.0, |c| c.prob)
}

/// A rule vouches for a reading only through partners that are sure on their own evidence.
/// Two misreads of one hand can add up: on seed 45 model v5 read a 3 as 2 at p = 0.9966 in
/// `disabled.lp`, and `disabled.lp = disabled.l + disabled.p` held because `disabled.l` was
/// misread too (2 as 1, p = 0.77); the joint posterior lifted the wrong 2 to 0.998. A field
/// whose confidence the rules raised keeps only its own reading's confidence when any rule it
/// was resolved with reads a partner below `min_partner_confidence` (or a missing one).
/// Invariant: afterwards, a confidence above the field's own reading rests only on rules whose
/// every other field reached `min_partner_confidence` on its own.
/// Returns the fields whose lift was removed.
fn cap_unsupported_lifts(
    rules: &[Rule],
    fields: &mut BTreeMap<String, FieldReport>,
    cands: &HashMap<String, Vec<Candidate>>,
    cfg: &DecideConfig,
) -> Vec<String> {
    let own = own_confidences(fields, cands);
    let by_id: HashMap<&str, &Rule> = rules.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut capped = Vec::new();
    for (id, r) in fields.iter_mut() {
        let mine = own.get(id).copied().unwrap_or(0.0);
        if r.confidence <= mine {
            continue;
        }
        if weakest_partner(&by_id, &r.resolved_by, id, &own)
            .is_some_and(|p| p < cfg.min_partner_confidence)
        {
            r.confidence = mine;
            capped.push(id.clone());
        }
    }
    capped
}

/// A field whose lift [`cap_unsupported_lifts`] removed may still be confirmed by the rules in
/// which every other field is sure on its own (at least `min_partner_confidence`): the joint
/// posterior is computed again from the readings as they were before the rules (`unresolved`:
/// each field's value and confidence) with those rules only, and the
/// field takes that confidence when it names the same value and is higher. Invariant: the
/// confidence of `capped` fields afterwards rests only on rules whose every other field reached
/// `min_partner_confidence` on its own, and `resolved_by` names exactly those rules.
fn relift_through_sure_partners(
    rules: &[Rule],
    unresolved: &HashMap<String, (Option<i64>, f64)>,
    fields: &mut BTreeMap<String, FieldReport>,
    cands: &HashMap<String, Vec<Candidate>>,
    doubtful: &HashSet<String>,
    cfg: &DecideConfig,
    capped: &[String],
) {
    let own = own_confidences(fields, cands);
    let sure = |f: &String| own.get(f).is_some_and(|p| *p >= cfg.min_partner_confidence);
    // Every kept rule has at most one field that is not sure: the capped field it is kept for.
    let kept: Vec<Rule> = rules
        .iter()
        .filter(|rule| {
            capped.iter().any(|id| {
                rule.fields.contains(id) && rule.fields.iter().all(|f| f == id || sure(f))
            })
        })
        .cloned()
        .collect();
    if kept.is_empty() {
        return;
    }
    let mut again = fields.clone();
    for (id, r) in again.iter_mut() {
        if let Some(&(value, confidence)) = unresolved.get(id) {
            (r.value, r.confidence) = (value, confidence);
        }
    }
    resolve_with_rules(&kept, &mut again, cands, doubtful, cfg);
    for id in capped {
        let (Some(r), Some(a)) = (fields.get_mut(id), again.get(id)) else {
            continue;
        };
        if a.value == r.value && a.confidence > r.confidence {
            r.confidence = a.confidence;
            r.resolved_by = a.resolved_by.clone();
        }
    }
}

/// Lowest bound `min_reading_confidence_strong_partners` may take: above one half, a reading is
/// the model's own first choice.
const MIN_CONFIRMABLE_READING: f64 = 0.5;

/// Each field's probability of its reported value on its own evidence (0 for a missing field).
fn own_confidences(
    fields: &BTreeMap<String, FieldReport>,
    cands: &HashMap<String, Vec<Candidate>>,
) -> HashMap<String, f64> {
    fields
        .iter()
        .map(|(id, r)| {
            let p = if r.status == FieldStatus::Missing {
                0.0
            } else {
                own_confidence(cands, id, r.value)
            };
            (id.clone(), p)
        })
        .collect()
}

/// The least sure reading (own evidence) among the other fields of the rules `rule_ids` that
/// read field `id`; `None` when those rules read no other field. A field unknown to `own` (not
/// in the template) counts as not read at all (0).
fn weakest_partner(
    by_id: &HashMap<&str, &Rule>,
    rule_ids: &[String],
    id: &str,
    own: &HashMap<String, f64>,
) -> Option<f64> {
    rule_ids
        .iter()
        .filter_map(|rid| by_id.get(rid.as_str()))
        .flat_map(|rule| rule.fields.iter())
        .filter(|f| f.as_str() != id)
        .map(|f| own.get(f).copied().unwrap_or(0.0))
        .reduce(f64::min)
}

/// One option of an uncertain field in the joint search: a listed alternative of the model
/// (`Some(value)`) or the unlisted remainder (`None`), with its prior probability.
type FieldOption = (Option<Option<i64>>, f64);

/// Let the rules choose among the alternatives of uncertain fields, and measure how sure the
/// cross-checks make each reading.
///
/// Confident fields (top probability >= threshold) are fixed. The uncertain fields that share a
/// rule form connected components; each component is solved on its own. A joint assignment of a
/// component's options is scored by
/// `prod P(option) * prod_rules (1 - e if the rule holds (or cannot be decided) else e)`
/// with `e` the officer-error prior of the rule's kind (hard or soft); each field also has an
/// "unlisted" option carrying the probability mass the model gave to readings outside its list,
/// which satisfies an equality rule with chance [`UNLISTED_SATISFIES_EQUALITY`] (an inequality
/// always).
///
/// The posterior of each option is computed exactly by variable elimination
/// ([`exact_posterior`]); where its tables would be too large, assignments are enumerated
/// best-first by prior (at most `max_joint_assignments` per component). Invariant: the reported
/// confidence never overstates the posterior. In the enumeration every rule factor is at most 1,
/// so the assignments not enumerated carry at most their prior mass `1 - prior_enumerated`,
/// which is added to the normaliser as if none of it favoured the best value.
///
/// Transcription stays faithful: a field's value changes only to a listed alternative of the
/// model, and only when the rules make that alternative reach the acceptance threshold.
fn resolve_with_rules(
    rules: &[Rule],
    fields: &mut BTreeMap<String, FieldReport>,
    cands: &HashMap<String, Vec<Candidate>>,
    doubtful: &HashSet<String>,
    cfg: &DecideConfig,
) {
    let linked: Vec<&Rule> = rules.iter().collect();
    let uncertain: Vec<String> = fields
        .iter()
        .filter(|(id, r)| {
            r.status != FieldStatus::Missing
                && r.confidence < cfg.accept_threshold
                && cands.get(*id).is_some_and(|c| !c.is_empty())
                && linked
                    .iter()
                    .any(|rule| rule.fields.iter().any(|f| f == *id))
        })
        .map(|(id, _)| id.clone())
        .collect();
    if uncertain.is_empty() {
        return;
    }
    let fixed: HashMap<String, Option<i64>> = fields
        .iter()
        .filter(|(id, _)| !uncertain.contains(id))
        .map(|(id, r)| (id.clone(), r.value))
        .collect();
    for component in rule_components(&uncertain, &linked) {
        let relevant: Vec<&Rule> = linked
            .iter()
            .copied()
            .filter(|r| r.fields.iter().any(|f| component.contains(f)))
            .collect();
        let options: Vec<Vec<FieldOption>> = component
            .iter()
            .map(|id| {
                field_options(
                    cands.get(id).map(|v| v.as_slice()).unwrap_or(&[]),
                    doubtful.contains(id),
                )
            })
            .collect();
        let post = exact_posterior(&component, &options, &relevant, &fixed, cfg)
            .or_else(|| joint_posterior(&component, &options, &relevant, &fixed, cfg));
        let Some(post) = post else {
            continue;
        };
        for (k, id) in component.iter().enumerate() {
            let Some(r) = fields.get_mut(id) else {
                continue;
            };
            let (best_i, best_p) = post[k]
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, p)| (i, *p))
                .unwrap_or((0, 0.0));
            let Some(mut value) = options[k][best_i].0 else {
                // The unlisted remainder is most probable: nothing to choose.
                r.confidence = r.confidence.min(best_p);
                continue;
            };
            let mut confidence = best_p;
            if value != r.value && best_p < cfg.accept_threshold {
                // Transcribe faithfully: the rules may replace the model's reading only when
                // they make the alternative certain; otherwise the written reading stays and
                // any rule it breaks is flagged.
                value = r.value;
                confidence = options[k]
                    .iter()
                    .zip(&post[k])
                    .find(|((v, _), _)| *v == Some(r.value))
                    .map_or(0.0, |(_, p)| *p);
            }
            r.value = value;
            r.confidence = confidence;
            r.resolved_by = relevant
                .iter()
                .filter(|rule| rule.fields.iter().any(|f| f == id))
                .map(|rule| rule.id.clone())
                .collect();
            r.alternatives = options[k]
                .iter()
                .zip(&post[k])
                .filter_map(|((v, _), p)| {
                    v.map(|v| Alternative {
                        value: v,
                        probability: *p,
                    })
                })
                .collect();
            r.alternatives
                .sort_by(|a, b| b.probability.total_cmp(&a.probability));
        }
    }
}

/// Connected components of `uncertain` fields, two fields being connected when some rule reads
/// both. Each component keeps the order of `uncertain`.
fn rule_components(uncertain: &[String], rules: &[&Rule]) -> Vec<Vec<String>> {
    let index: HashMap<&str, usize> = uncertain
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut parent: Vec<usize> = (0..uncertain.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for rule in rules {
        let members: Vec<usize> = rule
            .fields
            .iter()
            .filter_map(|f| index.get(f.as_str()).copied())
            .collect();
        for w in members.windows(2) {
            let (a, b) = (root(&mut parent, w[0]), root(&mut parent, w[1]));
            if a != b {
                parent[a] = b;
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, id) in uncertain.iter().enumerate() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(id.clone());
    }
    groups.into_values().collect()
}

/// A field's options for the joint search, most probable first: its listed alternatives and the
/// unlisted remainder. A field with a doubtful box (the photo may have lost ink the model could
/// not see) keeps at most [`DOUBTFUL_CONFIDENCE_CAP`] on its list; the rest is unlisted.
fn field_options(cs: &[Candidate], doubtful: bool) -> Vec<FieldOption> {
    let scale = if doubtful {
        let top = cs.first().map(|c| c.prob).unwrap_or(0.0);
        if top > DOUBTFUL_CONFIDENCE_CAP {
            DOUBTFUL_CONFIDENCE_CAP / top
        } else {
            1.0
        }
    } else {
        1.0
    };
    let mut o: Vec<FieldOption> = cs.iter().map(|c| (Some(c.value), c.prob * scale)).collect();
    let listed: f64 = o.iter().map(|x| x.1).sum();
    o.push((None, (1.0 - listed).max(0.0)));
    o.sort_by(|a, b| b.1.total_cmp(&a.1));
    o
}

/// Likelihood factor of one rule under an assignment of some of its fields (`assign`, where
/// `None` is the unlisted remainder) with the others read through `value`: the definition that
/// [`CompiledRule::factor`] computes without strings (the test compares them).
#[cfg(test)]
fn rule_factor(
    r: &Rule,
    assign: &HashMap<&str, Option<Option<i64>>>,
    value: &impl Fn(&str) -> Option<i64>,
    cfg: &DecideConfig,
) -> f64 {
    let e = match r.kind {
        RuleKind::Hard => cfg.officer_error_prior,
        RuleKind::Soft => cfg.soft_rule_error_prior,
    };
    if r.fields
        .iter()
        .any(|f| matches!(assign.get(f.as_str()), Some(None)))
    {
        // A reading outside the model's list is some other number: it satisfies an equality
        // only by chance, an inequality most likely.
        return if r.op == CmpOp::Eq {
            let q = UNLISTED_SATISFIES_EQUALITY;
            q * (1.0 - e) + (1.0 - q) * e
        } else {
            1.0 - e
        };
    }
    match r.evaluate(value) {
        RuleOutcome::Violated { .. } => e,
        _ => 1.0 - e,
    }
}

/// Where a rule's field gets its value inside one component's joint resolution.
#[derive(Clone, Copy)]
enum Slot {
    /// An uncertain field of the component: its option at this index of the assignment.
    Var(usize),
    /// A field outside the component: its reading (`None`: no value).
    Fixed(Option<i64>),
}

/// A rule with its field names resolved once per component, so that each entry of its factor
/// table is computed without hashing a string. [`CompiledRule::factor`] is [`rule_factor`]
/// to the bit: same checks, same sums in the same order.
struct CompiledRule {
    e: f64,
    op: CmpOp,
    /// One slot per field of the rule (`Rule::fields`).
    slots: Vec<Slot>,
    /// `(coef, index into slots or None for a constant)` per term, in the rule's order.
    lhs: Vec<(f64, Option<usize>)>,
    rhs: Vec<(f64, Option<usize>)>,
}

impl CompiledRule {
    fn new(
        r: &Rule,
        index: &HashMap<&str, usize>,
        fixed: &HashMap<String, Option<i64>>,
        cfg: &DecideConfig,
    ) -> Self {
        let e = match r.kind {
            RuleKind::Hard => cfg.officer_error_prior,
            RuleKind::Soft => cfg.soft_rule_error_prior,
        };
        let slots = r
            .fields
            .iter()
            .map(|f| match index.get(f.as_str()) {
                Some(k) => Slot::Var(*k),
                None => Slot::Fixed(fixed.get(f).copied().flatten()),
            })
            .collect();
        let terms = |x: &crate::template::rules::LinExpr| {
            x.terms
                .iter()
                .map(|t| {
                    let slot = t
                        .field
                        .as_ref()
                        .and_then(|f| r.fields.iter().position(|g| g == f));
                    (t.coef, slot)
                })
                .collect()
        };
        CompiledRule {
            e,
            op: r.op,
            slots,
            lhs: terms(&r.lhs),
            rhs: terms(&r.rhs),
        }
    }

    /// The rule's likelihood factor when component field `k` takes option `option(k)`.
    fn factor(&self, option: impl Fn(usize) -> Option<i64>, listed: impl Fn(usize) -> bool) -> f64 {
        let e = self.e;
        if self
            .slots
            .iter()
            .any(|s| matches!(s, Slot::Var(k) if !listed(*k)))
        {
            return if self.op == CmpOp::Eq {
                let q = UNLISTED_SATISFIES_EQUALITY;
                q * (1.0 - e) + (1.0 - q) * e
            } else {
                1.0 - e
            };
        }
        let value = |slot: usize| match self.slots.get(slot) {
            Some(Slot::Var(k)) => option(*k),
            Some(Slot::Fixed(v)) => *v,
            None => None,
        };
        // `LinExpr::eval`: constants add their coefficient; a field without a value makes the
        // side unknown, and an unknown rule is not violated.
        let side = |terms: &[(f64, Option<usize>)]| -> Option<f64> {
            let mut sum = 0.0;
            let mut known = true;
            for (coef, slot) in terms {
                match slot {
                    None => sum += coef,
                    Some(s) => match value(*s) {
                        Some(v) => sum += coef * v as f64,
                        None => known = false,
                    },
                }
            }
            known.then_some(sum)
        };
        match (side(&self.lhs), side(&self.rhs)) {
            (Some(l), Some(r)) if !self.op.holds(l, r) => e,
            _ => 1.0 - e,
        }
    }
}

/// Largest table the exact elimination may build (entries of f64: 32 MB).
const MAX_FACTOR_ENTRIES: usize = 1 << 22;

/// Exact posterior of each option of each field of one component by variable elimination
/// over the prior of every field and one factor per rule; `None` when a table would exceed
/// [`MAX_FACTOR_ENTRIES`] (the caller then falls back to the bounded enumeration).
fn exact_posterior(
    ids: &[String],
    options: &[Vec<FieldOption>],
    relevant: &[&Rule],
    fixed: &HashMap<String, Option<i64>>,
    cfg: &DecideConfig,
) -> Option<Vec<Vec<f64>>> {
    let cards: Vec<usize> = options.iter().map(|o| o.len()).collect();
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut factors = Vec::with_capacity(ids.len() + relevant.len());
    for (k, o) in options.iter().enumerate() {
        factors.push(factor::Factor::from_fn(
            &[(k, o.len())],
            MAX_FACTOR_ENTRIES,
            |a| o.get(a[0]).map_or(0.0, |x| x.1),
        )?);
    }
    for r in relevant {
        let mut vars: Vec<(usize, usize)> = r
            .fields
            .iter()
            .filter_map(|f| index.get(f.as_str()).map(|k| (*k, cards[*k])))
            .collect();
        vars.sort_unstable();
        vars.dedup();
        let compiled = CompiledRule::new(r, &index, fixed, cfg);
        // Position in `vars` (the table's assignment) of each component field the rule reads.
        let mut at = vec![usize::MAX; ids.len()];
        for (pos, (k, _)) in vars.iter().enumerate() {
            at[*k] = pos;
        }
        factors.push(factor::Factor::from_fn(&vars, MAX_FACTOR_ENTRIES, |a| {
            let opt = |k: usize| options[k].get(a.get(at[k]).copied().unwrap_or(0));
            compiled.factor(
                |k| opt(k).and_then(|o| o.0).flatten(),
                |k| opt(k).is_some_and(|o| o.0.is_some()),
            )
        })?);
    }
    let m = factor::marginals(&cards, &factors, MAX_FACTOR_ENTRIES)?;
    let z: f64 = m.first().map(|row| row.iter().sum()).unwrap_or(0.0);
    if z <= 0.0 || !z.is_finite() {
        return None;
    }
    Some(
        m.into_iter()
            .map(|row| row.into_iter().map(|p| p / z).collect())
            .collect(),
    )
}

/// Joint assignment under enumeration: option index per field, prior probability, and the
/// position of its last increment (each assignment has exactly one parent, see below).
struct Joint {
    prior: f64,
    idx: Box<[u8]>,
    pivot: usize,
}

impl PartialEq for Joint {
    fn eq(&self, other: &Self) -> bool {
        self.prior.total_cmp(&other.prior).is_eq()
    }
}
impl Eq for Joint {}
impl PartialOrd for Joint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Joint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.prior.total_cmp(&other.prior)
    }
}

/// Unlisted prior mass below which the enumeration of a component stops early.
const NEGLIGIBLE_REMAINING_PRIOR: f64 = 1e-12;

/// Posterior probability of each option of each field of one component (conservative, see
/// [`resolve_with_rules`]); `None` when nothing had positive weight.
///
/// Enumeration order: options are sorted by probability, so incrementing any index never raises
/// the prior. The children of an assignment are the assignments one step further at a position
/// at or after its pivot; every assignment other than all-zeros has exactly one parent (undo the
/// increment at its last non-zero position), so a max-heap pops each assignment once, in order of
/// decreasing prior.
fn joint_posterior(
    ids: &[String],
    options: &[Vec<FieldOption>],
    relevant: &[&Rule],
    fixed: &HashMap<String, Option<i64>>,
    cfg: &DecideConfig,
) -> Option<Vec<Vec<f64>>> {
    let n = ids.len();
    let prior_of = |idx: &[u8]| -> f64 {
        idx.iter()
            .zip(options)
            .map(|(i, o)| o.get(usize::from(*i)).map_or(0.0, |x| x.1))
            .product()
    };
    // Option indices are stored as bytes; `field_options` keeps at most `max_alternatives + 1`.
    if options.iter().any(|o| o.len() > usize::from(u8::MAX)) {
        return None;
    }
    let mut post: Vec<Vec<f64>> = options.iter().map(|o| vec![0.0; o.len()]).collect();
    let mut heap = std::collections::BinaryHeap::new();
    let start: Box<[u8]> = vec![0u8; n].into_boxed_slice();
    heap.push(Joint {
        prior: prior_of(&start),
        idx: start,
        pivot: 0,
    });
    let mut z = 0.0;
    let mut prior_seen = 0.0;
    let mut popped = 0usize;
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let compiled: Vec<CompiledRule> = relevant
        .iter()
        .map(|r| CompiledRule::new(r, &index, fixed, cfg))
        .collect();
    while let Some(j) = heap.pop() {
        if popped >= cfg.max_joint_assignments || 1.0 - prior_seen < NEGLIGIBLE_REMAINING_PRIOR {
            break;
        }
        popped += 1;
        prior_seen += j.prior;
        for k in j.pivot..n {
            if usize::from(j.idx[k]) + 1 < options[k].len() {
                let mut idx = j.idx.clone();
                idx[k] += 1;
                let prior = prior_of(&idx);
                if prior > 0.0 {
                    heap.push(Joint {
                        prior,
                        idx,
                        pivot: k,
                    });
                }
            }
        }
        if j.prior <= 0.0 {
            continue;
        }
        let opt = |k: usize| options[k].get(usize::from(j.idx[k])).and_then(|o| o.0);
        let mut p = j.prior;
        for r in &compiled {
            p *= r.factor(|k| opt(k).flatten(), |k| opt(k).is_some());
        }
        z += p;
        for (k, i) in j.idx.iter().enumerate() {
            post[k][usize::from(*i)] += p;
        }
    }
    // Mass of the assignments never scored: at most their prior (every factor is <= 1).
    let bound = z + (1.0 - prior_seen).max(0.0);
    if bound <= 0.0 {
        return None;
    }
    for row in &mut post {
        for p in row.iter_mut() {
            *p /= bound;
        }
    }
    Some(post)
}

/// Fields read by a rule (hard or soft, any comparison) that the fields' values break
/// (`outcomes[i]` is rule `i` evaluated with empty row totals as 0, see [`checked_value`]):
/// their values are in question, so they may not vouch for another field's reading.
fn contested_fields(rules: &[Rule], outcomes: &[RuleOutcome]) -> HashSet<String> {
    rules
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| matches!(o, RuleOutcome::Violated { .. }))
        .flat_map(|(r, _)| r.fields.iter().cloned())
        .collect()
}

/// A field's value as the checks use it: as read, and 0 for a row total left empty
/// (`blank_rows`: every box blank or X).
fn checked_value(
    fields: &BTreeMap<String, FieldReport>,
    blank_rows: &HashSet<String>,
    id: &str,
) -> Option<i64> {
    if blank_rows.contains(id) {
        return Some(0);
    }
    fields.get(id).and_then(|r| r.value)
}

/// Fields read by at least one equality rule (hard or soft) whose every other field is read,
/// uncontested (see [`contested_fields`]) and sure of its value on its own evidence (at least
/// `min_partner_confidence`). Only such a rule can tell a misread of the field from the truth;
/// the others may hold by a second misread.
fn checked_by_sure_partners(
    rules: &[Rule],
    fields: &BTreeMap<String, FieldReport>,
    own: &HashMap<String, f64>,
    contested: &HashSet<String>,
    cfg: &DecideConfig,
) -> HashSet<String> {
    let sure = |id: &str| {
        fields.get(id).is_some_and(|r| r.value.is_some())
            && !contested.contains(id)
            && own
                .get(id)
                .is_some_and(|p| *p >= cfg.min_partner_confidence)
    };
    let mut out = HashSet::new();
    for rule in rules.iter().filter(|r| r.op == CmpOp::Eq) {
        for id in &rule.fields {
            if !out.contains(id)
                && rule.fields.iter().all(|f| f == id || sure(f))
                && !blind_to_repeated_misread(rule, fields, id)
            {
                out.insert(id.clone());
            }
        }
    }
    out
}

/// A box read at least this sure is not suspected of a repeated misread (see
/// [`blind_to_repeated_misread`]).
const REPEAT_SUSPECT_BELOW: f32 = 0.999;

/// Can rule `rule` not see a misread of field `id` that the model repeats? One hand writes its
/// digits alike, and the model misreads a glyph alike wherever it stands: a digit `d` read in
/// the same column of several fields changes them all by the same amount when it is misread,
/// and an equality whose coefficients for those fields add up to zero (`b4.p == b1.p + b2.p +
/// b3.p` with `b1.p` and `b4.p` both holding it) still holds. Blind when that is so for any
/// digit box of `id` read under [`REPEAT_SUSPECT_BELOW`]. Measured: font-written seed 93 (model
/// v8), `b1.p` 91 read 11 (its 9 at 0.995) and accepted through `b4_sum.p`, whose `b4.p` held the
/// same misread 9 in the same column (93 read 13).
///
/// A box whose bubble column names its digit ([`bubble_confirms`]) takes no part: its digit has a
/// witness the handwriting cannot fool (a repeated misread there would need the officer's bubble
/// to match the misread too).
fn blind_to_repeated_misread(
    rule: &Rule,
    fields: &BTreeMap<String, FieldReport>,
    id: &str,
) -> bool {
    // Net coefficient of each field (left side minus right side).
    let coef = |f: &str| -> f64 {
        let side = |e: &crate::template::rules::LinExpr| -> f64 {
            e.terms
                .iter()
                .filter(|t| t.field.as_deref() == Some(f))
                .map(|t| t.coef)
                .sum()
        };
        side(&rule.lhs) - side(&rule.rhs)
    };
    // The label of field `f`'s box in column `k` counted from the right (units = 0), unless its
    // bubble confirms it.
    let label_at = |f: &str, k: usize| -> Option<Label> {
        let r = fields.get(f)?;
        let i = r.boxes.len().checked_sub(k + 1)?;
        (!bubble_confirms(r, i)).then_some(r.boxes[i].label)
    };
    let Some(mine) = fields.get(id) else {
        return false;
    };
    let n = mine.boxes.len();
    mine.boxes.iter().enumerate().any(|(i, b)| {
        let (Label::Digit(_), true) = (b.label, b.confidence < REPEAT_SUSPECT_BELOW) else {
            return false;
        };
        let k = n - 1 - i;
        if label_at(id, k).is_none() {
            return false;
        }
        let sharing: Vec<&String> = rule
            .fields
            .iter()
            .filter(|f| label_at(f, k) == Some(b.label))
            .collect();
        sharing.len() >= 2 && sharing.iter().map(|f| coef(f)).sum::<f64>().abs() < 1e-9
    })
}

/// Does box `i` of `r` have a bubble column stating its digit (exactly one bubble clearly filled,
/// the box's digit)?
fn bubble_confirms(r: &FieldReport, i: usize) -> bool {
    let (Some(b), Some(col)) = (
        r.boxes.get(i),
        r.channels.bubbles.as_ref().and_then(|cols| cols.get(i)),
    ) else {
        return false;
    };
    matches!((b.label, col.state), (Label::Digit(d), BubbleState::One(e)) if d == e)
}

/// Numeric fields of `template` that no equality rule (hard or soft) reads.
pub fn unchecked_fields(template: &Template, rules: &[Rule]) -> HashSet<String> {
    template
        .numeric_fields()
        .filter(|f| {
            !rules
                .iter()
                .any(|r| r.op == CmpOp::Eq && r.fields.contains(&f.id))
        })
        .map(|f| f.id.clone())
        .collect()
}

/// Field kinds that are numbers read from boxes.
pub fn is_numeric(kind: FieldKind) -> bool {
    matches!(
        kind,
        FieldKind::Digits | FieldKind::RowTotals | FieldKind::Date
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn template() -> Template {
        Template::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join(crate::template::DEFAULT_TEMPLATE_PATH),
        )
        .expect("template")
    }

    fn lab(s: &str) -> Label {
        match s {
            "X" => Label::X,
            "_" => Label::Blank,
            d => Label::Digit(d.parse().expect("digit")),
        }
    }

    /// A box read as `top` with probability `p`, the rest split over two runners-up.
    fn pbox(top: &str, p: f32, second: &str) -> Prediction {
        let third = if second == "9" { "8" } else { "9" };
        let rest = 1.0 - p;
        Prediction {
            label: lab(top),
            confidence: p,
            top: [
                (lab(top), p),
                (lab(second), rest * 0.9),
                (lab(third), rest * 0.1),
            ],
        }
    }

    fn sure(text: &str) -> Vec<Prediction> {
        text.chars()
            .map(|c| pbox(&c.to_string(), 0.99999, if c == '0' { "6" } else { "0" }))
            .collect()
    }

    /// Boxes read for sure as `text`, then one last box with the given top-3.
    fn sure_then(text: &str, top: [(&str, f32); 3]) -> Vec<Prediction> {
        let mut boxes = sure(text);
        boxes.push(Prediction {
            label: lab(top[0].0),
            confidence: top[0].1,
            top: top.map(|(l, p)| (lab(l), p)),
        });
        boxes
    }

    /// Decide the consistent page 1 with field `id` read as `boxes`; that field's report.
    fn decide_page1(id: &str, boxes: Vec<Prediction>) -> FieldReport {
        let d = decide(
            &template(),
            &page1(&[(id, boxes)]),
            &DecideConfig::default(),
        );
        d.fields[id].clone()
    }

    fn ev(id: &str, boxes: Vec<Prediction>) -> FieldEvidence {
        FieldEvidence {
            id: id.into(),
            boxes,
            bubbles: None,
            tally: None,
            page_good: true,
            off_photo: false,
            doubtful: Vec::new(),
            quiet: Vec::new(),
            source: None,
        }
    }

    /// A consistent page 1 (DPT/B rows, ballots, disabled) as field evidence.
    fn page1(overrides: &[(&str, Vec<Prediction>)]) -> Vec<FieldEvidence> {
        let vals = [
            ("dpt.l", "X99"),
            ("dpt.p", "101"),
            ("dpt.lp", "200"),
            ("b1.l", "X80"),
            ("b1.p", "X90"),
            ("b1.lp", "170"),
            ("b2.l", "XX2"),
            ("b2.p", "XX1"),
            ("b2.lp", "XX3"),
            ("b3.l", "XX1"),
            ("b3.p", "XX0"),
            ("b3.lp", "XX1"),
            ("b4.l", "X83"),
            ("b4.p", "X91"),
            ("b4.lp", "174"),
            ("ballots.received", "204"),
            ("ballots.used", "174"),
            ("ballots.returned", "XX1"),
            ("ballots.unused", "X29"),
            ("disabled.l", "XX1"),
            ("disabled.p", "XX0"),
            ("disabled.lp", "XX1"),
        ];
        vals.iter()
            .map(|(id, v)| {
                let o = overrides.iter().find(|(k, _)| k == id);
                ev(id, o.map(|o| o.1.clone()).unwrap_or_else(|| sure(v)))
            })
            .collect()
    }

    #[test]
    fn a_sum_cannot_vouch_for_a_digit_its_other_side_repeats() {
        // Seed 93 (fonts, model v8): b1.p 91 read 11 and b4.p 93 read 13, the tens 9 misread
        // as 1 in both, so b4.p == b1.p + b2.p + b3.p still held and vouched for b1.p. Here the
        // page is right: b1.p 90 with its tens 9 read at 0.995, b4.p 91 beside it (tens 9 too);
        // b1.lp's tens is unsure, so only the b4 sum could vouch, and it cannot see a 9 misread
        // alike in both: b1.p must pass the unchecked threshold on its own.
        let cfg = DecideConfig::default();
        let b1p = sure_then("X", [("9", 0.995), ("4", 0.004), ("7", 0.001)])
            .into_iter()
            .chain(sure("0"))
            .collect::<Vec<_>>();
        let b1lp = sure_then("1", [("7", 0.5), ("1", 0.3), ("2", 0.2)])
            .into_iter()
            .chain(sure("0"))
            .collect::<Vec<_>>();
        let d = decide(
            &template(),
            &page1(&[("b1.p", b1p.clone()), ("b1.lp", b1lp.clone())]),
            &cfg,
        );
        let f = &d.fields["b1.p"];
        assert_eq!(f.value, Some(90));
        assert_eq!(
            f.reading_floor,
            Some(cfg.unchecked_accept_threshold),
            "{f:?}"
        );
        assert_eq!(f.status, FieldStatus::Flagged, "{f:?}");
        // The same reading where the other side holds another tens digit (b2.p 12, so b4.p
        // reads 102): the sum would break under a misread of the 9, and vouches for it.
        let d = decide(
            &template(),
            &page1(&[
                ("b1.p", b1p),
                ("b1.lp", b1lp),
                ("b2.p", sure("X12")),
                ("b2.lp", sure("X14")),
                ("b4.p", sure("102")),
                ("b4.lp", sure("185")),
                ("ballots.used", sure("185")),
                ("ballots.received", sure("215")),
            ]),
            &cfg,
        );
        let f = &d.fields["b1.p"];
        assert!(
            d.checks.iter().all(|c| c.status != CheckStatus::Violated),
            "{:?}",
            d.checks
        );
        assert_ne!(
            f.reading_floor,
            Some(cfg.unchecked_accept_threshold),
            "{f:?}"
        );
        assert_eq!(f.status, FieldStatus::Accepted, "{f:?}");
    }

    #[test]
    fn a_digit_its_bubble_confirms_is_no_repeated_misread() {
        // votes.1 36 and its row 1 36 (the other rows 0): the rows' sum reads the units 6 on
        // both sides, so a 6 misread alike in both would still add up, and row 1's 6, read at
        // 0.995, could not be vouched for. When the bubbles of votes.1 state 3 and 6, its 6 is
        // no handwriting the model could misread alike: the sum checks row 1.
        let cfg = DecideConfig::default();
        let column = |digit: Option<u8>| BubbleColumn {
            fill: (0..10)
                .map(|d| if Some(d) == digit { 0.9 } else { 0.1 })
                .collect(),
            state: digit.map_or(BubbleState::Empty, BubbleState::One),
        };
        let row1 = |bubbles: Option<Vec<BubbleColumn>>| {
            let mut votes = ev("votes.1", sure("X36"));
            votes.bubbles = bubbles;
            let mut e = vec![
                votes,
                ev(
                    "votes.1.row1",
                    sure_then("3", [("6", 0.995), ("5", 0.004), ("0", 0.001)]),
                ),
            ];
            for r in 2..=5 {
                e.push(ev(&format!("votes.1.row{r}"), sure("X0")));
            }
            decide(&template(), &e, &cfg).fields["votes.1.row1"].clone()
        };
        let blind = row1(None);
        assert_eq!(blind.value, Some(36));
        assert_eq!(
            blind.reading_floor,
            Some(cfg.unchecked_accept_threshold),
            "{blind:?}"
        );
        assert_eq!(blind.status, FieldStatus::Flagged, "{blind:?}");
        let witnessed = row1(Some(vec![column(None), column(Some(3)), column(Some(6))]));
        assert_eq!(witnessed.value, Some(36));
        assert_eq!(witnessed.status, FieldStatus::Accepted, "{witnessed:?}");
    }

    #[test]
    fn rules_vouch_only_through_sure_partners() {
        // disabled.lp = disabled.l + disabled.p with p = 2 sure. lp reads 3 at 0.9966 (under
        // the 0.997 threshold on its own). Seed 45's silent error had this shape, with l misread.
        // (With p = 0, l and lp would hold the same digit and the sum could not see it misread
        // alike in both: a_sum_cannot_vouch_for_a_digit_its_other_side_repeats.)
        let lp = sure_then("XX", [("3", 0.9966), ("X", 0.0016), ("8", 0.001)]);
        let cfg = DecideConfig::default();
        let run = |l: Vec<Prediction>| {
            decide(
                &template(),
                &page1(&[
                    ("disabled.l", l),
                    ("disabled.p", sure("XX2")),
                    ("disabled.lp", lp.clone()),
                ]),
                &cfg,
            )
            .fields["disabled.lp"]
                .clone()
        };
        // A sure partner: the rule lifts lp over the threshold.
        let lifted = run(sure("XX1"));
        assert!(lifted.confidence > 0.9966 + 1e-4, "{lifted:?}");
        assert_eq!(lifted.status, FieldStatus::Accepted, "{lifted:?}");
        // The partner read 1 at only 0.77 (2 at 0.23): the same rule may not vouch for lp.
        let alone = run(sure_then("XX", [("1", 0.77), ("2", 0.226), ("7", 0.004)]));
        assert_eq!(alone.value, Some(3));
        assert!(
            (alone.confidence - alone.reading_confidence.unwrap()).abs() < 1e-9,
            "{alone:?}"
        );
        assert_eq!(alone.status, FieldStatus::Flagged, "{alone:?}");
        assert!(
            alone.flags.iter().any(|c| c == "low_confidence"),
            "{alone:?}"
        );
        // Without the partner check the joint posterior alone would accept it.
        let trusting = DecideConfig {
            min_partner_confidence: 0.0,
            ..DecideConfig::default()
        };
        let l = sure_then("XX", [("1", 0.77), ("2", 0.226), ("7", 0.004)]);
        let d = decide(
            &template(),
            &page1(&[
                ("disabled.l", l),
                ("disabled.p", sure("XX2")),
                ("disabled.lp", lp.clone()),
            ]),
            &trusting,
        );
        assert_eq!(
            d.fields["disabled.lp"].status,
            FieldStatus::Accepted,
            "{:?}",
            d.fields["disabled.lp"]
        );
    }

    #[test]
    fn confident_boxes_are_accepted_with_leading_x() {
        let t = template();
        let d = decide(&t, &page1(&[]), &DecideConfig::default());
        let f = &d.fields["dpt.l"];
        assert_eq!(f.value, Some(99));
        assert_eq!(f.status, FieldStatus::Accepted, "{f:?}");
        assert_eq!(d.fields["b3.p"].value, Some(0));
        // Page 2 and 3 are absent: their fields are missing, never accepted.
        assert_eq!(d.fields["votes.1"].status, FieldStatus::Missing);
    }

    #[test]
    fn x_after_a_digit_is_not_a_number() {
        let t = template();
        let mut bad = sure("1X");
        bad.push(pbox("5", 0.99999, "6"));
        let d = decide(&t, &page1(&[("dpt.l", bad)]), &DecideConfig::default());
        let f = &d.fields["dpt.l"];
        assert_ne!(f.status, FieldStatus::Accepted);
        assert!(
            f.flags
                .iter()
                .any(|c| c == "invalid_pattern" || c == "low_confidence"),
            "{f:?}"
        );
    }

    #[test]
    fn hard_rules_choose_among_the_models_own_alternatives() {
        // b1.l last box: 6 (0.6) or 0 (0.36). Two independent hard rules (b1.lp = b1.l + b1.p
        // and b4.l = b1.l + b2.l + b3.l, all other fields sure) hold for 80 only: 80 becomes
        // 0.995 sure. The rules choose only a value sure enough to accept, so this test sets
        // the threshold at 0.995 (the shipped 0.997 keeps the reading 86, flagged).
        let cfg = DecideConfig {
            accept_threshold: 0.995,
            ..DecideConfig::default()
        };
        let page = page1(&[(
            "b1.l",
            sure_then("X8", [("6", 0.6), ("0", 0.36), ("5", 0.04)]),
        )]);
        let f = &decide(&template(), &page, &cfg).fields["b1.l"];
        assert_eq!(f.value, Some(80), "{f:?}");
        assert!(f.resolved_by.iter().any(|r| r == "b1.lp_sum"), "{f:?}");
        assert!(f.resolved_by.iter().any(|r| r == "b4_sum.l"), "{f:?}");
        assert!(f.confidence >= 0.995, "{f:?}");
        // ...but 80 was only a 0.36 reading on its own: below the reading floor the rules
        // choose and vouch, yet the field still goes to a person.
        assert_eq!(f.status, FieldStatus::Flagged, "{f:?}");
        assert!(f.flags.iter().any(|c| c == "low_confidence"), "{f:?}");
    }

    #[test]
    fn one_rule_alone_never_overturns_the_written_reading() {
        // dpt.l last box: 8 (0.6) or 9 (0.36). Only dpt.lp_sum links dpt.l, and it holds for 99;
        // an officer's slip is as plausible as the misread, so the reading 98 stays and the
        // broken rule is flagged, with 99 offered first among the alternatives.
        let f = &decide_page1(
            "dpt.l",
            sure_then("X9", [("8", 0.6), ("9", 0.36), ("3", 0.04)]),
        );
        assert_eq!(f.value, Some(98), "{f:?}");
        assert_eq!(f.status, FieldStatus::Flagged);
        assert!(f.flags.iter().any(|c| c == "rule_violated"), "{f:?}");
        assert_eq!(f.alternatives.first().and_then(|a| a.value), Some(99));
        assert!(f.confidence < 0.1, "{f:?}");
    }

    /// Page 1 decided with dpt.l's last box read as `top` after a sure "X9"; the check of
    /// dpt.lp_sum (dpt.lp == dpt.l + dpt.p, which holds for 99) and the flag it raised.
    fn dpt_sum_with(top: [(&str, f32); 3]) -> (Decision, CheckReport, Flag) {
        let d = decide(
            &template(),
            &page1(&[("dpt.l", sure_then("X9", top))]),
            &DecideConfig::default(),
        );
        let check = d
            .checks
            .iter()
            .find(|c| c.rule == "dpt.lp_sum")
            .cloned()
            .expect("dpt.lp_sum checked");
        assert_eq!(check.status, CheckStatus::Violated);
        let flag = d
            .flags
            .iter()
            .find(|f| f.rule.as_deref() == Some("dpt.lp_sum"))
            .cloned()
            .expect("the rule's flag");
        (d, check, flag)
    }

    #[test]
    fn a_broken_rule_names_the_likeliest_misreading_without_applying_it() {
        // As above: dpt.l read 98 (last box 8 at 0.6, 9 at 0.36).
        let (d, check, flag) = dpt_sum_with([("8", 0.6), ("9", 0.36), ("3", 0.04)]);
        assert_eq!(d.fields["dpt.l"].value, Some(98), "the reading stays");
        let hint = check.suggestion.as_ref().expect("a hint");
        assert_eq!((hint.field.as_str(), hint.value), ("dpt.l", 99));
        let listed = d.fields["dpt.l"]
            .alternatives
            .iter()
            .find(|a| a.value == Some(99))
            .map(|a| a.probability);
        assert_eq!(
            Some(hint.probability),
            listed,
            "the field's own alternative"
        );
        assert!(
            flag.message
                .contains("Possible misreading: dpt.l may be 99"),
            "{}",
            flag.message
        );
        // Rules that hold carry no hint.
        assert!(
            d.checks
                .iter()
                .all(|c| c.status == CheckStatus::Violated || c.suggestion.is_none())
        );
    }

    #[test]
    fn an_officers_sum_that_no_alternative_explains_gets_no_hint() {
        // dpt.l read 97 for sure (second choices 1 and 4 in the last box): 97 + 101 != 200, and
        // no alternative of any of the three fields makes it hold.
        let (_, check, flag) = dpt_sum_with([("7", 0.999), ("1", 0.0006), ("4", 0.0004)]);
        assert_eq!(check.suggestion, None, "{check:?}");
        assert!(
            !flag.message.contains("Possible misreading"),
            "{}",
            flag.message
        );
    }

    #[test]
    fn only_the_day_of_the_date_is_unchecked() {
        let t = template();
        let u = unchecked_fields(&t, &t.rules());
        // Every count is in a sum; year and month have expected values (soft equalities).
        assert_eq!(
            u.into_iter().collect::<Vec<_>>(),
            vec!["date.day".to_string()]
        );
    }

    #[test]
    fn unchecked_fields_need_the_stricter_threshold() {
        let t = template();
        let cfg = DecideConfig::default();
        // The alternative, 15, lies in the counting days too: the range cannot tell them apart.
        let day = |p: f32| {
            let mut e = page1(&[]);
            e.push(ev(
                "date.day",
                sure_then("1", [("4", p), ("5", 1.0 - p), ("9", 0.0)]),
            ));
            decide(&t, &e, &cfg).fields["date.day"].clone()
        };
        // 0.998 would pass the general threshold (0.997) but not the unchecked one (0.9995).
        let weak = day(0.998);
        assert_eq!(weak.value, Some(14));
        assert_eq!(weak.status, FieldStatus::Flagged, "{weak:?}");
        assert!(weak.flags.iter().any(|c| c == "low_confidence"));
        let strong = day(0.9999);
        assert_eq!(strong.status, FieldStatus::Accepted, "{strong:?}");
    }

    #[test]
    fn the_counting_days_make_a_day_outside_them_an_unlikely_alternative() {
        // 14 read at 0.998 beside 16 or 19 (after the counting days, a soft rule broken): the
        // alternatives weigh a tenth (soft_rule_error_prior), so 14 reaches
        // 0.998 / (0.998 + 0.1 * 0.002) = 0.9998 and is accepted. Beside 15, the other counting
        // day, nothing changes (test above). A reading outside the range is never weighed: it
        // stays what is written, as sure as the model says, and is flagged by the rule.
        let t = template();
        let cfg = DecideConfig::default();
        let day = |first: &str, second: &str, p: f32| {
            let mut e = page1(&[]);
            e.push(ev(
                "date.day",
                sure_then("1", [(first, p), (second, 1.0 - p), ("0", 0.0)]),
            ));
            decide(&t, &e, &cfg).fields["date.day"].clone()
        };
        for other in ["6", "9"] {
            let r = day("4", other, 0.998);
            assert_eq!(r.value, Some(14), "{r:?}");
            assert_eq!(r.status, FieldStatus::Accepted, "{r:?}");
            let expected = 0.998 / (0.998 + 0.1 * 0.002);
            assert!((r.confidence - expected).abs() < 1e-4, "{r:?}");
            assert_eq!(r.reading_confidence, Some(r.confidence), "{r:?}");
        }
        // Weaker evidence stays flagged: 0.99 beside 16 gives 0.999, under 0.9995.
        let weak = day("4", "6", 0.99);
        assert_eq!(weak.status, FieldStatus::Flagged, "{weak:?}");
        // 16 read first, 14 second: reported as written, its confidence not raised.
        let late = day("6", "4", 0.9);
        assert_eq!(late.value, Some(16), "{late:?}");
        assert!((late.confidence - 0.9).abs() < 1e-4, "{late:?}");
        assert_eq!(late.status, FieldStatus::Flagged, "{late:?}");
        // Counts are never weighed by their soft bounds (`votes <= 300`): an officer's 800
        // must stay as likely as the model reads it.
        assert!(
            range_only_rules(&t, &t.rules())
                .keys()
                .all(|id| id == "date.day")
        );
    }

    #[test]
    fn a_day_after_the_counting_days_goes_to_a_person_however_sure() {
        // The day has no arithmetic partner; its range is its only check. Counting ends by the
        // 15th, so a sure 16 (a 4 misread as 6 looks exactly like this) is kept as written and
        // flagged for a person, while a sure 15 is accepted.
        let t = template();
        let cfg = DecideConfig::default();
        let day = |last: &str| {
            let mut e = page1(&[]);
            e.push(ev(
                "date.day",
                sure_then("1", [(last, 0.99999), ("4", 0.00001), ("9", 0.0)]),
            ));
            decide(&t, &e, &cfg).fields["date.day"].clone()
        };
        let sixteen = day("6");
        assert_eq!(sixteen.value, Some(16), "{sixteen:?}");
        assert_eq!(sixteen.status, FieldStatus::Flagged, "{sixteen:?}");
        assert!(
            sixteen.flags.iter().any(|c| c == "rule_violated"),
            "{sixteen:?}"
        );
        let fifteen = day("5");
        assert_eq!(fifteen.value, Some(15), "{fifteen:?}");
        assert_eq!(fifteen.status, FieldStatus::Accepted, "{fifteen:?}");
    }

    #[test]
    fn a_rule_that_holds_by_an_unsure_partner_checks_nothing() {
        // disabled.lp = disabled.l + disabled.p, p read 2 for sure. l reads 1 at 0.998 on its
        // own: enough for a checked field (0.997), not for an unchecked one (0.9995).
        let t = template();
        let cfg = DecideConfig::default();
        let l = sure_then("XX", [("1", 0.998), ("7", 0.0018), ("4", 0.0002)]);
        let decide_with = |lp_p: f32| {
            let lp = sure_then("XX", [("3", lp_p), ("8", 1.0 - lp_p), ("4", 0.0)]);
            decide(
                &t,
                &page1(&[
                    ("disabled.l", l.clone()),
                    ("disabled.p", sure("XX2")),
                    ("disabled.lp", lp),
                ]),
                &cfg,
            )
            .fields["disabled.l"]
                .clone()
        };
        // lp read 3 at 0.6: the sum holds, but lp could be a second misread that matches.
        let weak = decide_with(0.6);
        assert_eq!(weak.value, Some(1));
        assert_eq!(weak.status, FieldStatus::Flagged, "{weak:?}");
        assert!(weak.flags.iter().any(|c| c == "low_confidence"), "{weak:?}");
        // lp sure: the sum checks l.
        let checked = decide_with(0.99999);
        assert_eq!(checked.status, FieldStatus::Accepted, "{checked:?}");
    }

    #[test]
    fn a_row_total_under_its_tally_filled_in_order_is_flagged() {
        let t = template();
        let read = |id: &str, text: &str, cells: u32| {
            let mut e = ev(id, sure(text));
            e.tally = Some(TallyRange {
                cells_marked: cells,
                min: cells,
                max: cells * STROKES_PER_CELL + 4,
            });
            decide(&t, &[e], &DecideConfig::default()).fields[id].clone()
        };
        let tally_flag = |r: &FieldReport| r.flags.iter().any(|c| c == "channel_disagreement");
        // Seed 77's row: 7 marked cells hold 31..=35 when filled in order; 25 lies inside the
        // plain range 7..=39.
        let low = read("votes.1.row2", "25", 7);
        assert!(tally_flag(&low), "{low:?}");
        assert_eq!(low.status, FieldStatus::Flagged);
        assert!(!tally_flag(&read("votes.1.row2", "33", 7)));
        assert!(!tally_flag(&read("votes.1.row2", "31", 7)));
        assert!(tally_flag(&read("votes.1.row2", "30", 7)));
        // Only rows: a candidate's total gathers several rows' tallies.
        assert!(!tally_flag(&read("votes.1", "X25", 7)));
        assert_eq!(
            (0..=3).map(in_order_tally_min).collect::<Vec<_>>(),
            vec![0, 1, 6, 11]
        );
    }

    #[test]
    fn a_tally_makes_readings_outside_its_range_unlikely() {
        // A row total 13 whose tens box might be a 7 or 9 (73, 93): 3 marked cells (3..=19)
        // speak against both, so 13 rises from 0.99 to 0.99 / (0.99 + 0.05 * 0.01). A 13 whose
        // ones box might be an 8 (18, inside the range) stays at 0.99: the tally cannot tell
        // them apart. 73 read first is reported as read, flagged by the tally, never lifted.
        let t = template();
        let sure_box = |d: &str| Prediction {
            label: lab(d),
            confidence: 1.0,
            top: [(lab(d), 1.0), (lab("0"), 0.0), (lab("5"), 0.0)],
        };
        let read = |boxes: Vec<Prediction>| {
            let mut e = ev("votes.1.row2", boxes);
            e.tally = Some(TallyRange {
                cells_marked: 3,
                min: 3,
                max: 3 * STROKES_PER_CELL + 4,
            });
            decide(&t, &[e], &DecideConfig::default()).fields["votes.1.row2"].clone()
        };
        let own = |r: &FieldReport| r.reading_confidence.unwrap_or(0.0);
        let weighed = read(vec![pbox("1", 0.99, "7"), sure_box("3")]);
        assert_eq!(weighed.value, Some(13));
        let expected = 0.99 / (0.99 + TALLY_OUTSIDE_WEIGHT * 0.01);
        assert!((own(&weighed) - expected).abs() < 1e-4, "{weighed:?}");
        let blind = read(vec![sure_box("1"), pbox("3", 0.99, "8")]);
        assert_eq!(blind.value, Some(13));
        assert!((own(&blind) - 0.99).abs() < 1e-4, "{blind:?}");
        let outside = read(vec![pbox("7", 0.99, "1"), sure_box("3")]);
        assert_eq!(outside.value, Some(73));
        assert!((own(&outside) - 0.99).abs() < 1e-4, "{outside:?}");
        assert!(outside.flags.iter().any(|c| c == "channel_disagreement"));
    }

    proptest::proptest! {
        /// `reweigh` keeps the first reading first, the alternatives sorted and the total
        /// (listed plus unlisted mass) unchanged; it never raises an alternative's share over
        /// the first one's.
        #[test]
        fn reweighing_keeps_the_first_reading_and_the_total(
            raw in proptest::collection::vec((0.0001f64..1.0, 0.0f64..=1.0), 1..7),
            unlisted in 0.0f64..0.5,
        ) {
            let total: f64 = raw.iter().map(|r| r.0).sum();
            let scale = (1.0 - unlisted) / total;
            let mut cs: Vec<Candidate> = raw
                .iter()
                .enumerate()
                .map(|(i, (p, _))| Candidate { value: Some(i as i64), prob: p * scale, labels: Vec::new() })
                .collect();
            cs.sort_by(|a, b| b.prob.total_cmp(&a.prob));
            let first = cs[0].value;
            let weights: HashMap<i64, f64> = raw
                .iter()
                .enumerate()
                .map(|(i, (_, w))| (i as i64, if Some(i as i64) == first { 1.0 } else { *w }))
                .collect();
            reweigh(&mut cs, |v| weights[&v]);
            proptest::prop_assert_eq!(cs[0].value, first);
            proptest::prop_assert!(cs.windows(2).all(|w| w[0].prob >= w[1].prob));
            let listed: f64 = cs.iter().map(|c| c.prob).sum();
            let unlisted_after = (1.0 - listed).max(0.0);
            proptest::prop_assert!((listed + unlisted_after - 1.0).abs() < 1e-9);
            proptest::prop_assert!(unlisted_after >= unlisted - 1e-9);
        }
    }

    #[test]
    fn an_empty_row_total_counts_as_zero_in_the_checks() {
        let t = template();
        let rows = |total: &str| {
            let mut e: Vec<FieldEvidence> = [
                ("invalid.row1", "X5"),
                ("invalid.row2", "X0"),
                ("invalid.row3", "X0"),
                ("invalid.row4", "X0"),
                ("invalid.row5", "__"),
            ]
            .iter()
            .map(|(id, v)| ev(id, sure(v)))
            .collect();
            e.push(ev("invalid", sure(total)));
            decide(&t, &e, &DecideConfig::default())
        };
        let status = |d: &Decision| {
            d.checks
                .iter()
                .find(|c| c.rule == "invalid.rows_sum")
                .map(|c| c.status)
        };
        // Row 5 left empty: reported missing, but the rows' sum is decided with it as 0.
        let wrong = rows("XX6");
        assert_eq!(status(&wrong), Some(CheckStatus::Violated));
        assert!(
            wrong.fields["invalid.row1"]
                .flags
                .iter()
                .any(|c| c == "rule_violated")
        );
        assert_eq!(wrong.fields["invalid.row5"].value, None);
        assert_eq!(wrong.fields["invalid.row5"].status, FieldStatus::Missing);
        assert_eq!(status(&rows("XX5")), Some(CheckStatus::Ok));
    }

    #[test]
    fn exact_elimination_equals_full_enumeration() {
        let t = template();
        let rules = t.rules();
        let linked: Vec<&Rule> = rules
            .iter()
            .filter(|r| {
                r.fields
                    .iter()
                    .any(|f| f.starts_with("b1.") || f.starts_with("b4."))
            })
            .collect();
        // Six uncertain fields of the B grid (rows b1, b4) with made-up alternatives; b2 and b3
        // are read for sure.
        let ids: Vec<String> = ["b1.l", "b1.p", "b1.lp", "b4.l", "b4.p", "b4.lp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let alts: [&[(i64, f64)]; 6] = [
            &[(80, 0.7), (86, 0.25)],
            &[(90, 0.5), (98, 0.3), (30, 0.1)],
            &[(170, 0.9), (176, 0.05)],
            &[(83, 0.6), (88, 0.3)],
            &[(91, 0.97)],
            &[(174, 0.8), (114, 0.15)],
        ];
        let options: Vec<Vec<FieldOption>> = alts
            .iter()
            .map(|a| {
                let cs: Vec<Candidate> = a
                    .iter()
                    .map(|(v, p)| Candidate {
                        value: Some(*v),
                        prob: *p,
                        labels: Vec::new(),
                    })
                    .collect();
                field_options(&cs, false)
            })
            .collect();
        let fixed: HashMap<String, Option<i64>> = [
            ("b2.l", 2),
            ("b2.p", 1),
            ("b2.lp", 3),
            ("b3.l", 1),
            ("b3.p", 0),
            ("b3.lp", 1),
            ("dpt.l", 99),
            ("dpt.p", 101),
            ("dpt.lp", 200),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), Some(*v)))
        .collect();
        let cfg = DecideConfig::default();
        let exact = exact_posterior(&ids, &options, &linked, &fixed, &cfg).expect("small tables");
        let enumerated = joint_posterior(&ids, &options, &linked, &fixed, &cfg).expect("mass");
        for (a, b) in exact.iter().flatten().zip(enumerated.iter().flatten()) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        // The consistent reading wins everywhere: b1.lp = 80 + 90 = 170,
        // b4.l = 80 + 2 + 1 = 83, b4.p = 90 + 1 + 0 = 91, b4.lp = 170 + 3 + 1 = 174.
        let best: Vec<Option<Option<i64>>> = exact
            .iter()
            .zip(&options)
            .map(|(row, o)| {
                let i = row
                    .iter()
                    .enumerate()
                    .max_by(|x, y| x.1.total_cmp(y.1))
                    .map(|(i, _)| i)
                    .expect("options");
                o[i].0
            })
            .collect();
        assert_eq!(
            best,
            [80, 90, 170, 83, 91, 174].map(|v| Some(Some(v))).to_vec()
        );
        // With a budget too small to see everything, the enumeration never claims more than the
        // exact posterior of the best reading.
        let tight = DecideConfig {
            max_joint_assignments: 5,
            ..cfg.clone()
        };
        let bounded = joint_posterior(&ids, &options, &linked, &fixed, &tight).expect("mass");
        for (k, row) in bounded.iter().enumerate() {
            for (i, p) in row.iter().enumerate() {
                assert!(
                    *p <= exact[k][i] + 1e-12,
                    "field {k} option {i}: {p} > {}",
                    exact[k][i]
                );
            }
        }
    }

    #[test]
    fn a_consistent_cross_check_raises_confidence() {
        // dpt.l read 99 at only 0.95 (alternative 98); the sum with the sure dpt.p and dpt.lp
        // holds for 99 only, so the cross-check makes 99 near certain (odds 19 x 19).
        let f = &decide_page1(
            "dpt.l",
            sure_then("X9", [("9", 0.95), ("8", 0.04), ("4", 0.01)]),
        );
        assert_eq!(f.value, Some(99));
        assert!(f.confidence >= 0.997, "{f:?}");
        // 0.95 on its own is below `min_reading_confidence`, but every partner of the sum is
        // sure: the arithmetic pins the value, and it is accepted.
        assert_eq!(f.reading_floor, Some(0.9), "{f:?}");
        assert_eq!(f.status, FieldStatus::Accepted, "{f:?}");
        // A reading at the floor is confirmed by the same cross-check and accepted.
        let f = &decide_page1(
            "dpt.l",
            sure_then("X9", [("9", 0.991), ("8", 0.008), ("4", 0.001)]),
        );
        assert_eq!(f.value, Some(99));
        assert!(f.resolved_by.iter().any(|r| r == "dpt.lp_sum"), "{f:?}");
        assert_eq!(f.status, FieldStatus::Accepted, "{f:?}");
    }

    #[test]
    fn a_partner_that_a_broken_rule_contradicts_confirms_nothing() {
        // dpt.l reads 99 at 0.95; dpt.p and dpt.lp read for sure, so the sum would confirm it
        // (a_consistent_cross_check_raises_confidence). But b1.p reads 102 for sure, over
        // dpt.p = 101: b1.p <= dpt.p is broken, so dpt.p may be misread too, and dpt.l must
        // stand on its own reading.
        let weak_l = sure_then("X9", [("9", 0.95), ("8", 0.04), ("4", 0.01)]);
        let d = decide(
            &template(),
            &page1(&[("dpt.l", weak_l), ("b1.p", sure("102"))]),
            &DecideConfig::default(),
        );
        assert!(
            d.checks
                .iter()
                .any(|c| c.rule == "b1.p_le_dpt" && c.status == CheckStatus::Violated)
        );
        let f = &d.fields["dpt.l"];
        assert_eq!(f.value, Some(99));
        // No rule vouches for it: its own reading must pass the unchecked threshold.
        let cfg = DecideConfig::default();
        assert_eq!(
            f.reading_floor,
            Some(cfg.unchecked_accept_threshold),
            "{f:?}"
        );
        assert_eq!(f.status, FieldStatus::Flagged, "{f:?}");
    }

    #[test]
    fn unsure_readings_never_confirm_each_other() {
        // Seed 45's shape: two misreads of one hand at 0.97 that happen to add up. dpt.l reads
        // 99 at 0.96 and its sum partner dpt.p reads 101 at only 0.97 (7 at 0.03): the sum
        // holds, but it rests on a partner that is itself unsure, so dpt.l keeps the strict
        // floor and stays flagged whatever the joint posterior says.
        let weak_l = sure_then("X9", [("9", 0.96), ("8", 0.039), ("4", 0.001)]);
        let weak_p = sure_then("10", [("1", 0.97), ("7", 0.029), ("4", 0.001)]);
        let d = decide(
            &template(),
            &page1(&[("dpt.l", weak_l.clone()), ("dpt.p", weak_p.clone())]),
            &DecideConfig::default(),
        );
        for id in ["dpt.l", "dpt.p"] {
            let f = &d.fields[id];
            assert_eq!(f.reading_floor, Some(0.99), "{id}: {f:?}");
            assert!(
                f.reading_confidence.is_some_and(|p| p < 0.99),
                "{id}: {f:?}"
            );
            assert_eq!(f.status, FieldStatus::Flagged, "{id}: {f:?}");
        }
        // It is the floor that holds them: partners of 0.97 counted as sure would let the
        // posterior accept both.
        let trusting = DecideConfig {
            strong_partner_confidence: 0.95,
            ..DecideConfig::default()
        };
        let d_trusting = decide(
            &template(),
            &page1(&[("dpt.l", weak_l.clone()), ("dpt.p", weak_p)]),
            &trusting,
        );
        for id in ["dpt.l", "dpt.p"] {
            let f = &d_trusting.fields[id];
            assert_eq!(f.status, FieldStatus::Accepted, "{id}: {f:?}");
        }
        // The same dpt.l beside a sure dpt.p: the weaker floor applies and it is accepted.
        let d = decide(
            &template(),
            &page1(&[("dpt.l", weak_l)]),
            &DecideConfig::default(),
        );
        let f = &d.fields["dpt.l"];
        assert_eq!(f.reading_floor, Some(0.9), "{f:?}");
        assert_eq!(f.status, FieldStatus::Accepted, "{f:?}");
        // Under the weaker floor: flagged even beside sure partners (here 0.85; two agreeing
        // rules could lift it past the threshold, the floor still holds it back).
        let f = &decide_page1(
            "dpt.l",
            sure_then("X9", [("9", 0.85), ("8", 0.149), ("4", 0.001)]),
        );
        assert_eq!(f.reading_floor, Some(0.9), "{f:?}");
        assert_eq!(f.status, FieldStatus::Flagged, "{f:?}");
    }

    /// A box read blank at `p`, then `second` and `third` with their probabilities.
    fn blank_box(p: f32, second: (Label, f32), third: (Label, f32)) -> Prediction {
        Prediction {
            label: Label::Blank,
            confidence: p,
            top: [(Label::Blank, p), second, third],
        }
    }

    /// What the model says for an all-zero input.
    fn empty_box() -> Prediction {
        blank_box(0.9699, (lab("1"), 0.0086), (Label::X, 0.0053))
    }

    #[test]
    fn trusting_a_blank_keeps_the_other_readings_in_proportion() {
        let t = trust_blank(&empty_box(), QUIET_BLANK_CONFIDENCE);
        assert_eq!(t.label, Label::Blank);
        assert_eq!(t.confidence, QUIET_BLANK_CONFIDENCE);
        assert_eq!(t.top[0], (Label::Blank, QUIET_BLANK_CONFIDENCE));
        assert_eq!((t.top[1].0, t.top[2].0), (lab("1"), Label::X));
        let ratio = t.top[1].1 / t.top[2].1;
        assert!((ratio - 0.0086 / 0.0053).abs() < 1e-3, "{t:?}");
        let sum: f32 = t.top.iter().map(|(_, p)| p).sum();
        assert!(sum <= 1.0 + 1e-6, "{t:?}");
        // A digit, or a blank already surer, is left as it is.
        let digit = pbox("7", 0.9, "1");
        assert_eq!(trust_blank(&digit, QUIET_BLANK_CONFIDENCE), digit);
        let sure_blank = blank_box(0.9999, (lab("1"), 0.00008), (Label::X, 0.00002));
        assert_eq!(trust_blank(&sure_blank, QUIET_BLANK_CONFIDENCE), sure_blank);
    }

    #[test]
    fn quiet_empty_boxes_let_small_numbers_confirm_each_other() {
        // b2.l + b2.p = b2.lp written as [ ][ ]2, [ ][ ]1, [ ][ ]3 with empty leading boxes.
        let small = |d: &str| vec![empty_box(), empty_box(), pbox(d, 0.99999, "0")];
        let page = |quiet: bool| {
            let mut evs = page1(&[
                ("b2.l", small("2")),
                ("b2.p", small("1")),
                ("b2.lp", small("3")),
            ]);
            for e in evs.iter_mut().filter(|e| e.id.starts_with("b2.")) {
                if quiet {
                    e.quiet = vec![0, 1];
                }
            }
            decide(&template(), &evs, &DecideConfig::default())
        };
        // At the model's 0.97 per empty box each reads about 0.95 on its own: every partner
        // of the sum is unsure, so none may confirm another.
        let d = page(false);
        for id in ["b2.l", "b2.p", "b2.lp"] {
            let f = &d.fields[id];
            assert!(
                f.reading_confidence.is_some_and(|p| p < 0.96),
                "{id}: {f:?}"
            );
            assert_eq!(f.reading_floor, Some(0.99), "{id}: {f:?}");
            assert_eq!(f.status, FieldStatus::Flagged, "{id}: {f:?}");
        }
        // Crops with no trace of a mark: each reads about 0.996 and the sum confirms them.
        let d = page(true);
        for id in ["b2.l", "b2.p", "b2.lp"] {
            let f = &d.fields[id];
            assert!(
                f.reading_confidence.is_some_and(|p| p > 0.99),
                "{id}: {f:?}"
            );
            assert_eq!(f.boxes[0].confidence, QUIET_BLANK_CONFIDENCE, "{id}: {f:?}");
            assert_eq!(f.status, FieldStatus::Accepted, "{id}: {f:?}");
        }
    }

    #[test]
    fn a_doubtful_box_holds_its_field_back_at_any_threshold() {
        // b2.l's leading boxes came out empty on crops that may hold a faint stroke; its sure
        // partners would otherwise let a 0.9 floor apply.
        let mut evs = page1(&[(
            "b2.l",
            vec![empty_box(), empty_box(), pbox("2", 0.99999, "0")],
        )]);
        for e in evs.iter_mut().filter(|e| e.id == "b2.l") {
            e.doubtful = vec![0, 1];
        }
        let lax = DecideConfig {
            accept_threshold: 0.0,
            unchecked_accept_threshold: 0.0,
            ..DecideConfig::default()
        };
        let f = &decide(&template(), &evs, &lax).fields["b2.l"];
        assert_eq!(f.reading_floor, Some(DOUBTFUL_READING_FLOOR), "{f:?}");
        assert!(
            f.reading_confidence
                .is_some_and(|p| p < DOUBTFUL_READING_FLOOR)
        );
        assert_eq!(f.status, FieldStatus::Flagged, "{f:?}");
    }

    #[test]
    fn a_rule_with_sure_partners_confirms_what_an_unsure_one_cannot() {
        // b2.l reads 2 at 0.995. Its sum b2.lp = b2.l + b2.p reads an unsure partner (b2.p: 1 at
        // 0.8), so that rule may not vouch for it; b4.l = b1.l + b2.l + b3.l reads only sure
        // partners and holds for 2 (not for 7): b2.l is confirmed through that rule alone.
        let run = |b4_l: &str| {
            decide(
                &template(),
                &page1(&[
                    (
                        "b2.l",
                        sure_then("XX", [("2", 0.995), ("7", 0.004), ("1", 0.001)]),
                    ),
                    (
                        "b2.p",
                        sure_then("XX", [("1", 0.8), ("7", 0.19), ("4", 0.01)]),
                    ),
                    ("b4.l", sure(b4_l)),
                ]),
                &DecideConfig::default(),
            )
        };
        let d = run("X83");
        let f = &d.fields["b2.l"];
        assert_eq!(f.value, Some(2));
        assert!(f.resolved_by.iter().any(|r| r == "b4_sum.l"), "{f:?}");
        assert!(!f.resolved_by.iter().any(|r| r == "b2.lp_sum"), "{f:?}");
        assert!(f.confidence >= 0.997, "{f:?}");
        assert_eq!(f.status, FieldStatus::Accepted, "{f:?}");
        // The unsure partner itself stays flagged.
        assert_eq!(d.fields["b2.p"].status, FieldStatus::Flagged);
        // With only the unsure rule (b4.l no longer adds up for any reading of b2.l), no lift.
        let d = run("X90");
        let f = &d.fields["b2.l"];
        assert!(f.confidence < 0.997, "{f:?}");
        assert_eq!(f.status, FieldStatus::Flagged, "{f:?}");
    }

    #[test]
    fn bubbles_naming_a_digit_outside_the_top_k_lower_the_reading() {
        // The model reads the middle box as blank (0.996; no 4 among its top 3), the bubbles
        // clearly say 4: the reading must lose its certainty, not keep it through
        // renormalisation over the top 3.
        let boxes = vec![
            pbox("X", 0.999_999, "8"),
            blank_box(0.996, (lab("7"), 0.0007), (lab("3"), 0.0006)),
            pbox("2", 0.9997, "0"),
        ];
        let col = |d: u8| BubbleColumn {
            fill: vec![0.1; 10],
            state: BubbleState::One(d),
        };
        let ev = FieldEvidence {
            bubbles: Some(vec![col(0), col(4), col(2)]),
            ..ev("votes.2", boxes)
        };
        let cs = candidates(&ev, &DecideConfig::default(), true);
        assert_eq!(cs[0].value, Some(2));
        assert!(cs[0].prob < 0.99, "{cs:?}");
        let alone = candidates(&ev, &DecideConfig::default(), false);
        assert!(alone[0].prob > 0.99, "{alone:?}");
    }

    #[test]
    fn one_rule_cannot_carry_a_weak_reading_to_acceptance() {
        // dpt.l read 99 at 0.83 (alternative 95 at 0.17): the one rule that holds for 99 lifts
        // the odds at most (1 - e) / e = 19-fold, not enough: an officer who miscounted and a
        // misread that lands on the consistent value must not pass unseen.
        let f = &decide_page1(
            "dpt.l",
            sure_then("X9", [("9", 0.83), ("5", 0.17), ("4", 0.0)]),
        );
        assert_eq!(f.value, Some(99));
        assert!(f.confidence > 0.95 && f.confidence < 0.99, "{f:?}");
        assert_eq!(f.status, FieldStatus::Flagged, "{f:?}");
    }

    #[test]
    fn confident_reading_is_never_changed_to_fit_arithmetic() {
        let t = template();
        // The officer wrote 98 where 99 would add up: read confidently, kept, flagged.
        let d = decide(
            &t,
            &page1(&[("dpt.l", sure("X98"))]),
            &DecideConfig::default(),
        );
        let f = &d.fields["dpt.l"];
        assert_eq!(f.value, Some(98));
        assert_eq!(f.status, FieldStatus::Flagged);
        assert!(
            d.flags
                .iter()
                .any(|fl| fl.rule.as_deref() == Some("dpt.lp_sum"))
        );
        let check = d
            .checks
            .iter()
            .find(|c| c.rule == "dpt.lp_sum")
            .expect("check");
        assert_eq!(check.status, CheckStatus::Violated);
    }

    #[test]
    fn bubbles_that_disagree_are_flagged() {
        let t = template();
        let mut e = ev("votes.1", sure("X45"));
        let col = |d: Option<u8>| BubbleColumn {
            fill: (0..10)
                .map(|i| if Some(i as u8) == d { 0.9 } else { 0.1 })
                .collect(),
            state: d.map_or(BubbleState::Empty, BubbleState::One),
        };
        e.bubbles = Some(vec![col(Some(0)), col(Some(4)), col(Some(6))]);
        let d = decide(&t, &[e], &DecideConfig::default());
        let f = &d.fields["votes.1"];
        assert_eq!(
            f.value,
            Some(45),
            "the boxes are transcribed, not the bubbles"
        );
        assert_eq!(f.status, FieldStatus::Flagged);
        assert!(f.flags.iter().any(|c| c == "channel_disagreement"), "{f:?}");
    }

    #[test]
    fn a_faint_mark_of_another_digit_is_a_disagreement() {
        let t = template();
        let mut e = ev("votes.2", sure("X26"));
        let col = |d: u8, f: f64| BubbleColumn {
            fill: (0..10).map(|i| if i == d { f } else { 0.0 }).collect(),
            state: if f >= crate::segment::BUBBLE_FILLED {
                BubbleState::One(d)
            } else {
                BubbleState::Empty
            },
        };
        // seed 43, s0261: the officer marked 1 and 6 faintly (fill 0.22 and 0.25): the bubbles say
        // 16, the boxes 26.
        e.bubbles = Some(vec![col(0, 1.0), col(1, 0.22), col(6, 0.25)]);
        let d = decide(&t, &[e.clone()], &DecideConfig::default());
        let f = &d.fields["votes.2"];
        assert_eq!(f.value, Some(26));
        assert!(f.flags.iter().any(|c| c == "channel_disagreement"), "{f:?}");
        // Faint marks of the digits the boxes hold: nothing to flag.
        e.bubbles = Some(vec![col(0, 1.0), col(2, 0.22), col(6, 0.25)]);
        let d = decide(&t, &[e.clone()], &DecideConfig::default());
        assert!(
            d.fields["votes.2"].flags.is_empty(),
            "{:?}",
            d.fields["votes.2"]
        );
        // Ink in two bubbles of a column, or too little in one: no faint mark.
        assert_eq!(faint_mark(&[0.0, 0.22, 0.06, 0.0], None), None);
        assert_eq!(faint_mark(&[0.0, 0.12, 0.0, 0.0], None), None);
        assert_eq!(faint_mark(&[0.0, 0.22, 0.05, 0.0], None), Some(1));
    }

    #[test]
    fn a_faint_mark_over_printed_digits_is_found_against_the_submissions_baseline() {
        let t = template();
        // Sharp photo: every empty bubble holds its printed digit at 0.10-0.26 (seed 112,
        // s0044); a clearly filled bubble reads 0.9.
        let printed = [0.24, 0.12, 0.19, 0.19, 0.17, 0.23, 0.20, 0.10, 0.23, 0.20];
        let col = |filled: Option<u8>, faint: Option<(u8, f64)>| {
            let mut fill = printed.to_vec();
            if let Some(d) = filled {
                fill[usize::from(d)] = 0.9;
            }
            if let Some((d, f)) = faint {
                fill[usize::from(d)] = f;
            }
            BubbleColumn {
                fill,
                state: filled.map_or(BubbleState::Empty, BubbleState::One),
            }
        };
        let evidence = |faint_col: BubbleColumn| {
            let mut v1 = ev("votes.1", sure("X51"));
            v1.bubbles = Some(vec![col(Some(0), None), faint_col, col(Some(1), None)]);
            let mut v2 = ev("votes.2", sure("X26"));
            v2.bubbles = Some(vec![
                col(Some(0), None),
                col(Some(2), None),
                col(Some(6), None),
            ]);
            let mut v3 = ev("votes.3", sure("X34"));
            v3.bubbles = Some(vec![
                col(Some(0), None),
                col(Some(3), None),
                col(Some(4), None),
            ]);
            vec![v1, v2, v3]
        };
        // The officer marked 3 faintly (0.34) where the box says 5: a disagreement, though the
        // raw fills hold ink in every bubble of the column.
        assert_eq!(faint_mark(&col(None, Some((3, 0.34))).fill, None), None);
        let d = decide(
            &t,
            &evidence(col(None, Some((3, 0.34)))),
            &DecideConfig::default(),
        );
        let f = &d.fields["votes.1"];
        assert!(f.flags.iter().any(|c| c == "channel_disagreement"), "{f:?}");
        // A faint mark of the box's own digit: nothing to flag.
        let d = decide(
            &t,
            &evidence(col(None, Some((5, 0.34)))),
            &DecideConfig::default(),
        );
        let f = &d.fields["votes.1"];
        assert!(
            !f.flags.iter().any(|c| c == "channel_disagreement"),
            "{f:?}"
        );
        // Printed digits alone, while the officer filled the field's other columns: the column
        // does not vouch for its box (`BubbleFindings::unmarked`), which is said as such.
        let d = decide(&t, &evidence(col(None, None)), &DecideConfig::default());
        let m = d
            .flags
            .iter()
            .find(|fl| fl.field.as_deref() == Some("votes.1"))
            .map(|fl| fl.message.clone())
            .unwrap_or_default();
        assert!(
            m.contains("do not confirm") && m.contains("box 2 reads 5"),
            "{m}"
        );
    }

    #[test]
    fn an_empty_column_beside_filled_ones_does_not_vouch_for_its_digit() {
        let t = template();
        let col = |d: Option<u8>| BubbleColumn {
            fill: (0..10)
                .map(|i| if Some(i as u8) == d { 0.9 } else { 0.1 })
                .collect(),
            state: d.map_or(BubbleState::Empty, BubbleState::One),
        };
        let disagrees = |boxes: &str, cols: Vec<BubbleColumn>| {
            let mut e = ev("votes.3", sure(boxes));
            e.bubbles = Some(cols);
            let d = decide(&t, &[e], &DecideConfig::default());
            let f = d.fields["votes.3"].clone();
            let flagged = f.flags.iter().any(|c| c == "channel_disagreement");
            assert_eq!(flagged, f.status != FieldStatus::Accepted, "{f:?}");
            (flagged, f)
        };
        // Seed 187, s0114: the officer filled 9 and, too faintly to see, 7 under a box 8.
        let (flagged, f) = disagrees("X98", vec![col(None), col(Some(9)), col(None)]);
        assert!(flagged, "{f:?}");
        assert_eq!(f.value, Some(98), "what is written stays the reading");
        // A middle column left empty, or a leading digit's column.
        assert!(disagrees("X55", vec![col(Some(0)), col(None), col(Some(5))]).0);
        assert!(disagrees("198", vec![col(None), col(Some(9)), col(Some(8))]).0);
        // Every column confirmed, or the officer skipped the bubbles altogether: no flag.
        assert!(!disagrees("X98", vec![col(None), col(Some(9)), col(Some(8))]).0);
        assert!(!disagrees("X98", vec![col(None), col(None), col(None)]).0);
        // A leading 0 written in the box is a position the officer may leave unmarked.
        assert!(!disagrees("098", vec![col(None), col(Some(9)), col(Some(8))]).0);
    }

    #[test]
    fn a_bubble_under_an_x_box_is_a_disagreement() {
        let t = template();
        let mut e = ev("votes.3", sure("XX9"));
        let col = |d: Option<u8>| BubbleColumn {
            fill: (0..10)
                .map(|i| if Some(i as u8) == d { 0.9 } else { 0.1 })
                .collect(),
            state: d.map_or(BubbleState::Empty, BubbleState::One),
        };
        // The officer marked 6 in the middle column, where the box holds an X.
        e.bubbles = Some(vec![col(None), col(Some(6)), col(Some(9))]);
        let d = decide(&t, &[e.clone()], &DecideConfig::default());
        let f = &d.fields["votes.3"];
        assert_eq!(f.value, Some(9));
        assert!(f.flags.iter().any(|c| c == "channel_disagreement"), "{f:?}");
        // Empty leading columns are unused positions, not a disagreement.
        e.bubbles = Some(vec![col(None), col(None), col(Some(9))]);
        let d = decide(&t, &[e], &DecideConfig::default());
        assert!(
            !d.fields["votes.3"]
                .flags
                .iter()
                .any(|c| c == "channel_disagreement")
        );
        assert_eq!(d.fields["votes.3"].channels.bubbles_value, Some(9));
    }

    #[test]
    fn poor_alignment_is_never_accepted() {
        let t = template();
        let mut evs = page1(&[]);
        for e in &mut evs {
            e.page_good = false;
        }
        let d = decide(&t, &evs, &DecideConfig::default());
        assert!(d.fields.values().all(|f| f.status != FieldStatus::Accepted));
    }

    #[test]
    fn parse_labels_follows_the_leading_rule() {
        assert_eq!(parse_labels(&[lab("X"), lab("_"), lab("7")]), Some(Some(7)));
        assert_eq!(
            parse_labels(&[lab("0"), lab("4"), lab("5")]),
            Some(Some(45))
        );
        assert_eq!(parse_labels(&[lab("X"), lab("X"), lab("X")]), Some(None));
        assert_eq!(parse_labels(&[lab("1"), lab("_"), lab("5")]), None);
    }

    /// The compiled factor is `rule_factor` to the bit on every rule of the shipped template,
    /// with each field in or out of the component, listed, unlisted, blank or fixed.
    #[test]
    fn compiled_rules_match_rule_factor() {
        let t = template();
        let rules = t.rules();
        let cfg = DecideConfig::default();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        let mut compared = 0;
        for r in &rules {
            for _ in 0..200 {
                // Each field: in the component (an option) or fixed (a reading).
                let mut ids: Vec<String> = Vec::new();
                let mut opts: Vec<Option<Option<i64>>> = Vec::new();
                let mut fixed: HashMap<String, Option<i64>> = HashMap::new();
                let value = |n: u64| {
                    if n == 0 {
                        None
                    } else {
                        Some((n * 37 % 400) as i64)
                    }
                };
                for f in &r.fields {
                    if next(2) == 0 {
                        ids.push(f.clone());
                        // 0: unlisted, 1: listed blank, else a listed number.
                        let o = next(6);
                        opts.push(if o == 0 { None } else { Some(value(o - 1)) });
                    } else {
                        fixed.insert(f.clone(), value(next(5)));
                    }
                }
                let index: HashMap<&str, usize> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (id.as_str(), i))
                    .collect();
                let compiled = CompiledRule::new(r, &index, &fixed, &cfg);
                let got = compiled.factor(|k| opts[k].flatten(), |k| opts[k].is_some());
                let assign: HashMap<&str, Option<Option<i64>>> = ids
                    .iter()
                    .map(|id| id.as_str())
                    .zip(opts.iter().copied())
                    .collect();
                let value = |id: &str| -> Option<i64> {
                    match assign.get(id) {
                        Some(Some(v)) => *v,
                        Some(None) => None,
                        None => fixed.get(id).copied().flatten(),
                    }
                };
                let want = rule_factor(r, &assign, &value, &cfg);
                assert_eq!(got.to_bits(), want.to_bits(), "{}: {got} vs {want}", r.id);
                compared += 1;
            }
        }
        assert!(compared >= 200 * 10, "only {compared} cases");
    }
}
