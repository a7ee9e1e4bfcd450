//! LAN mode's mDNS/DNS-SD: advertising a running cache, and browsing the LAN
//! for caches. A cache is advertised under two service types:
//!
//! - `_http._tcp` with TXT `path=/` and `nix-cache=1`, as Avahi and Bonjour
//!   expect of a web service;
//! - `_nix_binary_cache._tcp`, the type nix-cache-beacon
//!   (github adisbladis/nix-cache-beacon) advertises and browses: a cache at
//!   the root of `http://HOST:PORT` (no TXT needed), so only for plain HTTP.
//!
//! Browsing finds both: `_http._tcp` services whose TXT says `nix-cache=1`,
//! and every `_nix_binary_cache._tcp` service, one entry per URL.
//!
//! It speaks mDNS itself (the `mdns-sd` crate, its own thread): no Avahi or
//! D-Bus needed. It owns which addresses and port to advertise, the instance
//! and host names, and turning a found service into a substituter URL; it does
//! not own printing or writing `nix.conf` (the binary does).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{
    IfKind, Receiver, RecvTimeoutError, ServiceDaemon, ServiceEvent, ServiceInfo, UnregisterStatus,
};

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
    /// The DNS-SD instance name, e.g. `narbor on box` (nix-cache-beacon's is
    /// a random UUID).
    pub instance: String,
    /// The mDNS host name, e.g. `box.local.`.
    pub host: String,
    /// The substituter URL, e.g. `http://192.168.1.10:80/`.
    pub url: String,
    /// The service types it was found under, in [`ServiceKind::ALL`]'s order.
    pub kinds: Vec<ServiceKind>,
}

