//! The graph signature of a cross-encoder export: the inputs and outputs its ONNX graph
//! declares, checked once when the teacher loads.

use ort::value::{Outlet, TensorElementType, ValueType};

use crate::error::{Error, Result};

/// What a model's ONNX graph declares for one input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OnnxPort {
    /// The name in the graph.
    pub(crate) name: String,
    /// Element type; `None` when the value is not a tensor.
    pub(crate) element: Option<TensorElementType>,
    /// Declared dimensions (-1 where dynamic); `None` when the graph declares no shape.
    pub(crate) dims: Option<Vec<i64>>,
}

impl OnnxPort {
    pub(crate) fn from_outlet(outlet: &Outlet) -> Self {
        let (element, dims) = match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. } => (Some(*ty), Some(shape.to_vec())),
            _ => (None, None),
        };
        Self {
            name: outlet.name().to_string(),
            element,
            dims,
        }
    }

    fn describe(&self) -> String {
        let element = self
            .element
            .map_or("non-tensor".to_string(), |e| format!("{e:?}"));
        match &self.dims {
            Some(dims) => format!("{} ({element} {dims:?})", self.name),
            None => format!("{} ({element}, no declared shape)", self.name),
        }
    }
}

/// The inputs a cross-encoder graph takes, as `check_signature` found them when the teacher
/// loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnnxSignature {
    /// The graph takes `token_type_ids` (BERT does, XLM-R exports do not).
    pub token_type_ids: bool,
    /// The graph takes `position_ids` (some ModernBERT exports do): fed as transformers computes
    /// them (0.. per row; from `pad_token_id + 1` over real tokens for RoBERTa-style models).
    pub position_ids: bool,
    /// Labels per pair, when the graph declares a static second dimension for `logits`.
    pub num_labels: Option<usize>,
}

const CROSS_ENCODER_INPUTS: &str = "int64 input_ids and attention_mask [batch, sequence] (and token_type_ids where the model has token types, optionally position_ids)";
const CROSS_ENCODER_OUTPUT: &str = "a float logits output [batch, num_labels]";

