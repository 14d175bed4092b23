//! Work spread over several sessions: libssh2 serialises every call on
//! one session, so parallel work needs connections of its own
//! ([`Session::connect_another`](crate::Session::connect_another)).
//!
//! Work starts at once on the caller's session; the extra sessions
//! connect meanwhile, each on a thread of its own, at most
//! [`CONNECTING_AT_ONCE`] in their handshake at a time, and join when they
//! are ready. A transfer that knows how many it wants before its work is
//! ready to hand out (an upload, once its temporary file is created)
//! starts them first ([`Extras::start`]), so that their handshakes
//! overlap its own round trips. A session that connects after the work ran out is closed
//! unused, and the transfer does not wait for one still connecting. When
//! the server ends a session (some end a user's older login when a new
//! one arrives), the work it held goes back on the board: an extra
//! session's lane ends, the caller's connects again (its pool redials).
//! The job is told when an item has its last try (after as many as there
//! are sessions, and two more: enough for a server that ends the older
//! login each time a new one arrives), and then reports it as it ended.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use log::{info, warn};

use crate::conn::Dialer;
use crate::sftp::{SftpSession, Shared};
use crate::{Error, Result};

/// How a lane's session checks, while it connects, whether work is left.
const WAIT_STEP: Duration = Duration::from_millis(20);

/// Extra sessions of one transfer in their handshake at once: the others
/// wait their turn, so that one job holds few unauthenticated connections
/// (OpenSSH's `MaxStartups`, 10:30:100 by default, starts dropping them
/// at 10 across all clients). Three lets the default four sessions open
/// together (two at a time cost 7–9 % on 200 small files at 50 ms:
/// BENCHMARKS.md), and makes more sessions wait their turn.
pub(crate) const CONNECTING_AT_ONCE: usize = 3;

/// Turns to connect, shared by one transfer's extra sessions.
struct Turns {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Turns {
    fn new(n: usize) -> Arc<Turns> {
        Arc::new(Turns {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        })
    }

    /// Waits for a turn; `None` when `unwanted` is set meanwhile.
    fn take<'a>(&'a self, unwanted: &AtomicBool) -> Option<Turn<'a>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if unwanted.load(Ordering::SeqCst) {
                return None;
            }
            if *free > 0 {
                *free -= 1;
                return Some(Turn(self));
            }
            free = self
                .freed
                .wait_timeout(free, WAIT_STEP)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A turn to connect, given back when dropped.
struct Turn<'a>(&'a Turns);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// What became of one item of work.
pub(crate) enum Step<T> {
    /// Done (or failed in a way its report carries).
    Done,
    /// The session is gone: these items go back on the board, and an
    /// extra session's lane ends.
    Again(Vec<T>, Error),
    /// Stop all lanes: the transfer fails with this error.
    Stop(Error),
}

/// The items of work not yet taken, and how many are being worked on.
struct Board<T> {
    state: Mutex<BoardState<T>>,
    changed: Condvar,
}

struct BoardState<T> {
    /// Each item with the tries it had.
    queue: VecDeque<(T, u32)>,
    busy: usize,
    stop: Option<Error>,
    /// The last error that ended a session, for when work remains and no
    /// session does.
    lost: Option<Error>,
}

