//! BEIR folders and TREC run files, and the reranking samples built from them.
//!
//! A BEIR folder holds `corpus.jsonl` (`{"_id", "title", "text"}` per line, `title` optional),
//! `queries.jsonl` (`{"_id", "text"}`) and `qrels/{split}.tsv` (`query-id  corpus-id  score`,
//! tab-separated, with or without BEIR's header line; the four-column TREC qrels layout
//! `query-id 0 corpus-id score` is accepted too). Other keys (`metadata`, ...) are ignored; ids
//! may be JSON strings or integers. Every malformed line is an error naming the file and line.
//!
//! [`reranking_samples`] turns a dataset and a first stage ([`FirstStage`]: BM25 or a TREC run)
//! into [`RerankingSample`]s in documents mode: the positives are the judged documents with
//! grade >= `min_grade`, the documents are the first stage's top `top_k`, as
//! `CrossEncoderNanoBEIREvaluator` builds them from its BM25 rankings.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::bm25::{Bm25Config, Bm25Index};
use super::metrics::{Candidates, RerankingSample};
use crate::error::{Error, Result};

/// One corpus document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeirDocument {
    /// `_id`.
    pub id: String,
    /// `title` (empty when absent).
    pub title: String,
    /// `text`.
    pub text: String,
}

impl BeirDocument {
    /// The text a reranker sees and BM25 indexes: `title + " " + text`, trimmed, as BEIR's
    /// reranker joins them (just `text` when the title is empty).
    pub fn full_text(&self) -> String {
        format!("{} {}", self.title, self.text).trim().to_string()
    }
}

/// One query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeirQuery {
    /// `_id`.
    pub id: String,
    /// `text`.
    pub text: String,
}

/// One relevance judgment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgment {
    /// The judged document's id.
    pub doc_id: String,
    /// Its graded relevance (`score` column).
    pub grade: i64,
}

/// A BEIR dataset split, read by [`BeirDataset::read`].
#[derive(Debug, Clone)]
pub struct BeirDataset {
    /// The documents, in file order.
    pub corpus: Vec<BeirDocument>,
    /// The queries, in file order.
    pub queries: Vec<BeirQuery>,
    /// Query id → its judgments in file order (a repeated pair keeps its first position and its
    /// last grade, as BEIR's dict does).
    pub qrels: HashMap<String, Vec<Judgment>>,
    doc_positions: HashMap<String, usize>,
}

fn read_lines(path: &Path) -> Result<impl Iterator<Item = Result<(usize, String)>> + '_> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    Ok(std::io::BufReader::new(file)
        .lines()
        .enumerate()
        .map(move |(index, line)| match line {
            Ok(line) => Ok((index + 1, line)),
            Err(e) => Err(Error::io("cannot read", path, e)),
        })
        .filter(|item| !matches!(item, Ok((_, line)) if line.trim().is_empty())))
}

fn parse_object(
    path: &Path,
    line_number: usize,
    line: &str,
) -> Result<serde_json::Map<String, Value>> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(Error::input(
            path,
            Some(line_number),
            format!(
                "expected a JSON object per line, found {}",
                json_kind(&other)
            ),
        )),
        Err(e) => Err(
            Error::input(path, Some(line_number), format!("invalid JSON: {e}")).with_hint(
                "each line must be one JSON object, e.g. {\"_id\": \"d1\", \"text\": \"...\"}",
            ),
        ),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `_id` as a string: JSON strings as they are, integers in decimal.
fn id_field(path: &Path, line: usize, object: &serde_json::Map<String, Value>) -> Result<String> {
    match object.get("_id") {
        Some(Value::String(id)) => Ok(id.clone()),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => Ok(number.to_string()),
        Some(other) => Err(Error::input(
            path,
            Some(line),
            format!(
                "\"_id\" must be a string or an integer, found {}",
                json_kind(other)
            ),
        )),
        None => Err(
            Error::input(path, Some(line), "missing \"_id\"").with_hint(format!(
                "each line needs \"_id\"; found the keys {:?}",
                object.keys().collect::<Vec<_>>()
            )),
        ),
    }
}

