//! [`ParamSpec`]: one parameter a model expects — its transformers name, shape, kind and how a
//! fresh one is initialised.

/// What a parameter is, which decides its fresh initialisation and its weight decay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A dense weight matrix `(out, in)`: normal(0, initializer_range); decayed.
    Linear,
    /// An embedding table: normal(0, initializer_range), padding row zero; decayed.
    Embedding,
    /// A bias vector: zeros; not decayed.
    Bias,
    /// LayerNorm gamma: ones; not decayed.
    NormWeight,
    /// LayerNorm beta: zeros; not decayed.
    NormBias,
}

impl ParamKind {
    /// Whether AdamW applies weight decay (transformers' convention: not to biases and LayerNorm).
    pub fn decays(self) -> bool {
        matches!(self, ParamKind::Linear | ParamKind::Embedding)
    }
}

/// One expected parameter: its transformers name, shape and kind.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// Full transformers name, e.g. `bert.encoder.layer.0.attention.self.query.weight`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Kind.
    pub kind: ParamKind,
    /// Part of the classification head (a base encoder may lack it).
    pub head: bool,
    /// Standard deviation of a fresh [`ParamKind::Linear`] or [`ParamKind::Embedding`] tensor
    /// (normal, mean 0).
    pub init_std: f64,
    /// When set, fresh normal samples are truncated to `[-cutoff, cutoff]` (ModernBERT's
    /// `trunc_normal_`).
    pub init_cutoff: Option<f64>,
}
