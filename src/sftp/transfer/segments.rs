//! The pieces of one large file, moved over several sessions at once
//! (see [`lanes`](super::lanes)): each session pulls the next piece when
//! its pipeline has room; the pieces a session held when the server ended
//! it go to the others. An upload on a long link writes on two or three
//! channels of each session, which share that session's pieces; so does a
//! large upload on one session ([`write_all_beside`]).

use std::fs::File;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::lanes::{self, Extras, Step};
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

/// The round trips from which an upload writes on a second and on a third
/// SFTP channel of each session. OpenSSH's sshd gives each channel a
/// window of 2 MiB, so that one channel carries at most 2 MiB per round
/// trip whatever the client keeps in flight (BENCHMARKS.md, "Traced");
/// another channel adds that much without the login of another
/// connection. Below 15 ms one channel's window carries more than
/// 140 MB/s, more than the CPU on either side keeps up with, and a second
/// channel costs CPU for nothing (256 MiB at 10 ms, four sessions:
/// 1.53–1.67 s with two channels, 1.32–1.48 s with one). A third paid from
/// 30 ms (256 MiB, four sessions, three rounds: at 30 ms 1.85 s against
/// 1.96 s with two, at 50 ms 2.18 against 2.28, at 100 ms 3.54 against
/// 4.00); a fourth gained nothing at 50 ms and 3 % at 100 ms, and each is
/// an `sftp-server` process on the partner's side. Downloads use one: the
/// window a client gives itself is 16 MiB.
pub(crate) const MORE_CHANNELS_FROM: [Duration; 2] =
    [Duration::from_millis(15), Duration::from_millis(30)];

/// A session's source of pieces, which its channels' threads share.
type SharedNext<'a> = &'a mut (dyn FnMut() -> Option<Range<u64>> + Send);

