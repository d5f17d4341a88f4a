//! Stage module `store` (work in progress).