fn text_field(
    path: &Path,
    line: usize,
    object: &serde_json::Map<String, Value>,
    key: &str,
    required: bool,
) -> Result<String> {
    match object.get(key) {
        Some(Value::String(text)) => Ok(text.clone()),
        None | Some(Value::Null) if !required => Ok(String::new()),
        Some(other) => Err(Error::input(
            path,
            Some(line),
            format!("\"{key}\" must be a string, found {}", json_kind(other)),
        )),
        None => Err(
            Error::input(path, Some(line), format!("missing \"{key}\"")).with_hint(format!(
                "each line needs \"_id\" and \"{key}\"; found the keys {:?}",
                object.keys().collect::<Vec<_>>()
            )),
        ),
    }
}

fn duplicate_id(path: &Path, line: usize, id: &str, first_line: usize) -> Error {
    Error::input(
        path,
        Some(line),
        format!("id {id:?} already appears on line {first_line}; ids must be unique"),
    )
}

/// Read a BEIR `corpus.jsonl`. Errors name the file and line of a malformed or duplicate entry.
pub fn read_corpus(path: &Path) -> Result<Vec<BeirDocument>> {
    let mut corpus = Vec::new();
    let mut first_lines: HashMap<String, usize> = HashMap::new();
    for item in read_lines(path)? {
        let (line, text) = item?;
        let object = parse_object(path, line, &text)?;
        let id = id_field(path, line, &object)?;
        if let Some(&first) = first_lines.get(&id) {
            return Err(duplicate_id(path, line, &id, first));
        }
        first_lines.insert(id.clone(), line);
        corpus.push(BeirDocument {
            title: text_field(path, line, &object, "title", false)?,
            text: text_field(path, line, &object, "text", true)?,
            id,
        });
    }
    Ok(corpus)
}

/// Read a BEIR `queries.jsonl`. Errors name the file and line of a malformed or duplicate entry.
pub fn read_queries(path: &Path) -> Result<Vec<BeirQuery>> {
    let mut queries = Vec::new();
    let mut first_lines: HashMap<String, usize> = HashMap::new();
    for item in read_lines(path)? {
        let (line, text) = item?;
        let object = parse_object(path, line, &text)?;
        let id = id_field(path, line, &object)?;
        if let Some(&first) = first_lines.get(&id) {
            return Err(duplicate_id(path, line, &id, first));
        }
        first_lines.insert(id.clone(), line);
        queries.push(BeirQuery {
            text: text_field(path, line, &object, "text", true)?,
            id,
        });
    }
    Ok(queries)
}

/// One line of a qrels file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrelsLine {
    /// 1-based line in the file.
    pub line: usize,
    /// The query id.
    pub query_id: String,
    /// The judgment.
    pub judgment: Judgment,
}

/// Split on tabs when the line has one, else on runs of whitespace.
fn fields(line: &str) -> Vec<&str> {
    if line.contains('\t') {
        line.split('\t').map(str::trim).collect()
    } else {
        line.split_whitespace().collect()
    }
}

/// Read a qrels file: `query-id corpus-id score` (BEIR, tab-separated, optional header line) or
/// `query-id iteration corpus-id score` (TREC). The first line is taken as a header when its
/// score column is not an integer.
pub fn read_qrels(path: &Path) -> Result<Vec<QrelsLine>> {
    let mut qrels = Vec::new();
    let mut first = true;
    for item in read_lines(path)? {
        let (line, text) = item?;
        let columns = fields(&text);
        let (query_id, doc_id, grade) = match columns.as_slice() {
            [query_id, doc_id, grade] | [query_id, _, doc_id, grade] => {
                (*query_id, *doc_id, *grade)
            }
            _ => {
                return Err(Error::input(
                    path,
                    Some(line),
                    format!(
                        "expected 3 columns (query-id, corpus-id, score) or 4 (TREC: query-id, \
                         iteration, corpus-id, score), found {}: {text:?}",
                        columns.len()
                    ),
                ))
            }
        };
        let is_first = std::mem::replace(&mut first, false);
        let grade = match grade.parse::<i64>() {
            Ok(grade) => grade,
            Err(_) if is_first => continue, // the header line, e.g. "query-id\tcorpus-id\tscore"
            Err(_) => {
                return Err(Error::input(
                    path,
                    Some(line),
                    format!("the score column is {grade:?}; expected an integer relevance grade"),
                ))
            }
        };
        if query_id.is_empty() || doc_id.is_empty() {
            return Err(Error::input(
                path,
                Some(line),
                format!("empty query or corpus id in {text:?}"),
            ));
        }
        qrels.push(QrelsLine {
            line,
            query_id: query_id.to_string(),
            judgment: Judgment {
                doc_id: doc_id.to_string(),
                grade,
            },
        });
    }
    Ok(qrels)
}

