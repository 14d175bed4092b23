//! The connection: the one owner of the `ssh2::Session`, and [`Locked`],
//! the only door to it.
//!
//! libssh2 serialises every call on a session, and this crate runs the
//! session in blocking mode except inside exec's and the tunnel's poll
//! loops, an SFTP channel's reads and writes, and the opening of an SFTP
//! channel (these wait on the socket with the lock free, [`Conn::drive`],
//! so that channels of one connection interleave; channel opens take
//! turns, [`Conn::opening`]).
//! Both rules live here, in the type: the session is reached only through
//! a `Locked` guard (holding the operation lock), and a guard that
//! switched to non-blocking mode switches back when it is dropped, so the
//! session is in blocking mode whenever the lock is free.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use log::debug;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use ssh2::{BlockDirections, DisconnectCode};

use crate::error::{code, ssh2_code};

/// Added to the error of a connection the server ends at its first
/// channel, right after accepting the login.
const FIRST_CHANNEL_NOTE: &str = "; the server ended the connection at our first channel, right \
     after it accepted our login: it may allow fewer logins per user than we opened (another \
     login of this user is open: pam_limits maxlogins, appliances that allow one session), \
     or end logins it does not allow (an expired password, an account without a shell)";

/// How long cleanup waits for the server: closing a handle after a failure,
/// or the disconnect message of `Drop`. A healthy server answers in far
/// less; a dead link must not hold the caller for a full operation timeout.
const CLEANUP_TIMEOUT: Duration = Duration::from_millis(500);

/// Where a handle gets its connection: the session's current one, and a
/// new one in place of one the server ended. Servers that allow one
/// channel per connection (tinysshd) end the connection when that channel
/// closes; the next channel then needs a new connection, verified with
/// the same pins and authenticated with the same credential.
pub(crate) trait Dialer: Send + Sync {
    /// The connection in use now.
    fn current(&self) -> Arc<Conn>;

    /// A connection in place of `dead`: the one another caller made
    /// already, or a new one.
    ///
    /// # Errors
    ///
    /// Those of [`SessionBuilder::connect`](crate::SessionBuilder::connect).
    fn redial(&self, dead: &Arc<Conn>) -> crate::Result<Arc<Conn>>;

    /// A separate session to the same server with the same settings, for
    /// work in parallel.
    ///
    /// # Errors
    ///
    /// Those of [`SessionBuilder::connect`](crate::SessionBuilder::connect).
    fn another(&self) -> crate::Result<Arc<dyn Dialer>>;

    /// `host:port`, for messages.
    fn target(&self) -> String {
        self.current().target()
    }
}

/// Something that holds channels it could close when idle: an SFTP
/// session's pool. When the server refuses a channel (its `MaxSessions`),
/// the connection asks its holders to make room.
pub(crate) trait ChannelHolder: Send + Sync {
    /// Closes one idle channel; false when none is idle.
    fn release_idle(&self) -> bool;
}

/// How long a channel waiting on the socket ([`Conn::drive`]) sleeps at
/// most before it looks again: another channel's thread may have read the
/// window or the reply it waits for.
const NUDGE: Duration = Duration::from_millis(5);

/// One verified, authenticated SSH connection.
pub(crate) struct Conn {
    ssh: ssh2::Session,
    /// Held while `ssh` is in use (see [`Locked`]).
    op_lock: Mutex<()>,
    /// Held while a channel opens (see [`Conn::opening`]).
    open_lock: Mutex<()>,
    /// A second handle on the socket libssh2 owns, to wait on it with
    /// `poll` without borrowing libssh2's descriptor.
    socket: Transport,
    host: String,
    port: u16,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    timeout: Duration,
    /// Whether SSH keepalives are on.
    keepalive: bool,
    closed: AtomicBool,
    /// Whether a channel has opened on this connection yet.
    used: AtomicBool,
    holders: Mutex<Vec<Weak<dyn ChannelHolder>>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("target", &self.target())
            .finish_non_exhaustive()
    }
}

/// What a [`Conn`] is made of, once the handshake, host key check and
/// authentication succeeded.
pub(crate) struct Parts {
    pub(crate) ssh: ssh2::Session,
    pub(crate) socket: Transport,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) local_addr: SocketAddr,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) timeout: Duration,
    pub(crate) keepalive: bool,
}

