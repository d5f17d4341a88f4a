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
use std::collections::{HashMap, HashSet};
use std::path::Path;

pub mod fit;
pub mod overlay;
pub mod rules;

pub use rules::{CmpOp, LinExpr, Rule, RuleOutcome, Term};

/// Number of bubbles per column (digits 0..9).
pub const BUBBLES_PER_COLUMN: usize = 10;
/// Number of data bits of a tag36h10 tag (6 x 6 modules inside the black border).
pub const TAG_BITS: usize = 36;
/// Names a page's registration marks must have (each exactly once).
pub const MARK_NAMES: [&str; 4] = ["top_left", "top_right", "bottom_left", "bottom_right"];

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
    /// The printed guide's dots, `[x, y, w, h]` mm relative to each box's top-left corner
    /// (every box of the field carries the same guide); required with a guide.
    #[serde(default)]
    pub guide_dots: Vec<RectMm>,
    /// Grey level (0-255, on white paper) of the guide's dots as printed.
    #[serde(default)]
    pub guide_grey: Option<u8>,
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
        // toml's message names the offending key (unknown or missing field) and shows the line.
        let t: Template = toml::from_str(text).map_err(|e| TemplateError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        t.validate(origin)?;
        Ok(t)
    }

    /// Check the invariants listed in the module documentation; `origin` names the template in
    /// errors. The error's `key` is the path of the bad value, e.g. `fields."dpt.l".boxes[2]`.
    pub fn validate(&self, origin: &str) -> Result<(), TemplateError> {
        let bad = |key: String, message: String| TemplateError::Invalid {
            path: origin.to_string(),
            key,
            message,
        };
        if self.schema != TEMPLATE_SCHEMA {
            return Err(bad(
                "schema".into(),
                format!(
                    "schema {} is not supported (expected {TEMPLATE_SCHEMA})",
                    self.schema
                ),
            ));
        }
        if self.id.trim().is_empty() {
            return Err(bad("id".into(), "must not be empty".into()));
        }
        if self.pages.is_empty() {
            return Err(bad("pages".into(), "at least one page is required".into()));
        }
        // pages: numbers 1..=N, each once
        let mut seen = HashSet::new();
        for (i, p) in self.pages.iter().enumerate() {
            let key = format!("pages[{i}]");
            if p.number < 1 || p.number as usize > self.pages.len() || !seen.insert(p.number) {
                return Err(bad(
                    format!("{key}.number"),
                    format!(
                        "page number {} must be unique and within 1..={}",
                        p.number,
                        self.pages.len()
                    ),
                ));
            }
            p.validate(&key).map_err(|(k, m)| bad(k, m))?;
        }
        // fields
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, f) in self.fields.iter().enumerate() {
            if f.id.trim().is_empty() {
                return Err(bad(format!("fields[{i}].id"), "must not be empty".into()));
            }
            if ids.insert(f.id.as_str(), i).is_some() {
                return Err(bad(
                    format!("fields[{i}].id"),
                    format!("duplicate field id `{}`", f.id),
                ));
            }
        }
        for f in &self.fields {
            let key = format!("fields.\"{}\"", f.id);
            let page = self.page(f.page).ok_or_else(|| {
                bad(
                    format!("{key}.page"),
                    format!("page {} does not exist", f.page),
                )
            })?;
            f.validate(&key, page, self).map_err(|(k, m)| bad(k, m))?;
        }
        // rules
        let mut rule_ids = HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            if r.id.trim().is_empty() || !rule_ids.insert(r.id.as_str()) {
                return Err(bad(
                    format!("rules[{i}].id"),
                    format!("rule id `{}` must be non-empty and unique", r.id),
                ));
            }
        }
        self.try_rules_with_origin(origin)?;
        Ok(())
    }

    /// The rules with `for_each` expanded and checks parsed. Fails only for a template that
    /// was modified after loading into an invalid state.
    pub fn try_rules(&self) -> Result<Vec<Rule>, TemplateError> {
        self.try_rules_with_origin(&self.id)
    }

    fn try_rules_with_origin(&self, origin: &str) -> Result<Vec<Rule>, TemplateError> {
        let numeric: Vec<&str> = self.numeric_fields().map(|f| f.id.as_str()).collect();
        let mut out = Vec::new();
        for (i, spec) in self.rules.iter().enumerate() {
            let mut rules = rules::compile(spec, &numeric).map_err(|(sub, message)| {
                TemplateError::Invalid {
                    path: origin.to_string(),
                    key: format!("rules[{i}] (\"{}\").{sub}", spec.id),
                    message,
                }
            })?;
            out.append(&mut rules);
        }
        Ok(out)
    }

    /// All rule instances of this (validated) template, `for_each` expanded. A template
    /// validated by `load`/`from_toml_str` always compiles; should a caller have modified it into
    /// an invalid state, the error is logged and no rules are returned.
    pub fn rules(&self) -> Vec<Rule> {
        match self.try_rules() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("template rules do not compile: {e}");
                Vec::new()
            }
        }
    }

    pub fn page(&self, number: u32) -> Option<&Page> {
        self.pages.iter().find(|p| p.number == number)
    }

    pub fn field(&self, id: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == id)
    }

    /// Fields read as numbers from digit boxes (digits, row_totals, date), in template order.
    pub fn numeric_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.kind.has_boxes())
    }

    /// Fields printed on page `number`, in template order.
    pub fn fields_on_page(&self, number: u32) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(move |f| f.page == number)
    }

    /// Number of fields of each kind, in the order digits, row_totals, date, bubbles, tally_grid.
    pub fn kind_counts(&self) -> Vec<(FieldKind, usize)> {
        FieldKind::ALL
            .iter()
            .map(|k| (*k, self.fields.iter().filter(|f| f.kind == *k).count()))
            .collect()
    }

    /// A copy with every geometric element of every page moved by `(dx, dy)` mm (marks, tag
    /// and fields). Used for negative controls; the copy is not re-validated.
    pub fn shifted(&self, dx: f64, dy: f64) -> Template {
        let mut t = self.clone();
        let mv = |r: &mut RectMm| {
            r[0] += dx;
            r[1] += dy;
        };
        for p in &mut t.pages {
            for m in &mut p.marks {
                m.center[0] += dx;
                m.center[1] += dy;
                m.squares.iter_mut().for_each(mv);
            }
            mv(&mut p.tag.rect);
        }
        for f in &mut t.fields {
            f.boxes.iter_mut().for_each(mv);
            for c in f.columns.iter_mut().flatten() {
                c[0] += dx;
                c[1] += dy;
            }
            f.col_edges_mm.iter_mut().for_each(|x| *x += dx);
            f.row_edges_mm.iter_mut().for_each(|y| *y += dy);
        }
        t
    }
}

