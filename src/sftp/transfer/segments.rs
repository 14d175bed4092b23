//! The pieces of one large file, moved over several sessions at once
//! (see [`lanes`](super::lanes)): each session pulls the next piece when
//! its pipeline has room; the pieces a session held when the server ended
//! it go to the others. An upload on a long link writes on two channels
//! of each session, which share that session's pieces; so does a large
//! upload on one session ([`write_all_beside`]).

use std::fs::File;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lanes::{self, Step};
use super::options::TransferOptions;
use super::pipeline::{self, Sink};
use super::progress::FileProgress;
use crate::sftp::pool::Lease;
use crate::sftp::proto::{open as flags, Attrs};
use crate::sftp::Shared;
use crate::{Error, ErrorKind, Result};

/// Hands out a file's bytes, one buffer at a time, to the sessions that
/// move it: each session pulls the next piece when its pipeline has room,
/// so a session that connects late or runs slow just takes fewer, and no
/// session idles while another still has a long segment ahead of it.
struct Pieces {
    next: AtomicU64,
    total: u64,
    size: u64,
    /// Pieces handed out to a session that ended before it confirmed
    /// them: handed out again first.
    returned: Mutex<Vec<Range<u64>>>,
    /// Set by the first session that fails: the others stop pulling.
    failed: AtomicBool,
}

impl Pieces {
    fn new(total: u64, size: usize) -> Pieces {
        Pieces {
            next: AtomicU64::new(0),
            total,
            size: (size as u64).max(1),
            returned: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
        }
    }

