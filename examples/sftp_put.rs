//! Uploads one file atomically: the partner sees the whole file under its
//! name, or nothing (temporary name, fsync, size check, rename).
//!
//! ```text
//! cargo run --example sftp_put -- HOST PORT USER KEY_FILE|password PIN LOCAL REMOTE
//! cargo run --example sftp_put            # the same against a throwaway TestServer
//! ```

use std::time::Duration;

use etl_ssh::testkit::TestServer;
use etl_ssh::{Credential, KnownHost, Session};
use secrecy::SecretString;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        let server = TestServer::start()?;
        let local = server.sftp_root().join("orders.csv");
        std::fs::write(&local, "order_id,quantity\n1,5\n2,7\n")?;
        let sftp = server.session()?.sftp()?;
        sftp.create_dir_all(server.remote_path("inbox"))?;
        let remote = server.remote_path("inbox/orders.csv");
        let bytes = sftp.upload(&local, &remote)?;
        println!(
            "uploaded {bytes} bytes to {remote} ({} test server)",
            server.backend()
        );
        return Ok(());
    }
    let (conn, paths) = args.split_at(args.len().min(5));
    let [local, remote] = paths else {
        return Err("usage: sftp_put HOST PORT USER KEY_FILE|password PIN LOCAL REMOTE".into());
    };
    let session = connect(conn)?;
    let bytes = session.sftp()?.upload(local, remote)?;
    println!("uploaded {bytes} bytes to {remote}");
    session.close()?;
    Ok(())
}

/// `HOST PORT USER KEY_FILE|password PIN` to a verified session (the
/// password from `ETL_SSH_PASSWORD`; the pin a `SHA256:` fingerprint, a
/// `known_hosts` path or a public key line).
fn connect(args: &[String]) -> Result<Session, Box<dyn std::error::Error>> {
    let [host, port, user, secret, pin] = args else {
        return Err("expected HOST PORT USER KEY_FILE|password PIN".into());
    };
    let credential = if secret == "password" {
        let password = std::env::var("ETL_SSH_PASSWORD").map_err(|_| "set ETL_SSH_PASSWORD")?;
        Credential::password(user, SecretString::from(password))
    } else {
        Credential::key_pair(user, secret)
    };
    let pin = if pin.starts_with("SHA256:") {
        KnownHost::fingerprint(pin)?
    } else if std::path::Path::new(pin).is_file() {
        KnownHost::known_hosts_file(pin)
    } else {
        KnownHost::public_key(pin)?
    };
    Ok(Session::builder(host)
        .port(port.parse()?)
        .credential(credential)
        .known_host(pin)
        .connect_timeout(Duration::from_secs(10))
        .connect()?)
}
