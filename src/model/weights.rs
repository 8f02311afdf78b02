//! Named, trainable parameters: loading from safetensors (any float dtype, any of the naming
//! conventions transformers has used), fresh initialisation, and saving under transformers' names.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::config::{Architecture, EncoderConfig};
use super::modernbert_layout::modernbert_param_specs;
use super::param_spec::{ParamKind, ParamSpec};
use crate::error::{Error, Result};

/// Every parameter a `*ForSequenceClassification` model of `config` has, in a stable order.
pub fn param_specs(config: &EncoderConfig) -> Vec<ParamSpec> {
    if let Some(settings) = &config.modernbert {
        return modernbert_param_specs(config, settings);
    }
    let p = config.architecture.prefix();
    let h = config.hidden_size;
    // Embedding tables and their LayerNorm have ELECTRA's `embedding_size` (= h elsewhere).
    let e = config.embedding_size;
    let mut specs = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, kind: ParamKind, head: bool| {
        specs.push(ParamSpec {
            name,
            shape,
            kind,
            head,
            init_std: config.initializer_range,
            init_cutoff: None,
        })
    };
    push(
        format!("{p}.embeddings.word_embeddings.weight"),
        vec![config.vocab_size, e],
        ParamKind::Embedding,
        false,
    );
    push(
        format!("{p}.embeddings.position_embeddings.weight"),
        vec![config.max_position_embeddings, e],
        ParamKind::Embedding,
        false,
    );
    push(
        format!("{p}.embeddings.token_type_embeddings.weight"),
        vec![config.type_vocab_size, e],
        ParamKind::Embedding,
        false,
    );
    push(
        format!("{p}.embeddings.LayerNorm.weight"),
        vec![e],
        ParamKind::NormWeight,
        false,
    );
    push(
        format!("{p}.embeddings.LayerNorm.bias"),
        vec![e],
        ParamKind::NormBias,
        false,
    );
    if e != h {
        push(
            format!("{p}.embeddings_project.weight"),
            vec![h, e],
            ParamKind::Linear,
            false,
        );
        push(
            format!("{p}.embeddings_project.bias"),
            vec![h],
            ParamKind::Bias,
            false,
        );
    }
    for layer in 0..config.num_hidden_layers {
        let l = format!("{p}.encoder.layer.{layer}");
        for part in ["query", "key", "value"] {
            push(
                format!("{l}.attention.self.{part}.weight"),
                vec![h, h],
                ParamKind::Linear,
                false,
            );
            push(
                format!("{l}.attention.self.{part}.bias"),
                vec![h],
                ParamKind::Bias,
                false,
            );
        }
        push(
            format!("{l}.attention.output.dense.weight"),
            vec![h, h],
            ParamKind::Linear,
            false,
        );
        push(
            format!("{l}.attention.output.dense.bias"),
            vec![h],
            ParamKind::Bias,
            false,
        );
        push(
            format!("{l}.attention.output.LayerNorm.weight"),
            vec![h],
            ParamKind::NormWeight,
            false,
        );
        push(
            format!("{l}.attention.output.LayerNorm.bias"),
            vec![h],
            ParamKind::NormBias,
            false,
        );
        let i = config.intermediate_size;
        push(
            format!("{l}.intermediate.dense.weight"),
            vec![i, h],
            ParamKind::Linear,
            false,
        );
        push(
            format!("{l}.intermediate.dense.bias"),
            vec![i],
            ParamKind::Bias,
            false,
        );
        push(
            format!("{l}.output.dense.weight"),
            vec![h, i],
            ParamKind::Linear,
            false,
        );
        push(
            format!("{l}.output.dense.bias"),
            vec![h],
            ParamKind::Bias,
            false,
        );
        push(
            format!("{l}.output.LayerNorm.weight"),
            vec![h],
            ParamKind::NormWeight,
            false,
        );
        push(
            format!("{l}.output.LayerNorm.bias"),
            vec![h],
            ParamKind::NormBias,
            false,
        );
    }
    let n = config.num_labels;
    match config.architecture {
        Architecture::Bert => {
            push(
                format!("{p}.pooler.dense.weight"),
                vec![h, h],
                ParamKind::Linear,
                true,
            );
            push(
                format!("{p}.pooler.dense.bias"),
                vec![h],
                ParamKind::Bias,
                true,
            );
            push(
                "classifier.weight".into(),
                vec![n, h],
                ParamKind::Linear,
                true,
            );
            push("classifier.bias".into(), vec![n], ParamKind::Bias, true);
        }
        Architecture::XlmRoberta | Architecture::Electra | Architecture::ModernBert => {
            push(
                "classifier.dense.weight".into(),
                vec![h, h],
                ParamKind::Linear,
                true,
            );
            push(
                "classifier.dense.bias".into(),
                vec![h],
                ParamKind::Bias,
                true,
            );
            push(
                "classifier.out_proj.weight".into(),
                vec![n, h],
                ParamKind::Linear,
                true,
            );
            push(
                "classifier.out_proj.bias".into(),
                vec![n],
                ParamKind::Bias,
                true,
            );
        }
    }
    specs
}

