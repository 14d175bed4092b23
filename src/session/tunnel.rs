//! Jump hosts: a `direct-tcpip` channel of one session carries another
//! session's SSH connection, as OpenSSH's `ProxyJump` does.
//!
//! libssh2 reads and writes a socket of its own, so the inner session gets
//! one end of a Unix socket pair, and a pump thread moves bytes between the
//! other end and the channel on the jump session.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
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
/// How long the pump sleeps in `poll` when nothing moves.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// Opens a channel from `jump` to `host:port` and returns the socket the
/// inner session talks through.
pub(crate) fn open(jump: &Arc<SessionInner>, host: &str, port: u16) -> Result<UnixStream> {
    let conn = jump.conn();
    let channel = {
        let ssh = conn.lock();
        ssh.session()
            .channel_direct_tcpip(host, port, None)
            .map_err(|e| Error::Ssh {
                kind: match ssh2_kind(&e) {
                    ErrorKind::Timeout | ErrorKind::Disconnected => ssh2_kind(&e),
                    _ => ErrorKind::Connect,
                },
                context: format!(
                    "jump host {} cannot open a connection to {host}:{port} \
                     (its sshd may forbid forwarding: AllowTcpForwarding)",
                    jump.target()
                ),
                source: Some(Box::new(e)),
            })?
    };
    let io_error = |e| Error::io("cannot create the jump host's socket pair", e);
    let (ours, theirs) = UnixStream::pair().map_err(io_error)?;
    theirs.set_nonblocking(true).map_err(io_error)?;
    let jump = conn;
    let target = format!("{host}:{port}");
    std::thread::Builder::new()
        .name("etl-ssh-jump".into())
        .spawn(move || {
            let mut pump = Pump {
                jump,
                channel,
                socket: theirs,
            };
            match pump.run() {
                Ok(()) => debug!("jump to {target}: tunnel closed"),
                Err(e) => debug!("jump to {target}: tunnel ended: {e}"),
            }
            pump.close();
        })
        .map_err(|e| Error::io("cannot start the jump host's pump thread", e))?;
    debug!("jump to {host}:{port}: tunnel open");
    Ok(ours)
}

struct Pump {
    /// The jump host's connection the channel lives on.
    jump: Arc<Conn>,
    channel: ssh2::Channel,
    socket: UnixStream,
}

/// Runs `op` on a non-blocking stream, `Ok(None)` for "would block".
fn nonblocking<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

impl Pump {
    fn run(&mut self) -> io::Result<()> {
        let mut down = Vec::with_capacity(CHUNK); // channel -> socket
        let mut up = Vec::with_capacity(CHUNK); // socket -> channel
        let mut buf = vec![0u8; CHUNK];
        let (mut channel_eof, mut socket_eof, mut eof_sent) = (false, false, false);
        loop {
            let mut moved = false;
            let wants_out = {
                let jump = Arc::clone(&self.jump);
                let mut ssh = jump.lock();
                ssh.set_nonblocking();
                let result = self.channel_side(
                    &mut down,
                    &mut up,
                    &mut buf,
                    &mut channel_eof,
                    socket_eof && !eof_sent,
                );
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
                // The far side is done: the inner session sees end-of-file.
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
    fn wait(&self, socket_out: bool, jump_out: bool) {
        let mut socket_events = PollFlags::IN;
        if socket_out {
            socket_events |= PollFlags::OUT;
        }
        let mut jump_events = PollFlags::IN;
        if jump_out {
            jump_events |= PollFlags::OUT;
        }
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: IDLE_WAIT.as_nanos() as i64,
        };
        let mut fds = [
            PollFd::new(&self.socket, socket_events),
            PollFd::new(self.jump.socket(), jump_events),
        ];
        // EINTR or any other failure: the loop simply looks again.
        let _ = poll(&mut fds, Some(&timeout));
    }

    fn close(&mut self) {
        let jump = Arc::clone(&self.jump);
        let ssh = jump.lock();
        ssh.cleanup(|| {
            let _ = self.channel.close();
        });
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}
