//! A throwaway SSH/SFTP server for integration tests (feature `testkit`).
//!
//! [`TestServer::start`] runs a server on 127.0.0.1 on a free port, with a
//! host key and a client key it generates, and hands out everything a test
//! needs: the [`KnownHost`] pin, a key [`Credential`] that it accepts (and a
//! password one when asked for), the folder that SFTP sees and a connected
//! [`Session`]. It stops when dropped. [`Sshd`] is the OpenSSH server on its
//! own, for tests of what only OpenSSH has.
//!
//! ```
//! use etl_ssh::testkit::TestServer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestServer::start()?;
//! let session = server.session()?;
//! std::fs::write(server.sftp_root().join("orders.csv"), "id,qty\n1,2\n")?;
//! let meta = session.sftp()?.metadata(server.remote_path("orders.csv"))?;
//! assert_eq!(meta.len(), 11);
//! # Ok(())
//! # }
//! ```
//!
//! # Backends
//!
//! Two servers stand behind the one type ([`Backend`]):
//!
//! - **OpenSSH**: the real `sshd` binary (on `PATH`, or in `/usr/sbin` or
//!   `/usr/local/sbin`), started by [`Sshd`] with its own temporary config,
//!   keys (made with `ssh-keygen`) and log.
//! - **Embedded**: a pure-Rust server in this process, on
//!   [`russh`](https://docs.rs/russh), with an SFTP server on this crate's
//!   own packet code: SFTP version 3 with the `posix-rename@openssh.com`,
//!   `fsync@openssh.com`, `hardlink@openssh.com`, `limits@openssh.com`,
//!   `statvfs@openssh.com` and `copy-data` extensions, byte-exact names, exec through the local `sh -c`
//!   (stdin, stdout, stderr, exit code, or the signal that killed it), key
//!   authentication, and password authentication when asked for.
//!   Environment variables, PTYs and shells are refused, as a default
//!   OpenSSH config refuses environment variables.
//!
//! The embedded server can also misbehave as odd, broken or hostile
//! servers do, for tests of what a job does then (knobs on
//! [`TestServerBuilder`] from [`plain_sftp`](TestServerBuilder::plain_sftp)
//! on): no extensions, refused renames, names that are paths
//! ([`hostile_names`](TestServerBuilder::hostile_names)), a bottomless
//! tree, missing times, misreported sizes, text before SFTP (a login shell
//! that prints), replies to requests never made, a channel limit, one
//! channel per connection (tinysshd), a small window (dropbear).
//!
//! [`Backend::Auto`] (the default) picks OpenSSH when `sshd` is found, else
//! the embedded server; the environment variable `ETL_SSH_TESTKIT_BACKEND`
//! (`openssh` or `embedded`) overrides that choice for `Auto` only.
//!
//! # What each backend serves, and to whom
//!
//! Both listen on 127.0.0.1 only, so any local user can reach them while a
//! test runs; what they let in is kept to what the test asked for.
//!
//! | | OpenSSH ([`Sshd`]) | Embedded |
//! | --- | --- | --- |
//! | key login | as [`TestServer::user`] (default: the user running the tests, root included: `PermitRootLogin prohibit-password`) with the generated client key or an [`authorized_key`](TestServerBuilder::authorized_key); `AllowUsers` names only that user and the password user | as [`TestServer::user`] with those keys; any other user name is refused |
//! | password login | off unless [`password_authentication`](TestServerBuilder::password_authentication): then only for a test user of the server's own (below), through PAM; keyboard-interactive likewise ([`SshdBuilder::kbd_interactive_authentication`]) | off unless asked; then only for a random user name (`etlpw...`) with a random 32-character password made for that server |
//! | commands and SFTP run as | the user who logged in: the key user, or the password test user (an unprivileged random uid) | the test process, whoever logs in (root, when the tests run as root) |
//! | commands start in | that user's home (the password user's is the server's folder) | the SFTP root |
//!
//! No password is ever fixed or published: each server makes its own. The
//! testkit never adds an account to the machine nor sets a password on one.
//! For OpenSSH's password and keyboard-interactive authentication, sshd
//! runs in a private mount namespace (`unshare --mount --propagation
//! private`) in which temporary `/etc/passwd` and `/etc/shadow` files are
//! bind-mounted over the real ones: passwd is the real one plus the test
//! user (a random `etlpw...` name, an unused uid, home the server's folder,
//! shell `/bin/sh`), shadow holds that user's line alone, with a SHA-512
//! crypt hash (`openssl passwd -6`) of the server's random password and
//! the aging fields of [`ShadowAging`]. Outside that namespace nothing
//! changes, and it ends with sshd. This needs root, `unshare` and `mount`
//! (util-linux) and `openssl`; elsewhere starting such a server fails with
//! [`ErrorKind::Unsupported`](crate::ErrorKind)
//! ([`Sshd::check_passwords_available`] tells beforehand), and password
//! authentication is tested on the embedded server only.
//!
//! Nothing outlives the test process: sshd runs under a watchdog `sh`
//! whose standard input is a pipe from the test process; when the pipe
//! closes (a normal stop, or the test process dying, even by `SIGKILL`),
//! the watchdog stops sshd by its pid and removes its folder. Every folder
//! the testkit makes (keys, configs, logs, SFTP roots, [`temp_dir`]) lives
//! under one temporary root per process, `$TMPDIR/etl-ssh-XXXXXX`, which
//! another watchdog removes when the process ends. Private keys are
//! created 0600.
//!
//! # Paths
//!
//! - [`TestServer::sftp_root`] is a fresh temporary folder. Both backends
//!   serve the real file system as the logged-in user sees it, and start
//!   relative paths in that folder: `"inbox/a.csv"` and
//!   [`TestServer::remote_path`]`("inbox/a.csv")` (its absolute form) name
//!   the same file as `sftp_root().join("inbox/a.csv")`, on either backend.
//!   Neither backend confines the client to the folder.
//! - Use absolute paths ([`TestServer::remote_path`]) in commands to stay
//!   backend-neutral.
//!
//! # Faults
//!
//! Clients reach either backend through a loopback TCP proxy that can
//! misbehave on request, for tests of what a job does when the network or
//! the partner does: [`TestServer::close_after`] (the connection drops
//! mid-transfer), [`TestServer::stall_after`] (the peer goes silent),
//! [`TestServer::slow_link`] (latency and a bandwidth cap) and
//! [`TestServer::heal`]; [`TestServer::refuse_auth`] makes the server itself
//! refuse every authentication.
//!
//! ```
//! use std::time::Duration;
//! use etl_ssh::testkit::TestServer;
//! use etl_ssh::ErrorKind;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestServer::start()?;
//! let local = server.sftp_root().join("big.bin");
//! std::fs::write(&local, vec![7u8; 4 << 20])?;
//!
//! let sftp = server.session()?.sftp()?;
//! server.close_after(256 * 1024); // the link drops a quarter MiB from now
//! let err = sftp.upload(&local, server.remote_path("copy.bin")).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Disconnected);
//! server.heal();
//!
//! // A silent peer: the session's timeout ends the wait.
//! let session = server.session_builder().timeout(Duration::from_secs(2)).connect()?;
//! let sftp = session.sftp()?;
//! server.stall_after(0);
//! let err = sftp.metadata(server.remote_path("big.bin")).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Timeout);
//! # Ok(())
//! # }
//! ```

