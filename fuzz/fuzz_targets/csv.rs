//! The CSV and TSV readers on arbitrary bytes: never a panic; rows that read obey the reader's
//! contract. Bit 3 of the first byte picks TSV.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let name = if flags & 8 != 0 {
        "data.tsv"
    } else {
        "data.csv"
    };
    common::write(name, body);
    common::read_all(&common::source(name, flags));
});
