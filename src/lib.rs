//! # etl-ssh
//!
//! Move data to and from a business partner's server over SSH, safely and
//! boringly: SFTP to upload and download files, SSH exec to run a command on
//! their side. Client = us, server = them.
//!
//! Built on [`ssh2`](https://docs.rs/ssh2) (libssh2), which stays an
//! implementation detail: no `ssh2` type appears in this crate's API.
//!
//! ## Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use etl_ssh::{Credential, KnownHost, Session};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let session = Session::builder("sftp.partner.example")
//!     .port(22)
//!     .credential(Credential::key_pair("etl", "/keys/id_ed25519"))
//!     .known_host(KnownHost::fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s")?)
//!     .connect_timeout(Duration::from_secs(10))
//!     .timeout(Duration::from_secs(60))
//!     .connect()?;
//! println!("connected to {} ({}), as {} with {}",
//!     session.host(), session.host_key(), session.user(), session.auth_method());
//! session.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Credentials
//!
//! A [`Credential`] is a key pair (a file, or PEM/OpenSSH text held in
//! memory, optionally with a passphrase) or a user name and password.
//! Secrets live in [`secrecy`] types, are zeroized when dropped, and are
//! printed as `[REDACTED]` by `Debug`. A key file is read and its passphrase
//! checked before any connection is made, so a wrong passphrase is
//! [`ErrorKind::Passphrase`], never a puzzling authentication failure.
//! Also: several keys tried in order ([`Credential::key_pairs`], for key
//! rotation), an ssh-agent ([`Credential::agent`]), keyboard-interactive
//! answered by a callback ([`Credential::keyboard_interactive`]),
//! OpenSSH user certificates ([`KeyPair::with_certificate`]), and
//! multi-factor logins ([`Credential::all`]: a key, then a password).
//!
//! ## Host keys
//!
//! Every connection checks the server's host key against [`KnownHost`] pins:
//! a SHA256 fingerprint, an OpenSSH public key line, or an OpenSSH
//! `known_hosts` file (hashed names, `[host]:port`, patterns, negation and
//! `@revoked` are honoured, as OpenSSH does). The check happens right after
//! the key exchange and **before any authentication request**: a password is
//! never sent to a server whose key did not match. There is no default that
//! accepts any key. The pinned key types are offered first in the handshake,
//! so a server with several host keys presents the pinned one.
//! Host certificates: a partner that signs its host keys with a CA gives
//! us an `@cert-authority` line (or [`KnownHost::cert_authority`]); the
//! certificate is then asked for first and checked here before any
//! authentication (signed by the pinned CA, not `@revoked`, a host
//! certificate naming the host, within its validity window), with
//! [`ErrorKind::HostCertificate`] saying what is wrong.
//! [`SessionBuilder::host_key_alias`] looks pins up under a name of our
//! choosing, so a server that moves to a new address keeps its pin;
//! [`KnownHost::trust_on_first_use`] is the explicit, recorded alternative
//! to pinning up front.
//!
//! ## Key rotation
//!
//! **Ours.** Hold the new and the old key in one credential, newest first:
//! `Credential::key_pairs("etl", [KeyPair::file(new), KeyPair::file(old)])`.
//! Every connection tries them in order; [`Session::auth_method`] names the
//! key that was accepted, and a warning is logged for each partner that
//! still accepts only the old one (the `rotation_report` example prints the
//! list). Send partners [`KeyPair::public_key`] and
//! [`KeyPair::fingerprint`]; drop the old key once no partner needs it.
//!
//! **Theirs.** OpenSSH servers announce new host keys with the
//! `hostkeys-00@openssh.com` message (`UpdateHostKeys`); libssh2 ignores it,
//! so this crate cannot learn a new key by itself. What the operator does:
//! when the partner announces a new host key, confirm its fingerprint with
//! them out of band and add it as a second pin (another
//! [`SessionBuilder::known_host`], or a second line in `known_hosts`)
//! *before* they switch: any pin that matches is accepted, so the job runs
//! before, during and after the switch. Remove the old pin afterwards, or
//! mark the old key `@revoked` in `known_hosts`. If the switch comes first,
//! the [`ErrorKind::HostKeyMismatch`] error names the expected and the seen
//! fingerprints: compare the seen one with the partner's announcement.
//!
//! ## Reaching the server
//!
//! [`SessionBuilder::bind_address`] picks our source address (partners
//! allow-list it); [`SessionBuilder::http_proxy`] goes through an HTTP
//! CONNECT proxy; [`SessionBuilder::jump_host`] through a bastion session
//! (`ProxyJump`); [`SshConfig`] builds sessions from `Host` aliases of an
//! OpenSSH client config, as `ssh` resolves them.
//!
//! ## Algorithms
//!
//! Each session sets the key exchange, host key, cipher and MAC lists it
//! offers: this build's algorithms without the SHA-1-era ones
//! ([`AlgorithmFamily::defaults`]). [`SessionBuilder::kex_algorithms`],
//! [`host_key_algorithms`](SessionBuilder::host_key_algorithms),
//! [`ciphers`](SessionBuilder::ciphers) and [`macs`](SessionBuilder::macs)
//! change them in OpenSSH's syntax (`"+diffie-hellman-group14-sha1"`
//! appends, `"-name"` removes, `"^name"` puts first, `"a,b"` replaces), as
//! do the same keywords in an [`SshConfig`]. A server with nothing in
//! common fails with [`Error::Negotiation`]: the family, the server's
//! offer, ours, and what to do. SHA-1 algorithms need a libssh2 built with
//! them ([`has_sha1_algorithms`]; README, "Old servers").
//!
//! ## SFTP
//!
//! [`Session::sftp`] opens an [`SftpSession`]: std-like file operations
//! (`read_dir`, `read_dir_iter`, `metadata`, `create_dir_all`, `rename`,
//! `remove_dir_all`, `symlink`, `canonicalize`, `read`, `write`,
//! `open_with` and [`OpenOptions`], [`Permissions`], ...) and what
//! OpenSSH's extensions add (`statvfs`, a server-side `copy`), with remote
//! paths as bytes (a `&str`, bytes, or a [`RemotePath`]), and transfers.
//! [`SftpSession::upload`] is atomic: it writes to a hidden temporary name
//! beside the target, flushes it (`fsync@openssh.com`), checks its size and
//! renames it into place with `posix-rename@openssh.com`, so the partner
//! never sees half a file; [`SftpSession::download`] does the same on our
//! side. [`TransferOptions`] chooses in-place writes, the overwrite policy,
//! mtime and permissions, resume, a progress callback and a [`Glob`] filter
//! for [`SftpSession::upload_dir`] / [`SftpSession::download_dir`].
//! [`SftpSession::open`] and [`SftpSession::create`] stream with read-ahead
//! and write-behind. Errors carry the server, the remote path and map the
//! SFTP status to [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`]
//! and [`ErrorKind::AlreadyExists`].
//!
//! Every SFTP operation runs on this crate's own SFTP version 3 client
//! (libssh2 provides the SSH channels, not its SFTP layer), which does not
//! wait for each answer: a session keeps about 8 MB of requests in flight;
//! a large file is cut into pieces that several sessions move at once
//! ([`TransferOptions::sessions`]); a folder's small files go 32 at a time
//! per session, in three round trips for an upload and two for a download.
//! A server that allows few channels (OpenSSH's `MaxSessions`), or one per
//! connection, still works. `BENCHMARKS.md` compares this with OpenSSH's
//! `sftp` on loopback and through a 50 ms delay line.
//!
//! The server is trusted for its host key and nothing else: a name in a
//! listing is checked to be one path component (others are skipped with a
//! warning), folder walks stop at 64 levels, a file that changes while it
//! moves fails with [`ErrorKind::Changed`], and a file is never removed
//! before its replacement is in place.
//!
//! ## Exec
//!
//! [`Session::exec`] gives an [`ExecSession`]: [`run`](ExecSession::run) a
//! command and get an [`ExecOutput`] with stdout and stderr byte-exact, the
//! exit code, or the signal that killed it (read after the channel closed,
//! as libssh2 requires). Both streams are drained together, so a command
//! that fills one while we wait on the other never deadlocks;
//! [`run_with_input`](ExecSession::run_with_input) streams stdin at the same
//! time. Each command has a timeout of its own ([`DEFAULT_COMMAND_TIMEOUT`],
//! an hour, by default; `None` for none) and an output cap. A running
//! command does not hold the session: SFTP and other commands on it go on
//! meanwhile. A command that timed out or lost its connection is not
//! [transient](Error::is_transient) unless marked
//! [idempotent](ExecSession::with_idempotent), so a [`RetryPolicy`] never
//! runs an import twice behind the caller's back.
//! [`run_args`](ExecSession::run_args) and [`quote`] quote each
//! argument for a POSIX shell, so a file name cannot change the command.
//! [`spawn`](ExecSession::spawn) streams large input or output. An
//! SFTP-only account, a refused environment variable or PTY are
//! [`ErrorKind::Unsupported`].
//!
//! ```no_run
//! # fn main() -> Result<(), etl_ssh::Error> {
//! # let session: etl_ssh::Session = todo!();
//! let out = session.exec()?.run_args(["sha256sum", "/inbox/orders 2026.csv"])?;
//! assert!(out.success(), "{}", String::from_utf8_lossy(out.stderr()));
//! # Ok(())
//! # }
//! ```
//!
//! ## Async
//!
//! With the `tokio` feature, `etl_ssh::tokio` has `Session`, `SftpSession`
//! and `ExecSession` with the same operations
//! as `async fn`s, run on tokio's blocking pool so that no worker thread
//! blocks; `open` and `create` give `AsyncRead` and `AsyncWrite` handles.
//! A dropped future leaves its operation to run to its end in the
//! background and the session usable.
//!
//! ```toml
//! etl-ssh = { version = "0.1", features = ["tokio"] }
//! ```
//!
//! ## Tunnels
//!
//! [`Session::forward_local`] forwards a local port to a host and port seen
//! from the server, as `ssh -L` does (Airflow's `SSHHook.get_tunnel`): a
//! job points its database driver at `127.0.0.1:<port>`, and the
//! [`Tunnel`] serves connections, each on its own `direct-tcpip` channel,
//! at most [`MAX_TUNNEL_CONNECTIONS`] at once, until it is dropped.
//!
//! ## Errors
//!
//! One [`Error`] type with a [`kind`](Error::kind) to branch on
//! ([`ErrorKind`]). Messages carry host, port, path and user (never a
//! secret) and say what to do where we know: a changed host key names the
//! expected and the seen fingerprints; a server that hangs up before its
//! identification line names our source address (partners often
//! allow-list addresses) and a server refusing connections under load
//! (`MaxStartups`, which [`RetryPolicy`] rides out); one that hangs up
//! during authentication or at the first channel names a limit on logins
//! per user; an authentication failure lists the methods the server
//! allows and quotes what it said (its banner, keyboard-interactive
//! texts); an expired password is [`ErrorKind::PasswordExpired`].
//!
//! What the server says is kept where libssh2 lets us have it:
//! [`Session::auth_banner`] (the `Banner` text) and
//! [`Session::identification`] (`SSH-2.0-...`). The reason a server gives
//! when it disconnects (`SSH_MSG_DISCONNECT`, e.g. "Too many logins for
//! this user") is read by libssh2 but reaches us only through a callback
//! that `ssh2` 0.9.6 does not expose without `unsafe`: the errors name the
//! likely causes instead, and the partner's server log has the reason.
//!
//! ## Timeouts
//!
//! Nothing waits forever. [`SessionBuilder::connect_timeout`] (30 s by
//! default) bounds DNS resolution, the TCP connection and the SSH handshake;
//! [`SessionBuilder::timeout`] (60 s by default) bounds each blocking
//! operation after that, authentication included, and each exchange with
//! the server of a remote command; the command itself is bounded by
//! [`ExecSession::with_timeout`] (an hour by default; no limit only when
//! asked for with `None`).
//!
//! ## Secrets
//!
//! Passwords, passphrases and private keys are held in [`secrecy`] types
//! or in [`zeroize::Zeroizing`] buffers, and zeroized when dropped: the
//! credential itself, a key file's bytes as read, an OpenSSH key decrypted
//! here (so that a wrong passphrase is told apart), the key text handed on.
//! `Debug` prints `[REDACTED]`; no log record carries them.
//!
//! Copies beyond this crate's reach, because libssh2 takes secrets as C
//! strings and `ssh2` makes them:
//! - a password: `ssh2` copies it into a `CString` for
//!   `libssh2_userauth_password_ex`, freed without zeroing;
//! - a keyboard-interactive answer (the password, or what a
//!   [`Credential::keyboard_interactive`] callback returns): `ssh2`'s prompt
//!   API takes a `Vec<String>` and copies each into libssh2's buffers;
//! - a private key: `ssh2` copies the key text (and a PEM key's passphrase)
//!   into `CString`s for `libssh2_userauth_publickey_frommemory`; libssh2
//!   and OpenSSL then parse it into their own structures, which OpenSSL
//!   clears for RSA and EC keys but libssh2 does not promise to.
//!
//! These copies live for the duration of one authentication call. A
//! process that must not hold key material in memory at all should use an
//! ssh-agent ([`Credential::agent`]): the key then never enters it.
//!
//! ## Logging
//!
//! Through the [`log`] crate, target `etl_ssh::*`:
//! - `info`: the address connected to and from, the verified host key
//!   fingerprint (or host certificate), the user and the authentication
//!   methods that succeeded, the server's banner text;
//! - `warn`: an untrusted host key (before disconnecting), a `known_hosts`
//!   line that cannot be parsed (file and line number);
//! - `debug`: resolved addresses, offered and negotiated algorithms, the
//!   methods the server allows, which pin matched.
//!
//! No level ever carries a password, a passphrase or private key material.
//!
//! ## Threads
//!
//! [`Session`], [`Credential`] and [`KnownHost`] are `Send` and `Sync`.
//! libssh2 serialises every call on one session: for parallel work open
//! several sessions. A remote command, a spawned command's streams and a
//! [tunnel](Session::forward_local)'s connections lock the session only
//! for each exchange with the server, so they share it with SFTP.

