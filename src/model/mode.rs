//! [`Mode`]: inference, or training with a dropout stream.

use candle_core::Tensor;

use super::ops::Dropout;
use crate::error::Result;

/// Inference or training (with a dropout stream).
#[derive(Debug)]
pub enum Mode<'a> {
    /// No dropout.
    Eval,
    /// Dropout from this stream.
    Train(&'a mut Dropout),
}

impl Mode<'_> {
    pub(crate) fn dropout(&mut self, xs: &Tensor, p: f64) -> Result<Tensor> {
        match self {
            Mode::Eval => Ok(xs.clone()),
            Mode::Train(stream) => Ok(stream.apply(xs, p)?),
        }
    }

    /// Dropout multipliers for `n` elements (none in eval mode or for `p <= 0`).
    pub(crate) fn mask(&mut self, n: usize, p: f64) -> Option<Vec<f32>> {
        match self {
            Mode::Eval => None,
            Mode::Train(stream) => stream.mask(n, p),
        }
    }
}
