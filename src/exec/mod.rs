//! [`ExecSession`]: remote commands over SSH exec, with their output
//! ([`ExecOutput`]) and how they ended ([`ExitStatus`]).

mod drive;
mod quote;
mod spawn;

use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;

use crate::conn::{Conn, Dialer, Locked};
use crate::error::channel_refused;
use crate::{Error, ErrorKind, Result};

use drive::{Ctx, PACKET_SIZE, WINDOW_SIZE};
pub use quote::{quote, quote_args};
pub use spawn::{ExecChild, ExecStderr, ExecStdin, ExecStdout};

/// Default for [`ExecSession::with_max_output`]: 256 MiB.
pub const DEFAULT_MAX_OUTPUT: u64 = 256 * 1024 * 1024;

/// Runs commands on the server, each on its own SSH channel.
///
/// Made by [`Session::exec`](crate::Session::exec). Cheap to clone: clones
/// share the connection, each with its own settings. A command is whatever
/// the server's login shell makes of the string (sshd runs `$SHELL -c
/// COMMAND`); build it from arguments with [`run_args`](Self::run_args) or
/// [`quote`](crate::quote) so that no file name can change it.
///
/// stdout and stderr are drained together, so a command that fills one of
/// them while we wait for the other never deadlocks; stdin is written while
/// they are drained. Every command is bounded by a
/// [timeout](Self::with_timeout) and its output by a
/// [cap](Self::with_max_output).
///
/// `ExecSession` is `Send` and `Sync`. Commands on one session run one
/// after the other (libssh2 serialises every call on a session).
///
/// ```no_run
/// # fn main() -> Result<(), etl_ssh::Error> {
/// # let session: etl_ssh::Session = todo!();
/// let exec = session.exec()?;
/// let out = exec.run_args(["sha256sum", "/inbox/orders 2026.csv"])?;
/// if out.success() {
///     println!("{}", String::from_utf8_lossy(out.stdout()));
/// } else {
///     eprintln!("{}: {}", out.status(), String::from_utf8_lossy(out.stderr()));
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ExecSession {
    inner: Arc<dyn Dialer>,
    timeout: Duration,
    max_output: u64,
    env: Vec<(String, String)>,
    pty: bool,
}

/// What a command printed and how it ended.
#[derive(Clone, PartialEq, Eq)]
pub struct ExecOutput {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: ExitStatus,
}

/// How a remote command ended: an exit code, or the signal that killed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    code: Option<i32>,
    signal: Option<String>,
}

impl ExitStatus {
    /// The exit code; `None` when the command was killed by a signal.
    ///
    /// **Limitation**: a server that closes the channel without sending an
    /// `exit-status` or `exit-signal` message reads as `Some(0)`, not
    /// `None`. OpenSSH's `sshd` always sends one when the command ends, but
    /// it does not when it closes a channel for its own reasons (a
    /// `ChannelTimeout`, some `ForceCommand` wrappers, appliances that drop
    /// the message), and then the remote command may still be running or
    /// may have failed. libssh2's `libssh2_channel_get_exit_status` returns
    /// 0 in both cases, and the `ssh2` crate (0.9.6) offers no call that
    /// tells "no status" from "status 0" (OpenSSH's `ssh` reports 255 there,
    /// paramiko -1). Where that matters, have the command print a marker
    /// on success (`cmd && echo ETL-OK`) and check [`ExecOutput::stdout`].
    pub fn code(&self) -> Option<i32> {
        self.code
    }

    /// The name of the signal that killed the command, without `SIG`
    /// (`"TERM"`, `"KILL"`), as the server reported it.
    pub fn signal(&self) -> Option<&str> {
        self.signal.as_deref()
    }

    /// Exit code 0. See [`ExitStatus::code`]: a server that sends no exit
    /// status at all also reads as success here.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.signal, self.code) {
            (Some(sig), _) => write!(f, "killed by signal {sig}"),
            (None, Some(code)) => write!(f, "exit code {code}"),
            (None, None) => f.write_str("no exit status"),
        }
    }
}

impl ExecOutput {
    /// Everything the command wrote to stdout, byte for byte.
    pub fn stdout(&self) -> &[u8] {
        &self.stdout
    }

    /// Everything the command wrote to stderr, byte for byte (empty with a
    /// [PTY](ExecSession::with_pty), which merges it into stdout).
    pub fn stderr(&self) -> &[u8] {
        &self.stderr
    }

