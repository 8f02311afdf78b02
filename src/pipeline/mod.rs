//! The producer → bounded channel → trainer pipeline.
//!
//! ```text
//! data source ──► producer thread ─────────── bounded channel ──► trainer
//!                 read, shuffle, batch,       Batch { examples,    (pulls with Producer::next)
//!                 teacher scores for every    teacher_scores }
//!                 (column 0, column k) pair
//! ```
//!
//! The producer owns the teacher (no mutex). The channel is bounded, so the producer runs at
//! most `capacity` batches ahead and memory stays flat however large the data. When the trainer
//! drops the [`Producer`], the channel disconnects and the thread stops at its next send; the
//! handle joins it. A producer error arrives as the next item; a producer panic arrives as
//! [`Error::Thread`] — never as a hang.
//!
//! The teacher also scores the held-out pairs of the student–teacher agreement, after the last
//! training batch, while the trainer works through the batches still queued and evaluates; their
//! scores come back through [`Producer::held_out_scores`].

mod batcher;
mod columns;
mod shuffle;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

pub use batcher::{batch_examples, Batcher};
pub use columns::ColumnRoles;
pub use shuffle::ShuffleBuffer;

use crate::data::{DataSource, Field, Label, Row};
use crate::error::{Error, Result};
use crate::teacher::Teacher;

/// One training example: the input fields in column order and the data label.
pub type Example = Row;

/// Where the producer is in the data: epoch and batches already produced in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DataPosition {
    /// 0-based epoch.
    pub epoch: usize,
    /// Batches of this epoch already handed to the trainer.
    pub batches: usize,
}

/// A training batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The examples, in batch order.
    pub examples: Vec<Example>,
    /// Teacher scores per example: the score of (column 0, d) for every document d of columns
    /// 1.. in order (one per text column, one per list element). `None` without a teacher.
    pub teacher_scores: Option<Vec<Vec<f32>>>,
    /// The position after this batch (what a checkpoint taken after it must resume from).
    pub position: DataPosition,
}

/// How the producer reads and batches the data.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The training data.
    pub source: DataSource,
    /// Use at most this many rows per epoch.
    pub max_rows: Option<usize>,
    /// Epochs to produce.
    pub epochs: usize,
    /// Start here (resume).
    pub start: DataPosition,
    /// Examples per batch.
    pub batch_size: usize,
    /// Shuffle each epoch (seeded by `seed` and the epoch).
    pub shuffle: bool,
    /// Rows held by the streaming shuffle.
    pub shuffle_buffer: usize,
    /// Run seed.
    pub seed: u64,
    /// No batch holds the same text twice (sentence-transformers' NoDuplicatesBatchSampler).
    pub no_duplicates: bool,
    /// Collect at least this many pairs before calling the teacher: several of its batches, so
    /// that length sorting inside the call keeps padding low (see [`teacher_call_pairs`]).
    pub teacher_pairs: usize,
    /// Batches the channel holds (backpressure). A teacher call also scores at most this many
    /// batches, so the producer can score the next call's batches while the trainer consumes the
    /// previous ones: at most `2 × capacity` batches are in memory.
    pub capacity: usize,
    /// Parallel data: the student's column groups (one example per group and row) and the
    /// teacher's columns. `None`: the student and the teacher read every field of a row.
    pub columns: Option<ColumnRoles>,
    /// Held-out (query, passage) pairs for the trainer's student–teacher agreement. The teacher
    /// scores them after the last training batch, while the trainer still has the queued batches
    /// to train on; their scores arrive through [`Producer::held_out_scores`]. Empty: none.
    pub held_out: Vec<(String, String)>,
    /// Label the training batches with the teacher. False when the losses take their labels from
    /// the data and the teacher only scores `held_out`.
    pub teacher_labels: bool,
}

/// Teacher batches the producer scores per teacher call. The teacher sorts a call's pairs by
/// length before batching them; training batches are shuffled, so one training-sized call pads
/// every pair to the longest of a random sample. On STSb with max_length 64 and a MiniLM teacher,
/// calls of 1 teacher batch cost 2.3× the teacher time of calls of 8 (measured in bench/overlap.sh).
pub const TEACHER_BATCHES_PER_CALL: usize = 8;

/// Pairs the producer collects before calling a teacher with this batch size.
pub fn teacher_call_pairs(teacher_batch_size: usize) -> usize {
    teacher_batch_size.max(1) * TEACHER_BATCHES_PER_CALL
}

