//! Reaching the server: resolve, TCP (bound to a local address, through an
//! HTTP proxy), and the socket libssh2 talks through.

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info};
use socket2::{Domain, Protocol, Socket, Type};

use super::{tunnel, SessionBuilder};
use crate::conn::Transport;
use crate::{Error, ErrorKind, Result};

impl SessionBuilder {
    /// The byte stream to the server: a TCP connection (direct or through
    /// an HTTP proxy) or a tunnel through the `jump` host; with the
    /// addresses of the TCP connection it rides on.
    pub(super) fn transport(
        &self,
        jump: Option<&std::sync::Arc<super::SessionInner>>,
    ) -> Result<(Transport, SocketAddr, SocketAddr)> {
        if let Some(jump) = jump {
            let socket = tunnel::open(jump, &self.host, self.port)?;
            info!(
                "connected to {}:{} through jump host {}",
                self.host,
                self.port,
                jump.target()
            );
            return Ok((
                Transport::Tunnel(socket),
                jump.conn().peer_addr(),
                jump.conn().local_addr(),
            ));
        }
        let deadline = Instant::now() + self.connect_timeout;
        let (dial_host, dial_port) = match &self.http_proxy {
            Some((host, port)) => (host.as_str(), *port),
            None => (self.host.as_str(), self.port),
        };
        let addrs = resolve(dial_host, dial_port, self.connect_timeout)?;
        let stream = self.connect_tcp(dial_host, dial_port, &addrs, deadline)?;
        if self.http_proxy.is_some() {
            self.http_connect(&stream, dial_host, dial_port, deadline)?;
        }
        let local_addr = stream.local_addr().map_err(|e| self.connect_error(e))?;
        // A reset right after the connection was accepted is the server (or
        // a firewall in front of it) hanging up on us, as an allow-list does.
        let peer_addr = stream.peer_addr().map_err(|e| {
            if is_reset(&e) {
                self.reset(Some(local_addr), e)
            } else {
                self.connect_error(e)
            }
        })?;
        info!(
            "connected to {}:{} ({peer_addr}) from {local_addr}",
            self.host, self.port
        );
        Ok((Transport::Tcp(stream), peer_addr, local_addr))
    }

    /// The server (or a firewall in front of it) accepted the connection
    /// and reset it at once, as an allow-list does.
    fn reset(&self, local: Option<SocketAddr>, source: io::Error) -> Error {
        Error::Disconnected {
            host: self.host.clone(),
            port: self.port,
            local,
            stage: Error::STAGE_TCP,
            source: Some(Box::new(source)),
        }
    }

    pub(super) fn connect_error(&self, source: io::Error) -> Error {
        self.connect_error_to(&self.host, self.port, source)
    }

    fn connect_error_to(&self, host: &str, port: u16, source: io::Error) -> Error {
        Error::Connect {
            host: host.to_string(),
            port,
            local: self.bind_address,
            source,
        }
    }

    /// Asks the HTTP proxy on `stream` for a tunnel to the server.
    fn http_connect(
        &self,
        stream: &TcpStream,
        proxy: &str,
        proxy_port: u16,
        deadline: Instant,
    ) -> Result<()> {
        let authority = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let operation = format!("HTTP CONNECT to {authority} through {proxy}:{proxy_port}");
        let io_error = |e: io::Error| match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout {
                operation: operation.clone(),
                timeout: self.connect_timeout,
            },
            _ => self.connect_error_to(proxy, proxy_port, e),
        };
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io_error(io::ErrorKind::TimedOut.into()))?;
        stream
            .set_write_timeout(Some(remaining))
            .map_err(io_error)?;
        stream.set_read_timeout(Some(remaining)).map_err(io_error)?;
        let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        (&mut &*stream)
            .write_all(request.as_bytes())
            .map_err(io_error)?;
        // Byte by byte: whatever follows the headers is the SSH server's
        // banner, which libssh2 must read itself.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                return Err(Error::Ssh {
                    kind: ErrorKind::Protocol,
                    context: format!("{operation}: the proxy's answer is not HTTP"),
                    source: None,
                });
            }
            match (&mut &*stream).read(&mut byte).map_err(io_error)? {
                0 => {
                    return Err(self.connect_error_to(
                        proxy,
                        proxy_port,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the proxy closed the connection",
                        ),
                    ))
                }
                _ => head.push(byte[0]),
            }
        }
        stream.set_write_timeout(None).map_err(io_error)?;
        stream.set_read_timeout(None).map_err(io_error)?;
        let head = String::from_utf8_lossy(&head);
        let status_line = head.lines().next().unwrap_or_default().trim().to_string();
        let status = status_line.split_whitespace().nth(1);
        if !status_line.starts_with("HTTP/1.") || status != Some("200") {
            return Err(Error::Ssh {
                kind: ErrorKind::Connect,
                context: format!("{operation}: the proxy answered `{status_line}`"),
                source: None,
            });
        }
        debug!("{operation}: tunnel open");
        Ok(())
    }

    /// Tries each address in turn until one connects or the deadline passes.
    fn connect_tcp(
        &self,
        host: &str,
        port: u16,
        addrs: &[SocketAddr],
        deadline: Instant,
    ) -> Result<TcpStream> {
        let candidates: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| self.bind_address.is_none_or(|b| b.is_ipv4() == a.is_ipv4()))
            .collect();
        if candidates.is_empty() {
            return Err(self.connect_error_to(
                host,
                port,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the host has no address of the bind address's family",
                ),
            ));
        }
        let mut last = None;
        for addr in candidates {
            let Some(remaining) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match try_connect(addr, self.bind_address, self.receive_buffer, remaining) {
                Ok(stream) => return Ok(stream),
                Err(e) => {
                    debug!("TCP connect to {addr} failed: {e}");
                    last = Some(e);
                }
            }
        }
        match last {
            Some(e) if is_reset(&e) => Err(self.reset(None, e)),
            Some(e) if e.kind() != io::ErrorKind::TimedOut => {
                Err(self.connect_error_to(host, port, e))
            }
            _ => Err(Error::Timeout {
                operation: format!("TCP connect to {host}:{port}"),
                timeout: self.connect_timeout,
            }),
        }
    }
}

