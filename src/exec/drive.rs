//! Driving exec channels without holding the session: every step is one
//! non-blocking attempt made under the connection's [`Locked`] guard, and
//! [`poll_step`] releases the lock between attempts and while it waits for
//! the socket, so that SFTP and other commands on the same session go on
//! while a command runs. stdout, stderr and stdin are served in turn
//! ([`Collector`]), so no stream fills while we wait on another.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::conn::{Conn, Locked};
use crate::error::code::{CHANNEL_CLOSED, CHANNEL_EOF_SENT, CHANNEL_FAILURE, EAGAIN};
use crate::error::{ssh2_code, ssh2_kind, BoxError};
use crate::{Error, ErrorKind, Result};

/// Receive window of an exec channel: how much the server may send before
/// we read. libssh2's default (2 MiB) holds loopback throughput back.
pub(super) const WINDOW_SIZE: u32 = 16 * 1024 * 1024;
/// Largest data packet we accept (libssh2's default).
pub(super) const PACKET_SIZE: u32 = 32 * 1024;
/// Read buffer: libssh2 hands back what it has queued, up to this much.
pub(super) const READ_BUF: usize = 1024 * 1024;
/// How much stdin is read from the caller's reader at a time.
pub(super) const WRITE_BUF: usize = 256 * 1024;
/// How long an abandoned channel (timeout, output cap, error) waits for the
/// server to confirm the close before it is left to libssh2.
const ABANDON_GRACE: Duration = Duration::from_secs(2);
/// Longest wait for the socket without the operation lock: another thread
/// may take the data we wait for off the socket and queue it for us.
const POLL_SLICE: Duration = Duration::from_millis(20);

/// Waits until the session's socket is ready in the direction libssh2 is
/// blocked on, or `deadline` passes; false once it has passed. Called with
/// the operation lock held (by [`Ctx::retry`], for the short steps that
/// open and close a channel), so it also sends a keepalive when one is due.
fn wait_socket(ssh: &Locked<'_>, deadline: Instant) -> bool {
    ssh.keepalive_tick();
    ssh.conn()
        .wait_ready(ssh.block_directions(), deadline, Duration::from_secs(1))
}

/// One command on the locked connection, for errors and retries.
pub(super) struct Ctx<'a> {
    pub(super) ssh: &'a Locked<'a>,
    pub(super) command: &'a str,
    /// The deadline that applies (for the error message).
    pub(super) timeout: Duration,
}

/// The error of `command` on `target`, before the command started.
pub(super) fn exec_error(
    target: &str,
    command: &str,
    kind: ErrorKind,
    reason: impl Into<String>,
    source: Option<BoxError>,
) -> Error {
    Error::Exec {
        kind,
        command: command.to_string(),
        target: target.to_string(),
        reason: reason.into(),
        started: false,
        idempotent: false,
        source,
    }
}

/// `command` on `target` outlasted `timeout`.
pub(super) fn timed_out(target: &str, command: &str, timeout: Duration) -> Error {
    Error::Timeout {
        operation: format!("exec `{command}` on {target}"),
        timeout,
    }
}

/// `deadline`, or (for no deadline) a time that never comes.
fn or_never(deadline: Option<Instant>) -> Instant {
    // A century: far beyond any job, and far from Instant's limits.
    deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400))
}

/// Outcome of one non-blocking step.
pub(super) enum Step<T> {
    Done(T),
    Blocked,
}

/// What one attempt of a step in [`poll_step`] came to.
pub(super) enum Poll<T> {
    /// Finished, with this value.
    Ready(T),
    /// Moved data; try again at once (after letting others take the lock).
    Progress,
    /// Nothing can move until the socket is ready.
    Blocked,
}

