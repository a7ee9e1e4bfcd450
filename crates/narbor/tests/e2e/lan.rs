//! LAN mode end to end: `narbor serve --lan` advertises itself over mDNS as
//! `_http._tcp` and `_nix_binary_cache._tcp`, and both Avahi (the real
//! `avahi-daemon` + `avahi-browse`) and `narbor discover` find it; `narbor
//! discover` also finds a cache published the way nix-cache-beacon does it
//! (the real `avahi-publish` stands in for the beacon).
//!
//! Everything runs inside network namespaces this test creates (two joined by
//! a veth pair, addresses 10.213.X.0/24 that exist nowhere else): no packet,
//! multicast or not, touches the machine's real interfaces. Avahi gets a
//! private D-Bus system bus (`dbus-daemon` with its own config and socket in
//! the test's temp dir) and a private `/run` (a tmpfs mounted in the mount
//! namespace `ip netns exec` makes), so runs never collide. A [`Lab`] guard
//! kills every process and deletes the namespaces even when a test fails.
//! Needs root (the suite runs as root) and `ip`, `avahi-daemon`,
//! `avahi-browse`, `avahi-publish`, `dbus-daemon`, `curl` (scripts/test.sh
//! installs them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{run_fails, run_ok, stderr_str, stdout_str};
use crate::tls::helpers::{issue, make_ca, KeyKind};

/// The two service types narbor advertises, as `avahi-browse` takes them.
const HTTP: &str = "_http._tcp";
const BEACON: &str = "_nix_binary_cache._tcp";

/// Two namespaces `a` and `b` joined by a veth pair (or one alone), and the
/// processes started in them; all removed on drop.
struct Lab {
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    veths: Vec<String>,
    children: Vec<(String, Child)>,
    tag: char,
    subnet: u8,
    bus: Option<String>,
}

impl Lab {
    fn empty(tag: char, subnet: u8) -> Lab {
        Lab {
            dir: tempfile::Builder::new()
                .prefix("narbor-lan-")
                .tempdir()
                .expect("temp dir"),
            namespaces: Vec::new(),
            veths: Vec::new(),
            children: Vec::new(),
            tag,
            subnet,
            bus: None,
        }
    }

    /// Names unique to this process and test (`tag`), so concurrent runs do
    /// not collide. Interface names stay under Linux's 15 bytes.
    fn add_netns(&mut self, side: char) -> String {
        let name = format!("narbor-{}-{}{side}", std::process::id(), self.tag);
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        self.namespaces.push(name.clone());
        run_ok(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        name
    }

    /// One namespace with only loopback up: no network for mDNS.
    fn single(tag: char, subnet: u8) -> Lab {
        let mut lab = Lab::empty(tag, subnet);
        lab.add_netns('a');
        lab
    }

    /// `a` (10.213.S.1) and `b` (10.213.S.2) on one veth link; with `ipv6`,
    /// also fd00:213:S::1 and ::2.
    fn pair(tag: char, subnet: u8, ipv6: bool) -> Lab {
        let mut lab = Lab::empty(tag, subnet);
        let a = lab.add_netns('a');
        let b = lab.add_netns('b');
        let (va, vb) = (lab.veth('a'), lab.veth('b'));
        lab.veths.push(va.clone());
        run_ok(Command::new("ip").args(["link", "add", &va, "type", "veth", "peer", "name", &vb]));
        for (ns, veth, host) in [(&a, &va, 1), (&b, &vb, 2)] {
            run_ok(Command::new("ip").args(["link", "set", veth, "netns", ns]));
            let v4 = format!("10.213.{subnet}.{host}/24");
            run_ok(Command::new("ip").args(["-n", ns, "addr", "add", &v4, "dev", veth]));
            if ipv6 {
                let v6 = format!("fd00:213:{subnet}::{host}/64");
                run_ok(
                    Command::new("ip").args(["-n", ns, "addr", "add", &v6, "dev", veth, "nodad"]),
                );
            }
            run_ok(Command::new("ip").args(["-n", ns, "link", "set", veth, "up"]));
        }
        lab
    }

    fn ns(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// A veth end's name: at most 2 + 7 + 2 bytes (Linux allows 15).
    fn veth(&self, side: char) -> String {
        format!("nb{}{}{side}", std::process::id() % 10_000_000, self.tag)
    }

    fn addr_a(&self) -> String {
        format!("10.213.{}.1", self.subnet)
    }

    fn addr_b(&self) -> String {
        format!("10.213.{}.2", self.subnet)
    }

    /// `program args...` inside namespace `i`.
    fn cmd(&self, i: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns(i), program]);
        if let Some(bus) = &self.bus {
            cmd.env("DBUS_SYSTEM_BUS_ADDRESS", bus);
        }
        cmd
    }

