//! A large download's local file flushed to disk behind the writes, on a
//! thread of its own, so that the fsync that ends the download has only
//! the last part left to write instead of the whole file.
//!
//! The flushes share the file's open description with the download's
//! writes. Linux reports a writeback error to one fsync of a description
//! only, so an error a background flush meets is kept and given back by
//! [`Flusher::finish`]: the download fails on it like on its own fsync.

use std::fs::File;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use log::debug;

/// Bytes written between two background flushes.
pub(crate) const FLUSH_EVERY: u64 = 32 << 20;

/// The size from which a download's file is flushed behind the writes; a
/// smaller one is flushed once, at the end.
pub(crate) const FLUSH_BEHIND_FROM: u64 = 2 * FLUSH_EVERY;

#[derive(Default)]
struct State {
    /// Written since the last flush was asked for.
    unflushed: u64,
    /// A flush is asked for or running.
    due: bool,
    stop: bool,
    /// Flushes done (read by the tests).
    flushes: u32,
    failed: Option<io::Error>,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Flushes a file on its own thread every [`FLUSH_EVERY`] bytes written.
pub(crate) struct Flusher {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts flushing `file` behind the writes. `None` where the file
    /// cannot be shared with a thread or no thread starts: the download
    /// is then flushed once at the end, as a small one is.
    pub(crate) fn start(file: &File) -> Option<Flusher> {
        let started = file.try_clone().and_then(|file| {
            let shared = Shared::default();
            let theirs = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("etl-ssh-flush".into())
                .spawn(move || run(&file, &theirs))
                .map(|thread| Flusher {
                    shared,
                    thread: Some(thread),
                })
        });
        started
            .map_err(|e| debug!("the download is flushed at the end only: {e}"))
            .ok()
    }

    /// Counts `bytes` written; asks for a flush every [`FLUSH_EVERY`].
    pub(crate) fn wrote(&self, bytes: u64) {
        let mut state = lock(&self.shared);
        state.unflushed += bytes;
        if state.unflushed >= FLUSH_EVERY && !state.due {
            state.unflushed = 0;
            state.due = true;
            self.shared.1.notify_one();
        }
    }

    /// Stops the flushes (waiting for one that runs).
    ///
    /// # Errors
    ///
    /// The error the first failed flush met: the data written before it
    /// may not be on disk whatever a later fsync says.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.stop();
        match lock(&self.shared).failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        lock(&self.shared).stop = true;
        self.shared.1.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    #[cfg(test)]
    fn flushes(&self) -> u32 {
        lock(&self.shared).flushes
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The flushing thread: a flush each time one is due, until stopped or a
/// flush fails.
fn run(file: &File, shared: &Shared) {
    loop {
        {
            let mut state = lock(shared);
            while !state.due && !state.stop {
                state = shared.1.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
        }
        let flushed = file.sync_data();
        let mut state = lock(shared);
        state.due = false;
        state.flushes += 1;
        if let Err(e) = flushed {
            state.failed = Some(e);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for_flushes(flusher: &Flusher, n: u32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while flusher.flushes() < n {
            assert!(Instant::now() < deadline, "no flush after 30 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_flush_is_asked_for_every_flush_every_bytes_written() {
        let file = tempfile::tempfile().expect("temp file");
        let flusher = Flusher::start(&file).expect("flusher");
        flusher.wrote(FLUSH_EVERY - 1);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(flusher.flushes(), 0, "not yet FLUSH_EVERY bytes");
        flusher.wrote(1);
        wait_for_flushes(&flusher, 1);
        flusher.wrote(FLUSH_EVERY);
        wait_for_flushes(&flusher, 2);
        flusher.finish().expect("every flush succeeded");
    }

    #[test]
    fn a_failed_background_flush_fails_the_finish() {
        // fdatasync(2) refuses a character device: EINVAL.
        let file = File::options()
            .write(true)
            .open("/dev/null")
            .expect("/dev/null");
        let flusher = Flusher::start(&file).expect("flusher");
        flusher.wrote(FLUSH_EVERY);
        wait_for_flushes(&flusher, 1);
        // The thread has ended; more writes ask for nothing and hang nothing.
        flusher.wrote(FLUSH_EVERY);
        let e = flusher
            .finish()
            .expect_err("the flush's error is given back");
        assert_eq!(e.raw_os_error(), Some(22), "EINVAL: {e}");
    }

    #[test]
    fn a_dropped_flusher_stops_its_thread() {
        let file = tempfile::tempfile().expect("temp file");
        let flusher = Flusher::start(&file).expect("flusher");
        let shared = Arc::clone(&flusher.shared);
        drop(flusher);
        assert!(lock(&shared).stop);
        assert_eq!(Arc::strong_count(&shared), 1, "the thread let go of it");
    }
}