    fn returned(&self) -> std::sync::MutexGuard<'_, Vec<Range<u64>>> {
        self.returned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next piece, or `None` once every piece is taken (or a session
    /// failed).
    fn take(&self) -> Option<Range<u64>> {
        if self.failed.load(Ordering::SeqCst) {
            return None;
        }
        if let Some(piece) = self.returned().pop() {
            return Some(piece);
        }
        if self.next.load(Ordering::SeqCst) >= self.total {
            return None;
        }
        let start = self.next.fetch_add(self.size, Ordering::SeqCst);
        (start < self.total).then(|| start..(start + self.size).min(self.total))
    }

    /// Whether [`take`](Self::take) has nothing more to hand out.
    fn all_taken(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
            || (self.next.load(Ordering::SeqCst) >= self.total && self.returned().is_empty())
    }

    /// Hands `pieces` out again.
    fn give_back(&self, pieces: Vec<Range<u64>>) {
        self.returned().extend(pieces);
    }
}

/// SFTP channels an upload's pieces use on each session at once on a long
/// link. OpenSSH's sshd gives each channel a window of 2 MiB, so that one
/// channel carries at most 2 MiB per round trip whatever the client keeps
/// in flight (BENCHMARKS.md, "Traced"); a second channel doubles that
/// without the login of another connection. Two, not four: four cost more
/// CPU than they gained on a 2-core machine (256 MiB at 50 ms, four
/// sessions: 2.58–2.89 s with two, 2.69–2.98 s with four, 3.28–3.57 s
/// with one), and each is an `sftp-server` process on the partner's side.
/// Downloads use one: the window a client gives itself is 16 MiB.
pub(crate) const UPLOAD_CHANNELS: usize = 2;

/// The round trip from which an upload opens its second channel per
/// session: below it one channel's window carries more than 140 MB/s
/// (2 MiB per 15 ms), more than the CPU on either side keeps up with, and
/// a second channel costs CPU for nothing (256 MiB at 10 ms, four
/// sessions: 1.53–1.67 s with two channels, 1.32–1.48 s with one).
pub(crate) const SECOND_CHANNEL_FROM: Duration = Duration::from_millis(15);

/// A session's source of pieces, which its channels' threads share.
type SharedNext<'a> = &'a mut (dyn FnMut() -> Option<Range<u64>> + Send);

/// Runs `job` on `lanes` sessions at once with the pieces of `total`
/// bytes: `job` moves what its `next` hands out. The pieces a session
/// took go back when the server ended it; another error stops all.
fn run_pieces(
    shared: &Shared,
    lanes: usize,
    total: u64,
    options: &TransferOptions,
    job: impl Fn(&Shared, SharedNext<'_>) -> Result<()> + Sync,
) -> Result<u64> {
    let pieces = Pieces::new(total, options.buffer_size);
    lanes::run(shared, lanes, vec![(); lanes], |shared, (), last_try| {
        if pieces.all_taken() {
            return Step::Done;
        }
        let mut taken = Vec::new();
        let result = job(shared, &mut || {
            let piece = pieces.take();
            taken.extend(piece.clone());
            piece
        });
        match result {
            Err(e) if e.kind() == ErrorKind::Disconnected && !last_try => {
                pieces.give_back(taken);
                // Whichever session is left drains what came back.
                Step::Again(vec![()], e)
            }
            Err(e) => {
                pieces.failed.store(true, Ordering::SeqCst);
                Step::Stop(e)
            }
            Ok(()) => Step::Done,
        }
    })
    .map_err(|left| left.error)?;
    if !pieces.all_taken() {
        return Err(Error::invalid(
            "parallel transfer",
            "pieces of the file were left when the sessions ended",
        ));
    }
    Ok(total)
}

/// Writes `source` into the remote file `path` (which exists) on `lanes`
/// sessions at once, each on up to [`UPLOAD_CHANNELS`] channels at once
/// on a long link (see [`write_beside`]); each channel flushes the file
/// where the server offers fsync.
pub(crate) fn upload_segments(
    shared: &Shared,
    lanes: usize,
    source: &File,
    path: &[u8],
    total: u64,
    options: &TransferOptions,
    progress: &FileProgress<'_>,
) -> Result<u64> {
    run_pieces(shared, lanes, total, options, |shared, next| {
        let mut first = shared.pool.any()?;
        // The OPEN's reply takes a round trip: it tells whether the link
        // is long enough for a second channel to pay.
        let asked = Instant::now();
        let handle = pipeline::open(&mut first, path, flags::WRITE, &Attrs::default(), "upload")?;
        let channels = channels_for(asked.elapsed());
        write_beside(
            shared,
            channels,
            (source, path),
            next,
            options,
            progress,
            |take| write_pieces(first, handle, (source, path), take, options, progress),
        )
    })
}

/// Writes all `total` bytes of `source` into `path`, in pieces of one
/// buffer: `first` writes on the caller's channel, beside up to
/// `channels - 1` more channels of the session (see [`write_beside`]).
#[allow(clippy::too_many_arguments)] // one upload's state
pub(crate) fn write_all_beside(
    shared: &Shared,
    channels: usize,
    (source, path): (&File, &[u8]),
    total: u64,
    options: &TransferOptions,
    progress: &FileProgress<'_>,
    first: impl FnOnce(pipeline::NextRange<'_>) -> Result<()>,
) -> Result<()> {
    let pieces = Pieces::new(total, options.buffer_size);
    let mut next = || pieces.take();
    write_beside(
        shared,
        channels,
        (source, path),
        &mut next,
        options,
        progress,
        first,
    )
}

/// How many channels an upload writes on at once when one round trip to
/// the server took `round_trip`.
pub(crate) fn channels_for(round_trip: Duration) -> usize {
    if round_trip >= SECOND_CHANNEL_FROM {
        UPLOAD_CHANNELS
    } else {
        1
    }
}

/// Runs `first`, the writing of the pieces `next` hands out on a channel
/// the caller holds with the file open, while up to `channels - 1` more
/// channels of the same session write pieces of the same `next` into
/// `path` too, as many as the server allows at once (each takes one only
/// when it is free or may open, never waiting). Each extra channel opens
/// the file itself and flushes and closes it when `next` runs out; one
/// whose OPEN fails takes no piece and leaves them to the others. Once a
/// channel failed with pieces in hand, none takes more, and its error is
/// the result. Every channel reads the one open `source`, so a local file
/// replaced meanwhile (a new one renamed over it) cannot mix into it.
pub(crate) fn write_beside(
    shared: &Shared,
    channels: usize,
    (source, path): (&File, &[u8]),
    next: SharedNext<'_>,
    options: &TransferOptions,
    progress: &FileProgress<'_>,
    first: impl FnOnce(pipeline::NextRange<'_>) -> Result<()>,
) -> Result<()> {
    let next = Mutex::new(next);
    let failed = AtomicBool::new(false);
    let take = || {
        if failed.load(Ordering::SeqCst) {
            return None;
        }
        (*next.lock().unwrap_or_else(|e| e.into_inner()))()
    };
    let noted = |written: Result<()>| {
        if written.is_err() {
            failed.store(true, Ordering::SeqCst);
        }
        written
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..channels)
            .map(|_| {
                scope.spawn(|| {
                    let opened = shared.pool.free().and_then(|ch| match ch {
                        Some(mut ch) => {
                            let attrs = Attrs::default();
                            pipeline::open(&mut ch, path, flags::WRITE, &attrs, "upload")
                                .map(|handle| Some((ch, handle)))
                        }
                        None => Ok(None),
                    });
                    match opened {
                        Ok(Some((ch, handle))) => noted(write_pieces(
                            ch,
                            handle,
                            (source, path),
                            &mut || take(),
                            options,
                            progress,
                        )),
                        // Another channel is not to be had: the first
                        // carries the pieces.
                        Ok(None) => Ok(()),
                        Err(e) => {
                            log::debug!("a second upload channel did not open: {e}");
                            Ok(())
                        }
                    }
                })
            })
            .collect();
        let mine = noted(first(&mut || take()));
        others.into_iter().fold(mine, |all, other| {
            let other = other.join().unwrap_or_else(|_| {
                Err(Error::invalid(
                    "parallel upload",
                    "a channel's thread panicked",
                ))
            });
            all.and(other)
        })
    })
}

/// Writes the pieces `next` hands out from `source` into the remote file
/// `path` on `ch` through `handle`, then flushes and closes it.
fn write_pieces(
    mut ch: Lease<'_>,
    handle: Vec<u8>,
    (source, path): (&File, &[u8]),
    next: pipeline::NextRange<'_>,
    options: &TransferOptions,
    progress: &FileProgress<'_>,
) -> Result<()> {
    let written = pipeline::write_ranges(
        &mut ch,
        &handle,
        path,
        source,
        next,
        options.in_flight(),
        &mut |n| progress.add(n),
    );
    match written {
        Ok(()) => pipeline::finish_write(&mut ch, &handle, path, options.fsync, None, false, true)
            .map(drop),
        Err(e) => {
            ch.close_quietly(&handle, path);
            Err(e)
        }
    }
}

/// Reads the remote file `path` into `out` (already `total` bytes long)
/// on `lanes` sessions at once. Each session, once no piece is left for
/// it, checks in the same flight as its last reads that the file still
/// ends at `total` (it did not grow meanwhile), so the last session to
/// finish checks at the end without a round trip of its own; a piece that
/// found the end early already failed: the file shrank.
pub(crate) fn download_segments(
    shared: &Shared,
    lanes: usize,
    path: &[u8],
    out: &File,
    total: u64,
    options: &TransferOptions,
    written: &(dyn Fn(u64) + Sync),
) -> Result<u64> {
    run_pieces(shared, lanes, total, options, |shared, next| {
        read_pieces(shared, path, out, options, next, Some(total), &mut |n| {
            written(n)
        })
    })
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

    #[test]
    fn pieces_given_back_are_handed_out_again_before_new_ones() {
        let pieces = Pieces::new(30, 10);
        assert_eq!(pieces.take(), Some(0..10));
        assert_eq!(pieces.take(), Some(10..20));
        assert_eq!(pieces.take(), Some(20..30));
        assert!(pieces.all_taken());
        let second = 10..20;
        pieces.give_back(vec![second]);
        assert!(!pieces.all_taken());
        assert_eq!(pieces.take(), Some(10..20));
        assert_eq!(pieces.take(), None);
    }
}