    fn narbor(&self, i: usize) -> Command {
        self.cmd(i, env!("CARGO_BIN_EXE_narbor"))
    }

    /// Starts a long-running process, its output in `NAME.log`; returns its index.
    fn spawn(&mut self, name: &str, mut cmd: Command) -> usize {
        let log = std::fs::File::create(self.log_path(name)).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e} (run scripts/test.sh)"));
        self.children.push((name.to_owned(), child));
        self.children.len() - 1
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    fn pid(&self, child: usize) -> u32 {
        self.children[child].1.id()
    }

    /// Starts `narbor serve --lan --no-upstream ARGS...` in namespace `a` and
    /// waits until namespace `b` can fetch `nix-cache-info` at `url`.
    fn start_narbor(&mut self, name: &str, args: &[&str], url: &str) -> usize {
        let mut lan_args = vec!["--lan"];
        lan_args.extend_from_slice(args);
        self.start_serve(name, 0, &lan_args, url)
    }

    /// Starts `narbor serve --no-upstream ARGS...` in namespace `i` and waits
    /// until the other namespace can fetch `nix-cache-info` at `url`.
    fn start_serve(&mut self, name: &str, i: usize, args: &[&str], url: &str) -> usize {
        let mut cmd = self.narbor(i);
        cmd.args(["serve", "--no-upstream", "--cache-dir"])
            .arg(self.dir.path().join("cache"))
            .args(args);
        let child = self.spawn(name, cmd);
        let info = format!("{url}nix-cache-info");
        self.wait_until(
            &format!("{name} answering {info} from the other namespace"),
            || {
                let out = self.curl_from(1 - i, &info).ok()?;
                out.contains("StoreDir: /nix/store").then_some(())
            },
        );
        child
    }

    /// `curl URL` from namespace `b`.
    fn curl(&self, url: &str) -> Result<String, String> {
        self.curl_from(1, url)
    }

    /// `curl URL` from namespace `i`.
    fn curl_from(&self, i: usize, url: &str) -> Result<String, String> {
        let out = self
            .cmd(i, "curl")
            .args(["-sSfg", "--max-time", "3", url])
            .output()
            .expect("run curl");
        if out.status.success() {
            Ok(stdout_str(&out))
        } else {
            Err(stderr_str(&out))
        }
    }

    /// A private D-Bus system bus and an avahi-daemon in namespace `b`, on its
    /// veth only, with the host name `host_name`. With `publish`, it publishes
    /// its address and what clients ask it to (`avahi-publish`); otherwise
    /// nothing.
    fn start_avahi(&mut self, host_name: &str, publish: bool) {
        let dir = self.dir.path().to_owned();
        let socket = dir.join("system_bus_socket");
        std::fs::write(dir.join("dbus.conf"), dbus_config(&socket)).unwrap();
        let avahi_conf = dir.join("avahi-daemon.conf");
        let config = avahi_config(&self.veth('b'), host_name, publish);
        std::fs::write(&avahi_conf, config).unwrap();
        let mut dbus = self.cmd(1, "dbus-daemon");
        dbus.arg(format!("--config-file={}", dir.join("dbus.conf").display()))
            .args(["--nofork", "--nopidfile"]);
        self.spawn("dbus-daemon", dbus);
        self.wait_until("the private D-Bus socket", || socket.exists().then_some(()));
        self.bus = Some(format!("unix:path={}", socket.display()));
        // avahi-daemon insists on /run/avahi-daemon for its pid file and socket:
        // give it a /run of its own in the mount namespace `ip netns exec` makes.
        let script = format!(
            "mount -t tmpfs narbor-test-run /run && mkdir /run/avahi-daemon && \
             exec avahi-daemon --no-drop-root --no-chroot --no-rlimits --no-proc-title -f {}",
            avahi_conf.display()
        );
        let mut avahi = self.cmd(1, "/bin/sh");
        avahi.args(["-c", &script]);
        self.spawn("avahi-daemon", avahi);
        self.wait_until("avahi-daemon on the private bus", || {
            self.log("avahi-daemon")
                .contains("Server startup complete")
                .then_some(())
        });
    }

