//! Each upstream's health: an upstream that failed (refused, unreachable,
//! timed out, answered 5xx or 429) is left alone for a back-off period, so a
//! dead upstream costs requests one short timeout per period, not one per
//! path. The period starts at two seconds and doubles with each failure in a
//! row, up to a minute; a `Retry-After` (503, 429) sets it, within one second
//! and five minutes. Once it passes, the next request tries the upstream
//! again; a success ends the back-off.
//!
//! This module decides, from what the upstream client reports and the
//! server's clock; it sends nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::clock::Clock;

/// The first back-off, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The bounds put on a `Retry-After`.
const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Clone)]
struct State {
    /// Failures in a row.
    failures: u32,
    down_until: Option<SystemTime>,
}

/// What the status page shows of one upstream's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthView {
    pub failures_in_a_row: u32,
    /// Until when requests skip it, if they do now.
    pub down_until: Option<SystemTime>,
}

/// The health of every upstream, by index.
pub(crate) struct Health {
    states: Vec<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

impl Health {
    pub fn new(upstreams: usize, clock: Arc<dyn Clock>) -> Health {
        Health {
            states: (0..upstreams).map(|_| Mutex::default()).collect(),
            clock,
        }
    }

    fn state(&self, i: usize) -> std::sync::MutexGuard<'_, State> {
        self.states[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether requests to upstream `i` should be skipped now; when it is,
    /// until when.
    pub fn backing_off(&self, i: usize) -> Option<SystemTime> {
        let now = self.clock.now();
        let state = self.state(i);
        state.down_until.filter(|until| *until > now)
    }

    /// Upstream `i` answered (any answer that is not a failure: 200, 404).
    pub fn succeeded(&self, i: usize) {
        let mut state = self.state(i);
        if state.failures > 0 {
            tracing::info!(upstream = i, "the upstream answers again");
        }
        *state = State::default();
    }

    /// Upstream `i` failed; `retry_after` is what it asked for, if anything.
    /// Returns until when it is left alone.
    pub fn failed(&self, i: usize, retry_after: Option<Duration>) -> SystemTime {
        let now = self.clock.now();
        let mut state = self.state(i);
        state.failures = state.failures.saturating_add(1);
        let backoff = match retry_after {
            Some(d) => d.clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX),
            None => FIRST_BACKOFF
                .saturating_mul(1 << state.failures.saturating_sub(1).min(16))
                .min(MAX_BACKOFF),
        };
        let until = now + backoff;
        state.down_until = Some(until);
        until
    }

    pub fn view(&self, i: usize) -> HealthView {
        let now = self.clock.now();
        let state = self.state(i);
        HealthView {
            failures_in_a_row: state.failures,
            down_until: state.down_until.filter(|u| *u > now),
        }
    }
}

/// The seconds a `Retry-After` header asks for (delay-seconds; an HTTP date
/// is read as "soon", one second).
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    match v.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => Some(RETRY_AFTER_MIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn health() -> (Health, Arc<ManualClock>) {
        let clock = ManualClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
        (Health::new(2, clock.clone()), clock)
    }

    #[test]
    fn back_off_doubles_up_to_a_minute_and_a_success_ends_it() {
        let (h, clock) = health();
        assert_eq!(h.backing_off(0), None);
        let mut expect = 2;
        for _ in 0..8 {
            let start = clock.now();
            let until = h.failed(0, None);
            assert_eq!(until.duration_since(start).unwrap().as_secs(), expect);
            assert!(h.backing_off(0).is_some());
            assert_eq!(h.backing_off(1), None, "the other upstream is fine");
            clock.advance(Duration::from_secs(expect));
            assert_eq!(h.backing_off(0), None, "tried again once it passed");
            expect = (expect * 2).min(60);
        }
        assert_eq!(h.view(0).failures_in_a_row, 8);
        h.succeeded(0);
        let start = clock.now();
        let until = h.failed(0, None);
        assert_eq!(until.duration_since(start).unwrap().as_secs(), 2, "from the start again");
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let (h, clock) = health();
        let start = clock.now();
        let until = h.failed(1, Some(Duration::from_secs(30)));
        assert_eq!(until.duration_since(start).unwrap().as_secs(), 30);
        let until = h.failed(1, Some(Duration::from_secs(86400)));
        assert_eq!(until.duration_since(start).unwrap().as_secs(), 300);
        let until = h.failed(1, Some(Duration::ZERO));
        assert_eq!(until.duration_since(start).unwrap().as_secs(), 1);
        assert_eq!(retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(" "), None);
    }
}
