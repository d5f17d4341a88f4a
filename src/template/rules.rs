//! Template rules: parsing of the linear `check` strings, `for_each` expansion and evaluation.
//!
//! Grammar (whitespace free-form):
//! ```text
//! check := expr op expr          op := "==" | "<=" | ">=" | "<" | ">"
//! expr  := ["-"] term (("+" | "-") term)*
//! term  := number | field | number "*" field | field "*" number | number "*" number
//! field := [A-Za-z$][A-Za-z0-9_.]*   ("$" alone: the for_each field)
//! ```
//! Numbers may have a fraction (`1.02`). A term may name at most one field (linear checks only).
//! `for_each` patterns match numeric field ids segment by segment (segments split at `.`);
//! `*` within a segment matches any characters except `.`, so `votes.*` matches `votes.1` but
//! not `votes.1.row1`.

use super::{RuleKind, RuleSpec};
use serde::Serialize;

/// Absolute tolerance when comparing the two sides (values are integers and coefficients short
/// decimals, so any real difference is far above this; it only absorbs float rounding).
const CMP_EPS: f64 = 1e-9;

/// Comparison operator of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CmpOp {
    Eq,
    Le,
    Ge,
    Lt,
    Gt,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Le => "<=",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Gt => ">",
        }
    }

    /// Whether `lhs op rhs` holds (with a rounding tolerance of `CMP_EPS`).
    pub fn holds(self, lhs: f64, rhs: f64) -> bool {
        match self {
            CmpOp::Eq => (lhs - rhs).abs() <= CMP_EPS,
            CmpOp::Le => lhs <= rhs + CMP_EPS,
            CmpOp::Ge => lhs + CMP_EPS >= rhs,
            CmpOp::Lt => lhs < rhs - CMP_EPS,
            CmpOp::Gt => lhs > rhs + CMP_EPS,
        }
    }
}

/// One term: `coef * field`, or the constant `coef` when `field` is `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Term {
    pub coef: f64,
    pub field: Option<String>,
}

/// A linear expression: the sum of its terms.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct LinExpr {
    pub terms: Vec<Term>,
}

impl LinExpr {
    /// Field ids named, in order of first appearance.
    pub fn fields(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in self.terms.iter().filter_map(|t| t.field.as_ref()) {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
        out
    }

    /// The value, or the fields whose value is missing.
    pub fn eval(&self, values: &impl Fn(&str) -> Option<i64>) -> Result<f64, Vec<String>> {
        let mut sum = 0.0;
        let mut missing = Vec::new();
        for t in &self.terms {
            match &t.field {
                None => sum += t.coef,
                Some(f) => match values(f) {
                    Some(v) => sum += t.coef * v as f64,
                    None => {
                        if !missing.contains(f) {
                            missing.push(f.clone());
                        }
                    }
                },
            }
        }
        if missing.is_empty() {
            Ok(sum)
        } else {
            Err(missing)
        }
    }
}

impl std::fmt::Display for LinExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.terms.is_empty() {
            return write!(f, "0");
        }
        for (i, t) in self.terms.iter().enumerate() {
            let (sign, c) = if t.coef < 0.0 {
                ("-", -t.coef)
            } else {
                ("+", t.coef)
            };
            if i > 0 {
                write!(f, " {sign} ")?;
            } else if sign == "-" {
                write!(f, "-")?;
            }
            match &t.field {
                None => write!(f, "{c}")?,
                Some(name) if c == 1.0 => write!(f, "{name}")?,
                Some(name) => write!(f, "{c} * {name}")?,
            }
        }
        Ok(())
    }
}

/// A rule instance (after `for_each` expansion).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// `spec.id`, or `spec.id[field]` for a `for_each` instance.
    pub id: String,
    pub kind: RuleKind,
    pub message_id: String,
    pub message_en: String,
    pub lhs: LinExpr,
    pub op: CmpOp,
    pub rhs: LinExpr,
    /// Every field the rule reads, in order of first appearance.
    pub fields: Vec<String>,
}

/// Outcome of evaluating a rule on a set of values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RuleOutcome {
    Ok,
    Violated {
        lhs: f64,
        rhs: f64,
    },
    /// Some fields have no value: the rule cannot be decided.
    Unknown {
        missing: Vec<String>,
    },
}

impl Rule {
    /// Evaluate with `values(field_id)` giving each field's value (`None` when unknown).
    pub fn evaluate(&self, values: &impl Fn(&str) -> Option<i64>) -> RuleOutcome {
        let l = self.lhs.eval(values);
        let r = self.rhs.eval(values);
        match (l, r) {
            (Ok(l), Ok(r)) => {
                if self.op.holds(l, r) {
                    RuleOutcome::Ok
                } else {
                    RuleOutcome::Violated { lhs: l, rhs: r }
                }
            }
            (l, r) => {
                let mut missing = l.err().unwrap_or_default();
                for f in r.err().unwrap_or_default() {
                    if !missing.contains(&f) {
                        missing.push(f);
                    }
                }
                RuleOutcome::Unknown { missing }
            }
        }
    }

