//! One SFTP engine on the channels a server allows: OpenSSH with
//! `MaxSessions 1`, a server that allows one channel per connection and
//! ends the connection with it (tinysshd), a small channel window
//! (dropbear); names that are not UTF-8 byte for byte; what a server says
//! when SFTP cannot start; the streaming handles' read-ahead; a parallel
//! upload on two channels of each session; channels dropped without
//! waiting, and a clean goodbye.

mod common;

use std::fs;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use common::{backends, names_in, random_bytes, sshd_with_key, test_server, Sshd};
use etl_ssh::testkit::{Backend, TestServer};
use etl_ssh::{ErrorKind, RemotePath, Session, TransferOptions};

/// Every `SftpSession` operation, on `root` (a remote folder that is also
/// the local `local_root`).
fn every_operation(session: &Session, root: &str, local_root: &Path) {
    let sftp = session.sftp().expect("sftp");
    let dir = format!("{root}/d/e");
    sftp.create_dir_all(&dir).expect("create_dir_all");
    sftp.create_dir(format!("{root}/f")).expect("create_dir");
    let local = tempfile::tempdir().expect("temp dir");
    let data = random_bytes(3 << 20, 3);
    fs::write(local.path().join("a.bin"), &data).expect("write");
    sftp.upload(local.path().join("a.bin"), format!("{dir}/a.bin"))
        .expect("upload");
    sftp.download(format!("{dir}/a.bin"), local.path().join("b.bin"))
        .expect("download");
    assert!(fs::read(local.path().join("b.bin")).expect("read") == data);
    assert_eq!(
        sftp.metadata(format!("{dir}/a.bin")).expect("stat").len(),
        3 << 20
    );
    assert!(sftp
        .symlink_metadata(format!("{dir}/a.bin"))
        .expect("lstat")
        .is_file());
    assert_eq!(sftp.read_dir(&dir).expect("read_dir").len(), 1);
    assert_eq!(sftp.read_dir_iter(&dir).expect("iter").count(), 1);
    sftp.set_permissions(format!("{dir}/a.bin"), 0o640)
        .expect("chmod");
    sftp.rename(format!("{dir}/a.bin"), format!("{dir}/c.bin"))
        .expect("rename");
    let mut w = sftp.create(format!("{root}/w.txt")).expect("create");
    w.write_all(b"hello ").expect("write");
    w.close().expect("close");
    let mut w = sftp.append(format!("{root}/w.txt")).expect("append");
    w.write_all(b"world").expect("write");
    w.close().expect("close");
    let mut text = String::new();
    sftp.open(format!("{root}/w.txt"))
        .expect("open")
        .read_to_string(&mut text)
        .expect("read");
    assert_eq!(text, "hello world");
    sftp.upload_dir(local.path(), format!("{root}/up"), &TransferOptions::new())
        .expect("upload_dir");
    let back = tempfile::tempdir().expect("temp dir");
    sftp.download_dir(format!("{root}/up"), back.path(), &TransferOptions::new())
        .expect("download_dir");
    assert_eq!(names_in(back.path()), ["a.bin", "b.bin"]);
    sftp.remove_file(format!("{root}/w.txt"))
        .expect("remove_file");
    sftp.remove_dir(format!("{root}/f")).expect("remove_dir");
    sftp.remove_dir_all(format!("{root}/d"))
        .expect("remove_dir_all");
    assert_eq!(names_in(local_root), ["up"]);
}

/// `MaxSessions 1` (a common hardening): every SFTP operation, then a
/// command while the `SftpSession` is still alive (its idle channel is
/// closed to make room), then SFTP again, all on one `Session`.
#[test]
fn max_sessions_1_runs_sftp_then_exec_then_sftp() {
    let Some((server, key)) = sshd_with_key(Sshd::builder().extra_config("MaxSessions 1")) else {
        return;
    };
    let session = key.connect_to(&server);
    let root = tempfile::tempdir().expect("temp dir");
    let remote = root.path().to_str().expect("utf-8");
    let sftp = session.sftp().expect("sftp");
    every_operation(&session, remote, root.path());
    let out = session.exec().expect("exec").run("echo hi").expect("run");
    assert_eq!(out.stdout(), b"hi\n");
    assert!(sftp.exists(remote).expect("exists"), "SFTP again");
    let out = session
        .exec()
        .expect("exec")
        .run("echo again")
        .expect("run");
    assert_eq!(out.stdout(), b"again\n");
    every_operation(&session, remote, root.path());
}

