//! Vocabulary trimming: keep only the tokens a corpus uses, so that a multilingual student's
//! 250k-row embedding table shrinks to the languages it is trained on.
//!
//! [`trim_vocab`] tokenises every text and pair of a [`TrimCorpus`] with the model's tokenizer
//! (special tokens included, no truncation), keeps those ids plus every id the model's files
//! name (added and special tokens, the unknown token, post-processor tokens, padding, the ids in
//! config.json, ids `0..=pad_token_id`), renumbers the kept ids in their original order, and
//! writes a model directory where every file agrees with the new numbering: tokenizer.json's
//! vocabulary, `unk_id`, added tokens, post-processor and padding; config.json's `vocab_size`
//! and token ids; tokenizer_config.json's `added_tokens_decoder`; vocab.txt; and the
//! safetensors files with the word-embedding rows sliced (dtype kept, every other tensor
//! unchanged).
//!
//! # Why the corpus tokenises identically
//!
//! Only the model's vocabulary changes; the normalizer, pre-tokenizer, post-processor templates
//! and decoder are copied. Added tokens are all kept, so the text splits around them as before.
//!
//! - **WordPiece** is greedy longest-match: at each position it takes the longest vocabulary
//!   entry that matches. For a corpus word, every piece it took is kept, and any longer match
//!   would have been in the old vocabulary too and taken instead, so the same pieces win. A word
//!   that became `[UNK]` still fails at the same or an earlier position, so it stays `[UNK]`.
//! - **Unigram** picks the best-scoring segmentation (Viterbi) among the pieces in the
//!   vocabulary. The old best path uses only kept pieces, so it is still available with the same
//!   score, and removing pieces only removes competing paths — except where a character loses
//!   its single-character piece and gets an `<unk>` node instead, scored `min_score − 10`.
//!   Trimming keeps the lowest-scoring piece, so `min_score` does not change and such a node
//!   scores strictly less than the piece it replaces: no new path can beat or tie the old best.
//!   Ties: the tokenizers crate keeps the first of equally scored candidates it meets; the old
//!   winner is kept and every candidate met before it was already not better, so it still wins.
//!
//! The argument is not relied on: after writing the trimmed tokenizer, the whole corpus (every
//! text and every pair) is tokenised again and each new id must map back to the old id at the
//! same position. Any difference is an error that names the text, and nothing is written.
//! Because the embedding rows move with the ids and `pad_token_id` keeps its value (XLM-R
//! position ids start at `pad_token_id + 1`), the trimmed model computes the same hidden states
//! and logits on the corpus. Texts outside the corpus still tokenise, but pieces the corpus never
//! used are gone, so they may split into smaller pieces or `<unk>`.
//!
//! A SentencePiece `.model` file (sentencepiece.bpe.model, spiece.model, tokenizer.model)
//! cannot be rewritten and is dropped: transformers and sentence-transformers then load the
//! fast tokenizer from tokenizer.json. Weights in other formats (ONNX, PyTorch .bin, TF, Flax)
//! are dropped too, since they still hold the full table.
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use crossdistill::model::{trim_vocab, CorpusColumns, TrimCorpus, TrimOptions};
//!
//! let columns = CorpusColumns {
//!     names: Some(vec!["sentence1".into(), "sentence2".into(), "score".into()]),
//!     columns: None,
//! };
//! let corpus = TrimCorpus::read_files(&[PathBuf::from("stsb-de-train.csv")], &columns)?;
//! let report = trim_vocab("intfloat/multilingual-e5-small", &corpus, Path::new("e5-de"), &TrimOptions::default())?;
//! println!("{} -> {} tokens", report.vocab_before, report.vocab_after);
//! # Ok::<(), crossdistill::error::Error>(())
//! ```

mod corpus;
mod embeddings;
mod output;
mod vocab_files;

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::{EncodeInput, PaddingParams, Tokenizer};

use super::config::EncoderConfig;
use super::source::ModelFiles;
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, StagedDir};

pub use corpus::{CorpusColumns, TrimCorpus};
pub use output::MARKER as TRIM_MARKER;
pub use vocab_files::TokenizerKind;

