//! Load: 16 threads, each with its own `Session`, 100 mixed operations each
//! (upload, download, listing, exec) against one real sshd: no failure, and
//! the process's open file descriptors back to their count before.
//!
//! Its own test binary, with one test, so no other test's descriptors are
//! counted.

mod common;

use std::time::Duration;

use common::Sshd;

const THREADS: usize = 16;
const ROUNDS: usize = 100;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

#[test]
fn sixteen_sessions_a_hundred_mixed_transfers_each() {
    let Some((server, key)) = common::sshd_with_key(Sshd::builder()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let before = open_fds();
    let started = std::time::Instant::now();
    let results: Vec<Result<usize, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (server, key, dir) = (&server, &key, dir.path());
                scope.spawn(move || -> Result<usize, String> {
                    let session = server
                        .session_builder()
                        .credential(key.credential())
                        .connect_timeout(Duration::from_secs(30))
                        .timeout(Duration::from_secs(60))
                        .connect()
                        .map_err(|e| format!("thread {t}: connect: {e}"))?;
                    let sftp = session.sftp().map_err(|e| e.to_string())?;
                    let exec = session.exec().map_err(|e| e.to_string())?;
                    let own = dir.join(format!("t{t}"));
                    sftp.create_dir_all(own.to_str().ok_or("path")?)
                        .map_err(|e| e.to_string())?;
                    let mut done = 0;
                    for r in 0..ROUNDS {
                        let body: Vec<u8> =
                            (0..(1024 + r * 97)).map(|i| (i * 31 + t) as u8).collect();
                        let local = own.join(format!("local-{r}"));
                        std::fs::write(&local, &body).map_err(|e| e.to_string())?;
                        let remote = own.join(format!("remote-{r}.csv"));
                        let remote = remote.to_str().ok_or("path")?;
                        let step: Result<(), String> = match r % 4 {
                            0 => sftp
                                .upload(&local, remote)
                                .map(drop)
                                .map_err(|e| e.to_string()),
                            1 => sftp
                                .upload(&local, remote)
                                .and_then(|_| sftp.download(remote, own.join(format!("back-{r}"))))
                                .map(drop)
                                .map_err(|e| e.to_string()),
                            2 => sftp
                                .read_dir(own.to_str().ok_or("path")?)
                                .map(drop)
                                .map_err(|e| e.to_string()),
                            _ => match exec.run_args(["wc", "-c", local.to_str().ok_or("path")?]) {
                                Ok(out)
                                    if out.success()
                                        && out
                                            .stdout()
                                            .starts_with(body.len().to_string().as_bytes()) =>
                                {
                                    Ok(())
                                }
                                Ok(out) => Err(format!(
                                    "wc said {:?}",
                                    String::from_utf8_lossy(out.stdout())
                                )),
                                Err(e) => Err(e.to_string()),
                            },
                        };
                        step.map_err(|e| format!("thread {t} round {r}: {e}"))?;
                        done += 1;
                    }
                    drop(exec);
                    drop(sftp);
                    session.close().map_err(|e| e.to_string())?;
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let elapsed = started.elapsed();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "failures: {failures:#?}");
    let done: usize = results.iter().filter_map(|r| r.as_ref().ok()).sum();
    assert_eq!(done, THREADS * ROUNDS);
    // Helper threads (resolver, none here: IP literal) end with their work;
    // give the kernel a moment to drop closed sockets from the table.
    let mut after = open_fds();
    for _ in 0..50 {
        if after <= before {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        after = open_fds();
    }
    eprintln!("load: {done} operations on {THREADS} sessions in {elapsed:?}; fds before {before}, after {after}");
    assert_eq!(after, before, "file descriptors leaked");
}
