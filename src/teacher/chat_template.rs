//! (query, document) pairs rendered through a causal-LM reranker's chat template and tokenised,
//! exactly as sentence-transformers 6's `Transformer` module does for a `text-generation` task.
//!
//! What sentence-transformers 6.3 does (`base/modules/transformer.py`, `base/modality.py`), and
//! what [`PairPrompter`] reproduces:
//!
//! 1. **Messages.** A pair becomes two messages, `{"role": "query", "content": query}` then
//!    `{"role": "document", "content": document}` (`InputFormatter.pair_to_messages`). In the
//!    `structured` message format the content is `[{"type": "text", "text": ...}]` instead. The
//!    format is `modality_config.message.format` of `sentence_bert_config.json`; without it, it is
//!    inferred from the template: `structured` when the source contains `content[0]`, `.type`,
//!    `'type'`, `"type"`, `item.type` or `message.content[`, else `flat`.
//! 2. **Rendering.** transformers' `apply_chat_template` renders the template with Jinja2
//!    (`trim_blocks` and `lstrip_blocks` on, the `loopcontrols` extension, a `tojson` filter that is
//!    `json.dumps(ensure_ascii=False)`, `raise_exception`), with `messages`,
//!    `add_generation_prompt = false` and the tokenizer's special tokens (`eos_token`, ...) as
//!    variables. The template comes from `chat_template.jinja`, else `tokenizer_config.json`'s
//!    `chat_template`. Here the engine is minijinja with the same settings, plus
//!    minijinja-contrib's Python string methods (`.strip()`, `.startswith()`, ...).
//! 3. **Tokenisation.** The rendered text is tokenised with `add_special_tokens=False` (the
//!    template holds its own special tokens) and right-truncated to `max_length` tokens (the
//!    tokenizer's `model_max_length`, which `CrossEncoder(max_length=...)` sets).
//! 4. **Suffix restore.** Truncation cuts the template's closing tokens (the assistant prefix the
//!    model's last position must see) first, so for every row whose length reached `max_length`
//!    the template's suffix is written back over the row's last tokens. The suffix is the longest
//!    common token suffix of two renders of the pair with the contents replaced by `"0"` and by
//!    `"1 2 3 4"` (`_chat_template_suffix_ids`); it is empty when that run covers a whole render.
//! 5. **Padding** is on the left (the module forces `padding_side = "left"`), so the last position
//!    of every row is its last real token; see [`super::qwen`] for what the model does with it.
//!
//! A template that cannot carry a pair is refused at load, as sentence-transformers refuses it at
//! the first pair: the probe pairs ("alpha", "bravo"), ("charlie", "bravo"), ("alpha", "foxtrot")
//! must render three different prompts, and no render may raise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, Value};
use tokenizers::{PaddingParams, Tokenizer};

use crate::error::{Error, Result};

/// How message content is laid out for the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// `"content": "text"`.
    Flat,
    /// `"content": [{"type": "text", "text": "text"}]`.
    Structured,
}

impl MessageFormat {
    /// sentence-transformers' inference from the template source (`InputFormatter._infer_format`).
    pub fn infer(template: &str) -> Self {
        const STRUCTURED: &[&str] = &[
            "content[0]",
            ".type",
            "'type'",
            "\"type\"",
            "item.type",
            "message.content[",
        ];
        if STRUCTURED.iter().any(|p| template.contains(p)) {
            MessageFormat::Structured
        } else {
            MessageFormat::Flat
        }
    }
}

/// Where a chat template was read from, and its text.
#[derive(Debug, Clone)]
pub struct TemplateSource {
    /// The file it came from (for messages).
    pub path: PathBuf,
    /// The Jinja source.
    pub text: String,
}

/// Read the chat template: `chat_template.jinja`, else `tokenizer_config.json`'s `chat_template`
/// (a string, or a list of `{name, template}` of which `default` is used). `None` when neither has
/// one.
pub fn read_template(
    jinja_file: Option<&Path>,
    tokenizer_config: Option<&Path>,
) -> Result<Option<TemplateSource>> {
    if let Some(path) = jinja_file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
        return Ok(Some(TemplateSource {
            path: path.to_path_buf(),
            text,
        }));
    }
    let Some(path) = tokenizer_config else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(path, Some(e.line()), format!("invalid JSON: {e}")))?;
    let text = match value.get("chat_template") {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Array(named)) => {
            let default = named
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"));
            match default
                .and_then(|t| t.get("template"))
                .and_then(|t| t.as_str())
            {
                Some(text) => text.to_string(),
                None => return Err(Error::input(
                    path,
                    None,
                    "`chat_template` is a list of named templates without one named `default`",
                )
                .with_hint(
                    "add a chat_template.jinja with the template that renders query/document pairs",
                )),
            }
        }
        Some(other) => {
            return Err(Error::input(
                path,
                None,
                format!("`chat_template` must be a string, found {other}"),
            ))
        }
    };
    Ok(Some(TemplateSource {
        path: path.to_path_buf(),
        text,
    }))
}

