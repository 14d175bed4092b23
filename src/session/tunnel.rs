//! `direct-tcpip` channels pumped to a local socket: the one pump behind
//! jump hosts (a channel of one session carries another session's SSH
//! connection, as OpenSSH's `ProxyJump` does) and local port forwarding
//! ([`Session::forward_local`](crate::Session::forward_local), in
//! `forward.rs`).
//!
//! libssh2 reads and writes a socket of its own, so the far end of a
//! channel is given a local socket (a Unix socket pair for a jump host, an
//! accepted TCP connection for a forward), and a pump thread moves bytes
//! between that socket and the channel. The pump locks the connection for
//! each exchange with libssh2 only, never while it waits.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::debug;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use ssh2::BlockDirections;

use crate::conn::Conn;
use crate::error::{code, ssh2_code, ssh2_kind};
use crate::session::SessionInner;
use crate::{Error, ErrorKind, Result};

/// Bytes moved per read on either side.
const CHUNK: usize = 256 * 1024;
/// How long the pump sleeps in `poll` when nothing moves: also how soon it
/// sees that it was asked to stop, and, when another thread took the data
/// it waits for off the session's socket, how late it notices.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// Opens a channel from `jump` to `host:port` and returns the socket the
/// inner session talks through.
pub(crate) fn open(jump: &Arc<SessionInner>, host: &str, port: u16) -> Result<UnixStream> {
    let conn = jump.conn();
    let channel = open_channel(&conn, host, port, None).map_err(|e| {
        with_context(
            e,
            format!(
                "jump host {} cannot open a connection to {host}:{port} \
                 (its sshd may forbid forwarding: AllowTcpForwarding)",
                jump.target()
            ),
        )
    })?;
    let io_error = |e| Error::io("cannot create the jump host's socket pair", e);
    let (ours, theirs) = UnixStream::pair().map_err(io_error)?;
    theirs.set_nonblocking(true).map_err(io_error)?;
    let target = format!("{host}:{port}");
    spawn_pump(
        "etl-ssh-jump",
        conn,
        channel,
        theirs,
        Arc::new(AtomicBool::new(false)),
        format!("jump to {target}"),
    )
    .map_err(|e| Error::io("cannot start the jump host's pump thread", e))?;
    debug!("jump to {target}: tunnel open");
    Ok(ours)
}

/// Opens a `direct-tcpip` channel on `conn` to `host:port`, saying that
/// the connection comes from `originator` (OpenSSH logs it). Blocking,
/// under the lock and the session's timeout, and [`Conn::opening`]:
/// libssh2 keeps one channel-opening state per session, so opens must not
/// interleave.
pub(crate) fn open_channel(
    conn: &Conn,
    host: &str,
    port: u16,
    originator: Option<(&str, u16)>,
) -> Result<ssh2::Channel> {
    let _opening = conn.opening();
    let ssh = conn.lock();
    ssh.session()
        .channel_direct_tcpip(host, port, originator)
        .map_err(|e| Error::Ssh {
            kind: match ssh2_kind(&e) {
                ErrorKind::Timeout | ErrorKind::Disconnected => ssh2_kind(&e),
                _ => ErrorKind::Connect,
            },
            context: e.message().to_string(),
            source: Some(Box::new(e)),
        })
}

/// `err` (from [`open_channel`]) with `context` in front of its message.
pub(crate) fn with_context(err: Error, context: String) -> Error {
    match err {
        Error::Ssh {
            kind,
            context: detail,
            source,
        } => Error::Ssh {
            kind,
            context: format!("{context}: {detail}"),
            source,
        },
        other => other,
    }
}

/// A local socket a pump serves: it is read and written without blocking.
pub(crate) trait PumpSocket: Read + Write + AsFd + Send + 'static {
    /// Shuts down one or both directions.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

impl PumpSocket for UnixStream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        UnixStream::shutdown(self, how)
    }
}

impl PumpSocket for TcpStream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }
}

/// Starts a thread named `name` that pumps bytes between `channel` (on
/// `conn`) and `socket` (non-blocking) until both sides are done, or
/// `stop` is set; then it closes the channel and shuts the socket down.
/// `what` names the tunnel in the log.
pub(crate) fn spawn_pump<S: PumpSocket>(
    name: &str,
    conn: Arc<Conn>,
    channel: ssh2::Channel,
    socket: S,
    stop: Arc<AtomicBool>,
    what: String,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut pump = Pump {
                conn,
                channel,
                socket,
                stop,
            };
            match pump.run() {
                Ok(()) => debug!("{what}: closed"),
                Err(e) => debug!("{what}: ended: {e}"),
            }
            pump.close();
        })
}

