//! The main ETL job end to end: connect with a pinned host key, upload a
//! generated CSV atomically, list the inbox, checksum it over exec,
//! download it back, compare, and print a short report.
//!
//! ```text
//! cargo run --example quickstart
//! cargo run --example quickstart -- HOST PORT USER KEY_FILE|password PIN
//! ```
//!
//! With no arguments it starts a throwaway [`TestServer`] (OpenSSH's `sshd`
//! when installed, else the embedded server) and runs against it. With
//! arguments it runs against a real server: `PIN` is a `SHA256:...`
//! fingerprint, a `known_hosts` path or a public key line (quoted); with
//! `password` in place of a key file the password comes from
//! `ETL_SSH_PASSWORD`. The job works in `/tmp/etl-ssh-quickstart` there
//! (`ETL_SSH_INBOX` to change it) and needs `sha256sum` on the server.

mod common;

use std::path::Path;
use std::time::Instant;

use etl_ssh::testkit::TestServer;
use etl_ssh::Session;
use sha2::{Digest, Sha256};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let work = tempfile::tempdir()?;
    match args.as_slice() {
        [] => {
            let server = TestServer::start()?;
            println!(
                "started a {} test server on {}:{}",
                server.backend(),
                server.host(),
                server.port()
            );
            let session = server.session_builder().connect()?;
            run_job(session, &server.remote_path("inbox"), work.path())
        }
        conn if conn.len() == 5 => {
            let session = common::connect(conn)?;
            let inbox = std::env::var("ETL_SSH_INBOX")
                .unwrap_or_else(|_| "/tmp/etl-ssh-quickstart".to_string());
            run_job(session, &inbox, work.path())
        }
        _ => Err("usage: quickstart [HOST PORT USER KEY_FILE|password PIN]".into()),
    }
}

fn run_job(session: Session, inbox: &str, work: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    println!(
        "connected to {} as {}, host key {}",
        session.host(),
        session.user(),
        session.host_key().fingerprint()
    );

    // A generated CSV: 10,000 orders.
    let local = work.join("orders.csv");
    let mut csv = String::from("order_id,customer,quantity,amount\n");
    for i in 0..10_000u32 {
        csv.push_str(&format!(
            "{i},C{:05},{},{}.{:02}\n",
            i % 977,
            1 + i % 9,
            10 + i % 490,
            i % 100
        ));
    }
    std::fs::write(&local, &csv)?;
    let local_sha = hex(&Sha256::digest(csv.as_bytes()));

    // Atomic upload: written under a temporary name, renamed when complete.
    let sftp = session.sftp()?;
    sftp.create_dir_all(inbox)?;
    let remote = format!("{}/orders.csv", inbox.trim_end_matches('/'));
    let uploaded = sftp.upload(&local, &remote)?;

    let listing = sftp.read_dir(inbox)?;
    println!("{inbox}:");
    for entry in &listing {
        println!("  {:>10}  {}", entry.metadata().len(), entry.name());
    }

    // The partner's checksum of what it received.
    let out = session.exec()?.run_args(["sha256sum", &remote])?;
    if !out.success() {
        return Err(format!(
            "sha256sum failed: {}",
            String::from_utf8_lossy(out.stderr()).trim()
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(out.stdout());
    let remote_sha = stdout.split_whitespace().next().unwrap_or("").to_string();

    // Atomic download back, and the comparison.
    let back = work.join("orders.back.csv");
    let downloaded = sftp.download(&remote, &back)?;
    let same = std::fs::read(&back)? == csv.as_bytes();

    println!("uploaded    {uploaded} bytes to {remote}");
    println!("sha256      local  {local_sha}");
    println!("            remote {remote_sha}");
    println!("downloaded  {downloaded} bytes, identical: {same}");
    println!("done in     {:.2?}", started.elapsed());
    if remote_sha != local_sha || !same {
        return Err("the round trip changed the file".into());
    }
    session.close()?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
