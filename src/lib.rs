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
