//! A partner's server is trusted for its host key alone: these tests run
//! the client against servers that are broken or hostile on purpose (the
//! testkit's embedded server with its hostile knobs, and OpenSSH's sshd
//! where a real server can show the case) and check that nothing outside
//! the target is touched, nothing is lost, nothing unbounded happens, and
//! every failure is a typed error that says what happened.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{backends, embedded, names_in, random_bytes, test_server};
use etl_ssh::testkit::{Backend, TestServer};
use etl_ssh::{ErrorKind, TransferOptions};

/// Every file below `dir`, as paths relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("list") {
            let p = e.expect("entry").path();
            out.push(
                p.strip_prefix(dir)
                    .expect("below")
                    .to_string_lossy()
                    .into_owned(),
            );
            if p.symlink_metadata().expect("stat").is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

const TRAVERSAL: [&[u8]; 8] = [
    b"..",
    b"/etc",
    b"x/../..",
    b"/root/.ssh/..",
    b"../../escaped",
    b"",
    b"a\\..\\b",
    b"nul\0name",
];

/// Names that are paths never leave the listing: `read_dir` and `glob`
/// skip them (a warning names each), and `download_dir` writes only below
/// its target, even though the hostile names come mid-listing.
#[test]
fn names_from_the_server_are_never_paths() {
    let (server, sftp) = embedded(TestServer::builder().hostile_names(TRAVERSAL));
    let root = server.sftp_root();
    fs::create_dir(root.join("sub")).expect("mkdir");
    for i in 0..150 {
        fs::write(
            root.join("sub").join(format!("f{i:03}.csv")),
            format!("{i}"),
        )
        .expect("write");
    }
    let names: Vec<String> = sftp
        .read_dir(server.remote_path("sub"))
        .expect("list")
        .into_iter()
        .map(|e| e.name().to_string())
        .collect();
    assert_eq!(names.len(), 150, "only the real files: {names:?}");
    assert!(names.iter().all(|n| n.starts_with('f')), "{names:?}");
    for e in sftp
        .glob(format!("{}/*", server.remote_path("sub")))
        .expect("glob")
    {
        assert!(!e.name().contains('/') && e.name() != "..", "{}", e.name());
    }

    let outer = tempfile::tempdir().expect("temp dir");
    let target = outer.path().join("a").join("b").join("target");
    fs::create_dir_all(&target).expect("mkdir");
    let before = tree(outer.path());
    sftp.download_dir(server.remote_path("sub"), &target, &TransferOptions::new())
        .expect("download_dir");
    let after = tree(outer.path());
    let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 150, "{new:?}");
    assert!(
        new.iter().all(|p| p.starts_with("a/b/target/f")),
        "everything lands in the target: {new:?}"
    );
}

/// A tree without end (a folder `deeper` in every folder) ends in a typed
/// error at 64 levels, on a thread with a 2 MiB stack (std's default for
/// spawned threads and tokio's blocking pool): no recursion to overflow.
#[test]
fn a_bottomless_tree_is_an_error_not_a_crash() {
    let (server, sftp) = embedded(TestServer::builder().bottomless_tree(true));
    let local = tempfile::tempdir().expect("temp dir");
    let remote = server.remote_path("");
    let target = local.path().to_path_buf();
    let err = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            sftp.download_dir(remote, &target, &TransferOptions::new())
                .expect_err("bottomless")
        })
        .expect("thread")
        .join()
        .expect("no stack overflow");
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    assert!(err.to_string().contains("64 levels"), "{err}");
}

