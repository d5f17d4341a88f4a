//! [`ModelPool`]: models for parallel workers. `Model::logits` needs `&mut self` (an ONNX
//! Runtime session is not shared between threads), so each concurrently running worker borrows
//! its own model; models are created on demand and reused, so the pool holds at most as many
//! models as there were simultaneous users (rayon: the number of worker threads).

use super::{Model, OrtModel, Prediction, RecognizeError};
use crate::segment::normalize::DigitTensor;
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::Mutex;

type Factory<M> = Box<dyn Fn() -> Result<M, RecognizeError> + Send + Sync>;

pub struct ModelPool<M: Model> {
    factory: Factory<M>,
    idle: Mutex<Vec<M>>,
    batch_size: usize,
}

impl ModelPool<OrtModel> {
    /// A pool of [`OrtModel`]s of the card at `card_path`. The first model is opened at once, so
    /// a missing runtime or a bad model is reported here rather than inside a worker.
    pub fn ort(card_path: impl Into<PathBuf>, batch_size: usize) -> Result<Self, RecognizeError> {
        let card_path = card_path.into();
        let batch_size = batch_size.max(1);
        let pool = ModelPool::new(
            move || Ok(OrtModel::open(&card_path)?.with_batch_size(batch_size)),
            batch_size,
        );
        let first = (pool.factory)()?;
        pool.give_back(first);
        Ok(pool)
    }
}

impl<M: Model> ModelPool<M> {
    /// A pool whose models come from `factory`; [`ModelPool::predict`] splits its input into
    /// chunks of `batch_size`.
    pub fn new(
        factory: impl Fn() -> Result<M, RecognizeError> + Send + Sync + 'static,
        batch_size: usize,
    ) -> Self {
        ModelPool {
            factory: Box::new(factory),
            idle: Mutex::new(Vec::new()),
            batch_size: batch_size.max(1),
        }
    }

    fn take(&self) -> Result<M, RecognizeError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match idle {
            Some(m) => Ok(m),
            None => (self.factory)(),
        }
    }

    fn give_back(&self, model: M) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(model);
    }

    /// Run `f` with a model borrowed from the pool (created if none is idle).
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut M) -> Result<R, RecognizeError>,
    ) -> Result<R, RecognizeError> {
        let mut model = self.take()?;
        let result = f(&mut model);
        self.give_back(model);
        result
    }

    /// Predictions for all tensors, in input order, computed in parallel on rayon's pool
    /// (one chunk of `batch_size` per task).
    pub fn predict(&self, tensors: &[DigitTensor]) -> Result<Vec<Prediction>, RecognizeError> {
        let chunks: Vec<Vec<Prediction>> = tensors
            .par_chunks(self.batch_size)
            .map(|chunk| self.with(|m| m.predict(chunk)))
            .collect::<Result<_, _>>()?;
        Ok(chunks.into_iter().flatten().collect())
    }

    /// Number of models currently idle in the pool.
    pub fn idle_models(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recognize::{FakeModel, Label};

    #[test]
    fn parallel_predict_keeps_order() {
        let pool = ModelPool::new(|| Ok(FakeModel::ink_sum()), 7);
        let tensors: Vec<DigitTensor> = (0..100)
            .map(|i| {
                let mut t = [0f32; 784];
                t[..i].fill(1.0);
                t
            })
            .collect();
        let preds = pool.predict(&tensors).unwrap();
        assert_eq!(preds.len(), 100);
        assert_eq!(preds[0].label, Label::Blank);
        for (i, p) in preds.iter().enumerate().skip(1) {
            assert_eq!(p.label, Label::Digit((i % 10) as u8), "input {i}");
        }
        assert!(pool.idle_models() >= 1);
    }

    #[test]
    fn factory_errors_propagate() {
        let pool: ModelPool<FakeModel> =
            ModelPool::new(|| Err(RecognizeError::Inference("no model".into())), 4);
        assert!(pool.predict(&[[0.0; 784]]).is_err());
    }
}
