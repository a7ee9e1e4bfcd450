//! Traffic over the last hour, per minute, for the `/status` chart.
//!
//! The hot path only adds to two cumulative counters. The first time it sees a
//! new minute it records the counters as they were (one lock, once a minute);
//! a minute's traffic is then the difference between its sample and the next.
//! A minute without a sample had no traffic, so the buckets are exact up to the
//! few bytes of a chunk that races the minute's turn.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How many minutes the chart covers.
pub const MINUTES: u64 = 60;

pub struct Traffic {
    served: AtomicU64,
    fetched: AtomicU64,
    /// The minute of the latest sample (`u64::MAX`: none yet).
    minute: AtomicU64,
    /// `(minute, served, fetched)` at the first event of each minute with traffic.
    samples: Mutex<VecDeque<(u64, u64, u64)>>,
}

/// One minute of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// Unix seconds at the minute's start.
    pub start: u64,
    pub served_bytes: u64,
    pub fetched_bytes: u64,
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        / 60
}

impl Default for Traffic {
    fn default() -> Self {
        Self::new()
    }
}

impl Traffic {
    pub fn new() -> Traffic {
        Traffic {
            served: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            minute: AtomicU64::new(u64::MAX),
            samples: Mutex::new(VecDeque::new()),
        }
    }

    pub fn add_served(&self, n: u64) {
        self.tick(SystemTime::now());
        self.served.fetch_add(n, Relaxed);
    }

    pub fn add_fetched(&self, n: u64) {
        self.tick(SystemTime::now());
        self.fetched.fetch_add(n, Relaxed);
    }

    pub fn served(&self) -> u64 {
        self.served.load(Relaxed)
    }

    pub fn fetched(&self) -> u64 {
        self.fetched.load(Relaxed)
    }

    /// Records the counters when `now` starts a new minute.
    fn tick(&self, now: SystemTime) {
        let m = minute_of(now);
        if self.minute.load(Relaxed) == m || self.minute.swap(m, Relaxed) == m {
            return;
        }
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.back().is_some_and(|&(last, ..)| last >= m) {
            return; // another thread sampled this minute already
        }
        samples.push_back((m, self.served(), self.fetched()));
        while samples
            .front()
            .is_some_and(|&(first, ..)| first + MINUTES < m)
        {
            samples.pop_front();
        }
    }

    /// The last [`MINUTES`] minutes up to `now`, oldest first.
    pub fn minutes(&self, now: SystemTime) -> Vec<Minute> {
        let now_m = minute_of(now);
        let samples: Vec<(u64, u64, u64)> = self
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        let totals = (self.served(), self.fetched());
        (now_m + 1 - MINUTES..=now_m)
            .map(|m| {
                let (served_bytes, fetched_bytes) =
                    match samples.iter().position(|&(sm, ..)| sm == m) {
                        Some(i) => {
                            let (_, s0, f0) = samples[i];
                            let (s1, f1) = samples
                                .get(i + 1)
                                .map(|&(_, s, f)| (s, f))
                                .unwrap_or(totals);
                            (s1.saturating_sub(s0), f1.saturating_sub(f0))
                        }
                        None => (0, 0),
                    };
                Minute {
                    start: m * 60,
                    served_bytes,
                    fetched_bytes,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(minute: u64, second: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(minute * 60 + second)
    }

    fn add(t: &Traffic, when: SystemTime, served: u64, fetched: u64) {
        t.tick(when);
        t.served.fetch_add(served, Relaxed);
        t.fetched.fetch_add(fetched, Relaxed);
    }

    #[test]
    fn bytes_land_in_their_minute() {
        let t = Traffic::new();
        add(&t, at(1000, 5), 100, 10);
        add(&t, at(1000, 50), 1, 0);
        add(&t, at(1003, 0), 7, 3);
        add(&t, at(1003, 59), 5, 0);
        let minutes = t.minutes(at(1003, 59));
        assert_eq!(minutes.len(), 60);
        let last = minutes.last().unwrap();
        assert_eq!(
            (last.start, last.served_bytes, last.fetched_bytes),
            (1003 * 60, 12, 3)
        );
        let m1000 = minutes.iter().find(|m| m.start == 1000 * 60).unwrap();
        assert_eq!((m1000.served_bytes, m1000.fetched_bytes), (101, 10));
        let total: u64 = minutes.iter().map(|m| m.served_bytes).sum();
        assert_eq!(total, t.served());
        // An hour later the old minutes have left the window.
        let later = t.minutes(at(1100, 0));
        assert!(later.iter().all(|m| m.served_bytes == 0));
        add(&t, at(1100, 1), 9, 0);
        assert_eq!(t.samples.lock().unwrap().len(), 1);
        assert_eq!(t.minutes(at(1100, 2)).last().unwrap().served_bytes, 9);
    }
}
