//! Work spread over several sessions: the pieces of one large file, or
//! the files of a folder. libssh2 serialises every call on one session,
//! so parallel work needs connections of its own
//! ([`Session::connect_another`](crate::Session::connect_another)).

use std::collections::VecDeque;
use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use log::{info, warn};

use super::options::TransferOptions;
use super::pipeline::{self, Sink};
use super::progress::FileProgress;
use crate::sftp::proto::{open as flags, Attrs};
use crate::sftp::{SftpSession, Shared};
use crate::{Error, Result};

/// The sessions that work together: the caller's, and the extra ones that
/// could be opened.
pub(crate) struct Workers {
    extra: Vec<SftpSession>,
}

impl Workers {
    /// Opens up to `wanted - 1` extra sessions beside `shared`'s, in
    /// parallel. Those the server refuses are logged and done without: the
    /// work then goes to the sessions that did open, down to `shared`'s
    /// alone.
    pub(crate) fn open(shared: &Shared, wanted: usize) -> Workers {
        if wanted <= 1 {
            return Workers { extra: Vec::new() };
        }
        let results: Vec<Result<SftpSession>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..wanted)
                .map(|_| scope.spawn(|| SftpSession::start(shared.dialer.another()?)))
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
        let target = shared.pool.target();
        if let Some(first) = refused.first() {
            warn!(
                "{target}: {} of {} extra connections failed ({first}); carrying on with {} \
                 session(s)",
                refused.len(),
                wanted - 1,
                extra.len() + 1
            );
        } else {
            info!("{target}: {wanted} sessions work in parallel");
        }
        if !extra.is_empty() && !first_login_alive(shared) {
            warn!(
                "{target}: the server ended our first login when another arrived (it allows \
                 fewer logins per user than {wanted}); carrying on with one session"
            );
            extra.clear();
        }
        Workers { extra }
    }

    /// How many sessions work.
    pub(crate) fn len(&self) -> usize {
        self.extra.len() + 1
    }

    /// Runs `job` for each item of `items` on every session at once (each
    /// session takes the next item when done with one) and returns the
    /// first error; the others stop taking items after it.
    pub(crate) fn run<T: Send>(
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

/// Whether the caller's session still answers after the extra logins:
/// some servers end a user's older login when a new one arrives.
fn first_login_alive(shared: &Shared) -> bool {
    match shared.pool.any() {
        Ok(mut ch) => match crate::sftp::fs::realpath(&mut ch, b".") {
            Ok(_) => true,
            Err(e) => e.kind() != crate::ErrorKind::Disconnected,
        },
        Err(e) => e.kind() != crate::ErrorKind::Disconnected,
    }
}

/// Hands out a file's bytes, one buffer at a time, to the sessions that
/// move it: each session pulls the next piece when its pipeline has room,
/// so a session that connects late or runs slow just takes fewer, and no
/// session idles while another still has a long segment ahead of it.
struct Pieces {
    next: AtomicU64,
    total: u64,
    size: u64,
    /// Set by the first session that fails: the others stop pulling.
    failed: AtomicBool,
}

impl Pieces {
    fn new(total: u64, size: usize) -> Pieces {
        Pieces {
            next: AtomicU64::new(0),
            total,
            size: (size as u64).max(1),
            failed: AtomicBool::new(false),
        }
    }

    /// The next piece, or `None` once every piece is taken (or a session
    /// failed).
    fn take(&self) -> Option<Range<u64>> {
        if self.all_taken() {
            return None;
        }
        let start = self.next.fetch_add(self.size, Ordering::SeqCst);
        (start < self.total).then(|| start..(start + self.size).min(self.total))
    }

    /// Whether [`take`](Self::take) has nothing more to hand out.
    fn all_taken(&self) -> bool {
        self.failed.load(Ordering::SeqCst) || self.next.load(Ordering::SeqCst) >= self.total
    }
}

/// Runs `job` once on each of `workers`' sessions with the pieces of
/// `total` bytes and the progress they share; a session that finds every
/// piece taken before it starts does nothing.
fn run_pieces(
    shared: &Shared,
    workers: &Workers,
    total: u64,
    options: &TransferOptions,
    job: impl Fn(&Shared, &Pieces) -> Result<()> + Sync,
) -> Result<u64> {
    let pieces = Pieces::new(total, options.buffer_size);
    let sessions = vec![(); workers.len()];
    workers.run(shared, sessions, |shared, ()| {
        if pieces.all_taken() {
            return Ok(());
        }
        job(shared, &pieces).inspect_err(|_| pieces.failed.store(true, Ordering::SeqCst))
    })?;
    Ok(total)
}

/// Writes `local` into the remote file `path` (which exists) on all
/// `workers` at once; each flushes it where the server offers fsync.
pub(crate) fn upload_segments(
    shared: &Shared,
    workers: &Workers,
    local: &Path,
    path: &[u8],
    total: u64,
    options: &TransferOptions,
    progress: &FileProgress<'_>,
) -> Result<u64> {
    run_pieces(shared, workers, total, options, |shared, pieces| {
        let source = File::open(local)
            .map_err(|e| Error::io(format!("cannot read {} for upload", local.display()), e))?;
        let mut ch = shared.pool.any()?;
        let handle = pipeline::open(&mut ch, path, flags::WRITE, &Attrs::default(), "upload")?;
        let written = pipeline::write_ranges(
            &mut ch,
            &handle,
            path,
            &source,
            &mut || pieces.take(),
            options.in_flight(),
            &mut |n| progress.add(n),
        );
        match written {
            Ok(()) => {
                pipeline::finish_write(&mut ch, &handle, path, options.fsync, None, false, true)
                    .map(drop)
            }
            Err(e) => {
                ch.close_quietly(&handle, path);
                Err(e)
            }
        }
    })
}

/// Reads the remote file `path` into `out` (already `total` bytes long)
/// on all `workers` at once, then checks that the file still ends at
/// `total` (it did not grow meanwhile; a piece that found the end early
/// already failed: it shrank).
pub(crate) fn download_segments(
    shared: &Shared,
    workers: &Workers,
    path: &[u8],
    out: &File,
    total: u64,
    options: &TransferOptions,
    progress: &FileProgress<'_>,
) -> Result<u64> {
    let done = run_pieces(shared, workers, total, options, |shared, pieces| {
        read_pieces(
            shared,
            path,
            out,
            options,
            &mut || pieces.take(),
            None,
            &mut |n| progress.add(n),
        )
    })?;
    read_pieces(
        shared,
        path,
        out,
        options,
        &mut || None,
        Some(total),
        &mut |_| {},
    )?;
    Ok(done)
}

/// Reads what `next` hands out of `path` into `out` on a channel of
/// `shared`'s (see [`pipeline::read_ranges`]).
fn read_pieces(
    shared: &Shared,
    path: &[u8],
    out: &File,
    options: &TransferOptions,
    next: pipeline::NextRange<'_>,
    eof: Option<u64>,
    progress: pipeline::Progress<'_>,
) -> Result<()> {
    let mut ch = shared.pool.any()?;
    let handle = pipeline::open(&mut ch, path, flags::READ, &Attrs::default(), "download")?;
    let read = pipeline::read_ranges(
        &mut ch,
        &handle,
        path,
        Sink::File(out),
        next,
        eof,
        options.in_flight(),
        progress,
    );
    pipeline::close_read(&mut ch, &handle, path);
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_file_exactly_once_across_threads() {
        for (total, size) in [
            (0u64, 10usize),
            (1, 10),
            (10, 10),
            (11, 10),
            (1_000_003, 4096),
        ] {
            let pieces = Pieces::new(total, size);
            let taken = Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        while let Some(r) = pieces.take() {
                            assert!(r.end - r.start <= size as u64 && r.start < r.end);
                            taken.lock().expect("lock").push(r);
                        }
                    });
                }
            });
            let mut taken = taken.into_inner().expect("lock");
            taken.sort_by_key(|r| r.start);
            let mut at = 0;
            for r in &taken {
                assert_eq!(r.start, at, "total {total}");
                at = r.end;
            }
            assert_eq!(at, total);
            assert!(pieces.all_taken());
        }
    }

    #[test]
    fn a_failure_stops_the_handing_out() {
        let pieces = Pieces::new(100, 10);
        assert_eq!(pieces.take(), Some(0..10));
        pieces.failed.store(true, Ordering::SeqCst);
        assert_eq!(pieces.take(), None);
        assert!(pieces.all_taken());
    }
}
