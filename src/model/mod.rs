//! Trainable cross-encoders: configs, weights, the encoder, heads, loading and saving.
//!
//! candle-transformers' encoders cannot be trained (no backward for LayerNorm and softmax), so
//! crossdistill owns its encoder: [`ops`] has the fused LayerNorm and masked softmax with
//! analytic backward passes, [`CrossEncoder`] the model.

mod batch_tensors;
pub mod bi_encoder;
mod config;
pub(crate) mod config_value;
mod cpu_f32;
mod cross_encoder;
mod deberta_encoder;
mod dense_inference;
mod disentangled_attention;
mod embedding;
mod encoder;
mod fused;
pub mod geglu;
mod gelu;
#[cfg(test)]
mod gradient_check;
mod hidden_act;
mod mode;
mod modernbert_config;
mod modernbert_encoder;
mod modernbert_layout;
pub mod ops;
mod pair_scorer;
mod param_spec;
mod precision;
mod relative_position;
pub mod rotary;
pub mod rotary_attention;
mod source;
pub mod trim;
mod weights;

pub use batch_tensors::BatchTensors;
pub use config::{Architecture, EncoderConfig};
pub use cross_encoder::{parse_device, CrossEncoder, LoadOptions, ScoreActivation};
pub use deberta_encoder::DebertaV2Encoder;
pub use hidden_act::HiddenAct;
pub use mode::Mode;
pub use modernbert_config::{ModernBertPooling, ModernBertSettings};
pub use ops::Dropout;
pub use pair_scorer::PairScorer;
pub use param_spec::{ParamKind, ParamSpec};
pub use precision::{Precision, CPU_PRECISION_ENV};
pub use source::{looks_like_hub_id, model_reference, ModelFiles};
pub use trim::{
    trim_vocab, CorpusColumns, TokenizerKind, TrimCorpus, TrimOptions, TrimReport, VocabMap,
    TRIM_MARKER,
};
pub use weights::{param_specs, LoadReport, Params};
