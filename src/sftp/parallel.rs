//! Work spread over several sessions: segments of one large file, or the
//! files of a folder. libssh2 serialises every call on one session, so
//! parallel work needs connections of its own
//! ([`Session::connect_another`](crate::Session::connect_another)).

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::transfer::TransferOptions;
use super::wire::flags;
use super::{SftpSession, Shared};
use crate::{Error, Result};
use log::{info, warn};

/// The sessions that work together: the caller's, and the extra ones that
/// could be opened.
pub(super) struct Workers {
    extra: Vec<SftpSession>,
}

impl Workers {
    /// Opens up to `wanted - 1` extra sessions beside `shared`'s, in
    /// parallel. Those the server refuses are logged and done without: the
    /// work then goes to the sessions that did open, down to `shared`'s
    /// alone.
    pub(super) fn open(shared: &Shared, wanted: usize) -> Workers {
        if wanted <= 1 {
            return Workers { extra: Vec::new() };
        }
        let results: Vec<Result<SftpSession>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..wanted)
                .map(|_| scope.spawn(|| shared.inner.connect_another()?.sftp()))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::io(
                            "opening an extra session",
                            std::io::Error::other("the thread panicked"),
                        ))
                    })
                })
                .collect()
        });
        let mut extra = Vec::new();
        let mut refused = Vec::new();
        for result in results {
            match result {
                Ok(sftp) => extra.push(sftp),
                Err(e) => refused.push(e),
            }
        }
        if let Some(first) = refused.first() {
            warn!(
                "{}: {} of {} extra connections failed ({first}); carrying on with {} session(s)",
                shared.inner.target(),
                refused.len(),
                wanted - 1,
                extra.len() + 1
            );
        } else {
            info!(
                "{}: {} sessions work in parallel",
                shared.inner.target(),
                wanted
            );
        }
        Workers { extra }
    }

    /// How many sessions work.
    pub(super) fn len(&self) -> usize {
        self.extra.len() + 1
    }

    /// Runs `job` for each item of `items` on every session at once (each
    /// session takes the next item when done with one) and returns the
    /// first error; the others stop taking items after it.
    pub(super) fn run<T: Send>(
        &self,
        shared: &Shared,
        items: Vec<T>,
        job: impl Fn(&Shared, T) -> Result<()> + Sync,
    ) -> Result<()> {
        let queue = Mutex::new(VecDeque::from(items));
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let next = || {
            if failed.load(Ordering::SeqCst) {
                return None;
            }
            queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
        };
        let work = |shared: &Shared| {
            while let Some(item) = next() {
                if let Err(e) = job(shared, item) {
                    failed.store(true, Ordering::SeqCst);
                    first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                    return;
                }
            }
        };
        std::thread::scope(|scope| {
            for sftp in &self.extra {
                let work = &work;
                scope.spawn(move || work(&sftp.shared));
            }
            work(shared);
        });
        match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A byte range of a file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    offset: u64,
    len: u64,
}

/// `total` bytes cut into about two segments per session, none shorter
/// than `min` (but the last), each a whole number of buffers.
pub(super) fn segments(total: u64, sessions: usize, min: u64, buffer: usize) -> Vec<Segment> {
    let buffer = buffer.max(1) as u64;
    let wanted = (sessions as u64 * 2).max(1);
    let size = total.div_ceil(wanted).max(min).max(1).div_ceil(buffer) * buffer;
    (0..total.div_ceil(size))
        .map(|i| {
            let offset = i * size;
            Segment {
                offset,
                len: size.min(total - offset),
            }
        })
        .collect()
}

/// Progress shared by the workers of one transfer.
struct Progress<'a> {
    done: AtomicU64,
    total: u64,
    options: &'a TransferOptions,
}

impl Progress<'_> {
    fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::SeqCst) + n;
        self.options.report(done, self.total.max(done));
    }
}

