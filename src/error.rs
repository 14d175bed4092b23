//! [`Error`] and [`ErrorKind`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A boxed error kept as the [`source`](std::error::Error::source) of an
/// [`Error`]. The concrete type (often libssh2's) is not part of the API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, in a form a caller can branch on.
///
/// Much like [`std::io::ErrorKind`]: new kinds may be added, so a `match`
/// needs a wildcard arm.
///
/// ```
/// use etl_ssh::{ErrorKind, KnownHost};
///
/// let err = KnownHost::fingerprint("MD5:16:27:ac").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The host name could not be resolved, or no TCP connection could be made.
    Connect,
    /// An operation did not finish within its deadline.
    Timeout,
    /// The server's host key matched none of the pins.
    HostKeyMismatch,
    /// No pin applies to this host (for example, `known_hosts` has no line for it).
    HostKeyUnknown,
    /// The server's host key is marked `@revoked` in a `known_hosts` file.
    HostKeyRevoked,
    /// The server's host certificate is not valid: expired or not yet
    /// valid, for another host, not a host certificate, or signed by a CA
    /// that is not pinned.
    HostCertificate,
    /// The server refused our credential.
    Auth,
    /// The password is right but has expired: the server asks for a new
    /// one. Not transient: a person (or the partner) must change it.
    PasswordExpired,
    /// A private key could not be read or parsed.
    KeyFile,
    /// A private key is encrypted and its passphrase is missing or wrong.
    Passphrase,
    /// The ssh-agent could not be used: `SSH_AUTH_SOCK` is not set, or
    /// nothing answers at its socket.
    Agent,
    /// A remote or local file or directory does not exist.
    NotFound,
    /// The server or the local system refused access.
    PermissionDenied,
    /// The target exists already.
    AlreadyExists,
    /// The server closed the connection, or it broke.
    Disconnected,
    /// The server sent something we could not understand, or no common algorithm was found.
    Protocol,
    /// A local I/O error.
    Io,
    /// An argument was malformed (a fingerprint, a key line, an address).
    InvalidInput,
    /// The server does not offer what was asked for.
    Unsupported,
    /// A limit we set was reached (the output cap of a command, the size
    /// of a listing held in memory).
    LimitExceeded,
    /// The file changed while it was transferred (it grew, shrank, or a
    /// partial file no longer matches its source): nothing was put in
    /// place, and trying again transfers the new version.
    Changed,
    /// Anything else.
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::HostKeyMismatch => "host key mismatch",
            ErrorKind::HostKeyUnknown => "host key unknown",
            ErrorKind::HostKeyRevoked => "host key revoked",
            ErrorKind::HostCertificate => "host certificate",
            ErrorKind::Auth => "authentication",
            ErrorKind::PasswordExpired => "password expired",
            ErrorKind::KeyFile => "key file",
            ErrorKind::Passphrase => "passphrase",
            ErrorKind::Agent => "ssh-agent",
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Io => "i/o",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::LimitExceeded => "limit exceeded",
            ErrorKind::Changed => "changed during the transfer",
            ErrorKind::Other => "other",
        };
        f.write_str(s)
    }
}

