//! Connects to a server once and prints its host key, so an operator can
//! compare the fingerprint with the one the partner gives out of band and
//! then pin it.
//!
//! ```text
//! cargo run --example host_fingerprint -- HOST [PORT]
//! ```
//!
//! No credential is offered: the connection stops right after the host key
//! check, before any authentication request.

use etl_ssh::{Credential, Session};
use secrecy::SecretString;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let host = args.next().ok_or("usage: host_fingerprint HOST [PORT]")?;
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(22);
    // No pin: the server's key is reported as unknown, with its fingerprint.
    let err = Session::builder(&host)
        .port(port)
        .credential(Credential::password("nobody", SecretString::from("")))
        .connect()
        .err()
        .ok_or("connected without a pin: this cannot happen")?;
    match err {
        etl_ssh::Error::HostKeyUnknown { key_type, seen, .. } => {
            println!("{host}:{port} {key_type} {seen}");
            println!("pin it with KnownHost::fingerprint(\"{seen}\") once the partner confirms it");
            Ok(())
        }
        other => Err(other.into()),
    }
}