mod embedded;
mod keys;
mod passwd;
mod process;
mod proxy;
mod sftp;
mod sshd;

pub use passwd::ShadowAging;
pub use sshd::{Sshd, SshdBuilder};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use secrecy::{ExposeSecret, SecretString};

use crate::{Credential, Error, KnownHost, Result, Session, SessionBuilder};

/// A temporary folder named `prefix` + random characters, under one
/// temporary root per process (`$TMPDIR/etl-ssh-XXXXXX`, mode 0755). It is
/// removed when dropped, and with the root when this process ends, even
/// when it is killed: a watchdog process removes the root then. For the
/// keys and files of tests that must not outlive them.
///
/// # Errors
///
/// [`ErrorKind::Io`](crate::ErrorKind) when the root, its watchdog or the
/// folder cannot be made.
pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    process::temp_dir(prefix).map_err(io_err("create a testkit temporary folder"))
}

/// The environment variable that forces a backend for [`Backend::Auto`].
pub const BACKEND_ENV: &str = "ETL_SSH_TESTKIT_BACKEND";

/// Which server a [`TestServer`] runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// OpenSSH when `sshd` is found, else embedded (see [`BACKEND_ENV`]).
    #[default]
    Auto,
    /// The real `sshd` binary, as a child process.
    OpenSsh,
    /// The pure-Rust server, in this process.
    Embedded,
}

impl Backend {
    /// True when this backend can run here: `sshd` is found for
    /// [`Backend::OpenSsh`]; always for the others.
    pub fn is_available(self) -> bool {
        match self {
            Backend::OpenSsh => sshd::sshd_path().is_some(),
            Backend::Auto | Backend::Embedded => true,
        }
    }

