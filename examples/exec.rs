//! Runs one command on the server and prints its stdout, stderr and exit
//! status; the process exits with the command's code.
//!
//! ```text
//! cargo run --example exec -- HOST PORT USER KEY_FILE|password PIN 'COMMAND'
//! cargo run --example exec                # `uname -a` on a throwaway TestServer
//! ```

use std::io::Write;
use std::time::Duration;

use etl_ssh::testkit::TestServer;
use etl_ssh::{Credential, ExecOutput, KnownHost, Session};
use secrecy::SecretString;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = if args.is_empty() {
        let server = TestServer::start()?;
        println!("({} test server)", server.backend());
        server.session()?.exec()?.run("uname -a")?
    } else {
        let (conn, rest) = args.split_at(args.len().min(5));
        let [command] = rest else {
            return Err("usage: exec HOST PORT USER KEY_FILE|password PIN 'COMMAND'".into());
        };
        let session = connect(conn)?;
        let out = session.exec()?.run(command)?;
        session.close()?;
        out
    };
    report(&out)?;
    std::process::exit(out.exit_code().unwrap_or(255));
}

fn report(out: &ExecOutput) -> std::io::Result<()> {
    std::io::stdout().write_all(out.stdout())?;
    std::io::stderr().write_all(out.stderr())?;
    match (out.exit_code(), out.exit_signal()) {
        (Some(code), _) => eprintln!("exit code {code}"),
        (None, Some(signal)) => eprintln!("killed by SIG{signal}"),
        (None, None) => eprintln!("no exit status"),
    }
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
