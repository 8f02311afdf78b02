//! Trainable cross-encoders: configs, weights, the encoder, heads, loading and saving.
//!
//! candle-transformers' encoders cannot be trained (no backward for LayerNorm and softmax), so
//! crossdistill owns its encoder: [`ops`] has the fused LayerNorm and masked softmax with
//! analytic backward passes, [`CrossEncoder`] the model.

pub mod bi_encoder;
mod config;
mod cpu_f32;
mod cross_encoder;
mod encoder;
mod fused;
mod gelu;
pub mod ops;
mod pair_scorer;
mod source;
pub mod trim;
mod weights;

pub use config::{Architecture, EncoderConfig, HiddenAct};
pub use cross_encoder::{parse_device, CrossEncoder, LoadOptions, ScoreActivation};
pub use encoder::{BatchTensors, Mode};
pub use ops::Dropout;
pub use pair_scorer::PairScorer;
pub use source::{looks_like_hub_id, model_reference, ModelFiles};
pub use trim::{
    trim_vocab, CorpusColumns, TokenizerKind, TrimCorpus, TrimOptions, TrimReport, VocabMap,
    TRIM_MARKER,
};
pub use weights::{param_specs, LoadReport, ParamKind, ParamSpec, Params};
