//! The model card (`schema = "rekap-model/1"`, docs/interfaces.md "Digit model").
//!
//! Invariant after [`ModelCard::load`] succeeds: the card names the `rekap-mnist-v1` input
//! `input` of shape `[-1, 1, 28, 28]` float32, the 12 classes in contract order, a finite
//! positive temperature, and the `.onnx` next to the card hashes to the card's sha256.

use super::{Label, NUM_CLASSES, RecognizeError};
use crate::load::sha256_hex;
use crate::segment::normalize::{CANVAS, PREPROCESSING_ID};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The card format version this code reads.
pub const MODEL_CARD_SCHEMA: &str = "rekap-model/1";
/// Name of the model's input tensor.
pub const INPUT_NAME: &str = "input";
/// Shape of the model's input tensor; -1 = any batch size.
pub const INPUT_SHAPE: [i64; 4] = [-1, 1, CANVAS as i64, CANVAS as i64];
/// Element type of the model's input tensor.
pub const INPUT_DTYPE: &str = "float32";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub schema: String,
    pub name: String,
    pub classes: Vec<String>,
    pub input: CardInput,
    pub output: CardOutput,
    /// Softmax temperature: probabilities are `softmax(logits / temperature)`.
    pub temperature: f64,
    /// Hex sha256 of the `.onnx` file.
    pub sha256: String,
    pub training: CardTraining,
    #[serde(default)]
    pub metrics: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub dtype: String,
    pub preprocessing: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardOutput {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardTraining {
    pub data: String,
    pub licence: String,
    pub command: String,
    /// Further facts the trainer records (framework, epochs, wall time, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ModelCard {
    /// The `.onnx` file a card describes: the card's path with the extension `onnx`
    /// (`models/digits.json` -> `models/digits.onnx`).
    pub fn onnx_path_for(card_path: &Path) -> PathBuf {
        card_path.with_extension("onnx")
    }

    /// Read and parse a card and check its spec ([`ModelCard::check_spec`]); does not touch the
    /// `.onnx` (see [`ModelCard::load`]).
    pub fn read(card_path: &Path) -> Result<ModelCard, RecognizeError> {
        let text = std::fs::read_to_string(card_path).map_err(|error| RecognizeError::Read {
            path: card_path.to_path_buf(),
            error,
        })?;
        let card: ModelCard = serde_json::from_str(&text).map_err(|e| RecognizeError::Card {
            path: card_path.to_path_buf(),
            message: e.to_string(),
        })?;
        card.check_spec(card_path)?;
        Ok(card)
    }

    /// Read a card, check its spec, read the `.onnx` next to it and check its sha256.
    /// Returns the card, the model path and the model bytes (so the bytes that were hashed
    /// are the bytes that get loaded).
    pub fn load(card_path: &Path) -> Result<(ModelCard, PathBuf, Vec<u8>), RecognizeError> {
        let card = Self::read(card_path)?;
        let onnx = Self::onnx_path_for(card_path);
        let bytes = std::fs::read(&onnx).map_err(|error| RecognizeError::ModelMissing {
            path: onnx.clone(),
            card: card_path.to_path_buf(),
            expected: card.sha256.clone(),
            error,
        })?;
        card.verify_bytes(card_path, &onnx, &bytes)?;
        Ok((card, onnx, bytes))
    }

    /// Check that `bytes` (the contents of `onnx_path`) hash to the card's sha256.
    pub fn verify_bytes(
        &self,
        card_path: &Path,
        onnx_path: &Path,
        bytes: &[u8],
    ) -> Result<(), RecognizeError> {
        let actual = sha256_hex(bytes);
        if !actual.eq_ignore_ascii_case(self.sha256.trim()) {
            return Err(RecognizeError::Sha256Mismatch {
                path: onnx_path.to_path_buf(),
                card: card_path.to_path_buf(),
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Check everything the card says against the contract (schema, classes, input, output,
    /// temperature, sha256 format).
    pub fn check_spec(&self, card_path: &Path) -> Result<(), RecognizeError> {
        let bad = |message: String| {
            Err(RecognizeError::Card {
                path: card_path.to_path_buf(),
                message,
            })
        };
        if self.schema != MODEL_CARD_SCHEMA {
            return bad(format!(
                "schema is {:?}, expected {MODEL_CARD_SCHEMA:?}",
                self.schema
            ));
        }
        let want: Vec<String> = Label::all().iter().map(|l| l.to_string()).collect();
        if self.classes != want {
            return bad(format!(
                "classes are {:?}, expected the {NUM_CLASSES} classes {want:?}",
                self.classes
            ));
        }
        if self.input.name != INPUT_NAME {
            return bad(format!(
                "input.name is {:?}, expected {INPUT_NAME:?}",
                self.input.name
            ));
        }
        if self.input.shape != INPUT_SHAPE {
            return bad(format!(
                "input.shape is {:?}, expected {INPUT_SHAPE:?}",
                self.input.shape
            ));
        }
        if self.input.dtype != INPUT_DTYPE {
            return bad(format!(
                "input.dtype is {:?}, expected {INPUT_DTYPE:?}",
                self.input.dtype
            ));
        }
        if self.input.preprocessing != PREPROCESSING_ID {
            return bad(format!(
                "input.preprocessing is {:?}, expected {PREPROCESSING_ID:?}",
                self.input.preprocessing
            ));
        }
        if self.output.name.is_empty() {
            return bad("output.name is empty".to_string());
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!(
                "temperature is {}, expected a finite number > 0",
                self.temperature
            ));
        }
        let sha = self.sha256.trim();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(format!(
                "sha256 is {:?}, expected 64 hex digits",
                self.sha256
            ));
        }
        Ok(())
    }

    /// A card for tests and fakes: contract spec, temperature 1, sha256 of nothing.
    pub fn for_tests(name: &str) -> ModelCard {
        ModelCard {
            schema: MODEL_CARD_SCHEMA.to_string(),
            name: name.to_string(),
            classes: Label::all().iter().map(|l| l.to_string()).collect(),
            input: CardInput {
                name: INPUT_NAME.to_string(),
                shape: INPUT_SHAPE.to_vec(),
                dtype: INPUT_DTYPE.to_string(),
                preprocessing: PREPROCESSING_ID.to_string(),
            },
            output: CardOutput {
                name: "logits".to_string(),
            },
            temperature: 1.0,
            sha256: sha256_hex(b""),
            training: CardTraining {
                data: "none".to_string(),
                licence: "none".to_string(),
                command: "none".to_string(),
                extra: serde_json::Map::new(),
            },
            metrics: serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, card: &ModelCard, onnx: &[u8]) -> PathBuf {
        let p = dir.join("m.json");
        std::fs::write(&p, serde_json::to_string_pretty(card).unwrap()).unwrap();
        std::fs::write(dir.join("m.onnx"), onnx).unwrap();
        p
    }

    #[test]
    fn test_card_passes_its_own_checks() {
        let dir = tempfile::tempdir().unwrap();
        let mut card = ModelCard::for_tests("t");
        card.sha256 = sha256_hex(b"model bytes");
        let p = write(dir.path(), &card, b"model bytes");
        let (back, onnx, bytes) = ModelCard::load(&p).unwrap();
        assert_eq!(back, card);
        assert_eq!(onnx, dir.path().join("m.onnx"));
        assert_eq!(bytes, b"model bytes");
    }

    #[test]
    fn extra_training_facts_survive_a_round_trip() {
        let mut card = ModelCard::for_tests("t");
        card.training
            .extra
            .insert("epochs".into(), serde_json::json!(8));
        let text = serde_json::to_string(&card).unwrap();
        let back: ModelCard = serde_json::from_str(&text).unwrap();
        assert_eq!(back.training.extra["epochs"], 8);
        assert_eq!(back, card);
    }

    #[test]
    fn sha_mismatch_names_file_and_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let card = ModelCard::for_tests("t");
        let p = write(dir.path(), &card, b"other bytes");
        let msg = ModelCard::load(&p).unwrap_err().to_string();
        assert!(msg.contains("m.onnx"), "{msg}");
        assert!(msg.contains(&card.sha256), "{msg}");
        assert!(msg.contains(&sha256_hex(b"other bytes")), "{msg}");
    }

    #[test]
    fn spec_violations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        type Mutate = Box<dyn Fn(&mut ModelCard)>;
        let cases: Vec<(&str, Mutate)> = vec![
            ("schema", Box::new(|c| c.schema = "rekap-model/2".into())),
            ("classes", Box::new(|c| c.classes.swap(0, 1))),
            ("input.name", Box::new(|c| c.input.name = "x".into())),
            (
                "input.shape",
                Box::new(|c| c.input.shape = vec![-1, 28, 28]),
            ),
            (
                "input.dtype",
                Box::new(|c| c.input.dtype = "float16".into()),
            ),
            (
                "preprocessing",
                Box::new(|c| c.input.preprocessing = "raw".into()),
            ),
            ("temperature", Box::new(|c| c.temperature = 0.0)),
            ("sha256", Box::new(|c| c.sha256 = "abc".into())),
        ];
        for (what, mutate) in cases {
            let mut card = ModelCard::for_tests("t");
            mutate(&mut card);
            let p = write(dir.path(), &card, b"");
            let msg = ModelCard::load(&p).unwrap_err().to_string();
            assert!(msg.contains(what), "{what}: {msg}");
        }
    }

    #[test]
    fn missing_card_and_model_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let msg = ModelCard::load(&dir.path().join("none.json"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("none.json"), "{msg}");
        let card = ModelCard::for_tests("t");
        let p = dir.path().join("m.json");
        std::fs::write(&p, serde_json::to_string(&card).unwrap()).unwrap();
        let msg = ModelCard::load(&p).unwrap_err().to_string();
        assert!(msg.contains("m.onnx"), "{msg}");
        assert!(msg.contains(&card.sha256), "{msg}");
    }
}
