//! A small evaluator for the template's linear rules (`check = "a == b + 2 * c"`), used by the
//! generator to find which rule instance a deliberate officer error breaks.
//!
//! Syntax (docs/interfaces.md): each side is a sum of terms `[coef *] field|number` joined by `+`
//! or `-`; the operator is one of `== <= >= < >`. A rule with `for_each` patterns (`*` = any text)
//! is instantiated once per matching numeric field, `$` standing for the field; the instance id is
//! `id[field]`. An instance that names a field whose value is `null` (or unknown) is not evaluated.

use super::SynthError;
use crate::template::{RuleKind, Template};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Le,
    Ge,
    Lt,
    Gt,
}

/// One side of a check: constant + sum of coef * field.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Linear {
    pub constant: f64,
    pub terms: Vec<(f64, String)>,
}

/// A rule instance after `for_each` expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInstance {
    pub id: String,
    pub kind: RuleKind,
    pub lhs: Linear,
    pub op: Op,
    pub rhs: Linear,
}

fn parse_side(text: &str, origin: &str) -> Result<Linear, SynthError> {
    let bad = |m: &str| SynthError::Rule {
        rule: origin.to_string(),
        message: m.to_string(),
    };
    let mut out = Linear::default();
    // Tokenise into signed terms.
    let mut s = text.trim().to_string();
    if s.is_empty() {
        return Err(bad("empty side"));
    }
    if !s.starts_with('-') && !s.starts_with('+') {
        s.insert(0, '+');
    }
    let mut terms: Vec<(f64, String)> = Vec::new();
    let mut cur = String::new();
    let mut sign = 1.0;
    for ch in s.chars() {
        if ch == '+' || ch == '-' {
            if !cur.trim().is_empty() {
                terms.push((sign, cur.trim().to_string()));
            } else if !terms.is_empty() || !cur.is_empty() {
                // e.g. "a + - b": not part of the grammar
                if !terms.is_empty() {
                    return Err(bad("two operators in a row"));
                }
            }
            cur.clear();
            sign = if ch == '-' { -1.0 } else { 1.0 };
        } else {
            cur.push(ch);
        }
    }
    if cur.trim().is_empty() {
        return Err(bad("dangling operator"));
    }
    terms.push((sign, cur.trim().to_string()));
    for (sign, t) in terms {
        let (coef, atom) = match t.split_once('*') {
            Some((c, a)) => (
                c.trim()
                    .parse::<f64>()
                    .map_err(|_| bad(&format!("bad coefficient `{}`", c.trim())))?,
                a.trim().to_string(),
            ),
            None => (1.0, t),
        };
        if let Ok(n) = atom.parse::<f64>() {
            out.constant += sign * coef * n;
        } else if !atom.is_empty()
            && atom
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            out.terms.push((sign * coef, atom));
        } else {
            return Err(bad(&format!("bad term `{atom}`")));
        }
    }
    Ok(out)
}

/// Parse one check string (after `$` substitution).
pub fn parse_check(check: &str, origin: &str) -> Result<(Linear, Op, Linear), SynthError> {
    // Two-character operators first.
    for (tok, op) in [
        ("==", Op::Eq),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ] {
        if let Some((l, r)) = check.split_once(tok) {
            return Ok((parse_side(l, origin)?, op, parse_side(r, origin)?));
        }
    }
    Err(SynthError::Rule {
        rule: origin.to_string(),
        message: format!("no comparison operator in `{check}`"),
    })
}

/// `*` matches any (possibly empty) text.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Expand every rule of the template into instances.
pub fn instances(template: &Template) -> Result<Vec<RuleInstance>, SynthError> {
    let numeric: Vec<&str> = template.numeric_fields().map(|f| f.id.as_str()).collect();
    let mut out = Vec::new();
    for rule in &template.rules {
        if rule.for_each.is_empty() {
            let (lhs, op, rhs) = parse_check(&rule.check, &rule.id)?;
            out.push(RuleInstance {
                id: rule.id.clone(),
                kind: rule.kind,
                lhs,
                op,
                rhs,
            });
        } else {
            for f in &numeric {
                if rule.for_each.iter().any(|p| glob_match(p, f)) {
                    let id = format!("{}[{}]", rule.id, f);
                    let (lhs, op, rhs) = parse_check(&rule.check.replace('$', f), &id)?;
                    out.push(RuleInstance {
                        id,
                        kind: rule.kind,
                        lhs,
                        op,
                        rhs,
                    });
                }
            }
        }
    }
    Ok(out)
}

fn eval_side(side: &Linear, values: &BTreeMap<String, Option<i64>>) -> Option<f64> {
    let mut v = side.constant;
    for (c, f) in &side.terms {
        v += c * (*values.get(f)?)? as f64;
    }
    Some(v)
}

impl RuleInstance {
    /// `Some(true)` holds, `Some(false)` violated, `None` not evaluable (a null/unknown field).
    pub fn holds(&self, values: &BTreeMap<String, Option<i64>>) -> Option<bool> {
        let l = eval_side(&self.lhs, values)?;
        let r = eval_side(&self.rhs, values)?;
        // Values are integers; a tolerance of half a unit makes float rounding harmless.
        const EPS: f64 = 1e-6;
        Some(match self.op {
            Op::Eq => (l - r).abs() < EPS,
            Op::Le => l <= r + EPS,
            Op::Ge => l + EPS >= r,
            Op::Lt => l < r - EPS,
            Op::Gt => l > r + EPS,
        })
    }

    /// Every field named by the instance.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.lhs
            .terms
            .iter()
            .chain(self.rhs.terms.iter())
            .map(|(_, f)| f.as_str())
    }
}

/// Ids of the instances violated by `values`.
pub fn violated(rules: &[RuleInstance], values: &BTreeMap<String, Option<i64>>) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.holds(values) == Some(false))
        .map(|r| r.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_evaluates() {
        let (l, op, r) = parse_check("a.lp == a.l + 2 * a.p - 3", "t").unwrap();
        let inst = RuleInstance {
            id: "t".into(),
            kind: RuleKind::Hard,
            lhs: l,
            op,
            rhs: r,
        };
        let mut v = BTreeMap::new();
        v.insert("a.lp".to_string(), Some(7));
        v.insert("a.l".to_string(), Some(4));
        v.insert("a.p".to_string(), Some(3));
        assert_eq!(inst.holds(&v), Some(true));
        v.insert("a.p".to_string(), Some(4));
        assert_eq!(inst.holds(&v), Some(false));
        v.insert("a.p".to_string(), None);
        assert_eq!(inst.holds(&v), None);
        assert!(parse_check("a + ", "t").is_err());
        assert!(parse_check("a b", "t").is_err());
        assert_eq!(
            parse_check("$ <= 300", "t")
                .unwrap_err()
                .to_string()
                .is_empty(),
            false
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("dpt.*", "dpt.lp"));
        assert!(!glob_match("dpt.*", "b1.lp"));
        assert!(glob_match("votes.*.row*", "votes.2.row3"));
        assert!(glob_match("valid", "valid"));
        assert!(!glob_match("valid", "invalid"));
    }
}