/// Runs `step` on `conn`, locked and non-blocking, until it is ready. The
/// lock is released after each attempt, and a blocked step waits for the
/// socket without it (a keepalive is sent first when one is due, so a
/// quiet command keeps the connection alive). Fails with `timeout` once
/// `deadline` passes; no deadline waits as long as the step takes.
pub(super) fn poll_step<T>(
    conn: &Conn,
    command: &str,
    timeout: Duration,
    deadline: Option<Instant>,
    mut step: impl FnMut(&Ctx<'_>) -> Result<Poll<T>>,
) -> Result<T> {
    let until = or_never(deadline);
    loop {
        let dirs = {
            let mut ssh = conn.lock();
            ssh.set_nonblocking();
            let ctx = Ctx {
                ssh: &ssh,
                command,
                timeout,
            };
            match step(&ctx)? {
                Poll::Ready(v) => return Ok(v),
                Poll::Progress => None,
                Poll::Blocked => {
                    ssh.keepalive_tick();
                    Some(ssh.block_directions())
                }
            }
        };
        let in_time = match dirs {
            None => Instant::now() < until,
            Some(dirs) => conn.wait_ready(dirs, until, POLL_SLICE),
        };
        if !in_time {
            return Err(timed_out(&conn.target(), command, timeout));
        }
    }
}

/// Ends a channel we give up on (timeout, output cap, error): sends the
/// close and waits briefly for the server's, without holding the session,
/// so that it stays usable. The caller frees the channel under the lock.
/// Errors are ignored: the original one is reported.
pub(super) fn abandon(conn: &Conn, command: &str, channel: &mut ssh2::Channel) {
    let _ = poll_step(
        conn,
        command,
        ABANDON_GRACE,
        Some(Instant::now() + ABANDON_GRACE),
        |_| {
            Ok(match channel.close() {
                Err(e) if ssh2_code(&e) == EAGAIN => Poll::Blocked,
                _ => Poll::Ready(()),
            })
        },
    );
}

impl Ctx<'_> {
    pub(super) fn error(
        &self,
        kind: ErrorKind,
        reason: impl Into<String>,
        source: Option<BoxError>,
    ) -> Error {
        exec_error(
            &self.ssh.conn().target(),
            self.command,
            kind,
            reason,
            source,
        )
    }

    pub(super) fn timed_out(&self) -> Error {
        timed_out(&self.ssh.conn().target(), self.command, self.timeout)
    }

    /// Maps a libssh2 error met while doing `what`.
    pub(super) fn ssh_error(&self, what: &str, err: ssh2::Error) -> Error {
        let kind = match ssh2_kind(&err) {
            _ if ssh2_code(&err) == CHANNEL_FAILURE => ErrorKind::Unsupported,
            ErrorKind::Other => ErrorKind::Protocol,
            k => k,
        };
        if kind == ErrorKind::Timeout {
            return self.timed_out();
        }
        self.error(
            kind,
            format!("{what}: {}", err.message()),
            Some(Box::new(err)),
        )
    }

    /// Maps an `io::Error` from an `ssh2` stream: the libssh2 code is
    /// recovered from the session, since `ssh2` drops it.
    fn stream_error(&self, what: &str, err: io::Error) -> Error {
        match self.ssh.last_error() {
            Some(last) if ssh2_code(&last) != 0 => self.ssh_error(what, last),
            _ => self.error(ErrorKind::Io, format!("{what}: {err}"), Some(Box::new(err))),
        }
    }

    /// Repeats a non-blocking libssh2 call until it no longer says EAGAIN,
    /// holding the lock: for the short steps that open a channel and start
    /// or close it.
    pub(super) fn retry<T>(
        &self,
        deadline: Instant,
        what: &str,
        mut call: impl FnMut() -> std::result::Result<T, ssh2::Error>,
    ) -> Result<T> {
        loop {
            match call() {
                Ok(v) => return Ok(v),
                Err(e) if ssh2_code(&e) == EAGAIN => {
                    if !wait_socket(self.ssh, deadline) {
                        return Err(self.timed_out());
                    }
                }
                Err(e) => return Err(self.ssh_error(what, e)),
            }
        }
    }

    fn read_step(
        &self,
        stream: &mut ssh2::Stream,
        buf: &mut [u8],
        what: &str,
    ) -> Result<Step<usize>> {
        match stream.read(buf) {
            Ok(n) => Ok(Step::Done(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::Blocked),
            Err(e) => Err(self.stream_error(what, e)),
        }
    }

    /// One non-blocking read from stream `id` (0 stdout, 1 stderr): `None`
    /// when nothing is there yet, `Some(0)` at the end of the stream.
    pub(super) fn try_read(
        &self,
        channel: &ssh2::Channel,
        id: i32,
        buf: &mut [u8],
    ) -> Result<Option<usize>> {
        Ok(
            match self.read_step(&mut channel.stream(id), buf, stream_name(id))? {
                Step::Done(n) => Some(n),
                Step::Blocked => None,
            },
        )
    }

    /// One non-blocking write to stdin: `None` when the window is full,
    /// `Some(None)` when the server no longer takes input.
    pub(super) fn try_write(
        &self,
        channel: &mut ssh2::Channel,
        data: &[u8],
    ) -> Result<Option<Option<usize>>> {
        Ok(match self.write_step(channel, data)? {
            Step::Done(n) => Some(n),
            Step::Blocked => None,
        })
    }

    /// One non-blocking write to stdin. `Done(None)` when the server no
    /// longer takes input (the command ended or closed its stdin).
    fn write_step(&self, channel: &mut ssh2::Channel, data: &[u8]) -> Result<Step<Option<usize>>> {
        match channel.write(data) {
            Ok(n) => Ok(Step::Done(Some(n))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::Blocked),
            Err(e) => match self.ssh.last_error() {
                Some(last) if matches!(ssh2_code(&last), CHANNEL_CLOSED | CHANNEL_EOF_SENT) => {
                    Ok(Step::Done(None))
                }
                _ => Err(self.stream_error("writing stdin", e)),
            },
        }
    }

    /// One non-blocking attempt to send EOF on stdin (done also when the
    /// channel is closed or EOF was sent already).
    pub(super) fn try_eof(&self, channel: &mut ssh2::Channel) -> Result<Step<()>> {
        match channel.send_eof() {
            Ok(()) => Ok(Step::Done(())),
            Err(e) if ssh2_code(&e) == EAGAIN => Ok(Step::Blocked),
            Err(e) if matches!(ssh2_code(&e), CHANNEL_CLOSED | CHANNEL_EOF_SENT) => {
                Ok(Step::Done(()))
            }
            Err(e) => Err(self.ssh_error("sending EOF on stdin", e)),
        }
    }

    /// Closes the channel after the server's EOF and reads how the command
    /// ended. libssh2 reports exit status 0 until the channel has closed, so
    /// this is the only place it is read. Holds the lock: the server's
    /// close follows its EOF at once.
    pub(super) fn finish(
        &self,
        channel: &mut ssh2::Channel,
        deadline: Instant,
    ) -> Result<super::ExitStatus> {
        self.retry(deadline, "closing the channel", || channel.close())?;
        self.retry(deadline, "waiting for the channel to close", || {
            channel.wait_close()
        })?;
        let signal = channel
            .exit_signal()
            .map_err(|e| self.ssh_error("reading the exit signal", e))?;
        // libssh2 returns 0 here also when no `exit-status` message came
        // (its `exit_status_received` flag has no binding in libssh2-sys
        // 0.3.4 nor a call in ssh2 0.9.6): documented on ExitStatus::code.
        let code = channel
            .exit_status()
            .map_err(|e| self.ssh_error("reading the exit status", e))?;
        Ok(match signal.exit_signal {
            Some(name) => super::ExitStatus {
                code: None,
                signal: Some(name),
            },
            None => super::ExitStatus {
                code: Some(code),
                signal: None,
            },
        })
    }
}

fn stream_name(id: i32) -> &'static str {
    if id == 0 {
        "reading stdout"
    } else {
        "reading stderr"
    }
}

