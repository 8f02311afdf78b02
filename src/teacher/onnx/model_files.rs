//! What the ONNX teacher reads besides the graph: where its files are (a directory or a hub
//! id), what config.json says (pad id, position table, labels, activation) and the truncation
//! length that follows.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::hub::{self, RepoKind};
use crate::model::config_value::{get_usize, num_labels, saved_activation_fn};
use crate::model::looks_like_hub_id;
use crate::tokenize::model_max_length;

/// What config.json says that the ONNX teacher needs (it does not need the architecture to be
/// one crossdistill can train: any `*ForSequenceClassification` export runs).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TeacherConfig {
    pub(super) pad_token_id: u32,
    /// RoBERTa-style position ids (from `pad_token_id + 1` over real tokens).
    pub(super) roberta_positions: bool,
    /// The longest input the position table allows, when config.json says.
    pub(super) position_limit: Option<usize>,
    pub(super) num_labels: usize,
    pub(super) activation_fn: Option<String>,
}

impl TeacherConfig {
    pub(super) fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| Error::input(path, Some(e.line()), format!("invalid JSON: {e}")))?;
        let count = |key: &str| get_usize(&raw, key, path);
        let model_type = raw.get("model_type").and_then(Value::as_str).unwrap_or("");
        // RoBERTa-style position ids start at pad_token_id + 1 (and default pad is 1).
        let roberta = matches!(model_type, "xlm-roberta" | "roberta" | "camembert");
        let pad_token_id = count("pad_token_id")?.unwrap_or(usize::from(roberta));
        let position_limit = count("max_position_embeddings")?.map(|n| {
            if roberta {
                n.saturating_sub(pad_token_id + 1)
            } else {
                n
            }
        });
        let num_labels = num_labels(&raw, path)?;
        let activation_fn = saved_activation_fn(&raw).map(str::to_string);
        Ok(Self {
            pad_token_id: u32::try_from(pad_token_id).map_err(|_| {
                Error::input(
                    path,
                    None,
                    format!("`pad_token_id` {pad_token_id} is too large"),
                )
            })?,
            roberta_positions: roberta,
            position_limit,
            num_labels,
            activation_fn,
        })
    }
}

/// The files the ONNX teacher reads.
pub(super) struct OnnxFiles {
    pub(super) onnx: PathBuf,
    pub(super) config: PathBuf,
    pub(super) tokenizer: PathBuf,
    /// The directory holding tokenizer_config.json, when there is one.
    pub(super) tokenizer_config_dir: Option<PathBuf>,
    /// `activation_fn` from config_sentence_transformers.json (sentence-transformers 6).
    pub(super) st_config: Option<PathBuf>,
}

pub(super) fn locate(spec: &str, onnx_file: &str) -> Result<OnnxFiles> {
    let dir = Path::new(spec);
    if dir.is_dir() {
        let need = |file: &str, hint: &str| -> Result<PathBuf> {
            let path = dir.join(file);
            if path.is_file() {
                Ok(path)
            } else {
                Err(
                    Error::model(spec, format!("{} has no {file}", dir.display()))
                        .with_hint(hint.to_string()),
                )
            }
        };
        let onnx = need(
            onnx_file,
            "export the model to ONNX into that directory (optimum-cli export onnx --task text-classification, or \
             torch.onnx.export), or name the file with onnx_file / --onnx-file (relative to the model directory)",
        )?;
        let tokenizer_hint = "the ONNX teacher reads config.json and tokenizer.json from the model directory (save them with save_pretrained)";
        let optional = |file: &str| Some(dir.join(file)).filter(|p| p.is_file());
        return Ok(OnnxFiles {
            onnx,
            config: need("config.json", tokenizer_hint)?,
            tokenizer: need("tokenizer.json", tokenizer_hint)?,
            tokenizer_config_dir: optional("tokenizer_config.json").map(|_| dir.to_path_buf()),
            st_config: optional("config_sentence_transformers.json"),
        });
    }
    if dir.exists() || !looks_like_hub_id(spec) {
        return Err(Error::model(
            spec,
            format!("no such directory ({})", dir.display()),
        )
        .with_hint("give the directory holding the .onnx file, config.json and tokenizer.json, or a Hugging Face hub id"));
    }
    let get = |file: &str| hub::resolve_file(spec, RepoKind::Model, file);
    let optional =
        |file: &str| hub::cached_file(spec, RepoKind::Model, file).or_else(|| get(file).ok());
    let tokenizer_config = optional("tokenizer_config.json");
    Ok(OnnxFiles {
        onnx: get(onnx_file)?,
        config: get("config.json")?,
        tokenizer: get("tokenizer.json")?,
        tokenizer_config_dir: tokenizer_config.and_then(|p| p.parent().map(Path::to_path_buf)),
        st_config: optional("config_sentence_transformers.json"),
    })
}