/// The (column 0, document) pairs the teacher scores for an example, in order.
pub fn teacher_pairs<'a>(
    example: &'a Example,
    fields: Option<&[usize]>,
) -> Result<Vec<(&'a str, &'a str)>> {
    let chosen: Vec<&Field> = match fields {
        Some(indices) => indices
            .iter()
            .filter_map(|&i| example.fields.get(i))
            .collect(),
        None => example.fields.iter().collect(),
    };
    let Some(Field::Text(query)) = chosen.first() else {
        return Err(Error::invalid(format!(
            "row {}: column 0 must be a text (the query), found {}",
            example.line,
            match chosen.first() {
                Some(Field::List(l)) => format!("a list of {} texts", l.len()),
                _ => "nothing".to_string(),
            }
        )));
    };
    let mut pairs = Vec::new();
    for field in &chosen[1..] {
        match field {
            Field::Text(doc) => pairs.push((query.as_str(), doc.as_str())),
            Field::List(docs) => pairs.extend(docs.iter().map(|d| (query.as_str(), d.as_str()))),
        }
    }
    if pairs.is_empty() {
        return Err(Error::invalid(format!(
            "row {}: a teacher needs at least two columns (query and a document), found {}",
            example.line,
            chosen.len()
        )));
    }
    Ok(pairs)
}

/// The distinct pairs the teacher scores for one data row, in order: its own columns' pairs
/// with parallel-data `columns` (else each student group's), or every (column 0, document) pair.
pub fn row_teacher_pairs(
    row: &Row,
    columns: Option<&ColumnRoles>,
) -> Result<Vec<(String, String)>> {
    let Some(roles) = columns else {
        return Ok(teacher_pairs(row, None)?
            .into_iter()
            .map(|(q, d)| (q.to_string(), d.to_string()))
            .collect());
    };
    let teacher_fields = roles.teacher_fields();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for example in roles.expand(row, true)? {
        for (q, d) in teacher_pairs(&example, teacher_fields.as_deref())? {
            if !pairs.iter().any(|(pq, pd)| pq == q && pd == d) {
                pairs.push((q.to_string(), d.to_string()));
            }
        }
    }
    Ok(pairs)
}

/// What the producer sends: a batch or its error, or `None` once the data is exhausted (a
/// disconnect without it means the thread died).
type Message = Option<Result<Batch>>;