impl<T> Board<T> {
    fn new(items: Vec<T>) -> Board<T> {
        Board {
            state: Mutex::new(BoardState {
                queue: items.into_iter().map(|i| (i, 0)).collect(),
                busy: 0,
                stop: None,
                lost: None,
            }),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, BoardState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next item and the tries it had; waits while none is left but
    /// one being worked on could come back. `None` once the work is done
    /// or stopped.
    fn take(&self) -> Option<(T, u32)> {
        let mut state = self.state();
        loop {
            if state.stop.is_some() {
                return None;
            }
            if let Some(item) = state.queue.pop_front() {
                state.busy += 1;
                return Some(item);
            }
            if state.busy == 0 {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Records what became of an item taken after `tries` earlier tries;
    /// `true` when the session that worked on it is gone (or the work
    /// stopped).
    fn done(&self, step: Step<T>, tries: u32) -> bool {
        let mut state = self.state();
        state.busy -= 1;
        let ends = match step {
            Step::Done => false,
            Step::Again(items, e) => {
                for item in items.into_iter().rev() {
                    state.queue.push_front((item, tries + 1));
                }
                state.lost = Some(e);
                true
            }
            Step::Stop(e) => {
                state.stop.get_or_insert(e);
                true
            }
        };
        drop(state);
        self.changed.notify_all();
        ends
    }

    /// Whether an item is waiting or being worked on.
    fn has_work(&self) -> bool {
        let state = self.state();
        state.stop.is_none() && (!state.queue.is_empty() || state.busy > 0)
    }

    /// The outcome once every lane ended.
    fn outcome(self) -> std::result::Result<(), Box<Left<T>>> {
        let state = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        let items: Vec<T> = state.queue.into_iter().map(|(item, _)| item).collect();
        if let Some(error) = state.stop {
            return Err(Box::new(Left {
                error,
                stopped: true,
                items,
            }));
        }
        if items.is_empty() {
            return Ok(());
        }
        let error = state.lost.unwrap_or_else(|| {
            Error::invalid("parallel transfer", "work was left and no session to do it")
        });
        Err(Box::new(Left {
            error,
            stopped: false,
            items,
        }))
    }
}

/// Why work stopped, and the items not done.
pub(crate) struct Left<T> {
    /// The [`Step::Stop`] error, or the error that ended the last session.
    pub(crate) error: Error,
    /// Whether a [`Step::Stop`] ended the work (else every session ended).
    pub(crate) stopped: bool,
    /// The items no session took.
    pub(crate) items: Vec<T>,
}

/// A session being connected on a thread of its own, handed over when
/// ready.
struct Arrival {
    session: Mutex<Option<Result<SftpSession>>>,
    ready: Condvar,
    /// Set when the work is over: the thread closes what it connects.
    unwanted: AtomicBool,
}

impl Arrival {
    /// Starts connecting another session like `dialer`'s when `turns`
    /// gives it a turn, on a thread that outlives the transfer if the
    /// handshake does: the transfer never waits for a session it no longer
    /// needs.
    fn start(dialer: &Arc<dyn Dialer>, turns: &Arc<Turns>) -> Arc<Arrival> {
        let arrival = Arc::new(Arrival {
            session: Mutex::new(None),
            ready: Condvar::new(),
            unwanted: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&arrival);
        let dialer = Arc::clone(dialer);
        let turns = Arc::clone(turns);
        let spawned = std::thread::Builder::new()
            .name("etl-ssh-connect".into())
            .spawn(move || {
                let Some(turn) = turns.take(&theirs.unwanted) else {
                    return;
                };
                // The turn lasts until the SFTP channel is open: by then
                // sshd no longer counts the login as unauthenticated.
                let session = dialer.another().and_then(SftpSession::start);
                drop(turn);
                if theirs.unwanted.load(Ordering::SeqCst) {
                    // Dropped here: closed on this thread, unused.
                    return;
                }
                *theirs.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(session);
                theirs.ready.notify_all();
            });
        if let Err(e) = spawned {
            *arrival.session.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Err(Error::io("starting a connection thread", e)));
        }
        arrival
    }

    /// The session once connected, or `None` when `board` ran out of
    /// work first.
    fn wait<T>(&self, board: &Board<T>) -> Option<Result<SftpSession>> {
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(s) = session.take() {
                return Some(s);
            }
            if !board.has_work() {
                return None;
            }
            session = self
                .ready
                .wait_timeout(session, WAIT_STEP)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The extra sessions of one transfer, connecting from the moment the
/// transfer knows it wants them. Dropped unused (the transfer failed
/// before its work began), each closes once connected, and one still
/// waiting for its turn never connects.
pub(crate) struct Extras {
    arrivals: Vec<Arc<Arrival>>,
}

impl Extras {
    /// Starts connecting the sessions beyond the caller's that `lanes`
    /// sessions at once need (none for one lane).
    pub(crate) fn start(shared: &Shared, lanes: usize) -> Extras {
        let turns = Turns::new(CONNECTING_AT_ONCE);
        Extras {
            arrivals: (1..lanes.max(1))
                .map(|_| Arrival::start(&shared.dialer, &turns))
                .collect(),
        }
    }

    /// Sessions in all: the caller's and the extra ones.
    pub(crate) fn lanes(&self) -> usize {
        self.arrivals.len() + 1
    }
}

impl Drop for Extras {
    fn drop(&mut self) {
        for arrival in &self.arrivals {
            arrival.unwanted.store(true, Ordering::SeqCst);
        }
    }
}

/// Runs `job` on each of `items` with up to `lanes` sessions at once: the
/// caller's (`shared`) starts at once, the others as they connect; each
/// takes the next item when done with one. `job` is told when the item has
/// its last try: it must not put it back then.
///
/// # Errors
///
/// The first [`Step::Stop`], or the error that ended the last session
/// when items were left, with the items no session took.
pub(crate) fn run<T: Send>(
    shared: &Shared,
    lanes: usize,
    items: Vec<T>,
    job: impl Fn(&Shared, T, bool) -> Step<T> + Sync,
) -> std::result::Result<(), Box<Left<T>>> {
    run_with(shared, Extras::start(shared, lanes), items, job)
}

/// [`run`] with extra sessions already connecting: `extras`.
///
/// # Errors
///
/// As [`run`].
pub(crate) fn run_with<T: Send>(
    shared: &Shared,
    extras: Extras,
    items: Vec<T>,
    job: impl Fn(&Shared, T, bool) -> Step<T> + Sync,
) -> std::result::Result<(), Box<Left<T>>> {
    let lanes = extras.lanes();
    let board = Board::new(items);
    let last_try = lanes as u32 + 1;
    // An extra session's lane ends with its session; the caller's goes on
    // (its pool connects again).
    let work = |shared: &Shared, extra: bool| {
        while let Some((item, tries)) = board.take() {
            let step = job(shared, item, tries >= last_try);
            if board.done(step, tries) && extra {
                return;
            }
        }
    };
    let arrivals = &extras.arrivals;
    let target = shared.pool.target();
    let (joined, refused) = std::thread::scope(|scope| {
        let extra: Vec<_> = arrivals
            .iter()
            .map(|arrival| {
                let (work, board) = (&work, &board);
                scope.spawn(move || match arrival.wait(board) {
                    Some(Ok(sftp)) => {
                        work(&sftp.shared, true);
                        (1, None)
                    }
                    Some(Err(e)) => (0, Some(e)),
                    None => (0, None),
                })
            })
            .collect();
        work(shared, false);
        extra
            .into_iter()
            .fold((1, Vec::new()), |(joined, mut refused), h| match h.join() {
                Ok((n, e)) => {
                    refused.extend(e);
                    (joined + n, refused)
                }
                Err(_) => (joined, refused),
            })
    });
    // Sessions still connecting close unused when `extras` drops, at the end.
    match refused.first() {
        Some(first) => warn!(
            "{target}: {} of {} extra connections failed ({first}); the work went to {joined} \
             session(s)",
            refused.len(),
            arrivals.len(),
        ),
        None if lanes > 1 => info!("{target}: {joined} session(s) shared the work"),
        None => {}
    }
    board.outcome()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes items until the board is done, or until `fail_on` (whose
    /// session then ends); returns the items seen.
    fn drain(board: &Board<u32>, fail_on: Option<u32>) -> Vec<u32> {
        let mut seen = Vec::new();
        while let Some((item, tries)) = board.take() {
            seen.push(item);
            let step = if Some(item) == fail_on {
                Step::Again(vec![item], Error::invalid("test", "gone"))
            } else {
                Step::Done
            };
            if board.done(step, tries) {
                break;
            }
        }
        seen
    }

    #[test]
    fn an_item_of_a_lane_that_ended_goes_to_another() {
        let board = Board::new(vec![1, 2, 3]);
        // The first lane ends on item 2; a second lane finishes the work,
        // item 2 included, told it is its second try.
        assert_eq!(drain(&board, Some(2)), [1, 2]);
        let (item, tries) = board.take().expect("item 2 again");
        assert_eq!((item, tries), (2, 1));
        assert!(!board.done(Step::Done, tries));
        assert_eq!(drain(&board, None), [3]);
        assert!(board.outcome().is_ok());
    }

    #[test]
    fn work_left_with_no_lane_is_an_error_naming_why() {
        let board = Board::new(vec![1, 2]);
        assert_eq!(drain(&board, Some(1)), [1]);
        let left = board.outcome().expect_err("work left");
        assert!(left.error.to_string().contains("gone"), "{}", left.error);
        assert!(!left.stopped);
        assert_eq!(left.items, [1, 2]);
    }

    #[test]
    fn a_stop_ends_every_lane() {
        let board = Board::new(vec![1, 2, 3]);
        assert_eq!(board.take(), Some((1, 0)));
        assert!(board.done(Step::Stop(Error::invalid("test", "bad")), 0));
        assert_eq!(board.take(), None);
        assert!(!board.has_work());
        let left = board.outcome().expect_err("stopped");
        assert!(left.stopped);
        assert_eq!(left.items, [2, 3]);
    }

    #[test]
    fn turns_to_connect_are_bounded_and_given_back() {
        let turns = Turns::new(2);
        let unwanted = AtomicBool::new(false);
        let first = turns.take(&unwanted).expect("first");
        let _second = turns.take(&unwanted).expect("second");
        std::thread::scope(|s| {
            let third = s.spawn(|| turns.take(&unwanted).is_some());
            std::thread::sleep(Duration::from_millis(60));
            assert!(!third.is_finished(), "a third handshake waits its turn");
            drop(first);
            assert!(third.join().expect("join"));
        });
        unwanted.store(true, Ordering::SeqCst);
        assert!(turns.take(&unwanted).is_none(), "no turn once unwanted");
    }

    #[test]
    fn a_waiting_lane_wakes_for_an_item_put_back() {
        let board = Board::new(vec![1]);
        assert_eq!(board.take(), Some((1, 0)));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| board.take());
            std::thread::sleep(Duration::from_millis(50));
            board.done(Step::Again(vec![1], Error::invalid("test", "gone")), 0);
            assert_eq!(waiter.join().expect("join"), Some((1, 1)));
        });
        board.done(Step::Done, 1);
        assert!(!board.has_work());
        assert!(board.outcome().is_ok());
    }
}
