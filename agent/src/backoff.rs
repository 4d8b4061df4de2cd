//! Reconnect timing: jittered exponential backoff, validated when built.

use std::time::Duration;

use rand::Rng;

/// First reconnect delay; doubles per failure up to [`RECONNECT_CAP`].
pub const RECONNECT_BASE: Duration = Duration::from_secs(1);
/// Longest wait between attempts: a controller back from maintenance sees its agents
/// within a minute.
pub const RECONNECT_CAP: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackoffError {
    #[error("backoff base must be above zero")]
    ZeroBase,
    #[error("backoff cap {cap:?} is below its base {base:?}")]
    CapBelowBase { base: Duration, cap: Duration },
}

/// "Full jitter" backoff (AWS architecture blog): the n-th delay is uniform in
/// `[base·2ⁿ/2, base·2ⁿ]`, capped — spread out enough that 10,000 agents coming back
/// after a controller restart do not arrive in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Result<Backoff, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if cap < base {
            return Err(BackoffError::CapBelowBase { base, cap });
        }
        Ok(Backoff {
            base,
            cap,
            attempt: 0,
        })
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(20));
        let ceiling = exp.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let floor = ceiling / 2;
        let spread = ceiling.saturating_sub(floor).as_millis();
        let jitter = rng.gen_range(0..=u64::try_from(spread).unwrap_or(u64::MAX));
        floor + Duration::from_millis(jitter)
    }

    /// After a connection that worked, start again from the base.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::from_secs(1)).err(),
            Some(BackoffError::ZeroBase)
        );
        assert!(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn grows_exponentially_within_jitter_and_cap_then_resets() -> Result<(), BackoffError> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(60))?;
        for n in 0..12u32 {
            let ceiling = (Duration::from_millis(500) * 2u32.pow(n)).min(Duration::from_secs(60));
            let d = b.next_delay(&mut rng);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {n}: {d:?} not in [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        b.reset();
        assert!(b.next_delay(&mut rng) <= Duration::from_millis(500));
        Ok(())
    }

    #[test]
    fn delays_are_spread_not_lockstep() -> Result<(), BackoffError> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let delays: std::collections::HashSet<Duration> = (0..100)
            .map(|_| {
                Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).map(|mut b| {
                    b.next_delay(&mut rng);
                    b.next_delay(&mut rng)
                })
            })
            .collect::<Result<_, _>>()?;
        assert!(delays.len() > 50, "only {} distinct delays", delays.len());
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn sleeping_the_delays_takes_their_sum_in_paused_time() -> Result<(), BackoffError> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8))?;
        let start = tokio::time::Instant::now();
        let mut total = Duration::ZERO;
        for _ in 0..6 {
            let d = b.next_delay(&mut rng);
            total += d;
            tokio::time::sleep(d).await;
        }
        assert_eq!(start.elapsed(), total);
        assert!(total <= Duration::from_secs(1 + 2 + 4 + 8 + 8 + 8));
        Ok(())
    }
}
