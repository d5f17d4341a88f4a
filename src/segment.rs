//! Stage module `segment` (work in progress).
