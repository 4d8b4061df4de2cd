//! The pending-updates cache against a fake apt: what snapshots report while counts run,
//! fail, hang or go stale.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use super::*;

type Count = Pin<Box<dyn Future<Output = Result<PendingUpdates, Error>> + Send>>;

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
                answer.map(updates).map_err(|detail| Error::Command {
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
    let (cache, apt, inputs) = (cache(), FakeApt::default(), PackageState::default());
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
    let (cache, apt, inputs) = (cache(), FakeApt::default(), PackageState::default());
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
    let before = PackageState::default();
    cache.lookup(&before, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(12)));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        cache.lookup(&before, UPDATES_MAX_AGE, apt.answer(APT_TAKES, Ok(0))),
        current(12)
    );

    // The user ran the upgrade: dpkg's status file changed.
    let after = PackageState {
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
    let (cache, apt, inputs) = (cache(), FakeApt::default(), PackageState::default());
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
    let (cache, apt, inputs) = (cache(), FakeApt::default(), PackageState::default());
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
    let (cache, inputs) = (cache(), PackageState::default());
    fn buggy_parser() -> Result<PendingUpdates, Error> {
        panic!("bug in the parser")
    }
    cache.lookup(&inputs, UPDATES_MAX_AGE, || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        buggy_parser()
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failed = cache.lookup(&inputs, UPDATES_MAX_AGE, || async { Ok(updates(1)) });
    assert!(
        problem(&failed).starts_with("counting pending updates failed 1s ago: the count panicked"),
        "{failed:?}"
    );
    assert!(!cache.lock().counting);
}

#[test]
fn a_count_cut_short_by_runtime_shutdown_is_no_failure() -> Result<(), std::io::Error> {
    // Each test of the diag_vs_os suite has its own runtime: a count one of them
    // started must not leave the cache wedged or throttled once that runtime is gone.
    let (cache, apt, inputs) = (cache(), FakeApt::default(), PackageState::default());
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
    let (cache, apt, inputs) = (cache(), FakeApt::default(), PackageState::default());
    let keeper = tokio::spawn(cache.keep_warm(
        || async { Ok(PackageState::default()) },
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
fn durations_read_well() {
    assert_eq!(human(Duration::from_millis(1500)), "1s");
    assert_eq!(human(Duration::from_secs(59 * 60 + 59)), "59m 59s");
    assert_eq!(human(Duration::from_secs(7 * 3600 + 125)), "7h 2m");
    assert_eq!(human_ceil(Duration::from_millis(598_001)), "9m 59s");
}
