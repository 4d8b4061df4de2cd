//! Pending updates, counted in the background. `apt-get -s upgrade` takes seconds (4-6 s
//! of CPU where apt's pkgcache.bin is disabled, as in Docker-derived images), far longer
//! than a technician should wait for a snapshot, and its answer changes rarely. So the
//! count lives in a process-wide cache: snapshots report it without waiting, and when it
//! is missing or out of date they start one background count and say so, still reporting
//! the old count with its age.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::ProbeError;
use super::commands::PendingUpdates;

/// A count younger than this is reported as current. Pending updates change when apt's
/// package lists are refreshed (its daily timer) or packages are installed or removed;
/// both change [`Inputs`], which makes a count out of date at once, whatever its age. The
/// age limit only covers what `Inputs` cannot see (edits to apt's sources or pinning, and
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

const APT_GET: &str = "apt-get";
/// Rewritten by dpkg on every install, upgrade and removal.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// `apt update` renames fetched lists into this directory when they changed.
const APT_LISTS: &str = "/var/lib/apt/lists";

/// While a count runs, and no current count exists.
const COUNTING: &str = "pending updates are being counted in the background \
(`apt-get -s upgrade` can take several seconds); a snapshot taken once it finishes will \
include them";

/// What a count depends on that a few `stat` calls can check: a count is current only
/// while dpkg's status file and apt's lists directory are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Inputs {
    dpkg_status: Option<SystemTime>,
    apt_lists: Option<SystemTime>,
}

impl Inputs {
    /// Blocking (a few `stat` calls). Fails when there is no apt-get to count with, so
    /// that apt is never started on such a machine.
    pub(crate) fn read() -> Result<Self, ProbeError> {
        if !on_path(APT_GET) {
            return Err(ProbeError::Unavailable(format!(
                "{APT_GET} is not installed (not found in PATH)"
            )));
        }
        let modified = |path: &str| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Ok(Self {
            dpkg_status: modified(DPKG_STATUS),
            apt_lists: modified(APT_LISTS),
        })
    }
}

/// Whether `program` is an executable file in a `$PATH` directory, where starting it by
/// name would find it.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// What a snapshot reports for pending updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookup {
    /// The count to report: the current one or, failing that, the last one taken.
    pub updates: Option<PendingUpdates>,
    /// Why `updates` is missing or not current; `None` when it is current.
    pub problem: Option<String>,
}