/// A command's output and input while it runs: each [`step`](Self::step)
/// reads what stdout and stderr have, writes what stdin can take, and
/// sends EOF once the input is done.
pub(super) struct Collector<'i> {
    out: Vec<u8>,
    err: Vec<u8>,
    buf: Vec<u8>,
    eof: [bool; 2],
    input: Option<&'i mut dyn Read>,
    pending: Vec<u8>,
    sent: usize,
    input_done: bool,
    eof_sent: bool,
    /// Most bytes kept, stdout and stderr together; `None` discards them.
    keep: Option<u64>,
    /// The command's pid, read off the start of stderr.
    pid: PidLine,
}

/// What a command started behind [`PID_PREFIX`] prints first on stderr,
/// before its own output: `etl-ssh-pid:<pid>`.
pub(super) const PID_MARK: &str = "etl-ssh-pid:";

/// The shell text put before a command to learn its pid: the shell that
/// sshd starts for the command prints its own pid (the command's process
/// group, since sshd makes it a session leader) on stderr.
pub(super) const PID_PREFIX: &str = "printf 'etl-ssh-pid:%s\\n' \"$$\" >&2; ";

/// The pid line at the start of stderr.
enum PidLine {
    /// Not asked for.
    Off,
    /// Held back until its end: the bytes of stderr so far.
    Pending(Vec<u8>),
    Found(u32),
    /// Stderr did not start with it (a shell that is not POSIX, a
    /// `ForceCommand`): what was held back went on as output.
    Missing,
}

