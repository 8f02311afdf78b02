//! `crossdistill predict`: score JSONL pairs, write the rows back with `score` added.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde_json::{Map, Value};

use super::progress;
use super::Outcome;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic_with;
use crate::model::{parse_device, LoadOptions, PairScorer, Precision, ScoreActivation};
use crate::teacher::{load_pair_scorer, OnnxDevice, OnnxTeacher};

/// Which activation to apply to the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActivationArg {
    /// The model's own (config.json `sentence_transformers.activation_fn`; sigmoid for one label when unset).
    Default,
    /// Raw logits.
    Identity,
    /// Sigmoid.
    Sigmoid,
}

impl ActivationArg {
    /// Resolve against a model's default.
    pub fn resolve(self, default: ScoreActivation) -> ScoreActivation {
        match self {
            ActivationArg::Default => default,
            ActivationArg::Identity => ScoreActivation::Identity,
            ActivationArg::Sigmoid => ScoreActivation::Sigmoid,
        }
    }
}

/// The precision of inference (`--dtype`): scores come out in f32 whatever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// 32-bit floats.
    F32,
    /// bfloat16 (GPUs with bf16 support).
    Bf16,
    /// IEEE half precision.
    F16,
}

impl DtypeArg {
    /// The model precision.
    pub fn precision(self) -> Precision {
        match self {
            DtypeArg::F32 => Precision::F32,
            DtypeArg::Bf16 => Precision::Bf16,
            DtypeArg::F16 => Precision::F16,
        }
    }
}

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// crossdistill's own candle encoder (model.safetensors).
    Candle,
    /// ONNX Runtime (the `--onnx-file` export; needs onnxruntime 1.31+; `--device cuda:N`
    /// needs onnxruntime-gpu).
    Onnx,
}

/// Arguments of `predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model directory or Hugging Face hub id.
    #[arg(long)]
    pub model: String,
    /// JSONL rows with `query` and `passage`, or a two-element `pair` array.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the scored rows (default: standard output).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Activation applied to the logits.
    #[arg(long, value_enum, default_value = "default")]
    pub activation: ActivationArg,
    /// Inference engine.
    #[arg(long, value_enum, default_value = "candle")]
    pub backend: Backend,
    /// The ONNX file, relative to the model directory (`--backend onnx`).
    #[arg(long, default_value = "model.onnx")]
    pub onnx_file: String,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Truncation length in tokens (default: the model's).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision of the forward pass (`--backend candle`; BERT, XLM-R, ELECTRA, ModernBERT).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
}

/// One input row: the original object and the pair it holds.
#[derive(Debug, Clone)]
pub struct PairRow {
    /// The row as read (keys in their order).
    pub object: Map<String, Value>,
    /// (query, passage).
    pub pair: (String, String),
    /// Line in the input file (1-based).
    pub line: usize,
}

fn text_field(
    object: &Map<String, Value>,
    key: &str,
    path: &Path,
    line: usize,
) -> Result<Option<String>> {
    match object.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::input(
            path,
            Some(line),
            format!("`{key}` must be a string, found {other}"),
        )),
    }
}

/// Parse one JSONL line into a pair row.
pub fn parse_pair_row(text: &str, path: &Path, line: usize) -> Result<PairRow> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::input(path, Some(line), format!("invalid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(Error::input(
            path,
            Some(line),
            format!("expected a JSON object, found {}", short(&value)),
        ));
    };
    if let Some(pair) = object.get("pair") {
        let texts = pair
            .as_array()
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_str()?.to_string(), a[1].as_str()?.to_string())));
        return match texts {
            Some(pair) => Ok(PairRow { object, pair, line }),
            None => Err(Error::input(
                path,
                Some(line),
                format!(
                    "`pair` must be an array of two strings, found {}",
                    short(pair)
                ),
            )),
        };
    }
    let query = text_field(&object, "query", path, line)?;
    let passage = text_field(&object, "passage", path, line)?;
    match (query, passage) {
        (Some(query), Some(passage)) => Ok(PairRow {
            object,
            pair: (query, passage),
            line,
        }),
        _ => {
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            Err(Error::input(
                path,
                Some(line),
                format!(
                    "expected `query` and `passage` (or a two-element `pair`), found keys {keys:?}"
                ),
            )
            .with_hint("each line must look like {\"query\": \"...\", \"passage\": \"...\"}"))
        }
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 60 {
        format!(
            "{}...",
            &text[..text.char_indices().nth(57).map_or(text.len(), |(i, _)| i)]
        )
    } else {
        text
    }
}

/// Read every pair row of a JSONL file (blank lines skipped).
pub fn read_pair_rows(path: &Path) -> Result<Vec<PairRow>> {
    let mut rows = Vec::new();
    for line in crate::data::numbered_lines(path)? {
        let (line_number, line) = line?;
        if line.trim().is_empty() {
            continue;
        }
        rows.push(parse_pair_row(&line, path, line_number)?);
    }
    if rows.is_empty() {
        return Err(Error::input(
            path,
            None,
            "no rows found; expected JSONL with query/passage pairs",
        ));
    }
    Ok(rows)
}