/// SFTP channels after the first that sshd's `log` shows.
fn second_channels(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("subsystem 'sftp'") && !l.ends_with(" id 0"))
        .count()
}

/// Uploads `data` with `options` through a long link (`one_way` each way)
/// on each backend: OpenSSH's sshd, whose log `check` reads, and an
/// embedded server that allows one channel per connection
/// (`max_channels(1)`, as `MaxSessions 1`). The file must arrive whole on
/// both.
fn upload_on_a_long_link(
    data: &[u8],
    options: &TransferOptions,
    one_way: Duration,
    check: impl Fn(&str),
) {
    let local = tempfile::tempdir().expect("temp dir");
    fs::write(local.path().join("src.bin"), data).expect("write");
    for backend in backends() {
        let server = if backend == Backend::Embedded {
            TestServer::builder()
                .backend(Backend::Embedded)
                .max_channels(1)
                .start()
                .expect("embedded server")
        } else {
            test_server(backend)
        };
        let sftp = server.session().expect("session").sftp().expect("sftp");
        server.slow_link(one_way, 0);
        sftp.upload_with(
            local.path().join("src.bin"),
            server.remote_path("up.bin"),
            options,
        )
        .expect("upload");
        server.heal();
        assert!(
            fs::read(server.sftp_root().join("up.bin")).expect("read") == data,
            "{backend:?}"
        );
        if let Some(log) = server.sshd_log() {
            check(&log);
        }
    }
}

/// On a long link (a 20 ms round trip here) a large upload over several
/// sessions writes its pieces on two SFTP channels of a session (each
/// channel has its own window): sshd's log shows a second SFTP channel on
/// one connection. On a server that allows one channel per connection
/// the pieces go on the one channel of each session.
#[test]
fn a_parallel_upload_on_a_long_link_writes_on_two_channels_per_session() {
    let options = TransferOptions::new().sessions(2).min_segment_size(2 << 20);
    let one_way = Duration::from_millis(10);
    upload_on_a_long_link(&random_bytes(8 << 20, 21), &options, one_way, |log| {
        assert!(second_channels(log) >= 1, "{log}");
    });
}

/// A file of 16 MiB or more that gets one session (below twice
/// `min_segment_size`) is written on more channels of it on a long link
/// too, with one login: another channel is not another connection. At
/// least two at a 20 ms round trip (three when the testkit's link, which
/// holds each chunk in turn, makes the OPEN take 30 ms or more), three at
/// 40 ms and never more. With one channel allowed, the first carries the
/// whole file.
#[test]
fn a_one_session_upload_on_a_long_link_writes_on_more_channels() {
    for (one_way, more) in [(10, 1..=2), (20, 2..=2)] {
        let one_way = Duration::from_millis(one_way);
        upload_on_a_long_link(
            &random_bytes(17 << 20, 22),
            &TransferOptions::new(),
            one_way,
            |log| {
                let seen = second_channels(log);
                assert!(more.contains(&seen), "{one_way:?}: {seen} more: {log}");
                assert_eq!(log.matches("Accepted publickey").count(), 1, "{log}");
            },
        );
    }
}

/// A local file replaced while it is uploaded (a new version renamed over
/// it, as producers do) never mixes into the upload: every session and
/// channel reads the file that was opened first, whose size the upload
/// took, so the server gets that version whole. The new one is renamed
/// over the source at the first progress report, before any session
/// starts writing.
#[test]
fn a_source_replaced_during_a_parallel_upload_does_not_mix_in() {
    for backend in backends() {
        let server = test_server(backend);
        let local = tempfile::tempdir().expect("temp dir");
        let src = local.path().join("src.bin");
        let old = random_bytes(8 << 20, 31);
        let new = random_bytes(8 << 20, 32);
        fs::write(&src, &old).expect("write");
        let replaced = std::sync::atomic::AtomicBool::new(false);
        let (new_path, src_path) = (local.path().join("new.bin"), src.clone());
        let options = TransferOptions::new()
            .sessions(2)
            .min_segment_size(2 << 20)
            .progress(move |_, _| {
                if !replaced.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    fs::write(&new_path, &new).expect("write the new version");
                    fs::rename(&new_path, &src_path).expect("rename over the source");
                }
            });
        let sftp = server.session().expect("session").sftp().expect("sftp");
        sftp.upload_with(&src, server.remote_path("up.bin"), &options)
            .expect("upload");
        assert!(
            fs::read(server.sftp_root().join("up.bin")).expect("read") == old,
            "{backend:?}: the upload is the version that was opened, whole"
        );
    }
}

