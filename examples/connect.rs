//! Connects to a partner's server with a pinned host key and a key or a
//! password, and prints what the session learned.
//!
//! ```text
//! cargo run --example connect -- HOST PORT USER KEY_FILE|password PIN
//! ```
//!
//! `PIN` is a `SHA256:...` fingerprint, a `known_hosts` file path, or an
//! OpenSSH public key line (quote it). With `password` in place of a key
//! file the password is read from the `ETL_SSH_PASSWORD` environment
//! variable; a key's passphrase, if any, from `ETL_SSH_PASSPHRASE`.

use std::time::Duration;

use etl_ssh::{Credential, KnownHost, Session};
use secrecy::SecretString;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, user, secret, pin] = args.as_slice() else {
        return Err("usage: connect HOST PORT USER KEY_FILE|password PIN".into());
    };
    let credential = if secret == "password" {
        let password = std::env::var("ETL_SSH_PASSWORD").map_err(|_| "set ETL_SSH_PASSWORD")?;
        Credential::password(user, SecretString::from(password))
    } else {
        let key = Credential::key_pair(user, secret);
        match std::env::var("ETL_SSH_PASSPHRASE") {
            Ok(p) => key.with_passphrase(SecretString::from(p)),
            Err(_) => key,
        }
    };
    let pin = if pin.starts_with("SHA256:") {
        KnownHost::fingerprint(pin)?
    } else if std::path::Path::new(pin).is_file() {
        KnownHost::known_hosts_file(pin)
    } else {
        KnownHost::public_key(pin)?
    };

    let session = Session::builder(host)
        .port(port.parse()?)
        .credential(credential)
        .known_host(pin)
        .connect_timeout(Duration::from_secs(10))
        .connect()?;
    println!(
        "server   {}:{} ({})",
        session.host(),
        session.port(),
        session.peer_addr()
    );
    println!("from     {}", session.local_addr());
    println!("banner   {}", session.banner().unwrap_or("-"));
    println!("host key {}", session.host_key());
    println!("user     {} ({})", session.user(), session.auth_method());
    session.close()?;
    Ok(())
}
