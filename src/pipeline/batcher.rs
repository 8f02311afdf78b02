//! Grouping rows into batches, optionally without duplicate texts in a batch
//! (sentence-transformers' `NoDuplicatesBatchSampler`, which matters for in-batch negatives).

use std::collections::{HashSet, VecDeque};

use crate::data::{Field, Row};
use crate::error::Result;

/// Batches of `batch_size` rows from a row stream.
pub struct Batcher<I> {
    rows: I,
    batch_size: usize,
    no_duplicates: bool,
    deferred: VecDeque<Row>,
    done: bool,
}

impl<I: Iterator<Item = Result<Row>>> Batcher<I> {
    /// Batch `rows`; with `no_duplicates`, a row sharing a text with the batch being built waits
    /// for a later batch.
    pub fn new(rows: I, batch_size: usize, no_duplicates: bool) -> Self {
        Self {
            rows,
            batch_size: batch_size.max(1),
            no_duplicates,
            deferred: VecDeque::new(),
            done: false,
        }
    }
}

fn texts(row: &Row) -> impl Iterator<Item = &str> {
    row.fields
        .iter()
        .flat_map(|field| match field {
            Field::Text(text) => std::slice::from_ref(text).iter(),
            Field::List(list) => list.iter(),
        })
        .map(String::as_str)
}

impl<I: Iterator<Item = Result<Row>>> Iterator for Batcher<I> {
    type Item = Result<Vec<Row>>;

    fn next(&mut self) -> Option<Self::Item> {
        // Grows as rows arrive: the batch size is the user's number, never an allocation size.
        let mut batch: Vec<Row> = Vec::with_capacity(self.batch_size.min(1 << 12));
        let mut seen: HashSet<String> = HashSet::new();
        // Deferred rows get the first chance, in order.
        let mut still_deferred = VecDeque::new();
        while let Some(row) = self.deferred.pop_front() {
            if batch.len() < self.batch_size
                && (!self.no_duplicates || texts(&row).all(|t| !seen.contains(t)))
            {
                seen.extend(texts(&row).map(str::to_string));
                batch.push(row);
            } else {
                still_deferred.push_back(row);
            }
        }
        self.deferred = still_deferred;
        while batch.len() < self.batch_size && !self.done {
            match self.rows.next() {
                None => self.done = true,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(row)) => {
                    if self.no_duplicates && texts(&row).any(|t| seen.contains(t)) {
                        self.deferred.push_back(row);
                    } else {
                        if self.no_duplicates {
                            seen.extend(texts(&row).map(str::to_string));
                        }
                        batch.push(row);
                    }
                }
            }
        }
        if batch.is_empty() {
            // Only rows that clash with each other remain: emit them one batch at a time.
            return self.deferred.pop_front().map(|row| Ok(vec![row]));
        }
        Some(Ok(batch))
    }
}

/// Split rows into batches (non-streaming helper for tests and evaluation).
pub fn batch_examples(rows: Vec<Row>, batch_size: usize, no_duplicates: bool) -> Vec<Vec<Row>> {
    Batcher::new(rows.into_iter().map(Ok), batch_size, no_duplicates)
        .map(|b| b.expect("in-memory rows cannot fail"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(a: &str, b: &str) -> Row {
        Row {
            line: 0,
            fields: vec![Field::Text(a.into()), Field::Text(b.into())],
            label: None,
        }
    }

    #[test]
    fn plain_batches_keep_order() {
        let rows = vec![row("a", "1"), row("b", "2"), row("c", "3")];
        let batches = batch_examples(rows, 2, false);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1][0].fields[0], Field::Text("c".into()));
    }

    #[test]
    fn no_duplicates_defers_clashing_rows() {
        let rows = vec![row("q", "1"), row("q", "2"), row("r", "3"), row("s", "4")];
        let batches = batch_examples(rows, 2, true);
        for batch in &batches {
            let mut seen = HashSet::new();
            for r in batch {
                for t in texts(r) {
                    assert!(seen.insert(t.to_string()), "duplicate {t} in a batch");
                }
            }
        }
        assert_eq!(
            batches.iter().map(Vec::len).sum::<usize>(),
            4,
            "no row lost"
        );
        assert_eq!(batches[0].len(), 2);
    }
}