/// Texts tokenised per batch (bounds the memory of the encodings).
const CHUNK: usize = 2048;

/// Files that carry the vocabulary in a form trimming cannot rewrite.
const SENTENCEPIECE_FILES: [&str; 3] =
    ["sentencepiece.bpe.model", "spiece.model", "tokenizer.model"];

/// Weight formats other than safetensors: stale after trimming, so not copied.
const OTHER_WEIGHT_EXTENSIONS: [&str; 6] = ["onnx", "bin", "h5", "msgpack", "ot", "pt"];

/// How [`trim_vocab`] runs.
#[derive(Debug, Clone, Default)]
pub struct TrimOptions {
    /// Replace `output` when it is a previous trim-vocab output (it holds [`TRIM_MARKER`] and only
    /// the files that lists); default: refuse any existing `output`.
    pub force: bool,
}

/// What [`trim_vocab`] did, for the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrimReport {
    /// The tokenizer model.
    pub tokenizer: TokenizerKind,
    /// Embedding rows (config.json `vocab_size`) before.
    pub vocab_before: usize,
    /// Embedding rows after: the kept tokens.
    pub vocab_after: usize,
    /// Scalars in the checkpoint before.
    pub params_before: usize,
    /// Scalars in the checkpoint after.
    pub params_after: usize,
    /// Bytes of the safetensors files before.
    pub weights_bytes_before: u64,
    /// Bytes of the safetensors files after.
    pub weights_bytes_after: u64,
    /// Bytes of tokenizer.json before.
    pub tokenizer_bytes_before: u64,
    /// Bytes of tokenizer.json after.
    pub tokenizer_bytes_after: u64,
    /// Distinct single texts tokenised and checked.
    pub texts_checked: usize,
    /// Distinct pairs tokenised and checked.
    pub pairs_checked: usize,
    /// Tokens compared between the old and the trimmed tokenizer (texts and pairs).
    pub tokens_checked: usize,
    /// Files of the model directory that were not copied, with the reason.
    pub dropped: Vec<String>,
    /// The checkpoint tensors whose vocabulary rows were sliced.
    pub sliced_tensors: Vec<String>,
}

/// The renumbering: kept old ids in their original order; new id = rank among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabMap {
    new_to_old: Vec<u32>,
    old_to_new: Vec<u32>,
}

impl VocabMap {
    const DROPPED: u32 = u32::MAX;

    /// The map that keeps the ids whose flag is set (`kept[old_id]`).
    pub fn from_kept(kept: &[bool]) -> Self {
        let mut new_to_old = Vec::new();
        let mut old_to_new = vec![Self::DROPPED; kept.len()];
        for (old, _) in kept.iter().enumerate().filter(|(_, keep)| **keep) {
            old_to_new[old] = new_to_old.len() as u32;
            new_to_old.push(old as u32);
        }
        Self {
            new_to_old,
            old_to_new,
        }
    }

    /// The new id of `old`, or `None` when it was dropped.
    pub fn new_id(&self, old: u32) -> Option<u32> {
        self.old_to_new
            .get(old as usize)
            .copied()
            .filter(|&new| new != Self::DROPPED)
    }

    /// The old id of `new`.
    pub fn old_id(&self, new: u32) -> Option<u32> {
        self.new_to_old.get(new as usize).copied()
    }

    /// The kept old ids, in new-id order.
    pub fn kept_old_ids(&self) -> &[u32] {
        &self.new_to_old
    }

    /// Kept ids (the trimmed vocabulary size).
    pub fn len(&self) -> usize {
        self.new_to_old.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.new_to_old.is_empty()
    }

    /// Ids before trimming.
    pub fn old_len(&self) -> usize {
        self.old_to_new.len()
    }
}

/// The ids a tokenizer gives a list of texts or pairs, flattened.
struct EncodedIds {
    ids: Vec<u32>,
    /// `ids[ends[i-1]..ends[i]]` are item `i`'s ids.
    ends: Vec<usize>,
}

impl EncodedIds {
    fn item(&self, index: usize) -> &[u32] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.ids[start..self.ends[index]]
    }
}

