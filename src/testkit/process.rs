//! How the testkit starts processes and makes temporary folders so that
//! nothing outlives the test process, even one killed with `SIGKILL`.
//!
//! - Every server process runs under a **watchdog**: a small `sh` whose
//!   standard input is a pipe from this process. `read` returns at end of
//!   file, which comes when we close the pipe (a normal stop) or when this
//!   process dies, however it dies; the watchdog then stops the server by
//!   its pid (`SIGTERM`; a normal stop sends `SIGKILL` if that has not
//!   worked within 8 s), waits for it and removes the server's folder. No `unsafe` and no `PR_SET_PDEATHSIG` (which fires when the
//!   spawning *thread* exits). The watchdog and its server run in a process
//!   group of their own, so that a signal to the test's group (Ctrl-C,
//!   `timeout`) reaches the test process only and the watchdog lives on to
//!   clean up after it.
//! - Every folder the testkit makes lives under one **temporary root** per
//!   process (`$TMPDIR/etl-ssh-XXXXXX`), watched the same way: it is
//!   removed when this process ends.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The watchdog: `$1` is the folder to remove afterwards (may be empty),
/// the rest the command to run. Prints the command's pid on its standard
/// output, then waits for end of file on its standard input (a line `keep`
/// first keeps the folder).
const WATCHDOG: &str = r#"dir=$1
shift
"$@" </dev/null >&2 &
pid=$!
echo "$pid"
exec >&2
trap '' INT HUP TERM
read line || :
if [ "$line" = keep ]; then dir=; fi
kill -TERM "$pid" 2>/dev/null
wait "$pid"
status=$?
if [ -n "$dir" ]; then rm -rf -- "$dir"; fi
exit "$status"
"#;

/// The temporary root's watchdog: removes `$1` at end of file.
const ROOT_WATCHDOG: &str = r#"trap '' INT HUP TERM
read _ || :
rm -rf -- "$1"
"#;

/// How long a normal stop waits for the watchdog before killing.
const STOP_WAIT: Duration = Duration::from_secs(8);

/// True when this process runs as root.
pub(crate) fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// Absolute path of an executable `name`: on `PATH`, else in `extra_dirs`.
pub(crate) fn find_program(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .filter(|p| p.is_absolute())
        // A zero-length file (e.g. one bind-mounted over a program to hide
        // it) is not the program.
        .find(|p| {
            fs::metadata(p)
                .is_ok_and(|m| m.is_file() && m.len() > 0 && m.permissions().mode() & 0o111 != 0)
        })
}

/// Sends `sig` (`"TERM"`, `"HUP"`, ...) to `pid`, one process of ours.
pub(crate) fn signal(pid: u32, sig: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill -{sig} {pid} failed")))
    }
}

/// The process-wide temporary root (mode 0755, so that the servers' users
/// can reach their folders inside), created on first use and removed by
/// its watchdog when this process ends.
///
/// # Errors
///
/// When the folder or its watchdog cannot be made.
pub(crate) fn temp_root() -> io::Result<&'static Path> {
    static ROOT: OnceLock<std::result::Result<Root, String>> = OnceLock::new();
    let made = ROOT.get_or_init(|| make_root().map_err(|e| e.to_string()));
    match made {
        Ok(root) => Ok(&root.path),
        Err(e) => Err(io::Error::other(format!(
            "cannot make the testkit's temporary root: {e}"
        ))),
    }
}

/// The temporary root and its watchdog, with the pipe kept open until this
/// process ends.
struct Root {
    path: PathBuf,
    _watchdog: Mutex<(Child, ChildStdin)>,
}

fn make_root() -> io::Result<Root> {
    use std::os::unix::fs::PermissionsExt;
    let path = tempfile::Builder::new()
        .prefix("etl-ssh-")
        .tempdir()?
        .keep();
    let watched = Command::new("/bin/sh")
        .process_group(0)
        .arg("-c")
        .arg(ROOT_WATCHDOG)
        .arg("etl-ssh-watchdog")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match watched {
        Ok(child) => child,
        Err(e) => {
            let _ = fs::remove_dir_all(&path);
            return Err(e);
        }
    };
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("the watchdog has no stdin"))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    // Kept open until this process ends: then the watchdog removes the root.
    Ok(Root {
        path,
        _watchdog: Mutex::new((child, stdin)),
    })
}

/// A temporary folder `prefix` + random under [`temp_root`]: removed on
/// drop, and with the root if this process dies first.
pub(crate) fn temp_dir(prefix: &str) -> io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(temp_root()?)
}

/// A process started under a watchdog (see the module docs); stopped on drop.
#[derive(Debug)]
pub(crate) struct Watched {
    watchdog: Mutex<Child>,
    pipe: Mutex<Option<ChildStdin>>,
    pid: u32,
}

impl Watched {
    /// Starts `program args` under a watchdog that removes `remove` (when
    /// given) after stopping it. The program's stdin is `/dev/null`, its
    /// stdout and stderr go to `output`.
    pub(crate) fn spawn(
        program: &Path,
        args: &[OsString],
        remove: Option<&Path>,
        output: File,
    ) -> io::Result<Watched> {
        let mut watchdog = Command::new("/bin/sh")
            .process_group(0)
            .arg("-c")
            .arg(WATCHDOG)
            .arg("etl-ssh-watchdog")
            .arg(remove.map_or(OsStr::new(""), Path::as_os_str))
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(output)
            .spawn()?;
        let pipe = watchdog.stdin.take();
        let mut line = String::new();
        if let Some(out) = watchdog.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let Ok(pid) = line.trim().parse::<u32>() else {
            drop(pipe);
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            return Err(io::Error::other(format!(
                "the watchdog of {} printed no pid ({line:?})",
                program.display()
            )));
        };
        Ok(Watched {
            watchdog: Mutex::new(watchdog),
            pipe: Mutex::new(pipe),
            pid,
        })
    }

    /// The pid of the watched program.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// True once the watched program has ended (it stays a zombie under
    /// its watchdog until stopped, so `/proc` tells).
    pub(crate) fn has_exited(&self) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            // "pid (comm) STATE ...": comm may hold anything but ')'.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_none_or(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    }

    /// Stops the program: closes the pipe, so that the watchdog stops it
    /// and removes its folder, and waits for the watchdog (killing both
    /// after [`STOP_WAIT`]). Idempotent.
    pub(crate) fn stop(&self) {
        drop(
            self.pipe
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let mut watchdog = self.watchdog.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            match watchdog.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => sleep(Duration::from_millis(10)),
            }
        }
        let _ = signal(self.pid, "KILL");
        let _ = watchdog.kill();
        let _ = watchdog.wait();
    }
}

impl Watched {
    /// As [`Watched::stop`], but the watchdog leaves the folder in place
    /// (to try again in it).
    pub(crate) fn stop_keeping_folder(&self) {
        use std::io::Write as _;
        if let Some(pipe) = self
            .pipe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            let _ = pipe.write_all(b"keep\n");
        }
        self.stop();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.stop();
    }
}
