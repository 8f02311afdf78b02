//! Rewriting the files that carry token ids: tokenizer.json, config.json,
//! tokenizer_config.json, vocab.txt, added_tokens.json. Pure functions over parsed JSON; the
//! caller reads and writes the files.

use std::path::Path;

use serde_json::{Map, Value};

use super::VocabMap;
use crate::error::{Error, Result};

/// The tokenizer models trimming supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// BERT's WordPiece (greedy longest match, `##` continuations).
    WordPiece,
    /// SentencePiece Unigram (XLM-R, multilingual-e5).
    Unigram,
}

impl std::fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenizerKind::WordPiece => "WordPiece",
            TokenizerKind::Unigram => "Unigram",
        })
    }
}

/// config.json keys that hold token ids.
pub(crate) const CONFIG_ID_KEYS: [&str; 8] = [
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "cls_token_id",
    "mask_token_id",
    "unk_token_id",
    "decoder_start_token_id",
];

/// The model type of a tokenizer.json, or an error for the ones trimming cannot handle.
pub(crate) fn tokenizer_kind(tokenizer: &Value, path: &Path) -> Result<TokenizerKind> {
    let model = tokenizer
        .get("model")
        .ok_or_else(|| Error::input(path, None, "tokenizer.json has no `model` section"))?;
    let declared = model.get("type").and_then(Value::as_str);
    let kind = match declared {
        Some("WordPiece") => Some(TokenizerKind::WordPiece),
        Some("Unigram") => Some(TokenizerKind::Unigram),
        Some(_) => None,
        // Old files without `type`: tell the models apart by their fields.
        None if model.get("merges").is_some() => None,
        None if model.get("vocab").is_some_and(Value::is_array) => Some(TokenizerKind::Unigram),
        None if model.get("continuing_subword_prefix").is_some() => Some(TokenizerKind::WordPiece),
        None => None,
    };
    kind.ok_or_else(|| {
        Error::input(
            path,
            None,
            format!(
                "the tokenizer model is {}; vocabulary trimming supports only WordPiece and Unigram tokenizers",
                declared.unwrap_or("of an unknown type")
            ),
        )
        .with_hint("a BPE tokenizer's merges refer to tokens by name, so removing tokens can change how any text is split; use a WordPiece (BERT) or SentencePiece Unigram (XLM-R) model")
    })
}

fn as_id(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|id| u32::try_from(id).ok())
}

/// Every id the tokenizer itself names outside its vocabulary list: added tokens, the unknown
/// token, post-processor special tokens, the padding id. They are kept whatever the corpus says.
pub(crate) fn tokenizer_named_ids(tokenizer: &Value, kind: TokenizerKind) -> Vec<u32> {
    let mut ids = Vec::new();
    if let Some(added) = tokenizer.get("added_tokens").and_then(Value::as_array) {
        ids.extend(added.iter().filter_map(|t| t.get("id").and_then(as_id)));
    }
    let model = &tokenizer["model"];
    match kind {
        TokenizerKind::Unigram => {
            ids.extend(model.get("unk_id").and_then(as_id));
        }
        TokenizerKind::WordPiece => {
            let unk = model.get("unk_token").and_then(Value::as_str);
            if let Some(id) = unk.and_then(|unk| model["vocab"].get(unk)).and_then(as_id) {
                ids.push(id);
            }
        }
    }
    if let Some(processor) = tokenizer.get("post_processor") {
        processor_ids(processor, &mut ids);
    }
    if let Some(id) = tokenizer
        .get("padding")
        .and_then(|p| p.get("pad_id"))
        .and_then(as_id)
    {
        ids.push(id);
    }
    ids
}

fn processor_ids(processor: &Value, ids: &mut Vec<u32>) {
    match processor.get("type").and_then(Value::as_str) {
        Some("TemplateProcessing") => {
            if let Some(specials) = processor.get("special_tokens").and_then(Value::as_object) {
                for special in specials.values() {
                    if let Some(list) = special.get("ids").and_then(Value::as_array) {
                        ids.extend(list.iter().filter_map(as_id));
                    }
                }
            }
        }
        Some("RobertaProcessing" | "BertProcessing") => {
            for key in ["sep", "cls"] {
                ids.extend(
                    processor
                        .get(key)
                        .and_then(|pair| pair.get(1))
                        .and_then(as_id),
                );
            }
        }
        Some("Sequence") => {
            if let Some(list) = processor.get("processors").and_then(Value::as_array) {
                for inner in list {
                    processor_ids(inner, ids);
                }
            }
        }
        _ => {}
    }
}

