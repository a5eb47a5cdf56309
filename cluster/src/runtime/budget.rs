//! The background budget's measures (Dynamo section 6.5: background tasks
//! back off when foreground latency rises): foreground latency against its
//! baseline ([`LatencyWatch`]) and a fixed key rate ([`KeyRate`]).
//!
//! Client requests' latencies are summed per window of [`WINDOW`]. A
//! window's mean is compared with the baseline: the lowest mean of the
//! windows of the last minute that saw enough requests. While the last full
//! window's mean is above `factor x baseline + FLOOR`, background work skips
//! its rounds; it resumes as soon as a window is back under the line, so
//! under pressure background work runs in a duty cycle that keeps the
//! foreground near its normal latency. Plain data fed the time: tested
//! without sleeps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Length of one measurement window.
pub const WINDOW: Duration = Duration::from_millis(500);
/// Windows the baseline is the lowest mean of (one minute).
const HISTORY: usize = 120;
/// Requests a window needs to count (fewer: too noisy to judge).
const MIN_REQUESTS: u64 = 20;
/// Latency added to the threshold so that sub-millisecond noise on an idle
/// node does not stop background work.
const FLOOR_US: f64 = 250.0;

/// Windowed mean latency of client requests and its recent baseline.
#[derive(Debug)]
pub struct LatencyWatch {
    started: Instant,
    sum_us: f64,
    count: u64,
    /// Means (µs) of recent full windows with enough requests, newest last.
    history: VecDeque<f64>,
    /// Mean of the last full window (None: too few requests in it).
    last: Option<f64>,
}

impl LatencyWatch {
    /// An empty watch whose first window starts at `now`.
    pub fn new(now: Instant) -> LatencyWatch {
        LatencyWatch {
            started: now,
            sum_us: 0.0,
            count: 0,
            history: VecDeque::with_capacity(HISTORY),
            last: None,
        }
    }

    /// Records one request that took `latency`, finished at `now`.
    pub fn record(&mut self, latency: Duration, now: Instant) {
        self.roll(now);
        self.sum_us += latency.as_secs_f64() * 1e6;
        self.count += 1;
    }

    /// Closes the current window if it is over (and any empty ones after it).
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < WINDOW {
            return;
        }
        self.last = (self.count >= MIN_REQUESTS).then(|| self.sum_us / self.count as f64);
        if let Some(mean) = self.last {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(mean);
        }
        if elapsed >= WINDOW * 2 {
            // Idle windows in between: nothing to judge from.
            self.last = None;
        }
        let windows = elapsed.as_nanos() / WINDOW.as_nanos();
        self.started += WINDOW * windows as u32;
        self.sum_us = 0.0;
        self.count = 0;
    }

    /// The lowest window mean of the last minute (µs), if any.
    pub fn baseline_us(&self) -> Option<f64> {
        self.history.iter().copied().reduce(f64::min)
    }

    /// The last full window's mean (µs), if it had enough requests.
    pub fn last_us(&mut self, now: Instant) -> Option<f64> {
        self.roll(now);
        self.last
    }

    /// Whether foreground latency is above `factor` times its baseline
    /// (plus a small floor). A factor of 0 disables the check.
    pub fn elevated(&mut self, factor: f64, now: Instant) -> bool {
        if factor <= 0.0 {
            return false;
        }
        match (self.last_us(now), self.baseline_us()) {
            (Some(last), Some(base)) => last > base * factor + FLOOR_US,
            _ => false,
        }
    }
}

/// A steady pace for background key transfers: at most `keys_per_sec`
/// keys, spread evenly. Each step of work books its keys and learns when it
/// may start; steps queue behind each other, so bursts are smoothed into the
/// rate whatever the caller's step size. Plain data fed the time.
#[derive(Debug, Clone)]
pub struct KeyRate {
    keys_per_sec: u64,
    /// When the next step may start (`None`: nothing booked yet).
    next: Option<Instant>,
}

impl KeyRate {
    /// A pace of `keys_per_sec` (0: no limit).
    pub fn new(keys_per_sec: u64) -> KeyRate {
        KeyRate {
            keys_per_sec,
            next: None,
        }
    }