/// Browses for `timeout` and returns every `_http._tcp` service whose TXT
/// says `nix-cache=1` and every `_nix_binary_cache._tcp` service, one entry
/// per URL (narbor in LAN mode is found under both types), sorted by instance
/// name. Blocks for `timeout`.
pub fn discover(timeout: Duration) -> Result<Vec<FoundCache>, MdnsError> {
    check_interfaces()?;
    let daemon = ServiceDaemon::new()?;
    let mut browsers = Vec::new();
    for kind in ServiceKind::ALL {
        browsers.push((kind, daemon.browse(kind.service_type())?));
    }
    let deadline = Instant::now() + timeout;
    // By full name, which includes the type.
    let mut found = BTreeMap::new();
    while let Some((kind, event)) = next_event(&browsers, deadline) {
        match event {
            ServiceEvent::ServiceResolved(service) => {
                let fullname = service.get_fullname().to_owned();
                let is_cache = match kind {
                    ServiceKind::Http => service.get_property_val_str(NIX_CACHE_KEY) == Some("1"),
                    ServiceKind::NixBinaryCache => true,
                };
                let ips = service.get_addresses().iter().map(|a| a.to_ip_addr());
                let base = service_base(kind, ips, service.get_hostname(), service.get_port());
                match base.filter(|_| is_cache) {
                    Some(base) => {
                        let path = service.get_property_val_str("path").unwrap_or("/");
                        let cache = FoundCache {
                            instance: instance_name(&fullname, kind),
                            host: service.get_hostname().to_owned(),
                            url: format!("{base}{}", url_path(path)),
                            kinds: vec![kind],
                        };
                        found.insert(fullname, cache);
                    }
                    // Updated records that no longer make it a cache.
                    None => {
                        found.remove(&fullname);
                    }
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                found.remove(&fullname);
            }
            _ => {}
        }
    }
    for kind in ServiceKind::ALL {
        let _ = daemon.stop_browse(kind.service_type());
    }
    if let Ok(rx) = daemon.shutdown() {
        let _ = rx.recv_timeout(Duration::from_secs(1));
    }
    Ok(merge_by_url(found.into_values()))
}

/// How long [`next_event`] waits on one channel before asking the others.
const POLL_SLICE: Duration = Duration::from_millis(50);

/// The next event of any browser, or `None` at `deadline` (or if the daemon
/// is gone). mdns-sd's channels cannot be waited on together (its `flume`
/// is built without `select`), so each is asked in turn, and the first is
/// waited on for at most [`POLL_SLICE`] at a time.
fn next_event(
    browsers: &[(ServiceKind, Receiver<ServiceEvent>)],
    deadline: Instant,
) -> Option<(ServiceKind, ServiceEvent)> {
    loop {
        for (kind, events) in browsers {
            if let Ok(event) = events.try_recv() {
                return Some((*kind, event));
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        let (kind, events) = browsers.first()?;
        match events.recv_timeout(left.min(POLL_SLICE)) {
            Ok(event) => return Some((*kind, event)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// One entry per URL, keeping the `_http._tcp` entry's names (a beacon's
/// instance is a random UUID) and every kind; sorted by instance, then URL.
fn merge_by_url(found: impl IntoIterator<Item = FoundCache>) -> Vec<FoundCache> {
    let mut found: Vec<FoundCache> = found.into_iter().collect();
    found.sort_by(|a, b| a.kinds.cmp(&b.kinds));
    let mut by_url: BTreeMap<String, FoundCache> = BTreeMap::new();
    for cache in found {
        match by_url.entry(cache.url.clone()) {
            Entry::Vacant(entry) => {
                entry.insert(cache);
            }
            Entry::Occupied(mut entry) => {
                let kinds = &mut entry.get_mut().kinds;
                kinds.extend(cache.kinds);
                kinds.sort();
                kinds.dedup();
            }
        }
    }
    let mut caches: Vec<FoundCache> = by_url.into_values().collect();
    caches.sort_by(|a, b| a.instance.cmp(&b.instance).then(a.url.cmp(&b.url)));
    caches
}

/// `http://HOST:PORT` for a service. A `_nix_binary_cache._tcp` service whose
/// SRV host is not an mDNS name (`.local.`) names the host its web server
/// expects (nix-cache-beacon's `--hostname`, for virtual-host routing): the
/// URL keeps that name, as the beacon's own client does. Otherwise
/// [`url_base`] picks an address, which needs no nss-mdns.
fn service_base(
    kind: ServiceKind,
    ips: impl Iterator<Item = IpAddr>,
    host: &str,
    port: u16,
) -> Option<String> {
    let name = host.trim_end_matches('.');
    let is_mdns_name = name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.eq_ignore_ascii_case("local"));
    if kind == ServiceKind::NixBinaryCache && !name.is_empty() && !is_mdns_name {
        Some(format!("http://{name}:{port}"))
    } else {
        url_base(ips, host, port)
    }
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

/// `narbor on box._http._tcp.local.` → `narbor on box`: the instance part of
/// a full name of `kind`, unescaped.
fn instance_name(fullname: &str, kind: ServiceKind) -> String {
    let name = fullname
        .strip_suffix(kind.service_type())
        .map(|n| n.trim_end_matches('.'))
        .unwrap_or(fullname);
    name.replace("\\.", ".").replace("\\\\", "\\")
}

/// This machine's host name as one DNS label: its first label, with anything
/// but letters, digits and `-` replaced by `-`. The name is the kernel's (what
/// `uname -n` prints, for this UTS namespace); unreadable, the label is
/// `narbor`.
fn host_label() -> String {
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    label_of(node.trim())
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
            instance_name("narbor on box._http._tcp.local.", ServiceKind::Http),
            "narbor on box"
        );
        assert_eq!(
            instance_name("a\\.b._http._tcp.local.", ServiceKind::Http),
            "a.b"
        );
        assert_eq!(
            instance_name(
                "0c0f7a3e-5c4b-4c9e-9a8d-2f1e6b7d9c10._nix_binary_cache._tcp.local.",
                ServiceKind::NixBinaryCache
            ),
            "0c0f7a3e-5c4b-4c9e-9a8d-2f1e6b7d9c10"
        );
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
    fn beacon_services_with_a_non_mdns_host_keep_its_name() {
        let ips = || ["10.0.0.2".parse::<IpAddr>().unwrap()].into_iter();
        let beacon = ServiceKind::NixBinaryCache;
        assert_eq!(
            service_base(beacon, ips(), "cache.example.org.", 5000).unwrap(),
            "http://cache.example.org:5000"
        );
        assert_eq!(
            service_base(beacon, ips(), "box.local.", 5000).unwrap(),
            "http://10.0.0.2:5000"
        );
        assert_eq!(
            service_base(beacon, ips(), "BOX.LOCAL", 5000).unwrap(),
            "http://10.0.0.2:5000"
        );
        assert_eq!(
            service_base(ServiceKind::Http, ips(), "cache.example.org.", 80).unwrap(),
            "http://10.0.0.2:80",
            "_http._tcp keeps the address"
        );
    }

    #[test]
    fn one_entry_per_url_with_the_http_names_and_both_kinds() {
        let cache = |instance: &str, url: &str, kind| FoundCache {
            instance: instance.to_owned(),
            host: format!("{instance}.local."),
            url: url.to_owned(),
            kinds: vec![kind],
        };
        let merged = merge_by_url([
            cache("a-uuid", "http://10.0.0.2:80/", ServiceKind::NixBinaryCache),
            cache("narbor on box", "http://10.0.0.2:80/", ServiceKind::Http),
            cache(
                "b-uuid",
                "http://10.0.0.3:5000/",
                ServiceKind::NixBinaryCache,
            ),
        ]);
        let brief: Vec<(&str, &str, &[ServiceKind])> = merged
            .iter()
            .map(|c| (c.instance.as_str(), c.url.as_str(), c.kinds.as_slice()))
            .collect();
        assert_eq!(
            brief,
            [
                (
                    "b-uuid",
                    "http://10.0.0.3:5000/",
                    &[ServiceKind::NixBinaryCache][..]
                ),
                (
                    "narbor on box",
                    "http://10.0.0.2:80/",
                    &[ServiceKind::Http, ServiceKind::NixBinaryCache][..]
                ),
            ]
        );
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