/// An SFTP session dropped does not wait for the server to confirm its
/// channel's close, yet the server sees each close: with `MaxSessions 1`,
/// twelve SFTP sessions one after another on one connection each get
/// their channel, exec still gets one after them, and when the session is
/// dropped sshd logs our goodbye, not a reset.
#[test]
fn channels_dropped_without_waiting_are_closed_and_the_goodbye_is_clean() {
    let Some((server, key)) = sshd_with_key(Sshd::builder().extra_config("MaxSessions 1")) else {
        return;
    };
    let root = tempfile::tempdir().expect("temp dir");
    let src = root.path().join("src.csv");
    fs::write(&src, b"a,b\n1,2\n").expect("write");
    let session = key.connect_to(&server);
    let port = session.local_addr().port();
    for i in 0..12 {
        let sftp = session.sftp().expect("sftp");
        sftp.upload(&src, format!("{}/up{i}.csv", root.path().display()))
            .expect("upload");
        sftp.download(
            format!("{}/up{i}.csv", root.path().display()),
            root.path().join(format!("down{i}.csv")),
        )
        .expect("download");
    }
    let out = session.exec().expect("exec").run("echo hi").expect("run");
    assert_eq!(out.stdout(), b"hi\n");
    drop(session);
    for i in 0..12 {
        assert_eq!(
            fs::read(root.path().join(format!("down{i}.csv"))).expect("read"),
            b"a,b\n1,2\n"
        );
    }
    let goodbye = format!("Received disconnect from 127.0.0.1 port {port}:11: closed by client");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let log = server.log();
        if log.contains(&goodbye) || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(log.contains(&goodbye), "{log}");
    let ours = format!("port {port}");
    assert!(
        !log.lines()
            .any(|l| l.contains(&ours) && (l.contains("reset") || l.contains("error"))),
        "{log}"
    );
}

/// The same on the embedded server with a limit of one channel.
#[test]
fn one_channel_at_a_time_on_the_embedded_server() {
    let server = TestServer::builder()
        .backend(Backend::Embedded)
        .max_channels(1)
        .start()
        .expect("server");
    let session = server.session().expect("session");
    let root = server.remote_path("");
    every_operation(&session, root.trim_end_matches('/'), server.sftp_root());
    let sftp = session.sftp().expect("sftp");
    let out = session.exec().expect("exec").run("echo hi").expect("run");
    assert_eq!(out.stdout(), b"hi\n");
    sftp.create_dir(server.remote_path("after"))
        .expect("SFTP again");
    // A streaming handle holds its channel: a command then has no room,
    // and the error names the likely cause.
    fs::write(server.sftp_root().join("r.txt"), "r").expect("write");
    let reader = sftp.open(server.remote_path("r.txt")).expect("open");
    let err = session
        .exec()
        .expect("exec")
        .run("echo no room")
        .expect_err("no channel");
    assert!(err.to_string().contains("MaxSessions"), "{err}");
    drop(reader);
}

/// A server that allows one channel per connection and ends the
/// connection when it closes (tinysshd): each new channel gets a new,
/// verified connection; commands and SFTP alternate on one `Session`.
#[test]
fn one_channel_per_connection_servers_get_a_connection_per_channel() {
    let server = TestServer::builder()
        .backend(Backend::Embedded)
        .one_channel_per_connection(true)
        .start()
        .expect("server");
    let session = server.session().expect("session");
    for i in 0..3 {
        let out = session
            .exec()
            .expect("exec")
            .run(&format!("echo {i}"))
            .expect("run");
        assert_eq!(out.stdout(), format!("{i}\n").as_bytes());
    }
    let sftp = session.sftp().expect("sftp");
    sftp.create_dir(server.remote_path("a")).expect("mkdir");
    drop(sftp);
    let out = session
        .exec()
        .expect("exec")
        .run("echo after")
        .expect("run");
    assert_eq!(out.stdout(), b"after\n");
    let sftp = session.sftp().expect("sftp");
    assert!(sftp
        .metadata(server.remote_path("a"))
        .expect("stat")
        .is_dir());
}