/// Everything that can go wrong in this crate.
///
/// Each variant carries the context an operator needs (host, port, path,
/// user; never a secret). [`Error::kind`] gives a small [`ErrorKind`] to
/// branch on. `Display` is one short line; the underlying cause, when there
/// is one, is the [`source`](std::error::Error::source).
///
/// ```no_run
/// use etl_ssh::{Credential, ErrorKind, KnownHost, Session};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let result = Session::builder("sftp.partner.example")
///     .credential(Credential::key_pair("etl", "/keys/id_ed25519"))
///     .known_host(KnownHost::known_hosts_file("/etc/etl/known_hosts"))
///     .connect();
/// match result {
///     Ok(session) => session.close()?,
///     Err(e) if e.kind() == ErrorKind::HostKeyMismatch => eprintln!("do not retry: {e}"),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The host name could not be resolved.
    #[error("cannot resolve {host}")]
    #[non_exhaustive]
    Resolve {
        /// The host name as given.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },

    /// No TCP connection could be made to any address of the host.
    #[error("cannot connect to {host}:{port}{}", bound(*local))]
    #[non_exhaustive]
    Connect {
        /// The host name as given.
        host: String,
        /// The port.
        port: u16,
        /// The local address we bound to, if one was set.
        local: Option<std::net::IpAddr>,
        /// The error for the last address tried.
        source: io::Error,
    },

    /// An operation did not finish within its deadline.
    #[error("{operation} timed out after {}", secs(*timeout))]
    #[non_exhaustive]
    Timeout {
        /// What was being done ("connect to host:22", "ssh handshake", ...).
        operation: String,
        /// The deadline that ran out.
        timeout: Duration,
    },

    /// The server's host key matched none of the pins.
    #[error(
        "host key of {host}:{port} has changed or is not the pinned one: \
         it presented {key_type} {seen}, expected {}; \
         if the partner rotated its key, confirm the new fingerprint with them \
         out of band, then add it as a pin (KnownHost::fingerprint) or to known_hosts",
        expected.join(" or ")
    )]
    #[non_exhaustive]
    HostKeyMismatch {
        /// The host name the pins were matched against.
        host: String,
        /// The port.
        port: u16,
        /// The key type the server presented (`ssh-ed25519`, ...).
        key_type: String,
        /// SHA256 fingerprint of the key the server presented.
        seen: String,
        /// Every pin that applied, as `SHA256:... (where it came from)`.
        expected: Vec<String>,
    },

    /// No pin applies to this host.
    #[error(
        "host key of {host}:{port} is unknown: it presented {key_type} {seen}; \
         confirm this fingerprint with the partner out of band, then pin it \
         (KnownHost::fingerprint) or add it to known_hosts"
    )]
    #[non_exhaustive]
    HostKeyUnknown {
        /// The host name the pins were matched against.
        host: String,
        /// The port.
        port: u16,
        /// The key type the server presented.
        key_type: String,
        /// SHA256 fingerprint of the key the server presented.
        seen: String,
    },

    /// The server's host key is marked `@revoked`.
    #[error(
        "host key of {host}:{port} is revoked: it presented {key_type} {seen}, \
         which {revoked_by} marks @revoked"
    )]
    #[non_exhaustive]
    HostKeyRevoked {
        /// The host name the pins were matched against.
        host: String,
        /// The port.
        port: u16,
        /// The key type the server presented.
        key_type: String,
        /// SHA256 fingerprint of the key the server presented.
        seen: String,
        /// Where the `@revoked` line is (`path:line`).
        revoked_by: String,
    },

    /// The server presented a host certificate that is not valid for it.
    #[error("host certificate of {host}:{port} is not valid: {reason} ({certificate})")]
    #[non_exhaustive]
    HostCertificate {
        /// The host name the pins were matched against.
        host: String,
        /// The port.
        port: u16,
        /// The certificate: its type, its key's fingerprint and its CA's.
        certificate: String,
        /// Why it is not valid, and what to do.
        reason: String,
    },

    /// The server closed the connection before authentication was done.
    /// The message names the likely causes for the stage it happened in:
    /// before the server's identification line, a source-address
    /// allow-list or a server refusing new connections under load
    /// (OpenSSH's `MaxStartups`); during authentication, a limit on logins
    /// per user.
    #[error("{}", disconnected_message(host, *port, *local, stage))]
    #[non_exhaustive]
    Disconnected {
        /// The host name as given.
        host: String,
        /// The port.
        port: u16,
        /// Our end of the TCP connection.
        local: Option<SocketAddr>,
        /// What we were doing: [`STAGE_TCP`](Error::STAGE_TCP),
        /// [`STAGE_IDENTIFICATION`](Error::STAGE_IDENTIFICATION),
        /// [`STAGE_HANDSHAKE`](Error::STAGE_HANDSHAKE),
        /// [`STAGE_AUTHENTICATION`](Error::STAGE_AUTHENTICATION).
        stage: &'static str,
        /// The underlying error.
        source: Option<BoxError>,
    },

    /// The server and we have no algorithm of one family in common: the
    /// handshake cannot agree a key exchange, host key, cipher or MAC.
    #[error("{}", negotiation_message(host, *port, family.as_ref(), ours, theirs, note))]
    #[non_exhaustive]
    Negotiation {
        /// The host name as given.
        host: String,
        /// The port.
        port: u16,
        /// The family with nothing in common, when the server's offer
        /// could be read.
        family: Option<crate::AlgorithmFamily>,
        /// What we offered in that family, in our order.
        ours: Vec<String>,
        /// What the server offered in that family, in its order.
        theirs: Vec<String>,
        /// What to do (opt in to legacy algorithms, the build that has
        /// them), or why the family is not known.
        note: String,
        /// libssh2's error.
        source: Option<BoxError>,
    },

    /// The password is right but has expired: the server asked for a new
    /// one (keyboard-interactive "New password:" prompts through PAM, or
    /// `SSH_MSG_USERAUTH_PASSWD_CHANGEREQ`).
    #[error(
        "the password of {user} on {host}:{port} has expired: the server asks for a new one{}; \
         change it in an interactive login (ssh {user}@{host}) or ask the partner to reset \
         it: this crate does not change passwords",
        said_note(said)
    )]
    #[non_exhaustive]
    PasswordExpired {
        /// The user name.
        user: String,
        /// The host name as given.
        host: String,
        /// The port.
        port: u16,
        /// What the server said (its prompts and instructions).
        said: Vec<String>,
    },

    /// The server refused our credential, or wants more than it holds.
    #[error("{}{}", auth_message(user, host, *port, tried, allowed, accepted), said_note(said))]
    #[non_exhaustive]
    Auth {
        /// The user name.
        user: String,
        /// The host name as given.
        host: String,
        /// The port.
        port: u16,
        /// What we tried last and the server refused (`publickey
        /// SHA256:...`, `password`, ...); empty when every factor we had
        /// was accepted and the server wants another.
        tried: Vec<String>,
        /// The methods the server said can continue.
        allowed: Vec<String>,
        /// The factors the server accepted before (partial success), in
        /// order: a multi-factor login (`AuthenticationMethods
        /// publickey,password`) that did not complete.
        accepted: Vec<String>,
        /// What the server said: its banner (`SSH_MSG_USERAUTH_BANNER`),
        /// keyboard-interactive instructions and prompt texts.
        said: Vec<String>,
        /// The underlying error, if any.
        source: Option<BoxError>,
    },

    /// A private key could not be read or parsed.
    #[error("private key {}: {reason}", key_name(path))]
    #[non_exhaustive]
    KeyFile {
        /// The key file, or `None` for a key held in memory.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
        /// The underlying error, if any.
        source: Option<BoxError>,
    },

    /// A private key is encrypted and its passphrase is missing or wrong.
    #[error("private key {}: {}", key_name(path),
        if *missing { "is encrypted and no passphrase was given (Credential::with_passphrase)" }
        else { "wrong passphrase" })]
    #[non_exhaustive]
    Passphrase {
        /// The key file, or `None` for a key held in memory.
        path: Option<PathBuf>,
        /// `true` when no passphrase was given, `false` when it was wrong.
        missing: bool,
    },

    /// The ssh-agent of a [`Credential::agent`](crate::Credential::agent)
    /// credential could not be used.
    #[error("{}", agent_message(socket.as_deref(), *from_env, reason))]
    #[non_exhaustive]
    Agent {
        /// The agent's socket: as given to
        /// [`Credential::agent_at`](crate::Credential::agent_at), or
        /// `SSH_AUTH_SOCK`'s value (`None` when it is not set).
        socket: Option<PathBuf>,
        /// Whether the socket came from `SSH_AUTH_SOCK`.
        from_env: bool,
        /// What failed.
        reason: String,
        /// The underlying error, if any.
        source: Option<BoxError>,
    },

    /// A `known_hosts` file could not be read.
    #[error("cannot read known_hosts file {}", path.display())]
    #[non_exhaustive]
    KnownHostsFile {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },

    /// A local file that decides whom we trust or where we connect (an ssh
    /// config) is writable by others or owned by someone else: refused, as
    /// OpenSSH refuses it ("Bad owner or permissions on ...").
    #[error("bad owner or permissions on {what} {}: {reason}; fix with `{fix}`", path.display())]
    #[non_exhaustive]
    InsecureFile {
        /// What the file is ("ssh config").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The command that fixes it (`chmod go-w <file>`).
        fix: String,
    },

    /// An argument was malformed.
    #[error("invalid {what}: {reason}")]
    #[non_exhaustive]
    InvalidInput {
        /// What was malformed ("fingerprint", "public key line", ...).
        what: &'static str,
        /// Why.
        reason: String,
    },

    /// An SSH-level operation failed.
    #[error("{context}")]
    #[non_exhaustive]
    Ssh {
        /// The kind this failure maps to.
        kind: ErrorKind,
        /// What was being done, on which host.
        context: String,
        /// The underlying error.
        source: Option<BoxError>,
    },

    /// An SFTP operation failed.
    #[error("sftp {operation} {path} on {target}: {reason}")]
    #[non_exhaustive]
    Sftp {
        /// The kind this failure maps to (from the SFTP status where there is one).
        kind: ErrorKind,
        /// What was being done (`open`, `rename`, `upload`, ...).
        operation: &'static str,
        /// The remote path, for display: UTF-8 as it is, other bytes and
        /// control characters escaped (`\xe9`).
        path: String,
        /// The server, `host:port`.
        target: String,
        /// The SFTP status code the server sent (`SSH_FX_*`), if any.
        status: Option<u32>,
        /// What went wrong, in words.
        reason: String,
        /// The underlying error, if any.
        source: Option<BoxError>,
    },

    /// A remote command could not be started, or did not finish as asked.
    #[error("exec `{command}` on {target}: {reason}")]
    #[non_exhaustive]
    Exec {
        /// The kind this failure maps to.
        kind: ErrorKind,
        /// The command line (as sent; never contains a secret we hold).
        command: String,
        /// `host:port`.
        target: String,
        /// What went wrong, in words.
        reason: String,
        /// Whether the command may have started: the request to run it was
        /// sent. A command that started may have done its work, or part of
        /// it, so [`Error::is_transient`] is false then unless it is
        /// [`idempotent`](crate::ExecSession::with_idempotent).
        started: bool,
        /// Whether the caller marked the command
        /// [idempotent](crate::ExecSession::with_idempotent): safe to run
        /// again after a timeout or a hang-up.
        idempotent: bool,
        /// The underlying error, if any.
        source: Option<BoxError>,
    },

    /// A local I/O operation failed.
    #[error("{context}")]
    #[non_exhaustive]
    Io {
        /// What was being done, on which path.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

fn bound(local: Option<std::net::IpAddr>) -> String {
    local.map(|a| format!(" from {a}")).unwrap_or_default()
}

fn from_local(local: Option<SocketAddr>) -> String {
    local
        .map(|a| format!(" (we connected from {a})"))
        .unwrap_or_default()
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl Error {
    /// [`Error::Disconnected`] stage: the TCP connection was reset right
    /// after it was accepted.
    pub const STAGE_TCP: &'static str = "the TCP connection";
    /// [`Error::Disconnected`] stage: closed before the server sent its
    /// identification line (`SSH-2.0-...`).
    pub const STAGE_IDENTIFICATION: &'static str = "the identification exchange";
    /// [`Error::Disconnected`] stage: closed during the key exchange.
    pub const STAGE_HANDSHAKE: &'static str = "the SSH handshake";
    /// [`Error::Disconnected`] stage: closed during authentication, after
    /// the key exchange and the host key check succeeded.
    pub const STAGE_AUTHENTICATION: &'static str = "authentication";
}

fn disconnected_message(host: &str, port: u16, local: Option<SocketAddr>, stage: &str) -> String {
    let ours = local.map_or_else(|| "our public address".to_string(), |a| a.ip().to_string());
    let head = format!(
        "{host}:{port} closed the connection during {stage}{}",
        from_local(local)
    );
    match stage {
        Error::STAGE_AUTHENTICATION => format!(
            "{head}, after the key exchange and the host key check succeeded: the server may \
             limit logins per user (another login of this user is open: pam_limits \
             maxlogins, appliances that allow one session), allow this user only from some \
             addresses (AllowUsers user@address; then ask the partner to allow {ours}), or \
             drop clients after failed attempts"
        ),
        Error::STAGE_IDENTIFICATION => format!(
            "{head}, before sending its SSH identification line; likely causes: a \
             source-address allow-list (if the partner allow-lists addresses, ask them to \
             allow {ours}); a server refusing new connections under load (OpenSSH's \
             MaxStartups, 10:30:100 by default, drops unauthenticated connections past its \
             limit when many sessions start at once: retry with backoff (RetryPolicy) and \
             open fewer sessions at once); or a ban after failed logins (fail2ban, \
             PerSourcePenalties)"
        ),
        _ => format!(
            "{head}; if the partner allow-lists source addresses, ask them to allow {ours}; \
             a server under load (OpenSSH's MaxStartups) or a ban (fail2ban) does the same: \
             retry with backoff (RetryPolicy)"
        ),
    }
}

fn agent_message(socket: Option<&std::path::Path>, from_env: bool, reason: &str) -> String {
    match (socket, from_env) {
        (None, _) => "ssh-agent cannot be used: SSH_AUTH_SOCK is not set in this process's \
                      environment (cron, systemd and sudo do not pass it on); run the job \
                      where the agent's SSH_AUTH_SOCK is set, or name the socket with \
                      Credential::agent_at"
            .to_string(),
        (Some(path), true) => format!(
            "ssh-agent at SSH_AUTH_SOCK={} cannot be used: {reason}; check that the agent \
             is running (`ssh-add -l` in the same environment lists its keys)",
            path.display()
        ),
        (Some(path), false) => format!(
            "ssh-agent at {} cannot be used: {reason}; check that the agent is running \
             (`SSH_AUTH_SOCK={} ssh-add -l` lists its keys)",
            path.display(),
            path.display()
        ),
    }
}

/// `; the server said: "..."` for what a server said, cleaned of control
/// characters and cut short; empty when it said nothing.
pub(crate) fn said_note(said: &[String]) -> String {
    let text: Vec<String> = said
        .iter()
        .map(|s| printable(s))
        .filter(|s| !s.is_empty())
        .collect();
    if text.is_empty() {
        return String::new();
    }
    format!("; the server said: \"{}\"", text.join(" / "))
}

/// `text` on one line, control characters dropped, at most 300
/// characters: what a server sends is shown, never obeyed.
pub(crate) fn printable(text: &str) -> String {
    const MAX: usize = 300;
    let mut out = String::new();
    for word in text.split_whitespace() {
        let word: String = word.chars().filter(|c| !c.is_control()).collect();
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word);
    }
    if out.chars().count() > MAX {
        out = out.chars().take(MAX).collect::<String>() + "...";
    }
    out
}

fn auth_message(
    user: &str,
    host: &str,
    port: u16,
    tried: &[String],
    allowed: &[String],
    accepted: &[String],
) -> String {
    let allows = if allowed.is_empty() {
        "nothing more".to_string()
    } else {
        allowed.join(", ")
    };
    if accepted.is_empty() {
        return format!(
            "authentication as {user} on {host}:{port} failed (tried {}); the server allows: \
             {allows}",
            tried.join(", ")
        );
    }
    let accepted = accepted.join(", then ");
    if tried.is_empty() {
        format!(
            "authentication as {user} on {host}:{port} is incomplete: the server accepted \
             {accepted} (partial success) and wants another factor: {allows}; give every \
             factor in the order the server asks for them with Credential::all([...])"
        )
    } else {
        format!(
            "authentication as {user} on {host}:{port} failed: the server accepted {accepted} \
             (partial success), then refused {}; it allows: {allows}",
            tried.join(", ")
        )
    }
}

fn negotiation_message(
    host: &str,
    port: u16,
    family: Option<&crate::AlgorithmFamily>,
    ours: &[String],
    theirs: &[String],
    note: &str,
) -> String {
    match family {
        Some(family) => format!(
            "no common {family} algorithm with {host}:{port}: the server offers {}; \
             we offer {}{note}",
            theirs.join(","),
            ours.join(",")
        ),
        None => format!("no common algorithm with {host}:{port}: the SSH handshake failed{note}"),
    }
}

fn key_name(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "(held in memory)".to_string(),
    }
}

