//! Driving one exec channel without blocking: stdout, stderr and stdin are
//! served in turn, and the socket is polled only when none of them can make
//! progress. The caller holds the connection's [`Locked`] guard, switched
//! to non-blocking mode, for as long as this code calls libssh2.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::conn::Locked;
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

/// Waits until the session's socket is ready in the direction libssh2 is
/// blocked on, or `deadline` passes; false once it has passed.
///
/// Called with the operation lock held, so it also sends a keepalive when
/// one is due: a quiet command (a long `sleep`, a slow import) still keeps
/// the connection alive.
pub(super) fn wait_socket(ssh: &Locked<'_>, deadline: Instant) -> bool {
    ssh.keepalive_tick();
    ssh.conn()
        .wait_ready(ssh.block_directions(), deadline, Duration::from_secs(1))
}

/// One command on the locked connection, for errors and retries.
pub(super) struct Ctx<'a> {
    pub(super) ssh: &'a Locked<'a>,
    pub(super) command: &'a str,
    /// The command's deadline (for the error message).
    pub(super) timeout: Duration,
}

/// The error of `command` on `target`.
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

/// Outcome of one non-blocking step.
enum Step<T> {
    Done(T),
    Blocked,
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

    /// Repeats a non-blocking libssh2 call until it no longer says EAGAIN.
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
        let what = if id == 0 {
            "reading stdout"
        } else {
            "reading stderr"
        };
        Ok(match self.read_step(&mut channel.stream(id), buf, what)? {
            Step::Done(n) => Some(n),
            Step::Blocked => None,
        })
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

    /// Sends EOF on stdin.
    pub(super) fn send_eof(&self, channel: &mut ssh2::Channel, deadline: Instant) -> Result<()> {
        match self.retry(deadline, "sending EOF on stdin", || channel.send_eof()) {
            Err(Error::Exec {
                source: Some(s), ..
            }) if s
                .downcast_ref::<ssh2::Error>()
                .is_some_and(|e| matches!(ssh2_code(e), CHANNEL_CLOSED | CHANNEL_EOF_SENT)) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Closes the channel after the server's EOF and reads how the command
    /// ended. libssh2 reports exit status 0 until the channel has closed, so
    /// this is the only place it is read.
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

    /// Ends a channel we give up on (timeout, output cap, error): sends the
    /// close and waits briefly for the server's, so that the session stays
    /// usable. Errors are ignored: the original one is reported.
    pub(super) fn abandon(&self, channel: &mut ssh2::Channel) {
        let grace = Instant::now() + ABANDON_GRACE;
        let _ = self.retry(grace, "closing the channel", || channel.close());
    }

    /// Reads both streams to their end, throwing the data away.
    pub(super) fn discard_rest(&self, channel: &ssh2::Channel, deadline: Instant) -> Result<()> {
        let mut buf = vec![0u8; READ_BUF];
        let mut streams = [channel.stream(0), channel.stream(1)];
        let mut eof = [false, false];
        while !(eof[0] && eof[1]) {
            let mut progress = false;
            for id in 0..2 {
                if !eof[id] {
                    if let Step::Done(n) =
                        self.read_step(&mut streams[id], &mut buf, "reading output")?
                    {
                        eof[id] = n == 0;
                        progress = true;
                    }
                }
            }
            if !progress && !wait_socket(self.ssh, deadline) {
                return Err(self.timed_out());
            }
        }
        Ok(())
    }

    /// Runs the started command to its end: feeds `input` (then EOF) while
    /// draining stdout and stderr together, at most `max_output` bytes of
    /// them in all.
    pub(super) fn collect(
        &self,
        channel: &mut ssh2::Channel,
        mut input: Option<&mut dyn Read>,
        deadline: Instant,
        max_output: u64,
    ) -> Result<(Vec<u8>, Vec<u8>, super::ExitStatus)> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut buf = vec![0u8; READ_BUF];
        let mut streams = [channel.stream(0), channel.stream(1)];
        let mut eof = [false, false];
        let mut pending: Vec<u8> = Vec::new();
        let mut sent = 0usize;
        let mut input_done = input.is_none();
        let mut eof_sent = false;

        while !(eof[0] && eof[1]) {
            let mut progress = false;
            for id in 0..2 {
                if eof[id] {
                    continue;
                }
                let what = if id == 0 {
                    "reading stdout"
                } else {
                    "reading stderr"
                };
                match self.read_step(&mut streams[id], &mut buf, what)? {
                    Step::Done(0) => {
                        eof[id] = true;
                        progress = true;
                    }
                    Step::Done(n) => {
                        if (out.len() + err.len() + n) as u64 > max_output {
                            return Err(self.error(
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
                        let sink = if id == 0 { &mut out } else { &mut err };
                        sink.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Step::Blocked => {}
                }
            }
            if !eof_sent {
                if let (false, Some(reader)) = (input_done, input.as_mut()) {
                    if sent == pending.len() {
                        pending.resize(WRITE_BUF, 0);
                        let n = loop {
                            match reader.read(&mut pending) {
                                Ok(n) => break n,
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                                Err(e) => {
                                    return Err(Error::io(
                                        format!(
                                            "reading the input for `{}` on {}",
                                            self.command,
                                            self.ssh.conn().target()
                                        ),
                                        e,
                                    ))
                                }
                            }
                        };
                        pending.truncate(n);
                        sent = 0;
                        input_done = n == 0;
                        progress = true;
                    }
                }
                if sent < pending.len() {
                    match self.write_step(channel, &pending[sent..])? {
                        Step::Done(Some(n)) => {
                            sent += n;
                            progress |= n > 0;
                        }
                        // The command no longer reads: drop the rest, as a
                        // shell pipeline does on EPIPE.
                        Step::Done(None) => {
                            pending.clear();
                            sent = 0;
                            input_done = true;
                            eof_sent = true;
                            progress = true;
                        }
                        Step::Blocked => {}
                    }
                } else if input_done {
                    match channel.send_eof() {
                        Ok(()) => {
                            eof_sent = true;
                            progress = true;
                        }
                        Err(e) if ssh2_code(&e) == EAGAIN => {}
                        Err(e) if matches!(ssh2_code(&e), CHANNEL_CLOSED | CHANNEL_EOF_SENT) => {
                            eof_sent = true;
                        }
                        Err(e) => return Err(self.ssh_error("sending EOF on stdin", e)),
                    }
                }
            }
            if progress {
                if Instant::now() >= deadline {
                    return Err(self.timed_out());
                }
            } else if !wait_socket(self.ssh, deadline) {
                return Err(self.timed_out());
            }
        }
        let status = self.finish(channel, deadline)?;
        Ok((out, err, status))
    }
}
