//! Pending updates, counted in the background. `apt-get -s upgrade` takes seconds (4-6 s
//! of CPU where apt's pkgcache.bin is disabled, as in Docker-derived images), far longer
//! than a technician should wait for a snapshot, and its answer changes rarely. So the
//! count lives in a process-wide cache: snapshots report it without waiting, and when it
//! is missing or out of date they start one background count and say so, still reporting
//! the old count with its age.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::os::{COUNTING_UPDATES as COUNTING, Error, PackageState, PendingUpdates};

/// A count younger than this is reported as current. Pending updates change when apt's
/// package lists are refreshed (its daily timer) or packages are installed or removed;
/// both change [`PackageState`], which makes a count out of date at once, whatever its age. The
/// age limit only covers what `PackageState` cannot see (edits to apt's sources or pinning, and
/// the monotonic clock not counting suspend), for which a help-desk diagnosis can afford to
/// be a few hours behind; the keeper recounts well before it (see [`KEEPER_MAX_AGE`]).
pub(crate) const UPDATES_MAX_AGE: Duration = Duration::from_secs(6 * 60 * 60);
/// Limit for one background count. Nobody waits on it, so it is ten times the slowest
/// count seen (6 s of CPU without pkgcache.bin); past it apt is stuck (a hung mount under
/// /var, a saturated machine) and its process group is killed.
pub(crate) const UPDATES_COUNT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after a failed count the next one may start. Failures (broken sources, an
/// interrupted dpkg, a timeout) usually persist, and each attempt can keep a core busy for
/// up to [`UPDATES_COUNT_TIMEOUT`] on someone's workstation.
pub(crate) const UPDATES_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);
/// How often the keeper started by [`super::warm_up`] looks at the cache: package changes
/// are recounted within this interval even when no technician asks.
pub(crate) const UPDATES_CHECK_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// The keeper recounts once a count is this old: two check intervals before
/// [`UPDATES_MAX_AGE`], so the recount starts at least one interval early and has all of
/// it (ten times [`UPDATES_COUNT_TIMEOUT`]) to finish before a snapshot would call the
/// count stale.
const KEEPER_MAX_AGE: Duration =
    UPDATES_MAX_AGE.saturating_sub(UPDATES_CHECK_INTERVAL.saturating_mul(2));

/// What a snapshot reports for pending updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookup {
    /// The count to report: the current one or, failing that, the last one taken.
    pub updates: Option<PendingUpdates>,
    /// Why `updates` is missing or not current; `None` when it is current.
    pub problem: Option<String>,
}

/// The cache [`super::snapshot`] and [`super::warm_up`] share.
pub(crate) static UPDATES: Cache = Cache::new();

/// The last count, the last failure and whether a count is running, behind a mutex that
/// is only ever held for a few field accesses (never across an await).
#[derive(Debug)]
pub(crate) struct Cache {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The last successful count.
    counted: Option<Counted>,
    /// The failure of the last count, when it failed; a success clears it.
    failed: Option<Failed>,
    /// A background count is running. There is never more than one.
    counting: bool,
}

#[derive(Debug)]
struct Counted {
    updates: PendingUpdates,
    /// When the count started, which is when apt read the state it describes.
    at: Instant,
    inputs: PackageState,
}

#[derive(Debug)]
struct Failed {
    error: String,
    at: Instant,
}

