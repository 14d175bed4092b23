//! Nothing is ever half-written, and a cut transfer resumes: uploads and
//! downloads are cut at 100 byte offsets each by a loopback proxy in front
//! of a real sshd. After every cut the target holds the old file or the
//! complete new one, never part of one; a retry through the healed link
//! completes to identical bytes, resuming from the temporary file where
//! the cut left one.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client_key, current_user, CutProxy, KeyFormat, KeyKind, Sshd};
use etl_ssh::{Credential, KnownHost, RetryPolicy, Session, TransferOptions};
use sha2::{Digest, Sha256};

const SIZE: usize = 1_000_000;
const CUTS: u64 = 100;

fn data(seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(seed);
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn digest(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// Files in `dir` other than `keep`: temporary files left behind.
fn leftovers(dir: &Path, keep: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != keep)
        .collect()
}

struct Rig {
    server: Sshd,
    proxy: CutProxy,
    key: common::ClientKey,
}

impl Rig {
    fn start() -> Option<Rig> {
        let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
        let server = Sshd::builder()
            .authorized_key(&key.public_line)
            .start_if_available()?;
        let proxy = CutProxy::start(server.addr());
        Some(Rig { server, proxy, key })
    }

    fn session(&self) -> etl_ssh::Result<Session> {
        Session::builder(self.server.host())
            .port(self.proxy.port())
            .credential(Credential::key_pair(current_user(), &self.key.path))
            .known_host(
                KnownHost::public_key(self.server.host_key_public_line("ed25519")).expect("pin"),
            )
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(10))
            .connect()
    }
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

fn offsets(total: u64) -> impl Iterator<Item = u64> {
    (0..CUTS).map(move |i| 1 + i * total / CUTS)
}

#[test]
fn uploads_cut_at_100_offsets_never_leave_partial_files_and_resume() {
    let Some(rig) = Rig::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let remote_dir = dir.path().join("inbox");
    std::fs::create_dir(&remote_dir).expect("inbox");
    let target = remote_dir.join("orders.csv");
    let remote = target.to_str().expect("utf-8 path").to_string();
    let (old, new) = (data(1), data(2));
    let local = dir.path().join("new.csv");
    std::fs::write(&local, &new).expect("local file");
    // The bytes one whole upload moves through the proxy, handshake included.
    std::fs::write(&target, &old).expect("old target");
    let before = rig.proxy.bytes();
    rig.session()
        .expect("session")
        .sftp()
        .expect("sftp")
        .upload(&local, &remote)
        .expect("upload");
    let total = rig.proxy.bytes() - before;

    let policy = RetryPolicy::new()
        .attempts(3)
        .initial_backoff(Duration::from_millis(10));
    let (mut failed, mut resumed) = (0, 0);
    for offset in offsets(total) {
        std::fs::write(&target, &old).expect("reset target");
        rig.proxy.cut_after(offset);
        let started = Arc::new(AtomicU64::new(0));
        let outcome = rig
            .session()
            .and_then(|s| s.sftp()?.upload_with(&local, &remote, &resumable(&started)));
        let now = digest(&std::fs::read(&target).expect("target"));
        match outcome {
            Ok(_) => assert_eq!(
                now,
                digest(&new),
                "cut at {offset}: success but wrong bytes"
            ),
            Err(ref e) => {
                failed += 1;
                assert_eq!(
                    now,
                    digest(&old),
                    "cut at {offset} ({e}): old target changed"
                );
            }
        }
        rig.proxy.heal();
        policy
            .run("upload", |_| {
                rig.session()?
                    .sftp()?
                    .upload_with(&local, &remote, &resumable(&started))
            })
            .unwrap_or_else(|e| panic!("retry after a cut at {offset}: {e}"));
        if started.load(Ordering::SeqCst) > 0 {
            resumed += 1;
        }
        assert_eq!(
            digest(&std::fs::read(&target).expect("target")),
            digest(&new),
            "cut at {offset}"
        );
        assert!(
            leftovers(&remote_dir, "orders.csv").is_empty(),
            "{:?}",
            leftovers(&remote_dir, "orders.csv")
        );
    }
    eprintln!("upload: {CUTS} cuts over {total} bytes, {failed} failed, {resumed} resumed");
    assert!(
        failed >= CUTS * 9 / 10,
        "most cuts must interrupt the upload ({failed})"
    );
    assert!(resumed > 0, "no retry resumed from a temporary file");
}

#[test]
fn downloads_cut_at_100_offsets_never_leave_partial_files_and_resume() {
    let Some(rig) = Rig::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let remote_file = dir.path().join("report.csv");
    let (old, new) = (data(3), data(4));
    std::fs::write(&remote_file, &new).expect("remote file");
    let remote = remote_file.to_str().expect("utf-8 path").to_string();
    let local_dir = dir.path().join("in");
    std::fs::create_dir(&local_dir).expect("local dir");
    let local = local_dir.join("report.csv");
    std::fs::write(&local, &old).expect("old local");
    let before = rig.proxy.bytes();
    rig.session()
        .expect("session")
        .sftp()
        .expect("sftp")
        .download(&remote, &local)
        .expect("download");
    let total = rig.proxy.bytes() - before;

    let policy = RetryPolicy::new()
        .attempts(3)
        .initial_backoff(Duration::from_millis(10));
    let (mut failed, mut resumed) = (0, 0);
    for offset in offsets(total) {
        std::fs::write(&local, &old).expect("reset local");
        rig.proxy.cut_after(offset);
        let started = Arc::new(AtomicU64::new(0));
        let outcome = rig.session().and_then(|s| {
            s.sftp()?
                .download_with(&remote, &local, &resumable(&started))
        });
        let now = digest(&std::fs::read(&local).expect("local"));
        match outcome {
            Ok(_) => assert_eq!(
                now,
                digest(&new),
                "cut at {offset}: success but wrong bytes"
            ),
            Err(ref e) => {
                failed += 1;
                assert_eq!(
                    now,
                    digest(&old),
                    "cut at {offset} ({e}): old local file changed"
                );
            }
        }
        rig.proxy.heal();
        policy
            .run("download", |_| {
                rig.session()?
                    .sftp()?
                    .download_with(&remote, &local, &resumable(&started))
            })
            .unwrap_or_else(|e| panic!("retry after a cut at {offset}: {e}"));
        if started.load(Ordering::SeqCst) > 0 {
            resumed += 1;
        }
        assert_eq!(
            digest(&std::fs::read(&local).expect("local")),
            digest(&new),
            "cut at {offset}"
        );
        assert!(
            leftovers(&local_dir, "report.csv").is_empty(),
            "{:?}",
            leftovers(&local_dir, "report.csv")
        );
    }
    eprintln!("download: {CUTS} cuts over {total} bytes, {failed} failed, {resumed} resumed");
    assert!(
        failed >= CUTS * 9 / 10,
        "most cuts must interrupt the download ({failed})"
    );
    assert!(resumed > 0, "no retry resumed from a temporary file");
}