/// The special tokens transformers passes to every template render (`special_tokens_map`), read
/// from `tokenizer_config.json`: `bos_token`, `eos_token`, `unk_token`, `sep_token`, `pad_token`,
/// `cls_token`, `mask_token`, each a string or an `{"content": ...}` object.
pub fn special_tokens(tokenizer_config: Option<&Path>) -> Result<BTreeMap<String, String>> {
    let mut tokens = BTreeMap::new();
    let Some(path) = tokenizer_config else {
        return Ok(tokens);
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(path, Some(e.line()), format!("invalid JSON: {e}")))?;
    for key in [
        "bos_token",
        "eos_token",
        "unk_token",
        "sep_token",
        "pad_token",
        "cls_token",
        "mask_token",
    ] {
        let token = match value.get(key) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Object(o)) => o
                .get("content")
                .and_then(|c| c.as_str())
                .map(str::to_string),
            _ => None,
        };
        if let Some(token) = token {
            tokens.insert(key.to_string(), token);
        }
    }
    Ok(tokens)
}

/// transformers' `tojson` filter: Python's `json.dumps(x, ensure_ascii=False, indent=None)`, so
/// `", "` and `": "` separators and no HTML escaping (minijinja's own `tojson` escapes `<`, `>`).
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<String, minijinja::Error> {
    let _: Option<Value> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    if indent.as_ref().is_some_and(|i| !i.is_none()) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "tojson(indent=...) is not supported by crossdistill's template engine",
        ));
    }
    let mut out = String::new();
    write_json(value, &mut out)?;
    Ok(out)
}

fn write_json(value: &Value, out: &mut String) -> std::result::Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(i) = value.as_i64() {
                out.push_str(&i.to_string());
            } else {
                let f = f64::try_from(value.clone())?;
                // Python prints floats with a fraction or exponent (1.0, not 1).
                let text = format!("{f:?}");
                out.push_str(&text);
            }
        }
        ValueKind::String => {
            let text = serde_json::to_string(value.as_str().unwrap_or_default())
                .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            out.push_str(&text);
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json(&item, out)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let item = value.get_item(&key)?;
                write_json(&Value::from(key.to_string()), out)?;
                out.push_str(": ");
                write_json(&item, out)?;
            }
            out.push('}');
        }
        _ => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson cannot serialise a {} value", value.kind()),
            ))
        }
    }
    Ok(())
}

/// A chat template compiled for pair rendering, with the tokenizer, the truncation length and the
/// template's suffix (see the module docs for the exact semantics).
pub struct PairPrompter {
    env: Environment<'static>,
    source: TemplateSource,
    format: MessageFormat,
    special_tokens: BTreeMap<String, String>,
    tokenizer: Tokenizer,
    max_length: usize,
    suffix: Vec<u32>,
}

impl std::fmt::Debug for PairPrompter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairPrompter")
            .field("template", &self.source.path)
            .field("format", &self.format)
            .field("max_length", &self.max_length)
            .field("suffix", &self.suffix)
            .finish()
    }
}

const TEMPLATE_NAME: &str = "chat_template";

/// The probes of sentence-transformers' `pair_roles_failure`: a baseline, then one pair per role
/// that varies only that role's content.
const PAIR_ROLE_PROBES: [(&str, &str); 3] = [
    ("alpha", "bravo"),
    ("charlie", "bravo"),
    ("alpha", "foxtrot"),
];

