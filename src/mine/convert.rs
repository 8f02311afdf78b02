//! Moving data between the formats sentence-transformers' losses take (the "loss table"):
//! `(sentence_A, sentence_B, class)` pairs become `(anchor, positive, negative)` triplets by
//! sampling a positive of the same class and a negative of another ([`sample_triplets`]), and
//! triplet ↔ n-tuple ↔ labeled-list ↔ labeled-pair convert through [`Group`]s, keeping every
//! (anchor, document, label/score) the target format can hold ([`convert`]).
//!
//! Lossless round trips: n-tuple ↔ triplet ↔ labeled-list (one positive per group), and
//! labeled-pair ↔ any format for data whose negatives are shared by all positives of an anchor
//! (mined data): labeled-pair has no row that ties a negative to one positive.

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::table::{Column, Table, Values};
use crate::data::{DataSource, Field, Label, Row};
use crate::error::{Error, Result};

/// A data format `convert` reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertFormat {
    /// `(sentence_A, sentence_B, class)`: class-labelled pairs (read only; class = the label
    /// column, a number).
    PairClass,
    /// `(anchor, positive, negative)` with an optional `scores` list `[pos, neg]`.
    Triplet,
    /// `(anchor, positive, negative_1, …, negative_N)` with an optional `scores` list.
    NTuple,
    /// `(anchor, document, label)` or `(anchor, document, score)`.
    LabeledPair,
    /// `(anchor, [documents], labels)` or `(anchor, [documents], scores)`.
    LabeledList,
}

impl ConvertFormat {
    /// Every format.
    pub const ALL: [ConvertFormat; 5] = [
        ConvertFormat::PairClass,
        ConvertFormat::Triplet,
        ConvertFormat::NTuple,
        ConvertFormat::LabeledPair,
        ConvertFormat::LabeledList,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ConvertFormat::PairClass => "pair-class",
            ConvertFormat::Triplet => "triplet",
            ConvertFormat::NTuple => "n-tuple",
            ConvertFormat::LabeledPair => "labeled-pair",
            ConvertFormat::LabeledList => "labeled-list",
        }
    }
}

impl std::fmt::Display for ConvertFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One document of a [`Group`]: a text with its label and/or score.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The text.
    pub text: String,
    /// Relevance label (1 positive, 0 negative; graded labels allowed), when known.
    pub label: Option<f32>,
    /// A model's score, when the data has one.
    pub score: Option<f32>,
}

/// An anchor with its documents: what triplet, n-tuple, labeled-pair and labeled-list rows hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The anchor/query.
    pub anchor: String,
    /// Its documents, in order.
    pub documents: Vec<Document>,
}

/// The first two column names of a source (anchor, positive/documents) and its groups.
pub type Groups = (String, String, Vec<Group>);

fn expect_texts(row: &Row, count: Option<usize>, source: &DataSource) -> Result<Vec<String>> {
    let mut texts = Vec::with_capacity(row.fields.len());
    for field in &row.fields {
        match field {
            Field::Text(text) => texts.push(text.clone()),
            Field::List(_) => {
                return Err(Error::input(
                    &source.path,
                    Some(row.line),
                    "expected text in every input column, found a list",
                ))
            }
        }
    }
    if let Some(count) = count.filter(|&c| c != texts.len()) {
        return Err(Error::input(
            &source.path,
            Some(row.line),
            format!("expected {count} text columns, found {}", texts.len()),
        )
        .with_hint(
            "check that --from names the input's layout, or pick its columns with --columns",
        ));
    }
    Ok(texts)
}

fn is_score_column(name: Option<&str>) -> bool {
    matches!(name, Some("score" | "scores"))
}