/// Check that a graph's inputs and outputs are a cross-encoder's (see the `onnx` module docs); `model`
/// names it in errors.
pub(crate) fn check_signature(
    model: &str,
    inputs: &[OnnxPort],
    outputs: &[OnnxPort],
) -> Result<OnnxSignature> {
    let listed = |ports: &[OnnxPort]| {
        ports
            .iter()
            .map(OnnxPort::describe)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let not_a_cross_encoder = |message: String| {
        Error::model(model, message).with_hint(
            "export a *ForSequenceClassification model (optimum-cli export onnx --task text-classification, \
             or torch.onnx.export with input_names [input_ids, attention_mask, token_type_ids] and output_names [logits])",
        )
    };
    for required in ["input_ids", "attention_mask"] {
        if !inputs.iter().any(|p| p.name == required) {
            return Err(not_a_cross_encoder(format!(
                "the ONNX model has no `{required}` input; a cross-encoder takes {CROSS_ENCODER_INPUTS}, found inputs {}",
                listed(inputs)
            )));
        }
    }
    let mut token_type_ids = false;
    let mut position_ids = false;
    for port in inputs {
        match port.name.as_str() {
            "input_ids" | "attention_mask" => {}
            "token_type_ids" => token_type_ids = true,
            "position_ids" => position_ids = true,
            other => {
                return Err(not_a_cross_encoder(format!(
                    "the ONNX model takes an input `{other}` that crossdistill cannot feed; a cross-encoder takes \
                     {CROSS_ENCODER_INPUTS}, found inputs {}",
                    listed(inputs)
                )))
            }
        }
        let rank_ok = port.dims.as_ref().is_none_or(|d| d.len() == 2);
        if port.element != Some(TensorElementType::Int64) || !rank_ok {
            return Err(not_a_cross_encoder(format!(
                "the ONNX input {} must be an int64 tensor [batch, sequence]",
                port.describe()
            )));
        }
    }
    let Some(logits) = outputs.iter().find(|p| p.name == "logits") else {
        return Err(not_a_cross_encoder(format!(
            "the ONNX model has no `logits` output; a cross-encoder has {CROSS_ENCODER_OUTPUT}, found outputs {}",
            listed(outputs)
        )));
    };
    if logits.element != Some(TensorElementType::Float32) {
        return Err(not_a_cross_encoder(format!(
            "the ONNX output {} must be float32; a cross-encoder has {CROSS_ENCODER_OUTPUT}",
            logits.describe()
        )));
    }
    let num_labels = match logits.dims.as_deref() {
        None => None,
        Some([_, labels]) => usize::try_from(*labels).ok().filter(|n| *n > 0),
        Some(_) => {
            return Err(not_a_cross_encoder(format!(
                "the ONNX output {} is not 2-D; a cross-encoder has {CROSS_ENCODER_OUTPUT}",
                logits.describe()
            )))
        }
    };
    Ok(OnnxSignature {
        token_type_ids,
        position_ids,
        num_labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, element: TensorElementType, dims: Option<Vec<i64>>) -> OnnxPort {
        OnnxPort {
            name: name.into(),
            element: Some(element),
            dims,
        }
    }

    fn ids(name: &str) -> OnnxPort {
        port(name, TensorElementType::Int64, Some(vec![-1, -1]))
    }

    fn logits(dims: Option<Vec<i64>>) -> OnnxPort {
        port("logits", TensorElementType::Float32, dims)
    }

    #[test]
    fn bert_and_xlmr_signatures_are_accepted() {
        // The fixture exports' I/O (tests/fixtures/SOURCE.md, "model.onnx").
        let bert = [
            ids("input_ids"),
            ids("attention_mask"),
            ids("token_type_ids"),
        ];
        let signature = check_signature("m", &bert, &[logits(Some(vec![-1, 1]))]).unwrap();
        assert_eq!(
            signature,
            OnnxSignature {
                token_type_ids: true,
                position_ids: false,
                num_labels: Some(1)
            }
        );
        let xlmr = [ids("input_ids"), ids("attention_mask")];
        let signature = check_signature("m", &xlmr, &[logits(None)]).unwrap();
        assert_eq!(
            signature,
            OnnxSignature {
                token_type_ids: false,
                position_ids: false,
                num_labels: None
            }
        );
        // ModernBERT exports (optimum) may take position ids.
        let modernbert = [ids("input_ids"), ids("attention_mask"), ids("position_ids")];
        let signature = check_signature("m", &modernbert, &[logits(None)]).unwrap();
        assert_eq!(
            signature,
            OnnxSignature {
                token_type_ids: false,
                position_ids: true,
                num_labels: None
            }
        );
    }

    #[test]
    fn non_cross_encoder_signatures_are_refused_with_what_was_found() {
        let pair = [ids("input_ids"), ids("attention_mask")];
        let cases: Vec<(Vec<OnnxPort>, Vec<OnnxPort>, &str)> = vec![
            (
                vec![ids("tokens"), ids("attention_mask")],
                vec![logits(None)],
                "no `input_ids` input",
            ),
            (
                vec![ids("input_ids")],
                vec![logits(None)],
                "no `attention_mask` input",
            ),
            (
                vec![ids("input_ids"), ids("attention_mask"), ids("pixel_values")],
                vec![logits(None)],
                "input `pixel_values` that crossdistill cannot feed",
            ),
            (
                vec![
                    port("input_ids", TensorElementType::Int32, Some(vec![-1, -1])),
                    ids("attention_mask"),
                ],
                vec![logits(None)],
                "must be an int64 tensor",
            ),
            (
                pair.to_vec(),
                vec![port(
                    "last_hidden_state",
                    TensorElementType::Float32,
                    Some(vec![-1, -1, 32]),
                )],
                "no `logits` output; a cross-encoder has a float logits output [batch, num_labels], found outputs last_hidden_state (Float32 [-1, -1, 32])",
            ),
            (
                pair.to_vec(),
                vec![logits(Some(vec![-1, -1, 1]))],
                "logits (Float32 [-1, -1, 1]) is not 2-D",
            ),
            (
                pair.to_vec(),
                vec![port("logits", TensorElementType::Int64, Some(vec![-1, 1]))],
                "must be float32",
            ),
        ];
        for (inputs, outputs, message) in cases {
            let err = check_signature("my-model", &inputs, &outputs)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("model my-model: ") && err.contains(message),
                "{err}"
            );
            assert!(
                err.contains("hint: export a *ForSequenceClassification"),
                "{err}"
            );
        }
    }
}
