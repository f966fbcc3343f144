//! Read-only memory maps of weight files: the one place `unsafe` is allowed.
//!
//! Mapping is `unsafe` because another process could truncate the file under us. Weight files are
//! treated as immutable while cuma runs; every read of mapped bytes goes through bounds-checked
//! slices, so a short file gives an error, not undefined behaviour, as long as it is not modified
//! concurrently.
#![allow(unsafe_code)]

use std::path::Path;

/// The bytes of one file.
#[derive(Debug)]
pub struct Bytes(memmap2::Mmap);

impl Bytes {
    /// Maps `path` read-only.
    pub fn map(path: &Path) -> crate::Result<Self> {
        let file = std::fs::File::open(path).map_err(crate::error::io(path))?;
        // SAFETY: see the module docs: the file is not modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(crate::error::io(path))?;
        Ok(Self(map))
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}
