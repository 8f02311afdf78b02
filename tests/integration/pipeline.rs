//! The producer thread and its channel with a deterministic fake teacher: backpressure,
//! hang-up, teacher errors and panics, teacher labels for every row layout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossdistill::data::{DataSource, Field};
use crossdistill::error::{Error, Result};
use crossdistill::pipeline::{ColumnRoles, DataPosition, Producer, ProducerConfig};
use crossdistill::teacher::Teacher;

/// Scores a pair as `len(query) + len(passage) / 100`; can fail or panic on call `fail_at`.
struct FakeTeacher {
    calls: Arc<AtomicUsize>,
    pairs: Arc<AtomicUsize>,
    fail_at: Option<usize>,
    panic_at: Option<usize>,
}

impl FakeTeacher {
    fn new() -> (Self, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let pairs = Arc::new(AtomicUsize::new(0));
        (
            Self {
                calls: calls.clone(),
                pairs: pairs.clone(),
                fail_at: None,
                panic_at: None,
            },
            calls,
            pairs,
        )
    }
}

fn fake_score(q: &str, p: &str) -> f32 {
    q.len() as f32 + p.len() as f32 / 100.0
}

impl Teacher for FakeTeacher {
    fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_at == Some(call) {
            return Err(Error::invalid("fake teacher failed on purpose"));
        }
        if self.panic_at == Some(call) {
            panic!("fake teacher panicked on purpose");
        }
        self.pairs.fetch_add(pairs.len(), Ordering::SeqCst);
        Ok(pairs.iter().map(|(q, p)| fake_score(q, p)).collect())
    }
    fn fingerprint(&self) -> String {
        "fake".into()
    }
    fn describe(&self) -> String {
        "fake teacher".into()
    }
}

fn write_rows(dir: &std::path::Path, rows: usize, layout: &str) -> DataSource {
    let path = dir.join("train.jsonl");
    let lines: Vec<String> = (0..rows)
        .map(|i| match layout {
            "pair" => serde_json::json!({"query": format!("q{i}"), "passage": format!("passage {i}")}).to_string(),
            "tuple" => serde_json::json!({"query": format!("q{i}"), "pos": format!("p{i}"), "neg1": format!("n{i}a"), "neg2": format!("n{i}bb")}).to_string(),
            _ => serde_json::json!({"query": format!("q{i}"), "docs": [format!("a{i}"), format!("bb{i}"), format!("ccc{i}")]}).to_string(),
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    DataSource::new("train.jsonl", dir)
}

fn config(source: DataSource, capacity: usize) -> ProducerConfig {
    ProducerConfig {
        source,
        max_rows: None,
        epochs: 1,
        start: DataPosition::default(),
        batch_size: 4,
        shuffle: false,
        shuffle_buffer: 16,
        seed: 1,
        no_duplicates: false,
        teacher_pairs: 1,
        capacity,
        columns: None,
        held_out: Vec::new(),
        teacher_labels: true,
    }
}

#[test]
fn teacher_labels_every_column_zero_pair_in_order() {
    for layout in ["pair", "tuple", "list"] {
        let dir = tempfile::tempdir().unwrap();
        let (teacher, _, _) = FakeTeacher::new();
        let mut producer = Producer::spawn(
            config(write_rows(dir.path(), 10, layout), 2),
            Some(Box::new(teacher)),
        )
        .unwrap();
        let mut rows = 0;
        while let Some(batch) = producer.next_batch() {
            let batch = batch.unwrap();
            let scores = batch.teacher_scores.unwrap();
            for (example, scores) in batch.examples.iter().zip(scores) {
                let Field::Text(query) = &example.fields[0] else {
                    panic!("query is text")
                };
                let docs: Vec<&str> = example.fields[1..]
                    .iter()
                    .flat_map(|f| match f {
                        Field::Text(t) => vec![t.as_str()],
                        Field::List(l) => l.iter().map(String::as_str).collect(),
                    })
                    .collect();
                let expected: Vec<f32> = docs.iter().map(|d| fake_score(query, d)).collect();
                assert_eq!(scores, expected, "{layout}");
                let width = match layout {
                    "pair" => 1,
                    _ => 3,
                };
                assert_eq!(
                    scores.len(),
                    width,
                    "{layout}: (B,), (B, N+1) or one list per row"
                );
                rows += 1;
            }
        }
        assert_eq!(rows, 10);
    }
}

#[test]
fn a_slow_trainer_keeps_the_producer_at_most_capacity_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let (teacher, calls, _) = FakeTeacher::new();
    let capacity = 2;
    let mut producer = Producer::spawn(
        config(write_rows(dir.path(), 400, "pair"), capacity),
        Some(Box::new(teacher)),
    )
    .unwrap();
    for consumed in 0..3 {
        std::thread::sleep(Duration::from_millis(150));
        // Each teacher call scores one batch: at most `capacity` queued plus one blocked in send.
        let produced = calls.load(Ordering::SeqCst);
        assert!(
            produced <= consumed + capacity + 1,
            "producer ran ahead: {produced} produced, {consumed} consumed"
        );
        assert!(producer.queued() <= capacity);
        producer.next_batch().unwrap().unwrap();
    }
    assert!(
        calls.load(Ordering::SeqCst) <= 3 + capacity + 1,
        "100 batches exist; only a few may be produced"
    );
}

#[test]
fn with_multi_batch_teacher_calls_the_producer_stays_within_twice_the_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let (teacher, _, pairs) = FakeTeacher::new();
    let capacity = 3;
    let mut config = config(write_rows(dir.path(), 400, "pair"), capacity);
    config.teacher_pairs = 1000; // calls are bounded by the capacity, not by the pair count
    let mut producer = Producer::spawn(config, Some(Box::new(teacher))).unwrap();
    for consumed in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        // The channel's batches plus one call's batches being sent.
        let scored_batches = pairs.load(Ordering::SeqCst) / 4;
        assert!(
            scored_batches <= consumed + 2 * capacity,
            "producer ran ahead: {scored_batches} batches scored, {consumed} consumed"
        );
        assert!(producer.queued() <= capacity);
        producer.next_batch().unwrap().unwrap();
    }
}