/// Read `source` in `format` (anything but pair-class) into groups. Triplets group by
/// (anchor, positive), labeled pairs by anchor, in order of first appearance; every n-tuple and
/// labeled-list row is its own group. The label column is the first of label, labels, score,
/// scores (see [`crate::data`]); a column named `score(s)` gives scores, else labels. A
/// labeled-list with scores and no labels is taken as mined: its first document is the
/// positive.
pub fn read_groups(source: &DataSource, format: ConvertFormat) -> Result<Groups> {
    let reader = source.open()?;
    let columns = reader.input_columns().to_vec();
    let label_column = reader.label_column().map(str::to_string);
    let scored = is_score_column(label_column.as_deref());
    let at = |row: &Row, message: String| Error::input(&source.path, Some(row.line), message);
    let mut groups: Vec<Group> = Vec::new();
    let mut by_key: HashMap<(String, String), usize> = HashMap::new();
    let mut by_anchor: HashMap<String, usize> = HashMap::new();
    for row in reader {
        let row = row?;
        match format {
            ConvertFormat::PairClass => {
                return Err(Error::invalid(
                    "pair-class rows are not groups; use sample_triplets",
                ))
            }
            ConvertFormat::Triplet | ConvertFormat::NTuple => {
                let wanted = (format == ConvertFormat::Triplet).then_some(3);
                let texts = expect_texts(&row, wanted, source)?;
                if texts.len() < 3 {
                    return Err(at(
                        &row,
                        format!("expected (anchor, positive, negative_1, …) columns, found {} text columns", texts.len()),
                    ));
                }
                let scores = match (&row.label, scored) {
                    (None, _) => None,
                    (Some(Label::List(scores)), true) if scores.len() == texts.len() - 1 => {
                        Some(scores.clone())
                    }
                    (Some(label), _) => {
                        return Err(at(
                            &row,
                            format!(
                                "expected a `scores` list of {} numbers (positive, then each negative), found {label:?} in `{}`",
                                texts.len() - 1,
                                label_column.as_deref().unwrap_or("?")
                            ),
                        ))
                    }
                };
                let mut texts = texts.into_iter();
                let anchor = texts.next().expect("checked: at least 3 texts");
                let documents: Vec<Document> = texts
                    .enumerate()
                    .map(|(i, text)| Document {
                        text,
                        label: Some(if i == 0 { 1.0 } else { 0.0 }),
                        score: scores.as_ref().map(|s| s[i]),
                    })
                    .collect();
                if format == ConvertFormat::NTuple {
                    groups.push(Group { anchor, documents });
                    continue;
                }
                let key = (anchor.clone(), documents[0].text.clone());
                match by_key.get(&key) {
                    Some(&index) => {
                        let group = &mut groups[index];
                        if group.documents[0].score.is_some() != documents[0].score.is_some() {
                            return Err(at(&row, "some rows have scores and others not".into()));
                        }
                        group.documents.extend(documents.into_iter().skip(1));
                    }
                    None => {
                        by_key.insert(key, groups.len());
                        groups.push(Group { anchor, documents });
                    }
                }
            }
            ConvertFormat::LabeledPair => {
                let texts = expect_texts(&row, Some(2), source)?;
                let value = match &row.label {
                    Some(Label::Scalar(value)) => *value,
                    other => {
                        return Err(at(
                            &row,
                            format!(
                                "expected a number in a `label` or `score` column, found {other:?}"
                            ),
                        ))
                    }
                };
                let [anchor, text]: [String; 2] =
                    texts.try_into().expect("checked: exactly 2 texts");
                let document = Document {
                    text,
                    label: (!scored).then_some(value),
                    score: scored.then_some(value),
                };
                match by_anchor.get(&anchor) {
                    Some(&index) => groups[index].documents.push(document),
                    None => {
                        by_anchor.insert(anchor.clone(), groups.len());
                        groups.push(Group {
                            anchor,
                            documents: vec![document],
                        });
                    }
                }
            }
            ConvertFormat::LabeledList => {
                let (anchor, texts) = match &row.fields[..] {
                    [Field::Text(anchor), Field::List(texts)] => (anchor.clone(), texts.clone()),
                    _ => {
                        return Err(at(
                            &row,
                            "expected (anchor text, [documents]) columns".into(),
                        ))
                    }
                };
                let values = match &row.label {
                    Some(Label::List(values)) => values.clone(),
                    other => {
                        return Err(at(
                            &row,
                            format!("expected a list of numbers in a `labels` or `scores` column, found {other:?}"),
                        ))
                    }
                };
                let documents = texts
                    .into_iter()
                    .zip(values)
                    .enumerate()
                    .map(|(i, (text, value))| Document {
                        text,
                        label: Some(if scored {
                            if i == 0 {
                                1.0
                            } else {
                                0.0
                            }
                        } else {
                            value
                        }),
                        score: scored.then_some(value),
                    })
                    .collect();
                groups.push(Group { anchor, documents });
            }
        }
    }
    let mut columns = columns.into_iter();
    let anchor = columns.next().unwrap_or_else(|| "anchor".into());
    let second = columns.next().unwrap_or_else(|| "positive".into());
    Ok((anchor, second, groups))
}

