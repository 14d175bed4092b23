//! Local port forwarding: [`Tunnel`], made by
//! [`Session::forward_local`](crate::Session::forward_local).
//!
//! A listener on our side; each connection it accepts gets a
//! `direct-tcpip` channel to the remote target, pumped by the pump of
//! `tunnel.rs` on a thread of its own. An acceptor thread serves the
//! listener until the [`Tunnel`] is dropped, then stops the pumps and
//! waits for them.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use log::{debug, warn};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::tunnel::{open_channel, spawn_pump, with_context};
use crate::conn::{Conn, Dialer};
use crate::{Error, ErrorKind, Result};

/// Most connections a [`Tunnel`] serves at once; more wait in the
/// listener's queue until one ends.
pub const MAX_TUNNEL_CONNECTIONS: usize = 32;

/// How often the acceptor looks at its stop flag and its finished pumps.
const ACCEPT_WAIT: Duration = Duration::from_millis(50);

/// A local port forwarded through the session to a host and port seen from
/// the server, as `ssh -L` does: made by
/// [`Session::forward_local`](crate::Session::forward_local).
///
/// It serves connections until it is dropped (or [closed](Self::close)):
/// each connection to [`local_addr`](Self::local_addr) becomes an SSH
/// `direct-tcpip` channel to the target, at most
/// [`MAX_TUNNEL_CONNECTIONS`] at once (more wait in the listener's queue
/// until one ends). The channels share the session with its SFTP and exec
/// work: a connection locks the session only to move bytes, never while it
/// is idle. Dropping the tunnel stops listening, closes every connection
/// and its channel, and waits for its threads (at most about half a second
/// each, on a dead link).
///
/// A connection the server refuses (its `AllowTcpForwarding`, a target
/// that does not answer) is closed at once, logged as a warning, and kept
/// for [`take_error`](Self::take_error).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let session: etl_ssh::Session = todo!();
/// let tunnel = session.forward_local("127.0.0.1:0".parse()?, "db.partner.internal", 5432)?;
/// let url = format!("postgres://etl@127.0.0.1:{}/orders", tunnel.local_addr().port());
/// // ... hand `url` to the database driver; the tunnel serves while it lives.
/// drop(tunnel);
/// # let _ = url;
/// # Ok(())
/// # }
/// ```
pub struct Tunnel {
    local_addr: SocketAddr,
    target: String,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the acceptor and the tunnel's owner share.
struct Shared {
    stop: Arc<AtomicBool>,
    /// Connections being served now.
    active: AtomicUsize,
    /// The last connection the tunnel could not make.
    last_error: Mutex<Option<Error>>,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("local_addr", &self.local_addr)
            .field("target", &self.target)
            .field("connections", &self.connections())
            .finish()
    }
}

