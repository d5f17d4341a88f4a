//! Stage `recognize`: the digit model. Loads `models/digits.onnx` through ONNX Runtime after
//! checking it against its card `models/digits.json` (see docs/interfaces.md, "Digit model"),
//! and turns normalised digit tensors ([`crate::segment::normalize`]) into [`Prediction`]s.
//!
//! * [`runtime`]: finds and loads the ONNX Runtime shared library (once per process).
//! * [`ModelCard`]: the card; [`ModelCard::load`] refuses a model whose sha256 or input spec
//!   disagree with the contract.
//! * [`Model`]: the inference interface; [`OrtModel`] (one ONNX Runtime session, one thread) and
//!   [`FakeModel`] (scripted, for tests of other stages).
//! * [`ModelPool`]: one model per concurrently running worker, for rayon users.

mod card;
mod fake;
mod ort_model;
mod pool;
pub mod runtime;

pub use card::{CardInput, CardOutput, CardTraining, MODEL_CARD_SCHEMA, ModelCard};
pub use fake::FakeModel;
pub use ort_model::{DEFAULT_BATCH_SIZE, OrtModel};
pub use pool::ModelPool;

use crate::segment::normalize::DigitTensor;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Number of classes: `"0"`..`"9"`, `"X"`, `"blank"`, in that order.
pub const NUM_CLASSES: usize = 12;

/// Default location of the digit model's card (the `.onnx` lies next to it).
pub const DEFAULT_MODEL_CARD: &str = "models/digits.json";

/// Raw model output for one tensor, in class order.
pub type Logits = [f32; NUM_CLASSES];

/// Errors of the recognize stage.
#[derive(Debug, thiserror::Error)]
pub enum RecognizeError {
    #[error(
        "ONNX Runtime library not found (looked for {}); run scripts/fetch-onnxruntime.sh from the \
         repository root, or set ORT_DYLIB_PATH to the path of {file}",
        display_paths(.searched), file = runtime::ORT_LIBRARY_FILE
    )]
    RuntimeMissing { searched: Vec<PathBuf> },
    #[error(
        "ORT_DYLIB_PATH is set to {path}, which does not exist; point it at {file} or unset it and \
         run scripts/fetch-onnxruntime.sh", file = runtime::ORT_LIBRARY_FILE
    )]
    RuntimeEnvMissing { path: PathBuf },
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    RuntimeLoad { path: PathBuf, message: String },
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read model file {path} (its card {card} expects sha256 {expected}): {error}")]
    ModelMissing {
        path: PathBuf,
        card: PathBuf,
        expected: String,
        error: std::io::Error,
    },
    #[error("model card {path}: {message}")]
    Card { path: PathBuf, message: String },
    #[error(
        "model file {path} does not match its card {card}: sha256 expected {expected}, actual {actual}"
    )]
    Sha256Mismatch {
        path: PathBuf,
        card: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("ONNX Runtime session for {path}: {message}")]
    Session { path: PathBuf, message: String },
    #[error("inference failed: {0}")]
    Inference(String),
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "no candidate path".to_string();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One box label: a digit, the `X` that fills unused leading boxes, or a blank box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    /// Invariant: 0..=9.
    Digit(u8),
    X,
    Blank,
}

impl Label {
    /// The label of class index `i` (card order `"0"`..`"9"`, `"X"`, `"blank"`).
    pub fn from_index(i: usize) -> Option<Label> {
        match i {
            0..=9 => Some(Label::Digit(i as u8)),
            10 => Some(Label::X),
            11 => Some(Label::Blank),
            _ => None,
        }
    }

    /// Class index in card order.
    pub fn index(self) -> usize {
        match self {
            Label::Digit(d) => d as usize,
            Label::X => 10,
            Label::Blank => 11,
        }
    }

    /// All labels in class order.
    pub fn all() -> [Label; NUM_CLASSES] {
        std::array::from_fn(|i| Label::from_index(i).unwrap_or(Label::Blank))
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Digit(d) => write!(f, "{d}"),
            Label::X => f.write_str("X"),
            Label::Blank => f.write_str("blank"),
        }
    }
}

impl std::str::FromStr for Label {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "X" => Ok(Label::X),
            "blank" => Ok(Label::Blank),
            _ => match s.as_bytes() {
                [c @ b'0'..=b'9'] => Ok(Label::Digit(c - b'0')),
                _ => Err(format!(
                    "unknown box label {s:?} (expected \"0\"..\"9\", \"X\" or \"blank\")"
                )),
            },
        }
    }
}

impl Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Number of alternatives kept in [`Prediction::top`].
pub const TOP_K: usize = 3;

/// The model's reading of one box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Most probable label (equals `top[0].0`).
    pub label: Label,
    /// Its probability under `softmax(logits / temperature)`.
    pub confidence: f32,
    /// The three most probable labels with their probabilities, most probable first.
    pub top: [(Label, f32); TOP_K],
}