impl FieldKind {
    pub const ALL: [FieldKind; 5] = [
        FieldKind::Digits,
        FieldKind::RowTotals,
        FieldKind::Date,
        FieldKind::Bubbles,
        FieldKind::TallyGrid,
    ];

    /// Fields of this kind are handwritten digits in boxes, read by the digit model.
    pub fn has_digit_boxes(self) -> bool {
        matches!(
            self,
            FieldKind::Digits | FieldKind::RowTotals | FieldKind::Date
        )
    }

    /// The name used in the TOML (`digits`, `row_totals`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Digits => "digits",
            FieldKind::RowTotals => "row_totals",
            FieldKind::Date => "date",
            FieldKind::Bubbles => "bubbles",
            FieldKind::TallyGrid => "tally_grid",
        }
    }

    /// Whether the field is read from digit boxes (and so has a numeric value).
    pub fn has_boxes(self) -> bool {
        matches!(
            self,
            FieldKind::Digits | FieldKind::RowTotals | FieldKind::Date
        )
    }
}

/// Result of a validation step: the failing key and message.
type Check = Result<(), (String, String)>;

fn rect_inside(r: &RectMm, w: f64, h: f64) -> bool {
    r.iter().all(|v| v.is_finite())
        && r[2] > 0.0
        && r[3] > 0.0
        && r[0] >= 0.0
        && r[1] >= 0.0
        && r[0] + r[2] <= w
        && r[1] + r[3] <= h
}

fn point_inside(p: &PointMm, w: f64, h: f64) -> bool {
    p.iter().all(|v| v.is_finite()) && (0.0..=w).contains(&p[0]) && (0.0..=h).contains(&p[1])
}

fn check_rect(key: String, r: &RectMm, w: f64, h: f64) -> Check {
    if rect_inside(r, w, h) {
        Ok(())
    } else {
        Err((
            key,
            format!("rectangle {r:?} must have positive size and lie inside the {w} x {h} mm page"),
        ))
    }
}