/// An SFTP v3 server that refuses every rename: `rename` over an existing
/// file fails and leaves both files as they were; a missing source never
/// costs the target.
#[test]
fn a_server_refusing_renames_loses_nothing() {
    let (server, sftp) = embedded(TestServer::builder().plain_sftp(true).refuse_rename(true));
    let root = server.sftp_root();
    fs::write(root.join("new.csv"), "new").expect("write");
    fs::write(root.join("old.csv"), "old").expect("write");
    let err = sftp
        .rename(server.remote_path("new.csv"), server.remote_path("old.csv"))
        .expect_err("refused");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert_eq!(fs::read(root.join("old.csv")).expect("old"), b"old");
    assert_eq!(fs::read(root.join("new.csv")).expect("new"), b"new");
    assert_eq!(names_in(root), ["new.csv", "old.csv"]);

    let err = sftp
        .rename(
            server.remote_path("missing.csv"),
            server.remote_path("old.csv"),
        )
        .expect_err("no source");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(fs::read(root.join("old.csv")).expect("old"), b"old");

    // An atomic upload over an existing file fails the same way: the old
    // file stays, the temporary file goes.
    let local = tempfile::tempdir().expect("temp dir");
    fs::write(local.path().join("up.csv"), "up").expect("write");
    let err = sftp
        .upload(local.path().join("up.csv"), server.remote_path("old.csv"))
        .expect_err("cannot rename into place");
    assert!(err.to_string().contains("old.csv"), "{err}");
    assert_eq!(fs::read(root.join("old.csv")).expect("old"), b"old");
    assert_eq!(names_in(root), ["new.csv", "old.csv"]);
}

/// A server that refuses to rename over an existing file (SFTP v3's plain
/// rename, OpenSSH's too) gets the old file moved aside, ours renamed in,
/// and the aside copy removed: the target is replaced, nothing is left.
#[test]
fn the_rename_fallback_replaces_without_a_window_of_loss() {
    let (server, sftp) = embedded(TestServer::builder().plain_sftp(true));
    let root = server.sftp_root();
    fs::write(root.join("new.csv"), "new").expect("write");
    fs::write(root.join("old.csv"), "old").expect("write");
    sftp.rename(server.remote_path("new.csv"), server.remote_path("old.csv"))
        .expect("replaced");
    assert_eq!(names_in(root), ["old.csv"]);
    assert_eq!(fs::read(root.join("old.csv")).expect("read"), b"new");
}