/// A server that grants a small window (dropbear's 24 KiB): the streaming
/// writer writes within it, and a large file arrives whole.
#[test]
fn the_streaming_writer_fits_a_small_window() {
    let server = TestServer::builder()
        .backend(Backend::Embedded)
        .window_size(24 * 1024)
        .start()
        .expect("server");
    let sftp = server.session().expect("session").sftp().expect("sftp");
    let data = random_bytes(5 << 20, 4);
    let mut w = sftp.create(server.remote_path("w.bin")).expect("create");
    w.write_all(&data).expect("write");
    w.close().expect("close");
    assert!(fs::read(server.sftp_root().join("w.bin")).expect("read") == data);
    let mut back = Vec::new();
    sftp.open(server.remote_path("w.bin"))
        .expect("open")
        .read_to_end(&mut back)
        .expect("read");
    assert!(back == data);
}

/// Names that are not UTF-8 (a Windows partner's Latin-1 `café.csv`)
/// travel byte for byte through `upload_dir`, `download_dir`, `read_dir`
/// and `remove_dir_all`.
#[test]
fn non_utf8_names_round_trip_byte_exact() {
    let name: &[u8] = b"caf\xe9.csv";
    for backend in backends() {
        let server = test_server(backend);
        let local = tempfile::tempdir().expect("temp dir");
        let src = local.path().join("src");
        fs::create_dir_all(src.join(std::ffi::OsStr::from_bytes(b"d\xfcr"))).expect("mkdir");
        fs::write(src.join(std::ffi::OsStr::from_bytes(name)), "latin-1").expect("write");
        fs::write(
            src.join(std::ffi::OsStr::from_bytes(b"d\xfcr"))
                .join(std::ffi::OsStr::from_bytes(name)),
            "inner",
        )
        .expect("write");
        let sftp = server.session().expect("session").sftp().expect("sftp");
        sftp.upload_dir(&src, server.remote_path("dst"), &TransferOptions::new())
            .expect("upload_dir");
        let remote = server.sftp_root().join("dst");
        assert!(
            remote.join(std::ffi::OsStr::from_bytes(name)).is_file(),
            "{backend}"
        );
        let entries = sftp.read_dir(server.remote_path("dst")).expect("list");
        let file = entries
            .iter()
            .find(|e| e.name_bytes() == name)
            .expect("the exact name");
        assert_eq!(file.path().file_name(), name);
        assert_eq!(sftp.metadata(file.path()).expect("stat").len(), 7);
        let back = local.path().join("back");
        sftp.download_dir(server.remote_path("dst"), &back, &TransferOptions::new())
            .expect("download_dir");
        assert_eq!(
            fs::read(
                back.join(std::ffi::OsStr::from_bytes(b"d\xfcr"))
                    .join(std::ffi::OsStr::from_bytes(name))
            )
            .expect("inner"),
            b"inner"
        );
        let raw = RemotePath::from(server.remote_path("dst"));
        sftp.remove_dir_all(&raw).expect("remove_dir_all");
        assert!(!remote.exists(), "{backend}");
    }
}

/// The error of `Session::sftp` against an sshd whose SFTP subsystem is a
/// shell script of `body` (a script: sshd drops the quotes of a command
/// written inline); `None` where sshd is not installed (outside CI).
fn sftp_start_error(body: &str) -> Option<etl_ssh::Error> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("subsystem.sh");
    fs::write(&script, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let (sshd, key) = sshd_with_key(
        Sshd::builder().extra_config(&format!("Subsystem sftp {}", script.display())),
    )?;
    let session = key.connect_to(&sshd);
    Some(session.sftp().expect_err("the subsystem does not start"))
}

/// A login shell that prints: the error shows what the server printed,
/// the hint, and the server.
#[test]
fn a_login_shell_that_prints_is_named() {
    let server = TestServer::builder()
        .backend(Backend::Embedded)
        .text_before_sftp("Welcome to the partner's gateway!\n")
        .start()
        .expect("server");
    let err = server.session().expect("session").sftp().expect_err("text");
    assert_eq!(err.kind(), ErrorKind::Protocol);
    let text = err.to_string();
    for part in [
        "Welcome to the partner's gateway!",
        "login shell",
        "127.0.0.1:",
    ] {
        assert!(text.contains(part), "{text} lacks {part:?}");
    }

    // The same through OpenSSH: a subsystem that prints before SFTP.
    let Some(err) = sftp_start_error("echo You have new mail.\nexec /usr/lib/openssh/sftp-server")
    else {
        return;
    };
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("You have new mail."), "{err}");
}

