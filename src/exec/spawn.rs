//! [`ExecChild`]: a running remote command with streaming stdin, stdout and
//! stderr.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use super::drive::{abandon, exec_error, poll_step, Collector, Ctx, Poll, Step};
use super::{free, ExitStatus, Limits};
use crate::conn::Conn;
use crate::{Error, ErrorKind, Result};

/// The channel of a spawned command, shared by the child and its streams.
struct Shared {
    /// The connection the channel lives on.
    conn: Arc<Conn>,
    command: String,
    limits: Limits,
    state: Mutex<State>,
}

struct State {
    /// `None` once the channel has been closed and freed.
    channel: Option<ssh2::Channel>,
    eof_sent: bool,
    /// Why the channel was given up, when it was (a timeout).
    failed: Option<ErrorKind>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gone(&self, state: &State) -> Error {
        let reason = match state.failed {
            Some(kind) => format!("the command was abandoned after an error ({kind})"),
            None => "the command has already been waited for".to_string(),
        };
        exec_error(
            &self.conn.target(),
            &self.command,
            ErrorKind::InvalidInput,
            reason,
            None,
        )
    }

    /// Repeats a non-blocking `op` on the channel until it gives a value or
    /// the command's deadline passes. The operation lock is held for each
    /// attempt only, not while waiting for the socket, so that a reader of
    /// stdout, a reader of stderr and a writer of stdin on other threads
    /// all make progress, and SFTP on the same session too. A timeout
    /// abandons the command (see [`fail`](Self::fail)).
    fn poll_op<T>(&self, mut op: impl FnMut(&Ctx<'_>, &mut State) -> Result<Poll<T>>) -> Result<T> {
        poll_step(
            &self.conn,
            &self.command,
            self.limits.shown(),
            self.limits.deadline,
            |ctx| op(ctx, &mut self.state()),
        )
        .map_err(|e| self.fail(e))
    }

    /// A timeout ends the command's time: its channel is closed and freed,
    /// and the error says what became of the command. Other errors are
    /// marked as those of a started command.
    fn fail(&self, err: Error) -> Error {
        if err.kind() == ErrorKind::Timeout {
            let taken = {
                let mut state = self.state();
                state.failed = Some(ErrorKind::Timeout);
                state.channel.take()
            };
            if let Some(mut channel) = taken {
                abandon(&self.conn, &self.command, &mut channel);
                free(&self.conn, channel);
            }
        }
        self.limits
            .settle(err, &self.conn.target(), &self.command, None)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut channel) = state.channel.take() {
            abandon(&self.conn, &self.command, &mut channel);
            free(&self.conn, channel);
        }
    }
}

/// A command started by [`ExecSession::spawn`](super::ExecSession::spawn):
/// write its stdin, read its stdout and stderr as they come, then
/// [`wait`](Self::wait) for how it ended.
///
/// Take the streams with [`take_stdin`](Self::take_stdin),
/// [`take_stdout`](Self::take_stdout) and [`take_stderr`](Self::take_stderr)
/// (once each); they may go to other threads. Each read or write locks the
/// session for each exchange with the server only, not while it waits, and
/// waits at most until the command's
/// [timeout](super::ExecSession::with_timeout), counted from its start,
/// runs out: then it fails with [`ErrorKind::Timeout`] (as an `io::Error` of
/// kind `TimedOut`) and the command is abandoned (its channel closed).
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
        limits: Limits,
        channel: ssh2::Channel,
    ) -> Self {
        let shared = Arc::new(Shared {
            conn,
            command,
            limits,
            state: Mutex::new(State {
                channel: Some(channel),
                eof_sent: false,
                failed: None,
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
    /// The session is not held while the command runs.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when the command does not end within its
    /// [timeout](super::ExecSession::with_timeout) (the channel is then
    /// closed); [`ErrorKind::Disconnected`] or [`ErrorKind::Protocol`] when
    /// the connection breaks.
    pub fn wait(mut self) -> Result<ExitStatus> {
        self.stdin = None;
        let shared = &self.shared;
        let mut collector = Collector::discard(shared.state().eof_sent);
        let status = shared.poll_op(|ctx, state| {
            let Some(channel) = state.channel.as_mut() else {
                return Err(shared.gone(state));
            };
            Ok(match collector.step(ctx, channel)? {
                Poll::Ready(()) => Poll::Ready(shared.limits.finish(ctx, channel)?),
                Poll::Progress => Poll::Progress,
                Poll::Blocked => Poll::Blocked,
            })
        });
        let channel = shared.state().channel.take();
        if let Some(mut channel) = channel {
            if status.is_err() {
                abandon(&shared.conn, &shared.command, &mut channel);
            }
            free(&shared.conn, channel);
        }
        status
    }
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
        self.shared.poll_op(|ctx, state| {
            let (false, Some(channel)) = (state.eof_sent, state.channel.as_mut()) else {
                return Ok(Poll::Ready(()));
            };
            Ok(match ctx.try_eof(channel)? {
                Step::Done(()) => {
                    state.eof_sent = true;
                    Poll::Ready(())
                }
                Step::Blocked => Poll::Blocked,
            })
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
        let written = self.shared.poll_op(|ctx, state| {
            Ok(match (state.eof_sent, state.channel.as_mut()) {
                (false, Some(channel)) => ready(ctx.try_write(channel, buf)?),
                _ => Poll::Ready(None),
            })
        })?;
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
    let n = shared.poll_op(|ctx, state| {
        Ok(match state.channel.as_ref() {
            Some(channel) => ready(ctx.try_read(channel, id, buf)?),
            None if state.failed.is_some() => return Err(shared.gone(state)),
            None => Poll::Ready(0),
        })
    })?;
    Ok(n)
}

/// `Some` as ready, `None` as blocked.
fn ready<T>(value: Option<T>) -> Poll<T> {
    value.map_or(Poll::Blocked, Poll::Ready)
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
