//! Files from the Hugging Face Hub, through `hf-hub`, with the cache and offline mode honoured.
//!
//! Resolution order for `repo_id/filename`: the local cache (`HF_HUB_CACHE`, else `HF_HOME/hub`,
//! else `~/.cache/huggingface/hub`), then, unless `HF_HUB_OFFLINE` is set, a download into that
//! cache. Errors say where we looked and how to fix it.

use std::path::PathBuf;

use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};

/// Which kind of repository a file lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A model repository (`owner/name`).
    Model,
    /// A dataset repository (`datasets/owner/name`).
    Dataset,
}

/// True when `HF_HUB_OFFLINE` asks for no network (`1`, `true`, `yes`, `on`).
pub fn is_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// The hub cache directory, as huggingface_hub computes it.
pub fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    Cache::from_env().path().clone()
}

/// Split `repo@revision` into its parts (revision defaults to `main`).
fn split_revision(repo_id: &str) -> (&str, &str) {
    match repo_id.split_once('@') {
        Some((id, rev)) if !rev.is_empty() => (id, rev),
        _ => (repo_id, "main"),
    }
}

fn repo(repo_id: &str, kind: RepoKind) -> Repo {
    let (id, revision) = split_revision(repo_id);
    let repo_type = match kind {
        RepoKind::Model => RepoType::Model,
        RepoKind::Dataset => RepoType::Dataset,
    };
    Repo::with_revision(id.to_string(), repo_type, revision.to_string())
}

/// Look `filename` up in the local cache only.
pub fn cached_file(repo_id: &str, kind: RepoKind, filename: &str) -> Option<PathBuf> {
    Cache::new(cache_dir())
        .repo(repo(repo_id, kind))
        .get(filename)
}

/// The local path of `filename` in `repo_id` (`owner/name` or `owner/name@revision`): from the
/// cache, else downloaded (unless offline).
pub fn resolve_file(repo_id: &str, kind: RepoKind, filename: &str) -> Result<PathBuf> {
    if let Some(path) = cached_file(repo_id, kind, filename) {
        return Ok(path);
    }
    let cache = cache_dir();
    if is_offline() {
        return Err(Error::model(
            repo_id,
            format!(
                "`{filename}` is not in the Hugging Face cache at {} and HF_HUB_OFFLINE is set",
                cache.display()
            ),
        )
        .with_hint(
            "unset HF_HUB_OFFLINE to download it, fill the cache, or pass a local directory",
        ));
    }
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(cache.clone())
        .with_progress(false)
        .build()
        .map_err(|e| Error::model(repo_id, format!("cannot start the hub client: {e}")))?;
    api.repo(repo(repo_id, kind)).get(filename).map_err(|e| {
        Error::model(
            repo_id,
            format!(
                "`{filename}` is not a local path, not in the Hugging Face cache at {}, and the download failed: {e}",
                cache.display()
            ),
        )
        .with_hint("check the id, or give the path of a local model directory instead")
    })
}