/// Score `rows` (read from `input`) and return them with `score` added (a number, or a list for
/// several labels). A non-finite score is an error naming the rows that got one: JSON has no
/// NaN, and a score of NaN is no ranking.
pub fn score_rows(
    model: &dyn PairScorer,
    input: &Path,
    rows: Vec<PairRow>,
    batch_size: usize,
    activation: ScoreActivation,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<Value>> {
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.pair.0.as_str(), r.pair.1.as_str()))
        .collect();
    let logits = model.predict_logits(&pairs, batch_size, on_batch)?;
    attach_scores(rows, logits, activation, input)
}

/// `rows` with `score` added from their `logits` (one number, or a list for several labels); an
/// error naming the rows of `input` whose scores are not finite.
fn attach_scores(
    rows: Vec<PairRow>,
    logits: Vec<Vec<f32>>,
    activation: ScoreActivation,
    input: &Path,
) -> Result<Vec<Value>> {
    let bad: Vec<usize> = rows
        .iter()
        .zip(&logits)
        .filter(|(_, logits)| logits.iter().any(|&x| !activation.apply(x).is_finite()))
        .map(|(row, _)| row.line)
        .collect();
    if let Some(&first) = bad.first() {
        let row = rows.iter().find(|r| r.line == first).map(|r| &r.pair);
        return Err(Error::input(
            input,
            Some(first),
            format!(
                "the model scores the pair {:?} as {:?}: not a finite number ({} of {} rows, at lines {:?})",
                row.unwrap_or(&(String::new(), String::new())),
                logits[rows.iter().position(|r| r.line == first).unwrap_or(0)],
                bad.len(),
                rows.len(),
                &bad[..bad.len().min(20)],
            ),
        )
        .with_hint("the model's weights or its export hold non-finite values (NaN/inf): check or retrain it"));
    }
    Ok(rows
        .into_iter()
        .zip(logits)
        .map(|(row, logits)| {
            let mut object = row.object;
            let score = if logits.len() == 1 {
                Value::from(activation.apply(logits[0]) as f64)
            } else {
                Value::from(
                    logits
                        .iter()
                        .map(|&x| activation.apply(x) as f64)
                        .collect::<Vec<_>>(),
                )
            };
            object.insert("score".into(), score);
            Value::Object(object)
        })
        .collect())
}

/// Score the input rows with ONNX Runtime (`--backend onnx`).
fn score_rows_onnx(args: &PredictArgs) -> Result<Vec<Value>> {
    if args.dtype != DtypeArg::F32 {
        return Err(Error::invalid(format!(
            "--backend onnx runs the exported graph in its own precision, found --dtype {}",
            args.dtype.precision()
        ))
        .with_hint("drop --dtype, or use --backend candle for bf16/f16"));
    }
    let mut teacher = OnnxTeacher::new_on(
        &args.model,
        &args.onnx_file,
        args.max_length,
        args.batch_size,
        None,
        None,
        OnnxDevice::parse(&args.device)?,
    )?;
    let rows = read_pair_rows(&args.input)?;
    let activation = args.activation.resolve(teacher.default_activation());
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.pair.0.as_str(), r.pair.1.as_str()))
        .collect();
    let bar = progress::bar(rows.len() as u64, "pairs");
    let logits = teacher.predict_logits(&pairs, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    attach_scores(rows, logits, activation, &args.input)
}

pub(super) fn run(args: PredictArgs) -> Result<Outcome> {
    let scored = match args.backend {
        Backend::Candle => {
            let device = parse_device(&args.device)?;
            args.dtype.precision().check_device(&device, "--dtype")?;
            let options = LoadOptions {
                device,
                max_length: args.max_length,
                dtype: args.dtype.precision(),
                ..LoadOptions::default()
            };
            let model = load_pair_scorer(&args.model, None, &options)?;
            let rows = read_pair_rows(&args.input)?;
            let activation = args.activation.resolve(model.default_activation());
            let bar = progress::bar(rows.len() as u64, "pairs");
            let scored = score_rows(
                model.as_ref(),
                &args.input,
                rows,
                args.batch_size,
                activation,
                &mut |n| bar.inc(n as u64),
            )?;
            bar.finish_and_clear();
            scored
        }
        Backend::Onnx => score_rows_onnx(&args)?,
    };
    let write = |out: &mut dyn Write| -> std::io::Result<()> {
        for row in &scored {
            serde_json::to_writer(&mut *out, row)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    };
    match &args.output {
        Some(path) => write_atomic_with(path, |file| {
            let mut writer = std::io::BufWriter::new(file);
            write(&mut writer)?;
            writer.flush()
        })?,
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            write(&mut lock).map_err(|e| Error::io("cannot write", "<stdout>", e))?;
        }
    }
    Ok(Outcome::Success)
}