fn check_point(key: String, p: &PointMm, w: f64, h: f64) -> Check {
    if point_inside(p, w, h) {
        Ok(())
    } else {
        Err((
            key,
            format!("point {p:?} lies outside the {w} x {h} mm page"),
        ))
    }
}

fn strictly_increasing(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite()) && v.windows(2).all(|w| w[0] < w[1])
}

impl Page {
    fn validate(&self, key: &str) -> Check {
        let (w, h) = (self.width_mm, self.height_mm);
        if !(w.is_finite() && w > 0.0 && h.is_finite() && h > 0.0) {
            return Err((
                format!("{key}.width_mm"),
                format!("page size {w} x {h} mm must be positive"),
            ));
        }
        let mut names = HashSet::new();
        for (j, m) in self.marks.iter().enumerate() {
            let mk = format!("{key}.marks[{j}]");
            if !MARK_NAMES.contains(&m.name.as_str()) || !names.insert(m.name.as_str()) {
                return Err((
                    format!("{mk}.name"),
                    format!(
                        "mark name `{}` must be one of {MARK_NAMES:?}, each used once",
                        m.name
                    ),
                ));
            }
            check_point(format!("{mk}.center"), &m.center, w, h)?;
            if m.squares.is_empty() {
                return Err((format!("{mk}.squares"), "at least one square".into()));
            }
            for (k, s) in m.squares.iter().enumerate() {
                check_rect(format!("{mk}.squares[{k}]"), s, w, h)?;
            }
        }
        if names.len() != MARK_NAMES.len() {
            return Err((
                format!("{key}.marks"),
                format!("all four marks {MARK_NAMES:?} are required"),
            ));
        }
        let t = &self.tag;
        if t.family != "tag36h10" {
            return Err((
                format!("{key}.tag.family"),
                format!("unsupported tag family `{}` (expected tag36h10)", t.family),
            ));
        }
        check_rect(format!("{key}.tag.rect"), &t.rect, w, h)?;
        if t.bits.len() != TAG_BITS || !t.bits.chars().all(|c| c == '0' || c == '1') {
            return Err((
                format!("{key}.tag.bits"),
                format!("must be {TAG_BITS} characters of '0'/'1'"),
            ));
        }
        Ok(())
    }

    /// The registration mark reference points, in the order of `marks`.
    pub fn mark_points(&self) -> Vec<(&str, PointMm)> {
        self.marks
            .iter()
            .map(|m| (m.name.as_str(), m.center))
            .collect()
    }

    /// The mark with the given name (`top_left`, ...).
    pub fn mark(&self, name: &str) -> Option<&Mark> {
        self.marks.iter().find(|m| m.name == name)
    }
}

impl Tag {
    /// The full 8x8 module grid (border included), row-major from the top-left, `true` = black.
    /// Invariant after validation: the border ring is all black by construction.
    pub fn module_grid(&self) -> [[bool; 8]; 8] {
        let mut g = [[true; 8]; 8];
        for (i, c) in self.bits.chars().take(TAG_BITS).enumerate() {
            g[1 + i / 6][1 + i % 6] = c == '1';
        }
        g
    }

    /// Rectangle of module (row, col) of the 8x8 grid, in mm.
    pub fn module_rect(&self, row: usize, col: usize) -> RectMm {
        let (mw, mh) = (self.rect[2] / 8.0, self.rect[3] / 8.0);
        [
            self.rect[0] + col as f64 * mw,
            self.rect[1] + row as f64 * mh,
            mw,
            mh,
        ]
    }

    /// The four outer corners, clockwise from the top-left.
    pub fn corners(&self) -> [PointMm; 4] {
        rect_corners(&self.rect)
    }
}

/// Corners of a rectangle, clockwise from the top-left.
pub fn rect_corners(r: &RectMm) -> [PointMm; 4] {
    [
        [r[0], r[1]],
        [r[0] + r[2], r[1]],
        [r[0] + r[2], r[1] + r[3]],
        [r[0], r[1] + r[3]],
    ]
}

