//! MarginMSELoss: distil the teacher's score *margins* between a positive and N negatives
//! (sentence-transformers `cross_encoder/losses/margin_mse.py`, `MarginMSELoss.forward`).
//!
//! Inputs: rows (query, positive, negative_1..negative_N), N ≥ 1; the glue scores the N+1 pairs
//! of each row. Labels, per row, one of:
//! * `(B,)`: one margin `teacher(q, pos) − teacher(q, neg)` (N = 1 only);
//! * `(B, N)`: the N margins `teacher(q, pos) − teacher(q, neg_i)`;
//! * `(B, N+1)`: raw teacher scores `[pos, neg_1..neg_N]`, turned into margins
//!   `labels[:, 0:1] − labels[:, 1:]` exactly as sentence-transformers does.
//!
//! `M = act(s_pos)[:, None] − act(s_neg)` (signed; the activation applies per logit, before the
//! difference), `L = mean_{b,i} (M_bi − labels_bi)²` over all B·N entries.

use candle_core::{Device, Tensor};
use serde_json::json;

use crate::error::{Error, Result};
use crate::loss::activation::ActivationFn;
use crate::loss::batch::{
    require_columns, require_labels, require_one_label, student_logits, text_column,
};
use crate::loss::objective::{BuiltinLoss, Loss, LossInput, LossValue};
use crate::loss::params::Params;
use crate::loss::tensor_ops::{one_logit_per_pair, upcast};
use crate::model::{CrossEncoder, Dropout};

/// BibTeX of the paper sentence-transformers cites for MarginMSELoss.
pub const CITATION: Option<&str> = Some(
    r#"@misc{hofstätter2021improving,
    title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
    author={Sebastian Hofstätter and Sophia Althammer and Michael Schröder and Mete Sertkan and Allan Hanbury},
    year={2021},
    eprint={2010.02666},
    archivePrefix={arXiv},
    primaryClass={cs.IR}
}"#,
);

/// Hyper-parameters of [`margin_mse`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MarginMseConfig {
    /// Applied to every logit before the margins are taken. Default identity.
    pub activation_fn: ActivationFn,
}

