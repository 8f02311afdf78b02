//! The parameters of a `ModernBertForSequenceClassification`, under transformers' names, with
//! transformers' initialisation of fresh ones (`ModernBertPreTrainedModel._init_weights`:
//! truncated normals with `initializer_range` for embeddings and input projections,
//! `initializer_range / √(2·layers)` for output projections and the head's dense layer,
//! `hidden_size^-½` for the classifier; zero biases, unit norm weights).

use super::config::EncoderConfig;
use super::modernbert_config::ModernBertSettings;
use super::param_spec::{ParamKind, ParamSpec};

/// Every parameter of a ModernBERT sequence classifier of `config`, in a stable order. Layer 0
/// has no `attn_norm` (transformers uses an identity there); LayerNorm biases exist only with
/// `norm_bias`, projection biases only with `attention_bias` / `mlp_bias`, the head's dense bias
/// only with `classifier_bias`.
pub(super) fn modernbert_param_specs(
    config: &EncoderConfig,
    settings: &ModernBertSettings,
) -> Vec<ParamSpec> {
    let h = config.hidden_size;
    let i = config.intermediate_size;
    let range = config.initializer_range;
    let std_in = range;
    let std_out = range / (2.0 * config.num_hidden_layers as f64).sqrt();
    let std_final = (h as f64).powf(-0.5);
    let cutoff = settings.initializer_cutoff_factor;
    let mut specs = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, kind: ParamKind, head: bool, std: f64| {
        specs.push(ParamSpec {
            name,
            shape,
            kind,
            head,
            init_std: std,
            init_cutoff: Some(cutoff * std),
        })
    };
    let norm =
        |push: &mut dyn FnMut(String, Vec<usize>, ParamKind, bool, f64), name: &str, head: bool| {
            push(
                format!("{name}.weight"),
                vec![h],
                ParamKind::NormWeight,
                head,
                0.0,
            );
            if settings.norm_bias {
                push(
                    format!("{name}.bias"),
                    vec![h],
                    ParamKind::NormBias,
                    head,
                    0.0,
                );
            }
        };
    let linear = |push: &mut dyn FnMut(String, Vec<usize>, ParamKind, bool, f64),
                  name: &str,
                  shape: [usize; 2],
                  bias: bool,
                  head: bool,
                  std: f64| {
        push(
            format!("{name}.weight"),
            shape.to_vec(),
            ParamKind::Linear,
            head,
            std,
        );
        if bias {
            push(
                format!("{name}.bias"),
                vec![shape[0]],
                ParamKind::Bias,
                head,
                0.0,
            );
        }
    };
    push(
        "model.embeddings.tok_embeddings.weight".into(),
        vec![config.vocab_size, h],
        ParamKind::Embedding,
        false,
        range,
    );
    norm(&mut push, "model.embeddings.norm", false);
    for layer in 0..config.num_hidden_layers {
        let l = format!("model.layers.{layer}");
        if layer > 0 {
            norm(&mut push, &format!("{l}.attn_norm"), false);
        }
        let attention_bias = settings.attention_bias;
        linear(
            &mut push,
            &format!("{l}.attn.Wqkv"),
            [3 * h, h],
            attention_bias,
            false,
            std_in,
        );
        linear(
            &mut push,
            &format!("{l}.attn.Wo"),
            [h, h],
            attention_bias,
            false,
            std_out,
        );
        norm(&mut push, &format!("{l}.mlp_norm"), false);
        linear(
            &mut push,
            &format!("{l}.mlp.Wi"),
            [2 * i, h],
            settings.mlp_bias,
            false,
            std_in,
        );
        linear(
            &mut push,
            &format!("{l}.mlp.Wo"),
            [h, i],
            settings.mlp_bias,
            false,
            std_out,
        );
    }
    norm(&mut push, "model.final_norm", false);
    linear(
        &mut push,
        "head.dense",
        [h, h],
        settings.classifier_bias,
        true,
        std_out,
    );
    norm(&mut push, "head.norm", true);
    linear(
        &mut push,
        "classifier",
        [config.num_labels, h],
        true,
        true,
        std_final,
    );
    specs
}