/// A reply to a request the client never made breaks the channel with a
/// protocol error naming it, instead of being kept or taken for another.
#[test]
fn an_unsolicited_reply_is_a_protocol_error() {
    let server = TestServer::builder()
        .backend(Backend::Embedded)
        .unsolicited_reply(true)
        .start()
        .expect("server");
    // The reply waits behind the version; the first request meets it.
    let sftp = server.session().expect("session").sftp().expect("sftp");
    let err = sftp.metadata(".").expect_err("protocol error");
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("was not sent"), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

/// A file that grows or shrinks while it is downloaded (the server's size
/// no longer matches what it serves) fails with `ErrorKind::Changed`, a
/// transient kind, on one session and on four; nothing is put in place.
#[test]
fn growth_and_shrinkage_fail_every_download() {
    for (delta, what) in [(-1000i64, "grew"), (1000, "ended")] {
        let (server, sftp) = embedded(TestServer::builder().misreport_size(delta));
        let data = random_bytes(70 << 20, 7);
        fs::write(server.sftp_root().join("big.bin"), &data).expect("write");
        let local = tempfile::tempdir().expect("temp dir");
        for sessions in [1, 4] {
            let options = TransferOptions::new()
                .sessions(sessions)
                .min_segment_size(16 << 20);
            let target = local.path().join("big.bin");
            let err = sftp
                .download_with(server.remote_path("big.bin"), &target, &options)
                .expect_err("changed");
            assert_eq!(err.kind(), ErrorKind::Changed, "{sessions}: {err}");
            assert!(err.is_transient(), "{err}");
            assert!(err.to_string().contains(what), "{sessions}: {err}");
            assert!(!target.exists(), "nothing in place");
            assert!(names_in(local.path()).is_empty(), "no temporary file left");
        }
    }
}

/// A server whose file, once written, is not the size sent (here: it
/// reports every size 1000 bytes off) fails the upload's size check on one
/// session and on four (where the size comes from the FSTAT of the channel
/// that wrote last, or a STAT by name): nothing is put in place, and no
/// temporary file is left.
#[test]
fn an_upload_the_server_holds_at_another_size_is_not_delivered() {
    let (server, sftp) = embedded(TestServer::builder().misreport_size(1000));
    let local = tempfile::tempdir().expect("temp dir");
    let src = local.path().join("big.bin");
    fs::write(&src, random_bytes(70 << 20, 5)).expect("write");
    for sessions in [1, 4] {
        let options = TransferOptions::new()
            .sessions(sessions)
            .min_segment_size(16 << 20);
        let err = sftp
            .upload_with(&src, server.remote_path("big.bin"), &options)
            .expect_err("size check");
        assert!(
            err.to_string().contains("size check failed"),
            "{sessions}: {err}"
        );
        assert!(err.to_string().contains("verify_size"), "{err}");
        assert!(
            names_in(server.sftp_root()).is_empty(),
            "{sessions}: nothing delivered, nothing left: {:?}",
            names_in(server.sftp_root())
        );
    }
}

/// A partial upload temp whose bytes differ from the source (another
/// writer, a file rewritten at the same size) is not continued: the
/// resumed upload starts over and the result is the source, byte for
/// byte. The same for a download's local temp.
#[test]
fn a_resume_never_stitches_different_bytes() {
    for backend in backends() {
        let server = test_server(backend);
        let root = server.sftp_root().to_path_buf();
        let local = tempfile::tempdir().expect("temp dir");
        let data = random_bytes(24 << 20, 11);
        fs::write(local.path().join("src.bin"), &data).expect("write");
        let options = TransferOptions::new().resume(true).buffer_size(256 * 1024);

        // Upload: cut part way, corrupt the partial temp, retry.
        let sftp = server.session().expect("session").sftp().expect("sftp");
        server.close_after(8 << 20);
        sftp.upload_with(
            local.path().join("src.bin"),
            server.remote_path("up.bin"),
            &options,
        )
        .expect_err("cut");
        server.heal();
        let temps: Vec<_> = names_in(&root)
            .into_iter()
            .filter(|n| n.ends_with(".part"))
            .collect();
        assert_eq!(temps.len(), 1, "{backend}: {temps:?}");
        let temp = root.join(&temps[0]);
        let mut partial = fs::read(&temp).expect("partial");
        assert!(partial.len() > 1 << 20, "{backend}: {}", partial.len());
        for b in partial.iter_mut() {
            *b ^= 0x5a;
        }
        fs::write(&temp, &partial).expect("corrupt");
        let sftp = server.session().expect("session").sftp().expect("sftp");
        sftp.upload_with(
            local.path().join("src.bin"),
            server.remote_path("up.bin"),
            &options,
        )
        .expect("resumed upload");
        assert!(
            fs::read(root.join("up.bin")).expect("up") == data,
            "{backend}: upload"
        );

        // Download: the same on our side.
        server.close_after(8 << 20);
        sftp.download_with(
            server.remote_path("up.bin"),
            local.path().join("down.bin"),
            &options,
        )
        .expect_err("cut");
        server.heal();
        let temps: Vec<_> = names_in(local.path())
            .into_iter()
            .filter(|n| n.ends_with(".part"))
            .collect();
        assert_eq!(temps.len(), 1, "{backend}: {temps:?}");
        let temp = local.path().join(&temps[0]);
        let mut partial = fs::read(&temp).expect("partial");
        for b in partial.iter_mut() {
            *b ^= 0x5a;
        }
        fs::write(&temp, &partial).expect("corrupt");
        let sftp = server.session().expect("session").sftp().expect("sftp");
        sftp.download_with(
            server.remote_path("up.bin"),
            local.path().join("down.bin"),
            &options,
        )
        .expect("resumed download");
        assert!(
            fs::read(local.path().join("down.bin")).expect("down") == data,
            "{backend}: download"
        );
    }
}

/// An embedded server holding `size` random bytes as `f.bin`, and a
/// resumable download of it into `local` cut a quarter in: the options,
/// and the bytes.
fn cut_download(local: &Path, size: usize) -> (TestServer, TransferOptions, Vec<u8>) {
    let server = test_server(Backend::Embedded);
    let data = random_bytes(size, size as u64);
    fs::write(server.sftp_root().join("f.bin"), &data).expect("write");
    let options = TransferOptions::new().resume(true).buffer_size(256 * 1024);
    let sftp = server.session().expect("session").sftp().expect("sftp");
    server.close_after(size as u64 / 4);
    sftp.download_with(server.remote_path("f.bin"), local.join("f.bin"), &options)
        .expect_err("cut");
    server.heal();
    (server, options, data)
}

/// A symlink planted at a resumed download's (predictable) temporary name
/// is never followed: the file it points to is untouched and the download
/// completes.
#[test]
fn a_resume_never_follows_a_planted_symlink() {
    let local = tempfile::tempdir().expect("temp dir");
    let (server, options, data) = cut_download(local.path(), 16 << 20);
    let temp = names_in(local.path())
        .into_iter()
        .find(|n| n.ends_with(".part"))
        .expect("a resumable temp");
    let victim = local.path().join("victim");
    fs::write(&victim, "precious").expect("write");
    fs::remove_file(local.path().join(&temp)).expect("rm");
    std::os::unix::fs::symlink(&victim, local.path().join(&temp)).expect("plant");
    let sftp = server.session().expect("session").sftp().expect("sftp");
    sftp.download_with(
        server.remote_path("f.bin"),
        local.path().join("f.bin"),
        &options,
    )
    .expect("download");
    assert_eq!(fs::read(&victim).expect("victim"), b"precious");
    assert!(fs::read(local.path().join("f.bin")).expect("f") == data);
}

/// Two resumed downloads of one file at once never share the temporary
/// file (the second finds it locked and writes a copy of its own): both
/// deliver the whole file.
#[test]
fn overlapping_resumes_never_share_a_temp() {
    let local = tempfile::tempdir().expect("temp dir");
    let (server, options, data) = cut_download(local.path(), 32 << 20);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let sftp = server.session().expect("session").sftp().expect("sftp");
                sftp.download_with(
                    server.remote_path("f.bin"),
                    local.path().join("f.bin"),
                    &options,
                )
                .expect("download");
            });
        }
    });
    assert!(fs::read(local.path().join("f.bin")).expect("f") == data);
    assert_eq!(names_in(local.path()), ["f.bin"], "no temp left");
}