    /// What [`Backend::Auto`] stands for here; the others stand for themselves.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind) when [`BACKEND_ENV`]
    /// holds something other than `openssh` or `embedded`.
    pub fn resolve(self) -> Result<Backend> {
        if self != Backend::Auto {
            return Ok(self);
        }
        match std::env::var(BACKEND_ENV).as_deref() {
            Ok("openssh") => Ok(Backend::OpenSsh),
            Ok("embedded") => Ok(Backend::Embedded),
            Ok("") | Err(_) if Backend::OpenSsh.is_available() => Ok(Backend::OpenSsh),
            Ok("") | Err(_) => Ok(Backend::Embedded),
            Ok(_) => Err(Error::invalid(
                "testkit backend",
                format!("{BACKEND_ENV} must be `openssh` or `embedded`"),
            )),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::OpenSsh => "openssh",
            Backend::Embedded => "embedded",
        })
    }
}

/// What the embedded server does with a login past
/// [`TestServerBuilder::login_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginLimit {
    /// The new login is authenticated, then its first channel ends the
    /// connection with "Too many logins for this user" (as `pam_limits`'
    /// `maxlogins` does with sshd).
    RefuseNew,
    /// The oldest login is disconnected ("logged out: another login of
    /// this user arrived") and the new one goes on, as some appliances
    /// and gateways do.
    KickOldest,
}

/// A host key type for [`TestServerBuilder::host_key_types`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostKeyType {
    /// `ssh-ed25519`.
    Ed25519,
    /// `ecdsa-sha2-nistp256`.
    Ecdsa,
    /// `ssh-rsa` (3072 bits; signatures with SHA-2). Generating it takes
    /// seconds in an unoptimised build.
    Rsa,
}

impl HostKeyType {
    /// Every type, in the order [`SshdBuilder`] generates them by default.
    pub const ALL: [HostKeyType; 3] = [HostKeyType::Ed25519, HostKeyType::Ecdsa, HostKeyType::Rsa];
}

/// Configures a [`TestServer`]. Obtain with [`TestServer::builder`].
#[derive(Clone, Debug)]
pub struct TestServerBuilder {
    backend: Backend,
    user: Option<String>,
    password_authentication: bool,
    host_key_types: Vec<HostKeyType>,
    authorized_keys: Vec<String>,
    quirks: sftp::Quirks,
    max_channels: Option<usize>,
    one_channel_per_connection: bool,
    window_size: Option<u32>,
    omit_exit_status: bool,
    login_limit: Option<(usize, LoginLimit)>,
}

impl Default for TestServerBuilder {
    fn default() -> Self {
        TestServerBuilder {
            backend: Backend::Auto,
            user: None,
            password_authentication: false,
            host_key_types: vec![HostKeyType::Ed25519],
            authorized_keys: Vec::new(),
            quirks: sftp::Quirks::default(),
            max_channels: None,
            one_channel_per_connection: false,
            window_size: None,
            omit_exit_status: false,
            login_limit: None,
        }
    }
}

impl TestServerBuilder {
    /// The server to run. Defaults to [`Backend::Auto`].
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The user the key credential logs in as. Defaults to the user running
    /// the tests (`id -un`); with OpenSSH it must be a real account.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Accept password authentication for a test user of the server's own,
    /// with a password generated for this server
    /// ([`TestServer::password_credential`]). Defaults to `false`: the
    /// server accepts keys only.
    ///
    /// OpenSSH checks it through PAM inside a private mount namespace in
    /// which the test user exists (root only; see the [module
    /// docs](self#what-each-backend-serves-and-to-whom)): where that is not
    /// available, [`start`](Self::start) fails with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind).
    pub fn password_authentication(mut self, on: bool) -> Self {
        self.password_authentication = on;
        self
    }

    /// The host keys to generate and offer, first one pinned by
    /// [`TestServer::known_host`]. Defaults to `[Ed25519]`; an empty list
    /// keeps the default.
    pub fn host_key_types(mut self, types: impl IntoIterator<Item = HostKeyType>) -> Self {
        let types: Vec<HostKeyType> = types.into_iter().collect();
        if !types.is_empty() {
            self.host_key_types = types;
        }
        self
    }

