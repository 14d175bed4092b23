//! Runs one command on the server and prints its stdout, stderr and exit
//! status; the process exits with the command's code.
//!
//! ```text
//! cargo run --example exec -- HOST PORT USER KEY_FILE|password PIN 'COMMAND'
//! cargo run --example exec                # `uname -a` on a throwaway TestServer
//! ```

mod common;

use common::connect;

use std::io::Write;

use etl_ssh::testkit::TestServer;
use etl_ssh::ExecOutput;

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
