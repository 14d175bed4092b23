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

mod common;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 {
        return Err(format!("usage: connect {}", common::CONNECT_ARGS).into());
    }
    let session = common::connect(&args)?;
    println!(
        "server   {}:{} ({})",
        session.host(),
        session.port(),
        session.peer_addr()
    );
    println!("from     {}", session.local_addr());
    println!("banner   {}", session.identification().unwrap_or("-"));
    println!("host key {}", session.host_key());
    println!("user     {} ({})", session.user(), session.auth_method());
    session.close()?;
    Ok(())
}