impl Cache {
    pub(crate) const fn new() -> Self {
        Self {
            state: Mutex::new(State {
                counted: None,
                failed: None,
                counting: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the fields are still
        // each valid on their own.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports the cached count without waiting for anything. When there is none younger
    /// than `max_age` taken with these `inputs`, starts one background count made by
    /// `count` (unless one is running, or the last one failed less than
    /// [`UPDATES_RETRY_AFTER`] ago) and says so in [`Lookup::problem`], along with the age
    /// of the out-of-date count still reported.
    pub(crate) fn lookup<F, Fut>(
        &'static self,
        inputs: &PackageState,
        max_age: Duration,
        count: F,
    ) -> Lookup
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<PendingUpdates, Error>> + Send + 'static,
    {
        let now = Instant::now();
        let mut state = self.lock();
        let current = state
            .counted
            .as_ref()
            .filter(|c| now.saturating_duration_since(c.at) < max_age && c.inputs == *inputs);
        if let Some(current) = current {
            return Lookup {
                updates: Some(current.updates),
                problem: None,
            };
        }
        let retry_due = state
            .failed
            .as_ref()
            .is_none_or(|f| now.saturating_duration_since(f.at) >= UPDATES_RETRY_AFTER);
        let runtime = tokio::runtime::Handle::try_current();
        let start = !state.counting && retry_due && runtime.is_ok();
        state.counting |= start;

        let mut problem = match (&state.failed, state.counting) {
            (None, true) => COUNTING.to_owned(),
            (Some(failed), true) => format!(
                "{COUNTING}; the previous attempt failed {} ago: {}",
                human(now.saturating_duration_since(failed.at)),
                failed.error
            ),
            (Some(failed), false) => {
                let since = now.saturating_duration_since(failed.at);
                format!(
                    "counting pending updates failed {} ago: {}; next attempt in {}",
                    human(since),
                    failed.error,
                    human_ceil(UPDATES_RETRY_AFTER.saturating_sub(since))
                )
            }
            // Only without a tokio runtime, which every caller has.
            (None, false) => {
                "pending updates cannot be counted outside the agent's runtime".to_owned()
            }
        };
        if let Some(old) = &state.counted {
            let age = human(now.saturating_duration_since(old.at));
            problem.push_str(&if old.inputs == *inputs {
                format!("; the count reported is from {age} ago")
            } else {
                format!(
                    "; the count reported was taken {age} ago, before packages or package \
                     lists changed"
                )
            });
        }
        let updates = state.counted.as_ref().map(|c| c.updates);
        drop(state);

        if let (true, Ok(runtime)) = (start, runtime) {
            tracing::debug!("counting pending updates in the background");
            // The slot goes into the task as a value, not created by it: a task dropped
            // before its first poll (its runtime shutting down) must release it too.
            let slot = Slot {
                cache: self,
                held: true,
            };
            runtime.spawn(Self::count(slot, inputs.clone(), now, count()));
        }
        Lookup {
            updates,
            problem: Some(problem),
        }
    }

    /// One background count, holding `slot`: runs `count` under [`UPDATES_COUNT_TIMEOUT`]
    /// and files its outcome. Dropping the future (the runtime shutting down) frees the
    /// slot without recording a failure; a panic records one.
    async fn count(
        mut slot: Slot,
        inputs: PackageState,
        started: Instant,
        count: impl Future<Output = Result<PendingUpdates, Error>>,
    ) {
        let outcome = tokio::time::timeout(UPDATES_COUNT_TIMEOUT, count).await;
        slot.held = false;
        let elapsed = started.elapsed();
        let mut state = slot.cache.lock();
        state.counting = false;
        match outcome {
            Ok(Ok(updates)) => {
                tracing::info!(
                    pending = updates.pending,
                    security = updates.security,
                    ?elapsed,
                    "pending updates counted"
                );
                state.counted = Some(Counted {
                    updates,
                    at: started,
                    inputs,
                });
                state.failed = None;
            }
            Ok(Err(e)) => state.fail(e.to_string()),
            Err(_) => state.fail(format!(
                "timed out after {}",
                humantime::format_duration(UPDATES_COUNT_TIMEOUT)
            )),
        }
    }

    /// Keeps the cache current for as long as the runtime runs: every
    /// [`UPDATES_CHECK_INTERVAL`] reads `inputs` and recounts with `count` when packages
    /// changed or the count nears [`UPDATES_MAX_AGE`].
    pub(crate) async fn keep_warm<I, IFut, C, CFut>(&'static self, inputs: I, count: C)
    where
        I: Fn() -> IFut,
        IFut: Future<Output = Result<PackageState, Error>>,
        C: Fn() -> CFut,
        CFut: Future<Output = Result<PendingUpdates, Error>> + Send + 'static,
    {
        let mut ticks = tokio::time::interval(UPDATES_CHECK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match inputs().await {
                Ok(inputs) => {
                    self.lookup(&inputs, KEEPER_MAX_AGE, &count);
                }
                Err(e) => tracing::debug!(error = %e, "pending updates not counted"),
            }
        }
    }

    /// Waits until no background count is running, at most `limit`.
    pub(crate) async fn settled(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let counting = self.lock().counting;
            if !counting || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl State {
    fn fail(&mut self, error: String) {
        tracing::warn!(%error, "counting pending updates failed");
        self.failed = Some(Failed {
            error,
            at: Instant::now(),
        });
    }
}

/// The running count's claim on [`State::counting`], released however the count ends.
struct Slot {
    cache: &'static Cache,
    held: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let mut state = self.cache.lock();
        state.counting = false;
        if std::thread::panicking() {
            state.fail("the count panicked (agent bug)".to_owned());
        }
    }
}

/// A duration for people: whole seconds under an hour, whole minutes from there.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    let secs = if secs >= 3600 { secs - secs % 60 } else { secs };
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// Like [`human`], rounding up: for "next attempt in", which must not be early.
fn human_ceil(d: Duration) -> String {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests;
