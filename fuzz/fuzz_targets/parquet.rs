//! The Parquet reader. The first byte picks a mode:
//! - 0: the rest describes a table (columns of strings, string lists, numbers, number lists,
//!   booleans, with nulls, NaN and ragged lists), written as a valid Parquet file and read back;
//! - 1: the same, then the file's bytes are damaged at positions the input picks;
//! - other: the rest is the file, as is.
//!
//! Never a panic; rows that read obey the reader's contract.
#![no_main]

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use libfuzzer_sys::fuzz_target;
use parquet::arrow::ArrowWriter;

#[path = "common.rs"]
mod common;

/// Reads the fuzz input as a stream of small choices; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    fn below(&mut self, n: u8) -> u8 {
        self.byte() % n.max(1)
    }

    fn text(&mut self) -> Option<String> {
        const WORDS: [&str; 6] = ["", "rust", "a longer passage", "é☃", "\n", "q"];
        match self.below(8) {
            7 => None,
            i => Some(WORDS[(i as usize) % WORDS.len()].to_string()),
        }
    }

    fn number(&mut self) -> Option<f64> {
        const NUMBERS: [f64; 8] = [0.0, 1.0, -2.5, 0.5, f64::NAN, f64::INFINITY, 1e300, 3.0];
        match self.below(9) {
            8 => None,
            i => Some(NUMBERS[i as usize]),
        }
    }
}

const NAMES: [&str; 5] = ["query", "passage", "score", "label", "docs"];

/// A column of `rows` cells of the kind the input picks.
fn column(bytes: &mut Bytes, rows: usize) -> ArrayRef {
    match bytes.below(7) {
        0 | 1 => {
            let mut builder = StringBuilder::new();
            for _ in 0..rows {
                builder.append_option(bytes.text());
            }
            Arc::new(builder.finish())
        }
        2 => {
            let mut builder = ListBuilder::new(StringBuilder::new());
            for _ in 0..rows {
                let length = bytes.below(4);
                for _ in 0..length {
                    builder.values().append_option(bytes.text());
                }
                builder.append(bytes.below(8) != 0);
            }
            Arc::new(builder.finish())
        }
        3 => {
            let mut builder = Float32Builder::new();
            for _ in 0..rows {
                builder.append_option(bytes.number().map(|n| n as f32));
            }
            Arc::new(builder.finish())
        }
        4 => {
            let mut builder = Int64Builder::new();
            for _ in 0..rows {
                builder.append_option(bytes.number().map(|n| n as i64));
            }
            Arc::new(builder.finish())
        }
        5 => {
            let mut builder = ListBuilder::new(Float64Builder::new());
            for _ in 0..rows {
                let length = bytes.below(4);
                for _ in 0..length {
                    builder.values().append_option(bytes.number());
                }
                builder.append(bytes.below(8) != 0);
            }
            Arc::new(builder.finish())
        }
        _ => {
            let mut builder = BooleanBuilder::new();
            for _ in 0..rows {
                builder.append_option(match bytes.below(3) {
                    0 => None,
                    1 => Some(true),
                    _ => Some(false),
                });
            }
            Arc::new(builder.finish())
        }
    }
}

/// A valid Parquet file holding the table the input describes.
fn table(bytes: &mut Bytes) -> Option<Vec<u8>> {
    let rows = bytes.below(6) as usize;
    let columns = 1 + bytes.below(4) as usize;
    let mut fields: Vec<(&str, ArrayRef)> = Vec::new();
    for index in 0..columns {
        let name = NAMES[(index + bytes.below(2) as usize) % NAMES.len()];
        if fields.iter().any(|(taken, _)| *taken == name) {
            continue;
        }
        fields.push((name, column(bytes, rows)));
    }
    let batch = RecordBatch::try_from_iter(fields).ok()?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).ok()?;
    writer.write(&batch).ok()?;
    writer.close().ok()?;
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&flags, rest)) = rest.split_first() else {
        return;
    };
    let file = match mode {
        0 | 1 => {
            let mut bytes = Bytes(rest);
            let Some(mut file) = table(&mut bytes) else {
                return;
            };
            if mode == 1 && !file.is_empty() {
                while !bytes.0.is_empty() {
                    let at =
                        (usize::from(bytes.byte()) << 8 | usize::from(bytes.byte())) % file.len();
                    file[at] = bytes.byte();
                }
            }
            file
        }
        _ => rest.to_vec(),
    };
    common::write("data.parquet", &file);
    common::read_all(&common::source("data.parquet", flags));
});
