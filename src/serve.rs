//! Stage module `serve` (work in progress).