impl MarginMseConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] = &["activation_fn"];

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`).
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("margin_mse", params, Self::PARAMS)?;
        Ok(MarginMseConfig {
            activation_fn: params.activation("activation_fn")?.unwrap_or_default(),
        })
    }

    /// The keys sentence-transformers' `get_config_dict` returns, for the model card.
    pub fn config_dict(&self) -> serde_json::Value {
        json!({ "activation_fn": self.activation_fn.fullname() })
    }
}

/// Stacks per-row label lists into a `(B, K)` f32 tensor, as sentence-transformers'
/// `torch.stack(labels)`; rows of different lengths are an error naming the first offender.
pub fn stack_label_rows(rows: &[Vec<f32>], device: &Device) -> Result<Tensor> {
    let width = rows.first().map_or(0, Vec::len);
    if let Some((row, bad)) = rows.iter().enumerate().find(|(_, r)| r.len() != width) {
        return Err(Error::invalid(format!(
            "margin_mse: label row {row} has {} values but row 0 has {width}; every row needs the same number",
            bad.len()
        ))
        .with_hint("give N margins or N+1 raw teacher scores [positive, negative_1..negative_N] in every row"));
    }
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (rows.len(), width), device)?)
}

/// Normalises MarginMSE labels to `(B, N)` margins, in sentence-transformers' order: a
/// `(B, N+1)` tensor of raw scores becomes `labels[:, 0:1] − labels[:, 1:]`; a `(B,)` vector
/// becomes `(B, 1)`; anything that is not `(B, N)` by then is an error with the real shapes.
pub fn margin_labels(labels: &Tensor, batch: usize, num_negatives: usize) -> Result<Tensor> {
    let labels = labels.detach();
    let labels = match *labels.dims() {
        [b, k] if b == batch && k == num_negatives + 1 => {
            let positive = labels.narrow(1, 0, 1)?;
            let negatives = labels.narrow(1, 1, num_negatives)?;
            positive.broadcast_sub(&negatives)?
        }
        [b] if b == batch => labels.unsqueeze(1)?,
        _ => labels,
    };
    if labels.dims() == [batch, num_negatives] {
        return Ok(labels);
    }
    let columns = if num_negatives == 1 {
        "1 negative column needs".to_string()
    } else {
        format!("{num_negatives} negative columns need")
    };
    let accepted = if num_negatives == 1 {
        format!("[{batch}], [{batch}, 1] or [{batch}, 2]")
    } else {
        format!(
            "[{batch}, {num_negatives}] or [{batch}, {}]",
            num_negatives + 1
        )
    };
    Err(Error::invalid(format!(
        "margin_mse: labels have shape {:?} but {columns} {accepted}",
        labels.dims()
    ))
    .with_hint(
        "labels are N margins teacher(q, pos) - teacher(q, neg_i) or N+1 raw teacher scores [pos, neg_1..neg_N] per row",
    ))
}

/// MSE between the student's signed margins and the label margins.
///
/// * `positive_logits`: `(B,)` or `(B, 1)`, logits of (query, positive).
/// * `negative_logits`: `(B, N)`, logits of (query, negative_i), N ≥ 1.
/// * `labels`: `(B,)` (N = 1), `(B, N)` margins or `(B, N+1)` raw scores (see
///   [`margin_labels`]); constants.
pub fn margin_mse(
    positive_logits: &Tensor,
    negative_logits: &Tensor,
    labels: &Tensor,
    cfg: &MarginMseConfig,
) -> Result<Tensor> {
    let positive = upcast(&one_logit_per_pair("margin_mse", positive_logits)?)?;
    let batch = positive.dim(0)?;
    let num_negatives = match *negative_logits.dims() {
        [b, n] if b == batch && n >= 1 => n,
        _ => {
            return Err(Error::invalid(format!(
                "margin_mse: negative logits have shape {:?} but {batch} positive logits need [{batch}, N] with N >= 1 negative columns",
                negative_logits.dims()
            )))
        }
    };
    let negative = upcast(negative_logits)?.to_dtype(positive.dtype())?;
    let labels = margin_labels(labels, batch, num_negatives)?.to_dtype(positive.dtype())?;
    let positive = cfg.activation_fn.apply(&positive)?.unsqueeze(1)?;
    let negative = cfg.activation_fn.apply(&negative)?;
    let margins = positive.broadcast_sub(&negative)?;
    Ok(margins.sub(&labels)?.sqr()?.mean_all()?)
}

/// MarginMSE over (query, positive, negative_1..N) rows: labels are N margins, N+1 raw teacher
/// scores, or one margin (N = 1).
pub struct MarginMseLoss {
    row: &'static BuiltinLoss,
    config: MarginMseConfig,
}

/// Build `margin_mse` from its recipe parameters (`num_labels` must be 1).
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    num_labels: usize,
) -> Result<Box<dyn Loss>> {
    require_one_label(row.kind, num_labels)?;
    Ok(Box::new(MarginMseLoss {
        row,
        config: MarginMseConfig::from_params(params)?,
    }))
}

impl Loss for MarginMseLoss {
    fn kind(&self) -> &str {
        self.row.kind
    }

    fn class_name(&self) -> String {
        self.row.class_name.to_string()
    }

    fn compute(
        &mut self,
        student: &CrossEncoder,
        input: &LossInput,
        dropout: &mut Dropout,
    ) -> Result<LossValue> {
        let columns = input.examples.first().map_or(0, |r| r.fields.len());
        if columns < 3 {
            return Err(Error::invalid(format!(
                "margin_mse needs (query, positive, negative_1..N) columns, at least 3, but the rows have {columns}"
            )));
        }
        require_columns(
            input.examples,
            columns,
            "margin_mse",
            "query, positive, negatives",
        )?;
        let labels = require_labels(input, "margin_mse")?;
        let queries = text_column(input.examples, 0, "margin_mse")?;
        let mut pairs = Vec::with_capacity(queries.len() * (columns - 1));
        for column in 1..columns {
            let docs = text_column(input.examples, column, "margin_mse")?;
            pairs.extend(queries.iter().copied().zip(docs));
        }
        // One forward over every (query, doc) pair, column-major: [pos..., neg1..., negN...].
        let batch = queries.len();
        let logits = student_logits(student, &pairs, Some(dropout))?
            .narrow(1, 0, 1)?
            .squeeze(1)?;
        let positive = logits.narrow(0, 0, batch)?;
        let negative = logits
            .narrow(0, batch, batch * (columns - 2))?
            .reshape((columns - 2, batch))?
            .t()?;
        let labels = stack_label_rows(labels, student.device())?;
        let labels = if labels.dim(1)? == 1 {
            labels.squeeze(1)?
        } else {
            labels
        };
        Ok(LossValue::Graph(margin_mse(
            &positive,
            &negative,
            &labels,
            &self.config,
        )?))
    }

    fn config_dict(&self) -> serde_json::Value {
        self.config.config_dict()
    }

    fn citation(&self) -> Option<&'static str> {
        CITATION
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::params::table;
    use crate::loss::testing::{assert_close, check_gradient, m64, scalar, t64};

    // Student: pos [2.0, 0.5], negatives [[1.0, -1.0], [0.7, 0.2]] → margins [[1.0, 3.0], [-0.2, 0.3]].
    fn student() -> (Tensor, Tensor) {
        (t64(&[2.0, 0.5], &[2]), m64(&[&[1.0, -1.0], &[0.7, 0.2]]))
    }

    #[test]
    fn margins_layout() -> Result<()> {
        let (pos, neg) = student();
        let labels = m64(&[&[0.5, 3.0], &[0.0, 1.0]]);
        // ((1.0-0.5)^2 + 0 + (-0.2-0)^2 + (0.3-1.0)^2) / 4 = (0.25 + 0.04 + 0.49) / 4
        let loss = margin_mse(&pos, &neg, &labels, &MarginMseConfig::default())?;
        assert_close(scalar(&loss), 0.78 / 4.0, 1e-14);
        Ok(())
    }

    #[test]
    fn raw_scores_layout_becomes_margins() -> Result<()> {
        let (pos, neg) = student();
        // raw [pos, neg1, neg2] = [4.0, 3.5, 1.0], [1.0, 1.0, 0.0] → margins [0.5, 3.0], [0.0, 1.0]
        let labels = m64(&[&[4.0, 3.5, 1.0], &[1.0, 1.0, 0.0]]);
        let loss = margin_mse(&pos, &neg, &labels, &MarginMseConfig::default())?;
        assert_close(scalar(&loss), 0.78 / 4.0, 1e-14);
        Ok(())
    }

    #[test]
    fn single_margin_layout() -> Result<()> {
        let pos = t64(&[2.0, 0.5], &[2, 1]);
        let neg = m64(&[&[1.0], &[0.7]]);
        // margins [1.0, -0.2] vs labels [0.5, 0.3]: (0.25 + 0.25) / 2
        let loss = margin_mse(
            &pos,
            &neg,
            &t64(&[0.5, 0.3], &[2]),
            &MarginMseConfig::default(),
        )?;
        assert_close(scalar(&loss), 0.25, 1e-14);
        Ok(())
    }

    #[test]
    fn activation_applies_per_logit_before_the_margin() -> Result<()> {
        let cfg = MarginMseConfig {
            activation_fn: ActivationFn::Sigmoid,
        };
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let loss = margin_mse(
            &t64(&[2.0], &[1]),
            &m64(&[&[1.0]]),
            &t64(&[0.0], &[1]),
            &cfg,
        )?;
        assert_close(scalar(&loss), (sigmoid(2.0) - sigmoid(1.0)).powi(2), 1e-15);
        Ok(())
    }

    #[test]
    fn zero_when_student_margins_equal_labels() -> Result<()> {
        let (pos, neg) = student();
        let labels = m64(&[&[1.0, 3.0], &[-0.2, 0.3]]);
        let loss = margin_mse(&pos, &neg, &labels, &MarginMseConfig::default())?;
        assert_close(scalar(&loss), 0.0, 1e-30);
        Ok(())
    }

    #[test]
    fn gradient_matches_central_differences() {
        let (pos, neg) = student();
        let labels = m64(&[&[0.5, 3.0], &[0.0, 1.0]]);
        let cfg = MarginMseConfig {
            activation_fn: ActivationFn::Tanh,
        };
        check_gradient(&[2.0, 0.5], &[2], 1e-6, |x| {
            margin_mse(x, &neg, &labels, &cfg)
        });
        check_gradient(&[1.0, -1.0, 0.7, 0.2], &[2, 2], 1e-6, |x| {
            margin_mse(&pos, x, &labels, &cfg)
        });
    }

    #[test]
    fn wrong_label_shapes_name_the_shapes() {
        let (pos, neg) = student();
        let cfg = MarginMseConfig::default();
        let message = margin_mse(&pos, &neg, &m64(&[&[1.0; 4], &[1.0; 4]]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "margin_mse: labels have shape [2, 4] but 2 negative columns need [2, 2] or [2, 3]"
            ),
            "{message}"
        );
        let message = margin_mse(&pos, &neg, &t64(&[1.0, 2.0], &[2]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("margin_mse: labels have shape [2, 1] but 2 negative columns"),
            "{message}"
        );
        let message = margin_labels(&t64(&[1.0; 3], &[3]), 2, 1)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "margin_mse: labels have shape [3] but 1 negative column needs [2], [2, 1] or [2, 2]"
            ),
            "{message}"
        );
        let message = margin_mse(&pos, &t64(&[0.0; 3], &[3, 1]), &t64(&[0.0; 2], &[2]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("negative logits have shape [3, 1]"),
            "{message}"
        );
    }

    #[test]
    fn ragged_label_rows_are_an_error() {
        let rows = vec![vec![1.0f32, 0.5, 0.2], vec![0.9, 0.1]];
        let message = stack_label_rows(&rows, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("margin_mse: label row 1 has 2 values but row 0 has 3"),
            "{message}"
        );
        let ok = stack_label_rows(&[vec![1.0f32, 0.5], vec![0.9, 0.1]], &Device::Cpu).unwrap();
        assert_eq!(ok.dims(), [2, 2]);
    }

    #[test]
    fn config_from_params_and_card() {
        let cfg = MarginMseConfig::from_params(&table(
            "activation_fn = \"torch.nn.modules.activation.Sigmoid\"",
        ))
        .unwrap();
        assert_eq!(
            cfg.config_dict(),
            json!({"activation_fn": "torch.nn.modules.activation.Sigmoid"})
        );
        assert!(CITATION.unwrap().contains("2010.02666"));
        let message = MarginMseConfig::from_params(&table("activation_fn = \"gelu\""))
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "loss \"margin_mse\": parameter \"activation_fn\" must be one of \"identity\""
            ),
            "{message}"
        );
        assert!(message.ends_with("found \"gelu\""), "{message}");
    }
}
