//! Slicing the vocabulary rows out of a checkpoint: the word-embedding table (and an MLM head's
//! vocabulary tensors when the checkpoint has one), every other tensor copied unchanged, dtypes
//! kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::VocabMap;
use crate::error::{Error, Result};
use crate::model::weights::canonical_name;

/// Tensors of masked-language-model heads whose first dimension is the vocabulary.
const MLM_VOCAB_TENSORS: [&str; 6] = [
    "cls.predictions.bias",
    "cls.predictions.decoder.weight",
    "cls.predictions.decoder.bias",
    "lm_head.bias",
    "lm_head.decoder.weight",
    "lm_head.decoder.bias",
];

/// What slicing did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SliceCounts {
    /// Scalars in every tensor before.
    pub(crate) params_before: usize,
    /// Scalars in every tensor after.
    pub(crate) params_after: usize,
    /// The stored names of the tensors that were sliced.
    pub(crate) sliced: Vec<String>,
}

/// Slice every weight file of `files` into `out_dir` (same file names). `prefix` is the
/// architecture's weight prefix (`bert`, `roberta`); `vocab_rows` the embedding table's rows
/// before trimming. Exactly one word-embedding table must be found.
pub(crate) fn slice_weight_files(
    files: &[PathBuf],
    prefix: &str,
    vocab_rows: usize,
    map: &VocabMap,
    out_dir: &Path,
    model_name: &str,
) -> Result<SliceCounts> {
    let word_embeddings = format!("{prefix}.embeddings.word_embeddings.weight");
    let keep = Tensor::new(map.kept_old_ids(), &Device::Cpu)?;
    let mut counts = SliceCounts::default();
    for file in files {
        let tensors = candle_core::safetensors::load(file, &Device::Cpu).map_err(|e| {
            Error::model(model_name, format!("cannot read {}: {e}", file.display()))
        })?;
        let mut out: HashMap<String, Tensor> = HashMap::with_capacity(tensors.len());
        for (name, tensor) in tensors {
            counts.params_before += tensor.elem_count();
            let is_embedding = canonical_name(&name, prefix).as_deref() == Some(&word_embeddings);
            let is_mlm_vocab = MLM_VOCAB_TENSORS.contains(&name.as_str())
                && tensor.dims().first() == Some(&vocab_rows);
            let tensor = if is_embedding || is_mlm_vocab {
                if tensor.dims().first() != Some(&vocab_rows) {
                    return Err(Error::model(
                        model_name,
                        format!(
                            "tensor `{name}` has shape {:?}, but config.json's vocab_size is {vocab_rows}",
                            tensor.dims()
                        ),
                    )
                    .with_hint("config.json and model.safetensors must come from the same model"));
                }
                counts.sliced.push(name.clone());
                tensor.index_select(&keep, 0)?
            } else {
                tensor
            };
            counts.params_after += tensor.elem_count();
            out.insert(name, tensor);
        }
        let file_name = file
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{} has no file name", file.display())))?;
        crate::fsutil::save_safetensors(&out, &out_dir.join(file_name))?;
    }
    let embeddings = counts
        .sliced
        .iter()
        .filter(|name| canonical_name(name, prefix).as_deref() == Some(&word_embeddings))
        .count();
    if embeddings != 1 {
        return Err(Error::model(
            model_name,
            format!(
                "expected one word-embedding tensor (`{word_embeddings}`, with or without the `{prefix}.` prefix), found {embeddings}"
            ),
        )
        .with_hint("trim-vocab needs a BERT or XLM-RoBERTa checkpoint saved by transformers or crossdistill"));
    }
    Ok(counts)
}
