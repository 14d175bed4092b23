//! [`RetryPolicy`]: retry what a retry can fix, and nothing else.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use log::warn;

use crate::{Error, ErrorKind, Result, Session, SessionBuilder};

/// How often and how patiently to retry an operation that failed for a
/// reason that may pass: a refused or reset connection, a timeout, a
/// hang-up. Never an authentication failure (retrying a wrong password can
/// lock the partner's account), a host key problem, a key file, a missing
/// path or a refusal.
///
/// Waits grow exponentially from `initial_backoff` by `multiplier`, capped
/// at `max_backoff`, each shortened or lengthened at random by up to
/// `jitter` (so many jobs do not retry in step); no retry starts once
/// `total_time` would be exceeded. Every failed attempt is logged (`warn`).
///
/// Defaults: 3 attempts, 1 s initial wait, ×2, at most 30 s, ±20 % jitter,
/// 5 minutes in all.
///
/// ```no_run
/// use etl_ssh::{Credential, KnownHost, RetryPolicy, Session};
///
/// # fn main() -> Result<(), etl_ssh::Error> {
/// let builder = Session::builder("sftp.partner.example")
///     .credential(Credential::key_pair("etl", "/keys/id_ed25519"))
///     .known_host(KnownHost::known_hosts_file("/etc/etl/known_hosts"));
/// let policy = RetryPolicy::new().attempts(5);
///
/// // A whole transfer, each attempt on a fresh connection: an atomic upload
/// // never leaves a partial file, so trying again is safe.
/// let bytes = policy.run("upload orders.csv", |_attempt| {
///     let session = builder.clone().connect()?;
///     session.sftp()?.upload("out/orders.csv", "/inbox/orders.csv")
/// })?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    multiplier: f64,
    jitter: f64,
    total_time: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
            total_time: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The defaults (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// One attempt, no retry.
    pub fn never() -> Self {
        Self::default().attempts(1)
    }

    /// Attempts in all, the first included. At least 1. Defaults to 3.
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The wait before the first retry. Defaults to 1 second.
    pub fn initial_backoff(mut self, wait: Duration) -> Self {
        self.initial_backoff = wait;
        self
    }

    /// The longest wait between two attempts. Defaults to 30 seconds.
    pub fn max_backoff(mut self, wait: Duration) -> Self {
        self.max_backoff = wait;
        self
    }

    /// How much each wait grows over the previous one. At least 1.
    /// Defaults to 2.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() {
            multiplier.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Random spread of each wait, as a fraction: 0.2 waits between 80 %
    /// and 120 % of the nominal wait. Clamped to 0..=1. Defaults to 0.2.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// No retry starts after this much time since the first attempt.
    /// Defaults to 5 minutes.
    pub fn total_time(mut self, total: Duration) -> Self {
        self.total_time = total;
        self
    }

    /// The nominal wait after failed attempt number `attempt` (1-based),
    /// before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        let max = self.max_backoff.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
    }

    /// Runs `operation` (given the attempt number, from 1) until it
    /// succeeds, fails with an error that is not
    /// [transient](Error::is_transient), or the attempts or the total time
    /// run out. `what` names the operation in the log.
    ///
    /// # Errors
    ///
    /// The last attempt's error.
    pub fn run<T>(&self, what: &str, operation: impl FnMut(u32) -> Result<T>) -> Result<T> {
        self.run_with(what, Error::is_transient, operation)
    }

    /// Like [`run`](Self::run), for an operation with an error type of its
    /// own: `classify` says which errors are worth another attempt. A job
    /// whose steps return `anyhow::Error` or its own enum keeps it, and
    /// hands this crate's judgement on to the errors that came from here.
    ///
    /// ```no_run
    /// use etl_ssh::{Error, RetryPolicy, Session};
    ///
    /// #[derive(Debug)]
    /// enum JobError {
    ///     Ssh(Error),
    ///     BadReport(String),
    /// }
    /// impl std::fmt::Display for JobError {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         match self {
    ///             JobError::Ssh(e) => write!(f, "{e}"),
    ///             JobError::BadReport(why) => write!(f, "bad report: {why}"),
    ///         }
    ///     }
    /// }
    ///
    /// # fn fetch(session: &Session) -> Result<Vec<u8>, JobError> { todo!() }
    /// # fn main() -> Result<(), JobError> {
    /// # let session: Session = todo!();
    /// let report = RetryPolicy::new().run_with(
    ///     "fetch the daily report",
    ///     |e: &JobError| matches!(e, JobError::Ssh(e) if e.is_transient()),
    ///     |_attempt| fetch(&session),
    /// )?;
    /// # let _ = report;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The last attempt's error.
    pub fn run_with<T, E: std::fmt::Display>(
        &self,
        what: &str,
        classify: impl Fn(&E) -> bool,
        mut operation: impl FnMut(u32) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let err = match operation(attempt) {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if !classify(&err) {
                return Err(err);
            }
            let wait = jittered(self.backoff(attempt), self.jitter);
            if attempt >= self.attempts || started.elapsed() + wait > self.total_time {
                warn!(
                    "{what}: attempt {attempt} of {} failed, giving up: {err}",
                    self.attempts
                );
                return Err(err);
            }
            warn!(
                "{what}: attempt {attempt} of {} failed, retrying in {:.1} s: {err}",
                self.attempts,
                wait.as_secs_f64()
            );
            std::thread::sleep(wait);
            attempt += 1;
        }
    }
}

