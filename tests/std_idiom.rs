//! std's idiom for remote files (issue 17, item 1), against OpenSSH's
//! sshd and the embedded server: `OpenOptions` and the `SftpFile` it
//! opens, whole small files, lengths, times, links, `Permissions`, folders
//! with a mode, `statvfs@openssh.com` and `copy-data` (on both servers,
//! and refused by name where a server does not offer them).

mod common;

use std::fs;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use common::{backends, embedded, random_bytes, test_server};
use etl_ssh::testkit::TestServer;
use etl_ssh::{Error, ErrorKind, OpenOptions, Permissions, SftpSession};

/// The permission bits of a local file.
fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

/// Asserts `err` is of `kind` and its message holds `words`.
fn assert_error(err: &Error, kind: ErrorKind, words: &str) {
    assert_eq!(err.kind(), kind, "{err}");
    assert!(err.to_string().contains(words), "{err} lacks {words:?}");
}

/// Runs `test` with an SFTP session on each backend.
fn on_each_backend(test: impl Fn(&TestServer, &SftpSession)) {
    for backend in backends() {
        eprintln!("backend: {backend}");
        let server = test_server(backend);
        let sftp = server.session().expect("session").sftp().expect("sftp");
        test(&server, &sftp);
    }
}

/// `OpenOptions` as std has them: create_new once only, the combinations
/// std refuses refused before anything is sent, read and write through
/// one handle with one position, append after reading, truncate, the
/// creation mode, and a handle used only as it was opened.
#[test]
fn open_options_as_std_has_them() {
    on_each_backend(|server, sftp| {
        let root = server.sftp_root();
        let remote = |name: &str| server.remote_path(name);
        let o = OpenOptions::new;

        // create_new: once, then AlreadyExists (OpenSSH says "failure").
        let new = o().write(true).create_new(true).mode(0o600);
        let mut file = sftp.open_with(remote("lock"), &new).expect("create_new");
        file.write_all(b"job 42\n").expect("write");
        file.close().expect("close");
        assert_eq!(fs::read(root.join("lock")).expect("lock"), b"job 42\n");
        assert_eq!(mode_of(&root.join("lock")), 0o600);
        let err = sftp.open_with(remote("lock"), &new).expect_err("exists");
        assert_error(&err, ErrorKind::AlreadyExists, "lock");

        // What std refuses is refused here, naming the option, and
        // nothing reaches the server.
        for (bad, words) in [
            (o(), "none of read, write and append"),
            (o().read(true).truncate(true), "truncate needs write"),
            (o().read(true).create(true), "create needs write or append"),
            (o().read(true).create_new(true), "create_new needs write"),
            (
                o().append(true).truncate(true),
                "truncate cannot go with append",
            ),
        ] {
            let err = sftp.open_with(remote("never"), &bad).expect_err("refused");
            assert_error(&err, ErrorKind::InvalidInput, words);
        }
        assert!(!root.join("never").exists());

        // Without create, a missing file is NotFound.
        let err = sftp
            .open_with(remote("missing"), &o().write(true))
            .expect_err("missing");
        assert_error(&err, ErrorKind::NotFound, "missing");

        // Read and write through one handle: one position, writes seen by
        // reads after them, more data than the requests in flight hold.
        let data = random_bytes(3_000_017, 1);
        let rw = o().read(true).write(true).create(true);
        let mut file = sftp.open_with(remote("rw.bin"), &rw).expect("read+write");
        file.write_all(&data).expect("write");
        assert_eq!(file.stream_position().expect("position"), data.len() as u64);
        assert_eq!(file.seek(SeekFrom::Start(0)).expect("seek"), 0);
        let mut back = Vec::new();
        file.read_to_end(&mut back).expect("read back");
        assert!(back == data, "what was written is read back");
        file.seek(SeekFrom::Start(10)).expect("seek");
        file.write_all(b"0123456789").expect("overwrite");
        assert_eq!(file.stream_position().expect("position"), 20);
        let mut next = [0u8; 5];
        file.read_exact(&mut next).expect("read after write");
        assert_eq!(next, data[20..25]);
        assert_eq!(
            file.seek(SeekFrom::End(-3)).expect("seek end"),
            data.len() as u64 - 3
        );
        let mut tail = Vec::new();
        file.read_to_end(&mut tail).expect("tail");
        assert_eq!(tail, data[data.len() - 3..]);
        assert_eq!(
            file.metadata().expect("fstat").size(),
            Some(data.len() as u64)
        );
        file.close().expect("close");
        let mut expected = data.clone();
        expected[10..20].copy_from_slice(b"0123456789");
        assert!(fs::read(root.join("rw.bin")).expect("local") == expected);

        // Read, then append: writes go to the end; reads start at 0.
        fs::write(root.join("log.txt"), "one\n").expect("log");
        let mut file = sftp
            .open_with(remote("log.txt"), &o().read(true).append(true))
            .expect("read+append");
        let mut first = String::new();
        file.read_line(&mut first).expect("read line");
        assert_eq!(first, "one\n");
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.write_all(b"two\n").expect("append");
        file.seek(SeekFrom::Start(0)).expect("seek");
        let mut all = String::new();
        file.read_to_string(&mut all).expect("read all");
        assert_eq!(all, "one\ntwo\n");
        file.close().expect("close");

        // truncate empties an existing file; its mode stays its own.
        fs::set_permissions(root.join("log.txt"), fs::Permissions::from_mode(0o640))
            .expect("chmod");
        let mut file = sftp
            .open_with(
                remote("log.txt"),
                &o().write(true).truncate(true).mode(0o600),
            )
            .expect("truncate");
        assert_eq!(file.metadata().expect("fstat").size(), Some(0));
        file.write_all(b"new").expect("write");
        file.close().expect("close");
        assert_eq!(fs::read(root.join("log.txt")).expect("log"), b"new");
        assert_eq!(mode_of(&root.join("log.txt")), 0o640);

        // A handle does only what it was opened for, and says which
        // option was missing.
        let mut file = sftp
            .open_with(remote("log.txt"), &o().read(true))
            .expect("read only");
        let err = file.write(b"x").expect_err("not for writing");
        assert!(err.to_string().contains("OpenOptions::write"), "{err}");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("still reads");
        assert_eq!(text, "new");
        let mut file = sftp
            .open_with(remote("log.txt"), &o().write(true))
            .expect("write only");
        let err = file.read(&mut [0u8; 4]).expect_err("not for reading");
        assert!(err.to_string().contains("OpenOptions::read"), "{err}");
        file.write_all(b"N").expect("still writes");
        file.close().expect("close");
        assert_eq!(fs::read(root.join("log.txt")).expect("log"), b"New");

        // open, create and append are the same path with fixed options.
        let mut w = sftp.create(remote("w.txt")).expect("create");
        w.write_all(b"a").expect("write");
        w.close().expect("close");
        let mut w = sftp.append(remote("w.txt")).expect("append");
        w.write_all(b"b").expect("write");
        w.close().expect("close");
        let mut r = sftp.open(remote("w.txt")).expect("open");
        let mut text = String::new();
        r.read_to_string(&mut text).expect("read");
        assert_eq!(text, "ab");
    });
}

