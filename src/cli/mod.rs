//! Command-line front ends, one module per `rekap` subcommand. `src/main.rs` only parses and
//! dispatches; each module owns its argument struct and its `run` function.

pub mod audit;
pub mod classify;
pub mod crops;
pub mod eval;
pub mod process;
pub mod serve;
pub mod synth;
pub mod template;
pub mod user;
pub mod worker;
