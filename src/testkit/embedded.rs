//! The embedded backend: an in-process SSH server on `russh`, with SFTP
//! over the local file system (`sftp.rs`, on the crate's own packet code)
//! and exec through `sh -c`.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, Config, Handler, Msg, RunningServerHandle, Server, Session};
use russh::{Channel, ChannelId, ChannelMsg, MethodKind, MethodSet, Sig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use super::sftp::{serve, Quirks, SftpServer};

/// Who may log in, and what the server serves.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) key_user: String,
    pub(crate) keys: Vec<PublicKey>,
    /// The password user and password, when password authentication is on.
    pub(crate) password: Option<(String, String)>,
    pub(crate) refuse_auth: AtomicBool,
    pub(crate) root: PathBuf,
    /// How the SFTP server departs from a well-behaved one.
    pub(crate) quirks: Quirks,
    /// Session channels one connection may have open at once (`None`: no
    /// limit), as OpenSSH's `MaxSessions`.
    pub(crate) max_channels: Option<usize>,
    /// The connection ends when its first channel closes, as tinysshd
    /// does.
    pub(crate) one_channel_per_connection: bool,
    /// The receive window the server grants per channel.
    pub(crate) window_size: Option<u32>,
    /// Exec channels close without an exit status or signal.
    pub(crate) omit_exit_status: bool,
    /// At most this many logins of a user at once, and what happens to
    /// one more.
    pub(crate) login_limit: Option<(usize, super::LoginLimit)>,
    /// The logins now: connection id, and its handle once it opened a
    /// channel.
    pub(crate) logins: std::sync::Mutex<Vec<(u64, Option<russh::server::Handle>)>>,
    pub(crate) next_login: std::sync::atomic::AtomicU64,
}