/// Tokenise `inputs` (texts or pairs) with special tokens, calling `visit(index, encoding)`.
fn encode_all<'a, T: Sync>(
    tokenizer: &Tokenizer,
    items: &'a [T],
    input: impl Fn(&'a T) -> EncodeInput<'a>,
    mut visit: impl FnMut(usize, &tokenizers::Encoding) -> Result<()>,
) -> Result<()> {
    for (chunk_index, chunk) in items.chunks(CHUNK).enumerate() {
        let inputs: Vec<EncodeInput<'a>> = chunk.iter().map(&input).collect();
        let encodings = tokenizer.encode_batch(inputs, true)?;
        for (offset, encoding) in encodings.iter().enumerate() {
            visit(chunk_index * CHUNK + offset, encoding)?;
        }
    }
    Ok(())
}

fn encode_ids<'a, T: Sync>(
    tokenizer: &Tokenizer,
    items: &'a [T],
    input: impl Fn(&'a T) -> EncodeInput<'a>,
) -> Result<EncodedIds> {
    let mut encoded = EncodedIds {
        ids: Vec::new(),
        ends: Vec::with_capacity(items.len()),
    };
    encode_all(tokenizer, items, input, |_, encoding| {
        encoded.ids.extend_from_slice(encoding.get_ids());
        encoded.ends.push(encoded.ids.len());
        Ok(())
    })?;
    Ok(encoded)
}

/// A tokenizer that encodes as the model does, without padding or truncation.
fn load_tokenizer(bytes: &[u8], path: &Path) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_bytes(bytes)
        .map_err(|e| Error::input(path, None, format!("cannot load the tokenizer: {e}")))?;
    tokenizer.with_padding(None::<PaddingParams>);
    tokenizer.with_truncation(None).map_err(Error::Tokenizer)?;
    Ok(tokenizer)
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::input(path, Some(e.line()), format!("invalid JSON: {e}")))
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}

fn file_size(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| Error::io("cannot read", path, e))
}

