//! Finding a model's files: a local Hugging Face directory or a hub id (through the cache).

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::hub::{self, RepoKind};

/// Tokenizer files copied next to a saved model when the source has them.
const TOKENIZER_SIDE_FILES: &[&str] = &[
    "special_tokens_map.json",
    "vocab.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
];

/// The files that make up a model.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the user named (path or hub id), for messages and model cards.
    pub name: String,
    /// The directory holding the files (a snapshot directory for hub models).
    pub dir: PathBuf,
    /// config.json.
    pub config: PathBuf,
    /// model.safetensors, or the shards of a sharded checkpoint.
    pub weights: Vec<PathBuf>,
    /// tokenizer.json.
    pub tokenizer: PathBuf,
    /// tokenizer_config.json, when present.
    pub tokenizer_config: Option<PathBuf>,
    /// Other tokenizer files to copy on save.
    pub tokenizer_side_files: Vec<PathBuf>,
}

/// True when `spec` has the shape of a hub id: `owner/name` or `name`, optionally `@revision`.
pub fn looks_like_hub_id(spec: &str) -> bool {
    let id = spec.split('@').next().unwrap_or(spec);
    let parts: Vec<&str> = id.split('/').collect();
    !spec.starts_with('.')
        && !spec.starts_with('/')
        && !spec.starts_with('~')
        && (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// The name a model card or a log gives the model stored in `dir`: the hub id of a Hugging Face cache snapshot
/// (`…/models--OWNER--NAME/snapshots/REV` → `OWNER/NAME`), else the directory's name, with its
/// parent's for the generic names a run writes (`stsb-teacher/final`, `run/checkpoint-500`).
/// `dir` is made absolute first, so `.` and `..` name the directory they stand for.
pub fn model_reference(dir: &Path) -> String {
    let absolute = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let names: Vec<String> = absolute
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if let Some(cached) = names.iter().rev().find_map(|name| {
        let id = name.strip_prefix("models--")?;
        let (owner, repo) = id.split_once("--")?;
        Some(format!("{owner}/{repo}"))
    }) {
        return cached;
    }
    match names.as_slice() {
        [] => dir.display().to_string(),
        [.., parent, last] if last == "final" || last.starts_with("checkpoint-") => {
            format!("{parent}/{last}")
        }
        [.., last] => last.clone(),
    }
}

impl ModelFiles {
    /// How cards and logs name this model: its hub id, or its directory's name (never the
    /// path of this machine); see [`model_reference`].
    pub fn reference(&self) -> String {
        model_reference(&self.dir)
    }

    /// Locate `spec`: an existing directory (relative paths against `base_dir`, then the current
    /// directory), else a hub id resolved through the Hugging Face cache (downloading unless
    /// `HF_HUB_OFFLINE` is set).
    pub fn locate(spec: &str, base_dir: Option<&Path>) -> Result<Self> {
        let mut looked = Vec::new();
        let candidates: Vec<PathBuf> = match base_dir {
            Some(base) if Path::new(spec).is_relative() => {
                vec![base.join(spec), PathBuf::from(spec)]
            }
            _ => vec![PathBuf::from(spec)],
        };
        for candidate in candidates {
            if candidate.is_dir() {
                return Self::from_dir(spec, &candidate);
            }
            if candidate.exists() {
                return Err(Error::model(spec, format!("{} is a file; expected a model directory", candidate.display()))
                    .with_hint("pass the directory that holds config.json, model.safetensors and tokenizer.json"));
            }
            looked.push(candidate.display().to_string());
        }
        if !looks_like_hub_id(spec) {
            return Err(Error::model(spec, format!("no such directory (looked at {})", looked.join(", ")))
                .with_hint("give a model directory or a Hugging Face hub id such as cross-encoder/ms-marco-MiniLM-L6-v2"));
        }
        Self::from_hub(spec, &looked)
    }

    /// The files of a local model directory.
    pub fn from_dir(name: &str, dir: &Path) -> Result<Self> {
        let need = |file: &str| -> Result<PathBuf> {
            let path = dir.join(file);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::model(name, format!("{} has no {file}", dir.display()))
                    .with_hint("a model directory needs config.json, model.safetensors and tokenizer.json (save it with transformers' save_pretrained or crossdistill)"))
            }
        };
        let config = need("config.json")?;
        let weights = match need("model.safetensors") {
            Ok(path) => vec![path],
            Err(missing) => {
                let index = dir.join("model.safetensors.index.json");
                if index.is_file() {
                    shards_from_index(name, &index, |f| Ok(dir.join(f)))?
                } else if dir.join("pytorch_model.bin").is_file() {
                    return Err(Error::model(name, format!("{} has only pytorch_model.bin", dir.display()))
                        .with_hint("convert it to safetensors (transformers: model.save_pretrained(dir, safe_serialization=True))"));
                } else {
                    return Err(missing);
                }
            }
        };
        let tokenizer = need("tokenizer.json")?;
        let optional = |file: &str| Some(dir.join(file)).filter(|p| p.is_file());
        Ok(Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            config,
            weights,
            tokenizer,
            tokenizer_config: optional("tokenizer_config.json"),
            tokenizer_side_files: TOKENIZER_SIDE_FILES
                .iter()
                .filter_map(|f| optional(f))
                .collect(),
        })
    }

    fn from_hub(repo_id: &str, looked: &[String]) -> Result<Self> {
        let get = |file: &str| hub::resolve_file(repo_id, RepoKind::Model, file);
        let config = get("config.json").map_err(|e| {
            Error::model(
                repo_id,
                format!(
                    "not a local directory (looked at {}) and not loadable from the hub: {e}",
                    looked.join(", ")
                ),
            )
        })?;
        let weights = match get("model.safetensors") {
            Ok(path) => vec![path],
            Err(single) => match get("model.safetensors.index.json") {
                Ok(index) => shards_from_index(repo_id, &index, get)?,
                Err(_) => return Err(single),
            },
        };
        let tokenizer = get("tokenizer.json")?;
        let optional = |file: &str| {
            hub::cached_file(repo_id, RepoKind::Model, file).or_else(|| get(file).ok())
        };
        let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self {
            name: repo_id.to_string(),
            dir,
            config,
            weights,
            tokenizer,
            tokenizer_config: optional("tokenizer_config.json"),
            tokenizer_side_files: TOKENIZER_SIDE_FILES
                .iter()
                .filter_map(|f| optional(f))
                .collect(),
        })
    }
}

