//! CrossEntropyLoss: multi-class pair classification (sentence-transformers
//! `cross_encoder/losses/cross_entropy.py`, `CrossEntropyLoss.forward`), e.g. NLI with
//! `num_labels = 3`.
//!
//! Inputs: (a, b) pairs, `C = num_labels` logits per pair. Labels: a class index per pair.
//!
//! `z = act(logits)`, `logp = log_softmax(z)`, then torch's `nn.CrossEntropyLoss` with mean
//! reduction: `L = Σ_b w[y_b]·(−logp_b[y_b]) / Σ_b w[y_b]` over the rows whose label is not
//! `ignore_index`; with `label_smoothing = ε` it is
//! `(1 − ε)·L + (ε / C)·Σ_b Σ_c w[c]·(−logp_b[c]) / Σ_b w[y_b]`.
//! Without class weights `w = 1` and this is the plain mean over rows.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::loss::activation::ActivationFn;
use crate::loss::objective::{BuiltinLoss, Loss};
use crate::loss::params::Params;
use crate::loss::pointwise::PointwiseLoss;
use crate::loss::tensor_ops::{host_vector, log_softmax_last_dim, upcast, vector_like, zero_loss};

/// sentence-transformers' CrossEntropyLoss has no `citation` property.
pub const CITATION: Option<&str> = None;

/// Hyper-parameters of [`cross_entropy`]: the loss's `activation_fn` plus the torch
/// `nn.CrossEntropyLoss` keyword arguments sentence-transformers forwards.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossEntropyConfig {
    /// Applied to the logits before the softmax. Default identity.
    pub activation_fn: ActivationFn,
    /// Per-class weights (torch's `weight`), one per class; `None` means all 1. The recipe key
    /// is `class_weights`, because `weight` in a `[[loss]]` table mixes the losses.
    pub class_weights: Option<Vec<f64>>,
    /// Rows with this label are skipped (torch `ignore_index`, default -100).
    pub ignore_index: i64,
    /// Label smoothing ε in [0, 1] (torch `label_smoothing`, default 0).
    pub label_smoothing: f64,
}

impl Default for CrossEntropyConfig {
    fn default() -> Self {
        CrossEntropyConfig {
            activation_fn: ActivationFn::Identity,
            class_weights: None,
            ignore_index: -100,
            label_smoothing: 0.0,
        }
    }
}