/// Map a tensor name from any transformers convention to ours, or `None` for tensors we do not
/// use (MLM heads, buffers such as `position_ids`).
pub(super) fn canonical_name(name: &str, prefix: &str) -> Option<String> {
    let name = name
        .strip_suffix(".gamma")
        .map(|s| format!("{s}.weight"))
        .or_else(|| name.strip_suffix(".beta").map(|s| format!("{s}.bias")))
        .unwrap_or_else(|| name.to_string());
    if name.ends_with("position_ids") {
        return None;
    }
    if name.starts_with("classifier.") || name.starts_with(&format!("{prefix}.")) {
        return Some(name);
    }
    if prefix == "model" {
        // ModernBERT: the MaskedLM head's dense + norm are the classifier's `head`;
        // a bare `ModernBertModel` saves its tensors without the `model.` prefix.
        if name.starts_with("head.") {
            return Some(name);
        }
        for top in ["embeddings.", "layers.", "final_norm."] {
            if name.starts_with(top) {
                return Some(format!("model.{name}"));
            }
        }
        return None;
    }
    for top in ["embeddings.", "embeddings_project.", "encoder.", "pooler."] {
        if name.starts_with(top) {
            return Some(format!("{prefix}.{name}"));
        }
    }
    None
}

/// Rename `...encoder.layer.{src}...` (ModernBERT: `model.layers.{src}...`) to the same name
/// with layer `dst`, where `layer_map[dst] == src`; `None` for layers not kept.
fn relayer(name: &str, layer_map: &[usize]) -> Option<String> {
    let (marker, start) = match (name.find(".encoder.layer."), name.find("model.layers.")) {
        (Some(start), _) => (".encoder.layer.", start),
        (None, Some(start)) => ("model.layers.", start),
        (None, None) => return Some(name.to_string()),
    };
    let rest = &name[start + marker.len()..];
    let (index, tail) = rest.split_once('.')?;
    let src: usize = index.parse().ok()?;
    let dst = layer_map.iter().position(|&l| l == src)?;
    Some(format!("{}{marker}{dst}.{tail}", &name[..start]))
}

/// The model's parameters, by transformers name, in [`param_specs`] order.
#[derive(Debug, Clone)]
pub struct Params {
    specs: Vec<ParamSpec>,
    vars: Vec<Var>,
    index: HashMap<String, usize>,
}

/// What loading found: which parameters were freshly initialised.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Names initialised from the seed because the checkpoint lacked them.
    pub initialized: Vec<String>,
    /// Checkpoint tensors that were not used.
    pub unused: Vec<String>,
}

