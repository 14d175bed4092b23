//! Test support: data helpers for the integration tests (client keys made
//! with `ssh-keygen`, bytes, files, small proxies), and the glue that starts
//! the testkit's servers or skips loudly.
//!
//! The servers themselves are `etl_ssh::testkit`'s: [`Sshd`] (OpenSSH's real
//! `sshd`) and `TestServer` (OpenSSH or the embedded server). Nothing here
//! launches sshd, adds an account or sets a password on the machine. Every
//! folder made here lives under the testkit's per-process temporary root
//! (`etl_ssh::testkit::temp_dir`), removed even when the test process is
//! killed.
//!
//! Include with `mod common;` from an integration test file (at the crate
//! root, so that `sshd_or_skip!` resolves).

// Each integration test binary includes this module with `mod common;` and
// uses only a subset of it, so unused items are expected. The items are `pub`
// for readability, but the module is private to each test binary.
#![allow(dead_code, unreachable_pub)]

use std::fs::{self, File, Permissions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};

// Not every test binary names all three.
#[allow(unused_imports)]
pub use etl_ssh::testkit::{HostKeyType, Sshd, SshdBuilder};
use tempfile::TempDir;

/// Loopback address every test server listens on.
pub const HOST: &str = "127.0.0.1";

/// Comment put on generated client keys.
pub const CLIENT_KEY_COMMENT: &str = "etl-ssh-test";

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

/// True when running under CI (env `CI` is exactly "true").
pub fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// Writes a line straight to the process stderr, bypassing libtest's output
/// capture, so SKIPPED messages are visible in a normal `cargo test` run.
pub fn loud(msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{msg}");
}