/// The producer thread and the receiving ends of its channels.
pub struct Producer {
    receiver: Option<Receiver<Message>>,
    held_out: Option<Receiver<Result<Vec<f32>>>>,
    /// Set when the trainer drops the producer: skip the held-out pairs nobody will read.
    cancelled: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Producer {
    /// Start the producer thread. It owns `teacher` (when given) for its whole life.
    pub fn spawn(config: ProducerConfig, teacher: Option<Box<dyn Teacher>>) -> Result<Self> {
        if config.batch_size == 0 || config.capacity == 0 {
            return Err(Error::invalid(format!(
                "batch size and channel capacity must be at least 1, found {} and {}",
                config.batch_size, config.capacity
            )));
        }
        if !config.held_out.is_empty() && teacher.is_none() {
            return Err(Error::invalid(format!(
                "{} held-out pairs to score, but the producer has no teacher",
                config.held_out.len()
            )));
        }
        let (sender, receiver) = bounded(config.capacity);
        let (held_out_sender, held_out) = if config.held_out.is_empty() {
            (None, None)
        } else {
            let (s, r) = bounded(1);
            (Some(s), Some(r))
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        let stop = cancelled.clone();
        let handle = std::thread::Builder::new()
            .name("crossdistill-producer".into())
            .spawn(move || produce(config, teacher, held_out_sender, sender, &stop))
            .map_err(|e| Error::Thread {
                thread: "producer",
                message: format!("cannot start: {e}"),
            })?;
        Ok(Self {
            receiver: Some(receiver),
            held_out,
            cancelled,
            handle: Some(handle),
        })
    }

    /// The teacher's scores of [`ProducerConfig::held_out`], in order. Ends the batches (see
    /// [`Producer::end_batches`]), since the teacher scores these after the last one, and blocks
    /// until they are scored. A teacher error or a producer panic comes back as an error.
    pub fn held_out_scores(&mut self) -> Result<Vec<f32>> {
        self.end_batches();
        let Some(receiver) = self.held_out.take() else {
            return Err(Error::invalid(
                "the producer was given no held-out pairs to score",
            ));
        };
        match receiver.recv() {
            Ok(scores) => scores,
            Err(_) => {
                self.join()?;
                Err(Error::Thread {
                    thread: "producer",
                    message: "stopped before scoring the held-out pairs".into(),
                })
            }
        }
    }

    /// The next batch; `None` when the data is exhausted. Producer errors and panics come back
    /// as `Some(Err(..))`, once.
    pub fn next_batch(&mut self) -> Option<Result<Batch>> {
        let receiver = self.receiver.as_ref()?;
        match receiver.recv() {
            Ok(Some(item)) => Some(item),
            Ok(None) => {
                // The end of the data; the thread may go on with the held-out pairs.
                self.receiver = None;
                None
            }
            Err(_) => {
                // Disconnected: the thread ended. A panic shows up in join.
                self.receiver = None;
                self.join().err().map(Err)
            }
        }
    }

    /// Stop taking batches (training ended before the data did): the producer stops at its next
    /// send and goes on to the held-out pairs.
    pub fn end_batches(&mut self) {
        self.receiver = None;
    }

    /// Stop the thread and wait for it (what dropping the producer does): no batch or held-out
    /// score is received after this. A panic of the thread is not reported here; `next_batch`
    /// and `held_out_scores` report it.
    pub fn stop(&mut self) {
        // Hang up first so a producer blocked on a full channel wakes up and stops.
        self.cancelled.store(true, Ordering::SeqCst);
        self.receiver = None;
        self.held_out = None;
        let _ = self.join();
    }

    /// Batches waiting in the channel (for tests and progress display).
    pub fn queued(&self) -> usize {
        self.receiver.as_ref().map_or(0, Receiver::len)
    }

    fn join(&mut self) -> Result<()> {
        match self.handle.take() {
            Some(handle) => handle.join().map_err(|payload| Error::Thread {
                thread: "producer",
                message: panic_message(&payload),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

/// Send or report that the trainer hung up.
fn send(sender: &Sender<Message>, item: Result<Batch>) -> bool {
    sender.send(Some(item)).is_ok()
}

fn produce(
    config: ProducerConfig,
    mut teacher: Option<Box<dyn Teacher>>,
    held_out: Option<Sender<Result<Vec<f32>>>>,
    sender: Sender<Message>,
    cancelled: &AtomicBool,
) {
    let labeler = if config.teacher_labels {
        teacher.as_deref_mut()
    } else {
        None
    };
    if let Err(error) = produce_inner(&config, labeler, &sender) {
        let _ = sender.send(Some(Err(error)));
        return;
    }
    let _ = sender.send(None);
    drop(sender);
    // The trainer has up to `capacity` batches left to train on meanwhile.
    if let (Some(held_out), Some(teacher)) = (held_out, teacher.as_deref_mut()) {
        if !cancelled.load(Ordering::SeqCst) {
            let pairs: Vec<(&str, &str)> = config
                .held_out
                .iter()
                .map(|(q, d)| (q.as_str(), d.as_str()))
                .collect();
            let _ = held_out.send(score_unique(teacher, &pairs));
        }
    }
}

/// Ok(()) when the data ran out or the trainer hung up.
fn produce_inner(
    config: &ProducerConfig,
    mut teacher: Option<&mut (dyn Teacher + 'static)>,
    sender: &Sender<Message>,
) -> Result<()> {
    for epoch in config.start.epoch..config.epochs {
        let reader = config.source.open()?;
        let rows = reader.take(config.max_rows.unwrap_or(usize::MAX));
        let rows: Box<dyn Iterator<Item = Result<Row>>> = if config.shuffle {
            Box::new(ShuffleBuffer::new(
                rows,
                config.shuffle_buffer,
                config.seed,
                epoch as u64,
            ))
        } else {
            Box::new(rows)
        };
        let rows = match &config.columns {
            Some(roles) => expand_rows(rows, roles.clone(), teacher.is_some()),
            None => rows,
        };
        let teacher_fields = config
            .columns
            .as_ref()
            .and_then(ColumnRoles::teacher_fields);
        let skip = if epoch == config.start.epoch {
            config.start.batches
        } else {
            0
        };
        // Teacher calls cover windows of batches counted from the start of the epoch, closed by
        // the pair count and the channel capacity alone, so a resumed producer forms the same
        // windows as an uninterrupted one: a teacher's score of a pair depends (in its last bits)
        // on the other pairs of its call, through padding. Batches trained before the resume
        // still join their window; the window is scored whole and those batches are dropped.
        let mut pending: Vec<Batch> = Vec::new();
        let mut pending_pairs = 0usize;
        let mut already_trained = 0usize;
        for (index, examples) in
            Batcher::new(rows, config.batch_size, config.no_duplicates).enumerate()
        {
            let examples = examples?;
            let trained = index < skip;
            if teacher.is_none() && trained {
                continue;
            }
            let position = DataPosition {
                epoch,
                batches: index + 1,
            };
            if teacher.is_some() {
                for example in &examples {
                    pending_pairs += teacher_pairs(example, teacher_fields.as_deref())?.len();
                }
            }
            pending.push(Batch {
                examples,
                teacher_scores: None,
                position,
            });
            already_trained += trained as usize;
            if pending_pairs >= config.teacher_pairs
                || pending.len() >= config.capacity
                || teacher.is_none()
            {
                if !flush(
                    &mut pending,
                    already_trained,
                    teacher.as_deref_mut(),
                    config,
                    sender,
                )? {
                    return Ok(());
                }
                pending_pairs = 0;
                already_trained = 0;
            }
        }
        if !flush(
            &mut pending,
            already_trained,
            teacher.as_deref_mut(),
            config,
            sender,
        )? {
            return Ok(());
        }
    }
    Ok(())
}

/// Score every pending batch with one teacher call and send them, except the first
/// `already_trained` (trained before a resume: scored only so that the call is the same one an
/// uninterrupted run makes); false if the trainer hung up.
fn flush(
    pending: &mut Vec<Batch>,
    already_trained: usize,
    teacher: Option<&mut (dyn Teacher + 'static)>,
    config: &ProducerConfig,
    sender: &Sender<Message>,
) -> Result<bool> {
    if already_trained >= pending.len() {
        pending.clear();
        return Ok(true);
    }
    if let Some(teacher) = teacher {
        let teacher_fields = config
            .columns
            .as_ref()
            .and_then(ColumnRoles::teacher_fields);
        let mut pairs = Vec::new();
        let mut counts = Vec::new();
        for batch in pending.iter() {
            for example in &batch.examples {
                let example_pairs = teacher_pairs(example, teacher_fields.as_deref())?;
                counts.push(example_pairs.len());
                pairs.extend(example_pairs);
            }
        }
        let scores = score_unique(teacher, &pairs)?;
        let mut offset = 0;
        let mut counts = counts.into_iter();
        for batch in pending.iter_mut() {
            let mut per_example = Vec::with_capacity(batch.examples.len());
            for _ in &batch.examples {
                let n = counts.next().unwrap_or(0);
                per_example.push(scores[offset..offset + n].to_vec());
                offset += n;
            }
            batch.teacher_scores = Some(per_example);
        }
        if let Some(roles) = config.columns.as_ref().filter(|r| r.has_teacher_columns()) {
            for batch in pending.iter_mut() {
                for example in &mut batch.examples {
                    example.fields.truncate(roles.student_width());
                }
            }
        }
    }
    for batch in pending.drain(..).skip(already_trained) {
        if !send(sender, Ok(batch)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Rows expanded into one example per student column group (parallel data).
fn expand_rows<'a>(
    rows: Box<dyn Iterator<Item = Result<Row>> + 'a>,
    roles: ColumnRoles,
    for_teacher: bool,
) -> Box<dyn Iterator<Item = Result<Row>> + 'a> {
    Box::new(rows.flat_map(move |row| {
        let examples = row.and_then(|row| roles.expand(&row, for_teacher));
        match examples {
            Ok(examples) => examples.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(error) => vec![Err(error)],
        }
    }))
}

/// The teacher's scores of `pairs`, scoring each distinct pair once (parallel data repeats the
/// teacher's pair for every student language of a row).
pub fn score_unique(teacher: &mut dyn Teacher, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
    let mut first: std::collections::HashMap<(&str, &str), usize> =
        std::collections::HashMap::with_capacity(pairs.len());
    let mut unique = Vec::new();
    let slots: Vec<usize> = pairs
        .iter()
        .map(|&pair| {
            *first.entry(pair).or_insert_with(|| {
                unique.push(pair);
                unique.len() - 1
            })
        })
        .collect();
    let scores = teacher.score(&unique)?;
    if scores.len() != unique.len() {
        return Err(Error::invalid(format!(
            "teacher {} returned {} scores for {} pairs",
            teacher.describe(),
            scores.len(),
            unique.len()
        )));
    }
    Ok(slots.into_iter().map(|slot| scores[slot]).collect())
}

/// The label of an example as a flat list (a scalar becomes one value).
pub fn label_values(label: &Label) -> Vec<f32> {
    match label {
        Label::Scalar(v) => vec![*v],
        Label::List(values) => values.clone(),
    }
}