    /// Also accept this public key (an OpenSSH line, `ssh-ed25519 AAAA...`)
    /// for [`TestServer::user`], beside the generated one.
    pub fn authorized_key(mut self, public_key_line: impl AsRef<str>) -> Self {
        self.authorized_keys
            .push(public_key_line.as_ref().trim().to_string());
        self
    }

    /// Serve plain SFTP v3, without OpenSSH's extensions
    /// (`posix-rename@openssh.com`, `fsync@openssh.com`,
    /// `limits@openssh.com`, `hardlink@openssh.com`, `statvfs@openssh.com`,
    /// `copy-data`), as some appliances
    /// do: the client's fallbacks run. Like every knob below, only the
    /// embedded backend has it; [`start`](Self::start) refuses it with
    /// OpenSSH. Defaults to `false`.
    pub fn plain_sftp(mut self, plain: bool) -> Self {
        self.quirks.plain = plain;
        self
    }

    /// Advertise `posix-rename@openssh.com` but answer it with "operation
    /// unsupported", as some servers do. Defaults to `false`.
    pub fn refuse_posix_rename(mut self, refuse: bool) -> Self {
        self.quirks.refuse_posix_rename = refuse;
        self
    }

    /// Answer every plain SFTP RENAME with FAILURE, as some SFTP v3
    /// servers do (with [`plain_sftp`](Self::plain_sftp), nothing can be
    /// renamed). Defaults to `false`.
    pub fn refuse_rename(mut self, refuse: bool) -> Self {
        self.quirks.refuse_rename = refuse;
        self
    }