/// Replace the id at `value` (a JSON number) by its new id; an error names `what` when the id was
/// not kept (the caller keeps every id these files name, so this is a bug guard).
fn remap_in_place(value: &mut Value, map: &VocabMap, what: &str) -> Result<()> {
    let Some(old) = as_id(value) else {
        return Ok(());
    };
    let new = map.new_id(old).ok_or_else(|| {
        Error::invalid(format!(
            "{what} names token id {old}, which the trimmed vocabulary does not keep"
        ))
    })?;
    *value = Value::from(new);
    Ok(())
}

/// Rewrite a parsed tokenizer.json for the trimmed vocabulary: the model's vocabulary (only
/// kept tokens, with new ids, in new-id order), the Unigram `unk_id`, `added_tokens` ids,
/// post-processor special-token ids and the padding id. Everything else is left as it was.
pub(crate) fn remap_tokenizer(
    tokenizer: &mut Value,
    kind: TokenizerKind,
    map: &VocabMap,
) -> Result<()> {
    let model = tokenizer
        .get_mut("model")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::invalid("tokenizer.json has no `model` object"))?;
    match kind {
        TokenizerKind::WordPiece => {
            let vocab = model
                .get("vocab")
                .and_then(Value::as_object)
                .ok_or_else(|| Error::invalid("the WordPiece model has no `vocab` object"))?;
            let mut kept: Vec<(u32, String)> = vocab
                .iter()
                .filter_map(|(token, id)| Some((map.new_id(as_id(id)?)?, token.clone())))
                .collect();
            kept.sort_unstable();
            let new_vocab: Map<String, Value> = kept
                .into_iter()
                .map(|(id, token)| (token, Value::from(id)))
                .collect();
            model.insert("vocab".into(), Value::Object(new_vocab));
        }
        TokenizerKind::Unigram => {
            let vocab = model
                .get("vocab")
                .and_then(Value::as_array)
                .ok_or_else(|| Error::invalid("the Unigram model has no `vocab` list"))?;
            // A piece's id is its position in the list; kept ids keep their order, so the
            // filtered list puts every piece at its new id.
            let new_vocab: Vec<Value> = vocab
                .iter()
                .enumerate()
                .filter(|(old, _)| u32::try_from(*old).is_ok_and(|old| map.new_id(old).is_some()))
                .map(|(_, piece)| piece.clone())
                .collect();
            model.insert("vocab".into(), Value::Array(new_vocab));
            if let Some(unk) = model.get_mut("unk_id") {
                remap_in_place(unk, map, "the Unigram model's unk_id")?;
            }
        }
    }
    if let Some(added) = tokenizer
        .get_mut("added_tokens")
        .and_then(Value::as_array_mut)
    {
        for token in added {
            if let Some(id) = token.get_mut("id") {
                remap_in_place(id, map, "an added token")?;
            }
        }
    }
    if let Some(processor) = tokenizer.get_mut("post_processor") {
        remap_processor(processor, map)?;
    }
    if let Some(pad_id) = tokenizer
        .get_mut("padding")
        .and_then(|p| p.get_mut("pad_id"))
    {
        remap_in_place(pad_id, map, "padding.pad_id")?;
    }
    Ok(())
}

