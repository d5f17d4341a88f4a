//! `truth.json`: the exact ground truth of one synthetic submission (schema `rekap-truth/1`,
//! documented in docs/truth.md and docs/interfaces.md).

use super::camera::Conditions;
use super::fill::OfficerError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const TRUTH_SCHEMA: &str = "rekap-truth/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub schema: String,
    pub template: String,
    pub submission: String,
    /// The `--seed` of the run; with `index` it reproduces this submission.
    pub seed: u64,
    pub index: u64,
    pub pages: Vec<PageTruth>,
    pub fields: BTreeMap<String, FieldTruth>,
    pub officer_errors: Vec<OfficerError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageTruth {
    pub file: String,
    pub page: u32,
    pub width: u32,
    pub height: u32,
    /// Template mm -> output pixel, row-major (paper curl excluded: see `conditions.curl_mm`).
    pub homography: [f64; 9],
    pub conditions: Conditions,
}

/// One field's truth; the variant depends on the field kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldTruth {
    /// digits, row_totals, date: the value written (None = all boxes blank) and the box labels.
    Number {
        value: Option<i64>,
        boxes: Vec<String>,
    },
    /// bubbles: per column, the digits whose bubble is marked.
    Bubbles { filled: Vec<Vec<u8>> },
    /// tally_grid: number of strokes.
    Tally { count: u32 },
}

impl Truth {
    /// Numeric field values (for rule evaluation).
    pub fn values(&self) -> BTreeMap<String, Option<i64>> {
        self.fields
            .iter()
            .filter_map(|(k, v)| match v {
                FieldTruth::Number { value, .. } => Some((k.clone(), *value)),
                _ => None,
            })
            .collect()
    }
}