impl<'i> Collector<'i> {
    /// Keeps at most `max_output` bytes of output; feeds `input`, then EOF.
    pub(super) fn keep(input: Option<&'i mut dyn Read>, max_output: u64) -> Self {
        Self::new(input, Some(max_output), false)
    }

    /// Throws the output away (what [`ExecChild::wait`](super::ExecChild::wait)
    /// did not read); sends EOF unless `eof_sent`.
    pub(super) fn discard(eof_sent: bool) -> Self {
        Self::new(None, None, eof_sent)
    }

    fn new(input: Option<&'i mut dyn Read>, keep: Option<u64>, eof_sent: bool) -> Self {
        Collector {
            out: Vec::new(),
            err: Vec::new(),
            buf: vec![0u8; READ_BUF],
            eof: [false, false],
            input_done: input.is_none(),
            input,
            pending: Vec::new(),
            sent: 0,
            eof_sent,
            keep,
            pid: PidLine::Off,
        }
    }

    /// Reads the command's pid off the start of stderr, for a command
    /// started behind [`PID_PREFIX`]; the line is not part of the output.
    pub(super) fn with_pid_line(mut self) -> Self {
        self.pid = PidLine::Pending(Vec::new());
        self
    }

    /// The command's pid, once read.
    pub(super) fn pid(&self) -> Option<u32> {
        match self.pid {
            PidLine::Found(pid) => Some(pid),
            _ => None,
        }
    }

    /// stdout and stderr as collected.
    pub(super) fn into_output(self) -> (Vec<u8>, Vec<u8>) {
        (self.out, self.err)
    }

    /// Appends to stderr what the command wrote there, holding back the
    /// pid line; `at_end` when stderr ended.
    fn stderr(&mut self, data: &[u8], at_end: bool) {
        let PidLine::Pending(held) = &mut self.pid else {
            self.err.extend_from_slice(data);
            return;
        };
        held.extend_from_slice(data);
        let line_end = held.iter().position(|&b| b == b'\n');
        if line_end.is_none() && !at_end && held.len() <= PID_MARK.len() + 20 {
            return;
        }
        let held = std::mem::take(held);
        let pid = line_end.and_then(|end| {
            std::str::from_utf8(&held[..end])
                .ok()?
                .strip_prefix(PID_MARK)?
                .parse::<u32>()
                .ok()
                .map(|pid| (pid, end))
        });
        match pid {
            Some((pid, end)) => {
                self.pid = PidLine::Found(pid);
                self.err.extend_from_slice(&held[end + 1..]);
            }
            None => {
                self.pid = PidLine::Missing;
                self.err.extend_from_slice(&held);
            }
        }
    }