    /// The exit code; `None` when the command was killed by a signal. A
    /// server that sends no exit status reads as `Some(0)` (see
    /// [`ExitStatus::code`]).
    pub fn exit_code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The signal that killed the command (`"TERM"`), if one did.
    pub fn exit_signal(&self) -> Option<&str> {
        self.status.signal()
    }

    /// Exit code 0.
    ///
    /// **Limitation**: a server that closes the channel without sending any
    /// exit status also reads as success (exit code `Some(0)`), because
    /// libssh2 as wrapped by `ssh2` 0.9.6 cannot tell the two apart; see
    /// [`ExitStatus::code`].
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// How the command ended.
    pub fn status(&self) -> &ExitStatus {
        &self.status
    }

    /// Takes stdout without copying it.
    pub fn into_stdout(self) -> Vec<u8> {
        self.stdout
    }

    /// Takes stdout and stderr without copying them.
    pub fn into_parts(self) -> (Vec<u8>, Vec<u8>, ExitStatus) {
        (self.stdout, self.stderr, self.status)
    }
}

impl fmt::Debug for ExecOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecOutput")
            .field("status", &self.status)
            .field("stdout", &Shown(&self.stdout))
            .field("stderr", &Shown(&self.stderr))
            .finish()
    }
}

/// Output in `Debug`: the length and the start, lossily decoded.
struct Shown<'a>(&'a [u8]);

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 200;
        let head = String::from_utf8_lossy(&self.0[..self.0.len().min(SHOWN)]);
        if self.0.len() > SHOWN {
            write!(f, "{head:?}... ({} bytes)", self.0.len())
        } else {
            write!(f, "{head:?}")
        }
    }
}

impl fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecSession")
            .field("target", &self.inner.target())
            .field("timeout", &self.timeout)
            .field("max_output", &self.max_output)
            // Values may be secrets: names only.
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .field("pty", &self.pty)
            .finish()
    }
}

impl ExecSession {
    pub(crate) fn new(inner: Arc<dyn Dialer>) -> Self {
        let timeout = inner.current().timeout();
        ExecSession {
            inner,
            timeout,
            max_output: DEFAULT_MAX_OUTPUT,
            env: Vec::new(),
            pty: false,
        }
    }

    /// Deadline for each command, from the channel's opening to its close:
    /// a command still running then is abandoned (its channel closed) and
    /// [`ErrorKind::Timeout`] returned; the session stays usable. Defaults
    /// to the session's [timeout](crate::SessionBuilder::timeout). A zero
    /// duration counts as one millisecond.
    ///
    /// Closing the channel does not kill a command without a PTY: sshd
    /// closes its stdin, stdout and stderr, and a command that neither reads
    /// nor writes (`sleep`) runs on. Use `timeout 30 COMMAND` on the server
    /// where that matters.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The deadline for each command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Most bytes [`run`](Self::run) keeps, stdout and stderr together.
    /// A command that prints more fails with an error (its channel is
    /// closed at that point) rather than a silently truncated output;
    /// stream large output with [`spawn`](Self::spawn). Defaults to
    /// [`DEFAULT_MAX_OUTPUT`] (256 MiB).
    pub fn with_max_output(mut self, bytes: u64) -> Self {
        self.max_output = bytes;
        self
    }

    /// The output cap of [`run`](Self::run).
    pub fn max_output(&self) -> u64 {
        self.max_output
    }

    /// Asks the server to set an environment variable for each command.
    ///
    /// OpenSSH's sshd accepts only the names its `AcceptEnv` lists (none by
    /// default), so this often fails with [`ErrorKind::Unsupported`]. The
    /// portable way is the command line itself:
    /// `format!("LANG=C {}", quote_args(["sort", path]))`, with the value
    /// [`quote`](crate::quote)d.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs each command on a pseudo-terminal (`xterm`, 80x24). Off by
    /// default. With a PTY stderr is merged into stdout, line ends become
    /// `\r\n`, and closing the channel (a timeout) hangs the command up.
    /// Not for binary data.
    pub fn with_pty(mut self, pty: bool) -> Self {
        self.pty = pty;
        self
    }

