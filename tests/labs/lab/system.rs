//! A real Debian 12 or 13 booted with systemd as PID 1 (systemd-nspawn) on a lab segment: what an admin
//! sees after `apt install ./stronghost_*.deb` — units enabled and active, boots and reboots, the
//! journal, removal and purge.
//!
//! ```text
//!   {id}-inet / {id}-rtr (dnsmasq) / {id}-lan br0    the lab's router and internet (lab/mod.rs)
//!       | p-sys0 .. p-sysN-1 (veth; MACs 02:00:00:00:07:0K, reserved 198.51.100.7K)
//!   {id}-sys   the container's network namespace: eth0 .. ethN-1
//!       systemd-nspawn -b: Debian 12 or 13 rootfs (mmdebstrap, built once per `target/`), PID 1 systemd
//! ```
//! The rootfs is built once and copied per test; systemd-nspawn comes from the systemd-container
//! package unpacked under `target/` (installing it would enable units in the machine's systemd).
//! The container runs in cgroups of its own under the machine's hierarchy, removed at the end.

use super::{Lab, ip, ok, run, wait_for};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What `apt install` of the package will want, Recommends included as on an admin's system.
const DOWNLOAD_ONLY: &str = "-o APT::Install-Recommends=true nftables";

/// The Debian release booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Release {
    /// Debian 12: ifupdown with isc-dhcp-client.
    Bookworm,
    /// Debian 13: ifupdown with dhcpcd-base, its default DHCP client there.
    Trixie,
}

impl Release {
    pub fn suite(self) -> &'static str {
        match self {
            Release::Bookworm => "bookworm",
            Release::Trixie => "trixie",
        }
    }

    /// Packages of the image. nftables is left out on purpose: apt must install it from the
    /// package's Depends (downloaded beforehand: the container has no route to the archive).
    fn include(self) -> &'static str {
        match self {
            Release::Bookworm => "systemd,systemd-sysv,dbus,iproute2,curl,network-manager,isc-dhcp-client,ifupdown,procps",
            Release::Trixie => "systemd,systemd-sysv,dbus,iproute2,curl,network-manager,dhcpcd-base,ifupdown,procps",
        }
    }
}

pub fn mac(k: usize) -> String {
    format!("02:00:00:00:07:{k:02x}")
}

pub fn addr(k: usize) -> String {
    format!("198.51.100.{}", 70 + k)
}

fn target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/systemlab")
}

/// The archive this machine installs from (the first `URIs:` of its deb822 sources).
fn mirror() -> String {
    let files = std::fs::read_dir("/etc/apt/sources.list.d").into_iter().flatten().flatten().map(|e| e.path());
    for text in files.filter(|p| p.extension() == Some("sources".as_ref())).filter_map(|p| std::fs::read_to_string(p).ok()) {
        let uris = text.lines().filter_map(|l| l.strip_prefix("URIs:")).flat_map(str::split_whitespace);
        if let Some(u) = uris.into_iter().find(|u| u.ends_with("/debian") || u.ends_with("/debian/")) {
            return u.to_string();
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// The Debian 12 root filesystem (`rootfs_of`).
pub fn rootfs() -> &'static Path {
    rootfs_of(Release::Bookworm)
}

/// A release's root filesystem, built once (about 30-60 s and 300 MB) and reused while its
/// package list is unchanged.
pub fn rootfs_of(release: Release) -> &'static Path {
    static ROOTS: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    ROOTS[release as usize].get_or_init(|| {
        let suite = release.suite();
        let include = release.include();
        let dir = target().join(suite);
        let stamp = target().join(format!("{suite}.stamp"));
        let want = format!("{include} +{DOWNLOAD_ONLY}\n");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(&want) {
            return dir;
        }
        let _ = std::fs::remove_dir_all(&dir);
        let tmp = target().join(format!("{suite}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(target()).unwrap();
        let started = Instant::now();
        let out = run(Command::new("mmdebstrap")
            .args(["--variant=apt", "--quiet", &format!("--include={include}")])
            // Package lists and the downloaded Depends stay, for an offline `apt install ./x.deb`.
            .args(["--skip=cleanup/apt/lists", "--skip=cleanup/apt/cache"])
            .arg(format!("--customize-hook=chroot \"$1\" apt-get install --download-only -y -q {DOWNLOAD_ONLY}"))
            .args([suite, tmp.to_str().unwrap(), &mirror()]));
        assert!(out.status.success(), "mmdebstrap: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(tmp.join("etc/machine-id"), "5f1bd4b6c0e94a8e9bf0a4c1d6a2e001\n").unwrap();
        std::fs::create_dir_all(tmp.join("var/log/journal")).unwrap();
        std::fs::write(tmp.join("etc/hostname"), "stronghost-lab\n").unwrap();
        ok(Command::new("chroot").arg(&tmp).args(["passwd", "-dq", "root"]));
        std::fs::rename(&tmp, &dir).unwrap();
        std::fs::write(&stamp, want).unwrap();
        eprintln!("system lab: {suite} rootfs built in {:.0?}", started.elapsed());
        dir
    })
}

/// systemd-nspawn from systemd-container of the machine's systemd version, unpacked, not installed.
pub fn nspawn() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = target().join("nspawn");
        let bin = dir.join("usr/bin/systemd-nspawn");
        if bin.exists() {
            return bin;
        }
        let version = ok(Command::new("dpkg-query").args(["-W", "-f=${Version}", "systemd"]));
        let dl = target().join("download");
        let _ = std::fs::remove_dir_all(&dl);
        std::fs::create_dir_all(&dl).unwrap();
        ok(Command::new("apt-get").args(["download", "-q", &format!("systemd-container={}", version.trim())]).current_dir(&dl));
        let deb = std::fs::read_dir(&dl).unwrap().flatten().map(|e| e.path()).find(|p| p.extension() == Some("deb".as_ref()));
        ok(Command::new("dpkg-deb").arg("-x").arg(deb.expect("systemd-container downloaded")).arg(&dir));
        let _ = std::fs::remove_dir_all(&dl);
        bin
    })
}

/// Which network stack the booted system runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stack {
    Networkd,
    NetworkManager,
    Ifupdown,
}

