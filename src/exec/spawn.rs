//! [`ExecChild`]: a running remote command with streaming stdin, stdout and
//! stderr.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::drive::{exec_error, timed_out, Ctx};

/// Longest wait for the socket without the operation lock.
const POLL_SLICE: Duration = Duration::from_millis(20);
use super::ExitStatus;
use crate::conn::{Conn, Locked};
use crate::{Error, ErrorKind, Result};

/// The channel of a spawned command, shared by the child and its streams.
struct Shared {
    /// The connection the channel lives on.
    conn: Arc<Conn>,
    command: String,
    timeout: Duration,
    state: Mutex<State>,
}

struct State {
    /// `None` once the channel has been closed and freed.
    channel: Option<ssh2::Channel>,
    eof_sent: bool,
}

impl Shared {
    fn ctx<'a>(&'a self, ssh: &'a Locked<'a>) -> Ctx<'a> {
        Ctx {
            ssh,
            command: &self.command,
            timeout: self.timeout,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gone(&self) -> Error {
        exec_error(
            &self.conn.target(),
            &self.command,
            ErrorKind::InvalidInput,
            "the command has already been waited for",
            None,
        )
    }

    /// Runs `op` on the channel with the session's operation lock held and
    /// the session non-blocking; the deadline is one timeout from now.
    fn with_channel<T>(
        &self,
        op: impl FnOnce(&Ctx<'_>, &mut State, Instant) -> Result<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.timeout;
        let mut ssh = self.conn.lock();
        ssh.set_nonblocking();
        let ctx = self.ctx(&ssh);
        let mut state = self.state();
        op(&ctx, &mut state, deadline)
    }
}

impl Shared {
    /// Repeats a non-blocking `op` until it gives a value or the deadline
    /// (one timeout from now) passes. The operation lock is held for each
    /// attempt only, not while waiting for the socket, so that a reader of
    /// stdout, a reader of stderr and a writer of stdin on other threads
    /// all make progress.
    fn poll_op<T>(
        &self,
        mut op: impl FnMut(&Ctx<'_>, &mut State) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.timeout;
        let conn = &self.conn;
        loop {
            let dirs = {
                let mut ssh = conn.lock();
                ssh.set_nonblocking();
                let ctx = self.ctx(&ssh);
                let mut state = self.state();
                if let Some(v) = op(&ctx, &mut state)? {
                    return Ok(v);
                }
                ssh.block_directions()
            };
            // Short waits: another thread may take the data we wait for
            // off the socket and queue it for us.
            if !conn.wait_ready(dirs, deadline, POLL_SLICE) {
                return Err(timed_out(&conn.target(), &self.command, self.timeout));
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut channel) = state.channel.take() {
            let mut ssh = self.conn.lock();
            ssh.set_nonblocking();
            let ctx = Ctx {
                ssh: &ssh,
                command: &self.command,
                timeout: self.timeout,
            };
            ctx.abandon(&mut channel);
            drop(channel);
        }
    }
}

/// A command started by [`ExecSession::spawn`](super::ExecSession::spawn):
/// write its stdin, read its stdout and stderr as they come, then
/// [`wait`](Self::wait) for how it ended.
///
/// Take the streams with [`take_stdin`](Self::take_stdin),
/// [`take_stdout`](Self::take_stdout) and [`take_stderr`](Self::take_stderr)
/// (once each); they may go to other threads. Each read or write holds the
/// session for its duration and waits at most the
/// [timeout](super::ExecSession::with_timeout): a read that sees no data for
/// that long fails with [`ErrorKind::Timeout`] (as an `io::Error` of kind
/// `TimedOut`).
///
/// Output that is not read is kept in memory until [`wait`](Self::wait),
/// which discards it: read stderr too when a command may print a lot there.
///
/// Dropping the child without waiting closes the channel.
pub struct ExecChild {
    shared: Arc<Shared>,
    stdin: Option<ExecStdin>,
    stdout: Option<ExecStdout>,
    stderr: Option<ExecStderr>,
}

/// The stdin of an [`ExecChild`]: `impl Write`. Dropping it, or
/// [`close`](Self::close), sends EOF.
pub struct ExecStdin {
    shared: Arc<Shared>,
}

/// The stdout of an [`ExecChild`]: `impl Read`, 0 at the end.
pub struct ExecStdout {
    shared: Arc<Shared>,
}

/// The stderr of an [`ExecChild`]: `impl Read`, 0 at the end.
pub struct ExecStderr {
    shared: Arc<Shared>,
}

impl ExecChild {
    pub(super) fn new(
        conn: Arc<Conn>,
        command: String,
        timeout: Duration,
        channel: ssh2::Channel,
    ) -> Self {
        let shared = Arc::new(Shared {
            conn,
            command,
            timeout,
            state: Mutex::new(State {
                channel: Some(channel),
                eof_sent: false,
            }),
        });
        ExecChild {
            stdin: Some(ExecStdin {
                shared: Arc::clone(&shared),
            }),
            stdout: Some(ExecStdout {
                shared: Arc::clone(&shared),
            }),
            stderr: Some(ExecStderr {
                shared: Arc::clone(&shared),
            }),
            shared,
        }
    }

    /// The command's stdin; `None` if already taken.
    pub fn take_stdin(&mut self) -> Option<ExecStdin> {
        self.stdin.take()
    }

    /// The command's stdout; `None` if already taken.
    pub fn take_stdout(&mut self) -> Option<ExecStdout> {
        self.stdout.take()
    }

    /// The command's stderr; `None` if already taken.
    pub fn take_stderr(&mut self) -> Option<ExecStderr> {
        self.stderr.take()
    }

    /// The command line.
    pub fn command(&self) -> &str {
        &self.shared.command
    }

    /// Sends EOF on stdin (if not sent yet), discards whatever output has
    /// not been read, waits for the command to end and closes its channel.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when the command does not end within the
    /// [timeout](super::ExecSession::with_timeout) (the channel is then
    /// closed); [`ErrorKind::Disconnected`] or [`ErrorKind::Protocol`] when
    /// the connection breaks.
    pub fn wait(mut self) -> Result<ExitStatus> {
        self.stdin = None;
        self.shared.with_channel(|ctx, state, deadline| {
            let Some(mut channel) = state.channel.take() else {
                return Err(self.shared.gone());
            };
            let result = drain(ctx, &mut channel, &mut state.eof_sent, deadline);
            if result.is_err() {
                ctx.abandon(&mut channel);
            }
            drop(channel);
            result
        })
    }
}

/// Sends EOF, reads both streams to their end and closes the channel.
fn drain(
    ctx: &Ctx<'_>,
    channel: &mut ssh2::Channel,
    eof_sent: &mut bool,
    deadline: Instant,
) -> Result<ExitStatus> {
    if !*eof_sent {
        ctx.send_eof(channel, deadline)?;
        *eof_sent = true;
    }
    ctx.discard_rest(channel, deadline)?;
    ctx.finish(channel, deadline)
}

impl ExecStdin {
    /// Sends EOF: the command sees the end of its input.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`], [`ErrorKind::Disconnected`] when EOF cannot
    /// be sent.
    pub fn close(self) -> Result<()> {
        self.send_eof()
    }

    fn send_eof(&self) -> Result<()> {
        self.shared.with_channel(|ctx, state, deadline| {
            if state.eof_sent {
                return Ok(());
            }
            let Some(channel) = state.channel.as_mut() else {
                return Ok(());
            };
            ctx.send_eof(channel, deadline)?;
            state.eof_sent = true;
            Ok(())
        })
    }
}

impl Drop for ExecStdin {
    fn drop(&mut self) {
        let _ = self.send_eof();
    }
}

impl Write for ExecStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let written =
            self.shared.poll_op(
                |ctx, state| match (state.eof_sent, state.channel.as_mut()) {
                    (false, Some(channel)) => ctx.try_write(channel, buf),
                    _ => Ok(Some(None)),
                },
            )?;
        written.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the remote command no longer reads its input",
            )
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn read_stream(shared: &Shared, id: i32, buf: &mut [u8]) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    let n = shared.poll_op(|ctx, state| match state.channel.as_ref() {
        Some(channel) => ctx.try_read(channel, id, buf),
        None => Ok(Some(0)),
    })?;
    Ok(n)
}

impl Read for ExecStdout {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_stream(&self.shared, 0, buf)
    }
}

impl Read for ExecStderr {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_stream(&self.shared, 1, buf)
    }
}

macro_rules! debug_as_command {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("command", &self.shared.command)
                    .field("target", &self.shared.conn.target())
                    .finish_non_exhaustive()
            }
        }
    )*};
}
debug_as_command!(ExecChild, ExecStdin, ExecStdout, ExecStderr);
