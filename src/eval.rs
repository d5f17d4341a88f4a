//! Stage module `eval` (work in progress).
