//! Stage module `align` (work in progress).