/// `wait` spread by up to `fraction` either way.
fn jittered(wait: Duration, fraction: f64) -> Duration {
    if fraction == 0.0 {
        return wait;
    }
    // std's RandomState is keyed at random per process and instance: enough
    // to keep jobs from retrying in step, with no extra dependency.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64; // 0..1
    wait.mul_f64(1.0 - fraction + 2.0 * fraction * unit)
}

impl Error {
    /// Whether trying again may succeed: a refused or reset connection, a
    /// name that did not resolve for a while, a timeout, a hang-up, a file
    /// that changed while it was transferred. Never
    /// authentication, host keys, key files, missing paths, refusals or
    /// bad input, and never a remote command that timed out or lost its
    /// connection after it started (it may have done its work: running it
    /// twice may import a file twice) unless its
    /// [`ExecSession`](crate::ExecSession) was marked
    /// [idempotent](crate::ExecSession::with_idempotent). [`RetryPolicy`]
    /// retries exactly these.
    pub fn is_transient(&self) -> bool {
        match self {
            // A name that does not exist will not exist in a second either.
            Error::Resolve { source, .. } => source.kind() != std::io::ErrorKind::NotFound,
            // A command that may have run is not run again unless the
            // caller said that is safe.
            Error::Exec {
                started: true,
                idempotent: false,
                ..
            } => false,
            other => matches!(
                other.kind(),
                ErrorKind::Connect
                    | ErrorKind::Timeout
                    | ErrorKind::Disconnected
                    | ErrorKind::Changed
            ),
        }
    }
}

