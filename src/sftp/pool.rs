//! The SFTP channels of one [`SftpSession`](super::SftpSession): the
//! first, opened with the session, and more opened when every open one is
//! busy, up to [`MAX_CHANNELS`].
//!
//! Every operation borrows a free channel for as long as it runs (a
//! [`Lease`]); a streaming handle comes back to the channel its handle was
//! opened on. When the server refuses another channel (OpenSSH's
//! `MaxSessions`), the work waits for one of the channels that opened,
//! and the log says so once. When a command needs a channel the server
//! will not give, an idle SFTP channel is closed to make room (and opened
//! again when SFTP next needs it).
//!
//! A channel's open, its `sftp` subsystem request, and its reads and
//! writes run libssh2 in non-blocking mode and wait on the socket with the
//! connection's lock free, so that the channels of one connection move
//! data at the same time (each has its own window from the server), also
//! while another opens; a dropped channel is not waited for.

use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use log::{debug, info, trace};

use super::channel::{sftp_error, ChannelIo, IoFailure, SftpChannel};
use super::path::escape_bytes;
use crate::conn::{ChannelHolder, Conn, Dialer};
use crate::error::code::{CHANNEL_FAILURE, CHANNEL_REQUEST_DENIED};
use crate::error::{channel_refused, ssh2_code, ssh2_kind};
use crate::{ErrorKind, Result};

/// How many SFTP channels one session opens at most: concurrent
/// operations beyond that wait for one. OpenSSH allows 10 channels per
/// connection (`MaxSessions`), shared with exec.
pub(crate) const MAX_CHANNELS: usize = 4;
/// The receive window we give the server on an SFTP channel.
const WINDOW_SIZE: u32 = 16 * 1024 * 1024;
/// libssh2 refuses packets over ~35,000 bytes: 32 KiB is the most it takes.
const PACKET_SIZE: u32 = 32 * 1024;
/// How much of what the subsystem wrote on stderr an error shows.
const STDERR_SHOWN: usize = 2048;

/// An SFTP channel on the SSH connection.
struct SshIo {
    channel: Held,
    conn: Arc<Conn>,
}

/// The channel of an [`SshIo`], taken out only by its `Drop`.
struct Held(Option<ssh2::Channel>);

impl std::ops::Deref for Held {
    type Target = ssh2::Channel;

    fn deref(&self) -> &ssh2::Channel {
        self.0.as_ref().expect("taken only on drop")
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut ssh2::Channel {
        self.0.as_mut().expect("taken only on drop")
    }
}

impl Drop for SshIo {
    /// Frees the channel without waiting for the server's answer to its
    /// close: libssh2 sends EOF and CLOSE (unless sent already) and keeps
    /// its record of the channel until the answer comes or the connection
    /// ends ([`Conn`]'s `Drop` does not wait for it either). A job's last
    /// step so costs no round trip of its own.
    fn drop(&mut self) {
        let mut ssh = self.conn.lock();
        ssh.set_nonblocking();
        drop(self.channel.0.take());
    }
}

/// What an `io::Error` of the SFTP channel on `conn` means.
fn failure(conn: &Conn, err: std::io::Error, ssh: &ssh2::Session) -> IoFailure {
    // ssh2 keeps only the message in the io::Error: the session's last
    // error has the code.
    if let Some(last) = ssh2::Error::last_session_error(ssh) {
        let code = ssh2_code(&last);
        if code != 0 && code != -31 {
            let kind = match ssh2_kind(&last) {
                ErrorKind::Other => ErrorKind::Disconnected,
                k => k,
            };
            let reason = match kind {
                ErrorKind::Timeout => format!(
                    "timed out after {:.1} s ({})",
                    conn.timeout().as_secs_f64(),
                    last.message()
                ),
                _ => format!("connection lost ({})", last.message()),
            };
            return IoFailure {
                kind,
                reason,
                source: Some(Box::new(last)),
            };
        }
    }
    let kind = match err.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
        _ => ErrorKind::Disconnected,
    };
    IoFailure {
        kind,
        reason: format!("connection lost ({err})"),
        source: Some(Box::new(err)),
    }
}