/// Resolves `host`, bounded by `timeout` (the system resolver has no deadline
/// of its own: it runs on a helper thread that is abandoned on timeout).
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    thread::Builder::new()
        .name("etl-ssh-resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        })
        .map_err(|e| Error::io("cannot start the resolver thread", e))?;
    let resolve_error = |source| Error::Resolve {
        host: host.to_string(),
        source,
    };
    match rx.recv_timeout(timeout.max(Duration::from_millis(1))) {
        Ok(Ok(addrs)) if !addrs.is_empty() => {
            debug!("{host} resolves to {addrs:?}");
            Ok(addrs)
        }
        Ok(Ok(_)) => Err(resolve_error(io::Error::new(
            io::ErrorKind::NotFound,
            "no address",
        ))),
        Ok(Err(e)) => Err(resolve_error(e)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout {
            operation: format!("resolving {host}"),
            timeout,
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(resolve_error(io::Error::other(
            "the resolver thread ended without an answer",
        ))),
    }
}

fn try_connect(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    receive_buffer: Option<usize>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = bind {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    if let Some(bytes) = receive_buffer {
        // Before connecting: the window scale is agreed in the handshake.
        match receive_buffer_limit() {
            Some(max) if bytes <= max => socket.set_recv_buffer_size(bytes)?,
            limit => debug!(
                "receive buffer left to the kernel: {bytes} bytes wanted, the limit is {limit:?}"
            ),
        }
    }
    socket.connect_timeout(&addr.into(), timeout.max(Duration::from_millis(1)))?;
    // libssh2 does not set TCP_NODELAY; without it each handshake round
    // trip and small SFTP request waits on Nagle's algorithm.
    socket.set_nodelay(true)?;
    socket.set_keepalive(true)?;
    Ok(socket.into())
}

/// The largest `SO_RCVBUF` the system grants (`net.core.rmem_max`); `None`
/// where it cannot be read (other systems than Linux): a fixed buffer is
/// only set where it is known to be granted whole, since it turns off the
/// kernel's automatic sizing.
fn receive_buffer_limit() -> Option<usize> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A connection accepted and then reset or dropped before we could use it.
fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_with(receive_buffer: Option<usize>) -> usize {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().expect("address");
        let stream =
            try_connect(addr, None, receive_buffer, Duration::from_secs(5)).expect("connect");
        socket2::SockRef::from(&stream)
            .recv_buffer_size()
            .expect("SO_RCVBUF")
    }

    #[test]
    fn the_receive_buffer_is_set_only_when_granted_whole() {
        let auto = connect_with(None);
        match receive_buffer_limit() {
            Some(max) => {
                // Linux reports twice what was set (its bookkeeping).
                let wanted = (max / 2).max(4096);
                assert!(connect_with(Some(wanted)) >= wanted, "set within the limit");
                assert_eq!(
                    connect_with(Some(max + 1)),
                    auto,
                    "over the limit: left alone"
                );
            }
            None => assert_eq!(
                connect_with(Some(1 << 20)),
                auto,
                "no known limit: left alone"
            ),
        }
    }
}
