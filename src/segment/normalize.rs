//! Digit normalisation `rekap-mnist-v1` (see docs/interfaces.md). Work in progress.