struct Pump<S> {
    /// The connection the channel lives on.
    conn: Arc<Conn>,
    channel: ssh2::Channel,
    socket: S,
    stop: Arc<AtomicBool>,
}

/// Runs `op` on a non-blocking stream, `Ok(None)` for "would block".
fn nonblocking<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

impl<S: PumpSocket> Pump<S> {
    fn run(&mut self) -> io::Result<()> {
        let mut down = Vec::with_capacity(CHUNK); // channel -> socket
        let mut up = Vec::with_capacity(CHUNK); // socket -> channel
        let mut buf = vec![0u8; CHUNK];
        let (mut channel_eof, mut socket_eof, mut eof_sent) = (false, false, false);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let mut moved = false;
            let wants_out = {
                let conn = Arc::clone(&self.conn);
                let mut ssh = conn.lock();
                ssh.set_nonblocking();
                let result = self.channel_side(
                    &mut down,
                    &mut up,
                    &mut buf,
                    &mut channel_eof,
                    socket_eof && !eof_sent,
                );
                ssh.keepalive_tick();
                let wants_out = matches!(
                    ssh.block_directions(),
                    BlockDirections::Outbound | BlockDirections::Both
                );
                drop(ssh);
                let (progress, sent_eof) = result?;
                moved |= progress;
                eof_sent |= sent_eof;
                wants_out
            };
            if !down.is_empty() {
                if let Some(n) = nonblocking(self.socket.write(&down))? {
                    down.drain(..n);
                    moved = true;
                }
            }
            if up.is_empty() && !socket_eof {
                match nonblocking(self.socket.read(&mut buf))? {
                    Some(0) => {
                        socket_eof = true;
                        moved = true;
                    }
                    Some(n) => {
                        up.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    None => {}
                }
            }
            if channel_eof && down.is_empty() {
                // The far side is done: the local side sees end-of-file.
                let _ = self.socket.shutdown(Shutdown::Write);
                if socket_eof || eof_sent {
                    return Ok(());
                }
            }
            if socket_eof && eof_sent && channel_eof {
                return Ok(());
            }
            if !moved {
                self.wait(!down.is_empty(), wants_out);
            }
        }
    }

    /// Moves what it can between the channel and the buffers. Returns
    /// whether anything moved, and whether end-of-file was sent.
    fn channel_side(
        &mut self,
        down: &mut Vec<u8>,
        up: &mut Vec<u8>,
        buf: &mut [u8],
        channel_eof: &mut bool,
        send_eof: bool,
    ) -> io::Result<(bool, bool)> {
        let mut moved = false;
        if down.is_empty() && !*channel_eof {
            match nonblocking(self.channel.read(buf))? {
                Some(0) if self.channel.eof() => {
                    *channel_eof = true;
                    moved = true;
                }
                Some(n) => {
                    down.extend_from_slice(&buf[..n]);
                    moved |= n > 0;
                }
                None => {}
            }
        }
        if !up.is_empty() {
            if let Some(n) = nonblocking(self.channel.write(up))? {
                up.drain(..n);
                moved |= n > 0;
            }
        }
        let mut sent_eof = false;
        if send_eof && up.is_empty() {
            match self.channel.send_eof() {
                Ok(()) => sent_eof = true,
                Err(e) if ssh2_code(&e) == code::EAGAIN => {}
                Err(e) => return Err(io::Error::other(e)),
            }
            moved = true;
        }
        Ok((moved, sent_eof))
    }

    /// Sleeps until either socket is ready, or a short while.
    fn wait(&self, socket_out: bool, conn_out: bool) {
        let mut socket_events = PollFlags::IN;
        if socket_out {
            socket_events |= PollFlags::OUT;
        }
        let mut conn_events = PollFlags::IN;
        if conn_out {
            conn_events |= PollFlags::OUT;
        }
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: IDLE_WAIT.as_nanos() as i64,
        };
        let mut fds = [
            PollFd::new(&self.socket, socket_events),
            PollFd::new(self.conn.socket(), conn_events),
        ];
        // EINTR or any other failure: the loop simply looks again.
        let _ = poll(&mut fds, Some(&timeout));
    }

    /// Closes the channel (briefly waiting for the server's close) and
    /// frees it under the lock, then shuts the socket down.
    fn close(self) {
        let Pump {
            conn,
            mut channel,
            socket,
            ..
        } = self;
        let ssh = conn.lock();
        ssh.cleanup(|| {
            let _ = channel.close();
            drop(channel);
        });
        drop(ssh);
        let _ = socket.shutdown(Shutdown::Both);
    }
}