    /// The check as text, e.g. `dpt.lp == dpt.l + dpt.p`.
    pub fn check_text(&self) -> String {
        format!("{} {} {}", self.lhs, self.op.as_str(), self.rhs)
    }
}

/// A parsed check before `$` substitution.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub lhs: LinExpr,
    pub op: CmpOp,
    pub rhs: LinExpr,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Plus,
    Minus,
    Star,
    Op(CmpOp),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let v: f64 = text
                .parse()
                .map_err(|_| format!("bad number `{text}` at position {start}"))?;
            out.push(Tok::Num(v));
        } else if c.is_ascii_alphabetic() || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if text.starts_with('$') && text != "$" {
                return Err(format!("`$` must stand alone, found `{text}`"));
            }
            if text.ends_with('.') {
                return Err(format!("field id `{text}` ends with `.`"));
            }
            out.push(Tok::Ident(text));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let (tok, len) = match (c, two.as_str()) {
                (_, "==") => (Tok::Op(CmpOp::Eq), 2),
                (_, "<=") => (Tok::Op(CmpOp::Le), 2),
                (_, ">=") => (Tok::Op(CmpOp::Ge), 2),
                ('<', _) => (Tok::Op(CmpOp::Lt), 1),
                ('>', _) => (Tok::Op(CmpOp::Gt), 1),
                ('+', _) => (Tok::Plus, 1),
                ('-', _) => (Tok::Minus, 1),
                ('*', _) => (Tok::Star, 1),
                _ => return Err(format!("unexpected character `{c}` at position {i}")),
            };
            out.push(tok);
            i += len;
        }
    }
    Ok(out)
}

fn parse_expr(toks: &[Tok]) -> Result<LinExpr, String> {
    if toks.is_empty() {
        return Err("empty side of the comparison".into());
    }
    let mut terms = Vec::new();
    let mut i = 0;
    let mut sign = 1.0;
    if toks[0] == Tok::Minus {
        sign = -1.0;
        i = 1;
    }
    loop {
        // term: atom ["*" atom]
        let (mut coef, mut field) = (1.0, None::<String>);
        let mut take_atom = |t: Option<&Tok>| -> Result<(), String> {
            match t {
                Some(Tok::Num(v)) => coef *= v,
                Some(Tok::Ident(name)) => {
                    if field.is_some() {
                        return Err(format!(
                            "`{name}`: a term may name only one field (checks are linear)"
                        ));
                    }
                    field = Some(name.clone());
                }
                Some(t) => return Err(format!("expected a number or field, found {t:?}")),
                None => return Err("expected a number or field at the end".into()),
            }
            Ok(())
        };
        take_atom(toks.get(i))?;
        i += 1;
        if toks.get(i) == Some(&Tok::Star) {
            take_atom(toks.get(i + 1))?;
            i += 2;
        }
        terms.push(Term {
            coef: sign * coef,
            field,
        });
        match toks.get(i) {
            None => break,
            Some(Tok::Plus) => sign = 1.0,
            Some(Tok::Minus) => sign = -1.0,
            Some(t) => return Err(format!("expected + or -, found {t:?}")),
        }
        i += 1;
    }
    Ok(LinExpr { terms })
}

/// Parse a check string (without `$` substitution).
pub fn parse_check(s: &str) -> Result<Check, String> {
    let toks = tokenize(s)?;
    let ops: Vec<usize> = toks
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t, Tok::Op(_)))
        .map(|(i, _)| i)
        .collect();
    let [at] = ops.as_slice() else {
        return Err(format!(
            "exactly one comparison (== <= >= < >) is required, found {}",
            ops.len()
        ));
    };
    let Tok::Op(op) = toks[*at] else {
        return Err("internal: comparison token expected".into());
    };
    Ok(Check {
        lhs: parse_expr(&toks[..*at])?,
        op,
        rhs: parse_expr(&toks[*at + 1..])?,
    })
}

/// Whether `id` matches the `for_each` pattern (see the module documentation).
pub fn glob_match(pattern: &str, id: &str) -> bool {
    let ps: Vec<&str> = pattern.split('.').collect();
    let is: Vec<&str> = id.split('.').collect();
    ps.len() == is.len() && ps.iter().zip(&is).all(|(p, s)| segment_match(p, s))
}

fn segment_match(p: &str, s: &str) -> bool {
    match p.split_once('*') {
        None => p == s,
        Some((head, rest)) => {
            let Some(tail) = s.strip_prefix(head) else {
                return false;
            };
            // `*` takes 0.. characters; try every split (segments are short)
            (0..=tail.len())
                .filter(|k| tail.is_char_boundary(*k))
                .any(|k| segment_match(rest, &tail[k..]))
        }
    }
}