/// Records the number of pairs of every teacher call.
struct CallSizes(Arc<std::sync::Mutex<Vec<usize>>>);

impl Teacher for CallSizes {
    fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        self.0.lock().unwrap().push(pairs.len());
        Ok(pairs.iter().map(|(q, p)| fake_score(q, p)).collect())
    }
    fn fingerprint(&self) -> String {
        "sizes".into()
    }
    fn describe(&self) -> String {
        "call-size teacher".into()
    }
}

fn call_sizes(rows: usize, teacher_pairs: usize, capacity: usize) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut config = config(write_rows(dir.path(), rows, "pair"), capacity);
    config.teacher_pairs = teacher_pairs;
    let mut producer = Producer::spawn(config, Some(Box::new(CallSizes(sizes.clone())))).unwrap();
    let mut examples = 0;
    while let Some(batch) = producer.next_batch() {
        examples += batch.unwrap().examples.len();
    }
    assert_eq!(examples, rows);
    let sizes = sizes.lock().unwrap().clone();
    assert_eq!(sizes.iter().sum::<usize>(), rows, "every pair scored once");
    sizes
}

#[test]
fn teacher_calls_gather_several_batches_up_to_the_channel_capacity() {
    // Batches of 4 pairs. A call collects `teacher_pairs` pairs (length sorting inside the call
    // needs many) unless `capacity` batches come first; the last call takes what is left.
    assert_eq!(call_sizes(50, 16, 8), vec![16, 16, 16, 2]);
    assert_eq!(call_sizes(50, 64, 3), vec![12, 12, 12, 12, 2]);
    assert_eq!(call_sizes(8, 1000, 100), vec![8]);
    assert_eq!(
        crossdistill::pipeline::teacher_call_pairs(64),
        64 * crossdistill::pipeline::TEACHER_BATCHES_PER_CALL
    );
}

#[test]
fn hanging_up_stops_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    let (teacher, calls, _) = FakeTeacher::new();
    let mut producer = Producer::spawn(
        config(write_rows(dir.path(), 4000, "pair"), 2),
        Some(Box::new(teacher)),
    )
    .unwrap();
    let _ = producer.next_batch().unwrap().unwrap();
    let started = Instant::now();
    drop(producer); // disconnects and joins
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drop must not hang"
    );
    let after_drop = calls.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        after_drop,
        "the thread is gone"
    );
    assert!(after_drop < 1000, "stopped early, not after the whole file");
}

