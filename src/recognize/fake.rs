//! [`FakeModel`]: a deterministic stand-in for the digit model, for tests of other stages
//! (no ONNX Runtime, no model file).

use super::{Label, Logits, Model, ModelCard, NUM_CLASSES, RecognizeError};
use crate::segment::normalize::DigitTensor;

/// Logit given to the scripted class (all others get 0): softmax at temperature 1 then gives
/// it probability e^8 / (e^8 + 11) ~= 0.996, a confident but not certain reading.
pub const FAKE_WINNING_LOGIT: f32 = 8.0;

type LogitFn = Box<dyn FnMut(&DigitTensor) -> Logits + Send>;

/// A scripted model. Every call is recorded in [`FakeModel::batch_sizes`].
pub struct FakeModel {
    f: LogitFn,
    card: ModelCard,
    /// Length of every batch passed to [`Model::logits`], in call order.
    pub batch_sizes: Vec<usize>,
}

impl std::fmt::Debug for FakeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeModel")
            .field("batch_sizes", &self.batch_sizes)
            .finish()
    }
}

/// Logits that make `label` the confident winner.
pub fn logits_for(label: Label) -> Logits {
    let mut l = [0f32; NUM_CLASSES];
    l[label.index()] = FAKE_WINNING_LOGIT;
    l
}

impl FakeModel {
    /// Logits computed by `f` from each tensor.
    pub fn from_fn(f: impl FnMut(&DigitTensor) -> Logits + Send + 'static) -> FakeModel {
        FakeModel {
            f: Box::new(f),
            card: ModelCard::for_tests("fake"),
            batch_sizes: Vec::new(),
        }
    }

    /// Answers `labels` in order, one per input across calls, cycling when they run out
    /// (an empty list answers `blank`).
    pub fn scripted(labels: Vec<Label>) -> FakeModel {
        let mut next = 0usize;
        Self::from_fn(move |_| {
            let label = labels
                .get(next % labels.len().max(1))
                .copied()
                .unwrap_or(Label::Blank);
            next += 1;
            logits_for(label)
        })
    }

    /// Always answers `label`.
    pub fn constant(label: Label) -> FakeModel {
        Self::from_fn(move |_| logits_for(label))
    }

    /// A deterministic function of the tensor: `blank` when it holds no ink, otherwise the digit
    /// `floor(total ink) mod 10`.
    pub fn ink_sum() -> FakeModel {
        Self::from_fn(|t| {
            let total: f32 = t.iter().sum();
            if total <= 0.0 {
                logits_for(Label::Blank)
            } else {
                logits_for(Label::Digit((total.floor() as u64 % 10) as u8))
            }
        })
    }
}

impl Model for FakeModel {
    fn logits(&mut self, batch: &[DigitTensor]) -> Result<Vec<Logits>, RecognizeError> {
        self.batch_sizes.push(batch.len());
        Ok(batch.iter().map(|t| (self.f)(t)).collect())
    }

    fn card(&self) -> &ModelCard {
        &self.card
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_cycles_and_records_batches() {
        let mut m = FakeModel::scripted(vec![Label::Digit(1), Label::X]);
        let p = m.predict(&[[0.0; 784]; 3]).unwrap();
        let labels: Vec<Label> = p.iter().map(|p| p.label).collect();
        assert_eq!(labels, [Label::Digit(1), Label::X, Label::Digit(1)]);
        assert!(p[0].confidence > 0.99);
        m.predict(&[[0.0; 784]]).unwrap();
        assert_eq!(m.batch_sizes, [3, 1]);
    }

    #[test]
    fn ink_sum_is_deterministic() {
        let mut m = FakeModel::ink_sum();
        let mut t = [0f32; 784];
        assert_eq!(m.predict(&[t]).unwrap()[0].label, Label::Blank);
        t[..13].fill(1.0);
        assert_eq!(m.predict(&[t]).unwrap()[0].label, Label::Digit(3));
    }
}