/// Trim the vocabulary of `model` (a directory or hub id) to the tokens `corpus` uses and write
/// the trimmed model to `output` (atomically: all files appear at once or none do).
///
/// The output gets a marker file, [`TRIM_MARKER`], listing the files written; with
/// [`TrimOptions::force`] an existing `output` is replaced only when it is such an output.
///
/// Fails (and writes nothing) on an empty corpus, a tokenizer other than WordPiece or Unigram, an
/// existing `output` without [`TrimOptions::force`], an `output` that holds the model, a corpus
/// file or files trim-vocab did not write, or a corpus text whose tokenisation the
/// trimmed tokenizer does not reproduce exactly (the error names the text).
pub fn trim_vocab(
    model: &str,
    corpus: &TrimCorpus,
    output: &Path,
    options: &TrimOptions,
) -> Result<TrimReport> {
    if corpus.is_empty() {
        return Err(Error::invalid(
            "the corpus has no texts; trimming to it would keep only the special tokens",
        )
        .with_hint("give --corpus files with at least one text"));
    }
    let files = ModelFiles::locate(model, None)?;
    output::check_output(&files.dir, corpus.files(), output, options.force)?;
    let config_json = read_json(&files.config)?;
    let config = EncoderConfig::from_value(config_json.clone(), &files.config)?;
    let tokenizer_bytes = std::fs::read(&files.tokenizer)
        .map_err(|e| Error::io("cannot read", &files.tokenizer, e))?;
    let mut tokenizer_json: Value = serde_json::from_slice(&tokenizer_bytes).map_err(|e| {
        Error::input(
            &files.tokenizer,
            Some(e.line()),
            format!("invalid JSON: {e}"),
        )
    })?;
    let kind = vocab_files::tokenizer_kind(&tokenizer_json, &files.tokenizer)?;
    let tokenizer = load_tokenizer(&tokenizer_bytes, &files.tokenizer)?;
    let tokenizer_config_json = files
        .tokenizer_config
        .as_deref()
        .map(read_json)
        .transpose()?;

    // 1. What the corpus uses, and what the files name.
    let rows = config.vocab_size;
    let mut kept = vec![false; rows];
    let mut keep = |id: u32, what: &str| -> Result<()> {
        match kept.get_mut(id as usize) {
            Some(flag) => {
                *flag = true;
                Ok(())
            }
            None => Err(Error::model(
                &files.name,
                format!("{what} has token id {id}, but the embedding table has {rows} rows"),
            )
            .with_hint("tokenizer.json and the weights must come from the same model")),
        }
    };
    let texts = encode_ids(&tokenizer, corpus.texts(), |text| text.as_str().into())?;
    let pairs = encode_ids(&tokenizer, corpus.pairs(), |(a, b)| {
        (a.as_str(), b.as_str()).into()
    })?;
    for &id in texts.ids.iter().chain(&pairs.ids) {
        keep(id, "the corpus tokenisation")?;
    }
    for id in vocab_files::tokenizer_named_ids(&tokenizer_json, kind) {
        keep(id, "tokenizer.json")?;
    }
    if let Some(value) = &tokenizer_config_json {
        for id in vocab_files::tokenizer_config_named_ids(value) {
            keep(id, "tokenizer_config.json's added_tokens_decoder")?;
        }
    }
    for (key, id) in vocab_files::config_named_ids(&config_json) {
        if (id as usize) < rows {
            keep(id, key)?;
        }
    }
    // Ids below the pad id stay in place, so pad_token_id (and XLM-R's position offset,
    // pad_token_id + 1) keeps its value.
    for id in 0..=config.pad_token_id {
        keep(id, "pad_token_id")?;
    }
    if kind == TokenizerKind::Unigram {
        for id in unigram_kept_extras(&tokenizer_json) {
            keep(id as u32, "the Unigram vocabulary")?;
        }
    }
    // Embedding rows no token maps to (tables padded past the tokenizer) are dropped.
    let map = VocabMap::from_kept(&kept);

    // 2. Write the trimmed files into a staging directory.
    let staged = StagedDir::new(output)?;
    let out = staged.path();
    vocab_files::remap_tokenizer(&mut tokenizer_json, kind, &map)?;
    let trimmed_tokenizer_text = serde_json::to_string(&tokenizer_json)?;
    write_atomic(
        &out.join("tokenizer.json"),
        trimmed_tokenizer_text.as_bytes(),
    )?;
    let mut new_config = config_json;
    vocab_files::remap_config(&mut new_config, &map)?;
    write_json(&out.join("config.json"), &new_config)?;
    if let Some(mut value) = tokenizer_config_json {
        vocab_files::remap_tokenizer_config(&mut value, &map)?;
        write_json(&out.join("tokenizer_config.json"), &value)?;
    }
    let counts = embeddings::slice_weight_files(
        &files.weights,
        config.architecture.prefix(),
        rows,
        &map,
        out,
        &files.name,
    )?;
    let mut dropped = Vec::new();
    copy_side_files(&files, kind, &map, &tokenizer_json, out, &mut dropped)?;

    // 3. The trimmed tokenizer must reproduce the corpus tokenisation exactly.
    let trimmed = load_tokenizer(
        trimmed_tokenizer_text.as_bytes(),
        &out.join("tokenizer.json"),
    )?;
    let tokens_checked = check_tokenisation(corpus, &[&texts, &pairs], &tokenizer, &trimmed, &map)?;

    let weights_bytes_before = files
        .weights
        .iter()
        .map(|p| file_size(p))
        .sum::<Result<u64>>()?;
    let weights_bytes_after = files
        .weights
        .iter()
        .filter_map(|p| p.file_name())
        .map(|name| file_size(&out.join(name)))
        .sum::<Result<u64>>()?;
    let report = TrimReport {
        tokenizer: kind,
        vocab_before: rows,
        vocab_after: map.len(),
        params_before: counts.params_before,
        params_after: counts.params_after,
        weights_bytes_before,
        weights_bytes_after,
        tokenizer_bytes_before: tokenizer_bytes.len() as u64,
        tokenizer_bytes_after: trimmed_tokenizer_text.len() as u64,
        texts_checked: corpus.texts().len(),
        pairs_checked: corpus.pairs().len(),
        tokens_checked,
        dropped,
        sliced_tensors: counts.sliced,
    };
    output::write_marker(out, model)?;
    staged.commit()?;
    Ok(report)
}