    /// Keys one step should move so that steps are about 50 ms of the
    /// budget apart (at most `max`, at least 1).
    pub fn step(&self, max: usize) -> usize {
        if self.keys_per_sec == 0 {
            return max.max(1);
        }
        ((self.keys_per_sec / 20) as usize).clamp(1, max.max(1))
    }

    /// Books `keys` at `now`; returns when their step may start (`now` when
    /// the budget has room).
    pub fn book(&mut self, keys: usize, now: Instant) -> Instant {
        if self.keys_per_sec == 0 {
            return now;
        }
        // Time not used while idle is not saved up: an idle spell does not
        // buy a burst later.
        let start = self.next.map_or(now, |next| next.max(now));
        let cost = Duration::from_secs_f64(keys as f64 / self.keys_per_sec as f64);
        self.next = Some(start + cost);
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` requests of `us` microseconds spread over one window.
    fn window(watch: &mut LatencyWatch, at: &mut Instant, n: u64, us: u64) {
        for i in 0..n {
            let t = *at + WINDOW * i as u32 / n as u32;
            watch.record(Duration::from_micros(us), t);
        }
        *at += WINDOW;
    }

    #[test]
    fn latency_above_twice_the_baseline_is_elevated() {
        let start = Instant::now();
        let mut watch = LatencyWatch::new(start);
        let mut at = start;
        for _ in 0..10 {
            window(&mut watch, &mut at, 100, 400);
        }
        assert!(!watch.elevated(2.0, at), "steady latency is normal");
        assert_eq!(watch.baseline_us(), Some(400.0));
        window(&mut watch, &mut at, 100, 1_200);
        assert!(watch.elevated(2.0, at), "1.2 ms against 0.4 ms");
        assert!(!watch.elevated(0.0, at), "factor 0 disables the check");
        assert!(!watch.elevated(4.0, at));
        // Back to normal: background work may run again.
        window(&mut watch, &mut at, 100, 450);
        assert!(!watch.elevated(2.0, at));
    }

    #[test]
    fn quiet_or_idle_windows_never_stop_background_work() {
        let start = Instant::now();
        let mut watch = LatencyWatch::new(start);
        let mut at = start;
        assert!(!watch.elevated(2.0, at), "no history");
        for _ in 0..5 {
            window(&mut watch, &mut at, 100, 300);
        }
        // A few slow requests are too few to judge.
        window(&mut watch, &mut at, 5, 50_000);
        assert!(!watch.elevated(2.0, at));
        // A slow window followed by idle time is forgotten.
        window(&mut watch, &mut at, 100, 5_000);
        at += WINDOW * 3;
        assert!(!watch.elevated(2.0, at));
    }

    #[test]
    fn the_baseline_forgets_windows_older_than_a_minute() {
        let start = Instant::now();
        let mut watch = LatencyWatch::new(start);
        let mut at = start;
        window(&mut watch, &mut at, 100, 100);
        for _ in 0..HISTORY {
            window(&mut watch, &mut at, 100, 800);
        }
        window(&mut watch, &mut at, 100, 800);
        assert_eq!(watch.baseline_us(), Some(800.0));
        assert!(!watch.elevated(2.0, at));
    }

    #[test]
    fn a_key_rate_spreads_steps_evenly_and_saves_nothing_while_idle() {
        let t0 = Instant::now();
        let mut rate = KeyRate::new(1_000);
        assert_eq!(rate.step(64), 50, "50 ms of a 1,000 keys/s budget");
        assert_eq!(rate.book(50, t0), t0, "the first step starts at once");
        // Booked back to back, steps of 50 keys start 50 ms apart.
        assert_eq!(rate.book(50, t0), t0 + Duration::from_millis(50));
        assert_eq!(rate.book(50, t0), t0 + Duration::from_millis(100));
        // The three steps took 150 ms of budget: after an idle second the
        // next step starts at once, and the one after waits its whole cost.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(rate.book(500, later), later);
        assert_eq!(rate.book(1, later), later + Duration::from_millis(500));
    }

    #[test]
    fn a_zero_key_rate_never_waits() {
        let t0 = Instant::now();
        let mut rate = KeyRate::new(0);
        assert_eq!(rate.step(64), 64);
        for _ in 0..10 {
            assert_eq!(rate.book(1_000_000, t0), t0);
        }
        assert_eq!(KeyRate::new(5).step(64), 1, "at least one key per step");
    }
}
