//! [`HiddenAct`]: the activations config.json names (`hidden_act`, `hidden_activation`,
//! `classifier_activation`).

use candle_core::{Result as CResult, Tensor};

/// An activation function as transformers' `ACT2FN` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenAct {
    /// Exact GELU, `0.5 x (1 + erf(x / √2))` (`gelu`).
    GeluErf,
    /// Tanh-approximated GELU (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    /// ReLU.
    Relu,
    /// SiLU, `x · sigmoid(x)` (`silu`, `swish`).
    Silu,
}

impl HiddenAct {
    /// The activation `name` stands for, or `None` when crossdistill does not know it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(HiddenAct::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(HiddenAct::GeluTanh),
            "relu" => Some(HiddenAct::Relu),
            "silu" | "swish" => Some(HiddenAct::Silu),
            _ => None,
        }
    }

    /// The names [`HiddenAct::from_name`] accepts, for error messages.
    pub const NAMES: &'static str =
        "gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu or swish";

    /// Apply to every element (differentiable).
    pub fn apply(self, xs: &Tensor) -> CResult<Tensor> {
        match self {
            HiddenAct::GeluErf => xs.gelu_erf(),
            HiddenAct::GeluTanh => xs.gelu(),
            HiddenAct::Relu => xs.relu(),
            HiddenAct::Silu => xs.silu(),
        }
    }
}