/// Whole small files, lengths, times, links, `Permissions` and folders
/// with a mode.
#[test]
fn whole_files_lengths_times_links_and_permissions() {
    on_each_backend(|server, sftp| {
        let root = server.sftp_root();
        let remote = |name: &str| server.remote_path(name);

        // read, write, read_to_string, bounded.
        sftp.write(remote("manifest.txt"), "a.csv\nb.csv\n")
            .expect("write");
        assert_eq!(
            sftp.read_to_string(remote("manifest.txt"), 100)
                .expect("text"),
            "a.csv\nb.csv\n"
        );
        assert_eq!(
            sftp.read(remote("manifest.txt"), 12).expect("at the bound"),
            b"a.csv\nb.csv\n"
        );
        let err = sftp
            .read_to_string(remote("manifest.txt"), 11)
            .expect_err("over the bound");
        assert_error(&err, ErrorKind::LimitExceeded, "more than 11 bytes");
        fs::write(root.join("latin1.txt"), b"caf\xe9").expect("latin-1");
        let err = sftp
            .read_to_string(remote("latin1.txt"), 100)
            .expect_err("not UTF-8");
        assert_error(&err, ErrorKind::Other, "not valid UTF-8 text (at byte 3)");
        assert_eq!(
            sftp.read(remote("latin1.txt"), 100).expect("bytes"),
            b"caf\xe9"
        );

        // set_len both ways; size() says what the server said.
        sftp.set_len(remote("manifest.txt"), 5).expect("shrink");
        assert_eq!(fs::read(root.join("manifest.txt")).expect("read"), b"a.csv");
        sftp.set_len(remote("manifest.txt"), 8).expect("grow");
        assert_eq!(
            sftp.metadata(remote("manifest.txt")).expect("stat").size(),
            Some(8)
        );

        // set_times, whole seconds.
        let (atime, mtime) = (
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            UNIX_EPOCH + Duration::from_secs(1_600_000_000),
        );
        sftp.set_times(remote("manifest.txt"), atime, mtime)
            .expect("set_times");
        let meta = sftp.metadata(remote("manifest.txt")).expect("stat");
        assert_eq!(meta.modified(), Some(mtime));
        assert_eq!(meta.accessed(), Some(atime));

        // Links, and the canonical path through one.
        sftp.symlink("manifest.txt", remote("link"))
            .expect("symlink");
        assert_eq!(
            sftp.read_link(remote("link"))
                .expect("read_link")
                .as_bytes(),
            b"manifest.txt"
        );
        assert!(sftp
            .symlink_metadata(remote("link"))
            .expect("lstat")
            .is_symlink());
        let canonical = fs::canonicalize(root.join("manifest.txt")).expect("local");
        assert_eq!(
            sftp.canonicalize(remote("link"))
                .expect("canonicalize")
                .as_bytes(),
            canonical.to_str().expect("utf-8").as_bytes()
        );
        assert!(sftp.supports_hard_link());
        sftp.hard_link(remote("manifest.txt"), remote("hard"))
            .expect("hard_link");
        assert_eq!(
            fs::metadata(root.join("hard")).expect("hard").ino(),
            fs::metadata(root.join("manifest.txt")).expect("file").ino()
        );

        // Permissions: read, changed as std's, set; a plain mode still
        // works.
        sftp.set_permissions(remote("manifest.txt"), 0o640)
            .expect("chmod");
        let mut perms = sftp
            .metadata(remote("manifest.txt"))
            .expect("stat")
            .perms()
            .expect("the server says");
        assert_eq!(perms.mode(), 0o640);
        assert!(!perms.readonly());
        perms.set_readonly(true);
        sftp.set_permissions(remote("manifest.txt"), perms)
            .expect("read-only");
        assert_eq!(mode_of(&root.join("manifest.txt")), 0o440);
        let meta = sftp.metadata(remote("manifest.txt")).expect("stat");
        assert!(meta.perms().expect("perms").readonly());
        assert_eq!(meta.permissions(), Some(0o440));
        sftp.set_permissions(remote("manifest.txt"), Permissions::from_mode(0o644))
            .expect("chmod back");

        // create_dir_with_mode: the bits asked for, less the server's
        // umask (which leaves an owner-only mode alone).
        sftp.create_dir_with_mode(remote("private"), 0o700)
            .expect("mkdir 700");
        assert_eq!(mode_of(&root.join("private")), 0o700);
        sftp.create_dir_with_mode(remote("shared"), 0o750)
            .expect("mkdir 750");
        let mode = mode_of(&root.join("shared"));
        assert_eq!(mode & !0o750, 0, "{mode:o}");
        assert_eq!(mode & 0o700, 0o700, "{mode:o}");
        let err = sftp
            .create_dir_with_mode(remote("private"), 0o700)
            .expect_err("exists");
        assert_error(&err, ErrorKind::AlreadyExists, "private");

        // The streaming listing.
        let mut names: Vec<String> = sftp
            .read_dir_iter(server.remote_path(""))
            .expect("iter")
            .map(|e| e.expect("entry").name().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "hard",
                "latin1.txt",
                "link",
                "manifest.txt",
                "private",
                "shared"
            ]
        );
    });
}