impl CrossEntropyConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] = &[
        "activation_fn",
        "class_weights",
        "ignore_index",
        "label_smoothing",
    ];

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`); unknown
    /// names, wrong types and out-of-range values are errors that say what was expected.
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("cross_entropy", params, Self::PARAMS)?;
        let mut cfg = CrossEntropyConfig {
            activation_fn: params.activation("activation_fn")?.unwrap_or_default(),
            ..Default::default()
        };
        if let Some(value) = params.value("class_weights") {
            let items = value.as_array().ok_or_else(|| {
                params.error(
                    "class_weights",
                    format!(
                        "must be an array of per-class weights, found {} {value}",
                        value.type_str()
                    ),
                )
            })?;
            let weights = items
                .iter()
                .map(|item| match item {
                    toml::Value::Float(x) if x.is_finite() && *x >= 0.0 => Ok(*x),
                    toml::Value::Integer(i) if *i >= 0 => Ok(*i as f64),
                    other => Err(params.error(
                        "class_weights",
                        format!("must hold finite numbers >= 0, found {other}"),
                    )),
                })
                .collect::<Result<Vec<f64>>>()?;
            cfg.class_weights = Some(weights);
        }
        if let Some(ignore_index) = params.i64("ignore_index")? {
            cfg.ignore_index = ignore_index;
        }
        if let Some(eps) = params.f64("label_smoothing")? {
            if !(0.0..=1.0).contains(&eps) {
                return Err(
                    params.error("label_smoothing", format!("must be in [0, 1], found {eps}"))
                );
            }
            cfg.label_smoothing = eps;
        }
        Ok(cfg)
    }

    /// sentence-transformers' CrossEntropyLoss has no `get_config_dict`, so the model card
    /// prints no parameters: `null`.
    pub fn config_dict(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Reads the class labels: integers (any dtype; floats must be whole numbers) in `0..C`, or
/// `ignore_index`.
fn class_labels(
    labels: &Tensor,
    batch: usize,
    num_classes: usize,
    ignore_index: i64,
) -> Result<Vec<Option<usize>>> {
    if labels.dims() != [batch] {
        return Err(Error::invalid(format!(
            "cross_entropy: labels have shape {:?} but {batch} pairs need [{batch}] (one class index per pair)",
            labels.dims()
        )));
    }
    host_vector(labels)?
        .into_iter()
        .enumerate()
        .map(|(row, value)| {
            if value.fract() != 0.0 || !value.is_finite() {
                return Err(Error::invalid(format!(
                    "cross_entropy: label {value} in batch row {row} is not a class index (an integer in 0..{num_classes})"
                )));
            }
            let class = value as i64;
            if class == ignore_index {
                Ok(None)
            } else if (0..num_classes as i64).contains(&class) {
                Ok(Some(class as usize))
            } else {
                Err(Error::invalid(format!(
                    "cross_entropy: label {class} in batch row {row} is out of range for {num_classes} classes (0..={})",
                    num_classes - 1
                ))
                .with_hint("student.num_labels must equal the number of classes in the data"))
            }
        })
        .collect()
}

/// Cross-entropy of `act(logits)` against class indices, with torch's mean reduction.
///
/// * `logits`: `(B, C)`, `C = num_labels`.
/// * `labels`: `(B,)` class indices (integer dtype, or whole floats); rows equal to
///   `cfg.ignore_index` are skipped. A label outside `0..C` is an error.
///
/// When every row is ignored (torch gives NaN) the loss is 0, connected to the logits.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, cfg: &CrossEntropyConfig) -> Result<Tensor> {
    let (batch, num_classes) = match *logits.dims() {
        [b, c] if c > 0 => (b, c),
        _ => {
            return Err(Error::invalid(format!(
                "cross_entropy needs logits of shape [batch, num_labels] but they have shape {:?}",
                logits.dims()
            )))
        }
    };
    let classes = class_labels(labels, batch, num_classes, cfg.ignore_index)?;
    let class_weights = match &cfg.class_weights {
        Some(w) if w.len() != num_classes => {
            return Err(Error::invalid(format!(
                "cross_entropy: {} class weights given but the logits have {num_classes} classes",
                w.len()
            )))
        }
        Some(w) => w.clone(),
        None => vec![1.0; num_classes],
    };
    let logits = upcast(logits)?;
    let log_probs = log_softmax_last_dim(&cfg.activation_fn.apply(&logits)?)?;

    let row_weights: Vec<f64> = classes
        .iter()
        .map(|class| class.map_or(0.0, |c| class_weights[c]))
        .collect();
    let normaliser: f64 = row_weights.iter().sum();
    if normaliser == 0.0 {
        return zero_loss(&logits);
    }
    let index: Vec<u32> = classes
        .iter()
        .map(|class| class.unwrap_or(0) as u32)
        .collect();
    let index = Tensor::from_vec(index, (batch, 1), logits.device())?;
    let picked = log_probs.gather(&index, 1)?.flatten_all()?;
    let row_weights = vector_like(row_weights, &log_probs)?;
    let nll = picked
        .mul(&row_weights)?
        .sum_all()?
        .affine(-1.0 / normaliser, 0.0)?;
    if cfg.label_smoothing == 0.0 {
        return Ok(nll);
    }
    let kept: Vec<f64> = classes
        .iter()
        .map(|c| f64::from(c.is_some() as u8))
        .collect();
    let kept = vector_like(kept, &log_probs)?.reshape((batch, 1))?;
    let class_weights = vector_like(class_weights, &log_probs)?.reshape((1, num_classes))?;
    let smooth = log_probs
        .broadcast_mul(&class_weights)?
        .broadcast_mul(&kept)?
        .sum_all()?
        .affine(-1.0 / normaliser, 0.0)?;
    let eps = cfg.label_smoothing;
    Ok(nll
        .affine(1.0 - eps, 0.0)?
        .add(&smooth.affine(eps / num_classes as f64, 0.0)?)?)
}

/// Build `cross_entropy` from its recipe parameters (any `num_labels`: one logit per class): the pointwise adapter over
/// [`cross_entropy()`].
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    _num_labels: usize,
) -> Result<Box<dyn Loss>> {
    Ok(Box::new(PointwiseLoss {
        row,
        config: CrossEntropyConfig::from_params(params)?,
        math: cross_entropy,
        config_dict: CrossEntropyConfig::config_dict,
        citation: CITATION,
        integer_labels: true,
        check_labels: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::params::table;
    use crate::loss::testing::{assert_close, check_gradient, m64, scalar, t64};

    const LOGITS: [[f64; 3]; 2] = [[1.0, 2.0, 0.5], [-0.3, 0.1, 0.8]];

    fn log_softmax(row: &[f64]) -> Vec<f64> {
        let z: f64 = row.iter().map(|x| x.exp()).sum();
        row.iter().map(|x| x - z.ln()).collect()
    }

    fn logits() -> Tensor {
        m64(&[&LOGITS[0], &LOGITS[1]])
    }

    #[test]
    fn plain_mean_of_negative_log_likelihoods() -> Result<()> {
        // (1/B) Σ −log softmax(z_b)[y_b] (`CrossEntropyLoss.forward`,
        // cross_encoder/losses/cross_entropy.py)
        let expected = -(log_softmax(&LOGITS[0])[1] + log_softmax(&LOGITS[1])[2]) / 2.0;
        let loss = cross_entropy(
            &logits(),
            &t64(&[1.0, 2.0], &[2]),
            &CrossEntropyConfig::default(),
        )?;
        assert_close(scalar(&loss), expected, 1e-14);
        // integer label tensors give the same
        let labels = Tensor::new(&[1i64, 2], &candle_core::Device::Cpu)?;
        let loss = cross_entropy(&logits(), &labels, &CrossEntropyConfig::default())?;
        assert_close(scalar(&loss), expected, 1e-14);
        Ok(())
    }

    #[test]
    fn weights_smoothing_and_ignore_index_follow_torch() -> Result<()> {
        // torch: (1−ε)·Σ w[y]·(−lp[y]) / Σ w[y] + ε/C · Σ_b Σ_c w[c]·(−lp_bc) / Σ w[y]
        let w = [0.5, 2.0, 1.5];
        let eps = 0.1;
        let lp0 = log_softmax(&LOGITS[0]);
        let lp1 = log_softmax(&LOGITS[1]);
        let nll = (w[1] * -lp0[1] + w[2] * -lp1[2]) / (w[1] + w[2]);
        let smooth = (0..3).map(|c| w[c] * (-lp0[c] - lp1[c])).sum::<f64>() / (w[1] + w[2]);
        let cfg = CrossEntropyConfig {
            class_weights: Some(w.to_vec()),
            label_smoothing: eps,
            ..Default::default()
        };
        let loss = cross_entropy(&logits(), &t64(&[1.0, 2.0], &[2]), &cfg)?;
        assert_close(scalar(&loss), (1.0 - eps) * nll + eps / 3.0 * smooth, 1e-14);

        // row 1 ignored: only row 0 counts
        let loss = cross_entropy(
            &logits(),
            &t64(&[1.0, -100.0], &[2]),
            &CrossEntropyConfig::default(),
        )?;
        assert_close(scalar(&loss), -lp0[1], 1e-14);
        // every row ignored: 0 instead of torch's NaN
        let loss = cross_entropy(
            &logits(),
            &t64(&[-100.0, -100.0], &[2]),
            &CrossEntropyConfig::default(),
        )?;
        assert_eq!(scalar(&loss), 0.0);
        Ok(())
    }

    #[test]
    fn gradient_matches_central_differences() {
        let labels = t64(&[1.0, 0.0], &[2]);
        let x0: Vec<f64> = LOGITS.iter().flatten().copied().collect();
        for cfg in [
            CrossEntropyConfig::default(),
            CrossEntropyConfig {
                activation_fn: ActivationFn::Tanh,
                class_weights: Some(vec![0.5, 2.0, 1.5]),
                label_smoothing: 0.2,
                ..Default::default()
            },
        ] {
            check_gradient(&x0, &[2, 3], 1e-6, |x| cross_entropy(x, &labels, &cfg));
        }
    }

    #[test]
    fn labels_out_of_range_or_fractional_are_errors() {
        let cfg = CrossEntropyConfig::default();
        let message = cross_entropy(&logits(), &t64(&[1.0, 3.0], &[2]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "cross_entropy: label 3 in batch row 1 is out of range for 3 classes (0..=2)"
            ),
            "{message}"
        );
        let message = cross_entropy(&logits(), &t64(&[0.5, 1.0], &[2]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("label 0.5 in batch row 0 is not a class index"),
            "{message}"
        );
        let message = cross_entropy(&logits(), &t64(&[0.0, 1.0, 2.0], &[3]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("labels have shape [3] but 2 pairs need [2]"),
            "{message}"
        );
        let message = cross_entropy(&t64(&[0.0; 2], &[2]), &t64(&[0.0, 1.0], &[2]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(message.contains("have shape [2]"), "{message}");
        let cfg = CrossEntropyConfig {
            class_weights: Some(vec![1.0, 2.0]),
            ..Default::default()
        };
        let message = cross_entropy(&logits(), &t64(&[0.0, 1.0], &[2]), &cfg)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "cross_entropy: 2 class weights given but the logits have 3 classes"
        );
    }

    #[test]
    fn config_from_params_and_card() {
        let cfg = CrossEntropyConfig::from_params(&table(
            "class_weights = [1, 2.5]\nlabel_smoothing = 0.1\nignore_index = -1",
        ))
        .unwrap();
        assert_eq!(cfg.class_weights, Some(vec![1.0, 2.5]));
        assert_eq!(cfg.label_smoothing, 0.1);
        assert_eq!(cfg.ignore_index, -1);
        assert_eq!(cfg.config_dict(), serde_json::Value::Null);
        let message = CrossEntropyConfig::from_params(&table("label_smoothing = 2"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "loss \"cross_entropy\": parameter \"label_smoothing\" must be in [0, 1], found 2"
        );
        let message = CrossEntropyConfig::from_params(&table("class_weights = 1.0"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("must be an array of per-class weights, found float 1.0"),
            "{message}"
        );
    }
}
