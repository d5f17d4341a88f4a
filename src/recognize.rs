//! Stage module `recognize` (work in progress).