impl Conn {
    /// Takes ownership of an authenticated session, in blocking mode with
    /// the operation timeout set.
    pub(crate) fn new(p: Parts) -> Conn {
        p.ssh.set_blocking(true);
        p.ssh.set_timeout(millis(p.timeout));
        Conn {
            ssh: p.ssh,
            op_lock: Mutex::new(()),
            open_lock: Mutex::new(()),
            socket: p.socket,
            host: p.host,
            port: p.port,
            local_addr: p.local_addr,
            peer_addr: p.peer_addr,
            timeout: p.timeout,
            keepalive: p.keepalive,
            closed: AtomicBool::new(false),
            used: AtomicBool::new(false),
            holders: Mutex::new(Vec::new()),
        }
    }

    /// Takes the operation lock. A poisoned lock is taken anyway: the
    /// guarded state is libssh2's, which a panic does not corrupt beyond
    /// what the next call reports.
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked {
            conn: self,
            _guard: self.op_lock.lock().unwrap_or_else(|e| e.into_inner()),
            nonblocking: false,
        }
    }

    /// Holds off other channel opens on this connection until dropped:
    /// libssh2 keeps one channel-opening state per session, so opens must
    /// not interleave, also when one waits for its answer with the
    /// operation lock free ([`drive`](Self::drive)). Taken before
    /// [`lock`](Self::lock), never while holding it.
    pub(crate) fn opening(&self) -> MutexGuard<'_, ()> {
        self.open_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `step` with the lock held and the session non-blocking until
    /// it is done (`Some`); between tries the operation lock is free, so
    /// that the connection's other channels go on while this one waits for
    /// the server's window or answer. A wait ends when the socket is ready,
    /// or after [`NUDGE`] (another channel's thread may have read what this
    /// one waits for). `None` once the connection's timeout has passed.
    pub(crate) fn drive<T>(&self, mut step: impl FnMut(&Locked<'_>) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let dirs = {
                let mut ssh = self.lock();
                ssh.set_nonblocking();
                match step(&ssh) {
                    Some(done) => return Some(done),
                    None => ssh.block_directions(),
                }
            };
            if !self.wait_ready(dirs, deadline, NUDGE) {
                return None;
            }
        }
    }

    /// A libssh2 call that waits for the server's answer (a channel's
    /// open, a channel request), made non-blocking and repeated while it
    /// says EAGAIN, with the operation lock free while the answer is on
    /// its way ([`drive`](Self::drive)): the connection's other channels
    /// move meanwhile. A call that keeps state on the session (a channel's
    /// open) needs [`opening`](Self::opening) held around it.
    ///
    /// # Errors
    ///
    /// libssh2's, and a timeout (`LIBSSH2_ERROR_TIMEOUT`) after the
    /// connection's.
    pub(crate) fn answered<T>(
        &self,
        mut call: impl FnMut(&ssh2::Session) -> std::result::Result<T, ssh2::Error>,
    ) -> std::result::Result<T, ssh2::Error> {
        self.drive(|ssh| match call(ssh.session()) {
            Err(e) if ssh2_code(&e) == code::EAGAIN => None,
            done => Some(done),
        })
        .unwrap_or_else(|| {
            Err(ssh2::Error::new(
                ssh2::ErrorCode::Session(code::TIMEOUT),
                "timed out waiting for the server's answer",
            ))
        })
    }

    /// `host:port`, for messages.
    pub(crate) fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The deadline of each blocking operation.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The socket, for `poll` (never read or written: libssh2 does that).
    pub(crate) fn socket(&self) -> &Transport {
        &self.socket
    }

    /// Waits until the socket is ready in `dirs` (what libssh2 is blocked
    /// on), for at most `max`, or until `deadline` passes; false once it
    /// has passed. Safe without the operation lock: it only polls.
    pub(crate) fn wait_ready(
        &self,
        dirs: BlockDirections,
        deadline: Instant,
        max: Duration,
    ) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let mut wait = (deadline - now).min(max);
        if dirs == BlockDirections::None {
            // libssh2 waits on a channel state, not the socket: look again soon.
            wait = wait.min(Duration::from_millis(2));
        }
        let timeout = Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: wait.subsec_nanos().into(),
        };
        // EINTR or any other failure: the caller simply tries libssh2 again.
        let _ = poll(
            &mut [PollFd::new(&self.socket, poll_flags(dirs))],
            Some(&timeout),
        );
        true
    }

    /// Registers a holder of idle channels (see [`ChannelHolder`]).
    pub(crate) fn add_holder(&self, holder: Weak<dyn ChannelHolder>) {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        holders.retain(|h| h.strong_count() > 0);
        holders.push(holder);
    }

    /// Asks the holders to close one idle channel, to make room for a new
    /// one the server refused; false when none could. Call it without the
    /// operation lock.
    pub(crate) fn release_idle_channel(&self) -> bool {
        let holders: Vec<_> = self
            .holders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        holders.iter().any(|h| h.release_idle())
    }

    /// Opens a channel with `open`; when the server refuses it (`refused`
    /// says so), asks the holders to close an idle channel and tries
    /// again, or, when none is idle, waits a little and tries again (the
    /// server may not have seen a channel we just closed): 750 ms in all
    /// at most. Call it without the operation lock.
    ///
    /// # Errors
    ///
    /// The last refusal, or whatever else `open` returns.
    pub(crate) fn open_with_room<T>(
        &self,
        mut open: impl FnMut() -> crate::Result<T>,
        refused: impl Fn(&crate::Error) -> bool,
    ) -> crate::Result<T> {
        let mut waits = [50u64, 100, 200, 400]
            .into_iter()
            .map(Duration::from_millis);
        loop {
            match open() {
                Err(e) if refused(&e) => {
                    if self.release_idle_channel() {
                        continue;
                    }
                    match waits.next() {
                        Some(wait) => std::thread::sleep(wait),
                        None => return Err(e),
                    }
                }
                Ok(opened) => {
                    self.used.store(true, Ordering::SeqCst);
                    return Ok(opened);
                }
                Err(e)
                    if !self.used.load(Ordering::SeqCst)
                        && self.socket.peer_closed_within(Duration::from_millis(250)) =>
                {
                    // The login was accepted a moment ago and the server
                    // hung up at the first thing we asked of it.
                    return Err(crate::error::add_note(e, FIRST_CHANNEL_NOTE.to_string()));
                }
                other => return other,
            }
        }
    }

    /// Says goodbye to the server, once.
    pub(crate) fn disconnect(&self) -> std::result::Result<(), ssh2::Error> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let _g = self.lock();
        self.ssh.disconnect(
            Some(DisconnectCode::ByApplication),
            "closed by client",
            None,
        )
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.ssh
            .set_timeout(millis(self.timeout.min(CLEANUP_TIMEOUT)));
        if let Err(e) = self.disconnect() {
            debug!("disconnect from {} on drop failed: {e}", self.target());
        }
        // Channels freed without waiting for the server's answer to their
        // close (the SFTP pool's) are freed for good with the session,
        // which would wait for those answers: with our goodbye sent, the
        // read side is shut, so that libssh2 sees the end at once.
        if let Err(e) = socket2::SockRef::from(&self.socket).shutdown(std::net::Shutdown::Read) {
            debug!("cannot shut the connection to {}: {e}", self.target());
        }
    }
}