#[test]
fn teacher_errors_and_panics_reach_the_trainer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut teacher, _, _) = FakeTeacher::new();
    teacher.fail_at = Some(2);
    let mut producer = Producer::spawn(
        config(write_rows(dir.path(), 40, "pair"), 2),
        Some(Box::new(teacher)),
    )
    .unwrap();
    let results: Vec<_> = std::iter::from_fn(|| producer.next_batch()).collect();
    assert_eq!(
        results.len(),
        3,
        "two batches, then the error, then the end"
    );
    let err = results[2].as_ref().unwrap_err().to_string();
    assert!(err.contains("fake teacher failed on purpose"), "{err}");

    let (mut teacher, _, _) = FakeTeacher::new();
    teacher.panic_at = Some(1);
    let mut producer = Producer::spawn(
        config(write_rows(dir.path(), 40, "pair"), 2),
        Some(Box::new(teacher)),
    )
    .unwrap();
    let first = producer.next_batch().unwrap();
    assert!(first.is_ok());
    let second = producer.next_batch().unwrap().unwrap_err();
    assert!(matches!(second, Error::Thread { .. }), "{second:?}");
    assert!(
        second
            .to_string()
            .contains("producer thread failed: panicked: fake teacher panicked on purpose"),
        "{second}"
    );
    assert!(producer.next_batch().is_none());
}

#[test]
fn bad_rows_arrive_as_errors_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train.jsonl"),
        "{\"query\": \"a\", \"passage\": \"b\"}\n{\"query\": \"a\", \"passage\": 3}\n",
    )
    .unwrap();
    let (teacher, _, _) = FakeTeacher::new();
    let mut producer = Producer::spawn(
        config(DataSource::new("train.jsonl", dir.path()), 2),
        Some(Box::new(teacher)),
    )
    .unwrap();
    let err = producer.next_batch().unwrap().unwrap_err().to_string();
    assert!(err.contains("train.jsonl:2"), "{err}");
}

#[test]
fn resume_position_skips_batches_already_trained() {
    let dir = tempfile::tempdir().unwrap();
    let source = write_rows(dir.path(), 20, "pair");
    let mut full_config = config(source.clone(), 2);
    full_config.shuffle = true;
    full_config.epochs = 2;
    let all: Vec<_> = {
        let mut p = Producer::spawn(full_config.clone(), None).unwrap();
        std::iter::from_fn(|| p.next_batch())
            .map(|b| b.unwrap())
            .collect()
    };
    assert_eq!(all.len(), 10);
    let mut resumed_config = full_config;
    resumed_config.start = all[6].position;
    let mut p = Producer::spawn(resumed_config, None).unwrap();
    let rest: Vec<_> = std::iter::from_fn(|| p.next_batch())
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(rest.len(), 3);
    for (a, b) in rest.iter().zip(&all[7..]) {
        assert_eq!(a.examples, b.examples, "same shuffled order after resume");
    }
}

/// Scores a pair by its text and the first pair of the call it came in: like a real teacher's
/// last bits, which depend on the padding of the call's other pairs.
struct GroupingSensitive;

impl Teacher for GroupingSensitive {
    fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let first = pairs.first().map_or(0.0, |(q, p)| fake_score(q, p));
        Ok(pairs
            .iter()
            .map(|(q, p)| fake_score(q, p) + first * 1e-3 + pairs.len() as f32)
            .collect())
    }
    fn fingerprint(&self) -> String {
        "grouping".into()
    }
    fn describe(&self) -> String {
        "grouping-sensitive teacher".into()
    }
}