/// Tokenise the corpus with `trimmed` and check every id against `before` (`[texts, pairs]`, as
/// `original` tokenised them) through `map`. Returns the number of tokens compared; the first
/// difference is an error naming the text (at its file and line when it came from a file).
fn check_tokenisation(
    corpus: &TrimCorpus,
    before: &[&EncodedIds; 2],
    original: &Tokenizer,
    trimmed: &Tokenizer,
    map: &VocabMap,
) -> Result<usize> {
    let mut tokens_checked = 0;
    for (is_pair, old) in [(false, before[0]), (true, before[1])] {
        let check = |index: usize, encoding: &tokenizers::Encoding| -> Result<()> {
            let before = old.item(index);
            let after = encoding.get_ids();
            let same = before.len() == after.len()
                && before
                    .iter()
                    .zip(after)
                    .all(|(&old_id, &new_id)| map.old_id(new_id) == Some(old_id));
            if same {
                return Ok(());
            }
            Err(mismatch(corpus, is_pair, index, original, before, encoding))
        };
        if is_pair {
            encode_all(
                trimmed,
                corpus.pairs(),
                |(a, b)| (a.as_str(), b.as_str()).into(),
                check,
            )?;
        } else {
            encode_all(trimmed, corpus.texts(), |text| text.as_str().into(), check)?;
        }
        tokens_checked += old.ids.len();
    }
    Ok(tokens_checked)
}

