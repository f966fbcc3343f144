//! Delimited text tables (CSV, TSV) read whole, never panicking on bad rows: a row whose field
//! count differs from the header's, or that the parser rejects, is skipped and counted in the
//! report with its line number.

use super::jsonl::Loaded;
use crate::{Error, Result};
use std::path::Path;

/// A table: the header and the well-formed rows with their line numbers (the header is line 1).
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<(usize, csv::StringRecord)>,
}

impl Table {
    /// The index of column `name`, or an error naming the file.
    pub fn column(&self, name: &str, path: &Path) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::Invalid(format!("{}: no `{name}` column", path.display())))
    }
}

/// Reads `path` with `delimiter` (b',' or b'\t'); every row is counted in `report`, and skipped
/// rows are reported with their line numbers.
pub fn read(path: &Path, delimiter: u8, report: &mut Loaded<()>) -> Result<Table> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_path(path)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        match rec {
            Ok(rec) if rec.len() == header.len() => {
                rows.push((i + 2, rec));
                report.rows.push(());
            }
            Ok(rec) => report.skip(
                i + 2,
                format!("{}: {} fields, header has {}", path.display(), rec.len(), header.len()),
            ),
            Err(e) => report.skip(i + 2, format!("{}: {e}", path.display())),
        }
    }
    Ok(Table { header, rows })
}
