//! The fault proxy: a loopback TCP relay in front of either backend that can
//! cut, stall or slow every connection on request.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// No limit.
const NONE: u64 = u64::MAX;

#[derive(Debug, Default)]
struct Slow {
    delay: Duration,
    /// Bytes per second in each direction; 0 = unlimited.
    rate: u64,
}

#[derive(Debug)]
struct State {
    stopped: AtomicBool,
    /// Bytes relayed so far, both directions, all connections.
    counted: AtomicU64,
    /// Close every connection once `counted` passes this.
    close_at: AtomicU64,
    /// Stop relaying once `counted` passes this.
    stall_at: AtomicU64,
    slow: Mutex<Slow>,
    streams: Mutex<Vec<TcpStream>>,
}

impl State {
    fn close_all(&self) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        for s in streams.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The running proxy; stops (and closes every connection) on drop.
#[derive(Debug)]
pub(crate) struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 on a free port and relays to `target`.
    pub(crate) fn start(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            stopped: AtomicBool::new(false),
            counted: AtomicU64::new(0),
            close_at: AtomicU64::new(NONE),
            stall_at: AtomicU64::new(NONE),
            slow: Mutex::new(Slow::default()),
            streams: Mutex::new(Vec::new()),
        });
        let st = Arc::clone(&state);
        let accept = thread::Builder::new()
            .name("etl-ssh-testkit-proxy".into())
            .spawn(move || accept_loop(&listener, target, &st))?;
        Ok(Proxy {
            addr,
            state,
            accept: Some(accept),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.state.counted.load(Ordering::SeqCst)
    }

    pub(crate) fn close_after(&self, bytes: u64) {
        let now = self.bytes();
        self.state
            .close_at
            .store(now.saturating_add(bytes), Ordering::SeqCst);
    }

    pub(crate) fn stall_after(&self, bytes: u64) {
        let now = self.bytes();
        self.state
            .stall_at
            .store(now.saturating_add(bytes), Ordering::SeqCst);
    }

    pub(crate) fn slow(&self, delay: Duration, bytes_per_second: u64) {
        let mut slow = self
            .state
            .slow
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slow = Slow {
            delay,
            rate: bytes_per_second,
        };
    }

    pub(crate) fn heal(&self) {
        self.state.close_at.store(NONE, Ordering::SeqCst);
        self.state.stall_at.store(NONE, Ordering::SeqCst);
        self.slow(Duration::ZERO, 0);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stopped`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
        // The listener is closed once the accept loop has returned.
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.state.close_all();
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, st: &Arc<State>) {
    for client in listener.incoming() {
        if st.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let pairs = (|| -> io::Result<_> {
            let mut streams = st.streams.lock().unwrap_or_else(PoisonError::into_inner);
            streams.push(client.try_clone()?);
            streams.push(server.try_clone()?);
            Ok([(client.try_clone()?, server.try_clone()?), (server, client)])
        })();
        let Ok(pairs) = pairs else { continue };
        for (from, to) in pairs {
            let st = Arc::clone(st);
            let _ = thread::Builder::new()
                .name("etl-ssh-testkit-pump".into())
                .spawn(move || pump(from, to, &st));
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, st: &State) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let rate = st.slow.lock().unwrap_or_else(PoisonError::into_inner).rate;
        // A rate limit relays in small chunks, so the delay is smooth.
        let chunk = if rate > 0 {
            usize::try_from(rate / 10)
                .unwrap_or(buf.len())
                .clamp(1, buf.len())
        } else {
            buf.len()
        };
        let n = match from.read(&mut buf[..chunk]) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        let before = st.counted.fetch_add(n as u64, Ordering::SeqCst);
        let after = before + n as u64;
        let close_at = st.close_at.load(Ordering::SeqCst);
        if after > close_at {
            let allowed = usize::try_from(close_at.saturating_sub(before)).unwrap_or(n);
            let _ = to.write_all(&buf[..allowed.min(n)]);
            st.close_all();
            return;
        }
        let stall_at = st.stall_at.load(Ordering::SeqCst);
        let mut data = &buf[..n];
        if after > stall_at {
            let allowed = usize::try_from(stall_at.saturating_sub(before)).unwrap_or(n);
            if to.write_all(&data[..allowed.min(n)]).is_err() {
                return;
            }
            data = &data[allowed.min(n)..];
            // Hold the rest until healed or stopped; the connection stays open.
            while st.stall_at.load(Ordering::SeqCst) != NONE {
                if st.stopped.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        // Read after the wait for data: a change made meanwhile applies.
        let (delay, rate) = {
            let slow = st.slow.lock().unwrap_or_else(PoisonError::into_inner);
            (slow.delay, slow.rate)
        };
        let started = Instant::now();
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        if rate > 0 {
            let due = Duration::from_secs_f64(n as f64 / rate as f64);
            if let Some(rest) = due.checked_sub(started.elapsed()) {
                thread::sleep(rest);
            }
        }
        if to.write_all(data).is_err() {
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
    }
}