impl Params {
    /// Load `safetensors` files into the parameters of `config`. Missing head parameters are
    /// initialised from `seed`; missing encoder parameters are an error. `layer_map[i]` names
    /// the checkpoint layer that becomes layer `i` (layer-pruned students). With `fresh_head`,
    /// the checkpoint's classifier is ignored and a new one initialised.
    pub fn load(
        config: &EncoderConfig,
        files: &[&Path],
        layer_map: Option<&[usize]>,
        fresh_head: bool,
        seed: u64,
        device: &Device,
        model_name: &str,
    ) -> Result<(Self, LoadReport)> {
        let prefix = config.architecture.prefix();
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let mut report = LoadReport::default();
        for file in files {
            let loaded = candle_core::safetensors::load(file, &Device::Cpu).map_err(|e| {
                Error::model(model_name, format!("cannot read {}: {e}", file.display())).with_hint(
                    "the file must be a safetensors file written by transformers or crossdistill",
                )
            })?;
            for (name, tensor) in loaded {
                let canonical = canonical_name(&name, prefix)
                    .and_then(|n| match layer_map {
                        Some(map) => relayer(&n, map),
                        None => Some(n),
                    })
                    .filter(|n| !(fresh_head && n.starts_with("classifier.")));
                match canonical {
                    Some(canonical) => {
                        tensors.insert(canonical, tensor);
                    }
                    None => report.unused.push(name),
                }
            }
        }
        let specs = param_specs(config);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut vars = Vec::with_capacity(specs.len());
        for spec in &specs {
            let tensor = match tensors.remove(&spec.name) {
                Some(tensor) => {
                    if tensor.dims() != spec.shape.as_slice() {
                        return Err(Error::model(
                            model_name,
                            format!(
                                "tensor `{}` has shape {:?} but config.json implies {:?}",
                                spec.name,
                                tensor.dims(),
                                spec.shape
                            ),
                        )
                        .with_hint(
                            "config.json and model.safetensors must come from the same model",
                        ));
                    }
                    if !tensor.dtype().is_float() {
                        return Err(Error::model(
                            model_name,
                            format!(
                                "tensor `{}` has dtype {:?}, expected a float type",
                                spec.name,
                                tensor.dtype()
                            ),
                        ));
                    }
                    tensor.to_dtype(DType::F32)?
                }
                None if spec.head => {
                    report.initialized.push(spec.name.clone());
                    init_tensor(spec, config, &mut rng)?
                }
                None => {
                    return Err(Error::model(
                        model_name,
                        format!("model.safetensors has no tensor `{}`", spec.name),
                    )
                    .with_hint(format!(
                    "is this a {} checkpoint with {} layers? (config.json and weights must match)",
                    config.model_type, config.num_hidden_layers
                )))
                }
            };
            vars.push(Var::from_tensor(&tensor.to_device(device)?)?);
        }
        report.unused.extend(tensors.into_keys());
        report.unused.sort();
        let index = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Ok((Self { specs, vars, index }, report))
    }

    /// Fresh parameters for `config`, initialised like transformers from `seed`.
    pub fn init(config: &EncoderConfig, seed: u64, device: &Device) -> Result<Self> {
        let specs = param_specs(config);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut vars = Vec::with_capacity(specs.len());
        for spec in &specs {
            vars.push(Var::from_tensor(
                &init_tensor(spec, config, &mut rng)?.to_device(device)?,
            )?);
        }
        let index = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Ok(Self { specs, vars, index })
    }

    /// The tensor of parameter `name`.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.index
            .get(name)
            .map(|&i| self.vars[i].as_tensor().clone())
            .ok_or_else(|| Error::invalid(format!("no parameter named `{name}`")))
    }

    /// Parameters with their specs, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&ParamSpec, &Var)> {
        self.specs.iter().zip(self.vars.iter())
    }

    /// The trainable variables, in [`Params::iter`] order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }

    /// All parameters by name (for saving).
    pub fn to_named_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (spec, var) in self.iter() {
            out.insert(spec.name.clone(), var.as_tensor().to_device(&Device::Cpu)?);
        }
        Ok(out)
    }

    /// Overwrite every parameter from `tensors` (names and shapes must match).
    pub fn assign(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (spec, var) in self.iter() {
            let tensor = tensors.get(&spec.name).ok_or_else(|| {
                Error::invalid(format!("checkpoint has no tensor `{}`", spec.name))
            })?;
            var.set(&tensor.to_dtype(DType::F32)?.to_device(var.device())?)?;
        }
        Ok(())
    }
}

