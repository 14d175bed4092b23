//! Downloads one file atomically on our side: the local target appears only
//! once it is complete, and a failed download leaves the old one untouched.
//!
//! ```text
//! cargo run --example sftp_get -- HOST PORT USER KEY_FILE|password PIN REMOTE LOCAL
//! cargo run --example sftp_get            # the same against a throwaway TestServer
//! ```

mod common;

use common::connect;

use etl_ssh::testkit::TestServer;

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
