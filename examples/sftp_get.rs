//! Downloads one file atomically on our side: the local target appears only
//! once it is complete, and a failed download leaves the old one untouched.
//!
//! ```text
//! cargo run --example sftp_get -- HOST PORT USER KEY_FILE|password PIN REMOTE LOCAL
//! cargo run --example sftp_get            # the same against a throwaway TestServer
//! ```

use std::time::Duration;

use etl_ssh::testkit::TestServer;
use etl_ssh::{Credential, KnownHost, Session};
use secrecy::SecretString;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        let server = TestServer::start()?;
        std::fs::create_dir(server.sftp_root().join("outbox"))?;
        std::fs::write(
            server.sftp_root().join("outbox/report.csv"),
            "day,total\n1,42\n",
        )?;
        let local = tempfile::tempdir()?;
        let target = local.path().join("report.csv");
        let remote = server.remote_path("outbox/report.csv");
        let bytes = server.session()?.sftp()?.download(&remote, &target)?;
        println!(
            "downloaded {bytes} bytes from {remote} ({} test server):\n{}",
            server.backend(),
            std::fs::read_to_string(&target)?
        );
        return Ok(());
    }
    let (conn, paths) = args.split_at(args.len().min(5));
    let [remote, local] = paths else {
        return Err("usage: sftp_get HOST PORT USER KEY_FILE|password PIN REMOTE LOCAL".into());
    };
    let session = connect(conn)?;
    let bytes = session.sftp()?.download(remote, local)?;
    println!("downloaded {bytes} bytes to {local}");
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
