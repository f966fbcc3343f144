//! Read-only memory maps of weight files: the one place `unsafe` is allowed in this crate.
//!
//! Mapping is `unsafe` because another process could truncate the file under us. Weight files are
//! treated as immutable while cuma runs; every read of mapped bytes goes through bounds-checked
//! slices, so a short file gives an error, not undefined behaviour, as long as it is not modified
//! concurrently.
#![allow(unsafe_code)]

use std::path::Path;

/// The bytes of one weight file: mapped from disk, or owned (files built in memory, fuzzing).
#[derive(Debug)]
pub enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    /// Maps `path` read-only.
    pub fn map(path: &Path) -> super::Result<Self> {
        let file = std::fs::File::open(path).map_err(super::error::io(path))?;
        // SAFETY: see the module docs: the file is not modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(super::error::io(path))?;
        Ok(Self::Mapped(map))
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}
