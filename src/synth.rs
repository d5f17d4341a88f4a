//! Stage module `synth` (work in progress).