#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

mod algorithms;
mod conn;
mod credential;
mod error;
mod exec;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod known_host;
mod openssh_match;
mod retry;
mod session;
mod sftp;
mod ssh_config;

#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(feature = "tokio")]
pub mod tokio;

/// The [`secrecy`](https://docs.rs/secrecy) crate this crate's secrets are
/// held in, re-exported so that a program passes a
/// [`SecretString`](secrecy::SecretString) of the very version
/// [`Credential`] takes without a dependency of its own:
///
/// ```
/// use etl_ssh::secrecy::SecretString;
/// use etl_ssh::Credential;
///
/// let pass = Credential::password("etl", SecretString::from("from the vault"));
/// # let _ = pass;
/// ```
pub use secrecy;

pub use algorithms::{has_sha1_algorithms, AlgorithmFamily};
pub use credential::{AuthPrompt, Credential, KeyPair};
pub use error::{BoxError, Error, ErrorKind};
pub use exec::{
    quote, quote_args, ExecChild, ExecOutput, ExecSession, ExecStderr, ExecStdin, ExecStdout,
    ExitStatus, DEFAULT_COMMAND_TIMEOUT, DEFAULT_MAX_OUTPUT,
};
pub use known_host::{HostKey, KnownHost};
pub use retry::RetryPolicy;
pub use session::{
    AuthMethod, Session, SessionBuilder, Tunnel, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVE,
    DEFAULT_PORT, DEFAULT_RECEIVE_BUFFER, DEFAULT_TIMEOUT, MAX_TUNNEL_CONNECTIONS,
};
pub use ssh_config::{HostConfig, SshConfig};

pub use sftp::{
    Checksum, Delivery, DirEntry, DirReport, FileReport, FileType, FsStats, Glob, Metadata,
    OpenOptions, Overwrite, Permissions, Progress, ReadDir, RemotePath, SftpFile, SftpReader,
    SftpSession, SftpWriter, TransferOptions, Verified, WriteOrder, DEFAULT_BUFFER_SIZE,
    DEFAULT_MIN_SEGMENT, DEFAULT_SESSIONS, DEFAULT_TEMP_NAME, PIPELINE_BUFFERS,
};

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The README's examples compile as doc tests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