/// True when the tests run as root (uid 0).
pub fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// Name of the user running the tests (`id -un`).
pub fn current_user() -> String {
    let out = run_ok(Command::new("id").arg("-un"), "id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn find_program(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        // sshd refuses to re-exec itself unless started with an absolute path.
        .and_then(|p| {
            if p.is_absolute() {
                Some(p)
            } else {
                fs::canonicalize(p).ok()
            }
        })
}

/// Absolute path of `ssh-keygen` (panics when missing: it ships with sshd).
pub fn ssh_keygen_path() -> PathBuf {
    find_program("ssh-keygen", &["/usr/bin", "/usr/local/bin"])
        .expect("ssh-keygen not found: install openssh-client")
}

/// Whether `sshd` is installed: under CI a missing sshd is a hard failure, and
/// elsewhere a loud SKIPPED line is printed before returning `None`.
pub fn require_sshd() -> Option<()> {
    match Sshd::is_available() {
        true => Some(()),
        false if ci() => panic!("sshd not found: install openssh-server (.ci/run does)"),
        false => {
            loud(
                "SKIPPED: sshd not found (install openssh-server to run the \
                 sshd integration tests; under CI=true this is an error)",
            );
            None
        }
    }
}

/// Starts a test sshd, or returns from the calling test (after a loud
/// SKIPPED line) when sshd is not installed, or the builder asks for
/// passwords where they cannot be isolated, and not running under CI.
///
/// `let server = sshd_or_skip!();` starts a default server;
/// `let server = sshd_or_skip!(Sshd::builder().password_authentication(true));`
/// starts a configured one. The calling test must return `()`.
#[macro_export]
macro_rules! sshd_or_skip {
    () => {
        $crate::sshd_or_skip!($crate::common::Sshd::builder())
    };
    ($builder:expr) => {
        match $crate::common::StartSshd::start_if_available($builder) {
            ::std::option::Option::Some(server) => server,
            ::std::option::Option::None => return,
        }
    };
}

/// Starting a testkit [`Sshd`] from a test: skip loudly (or fail under CI)
/// where it cannot run, panic with the cause on any other failure.
pub trait StartSshd {
    /// The server; `None` after a loud SKIPPED line when sshd is missing,
    /// or when the builder asks for password or keyboard-interactive
    /// authentication and this machine cannot isolate them (not root, no
    /// `unshare`). Under CI=true both are failures.
    fn start_if_available(self) -> Option<Sshd>;

    /// The server, or a panic with the cause.
    fn start_or_panic(self) -> Sshd;
}

impl StartSshd for SshdBuilder {
    fn start_if_available(self) -> Option<Sshd> {
        require_sshd()?;
        match self.start() {
            Ok(server) => Some(server),
            Err(e) if e.kind() == etl_ssh::ErrorKind::Unsupported && !ci() => {
                loud(&format!("SKIPPED: {e} (under CI=true this is an error)"));
                None
            }
            Err(e) => panic!("start the test sshd: {e}"),
        }
    }

    fn start_or_panic(self) -> Sshd {
        self.start()
            .unwrap_or_else(|e| panic!("start the test sshd: {e}"))
    }
}

/// Whether OpenSSH password tests can run here (see
/// `Sshd::check_passwords_available`): false after a loud SKIPPED line,
/// a panic under CI=true.
pub fn openssh_passwords_available() -> bool {
    match Sshd::check_passwords_available() {
        Ok(()) => true,
        Err(e) if ci() => panic!("{e} (CI=true: the OpenSSH password tests must run)"),
        Err(e) => {
            loud(&format!("SKIPPED: {e}"));
            false
        }
    }
}

/// A fresh ed25519 client key (OpenSSH format, no passphrase) and a test
/// sshd from `builder` that accepts it. `None` as
/// [`StartSshd::start_if_available`].
pub fn sshd_with_key(builder: SshdBuilder) -> Option<(Sshd, ClientKey)> {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let server = builder
        .authorized_key(&key.public_line)
        .start_if_available()?;
    Some((server, key))
}

/// Answers keyboard-interactive `prompts`: `password` to each hidden one,
/// an empty line to each shown one.
pub fn answer_password(
    prompts: &[etl_ssh::AuthPrompt],
    password: &secrecy::SecretString,
) -> Vec<secrecy::SecretString> {
    prompts
        .iter()
        .map(|p| {
            if p.echo() {
                secrecy::SecretString::from("")
            } else {
                password.clone()
            }
        })
        .collect()
}

/// A bastion and a target sshd that both accept one fresh client key;
/// `None` as [`sshd_with_key`].
pub fn bastion_and_target() -> Option<(Sshd, Sshd, ClientKey)> {
    let (bastion, key) = sshd_with_key(Sshd::builder())?;
    let target = Sshd::builder()
        .authorized_key(&key.public_line)
        .start_or_panic();
    Some((bastion, target, key))
}

/// A `known_hosts` file in `dir` pinning the ed25519 key of each of
/// `servers`.
pub fn known_hosts_of(dir: &Path, servers: &[&Sshd]) -> PathBuf {
    let path = dir.join("known_hosts");
    let lines: String = servers
        .iter()
        .map(|s| format!("{}\n", s.known_hosts_line(HostKeyType::Ed25519)))
        .collect();
    fs::write(&path, lines).expect("known_hosts");
    path
}

/// A test sshd with `config` added (see [`sshd_with_key`]) and an SFTP
/// session on it; `None` where sshd is not installed (outside CI).
pub fn openssh_sftp(config: &str) -> Option<(Sshd, etl_ssh::SftpSession)> {
    let (sshd, key) = sshd_with_key(Sshd::builder().extra_config(config))?;
    let sftp = key.connect_to(&sshd).sftp().expect("sftp");
    Some((sshd, sftp))
}

// ---------------------------------------------------------------------------
// Log capture
// ---------------------------------------------------------------------------

static RECORDS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        RECORDS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

static LOGGER: Capture = Capture;

/// Captures every log record of this test binary from now on, at every
/// level, as `LEVEL target message` lines (installed once per binary).
pub fn capture_logs() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);
}

/// The records captured so far (see [`capture_logs`]).
pub fn log_records() -> Vec<String> {
    RECORDS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

// ---------------------------------------------------------------------------
// Small process / file helpers
// ---------------------------------------------------------------------------

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn read_to_string_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Public key line of a `.pub` file, without the trailing newline.
fn read_pub_line(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim_end()
        .to_string()
}

/// `SHA256:...` fingerprint of a public key file, as `ssh-keygen -lf` prints it.
pub fn fingerprint_of(pub_path: &Path) -> String {
    let out = run_ok(
        Command::new(ssh_keygen_path())
            .arg("-l")
            .arg("-E")
            .arg("sha256")
            .arg("-f")
            .arg(pub_path),
        "ssh-keygen -lf",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .filter(|f| f.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("unexpected ssh-keygen -lf output: {text}"))
        .to_string()
}

fn keygen_type_args(ty: &str) -> &'static [&'static str] {
    match ty {
        "ed25519" => &["-t", "ed25519"],
        "ecdsa" => &["-t", "ecdsa", "-b", "256"],
        "rsa" => &["-t", "rsa", "-b", "3072"],
        other => panic!("unknown key type {other:?} (expected ed25519, ecdsa or rsa)"),
    }
}

// ---------------------------------------------------------------------------
// Client keys
// ---------------------------------------------------------------------------

/// Client key algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// ssh-ed25519.
    Ed25519,
    /// ecdsa-sha2-nistp256.
    Ecdsa,
    /// ssh-rsa, 3072 bits.
    Rsa3072,
}

