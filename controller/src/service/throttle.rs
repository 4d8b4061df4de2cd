//! Throttling of `session join` by support code, so that codes cannot be guessed.
//!
//! A support code is six digits and lives ten minutes. Each technician may enter a few
//! wrong codes freely (typos, misheard digits); past that each wrong code makes them
//! wait, twice as long each time, and after [`LOCKOUT_AFTER`] wrong codes they may not
//! join by code for [`LOCKOUT`], longer than a code lives, so the codes a guesser was
//! after are gone when the lock-out ends. Across the whole controller at most
//! [`GLOBAL_MAX_WRONG`] wrong codes are taken per [`GLOBAL_WINDOW`]; past that, joining by
//! code pauses for everyone until the oldest ages out — a technician who is locked out,
//! or a help desk whose joins are paused, can still ask the user through
//! `deskside session request`, and another technician can join the user's code.
//!
//! The lookup of the code happens under the same lock as the check (for the store's
//! look-up, under an async gate held from the check to the count), so a technician
//! cannot race many guesses past the throttle on parallel streams.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong codes a technician may enter without waiting: a user reads digits over the
/// phone, and a few get misheard.
pub const FREE_WRONG_CODES: u32 = 5;
/// The wait after the first wrong code past the free ones; it doubles with each further.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// Wrong codes that lock a technician out of joining by code. With the back-offs, ten
/// guesses take a guesser over a minute, then [`LOCKOUT`] stops them: at most ten
/// guesses per quarter of an hour against a million codes.
pub const LOCKOUT_AFTER: u32 = 10;
/// How long a lock-out lasts: longer than a support code lives (ten minutes).
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// A technician's wrong codes are forgotten this long after the last one.
pub const WRONG_CODE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Wrong codes from all technicians together that pause joining by code: many accounts
/// guessing at once get no more than this many tries per code lifetime.
pub const GLOBAL_MAX_WRONG: usize = 50;
/// The window [`GLOBAL_MAX_WRONG`] counts in: the life of a support code.
pub const GLOBAL_WINDOW: Duration =
    Duration::from_secs(deskside_proto::msg::session::SUPPORT_CODE_SECS);

/// Why a join by code was not even looked at: a closed set, also the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// The technician entered wrong codes and must wait this long before the next.
    Backoff { wait: Duration },
    /// The technician entered [`LOCKOUT_AFTER`] wrong codes.
    LockedOut { wait: Duration },
    /// Too many wrong codes controller-wide.
    Paused { wait: Duration },
}

impl Held {
    pub fn label(self) -> &'static str {
        match self {
            Held::Backoff { .. } => "backoff",
            Held::LockedOut { .. } => "locked_out",
            Held::Paused { .. } => "paused",
        }
    }
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Held::Backoff { wait } => write!(
                f,
                "too many wrong support codes in a row: wait {} before entering another (the code was not checked)",
                words(wait)
            ),
            Held::LockedOut { wait } => write!(
                f,
                "{LOCKOUT_AFTER} wrong support codes: joining by code is locked for this technician for another {}; ask the user to start a new code and have a colleague join it, or ask for a session with `deskside session request`",
                words(wait)
            ),
            Held::Paused { wait } => write!(
                f,
                "too many wrong support codes on this controller: joining by code is paused for everyone for another {}; ask for a session with `deskside session request` meanwhile",
                words(wait)
            ),
        }
    }
}

/// "42 s", "3 min 5 s", rounded up to whole seconds.
fn words(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// A wrong code was counted against a technician.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wrong {
    /// Wrong codes this technician has entered within [`WRONG_CODE_MEMORY`].
    pub count: u32,
    /// What this wrong code brought on, if anything.
    pub then: Option<Held>,
}

impl fmt::Display for Wrong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wrong support code {} of {LOCKOUT_AFTER}", self.count)?;
        match self.then {
            Some(Held::LockedOut { wait }) => write!(
                f,
                "; joining by code is now locked for this technician for {}",
                words(wait)
            ),
            Some(Held::Backoff { wait }) => {
                write!(f, "; wait {} before entering another", words(wait))
            }
            Some(Held::Paused { .. }) | None => Ok(()),
        }
    }
}

#[derive(Debug)]
struct Record {
    wrong: u32,
    last_wrong: Instant,
    /// No attempt before this (back-off or lock-out).
    not_before: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    by_technician: HashMap<String, Record>,
    /// When each wrong code of the last [`GLOBAL_WINDOW`] was entered, oldest first.
    recent_wrong: VecDeque<Instant>,
}

/// Wrong support codes per technician and for the whole controller.
#[derive(Debug, Default)]
pub(crate) struct JoinThrottle {
    state: Mutex<State>,
    /// Held across an async look-up, from the check to the count: one at a time.
    gate: tokio::sync::Mutex<()>,
}

