//! Transfers: the options and the one decision of how each file moves
//! (`options.rs`), what they report (`outcome.rs`, `progress.rs`), one
//! file up or down (`upload.rs`, `download.rs`), the
//! pipelines they run on a channel (`pipeline.rs`), work shared by several
//! sessions as they connect (`lanes.rs`), the pieces of a large file over
//! them (`segments.rs`), many small files at once
//! (`wave.rs`), folder trees (`tree.rs`), and the removal of stale
//! temporary files (`stale.rs`).

pub(crate) mod checksum;
pub(crate) mod download;
pub(crate) mod flusher;
pub(crate) mod lanes;
pub(crate) mod options;
pub(crate) mod outcome;
pub(crate) mod pipeline;
pub(crate) mod progress;
pub(crate) mod segments;
pub(crate) mod stale;
pub(crate) mod tree;
pub(crate) mod upload;
pub(crate) mod wave;

pub use options::{
    Overwrite, TransferOptions, WriteOrder, DEFAULT_BUFFER_SIZE, DEFAULT_MIN_SEGMENT,
    DEFAULT_SESSIONS, DEFAULT_TEMP_NAME, PIPELINE_BUFFERS,
};
pub use outcome::{Checksum, Delivery, DirReport, FileReport, Progress, Verified};