/// The splits a BEIR folder has: the stems of `qrels/*.tsv`, sorted.
pub fn splits(dir: &Path) -> Result<Vec<String>> {
    let qrels_dir = dir.join("qrels");
    let entries =
        std::fs::read_dir(&qrels_dir).map_err(|e| Error::io("cannot list", &qrels_dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io("cannot list", &qrels_dir, e))?
            .path();
        if path.extension().is_some_and(|ext| ext == "tsv") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

impl BeirDataset {
    /// Read `dir/corpus.jsonl`, `dir/queries.jsonl` and `dir/qrels/{split}.tsv`.
    ///
    /// Errors on a malformed line (file and line), a missing file (the hint lists the splits
    /// that exist), and a qrels line naming a query or document that the folder does not have.
    pub fn read(dir: impl AsRef<Path>, split: &str) -> Result<Self> {
        let dir = dir.as_ref();
        let qrels_file = qrels_path(dir, split);
        if !qrels_file.is_file() {
            let available = splits(dir).unwrap_or_default();
            return Err(Error::invalid(format!(
                "BEIR folder {}: no qrels file for split {split:?} ({} does not exist)",
                dir.display(),
                qrels_file.display()
            ))
            .with_hint(if available.is_empty() {
                "a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv".to_string()
            } else {
                format!("the splits here are {available:?}")
            }));
        }
        let corpus = read_corpus(&dir.join("corpus.jsonl"))?;
        let queries = read_queries(&dir.join("queries.jsonl"))?;
        let doc_positions: HashMap<String, usize> = corpus
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), i))
            .collect();
        let query_ids: std::collections::HashSet<&str> =
            queries.iter().map(|q| q.id.as_str()).collect();

        let mut qrels: HashMap<String, Vec<Judgment>> = HashMap::new();
        for QrelsLine {
            line,
            query_id,
            judgment,
        } in read_qrels(&qrels_file)?
        {
            if !query_ids.contains(query_id.as_str()) {
                return Err(Error::input(
                    &qrels_file,
                    Some(line),
                    format!("query id {query_id:?} is not in queries.jsonl"),
                )
                .with_hint("add the query to queries.jsonl or remove its judgments"));
            }
            if !doc_positions.contains_key(&judgment.doc_id) {
                return Err(Error::input(
                    &qrels_file,
                    Some(line),
                    format!("corpus id {:?} is not in corpus.jsonl", judgment.doc_id),
                )
                .with_hint("add the document to corpus.jsonl or remove the judgment"));
            }
            let judgments = qrels.entry(query_id).or_default();
            match judgments.iter_mut().find(|j| j.doc_id == judgment.doc_id) {
                Some(existing) => existing.grade = judgment.grade,
                None => judgments.push(judgment),
            }
        }
        Ok(BeirDataset {
            corpus,
            queries,
            qrels,
            doc_positions,
        })
    }

    /// The position in [`Self::corpus`] of document `id`.
    pub fn document_position(&self, id: &str) -> Option<usize> {
        self.doc_positions.get(id).copied()
    }

    /// A BM25 index over [`BeirDocument::full_text`] of the corpus, document `i` = `corpus[i]`.
    pub fn bm25_index(&self, config: Bm25Config) -> Result<Bm25Index> {
        let texts: Vec<String> = self.corpus.iter().map(BeirDocument::full_text).collect();
        Bm25Index::build(&texts, config)
    }
}

/// One retrieved document of a TREC run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    /// The document id.
    pub doc_id: String,
    /// The rank column as written.
    pub rank: i64,
    /// The score column.
    pub score: f64,
}