/// Runs `job` on the caller's session and `extras` at once with the
/// pieces of `total` bytes: `job` moves what its `next` hands out. The
/// pieces a session took go back when the server ended it; another error
/// stops all.
fn run_pieces(
    shared: &Shared,
    extras: Extras,
    total: u64,
    options: &TransferOptions,
    job: impl Fn(&Shared, SharedNext<'_>) -> Result<()> + Sync,
) -> Result<u64> {
    let pieces = Pieces::new(total, options.buffer_size);
    let lanes = vec![(); extras.lanes()];
    lanes::run_with(shared, extras, lanes, |shared, (), last_try| {
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

/// The file an upload created on the caller's session, still open there
/// for writing, and how long its OPEN took.
pub(crate) struct Created<'a> {
    /// The caller's channel, where `handle` is open.
    pub(crate) lease: Lease<'a>,
    /// The handle of the new file.
    pub(crate) handle: Vec<u8>,
    /// The OPEN's round trip: how many channels per session the link
    /// is long enough for ([`channels_for`]).
    pub(crate) round_trip: Duration,
}

/// What every channel of one upload writes with.
pub(crate) struct Writing<'a> {
    /// The local file, opened once for every channel.
    pub(crate) source: &'a File,
    /// The remote file written (the temporary file of an atomic upload).
    pub(crate) path: &'a [u8],
    pub(crate) options: &'a TransferOptions,
    pub(crate) progress: &'a FileProgress<'a>,
}

/// Which channel of a parallel upload ends its writing last, so that the
/// FSTAT in its finishing flight sees the whole file: a channel counts as
/// writing from before it takes its first piece, and stops counting only
/// when all its writes were acknowledged. The channel that stops the count
/// at zero, with no piece left to take, knows every piece was written and
/// acknowledged; a channel that failed never stops counting, so after a
/// failure (its pieces handed out again) no FSTAT is taken for the size.
#[derive(Default)]
struct LastWriter {
    writing: AtomicUsize,
    size: Mutex<Option<u64>>,
}

/// Writes `source` into the remote file `path`, which `created` holds
/// open, on the caller's session (through that handle) and `extras` at
/// once, each on up to three channels at once on a long link
/// ([`MORE_CHANNELS_FROM`], [`write_beside`]); each channel flushes the
/// file where the server offers fsync. The channels beyond the first open
/// while the first writes, and the extra sessions open the file when they
/// join. Returns the size the last channel's FSTAT saw once every write
/// was acknowledged (`None` when it did not look: `verify_size` off, a
/// session that failed and was replaced, or a server that refused FSTAT).
pub(crate) fn upload_segments(
    shared: &Shared,
    extras: Extras,
    created: Created<'_>,
    writing: &Writing<'_>,
    total: u64,
) -> Result<Option<u64>> {
    let channels = channels_for(created.round_trip);
    let created = Mutex::new(Some((created.lease, created.handle)));
    let last = LastWriter::default();
    let path = writing.path;
    let written = run_pieces(shared, extras, total, writing.options, |lane, next| {
        // The caller's session writes first through the handle that
        // created the file; after that (its session connected again) and
        // on the other sessions, a channel opens the file.
        let opened = if std::ptr::eq(lane, shared) {
            created.lock().unwrap_or_else(|e| e.into_inner()).take()
        } else {
            None
        };
        let (mut first, handle) = match opened {
            Some((lease, handle)) => (lease, Some(handle)),
            None => (lane.pool.any()?, None),
        };
        write_beside(lane, channels, writing, Some(&last), next, |take| {
            let handle = match handle {
                Some(handle) => handle,
                None => {
                    pipeline::open(&mut first, path, flags::WRITE, &Attrs::default(), "upload")?
                }
            };
            write_pieces(first, handle, writing, Some(&last), take)
        })
    });
    if let Some((mut lease, handle)) = created.into_inner().unwrap_or_else(|e| e.into_inner()) {
        lease.close_quietly(&handle, path);
    }
    written?;
    Ok(last.size.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// Writes all `total` bytes of `source` into `path`, in pieces of one
/// buffer: `first` writes on the caller's channel, beside up to
/// `channels - 1` more channels of the session (see [`write_beside`]).
pub(crate) fn write_all_beside(
    shared: &Shared,
    channels: usize,
    writing: &Writing<'_>,
    total: u64,
    first: impl FnOnce(pipeline::NextRange<'_>) -> Result<()>,
) -> Result<()> {
    let pieces = Pieces::new(total, writing.options.buffer_size);
    let mut next = || pieces.take();
    write_beside(shared, channels, writing, None, &mut next, first)
}

/// How many channels an upload writes on at once when one round trip to
/// the server took `round_trip`.
pub(crate) fn channels_for(round_trip: Duration) -> usize {
    1 + MORE_CHANNELS_FROM
        .iter()
        .filter(|&&from| round_trip >= from)
        .count()
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
fn write_beside(
    shared: &Shared,
    channels: usize,
    writing: &Writing<'_>,
    last: Option<&LastWriter>,
    next: SharedNext<'_>,
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
    let path = writing.path;
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
                        Ok(Some((ch, handle))) => {
                            noted(write_pieces(ch, handle, writing, last, &mut || take()))
                        }
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
/// `path` on `ch` through `handle`, then flushes and closes it; with
/// `last`, the channel that ends the writing last also asks the file's
/// size in that flight (see [`LastWriter`]).
fn write_pieces(
    mut ch: Lease<'_>,
    handle: Vec<u8>,
    writing: &Writing<'_>,
    last: Option<&LastWriter>,
    next: pipeline::NextRange<'_>,
) -> Result<()> {
    let (path, options) = (writing.path, writing.options);
    if let Some(last) = last {
        last.writing.fetch_add(1, Ordering::SeqCst);
    }
    let written = pipeline::write_ranges(
        &mut ch,
        &handle,
        path,
        writing.source,
        next,
        options.in_flight(),
        &mut |n| writing.progress.add(n),
    );
    if let Err(e) = written {
        ch.close_quietly(&handle, path);
        return Err(e);
    }
    // Every piece taken and acknowledged, on every channel: this FSTAT
    // sees the whole file.
    let ends = last.filter(|last| last.writing.fetch_sub(1, Ordering::SeqCst) == 1);
    let fstat = ends.is_some() && options.verify_size;
    let finished =
        pipeline::finish_write(&mut ch, &handle, path, options.fsync, None, fstat, true)?;
    if let (Some(last), Some(size)) = (ends, finished.size) {
        *last.size.lock().unwrap_or_else(|e| e.into_inner()) = Some(size);
    }
    Ok(())
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
    let extras = Extras::start(shared, lanes);
    run_pieces(shared, extras, total, options, |shared, next| {
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
    fn longer_links_get_more_upload_channels_up_to_three() {
        let ms = Duration::from_millis;
        let got: Vec<usize> = [0, 14, 15, 29, 30, 100, 10_000]
            .into_iter()
            .map(|t| channels_for(ms(t)))
            .collect();
        assert_eq!(got, [1, 1, 2, 2, 3, 3, 3]);
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