impl PairPrompter {
    /// Compile `source` and check that it carries a pair. `tokenizer` loses any padding or
    /// truncation baked into tokenizer.json (this type pads and truncates itself).
    pub fn new(
        source: TemplateSource,
        format: MessageFormat,
        special_tokens: BTreeMap<String, String>,
        mut tokenizer: Tokenizer,
        max_length: usize,
    ) -> Result<Self> {
        if max_length == 0 {
            return Err(Error::invalid("max_length must be at least 1, found 0"));
        }
        tokenizer.with_padding(None::<PaddingParams>);
        tokenizer.with_truncation(None).map_err(Error::Tokenizer)?;
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| Error::invalid(format!("chat template syntax: {e}")))?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(TEMPLATE_NAME, source.text.clone())
            .map_err(|e| {
                Error::input(
                    &source.path,
                    e.line(),
                    format!("cannot compile the chat template: {e}"),
                )
                .with_hint(
                    "the template must be Jinja that transformers' apply_chat_template accepts",
                )
            })?;
        let mut prompter = Self {
            env,
            source,
            format,
            special_tokens,
            tokenizer,
            max_length,
            suffix: Vec::new(),
        };
        prompter.check_pair_roles()?;
        prompter.suffix = prompter.derive_suffix()?;
        Ok(prompter)
    }

    /// The template's text (part of the teacher fingerprint).
    pub fn template_text(&self) -> &str {
        &self.source.text
    }

    /// The message format used.
    pub fn format(&self) -> MessageFormat {
        self.format
    }

    /// The truncation length in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The template's closing tokens that truncation restores (may be empty).
    pub fn suffix(&self) -> &[u32] {
        &self.suffix
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn message(&self, role: &str, text: &str) -> Value {
        let content = match self.format {
            MessageFormat::Flat => Value::from(text),
            MessageFormat::Structured => {
                let part: BTreeMap<&str, Value> =
                    [("type", Value::from("text")), ("text", Value::from(text))].into();
                Value::from(vec![Value::from(part)])
            }
        };
        let message: BTreeMap<&str, Value> =
            [("role", Value::from(role)), ("content", content)].into();
        Value::from(message)
    }

    /// The prompt text of one pair.
    pub fn render(&self, query: &str, document: &str) -> Result<String> {
        let messages = vec![
            self.message("query", query),
            self.message("document", document),
        ];
        let mut context: BTreeMap<String, Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        context.insert("messages".into(), Value::from(messages));
        context.insert("add_generation_prompt".into(), Value::from(false));
        context.insert("tools".into(), Value::from(()));
        context.insert("documents".into(), Value::from(()));
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| self.render_error(e))?;
        template
            .render(Value::from(context))
            .map_err(|e| self.render_error(e))
    }

    fn render_error(&self, e: minijinja::Error) -> Error {
        let mut message = format!("cannot render a query/document pair: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        Error::input(&self.source.path, e.line(), message)
            .with_hint("the template must render messages with the `query` and `document` roles (sentence-transformers 6's pair layout)")
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(Error::Tokenizer)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// sentence-transformers' `pair_roles_failure`: both roles' content must reach the prompt.
    fn check_pair_roles(&self) -> Result<()> {
        let mut renders = Vec::new();
        for (query, document) in PAIR_ROLE_PROBES {
            renders.push(self.render(query, document)?);
        }
        let dropped: Vec<&str> = ["query", "document"]
            .iter()
            .zip(&renders[1..])
            .filter(|(_, render)| **render == renders[0])
            .map(|(role, _)| *role)
            .collect();
        if dropped.is_empty() {
            return Ok(());
        }
        let roles = dropped
            .iter()
            .map(|r| format!("'{r}'"))
            .collect::<Vec<_>>()
            .join(" and ");
        Err(Error::input(
            &self.source.path,
            None,
            format!("the chat template cannot carry a 'query'/'document' pair: the {roles} content does not reach the rendered prompt"),
        )
        .with_hint("give the model a chat_template.jinja that renders both roles, e.g. `<Query>: {{ messages | selectattr(\"role\", \"eq\", \"query\") | map(attribute=\"content\") | first }}` and the same for \"document\""))
    }

    /// sentence-transformers' `_chat_template_suffix_ids` for a pair (no system message, so one
    /// suffix serves every pair).
    fn derive_suffix(&self) -> Result<Vec<u32>> {
        let first = self.tokenize(&self.render("0", "0")?)?;
        let second = self.tokenize(&self.render("1 2 3 4", "1 2 3 4")?)?;
        let count = first
            .iter()
            .rev()
            .zip(second.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        if count > 0 && count < first.len().min(second.len()) {
            Ok(first[first.len() - count..].to_vec())
        } else {
            Ok(Vec::new())
        }
    }

    /// Token ids of one pair: rendered, tokenised without special tokens, right-truncated to
    /// `max_length`, the suffix restored on rows that reached `max_length`.
    pub fn encode(&self, query: &str, document: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenize(&self.render(query, document)?)?;
        ids.truncate(self.max_length);
        if ids.len() >= self.max_length {
            let keep = self.suffix.len().min(ids.len());
            let start = ids.len() - keep;
            ids[start..].copy_from_slice(&self.suffix[self.suffix.len() - keep..]);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_format_follows_sentence_transformers_patterns() {
        assert_eq!(
            MessageFormat::infer("{{ message.content }}"),
            MessageFormat::Flat
        );
        assert_eq!(
            MessageFormat::infer("{{ message.content[0].text }}"),
            MessageFormat::Structured
        );
        assert_eq!(
            MessageFormat::infer("{% if item.type == 'text' %}"),
            MessageFormat::Structured
        );
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let env = Environment::new();
        let mut env = env;
        env.add_filter("tojson", tojson);
        let out = env
            .render_str(
                "{{ x | tojson }}",
                minijinja::context! { x => minijinja::context! { a => vec![1, 2], b => "<é\"" , c => 1.5, d => () } },
            )
            .unwrap();
        // json.dumps({"a": [1, 2], "b": "<é\"", "c": 1.5, "d": None}, ensure_ascii=False)
        assert_eq!(out, r#"{"a": [1, 2], "b": "<é\"", "c": 1.5, "d": null}"#);
    }
}