/// A TREC run file (`qid Q0 docid rank score tag` per line): each query's ranking, best first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrecRun {
    rankings: BTreeMap<String, Vec<RunEntry>>,
}

impl TrecRun {
    /// Read a run file. Each query's documents are ordered by descending score, then ascending
    /// rank column, then file order. Errors name the file and line of a malformed line.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut rankings: BTreeMap<String, Vec<RunEntry>> = BTreeMap::new();
        for item in read_lines(path)? {
            let (line, text) = item?;
            let columns: Vec<&str> = text.split_whitespace().collect();
            let [query_id, _q0, doc_id, rank, score, _tag] = columns.as_slice() else {
                return Err(Error::input(
                    path,
                    Some(line),
                    format!(
                        "expected 6 columns (qid Q0 docid rank score tag), found {}: {text:?}",
                        columns.len()
                    ),
                ));
            };
            let rank = rank.parse::<i64>().map_err(|_| {
                Error::input(
                    path,
                    Some(line),
                    format!("the rank column is {rank:?}; expected an integer"),
                )
            })?;
            let score = score
                .parse::<f64>()
                .ok()
                .filter(|s| !s.is_nan())
                .ok_or_else(|| {
                    Error::input(
                        path,
                        Some(line),
                        format!("the score column is {score:?}; expected a number"),
                    )
                })?;
            rankings
                .entry(query_id.to_string())
                .or_default()
                .push(RunEntry {
                    doc_id: doc_id.to_string(),
                    rank,
                    score,
                });
        }
        for ranking in rankings.values_mut() {
            ranking.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.rank.cmp(&b.rank)));
        }
        Ok(TrecRun { rankings })
    }

    /// The ranking of `query_id`, best first; empty when the run has no line for it.
    pub fn ranking(&self, query_id: &str) -> &[RunEntry] {
        self.rankings.get(query_id).map_or(&[], Vec::as_slice)
    }

    /// The query ids of the run, sorted.
    pub fn query_ids(&self) -> impl Iterator<Item = &str> {
        self.rankings.keys().map(String::as_str)
    }
}

/// Where the candidate documents come from.
#[derive(Debug, Clone, Copy)]
pub enum FirstStage<'a> {
    /// BM25 over the dataset's corpus (built with [`BeirDataset::bm25_index`]), queried with the
    /// query text.
    Bm25(&'a Bm25Index),
    /// A precomputed run (e.g. from a dense retriever), looked up by query id.
    Run(&'a TrecRun),
}

/// How to build reranking samples from a BEIR split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleOptions {
    /// Candidates per query (ST's NanoBEIR `rerank_k`, default 100).
    pub top_k: usize,
    /// The lowest grade that counts as relevant (default 1).
    pub min_grade: i64,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            top_k: 100,
            min_grade: 1,
        }
    }
}

/// The samples built from a BEIR split.
#[derive(Debug, Clone, PartialEq)]
pub struct BeirSamples {
    /// `query_ids[i]` is the query of `samples[i]`.
    pub query_ids: Vec<String>,
    /// Documents-mode samples.
    pub samples: Vec<RerankingSample>,
    /// Judged queries left out because no judgment reaches `min_grade`.
    pub without_positive: Vec<String>,
}