fn binary(document: &Document, anchor: &str) -> Result<bool> {
    match document.label {
        Some(1.0) => Ok(true),
        Some(0.0) => Ok(false),
        Some(label) => Err(Error::invalid(format!(
            "document `{}` of anchor `{anchor}` has label {label}; triplets and n-tuples need labels 0 or 1",
            short(&document.text)
        ))
        .with_hint("convert graded labels to labeled-list or labeled-pair instead")),
        None => Err(Error::invalid(format!(
            "document `{}` of anchor `{anchor}` has a score but no label, so it is unknown whether it is a positive",
            short(&document.text)
        ))
        .with_hint("labeled-pair data with a `score` column can only become labeled-list")),
    }
}

fn short(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn split(group: &Group) -> Result<(Vec<&Document>, Vec<&Document>)> {
    let mut positives = Vec::new();
    let mut negatives = Vec::new();
    for document in &group.documents {
        if binary(document, &group.anchor)? {
            positives.push(document);
        } else {
            negatives.push(document);
        }
    }
    Ok((positives, negatives))
}

fn all_scored(groups: &[Group]) -> bool {
    groups
        .iter()
        .flat_map(|g| &g.documents)
        .all(|d| d.score.is_some())
}

fn label_values(labels: Vec<f32>) -> Values {
    if labels.iter().all(|l| l.fract() == 0.0) {
        Values::Int(labels.into_iter().map(|l| l as i64).collect())
    } else {
        Values::Float(labels)
    }
}

/// Merge groups by anchor (first appearance), documents deduplicated by text, positives first
/// (the layout of mined labeled pairs).
fn merge_by_anchor(groups: &[Group]) -> Vec<Group> {
    let mut order: Vec<Group> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for group in groups {
        let at = *index.entry(group.anchor.as_str()).or_insert_with(|| {
            order.push(Group {
                anchor: group.anchor.clone(),
                documents: Vec::new(),
            });
            order.len() - 1
        });
        for document in &group.documents {
            if !order[at].documents.iter().any(|d| d.text == document.text) {
                order[at].documents.push(document.clone());
            }
        }
    }
    for group in &mut order {
        // Stable: positives (label > 0) first, each side in its order.
        group
            .documents
            .sort_by_key(|d| !d.label.is_some_and(|l| l > 0.0));
    }
    order
}

/// What a conversion did besides the rows: groups it had to leave out, and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConvertNotes {
    /// Human-readable lines.
    pub lines: Vec<String>,
}

