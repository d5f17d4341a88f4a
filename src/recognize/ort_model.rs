//! [`OrtModel`]: the digit model run by ONNX Runtime, one session per instance.

use super::{Logits, Model, ModelCard, NUM_CLASSES, RecognizeError, runtime};
use crate::segment::normalize::{CANVAS, DigitTensor};
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};

/// Inputs per ONNX Runtime call unless set otherwise: large enough to amortise the per-call
/// overhead, small enough that one page's boxes form a few batches.
pub const DEFAULT_BATCH_SIZE: usize = 64;

/// One ONNX Runtime session of a verified model. The session runs single-threaded
/// (intra- and inter-op threads = 1): parallelism comes from running one `OrtModel` per worker
/// thread (see [`super::ModelPool`]), which scales better for small models than ORT's pool.
pub struct OrtModel {
    session: Session,
    card: ModelCard,
    path: PathBuf,
    batch_size: usize,
}

impl std::fmt::Debug for OrtModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtModel")
            .field("path", &self.path)
            .field("card", &self.card.name)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl OrtModel {
    /// Load the model described by the card at `card_path` (the `.onnx` next to it), after
    /// checking card and sha256 ([`ModelCard::load`]); loads ONNX Runtime if needed.
    pub fn open(card_path: &Path) -> Result<OrtModel, RecognizeError> {
        let (card, path, bytes) = ModelCard::load(card_path)?;
        let env = runtime::environment()?;
        let session_err = |message: String| RecognizeError::Session {
            path: path.clone(),
            message,
        };
        let session = Session::builder(&env)
            .map_err(|e| session_err(e.to_string()))?
            .with_intra_threads(1)
            .map_err(|e| session_err(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| session_err(e.to_string()))?
            .commit_from_memory(&bytes)
            .map_err(|e| session_err(e.to_string()))?;
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        if inputs != [card.input.name.as_str()] {
            return Err(session_err(format!(
                "model inputs are {inputs:?}, the card says [{:?}]",
                card.input.name
            )));
        }
        if !session
            .outputs()
            .iter()
            .any(|o| o.name() == card.output.name)
        {
            let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
            return Err(session_err(format!(
                "model outputs are {outputs:?}, the card names {:?}",
                card.output.name
            )));
        }
        Ok(OrtModel {
            session,
            card,
            path,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Set the number of inputs per ONNX Runtime call (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The `.onnx` file this session was built from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn run_chunk(
        &mut self,
        chunk: &[DigitTensor],
        out: &mut Vec<Logits>,
    ) -> Result<(), RecognizeError> {
        let n = chunk.len();
        let flat: &[f32] = chunk.as_flattened();
        let tensor = TensorRef::from_array_view(([n, 1, CANVAS, CANVAS], flat))
            .map_err(|e| RecognizeError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.card.input.name.as_str() => tensor])
            .map_err(|e| RecognizeError::Inference(e.to_string()))?;
        let value = outputs.get(self.card.output.name.as_str()).ok_or_else(|| {
            RecognizeError::Inference(format!("no output {:?}", self.card.output.name))
        })?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| RecognizeError::Inference(e.to_string()))?;
        let dims: &[i64] = shape;
        if dims != [n as i64, NUM_CLASSES as i64] || data.len() != n * NUM_CLASSES {
            return Err(RecognizeError::Inference(format!(
                "output {:?} has shape {dims:?}, expected [{n}, {NUM_CLASSES}]",
                self.card.output.name
            )));
        }
        out.extend(data.chunks_exact(NUM_CLASSES).map(|row| {
            let mut l = [0f32; NUM_CLASSES];
            l.copy_from_slice(row);
            l
        }));
        Ok(())
    }
}

impl Model for OrtModel {
    fn logits(&mut self, batch: &[DigitTensor]) -> Result<Vec<Logits>, RecognizeError> {
        let mut out = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(self.batch_size) {
            self.run_chunk(chunk, &mut out)?;
        }
        Ok(out)
    }

    fn card(&self) -> &ModelCard {
        &self.card
    }
}
