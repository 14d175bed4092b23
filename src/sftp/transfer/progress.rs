//! Progress of a transfer job: per file and for the whole job, fed to
//! both callbacks of [`TransferOptions`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::options::TransferOptions;
use super::outcome::Progress;

/// A transfer job: one file, or every file of a folder.
pub(crate) struct Job<'a> {
    options: &'a TransferOptions,
    total: u64,
    done: AtomicU64,
    /// Temporary files (with their targets) a try may have left on the
    /// server when its connection ended: removed when the job ends.
    orphans: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl<'a> Job<'a> {
    pub(crate) fn new(options: &'a TransferOptions, total: u64) -> Job<'a> {
        Job {
            options,
            total,
            done: AtomicU64::new(0),
            orphans: Mutex::new(Vec::new()),
        }
    }

    /// `temp`, the temporary file of an upload to `target`, may be left
    /// on the server: the connection ended before it was renamed or
    /// removed.
    pub(crate) fn orphan(&self, target: &[u8], temp: &[u8]) {
        self.orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((target.to_vec(), temp.to_vec()));
    }

    /// The temporary files recorded by [`orphan`](Self::orphan), with
    /// their targets.
    pub(crate) fn take_orphans(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        std::mem::take(&mut *self.orphans.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `job`, or a job of one file of `total` bytes kept in `own`.
    pub(crate) fn or_own(
        job: Option<&'a Job<'a>>,
        own: &'a mut Option<Job<'a>>,
        options: &'a TransferOptions,
        total: u64,
    ) -> &'a Job<'a> {
        match job {
            Some(job) => job,
            None => own.insert(Job::new(options, total)),
        }
    }

    /// The progress of one file of the job, shown as `name`; it reports
    /// once [`FileProgress::start`] says where the file starts.
    pub(crate) fn file(&'a self, name: String, total: u64) -> FileProgress<'a> {
        FileProgress {
            job: self,
            name,
            total,
            done: AtomicU64::new(0),
        }
    }
}

/// The progress of one file; shared by the sessions that move its pieces.
pub(crate) struct FileProgress<'a> {
    job: &'a Job<'a>,
    name: String,
    total: u64,
    done: AtomicU64,
}

impl FileProgress<'_> {
    /// `n` more bytes are done.
    pub(crate) fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::SeqCst) + n;
        self.job.done.fetch_add(n, Ordering::SeqCst);
        self.report(done);
    }

    /// The file starts moving at byte `at` (0, or where a resumed
    /// transfer carries on: those bytes count as done); the first report.
    pub(crate) fn start(&self, at: u64) {
        if at > 0 {
            self.add(at);
        } else {
            self.report(0);
        }
    }

    fn report(&self, done: u64) {
        let options = self.job.options;
        if let Some(p) = &options.progress {
            p(done, self.total.max(done));
        }
        if let Some(p) = &options.on_progress {
            let job_done = self.job.done.load(Ordering::SeqCst);
            p(&Progress {
                file: &self.name,
                file_done: done,
                file_total: self.total.max(done),
                job_done,
                job_total: self.job.total.max(job_done),
            });
        }
    }
}
