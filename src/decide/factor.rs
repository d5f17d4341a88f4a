//! Exact sum-product variable elimination over small discrete factors: the posterior of each
//! uncertain field given the rules that link it to others (see `resolve_with_rules`).
//!
//! Invariants: a [`Factor`]'s `vars` are strictly increasing variable indices, `card[i]` is the
//! number of values of `vars[i]`, and `vals` holds `prod(card)` entries in row-major order
//! (the last variable varies fastest). Tables never grow beyond the caller's entry limit: an
//! elimination that would need a larger table is abandoned and reported as `None`.

/// A non-negative function of a few discrete variables, as a dense table.
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    pub vars: Vec<usize>,
    pub card: Vec<usize>,
    pub vals: Vec<f64>,
}

impl Factor {
    /// A factor over `vars` (any order, no repeats) whose value for each joint assignment is
    /// `f(assignment)`, the assignment given in the order of `vars` as passed. `None` when the
    /// table would exceed `max_entries`.
    pub fn from_fn(
        vars_cards: &[(usize, usize)],
        max_entries: usize,
        mut f: impl FnMut(&[usize]) -> f64,
    ) -> Option<Factor> {
        let mut order: Vec<usize> = (0..vars_cards.len()).collect();
        order.sort_by_key(|&i| vars_cards[i].0);
        let vars: Vec<usize> = order.iter().map(|&i| vars_cards[i].0).collect();
        let card: Vec<usize> = order.iter().map(|&i| vars_cards[i].1).collect();
        let size = table_size(&card, max_entries)?;
        let mut vals = Vec::with_capacity(size);
        let mut sorted_idx = vec![0usize; vars.len()];
        let mut caller_idx = vec![0usize; vars.len()];
        for _ in 0..size {
            for (pos, &i) in order.iter().enumerate() {
                caller_idx[i] = sorted_idx[pos];
            }
            vals.push(f(&caller_idx));
            increment(&mut sorted_idx, &card);
        }
        Some(Factor { vars, card, vals })
    }

    /// Product of two factors. `None` when the result would exceed `max_entries`.
    pub fn product(&self, other: &Factor, max_entries: usize) -> Option<Factor> {
        let mut vars: Vec<usize> = self.vars.iter().chain(&other.vars).copied().collect();
        vars.sort_unstable();
        vars.dedup();
        let card: Vec<usize> = vars
            .iter()
            .map(|v| self.card_of(*v).or_else(|| other.card_of(*v)).unwrap_or(1))
            .collect();
        let size = table_size(&card, max_entries)?;
        let sa = self.strides_in(&vars);
        let sb = other.strides_in(&vars);
        let mut vals = Vec::with_capacity(size);
        let mut idx = vec![0usize; vars.len()];
        let (mut ia, mut ib) = (0usize, 0usize);
        for _ in 0..size {
            vals.push(self.vals[ia] * other.vals[ib]);
            // Odometer step, keeping both flat indices in step with it.
            for k in (0..idx.len()).rev() {
                idx[k] += 1;
                ia += sa[k];
                ib += sb[k];
                if idx[k] < card[k] {
                    break;
                }
                ia -= sa[k] * card[k];
                ib -= sb[k] * card[k];
                idx[k] = 0;
            }
        }
        Some(Factor { vars, card, vals })
    }

    /// Sum out variable `var` (a no-op clone when the factor does not read it).
    pub fn sum_out(&self, var: usize) -> Factor {
        let Some(pos) = self.vars.iter().position(|v| *v == var) else {
            return self.clone();
        };
        let inner: usize = self.card[pos + 1..].iter().product();
        let c = self.card[pos];
        let outer = self.vals.len() / (inner * c).max(1);
        let mut vals = vec![0.0; outer * inner];
        for o in 0..outer {
            for k in 0..c {
                let base = (o * c + k) * inner;
                for i in 0..inner {
                    vals[o * inner + i] += self.vals[base + i];
                }
            }
        }
        let mut vars = self.vars.clone();
        let mut card = self.card.clone();
        vars.remove(pos);
        card.remove(pos);
        Factor { vars, card, vals }
    }

    fn card_of(&self, var: usize) -> Option<usize> {
        self.vars
            .iter()
            .position(|v| *v == var)
            .map(|p| self.card[p])
    }