impl Field {
    fn validate(&self, key: &str, page: &Page, t: &Template) -> Check {
        let (w, h) = (page.width_mm, page.height_mm);
        let not_for = |name: &str| {
            Err((
                format!("{key}.{name}"),
                format!("not allowed for kind {}", self.kind.as_str()),
            ))
        };
        // keys that only some kinds may carry
        if !self.kind.has_boxes() {
            if !self.boxes.is_empty() {
                return not_for("boxes");
            }
            if self.line_mm.is_some() {
                return not_for("line_mm");
            }
        }
        if self.kind != FieldKind::Bubbles {
            if !self.columns.is_empty() {
                return not_for("columns");
            }
            if self.radius_mm.is_some() {
                return not_for("radius_mm");
            }
        }
        if self.kind != FieldKind::TallyGrid {
            if !self.col_edges_mm.is_empty() {
                return not_for("col_edges_mm");
            }
            if !self.row_edges_mm.is_empty() {
                return not_for("row_edges_mm");
            }
        }
        if self.kind != FieldKind::RowTotals && self.row.is_some() {
            return not_for("row");
        }
        let needs_of = matches!(
            self.kind,
            FieldKind::Bubbles | FieldKind::RowTotals | FieldKind::TallyGrid
        );
        if !needs_of && self.of.is_some() {
            return not_for("of");
        }
        let of = if needs_of {
            let name = self.of.as_deref().ok_or_else(|| {
                (
                    format!("{key}.of"),
                    format!("required for kind {}", self.kind.as_str()),
                )
            })?;
            let target = t.field(name).filter(|f| f.kind == FieldKind::Digits);
            Some(target.ok_or_else(|| {
                (
                    format!("{key}.of"),
                    format!("`{name}` is not a digits field of this template"),
                )
            })?)
        } else {
            None
        };
        if self.kind.has_boxes() {
            if self.boxes.is_empty() {
                return Err((
                    format!("{key}.boxes"),
                    "at least one box is required".into(),
                ));
            }
            for (i, b) in self.boxes.iter().enumerate() {
                check_rect(format!("{key}.boxes[{i}]"), b, w, h)?;
            }
            match self.line_mm {
                Some(l) if l.is_finite() && l > 0.0 => {}
                _ => {
                    return Err((
                        format!("{key}.line_mm"),
                        "a positive printed line width is required".into(),
                    ));
                }
            }
        }
        if self.guide == Guide::None {
            if !self.guide_dots.is_empty() {
                return Err((format!("{key}.guide_dots"), "needs a guide".into()));
            }
            if self.guide_grey.is_some() {
                return Err((format!("{key}.guide_grey"), "needs a guide".into()));
            }
        } else {
            if self.guide_dots.is_empty() {
                return Err((format!("{key}.guide_dots"), "a guide needs its dots".into()));
            }
            for b in &self.boxes {
                for (i, d) in self.guide_dots.iter().enumerate() {
                    if !rect_inside(d, b[2], b[3]) {
                        return Err((
                            format!("{key}.guide_dots[{i}]"),
                            format!("dot {d:?} must lie inside the {} x {} mm box", b[2], b[3]),
                        ));
                    }
                }
            }
        }
        match self.kind {
            FieldKind::RowTotals => {
                if !matches!(self.row, Some(r) if r >= 1) {
                    return Err((format!("{key}.row"), "a 1-based row is required".into()));
                }
            }
            FieldKind::Bubbles => {
                let n = of.map_or(0, |f| f.boxes.len());
                if self.columns.len() != n {
                    return Err((
                        format!("{key}.columns"),
                        format!(
                            "{} columns, but `{}` has {n} boxes",
                            self.columns.len(),
                            self.of.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                for (i, col) in self.columns.iter().enumerate() {
                    if col.len() != BUBBLES_PER_COLUMN {
                        return Err((
                            format!("{key}.columns[{i}]"),
                            format!(
                                "{} bubble centres, expected {BUBBLES_PER_COLUMN}",
                                col.len()
                            ),
                        ));
                    }
                    for (j, c) in col.iter().enumerate() {
                        check_point(format!("{key}.columns[{i}][{j}]"), c, w, h)?;
                    }
                }
                match self.radius_mm {
                    Some(r) if r.is_finite() && r > 0.0 => {}
                    _ => {
                        return Err((
                            format!("{key}.radius_mm"),
                            "a positive radius is required".into(),
                        ));
                    }
                }
            }
            FieldKind::TallyGrid => {
                for (name, edges, limit) in [
                    ("col_edges_mm", &self.col_edges_mm, w),
                    ("row_edges_mm", &self.row_edges_mm, h),
                ] {
                    if edges.len() < 2
                        || !strictly_increasing(edges)
                        || edges[0] < 0.0
                        || edges[edges.len() - 1] > limit
                    {
                        return Err((
                            format!("{key}.{name}"),
                            "at least 2 strictly increasing edges inside the page are required"
                                .into(),
                        ));
                    }
                }
            }
            FieldKind::Digits | FieldKind::Date => {}
        }
        Ok(())
    }

    /// The digit box rectangles (inside edge of the printed line), left to right.
    pub fn box_rects(&self) -> &[RectMm] {
        &self.boxes
    }

    /// Bubble centres as `(column, digit, centre)`; column = index of the box of `of`.
    pub fn bubble_centres(&self) -> impl Iterator<Item = (usize, usize, PointMm)> + '_ {
        self.columns
            .iter()
            .enumerate()
            .flat_map(|(c, col)| col.iter().enumerate().map(move |(d, p)| (c, d, *p)))
    }

    /// Number of tally rows and columns (cells), `(rows, cols)`.
    pub fn tally_shape(&self) -> (usize, usize) {
        (
            self.row_edges_mm.len().saturating_sub(1),
            self.col_edges_mm.len().saturating_sub(1),
        )
    }

    /// Rectangle of tally cell (row, col), 0-based, between the line centres.
    pub fn tally_cell(&self, row: usize, col: usize) -> Option<RectMm> {
        let x0 = *self.col_edges_mm.get(col)?;
        let x1 = *self.col_edges_mm.get(col + 1)?;
        let y0 = *self.row_edges_mm.get(row)?;
        let y1 = *self.row_edges_mm.get(row + 1)?;
        Some([x0, y0, x1 - x0, y1 - y0])
    }

    /// All tally cells as `(row, col, rect)`, row-major.
    pub fn tally_cells(&self) -> Vec<(usize, usize, RectMm)> {
        let (rows, cols) = self.tally_shape();
        (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (r, c)))
            .filter_map(|(r, c)| self.tally_cell(r, c).map(|rect| (r, c, rect)))
            .collect()
    }

    /// Bounding rectangle of everything the field prints, if it has geometry.
    pub fn bounds(&self) -> Option<RectMm> {
        let mut pts: Vec<PointMm> = self.boxes.iter().flat_map(rect_corners).collect();
        let r = self.radius_mm.unwrap_or(0.0);
        for (_, _, c) in self.bubble_centres() {
            pts.push([c[0] - r, c[1] - r]);
            pts.push([c[0] + r, c[1] + r]);
        }
        if let (Some(x0), Some(x1), Some(y0), Some(y1)) = (
            self.col_edges_mm.first(),
            self.col_edges_mm.last(),
            self.row_edges_mm.first(),
            self.row_edges_mm.last(),
        ) {
            pts.push([*x0, *y0]);
            pts.push([*x1, *y1]);
        }
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for p in &pts {
            x0 = x0.min(p[0]);
            y0 = y0.min(p[1]);
            x1 = x1.max(p[0]);
            y1 = y1.max(p[1]);
        }
        (!pts.is_empty()).then_some([x0, y0, x1 - x0, y1 - y0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_text() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/templates/c-hasil-ppwp-2024.toml"
        ))
        .unwrap()
    }

    fn shipped() -> Template {
        Template::from_toml_str(&shipped_text(), "shipped").unwrap()
    }

    #[test]
    fn shipped_template_loads_with_the_contracted_fields() {
        let t = Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_TEMPLATE_PATH))
            .unwrap();
        assert_eq!(t.pages.len(), 3);
        for (p, id) in t.pages.iter().zip([101, 102, 103]) {
            assert_eq!(p.tag.id, id);
            assert_eq!(p.marks.len(), 4);
        }
        let mut ids: Vec<String> = Vec::new();
        for row in ["dpt", "b1", "b2", "b3", "b4", "disabled"] {
            for c in ["l", "p", "lp"] {
                ids.push(format!("{row}.{c}"));
            }
        }
        for b in ["received", "used", "returned", "unused"] {
            ids.push(format!("ballots.{b}"));
        }
        for n in 1..=3 {
            ids.push(format!("votes.{n}"));
            ids.push(format!("votes.{n}.bubbles"));
            ids.push(format!("votes.{n}.tally"));
            for k in 1..=5 {
                ids.push(format!("votes.{n}.row{k}"));
            }
        }
        for f in ["valid", "invalid", "total", "invalid.tally"] {
            ids.push(f.into());
        }
        for k in 1..=5 {
            ids.push(format!("invalid.row{k}"));
        }
        for f in ["date.day", "date.month", "date.year"] {
            ids.push(f.into());
        }
        for id in &ids {
            assert!(t.field(id).is_some(), "missing field {id}");
        }
        assert_eq!(t.fields.len(), ids.len());
        let nboxes = |id: &str| t.field(id).unwrap().boxes.len();
        assert_eq!(nboxes("dpt.l"), 3);
        assert_eq!(nboxes("votes.2.row3"), 2);
        assert_eq!(nboxes("date.year"), 4);
        let votes = t.field("votes.1").unwrap();
        assert_eq!(votes.guide, Guide::Dotted8);
        // The official guide: a dotted "8" of 33 square dots (5 wide, 9 high), printed grey.
        assert_eq!(votes.guide_dots.len(), 33);
        assert_eq!(votes.guide_grey, Some(201));
        assert!(t.field("dpt.l").unwrap().guide_dots.is_empty());
        let tally = t.field("votes.3.tally").unwrap();
        assert_eq!(tally.tally_shape(), (5, 12));
        assert_eq!(tally.tally_cells().len(), 60);
        let bub = t.field("votes.1.bubbles").unwrap();
        assert_eq!(bub.bubble_centres().count(), 30);
        // rules: every hard rule of the contract is there
        let rules = t.rules();
        for id in [
            "dpt.lp_sum",
            "b4_sum.l",
            "b4_sum.lp",
            "b4.lp_sum",
            "valid_sum",
            "total_sum",
            "votes.1.rows_sum",
            "invalid.rows_sum",
            "ballots_balance",
            "votes_le_dpt",
            "count_max_300[votes.2]",
            "count_max_300[dpt.lp]",
        ] {
            assert!(rules.iter().any(|r| r.id == id), "missing rule {id}");
        }
        assert!(!rules.iter().any(|r| r.id.starts_with("count_max_300[date")));
    }