pub(super) fn st_activation(path: &Path) -> Option<String> {
    let value: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    value.get("activation_fn")?.as_str().map(str::to_string)
}

/// The truncation length: `asked` (no longer than the position table allows), else the
/// smaller of tokenizer_config.json's `model_max_length` and the position table.
pub(super) fn resolve_max_length(
    model: &str,
    config: &TeacherConfig,
    tokenizer_config_dir: Option<&Path>,
    asked: Option<usize>,
) -> Result<usize> {
    let tokenizer_max = tokenizer_config_dir.and_then(model_max_length);
    match (asked, config.position_limit) {
        (Some(n), Some(limit)) if n > limit => Err(Error::invalid(format!(
            "max_length {n} is longer than the model's position table allows ({limit})"
        ))
        .with_hint(format!("use max_length <= {limit}"))),
        (Some(n), _) => Ok(n),
        (None, Some(limit)) => Ok(tokenizer_max.map_or(limit, |t| t.min(limit))),
        (None, None) => tokenizer_max.ok_or_else(|| {
            Error::model(
                model,
                "cannot tell the model's longest input: config.json has no max_position_embeddings \
                 and tokenizer_config.json no model_max_length",
            )
            .with_hint("set max_length")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_length_is_the_smaller_of_tokenizer_and_positions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"model_max_length": 512}"#,
        )
        .unwrap();
        let config = |limit| TeacherConfig {
            pad_token_id: 0,
            roberta_positions: false,
            position_limit: limit,
            num_labels: 1,
            activation_fn: None,
        };
        let resolve =
            |limit, dir: Option<&Path>, asked| resolve_max_length("m", &config(limit), dir, asked);
        assert_eq!(resolve(Some(128), Some(dir.path()), None).unwrap(), 128);
        assert_eq!(resolve(Some(1024), Some(dir.path()), None).unwrap(), 512);
        assert_eq!(resolve(None, Some(dir.path()), None).unwrap(), 512);
        assert_eq!(resolve(Some(128), None, Some(64)).unwrap(), 64);
        let err = resolve(Some(128), None, Some(256)).unwrap_err().to_string();
        assert!(
            err.contains("max_length 256 is longer than the model's position table allows (128)"),
            "{err}"
        );
        assert!(resolve(None, None, None).is_err());
    }

    #[test]
    fn xlmr_config_reserves_pad_plus_one_positions() {
        // tests/fixtures/tiny-xlmr-ce/config.json: max_position_embeddings 130, pad_token_id 1.
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let xlmr = TeacherConfig::from_file(&fixture.join("tiny-xlmr-ce/config.json")).unwrap();
        assert_eq!((xlmr.pad_token_id, xlmr.position_limit), (1, Some(128)));
        let bert = TeacherConfig::from_file(&fixture.join("tiny-bert-ce/config.json")).unwrap();
        assert_eq!((bert.pad_token_id, bert.position_limit), (0, Some(128)));
        assert_eq!(
            bert.activation_fn.as_deref(),
            Some("torch.nn.modules.activation.Sigmoid")
        );
    }
}
