//! Uploads one file atomically: the partner sees the whole file under its
//! name, or nothing (temporary name, fsync, size check, rename).
//!
//! ```text
//! cargo run --example sftp_put -- HOST PORT USER KEY_FILE|password PIN LOCAL REMOTE
//! cargo run --example sftp_put            # the same against a throwaway TestServer
//! ```

mod common;

use common::connect;

use etl_ssh::testkit::TestServer;

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
