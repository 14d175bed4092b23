//! A long link inside the kernel: two TUN devices, one in this network
//! namespace and one in a namespace of the bench's own, joined by a
//! forwarder that holds every packet for the one-way delay.
//!
//! The TCP delay line ends TCP at the proxy and buffers the link's bytes in
//! user space, so a connection's receive window never limits what crosses
//! it. Through this link TCP runs end to end between the client (in the
//! bench's namespace) and a relay in front of the server (in this one):
//! slow start, the receive buffer and its window are the real kernel's.
//! Needs root and `/dev/net/tun`; [`TunLink::start`] says why not where it
//! cannot run.
//!
//! One link serves a whole bench run: its delay is set for each round
//! trip ([`TunLink::set_one_way`]), since its devices stay until the
//! process ends (the forwarder's threads hold them). The named namespace
//! is deleted when the link is dropped, and one left by a killed bench is
//! deleted by the next start.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
use tun_tap::{Iface, Mode};

/// This namespace's end of the link: where the relay to the server listens.
pub(crate) const SERVER_SIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 254, 77, 1));
/// The client's end, in the bench's namespace.
const CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(10, 254, 77, 2);
/// Packets as large as a TUN device takes, so that the forwarder moves
/// few of them (the link models delay, not a wire's frame size).
const MTU: usize = 65_000;
const NETNS_PREFIX: &str = "etl-ssh-bench-";

/// The link; the client's side is entered with [`TunLink::in_client`].
#[derive(Debug)]
pub(crate) struct TunLink {
    netns: String,
    client_ns: File,
    home_ns: File,
    /// The one-way delay, in microseconds, that the forwarder holds each
    /// packet for.
    one_way_us: Arc<AtomicU64>,
}

impl TunLink {
    /// Builds the link with `one_way` delay each way. Once per process:
    /// its devices stay until the process ends.
    ///
    /// # Errors
    ///
    /// Where the namespace or the devices cannot be made (not root, no
    /// `/dev/net/tun`, no `ip`).
    pub(crate) fn start(one_way: Duration) -> io::Result<TunLink> {
        remove_stale_namespaces();
        let pid = std::process::id();
        let netns = format!("{NETNS_PREFIX}{pid}");
        ip(&["netns", "add", &netns])?;
        let opened = File::open(format!("/run/netns/{netns}"))
            .and_then(|client| Ok((client, File::open("/proc/thread-self/ns/net")?)));
        let (client_ns, home_ns) = match opened {
            Ok(both) => both,
            Err(e) => {
                let _ = ip(&["netns", "del", &netns]);
                return Err(e);
            }
        };
        // From here on, dropping the link deletes the namespace.
        let link = TunLink {
            client_ns,
            home_ns,
            netns,
            one_way_us: Arc::new(AtomicU64::new(0)),
        };
        link.set_one_way(one_way);
        let (home_dev, client_dev) = (format!("etlr{pid}"), format!("etlc{pid}"));
        let home = Arc::new(Iface::without_packet_info(&home_dev, Mode::Tun)?);
        let client = Arc::new(Iface::without_packet_info(&client_dev, Mode::Tun)?);
        let mtu = MTU.to_string();
        ip(&["link", "set", &client_dev, "netns", &link.netns])?;
        let ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &link.netns, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        ns(&["link", "set", "lo", "up"])?;
        let (server_side, client_side) = (SERVER_SIDE.to_string(), CLIENT_SIDE.to_string());
        ns(&[
            "addr",
            "add",
            &client_side,
            "peer",
            &server_side,
            "dev",
            &client_dev,
        ])?;
        ns(&["link", "set", &client_dev, "mtu", &mtu, "up"])?;
        ip(&[
            "addr",
            "add",
            &server_side,
            "peer",
            &client_side,
            "dev",
            &home_dev,
        ])?;
        ip(&["link", "set", &home_dev, "mtu", &mtu, "up"])?;
        forward(Arc::clone(&home), Arc::clone(&client), &link.one_way_us);
        forward(client, home, &link.one_way_us);
        Ok(link)
    }

    /// Holds each packet for `one_way` from now on, each way.
    pub(crate) fn set_one_way(&self, one_way: Duration) {
        let us = u64::try_from(one_way.as_micros()).unwrap_or(u64::MAX);
        self.one_way_us.store(us, Ordering::SeqCst);
    }

    /// Runs `job` with this thread in the client's namespace: the
    /// connections it makes, and the threads and processes it starts,
    /// reach the server through the link.
    pub(crate) fn in_client<T>(&self, job: impl FnOnce() -> T) -> T {
        let enter = |ns: &File| {
            move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network)).expect("setns")
        };
        enter(&self.client_ns);
        let out = job();
        enter(&self.home_ns);
        out
    }
}

impl Drop for TunLink {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

/// One direction: a reader stamps each packet with its due time, a writer
/// hands it to the other device then (the queue between them is the link
/// in flight, with no limit of its own).
fn forward(from: Arc<Iface>, to: Arc<Iface>, one_way_us: &Arc<AtomicU64>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let one_way_us = Arc::clone(one_way_us);
    thread::spawn(move || {
        let mut buf = vec![0u8; MTU + 64];
        while let Ok(n) = from.recv(&mut buf) {
            let one_way = Duration::from_micros(one_way_us.load(Ordering::SeqCst));
            if tx
                .send((Instant::now() + one_way, buf[..n].to_vec()))
                .is_err()
            {
                return;
            }
        }
    });
    thread::spawn(move || {
        for (due, packet) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.send(&packet).is_err() {
                return;
            }
        }
    });
}

/// Deletes the namespaces of benches that are gone (killed before their
/// `Drop`).
fn remove_stale_namespaces() {
    let Ok(names) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for name in names.flatten() {
        let name = name.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
