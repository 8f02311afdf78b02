//! How the model card names datasets: the way a reader can find them, never a path of the
//! machine the model was trained on (the full paths stay in `recipe.resolved.toml`). Models are
//! named by [`crate::model::ModelFiles::reference`].

use std::path::Path;

/// The card's name for a data file, and its hub dataset id when it has one.
///
/// `hf://datasets/OWNER/NAME[@REVISION]/FILE` → (`OWNER/NAME`, `Some("OWNER/NAME")`); a local
/// file → its file name (`train.jsonl`), without the directories that lead to it.
pub fn dataset_reference(path: &str) -> (String, Option<String>) {
    if let Some(rest) = path.strip_prefix("hf://datasets/") {
        let mut parts = rest.split('/');
        if let (Some(owner), Some(name)) = (parts.next(), parts.next()) {
            let name = name.split('@').next().unwrap_or(name);
            if !owner.is_empty() && !name.is_empty() {
                let id = format!("{owner}/{name}");
                return (id.clone(), Some(id));
            }
        }
        return (rest.to_string(), None);
    }
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string());
    (name, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_datasets_keep_their_id_and_local_files_their_name() {
        assert_eq!(
            dataset_reference("hf://datasets/sentence-transformers/stsb@main/train.jsonl"),
            (
                "sentence-transformers/stsb".to_string(),
                Some("sentence-transformers/stsb".to_string())
            )
        );
        assert_eq!(
            dataset_reference("/home/me/work/recipes/../data/stsb-en/train.jsonl"),
            ("train.jsonl".to_string(), None)
        );
        assert_eq!(dataset_reference("dev.tsv"), ("dev.tsv".to_string(), None));
    }
}