impl KeyKind {
    /// The host key type name used by [`Sshd`] accessors ("ed25519", ...).
    pub fn type_name(self) -> &'static str {
        match self {
            KeyKind::Ed25519 => "ed25519",
            KeyKind::Ecdsa => "ecdsa",
            KeyKind::Rsa3072 => "rsa",
        }
    }

    /// Algorithm name at the start of the public key line.
    pub fn algorithm(self) -> &'static str {
        match self {
            KeyKind::Ed25519 => "ssh-ed25519",
            KeyKind::Ecdsa => "ecdsa-sha2-nistp256",
            KeyKind::Rsa3072 => "ssh-rsa",
        }
    }
}

/// Private key file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    /// "-----BEGIN OPENSSH PRIVATE KEY-----" (ssh-keygen's default).
    OpenSsh,
    /// `ssh-keygen -m PEM`: PKCS#1 "RSA PRIVATE KEY" for RSA, SEC1
    /// "EC PRIVATE KEY" for ECDSA. Not available for Ed25519.
    Pem,
    /// `ssh-keygen -m PKCS8`: "PRIVATE KEY" (or "ENCRYPTED PRIVATE KEY" with a
    /// passphrase). Not available for Ed25519.
    Pkcs8,
}

/// A freshly generated client key pair; the files live as long as any clone.
#[derive(Clone, Debug)]
pub struct ClientKey {
    /// Private key file (mode 0600).
    pub path: PathBuf,
    /// Public key file (`path` + ".pub").
    pub public_path: PathBuf,
    /// Public key line, e.g. "ssh-ed25519 AAAA... etl-ssh-test".
    pub public_line: String,
    /// "SHA256:..." fingerprint of the public key.
    pub fingerprint: String,
    /// Algorithm.
    pub kind: KeyKind,
    /// Private key file format.
    pub format: KeyFormat,
    /// Passphrase the private key is encrypted with, if any.
    pub passphrase: Option<String>,
    _dir: Arc<TempDir>,
}