    /// This factor's flat-index stride for each variable of `vars` (0 where it does not read it).
    fn strides_in(&self, vars: &[usize]) -> Vec<usize> {
        let mut own = vec![0usize; self.vars.len()];
        let mut s = 1;
        for i in (0..self.vars.len()).rev() {
            own[i] = s;
            s *= self.card[i];
        }
        vars.iter()
            .map(|v| self.vars.iter().position(|x| x == v).map_or(0, |p| own[p]))
            .collect()
    }
}

fn table_size(card: &[usize], max_entries: usize) -> Option<usize> {
    card.iter()
        .try_fold(1usize, |acc, c| acc.checked_mul(*c))
        .filter(|s| *s <= max_entries)
}

fn increment(idx: &mut [usize], card: &[usize]) {
    for k in (0..idx.len()).rev() {
        idx[k] += 1;
        if idx[k] < card[k] {
            return;
        }
        idx[k] = 0;
    }
}

/// Unnormalised marginal of each variable `0..cards.len()` under the product of `factors`.
/// Variables are eliminated greedily, smallest resulting table first. `None` when some
/// intermediate table would exceed `max_entries`.
pub fn marginals(cards: &[usize], factors: &[Factor], max_entries: usize) -> Option<Vec<Vec<f64>>> {
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); cards.len()];
    let keep: Vec<usize> = (0..cards.len()).collect();
    if marginals_of(&keep, cards, factors.to_vec(), max_entries, &mut out).is_some() {
        return Some(out);
    }
    // The shared eliminations can need larger tables than one query's own order: then each
    // variable on its own.
    (0..cards.len())
        .map(|q| marginal(q, cards, factors, max_entries))
        .collect()
}

/// Marginals of the variables `keep` into `out`. Invariant: `pool` reads only variables of
/// `keep` (every other one is summed out already). Divide and conquer: each half of `keep`
/// starts from `pool` with the other half eliminated, so the work on variables far from a
/// query is shared by all the queries of a half: about `n log n` variable eliminations for `n`
/// variables where one elimination per query needs `n^2`.
fn marginals_of(
    keep: &[usize],
    cards: &[usize],
    pool: Vec<Factor>,
    max_entries: usize,
    out: &mut [Vec<f64>],
) -> Option<()> {
    match keep {
        [] => Some(()),
        [q] => {
            out[*q] = query_vector(*q, cards, &pool)?;
            Some(())
        }
        _ => {
            let (a, b) = keep.split_at(keep.len() / 2);
            let pool_a = eliminate(pool.clone(), b, cards, max_entries)?;
            marginals_of(a, cards, pool_a, max_entries, out)?;
            let pool_b = eliminate(pool, a, cards, max_entries)?;
            marginals_of(b, cards, pool_b, max_entries, out)
        }
    }
}

/// Sum the variables `vars` out of the product of `pool`, greedily: each step eliminates the
/// variable whose elimination makes the smallest table. `None` when a table would exceed
/// `max_entries`.
fn eliminate(
    mut pool: Vec<Factor>,
    vars: &[usize],
    cards: &[usize],
    max_entries: usize,
) -> Option<Vec<Factor>> {
    let mut left: Vec<usize> = vars.to_vec();
    while !left.is_empty() {
        let (pos, _) = left
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut scope: Vec<usize> = pool
                    .iter()
                    .filter(|f| f.vars.contains(v))
                    .flat_map(|f| f.vars.iter().copied())
                    .collect();
                scope.sort_unstable();
                scope.dedup();
                let size = scope
                    .iter()
                    .map(|x| cards[*x])
                    .try_fold(1usize, |a, c| a.checked_mul(c))
                    .unwrap_or(usize::MAX);
                (i, size)
            })
            .min_by_key(|(_, s)| *s)?;
        let var = left.swap_remove(pos);
        let (with, without): (Vec<Factor>, Vec<Factor>) =
            pool.into_iter().partition(|f| f.vars.contains(&var));
        pool = without;
        let mut it = with.into_iter();
        match it.next() {
            Some(first) => {
                let mut prod = first;
                for f in it {
                    prod = prod.product(&f, max_entries)?;
                }
                pool.push(prod.sum_out(var));
            }
            // A variable no factor reads still sums over its values.
            None => pool.push(Factor {
                vars: Vec::new(),
                card: Vec::new(),
                vals: vec![cards[var] as f64],
            }),
        }
    }
    Some(pool)
}