/// The operation lock, held: the only way to the `ssh2::Session`.
pub(crate) struct Locked<'a> {
    conn: &'a Conn,
    _guard: MutexGuard<'a, ()>,
    nonblocking: bool,
}

impl Locked<'_> {
    /// The libssh2 session.
    pub(crate) fn session(&self) -> &ssh2::Session {
        &self.conn.ssh
    }

    /// The connection.
    pub(crate) fn conn(&self) -> &Conn {
        self.conn
    }

    /// Switches the session to non-blocking mode until this guard is
    /// dropped (blocking mode is restored then, before the lock is free).
    pub(crate) fn set_nonblocking(&mut self) {
        self.conn.ssh.set_blocking(false);
        self.nonblocking = true;
    }

    /// What libssh2 is blocked on.
    pub(crate) fn block_directions(&self) -> BlockDirections {
        self.conn.ssh.block_directions()
    }

    /// libssh2's last error on the session (its code, which `ssh2`'s
    /// `io::Error`s drop).
    pub(crate) fn last_error(&self) -> Option<ssh2::Error> {
        ssh2::Error::last_session_error(&self.conn.ssh)
    }

    /// Runs `f` under the short cleanup timeout, then restores the
    /// session's: for closing handles after a failure, or on drop, which
    /// must not wait a full operation timeout on a dead link.
    pub(crate) fn cleanup<T>(&self, f: impl FnOnce() -> T) -> T {
        let ssh = &self.conn.ssh;
        ssh.set_timeout(millis(self.conn.timeout.min(CLEANUP_TIMEOUT)));
        let out = f();
        ssh.set_timeout(millis(self.conn.timeout));
        out
    }

    /// Sends an SSH keepalive if one is due. Call it from any loop that
    /// may run longer than the keepalive interval: libssh2 sends
    /// keepalives only when asked. Cheap when none is due; a failure is
    /// left for the next real operation to report.
    pub(crate) fn keepalive_tick(&self) {
        if self.conn.keepalive {
            if let Err(e) = self.conn.ssh.keepalive_send() {
                debug!("keepalive to {} not sent: {e}", self.conn.target());
            }
        }
    }

    /// Sends a keepalive now (when they are on).
    pub(crate) fn keepalive_now(&self) -> std::result::Result<(), ssh2::Error> {
        if self.conn.keepalive {
            self.conn.ssh.keepalive_send().map(drop)
        } else {
            Ok(())
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if self.nonblocking {
            self.conn.ssh.set_blocking(true);
        }
    }
}