impl SessionBuilder {
    /// [`connect`](Self::connect), retried under `policy` when it fails
    /// for a transient reason (see [`Error::is_transient`]).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect): the last attempt's error.
    pub fn connect_with_retry(&self, policy: &RetryPolicy) -> Result<Session> {
        let what = format!("connect to {}", self.target());
        policy.run(&what, |_| self.clone().connect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn transient() -> Error {
        Error::Timeout {
            operation: "test".into(),
            timeout: Duration::from_millis(1),
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy::new()
            .initial_backoff(Duration::from_millis(1))
            .max_backoff(Duration::from_millis(4))
            .jitter(0.5)
    }

    #[test]
    fn retries_transient_errors_up_to_the_attempts() {
        let calls = Cell::new(0);
        let result: Result<()> = fast().attempts(4).run("t", |n| {
            calls.set(n);
            Err(transient())
        });
        assert_eq!(result.expect_err("fails").kind(), ErrorKind::Timeout);
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn stops_at_the_first_success() {
        let result = fast()
            .attempts(5)
            .run("t", |n| if n < 3 { Err(transient()) } else { Ok(n) });
        assert_eq!(result.expect("succeeds"), 3);
    }

    #[test]
    fn never_retries_auth_or_host_key_errors() {
        for err in [
            Error::Auth {
                user: "u".into(),
                host: "h".into(),
                port: 22,
                tried: vec![],
                allowed: vec![],
                accepted: vec![],
                said: vec![],
                source: None,
            },
            Error::HostKeyMismatch {
                host: "h".into(),
                port: 22,
                key_type: "ssh-ed25519".into(),
                seen: "SHA256:x".into(),
                expected: vec![],
            },
            Error::invalid("x", "y"),
        ] {
            let kind = err.kind();
            let mut slot = Some(err);
            let calls = Cell::new(0);
            let result: Result<()> = fast().attempts(5).run("t", |_| {
                calls.set(calls.get() + 1);
                Err(slot.take().unwrap_or_else(transient))
            });
            assert_eq!(result.expect_err("fails").kind(), kind);
            assert_eq!(calls.get(), 1, "{kind:?} was retried");
        }
    }

    #[test]
    fn total_time_caps_the_retries() {
        let calls = Cell::new(0);
        let result: Result<()> = RetryPolicy::new()
            .attempts(100)
            .initial_backoff(Duration::from_millis(20))
            .jitter(0.0)
            .total_time(Duration::from_millis(50))
            .run("t", |n| {
                calls.set(n);
                Err(transient())
            });
        assert!(result.is_err());
        assert!(
            calls.get() < 100 && calls.get() >= 2,
            "{} calls",
            calls.get()
        );
    }

    #[test]
    fn backoff_grows_and_caps_and_jitter_stays_in_bounds() {
        let p = RetryPolicy::new()
            .initial_backoff(Duration::from_secs(1))
            .max_backoff(Duration::from_secs(5));
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(2), Duration::from_secs(2));
        assert_eq!(p.backoff(3), Duration::from_secs(4));
        assert_eq!(p.backoff(4), Duration::from_secs(5));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(5));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let w = jittered(Duration::from_secs(10), 0.2);
            assert!(
                w >= Duration::from_secs(8) && w <= Duration::from_secs(12),
                "{w:?}"
            );
            seen.insert(w);
        }
        assert!(seen.len() > 1, "jitter never varied");
    }

    #[test]
    fn run_with_takes_the_callers_error_and_classifier() {
        #[derive(Debug, PartialEq)]
        enum Mine {
            Busy,
            Broken,
        }
        impl std::fmt::Display for Mine {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{self:?}")
            }
        }
        let calls = Cell::new(0);
        let result: std::result::Result<u32, Mine> = fast().attempts(5).run_with(
            "t",
            |e| *e == Mine::Busy,
            |n| {
                calls.set(n);
                if n < 3 {
                    Err(Mine::Busy)
                } else {
                    Ok(n)
                }
            },
        );
        assert_eq!(result, Ok(3));
        let calls = Cell::new(0);
        let result: std::result::Result<(), Mine> = fast().attempts(5).run_with(
            "t",
            |e| *e == Mine::Busy,
            |n| {
                calls.set(n);
                Err(Mine::Broken)
            },
        );
        assert_eq!(result, Err(Mine::Broken));
        assert_eq!(calls.get(), 1, "a permanent error was retried");
    }

    #[test]
    fn transient_kinds() {
        let resolve = |kind| Error::Resolve {
            host: "h".into(),
            source: std::io::Error::from(kind),
        };
        assert!(!resolve(std::io::ErrorKind::NotFound).is_transient());
        assert!(resolve(std::io::ErrorKind::Other).is_transient());
        assert!(transient().is_transient());
        assert!(!Error::invalid("a", "b").is_transient());
    }
}
