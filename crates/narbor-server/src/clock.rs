//! "Now", injected: the server asks a [`Clock`], never the system directly,
//! so in-process tests move time forward (TTLs, the negative cache, the
//! store's refusal back-off, the store's own timestamps) without sleeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;

    /// Time since `earlier`, zero if the clock went back.
    fn since(&self, earlier: SystemTime) -> Duration {
        self.now().duration_since(earlier).unwrap_or_default()
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to (for tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock that starts at `start`.
    pub fn starting_at(start: SystemTime) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: Mutex::new(start),
        })
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The clock as the store takes it: a function.
pub fn as_store_clock(clock: Arc<dyn Clock>) -> Box<dyn Fn() -> SystemTime + Send + Sync> {
    Box::new(move || clock.now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_when_told() {
        let c = ManualClock::starting_at(SystemTime::UNIX_EPOCH);
        let t0 = c.now();
        c.advance(Duration::from_secs(5));
        assert_eq!(c.since(t0), Duration::from_secs(5));
        assert_eq!(c.now().duration_since(t0).unwrap(), Duration::from_secs(5));
        // Back in time: zero, never a panic.
        assert_eq!(c.since(t0 + Duration::from_secs(60)), Duration::ZERO);
    }
}