fn init_tensor(spec: &ParamSpec, config: &EncoderConfig, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let n: usize = spec.shape.iter().product();
    let values = match spec.kind {
        ParamKind::Linear | ParamKind::Embedding => {
            let normal = Normal::new(0.0f32, spec.init_std as f32).map_err(|e| {
                Error::invalid(format!(
                    "initializer_range {} is not usable: {e}",
                    config.initializer_range
                ))
            })?;
            let mut values: Vec<f32> = match spec.init_cutoff {
                None => (0..n).map(|_| normal.sample(rng)).collect(),
                // Rejection sampling: the normal conditioned on [-cutoff, cutoff], as
                // torch.nn.init.trunc_normal_ draws it (by inverse CDF).
                Some(cutoff) => (0..n)
                    .map(|_| loop {
                        let x = normal.sample(rng);
                        if x.abs() <= cutoff as f32 {
                            break x;
                        }
                    })
                    .collect(),
            };
            if spec.kind == ParamKind::Embedding && spec.name.ends_with("word_embeddings.weight") {
                let h = spec.shape[1];
                let pad = config.pad_token_id as usize;
                if pad < spec.shape[0] {
                    values[pad * h..(pad + 1) * h].fill(0.0);
                }
            }
            values
        }
        ParamKind::Bias | ParamKind::NormBias => vec![0.0; n],
        ParamKind::NormWeight => vec![1.0; n],
    };
    Ok(Tensor::from_vec(
        values,
        spec.shape.as_slice(),
        &Device::Cpu,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_cover_transformers_conventions() {
        assert_eq!(
            canonical_name("embeddings.LayerNorm.gamma", "bert").as_deref(),
            Some("bert.embeddings.LayerNorm.weight")
        );
        assert_eq!(
            canonical_name("bert.encoder.layer.0.output.dense.bias", "bert").as_deref(),
            Some("bert.encoder.layer.0.output.dense.bias")
        );
        assert_eq!(
            canonical_name("classifier.out_proj.weight", "roberta").as_deref(),
            Some("classifier.out_proj.weight")
        );
        assert_eq!(canonical_name("embeddings.position_ids", "bert"), None);
        assert_eq!(canonical_name("cls.predictions.bias", "bert"), None);
        // ModernBERT: ModernBertModel's bare names, the MaskedLM head kept, its decoder not.
        assert_eq!(
            canonical_name("layers.0.attn.Wqkv.weight", "model").as_deref(),
            Some("model.layers.0.attn.Wqkv.weight")
        );
        assert_eq!(
            canonical_name("head.norm.weight", "model").as_deref(),
            Some("head.norm.weight")
        );
        assert_eq!(canonical_name("decoder.bias", "model"), None);
    }

    #[test]
    fn relayer_keeps_only_chosen_layers() {
        let map = [0, 3];
        assert_eq!(
            relayer("bert.encoder.layer.3.output.dense.bias", &map).as_deref(),
            Some("bert.encoder.layer.1.output.dense.bias")
        );
        assert_eq!(
            relayer("bert.encoder.layer.2.output.dense.bias", &map),
            None
        );
        assert_eq!(
            relayer("bert.embeddings.LayerNorm.bias", &map).as_deref(),
            Some("bert.embeddings.LayerNorm.bias")
        );
        assert_eq!(
            relayer("model.layers.3.mlp.Wi.weight", &map).as_deref(),
            Some("model.layers.1.mlp.Wi.weight")
        );
        assert_eq!(relayer("model.layers.1.mlp.Wi.weight", &map), None);
        assert_eq!(
            relayer("model.final_norm.weight", &map).as_deref(),
            Some("model.final_norm.weight")
        );
    }
}