/// The socket libssh2 talks through.
#[derive(Debug)]
pub(crate) enum Transport {
    /// A TCP connection to the server or the HTTP proxy.
    Tcp(TcpStream),
    /// Our end of a jump host's tunnel.
    Tunnel(UnixStream),
}

impl Transport {
    /// Whether the server has closed its end: a peek sees end-of-file or
    /// a reset. Never consumes a byte. Leaves the socket non-blocking, as
    /// libssh2 keeps it from its handshake on (the flag is shared with
    /// libssh2's descriptor).
    pub(crate) fn peer_closed(&self) -> bool {
        self.peek() == Some(true)
    }

    /// [`peer_closed`](Self::peer_closed), waiting up to `wait` for the
    /// end of the stream to arrive (a server's disconnect message comes a
    /// moment before its FIN).
    pub(crate) fn peer_closed_within(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            match self.peek() {
                Some(closed) => return closed,
                None if Instant::now() >= deadline => return false,
                None => {
                    let timeout = Timespec {
                        tv_sec: 0,
                        tv_nsec: 20_000_000,
                    };
                    let _ = poll(&mut [PollFd::new(self, PollFlags::IN)], Some(&timeout));
                }
            }
        }
    }

    /// `Some(true)` at end of stream or on a reset, `Some(false)` when
    /// bytes wait, `None` when nothing has come.
    fn peek(&self) -> Option<bool> {
        let socket = socket2::SockRef::from(self);
        socket.set_nonblocking(true).ok()?;
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket.peek(&mut byte) {
            Ok(0) => Some(true),
            Ok(_) => Some(false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(_) => Some(true),
        }
    }

    pub(crate) fn try_clone(&self) -> io::Result<Transport> {
        Ok(match self {
            Transport::Tcp(s) => Transport::Tcp(s.try_clone()?),
            Transport::Tunnel(s) => Transport::Tunnel(s.try_clone()?),
        })
    }
}

impl AsFd for Transport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Transport::Tcp(s) => s.as_fd(),
            Transport::Tunnel(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// libssh2 takes timeouts in milliseconds, and 0 means forever: never pass 0.
pub(crate) fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u128::from(u32::MAX)) as u32
}

/// The `poll` events for what libssh2 is blocked on (reading when it is
/// blocked on nothing in particular).
pub(crate) fn poll_flags(dirs: BlockDirections) -> PollFlags {
    match dirs {
        BlockDirections::Outbound => PollFlags::OUT,
        BlockDirections::Both => PollFlags::IN | PollFlags::OUT,
        BlockDirections::Inbound | BlockDirections::None => PollFlags::IN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_never_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