impl Error {
    /// The kind of this error, to branch on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Resolve { .. } | Error::Connect { .. } => ErrorKind::Connect,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::HostKeyMismatch { .. } => ErrorKind::HostKeyMismatch,
            Error::HostKeyUnknown { .. } => ErrorKind::HostKeyUnknown,
            Error::HostKeyRevoked { .. } => ErrorKind::HostKeyRevoked,
            Error::HostCertificate { .. } => ErrorKind::HostCertificate,
            Error::Disconnected { .. } => ErrorKind::Disconnected,
            Error::Negotiation { .. } => ErrorKind::Protocol,
            Error::Auth { .. } => ErrorKind::Auth,
            Error::PasswordExpired { .. } => ErrorKind::PasswordExpired,
            Error::Agent { .. } => ErrorKind::Agent,
            Error::KeyFile { .. } => ErrorKind::KeyFile,
            Error::Passphrase { .. } => ErrorKind::Passphrase,
            Error::KnownHostsFile { source, .. } => io_kind(source.kind()),
            Error::InsecureFile { .. } => ErrorKind::PermissionDenied,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Ssh { kind, .. } | Error::Sftp { kind, .. } | Error::Exec { kind, .. } => *kind,
            Error::Io { source, .. } => io_kind(source.kind()),
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// `err` with `note` appended to its message (a leftover file, what was
/// left in place): the essential facts stay in `Display`.
pub(crate) fn add_note(mut err: Error, note: String) -> Error {
    match &mut err {
        Error::Sftp { reason, .. } | Error::Exec { reason, .. } => reason.push_str(&note),
        Error::Ssh { context, .. } | Error::Io { context, .. } => context.push_str(&note),
        _ => log::warn!("{err}{note}"),
    }
    err
}

/// The operation of an upload's error when the connection ended while
/// the file was being renamed into place: it may have been delivered.
pub(crate) const RENAME_IN_DOUBT: &str = "rename into place";

/// Whether `err` leaves a delivery in doubt (see [`RENAME_IN_DOUBT`]): a
/// transfer must not send that file again on its own.
pub(crate) fn delivery_in_doubt(err: &Error) -> bool {
    matches!(err, Error::Sftp { operation, .. } if *operation == RENAME_IN_DOUBT)
}

/// Whether the server refused to open a channel: libssh2's
/// `CHANNEL_FAILURE` behind `err` (OpenSSH's `MaxSessions`, or a server
/// that allows one channel per connection).
pub(crate) fn channel_refused(err: &Error) -> bool {
    let source = match err {
        Error::Sftp { source, .. } | Error::Exec { source, .. } | Error::Ssh { source, .. } => {
            source
        }
        _ => return false,
    };
    source
        .as_ref()
        .and_then(|s| s.downcast_ref::<ssh2::Error>())
        .is_some_and(|e| ssh2_code(e) == code::CHANNEL_FAILURE)
}

/// libssh2's error codes that we branch on (`LIBSSH2_ERROR_*` in libssh2.h).
pub(crate) mod code {
    pub(crate) const BANNER_RECV: i32 = -2;
    pub(crate) const BANNER_SEND: i32 = -3;
    pub(crate) const KEX_FAILURE: i32 = -5;
    pub(crate) const SOCKET_SEND: i32 = -7;
    pub(crate) const KEY_EXCHANGE_FAILURE: i32 = -8;
    pub(crate) const TIMEOUT: i32 = -9;
    pub(crate) const SOCKET_DISCONNECT: i32 = -13;
    pub(crate) const PROTO: i32 = -14;
    pub(crate) const PASSWORD_EXPIRED: i32 = -15;
    pub(crate) const FILE: i32 = -16;
    pub(crate) const AUTHENTICATION_FAILED: i32 = -18;
    pub(crate) const PUBLICKEY_UNVERIFIED: i32 = -19;
    pub(crate) const CHANNEL_FAILURE: i32 = -21;
    pub(crate) const CHANNEL_REQUEST_DENIED: i32 = -22;
    pub(crate) const CHANNEL_CLOSED: i32 = -26;
    pub(crate) const CHANNEL_EOF_SENT: i32 = -27;
    pub(crate) const SOCKET_TIMEOUT: i32 = -30;
    pub(crate) const EAGAIN: i32 = -37;
    pub(crate) const REQUEST_DENIED: i32 = -32;
    pub(crate) const METHOD_NOT_SUPPORTED: i32 = -33;
    pub(crate) const SOCKET_RECV: i32 = -43;
    pub(crate) const KEYFILE_AUTH_FAILED: i32 = -48;
    pub(crate) const ALGO_UNSUPPORTED: i32 = -51;
}

/// The libssh2 session error code of `err`, or 0 for SFTP status codes.
pub(crate) fn ssh2_code(err: &ssh2::Error) -> i32 {
    match err.code() {
        ssh2::ErrorCode::Session(c) => c,
        ssh2::ErrorCode::SFTP(_) => 0,
    }
}

/// The [`ErrorKind`] for a libssh2 session error code.
pub(crate) fn ssh2_kind(err: &ssh2::Error) -> ErrorKind {
    match ssh2_code(err) {
        code::TIMEOUT | code::SOCKET_TIMEOUT => ErrorKind::Timeout,
        code::SOCKET_DISCONNECT
        | code::SOCKET_RECV
        | code::SOCKET_SEND
        | code::BANNER_RECV
        | code::BANNER_SEND => ErrorKind::Disconnected,
        code::AUTHENTICATION_FAILED | code::PUBLICKEY_UNVERIFIED => ErrorKind::Auth,
        code::FILE | code::KEYFILE_AUTH_FAILED => ErrorKind::KeyFile,
        code::CHANNEL_REQUEST_DENIED | code::REQUEST_DENIED | code::METHOD_NOT_SUPPORTED => {
            ErrorKind::Unsupported
        }
        code::KEX_FAILURE | code::KEY_EXCHANGE_FAILURE | code::PROTO | code::ALGO_UNSUPPORTED => {
            ErrorKind::Protocol
        }
        _ => ErrorKind::Other,
    }
}

impl Error {
    /// Wraps a libssh2 error with what we were doing.
    pub(crate) fn ssh(context: impl Into<String>, err: ssh2::Error) -> Self {
        Error::Ssh {
            kind: ssh2_kind(&err),
            context: context.into(),
            source: Some(Box::new(err)),
        }
    }
}

/// Maps a local I/O error kind to ours.
fn io_kind(kind: io::ErrorKind) -> ErrorKind {
    match kind {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => ErrorKind::InvalidInput,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => ErrorKind::Disconnected,
        _ => ErrorKind::Io,
    }
}

impl From<io::Error> for Error {
    /// Unwraps this crate's own error when `err` carries one (as the
    /// `io::Error`s of [`SftpReader`](crate::SftpReader) and the other
    /// handles do); any other becomes [`ErrorKind::Io`] (or the kind its
    /// `io::ErrorKind` maps to).
    fn from(err: io::Error) -> Error {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(Ok(ours)) = err.into_inner().map(|inner| inner.downcast::<Error>()) {
                return *ours;
            }
            return Error::io(
                "i/o error",
                io::Error::other("an error that could not be unwrapped"),
            );
        }
        Error::Io {
            context: "i/o error".to_string(),
            source: err,
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match err.kind() {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::PermissionDenied | ErrorKind::Auth | ErrorKind::PasswordExpired => {
                io::ErrorKind::PermissionDenied
            }
            ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::Disconnected => io::ErrorKind::ConnectionAborted,
            ErrorKind::Connect => io::ErrorKind::ConnectionRefused,
            ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::Protocol | ErrorKind::KeyFile | ErrorKind::Passphrase => {
                io::ErrorKind::InvalidData
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync_static() {
        assert_send_sync::<Error>();
        assert_send_sync::<ErrorKind>();
    }

    #[test]
    fn into_io_error_keeps_kind_and_message() {
        let err = Error::Timeout {
            operation: "ssh handshake with h:22".into(),
            timeout: Duration::from_secs(2),
        };
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            io.to_string(),
            "ssh handshake with h:22 timed out after 2.0 s"
        );
        let inner = io.into_inner().expect("inner error");
        let ours = inner.downcast::<Error>().expect("our error");
        assert_eq!(ours.kind(), ErrorKind::Timeout);
    }

    #[test]
    fn mismatch_names_both_fingerprints() {
        let err = Error::HostKeyMismatch {
            host: "sftp.partner.example".into(),
            port: 2222,
            key_type: "ssh-ed25519".into(),
            seen: "SHA256:seen".into(),
            expected: vec!["SHA256:a (pin)".into(), "SHA256:b (pin)".into()],
        };
        let text = err.to_string();
        for part in [
            "sftp.partner.example:2222",
            "ssh-ed25519 SHA256:seen",
            "SHA256:a (pin) or SHA256:b (pin)",
        ] {
            assert!(text.contains(part), "{text:?} lacks {part:?}");
        }
    }

    #[test]
    fn disconnected_names_the_causes_of_its_stage() {
        let at = |stage| {
            Error::Disconnected {
                host: "h".into(),
                port: 22,
                local: Some("10.0.0.5:40000".parse().expect("addr")),
                stage,
                source: None,
            }
            .to_string()
        };
        let ident = at(Error::STAGE_IDENTIFICATION);
        for words in [
            "identification line",
            "allow 10.0.0.5",
            "MaxStartups",
            "RetryPolicy",
        ] {
            assert!(ident.contains(words), "{ident}");
        }
        let auth = at(Error::STAGE_AUTHENTICATION);
        assert!(auth.contains("limit logins per user"), "{auth}");
        assert!(auth.contains("host key check succeeded"), "{auth}");
        assert!(!auth.contains("source-address allow-list"), "{auth}");
    }

    #[test]
    fn what_a_server_says_is_shown_on_one_line_and_cut_short() {
        assert_eq!(printable("a\n\tb\u{1b}[2J  c"), "a b[2J c");
        assert!(printable(&"x".repeat(1000)).ends_with("..."));
        assert_eq!(said_note(&[]), "");
        assert_eq!(
            said_note(&["Moving on 1 May.\n".into(), String::new()]),
            "; the server said: \"Moving on 1 May.\""
        );
    }

    #[test]
    fn agent_errors_name_the_socket_and_ssh_auth_sock() {
        let unset = Error::Agent {
            socket: None,
            from_env: true,
            reason: String::new(),
            source: None,
        };
        assert_eq!(unset.kind(), ErrorKind::Agent);
        assert!(
            unset.to_string().contains("SSH_AUTH_SOCK is not set"),
            "{unset}"
        );
        let env = Error::Agent {
            socket: Some("/run/agent.sock".into()),
            from_env: true,
            reason: "cannot connect".into(),
            source: None,
        };
        let text = env.to_string();
        assert!(text.contains("SSH_AUTH_SOCK=/run/agent.sock"), "{text}");
        assert!(text.contains("cannot connect"), "{text}");
        assert!(!text.contains("private key"), "{text}");
        let given = Error::Agent {
            socket: Some("/run/agent.sock".into()),
            from_env: false,
            reason: "cannot connect".into(),
            source: None,
        };
        assert!(given
            .to_string()
            .contains("SSH_AUTH_SOCK=/run/agent.sock ssh-add -l"));
    }

    #[test]
    fn disconnected_hints_at_allow_list_with_our_address() {
        let err = Error::Disconnected {
            host: "h".into(),
            port: 22,
            local: Some("10.0.0.5:40000".parse().expect("addr")),
            stage: Error::STAGE_HANDSHAKE,
            source: None,
        };
        let text = err.to_string();
        assert!(text.contains("allow-list"), "{text}");
        assert!(text.contains("allow 10.0.0.5"), "{text}");
        assert_eq!(err.kind(), ErrorKind::Disconnected);
    }
}
