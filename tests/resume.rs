//! Nothing is ever half-written, and a cut transfer resumes, on both
//! testkit backends (a real OpenSSH sshd and the embedded server): uploads
//! and downloads are cut at 100 byte offsets each by the testkit's fault
//! proxy. After every cut the target holds the old file or the complete new
//! one, never part of one; a retry through the healed link completes to
//! identical bytes, resuming from the temporary file where the cut left one.
//!
//! Each test cuts at all 100 offsets on one backend and at 10 on the other
//! (uploads: 100 on the first of `common::backends()`, downloads: 100 on the
//! last), so each backend gets one full run without doubling the runtime;
//! with only one backend available, both tests cut at 100 offsets on it.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{backends, leftovers, random_bytes, sha256, sha256_file, test_server};
use etl_ssh::testkit::{Backend, TestServer};
use etl_ssh::{RetryPolicy, Session, SftpSession, TransferOptions};

const SIZE: usize = 1_000_000;
const CUTS: u64 = 100;
/// Cuts on the backend that does not get the full run.
const SHORT_CUTS: u64 = 10;

/// Each backend once, with the number of cuts it gets: `CUTS` for the one
/// at `full`, `SHORT_CUTS` for the others.
fn runs(full: impl FnOnce(&[Backend]) -> Backend) -> Vec<(Backend, u64)> {
    let all = backends();
    let full = full(&all);
    all.into_iter()
        .map(|b| (b, if b == full { CUTS } else { SHORT_CUTS }))
        .collect()
}

fn session(server: &TestServer) -> etl_ssh::Result<Session> {
    server
        .session_builder()
        .timeout(Duration::from_secs(10))
        .connect()
}

/// Options that resume, and a counter of the byte each attempt started at.
fn resumable(started_at: &Arc<AtomicU64>) -> TransferOptions {
    let first = Arc::new(AtomicU64::new(u64::MAX));
    let started = Arc::clone(started_at);
    TransferOptions::new()
        .resume(true)
        .buffer_size(60_000)
        .progress(move |done, _| {
            if first.swap(done, Ordering::SeqCst) == u64::MAX {
                started.store(done, Ordering::SeqCst);
            }
        })
}

fn offsets(total: u64, cuts: u64) -> impl Iterator<Item = u64> {
    (0..cuts).map(move |i| 1 + i * total / cuts)
}

/// The whole check for one direction on one server: `transfer` writes
/// `target` (which holds `old` before each try) with `new`'s bytes. It is
/// cut at `cuts` offsets spread over the bytes one whole transfer moves
/// through the proxy (handshake included); after each cut the target is
/// the old or the new file, and a retry through the healed link completes
/// it with no temporary file left in `target`'s folder.
fn cut_at_offsets(
    server: &TestServer,
    what: &str,
    cuts: u64,
    target: &Path,
    (old, new): (&[u8], &[u8]),
    transfer: impl Fn(&SftpSession, &TransferOptions) -> etl_ssh::Result<u64>,
) {
    let backend = server.backend();
    let dir = target.parent().expect("target folder");
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 target name");
    std::fs::write(target, old).expect("old target");
    let before = server.bytes_relayed();
    transfer(
        &session(server).expect("session").sftp().expect("sftp"),
        &TransferOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{backend}: whole {what}: {e}"));
    let total = server.bytes_relayed() - before;

    let policy = RetryPolicy::new()
        .attempts(3)
        .initial_backoff(Duration::from_millis(10));
    let (mut failed, mut resumed) = (0, 0);
    for offset in offsets(total, cuts) {
        std::fs::write(target, old).expect("reset target");
        server.close_after(offset);
        let started = Arc::new(AtomicU64::new(0));
        let outcome = session(server).and_then(|s| transfer(&s.sftp()?, &resumable(&started)));
        let now = sha256_file(target);
        match outcome {
            Ok(_) => assert_eq!(
                now,
                sha256(new),
                "{backend}: {what} cut at {offset}: success but wrong bytes"
            ),
            Err(ref e) => {
                failed += 1;
                assert_eq!(
                    now,
                    sha256(old),
                    "{backend}: {what} cut at {offset} ({e}): old target changed"
                );
            }
        }
        server.heal();
        policy
            .run(what, |_| {
                transfer(&session(server)?.sftp()?, &resumable(&started))
            })
            .unwrap_or_else(|e| panic!("{backend}: {what} retry after a cut at {offset}: {e}"));
        if started.load(Ordering::SeqCst) > 0 {
            resumed += 1;
        }
        assert_eq!(
            sha256_file(target),
            sha256(new),
            "{backend}: {what} cut at {offset}"
        );
        let left = leftovers(dir, &[name]);
        assert!(
            left.is_empty(),
            "{backend}: {what} cut at {offset}: {left:?}"
        );
    }
    eprintln!(
        "{backend}: {what}: {cuts} cuts over {total} bytes, {failed} failed, {resumed} resumed"
    );
    assert!(
        failed >= cuts * 9 / 10,
        "{backend}: most cuts must interrupt the {what} ({failed} of {cuts})"
    );
    assert!(
        resumed > 0,
        "{backend}: no {what} retry resumed from a temporary file"
    );
}

#[test]
fn uploads_cut_at_100_offsets_never_leave_partial_files_and_resume() {
    for (backend, cuts) in runs(|all| all[0]) {
        let server = test_server(backend);
        let dir = tempfile::tempdir().expect("tempdir");
        let remote_dir = dir.path().join("inbox");
        std::fs::create_dir(&remote_dir).expect("inbox");
        let target = remote_dir.join("orders.csv");
        let remote = target.to_str().expect("utf-8 path").to_string();
        let (old, new) = (random_bytes(SIZE, 1), random_bytes(SIZE, 2));
        let local = dir.path().join("new.csv");
        std::fs::write(&local, &new).expect("local file");
        cut_at_offsets(
            &server,
            "upload",
            cuts,
            &target,
            (&old, &new),
            |sftp, options| sftp.upload_with(&local, &remote, options),
        );
    }
}

#[test]
fn downloads_cut_at_100_offsets_never_leave_partial_files_and_resume() {
    for (backend, cuts) in runs(|all| all[all.len() - 1]) {
        let server = test_server(backend);
        let dir = tempfile::tempdir().expect("tempdir");
        let remote_file = dir.path().join("report.csv");
        let (old, new) = (random_bytes(SIZE, 3), random_bytes(SIZE, 4));
        std::fs::write(&remote_file, &new).expect("remote file");
        let remote = remote_file.to_str().expect("utf-8 path").to_string();
        let local_dir = dir.path().join("in");
        std::fs::create_dir(&local_dir).expect("local dir");
        let local = local_dir.join("report.csv");
        cut_at_offsets(
            &server,
            "download",
            cuts,
            &local,
            (&old, &new),
            |sftp, options| sftp.download_with(&remote, &local, options),
        );
    }
}