    /// `avahi-browse -rpt SERVICE_TYPE` in namespace `b`: its parsable lines.
    fn avahi_browse(&self, service_type: &str) -> Vec<Vec<String>> {
        let mut cmd = self.cmd(1, "timeout");
        cmd.args(["20", "avahi-browse", "-rpt", service_type]);
        let out = run_ok(&mut cmd);
        stdout_str(&out)
            .lines()
            .map(|l| l.split(';').map(unescape).collect())
            .collect()
    }

    /// Runs `narbor discover --write FILE` in namespace `i` and checks that it
    /// found exactly `url` (in its output, and alone in FILE), and that `url`
    /// is a cache from there. Returns its output.
    fn discover_only(&self, i: usize, url: &str) -> String {
        let fragment = self.dir.path().join("lan-caches.conf");
        let out = run_ok(
            self.narbor(i)
                .args(["discover", "--timeout", "3s", "--write"])
                .arg(&fragment),
        );
        let text = stdout_str(&out);
        assert!(
            text.contains(&format!("extra-substituters = {url}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("nix.settings.extra-substituters = [ \"{url}\" ];")),
            "{text}"
        );
        let written = std::fs::read_to_string(&fragment).unwrap();
        let lines: Vec<&str> = written.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, [format!("extra-substituters = {url}")], "{written}");
        let info = self.curl_from(i, &format!("{url}nix-cache-info")).unwrap();
        assert!(info.contains("StoreDir: /nix/store"), "{info}");
        text
    }

    /// Waits until `avahi-browse` in namespace `b` resolves `instance` of
    /// `service_type`; returns that `=` line.
    fn avahi_resolved(&self, service_type: &str, instance: &str) -> Vec<String> {
        let what = format!("avahi-browse resolving {instance:?} ({service_type})");
        self.wait_until(&what, || {
            let lines = self.avahi_browse(service_type);
            lines_for(&lines, "=", instance)
                .first()
                .map(|l| (*l).clone())
        })
    }