pub struct System {
    pub lab: Lab,
    /// The line echo for `start_session` runs.
    serving: bool,
    pub n: usize,
    pub ns: String,
    pub root: PathBuf,
    name: String,
    nspawn: Option<Child>,
    boots: usize,
}

impl System {
    /// A lab segment with `n` interfaces for the container and a copy of the rootfs set up for
    /// `stack`; not booted yet.
    pub fn new(stack: Stack, n: usize) -> System {
        System::on(Release::Bookworm, stack, n)
    }

    /// The same on a given Debian release.
    pub fn on(release: Release, stack: Stack, n: usize) -> System {
        super::require_root();
        let base = rootfs_of(release);
        let mut lab = Lab::builder(0).bare().build();
        let hosts: String = (0..n).map(|k| format!("{},{}\n", mac(k), addr(k))).collect();
        std::fs::write(lab.dir.join("dhcp-hosts"), hosts).unwrap();
        lab.reload_dhcp();
        let ns = lab.add_ns("sys");
        let root = lab.dir.join("root");
        ok(Command::new("cp").arg("-a").arg(base).arg(&root));
        let name = lab.id.clone();
        let s = System { lab, n, ns, root, name, nspawn: None, boots: 0, serving: false };
        s.plug();
        s.configure(stack);
        s
    }

    /// The container's interfaces, fresh (a cold boot's NICs).
    fn plug(&self) {
        let lan = self.lab.ns("lan");
        for k in 0..self.n {
            let (e, p) = (format!("eth{k}"), format!("p-sys{k}"));
            ip(&["-n", &lan, "link", "add", &p, "type", "veth", "peer", "name", &e, "netns", &self.ns]);
            ip(&["-n", &self.ns, "link", "set", &e, "address", &mac(k)]);
            ip(&["-n", &lan, "link", "set", &p, "master", "br0", "up"]);
        }
    }

    /// Pulls the container's cables: each veth pair goes with its segment end.
    fn unplug(&self) {
        let lan = self.lab.ns("lan");
        for k in 0..self.n {
            ip(&["-n", &lan, "link", "del", &format!("p-sys{k}")]);
        }
    }

