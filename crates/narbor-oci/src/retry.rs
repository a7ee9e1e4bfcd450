//! The one retry policy of the registry client: how many attempts, which
//! answers are worth another one, and how long to wait between them.
//!
//! Every repeated thing in this crate goes through [`RetryPolicy::run`]: a
//! request ([`RegistryClient::send`](crate::RegistryClient)), a token fetch,
//! and a whole upload restarted from its POST. What counts as worth
//! repeating stays with each caller (it returns [`Attempt::Retry`]); the
//! counting, the backoff, the log line and the `retries` counter are here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;

/// How hard to try before giving up on a request.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included.
    pub attempts: u32,
    /// The first pause; each next one doubles, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts over about 8 s: rides out a registry restart or a
    /// rate-limit window without hanging a push for minutes.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// What one attempt came to.
pub(crate) enum Attempt<T, E> {
    /// Finished with a value (any status the caller will judge itself).
    Done(T),
    /// Worth another attempt, after the server's `Retry-After` if it gave
    /// one; `last` is the outcome when no attempt is left.
    Retry {
        last: Result<T, E>,
        retry_after: Option<Duration>,
        /// For the log line.
        why: String,
    },
    /// Not an attempt at all (a 401 answered by authenticating): again at
    /// once, not counted. The caller must make sure it does not repeat this
    /// forever.
    Again,
}

impl RetryPolicy {
    /// One attempt and no retry: for requests that must not be repeated
    /// blindly (an upload chunk: the whole upload is restarted instead).
    pub(crate) const ONCE: RetryPolicy = RetryPolicy {
        attempts: 1,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// Runs `attempt` until it is done, fails for good (`Err`), or has
    /// returned [`Attempt::Retry`] `self.attempts` times; sleeps
    /// [`delay`](Self::delay) between attempts, logs each retry under `op`
    /// and counts it in `retries`.
    pub(crate) async fn run<T, E, Fut>(
        &self,
        op: &str,
        retries: &AtomicU64,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, E>
    where
        Fut: std::future::Future<Output = Result<Attempt<T, E>, E>>,
    {
        let mut made = 0u32;
        loop {
            match attempt().await? {
                Attempt::Done(v) => return Ok(v),
                Attempt::Again => {}
                Attempt::Retry {
                    last,
                    retry_after,
                    why,
                } => {
                    made += 1;
                    if made >= self.attempts {
                        return last;
                    }
                    let delay = self.delay(made, retry_after);
                    tracing::warn!(op, reason = %why, ?delay, "retrying");
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The pause after the `attempt`-th attempt (from 1): `base_delay`
    /// doubled each time, or the server's `Retry-After`, at most `max_delay`,
    /// plus up to 25 % jitter so parallel uploads do not retry in lockstep.
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let d = retry_after.unwrap_or(exp).min(self.max_delay);
        let mut b = [0u8; 2];
        let _ = getrandom::getrandom(&mut b);
        d + d.mul_f64(f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 4.0)
    }
}

/// A status that waiting may cure: rate limiting, and the server errors a
/// restart or an overloaded backend gives (not 501 or 505, which are final).
pub(crate) fn transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` in seconds (the HTTP-date form is not used by registries).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    fn run<T>(
        p: RetryPolicy,
        outcomes: Vec<Result<Attempt<T, &'static str>, &'static str>>,
    ) -> (Result<T, &'static str>, usize, u64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let retries = AtomicU64::new(0);
        let mut outcomes = outcomes.into_iter();
        let mut calls = 0;
        let r = rt.block_on(p.run("test", &retries, || {
            calls += 1;
            let outcome = outcomes.next().expect("called once too often");
            async move { outcome }
        }));
        (r, calls, retries.load(Ordering::Relaxed))
    }

    fn retry<T>(last: Result<T, &'static str>) -> Result<Attempt<T, &'static str>, &'static str> {
        Ok(Attempt::Retry {
            last,
            retry_after: None,
            why: "busy".into(),
        })
    }

    #[test]
    fn retries_until_done() {
        let (r, calls, retries) = run(
            policy(3),
            vec![retry(Err("a")), retry(Ok(1)), Ok(Attempt::Done(2))],
        );
        assert_eq!((r, calls, retries), (Ok(2), 3, 2));
    }

    #[test]
    fn gives_the_last_outcome_after_the_attempts() {
        let (r, calls, retries) = run(
            policy(3),
            vec![retry(Err("a")), retry(Err("b")), retry(Ok(7))],
        );
        assert_eq!((r, calls, retries), (Ok(7), 3, 2));
        let (r, calls, retries) = run(policy(2), vec![retry(Ok(1)), retry(Err("b"))]);
        assert_eq!((r, calls, retries), (Err("b"), 2, 1));
    }

    #[test]
    fn a_final_error_is_not_retried() {
        let (r, calls, retries) = run::<()>(policy(5), vec![retry(Err("a")), Err("final")]);
        assert_eq!((r, calls, retries), (Err("final"), 2, 1));
    }

    #[test]
    fn once_never_retries() {
        let (r, calls, retries) = run(RetryPolicy::ONCE, vec![retry(Ok(1))]);
        assert_eq!((r, calls, retries), (Ok(1), 1, 0));
    }

    #[test]
    fn again_is_not_an_attempt() {
        let (r, calls, retries) = run::<()>(
            policy(2),
            vec![
                Ok(Attempt::Again),
                retry(Err("a")),
                Ok(Attempt::Again),
                retry(Err("b")),
            ],
        );
        assert_eq!((r, calls, retries), (Err("b"), 4, 1));
    }

    #[test]
    fn delays_double_up_to_the_cap_with_a_quarter_of_jitter() {
        let p = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        let within = |d: Duration, base: u64| {
            let base = Duration::from_millis(base);
            assert!(d >= base && d <= base + base / 4, "{d:?} for {base:?}");
        };
        within(p.delay(1, None), 100);
        within(p.delay(2, None), 200);
        within(p.delay(4, None), 800);
        within(p.delay(5, None), 1000);
        within(p.delay(u32::MAX, None), 1000);
        // The server's Retry-After wins, within the cap.
        within(p.delay(1, Some(Duration::from_millis(600))), 600);
        within(p.delay(1, Some(Duration::from_secs(3600))), 1000);
        assert_eq!(p.delay(3, Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn transient_statuses() {
        for s in [429, 500, 502, 503, 504] {
            assert!(transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 501, 505] {
            assert!(!transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(header::RETRY_AFTER, " 3 ".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