/// Documents-mode reranking samples, one per judged query (in `queries.jsonl` order) with at
/// least one judgment of grade >= `min_grade`: `positive` = those documents' texts (qrels
/// order), `documents` = the first stage's top `top_k` texts, best first. Texts are
/// [`BeirDocument::full_text`]. Queries without judgments are not evaluated (as BEIR);
/// judged queries without a positive are listed in [`BeirSamples::without_positive`].
///
/// Errors when `top_k` is 0, the BM25 index was not built over this corpus, or the run names a
/// document the corpus lacks.
pub fn reranking_samples(
    dataset: &BeirDataset,
    first_stage: FirstStage<'_>,
    options: SampleOptions,
) -> Result<BeirSamples> {
    if options.top_k == 0 {
        return Err(Error::invalid(
            "top_k is 0; need at least one candidate per query",
        ));
    }
    if let FirstStage::Bm25(index) = first_stage {
        if index.num_docs() != dataset.corpus.len() {
            return Err(Error::invalid(format!(
                "the BM25 index has {} documents but the corpus has {}",
                index.num_docs(),
                dataset.corpus.len()
            ))
            .with_hint("build the index with BeirDataset::bm25_index on the same dataset"));
        }
    }
    let mut out = BeirSamples {
        query_ids: Vec::new(),
        samples: Vec::new(),
        without_positive: Vec::new(),
    };
    for query in &dataset.queries {
        let Some(judgments) = dataset.qrels.get(&query.id) else {
            continue;
        };
        let positive: Vec<String> = judgments
            .iter()
            .filter(|j| j.grade >= options.min_grade)
            .filter_map(|j| dataset.document_position(&j.doc_id))
            .map(|position| dataset.corpus[position].full_text())
            .collect();
        if positive.is_empty() {
            out.without_positive.push(query.id.clone());
            continue;
        }
        let positions: Vec<usize> = match first_stage {
            FirstStage::Bm25(index) => index
                .top_k(&query.text, options.top_k)
                .into_iter()
                .map(|(position, _)| position)
                .collect(),
            FirstStage::Run(run) => run
                .ranking(&query.id)
                .iter()
                .take(options.top_k)
                .map(|entry| {
                    dataset.document_position(&entry.doc_id).ok_or_else(|| {
                        Error::invalid(format!(
                            "the run ranks document {:?} for query {:?}, but the corpus has no such id",
                            entry.doc_id, query.id
                        ))
                        .with_hint("use the run made for this corpus")
                    })
                })
                .collect::<Result<_>>()?,
        };
        out.query_ids.push(query.id.clone());
        out.samples.push(RerankingSample {
            query: query.text.clone(),
            positive,
            candidates: Candidates::Documents(
                positions
                    .into_iter()
                    .map(|position| dataset.corpus[position].full_text())
                    .collect(),
            ),
        });
    }
    Ok(out)
}