    /// A hostile server: every folder listing also holds these names (as
    /// folders), in the middle of the listing: `..`, `/etc`, `x/../..`, an
    /// empty name. A client must never treat them as paths. Defaults to
    /// none.
    pub fn hostile_names<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        self.quirks.extra_names = names.into_iter().map(|n| n.as_ref().to_vec()).collect();
        self
    }

    /// A hostile server: every folder holds a folder named `deeper`, which
    /// holds another, without end. A client must bound its walk. Defaults
    /// to `false`.
    pub fn bottomless_tree(mut self, on: bool) -> Self {
        self.quirks.bottomless = on;
        self
    }

    /// Leave the access and modification times out of every attribute
    /// reply, as some servers do. Defaults to `false`.
    pub fn omit_times(mut self, on: bool) -> Self {
        self.quirks.no_times = on;
        self
    }

    /// Report every file's size `delta` bytes off: a negative `delta`
    /// looks like a file that grew since it was listed, a positive one
    /// like a file that shrank. Defaults to 0.
    pub fn misreport_size(mut self, delta: i64) -> Self {
        self.quirks.size_delta = delta;
        self
    }

    /// Write `text` on the SFTP channel before the SFTP version, as a
    /// login shell whose startup files print does. Defaults to none.
    pub fn text_before_sftp(mut self, text: impl AsRef<[u8]>) -> Self {
        self.quirks.text_first = Some(text.as_ref().to_vec());
        self
    }

    /// A hostile server: after the SFTP version, send a reply to a request
    /// that was never made. Defaults to `false`.
    pub fn unsolicited_reply(mut self, on: bool) -> Self {
        self.quirks.unsolicited = on;
        self
    }

    /// The SFTP subsystem ends at once: it says `words` on the channel's
    /// stderr and exits with `status`, as one that fails at start does
    /// (OpenSSH's sshd drops a subsystem's stderr; other servers pass it
    /// on). Defaults to a working subsystem.
    pub fn sftp_fails_at_start(mut self, words: impl Into<String>, status: u32) -> Self {
        self.quirks.fail_start = Some((words.into(), status));
        self
    }

    /// Refuse a session channel when `max` are open on the connection, as
    /// OpenSSH's `MaxSessions` does. Defaults to no limit.
    pub fn max_channels(mut self, max: usize) -> Self {
        self.max_channels = Some(max);
        self
    }

    /// Allow one session channel per connection and end the connection
    /// when it closes, as tinysshd does. Defaults to `false`.
    pub fn one_channel_per_connection(mut self, on: bool) -> Self {
        self.one_channel_per_connection = on;
        self
    }

    /// The receive window the server grants on each channel, in bytes
    /// (dropbear's is 24 KiB): a client must write within it. Defaults to
    /// russh's 2 MiB.
    pub fn window_size(mut self, bytes: u32) -> Self {
        self.window_size = Some(bytes);
        self
    }

    /// A partner inbox whose watcher takes every file written in the SFTP
    /// root the moment its handle closes (MOVEit-, GoAnywhere- and
    /// gateway-style inboxes): the file moves into `picked-up/` below the
    /// root, under the name it had then. Files in folders below the root
    /// are left alone. Defaults to `false`.
    pub fn pickup_on_close(mut self, on: bool) -> Self {
        self.quirks.pickup_on_close = on;
        self
    }

    /// Refuse every rename (plain and `posix-rename@openssh.com`) with
    /// "permission denied", as inboxes that forbid renames do. Defaults to
    /// `false`.
    pub fn deny_rename(mut self, on: bool) -> Self {
        self.quirks.deny_rename = on;
        self
    }

    /// Refuse every REMOVE with "permission denied". Defaults to `false`.
    pub fn deny_remove(mut self, on: bool) -> Self {
        self.quirks.deny_remove = on;
        self
    }

    /// Refuse STAT, LSTAT and FSTAT with "permission denied", as some
    /// drop boxes do. Defaults to `false`.
    pub fn deny_stat(mut self, on: bool) -> Self {
        self.quirks.deny_stat = on;
        self
    }

    /// Refuse SETSTAT and FSETSTAT (times, mode) with "permission denied".
    /// Defaults to `false`.
    pub fn deny_setstat(mut self, on: bool) -> Self {
        self.quirks.deny_setstat = on;
        self
    }

    /// Allow one open file per SFTP session: a second OPEN fails while one
    /// is open, as some servers (IBM Sterling) do. Defaults to `false`.
    pub fn one_open_file(mut self, on: bool) -> Self {
        self.quirks.one_open_file = on;
        self
    }

    /// Accept writes only at the end of what was written, as
    /// object-storage-backed gateways do. Defaults to `false`.
    pub fn sequential_writes(mut self, on: bool) -> Self {
        self.quirks.sequential_writes = on;
        self
    }

    /// At most `max` logins of a user at once; one more is turned away or
    /// ends the oldest, as `policy` says. Defaults to no limit.
    pub fn login_limit(mut self, max: usize, policy: LoginLimit) -> Self {
        self.login_limit = Some((max.max(1), policy));
        self
    }

    /// Close every exec channel after the command's output and end of file
    /// without sending its exit status or signal, as some servers do (see
    /// [`ExitStatus::code`](crate::ExitStatus::code) for what the client
    /// reads then). Defaults to `false`.
    pub fn omit_exit_status(mut self, omit: bool) -> Self {
        self.omit_exit_status = omit;
        self
    }

    /// Whether a knob only the embedded backend has is set.
    fn needs_embedded(&self) -> Option<&'static str> {
        let q = &self.quirks;
        [
            (q.plain, "plain_sftp"),
            (q.refuse_posix_rename, "refuse_posix_rename"),
            (q.refuse_rename, "refuse_rename"),
            (!q.extra_names.is_empty(), "hostile_names"),
            (q.bottomless, "bottomless_tree"),
            (q.no_times, "omit_times"),
            (q.size_delta != 0, "misreport_size"),
            (q.text_first.is_some(), "text_before_sftp"),
            (q.unsolicited, "unsolicited_reply"),
            (q.fail_start.is_some(), "sftp_fails_at_start"),
            (q.pickup_on_close, "pickup_on_close"),
            (q.deny_rename, "deny_rename"),
            (q.deny_remove, "deny_remove"),
            (q.deny_stat, "deny_stat"),
            (q.deny_setstat, "deny_setstat"),
            (q.one_open_file, "one_open_file"),
            (q.sequential_writes, "sequential_writes"),
            (self.max_channels.is_some(), "max_channels"),
            (
                self.one_channel_per_connection,
                "one_channel_per_connection",
            ),
            (self.window_size.is_some(), "window_size"),
            (self.omit_exit_status, "omit_exit_status"),
            (self.login_limit.is_some(), "login_limit"),
        ]
        .into_iter()
        .find_map(|(on, name)| on.then_some(name))
    }

    /// Generates keys, starts the server and waits until it accepts
    /// connections.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind) when a temporary folder, a key or
    /// the server cannot be made or started (with sshd's log for OpenSSH);
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind) for an
    /// [`authorized_key`](Self::authorized_key) that does not parse, for
    /// [`Backend::OpenSsh`] when `sshd` is not found or with
    /// a knob only the embedded backend has ([`plain_sftp`](Self::plain_sftp)
    /// and those after it), or for a bad
    /// [`BACKEND_ENV`].
    pub fn start(self) -> Result<TestServer> {
        TestServer::start_with(self)
    }
}

