//! JSONL reading that never panics on bad rows: malformed lines are skipped and counted, the
//! first few line numbers reported; a file with no usable row is an error.

use crate::{Error, Result};
use serde::de::DeserializeOwned;
use std::io::BufRead;
use std::path::Path;

/// How many bad line numbers a report keeps.
pub const REPORTED_LINES: usize = 5;

/// The rows of a file and what was skipped.
#[derive(Debug)]
pub struct Loaded<T> {
    pub rows: Vec<T>,
    pub skipped: usize,
    /// `(line number, reason)` of the first skipped lines.
    pub first_skipped: Vec<(usize, String)>,
}

impl<T> Loaded<T> {
    /// No rows, nothing skipped.
    pub fn empty() -> Self {
        Self {
            rows: Vec::new(),
            skipped: 0,
            first_skipped: Vec::new(),
        }
    }

    /// Counts a skipped line, keeping its reason if it is among the first few.
    pub fn skip(&mut self, line: usize, reason: impl Into<String>) {
        self.skipped += 1;
        if self.first_skipped.len() < REPORTED_LINES {
            self.first_skipped.push((line, reason.into()));
        }
    }

    /// One line for the user: `read 120 rows; skipped 3 malformed (lines 4: ..., 9: ...)`.
    pub fn summary(&self) -> String {
        let mut s = format!("read {} rows", self.rows.len());
        if self.skipped > 0 {
            let lines: Vec<String> = self
                .first_skipped
                .iter()
                .map(|(l, r)| format!("line {l}: {r}"))
                .collect();
            s.push_str(&format!("; skipped {} malformed ({})", self.skipped, lines.join("; ")));
        }
        s
    }
}

/// Reads `path`, one JSON value per line; blank lines are ignored. `check` may reject a parsed row.
pub fn read<T: DeserializeOwned>(
    path: &Path,
    check: impl Fn(&T) -> std::result::Result<(), String>,
) -> Result<Loaded<T>> {
    let file = std::fs::File::open(path).map_err(crate::error::io(path))?;
    let mut out = Loaded::empty();
    for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let bytes = line.map_err(crate::error::io(path))?;
        let parsed = cuma_model::items::parse_row(&bytes, &check);
        match parsed {
            Ok(Some(row)) => out.rows.push(row),
            Ok(None) => {}
            Err(reason) => out.skip(i + 1, reason),
        }
    }
    if out.rows.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no usable rows ({})",
            path.display(),
            out.summary()
        )));
    }
    Ok(out)
}

/// Writes rows as JSONL.
pub fn write<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(crate::error::io(dir))?;
    }
    let file = std::fs::File::create(path).map_err(crate::error::io(path))?;
    let mut w = std::io::BufWriter::new(file);
    for r in rows {
        let line = serde_json::to_string(r).map_err(|e| Error::Invalid(e.to_string()))?;
        writeln!(w, "{line}").map_err(crate::error::io(path))?;
    }
    w.flush().map_err(crate::error::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ChoiceItem;

    fn tmp(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("cuma-jsonl-{}-{name}", std::process::id()));
        std::fs::write(&p, text).expect("write");
        p
    }

    const GOOD: &str = r#"{"id":"1","respondent":"r","question_id":"Q1","profile":{"country":"Chile"},"question":"Q?","options":["a","b"],"answer":1}"#;

    #[test]
    fn malformed_rows_are_skipped_and_reported() {
        let bad_answer = GOOD.replace("\"answer\":1", "\"answer\":5");
        let text = format!("{GOOD}\n{{not json\n\n{bad_answer}\n{GOOD}\n");
        let p = tmp("mixed", &text);
        let loaded: Loaded<ChoiceItem> = read(&p, ChoiceItem::validate).expect("reads");
        assert_eq!(loaded.rows.len(), 2);
        assert_eq!(loaded.skipped, 2);
        assert_eq!(loaded.first_skipped[0].0, 2);
        assert_eq!(loaded.first_skipped[1].0, 4);
        assert!(
            loaded.first_skipped[1].1.contains("out of range"),
            "{:?}",
            loaded.first_skipped
        );
    }

    #[test]
    fn a_file_without_usable_rows_is_an_error() {
        let p = tmp("empty", "{}\n\u{fffd}garbage\n");
        let err = read::<ChoiceItem>(&p, ChoiceItem::validate).expect_err("no rows");
        assert!(err.to_string().contains("no usable rows"), "{err}");
    }
}