impl JoinThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Each update is a few field changes with no call out; a panic elsewhere cannot
        // leave them torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks up a code for `technician` at `now` unless they (or everyone) must wait:
    /// `lookup` runs under the throttle's lock, and its `None` counts as a wrong code.
    #[cfg(test)]
    pub fn attempt<T>(
        &self,
        technician: &str,
        now: Instant,
        lookup: impl FnOnce() -> Option<T>,
    ) -> Result<Result<T, Wrong>, Held> {
        let mut state = self.lock();
        Self::check(&mut state, technician, now)?;
        Ok(match lookup() {
            Some(found) => Ok(found),
            None => Err(state.wrong(technician, now)),
        })
    }

    /// [`JoinThrottle::attempt`] with a look-up that waits (the store's): attempts are
    /// taken one at a time, so parallel guesses are counted as if entered in a row.
    pub async fn attempt_async<T, F>(
        &self,
        technician: &str,
        now: Instant,
        lookup: impl FnOnce() -> F,
    ) -> Result<Result<T, Wrong>, Held>
    where
        F: Future<Output = Option<T>>,
    {
        let _one_at_a_time = self.gate.lock().await;
        Self::check(&mut self.lock(), technician, now)?;
        Ok(match lookup().await {
            Some(found) => Ok(found),
            None => Err(self.lock().wrong(technician, now)),
        })
    }

    /// Whether `technician` (and everyone) may try a code at `now`.
    fn check(state: &mut State, technician: &str, now: Instant) -> Result<(), Held> {
        state.forget(now);
        if let Some(until) = state
            .by_technician
            .get(technician)
            .and_then(|r| r.not_before)
            .filter(|t| *t > now)
        {
            let wait = until - now;
            let locked = state
                .by_technician
                .get(technician)
                .is_some_and(|r| r.wrong >= LOCKOUT_AFTER);
            return Err(if locked {
                Held::LockedOut { wait }
            } else {
                Held::Backoff { wait }
            });
        }
        if state.recent_wrong.len() >= GLOBAL_MAX_WRONG
            && let Some(oldest) = state.recent_wrong.front()
        {
            let wait = (*oldest + GLOBAL_WINDOW).saturating_duration_since(now);
            return Err(Held::Paused { wait });
        }
        Ok(())
    }

    /// Counts a wrong code found out after the lookup (the machine itself refused it).
    pub fn wrong(&self, technician: &str, now: Instant) -> Wrong {
        let mut state = self.lock();
        state.forget(now);
        state.wrong(technician, now)
    }
}