/// Watches a folder for temporary files (`.part`) while a transfer runs:
/// from its progress callback, each time a buffer is done.
struct TempWatch {
    seen: Arc<AtomicU64>,
    leaked: Arc<AtomicBool>,
    dir: std::path::PathBuf,
}

impl TempWatch {
    fn on(dir: &Path) -> TempWatch {
        TempWatch {
            seen: Arc::default(),
            leaked: Arc::default(),
            dir: dir.to_path_buf(),
        }
    }

    /// Options whose progress callback looks at the temporary files.
    fn options(&self) -> TransferOptions {
        let (seen, leaked, dir) = (
            Arc::clone(&self.seen),
            Arc::clone(&self.leaked),
            self.dir.clone(),
        );
        TransferOptions::new()
            .buffer_size(256 * 1024)
            .progress(move |_, _| {
                for e in fs::read_dir(&dir).expect("list").flatten() {
                    if e.file_name().as_bytes().ends_with(b".part") {
                        seen.fetch_add(1, Ordering::SeqCst);
                        if e.metadata()
                            .is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
                        {
                            leaked.store(true, Ordering::SeqCst);
                        }
                    }
                }
            })
    }

    /// A temporary file was seen, and none was readable by others.
    fn check(&self, what: &str) {
        assert!(self.seen.load(Ordering::SeqCst) > 0, "{what}: no temp seen");
        assert!(
            !self.leaked.load(Ordering::SeqCst),
            "{what}: the temp was not private"
        );
    }
}