/// Unigram pieces kept whatever the corpus uses: the lowest-scoring piece (the `<unk>` penalty
/// is `min_score − 10`, so it must not change) and, with byte fallback, the 256 byte pieces.
fn unigram_kept_extras(tokenizer: &Value) -> Vec<usize> {
    let model = &tokenizer["model"];
    let Some(vocab) = model.get("vocab").and_then(Value::as_array) else {
        return Vec::new();
    };
    let score = |piece: &Value| piece.get(1).and_then(Value::as_f64);
    let mut extras = Vec::new();
    let lowest = vocab
        .iter()
        .enumerate()
        .filter_map(|(id, piece)| Some((id, score(piece)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    extras.extend(lowest.map(|(id, _)| id));
    if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        extras.extend(vocab.iter().enumerate().filter_map(|(id, piece)| {
            let text = piece.get(0)?.as_str()?;
            let is_byte = text.len() == 6 && text.starts_with("<0x") && text.ends_with('>');
            is_byte.then_some(id)
        }));
    }
    extras
}

/// The error for a corpus item the trimmed tokenizer splits differently.
fn mismatch(
    corpus: &TrimCorpus,
    is_pair: bool,
    index: usize,
    old_tokenizer: &Tokenizer,
    before: &[u32],
    after: &tokenizers::Encoding,
) -> Error {
    let shorten = |text: &str| -> String {
        let mut short: String = text.chars().take(120).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        short
    };
    let what = if is_pair {
        let (a, b) = &corpus.pairs()[index];
        format!("the pair ({:?}, {:?})", shorten(a), shorten(b))
    } else {
        format!("the text {:?}", shorten(&corpus.texts()[index]))
    };
    let old_tokens: Vec<String> = before
        .iter()
        .map(|&id| {
            old_tokenizer
                .id_to_token(id)
                .unwrap_or_else(|| format!("#{id}"))
        })
        .collect();
    corpus
        .error_at(
            is_pair,
            index,
            format!(
                "the trimmed tokenizer splits {what} into {:?}, the original into {:?}; nothing was written",
                after.get_tokens(),
                old_tokens
            ),
        )
        .with_hint("this should not happen (see crossdistill::model::trim); remove the text from the corpus or keep the full vocabulary, and please report it")
}

/// Copy every other file of the model directory into `out`, rewriting vocab.txt and
/// added_tokens.json, and dropping files that still hold the old vocabulary.
fn copy_side_files(
    files: &ModelFiles,
    kind: TokenizerKind,
    map: &VocabMap,
    trimmed_tokenizer: &Value,
    out: &Path,
    dropped: &mut Vec<String>,
) -> Result<()> {
    let mut handled: Vec<PathBuf> = vec![files.config.clone(), files.tokenizer.clone()];
    handled.extend(files.weights.iter().cloned());
    handled.extend(files.tokenizer_config.iter().cloned());
    handled.push(files.dir.join("model.safetensors.index.json"));
    let vocab_txt = files.dir.join("vocab.txt");
    if vocab_txt.is_file() {
        handled.push(vocab_txt);
        match kind {
            TokenizerKind::WordPiece => write_atomic(
                &out.join("vocab.txt"),
                vocab_files::vocab_txt(trimmed_tokenizer, map)?.as_bytes(),
            )?,
            TokenizerKind::Unigram => dropped
                .push("vocab.txt (a Unigram model does not use it; its ids would be stale)".into()),
        }
    }
    let index = files.dir.join("model.safetensors.index.json");
    if index.is_file() && files.weights.len() > 1 {
        let mut value = read_json(&index)?;
        let total: u64 = files
            .weights
            .iter()
            .filter_map(|p| p.file_name())
            .map(|name| file_size(&out.join(name)))
            .sum::<Result<u64>>()?;
        if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("total_size".into(), Value::from(total));
        }
        write_json(&out.join("model.safetensors.index.json"), &value)?;
    }
    let added_tokens = files.dir.join("added_tokens.json");
    if added_tokens.is_file() {
        handled.push(added_tokens.clone());
        let mut value = read_json(&added_tokens)?;
        vocab_files::remap_added_tokens_file(&mut value, map)?;
        write_json(&out.join("added_tokens.json"), &value)?;
    }
    copy_tree(&files.dir, out, Path::new(""), &handled, dropped)
}

fn copy_tree(
    source: &Path,
    out: &Path,
    relative: &Path,
    handled: &[PathBuf],
    dropped: &mut Vec<String>,
) -> Result<()> {
    let dir = source.join(relative);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io("cannot read", &dir, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io("cannot read", &dir, e))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        let path = entry.path();
        let rel = relative.join(&name);
        if name_text.starts_with('.') || handled.contains(&path) {
            continue;
        }
        // Follows symlinks (hub snapshots link into the blob store).
        let metadata = std::fs::metadata(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        if metadata.is_dir() {
            crate::fsutil::create_dir_all(&out.join(&rel))?;
            copy_tree(source, out, &rel, handled, dropped)?;
            continue;
        }
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if SENTENCEPIECE_FILES.contains(&name_text.as_ref()) {
            dropped.push(format!(
                "{} (a SentencePiece model cannot be rewritten; transformers uses tokenizer.json instead)",
                rel.display()
            ));
        } else if OTHER_WEIGHT_EXTENSIONS.contains(&extension.as_str())
            || extension == "safetensors"
        {
            dropped.push(format!(
                "{} (weights with the full vocabulary; convert the trimmed model again if you need it)",
                rel.display()
            ));
        } else {
            let target = out.join(&rel);
            std::fs::copy(&path, &target).map_err(|e| Error::io("cannot copy", &path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_ids_keep_their_order_and_map_both_ways() {
        let map = VocabMap::from_kept(&[true, true, false, true, false, false, true]);
        assert_eq!(map.kept_old_ids(), [0, 1, 3, 6]);
        assert_eq!((map.len(), map.old_len()), (4, 7));
        assert_eq!(map.new_id(3), Some(2));
        assert_eq!(map.new_id(2), None);
        assert_eq!(map.new_id(99), None);
        assert_eq!(map.old_id(3), Some(6));
        assert_eq!(map.old_id(4), None);
    }

    fn wordpiece(vocab: serde_json::Value) -> Tokenizer {
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
            "decoder": null,
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                "max_input_chars_per_word": 100, "vocab": vocab}
        });
        load_tokenizer(json.to_string().as_bytes(), Path::new("t.json")).unwrap()
    }

    #[test]
    fn a_changed_tokenisation_is_an_error_at_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.txt");
        std::fs::write(&path, "a b\nab\n").unwrap();
        let corpus =
            TrimCorpus::read_files(std::slice::from_ref(&path), &CorpusColumns::default()).unwrap();
        let original = wordpiece(serde_json::json!({"[UNK]": 0, "a": 1, "b": 2, "##b": 3}));
        let texts = encode_ids(&original, corpus.texts(), |t| t.as_str().into()).unwrap();
        let pairs = encode_ids(&original, corpus.pairs(), |(a, b)| {
            (a.as_str(), b.as_str()).into()
        })
        .unwrap();
        assert_eq!((texts.item(0), texts.item(1)), (&[1, 2][..], &[1, 3][..]));

        let all = VocabMap::from_kept(&[true; 4]);
        let checked =
            check_tokenisation(&corpus, &[&texts, &pairs], &original, &original, &all).unwrap();
        assert_eq!(checked, 4);

        // Dropping `##b`, which the corpus uses, turns "ab" into [UNK]: caught, at line 2.
        let without = wordpiece(serde_json::json!({"[UNK]": 0, "a": 1, "b": 2}));
        let map = VocabMap::from_kept(&[true, true, true, false]);
        let error = check_tokenisation(&corpus, &[&texts, &pairs], &original, &without, &map)
            .unwrap_err()
            .to_string();
        let expected = format!(
            "{}:2: the trimmed tokenizer splits the text \"ab\" into [\"[UNK]\"], the original into [\"a\", \"##b\"]; nothing was written",
            path.display()
        );
        assert!(error.starts_with(&expected), "{error}");
    }

    /// Why the lowest-scoring Unigram piece is kept: the `<unk>` node's score is
    /// `min_score − 10`. Here "abcde" is [ab c d e] (−20; [a bcde] is −30.1). Trimming to the
    /// corpus without `a` (−30) raises min_score to −5, and the new `<unk>` node (−15) for "a"
    /// makes [<unk> bcde] (−15.1) beat the old best path.
    #[test]
    fn unigram_keeps_its_unknown_penalty() {
        let tokenizer = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": false, "vocab": [
                ["<unk>", 0.0], ["a", -30.0], ["ab", -5.0], ["c", -5.0], ["d", -5.0],
                ["e", -5.0], ["bcde", -0.1]]}
        });
        let mut corpus = TrimCorpus::new();
        corpus.add_text("abcde");
        corpus.add_text("bcde");
        let original = load_tokenizer(tokenizer.to_string().as_bytes(), Path::new("t")).unwrap();
        let texts = encode_ids(&original, corpus.texts(), |t| t.as_str().into()).unwrap();
        let pairs = encode_ids(&original, corpus.pairs(), |(a, b)| {
            (a.as_str(), b.as_str()).into()
        })
        .unwrap();
        assert_eq!(
            (texts.item(0), texts.item(1)),
            (&[2, 3, 4, 5][..], &[6][..])
        );
        let trim_with = |extras: &[usize]| {
            let mut kept = vec![false; 7];
            kept[0] = true;
            for &id in texts.ids.iter() {
                kept[id as usize] = true;
            }
            for &id in extras {
                kept[id] = true;
            }
            let map = VocabMap::from_kept(&kept);
            let mut json = tokenizer.clone();
            vocab_files::remap_tokenizer(&mut json, TokenizerKind::Unigram, &map).unwrap();
            let trimmed = load_tokenizer(json.to_string().as_bytes(), Path::new("t")).unwrap();
            check_tokenisation(&corpus, &[&texts, &pairs], &original, &trimmed, &map)
        };
        let error = trim_with(&[]).unwrap_err().to_string();
        assert!(
            error.contains(
                r#"splits the text "abcde" into ["a", "bcde"], the original into ["ab", "c", "d", "e"]"#
            ),
            "{error}"
        );
        assert_eq!(unigram_kept_extras(&tokenizer), [1]);
        assert_eq!(trim_with(&unigram_kept_extras(&tokenizer)).unwrap(), 5);
    }

    #[test]
    fn unigram_extras_are_the_lowest_piece_and_byte_pieces() {
        let tokenizer = serde_json::json!({"model": {"type": "Unigram", "byte_fallback": true,
            "vocab": [["<unk>", 0.0], ["a", -2.0], ["<0x41>", -1.0], ["b", -9.5], ["c", -3.0]]}});
        assert_eq!(unigram_kept_extras(&tokenizer), [3, 2]);
    }
}