/// `stat -f` of a local path: (fundamental block size, total blocks,
/// maximum name length), as coreutils prints them.
fn local_statfs(path: &Path) -> (u64, u64, u64) {
    let out = Command::new("stat")
        .args(["-f", "-c", "%S %b %l"])
        .arg(path)
        .output()
        .expect("stat -f");
    assert!(out.status.success(), "stat -f: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<u64> = text
        .split_whitespace()
        .map(|f| f.parse().expect("number"))
        .collect();
    (fields[0], fields[1], fields[2])
}

/// `statvfs@openssh.com`: the same file system as `stat -f` sees, and a
/// missing path is NotFound.
#[test]
fn statvfs_reports_the_file_system() {
    on_each_backend(|server, sftp| {
        assert!(sftp.supports_statvfs());
        let stats = sftp.statvfs(server.remote_path("")).expect("statvfs");
        let (frsize, blocks, name_max) = local_statfs(server.sftp_root());
        assert_eq!(stats.fragment_size(), frsize, "{stats:?}");
        assert_eq!(stats.blocks(), blocks, "{stats:?}");
        assert_eq!(stats.name_max(), name_max, "{stats:?}");
        assert!(stats.block_size() > 0);
        assert!(stats.available_bytes() <= stats.free_bytes(), "{stats:?}");
        assert!(stats.free_bytes() <= stats.total_bytes(), "{stats:?}");
        assert_eq!(stats.total_bytes(), frsize * blocks);
        assert!(!stats.is_read_only());
        let err = sftp
            .statvfs(server.remote_path("missing/folder"))
            .expect_err("missing");
        assert_error(&err, ErrorKind::NotFound, "missing/folder");
    });
}

/// `copy-data`: a new file with the source's mode, an existing longer one
/// cut to length, a hard link of the source left whole, and the refusals
/// (same path, a folder, a missing source or folder) touching nothing.
#[test]
fn copy_on_the_server() {
    on_each_backend(|server, sftp| {
        let root = server.sftp_root();
        let remote = |name: &str| server.remote_path(name);
        assert!(sftp.supports_copy());
        let data = random_bytes(3_000_017, 2);
        fs::write(root.join("src.bin"), &data).expect("source");
        fs::set_permissions(root.join("src.bin"), fs::Permissions::from_mode(0o640))
            .expect("chmod");

        let copied = sftp
            .copy(remote("src.bin"), remote("new.bin"))
            .expect("copy");
        assert_eq!(copied, data.len() as u64);
        assert!(fs::read(root.join("new.bin")).expect("copy") == data);
        let mode = mode_of(&root.join("new.bin"));
        assert_eq!(mode & !0o640, 0, "{mode:o}");
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");

        fs::write(root.join("longer.bin"), random_bytes(5_000_000, 3)).expect("longer");
        sftp.copy(remote("src.bin"), remote("longer.bin"))
            .expect("copy over");
        assert!(fs::read(root.join("longer.bin")).expect("copy") == data);

        // The destination is the source under another name: nothing lost.
        fs::hard_link(root.join("src.bin"), root.join("alias.bin")).expect("link");
        sftp.copy(remote("src.bin"), remote("alias.bin"))
            .expect("copy onto itself");
        assert!(fs::read(root.join("src.bin")).expect("source") == data);

        let err = sftp
            .copy(remote("src.bin"), remote("src.bin"))
            .expect_err("same path");
        assert_error(&err, ErrorKind::InvalidInput, "same path");
        fs::create_dir(root.join("dir")).expect("dir");
        let err = sftp
            .copy(remote("dir"), remote("from-dir"))
            .expect_err("a folder");
        assert_error(&err, ErrorKind::InvalidInput, "not a regular file");
        let err = sftp
            .copy(remote("nothing.bin"), remote("from-nothing"))
            .expect_err("no source");
        assert_error(&err, ErrorKind::NotFound, "nothing.bin");
        let err = sftp
            .copy(remote("src.bin"), remote("no/such/dir.bin"))
            .expect_err("no folder");
        assert_error(&err, ErrorKind::NotFound, "no/such/dir.bin");
        for name in ["from-dir", "from-nothing"] {
            assert!(!root.join(name).exists(), "{name} was created");
        }
        assert!(fs::read(root.join("src.bin")).expect("source") == data);
    });
}

/// A server without OpenSSH's extensions: each operation that needs one
/// is `Unsupported` naming it, and nothing is touched.
#[test]
fn without_the_extensions_each_refusal_names_its_extension() {
    let (server, sftp) = embedded(TestServer::builder().plain_sftp(true));
    let root = server.sftp_root();
    let remote = |name: &str| server.remote_path(name);
    fs::write(root.join("a.txt"), "a").expect("file");
    assert!(!sftp.supports_statvfs());
    assert!(!sftp.supports_copy());
    assert!(!sftp.supports_hard_link());
    assert!(!sftp.supports_limits());
    assert!(!sftp.supports_fsync());
    assert!(!sftp.supports_posix_rename());
    let err = sftp.statvfs(remote("")).expect_err("statvfs");
    assert_error(&err, ErrorKind::Unsupported, "statvfs@openssh.com");
    let err = sftp
        .copy(remote("a.txt"), remote("b.txt"))
        .expect_err("copy");
    assert_error(&err, ErrorKind::Unsupported, "copy-data");
    let err = sftp
        .hard_link(remote("a.txt"), remote("c.txt"))
        .expect_err("hard_link");
    assert_error(&err, ErrorKind::Unsupported, "hardlink@openssh.com");
    assert_eq!(common::names_in(root), ["a.txt"]);
    // OpenOptions need no extension.
    let mut file = sftp
        .open_with(remote("a.txt"), &OpenOptions::new().read(true).write(true))
        .expect("read+write");
    file.seek(SeekFrom::End(0)).expect("seek");
    file.write_all(b"b").expect("write");
    file.close().expect("close");
    assert_eq!(fs::read(root.join("a.txt")).expect("a"), b"ab");
}

/// The extensions the crate uses, as OpenSSH's and the embedded server
/// advertise them.
#[test]
fn supports_says_what_the_server_offers() {
    on_each_backend(|_, sftp| {
        assert!(sftp.supports_posix_rename());
        assert!(sftp.supports_fsync());
        assert!(sftp.supports_hard_link());
        assert!(sftp.supports_limits());
        assert!(sftp.supports_statvfs());
        assert!(sftp.supports_copy());
    });
}