enum Running {
    OpenSsh(Box<Sshd>),
    Embedded(embedded::Embedded, Arc<embedded::Shared>),
}

/// A host key the server offers.
#[derive(Clone, Debug)]
struct OfferedKey {
    kind: HostKeyType,
    line: String,
    fingerprint: String,
}

/// A running SSH/SFTP server on 127.0.0.1 for tests; stops when dropped.
///
/// See the [module docs](self) for the backends, paths and fault knobs.
pub struct TestServer {
    // Dropped in this order: the proxy first (closing every connection),
    // then the server, then its folder.
    proxy: proxy::Proxy,
    running: Running,
    backend: Backend,
    host_keys: Vec<OfferedKey>,
    user: String,
    key_path: PathBuf,
    key_public_line: String,
    /// The password credential, when password authentication is on.
    password: Option<(String, SecretString)>,
    sftp_root: PathBuf,
    dir: tempfile::TempDir,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("backend", &self.backend)
            .field("addr", &self.proxy.addr())
            .field("user", &self.user)
            .field("password_user", &self.password_user())
            .field("sftp_root", &self.sftp_root)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

fn current_user() -> String {
    Command::new("id")
        .arg("-un")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "etl".into())
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(format!("{what}: {e}"), e)
}

impl TestServer {
    /// Starts a server with the defaults: [`Backend::Auto`], an ed25519
    /// host key, a fresh ed25519 client key for the current user.
    ///
    /// # Errors
    ///
    /// As [`TestServerBuilder::start`].
    pub fn start() -> Result<TestServer> {
        TestServerBuilder::default().start()
    }

    /// A builder with the defaults.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    fn start_with(b: TestServerBuilder) -> Result<TestServer> {
        let backend = b.backend.resolve()?;
        if let (Backend::OpenSsh, Some(knob)) = (backend, b.needs_embedded()) {
            return Err(Error::invalid(
                "testkit backend",
                format!("only the embedded backend has the {knob} knob: use Backend::Embedded"),
            ));
        }
        let dir = process::temp_dir("etl-ssh-testkit-")
            .map_err(io_err("create the test server's temporary folder"))?;
        let sftp_root = dir.path().join("sftp");
        {
            use std::os::unix::fs::PermissionsExt;
            // Reached by the server's users (OpenSSH's password user too).
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod the test server's folder"))?;
            std::fs::create_dir(&sftp_root).map_err(io_err("create the SFTP root"))?;
            std::fs::set_permissions(&sftp_root, std::fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod the SFTP root"))?;
        }
        let sftp_root = sftp_root
            .canonicalize()
            .map_err(io_err("resolve the SFTP root"))?;

        let client = keys::generate(HostKeyType::Ed25519, "etl-ssh-testkit-client")
            .map_err(io_err("generate the client key"))?;
        let key_path = dir.path().join("id_ed25519");
        keys::write(&client, &key_path).map_err(io_err("write the client key"))?;

        let user = b.user.clone().unwrap_or_else(current_user);
        let mut authorized = vec![client.public_line.clone()];
        authorized.extend(b.authorized_keys.iter().cloned());

        let mut host_keys = Vec::new();
        let (running, password) = if backend == Backend::OpenSsh {
            let mut builder = Sshd::builder()
                .host_key_types(b.host_key_types.iter().copied())
                .user(&user)
                .password_authentication(b.password_authentication)
                .sftp_start_dir(&sftp_root)
                .log_level("VERBOSE");
            for line in &authorized {
                builder = builder.authorized_key(line);
            }
            let server = builder.start()?;
            for &kind in &b.host_key_types {
                if host_keys.iter().any(|k: &OfferedKey| k.kind == kind) {
                    continue;
                }
                host_keys.push(OfferedKey {
                    kind,
                    line: server.host_key_public_line(kind).to_string(),
                    fingerprint: server.host_key_fingerprint(kind).to_string(),
                });
            }
            let password = server
                .password_user()
                .zip(server.password())
                .map(|(u, p)| (u.to_string(), p.clone()));
            (Running::OpenSsh(Box::new(server)), password)
        } else {
            let mut host_private = Vec::new();
            for &kind in &b.host_key_types {
                if host_keys.iter().any(|k: &OfferedKey| k.kind == kind) {
                    continue;
                }
                let key = keys::generate(kind, "etl-ssh-testkit-host")
                    .map_err(io_err("generate a host key"))?;
                host_keys.push(OfferedKey {
                    kind,
                    line: key.public_line.clone(),
                    fingerprint: key.fingerprint.clone(),
                });
                host_private.push(key.private);
            }
            let mut keys = Vec::new();
            for line in &authorized {
                let key = russh::keys::PublicKey::from_openssh(line).map_err(|e| {
                    Error::invalid("authorized key", format!("{line:?} does not parse: {e}"))
                })?;
                keys.push(key);
            }
            let password = b.password_authentication.then(|| {
                let mut rng = rand::rng();
                let tail = Alphanumeric
                    .sample_string(&mut rng, 10)
                    .to_ascii_lowercase();
                (
                    format!("{}{tail}", passwd::USER_PREFIX),
                    SecretString::from(Alphanumeric.sample_string(&mut rng, 32)),
                )
            });
            let shared = Arc::new(embedded::Shared {
                key_user: user.clone(),
                keys,
                password: password
                    .as_ref()
                    .map(|(u, p)| (u.clone(), p.expose_secret().to_string())),
                refuse_auth: Default::default(),
                root: sftp_root.clone(),
                quirks: b.quirks.clone(),
                max_channels: b.max_channels,
                one_channel_per_connection: b.one_channel_per_connection,
                window_size: b.window_size,
                omit_exit_status: b.omit_exit_status,
                login_limit: b.login_limit,
                logins: Default::default(),
                next_login: Default::default(),
            });
            let server = embedded::Embedded::start(Arc::clone(&shared), host_private)
                .map_err(io_err("start the embedded test server"))?;
            (Running::Embedded(server, shared), password)
        };
        let target = match &running {
            Running::OpenSsh(s) => s.addr(),
            Running::Embedded(s, _) => s.addr(),
        };
        let proxy = proxy::Proxy::start(target).map_err(io_err("start the fault proxy"))?;
        log::info!(
            "test server ({backend}) on {} (server {target}), SFTP root {}",
            proxy.addr(),
            sftp_root.display()
        );
        Ok(TestServer {
            proxy,
            running,
            backend,
            host_keys,
            user,
            key_path,
            key_public_line: client.public_line,
            password,
            sftp_root,
            dir,
        })
    }