fn shards_from_index(
    name: &str,
    index: &Path,
    resolve: impl Fn(&str) -> Result<PathBuf>,
) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io("cannot read", index, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(index, Some(e.line()), format!("invalid JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::input(index, None, "expected a `weight_map` object"))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(Error::model(
            name,
            format!("{} lists no weight files", index.display()),
        ));
    }
    files.iter().map(|f| resolve(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_named_by_hub_id_or_directory_name() {
        let root = tempfile::tempdir().unwrap();
        let snapshot = root
            .path()
            .join("hub/models--cross-encoder--ms-marco-MiniLM-L6-v2/snapshots/abc123");
        let plain = root.path().join("fixtures/tiny-xlmr-ce");
        let final_dir = root.path().join("runs/stsb-teacher/final");
        for dir in [&snapshot, &plain, &final_dir] {
            std::fs::create_dir_all(dir).unwrap();
        }
        assert_eq!(
            model_reference(&snapshot),
            "cross-encoder/ms-marco-MiniLM-L6-v2"
        );
        assert_eq!(
            model_reference(&root.path().join("runs/../fixtures/tiny-xlmr-ce")),
            "tiny-xlmr-ce"
        );
        assert_eq!(model_reference(&final_dir), "stsb-teacher/final");
        // A directory that does not exist is still named without its path.
        assert_eq!(model_reference(Path::new("/no/such/place/model")), "model");
    }

    #[test]
    fn hub_id_shapes() {
        assert!(looks_like_hub_id("cross-encoder/ms-marco-MiniLM-L6-v2"));
        assert!(looks_like_hub_id("bert-base-uncased"));
        assert!(looks_like_hub_id("owner/name@v1.0"));
        assert!(!looks_like_hub_id("./models/x"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("a/b/c"));
    }
}
