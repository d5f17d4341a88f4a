//! [`ModelPool`]: models for parallel workers. `Model::logits` needs `&mut self` (an ONNX
//! Runtime session is not shared between threads), so each concurrently running worker borrows
//! its own model; models are created on demand and reused, so the pool holds at most as many
//! models as there were simultaneous users (rayon: the number of worker threads).
//!
//! An empty box normalises to the all-zero tensor, and a classifier's answer depends on its
//! input alone, so the pool asks a model for that answer once and gives it to every all-zero
//! tensor instead of running the model on each (about one box in six on 12 MP pages).

use super::{Model, OrtModel, Prediction, RecognizeError};
use crate::segment::normalize::{DigitTensor, is_empty_tensor};
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

type Factory<M> = Box<dyn Fn() -> Result<M, RecognizeError> + Send + Sync>;

pub struct ModelPool<M: Model> {
    factory: Factory<M>,
    idle: Mutex<Vec<M>>,
    batch_size: usize,
    /// The model's prediction for the all-zero tensor, once asked.
    empty: OnceLock<Prediction>,
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
            empty: OnceLock::new(),
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
    /// (one chunk of `batch_size` per task). All-zero tensors are not run through the model:
    /// each gets the model's one prediction for that tensor ([`ModelPool::empty_prediction`]).
    pub fn predict(&self, tensors: &[DigitTensor]) -> Result<Vec<Prediction>, RecognizeError> {
        let empty_mask: Vec<bool> = tensors.iter().map(is_empty_tensor).collect();
        let inked: Vec<DigitTensor> = tensors
            .iter()
            .zip(&empty_mask)
            .filter(|(_, e)| !**e)
            .map(|(t, _)| *t)
            .collect();
        let chunks: Vec<Vec<Prediction>> = inked
            .par_chunks(self.batch_size)
            .map(|chunk| self.with(|m| m.predict(chunk)))
            .collect::<Result<_, _>>()?;
        let mut read = chunks.into_iter().flatten();
        let empty = if inked.len() < tensors.len() {
            Some(self.empty_prediction()?)
        } else {
            None
        };
        empty_mask
            .iter()
            .map(|is_empty| match empty {
                Some(p) if *is_empty => Ok(p),
                _ => read.next().ok_or_else(|| {
                    RecognizeError::Inference("model returned fewer predictions than inputs".into())
                }),
            })
            .collect()
    }

    /// The model's prediction for the all-zero tensor, asked once per pool.
    pub fn empty_prediction(&self) -> Result<Prediction, RecognizeError> {
        if let Some(p) = self.empty.get() {
            return Ok(*p);
        }
        let p = self
            .with(|m| m.predict(&[[0.0; crate::segment::normalize::TENSOR_LEN]]))?
            .into_iter()
            .next()
            .ok_or_else(|| RecognizeError::Inference("model returned no prediction".into()))?;
        // Two threads may both ask; they get the same answer, and the first one is kept.
        Ok(*self.empty.get_or_init(|| p))
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
    fn empty_tensors_are_read_once_and_get_the_models_answer() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        // The model answers 7 for the all-zero tensor (not blank), so the test sees where the
        // answer comes from; it counts every tensor it is asked about.
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let pool = ModelPool::new(
            move || {
                let counter = Arc::clone(&counter);
                Ok(FakeModel::from_fn(move |t| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let total: f32 = t.iter().sum();
                    let label = if total <= 0.0 {
                        Label::Digit(7)
                    } else {
                        Label::Digit((total.floor() as u64 % 10) as u8)
                    };
                    super::super::fake::logits_for(label)
                }))
            },
            4,
        );
        let inked = |n: usize| {
            let mut t = [0f32; 784];
            t[..n].fill(1.0);
            t
        };
        let tensors = vec![
            [0.0; 784],
            inked(3),
            [0.0; 784],
            inked(12),
            inked(5),
            [0.0; 784],
            [0.0; 784],
            inked(9),
        ];
        let preds = pool.predict(&tensors).unwrap();
        let labels: Vec<Label> = preds.iter().map(|p| p.label).collect();
        let d = Label::Digit;
        assert_eq!(labels, vec![d(7), d(3), d(7), d(2), d(5), d(7), d(7), d(9)]);
        // Four inked tensors and one all-zero tensor reached the model, not eight.
        assert_eq!(seen.load(Ordering::SeqCst), 5);
        // The answer is kept: a second page of empty boxes asks the model nothing.
        let again = pool.predict(&[[0.0; 784], [0.0; 784]]).unwrap();
        assert!(again.iter().all(|p| p.label == d(7)));
        assert_eq!(seen.load(Ordering::SeqCst), 5);
        // A page without empty boxes never asks for it.
        assert!(pool.predict(&[]).unwrap().is_empty());
    }

    #[test]
    fn factory_errors_propagate() {
        let pool: ModelPool<FakeModel> =
            ModelPool::new(|| Err(RecognizeError::Inference("no model".into())), 4);
        assert!(pool.predict(&[[0.0; 784]]).is_err());
    }
}
