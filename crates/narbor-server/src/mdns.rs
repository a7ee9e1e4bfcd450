//! LAN mode's mDNS/DNS-SD: advertising a running cache as an `_http._tcp`
//! service (TXT `path=/`, `nix-cache=1`, as Avahi and Bonjour expect), and
//! browsing the LAN for such caches.
//!
//! It speaks mDNS itself (the `mdns-sd` crate, its own thread): no Avahi or
//! D-Bus needed. It owns which addresses and port to advertise, the instance
//! and host names, and turning a found service into a substituter URL; it does
//! not own printing or writing `nix.conf` (the binary does).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo, UnregisterStatus};

/// The DNS-SD service type narbor advertises and browses.
pub const SERVICE_TYPE: &str = "_http._tcp.local.";
/// The TXT key (with value `1`) that marks an `_http._tcp` service as a Nix cache.
pub const NIX_CACHE_KEY: &str = "nix-cache";

/// Why mDNS could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    #[error(
        "no network interface for mDNS: none is up with an address and multicast besides loopback"
    )]
    NoInterface,
    #[error(
        "LAN mode listens only on loopback ({0}): give a --listen address other machines can reach"
    )]
    LoopbackOnly(String),
    #[error("listing the network interfaces: {0}")]
    Interfaces(#[source] std::io::Error),
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
}

/// A registered service; [`Advertisement::withdraw`] says goodbye.
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
    /// The instance name, e.g. `narbor on box`.
    pub instance: String,
    /// The mDNS host name, e.g. `box.local.`.
    pub host: String,
    /// The advertised port.
    pub port: u16,
    /// The advertised addresses; empty means every address of the machine's
    /// interfaces (followed as they change).
    pub addrs: Vec<IpAddr>,
}

/// Advertises a cache listening on `bound` (the listeners' actual addresses).
///
/// The port is the first non-loopback listener's. Unspecified addresses
/// (`0.0.0.0`, `[::]`) advertise the machine's interface addresses (IPv4 only
/// when only `0.0.0.0` is bound), others exactly themselves. Loopback is
/// never advertised.
pub fn advertise(bound: &[SocketAddr]) -> Result<Advertisement, MdnsError> {
    let reachable: Vec<&SocketAddr> = bound.iter().filter(|a| !a.ip().is_loopback()).collect();
    let Some(first) = reachable.first() else {
        let list: Vec<String> = bound.iter().map(ToString::to_string).collect();
        return Err(MdnsError::LoopbackOnly(list.join(", ")));
    };
    let port = first.port();
    let any_v4 = reachable.iter().any(|a| a.ip() == IpAddr::from([0u8; 4]));
    let any_v6 = reachable.iter().any(|a| a.ip() == IpAddr::from([0u16; 8]));
    let addrs: Vec<IpAddr> = if any_v4 || any_v6 {
        Vec::new()
    } else {
        reachable.iter().map(|a| a.ip()).collect()
    };
    check_interfaces()?;

    let label = host_label();
    let instance = format!("narbor on {label}");
    let host = format!("{label}.local.");
    let properties = [("path", "/"), (NIX_CACHE_KEY, "1")];
    let mut info = ServiceInfo::new(
        SERVICE_TYPE,
        &instance,
        &host,
        addrs.as_slice(),
        port,
        &properties[..],
    )?;
    if addrs.is_empty() {
        info = info.enable_addr_auto();
        if !any_v6 {
            // A `0.0.0.0` listener does not accept IPv6 connections.
            info.set_interfaces(vec![IfKind::IPv4]);
        }
    }
    let fullname = info.get_fullname().to_owned();
    let daemon = ServiceDaemon::new()?;
    daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
    daemon.register(info)?;
    Ok(Advertisement {
        daemon,
        fullname,
        instance,
        host,
        port,
        addrs,
    })
}

impl Advertisement {
    /// Unregisters the service (goodbye packets, so browsers forget it at once)
    /// and stops the mDNS thread. Blocks for at most about `timeout`.
    pub fn withdraw(self, timeout: Duration) {
        match self.daemon.unregister(&self.fullname) {
            Ok(rx) => match rx.recv_timeout(timeout) {
                Ok(UnregisterStatus::OK) => tracing::info!("mDNS: withdrew {}", self.instance),
                Ok(status) => tracing::warn!("mDNS: withdrawing {}: {status:?}", self.instance),
                Err(e) => tracing::warn!("mDNS: no goodbye sent for {}: {e}", self.instance),
            },
            Err(e) => tracing::warn!("mDNS: withdrawing {}: {e}", self.instance),
        }
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = rx.recv_timeout(timeout);
        }
    }
}

/// A Nix cache found on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCache {
    /// The DNS-SD instance name, e.g. `narbor on box`.
    pub instance: String,
    /// The mDNS host name, e.g. `box.local.`.
    pub host: String,
    /// The substituter URL, e.g. `http://192.168.1.10:80/`.
    pub url: String,
}