impl State {
    /// Drops what no longer counts: technicians' old wrong codes and ended lock-outs,
    /// and global entries past the window.
    fn forget(&mut self, now: Instant) {
        self.by_technician.retain(|_, r| {
            let lock_over = r.wrong >= LOCKOUT_AFTER && r.not_before.is_none_or(|t| t <= now);
            let stale = now.saturating_duration_since(r.last_wrong) >= WRONG_CODE_MEMORY
                && r.not_before.is_none_or(|t| t <= now);
            !(lock_over || stale)
        });
        while self
            .recent_wrong
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= GLOBAL_WINDOW)
        {
            self.recent_wrong.pop_front();
        }
    }

    fn wrong(&mut self, technician: &str, now: Instant) -> Wrong {
        if self.recent_wrong.len() >= GLOBAL_MAX_WRONG {
            self.recent_wrong.pop_front();
        }
        self.recent_wrong.push_back(now);
        let record = self
            .by_technician
            .entry(technician.to_owned())
            .or_insert(Record {
                wrong: 0,
                last_wrong: now,
                not_before: None,
            });
        record.wrong += 1;
        record.last_wrong = now;
        let then = if record.wrong >= LOCKOUT_AFTER {
            Some(Held::LockedOut { wait: LOCKOUT })
        } else if record.wrong > FREE_WRONG_CODES {
            let doublings = record.wrong - FREE_WRONG_CODES - 1;
            Some(Held::Backoff {
                wait: FIRST_BACKOFF.saturating_mul(1 << doublings.min(16)),
            })
        } else {
            None
        };
        record.not_before = match then {
            Some(Held::LockedOut { wait } | Held::Backoff { wait }) => Some(now + wait),
            _ => None,
        };
        Wrong {
            count: record.wrong,
            then,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guess(t: &JoinThrottle, who: &str, now: Instant) -> Result<Result<(), Wrong>, Held> {
        t.attempt(who, now, || None::<()>)
    }

    #[tokio::test]
    async fn parallel_guesses_through_a_waiting_look_up_are_counted_in_a_row() {
        let t = std::sync::Arc::new(JoinThrottle::default());
        let now = Instant::now();
        let guesses = (0..LOCKOUT_AFTER + 5).map(|_| {
            let t = t.clone();
            tokio::spawn(async move {
                t.attempt_async("eve", now, || async {
                    tokio::task::yield_now().await;
                    None::<()>
                })
                .await
            })
        });
        let mut wrong = 0;
        let mut held = 0;
        for g in guesses {
            match g.await {
                Ok(Ok(Err(_))) => wrong += 1,
                Ok(Err(_)) => held += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        // Past the free ones, each wrong code makes the next wait: no more got through.
        assert_eq!(wrong, FREE_WRONG_CODES + 1);
        assert_eq!(held, LOCKOUT_AFTER + 5 - FREE_WRONG_CODES - 1);
    }

    #[test]
    fn free_tries_then_doubling_waits_then_a_lock_out_that_ends() {
        let t = JoinThrottle::default();
        let start = Instant::now();
        let mut now = start;
        for n in 1..=FREE_WRONG_CODES {
            assert_eq!(
                guess(&t, "eve", now),
                Ok(Err(Wrong {
                    count: n,
                    then: None
                }))
            );
        }
        let mut wait = FIRST_BACKOFF;
        for n in FREE_WRONG_CODES + 1..LOCKOUT_AFTER {
            assert_eq!(
                guess(&t, "eve", now),
                Ok(Err(Wrong {
                    count: n,
                    then: Some(Held::Backoff { wait })
                }))
            );
            // Trying again before the wait is over is held and not even looked up.
            let early = now + wait - Duration::from_millis(1);
            let held = t.attempt("eve", early, || -> Option<()> {
                panic!("a held attempt must not be looked up")
            });
            assert_eq!(
                held,
                Err(Held::Backoff {
                    wait: Duration::from_millis(1)
                })
            );
            now += wait;
            wait *= 2;
        }
        assert_eq!(
            guess(&t, "eve", now),
            Ok(Err(Wrong {
                count: LOCKOUT_AFTER,
                then: Some(Held::LockedOut { wait: LOCKOUT })
            }))
        );
        // Locked: even the right code is not looked up, whatever the technician tries.
        let later = now + LOCKOUT / 2;
        assert_eq!(
            t.attempt("eve", later, || Some("agent")),
            Err(Held::LockedOut { wait: LOCKOUT / 2 })
        );
        // Another technician is not affected.
        assert_eq!(t.attempt("bob", later, || Some("agent")), Ok(Ok("agent")));
        // After the lock-out the technician starts afresh.
        let after = now + LOCKOUT;
        assert_eq!(t.attempt("eve", after, || Some("agent")), Ok(Ok("agent")));
        assert_eq!(
            guess(&t, "eve", after),
            Ok(Err(Wrong {
                count: 1,
                then: None
            }))
        );
    }

    #[test]
    fn wrong_codes_are_forgotten_after_a_quiet_while() {
        let t = JoinThrottle::default();
        let now = Instant::now();
        for _ in 0..FREE_WRONG_CODES {
            let _ = guess(&t, "amy", now);
        }
        let quiet = now + WRONG_CODE_MEMORY;
        assert_eq!(
            guess(&t, "amy", quiet),
            Ok(Err(Wrong {
                count: 1,
                then: None
            }))
        );
    }

    #[test]
    fn many_technicians_together_pause_joining_until_the_oldest_ages_out() {
        let t = JoinThrottle::default();
        let start = Instant::now();
        for n in 0..GLOBAL_MAX_WRONG {
            let who = format!("tech{}", n % 25);
            let at = start + Duration::from_secs(u64::try_from(n).unwrap_or(0));
            assert!(matches!(guess(&t, &who, at), Ok(Err(_))), "guess {n}");
        }
        let now = start + Duration::from_secs(60);
        // Everyone is held, a technician with no wrong code too.
        assert_eq!(
            t.attempt("fresh", now, || Some(())),
            Err(Held::Paused {
                wait: GLOBAL_WINDOW - Duration::from_secs(60)
            })
        );
        // Once the oldest wrong code is out of the window, one more try is taken.
        let later = start + GLOBAL_WINDOW;
        assert_eq!(t.attempt("fresh", later, || Some(())), Ok(Ok(())));
    }

    #[test]
    fn a_wrong_code_the_machine_refused_counts_too() {
        let t = JoinThrottle::default();
        let now = Instant::now();
        for n in 1..=FREE_WRONG_CODES {
            assert_eq!(t.wrong("kim", now).count, n);
        }
        assert!(matches!(
            t.wrong("kim", now).then,
            Some(Held::Backoff { .. })
        ));
        assert!(matches!(guess(&t, "kim", now), Err(Held::Backoff { .. })));
    }

    #[test]
    fn waits_read_as_words() {
        assert_eq!(words(Duration::from_millis(1)), "1 s");
        assert_eq!(words(Duration::from_secs(42)), "42 s");
        assert_eq!(words(Duration::from_secs(900)), "15 min");
        assert_eq!(words(Duration::from_secs(185)), "3 min 5 s");
    }
}
