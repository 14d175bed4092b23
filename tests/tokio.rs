//! The async facade (`etl_ssh::tokio`) against both testkit backends, on a
//! current-thread and a multi-threaded runtime: every operation, a runtime
//! that keeps running its other tasks while a command runs, and a transfer
//! cancelled midway after which the session still works.
//!
//! The test servers are started and dropped outside the runtimes (the
//! embedded one runs a runtime of its own).

mod common;

use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{backends, random_bytes, sha256, test_server};
use etl_ssh::testkit::TestServer;
use etl_ssh::tokio::Session;
use etl_ssh::{ErrorKind, TransferOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("current-thread runtime")
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("multi-thread runtime")
}

/// Runs `test` on each backend under `runtime()`; the server is dropped
/// after the runtime.
fn on_each_backend<F>(runtime: fn() -> Runtime, test: impl Fn(Arc<TestServer>) -> F)
where
    F: std::future::Future<Output = ()>,
{
    for backend in backends() {
        eprintln!("backend: {backend}");
        let server = Arc::new(test_server(backend));
        let rt = runtime();
        rt.block_on(test(Arc::clone(&server)));
        drop(rt);
        drop(server);
    }
}

/// Every operation of the facade, once.
async fn every_operation(server: Arc<TestServer>) {
    let session = Session::connect(server.session_builder())
        .await
        .expect("connect");
    assert!(session.host_key().fingerprint().starts_with("SHA256:"));
    let sftp = session.sftp().await.expect("sftp");
    let root = server.sftp_root().to_path_buf();
    let remote = |p: &str| server.remote_path(p);

    sftp.create_dir_all(remote("in/2026/11"))
        .await
        .expect("mkdir -p");
    let local = root.join("orders.csv");
    let data = random_bytes(3 << 20, 7);
    std::fs::write(&local, &data).expect("local file");
    let sent = sftp
        .upload(&local, remote("in/2026/11/orders.tmp"))
        .await
        .expect("upload");
    assert_eq!(sent, data.len() as u64);
    sftp.rename(
        remote("in/2026/11/orders.tmp"),
        remote("in/2026/11/orders.csv"),
    )
    .await
    .expect("rename");
    assert!(sftp
        .exists(remote("in/2026/11/orders.csv"))
        .await
        .expect("exists"));
    assert!(!sftp
        .exists(remote("in/2026/11/orders.tmp"))
        .await
        .expect("gone"));
    let meta = sftp
        .metadata(remote("in/2026/11/orders.csv"))
        .await
        .expect("metadata");
    assert_eq!(meta.len(), data.len() as u64);
    let names: Vec<String> = sftp
        .read_dir(remote("in/2026/11"))
        .await
        .expect("read_dir")
        .iter()
        .map(|e| e.name().to_string())
        .collect();
    assert_eq!(names, ["orders.csv"]);
    let back = root.join("back.csv");
    let got = sftp
        .download_with(
            remote("in/2026/11/orders.csv"),
            &back,
            &TransferOptions::default(),
        )
        .await
        .expect("download");
    assert_eq!(got, data.len() as u64);
    assert_eq!(
        sha256(&std::fs::read(&back).expect("read back")),
        sha256(&data)
    );

    // Folders both ways.
    let tree = root.join("tree");
    std::fs::create_dir_all(tree.join("a/b")).expect("tree");
    std::fs::write(tree.join("a/b/one.csv"), "1").expect("one");
    std::fs::write(tree.join("two.csv"), "22").expect("two");
    let up = sftp
        .upload_dir(&tree, remote("tree-up"), &TransferOptions::default())
        .await
        .expect("upload_dir");
    assert_eq!(up, 3);
    let down_dir = root.join("tree-down");
    let down = sftp
        .download_dir(remote("tree-up"), &down_dir, &TransferOptions::default())
        .await
        .expect("download_dir");
    assert_eq!(down, 3);
    assert_eq!(
        std::fs::read(down_dir.join("a/b/one.csv")).expect("one"),
        b"1"
    );

    // Streaming handles.
    let mut writer = sftp.create(remote("stream.bin")).await.expect("create");
    for chunk in data.chunks(700_000) {
        writer.write_all(chunk).await.expect("write");
    }
    writer.flush().await.expect("flush");
    writer.close().await.expect("close");
    let mut reader = sftp.open(remote("stream.bin")).await.expect("open");
    let mut read = Vec::new();
    reader.read_to_end(&mut read).await.expect("read");
    assert!(read == data, "streamed data differs");
    let mut writer = sftp.append(remote("stream.bin")).await.expect("append");
    writer.write_all(b"tail").await.expect("write");
    writer.shutdown().await.expect("shutdown");
    assert_eq!(
        sftp.metadata(remote("stream.bin"))
            .await
            .expect("meta")
            .len(),
        data.len() as u64 + 4
    );
    sftp.write(remote("done.flag"), "ok")
        .await
        .expect("write flag");
    assert_eq!(
        sftp.read(remote("done.flag"), 10).await.expect("read flag"),
        b"ok"
    );
    assert_eq!(
        sftp.read_to_string(remote("done.flag"), 10)
            .await
            .expect("read flag as text"),
        "ok"
    );
    let copied = sftp
        .copy(remote("done.flag"), remote("done.copy"))
        .await
        .expect("copy");
    assert_eq!(copied, 2);
    assert!(sftp.statvfs(remote("")).await.expect("statvfs").blocks() > 0);
    sftp.create_dir_with_mode(remote("private"), 0o700)
        .await
        .expect("mkdir 700");

    sftp.remove_file(remote("in/2026/11/orders.csv"))
        .await
        .expect("remove");
    let err = sftp
        .metadata(remote("in/2026/11/orders.csv"))
        .await
        .expect_err("removed");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    sftp.remove_dir_all(remote("tree-up")).await.expect("rm -r");

    // Exec.
    let exec = session.exec().await.expect("exec");
    let out = exec.run("echo hello").await.expect("run");
    assert_eq!(out.stdout(), b"hello\n");
    let out = exec
        .run_args(["printf", "%s|", "a b", "$c"])
        .await
        .expect("run_args");
    assert_eq!(out.stdout(), b"a b|$c|");
    let out = exec
        .run_with_input("wc -c", Cursor::new(vec![b'x'; 1000]))
        .await
        .expect("run_with_input");
    assert_eq!(String::from_utf8_lossy(out.stdout()).trim(), "1000");
    let err = exec
        .clone()
        .with_timeout(Duration::from_millis(300))
        .run("sleep 5")
        .await
        .expect_err("timed out");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    session.keepalive().await.expect("keepalive");
    session.close().await.expect("close");
}