/// The cache [`super::collect`] and [`super::warm_up`] share.
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
    inputs: Inputs,
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
        inputs: &Inputs,
        max_age: Duration,
        count: F,
    ) -> Lookup
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<PendingUpdates, ProbeError>> + Send + 'static,
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
        inputs: Inputs,
        started: Instant,
        count: impl Future<Output = Result<PendingUpdates, ProbeError>>,
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
        IFut: Future<Output = Result<Inputs, ProbeError>>,
        C: Fn() -> CFut,
        CFut: Future<Output = Result<PendingUpdates, ProbeError>> + Send + 'static,
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
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    type Count = Pin<Box<dyn Future<Output = Result<PendingUpdates, ProbeError>> + Send>>;

    /// A fresh cache of our own: the tests must not share [`UPDATES`].
    fn cache() -> &'static Cache {
        Box::leak(Box::new(Cache::new()))
    }

    fn updates(pending: u32) -> PendingUpdates {
        PendingUpdates {
            pending,
            security: pending / 2,
        }
    }

    /// Stands in for apt: counts its calls, takes `takes`, then answers `answer`.
    #[derive(Clone, Default)]
    struct FakeApt {
        calls: Arc<AtomicUsize>,
    }

    impl FakeApt {
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        fn answer(
            &self,
            takes: Duration,
            answer: Result<u32, &'static str>,
        ) -> impl Fn() -> Count + use<> {
            let calls = Arc::clone(&self.calls);
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    tokio::time::sleep(takes).await;
                    answer.map(updates).map_err(|detail| ProbeError::Command {
                        command: "apt-get -s upgrade".to_owned(),
                        detail: detail.to_owned(),
                    })
                })
            }
        }
    }

    const APT_TAKES: Duration = Duration::from_secs(5);

    /// Lets a count started now finish (a second more than it takes: a sleep ending on the
    /// same tick may wake before the count's task files its result).
    async fn finish() {
        tokio::time::sleep(APT_TAKES + Duration::from_secs(1)).await;
    }

    fn current(pending: u32) -> Lookup {
        Lookup {
            updates: Some(updates(pending)),
            problem: None,
        }
    }

    fn problem(lookup: &Lookup) -> &str {
        lookup.problem.as_deref().unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_count_is_served_without_counting_again() {
        let (cache, apt, inputs) = (cache(), FakeApt::default(), Inputs::default());
        let first = cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(4)));
        assert_eq!(first.updates, None);
        assert_eq!(first.problem.as_deref(), Some(COUNTING));
        // A snapshot while the count runs starts no second one.
        tokio::time::sleep(APT_TAKES / 2).await;
        let second = cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(9)));
        assert_eq!(second, first);
        assert_eq!(apt.calls(), 1);

        finish().await;
        let done = cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(9)));
        assert_eq!(done, current(4));
        tokio::time::sleep(UPDATES_MAX_AGE - APT_TAKES * 3).await;
        let later = cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(9)));
        assert_eq!(later, current(4));
        assert_eq!(apt.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_count_is_still_served_and_recounted_once() {
        let (cache, apt, inputs) = (cache(), FakeApt::default(), Inputs::default());
        cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(4)));
        finish().await;
        assert_eq!(apt.calls(), 1);

        tokio::time::sleep(UPDATES_MAX_AGE).await;
        let stale = cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(7)));
        assert_eq!(stale.updates, Some(updates(4)));
        assert_eq!(
            problem(&stale),
            format!("{COUNTING}; the count reported is from 6h ago")
        );
        tokio::time::sleep(APT_TAKES / 2).await;
        let again = cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(7)));
        assert_eq!(again.updates, Some(updates(4)));
        assert_eq!(apt.calls(), 2, "exactly one recount");

        finish().await;
        let fresh = cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(1)));
        assert_eq!(fresh, current(7));
        assert_eq!(apt.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn changed_packages_make_a_young_count_stale() {
        let (cache, apt) = (cache(), FakeApt::default());
        let before = Inputs::default();
        cache.lookup(&before, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(12)));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            cache.lookup(&before, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(0))),
            current(12)
        );

        // The user ran the upgrade: dpkg's status file changed.
        let after = Inputs {
            dpkg_status: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            ..before
        };
        let stale = cache.lookup(&after, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(0)));
        assert_eq!(stale.updates, Some(updates(12)));
        assert_eq!(
            problem(&stale),
            format!(
                "{COUNTING}; the count reported was taken 1m ago, before packages or package \
                 lists changed"
            )
        );
        finish().await;
        assert_eq!(
            cache.lookup(&after, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(3))),
            current(0)
        );
        assert_eq!(apt.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_reported_and_retries_are_throttled() {
        let (cache, apt, inputs) = (cache(), FakeApt::default(), Inputs::default());
        cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(4)));
        tokio::time::sleep(UPDATES_MAX_AGE + APT_TAKES).await;

        let broken = apt.answer(APT_TAKES, Err("E: The list of sources could not be read."));
        cache.lookup(&inputs, UPDATES_MAX_AGE, &broken);
        tokio::time::sleep(APT_TAKES + Duration::from_secs(1)).await;
        let failed = cache.lookup(&inputs, UPDATES_MAX_AGE, &broken);
        // The old count is still reported, with the failure and its age.
        assert_eq!(failed.updates, Some(updates(4)));
        assert_eq!(
            problem(&failed),
            "counting pending updates failed 1s ago: `apt-get -s upgrade` failed: E: The list \
             of sources could not be read.; next attempt in 9m 59s; the count reported is from \
             6h ago"
        );
        assert_eq!(apt.calls(), 2);

        // No retry before UPDATES_RETRY_AFTER, however many snapshots ask.
        for _ in 0..9 {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let throttled = cache.lookup(&inputs, UPDATES_MAX_AGE, &broken);
            assert!(problem(&throttled).starts_with("counting pending updates failed"));
        }
        assert_eq!(apt.calls(), 2);

        tokio::time::sleep(Duration::from_secs(60)).await;
        let retrying = cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(5)));
        assert_eq!(apt.calls(), 3);
        assert_eq!(retrying.updates, Some(updates(4)));
        assert!(
            problem(&retrying).starts_with(&format!("{COUNTING}; the previous attempt failed 10m")),
            "{retrying:?}"
        );
        finish().await;
        assert_eq!(cache.lookup(&inputs, UPDATES_MAX_AGE, &broken), current(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_count_that_hangs_is_abandoned_as_a_failure() {
        let (cache, apt, inputs) = (cache(), FakeApt::default(), Inputs::default());
        let hangs = apt.answer(Duration::from_secs(24 * 60 * 60), Ok(1));
        cache.lookup(&inputs, UPDATES_MAX_AGE, &hangs);
        tokio::time::sleep(UPDATES_COUNT_TIMEOUT + Duration::from_secs(1)).await;
        let failed = cache.lookup(&inputs, UPDATES_MAX_AGE, &hangs);
        assert_eq!(failed.updates, None);
        assert_eq!(
            problem(&failed),
            "counting pending updates failed 1s ago: timed out after 1m; next attempt in 9m 59s"
        );
        assert_eq!(apt.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_count_frees_its_slot_and_is_reported() {
        let (cache, inputs) = (cache(), Inputs::default());
        fn buggy_parser() -> Result<PendingUpdates, ProbeError> {
            panic!("bug in the parser")
        }
        cache.lookup(&inputs, UPDATES_MAX_AGE, || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            buggy_parser()
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        let failed = cache.lookup(&inputs, UPDATES_MAX_AGE, || async { Ok(updates(1)) });
        assert!(
            problem(&failed)
                .starts_with("counting pending updates failed 1s ago: the count panicked"),
            "{failed:?}"
        );
        assert!(!cache.lock().counting);
    }

    #[test]
    fn a_count_cut_short_by_runtime_shutdown_is_no_failure() -> Result<(), std::io::Error> {
        // Each test of the diag_vs_os suite has its own runtime: a count one of them
        // started must not leave the cache wedged or throttled once that runtime is gone.
        let (cache, apt, inputs) = (cache(), FakeApt::default(), Inputs::default());
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
        };
        // Cut short while apt runs.
        runtime()?.block_on(async {
            cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(2)));
            tokio::time::sleep(APT_TAKES / 2).await;
        });
        assert!(!cache.lock().counting);
        // Cut short before the count's task ever ran: the test whose snapshot started the
        // count returns without yielding again.
        runtime()?.block_on(async {
            cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(2)));
        });
        assert!(!cache.lock().counting);
        runtime()?.block_on(async {
            let lookup = cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(2)));
            assert_eq!(lookup.problem.as_deref(), Some(COUNTING));
            assert_eq!(apt.calls(), 3);
            finish().await;
            assert_eq!(
                cache.lookup(&inputs, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(2))),
                current(2)
            );
        });
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn the_keeper_recounts_before_snapshots_find_the_count_stale() {
        let (cache, apt, inputs) = (cache(), FakeApt::default(), Inputs::default());
        let keeper = tokio::spawn(cache.keep_warm(
            || async { Ok(Inputs::default()) },
            apt.answer(APT_TAKES, Ok(3)),
        ));
        tokio::time::sleep(APT_TAKES + Duration::from_secs(1)).await;
        assert_eq!(apt.calls(), 1);
        // Snapshots every few minutes for two days: always current, never a count of
        // their own, one recount per ~5h40m.
        let snapshots = apt.answer(APT_TAKES, Ok(99));
        for _ in 0..(48 * 60 / 7) {
            tokio::time::sleep(Duration::from_secs(7 * 60)).await;
            assert_eq!(
                cache.lookup(&inputs, UPDATES_MAX_AGE, &snapshots),
                current(3)
            );
        }
        assert_eq!(apt.calls(), 1 + 48 * 60 / 340);
        keeper.abort();
    }

    #[test]
    fn programs_are_looked_up_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("deskside-no-such-program"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(1500)), "1s");
        assert_eq!(human(Duration::from_secs(59 * 60 + 59)), "59m 59s");
        assert_eq!(human(Duration::from_secs(7 * 3600 + 125)), "7h 2m");
        assert_eq!(human_ceil(Duration::from_millis(598_001)), "9m 59s");
    }
}