fn substitute(e: &LinExpr, field: &str) -> LinExpr {
    LinExpr {
        terms: e
            .terms
            .iter()
            .map(|t| Term {
                coef: t.coef,
                field: t.field.as_ref().map(|f| {
                    if f == "$" {
                        field.to_string()
                    } else {
                        f.clone()
                    }
                }),
            })
            .collect(),
    }
}

/// Compile one rule spec against the template's numeric field ids. Errors are
/// `(sub-key, message)`, the sub-key being `check` or `for_each[i]`.
pub fn compile(spec: &RuleSpec, numeric: &[&str]) -> Result<Vec<Rule>, (String, String)> {
    let check = parse_check(&spec.check).map_err(|m| ("check".to_string(), m))?;
    let mut names = check.lhs.fields();
    names.extend(check.rhs.fields());
    let uses_dollar = names.iter().any(|f| f == "$");
    for n in names.iter().filter(|f| f.as_str() != "$") {
        if !numeric.contains(&n.as_str()) {
            return Err((
                "check".into(),
                format!(
                    "`{n}` is not a numeric field (digits, row_totals or date) of the template"
                ),
            ));
        }
    }
    let instances: Vec<Option<String>> = if spec.for_each.is_empty() {
        if uses_dollar {
            return Err(("check".into(), "`$` is only allowed with for_each".into()));
        }
        vec![None]
    } else {
        if !uses_dollar {
            return Err((
                "check".into(),
                "a for_each rule must use `$` for the field".into(),
            ));
        }
        let mut out: Vec<Option<String>> = Vec::new();
        for (i, pat) in spec.for_each.iter().enumerate() {
            let matched: Vec<&&str> = numeric.iter().filter(|f| glob_match(pat, f)).collect();
            if matched.is_empty() {
                return Err((
                    format!("for_each[{i}]"),
                    format!("pattern `{pat}` matches no numeric field"),
                ));
            }
            for m in matched {
                let m = Some(m.to_string());
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        out
    };
    Ok(instances
        .into_iter()
        .map(|inst| {
            let (id, lhs, rhs) = match &inst {
                None => (spec.id.clone(), check.lhs.clone(), check.rhs.clone()),
                Some(f) => (
                    format!("{}[{f}]", spec.id),
                    substitute(&check.lhs, f),
                    substitute(&check.rhs, f),
                ),
            };
            let mut fields = lhs.fields();
            for f in rhs.fields() {
                if !fields.contains(&f) {
                    fields.push(f);
                }
            }
            Rule {
                id,
                kind: spec.kind,
                message_id: spec.message_id.clone(),
                message_en: spec.message_en.clone(),
                lhs,
                op: check.op,
                rhs,
                fields,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn spec(check: &str, for_each: &[&str]) -> RuleSpec {
        RuleSpec {
            id: "r".into(),
            kind: RuleKind::Hard,
            check: check.into(),
            for_each: for_each.iter().map(|s| s.to_string()).collect(),
            message_id: "m".into(),
            message_en: "m".into(),
        }
    }

    const NUMERIC: [&str; 7] = [
        "dpt.l",
        "dpt.p",
        "dpt.lp",
        "votes.1",
        "votes.2",
        "votes.1.row1",
        "valid",
    ];

    #[test]
    fn parses_terms_coefficients_and_ops() {
        let c = parse_check("votes.1 + votes.2 <= 1.02 * dpt.lp - 3").unwrap();
        assert_eq!(c.op, CmpOp::Le);
        assert_eq!(c.lhs.fields(), vec!["votes.1", "votes.2"]);
        assert_eq!(c.rhs.terms.len(), 2);
        assert_eq!(c.rhs.terms[0].coef, 1.02);
        assert_eq!(c.rhs.terms[1].coef, -3.0);
        assert_eq!(c.rhs.terms[1].field, None);
        let c = parse_check("dpt.lp * 2 > -dpt.l").unwrap();
        assert_eq!(c.lhs.terms[0].coef, 2.0);
        assert_eq!(c.rhs.terms[0].coef, -1.0);
        assert_eq!(c.op, CmpOp::Gt);
    }

    #[test]
    fn rejects_bad_checks() {
        for bad in [
            "dpt.l",
            "dpt.l == dpt.p == dpt.lp",
            "dpt.l * dpt.p == 1",
            "dpt.l + == 1",
            "dpt.l == 1 +",
            "dpt.l & 1 == 2",
            "$x == 1",
            "== 1",
        ] {
            assert!(parse_check(bad).is_err(), "{bad} should not parse");
        }
        let e = compile(&spec("nope == 1", &[]), &NUMERIC).unwrap_err();
        assert_eq!(e.0, "check");
        assert!(e.1.contains("nope"));
        let e = compile(&spec("$ <= 1", &["zz.*"]), &NUMERIC).unwrap_err();
        assert_eq!(e.0, "for_each[0]");
        assert!(compile(&spec("$ <= 1", &[]), &NUMERIC).is_err());
        assert!(compile(&spec("dpt.l <= 1", &["dpt.*"]), &NUMERIC).is_err());
    }

    #[test]
    fn glob_is_per_segment() {
        assert!(glob_match("dpt.*", "dpt.lp"));
        assert!(glob_match("votes.*", "votes.1"));
        assert!(!glob_match("votes.*", "votes.1.row1"));
        assert!(glob_match("votes.*.row*", "votes.1.row1"));
        assert!(glob_match("valid", "valid"));
        assert!(!glob_match("valid", "invalid"));
        assert!(glob_match("*valid", "invalid"));
    }

    #[test]
    fn for_each_expands_into_instances() {
        let rules = compile(&spec("$ <= 300", &["dpt.*", "dpt.l", "valid"]), &NUMERIC).unwrap();
        let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r[dpt.l]", "r[dpt.p]", "r[dpt.lp]", "r[valid]"]);
        assert_eq!(rules[2].fields, vec!["dpt.lp"]);
        assert_eq!(rules[2].check_text(), "dpt.lp <= 300");
    }

    #[test]
    fn evaluates_known_numbers() {
        let r = compile(&spec("dpt.lp == dpt.l + dpt.p", &[]), &NUMERIC)
            .unwrap()
            .remove(0);
        let vals: HashMap<&str, i64> = [("dpt.l", 120), ("dpt.p", 131), ("dpt.lp", 251)].into();
        let get = |f: &str| vals.get(f).copied();
        assert_eq!(r.evaluate(&get), RuleOutcome::Ok);
        let vals2: HashMap<&str, i64> = [("dpt.l", 120), ("dpt.p", 131), ("dpt.lp", 215)].into();
        assert_eq!(
            r.evaluate(&|f: &str| vals2.get(f).copied()),
            RuleOutcome::Violated {
                lhs: 215.0,
                rhs: 251.0
            }
        );
        let vals3: HashMap<&str, i64> = [("dpt.l", 120)].into();
        assert_eq!(
            r.evaluate(&|f: &str| vals3.get(f).copied()),
            RuleOutcome::Unknown {
                missing: vec!["dpt.lp".into(), "dpt.p".into()]
            }
        );
        // float coefficient: 1.02 * 250 = 255
        let r = compile(&spec("votes.1 + votes.2 <= 1.02 * dpt.lp", &[]), &NUMERIC)
            .unwrap()
            .remove(0);
        let at = |a: i64| {
            let v: HashMap<&str, i64> = [("votes.1", a), ("votes.2", 0), ("dpt.lp", 250)].into();
            r.evaluate(&|f: &str| v.get(f).copied())
        };
        assert_eq!(at(255), RuleOutcome::Ok);
        assert!(matches!(at(256), RuleOutcome::Violated { .. }));
    }

    proptest! {
        /// A sum rule holds exactly when the written total equals the parts' sum, and its sides
        /// evaluate to the plain integer arithmetic.
        #[test]
        fn sum_rule_matches_integer_arithmetic(l in 0i64..1000, p in 0i64..1000, lp in 0i64..2000) {
            let r = compile(&spec("dpt.lp == dpt.l + dpt.p", &[]), &NUMERIC).unwrap().remove(0);
            let v: HashMap<&str, i64> = [("dpt.l", l), ("dpt.p", p), ("dpt.lp", lp)].into();
            let out = r.evaluate(&|f: &str| v.get(f).copied());
            if lp == l + p {
                prop_assert_eq!(out, RuleOutcome::Ok);
            } else {
                prop_assert_eq!(out, RuleOutcome::Violated { lhs: lp as f64, rhs: (l + p) as f64 });
            }
        }

        /// Inequalities agree with integer comparison for every operator.
        #[test]
        fn inequalities_match_integers(a in -500i64..500, b in -500i64..500) {
            for (op, expect) in [("<=", a <= b), (">=", a >= b), ("<", a < b), (">", a > b), ("==", a == b)] {
                let r = compile(&spec(&format!("dpt.l {op} dpt.p"), &[]), &NUMERIC).unwrap().remove(0);
                let v: HashMap<&str, i64> = [("dpt.l", a), ("dpt.p", b)].into();
                let ok = r.evaluate(&|f: &str| v.get(f).copied()) == RuleOutcome::Ok;
                prop_assert_eq!(ok, expect, "{} {} {}", a, op, b);
            }
        }
    }
}