#[test]
fn every_operation_on_a_current_thread_runtime() {
    on_each_backend(current_thread, every_operation);
}

#[test]
fn every_operation_on_a_multi_thread_runtime() {
    on_each_backend(multi_thread, every_operation);
}

/// The runtime's own thread keeps running other tasks while a command and
/// a transfer run: the work is on the blocking pool.
async fn the_runtime_keeps_running(server: Arc<TestServer>) {
    let session = Session::connect(server.session_builder())
        .await
        .expect("connect");
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let started = Instant::now();
    let exec = session.exec().await.expect("exec");
    let out = exec.run("sleep 1; echo done").await.expect("run");
    assert_eq!(out.stdout(), b"done\n");
    let elapsed = started.elapsed();
    ticker.abort();
    let ticks = ticks.load(Ordering::SeqCst);
    // A blocked runtime thread would not tick at all during the command.
    assert!(
        ticks as u128 >= elapsed.as_millis() / 10 / 3,
        "{ticks} ticks in {elapsed:?}"
    );
}

#[test]
fn the_runtime_keeps_running_on_a_current_thread_runtime() {
    on_each_backend(current_thread, the_runtime_keeps_running);
}

/// A transfer whose future is dropped midway: the session goes on at once
/// for other work, and the upload ends atomically in the background.
async fn cancelled_midway(server: Arc<TestServer>) {
    let session = Session::connect(server.session_builder())
        .await
        .expect("connect");
    let sftp = session.sftp().await.expect("sftp");
    let local = server.sftp_root().join("big.bin");
    let data = random_bytes(8 << 20, 11);
    std::fs::write(&local, &data).expect("local file");
    let target = server.sftp_root().join("big-up.bin");

    server.slow_link(Duration::ZERO, 4 << 20);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(400),
        sftp.upload(&local, server.remote_path("big-up.bin")),
    )
    .await;
    assert!(cancelled.is_err(), "the upload finished within 400 ms");
    assert!(!target.exists(), "half a file is in place");
    server.heal();

    // The session still works, for SFTP and exec, on the same handles.
    let started = Instant::now();
    sftp.write(server.remote_path("after.txt"), "after")
        .await
        .expect("write after the cancellation");
    assert_eq!(
        sftp.read(server.remote_path("after.txt"), 100)
            .await
            .expect("read"),
        b"after"
    );
    let out = session
        .exec()
        .await
        .expect("exec")
        .run("echo still here")
        .await
        .expect("run");
    assert_eq!(out.stdout(), b"still here\n");
    assert!(started.elapsed() < Duration::from_secs(20));

    // The abandoned upload ran to its end: the whole file, atomically.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !target.exists() {
        assert!(Instant::now() < deadline, "the upload never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sha256(&std::fs::read(&target).expect("read")),
        sha256(&data)
    );

    // And a download cancelled the same way leaves no local file.
    let back = server.sftp_root().join("big-back.bin");
    server.slow_link(Duration::ZERO, 4 << 20);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(400),
        sftp.download(server.remote_path("big-up.bin"), &back),
    )
    .await;
    assert!(cancelled.is_err());
    assert!(!back.exists(), "half a download is in place");
    server.heal();
    assert!(sftp
        .exists(server.remote_path("big-up.bin"))
        .await
        .expect("exists"));
}

#[test]
fn cancelled_midway_on_a_current_thread_runtime() {
    on_each_backend(current_thread, cancelled_midway);
}

#[test]
fn cancelled_midway_on_a_multi_thread_runtime() {
    on_each_backend(multi_thread, cancelled_midway);
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<etl_ssh::tokio::Session>();
    send_sync::<etl_ssh::tokio::SftpSession>();
    send_sync::<etl_ssh::tokio::ExecSession>();
    send::<etl_ssh::tokio::SftpReader>();
    send::<etl_ssh::tokio::SftpWriter>();
    // The futures are Send: they may be spawned on a multi-thread runtime.
    fn future_is_send<F: std::future::Future + Send>(_: F) {}
    let builder = etl_ssh::Session::builder("h");
    future_is_send(Session::connect(builder));
}