#[test]
fn a_resumed_producer_scores_in_the_same_teacher_calls_as_an_uninterrupted_one() {
    // 23 rows in batches of 4 over 2 epochs; teacher calls of at least 10 pairs (3 batches, the
    // last of an epoch shorter). Resuming at any position, also inside a call, gives the
    // uninterrupted run's scores for every batch that follows.
    let dir = tempfile::tempdir().unwrap();
    let mut full_config = config(write_rows(dir.path(), 23, "pair"), 8);
    full_config.shuffle = true;
    full_config.epochs = 2;
    full_config.teacher_pairs = 10;
    let all: Vec<_> = {
        let mut p =
            Producer::spawn(full_config.clone(), Some(Box::new(GroupingSensitive))).unwrap();
        std::iter::from_fn(|| p.next_batch())
            .map(|b| b.unwrap())
            .collect()
    };
    assert_eq!(all.len(), 12);
    for resume_after in 0..all.len() {
        let mut resumed_config = full_config.clone();
        resumed_config.start = all[resume_after].position;
        let mut p = Producer::spawn(resumed_config, Some(Box::new(GroupingSensitive))).unwrap();
        let rest: Vec<_> = std::iter::from_fn(|| p.next_batch())
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(rest.len(), all.len() - resume_after - 1);
        for (a, b) in rest.iter().zip(&all[resume_after + 1..]) {
            assert_eq!(a.examples, b.examples, "resumed after batch {resume_after}");
            assert_eq!(a.position, b.position, "resumed after batch {resume_after}");
            assert_eq!(
                a.teacher_scores, b.teacher_scores,
                "teacher scores of the batch ending at {:?}, resumed after batch {resume_after}",
                b.position
            );
        }
    }
}

#[test]
fn parallel_columns_label_every_language_with_the_teacher_score_of_its_row() {
    // Rows hold one pair in English and German; the teacher reads English, the student trains on
    // both: two examples per row, each labelled with the score of the row's English pair, and
    // each English pair scored once.
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..6)
        .map(|i| {
            serde_json::json!({
                "en_1": format!("q{i}"), "en_2": format!("passage {i}"),
                "de_1": format!("frage {i}"), "de_2": format!("abschnitt nummer {i}")
            })
            .to_string()
        })
        .collect();
    std::fs::write(dir.path().join("train.jsonl"), lines.join("\n")).unwrap();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let parallel = crossdistill::recipe::ParallelColumns {
        student: vec![names(&["en_1", "en_2"]), names(&["de_1", "de_2"])],
        teacher: Some(names(&["en_1", "en_2"])),
    };
    let mut source = DataSource::new("train.jsonl", dir.path());
    let read = parallel.read(&crossdistill::recipe::DataSection {
        path: "train.jsonl".into(),
        base_dir: dir.path().to_path_buf(),
        columns: None,
        label: None,
        names: None,
        format: None,
        max_rows: None,
    });
    assert_eq!(read, names(&["en_1", "en_2", "de_1", "de_2"]));
    source.columns = Some(read.clone());
    let mut config = config(source, 2);
    config.teacher_pairs = 64;
    config.columns = Some(ColumnRoles::from_names(&parallel, &read).unwrap());
    let (teacher, _, scored) = FakeTeacher::new();
    let mut producer = Producer::spawn(config, Some(Box::new(teacher))).unwrap();
    let mut seen = Vec::new();
    while let Some(batch) = producer.next_batch() {
        let batch = batch.unwrap();
        let scores = batch.teacher_scores.unwrap();
        for (example, scores) in batch.examples.iter().zip(scores) {
            let texts: Vec<String> = example
                .fields
                .iter()
                .map(|f| match f {
                    Field::Text(t) => t.clone(),
                    Field::List(_) => panic!("texts only"),
                })
                .collect();
            let i = (example.line - 1) as f32;
            let english = fake_score(&format!("q{i}"), &format!("passage {i}"));
            assert_eq!(scores, vec![english], "row {} {texts:?}", example.line);
            seen.push(texts);
        }
    }
    assert_eq!(seen.len(), 12, "two examples per row");
    assert_eq!(seen[0], names(&["q0", "passage 0"]));
    assert_eq!(seen[1], names(&["frage 0", "abschnitt nummer 0"]));
    assert_eq!(
        scored.load(Ordering::SeqCst),
        6,
        "each English pair is scored once"
    );
}

/// The pairs of every teacher call, in order, and whether a held-out call was released by the
/// test (rather than by a timeout).
type CallLog = Arc<std::sync::Mutex<Vec<(Vec<(String, String)>, bool)>>>;

/// Scores like [`FakeTeacher`]; a call holding the held-out pairs waits for the test to open
/// `gate`.
struct GatedHeldOut {
    calls: CallLog,
    gate: crossbeam_channel::Receiver<()>,
}