    #[test]
    fn shipped_rules_accept_a_consistent_form_and_catch_a_wrong_sum() {
        let t = shipped();
        let mut v: HashMap<String, i64> = HashMap::new();
        let mut put = |k: &str, x: i64| {
            v.insert(k.to_string(), x);
        };
        for (row, l, p) in [
            ("dpt", 130, 140),
            ("b1", 100, 110),
            ("b2", 3, 2),
            ("b3", 1, 0),
            ("b4", 104, 112),
            ("disabled", 2, 1),
        ] {
            put(&format!("{row}.l"), l);
            put(&format!("{row}.p"), p);
            put(&format!("{row}.lp"), l + p);
        }
        for (n, votes, rows) in [
            (1, 100, [50, 30, 20, 0, 0]),
            (2, 80, [60, 20, 0, 0, 0]),
            (3, 30, [30, 0, 0, 0, 0]),
        ] {
            put(&format!("votes.{n}"), votes);
            for (k, r) in rows.iter().enumerate() {
                put(&format!("votes.{n}.row{}", k + 1), *r);
            }
        }
        put("valid", 210);
        put("invalid", 6);
        for k in 1..=5 {
            put(&format!("invalid.row{k}"), if k == 1 { 6 } else { 0 });
        }
        put("total", 216);
        put("ballots.received", 276);
        put("ballots.used", 216);
        put("ballots.returned", 0);
        put("ballots.unused", 60);
        put("date.day", 14);
        put("date.month", 2);
        put("date.year", 2024);
        let rules = t.rules();
        let get = |f: &str| v.get(f).copied();
        for r in &rules {
            assert_eq!(
                r.evaluate(&get),
                RuleOutcome::Ok,
                "{}: {}",
                r.id,
                r.check_text()
            );
        }
        let mut bad = v.clone();
        bad.insert("valid".into(), 201);
        let get = |f: &str| bad.get(f).copied();
        let violated: Vec<&str> = rules
            .iter()
            .filter(|r| matches!(r.evaluate(&get), RuleOutcome::Violated { .. }))
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(violated, ["valid_sum", "total_sum"]);
        let get = |f: &str| {
            if f == "votes.2" {
                None
            } else {
                v.get(f).copied()
            }
        };
        let r = rules.iter().find(|r| r.id == "valid_sum").unwrap();
        assert_eq!(
            r.evaluate(&get),
            RuleOutcome::Unknown {
                missing: vec!["votes.2".into()]
            }
        );
    }