/// Cuts `total` bytes into segments and runs `job` for each on all
/// `workers`, with the progress they share.
fn run_segments(
    shared: &Shared,
    workers: &Workers,
    total: u64,
    options: &TransferOptions,
    job: impl Fn(&Shared, Segment, &Progress<'_>) -> Result<()> + Sync,
) -> Result<u64> {
    let parts = segments(
        total,
        workers.len(),
        options.min_segment_size,
        options.buffer_size,
    );
    let progress = Progress {
        done: AtomicU64::new(0),
        total,
        options,
    };
    options.report(0, total);
    workers.run(shared, parts, |shared, part| job(shared, part, &progress))?;
    Ok(total)
}

/// Writes `local` into the remote file `path` (which exists) segment by
/// segment on all `workers`; flushes it where the server offers fsync.
pub(super) fn upload_segments(
    shared: &Shared,
    workers: &Workers,
    local: &Path,
    path: &str,
    total: u64,
    options: &TransferOptions,
) -> Result<u64> {
    run_segments(shared, workers, total, options, |shared, part, progress| {
        upload_segment(shared, local, path, part, options, progress)
    })
}

fn upload_segment(
    shared: &Shared,
    local: &Path,
    path: &str,
    part: Segment,
    options: &TransferOptions,
    progress: &Progress<'_>,
) -> Result<()> {
    let source = File::open(local)
        .map_err(|e| Error::io(format!("cannot read {} for upload", local.display()), e))?;
    shared.with_wire(|w| {
        let id = w.send_open(path, flags::WRITE, 0o644);
        let handle = w.handle_of(id, "upload", path)?;
        let written = w.write_from(
            &handle,
            path,
            &source,
            part.offset..part.offset + part.len,
            options.in_flight(),
            &mut |n| progress.add(n),
        );
        match written {
            Ok(()) => w
                .finish_write(&handle, path, options.fsync, None, false)
                .map(drop),
            Err(e) => {
                w.close_quietly(&handle, path);
                Err(e)
            }
        }
    })
}

/// Reads the remote file `path` into `out` (already `total` bytes long)
/// segment by segment on all `workers`.
pub(super) fn download_segments(
    shared: &Shared,
    workers: &Workers,
    path: &str,
    out: &File,
    total: u64,
    options: &TransferOptions,
) -> Result<u64> {
    run_segments(shared, workers, total, options, |shared, part, progress| {
        download_segment(shared, path, out, part, options, progress)
    })
}

fn download_segment(
    shared: &Shared,
    path: &str,
    out: &File,
    part: Segment,
    options: &TransferOptions,
    progress: &Progress<'_>,
) -> Result<()> {
    shared.with_wire(|w| {
        let id = w.send_open(path, flags::READ, 0);
        let handle = w.handle_of(id, "download", path)?;
        let read = w.read_into(
            &handle,
            path,
            out,
            part.offset..part.offset + part.len,
            false,
            options.in_flight(),
            &mut |n| progress.add(n),
        );
        w.close_quietly(&handle, path);
        read
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_the_file_exactly() {
        for (total, sessions, min, buffer) in [
            (0, 4, 10, 3),
            (1, 4, 1, 1),
            (100, 4, 1, 7),
            (1_000_000, 3, 1000, 30_000),
            (256 << 20, 8, 32 << 20, 1_020_000),
        ] {
            let parts = segments(total, sessions, min, buffer);
            let mut next = 0;
            for p in &parts {
                assert_eq!(p.offset, next);
                assert!(p.len > 0);
                next += p.len;
            }
            assert_eq!(next, total, "{total} {sessions} {min} {buffer}");
            for p in parts.iter().rev().skip(1) {
                assert!(p.len >= min && p.len % buffer as u64 == 0, "{p:?}");
            }
        }
    }

    #[test]
    fn about_two_segments_per_session() {
        let parts = segments(256 << 20, 4, 1 << 20, 1_020_000);
        assert!((7..=9).contains(&parts.len()), "{}", parts.len());
    }
}
