//! Survey and chat data: the canonical JSONL item format ([`item`]), reading it with
//! malformed-row reports ([`jsonl`]), profiles and their text ([`profile`]), and converters from
//! raw World Values Survey wave 7 files ([`wvs`]), POPQUORN ratings ([`popquorn`]), PRISM ([`prism`]) and
//! Community Alignment ([`community_alignment`]) conversations, and preference pairs ([`pairs`]).

pub mod clusters;
pub mod community_alignment;
pub mod dialogue;
pub mod jsonl;
pub mod pairs;
pub mod popquorn;
pub mod prism;
pub mod profile;
pub mod split;
pub mod synth;
pub mod table;
pub mod wvb;
pub mod wvs;

/// The canonical item types live in `cuma-model` (shared with the fuzz targets and the runtime).
pub use cuma_model::items as item;
pub use item::{ChatItem, ChoiceItem, Item, Scale};
pub use profile::{Profile, ProfileStyle};

/// A fresh temporary folder for one call of a loader test: the tests of a binary run in parallel
/// threads of one process, so a folder named after the process alone would be shared.
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> std::path::PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cuma-{tag}-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}