/// The permission bits of `path` (setuid, setgid and sticky included).
fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Permission bits travel as OpenSSH's `sftp` carries them: a 0600 file
/// stays 0600 both ways, and its temporary file is never readable by
/// others while it is written.
#[test]
fn modes_are_kept_both_ways_and_temps_stay_private() {
    for backend in backends() {
        let server = test_server(backend);
        let root = server.sftp_root().to_path_buf();
        let local = tempfile::tempdir().expect("temp dir");
        let src = local.path().join("secret.csv");
        fs::write(&src, random_bytes(4 << 20, 1)).expect("write");
        fs::set_permissions(&src, fs::Permissions::from_mode(0o600)).expect("chmod");
        let sftp = server.session().expect("session").sftp().expect("sftp");
        let watch = TempWatch::on(&root);
        sftp.upload_with(&src, server.remote_path("secret.csv"), &watch.options())
            .expect("upload");
        watch.check(&format!("{backend}: upload"));
        assert_eq!(
            mode_of(&root.join("secret.csv")),
            0o600,
            "{backend}: upload"
        );

        let down = tempfile::tempdir().expect("temp dir");
        let watch = TempWatch::on(down.path());
        let target = down.path().join("secret.csv");
        sftp.download_with(server.remote_path("secret.csv"), &target, &watch.options())
            .expect("download");
        watch.check(&format!("{backend}: download"));
        assert_eq!(mode_of(&target), 0o600, "{backend}: download");
        // setuid bits never travel.
        fs::set_permissions(&src, fs::Permissions::from_mode(0o4755)).expect("chmod");
        sftp.upload(&src, server.remote_path("suid.csv"))
            .expect("upload");
        assert_eq!(
            mode_of(&root.join("suid.csv")),
            0o755,
            "{backend}: no setuid"
        );
    }
}

/// Names as long as a file system takes still transfer atomically: the
/// temporary name is bounded (the start of the name and a hash).
#[test]
fn long_names_transfer_atomically() {
    for backend in backends() {
        let server = test_server(backend);
        let local = tempfile::tempdir().expect("temp dir");
        let name = format!("{}.csv", "n".repeat(236));
        assert_eq!(name.len(), 240);
        fs::write(local.path().join(&name), "long").expect("write");
        let sftp = server.session().expect("session").sftp().expect("sftp");
        sftp.upload(local.path().join(&name), server.remote_path(&name))
            .expect("upload");
        sftp.download(server.remote_path(&name), local.path().join("back.csv"))
            .expect("download");
        assert_eq!(
            fs::read(local.path().join("back.csv")).expect("read"),
            b"long"
        );
        assert_eq!(
            names_in(server.sftp_root()),
            std::slice::from_ref(&name),
            "{backend}"
        );
    }
}

/// `upload_dir` skips local symbolic links by default, as OpenSSH's
/// `put -r` does (a `loop -> .` once made 41 nested folders on a
/// partner's server); asked to follow them, a loop is an error.
#[test]
fn upload_dir_never_follows_a_link_loop() {
    for backend in backends() {
        let server = test_server(backend);
        let local = tempfile::tempdir().expect("temp dir");
        let src = local.path().join("src");
        fs::create_dir_all(src.join("sub")).expect("mkdir");
        fs::write(src.join("sub").join("a.csv"), "a").expect("write");
        std::os::unix::fs::symlink(".", src.join("sub").join("loop")).expect("link");
        std::os::unix::fs::symlink("sub/a.csv", src.join("link.csv")).expect("link");
        let sftp = server.session().expect("session").sftp().expect("sftp");
        sftp.upload_dir(&src, server.remote_path("dst"), &TransferOptions::new())
            .expect("upload_dir");
        assert_eq!(
            tree(&server.sftp_root().join("dst")),
            ["sub", "sub/a.csv"],
            "{backend}"
        );

        let err = sftp
            .upload_dir(
                &src,
                server.remote_path("dst2"),
                &TransferOptions::new().follow_symlinks(true),
            )
            .expect_err("a loop");
        assert!(err.to_string().contains("loop"), "{backend}: {err}");
    }
}