/// Lay `groups` out in `format` (not pair-class). `output_scores` writes the scores instead of
/// the labels in the labeled formats (every document needs one); triplets and n-tuples carry a
/// `scores` column whenever every document has a score. Groups without a positive or without a
/// negative cannot be a triplet or n-tuple row: they are left out and counted in the notes.
pub fn write_groups(
    groups: &[Group],
    format: ConvertFormat,
    anchor_column: &str,
    positive_column: &str,
    output_scores: bool,
) -> Result<(Table, ConvertNotes)> {
    let mut notes = ConvertNotes::default();
    let scored = all_scored(groups);
    if output_scores && !scored {
        return Err(Error::invalid(
            "output_scores asks for scores, but some documents have none",
        ));
    }
    let mut anchors = Vec::new();
    let columns = match format {
        ConvertFormat::PairClass => {
            return Err(Error::invalid(
                "pair-class is an input format only; convert it to triplet",
            ))
        }
        ConvertFormat::Triplet | ConvertFormat::NTuple => {
            let mut positives_out = Vec::new();
            let mut negatives_out: Vec<Vec<String>> = Vec::new();
            let mut scores = Vec::new();
            let mut width = None;
            let mut skipped = 0;
            for group in groups {
                let (positives, negatives) = split(group)?;
                if positives.is_empty() || negatives.is_empty() {
                    skipped += 1;
                    continue;
                }
                if format == ConvertFormat::NTuple {
                    let expected = *width.get_or_insert(negatives.len());
                    if negatives.len() != expected {
                        return Err(Error::invalid(format!(
                            "anchor `{}` has {} negatives but earlier anchors have {expected}; an n-tuple has a fixed number of negative columns",
                            short(&group.anchor),
                            negatives.len()
                        ))
                        .with_hint("convert to labeled-list, which allows any number of documents"));
                    }
                }
                for positive in &positives {
                    let rows: Vec<Vec<&Document>> = match format {
                        ConvertFormat::NTuple => vec![negatives.clone()],
                        _ => negatives.iter().map(|n| vec![*n]).collect(),
                    };
                    for row in rows {
                        anchors.push(group.anchor.clone());
                        positives_out.push(positive.text.clone());
                        if negatives_out.len() < row.len() {
                            negatives_out.resize(row.len(), Vec::new());
                        }
                        for (column, negative) in negatives_out.iter_mut().zip(&row) {
                            column.push(negative.text.clone());
                        }
                        let mut row_scores: Vec<f32> = vec![positive.score.unwrap_or(0.0)];
                        row_scores.extend(row.iter().map(|n| n.score.unwrap_or(0.0)));
                        scores.push(row_scores);
                    }
                }
            }
            if skipped > 0 {
                notes.lines.push(format!(
                    "left out {skipped} anchors without a positive or without a negative"
                ));
            }
            if anchors.is_empty() {
                return Err(Error::invalid(format!(
                    "no {format} rows: no anchor has both a positive (label 1) and a negative (label 0)"
                )));
            }
            let mut columns = vec![
                Column::new(anchor_column, Values::Text(anchors)),
                Column::new(positive_column, Values::Text(positives_out)),
            ];
            if format == ConvertFormat::Triplet {
                let negatives = negatives_out.pop().unwrap_or_default();
                columns.push(Column::new("negative", Values::Text(negatives)));
            } else {
                for (i, column) in negatives_out.into_iter().enumerate() {
                    columns.push(Column::new(
                        format!("negative_{}", i + 1),
                        Values::Text(column),
                    ));
                }
            }
            if scored {
                columns.push(Column::new("scores", Values::FloatList(scores)));
            }
            columns
        }
        ConvertFormat::LabeledPair => {
            let mut documents = Vec::new();
            let mut values = Vec::new();
            for group in merge_by_anchor(groups) {
                for document in group.documents {
                    anchors.push(group.anchor.clone());
                    values.push(if output_scores {
                        document.score
                    } else {
                        document.label
                    });
                    documents.push(document.text);
                }
            }
            let values: Option<Vec<f32>> = values.into_iter().collect();
            let Some(values) = values else {
                return Err(Error::invalid(
                    "some documents have no label; pass output_scores (--output-scores) to write their scores",
                ));
            };
            vec![
                Column::new(anchor_column, Values::Text(anchors)),
                Column::new(positive_column, Values::Text(documents)),
                if output_scores {
                    Column::new("score", Values::Float(values))
                } else {
                    Column::new("label", label_values(values))
                },
            ]
        }
        ConvertFormat::LabeledList => {
            let mut documents = Vec::new();
            let mut values = Vec::new();
            for group in groups {
                anchors.push(group.anchor.clone());
                documents.push(group.documents.iter().map(|d| d.text.clone()).collect());
                let row: Option<Vec<f32>> = group
                    .documents
                    .iter()
                    .map(|d| if output_scores { d.score } else { d.label })
                    .collect();
                values.push(row.ok_or_else(|| {
                    Error::invalid(format!(
                        "a document of anchor `{}` has no label; pass output_scores (--output-scores) to write scores",
                        short(&group.anchor)
                    ))
                })?);
            }
            let values = if output_scores {
                Values::FloatList(values)
            } else if values.iter().flatten().all(|l| l.fract() == 0.0) {
                Values::IntList(
                    values
                        .into_iter()
                        .map(|row| row.into_iter().map(|l| l as i64).collect())
                        .collect(),
                )
            } else {
                Values::FloatList(values)
            };
            vec![
                Column::new(anchor_column, Values::Text(anchors)),
                Column::new(positive_column, Values::TextList(documents)),
                Column::new(if output_scores { "scores" } else { "labels" }, values),
            ]
        }
    };
    Ok((Table::new(columns)?, notes))
}