impl SshIo {
    /// Runs `step` on the channel in non-blocking mode until it does not
    /// say "would block", with the operation lock free between tries
    /// ([`Conn::drive`]), so the other channels of the connection (the
    /// lanes of a transfer) go on while this one waits for the server's
    /// window or replies; a timeout after the connection's.
    fn drive<T>(
        &mut self,
        mut step: impl FnMut(&mut ssh2::Channel) -> std::io::Result<T>,
    ) -> std::result::Result<T, IoFailure> {
        let conn = Arc::clone(&self.conn);
        let channel = &mut self.channel;
        let done = conn.drive(|ssh| {
            ssh.keepalive_tick();
            match step(channel) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                Ok(done) => Some(Ok(done)),
                Err(e) => Some(Err(failure(&conn, e, ssh.session()))),
            }
        });
        done.unwrap_or_else(|| {
            Err(IoFailure {
                kind: ErrorKind::Timeout,
                reason: format!(
                    "timed out after {:.1} s (the server neither took nor sent SFTP data)",
                    conn.timeout().as_secs_f64()
                ),
                source: None,
            })
        })
    }
}

impl ChannelIo for SshIo {
    fn write_all(&mut self, buf: &[u8]) -> std::result::Result<(), IoFailure> {
        let mut at = 0;
        while at < buf.len() {
            // libssh2 may say 0 for "no window" instead of "would block".
            at += self.drive(|ch| match ch.write(&buf[at..]) {
                Ok(0) => Err(std::io::ErrorKind::WouldBlock.into()),
                other => other,
            })?;
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8]) -> std::result::Result<usize, IoFailure> {
        self.drive(|ch| ch.read(buf))
    }

    fn started(&mut self) {
        let _ssh = self.conn.lock();
        // From here on nothing is waited for on stderr: drop it, so that a
        // chatty server cannot fill the window.
        if let Err(e) = self
            .channel
            .handle_extended_data(ssh2::ExtendedData::Ignore)
        {
            debug!("cannot ignore the SFTP channel's stderr: {e}");
        }
    }