impl ClientKey {
    /// `"ssh-ed25519 AAAA..."`: the public line without its comment.
    pub fn public_line_no_comment(&self) -> String {
        self.public_line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Contents of the private key file.
    pub fn private_pem(&self) -> String {
        fs::read_to_string(&self.path).expect("read private key")
    }

    /// A key credential for the user running the tests, with this key file.
    pub fn credential(&self) -> etl_ssh::Credential {
        etl_ssh::Credential::key_pair(current_user(), &self.path)
    }

    /// A session to `server` with this key, pinned to its host key.
    pub fn connect_to(&self, server: &Sshd) -> etl_ssh::Session {
        server
            .session_builder()
            .credential(self.credential())
            .connect()
            .expect("connect with the client key")
    }
}

/// Generates a fresh client key with ssh-keygen (`-C etl-ssh-test`).
///
/// Panics for Ed25519 with `Pem`/`Pkcs8` (ssh-keygen 9.2 silently writes the
/// OpenSSH format instead) and for passphrases shorter than 5 characters
/// (ssh-keygen refuses them).
pub fn client_key(kind: KeyKind, format: KeyFormat, passphrase: Option<&str>) -> ClientKey {
    if kind == KeyKind::Ed25519 && format != KeyFormat::OpenSsh {
        panic!("ssh-keygen cannot write Ed25519 keys as {format:?}; use KeyFormat::OpenSsh");
    }
    if let Some(p) = passphrase {
        assert!(
            p.len() >= 5,
            "ssh-keygen rejects passphrases shorter than 5 characters"
        );
    }
    let dir = etl_ssh::testkit::temp_dir("etl-ssh-key-").expect("create client key temp dir");
    let path = dir.path().join(format!("id_{}", kind.type_name()));
    let mut cmd = Command::new(ssh_keygen_path());
    cmd.arg("-q")
        .args(keygen_type_args(kind.type_name()))
        .arg("-N")
        .arg(passphrase.unwrap_or(""))
        .arg("-C")
        .arg(CLIENT_KEY_COMMENT);
    match format {
        KeyFormat::OpenSsh => {}
        KeyFormat::Pem => {
            cmd.args(["-m", "PEM"]);
        }
        KeyFormat::Pkcs8 => {
            cmd.args(["-m", "PKCS8"]);
        }
    }
    cmd.arg("-f").arg(&path);
    run_ok(&mut cmd, "ssh-keygen (client key)");
    set_mode(&path, 0o600);

    let first = fs::read_to_string(&path)
        .expect("read generated private key")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let expected = match (format, kind, passphrase.is_some()) {
        (KeyFormat::OpenSsh, _, _) => "-----BEGIN OPENSSH PRIVATE KEY-----",
        (KeyFormat::Pem, KeyKind::Rsa3072, _) => "-----BEGIN RSA PRIVATE KEY-----",
        (KeyFormat::Pem, _, _) => "-----BEGIN EC PRIVATE KEY-----",
        (KeyFormat::Pkcs8, _, false) => "-----BEGIN PRIVATE KEY-----",
        (KeyFormat::Pkcs8, _, true) => "-----BEGIN ENCRYPTED PRIVATE KEY-----",
    };
    assert_eq!(
        first, expected,
        "ssh-keygen wrote an unexpected key format for {kind:?} {format:?}"
    );

    let public_path = PathBuf::from(format!("{}.pub", path.display()));
    let public_line = read_pub_line(&public_path);
    let fingerprint = fingerprint_of(&public_path);
    ClientKey {
        path,
        public_path,
        public_line,
        fingerprint,
        kind,
        format,
        passphrase: passphrase.map(str::to_string),
        _dir: Arc::new(dir),
    }
}

// ---------------------------------------------------------------------------
// Test data, files and small in-test proxies
// ---------------------------------------------------------------------------

/// Deterministic, incompressible-looking bytes (splitmix64): the same for
/// the same `(len, seed)`, different for every other seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// SHA-256 of `bytes` (compared instead of the bytes, for short messages).
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

/// SHA-256 of a file's contents, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().to_vec()
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// The names in `dir` other than those in `keep`: temporary files left
/// behind by a transfer.
pub fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// Copies bytes both ways between `client` and `upstream` until both
/// directions have ended, passing each end on as a half-close. Blocks; the
/// small proxies of the tests decide what to accept and answer, then call it.
pub fn pipe(client: TcpStream, upstream: TcpStream) {
    let (mut from_client, mut to_upstream) = (
        client.try_clone().expect("clone client stream"),
        upstream.try_clone().expect("clone upstream stream"),
    );
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_upstream);
        let _ = to_upstream.shutdown(std::net::Shutdown::Write);
    });
    let (mut from_upstream, mut to_client) = (upstream, client);
    let _ = std::io::copy(&mut from_upstream, &mut to_client);
    let _ = to_client.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

// ---------------------------------------------------------------------------
// Both backends (etl_ssh::testkit)
// ---------------------------------------------------------------------------

/// The testkit backends the dual-backend tests run against: embedded
/// always, OpenSSH when `sshd` is found. Under CI=true a missing sshd
/// panics; elsewhere a loud line says that only the embedded backend runs.
pub fn backends() -> Vec<etl_ssh::testkit::Backend> {
    use etl_ssh::testkit::Backend;
    static NOTED: OnceLock<()> = OnceLock::new();
    if Backend::OpenSsh.is_available() {
        return vec![Backend::OpenSsh, Backend::Embedded];
    }
    if ci() {
        panic!("sshd not found: install openssh-server (.ci/run does); under CI=true both backends must run");
    }
    NOTED.get_or_init(|| {
        loud(
            "sshd not found: running the embedded backend only \
             (install openssh-server to run the tests against OpenSSH too)",
        );
    });
    vec![Backend::Embedded]
}

/// Starts a test server on `backend`, panicking with the cause on failure.
pub fn test_server(backend: etl_ssh::testkit::Backend) -> etl_ssh::testkit::TestServer {
    etl_ssh::testkit::TestServer::builder()
        .backend(backend)
        .start()
        .unwrap_or_else(|e| panic!("start {backend} test server: {e}"))
}

/// The embedded server as `builder` sets it up, and an SFTP session on it.
pub fn embedded(
    builder: etl_ssh::testkit::TestServerBuilder,
) -> (etl_ssh::testkit::TestServer, etl_ssh::SftpSession) {
    let server = builder
        .backend(etl_ssh::testkit::Backend::Embedded)
        .start()
        .expect("embedded server");
    let sftp = server.session().expect("session").sftp().expect("sftp");
    (server, sftp)
}
