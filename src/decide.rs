//! Stage module `decide` (work in progress).
