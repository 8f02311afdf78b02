//! The `activation_fn` every sentence-transformers CrossEncoder loss applies to the student
//! logits before its formula.
//!
//! sentence-transformers takes any `torch.nn.Module`; crossdistill supports the four that make
//! sense on a score: `Identity`, `Sigmoid`, `Tanh` and `ReLU`. Recipes name them by their short
//! name (`"sigmoid"`) or by the torch class path the model card prints
//! (`"torch.nn.modules.activation.Sigmoid"`).

use candle_core::Tensor;

use crate::error::{Error, Result};

/// An element-wise activation applied to logits inside a loss.
///
/// Every loss default is [`ActivationFn::Identity`] except (Cached)MultipleNegativesRankingLoss,
/// whose default is [`ActivationFn::Sigmoid`] (the `activation_fn` default of each `__init__` in
/// sentence-transformers `cross_encoder/losses/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActivationFn {
    /// `torch.nn.Identity`: the logits unchanged.
    #[default]
    Identity,
    /// `torch.nn.Sigmoid`: `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `torch.nn.Tanh`.
    Tanh,
    /// `torch.nn.ReLU`: `max(x, 0)`.
    Relu,
}

/// Every activation, in the order error messages list them.
const ALL: [ActivationFn; 4] = [
    ActivationFn::Identity,
    ActivationFn::Sigmoid,
    ActivationFn::Tanh,
    ActivationFn::Relu,
];

impl ActivationFn {
    /// Parses a short name (`identity`, `sigmoid`, `tanh`, `relu`, any case) or a torch class
    /// path (`torch.nn.modules.activation.Sigmoid`, `torch.nn.Sigmoid`, `nn.Sigmoid`).
    ///
    /// Returns [`Error::Invalid`] naming the accepted values for anything else.
    pub fn parse(name: &str) -> Result<Self> {
        let trimmed = name.trim();
        let short = ALL
            .iter()
            .find(|activation| activation.fullname() == trimmed)
            .map(|activation| activation.name())
            .or_else(|| {
                ["torch.nn.", "nn."]
                    .iter()
                    .find_map(|prefix| trimmed.strip_prefix(prefix))
            })
            .unwrap_or(trimmed);
        ALL.iter()
            .copied()
            .find(|activation| activation.name().eq_ignore_ascii_case(short))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown activation_fn \"{name}\"; expected one of {}",
                    Self::accepted_names()
                ))
            })
    }

    /// The accepted names, for error messages: `"identity" (torch.nn.modules.linear.Identity), ...`.
    pub(crate) fn accepted_names() -> String {
        ALL.iter()
            .map(|a| format!("\"{}\" ({})", a.name(), a.fullname()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The short name used in recipes: `identity`, `sigmoid`, `tanh` or `relu`.
    pub fn name(&self) -> &'static str {
        match self {
            ActivationFn::Identity => "identity",
            ActivationFn::Sigmoid => "sigmoid",
            ActivationFn::Tanh => "tanh",
            ActivationFn::Relu => "relu",
        }
    }

    /// The torch class path sentence-transformers' `fullname()` prints in the model card, e.g.
    /// `torch.nn.modules.activation.Sigmoid`.
    pub fn fullname(&self) -> &'static str {
        match self {
            ActivationFn::Identity => "torch.nn.modules.linear.Identity",
            ActivationFn::Sigmoid => "torch.nn.modules.activation.Sigmoid",
            ActivationFn::Tanh => "torch.nn.modules.activation.Tanh",
            ActivationFn::Relu => "torch.nn.modules.activation.ReLU",
        }
    }

    /// Applies the activation element-wise; differentiable (gradients flow through
    /// `Tensor::backward`).
    pub fn apply(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(match self {
            ActivationFn::Identity => xs.clone(),
            ActivationFn::Sigmoid => candle_nn::ops::sigmoid(xs)?,
            ActivationFn::Tanh => xs.tanh()?,
            ActivationFn::Relu => xs.relu()?,
        })
    }
}

impl std::str::FromStr for ActivationFn {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        ActivationFn::parse(name)
    }
}

impl std::fmt::Display for ActivationFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn parses_short_and_torch_names() {
        for activation in ALL {
            assert_eq!(ActivationFn::parse(activation.name()).unwrap(), activation);
            assert_eq!(
                ActivationFn::parse(activation.fullname()).unwrap(),
                activation
            );
        }
        assert_eq!(
            ActivationFn::parse("Sigmoid").unwrap(),
            ActivationFn::Sigmoid
        );
        assert_eq!(ActivationFn::parse("nn.ReLU").unwrap(), ActivationFn::Relu);
        assert_eq!(
            ActivationFn::parse("torch.nn.Tanh").unwrap(),
            ActivationFn::Tanh
        );
        assert_eq!(
            "identity".parse::<ActivationFn>().unwrap(),
            ActivationFn::Identity
        );
    }

    #[test]
    fn unknown_name_lists_the_accepted_ones() {
        let message = ActivationFn::parse("softmax").unwrap_err().to_string();
        assert!(message.contains("\"softmax\""), "{message}");
        assert!(
            message.contains("torch.nn.modules.activation.Sigmoid"),
            "{message}"
        );
        assert!(message.contains("\"relu\""), "{message}");
    }

    #[test]
    fn applies_torch_formulas() -> Result<()> {
        let xs = Tensor::new(&[-2.0f64, 0.0, 1.5], &Device::Cpu)?;
        let sigmoid: Vec<f64> = ActivationFn::Sigmoid.apply(&xs)?.to_vec1()?;
        let tanh: Vec<f64> = ActivationFn::Tanh.apply(&xs)?.to_vec1()?;
        let relu: Vec<f64> = ActivationFn::Relu.apply(&xs)?.to_vec1()?;
        let identity: Vec<f64> = ActivationFn::Identity.apply(&xs)?.to_vec1()?;
        for (i, x) in [-2.0f64, 0.0, 1.5].into_iter().enumerate() {
            assert!((sigmoid[i] - 1.0 / (1.0 + (-x).exp())).abs() < 1e-15);
            assert!((tanh[i] - x.tanh()).abs() < 1e-15);
            assert_eq!(relu[i], x.max(0.0));
            assert_eq!(identity[i], x);
        }
        Ok(())
    }
}