/// The running server; stops on drop.
pub(crate) struct Embedded {
    runtime: Option<Runtime>,
    handle: RunningServerHandle,
    addr: SocketAddr,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Embedded {
    pub(crate) fn start(shared: Arc<Shared>, host_keys: Vec<PrivateKey>) -> io::Result<Embedded> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etl-ssh-testkit")
            .enable_all()
            .build()?;
        let mut methods = MethodSet::empty();
        methods.push(MethodKind::PublicKey);
        if shared.password.is_some() {
            methods.push(MethodKind::Password);
        }
        let config = Arc::new(Config {
            server_id: russh::SshId::Standard("SSH-2.0-etl_ssh_testkit".into()),
            methods,
            auth_rejection_time: Duration::from_millis(10),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: host_keys,
            inactivity_timeout: Some(Duration::from_secs(3600)),
            nodelay: true,
            window_size: shared.window_size.unwrap_or(Config::default().window_size),
            ..Config::default()
        });
        let listener =
            runtime.block_on(async { tokio::net::TcpListener::bind(("127.0.0.1", 0)).await })?;
        let addr = listener.local_addr()?;
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let mut server = TestSshServer { shared };
            let running = server.run_on_socket(config, &listener);
            let _ = tx.send(running.handle());
            let _ = running.await;
        });
        let handle = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| io::Error::other(format!("embedded server did not start: {e}")))?;
        Ok(Embedded {
            runtime: Some(runtime),
            handle,
            addr,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.handle.shutdown("test server stopped".into());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

struct TestSshServer {
    shared: Arc<Shared>,
}

impl Server for TestSshServer {
    type Handler = Connection;

    fn new_client(&mut self, _peer: Option<SocketAddr>) -> Connection {
        Connection {
            id: self.shared.next_login.fetch_add(1, Ordering::SeqCst),
            shared: Arc::clone(&self.shared),
            channels: HashMap::new(),
            sftp_channels: HashSet::new(),
            live: Arc::default(),
            opened: 0,
            over_limit: false,
        }
    }
}

struct Connection {
    /// This connection, among the logins.
    id: u64,
    /// One login more than [`LoginLimit::RefuseNew`] allows: its first
    /// channel ends the connection.
    over_limit: bool,
    shared: Arc<Shared>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    sftp_channels: HashSet<ChannelId>,
    /// Session channels open now (a command's task takes its own out when
    /// it closes the channel: the client's close of a channel the server
    /// closed first never reaches `channel_close`).
    live: Arc<std::sync::Mutex<HashSet<ChannelId>>>,
    /// Session channels ever opened on this connection.
    opened: usize,
}

impl Connection {
    fn live(&self) -> std::sync::MutexGuard<'_, HashSet<ChannelId>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn logins(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Option<russh::server::Handle>)>> {
        self.shared.logins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An authentication succeeded: count the login against the limit,
    /// ending the oldest one ([`LoginLimit::KickOldest`]) or marking this
    /// one to be turned away at its first channel
    /// ([`LoginLimit::RefuseNew`]), as `pam_limits`' `maxlogins` does.
    fn admit(&mut self) -> Auth {
        let shared = Arc::clone(&self.shared);
        let mut logins = shared.logins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((max, policy)) = shared.login_limit {
            if logins.len() >= max {
                match policy {
                    super::LoginLimit::RefuseNew => self.over_limit = true,
                    super::LoginLimit::KickOldest => {
                        let (_, handle) = logins.remove(0);
                        if let Some(handle) = handle {
                            tokio::spawn(async move {
                                let _ = handle
                                    .disconnect(
                                        russh::Disconnect::ByApplication,
                                        "logged out: another login of this user arrived".into(),
                                        String::new(),
                                    )
                                    .await;
                            });
                        }
                    }
                }
            }
        }
        if !self.over_limit {
            logins.push((self.id, None));
        }
        Auth::Accept
    }

    /// A channel ended: with one channel per connection, so does the
    /// connection.
    fn ended(&self, channel: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
        self.live().remove(&channel);
        if self.shared.one_channel_per_connection {
            session.disconnect(
                russh::Disconnect::ByApplication,
                "one channel per connection",
                "",
            )?;
        }
        Ok(())
    }
}

impl Connection {
    fn refusing(&self) -> bool {
        self.shared.refuse_auth.load(Ordering::SeqCst)
    }

    fn key_ok(&self, user: &str, key: &PublicKey) -> bool {
        !self.refusing()
            && user == self.shared.key_user
            && self
                .shared
                .keys
                .iter()
                .any(|k| k.key_data() == key.key_data())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let id = self.id;
        self.logins().retain(|(i, _)| *i != id);
    }
}

impl Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let accepted = self
            .shared
            .password
            .as_ref()
            .is_some_and(|(u, p)| !self.refusing() && user == u && password == p);
        if accepted {
            Ok(self.admit())
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.key_ok(user, key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(&mut self, user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        Ok(if self.key_ok(user, key) {
            self.admit()
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.over_limit {
            session.disconnect(
                russh::Disconnect::TooManyConnections,
                "Too many logins for this user",
                "",
            )?;
            return Ok(());
        }
        let id = self.id;
        if let Some(login) = self.logins().iter_mut().find(|(i, _)| *i == id) {
            login.1.get_or_insert_with(|| session.handle());
        }
        self.opened += 1;
        let limit = match (
            self.shared.max_channels,
            self.shared.one_channel_per_connection,
        ) {
            (_, true) => Some(1),
            (limit, false) => limit,
        };
        if limit.is_some_and(|max| self.live().len() >= max)
            || (self.shared.one_channel_per_connection && self.opened > 1)
        {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.live().insert(channel.id());
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.sftp_channels.remove(&channel) {
            session.close(channel)?;
            self.ended(channel, session)?;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.sftp_channels.remove(&channel);
        self.ended(channel, session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // As OpenSSH without AcceptEnv: every variable is refused.
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(chan) = self.channels.remove(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let command = data.to_vec();
        let root = self.shared.root.clone();
        let handle = session.handle();
        let live = Arc::clone(&self.live);
        let one_channel = self.shared.one_channel_per_connection;
        let report_status = !self.shared.omit_exit_status;
        tokio::spawn(async move {
            let id = chan.id();
            run_command(chan, command, root, handle.clone(), report_status).await;
            live.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            if one_channel {
                // After the client had time to read what the command said
                // and close its side, as tinysshd ends after the close.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "one channel per connection".into(),
                        String::new(),
                    )
                    .await;
            }
        });
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.channels.remove(&channel)) {
            ("sftp", Some(_)) if self.shared.quirks.fail_start.is_some() => {
                session.channel_success(channel)?;
                if let Some((words, status)) = &self.shared.quirks.fail_start {
                    session.extended_data(channel, 1, words.as_bytes().to_vec())?;
                    session.exit_status_request(channel, *status)?;
                }
                session.eof(channel)?;
                session.close(channel)?;
            }
            ("sftp", Some(chan)) => {
                session.channel_success(channel)?;
                self.sftp_channels.insert(channel);
                let server = SftpServer::new(self.shared.root.clone(), self.shared.quirks.clone());
                tokio::spawn(serve(chan.into_stream(), server));
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }
}

fn signal_name(signal: i32) -> Sig {
    match signal {
        1 => Sig::HUP,
        2 => Sig::INT,
        3 => Sig::QUIT,
        4 => Sig::ILL,
        6 => Sig::ABRT,
        8 => Sig::FPE,
        9 => Sig::KILL,
        10 => Sig::USR1,
        11 => Sig::SEGV,
        13 => Sig::PIPE,
        14 => Sig::ALRM,
        15 => Sig::TERM,
        other => Sig::Custom(format!("SIG{other}")),
    }
}

/// Runs `sh -c COMMAND` in the SFTP root with the channel as its stdin,
/// stdout and stderr, then reports the exit status or signal (unless
/// `report_status` is false) and closes.
async fn run_command(
    chan: Channel<Msg>,
    command: Vec<u8>,
    root: PathBuf,
    handle: russh::server::Handle,
    report_status: bool,
) {
    use std::os::unix::ffi::OsStrExt;
    let id = chan.id();
    let (mut read_half, write_half) = chan.split();
    let spawned = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(std::ffi::OsStr::from_bytes(&command))
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let mut err = write_half.make_writer_ext(Some(1));
            let _ = err.write_all(format!("sh: {e}\n").as_bytes()).await;
            let _ = write_half.exit_status(127).await;
            let _ = write_half.eof().await;
            let _ = write_half.close().await;
            return;
        }
    };

    // Client -> stdin. The channel is drained at once into an unbounded
    // queue, so a command that does not read its input never holds up the
    // connection (and with it the window adjustments for our output).
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
    tokio::spawn(async move {
        while let Some(msg) = read_half.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    let _ = tx.send(Some(data.to_vec()));
                }
                ChannelMsg::Eof => {
                    let _ = tx.send(None);
                }
                _ => {}
            }
        }
        let _ = tx.send(None);
    });
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            while let Some(Some(data)) = rx.recv().await {
                if stdin.write_all(&data).await.is_err() {
                    break;
                }
            }
            // Dropping stdin closes it: the command sees end of input.
        });
    }

    let out = child.stdout.take().map(|mut stdout| {
        let mut w = write_half.make_writer();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 || w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = w.flush().await;
        })
    });
    let err = child.stderr.take().map(|mut stderr| {
        let mut w = write_half.make_writer_ext(Some(1));
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 || w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = w.flush().await;
        })
    });
    for task in [out, err].into_iter().flatten() {
        let _ = task.await;
    }
    let status = child.wait().await;
    if !report_status {
        // As a server that drops the message: output, EOF, close, no status.
        let _ = write_half.eof().await;
        let _ = write_half.close().await;
        return;
    }
    // The exit status goes before EOF, as OpenSSH sends it: a client may
    // close the channel as soon as it sees EOF.
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => {
                let _ = write_half
                    .exit_status(u32::from_ne_bytes(code.to_ne_bytes()))
                    .await;
            }
            (None, Some(sig)) => {
                let _ = handle
                    .exit_signal_request(
                        id,
                        signal_name(sig),
                        s.core_dumped(),
                        String::new(),
                        String::new(),
                    )
                    .await;
            }
            (None, None) => {}
        },
        Err(_) => {
            let _ = write_half.exit_status(255).await;
        }
    }
    let _ = write_half.eof().await;
    let _ = write_half.close().await;
}