impl Tunnel {
    /// Where we listen: the address to give a database driver (the port
    /// picked when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The target as the server reaches it, `host:port`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// How many connections are being served now.
    pub fn connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// The last connection the tunnel could not make (the server refused to
    /// open the channel: its sshd forbids forwarding, or the target does
    /// not answer), taken so that the next call returns a newer one.
    pub fn take_error(&self) -> Option<Error> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Stops the tunnel as dropping it does, and reports the last
    /// connection it could not make, if any.
    ///
    /// # Errors
    ///
    /// What [`take_error`](Self::take_error) would return.
    pub fn close(mut self) -> Result<()> {
        self.stop();
        match self.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Listens on `local_addr` and forwards each connection to
/// `remote_host:remote_port` through `dialer`'s connection.
pub(crate) fn forward_local(
    dialer: Arc<dyn Dialer>,
    local_addr: SocketAddr,
    remote_host: &str,
    remote_port: u16,
) -> Result<Tunnel> {
    if remote_host.is_empty() || remote_host.contains('\0') {
        return Err(Error::invalid(
            "tunnel target",
            format!("{remote_host:?} is not a host name or address"),
        ));
    }
    let target = format!("{remote_host}:{remote_port}");
    let listen_error = |e| Error::io(format!("cannot listen on {local_addr} for a tunnel"), e);
    let listener = TcpListener::bind(local_addr).map_err(listen_error)?;
    listener.set_nonblocking(true).map_err(listen_error)?;
    let local_addr = listener.local_addr().map_err(listen_error)?;
    let shared = Arc::new(Shared {
        stop: Arc::new(AtomicBool::new(false)),
        active: AtomicUsize::new(0),
        last_error: Mutex::new(None),
    });
    let acceptor = Acceptor {
        dialer,
        listener,
        host: remote_host.to_string(),
        port: remote_port,
        what: format!("tunnel {local_addr} -> {target}"),
        shared: Arc::clone(&shared),
        pumps: Vec::new(),
    };
    let acceptor = std::thread::Builder::new()
        .name("etl-ssh-tunnel".into())
        .spawn(move || acceptor.run())
        .map_err(|e| Error::io("cannot start the tunnel's thread", e))?;
    debug!("tunnel {local_addr} -> {target}: listening");
    Ok(Tunnel {
        local_addr,
        target,
        shared,
        acceptor: Some(acceptor),
    })
}

struct Acceptor {
    dialer: Arc<dyn Dialer>,
    listener: TcpListener,
    host: String,
    port: u16,
    /// The tunnel, for the log.
    what: String,
    shared: Arc<Shared>,
    pumps: Vec<JoinHandle<()>>,
}

impl Acceptor {
    fn run(mut self) {
        while !self.shared.stop.load(Ordering::SeqCst) {
            self.reap();
            if self.pumps.len() >= MAX_TUNNEL_CONNECTIONS {
                std::thread::sleep(ACCEPT_WAIT);
                continue;
            }
            match self.listener.accept() {
                Ok((stream, peer)) => self.serve(stream, peer),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.wait(),
                Err(e) => {
                    debug!("{}: accept failed: {e}", self.what);
                    std::thread::sleep(ACCEPT_WAIT);
                }
            }
        }
        for pump in self.pumps.drain(..) {
            let _ = pump.join();
        }
        self.shared.active.store(0, Ordering::SeqCst);
        debug!("{}: closed", self.what);
    }

    /// Forgets the pumps whose connection has ended.
    fn reap(&mut self) {
        let before = self.pumps.len();
        self.pumps.retain(|p| !p.is_finished());
        if self.pumps.len() != before {
            self.shared.active.store(self.pumps.len(), Ordering::SeqCst);
        }
    }

    /// Waits for a connection, or a short while.
    fn wait(&self) {
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: ACCEPT_WAIT.as_nanos() as i64,
        };
        let _ = poll(
            &mut [PollFd::new(&self.listener, PollFlags::IN)],
            Some(&timeout),
        );
    }

    /// Opens the channel for an accepted connection and starts its pump;
    /// a connection that cannot be forwarded is closed, after its error
    /// is kept.
    fn serve(&mut self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let opened = stream
            .set_nonblocking(true)
            .map_err(|e| Error::io(format!("{}: the connection from {peer}", self.what), e))
            .and_then(|()| self.channel(peer));
        let pump = match opened {
            Ok((conn, channel)) => spawn_pump(
                "etl-ssh-forward",
                conn,
                channel,
                stream,
                Arc::clone(&self.shared.stop),
                format!("{}: connection from {peer}", self.what),
            )
            .map_err(|e| Error::io("cannot start a tunnel connection's thread", e)),
            Err(e) => Err(e),
        };
        match pump {
            Ok(pump) => {
                self.pumps.push(pump);
                self.shared.active.store(self.pumps.len(), Ordering::SeqCst);
            }
            Err(e) => {
                warn!("{}: connection from {peer} not forwarded: {e}", self.what);
                *self
                    .shared
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        }
        // A stream not handed to a pump is closed here, after its error
        // was kept.
    }

    /// A channel to the target for a connection from `peer`, on the
    /// session's connection or a new one when the server ended it.
    fn channel(&self, peer: SocketAddr) -> Result<(Arc<Conn>, ssh2::Channel)> {
        let conn = self.dialer.current();
        match self.open(&conn, peer) {
            Err(e) if e.kind() == ErrorKind::Disconnected => {
                let conn = self.dialer.redial(&conn)?;
                let channel = self.open(&conn, peer)?;
                Ok((conn, channel))
            }
            other => other.map(|channel| (conn, channel)),
        }
    }

    fn open(&self, conn: &Conn, peer: SocketAddr) -> Result<ssh2::Channel> {
        let originator = peer.ip().to_string();
        open_channel(
            conn,
            &self.host,
            self.port,
            Some((&originator, peer.port())),
        )
        .map_err(|e| {
            with_context(
                e,
                format!(
                    "{}: the server cannot open a connection to {}:{} (its sshd may \
                     forbid forwarding, AllowTcpForwarding, or the target does not \
                     answer from the server)",
                    conn.target(),
                    self.host,
                    self.port
                ),
            )
        })
    }
}
