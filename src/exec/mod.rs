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

use drive::{abandon, poll_step, Collector, Ctx, Poll, PACKET_SIZE, PID_PREFIX, WINDOW_SIZE};
pub use quote::{quote, quote_args};
pub use spawn::{ExecChild, ExecStderr, ExecStdin, ExecStdout};

/// Default for [`ExecSession::with_max_output`]: 256 MiB.
pub const DEFAULT_MAX_OUTPUT: u64 = 256 * 1024 * 1024;

/// Default for [`ExecSession::with_timeout`]: one hour for each command.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60 * 60);

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
/// they are drained. Every command is bounded by its own
/// [timeout](Self::with_timeout) (an hour by default), and its output by a
/// [cap](Self::with_max_output).
///
/// A running command does not hold the session: the connection is locked
/// for each exchange with the server only, not while the command runs, so
/// SFTP transfers and other commands on the same [`Session`](crate::Session)
/// go on meanwhile (libssh2 still serialises the calls themselves).
///
/// A command that times out or loses its connection after it started may
/// have done its work: [`Error::is_transient`] is false for it, so a
/// [`RetryPolicy`](crate::RetryPolicy) does not run it twice, unless the
/// `ExecSession` is marked [idempotent](Self::with_idempotent).
///
/// `ExecSession` is `Send` and `Sync`.
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
    timeout: Option<Duration>,
    max_output: u64,
    env: Vec<(String, String)>,
    pty: bool,
    idempotent: bool,
    kill_on_timeout: bool,
}

/// How long the second channel that signals a timed-out command may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

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
            .field("idempotent", &self.idempotent)
            .field("kill_on_timeout", &self.kill_on_timeout)
            .finish()
    }
}

impl ExecSession {
    pub(crate) fn new(inner: Arc<dyn Dialer>) -> Self {
        ExecSession {
            inner,
            timeout: Some(DEFAULT_COMMAND_TIMEOUT),
            max_output: DEFAULT_MAX_OUTPUT,
            env: Vec::new(),
            pty: false,
            idempotent: false,
            kill_on_timeout: false,
        }
    }

