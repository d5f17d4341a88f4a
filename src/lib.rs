//! rekap: reads photographed Indonesian election tally forms (Model C.HASIL-PPWP 2024) into
//! numbers with evidence, cross-checks them, and flags everything it is not sure of.
//!
//! Stages, one module each: [`template`] (the form's geometry and rules), [`align`] (page
//! identification and homography), [`segment`] (box crops and digit normalisation),
//! [`recognize`] (the digit model), [`decide`] (fields, channels, rules, flags), [`store`],
//! [`serve`], [`eval`], [`synth`] (synthetic photos with ground truth).

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