/// `softmax(logits / temperature)`, computed stably in f64. Non-finite logits are an error of
/// the model, reported by the caller; here they make the probabilities NaN.
pub fn softmax(logits: &Logits, temperature: f32) -> [f32; NUM_CLASSES] {
    let t = temperature as f64;
    let scaled: [f64; NUM_CLASSES] = std::array::from_fn(|i| logits[i] as f64 / t);
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: [f64; NUM_CLASSES] = std::array::from_fn(|i| (scaled[i] - max).exp());
    let sum: f64 = exps.iter().sum();
    std::array::from_fn(|i| (exps[i] / sum) as f32)
}

impl Prediction {
    /// Prediction from one row of logits at the given temperature. Ties keep class order.
    pub fn from_logits(logits: &Logits, temperature: f32) -> Prediction {
        let probs = softmax(logits, temperature);
        let mut order: [usize; NUM_CLASSES] = std::array::from_fn(|i| i);
        // total_cmp: NaN sorts consistently instead of panicking.
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let top: [(Label, f32); TOP_K] = std::array::from_fn(|k| {
            let i = order[k];
            (Label::from_index(i).unwrap_or(Label::Blank), probs[i])
        });
        Prediction {
            label: top[0].0,
            confidence: top[0].1,
            top,
        }
    }
}

/// A digit classifier. Implementations hold mutable per-session state, so one instance serves
/// one thread at a time (`Send`, not `Sync`); see [`ModelPool`] for parallel use.
pub trait Model: Send {
    /// Logits for each tensor of the batch, in order. Any batch length is accepted
    /// (implementations chunk internally); an empty batch gives an empty result.
    fn logits(&mut self, batch: &[DigitTensor]) -> Result<Vec<Logits>, RecognizeError>;

    /// The card this model was loaded with.
    fn card(&self) -> &ModelCard;

    /// Predictions for each tensor of the batch at the card's temperature.
    fn predict(&mut self, batch: &[DigitTensor]) -> Result<Vec<Prediction>, RecognizeError> {
        let t = self.card().temperature as f32;
        let logits = self.logits(batch)?;
        if let Some(bad) = logits.iter().position(|l| l.iter().any(|v| !v.is_finite())) {
            return Err(RecognizeError::Inference(format!(
                "model returned non-finite logits for input {bad}"
            )));
        }
        Ok(logits
            .iter()
            .map(|l| Prediction::from_logits(l, t))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_round_trips() {
        for (i, l) in Label::all().into_iter().enumerate() {
            assert_eq!(l.index(), i);
            assert_eq!(Label::from_index(i), Some(l));
            let s = l.to_string();
            assert_eq!(s.parse::<Label>(), Ok(l));
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Label>(&json).unwrap(), l);
        }
        assert_eq!(Label::Blank.to_string(), "blank");
        assert_eq!(Label::Digit(7).to_string(), "7");
        assert!("10".parse::<Label>().is_err());
        assert!("x".parse::<Label>().is_err());
        assert!(serde_json::from_str::<Label>("\"Blank\"").is_err());
        assert_eq!(Label::from_index(12), None);
    }

    #[test]
    fn softmax_and_top3() {
        let mut l = [0f32; NUM_CLASSES];
        l[7] = 2.0;
        l[1] = 1.0;
        l[11] = 0.5;
        let p = Prediction::from_logits(&l, 1.0);
        let probs = softmax(&l, 1.0);
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let z = 2f64.exp() + 1f64.exp() + 0.5f64.exp() + 9.0;
        assert!((p.confidence as f64 - 2f64.exp() / z).abs() < 1e-6);
        assert_eq!(p.label, Label::Digit(7));
        assert_eq!(p.top[0].0, Label::Digit(7));
        assert_eq!(p.top[1].0, Label::Digit(1));
        assert_eq!(p.top[2].0, Label::Blank);
        // A higher temperature flattens the distribution but keeps the order.
        let hot = Prediction::from_logits(&l, 4.0);
        assert_eq!(hot.label, Label::Digit(7));
        assert!(hot.confidence < p.confidence);
        // Huge logits do not overflow.
        let mut big = [0f32; NUM_CLASSES];
        big[10] = 1e30;
        let pb = Prediction::from_logits(&big, 1.0);
        assert_eq!((pb.label, pb.confidence), (Label::X, 1.0));
    }

    #[test]
    fn prediction_serialises_labels_as_strings() {
        let mut l = [0f32; NUM_CLASSES];
        l[11] = 5.0;
        let p = Prediction::from_logits(&l, 1.0);
        let v: serde_json::Value = serde_json::to_value(p).unwrap();
        assert_eq!(v["label"], "blank");
        assert_eq!(v["top"][0][0], "blank");
    }

    #[test]
    fn predict_rejects_non_finite_logits() {
        let mut m = FakeModel::from_fn(|_| [f32::NAN; NUM_CLASSES]);
        let err = m.predict(&[[0.0; 784]]).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
    }
}