/// Browses for `timeout` and returns every `_http._tcp` service whose TXT
/// says `nix-cache=1`, sorted by instance name. Blocks for `timeout`.
pub fn discover(timeout: Duration) -> Result<Vec<FoundCache>, MdnsError> {
    check_interfaces()?;
    let daemon = ServiceDaemon::new()?;
    let events = daemon.browse(SERVICE_TYPE)?;
    let deadline = Instant::now() + timeout;
    let mut found = BTreeMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(event) = events.recv_timeout(left) else {
            break;
        };
        match event {
            ServiceEvent::ServiceResolved(service) => {
                if service.get_property_val_str(NIX_CACHE_KEY) != Some("1") {
                    continue;
                }
                let ips = service.get_addresses().iter().map(|a| a.to_ip_addr());
                let Some(base) = url_base(ips, service.get_hostname(), service.get_port()) else {
                    continue;
                };
                let path = service.get_property_val_str("path").unwrap_or("/");
                let fullname = service.get_fullname().to_owned();
                found.insert(
                    fullname.clone(),
                    FoundCache {
                        instance: instance_name(&fullname),
                        host: service.get_hostname().to_owned(),
                        url: format!("{base}{}", url_path(path)),
                    },
                );
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                found.remove(&fullname);
            }
            _ => {}
        }
    }
    let _ = daemon.stop_browse(SERVICE_TYPE);
    if let Ok(rx) = daemon.shutdown() {
        let _ = rx.recv_timeout(Duration::from_secs(1));
    }
    let mut caches: Vec<FoundCache> = found.into_values().collect();
    caches.sort_by(|a, b| a.instance.cmp(&b.instance).then(a.url.cmp(&b.url)));
    Ok(caches)
}

/// `http://ADDR:PORT`: an IPv4 address if there is one (lowest first), else a
/// global IPv6 address, else the `.local` host name (which needs nss-mdns).
/// IPv6 link-local addresses are skipped: a URL cannot carry their scope.
fn url_base(ips: impl Iterator<Item = IpAddr>, host: &str, port: u16) -> Option<String> {
    let mut ips: Vec<IpAddr> = ips
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
            IpAddr::V6(v6) => {
                !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
            }
        })
        .collect();
    ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    match ips.first() {
        Some(IpAddr::V4(v4)) => Some(format!("http://{v4}:{port}")),
        Some(IpAddr::V6(v6)) => Some(format!("http://[{v6}]:{port}")),
        None => {
            let host = host.trim_end_matches('.');
            (!host.is_empty()).then(|| format!("http://{host}:{port}"))
        }
    }
}

/// A TXT `path` as a URL path: always starting and ending with `/`.
fn url_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

/// `narbor on box._http._tcp.local.` → `narbor on box`.
fn instance_name(fullname: &str) -> String {
    let name = fullname
        .strip_suffix(SERVICE_TYPE)
        .map(|n| n.trim_end_matches('.'))
        .unwrap_or(fullname);
    name.replace("\\.", ".").replace("\\\\", "\\")
}

/// This machine's host name as one DNS label: its first label, with anything
/// but letters, digits and `-` replaced by `-`.
fn host_label() -> String {
    let uname = rustix::system::uname();
    let node = uname.nodename().to_string_lossy();
    label_of(&node)
}

fn label_of(node: &str) -> String {
    let first = node.split('.').next().unwrap_or("");
    let label: String = first
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        "narbor".to_owned()
    } else {
        label.to_owned()
    }
}

/// Fails unless some interface other than loopback is up, has an address and
/// (where the kernel says) supports multicast.
fn check_interfaces() -> Result<(), MdnsError> {
    let interfaces = if_addrs::get_if_addrs().map_err(MdnsError::Interfaces)?;
    let usable = interfaces
        .iter()
        .any(|i| !i.is_loopback() && i.is_oper_up() && multicast_capable(&i.name));
    if usable {
        Ok(())
    } else {
        Err(MdnsError::NoInterface)
    }
}

/// Whether the kernel flags `name` as multicast-capable (`IFF_MULTICAST`);
/// true where that cannot be read (not Linux).
fn multicast_capable(name: &str) -> bool {
    const IFF_MULTICAST: u32 = 0x1000;
    let Ok(text) = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")) else {
        return true;
    };
    let text = text.trim().trim_start_matches("0x");
    u32::from_str_radix(text, 16).map_or(true, |flags| flags & IFF_MULTICAST != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_prefer_ipv4_then_global_ipv6_then_the_host_name() {
        let ips = |list: &[&str]| {
            list.iter()
                .map(|s| s.parse::<IpAddr>().unwrap())
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert_eq!(
            url_base(ips(&["fe80::1", "10.0.0.9", "10.0.0.2"]), "box.local.", 80).unwrap(),
            "http://10.0.0.2:80"
        );
        assert_eq!(
            url_base(ips(&["fe80::1", "2001:db8::5"]), "box.local.", 8080).unwrap(),
            "http://[2001:db8::5]:8080"
        );
        assert_eq!(
            url_base(ips(&["fe80::1"]), "box.local.", 80).unwrap(),
            "http://box.local:80"
        );
        assert_eq!(url_base(ips(&[]), "", 80), None);
    }

    #[test]
    fn paths_and_names() {
        assert_eq!(url_path("/"), "/");
        assert_eq!(url_path(""), "/");
        assert_eq!(url_path("/cache"), "/cache/");
        assert_eq!(
            instance_name("narbor on box._http._tcp.local."),
            "narbor on box"
        );
        assert_eq!(instance_name("a\\.b._http._tcp.local."), "a.b");
        assert_eq!(label_of("box.example.org"), "box");
        assert_eq!(label_of("my_laptop"), "my-laptop");
        assert_eq!(label_of(""), "narbor");
    }

    #[test]
    fn loopback_only_is_refused_before_any_mdns() {
        let err = advertise(&["127.0.0.1:80".parse().unwrap(), "[::1]:80".parse().unwrap()])
            .err()
            .unwrap();
        assert!(matches!(err, MdnsError::LoopbackOnly(_)), "{err}");
    }
}
