//! Rate and ETA from (time, bytes) samples: the rate is the bytes gained over a sliding
//! window of recent samples divided by the time they span, so one burst (the first read of
//! a buffered stream, a part landing at once) does not show as `10 GiB/s`, and nothing is
//! shown before the samples span [`RateEstimator::MIN_SPAN`] seconds. Times are seconds
//! from any origin (the caller's clock; tests pass their own).

use std::collections::VecDeque;

#[derive(Clone, Debug)]
pub struct RateEstimator {
    window: f64,
    samples: VecDeque<(f64, u64)>,
}

impl Default for RateEstimator {
    fn default() -> Self {
        RateEstimator::new(RateEstimator::WINDOW)
    }
}

impl RateEstimator {
    /// Seconds of samples the rate is averaged over.
    pub const WINDOW: f64 = 5.0;
    /// No rate (and no ETA) before the samples span this many seconds.
    pub const MIN_SPAN: f64 = 1.0;

    pub fn new(window: f64) -> Self {
        RateEstimator {
            window: window.max(RateEstimator::MIN_SPAN),
            samples: VecDeque::new(),
        }
    }

    /// Forgets every sample (a new stage).
    pub fn reset(&mut self) {
        self.samples.clear();
    }

    /// `done` bytes at time `t`. A counter that went back (a new stage the caller did not
    /// notice) starts over.
    pub fn sample(&mut self, t: f64, done: u64) {
        if let Some(&(lt, ld)) = self.samples.back() {
            if done < ld || t < lt {
                self.samples.clear();
            }
        }
        self.samples.push_back((t, done));
        // Keep one sample at or before the window's start, so the window is always full.
        while self.samples.len() > 2 && self.samples.get(1).is_some_and(|s| t - s.0 >= self.window)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes per second over the window, once the samples span at least `MIN_SPAN`.
    pub fn rate(&self) -> Option<f64> {
        let (&(t0, d0), &(t1, d1)) = (self.samples.front()?, self.samples.back()?);
        let span = t1 - t0;
        if span < RateEstimator::MIN_SPAN {
            return None;
        }
        Some((d1 - d0) as f64 / span)
    }

    /// Seconds left to reach `total` at the current rate.
    pub fn eta(&self, total: u64) -> Option<f64> {
        let &(_, done) = self.samples.back()?;
        let rate = self.rate()?;
        if total <= done || total == 0 {
            return (total > 0).then_some(0.0);
        }
        (rate > 0.0).then(|| (total - done) as f64 / rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn no_rate_before_a_second_of_samples_however_much_arrived_at_once() {
        let mut r = RateEstimator::default();
        // A buffered first read: 10 GiB seen in the first 10 ms.
        r.sample(0.0, 0);
        r.sample(0.01, 10 * 1024 * MIB);
        assert_eq!(r.rate(), None);
        assert_eq!(r.eta(20 * 1024 * MIB), None);
        r.sample(0.5, 10 * 1024 * MIB);
        assert_eq!(r.rate(), None);
    }

    #[test]
    fn the_rate_is_smoothed_over_the_window_not_the_last_sample() {
        let mut r = RateEstimator::new(5.0);
        // 10 MiB/s steady for 10 s, sampled twice a second...
        for i in 0..=20 {
            r.sample(i as f64 * 0.5, i * 5 * MIB);
        }
        let steady = r.rate().expect("rate");
        assert!((steady - 10.0 * MIB as f64).abs() < 1.0, "{steady}");
        // ...then one burst of 50 MiB in half a second: the window's average moves, but
        // far less than the burst's own 100 MiB/s.
        r.sample(10.5, 150 * MIB);
        let after = r.rate().expect("rate");
        assert!(after > steady && after < 25.0 * MIB as f64, "{after}");
        // Old samples leave the window: after 6 s of a steady 2 MiB/s the rate is 2 MiB/s.
        for i in 1..=12 {
            r.sample(10.5 + i as f64 * 0.5, 150 * MIB + i * MIB);
        }
        let slow = r.rate().expect("rate");
        assert!(
            (slow - 2.0 * MIB as f64).abs() < 0.01 * MIB as f64,
            "{slow}"
        );
    }

    #[test]
    fn eta_is_what_is_left_at_the_current_rate() {
        let mut r = RateEstimator::default();
        r.sample(0.0, 0);
        r.sample(2.0, 20 * MIB);
        let eta = r.eta(100 * MIB).expect("eta");
        assert!((eta - 8.0).abs() < 1e-9, "{eta}");
        assert_eq!(r.eta(10 * MIB), Some(0.0), "past an estimated total");
        assert_eq!(r.eta(0), None, "no total, no ETA");
        // A stalled stream has a rate of 0 and no ETA.
        let mut s = RateEstimator::default();
        s.sample(0.0, 5);
        s.sample(3.0, 5);
        assert_eq!(s.rate(), Some(0.0));
        assert_eq!(s.eta(10), None);
    }

    #[test]
    fn a_counter_that_goes_back_starts_over() {
        let mut r = RateEstimator::default();
        r.sample(0.0, 0);
        r.sample(2.0, 100);
        r.sample(2.5, 0);
        assert_eq!(r.rate(), None);
    }
}
