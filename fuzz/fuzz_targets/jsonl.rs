//! The JSONL reader on arbitrary bytes: never a panic; rows that read obey the reader's contract.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    common::write("data.jsonl", body);
    common::read_all(&common::source("data.jsonl", flags));
});
