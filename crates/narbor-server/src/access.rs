//! Who may see narbor's own statistics.
//!
//! `/status`, `/status.json` and `/metrics` (and the administrative endpoints
//! to come, such as `POST /_refresh`) answer only clients on the loopback
//! interface by default: they say what the cache holds and who it fetches
//! from. `--stats-public` opens the read-only ones to everybody; it never opens
//! an endpoint that changes anything.

use std::net::IpAddr;

/// What a stats endpoint does, which decides whether `--stats-public` opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Shows statistics (`/status`, `/status.json`, `/metrics`).
    ReadOnly,
    /// Changes something (`POST /_refresh`): loopback only, always.
    Admin,
}

/// Is `ip` on this host's loopback interface (127.0.0.0/8, `::1`, or an
/// IPv4 loopback address mapped into IPv6 by a dual-stack socket)?
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// May `peer` use `endpoint`? `Err` carries the reason to answer with 403.
pub fn check(peer: IpAddr, endpoint: Endpoint, stats_public: bool) -> Result<(), &'static str> {
    if is_loopback(peer) {
        return Ok(());
    }
    match endpoint {
        Endpoint::ReadOnly if stats_public => Ok(()),
        Endpoint::ReadOnly => Err(
            "forbidden: narbor's statistics answer only loopback clients (start it with --stats-public to open them)\n",
        ),
        Endpoint::Admin => Err("forbidden: this endpoint answers only loopback clients\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_is_always_allowed() {
        for peer in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] {
            for public in [false, true] {
                assert_eq!(
                    check(ip(peer), Endpoint::ReadOnly, public),
                    Ok(()),
                    "{peer}"
                );
                assert_eq!(check(ip(peer), Endpoint::Admin, public), Ok(()), "{peer}");
            }
        }
    }

    #[test]
    fn other_clients_are_refused_unless_stats_are_public() {
        let others = [
            "10.0.0.7",
            "192.168.1.20",
            "0.0.0.0",
            "128.0.0.1",
            "::ffff:10.0.0.1",
            "fe80::1",
            "2001:db8::1",
            "::",
        ];
        for peer in others {
            let refused = check(ip(peer), Endpoint::ReadOnly, false);
            assert!(
                refused.is_err_and(|r| r.contains("--stats-public")),
                "{peer}"
            );
            assert_eq!(check(ip(peer), Endpoint::ReadOnly, true), Ok(()), "{peer}");
            assert!(check(ip(peer), Endpoint::Admin, true).is_err(), "{peer}");
            assert!(check(ip(peer), Endpoint::Admin, false).is_err(), "{peer}");
        }
    }
}