    /// One pass over the streams: `Ready` once both are at their end.
    pub(super) fn step(&mut self, ctx: &Ctx<'_>, channel: &mut ssh2::Channel) -> Result<Poll<()>> {
        let mut progress = false;
        for id in 0..2 {
            if self.eof[id] {
                continue;
            }
            let mut stream = channel.stream(id as i32);
            match ctx.read_step(&mut stream, &mut self.buf, stream_name(id as i32))? {
                Step::Done(0) => {
                    self.eof[id] = true;
                    progress = true;
                    if id == 1 {
                        self.stderr(&[], true);
                    }
                }
                Step::Done(n) => {
                    progress = true;
                    let Some(max_output) = self.keep else {
                        continue;
                    };
                    if (self.out.len() + self.err.len() + n) as u64 > max_output {
                        return Err(ctx.error(
                            ErrorKind::LimitExceeded,
                            format!(
                                "the output passed the cap of {max_output} bytes \
                                 (stdout and stderr together); raise it with \
                                 ExecSession::with_max_output, or stream it with \
                                 ExecSession::spawn"
                            ),
                            None,
                        ));
                    }
                    if id == 0 {
                        self.out.extend_from_slice(&self.buf[..n]);
                    } else {
                        let chunk = std::mem::take(&mut self.buf);
                        self.stderr(&chunk[..n], false);
                        self.buf = chunk;
                    }
                }
                Step::Blocked => {}
            }
        }
        if !self.eof_sent {
            progress |= self.feed(ctx, channel)?;
        }
        Ok(if self.eof[0] && self.eof[1] {
            Poll::Ready(())
        } else if progress {
            Poll::Progress
        } else {
            Poll::Blocked
        })
    }

    /// Writes what stdin can take (reading more from the input when the
    /// last chunk is gone), then EOF. Whether anything moved.
    fn feed(&mut self, ctx: &Ctx<'_>, channel: &mut ssh2::Channel) -> Result<bool> {
        let mut progress = false;
        if let (false, Some(reader)) = (self.input_done, self.input.as_mut()) {
            if self.sent == self.pending.len() {
                self.pending.resize(WRITE_BUF, 0);
                let n = loop {
                    match reader.read(&mut self.pending) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(Error::io(
                                format!(
                                    "reading the input for `{}` on {}",
                                    ctx.command,
                                    ctx.ssh.conn().target()
                                ),
                                e,
                            ))
                        }
                    }
                };
                self.pending.truncate(n);
                self.sent = 0;
                self.input_done = n == 0;
                progress = true;
            }
        }
        if self.sent < self.pending.len() {
            match ctx.write_step(channel, &self.pending[self.sent..])? {
                Step::Done(Some(n)) => {
                    self.sent += n;
                    progress |= n > 0;
                }
                // The command no longer reads: drop the rest, as a shell
                // pipeline does on EPIPE.
                Step::Done(None) => {
                    self.pending.clear();
                    self.sent = 0;
                    self.input_done = true;
                    self.eof_sent = true;
                    progress = true;
                }
                Step::Blocked => {}
            }
        } else if self.input_done {
            if let Step::Done(()) = ctx.try_eof(channel)? {
                self.eof_sent = true;
                progress = true;
            }
        }
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` to stderr, then its end: the pid and what stays.
    fn pid_line(chunks: &[&[u8]]) -> (Option<u32>, Vec<u8>) {
        let mut c = Collector::keep(None, 1 << 20).with_pid_line();
        for chunk in chunks {
            c.stderr(chunk, false);
        }
        c.stderr(&[], true);
        (c.pid(), c.into_output().1)
    }

    #[test]
    fn the_pid_line_is_taken_off_stderr() {
        assert_eq!(pid_line(&[b"etl-ssh-pid:42\n"]), (Some(42), vec![]));
        assert_eq!(
            pid_line(&[b"etl-ssh-", b"pid:4", b"2\nerr\n", b"more"]),
            (Some(42), b"err\nmore".to_vec())
        );
        // Not there: everything is output, in order.
        assert_eq!(pid_line(&[b"hello\n", b"x"]), (None, b"hello\nx".to_vec()));
        assert_eq!(
            pid_line(&[b"etl-ssh-pid:"]),
            (None, b"etl-ssh-pid:".to_vec())
        );
        assert_eq!(
            pid_line(&[b"etl-ssh-pid:12x\n"]),
            (None, b"etl-ssh-pid:12x\n".to_vec())
        );
        // A long first line is not held back for ever.
        let long = vec![b'a'; 100];
        let mut c = Collector::keep(None, 1 << 20).with_pid_line();
        c.stderr(&long, false);
        assert_eq!(c.into_output().1, long);
        // Off: stderr as it comes.
        let mut c = Collector::keep(None, 1 << 20);
        c.stderr(b"etl-ssh-pid:1\n", false);
        assert_eq!(c.pid(), None);
        assert_eq!(c.into_output().1, b"etl-ssh-pid:1\n");
    }
}
