//! rekap: reads photographed Indonesian election tally forms (Model C.HASIL-PPWP 2024) into
//! numbers with evidence, cross-checks them, and flags everything it is not sure of.
//!
//! Stages, one module each: [`template`] (the form's geometry and rules), [`align`] (page
//! identification and homography), [`segment`] (box crops and digit normalisation),
//! [`recognize`] (the digit model), [`decide`] (fields, channels, rules, flags), [`store`],
//! [`serve`], [`eval`], [`synth`] (synthetic photos with ground truth).

/// Compile a hot loop twice, for the x86-64 baseline and with AVX2 (`multiversion` picks one at
/// run time, so the binary still runs on any x86-64 CPU). Integer and IEEE float arithmetic give
/// the same results in both clones (Rust never fuses a multiply and an add on its own), so
/// outputs do not depend on the CPU. The one place the target list is written.
macro_rules! avx2_clone {
    ($item:item) => {
        #[multiversion::multiversion(targets("x86_64+avx+avx2+fma+bmi1+bmi2+lzcnt+popcnt"))]
        $item
    };
}

pub mod align;
pub mod cli;
pub mod decide;
pub mod eval;
pub mod font;
pub mod load;
pub mod pipeline;
pub mod recognize;
pub mod segment;
pub mod serve;
pub mod store;
pub mod synth;
pub mod template;

/// Upper median (the element at index `len / 2` in sorted order) of `v`, reordering `v`; 0 for an
/// empty slice. Linear time (`select_nth_unstable`): the value equals that of a full sort, so
/// callers may switch between the two without changing a result.
pub(crate) fn upper_median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    *m
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The selection gives the element a full sort puts at `len / 2`.
        #[test]
        fn upper_median_is_the_sorted_middle(v in proptest::collection::vec(-1e3f64..1e3, 1..40)) {
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let mut w = v.clone();
            prop_assert_eq!(super::upper_median(&mut w), sorted[v.len() / 2]);
        }
    }

    #[test]
    fn upper_median_of_nothing_is_zero() {
        assert_eq!(super::upper_median(&mut []), 0.0);
    }
}
