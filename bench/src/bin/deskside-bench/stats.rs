//! Percentiles of timed samples and how figures are printed.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Timings of one measure, sorted.
#[derive(Debug, Clone)]
pub struct Samples {
    sorted: Vec<Duration>,
}

impl Samples {
    pub fn new(mut all: Vec<Duration>) -> Result<Samples> {
        if all.is_empty() {
            bail!("no samples");
        }
        all.sort();
        Ok(Samples { sorted: all })
    }

    /// Runs `f` `runs` times and times each run.
    pub fn collect(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Samples> {
        let mut all = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            f()?;
            all.push(start.elapsed());
        }
        Samples::new(all)
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Nearest-rank percentile (`p` in 0..=100).
    pub fn pct(&self, p: u32) -> Duration {
        let n = self.sorted.len();
        let rank = (usize::try_from(p).unwrap_or(100) * n).div_ceil(100).max(1);
        self.sorted
            .get(rank.min(n) - 1)
            .copied()
            .unwrap_or_default()
    }

    pub fn p50(&self) -> Duration {
        self.pct(50)
    }

    pub fn p99(&self) -> Duration {
        self.pct(99)
    }

    /// "p50 / p99 (n=N)".
    pub fn show(&self) -> String {
        format!("{} / {} (n={})", ms(self.p50()), ms(self.p99()), self.len())
    }
}

/// A duration in milliseconds with a precision that suits its size.
pub fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 1000.0 {
        format!("{v:.0} ms")
    } else {
        format!("{:.2} s", v / 1000.0)
    }
}

/// Bytes as MiB with two decimals.
pub fn mib(bytes: u64) -> String {
    // u64 → f64 loses precision only above 2^53 bytes.
    #[allow(clippy::cast_precision_loss)]
    let v = bytes as f64 / (1024.0 * 1024.0);
    format!("{v:.2} MiB")
}

/// Bytes in a human unit.
pub fn size(bytes: u64) -> String {
    if bytes < 10 * 1024 {
        format!("{bytes} B")
    } else if bytes < 10 * 1024 * 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        mib(bytes)
    }
}

/// `a / b` as "N×".
pub fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "—".into();
    }
    format!("{:.1}×", a.as_secs_f64() / b.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Samples::new((1..=100).map(Duration::from_millis).collect()).expect("non-empty");
        assert_eq!(s.p50(), Duration::from_millis(50));
        assert_eq!(s.p99(), Duration::from_millis(99));
        assert_eq!(s.pct(100), Duration::from_millis(100));
        let one = Samples::new(vec![Duration::from_millis(7)]).expect("non-empty");
        assert_eq!(one.p50(), Duration::from_millis(7));
        assert_eq!(one.p99(), Duration::from_millis(7));
    }

    #[test]
    fn empty_is_an_error() {
        assert!(Samples::new(Vec::new()).is_err());
    }
}