    /// Apply `edit` to the shipped template's TOML value, reload, and return the error text.
    fn error_after(edit: impl FnOnce(&mut toml::Table)) -> String {
        let mut v: toml::Table = toml::from_str(&shipped_text()).unwrap();
        edit(&mut v);
        let text = toml::to_string(&v).unwrap();
        match Template::from_toml_str(&text, "edited") {
            Ok(_) => panic!("edited template should not load"),
            Err(e) => e.to_string(),
        }
    }

    fn field_mut<'a>(v: &'a mut toml::Table, id: &str) -> &'a mut toml::Table {
        v["fields"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .map(|f| f.as_table_mut().unwrap())
            .find(|f| f["id"].as_str() == Some(id))
            .unwrap()
    }

    #[test]
    fn bad_values_name_their_key() {
        type Edit = Box<dyn FnOnce(&mut toml::Table)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|v| {
                    v.insert("schema".into(), 2.into());
                }),
                "`schema`",
            ),
            (
                Box::new(|v| {
                    let b = field_mut(v, "dpt.l")["boxes"].as_array_mut().unwrap();
                    b[2] =
                        toml::Value::Array(vec![599.0.into(), 10.0.into(), 5.0.into(), 5.0.into()]);
                }),
                "`fields.\"dpt.l\".boxes[2]`",
            ),
            (
                Box::new(|v| {
                    field_mut(v, "votes.1.bubbles")["columns"]
                        .as_array_mut()
                        .unwrap()[1]
                        .as_array_mut()
                        .unwrap()
                        .pop();
                }),
                "`fields.\"votes.1.bubbles\".columns[1]`",
            ),
            (
                Box::new(|v| {
                    field_mut(v, "votes.1.bubbles").insert("of".into(), "valid.x".into());
                }),
                "`fields.\"votes.1.bubbles\".of`",
            ),
            (
                Box::new(|v| {
                    let e = field_mut(v, "invalid.tally")["col_edges_mm"]
                        .as_array_mut()
                        .unwrap();
                    e.swap(3, 4);
                }),
                "`fields.\"invalid.tally\".col_edges_mm`",
            ),
            (
                Box::new(|v| {
                    field_mut(v, "valid").insert("page".into(), 7.into());
                }),
                "`fields.\"valid\".page`",
            ),
            (
                Box::new(|v| {
                    field_mut(v, "votes.2").remove("guide_dots");
                }),
                "`fields.\"votes.2\".guide_dots`",
            ),
            (
                Box::new(|v| {
                    let d = field_mut(v, "votes.3")["guide_dots"]
                        .as_array_mut()
                        .unwrap();
                    d[4] =
                        toml::Value::Array(vec![18.5.into(), 2.0.into(), 0.7.into(), 0.7.into()]);
                }),
                "`fields.\"votes.3\".guide_dots[4]`",
            ),
            (
                Box::new(|v| {
                    field_mut(v, "valid").insert("guide_grey".into(), 201.into());
                }),
                "`fields.\"valid\".guide_grey`",
            ),
            (
                Box::new(|v| {
                    field_mut(v, "total").insert("id".into(), "valid".into());
                }),
                ".id`",
            ),
            (
                Box::new(|v| {
                    field_mut(v, "dpt.p").insert("radius_mm".into(), 2.0.into());
                }),
                "`fields.\"dpt.p\".radius_mm`",
            ),
            (
                Box::new(|v| {
                    field_mut(v, "date.day").remove("line_mm");
                }),
                "`fields.\"date.day\".line_mm`",
            ),
            (
                Box::new(|v| {
                    let p = v["pages"].as_array_mut().unwrap()[1]
                        .as_table_mut()
                        .unwrap();
                    p["tag"]
                        .as_table_mut()
                        .unwrap()
                        .insert("bits".into(), "0101".into());
                }),
                "`pages[1].tag.bits`",
            ),
            (
                Box::new(|v| {
                    let p = v["pages"].as_array_mut().unwrap()[0]
                        .as_table_mut()
                        .unwrap();
                    let m = p["marks"].as_array_mut().unwrap()[3]
                        .as_table_mut()
                        .unwrap();
                    m.insert("name".into(), "top_left".into());
                }),
                "`pages[0].marks[3].name`",
            ),
            (
                Box::new(|v| {
                    let p = v["pages"].as_array_mut().unwrap()[2]
                        .as_table_mut()
                        .unwrap();
                    p.insert("number".into(), 1.into());
                }),
                "`pages[2].number`",
            ),
            (
                Box::new(|v| {
                    let r = v["rules"].as_array_mut().unwrap()[0]
                        .as_table_mut()
                        .unwrap();
                    r.insert("check".into(), "dpt.lp == dpt.l + dpt.q".into());
                }),
                "`rules[0] (\"dpt.lp_sum\").check`",
            ),
            (
                Box::new(|v| {
                    let r = v["rules"]
                        .as_array_mut()
                        .unwrap()
                        .last_mut()
                        .unwrap()
                        .as_table_mut()
                        .unwrap();
                    r.insert("check".into(), "votes.1 * votes.2 <= 1".into());
                }),
                "`rules[",
            ),
            (
                Box::new(|v| {
                    let rules = v["rules"].as_array_mut().unwrap();
                    let r = rules
                        .iter_mut()
                        .find(|r| r["id"].as_str() == Some("count_max_300"))
                        .unwrap();
                    r["for_each"].as_array_mut().unwrap().push("date.*".into());
                    r["for_each"]
                        .as_array_mut()
                        .unwrap()
                        .push("nothing.*".into());
                }),
                "(\"count_max_300\").for_each[13]`",
            ),
        ];
        for (i, (edit, key)) in cases.into_iter().enumerate() {
            let e = error_after(edit);
            assert!(e.contains(key), "case {i}: error `{e}` does not name {key}");
        }
    }

    #[test]
    fn missing_and_unknown_keys_are_named_by_the_parser() {
        let e = error_after(|v| {
            field_mut(v, "dpt.l").remove("label_en");
        });
        assert!(e.contains("label_en"), "{e}");
        let e = error_after(|v| {
            field_mut(v, "dpt.l").insert("colour".into(), "red".into());
        });
        assert!(e.contains("colour"), "{e}");
        let e = error_after(|v| {
            v.remove("schema");
        });
        assert!(e.contains("schema"), "{e}");
    }

    #[test]
    fn shifting_moves_everything() {
        let t = shipped();
        let s = t.shifted(1.0, -2.0);
        let (a, b) = (t.field("dpt.l").unwrap(), s.field("dpt.l").unwrap());
        assert_eq!(b.boxes[0][0], a.boxes[0][0] + 1.0);
        assert_eq!(b.boxes[0][1], a.boxes[0][1] - 2.0);
        assert_eq!(
            s.pages[0].marks[0].center[0],
            t.pages[0].marks[0].center[0] + 1.0
        );
        let g = s.field("votes.1.tally").unwrap();
        assert_eq!(
            g.row_edges_mm[0],
            t.field("votes.1.tally").unwrap().row_edges_mm[0] - 2.0
        );
    }

    #[test]
    fn tag_grid_has_black_border_and_the_bits_inside() {
        let t = shipped();
        for p in &t.pages {
            let g = p.tag.module_grid();
            assert!(g[0].iter().chain(&g[7]).all(|b| *b));
            assert!(g.iter().all(|row| row[0] && row[7]));
            let inner: String = (1..7)
                .flat_map(|r| (1..7).map(move |c| (r, c)))
                .map(|(r, c)| if g[r][c] { '1' } else { '0' })
                .collect();
            assert_eq!(inner, p.tag.bits);
        }
    }

    proptest::proptest! {
        /// Tally cells tile the grid: consecutive cells share edges and their areas add up to
        /// the grid's area.
        #[test]
        fn tally_cells_tile_the_grid(dx in -50.0f64..50.0, dy in -50.0f64..50.0) {
            let t = shipped().shifted(dx, dy);
            let g = t.field("invalid.tally").unwrap();
            let cells = g.tally_cells();
            let area: f64 = cells.iter().map(|c| c.2[2] * c.2[3]).sum();
            let w = g.col_edges_mm.last().unwrap() - g.col_edges_mm[0];
            let h = g.row_edges_mm.last().unwrap() - g.row_edges_mm[0];
            proptest::prop_assert!((area - w * h).abs() < 1e-6 * w * h);
            for (r, c, rect) in &cells {
                if let Some(n) = g.tally_cell(*r, c + 1) {
                    proptest::prop_assert!((rect[0] + rect[2] - n[0]).abs() < 1e-9);
                }
            }
        }
    }
}