/// An SFTP subsystem that dies at start: the error carries what it said
/// on stderr and its exit status, not a bare "connection lost". OpenSSH's
/// sshd drops a subsystem's stderr: there, the exit status.
#[test]
fn a_subsystem_that_dies_at_start_says_why() {
    let server = TestServer::builder()
        .backend(Backend::Embedded)
        .sftp_fails_at_start("You are required to change your password immediately\n", 1)
        .start()
        .expect("server");
    let err = server.session().expect("session").sftp().expect_err("died");
    let text = err.to_string();
    assert!(text.contains("change your password"), "{text}");
    assert!(text.contains("exit status 1"), "{text}");
    assert!(text.contains("ended at start"), "{text}");

    let Some(err) = sftp_start_error("exit 3") else {
        return;
    };
    let text = err.to_string();
    assert!(text.contains("ended at start: exit status 3"), "{text}");
}

/// Seeking a reader while its read-ahead is in flight drops the read-ahead
/// and reads the right bytes, forward, backward and from the end.
#[test]
fn seek_in_the_middle_of_read_ahead() {
    for backend in backends() {
        let server = test_server(backend);
        let data = random_bytes(12 << 20, 8);
        fs::write(server.sftp_root().join("s.bin"), &data).expect("write");
        let sftp = server.session().expect("session").sftp().expect("sftp");
        let mut r = sftp.open(server.remote_path("s.bin")).expect("open");
        let mut one = [0u8; 1];
        r.read_exact(&mut one).expect("read");
        assert_eq!(one[0], data[0]);
        for at in [7 << 20, 100, (12 << 20) - 5000, 1 << 20] {
            r.seek(SeekFrom::Start(at)).expect("seek");
            let mut buf = vec![0u8; 4096];
            r.read_exact(&mut buf).expect("read");
            assert!(
                buf == data[at as usize..at as usize + 4096],
                "{backend} at {at}"
            );
        }
        r.seek(SeekFrom::End(-10)).expect("seek end");
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).expect("read");
        assert_eq!(tail, data[data.len() - 10..]);
        r.seek(SeekFrom::Current(-20)).expect("seek back");
        assert_eq!(r.fill_buf().expect("fill")[0], data[data.len() - 20]);
        // Then the whole file through io::copy is still exact.
        r.seek(SeekFrom::Start(0)).expect("rewind");
        let mut all = Vec::new();
        std::io::copy(&mut r, &mut all).expect("copy");
        assert!(all == data, "{backend}");
    }
}

/// Channels opened at once on one connection from several threads, while
/// another channel of it uploads through a slow link: every SFTP channel
/// and every command starts, and the upload arrives whole. libssh2 keeps
/// one channel-opening state per connection: an open waits for the
/// server's answers with the connection free for the other channels, and
/// the opens take turns.
#[test]
fn channels_opened_at_once_on_one_connection_all_start() {
    for backend in backends() {
        let server = test_server(backend);
        let session = server.session().expect("session");
        let local = tempfile::tempdir().expect("temp dir");
        let data = random_bytes(8 << 20, 41);
        fs::write(local.path().join("src.bin"), &data).expect("write");
        let uploader = session.sftp().expect("sftp");
        server.slow_link(Duration::from_millis(5), 0);
        std::thread::scope(|s| {
            let up = s.spawn(|| {
                uploader.upload_with(
                    local.path().join("src.bin"),
                    server.remote_path("up.bin"),
                    &TransferOptions::new().sessions(1),
                )
            });
            let openers: Vec<_> = (0..3)
                .map(|i| {
                    let (session, server) = (&session, &server);
                    s.spawn(move || {
                        let sftp = session.sftp().expect("sftp on a busy connection");
                        assert!(sftp.exists(server.remote_path("")).expect("exists"));
                        let said = session
                            .exec()
                            .expect("exec")
                            .run(&format!("echo {i}"))
                            .expect("a command on a busy connection");
                        assert_eq!(said.stdout(), format!("{i}\n").as_bytes());
                    })
                })
                .collect();
            for opener in openers {
                opener.join().expect("opener");
            }
            up.join().expect("uploader").expect("upload");
        });
        server.heal();
        assert!(
            fs::read(server.sftp_root().join("up.bin")).expect("read") == data,
            "{backend:?}"
        );
    }
}
