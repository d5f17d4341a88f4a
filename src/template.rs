//! The form template: page geometry (in millimetres), fields and arithmetic rules.
//!
//! The format is documented in `docs/interfaces.md` and `templates/README.md`. Invariants after
//! [`Template::load`] / [`Template::from_toml_str`] succeed (checked by `validate`):
//! * page numbers are 1..=N, unique; every field's page exists;
//! * every field id is unique; every geometric element lies inside its page;
//! * `digits`/`row_totals`/`date` fields have >= 1 box; `bubbles` have one column of 10 centres per
//!   box of the field named by `of`; `tally_grid` has strictly increasing edges;
//! * every rule's check parses and names only existing numeric fields.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Current template format version.
pub const TEMPLATE_SCHEMA: u32 = 1;

/// The template shipped with rekap for the 2024 presidential form.
pub const DEFAULT_TEMPLATE_PATH: &str = "templates/c-hasil-ppwp-2024.toml";

/// `[x, y, w, h]` in millimetres, origin top-left of the upright page.
pub type RectMm = [f64; 4];
/// `[x, y]` in millimetres.
pub type PointMm = [f64; 2];

/// Errors from loading or validating a template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("template {path}: {message}")]
    Parse { path: String, message: String },
    #[error("template {path}: invalid value at `{key}`: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub schema: u32,
    pub id: String,
    pub title_id: String,
    pub title_en: String,
    pub source: String,
    pub pages: Vec<Page>,
    pub fields: Vec<Field>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub number: u32,
    pub width_mm: f64,
    pub height_mm: f64,
    pub marks: Vec<Mark>,
    pub tag: Tag,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    /// `top_left`, `top_right`, `bottom_left` or `bottom_right`.
    pub name: String,
    /// Reference point of the mark (shared corner of its squares).
    pub center: PointMm,
    /// Filled black squares forming the mark.
    pub squares: Vec<RectMm>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    /// Always `tag36h10` for this form.
    pub family: String,
    pub id: u32,
    /// Outer edge of the black border (8x8 modules).
    pub rect: RectMm,
    /// 36 data modules as printed on the upright page, row-major from top-left, '1' = black.
    pub bits: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Digits,
    RowTotals,
    Date,
    Bubbles,
    TallyGrid,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Guide {
    #[default]
    None,
    /// A faint dotted "8" printed inside each box (page 2).
    Dotted8,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub id: String,
    pub page: u32,
    pub kind: FieldKind,
    pub label_id: String,
    pub label_en: String,
    /// Digit boxes left to right, inside edge of the printed line (digits, row_totals, date).
    #[serde(default)]
    pub boxes: Vec<RectMm>,
    /// Printed box line width in mm.
    #[serde(default)]
    pub line_mm: Option<f64>,
    #[serde(default)]
    pub guide: Guide,
    /// The digits field this one backs up (bubbles, row_totals, tally_grid).
    #[serde(default)]
    pub of: Option<String>,
    /// Tally-grid row totalled by a `row_totals` field (1-based).
    #[serde(default)]
    pub row: Option<u32>,
    /// Bubble centres: one column per box of `of`, 10 centres each for digits 0..9.
    #[serde(default)]
    pub columns: Vec<Vec<PointMm>>,
    #[serde(default)]
    pub radius_mm: Option<f64>,
    /// Tally-grid cell edges.
    #[serde(default)]
    pub col_edges_mm: Vec<f64>,
    #[serde(default)]
    pub row_edges_mm: Vec<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Printed on the form: must hold on a correctly filled form.
    Hard,
    /// Practice or plausibility.
    Soft,
}

/// A rule as written in the template (before `for_each` expansion).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub kind: RuleKind,
    pub check: String,
    #[serde(default)]
    pub for_each: Vec<String>,
    pub message_id: String,
    pub message_en: String,
}

impl Template {
    /// Load and validate a template file.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parse and validate template text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, TemplateError> {
        let t: Template = toml::from_str(text).map_err(|e| TemplateError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        Ok(t)
    }

    pub fn page(&self, number: u32) -> Option<&Page> {
        self.pages.iter().find(|p| p.number == number)
    }

    pub fn field(&self, id: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == id)
    }

    /// Fields read as numbers from digit boxes (digits, row_totals, date), in template order.
    pub fn numeric_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| {
            matches!(
                f.kind,
                FieldKind::Digits | FieldKind::RowTotals | FieldKind::Date
            )
        })
    }
}