    fn write(&self, path: &str, content: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn systemctl_root(&self, verb: &str, units: &[&str]) {
        ok(Command::new("systemctl").arg(format!("--root={}", self.root.display())).arg("--quiet").arg(verb).args(units));
    }

    fn configure(&self, stack: Stack) {
        let all = ["systemd-networkd.service", "NetworkManager.service", "networking.service"];
        self.systemctl_root("disable", &all);
        let ifaces: Vec<String> = (0..self.n).map(|k| format!("eth{k}")).collect();
        match stack {
            Stack::Networkd => {
                self.write("/etc/systemd/network/50-lab.network", "[Match]\nName=eth*\n\n[Network]\nDHCP=ipv4\n", 0o644);
                self.systemctl_root("enable", &["systemd-networkd.service"]);
            }
            Stack::NetworkManager => {
                self.write("/etc/NetworkManager/conf.d/50-lab.conf", "[main]\nno-auto-default=*\ndns=none\nrc-manager=unmanaged\n", 0o644);
                for i in &ifaces {
                    self.write(
                        &format!("/etc/NetworkManager/system-connections/{i}.nmconnection"),
                        &format!(
                            "[connection]\nid={i}\ntype=ethernet\ninterface-name={i}\n\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=disabled\n"
                        ),
                        0o600,
                    );
                }
                self.systemctl_root("enable", &["NetworkManager.service"]);
            }
            Stack::Ifupdown => {
                let mut s = String::from("source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n");
                for i in &ifaces {
                    s += &format!("\nauto {i}\niface {i} inet dhcp\n");
                }
                self.write("/etc/network/interfaces", &s, 0o644);
                self.systemctl_root("enable", &["networking.service"]);
                // dhcpcd (Debian 13's client for ifupdown) in a container: no udev runs there to
                // announce the links, and no other host shares the addresses it would probe.
                let conf = self.root.join("etc/dhcpcd.conf");
                if conf.exists() {
                    let mut c = std::fs::read_to_string(&conf).unwrap();
                    c += "\nnodev\nnoarp\n";
                    std::fs::write(&conf, c).unwrap();
                }
            }
        }
    }

    /// Puts a file of the machine into the container's root.
    pub fn copy_in(&self, from: &Path, to: &str) {
        ok(Command::new("cp").arg(from).arg(self.root.join(to.trim_start_matches('/'))));
    }

    /// Boots and waits until systemd reports the system up (`running` or `degraded`).
    pub fn boot(&mut self) {
        assert!(self.nspawn.is_none(), "already booted");
        self.boots += 1;
        // Cgroups of its own in both hierarchies, so nspawn does not try to move the test.
        for h in ["systemd", "unified"] {
            let _ = std::fs::create_dir_all(format!("/sys/fs/cgroup/{h}/{}", self.name));
        }
        let console = std::fs::OpenOptions::new().create(true).append(true).open(self.lab.dir.join("console.log")).unwrap();
        let script = format!(
            "echo $$ > /sys/fs/cgroup/systemd/{n}/cgroup.procs && echo $$ > /sys/fs/cgroup/unified/{n}/cgroup.procs && \
             exec \"$0\" \"$@\"",
            n = self.name
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(nspawn())
            .arg("-D")
            .arg(&self.root)
            .args(["-b", "-M", &self.name, "--register=no", "--keep-unit"])
            .arg(format!("--network-namespace-path=/run/netns/{}", self.ns))
            .args(["--private-network", "--capability=CAP_NET_ADMIN", "--console=read-only"])
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .unwrap();
        self.nspawn = Some(child);
        let started = Instant::now();
        let mut state = String::new();
        wait_for(Duration::from_secs(120), "the container to boot", || {
            if let Some(status) = self.nspawn.as_mut().unwrap().try_wait().unwrap() {
                panic!("systemd-nspawn exited during boot ({status}):\n{}", self.console_tail());
            }
            if self.init_pid().is_none() {
                return false;
            }
            state = String::from_utf8_lossy(&self.exec("systemctl is-system-running").stdout).trim().to_string();
            state == "running" || state == "degraded"
        });
        eprintln!("system lab: boot {} ({}) in {:.1?}: {state}", self.boots, self.name, started.elapsed());
    }

    fn console_tail(&self) -> String {
        let c = std::fs::read_to_string(self.lab.dir.join("console.log")).unwrap_or_default();
        c.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The container's PID 1, as the machine sees it: nspawn's child.
    fn init_pid(&self) -> Option<u32> {
        let pid = self.nspawn.as_ref()?.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// A shell command inside the booted system (all of its namespaces).
    pub fn exec(&self, cmd: &str) -> Output {
        let pid = self.init_pid().expect("the container is running").to_string();
        run(Command::new("nsenter")
            .args(["-t", &pid, "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", "env", "-i"])
            .args(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "TERM=dumb"])
            .args(["/bin/bash", "-c", cmd]))
    }

    /// Like `exec`, asserting success; its stdout.
    pub fn sh(&self, cmd: &str) -> String {
        let out = self.exec(cmd);
        assert!(
            out.status.success(),
            "in the container: {cmd}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Shuts the system down (`systemctl EXIT`) and waits for nspawn to end with `code`.
    fn shut(&mut self, verb: &str, code: i32) {
        let _ = self.exec(&format!("systemctl {verb} --no-block"));
        let mut child = self.nspawn.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                assert_eq!(s.code(), Some(code), "systemctl {verb}: nspawn ended with {s}:\n{}", self.console_tail());
                break;
            }
            if start.elapsed() > Duration::from_secs(90) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("systemctl {verb}: the container did not stop in 90 s:\n{}", self.console_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `systemctl reboot`: the namespace and its interfaces stay (a container or VM whose NICs
    /// keep their state).
    pub fn reboot_warm(&mut self) {
        self.shut("reboot", 133);
        self.boot();
    }

    /// Power off, new interfaces in a new namespace (as hardware after a power cycle), boot.
    pub fn reboot_cold(&mut self) {
        self.shut("poweroff", 0);
        // A deleted namespace is torn down by a kernel worker, later: its veth peers linger in
        // the segment for a while and the next plug's names would collide. Deleting the
        // segment's ends first removes both ends now.
        self.unplug();
        ip(&["netns", "del", &self.ns]);
        ip(&["netns", "add", &self.ns]);
        ip(&["-n", &self.ns, "link", "set", "lo", "up"]);
        self.plug();
        self.boot();
    }

    /// `curl --interface X http://SERVER/` inside the container: the source the server saw.
    pub fn curl_from(&self, interface: &str) -> Option<String> {
        let out = self.exec(&format!("curl -sS --max-time 3 --interface {interface} http://{}/", super::SERVER));
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string())
    }

    /// Counts, on the segment, the connections (SYNs) the container opens to the server, by the
    /// port they came in by (a closing ACK may still be on its way from the previous one).
    pub fn count_egress(&self) {
        let mut s = String::from("table bridge sys {\n");
        for k in 0..self.n {
            s += &format!("counter syn{k} {{}}\n");
        }
        s += "chain seen { type filter hook forward priority 0; policy accept;\n";
        for k in 0..self.n {
            s += &format!(
                "iifname \"p-sys{k}\" ip daddr {} tcp dport 80 tcp flags & (syn | ack) == syn counter name syn{k}\n",
                super::SERVER
            );
        }
        s += "}\n}\n";
        let f = self.lab.dir.join("sys.nft");
        std::fs::write(&f, s).unwrap();
        ok(Command::new("ip").args(["netns", "exec", &self.lab.ns("lan"), "nft", "-f"]).arg(&f));
    }

    /// The ports that carried connections to the server since the last call (counters reset).
    pub fn egress_ports(&self) -> Vec<usize> {
        let lan = self.lab.ns("lan");
        let out = ok(Command::new("ip").args(["netns", "exec", &lan, "nft", "-j", "reset", "counters", "table", "bridge", "sys"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut ports: Vec<usize> = v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i.get("counter"))
            .filter(|c| c["packets"].as_u64().unwrap_or(0) > 0)
            .filter_map(|c| c["name"].as_str()?.strip_prefix("syn")?.parse().ok())
            .collect();
        ports.sort();
        ports
    }

    /// Requirement 2 for every interface, by address and by name: the server saw the interface's
    /// address, and the packets left by that interface.
    pub fn assert_strong(&self, when: &str) {
        let _ = self.egress_ports();
        for k in 0..self.n {
            for by in [addr(k), format!("eth{k}")] {
                assert_eq!(self.curl_from(&by), Some(addr(k)), "{when}: curl --interface {by}: the server saw another source");
                let ports = self.egress_ports();
                assert_eq!(ports, vec![k], "{when}: curl --interface {by} left by {ports:?}:\n{}", self.diagnostics());
            }
        }
    }

    /// What to look at when an assertion fails: the routing policy, addresses, stronghost's view.
    pub fn diagnostics(&self) -> String {
        let out = self.exec(
            "ip -br addr; ip rule; ip route show table all | grep -v '^local\\|^broadcast'; stronghost status; \
             journalctl -b -q --no-pager -n 30 -t stronghost",
        );
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Every interface has its reserved address.
    /// A TCP session from inside the container to the internet, kept open: a line every half
    /// second to a line echo, each answer logged in /run/session.log ("ok N"), a missing one
    /// ends it ("lost N"). What an admin's ssh or database connection would live through.
    pub fn start_session(&mut self) {
        if !self.serving {
            self.lab.serve_lines("inet", 9000);
            self.serving = true;
        }
        // The previous session, if any (its PID, which it wrote itself).
        self.sh("[ -f /run/session.pid ] && kill $(cat /run/session.pid) 2>/dev/null; rm -f /run/session.log /run/session.pid; true");
        let script = format!(
            "echo $$ > /run/session.pid; exec 3<>/dev/tcp/{}/9000 || exit 1; n=0; while :; do n=$((n+1)); echo ping $n >&3; \
             if read -t 3 -r r <&3; then echo ok $n >> /run/session.log; else echo lost $n >> /run/session.log; exit; fi; \
             sleep 0.5; done",
            super::SERVER
        );
        self.sh(&format!("setsid -f bash -c '{script}' </dev/null >/dev/null 2>&1"));
        wait_for(Duration::from_secs(10), "the session to start", || self.sh("cat /run/session.log 2>/dev/null || true").contains("ok "));
    }

    /// The session is still answered: nothing lost, and new answers arrive.
    pub fn assert_session_alive(&self, when: &str) {
        let count = || self.sh("grep -c '^ok ' /run/session.log || true").trim().parse::<u64>().unwrap_or(0);
        let before = count();
        wait_for(Duration::from_secs(5), &format!("{when}: the session to go on"), || count() > before);
        let log = self.sh("cat /run/session.log");
        assert!(
            !log.contains("lost"),
            "{when}: the live session lost an answer:\n{}",
            log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
        );
    }

    pub fn wait_addresses(&self) {
        wait_for(Duration::from_secs(60), "every interface's lease", || {
            let a = String::from_utf8_lossy(&self.exec("ip -4 -o addr show").stdout).into_owned();
            (0..self.n).all(|k| a.contains(&format!(" {}/", addr(k))))
        });
    }

    /// What stronghost may change and must restore: rules, routes outside main and local, the
    /// nftables ruleset, the interfaces' ARP and rp_filter sysctls and link groups.
    pub fn network_state(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("rules".into(), self.sh("ip -4 rule; ip -6 rule"));
        m.insert(
            "routes outside main".into(),
            self.sh("ip -4 route show table all | grep -v -e ' table local' -e '^local ' -e '^broadcast ' | grep ' table ' || true"),
        );
        m.insert("nft".into(), self.sh("nft list ruleset 2>/dev/null || true"));
        for k in 0..self.n {
            let i = format!("eth{k}");
            m.insert(
                format!("{i} sysctls"),
                self.sh(&format!("cd /proc/sys/net/ipv4/conf/{i} && grep . arp_ignore arp_announce arp_filter rp_filter")),
            );
            m.insert(format!("{i} group"), self.sh(&format!("ip -o link show {i} | grep -o 'group [^ ]*'")));
        }
        m
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("STRONGHOST_HOLD_SYSTEM").is_some() {
            // To look inside a failed system: nsenter -t <init> -a (the PID is in the message).
            eprintln!("system lab: holding {} for 10 minutes; init PID {:?}", self.name, self.init_pid());
            std::thread::sleep(Duration::from_secs(600));
        }
        if let Some(mut c) = self.nspawn.take() {
            // Killing the container's init ends its PID namespace, every process in it.
            if let Some(pid) = self.init_pid_of(&c) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for h in ["systemd", "unified"] {
            remove_cgroup(&PathBuf::from(format!("/sys/fs/cgroup/{h}/{}", self.name)));
        }
        // The rootfs copy is under the lab's directory, removed with the lab.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl System {
    fn init_pid_of(&self, c: &Child) -> Option<u32> {
        let pid = c.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?.split_whitespace().next()?.parse().ok()
    }
}

/// Removes a cgroup directory and the ones the container made under it, deepest first.
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup(&e.path());
            }
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