    /// Waits (up to 40 s) for a child to exit.
    fn wait_exit(&mut self, child: usize) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.children[child].1.try_wait().unwrap() {
                return status;
            }
            let name = self.children[child].0.clone();
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "{name} did not exit\n{}",
                self.log(&name)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_until<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let logs: Vec<String> = self
                    .children
                    .iter()
                    .map(|(name, _)| format!("--- {name}:\n{}", self.log(name)))
                    .collect();
                panic!("timed out waiting for {what}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for veth in &self.veths {
            // Gone with its namespace normally; this covers a failure before the move.
            let _ = Command::new("ip")
                .args(["link", "del", veth])
                .stderr(Stdio::null())
                .status();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn dbus_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}

fn avahi_config(interface: &str, host_name: &str, publish: bool) -> String {
    let disable = if publish { "no" } else { "yes" };
    format!(
        "[server]\nhost-name={host_name}\nuse-ipv4=yes\nuse-ipv6=no\n\
         allow-interfaces={interface}\nenable-dbus=yes\n\
         [wide-area]\nenable-wide-area=no\n\
         [publish]\ndisable-publishing={disable}\npublish-workstation=no\npublish-hinfo=no\n"
    )
}

/// avahi-browse -p escapes bytes as `\DDD` (decimal): `narbor\032on\032vm`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let digits = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(u8::is_ascii_digit));
        if let (b'\\', Some(d)) = (b[i], digits) {
            if let Ok(n) = std::str::from_utf8(d).unwrap().parse::<u8>() {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The instance name narbor advertises: `narbor on` and the host name's first
/// label (the namespaces share the machine's host name).
fn expected_instance() -> String {
    format!("narbor on {}", host_label())
}

/// The mDNS host name narbor advertises, without the root's dot: `box.local`.
fn expected_host() -> String {
    format!("{}.local", host_label())
}

/// The machine's host name's first label, as narbor makes it a DNS label.
fn host_label() -> String {
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let first = node.trim().split('.').next().unwrap_or("");
    let label: String = first
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() { "narbor" } else { label }.to_owned()
}

fn lines_for<'a>(lines: &'a [Vec<String>], kind: &str, instance: &str) -> Vec<&'a Vec<String>> {
    lines
        .iter()
        .filter(|l| l.len() >= 4 && l[0] == kind && l[3] == instance)
        .collect()
}

#[test]
fn lan_cache_is_seen_by_avahi_and_narbor_discover_and_says_goodbye() {
    let mut lab = Lab::pair('p', 1, false);
    let instance = expected_instance();
    let listen = format!("{}:8123", lab.addr_a());
    let url = format!("http://{}:8123/", lab.addr_a());
    let narbor = lab.start_narbor("narbor", &["--listen", &listen], &url);
    lab.start_avahi("narbor-test-browser", false);

    // Avahi, in the other namespace, resolves the service with its TXT records.
    let resolved = lab.avahi_resolved(HTTP, &instance);
    assert_eq!(resolved[2], "IPv4", "{resolved:?}");
    assert_eq!(resolved[4], "Web Site", "_http._tcp: {resolved:?}");
    assert_eq!(resolved[7], lab.addr_a(), "{resolved:?}");
    assert_eq!(resolved[8], "8123", "{resolved:?}");
    let txt = &resolved[9];
    assert!(
        txt.contains("\"nix-cache=1\"") && txt.contains("\"path=/\""),
        "TXT records: {txt}"
    );
    // And as nix-cache-beacon's type, whose 16-byte name mdns-sd refuses
    // unless told (silently: `register` says Ok).
    let resolved = lab.avahi_resolved(BEACON, &instance);
    assert_eq!(resolved[2], "IPv4", "{resolved:?}");
    assert_eq!(resolved[4], BEACON, "{resolved:?}");
    assert_eq!(resolved[6], expected_host(), "the SRV host: {resolved:?}");
    assert_eq!(resolved[7], lab.addr_a(), "{resolved:?}");
    assert_eq!(resolved[8], "8123", "{resolved:?}");

    // narbor discover, also in the other namespace, finds it and says how to
    // use it: found under both types, listed once.
    let text = lab.discover_only(1, &url);
    let heading = format!("{instance} ({}.; {HTTP}, {BEACON})\n", expected_host());
    assert_eq!(text.matches(&heading).count(), 1, "{text}");

    // SIGTERM: narbor withdraws both services (goodbye packets) and exits 0;
    // Avahi forgets them at once instead of keeping them for the records' TTL.
    run_ok(Command::new("kill").args(["-TERM", &lab.pid(narbor).to_string()]));
    let status = lab.wait_exit(narbor);
    let log = lab.log("narbor");
    assert!(status.success(), "{status}\n{log}");
    for service_type in [HTTP, BEACON] {
        let withdrew = format!("mDNS: withdrew {instance} ({service_type})");
        assert!(log.contains(&withdrew), "{log}");
    }
    lab.wait_until("Avahi to forget both withdrawn services", || {
        let seen: usize = [HTTP, BEACON]
            .into_iter()
            .map(|service_type| {
                let lines = lab.avahi_browse(service_type);
                lines_for(&lines, "+", &instance).len() + lines_for(&lines, "=", &instance).len()
            })
            .sum();
        (seen == 0).then_some(())
    });
    let out = run_fails(lab.narbor(1).args(["discover", "--timeout", "2s"]));
    let err = stderr_str(&out);
    assert!(
        err.contains("no Nix cache found on the LAN within 2s"),
        "{err}"
    );

    // Control: killed without a goodbye, the services stay in Avahi's cache:
    // the check above passed because of the goodbyes, not by chance.
    let again = lab.start_narbor("narbor-again", &["--listen", &listen], &url);
    let listed = |lab: &Lab, service_type: &str| {
        !lines_for(&lab.avahi_browse(service_type), "+", &instance).is_empty()
    };
    lab.wait_until("avahi-browse seeing narbor again", || {
        (listed(&lab, HTTP) && listed(&lab, BEACON)).then_some(())
    });
    lab.children[again].1.kill().unwrap();
    lab.children[again].1.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    for service_type in [HTTP, BEACON] {
        assert!(
            listed(&lab, service_type),
            "without goodbye packets Avahi should still list the {service_type} service"
        );
    }
}

/// A cache advertised the way nix-cache-beacon advertises one
/// (github adisbladis/nix-cache-beacon, cmd/nix-cache-beacon/advert.go at
/// 7608879b33a6f5d9e17c0698154069c8d69f862e): type `_nix_binary_cache._tcp`,
/// a fresh random UUIDv4 as the instance name, the SRV host `<hostname>.local`
/// with its addresses, the cache's port, and no TXT record. The beacon only
/// advertises; the cache is another server (here a plain `narbor serve`).
/// The real `avahi-publish` makes the records (the beacon itself needs a newer
/// Go than Debian has).
#[test]
fn discover_finds_a_beacon_style_service_without_txt() {
    let mut lab = Lab::pair('b', 4, false);
    let url = format!("http://{}:5123/", lab.addr_b());
    let listen = format!("{}:5123", lab.addr_b());
    lab.start_serve("narbor", 1, &["--listen", &listen], &url);
    lab.start_avahi("narbor-test-beacon", true);
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
    let uuid = uuid.trim();
    let mut publish = lab.cmd(1, "avahi-publish");
    publish.args(["-s", uuid, BEACON, "5123"]);
    lab.spawn("avahi-publish", publish);
    lab.wait_until("avahi-publish to establish the service", || {
        lab.log("avahi-publish")
            .contains("Established under name")
            .then_some(())
    });
    // The record shape, as Avahi itself resolves it: no TXT, the SRV host
    // `<hostname>.local`.
    let resolved = lab.avahi_resolved(BEACON, uuid);
    assert_eq!(resolved[6], "narbor-test-beacon.local", "{resolved:?}");
    assert_eq!(resolved[7], lab.addr_b(), "{resolved:?}");
    assert_eq!(resolved[8], "5123", "{resolved:?}");
    assert_eq!(resolved[9], "", "no TXT: {resolved:?}");

    let text = lab.discover_only(0, &url);
    assert!(
        text.contains(&format!("{uuid} (narbor-test-beacon.local.; {BEACON})\n")),
        "{text}"
    );
}

/// nix-cache-beacon's clients speak only plain HTTP: LAN mode over HTTPS is
/// not advertised as `_nix_binary_cache._tcp`.
#[test]
fn lan_mode_over_https_is_not_advertised_as_the_beacon_type() {
    let mut lab = Lab::pair('t', 5, false);
    let ca = make_ca(lab.dir.path(), "lan");
    let (cert, key) = issue(lab.dir.path(), &ca, "narbor-lan", KeyKind::Pkcs8);
    let listen = format!("{}:8443", lab.addr_a());
    let mut cmd = lab.narbor(0);
    cmd.args(["serve", "--lan", "--no-upstream", "--listen", &listen])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--cache-dir")
        .arg(lab.dir.path().join("cache"));
    lab.spawn("narbor", cmd);
    lab.start_avahi("narbor-test-browser", false);
    let instance = expected_instance();
    lab.avahi_resolved(HTTP, &instance);
    // Both records would have been announced together, and avahi-browse
    // asks again.
    let lines = lab.avahi_browse(BEACON);
    assert!(lines_for(&lines, "+", &instance).is_empty(), "{lines:?}");
    let log = lab.log("narbor");
    assert!(
        log.contains(&format!("types={HTTP}\n"))
            && log.contains("not advertised as _nix_binary_cache._tcp"),
        "{log}"
    );
}

#[test]
fn lan_defaults_to_port_80_on_every_interface_ipv4_and_ipv6() {
    let mut lab = Lab::pair('d', 2, true);
    let url = format!("http://{}:80/", lab.addr_a());
    lab.start_narbor("narbor", &[], &url);
    let log = lab.log("narbor");
    assert!(log.contains("listen=[0.0.0.0:80, [::]:80]"), "{log}");
    let info = lab
        .curl("http://[fd00:213:2::1]:80/nix-cache-info")
        .unwrap();
    assert!(info.contains("StoreDir: /nix/store"), "over IPv6: {info}");
    let out = run_ok(lab.narbor(1).args(["discover"]));
    let text = stdout_str(&out);
    assert!(
        text.contains(&format!("extra-substituters = {url}\n")),
        "{text}"
    );
}

#[test]
fn lan_mode_and_discover_fail_clearly_without_a_network() {
    let lab = Lab::single('n', 3);
    let out = run_fails(lab.narbor(0).args(["discover", "--timeout", "1s"]));
    let err = stderr_str(&out);
    assert!(
        err.contains("no network interface for mDNS") && !err.contains("panicked"),
        "{err}"
    );

    let cache = lab.dir.path().join("cache");
    let out = run_fails(
        lab.narbor(0)
            .args([
                "serve",
                "--lan",
                "--no-upstream",
                "--listen",
                "0.0.0.0:8123",
                "--cache-dir",
            ])
            .arg(&cache),
    );
    let err = stderr_str(&out);
    assert!(
        err.contains("LAN mode cannot advertise the cache")
            && err.contains("no network interface for mDNS")
            && !err.contains("panicked"),
        "{err}"
    );

    let out = run_fails(
        lab.narbor(0)
            .args([
                "serve",
                "--lan",
                "--no-upstream",
                "--listen",
                "127.0.0.1:8123",
                "--cache-dir",
            ])
            .arg(&cache),
    );
    let err = stderr_str(&out);
    assert!(
        err.contains("listens only on loopback (127.0.0.1:8123)") && !err.contains("panicked"),
        "{err}"
    );
}