/// Turn `(sentence_A, sentence_B, class)` rows into `(anchor, positive, negative)` triplets:
/// for each row, anchor = sentence_A, positive = the sentence_B of a row drawn uniformly among
/// the rows of the same class (its own row included; never a text equal to the anchor), negative
/// = the sentence_B of a row drawn uniformly among the rows of the other classes. Draws come
/// from a ChaCha8 generator seeded with `seed`. Rows whose class offers no positive other than
/// the anchor itself are left out (counted in the notes); one class only is an error.
pub fn sample_triplets(rows: &[(String, String, f32)], seed: u64) -> Result<(Table, ConvertNotes)> {
    let mut by_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (index, (_, _, class)) in rows.iter().enumerate() {
        by_class.entry(class.to_bits()).or_default().push(index);
    }
    if by_class.len() < 2 {
        return Err(Error::invalid(format!(
            "every row has the same class ({}); a negative needs a row of another class",
            rows.first().map_or(f32::NAN, |r| r.2)
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut anchors, mut positives, mut negatives) = (Vec::new(), Vec::new(), Vec::new());
    let mut skipped = 0;
    for (anchor, _, class) in rows {
        let same = &by_class[&class.to_bits()];
        let others = rows.len() - same.len();
        let mut positive = None;
        for _ in 0..32 {
            let candidate = &rows[same[rng.gen_range(0..same.len())]].1;
            if candidate != anchor {
                positive = Some(candidate);
                break;
            }
        }
        if positive.is_none() {
            // Rare: most draws hit the anchor's own text; choose among the others exactly.
            let choices: Vec<&String> = same
                .iter()
                .map(|&j| &rows[j].1)
                .filter(|text| *text != anchor)
                .collect();
            if !choices.is_empty() {
                positive = Some(choices[rng.gen_range(0..choices.len())]);
            }
        }
        let Some(positive) = positive else {
            skipped += 1;
            continue;
        };
        let mut draw = rng.gen_range(0..others);
        let mut negative = None;
        for (other, members) in &by_class {
            if *other == class.to_bits() {
                continue;
            }
            if draw < members.len() {
                negative = Some(&rows[members[draw]].1);
                break;
            }
            draw -= members.len();
        }
        anchors.push(anchor.clone());
        positives.push(positive.clone());
        negatives.push(
            negative
                .expect("draw < number of rows of other classes")
                .clone(),
        );
    }
    let mut notes = ConvertNotes::default();
    if skipped > 0 {
        notes.lines.push(format!(
            "left out {skipped} rows whose class has no sentence other than the anchor"
        ));
    }
    let table = Table::new(vec![
        Column::new("anchor", Values::Text(anchors)),
        Column::new("positive", Values::Text(positives)),
        Column::new("negative", Values::Text(negatives)),
    ])?;
    Ok((table, notes))
}

/// Read `source` as `from` and lay it out as `to` (see [`read_groups`], [`write_groups`] and
/// [`sample_triplets`]; pair-class converts only to triplet).
pub fn convert(
    source: &DataSource,
    from: ConvertFormat,
    to: ConvertFormat,
    output_scores: bool,
    seed: u64,
) -> Result<(Table, ConvertNotes)> {
    if from == ConvertFormat::PairClass {
        if to != ConvertFormat::Triplet {
            return Err(
                Error::invalid(format!("pair-class converts to triplet, not {to}")).with_hint(
                    "convert to triplet first, then from triplet to the format you need",
                ),
            );
        }
        let mut rows = Vec::new();
        for row in source.open()? {
            let row = row?;
            let texts = expect_texts(&row, Some(2), source)?;
            let class =
                match &row.label {
                    Some(Label::Scalar(class)) => *class,
                    other => return Err(Error::input(
                        &source.path,
                        Some(row.line),
                        format!("expected a class number in the label column, found {other:?}"),
                    )
                    .with_hint(
                        "pair-class rows are (sentence_A, sentence_B, label) with a numeric label",
                    )),
                };
            let [a, b]: [String; 2] = texts.try_into().expect("checked: exactly 2 texts");
            rows.push((a, b, class));
        }
        return sample_triplets(&rows, seed);
    }
    let (anchor, second, groups) = read_groups(source, from)?;
    write_groups(&groups, to, &anchor, &second, output_scores)
}