    fn last_words(&mut self) -> Option<String> {
        let conn = Arc::clone(&self.conn);
        let ssh = conn.lock();
        ssh.cleanup(|| {
            let mut said = Vec::new();
            let mut buf = [0u8; 1024];
            let mut stderr = self.channel.stderr();
            while said.len() < STDERR_SHOWN {
                match stderr.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => said.extend_from_slice(&buf[..n]),
                }
            }
            said.truncate(STDERR_SHOWN);
            let _ = self.channel.close();
            let closed = self.channel.wait_close().is_ok();
            let status = self.channel.exit_status().ok().filter(|_| closed);
            let text = escape_bytes(trim_ascii(&said));
            match (status, text.is_empty()) {
                (Some(code), false) if code != 0 => Some(format!("exit status {code}: {text}")),
                (_, false) => Some(text),
                (Some(code), true) if code != 0 => Some(format!("exit status {code}")),
                _ => None,
            }
        })
    }

    fn shutdown(&mut self) {
        let conn = Arc::clone(&self.conn);
        let mut ssh = conn.lock();
        // Sends EOF and CLOSE; the server's answer is not waited for (see
        // `Drop`).
        ssh.set_nonblocking();
        let _ = self.channel.send_eof();
        let _ = self.channel.close();
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

/// Opens an SFTP channel on `conn`.
///
/// # Errors
///
/// A refused channel names the likely causes ([`ErrorKind::Unsupported`]);
/// a refused subsystem says so; the handshake's errors
/// ([`SftpChannel::start`]).
pub(crate) fn open_channel(conn: &Arc<Conn>) -> Result<SftpChannel> {
    let target = conn.target();
    let channel = {
        // The lock is free while the answers are on their way: the
        // connection's other channels (a transfer's first, writing) go on.
        let opening = conn.opening();
        trace!("{target}: opens a session channel");
        let opened =
            conn.answered(|ssh| ssh.channel_open("session", WINDOW_SIZE, PACKET_SIZE, None));
        drop(opening);
        let mut channel = opened.map_err(|e| {
            let reason = if ssh2_code(&e) == CHANNEL_FAILURE {
                "the server refused to open another channel: it may limit channels per \
                 connection (OpenSSH's MaxSessions), allow one channel per connection, \
                 or not allow sessions for this account"
                    .to_string()
            } else {
                format!("cannot open a channel: {}", e.message())
            };
            let kind = match ssh2_code(&e) {
                CHANNEL_FAILURE => ErrorKind::Unsupported,
                _ => match ssh2_kind(&e) {
                    ErrorKind::Other => ErrorKind::Disconnected,
                    k => k,
                },
            };
            with_source(sftp_error(kind, "start", &target, b"", reason), e)
        })?;
        trace!("{target}: asks for the sftp subsystem");
        if let Err(e) = conn.answered(|_| channel.subsystem("sftp")) {
            let (kind, reason) = if ssh2_code(&e) == CHANNEL_REQUEST_DENIED {
                (
                    ErrorKind::Unsupported,
                    "the server refused the sftp subsystem: SFTP is not enabled for this \
                     account or server"
                        .to_string(),
                )
            } else {
                (
                    match ssh2_kind(&e) {
                        ErrorKind::Other => ErrorKind::Disconnected,
                        k => k,
                    },
                    format!("cannot start the sftp subsystem: {}", e.message()),
                )
            };
            let ssh = conn.lock();
            ssh.cleanup(|| {
                let _ = channel.close();
            });
            return Err(with_source(
                sftp_error(kind, "start", &target, b"", reason),
                e,
            ));
        }
        channel
    };
    let io = SshIo {
        channel: Held(Some(channel)),
        conn: Arc::clone(conn),
    };
    SftpChannel::start(Box::new(io), target.clone()).map_err(|e| {
        if e.kind() == ErrorKind::Disconnected && password_change_required(conn) {
            sftp_error(
                ErrorKind::PasswordExpired,
                "start",
                &target,
                b"",
                "the server accepted the login but runs nothing until the password is \
                 changed (\"Password change required but no TTY available\"): the password \
                 has expired; ask the partner to reset it",
            )
        } else {
            e
        }
    })
}

/// Whether the server runs nothing on this login until its password is
/// changed, as OpenSSH does after a password login whose password expired:
/// it says so on a command's stderr (a subsystem's stderr goes to its log
/// only). Asked only after the SFTP subsystem ended at start.
fn password_change_required(conn: &Arc<Conn>) -> bool {
    let _opening = conn.opening();
    let ssh = conn.lock();
    ssh.cleanup(|| {
        let Ok(mut channel) = ssh.session().channel_session() else {
            return false;
        };
        let mut said = Vec::new();
        if channel.exec("true").is_ok() {
            let _ = channel
                .stderr()
                .take(STDERR_SHOWN as u64)
                .read_to_end(&mut said);
        }
        let _ = channel.close();
        String::from_utf8_lossy(&said).contains("Password change required")
    })
}

fn with_source(mut err: crate::Error, e: ssh2::Error) -> crate::Error {
    if let crate::Error::Sftp { source, .. } = &mut err {
        *source = Some(Box::new(e));
    }
    err
}

/// The channels of one SFTP session.
pub(crate) struct Pool {
    /// The session's connection, and a new one when the server ended it.
    dialer: Arc<dyn Dialer>,
    /// `host:port`, for messages.
    target: String,
    state: Mutex<State>,
    /// Signalled when a channel is handed back or closed.
    freed: Condvar,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

struct State {
    slots: Vec<Slot>,
    /// Channels being opened now.
    opening: usize,
    /// The server refused a channel while others were open: no more are
    /// tried until one closes.
    refused: bool,
    next_id: usize,
    /// The connection this pool last registered with as a
    /// [`ChannelHolder`].
    registered: Option<Weak<Conn>>,
}

struct Slot {
    id: usize,
    /// `None` while lent out.
    channel: Option<SftpChannel>,
    /// Open streaming handles on this channel: it is not closed to make
    /// room while they are.
    pinned: usize,
}

impl State {
    fn open_count(&self) -> usize {
        self.slots.len() + self.opening
    }
}

/// A channel lent to one operation; handed back when dropped (or closed,
/// if it broke).
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    slot: usize,
    channel: Option<SftpChannel>,
}

impl Lease<'_> {
    /// The slot the channel belongs to (for handles that come back to it).
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = SftpChannel;
    fn deref(&self) -> &SftpChannel {
        self.channel.as_ref().expect("a lease holds its channel")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut SftpChannel {
        self.channel.as_mut().expect("a lease holds its channel")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(ch) = self.channel.take() {
            self.pool.give_back(self.slot, ch);
        }
    }
}

impl Pool {
    /// Opens the first channel (so that a server without SFTP fails here).
    pub(crate) fn start(dialer: Arc<dyn Dialer>) -> Result<Arc<Pool>> {
        let conn = dialer.current();
        let pool = Arc::new(Pool {
            target: conn.target(),
            dialer,
            state: Mutex::new(State {
                slots: Vec::new(),
                opening: 0,
                refused: false,
                next_id: 0,
                registered: None,
            }),
            freed: Condvar::new(),
        });
        let first = pool.open(conn, true)?;
        pool.state().slots.push(Slot {
            id: 0,
            channel: Some(first),
            pinned: 0,
        });
        pool.state().next_id = 1;
        Ok(pool)
    }

    /// `host:port`.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Opens a channel on `conn`, or, when the server ended that
    /// connection, on a new one; registers the pool with the connection
    /// used, so that a command can ask it to make room.
    ///
    /// Not `patient`: one try on `conn`, without making room, waiting or
    /// connecting again (a channel that would only be nice to have).
    fn open(self: &Arc<Self>, conn: Arc<Conn>, patient: bool) -> Result<SftpChannel> {
        if !patient {
            return open_channel(&conn).inspect(|_| self.register(&conn));
        }
        let refused = channel_refused;
        let (conn, channel) = match conn.open_with_room(|| open_channel(&conn), refused) {
            Err(e) if e.kind() == ErrorKind::Disconnected => {
                let fresh = self.dialer.redial(&conn)?;
                let channel = fresh.open_with_room(|| open_channel(&fresh), refused)?;
                (fresh, channel)
            }
            other => (conn, other?),
        };
        self.register(&conn);
        Ok(channel)
    }

    /// Registers the pool with `conn`, so that a command can ask it to
    /// make room.
    fn register(self: &Arc<Self>, conn: &Arc<Conn>) {
        let mut state = self.state();
        if !state
            .registered
            .as_ref()
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(conn)))
        {
            state.registered = Some(Arc::downgrade(conn));
            let me = Arc::clone(self);
            conn.add_holder(Arc::downgrade(&(me as Arc<dyn ChannelHolder>)));
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free channel: an idle one, a new one when all are busy (up to
    /// [`MAX_CHANNELS`]), or the next one handed back.
    ///
    /// # Errors
    ///
    /// When no channel is open and none can be opened.
    pub(crate) fn any(self: &Arc<Self>) -> Result<Lease<'_>> {
        loop {
            if let Some(lease) = self.lease(true)? {
                return Ok(lease);
            }
        }
    }

    /// An idle channel or a new one, without waiting for a busy one:
    /// `None` when every channel is busy and no other may open (the
    /// server refused one, or [`MAX_CHANNELS`] are open).
    ///
    /// # Errors
    ///
    /// When no channel is open and none can be opened.
    pub(crate) fn free(self: &Arc<Self>) -> Result<Option<Lease<'_>>> {
        self.lease(false)
    }

    /// [`any`](Self::any) when `wait`, else [`free`](Self::free).
    fn lease(self: &Arc<Self>, wait: bool) -> Result<Option<Lease<'_>>> {
        let mut state = self.state();
        loop {
            if let Some(slot) = state.slots.iter_mut().find(|s| s.channel.is_some()) {
                let channel = slot.channel.take();
                return Ok(Some(Lease {
                    pool: self,
                    slot: slot.id,
                    channel,
                }));
            }
            let may_open =
                state.open_count() < MAX_CHANNELS && (!state.refused || state.open_count() == 0);
            if may_open {
                state.opening += 1;
                drop(state);
                let opened = self.open(self.dialer.current(), wait);
                state = self.state();
                state.opening -= 1;
                match opened {
                    Ok(channel) => {
                        let id = state.next_id;
                        state.next_id += 1;
                        state.slots.push(Slot {
                            id,
                            channel: None,
                            pinned: 0,
                        });
                        return Ok(Some(Lease {
                            pool: self,
                            slot: id,
                            channel: Some(channel),
                        }));
                    }
                    Err(e) if state.open_count() == 0 => return Err(e),
                    Err(e) => {
                        if !state.refused {
                            info!(
                                "{}: another SFTP channel was refused ({e}); carrying on over \
                                 the {} open",
                                self.target,
                                state.open_count()
                            );
                        }
                        state.refused = true;
                    }
                }
                continue;
            }
            if !wait {
                return Ok(None);
            }
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The channel of slot `slot`, when it is free again.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] when that channel broke.
    pub(crate) fn slot(&self, slot: usize, path: &[u8]) -> Result<Lease<'_>> {
        let mut state = self.state();
        loop {
            match state.slots.iter_mut().find(|s| s.id == slot) {
                None => {
                    return Err(sftp_error(
                        ErrorKind::Disconnected,
                        "handle",
                        &self.target,
                        path,
                        "the SFTP channel this file was opened on is closed \
                         (connection lost)",
                    ))
                }
                Some(s) if s.channel.is_some() => {
                    let channel = s.channel.take();
                    return Ok(Lease {
                        pool: self,
                        slot,
                        channel,
                    });
                }
                Some(_) => {}
            }
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A handle is open on `slot` (`+1`) or was closed (`-1`).
    pub(crate) fn pin(&self, slot: usize, open: bool) {
        let mut state = self.state();
        if let Some(s) = state.slots.iter_mut().find(|s| s.id == slot) {
            if open {
                s.pinned += 1;
            } else {
                s.pinned = s.pinned.saturating_sub(1);
            }
        }
    }

    fn give_back(&self, slot: usize, mut channel: SftpChannel) {
        let mut state = self.state();
        if channel.is_broken() {
            state.slots.retain(|s| s.id != slot);
            state.refused = false;
            drop(state);
            channel.shutdown();
        } else if let Some(s) = state.slots.iter_mut().find(|s| s.id == slot) {
            s.channel = Some(channel);
        }
        self.freed.notify_all();
    }

    /// Closes every channel (the session is going away).
    pub(crate) fn close_all(&self) {
        let mut channels: Vec<SftpChannel> = {
            let mut state = self.state();
            state
                .slots
                .iter_mut()
                .filter_map(|s| s.channel.take())
                .collect()
        };
        for ch in &mut channels {
            ch.shutdown();
        }
    }
}

impl ChannelHolder for Pool {
    fn release_idle(&self) -> bool {
        let mut state = self.state();
        let Some(i) = state
            .slots
            .iter()
            .rposition(|s| s.channel.is_some() && s.pinned == 0)
        else {
            return false;
        };
        let slot = state.slots.remove(i);
        state.refused = false;
        drop(state);
        if let Some(mut ch) = slot.channel {
            debug!(
                "{}: closing an idle SFTP channel to make room for another",
                self.target
            );
            ch.shutdown();
        }
        true
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close_all();
    }
}