/// The unnormalised marginal of `q` from a pool that reads `q` alone (or nothing).
fn query_vector(q: usize, cards: &[usize], pool: &[Factor]) -> Option<Vec<f64>> {
    let mut out = vec![1.0; cards[q]];
    for f in pool {
        match f.vars.as_slice() {
            [] => {
                let c = f.vals.first().copied().unwrap_or(0.0);
                out.iter_mut().for_each(|o| *o *= c);
            }
            [v] if *v == q => {
                for (o, x) in out.iter_mut().zip(&f.vals) {
                    *o *= x;
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

fn marginal(q: usize, cards: &[usize], factors: &[Factor], max_entries: usize) -> Option<Vec<f64>> {
    let others: Vec<usize> = (0..cards.len()).filter(|v| *v != q).collect();
    let pool = eliminate(factors.to_vec(), &others, cards, max_entries)?;
    query_vector(q, cards, &pool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Brute-force marginals: sum the product of all factors over every joint assignment.
    fn brute(cards: &[usize], factors: &[Factor]) -> Vec<Vec<f64>> {
        let mut out: Vec<Vec<f64>> = cards.iter().map(|c| vec![0.0; *c]).collect();
        let total: usize = cards.iter().product();
        let mut idx = vec![0usize; cards.len()];
        for _ in 0..total {
            let mut p = 1.0;
            for f in factors {
                let mut flat = 0;
                for (v, c) in f.vars.iter().zip(&f.card) {
                    flat = flat * c + idx[*v];
                }
                p *= f.vals[flat];
            }
            for (v, i) in idx.iter().enumerate() {
                out[v][*i] += p;
            }
            increment(&mut idx, cards);
        }
        out
    }

    fn random_factors(cards: &[usize], specs: &[(Vec<usize>, u64)]) -> Vec<Factor> {
        specs
            .iter()
            .map(|(vars, seed)| {
                let mut vs: Vec<usize> = vars.iter().map(|v| v % cards.len()).collect();
                vs.sort_unstable();
                vs.dedup();
                let vc: Vec<(usize, usize)> = vs.iter().map(|v| (*v, cards[*v])).collect();
                let mut s = *seed;
                Factor::from_fn(&vc, 1 << 20, |_| {
                    // xorshift: deterministic positive values.
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % 1000) as f64 / 1000.0 + 0.001
                })
                .expect("small table")
            })
            .collect()
    }

    proptest! {
        #[test]
        fn elimination_matches_brute_force(
            cards in proptest::collection::vec(1usize..4, 1..6),
            specs in proptest::collection::vec(
                (proptest::collection::vec(0usize..6, 1..4), 1u64..u64::MAX), 1..6),
        ) {
            let factors = random_factors(&cards, &specs);
            let got = marginals(&cards, &factors, 1 << 20).expect("within limit");
            let want = brute(&cards, &factors);
            for (g, w) in got.iter().zip(&want) {
                for (a, b) in g.iter().zip(w) {
                    prop_assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn from_fn_reorders_variables_to_increasing_index() {
        // f(x2, x0) = 10 * x2 + x0 with x2 in 0..3, x0 in 0..2, stored as vars [0, 2].
        let f =
            Factor::from_fn(&[(2, 3), (0, 2)], 100, |a| (10 * a[0] + a[1]) as f64).expect("small");
        assert_eq!(f.vars, vec![0, 2]);
        // Row-major with x2 fastest: (x0=0,x2=0..3), (x0=1, x2=0..3).
        assert_eq!(f.vals, vec![0.0, 10.0, 20.0, 1.0, 11.0, 21.0]);
    }

    #[test]
    fn oversized_tables_are_refused() {
        let a = Factor::from_fn(&[(0, 10), (1, 10)], 1000, |_| 1.0).expect("100 entries");
        let b = Factor::from_fn(&[(2, 10), (3, 10)], 1000, |_| 1.0).expect("100 entries");
        assert!(a.product(&b, 1000).is_none());
        assert!(a.product(&b, 10_000).is_some());
        assert!(Factor::from_fn(&[(0, 10), (1, 10)], 99, |_| 1.0).is_none());
    }
}