/// The path of a BEIR split's qrels file (`dir/qrels/{split}.tsv`).
pub fn qrels_path(dir: impl AsRef<Path>, split: &str) -> PathBuf {
    dir.as_ref().join("qrels").join(format!("{split}.tsv"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A tiny BEIR folder: 4 documents (one with a title, one with an integer id), 3 queries,
    /// qrels with BEIR's header, a grade-0 judgment and a repeated pair.
    fn tiny_beir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "corpus.jsonl",
            concat!(
                r#"{"_id": "d1", "title": "Cats", "text": "The cat sat on the mat.", "metadata": {}}"#,
                "\n",
                r#"{"_id": "d2", "title": "", "text": "Dogs bark at night."}"#,
                "\n",
                "\n",
                r#"{"_id": 3, "text": "Rust compiles to machine code."}"#,
                "\n",
                r#"{"_id": "d4", "title": "", "text": "A cat and a dog."}"#,
                "\n",
            ),
        );
        write(
            dir.path(),
            "queries.jsonl",
            concat!(
                r#"{"_id": "q1", "text": "where did the cat sit", "metadata": {}}"#,
                "\n",
                r#"{"_id": "q2", "text": "rust compiler"}"#,
                "\n",
                r#"{"_id": "q3", "text": "unjudged query"}"#,
                "\n",
                r#"{"_id": "q4", "text": "dog"}"#,
                "\n",
            ),
        );
        write(
            dir.path(),
            "qrels/test.tsv",
            "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td4\t1\nq2\t3\t1\nq4\td2\t0\nq1\td4\t0\n",
        );
        write(dir.path(), "qrels/dev.tsv", "q2\t3\t1\n");
        dir
    }

    #[test]
    fn reads_a_beir_folder() {
        let dir = tiny_beir();
        let dataset = BeirDataset::read(dir.path(), "test").unwrap();
        assert_eq!(dataset.corpus.len(), 4);
        assert_eq!(
            dataset.corpus[0].full_text(),
            "Cats The cat sat on the mat."
        );
        assert_eq!(dataset.corpus[1].full_text(), "Dogs bark at night.");
        assert_eq!(dataset.corpus[2].id, "3");
        assert_eq!(dataset.document_position("d4"), Some(3));
        assert_eq!(dataset.queries.len(), 4);
        // The repeated (q1, d4) keeps its place and takes the last grade; the header is skipped.
        assert_eq!(
            dataset.qrels["q1"],
            vec![
                Judgment {
                    doc_id: "d1".into(),
                    grade: 2
                },
                Judgment {
                    doc_id: "d4".into(),
                    grade: 0
                },
            ]
        );
        assert_eq!(splits(dir.path()).unwrap(), ["dev", "test"]);
        // Without a header.
        let dev = BeirDataset::read(dir.path(), "dev").unwrap();
        assert_eq!(dev.qrels.len(), 1);
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tiny_beir();
        let err = BeirDataset::read(dir.path(), "train")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("split \"train\"") && err.contains("[\"dev\", \"test\"]"),
            "{err}"
        );

        write(dir.path(), "qrels/bad.tsv", "q1\td1\t1\nq1\td1\tx\n");
        let err = BeirDataset::read(dir.path(), "bad")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.tsv:2") && err.contains("\"x\""), "{err}");
        write(dir.path(), "qrels/bad.tsv", "q1\td1\n");
        let err = BeirDataset::read(dir.path(), "bad")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.tsv:1") && err.contains("found 2"),
            "{err}"
        );
        write(dir.path(), "qrels/bad.tsv", "q1\td1\t1\nq9\td1\t1\n");
        let err = BeirDataset::read(dir.path(), "bad")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.tsv:2") && err.contains("\"q9\" is not in queries.jsonl"),
            "{err}"
        );
        write(dir.path(), "qrels/bad.tsv", "q1\td9\t1\n");
        let err = BeirDataset::read(dir.path(), "bad")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.tsv:1") && err.contains("\"d9\" is not in corpus.jsonl"),
            "{err}"
        );

        let corpus = dir.path().join("corpus.jsonl");
        std::fs::write(
            &corpus,
            "{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"b\"}\n",
        )
        .unwrap();
        let err = read_corpus(&corpus).unwrap_err().to_string();
        assert!(
            err.contains("corpus.jsonl:2") && err.contains("missing \"text\""),
            "{err}"
        );
        std::fs::write(
            &corpus,
            "{\"_id\": \"a\", \"text\": \"x\"}\n\n{\"_id\": \"a\", \"text\": \"y\"}\n",
        )
        .unwrap();
        let err = read_corpus(&corpus).unwrap_err().to_string();
        assert!(
            err.contains("corpus.jsonl:3") && err.contains("already appears on line 1"),
            "{err}"
        );
        std::fs::write(&corpus, "{\"_id\": \"a\", \"text\": \"x\"\n").unwrap();
        let err = read_corpus(&corpus).unwrap_err().to_string();
        assert!(
            err.contains("corpus.jsonl:1") && err.contains("invalid JSON"),
            "{err}"
        );
        std::fs::write(&corpus, "[1, 2]\n").unwrap();
        let err = read_corpus(&corpus).unwrap_err().to_string();
        assert!(err.contains("found an array"), "{err}");
        let queries = dir.path().join("queries.jsonl");
        std::fs::write(&queries, "{\"_id\": [1], \"text\": \"x\"}\n").unwrap();
        let err = read_queries(&queries).unwrap_err().to_string();
        assert!(
            err.contains("queries.jsonl:1") && err.contains("\"_id\" must be"),
            "{err}"
        );
    }

    #[test]
    fn reads_trec_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.trec");
        std::fs::write(
            &path,
            "q1 Q0 d4 2 3.5 bm25\nq1 Q0 d1 1 9.0 bm25\nq1 Q0 d2 3 3.5 bm25\nq2 Q0 3 1 1e1 bm25\n",
        )
        .unwrap();
        let run = TrecRun::read(&path).unwrap();
        let ids: Vec<&str> = run
            .ranking("q1")
            .iter()
            .map(|e| e.doc_id.as_str())
            .collect();
        // By score, the 3.5 tie by rank column.
        assert_eq!(ids, ["d1", "d4", "d2"]);
        assert_eq!(run.ranking("q2")[0].score, 10.0);
        assert!(run.ranking("q9").is_empty());
        assert_eq!(run.query_ids().collect::<Vec<_>>(), ["q1", "q2"]);

        std::fs::write(&path, "q1 Q0 d1 1 9.0 bm25\nq1 Q0 d2 2 high bm25\n").unwrap();
        let err = TrecRun::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("run.trec:2") && err.contains("\"high\""),
            "{err}"
        );
        std::fs::write(&path, "q1 Q0 d1 1 9.0\n").unwrap();
        let err = TrecRun::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("run.trec:1") && err.contains("found 5"),
            "{err}"
        );
    }

    #[test]
    fn samples_from_bm25() {
        let dir = tiny_beir();
        let dataset = BeirDataset::read(dir.path(), "test").unwrap();
        let index = dataset.bm25_index(Bm25Config::default()).unwrap();
        let samples =
            reranking_samples(&dataset, FirstStage::Bm25(&index), SampleOptions::default())
                .unwrap();
        // q3 has no judgments (left out), q4 only a grade-0 one (without positive).
        assert_eq!(samples.query_ids, ["q1", "q2"]);
        assert_eq!(samples.without_positive, ["q4"]);
        let q1 = &samples.samples[0];
        assert_eq!(q1.query, "where did the cat sit");
        // d4's last grade is 0: only d1 is positive at min_grade 1.
        assert_eq!(q1.positive, ["Cats The cat sat on the mat."]);
        // BM25 puts d1 ("the" twice, "cat") first, then d4 ("cat"); d2 and 3 share no term.
        assert_eq!(
            q1.candidates,
            Candidates::Documents(vec![
                "Cats The cat sat on the mat.".into(),
                "A cat and a dog.".into()
            ])
        );
        let q2 = &samples.samples[1];
        assert_eq!(
            q2.candidates,
            Candidates::Documents(vec!["Rust compiles to machine code.".into()])
        );

        // A stricter grade threshold drops q2 and keeps d1 for q1; top_k cuts the candidates.
        let options = SampleOptions {
            top_k: 1,
            min_grade: 2,
        };
        let strict = reranking_samples(&dataset, FirstStage::Bm25(&index), options).unwrap();
        assert_eq!(strict.query_ids, ["q1"]);
        assert_eq!(strict.without_positive, ["q2", "q4"]);
        assert_eq!(
            strict.samples[0].candidates,
            Candidates::Documents(vec!["Cats The cat sat on the mat.".into()])
        );
    }

    #[test]
    fn samples_from_a_run() {
        let dir = tiny_beir();
        let dataset = BeirDataset::read(dir.path(), "test").unwrap();
        let path = dir.path().join("run.trec");
        std::fs::write(
            &path,
            "q1 Q0 d2 1 5 dense\nq1 Q0 d1 2 4 dense\nq1 Q0 d4 3 3 dense\n",
        )
        .unwrap();
        let run = TrecRun::read(&path).unwrap();
        let options = SampleOptions {
            top_k: 2,
            min_grade: 1,
        };
        let samples = reranking_samples(&dataset, FirstStage::Run(&run), options).unwrap();
        assert_eq!(
            samples.samples[0].candidates,
            Candidates::Documents(vec![
                "Dogs bark at night.".into(),
                "Cats The cat sat on the mat.".into()
            ])
        );
        // q2 is judged but absent from the run: no candidates.
        assert_eq!(
            samples.samples[1].candidates,
            Candidates::Documents(Vec::new())
        );

        std::fs::write(&path, "q1 Q0 d7 1 5 dense\n").unwrap();
        let run = TrecRun::read(&path).unwrap();
        let err = reranking_samples(&dataset, FirstStage::Run(&run), options)
            .unwrap_err()
            .to_string();
        assert!(err.contains("document \"d7\" for query \"q1\""), "{err}");
        let other = Bm25Index::build(&["x"], Bm25Config::default()).unwrap();
        let err = reranking_samples(&dataset, FirstStage::Bm25(&other), options)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 documents but the corpus has 4"), "{err}");
    }
}