    /// The backend that runs: [`Backend::OpenSsh`] or [`Backend::Embedded`].
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The port to connect to (the fault proxy's; see [`Self::server_addr`]).
    pub fn port(&self) -> u16 {
        self.proxy.addr().port()
    }

    /// `127.0.0.1:port`, the address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    /// The server's own address, behind the fault proxy: connections made
    /// there see no fault.
    pub fn server_addr(&self) -> SocketAddr {
        match &self.running {
            Running::OpenSsh(s) => s.addr(),
            Running::Embedded(s, _) => s.addr(),
        }
    }

    /// The pin of the first host key (see [`TestServerBuilder::host_key_types`]).
    pub fn known_host(&self) -> KnownHost {
        self.known_hosts()
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!("a test server has at least one host key"))
    }

    /// A pin for each host key the server offers.
    pub fn known_hosts(&self) -> Vec<KnownHost> {
        self.host_keys
            .iter()
            .filter_map(|k| KnownHost::public_key(&k.line).ok())
            .collect()
    }

    /// The OpenSSH public key line of a host key type the server offers
    /// (`"ssh-ed25519 AAAA... etl-ssh-testkit-host"`).
    pub fn host_key_line(&self, kind: HostKeyType) -> Option<&str> {
        self.host_keys
            .iter()
            .find(|k| k.kind == kind)
            .map(|k| k.line.as_str())
    }

    /// The `SHA256:...` fingerprint of a host key type the server offers.
    pub fn host_key_fingerprint(&self, kind: HostKeyType) -> Option<&str> {
        self.host_keys
            .iter()
            .find(|k| k.kind == kind)
            .map(|k| k.fingerprint.as_str())
    }

    /// A `known_hosts` line for the first host key: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        let line = self.host_keys.first().map_or("", |k| k.line.as_str());
        let mut parts = line.split_whitespace();
        let (alg, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        format!("[127.0.0.1]:{} {alg} {b64}", self.port())
    }

    /// The user the key credential logs in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// A key credential that the server accepts: [`Self::user`] with the
    /// generated ed25519 key ([`Self::key_path`]).
    pub fn key_credential(&self) -> Credential {
        Credential::key_pair(&self.user, &self.key_path)
    }

    /// The generated client key (OpenSSH format, unencrypted, mode 0600);
    /// its public half is beside it with `.pub` appended.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The generated client key's public line.
    pub fn key_public_line(&self) -> &str {
        &self.key_public_line
    }

