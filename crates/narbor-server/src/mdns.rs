//! LAN mode's mDNS/DNS-SD: advertising a running cache, and browsing the LAN
//! for caches. A cache is advertised under two service types:
//!
//! - `_http._tcp` with TXT `path=/` and `nix-cache=1`, as Avahi and Bonjour
//!   expect of a web service;
//! - `_nix_binary_cache._tcp`, the type nix-cache-beacon
//!   (github adisbladis/nix-cache-beacon) advertises and browses: a cache at
//!   the root of `http://HOST:PORT` (no TXT needed), so only for plain HTTP.
//!
//! Browsing finds `_http._tcp` services whose TXT says `nix-cache=1`.
//!
//! It speaks mDNS itself (the `mdns-sd` crate, its own thread): no Avahi or
//! D-Bus needed. It owns which addresses and port to advertise, the instance
//! and host names, and turning a found service into a substituter URL; it does
//! not own printing or writing `nix.conf` (the binary does).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo, UnregisterStatus};

/// The TXT key (with value `1`) that marks an `_http._tcp` service as a Nix cache.
pub const NIX_CACHE_KEY: &str = "nix-cache";

/// The DNS-SD service types a Nix cache is advertised and found under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServiceKind {
    /// `_http._tcp`, a Nix cache only with TXT `nix-cache=1`; TXT `path` gives
    /// the cache's path. narbor's own type.
    Http,
    /// `_nix_binary_cache._tcp`, nix-cache-beacon's type: every such service is
    /// a Nix cache, served over plain HTTP at the root of the SRV host and port.
    /// The beacon advertises no TXT record.
    NixBinaryCache,
}

impl ServiceKind {
    /// Both, in the order a merged entry lists them.
    pub const ALL: [ServiceKind; 2] = [ServiceKind::Http, ServiceKind::NixBinaryCache];

    /// The type with its domain, as mDNS names it: `_http._tcp.local.`.
    pub fn service_type(self) -> &'static str {
        match self {
            ServiceKind::Http => "_http._tcp.local.",
            ServiceKind::NixBinaryCache => "_nix_binary_cache._tcp.local.",
        }
    }

    /// The type as people write it: `_http._tcp`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Http => "_http._tcp",
            ServiceKind::NixBinaryCache => "_nix_binary_cache._tcp",
        }
    }

    /// The TXT records narbor advertises with this type.
    fn properties(self) -> &'static [(&'static str, &'static str)] {
        match self {
            ServiceKind::Http => &[("path", "/"), (NIX_CACHE_KEY, "1")],
            // The beacon neither sends nor reads TXT; `path` says the same as
            // its rule (the root) to anyone who does read it.
            ServiceKind::NixBinaryCache => &[("path", "/")],
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The longest service name (the type's first label without its `_`) that
/// mdns-sd registers. Its default is RFC 6763 section 7.2's 15 bytes, and
/// `nix_binary_cache` has 16: with the default, `register` returns `Ok` and
/// the daemon drops the service, saying so only in its log.
const SERVICE_NAME_LEN_MAX: u8 = 16;

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

/// The registered services; [`Advertisement::withdraw`] says goodbye.
pub struct Advertisement {
    daemon: ServiceDaemon,
    /// The services registered: their type and full name.
    registered: Vec<(ServiceKind, String)>,
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

/// Advertises a cache listening on `bound` (the listeners' actual addresses)
/// as `_http._tcp` and, when it speaks plain HTTP (`plain_http`), as
/// `_nix_binary_cache._tcp` too: nix-cache-beacon's clients always use
/// `http://`.
///
/// The port is the first non-loopback listener's. Unspecified addresses
/// (`0.0.0.0`, `[::]`) advertise the machine's interface addresses (IPv4 only
/// when only `0.0.0.0` is bound), others exactly themselves. Loopback is
/// never advertised.
pub fn advertise(bound: &[SocketAddr], plain_http: bool) -> Result<Advertisement, MdnsError> {
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
    let kinds = ServiceKind::ALL
        .into_iter()
        .filter(|kind| plain_http || *kind != ServiceKind::NixBinaryCache);
    let mut infos = Vec::new();
    for kind in kinds {
        let mut info = ServiceInfo::new(
            kind.service_type(),
            &instance,
            &host,
            addrs.as_slice(),
            port,
            kind.properties(),
        )?;
        if addrs.is_empty() {
            info = info.enable_addr_auto();
            if !any_v6 {
                // A `0.0.0.0` listener does not accept IPv6 connections.
                info.set_interfaces(vec![IfKind::IPv4]);
            }
        }
        infos.push((kind, info));
    }
    let registered = infos
        .iter()
        .map(|(kind, info)| (*kind, info.get_fullname().to_owned()))
        .collect();
    let daemon = ServiceDaemon::new()?;
    daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
    // Commands reach the daemon's thread in order: the limit is in place
    // before the services are registered.
    daemon.set_service_name_len_max(SERVICE_NAME_LEN_MAX)?;
    for (_, info) in infos {
        daemon.register(info)?;
    }
    Ok(Advertisement {
        daemon,
        registered,
        instance,
        host,
        port,
        addrs,
    })
}

impl Advertisement {
    /// The service types advertised.
    pub fn kinds(&self) -> impl Iterator<Item = ServiceKind> + '_ {
        self.registered.iter().map(|(kind, _)| *kind)
    }

    /// Unregisters every service (goodbye packets, so browsers forget them at
    /// once) and stops the mDNS thread. Blocks for at most about `timeout`.
    pub fn withdraw(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        // Both goodbyes are asked for before waiting for either.
        let pending: Vec<_> = self
            .registered
            .iter()
            .map(|(kind, fullname)| (kind, self.daemon.unregister(fullname)))
            .collect();
        for (kind, unregistering) in pending {
            let left = deadline.saturating_duration_since(Instant::now());
            let instance = &self.instance;
            match unregistering {
                Ok(rx) => match rx.recv_timeout(left) {
                    Ok(UnregisterStatus::OK) => {
                        tracing::info!("mDNS: withdrew {instance} ({kind})");
                    }
                    Ok(status) => {
                        tracing::warn!("mDNS: withdrawing {instance} ({kind}): {status:?}")
                    }
                    Err(e) => tracing::warn!("mDNS: no goodbye sent for {instance} ({kind}): {e}"),
                },
                Err(e) => tracing::warn!("mDNS: withdrawing {instance} ({kind}): {e}"),
            }
        }
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
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
    let events = daemon.browse(ServiceKind::Http.service_type())?;
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
    let _ = daemon.stop_browse(ServiceKind::Http.service_type());
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
        .strip_suffix(ServiceKind::Http.service_type())
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
        let loopback = ["127.0.0.1:80".parse().unwrap(), "[::1]:80".parse().unwrap()];
        let err = advertise(&loopback, true).err().unwrap();
        assert!(matches!(err, MdnsError::LoopbackOnly(_)), "{err}");
    }

    #[test]
    fn the_name_length_limit_is_the_longest_type_s() {
        let longest = ServiceKind::ALL
            .into_iter()
            .map(|kind| {
                let ty = kind.service_type();
                assert_eq!(kind.name(), ty.strip_suffix(".local.").unwrap());
                // `_nix_binary_cache._tcp.local.` → `nix_binary_cache`.
                ty.strip_suffix("._tcp.local.").unwrap().len() - 1
            })
            .max();
        assert_eq!(longest, Some(usize::from(SERVICE_NAME_LEN_MAX)));
    }
}