fn remap_processor(processor: &mut Value, map: &VocabMap) -> Result<()> {
    match processor.get("type").and_then(Value::as_str) {
        Some("TemplateProcessing") => {
            if let Some(specials) = processor
                .get_mut("special_tokens")
                .and_then(Value::as_object_mut)
            {
                for special in specials.values_mut() {
                    if let Some(list) = special.get_mut("ids").and_then(Value::as_array_mut) {
                        for id in list {
                            remap_in_place(id, map, "a post-processor special token")?;
                        }
                    }
                }
            }
        }
        Some("RobertaProcessing" | "BertProcessing") => {
            for key in ["sep", "cls"] {
                if let Some(id) = processor.get_mut(key).and_then(|pair| pair.get_mut(1)) {
                    remap_in_place(id, map, "a post-processor special token")?;
                }
            }
        }
        Some("Sequence") => {
            if let Some(list) = processor
                .get_mut("processors")
                .and_then(Value::as_array_mut)
            {
                for inner in list {
                    remap_processor(inner, map)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The token ids config.json names (pad, bos, eos, ...), with their keys.
pub(crate) fn config_named_ids(config: &Value) -> Vec<(&'static str, u32)> {
    CONFIG_ID_KEYS
        .iter()
        .filter_map(|key| Some((*key, config.get(*key).and_then(as_id)?)))
        .collect()
}

/// Rewrite config.json: `vocab_size` and the token-id keys. Ids outside the old embedding
/// table (which no token can have) are left as they were.
pub(crate) fn remap_config(config: &mut Value, map: &VocabMap) -> Result<()> {
    let object = config
        .as_object_mut()
        .ok_or_else(|| Error::invalid("config.json is not a JSON object"))?;
    object.insert("vocab_size".into(), Value::from(map.len()));
    for key in CONFIG_ID_KEYS {
        if let Some(value) = object.get_mut(key) {
            if as_id(value).is_some_and(|id| (id as usize) < map.old_len()) {
                remap_in_place(value, map, &format!("config.json `{key}`"))?;
            }
        }
    }
    Ok(())
}

/// The ids tokenizer_config.json's `added_tokens_decoder` names.
pub(crate) fn tokenizer_config_named_ids(tokenizer_config: &Value) -> Vec<u32> {
    tokenizer_config
        .get("added_tokens_decoder")
        .and_then(Value::as_object)
        .map(|decoder| decoder.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default()
}

/// Rewrite tokenizer_config.json's `added_tokens_decoder` keys (ids as strings), in new-id order.
pub(crate) fn remap_tokenizer_config(tokenizer_config: &mut Value, map: &VocabMap) -> Result<()> {
    let Some(decoder) = tokenizer_config
        .get_mut("added_tokens_decoder")
        .and_then(Value::as_object_mut)
    else {
        return Ok(());
    };
    let mut entries = Vec::with_capacity(decoder.len());
    for (key, token) in std::mem::take(decoder) {
        let new = key
            .parse::<u32>()
            .ok()
            .and_then(|old| map.new_id(old))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "tokenizer_config.json's added_tokens_decoder names token id `{key}`, which the trimmed vocabulary does not keep"
                ))
            })?;
        entries.push((new, token));
    }
    entries.sort_by_key(|(id, _)| *id);
    *decoder = entries
        .into_iter()
        .map(|(id, token)| (id.to_string(), token))
        .collect();
    Ok(())
}

/// Rewrite added_tokens.json (`{token: id}`, the slow tokenizers' file).
pub(crate) fn remap_added_tokens_file(added: &mut Value, map: &VocabMap) -> Result<()> {
    if let Some(object) = added.as_object_mut() {
        for value in object.values_mut() {
            remap_in_place(value, map, "added_tokens.json")?;
        }
    }
    Ok(())
}

/// vocab.txt of a WordPiece tokenizer: line `i` is the token with new id `i`, taken from the
/// trimmed tokenizer.json (model vocabulary and added tokens).
pub(crate) fn vocab_txt(trimmed_tokenizer: &Value, map: &VocabMap) -> Result<String> {
    let mut tokens: Vec<Option<&str>> = vec![None; map.len()];
    let vocab = trimmed_tokenizer["model"]["vocab"]
        .as_object()
        .ok_or_else(|| Error::invalid("the WordPiece model has no `vocab` object"))?;
    let added = trimmed_tokenizer
        .get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t.get("content")?.as_str()?, t.get("id")?)));
    for (token, id) in vocab.iter().map(|(t, id)| (t.as_str(), id)).chain(added) {
        if let Some(slot) = as_id(id).and_then(|id| tokens.get_mut(id as usize)) {
            slot.get_or_insert(token);
        }
    }
    let mut text = String::new();
    for (id, token) in tokens.iter().enumerate() {
        let token = token.ok_or_else(|| {
            Error::invalid(format!(
                "cannot write vocab.txt: no token has the new id {id} (the WordPiece vocabulary has gaps)"
            ))
        })?;
        text.push_str(token);
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(kept: &[u32], old_len: usize) -> VocabMap {
        let mut flags = vec![false; old_len];
        for &id in kept {
            flags[id as usize] = true;
        }
        VocabMap::from_kept(&flags)
    }

    #[test]
    fn wordpiece_tokenizer_ids_are_remapped_everywhere() {
        let mut tokenizer = json!({
            "added_tokens": [{"id": 0, "content": "[PAD]"}, {"id": 5, "content": "[SEP]"}],
            "post_processor": {"type": "TemplateProcessing",
                "special_tokens": {"[SEP]": {"id": "[SEP]", "ids": [5], "tokens": ["[SEP]"]}}},
            "padding": {"pad_id": 0, "pad_token": "[PAD]"},
            "model": {"type": "WordPiece", "unk_token": "[UNK]",
                "vocab": {"[PAD]": 0, "[UNK]": 1, "a": 2, "b": 3, "##b": 4, "[SEP]": 5}}
        });
        let kind = tokenizer_kind(&tokenizer, Path::new("t.json")).unwrap();
        assert_eq!(kind, TokenizerKind::WordPiece);
        let mut named = tokenizer_named_ids(&tokenizer, kind);
        named.sort_unstable();
        assert_eq!(named, [0, 0, 1, 5, 5]);
        let map = map(&[0, 1, 3, 5], 6);
        remap_tokenizer(&mut tokenizer, kind, &map).unwrap();
        assert_eq!(
            tokenizer["model"]["vocab"],
            json!({"[PAD]": 0, "[UNK]": 1, "b": 2, "[SEP]": 3})
        );
        assert_eq!(tokenizer["added_tokens"][1]["id"], 3);
        assert_eq!(
            tokenizer["post_processor"]["special_tokens"]["[SEP]"]["ids"],
            json!([3])
        );
        assert_eq!(tokenizer["padding"]["pad_id"], 0);
        assert_eq!(
            vocab_txt(&tokenizer, &map).unwrap(),
            "[PAD]\n[UNK]\nb\n[SEP]\n"
        );
    }

    #[test]
    fn unigram_pieces_keep_their_scores_and_order() {
        let mut tokenizer = json!({
            "added_tokens": [{"id": 4, "content": "<mask>"}],
            "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0]},
            "model": {"type": "Unigram", "unk_id": 1,
                "vocab": [["<s>", 0.0], ["<unk>", 0.0], ["</s>", 0.0], ["▁a", -1.5], ["<mask>", 0.0]]}
        });
        let kind = tokenizer_kind(&tokenizer, Path::new("t.json")).unwrap();
        let map = map(&[0, 1, 2, 4], 5);
        remap_tokenizer(&mut tokenizer, kind, &map).unwrap();
        assert_eq!(
            tokenizer["model"]["vocab"],
            json!([["<s>", 0.0], ["<unk>", 0.0], ["</s>", 0.0], ["<mask>", 0.0]])
        );
        assert_eq!(tokenizer["model"]["unk_id"], 1);
        assert_eq!(tokenizer["added_tokens"][0]["id"], 3);
        assert_eq!(tokenizer["post_processor"]["sep"], json!(["</s>", 2]));
    }

    #[test]
    fn bpe_is_refused_with_the_reason() {
        let tokenizer = json!({"model": {"type": "BPE", "vocab": {}, "merges": []}});
        let error = tokenizer_kind(&tokenizer, Path::new("m/tokenizer.json"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("the tokenizer model is BPE; vocabulary trimming supports only WordPiece and Unigram"),
            "{error}"
        );
    }

    #[test]
    fn config_and_tokenizer_config_follow_the_map() {
        let map = map(&[0, 1, 2, 7], 8);
        let mut config =
            json!({"vocab_size": 8, "pad_token_id": 1, "eos_token_id": 7, "bos_token_id": null});
        remap_config(&mut config, &map).unwrap();
        assert_eq!(
            config,
            json!({"vocab_size": 4, "pad_token_id": 1, "eos_token_id": 3, "bos_token_id": null})
        );
        let mut tokenizer_config =
            json!({"added_tokens_decoder": {"7": {"content": "<mask>"}, "0": {"content": "<s>"}}});
        assert_eq!(tokenizer_config_named_ids(&tokenizer_config), [7, 0]);
        remap_tokenizer_config(&mut tokenizer_config, &map).unwrap();
        assert_eq!(
            tokenizer_config,
            json!({"added_tokens_decoder": {"0": {"content": "<s>"}, "3": {"content": "<mask>"}}})
        );
    }
}