impl Teacher for GatedHeldOut {
    fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let held_out = pairs.iter().any(|(q, _)| q.starts_with("dev"));
        let released = held_out && self.gate.recv_timeout(Duration::from_secs(10)).is_ok();
        let pairs_owned = pairs
            .iter()
            .map(|(q, p)| (q.to_string(), p.to_string()))
            .collect();
        self.calls.lock().unwrap().push((pairs_owned, released));
        Ok(pairs.iter().map(|(q, p)| fake_score(q, p)).collect())
    }
    fn fingerprint(&self) -> String {
        "gated".into()
    }
    fn describe(&self) -> String {
        "gated teacher".into()
    }
}

fn held_out_pairs() -> Vec<(String, String)> {
    vec![
        ("dev query".into(), "dev passage one".into()),
        ("dev q".into(), "p".into()),
        ("dev query".into(), "dev passage one".into()),
    ]
}

#[test]
fn the_teacher_scores_the_held_out_pairs_after_the_last_batch() {
    for teacher_labels in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let calls: CallLog = Arc::default();
        let (open, gate) = crossbeam_channel::bounded(1);
        let teacher = GatedHeldOut {
            calls: calls.clone(),
            gate,
        };
        let mut config = config(write_rows(dir.path(), 10, "pair"), 2);
        config.held_out = held_out_pairs();
        config.teacher_labels = teacher_labels;
        let mut producer = Producer::spawn(config, Some(Box::new(teacher))).unwrap();
        // Every batch arrives while the held-out call is still shut: the trainer never waits
        // for the held-out pairs.
        let batches: Vec<_> = std::iter::from_fn(|| producer.next_batch())
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(batches.iter().map(|b| b.examples.len()).sum::<usize>(), 10);
        for batch in &batches {
            assert_eq!(batch.teacher_scores.is_some(), teacher_labels);
        }
        open.send(()).unwrap();
        let scores = producer.held_out_scores().unwrap();
        let expected: Vec<f32> = held_out_pairs()
            .iter()
            .map(|(q, p)| fake_score(q, p))
            .collect();
        assert_eq!(scores, expected, "in order, repeated pairs included");
        let calls = calls.lock().unwrap();
        let (last, released) = calls.last().unwrap();
        assert!(
            released,
            "the held-out call waited for the test, after the batches"
        );
        assert_eq!(
            last,
            &vec![
                ("dev query".to_string(), "dev passage one".to_string()),
                ("dev q".to_string(), "p".to_string())
            ],
            "the last call is the held-out pairs, each distinct pair once"
        );
        assert_eq!(calls.len() > 1, teacher_labels);
    }
}

#[test]
fn asking_for_the_held_out_scores_ends_the_batches_early() {
    let dir = tempfile::tempdir().unwrap();
    let (teacher, _, _) = FakeTeacher::new();
    let mut config = config(write_rows(dir.path(), 4000, "pair"), 2);
    config.held_out = held_out_pairs();
    let mut producer = Producer::spawn(config, Some(Box::new(teacher))).unwrap();
    producer.next_batch().unwrap().unwrap();
    // Training stopped after one batch (max_steps): no deadlock on the full channel.
    let scores = producer.held_out_scores().unwrap();
    assert_eq!(scores.len(), 3);
    assert!(producer.next_batch().is_none());
}

#[test]
fn held_out_teacher_errors_and_panics_reach_the_trainer() {
    let dir = tempfile::tempdir().unwrap();
    for (fail, panic) in [(Some(0), None), (None, Some(0))] {
        let (mut teacher, _, _) = FakeTeacher::new();
        teacher.fail_at = fail;
        teacher.panic_at = panic;
        let mut config = config(write_rows(dir.path(), 10, "pair"), 2);
        config.held_out = held_out_pairs();
        config.teacher_labels = false; // the held-out call is the teacher's only one
        let mut producer = Producer::spawn(config, Some(Box::new(teacher))).unwrap();
        while let Some(batch) = producer.next_batch() {
            batch.unwrap();
        }
        let err = producer.held_out_scores().unwrap_err().to_string();
        let expected = if fail.is_some() {
            "fake teacher failed on purpose"
        } else {
            "producer thread failed: panicked: fake teacher panicked on purpose"
        };
        assert!(err.contains(expected), "{err}");
    }
    let mut config = config(write_rows(dir.path(), 10, "pair"), 2);
    config.held_out = held_out_pairs();
    let err = Producer::spawn(config, None).err().unwrap().to_string();
    assert!(
        err.contains("3 held-out pairs to score, but the producer has no teacher"),
        "{err}"
    );
}