    /// The password credential the server accepts: its test user and the
    /// password generated for this server. `None` unless
    /// [`TestServerBuilder::password_authentication`] was set.
    pub fn password_credential(&self) -> Option<Credential> {
        self.password
            .as_ref()
            .map(|(user, pw)| Credential::password(user, pw.clone()))
    }

    /// The user of [`Self::password_credential`]: a random name
    /// (`etlpw...`) that exists only for this server.
    pub fn password_user(&self) -> Option<&str> {
        self.password.as_ref().map(|(user, _)| user.as_str())
    }

    /// The password of [`Self::password_credential`], generated for this
    /// server.
    pub fn password(&self) -> Option<&SecretString> {
        self.password.as_ref().map(|(_, pw)| pw)
    }

    /// True when the server accepts [`Self::password_credential`], that is
    /// when [`TestServerBuilder::password_authentication`] was set.
    pub fn accepts_passwords(&self) -> bool {
        self.password.is_some()
    }

    /// The OpenSSH server behind this test server, for what only it has
    /// (its log, config, pid); `None` on the embedded backend.
    pub fn sshd(&self) -> Option<&Sshd> {
        match &self.running {
            Running::OpenSsh(s) => Some(s),
            Running::Embedded(..) => None,
        }
    }

    /// The local folder that SFTP sees (see the [module docs](self)).
    pub fn sftp_root(&self) -> &Path {
        &self.sftp_root
    }

    /// The remote path of `relative` inside [`Self::sftp_root`]: the same
    /// absolute path on both backends.
    pub fn remote_path(&self, relative: impl AsRef<Path>) -> String {
        self.sftp_root.join(relative).to_string_lossy().into_owned()
    }

    /// The server's own temporary folder: the client key and the SFTP root
    /// (OpenSSH's config, host keys and log are in [`Sshd::dir`], see
    /// [`Self::sshd`]).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// sshd's log so far (LogLevel VERBOSE), for the OpenSSH backend.
    pub fn sshd_log(&self) -> Option<String> {
        match &self.running {
            Running::OpenSsh(s) => Some(s.log()),
            Running::Embedded(..) => None,
        }
    }

    /// A [`SessionBuilder`] aimed at the server, pinned, with the key
    /// credential, a 10 s connect timeout and a 30 s operation timeout;
    /// change what the test needs before `connect()`.
    pub fn session_builder(&self) -> SessionBuilder {
        Session::builder(self.host())
            .port(self.port())
            .known_host(self.known_host())
            .credential(self.key_credential())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
    }

    /// A session connected with [`Self::session_builder`].
    ///
    /// # Errors
    ///
    /// Whatever [`SessionBuilder::connect`] returns, e.g.
    /// [`ErrorKind::Auth`](crate::ErrorKind) after [`Self::refuse_auth`].
    pub fn session(&self) -> Result<Session> {
        self.session_builder().connect()
    }

    /// Makes the server refuse (`true`) or accept again (`false`) every
    /// authentication, keys and passwords alike. Embedded: at once. OpenSSH:
    /// `DenyUsers *` and a configuration reload (SIGHUP), waited for.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind) when sshd cannot be reloaded.
    pub fn refuse_auth(&self, refuse: bool) -> Result<()> {
        match &self.running {
            Running::OpenSsh(s) => s.refuse_auth(refuse),
            Running::Embedded(_, shared) => {
                shared.refuse_auth.store(refuse, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    /// Closes every connection once `bytes` more have passed the proxy
    /// (both directions, all connections, counted from this call).
    pub fn close_after(&self, bytes: u64) {
        self.proxy.close_after(bytes);
    }

    /// Stops relaying once `bytes` more have passed: connections stay open
    /// and silent until [`Self::heal`].
    pub fn stall_after(&self, bytes: u64) {
        self.proxy.stall_after(bytes);
    }

    /// A slow link: `delay` before each chunk relayed and, unless
    /// `bytes_per_second` is 0, that bandwidth in each direction.
    pub fn slow_link(&self, delay: Duration, bytes_per_second: u64) {
        self.proxy.slow(delay, bytes_per_second);
    }

    /// Ends every fault of the proxy: no cut, stall or slowness from now on
    /// (connections already cut stay cut). [`Self::refuse_auth`] is apart.
    pub fn heal(&self) {
        self.proxy.heal();
    }

    /// Bytes relayed by the proxy so far, both directions.
    pub fn bytes_relayed(&self) -> u64 {
        self.proxy.bytes()
    }
}
