//! The lines of a text file (JSONL, plain text) as the line-oriented readers outside the
//! data sources see them: numbered from 1, with a UTF-8 byte-order mark at the start of the
//! file removed (Windows editors write one; `train`'s readers drop it too).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The byte-order mark some editors put at the start of a UTF-8 file.
pub const BYTE_ORDER_MARK: char = '\u{feff}';

/// The lines of the file at `path` with their 1-based numbers; a byte-order mark at the start
/// of the first line is removed. Errors name the file.
pub fn numbered_lines(path: &Path) -> Result<impl Iterator<Item = Result<(usize, String)>>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let path: PathBuf = path.to_path_buf();
    Ok(BufReader::new(file)
        .lines()
        .enumerate()
        .map(move |(index, line)| {
            let mut line = line.map_err(|e| Error::io("cannot read", &path, e))?;
            if index == 0 && line.starts_with(BYTE_ORDER_MARK) {
                line.drain(..BYTE_ORDER_MARK.len_utf8());
            }
            Ok((index + 1, line))
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_order_mark_is_removed_from_the_first_line_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, "\u{feff}{\"a\": 1}\n\u{feff}x\n").unwrap();
        let lines: Vec<(usize, String)> = numbered_lines(&path)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            lines,
            vec![(1, "{\"a\": 1}".to_string()), (2, "\u{feff}x".to_string())]
        );
    }
}