    /// Runs `command` with no input (stdin at EOF at once) and collects what
    /// it prints.
    ///
    /// A command that fails is not an error: look at
    /// [`ExecOutput::success`] and [`ExecOutput::exit_code`] (`127` when the
    /// shell cannot find it).
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Timeout`] when the command runs past its
    ///   [timeout](Self::with_timeout);
    /// - [`ErrorKind::LimitExceeded`] when its output passes the
    ///   [cap](Self::with_max_output);
    /// - [`ErrorKind::Unsupported`] when the server refuses the channel, the
    ///   command, an environment variable or the PTY, and for an SFTP-only
    ///   account (OpenSSH's `ForceCommand internal-sftp`, which accepts the
    ///   command but answers "This service allows sftp connections only.");
    /// - [`ErrorKind::InvalidInput`] when `command` contains a NUL byte;
    /// - [`ErrorKind::Disconnected`] or [`ErrorKind::Protocol`] when the
    ///   connection breaks.
    pub fn run(&self, command: &str) -> Result<ExecOutput> {
        self.run_inner(command, None)
    }

    /// Like [`run`](Self::run), with each argument [`quote`](crate::quote)d
    /// for a POSIX shell: `["sha256sum", path]` runs `sha256sum` on exactly
    /// `path`, whatever spaces, quotes, `$`, backticks or newlines it holds.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run); [`ErrorKind::InvalidInput`] without arguments.
    pub fn run_args<I, S>(&self, args: I) -> Result<ExecOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let command = quote_args(args);
        if command.is_empty() {
            return Err(Error::invalid("command", "no arguments: name a program"));
        }
        self.run(&command)
    }

    /// Like [`run`](Self::run), feeding `input` to the command's stdin (then
    /// EOF). `input` is any reader: `&b"bytes"[..]`, a `File`. It is read
    /// in chunks and written while the output is drained, so neither side
    /// is held in memory twice and a command like `cat` cannot deadlock.
    ///
    /// A command that exits without reading all its input is not an error:
    /// the rest is dropped, as in a shell pipeline.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run); [`ErrorKind::Io`] (or the kind of the local
    /// error) when `input` fails.
    pub fn run_with_input(&self, command: &str, mut input: impl Read) -> Result<ExecOutput> {
        self.run_inner(command, Some(&mut input))
    }

    /// Starts `command` and returns at once with a handle to stream its
    /// stdin, stdout and stderr and [`wait`](ExecChild::wait) for it: for
    /// input or output too large to hold in memory.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let session: etl_ssh::Session = todo!();
    /// let exec = session.exec()?;
    /// let mut child = exec.spawn("gzip -c /outbox/big.csv")?;
    /// let mut stdout = child.take_stdout().expect("stdout");
    /// let mut file = std::fs::File::create("big.csv.gz")?;
    /// std::io::copy(&mut stdout, &mut file)?;
    /// let status = child.wait()?;
    /// assert!(status.success(), "{status}");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run) for starting the command; the handle's reads,
    /// writes and `wait` report their own.
    pub fn spawn(&self, command: &str) -> Result<ExecChild> {
        let deadline = Instant::now() + self.timeout;
        debug!("spawn on {}: {command}", self.inner.target());
        let (conn, channel) = self.start(command, deadline)?;
        Ok(ExecChild::new(
            conn,
            command.to_string(),
            self.timeout,
            channel,
        ))
    }

    fn ctx<'a>(&self, ssh: &'a Locked<'a>, command: &'a str) -> Ctx<'a> {
        Ctx {
            ssh,
            command,
            timeout: self.timeout,
        }
    }

    fn run_inner(&self, command: &str, input: Option<&mut dyn Read>) -> Result<ExecOutput> {
        let deadline = Instant::now() + self.timeout;
        debug!("exec on {}: {command}", self.inner.target());
        let (conn, mut channel) = self.start(command, deadline)?;
        let mut ssh = conn.lock();
        ssh.set_nonblocking();
        let result = {
            let ctx = self.ctx(&ssh, command);
            let result = ctx.collect(&mut channel, input, deadline, self.max_output);
            if result.is_err() {
                ctx.abandon(&mut channel);
            }
            result
        };
        // `channel` is freed before the lock (blocking mode is restored then).
        drop(channel);
        drop(ssh);
        let (stdout, stderr, status) = result?;
        if sftp_only(&stdout, &stderr, &status) {
            return Err(drive::exec_error(
                &self.inner.target(),
                command,
                ErrorKind::Unsupported,
                "the account is SFTP-only: the server runs internal-sftp instead of \
                 any command (sshd's ForceCommand internal-sftp) and answered \
                 \"This service allows sftp connections only.\"; use Session::sftp",
                None,
            ));
        }
        debug!("exec on {}: {status}", self.inner.target());
        Ok(ExecOutput {
            stdout,
            stderr,
            status,
        })
    }

    /// Opens a channel and starts `command` on it (environment, PTY,
    /// exec), on the session's connection, or on a new one when the server
    /// ended it (servers that allow one channel per connection do). A
    /// channel the server refuses (its `MaxSessions`) is asked for once
    /// more after an idle SFTP channel of this connection was closed to
    /// make room. Nothing is retried once the command may have started.
    fn start(&self, command: &str, deadline: Instant) -> Result<(Arc<Conn>, ssh2::Channel)> {
        if command.contains('\0') {
            return Err(drive::exec_error(
                &self.inner.target(),
                command,
                ErrorKind::InvalidInput,
                "the command contains a NUL byte",
                None,
            ));
        }
        let mut conn = self.inner.current();
        let mut channel = match self.open_channel(&conn, command, deadline) {
            Err(e) if e.kind() == ErrorKind::Disconnected => {
                conn = self.inner.redial(&conn)?;
                self.open_channel(&conn, command, deadline)?
            }
            other => other?,
        };
        let mut ssh = conn.lock();
        ssh.set_nonblocking();
        let ctx = self.ctx(&ssh, command);
        let started = self.request(&ctx, &mut channel, deadline);
        if let Err(e) = started {
            ctx.abandon(&mut channel);
            drop(channel);
            return Err(e);
        }
        drop(ssh);
        Ok((conn, channel))
    }

    /// Opens a session channel on `conn`, making room once if refused.
    fn open_channel(&self, conn: &Conn, command: &str, deadline: Instant) -> Result<ssh2::Channel> {
        conn.open_with_room(|| self.try_open(conn, command, deadline), channel_refused)
            .map_err(|e| {
                refine(
                    e,
                    "the server refused to open another channel: it may limit channels per \
                 connection (sshd's MaxSessions; this connection's other channels are busy), \
                 allow one channel per connection, or not allow sessions for this account",
                )
            })
    }

    fn try_open(&self, conn: &Conn, command: &str, deadline: Instant) -> Result<ssh2::Channel> {
        let mut ssh = conn.lock();
        ssh.set_nonblocking();
        let ctx = self.ctx(&ssh, command);
        ctx.retry(deadline, "opening a session channel", || {
            ssh.session()
                .channel_open("session", WINDOW_SIZE, PACKET_SIZE, None)
        })
    }

    fn request(&self, ctx: &Ctx<'_>, channel: &mut ssh2::Channel, deadline: Instant) -> Result<()> {
        for (name, value) in &self.env {
            if name.contains('\0') || value.contains('\0') {
                return Err(ctx.error(
                    ErrorKind::InvalidInput,
                    format!("environment variable {name:?} contains a NUL byte"),
                    None,
                ));
            }
            ctx.retry(deadline, "setting an environment variable", || {
                channel.setenv(name, value)
            })
            .map_err(|e| {
                refine(
                    e,
                    &format!(
                        "the server refused to set environment variable {name} \
                         (sshd accepts only the names in its AcceptEnv); put it on the \
                         command line instead: {name}=VALUE COMMAND, the value quoted \
                         with etl_ssh::quote"
                    ),
                )
            })?;
        }
        if self.pty {
            ctx.retry(deadline, "requesting a PTY", || {
                channel.request_pty("xterm", None, None)
            })
            .map_err(|e| {
                refine(
                    e,
                    "the server refused a PTY (sshd's PermitTTY, or no-pty in authorized_keys)",
                )
            })?;
        }
        ctx.retry(deadline, "starting the command", || channel.exec(ctx.command))
            .map_err(|e| refine(e, "the server refused to run commands (exec request denied): the account may be SFTP-only or otherwise restricted"))
    }
}

/// What OpenSSH's sshd does with an exec request under `ForceCommand
/// internal-sftp`: it accepts the request, prints this line on the
/// command's stdout and exits 1.
fn sftp_only(stdout: &[u8], stderr: &[u8], status: &ExitStatus) -> bool {
    const SFTP_ONLY: &[u8] = b"This service allows sftp connections only.";
    status.code == Some(1) && stderr.is_empty() && stdout.trim_ascii_end() == SFTP_ONLY
}

/// Replaces the reason of an [`ErrorKind::Unsupported`] exec error with
/// one that says what the refusal means.
fn refine(err: Error, reason: &str) -> Error {
    match err {
        Error::Exec {
            kind: ErrorKind::Unsupported,
            command,
            target,
            source,
            ..
        } => Error::Exec {
            kind: ErrorKind::Unsupported,
            command,
            target,
            reason: reason.to_string(),
            source,
        },
        other => other,
    }
}