    /// Deadline for each command, from the request to start it to its
    /// end: a command still running then is abandoned and
    /// [`ErrorKind::Timeout`] returned; the session stays usable. For
    /// [`spawn`](Self::spawn) it bounds the child's reads, writes and
    /// [`wait`](ExecChild::wait), counted from the start too. Defaults to
    /// [`DEFAULT_COMMAND_TIMEOUT`] (one hour); `None` sets no limit, for a
    /// command that may run as long as it takes. A zero duration counts as
    /// one millisecond. Opening the channel and each exchange that starts
    /// or ends a command are bounded by the session's
    /// [timeout](crate::SessionBuilder::timeout) as well.
    ///
    /// What a timeout does to the remote command: with a
    /// [PTY](Self::with_pty), closing the channel hangs up its terminal and
    /// the command gets `SIGHUP`. Without one, the command is not
    /// signalled: libssh2 (as the `ssh2` crate wraps it) refuses SSH's
    /// `signal` request on a channel whose command has started ("Channel
    /// can not be reused"), and closing the channel only closes the
    /// command's stdin, stdout and stderr, so a command that neither reads
    /// nor writes (`sleep`, a database import) runs on, unless
    /// [`with_kill_on_timeout`](Self::with_kill_on_timeout) is on. The
    /// error says which happened. Where that matters, bound the command on
    /// the server too: `timeout 600 COMMAND`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// # let session: etl_ssh::Session = todo!();
    /// let exec = session.exec()?.with_timeout(Duration::from_secs(20 * 60));
    /// exec.run("/opt/partner/bin/import /inbox/orders.csv")?;
    /// let forever = session.exec()?.with_timeout(None);
    /// # let _ = forever;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = timeout.into().map(|t| t.max(Duration::from_millis(1)));
        self
    }

    /// The deadline for each command; `None` for no limit.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Marks the commands run through this `ExecSession` as idempotent:
    /// safe to run twice (a checksum, a listing, `mkdir -p`). Then a
    /// timeout or a hang-up after the command started counts as
    /// [transient](Error::is_transient) and a
    /// [`RetryPolicy`](crate::RetryPolicy) runs the command again. Off by
    /// default: a command that may have done its work (imported a file,
    /// moved it) is not run again behind the caller's back.
    ///
    /// ```no_run
    /// use etl_ssh::RetryPolicy;
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// # let session: etl_ssh::Session = todo!();
    /// let checksum = session.exec()?.with_idempotent(true);
    /// let out = RetryPolicy::new().run("checksum", |_| {
    ///     checksum.run_args(["sha256sum", "/inbox/orders.csv"])
    /// })?;
    /// # let _ = out;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Whether the commands are marked [idempotent](Self::with_idempotent).
    pub fn idempotent(&self) -> bool {
        self.idempotent
    }

    /// Signals a command that runs past its [timeout](Self::with_timeout)
    /// (without a [PTY](Self::with_pty), which hangs it up anyway): the
    /// command is started behind a line that makes the login shell print
    /// its pid on stderr first (`printf 'etl-ssh-pid:%s\n' "$$" >&2; `,
    /// a line [`run`](Self::run) takes off again), and on a timeout a
    /// second channel runs `kill -TERM` on the command's process group
    /// (sshd makes the shell a session leader), or on the shell alone
    /// where it leads no group. The error says whether that worked. Off by
    /// default, because it changes the command line the server sees: it
    /// needs a POSIX login shell (`sh`, `bash`, `zsh`, `ksh`; not `fish`
    /// or `csh`), and a `ForceCommand` that checks
    /// `SSH_ORIGINAL_COMMAND` refuses it. For
    /// [`run`](Self::run), [`run_args`](Self::run_args) and
    /// [`run_with_input`](Self::run_with_input), not
    /// [`spawn`](Self::spawn).
    ///
    /// libssh2 cannot send SSH's own `signal` request once a command has
    /// started, which would need none of this.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// # let session: etl_ssh::Session = todo!();
    /// let exec = session
    ///     .exec()?
    ///     .with_timeout(Duration::from_secs(600))
    ///     .with_kill_on_timeout(true);
    /// exec.run("/opt/partner/bin/import /inbox/orders.csv")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_kill_on_timeout(mut self, kill: bool) -> Self {
        self.kill_on_timeout = kill;
        self
    }

    /// Whether a timed-out command is [signalled](Self::with_kill_on_timeout).
    pub fn kill_on_timeout(&self) -> bool {
        self.kill_on_timeout
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
    /// `\r\n`, and closing the channel (a [timeout](Self::with_timeout))
    /// hangs the command up: it gets `SIGHUP`. Not for binary data.
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
    ///   [timeout](Self::with_timeout) (the message says whether the
    ///   command was hung up or may still be running), or the server does
    ///   not answer within the session's timeout;
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
        let deadline = self.deadline();
        debug!("spawn on {}: {command}", self.inner.target());
        let (conn, channel) = self.start(command, command, deadline)?;
        Ok(ExecChild::new(
            conn,
            command.to_string(),
            self.limits(deadline),
            channel,
        ))
    }

    /// The command's deadline, if it has one, counted from now.
    fn deadline(&self) -> Option<Instant> {
        self.timeout.and_then(|t| Instant::now().checked_add(t))
    }

    /// The deadline of one exchange with the server: the session's
    /// timeout from now, or the command's deadline if that comes first.
    fn step_deadline(&self, conn: &Conn, deadline: Option<Instant>) -> (Instant, Duration) {
        step_deadline(conn, self.timeout, deadline)
    }

    fn ctx<'a>(&self, ssh: &'a Locked<'a>, command: &'a str, timeout: Duration) -> Ctx<'a> {
        Ctx {
            ssh,
            command,
            timeout,
        }
    }

    fn limits(&self, deadline: Option<Instant>) -> Limits {
        Limits {
            timeout: self.timeout,
            deadline,
            pty: self.pty,
            idempotent: self.idempotent,
        }
    }

    fn run_inner(&self, command: &str, input: Option<&mut dyn Read>) -> Result<ExecOutput> {
        let deadline = self.deadline();
        let limits = self.limits(deadline);
        debug!("exec on {}: {command}", self.inner.target());
        let killable = self.kill_on_timeout && !self.pty;
        let sent = match killable {
            true => format!("{PID_PREFIX}{command}"),
            false => command.to_string(),
        };
        let (conn, mut channel) = self.start(command, &sent, deadline)?;
        let mut collector = Collector::keep(input, self.max_output);
        if killable {
            collector = collector.with_pid_line();
        }
        let result = poll_step(&conn, command, limits.shown(), deadline, |ctx| {
            Ok(match collector.step(ctx, &mut channel)? {
                Poll::Ready(()) => Poll::Ready(limits.finish(ctx, &mut channel)?),
                Poll::Progress => Poll::Progress,
                Poll::Blocked => Poll::Blocked,
            })
        });
        let status = match result {
            Ok(status) => {
                free(&conn, channel);
                status
            }
            Err(e) => {
                let timed_out = e.kind() == ErrorKind::Timeout;
                let fate = (killable && timed_out).then(|| self.kill(collector.pid()));
                return Err(limits.abandon(&conn, command, channel, e, fate));
            }
        };
        let (stdout, stderr) = collector.into_output();
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
    ///
    /// `sent` is the command line sent to the server; `command` the one
    /// errors name.
    fn start(
        &self,
        command: &str,
        sent: &str,
        deadline: Option<Instant>,
    ) -> Result<(Arc<Conn>, ssh2::Channel)> {
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
        let (until, timeout) = self.step_deadline(&conn, deadline);
        let mut ssh = conn.lock();
        ssh.set_nonblocking();
        let ctx = self.ctx(&ssh, command, timeout);
        let setup = self.request(&ctx, &mut channel, until);
        let exec = setup.is_ok().then(|| {
            ctx.retry(until, "starting the command", || channel.exec(sent))
                .map_err(|e| {
                    refine(
                        e,
                        "the server refused to run commands (exec request denied): \
                         the account may be SFTP-only or otherwise restricted",
                    )
                })
        });
        drop(ssh);
        match (setup, exec) {
            (Err(e), _) => {
                abandon(&conn, command, &mut channel);
                free(&conn, channel);
                Err(e)
            }
            // Once the request to run it is sent, the command may run.
            (Ok(()), Some(Err(e))) => Err(self
                .limits(deadline)
                .abandon(&conn, command, channel, e, None)),
            _ => Ok((conn, channel)),
        }
    }

    /// Opens a session channel on `conn`, making room once if refused.
    fn open_channel(
        &self,
        conn: &Conn,
        command: &str,
        deadline: Option<Instant>,
    ) -> Result<ssh2::Channel> {
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

    fn try_open(
        &self,
        conn: &Conn,
        command: &str,
        deadline: Option<Instant>,
    ) -> Result<ssh2::Channel> {
        let (until, timeout) = self.step_deadline(conn, deadline);
        let _opening = conn.opening();
        let mut ssh = conn.lock();
        ssh.set_nonblocking();
        let ctx = self.ctx(&ssh, command, timeout);
        ctx.retry(until, "opening a session channel", || {
            ssh.session()
                .channel_open("session", WINDOW_SIZE, PACKET_SIZE, None)
        })
    }

    /// Sends SIGTERM to a timed-out command over a second channel: to its
    /// process group (`pid` leads one under sshd), else to `pid` alone.
    /// What came of it, for the timeout's message.
    fn kill(&self, pid: Option<u32>) -> String {
        let Some(pid) = pid else {
            return "; its channel was closed, but the command may still be running: its \
                    pid was not learned (the login shell did not print it: not a POSIX \
                    shell, or a ForceCommand), so it could not be signalled"
                .to_string();
        };
        let killer = ExecSession {
            inner: Arc::clone(&self.inner),
            timeout: Some(KILL_TIMEOUT),
            max_output: 64 * 1024,
            env: Vec::new(),
            pty: false,
            idempotent: false,
            kill_on_timeout: false,
        };
        let command = format!(
            "kill -TERM -- -{pid} 2>/dev/null && echo group || {{ kill -TERM {pid} && echo process; }}"
        );
        match killer.run(&command) {
            Ok(out) if out.success() => {
                let whom = match out.stdout().trim_ascii() {
                    b"group" => "its process group",
                    _ => "its shell",
                };
                format!(
                    "; its channel was closed and SIGTERM was sent to {whom} (pid {pid}) \
                     over a second channel"
                )
            }
            Ok(out) => format!(
                "; its channel was closed, but the command may still be running: `kill \
                 -TERM {pid}` over a second channel ended with {} ({})",
                out.status(),
                String::from_utf8_lossy(out.stderr()).trim()
            ),
            Err(e) => format!(
                "; its channel was closed, but the command may still be running: \
                 signalling it (pid {pid}) over a second channel failed: {e}"
            ),
        }
    }

    /// The requests before the command: environment variables, a PTY.
    fn request(&self, ctx: &Ctx<'_>, channel: &mut ssh2::Channel, until: Instant) -> Result<()> {
        for (name, value) in &self.env {
            if name.contains('\0') || value.contains('\0') {
                return Err(ctx.error(
                    ErrorKind::InvalidInput,
                    format!("environment variable {name:?} contains a NUL byte"),
                    None,
                ));
            }
            ctx.retry(until, "setting an environment variable", || {
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
            ctx.retry(until, "requesting a PTY", || {
                channel.request_pty("xterm", None, None)
            })
            .map_err(|e| {
                refine(
                    e,
                    "the server refused a PTY (sshd's PermitTTY, or no-pty in authorized_keys)",
                )
            })?;
        }
        Ok(())
    }
}

/// The deadline of one exchange with the server: the session's timeout
/// from now, or the command's deadline if that comes first; and the
/// timeout that deadline stands for, for messages.
fn step_deadline(
    conn: &Conn,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
) -> (Instant, Duration) {
    let step = Instant::now() + conn.timeout();
    match (deadline, timeout) {
        (Some(d), Some(t)) if d < step => (d, t),
        _ => (step, conn.timeout()),
    }
}

/// Frees a channel under the lock, non-blocking (a channel the server has
/// not closed yet is left to libssh2 rather than waited for).
fn free(conn: &Conn, channel: ssh2::Channel) {
    let mut ssh = conn.lock();
    ssh.set_nonblocking();
    drop(channel);
    drop(ssh);
}

/// What bounds a started command, and what its errors say.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// The command's timeout, for messages.
    timeout: Option<Duration>,
    /// When the command's time is up.
    deadline: Option<Instant>,
    /// Whether it runs on a PTY (a closed channel hangs it up).
    pty: bool,
    idempotent: bool,
}

impl Limits {
    /// The command's timeout as a message shows it (never used without a
    /// deadline).
    fn shown(&self) -> Duration {
        self.timeout.unwrap_or_default()
    }

    /// Closes the finished command's channel and reads its status, each
    /// exchange bounded by the session's timeout or the command's deadline.
    fn finish(&self, ctx: &Ctx<'_>, channel: &mut ssh2::Channel) -> Result<ExitStatus> {
        let (until, timeout) = step_deadline(ctx.ssh.conn(), self.timeout, self.deadline);
        let step = Ctx {
            ssh: ctx.ssh,
            command: ctx.command,
            timeout,
        };
        step.finish(channel, until)
    }

    /// Gives up on a started command after `err`: closes its channel and
    /// returns the error as it concerns a command that may have run.
    /// `fate` says what became of the command when that is known.
    fn abandon(
        &self,
        conn: &Conn,
        command: &str,
        mut channel: ssh2::Channel,
        err: Error,
        fate: Option<String>,
    ) -> Error {
        abandon(conn, command, &mut channel);
        free(conn, channel);
        self.settle(err, &conn.target(), command, fate)
    }

    /// `err`, marked as the error of a command that may have started and
    /// whose channel was closed; a timeout says what became of the command.
    fn settle(&self, err: Error, target: &str, command: &str, fate: Option<String>) -> Error {
        match err {
            Error::Timeout { timeout, .. } => {
                let fate = if let Some(fate) = &fate {
                    fate.as_str()
                } else if self.pty {
                    "; its channel was closed, which hangs up its terminal: \
                         the command got SIGHUP"
                } else {
                    "; its channel was closed, but the command may still be running on \
                         the server: it could not be signalled (libssh2 refuses SSH's \
                         `signal` request once a command has started) and closing the \
                         channel only closes its stdin, stdout and stderr; have it \
                         signalled with ExecSession::with_kill_on_timeout(true) or hung up \
                         with with_pty(true), or bound it on the server (`timeout 600 \
                         COMMAND`)"
                };
                Error::Exec {
                    kind: ErrorKind::Timeout,
                    command: command.to_string(),
                    target: target.to_string(),
                    reason: format!("timed out after {:.1} s{fate}", timeout.as_secs_f64()),
                    started: true,
                    idempotent: self.idempotent,
                    source: None,
                }
            }
            Error::Exec {
                kind,
                command,
                target,
                reason,
                source,
                ..
            } => Error::Exec {
                kind,
                command,
                target,
                reason,
                started: true,
                idempotent: self.idempotent,
                source,
            },
            other => other,
        }
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
            started,
            idempotent,
            source,
            ..
        } => Error::Exec {
            kind: ErrorKind::Unsupported,
            command,
            target,
            reason: reason.to_string(),
            started,
            idempotent,
            source,
        },
        other => other,
    }
}
