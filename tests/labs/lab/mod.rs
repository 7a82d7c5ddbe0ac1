//! A network lab in namespaces: the motivating host, built from real parts.
//!
//! ```text
//!   {id}-inet   203.0.113.10  HTTP echo (answers with the client's source address)
//!       | wan0                (IPv6 labs: 2001:db8:203::10)
//!   {id}-rtr    203.0.113.1 / 198.51.100.1, forwards without NAT, dnsmasq DHCP on lan0
//!               (IPv6 labs: 2001:db8:1::1 on lan0, router advertisements and DHCPv6)
//!       | lan0
//!   {id}-lan    br0 (the shared segment)
//!       | eth0 .. ethN-1 (veth, fixed MACs 02:00:00:00:01:0K)
//!   {id}-host   the multi-homed host; a holder process keeps a private mount and UTS namespace
//!               with tmpfs /run and overlays on /etc, /usr and /var, so stronghost and its hook
//!               are installed at their real paths without the machine seeing any of it.
//! ```
//! Nothing is created in the root network namespace. Every process started is tracked and ended,
//! and every namespace deleted, when the `Lab` is dropped — also when a test panics.

#![allow(dead_code)]

pub mod rogue_dhcp;
pub mod system;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const GW: &str = "198.51.100.1";
pub const SERVER: &str = "203.0.113.10";
pub const SERVER6: &str = "2001:db8:203::10";
/// The IPv6 prefix the router advertises at first, and its address in it.
pub const PREFIX6: &str = "2001:db8:1::";
pub const RTR6: &str = "2001:db8:1::1";
pub const TABLE_MIN: u32 = 4101;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn stronghost_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stronghost"))
}

/// A TCP server inside network namespace `ns`, on a thread of the test process: the thread
/// enters the namespace (setns is per thread) and the listening socket (dual-stack) stays there;
/// each connection is handed to `serve` on a thread of its own, until `stop`.
fn server_in(ns: &str, port: u16, stop: Arc<AtomicBool>, serve: fn(TcpStream)) -> std::thread::JoinHandle<()> {
    let ns = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let listener = TcpListener::bind(("::", port)).expect("bind");
        listener.set_nonblocking(true).unwrap();
        tx.send(()).unwrap();
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((s, _)) => {
                    std::thread::spawn(move || serve(s));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("server did not start");
    h
}

/// An HTTP echo: every answer is "<client address> <server address>" (IPv4 clients of the
/// dual-stack socket appear as ::ffff:a.b.c.d and are printed as a.b.c.d).
fn echo_server(ns: &str, port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    server_in(ns, port, stop, serve_echo)
}

/// A line echo: every line a client sends comes back, for as long as the connection lasts (a
/// live session to watch through an install).
fn line_server(ns: &str, port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    server_in(ns, port, stop, |s| {
        let _ = s.set_nonblocking(false);
        // A client that vanished without closing (its namespace gone) ends it too.
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        let Ok(mut out) = s.try_clone() else { return };
        for line in std::io::BufRead::lines(std::io::BufReader::new(s)).map_while(Result::ok) {
            if writeln!(out, "{line}").is_err() {
                break;
            }
        }
    })
}

fn serve_echo(mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let peer = s.peer_addr().map(|a| a.ip().to_canonical().to_string()).unwrap_or_default();
    let local = s.local_addr().map(|a| a.ip().to_canonical().to_string()).unwrap_or_default();
    let body = format!("{peer} {local}\n");
    let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn require_root() {
    let uid = unsafe_geteuid();
    assert_eq!(uid, 0, "the lab tests need root (network namespaces); run them as root, e.g. `sudo cargo test`");
}

fn unsafe_geteuid() -> u32 {
    // Read from /proc to avoid a libc dependency in the tests.
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).and_then(|u| u.parse().ok()).unwrap_or(u32::MAX)
}

pub struct Lab {
    pub id: String,
    pub dir: PathBuf,
    pub n: usize,
    holder: Option<Child>,
    children: Vec<(String, Child)>,
    dnsmasq: Option<Child>,
    namespaces: Vec<String>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    dhcp_options: Vec<String>,
    /// Read-only /sys and a private system D-Bus in the host (what networkd and NetworkManager need).
    pub daemons: bool,
    /// Leave /usr/sbin/stronghost out of the host (a package installs it).
    pub bare: bool,
    /// IPv6 on the router and the internet side; dnsmasq's IPv6 options (router advertisements,
    /// DHCPv6), empty for an IPv4-only lab.
    pub ipv6: Vec<String>,
    /// IPv6 off on the segment's ports and the host's interfaces (see `LabBuilder::no_ipv6`).
    no_ipv6: bool,
}

/// What a lab is made of; `Lab::builder(n)` starts one.
pub struct LabBuilder {
    n: usize,
    hook: bool,
    dhcp_options: Vec<String>,
    daemons: bool,
    bare: bool,
    ipv6: Vec<String>,
    no_ipv6: bool,
}

impl LabBuilder {
    /// IPv6 disabled on the bridge ports and the host's interfaces before they are made: with
    /// thousands of interfaces, their link-local addresses' DAD and router solicitations keep the
    /// kernel's addrconf worker busy under RTNL for minutes — the kernel's cost, which an IPv4
    /// benchmark must not measure as stronghost's.
    pub fn no_ipv6(mut self) -> Self {
        self.no_ipv6 = true;
        self
    }

    /// stronghost's dhclient exit hook installed in the host.
    pub fn dhclient_hook(mut self) -> Self {
        self.hook = true;
        self
    }

    /// Extra dnsmasq options (tags `ifK` select interface K's client).
    pub fn dhcp_options(mut self, options: &[&str]) -> Self {
        self.dhcp_options.extend(options.iter().map(|o| o.to_string()));
        self
    }

    /// A host that can run systemd-networkd or NetworkManager: /sys read-only (else their links
    /// wait for udev forever) and a private system D-Bus (networkctl, nmcli, dispatcher).
    pub fn daemons(mut self) -> Self {
        self.daemons = true;
        self
    }

    /// No /usr/sbin/stronghost in the host: a package installs it.
    pub fn bare(mut self) -> Self {
        self.bare = true;
        self
    }

    /// The router also advertises `PREFIX6`/64 (SLAAC) and serves DHCPv6 from it.
    pub fn ipv6(mut self) -> Self {
        self.ipv6 = Lab::ipv6_options(PREFIX6, None);
        self
    }

    pub fn build(self) -> Lab {
        Lab::build_from(self)
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    ok(Command::new("ip").args(args))
}

pub fn mac(k: usize) -> String {
    format!("02:00:00:00:{:02x}:{:02x}", 1 + (k >> 8), k & 0xff)
}

/// The address the DHCP server reserves for ethK at first.
pub fn addr(k: usize) -> String {
    format!("198.51.100.{}", 10 + k)
}

impl Lab {
    /// A lab of `n` host interfaces: `Lab::builder(n)…build()`. By default the plain weak host
    /// with stronghost's binary and nothing that runs it.
    pub fn builder(n: usize) -> LabBuilder {
        LabBuilder { n, hook: false, dhcp_options: vec![], daemons: false, bare: false, ipv6: vec![], no_ipv6: false }
    }

    /// dnsmasq's IPv6 options: SLAAC and DHCPv6 addresses in `prefix`/64, router advertisements
    /// every few seconds with `router_lifetime` (None: dnsmasq's default; 0: "not a default router").
    pub fn ipv6_options(prefix: &str, router_lifetime: Option<u32>) -> Vec<String> {
        let mut o = vec!["--enable-ra".to_string(), format!("--dhcp-range={prefix}100,{prefix}1ff,slaac,64,2m")];
        o.push(match router_lifetime {
            Some(l) => format!("--ra-param=lan0,4,{l}"),
            None => "--ra-param=lan0,4".to_string(),
        });
        o
    }

    fn build_from(b: LabBuilder) -> Lab {
        require_root();
        let id = format!("sh{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let dir = std::env::temp_dir().join(format!("stronghost-lab-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            id,
            dir,
            n: b.n,
            holder: None,
            children: vec![],
            dnsmasq: None,
            namespaces: vec![],
            stop: Arc::new(AtomicBool::new(false)),
            threads: vec![],
            dhcp_options: b.dhcp_options,
            daemons: b.daemons,
            bare: b.bare,
            ipv6: b.ipv6,
            no_ipv6: b.no_ipv6,
        };
        lab.build(b.hook);
        lab
    }

    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.id)
    }

    /// Another namespace of the lab (a container, a backend, a VPN server), deleted with it.
    pub fn add_ns(&mut self, name: &str) -> String {
        let ns = self.ns(name);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A container on a bridge of the host, as Docker makes one: `docker0` 172.17.0.1/16 in the
    /// host, the container 172.17.0.2 in namespace `ctr` (returned) with its default route through
    /// it; forwarding on in the host.
    pub fn add_container_bridge(&mut self) -> String {
        let (host, ctr) = (self.ns("host"), self.add_ns("ctr"));
        ip(&["-n", &host, "link", "add", "docker0", "type", "bridge"]);
        ip(&["-n", &host, "link", "add", "vethc", "type", "veth", "peer", "name", "eth0", "netns", &ctr]);
        ip(&["-n", &host, "link", "set", "vethc", "master", "docker0", "up"]);
        ip(&["-n", &host, "addr", "add", "172.17.0.1/16", "dev", "docker0"]);
        ip(&["-n", &host, "link", "set", "docker0", "up"]);
        ip(&["-n", &ctr, "addr", "add", "172.17.0.2/16", "dev", "eth0"]);
        ip(&["-n", &ctr, "link", "set", "eth0", "up"]);
        ip(&["-n", &ctr, "route", "add", "default", "via", "172.17.0.1"]);
        self.host_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        ctr
    }

    /// Port 8081 of every host address published to the container of `add_container_bridge`
    /// (its port 80), and its traffic out masqueraded: Docker's NAT, as nft rules.
    pub fn publish_container_port(&self) {
        self.nft(
            "table ip labdocker {
               chain prerouting { type nat hook prerouting priority dstnat; policy accept;
                 fib daddr type local tcp dport 8081 dnat to 172.17.0.2:80
               }
               chain postrouting { type nat hook postrouting priority srcnat; policy accept;
                 ip saddr 172.17.0.0/16 oifname != \"docker0\" masquerade
               }
             }\n",
        );
    }

    /// A lab of `n` interfaces with stronghost's dhclient hook and the watcher, each interface's
    /// lease bound and applied.
    pub fn bound_under_the_watcher(n: usize) -> Lab {
        let mut lab = Lab::builder(n).dhclient_hook().build();
        lab.start_watcher();
        for k in 0..n {
            lab.start_dhclient(k);
        }
        for k in 0..n {
            lab.wait_applied(k, &addr(k));
        }
        lab
    }

    /// A line echo on `port` in the lab's namespace `name` (`line_server`).
    pub fn serve_lines(&mut self, name: &str, port: u16) {
        let ns = self.ns(name);
        self.threads.push(line_server(&ns, port, self.stop.clone()));
    }

    /// An HTTP echo ("<client> <server>") on `port` in the lab's namespace `name`.
    pub fn serve_echo(&mut self, name: &str, port: u16) {
        let ns = self.ns(name);
        self.threads.push(echo_server(&ns, port, self.stop.clone()));
    }

    /// `curl URL` from the lab's namespace `name`: (client address, server address) as the echo
    /// server saw them.
    pub fn curl_in(&self, name: &str, url: &str, extra: &[&str]) -> Option<(String, String)> {
        let mut args = vec!["curl", "-sS", "--max-time", "2"];
        args.extend_from_slice(extra);
        args.push(url);
        let out = if name == "host" { self.host(&args) } else { self.in_ns(name, &args) };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut w = text.split_whitespace();
        out.status.success().then(|| (w.next().unwrap_or("").to_string(), w.next().unwrap_or("").to_string()))
    }

    fn build(&mut self, with_hook: bool) {
        for name in ["lan", "rtr", "inet", "host"] {
            let ns = self.ns(name);
            ip(&["netns", "add", &ns]);
            self.namespaces.push(ns);
        }
        let (lan, rtr, inet, host) = (self.ns("lan"), self.ns("rtr"), self.ns("inet"), self.ns("host"));
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lan, "link", "set", "br0", "up"]);
        ip(&["-n", &rtr, "link", "add", "lan0", "type", "veth", "peer", "name", "p-rtr", "netns", &lan]);
        ip(&["-n", &lan, "link", "set", "p-rtr", "master", "br0", "up"]);
        ip(&["-n", &rtr, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0", "netns", &inet]);
        ip(&["-n", &rtr, "addr", "add", "198.51.100.1/24", "dev", "lan0"]);
        ip(&["-n", &rtr, "addr", "add", "203.0.113.1/24", "dev", "wan0"]);
        ip(&["-n", &inet, "addr", "add", "203.0.113.10/24", "dev", "wan0"]);
        for (ns, links) in [(&rtr, vec!["lo", "lan0", "wan0"]), (&inet, vec!["lo", "wan0"]), (&host, vec!["lo"])] {
            for l in links {
                ip(&["-n", ns, "link", "set", l, "up"]);
            }
        }
        ip(&["-n", &inet, "route", "add", "default", "via", "203.0.113.1"]);
        ok(Command::new("ip").args(["netns", "exec", &rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1"]));
        if !self.ipv6.is_empty() {
            ip(&["-n", &rtr, "addr", "add", &format!("{RTR6}/64"), "dev", "lan0", "nodad"]);
            ip(&["-n", &rtr, "addr", "add", "2001:db8:203::1/64", "dev", "wan0", "nodad"]);
            ip(&["-n", &inet, "addr", "add", &format!("{SERVER6}/64"), "dev", "wan0", "nodad"]);
            ip(&["-n", &inet, "-6", "route", "add", "default", "via", "2001:db8:203::1"]);
            ok(Command::new("ip").args(["netns", "exec", &rtr, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]));
        }
        if self.no_ipv6 {
            for ns in [&lan, &host] {
                let set = |k: &str| {
                    ok(Command::new("ip").args(["netns", "exec", ns, "sysctl", "-qw", &format!("net.ipv6.conf.{k}.disable_ipv6=1")]))
                };
                set("all");
                set("default");
            }
        }
        // One `ip -batch` per namespace: a lab of thousands of interfaces builds in seconds.
        // A bridge takes at most 1,024 ports (EXFULL): beyond that the segment is a tree of
        // bridges, each hung off br0 by a veth pair.
        const PORTS: usize = 1000;
        let (mut in_lan, mut in_host) = (String::new(), String::new());
        for b in 1..self.n.div_ceil(PORTS) {
            in_lan += &format!("link add br{b} type bridge\nlink set br{b} up\n");
            in_lan += &format!("link add up{b} type veth peer name dn{b}\n");
            in_lan += &format!("link set up{b} master br0 up\nlink set dn{b} master br{b} up\n");
        }
        for k in 0..self.n {
            in_lan += &format!("link add p-eth{k} type veth peer name eth{k} address {} netns {host}\n", mac(k));
            in_lan += &format!("link set p-eth{k} master br{} up\n", k / PORTS);
            in_host += &format!("link set eth{k} up\n");
        }
        for (ns, batch) in [(&lan, in_lan), (&host, in_host)] {
            if !batch.is_empty() {
                let f = self.dir.join(format!("links-{ns}.batch"));
                std::fs::write(&f, batch).unwrap();
                ip(&["-n", ns, "-batch", f.to_str().unwrap()]);
            }
        }
        self.threads.push(echo_server(&inet, 80, self.stop.clone()));
        self.threads.push(echo_server(&host, 8080, self.stop.clone()));
        self.start_holder(with_hook);
        self.write_dhcp_hosts(&BTreeMap::new());
        self.start_dnsmasq();
        self.observe();
    }

    fn start_holder(&mut self, with_hook: bool) {
        let d = self.dir.display().to_string();
        let bin = stronghost_bin().display().to_string();
        let hook = repo().join("hooks/dhclient-exit-hook").display().to_string();
        let mut script = format!(
            "set -e\nmount -t tmpfs tmpfs /run\nfor t in etc usr var; do mkdir -p {d}/ovl/$t/u {d}/ovl/$t/w; \
             mount -t overlay overlay -o lowerdir=/$t,upperdir={d}/ovl/$t/u,workdir={d}/ovl/$t/w /$t; done\n\
             mkdir -p /etc/dhcp/dhclient-exit-hooks.d\n: > /etc/resolv.conf\n"
        );
        if !self.bare {
            script += &format!("install -m 0755 {bin} /usr/sbin/stronghost\n");
        }
        if with_hook {
            script += &format!("install -m 0644 {hook} /etc/dhcp/dhclient-exit-hooks.d/stronghost\n");
        }
        if self.daemons {
            script += "mount --bind /sys /sys\nmount -o remount,bind,ro /sys\nmkdir -p /run/dbus\n\
                       dbus-daemon --system --fork\n\
                       install -d -o systemd-network -g systemd-network /run/systemd/netif /run/systemd/netif/links /run/systemd/netif/leases /run/systemd/netif/lldp\n";
        }
        script += &format!("touch {d}/holder-ready\nexec sleep infinity\n");
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns("host"), "unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("holder.log")).unwrap())
            .spawn()
            .unwrap();
        self.holder = Some(c);
        wait_for(Duration::from_secs(10), "the host namespace holder", || self.dir.join("holder-ready").exists());
    }

    /// A command run inside the host: its network, mount and UTS namespaces.
    pub fn host_cmd(&self, args: &[&str]) -> Command {
        let pid = self.holder.as_ref().unwrap().id().to_string();
        let mut c = Command::new("nsenter");
        c.args(["-t", &pid, "-m", "-u", "-n", "--"]).args(args);
        c.env("STRONGHOST_LOG_STDERR", "1");
        c
    }

    pub fn host(&self, args: &[&str]) -> Output {
        run(&mut self.host_cmd(args))
    }

    pub fn host_ok(&self, args: &[&str]) -> String {
        ok(&mut self.host_cmd(args))
    }

    pub fn in_ns(&self, ns: &str, args: &[&str]) -> Output {
        run(Command::new("ip").args(["netns", "exec", &self.ns(ns)]).args(args))
    }

    pub fn stronghost(&self, args: &[&str]) -> Output {
        let mut a = vec!["/usr/sbin/stronghost"];
        a.extend_from_slice(args);
        self.host(&a)
    }

    pub fn stronghost_json(&self, args: &[&str]) -> Value {
        let out = self.stronghost(args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("stronghost {args:?}: {e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        })
    }

    /// MAC → address reservations for dnsmasq; unlisted interfaces get `addr(k)`.
    pub fn write_dhcp_hosts(&self, overrides: &BTreeMap<usize, String>) {
        let mut s = String::new();
        for k in 0..self.n {
            let a = overrides.get(&k).cloned().unwrap_or_else(|| addr(k));
            s += &format!("{},set:if{k},{a}\n", mac(k));
        }
        std::fs::write(self.dir.join("dhcp-hosts"), s).unwrap();
    }

    fn start_dnsmasq(&mut self) {
        let d = &self.dir;
        let c = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("rtr"),
                "dnsmasq",
                "--keep-in-foreground",
                "--port=0",
                "--conf-file=/dev/null",
                "--user=root",
                "--bind-interfaces",
                "--interface=lan0",
                "--no-ping",
                "--log-dhcp",
                "--log-facility=-",
            ])
            .arg("--dhcp-range=198.51.100.100,198.51.100.199,255.255.255.0,2m")
            .arg(format!("--dhcp-option=option:router,{GW}"))
            .arg(format!("--dhcp-hostsfile={}", d.join("dhcp-hosts").display()))
            .arg(format!("--dhcp-leasefile={}", d.join("dnsmasq.leases").display()))
            .arg(format!("--pid-file={}", d.join("dnsmasq.pid").display()))
            .args(&self.dhcp_options)
            .args(&self.ipv6)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(d.join("dnsmasq.log")).unwrap())
            .spawn()
            .unwrap();
        self.dnsmasq = Some(c);
    }

    /// Stops dnsmasq (for a test that brings its own DHCP server).
    pub fn stop_dhcp(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// dnsmasq restarts with the new reservations (its lease file is kept). A restart, not SIGHUP:
    /// dnsmasq 2.90 was seen to exit on SIGHUP once it held leases.
    pub fn reload_dhcp(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.start_dnsmasq();
    }

    /// Starts a long-running command in the host, tracked and ended with the lab; its output
    /// goes to `<dir>/<name>.log`.
    pub fn spawn_in_host(&mut self, name: &str, args: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let c = self.host_cmd(args).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
        self.children.push((name.to_string(), c));
    }

    /// Starts a long-running command in the lab's namespace `name` (not the host), tracked and
    /// ended with the lab, its output in `<dir>/<log>.log`.
    pub fn spawn_in(&mut self, name: &str, log: &str, args: &[&str]) {
        let f = std::fs::File::create(self.dir.join(format!("{log}.log"))).unwrap();
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns(name)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        self.children.push((log.to_string(), c));
    }

    /// Starts `stronghost watch` in the host and waits until it follows events.
    pub fn start_watcher(&mut self) {
        self.spawn_in_host("watch", &["/usr/sbin/stronghost", "watch"]);
        wait_for(Duration::from_secs(10), "the watcher to start", || self.log("watch").contains("watching"));
    }

    /// Ends a tracked process started with `spawn_in_host`.
    pub fn kill_child(&mut self, name: &str) {
        if let Some(pos) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut c) = self.children.remove(pos);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` to a tracked process started with `spawn_in_host`.
    pub fn signal_child(&self, name: &str, sig: nix::sys::signal::Signal) {
        let (_, c) = self.children.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no child {name}"));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig).unwrap();
    }

    /// Ends a tracked process as systemd stops a service: SIGTERM, then its exit (killed after
    /// 10 s). Its exit status.
    pub fn stop_child(&mut self, name: &str) -> Option<std::process::ExitStatus> {
        let pos = self.children.iter().position(|(n, _)| n == name)?;
        let (_, mut c) = self.children.remove(pos);
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Installs a file of the repository at its place in the host (private overlays).
    pub fn install(&self, repo_path: &str, dest: &str, mode: &str) {
        let src = repo().join(repo_path);
        self.host_ok(&["install", "-D", "-m", mode, src.to_str().unwrap(), dest]);
    }

    /// Writes a file in the host (private overlays).
    pub fn write_host_file(&self, dest: &str, content: &str) {
        let tmp = self.dir.join("host-file");
        std::fs::write(&tmp, content).unwrap();
        self.host_ok(&["install", "-D", "-m", "0644", tmp.to_str().unwrap(), dest]);
    }

    /// Installs stronghost's dhclient exit hook in the host (for a lab built without it).
    pub fn install_hook(&self) {
        let hook = repo().join("hooks/dhclient-exit-hook");
        self.host_ok(&["install", "-m", "0644", hook.to_str().unwrap(), "/etc/dhcp/dhclient-exit-hooks.d/stronghost"]);
    }

    /// Starts isc-dhcp-client on ethK in the foreground (its PID is tracked).
    pub fn start_dhclient(&mut self, k: usize) {
        self.start_isc_client(k, "-4", "dhclient");
    }

    /// Starts `dhclient -6` (DHCPv6, stateful) on ethK, tracked; the host's exit hook runs for it.
    pub fn start_dhclient6(&mut self, k: usize) {
        self.start_isc_client(k, "-6", "dhclient6");
    }

    /// Starts dhclient on ethK with its lease file where Debian's ifupdown keeps it
    /// (/var/lib/dhcp/dhclient.ethK.leases, in the host's private /var).
    pub fn start_dhclient_debian(&mut self, k: usize) {
        let lf = format!("/var/lib/dhcp/dhclient.eth{k}.leases");
        self.start_isc_client_at(k, "-4", "dhclient", Some(&lf));
    }

    fn start_isc_client(&mut self, k: usize, family: &str, name: &str) {
        self.start_isc_client_at(k, family, name, None);
    }

    fn start_isc_client_at(&mut self, k: usize, family: &str, name: &str, lease_file: Option<&str>) {
        let d = self.dir.display().to_string();
        let e = format!("eth{k}");
        let lf = lease_file.map(str::to_string).unwrap_or_else(|| format!("{d}/{name}.{e}.leases"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{name}.{e}.log"))).unwrap();
        let c = self
            .host_cmd(&["dhclient", family, "-d", "-v", "-pf", &format!("{d}/{name}.{e}.pid"), "-lf", &lf, &e])
            .env_remove("STRONGHOST_LOG_STDERR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push((format!("{name}-{e}"), c));
    }

    /// `dhclient -r`: RELEASE, and the running client for ethK exits.
    pub fn release_dhclient(&mut self, k: usize) {
        let d = self.dir.display().to_string();
        let e = format!("eth{k}");
        self.host_ok(&["dhclient", "-4", "-r", "-pf", &format!("{d}/dhclient.{e}.pid"), "-lf", &format!("{d}/dhclient.{e}.leases"), &e]);
        let name = format!("dhclient-{e}");
        if let Some(pos) = self.children.iter().position(|(n, _)| *n == name) {
            let (_, mut c) = self.children.remove(pos);
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Ends ethK's client without a word to the server or the script (a crash, a reboot): the
    /// address stays, and the next client starts from the lease file (INIT-REBOOT).
    pub fn kill_dhclient(&mut self, k: usize) {
        let name = format!("dhclient-eth{k}");
        if let Some(pos) = self.children.iter().position(|(n, _)| *n == name) {
            let (_, mut c) = self.children.remove(pos);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn dhclient_log(&self, k: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("dhclient.eth{k}.log"))).unwrap_or_default()
    }

    /// Counters the tests read: per-interface egress to the echo server and from the host's
    /// server, and per-interface ARP replies and requests.
    fn observe(&self) {
        let mut s = String::from("table inet lab {\n");
        for k in 0..self.n {
            s += &format!("counter web_eth{k} {{}}\ncounter srv_eth{k} {{}}\n");
        }
        s += "chain post { type filter hook postrouting priority 0; policy accept;\n";
        for k in 0..self.n {
            s += &format!("oifname \"eth{k}\" ip daddr {SERVER} tcp dport 80 counter name web_eth{k}\n");
            s += &format!("oifname \"eth{k}\" ip6 daddr {SERVER6} tcp dport 80 counter name web_eth{k}\n");
            s += &format!("oifname \"eth{k}\" tcp sport 8080 counter name srv_eth{k}\n");
        }
        s += "}\n}\ntable arp lab {\n";
        for k in 0..self.n {
            s += &format!("counter reply_eth{k} {{}}\ncounter request_eth{k} {{}}\n");
        }
        s += "chain out { type filter hook output priority 0; policy accept;\n";
        for k in 0..self.n {
            s += &format!("oifname \"eth{k}\" arp operation reply counter name reply_eth{k}\n");
            s += &format!("oifname \"eth{k}\" arp operation request counter name request_eth{k}\n");
        }
        s += "}\n}\n";
        self.nft(&s);
    }

    /// Loads an nft script into the host (asserting nft accepted it).
    pub fn nft(&self, script: &str) {
        let f = self.dir.join("script.nft");
        std::fs::write(&f, script).unwrap();
        self.host_ok(&["nft", "-f", &f.display().to_string()]);
    }

    /// Named counters of an nft table in the host, by name → packets.
    pub fn counters(&self, family: &str, table: &str) -> BTreeMap<String, u64> {
        let out = self.host_ok(&["nft", "-j", "list", "counters", "table", family, table]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i.get("counter"))
            .map(|c| (c["name"].as_str().unwrap().to_string(), c["packets"].as_u64().unwrap()))
            .collect()
    }

    pub fn reset_counters(&self) {
        self.host_ok(&["nft", "reset", "counters", "table", "inet", "lab"]);
        self.host_ok(&["nft", "reset", "counters", "table", "arp", "lab"]);
    }

    /// The interfaces whose `prefix_ethK` counter is non-zero.
    pub fn nonzero(&self, family: &str, prefix: &str) -> Vec<String> {
        self.counters(family, "lab")
            .into_iter()
            .filter(|(n, p)| n.starts_with(prefix) && *p > 0)
            .map(|(n, _)| n[prefix.len()..].to_string())
            .collect()
    }

    /// `curl --interface X http://SERVER/` from the host: the source address the server saw.
    pub fn curl_from_host(&self, interface: &str) -> Option<String> {
        let out = self.host(&["curl", "-sS", "--max-time", "3", "--interface", interface, &format!("http://{SERVER}/")]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string())
    }

    /// `curl -6 --interface X http://[SERVER6]/` from the host: the source address the server saw.
    pub fn curl6_from_host(&self, interface: &str) -> Option<String> {
        let out = self.host(&["curl", "-6", "-sS", "--max-time", "3", "--interface", interface, &format!("http://[{SERVER6}]/")]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string())
    }

    /// A client on the internet asks the host's server at `addr`: the local address that answered.
    pub fn curl_to_host(&self, ns: &str, addr: &str) -> Option<String> {
        let host = if addr.contains(':') { format!("[{addr}]") } else { addr.to_string() };
        let out = self.in_ns(ns, &["curl", "-s", "--max-time", "1", &format!("http://{host}:8080/")]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap_or("").to_string())
    }

    /// Sends a packet for `addr` (ethJ's address) to ethK's MAC: the wrong interface. True when
    /// the host answered (a weak host does).
    pub fn wrong_interface_probe(&self, addr: &str, via_k: usize) -> bool {
        let rtr = self.ns("rtr");
        ip(&["-n", &rtr, "neigh", "replace", addr, "lladdr", &mac(via_k), "dev", "lan0", "nud", "permanent"]);
        let answered = self.curl_to_host("rtr", addr).is_some();
        ip(&["-n", &rtr, "neigh", "del", addr, "dev", "lan0"]);
        answered
    }

    /// The router forgets its ARP cache and asks for `addr` again; returns which host interfaces
    /// sent an ARP reply.
    pub fn arp_repliers(&self, addr: &str) -> Vec<String> {
        ip(&["-n", &self.ns("rtr"), "neigh", "flush", "dev", "lan0"]);
        self.reset_counters();
        let _ = self.curl_to_host("rtr", addr);
        std::thread::sleep(Duration::from_millis(200));
        self.nonzero("arp", "reply_")
    }

    pub fn status(&self) -> Value {
        self.stronghost_json(&["status", "--json"])
    }

    pub fn status_of(&self, ifname: &str) -> Option<Value> {
        self.status()["interfaces"].as_array().unwrap().iter().find(|i| i["interface"] == ifname).cloned()
    }

    /// Whether the kernel holds `ifname`'s policy: stronghost's `oif` rule for it, of either
    /// family (read with `ip`, not from stronghost's own view).
    pub fn routed(&self, ifname: &str) -> bool {
        let pat = format!("oif {ifname} lookup");
        ["-4", "-6"].iter().any(|f| self.host_ok(&["ip", "-N", f, "rule"]).lines().any(|l| l.contains(&pat) && l.contains("proto 83")))
    }

    /// `ifname` is managed without an address: no routing policy is left for it (table `t` is
    /// empty), yet traffic bound to it is not sent: the kernel would take any destination for
    /// on-link and borrow another interface's address, and the receive filter's egress chain drops
    /// that, counted on `ifname`.
    pub fn assert_addressless_refused(&self, ifname: &str, t: u64) {
        let dump = self.routing_dump();
        assert!(
            !dump.contains(&format!("lookup {t} ")) && !dump.contains(&format!("table {t} ")),
            "{ifname}'s policy left behind:\n{dump}"
        );
        assert!(!dump.contains(&format!("oif {ifname} ")), "{dump}");
        let before = self.status_of(ifname).unwrap()["drops"]["foreign_source"].as_u64().unwrap_or(0);
        let out = self.host(&["curl", "-sS", "--max-time", "2", "--interface", ifname, &format!("http://{SERVER}/")]);
        assert!(!out.status.success(), "traffic bound to {ifname} without an address got through");
        let after = self.status_of(ifname).unwrap()["drops"]["foreign_source"].as_u64().unwrap_or(0);
        assert!(after > before, "{ifname}: the borrowed-address packet was not dropped and counted ({before} → {after})");
    }

    /// Every change the kernel announces while `f` runs — links (group, sysctls), addresses,
    /// rules, routes (rtnetlink, `ip monitor`) and nftables objects (`nft monitor`) — so a test
    /// can show a run wrote nothing without trusting stronghost's own count.
    pub fn kernel_changes_during(&mut self, f: impl FnOnce(&Lab)) -> Vec<String> {
        self.spawn_in_host("ip-monitor", &["ip", "-o", "monitor", "link", "address", "route", "rule"]);
        self.spawn_in_host("nft-monitor", &["nft", "monitor"]);
        // Both listening before `f` starts: each prints nothing until an event, so wait for them
        // to have their sockets (a short settle; a late start could only miss events, never add).
        std::thread::sleep(Duration::from_millis(300));
        f(self);
        std::thread::sleep(Duration::from_millis(300));
        self.kill_child("ip-monitor");
        self.kill_child("nft-monitor");
        let mut out: Vec<String> = self.log("ip-monitor").lines().chain(self.log("nft-monitor").lines()).map(str::to_string).collect();
        out.retain(|l| !l.trim().is_empty());
        out
    }

    /// Waits until stronghost reports ethK strong with exactly `addr`.
    pub fn wait_applied(&self, k: usize, addr: &str) {
        let e = format!("eth{k}");
        wait_for(Duration::from_secs(30), &format!("{e} strong with {addr}"), || {
            self.status_of(&e).is_some_and(|s| {
                s["applied"] == true
                    && s["addresses"]
                        .as_array()
                        .is_some_and(|a| a.len() == 1 && a[0].as_str().unwrap_or("").starts_with(&format!("{addr}/")))
                    && s["rules"].as_array().is_some_and(|r| r.iter().any(|x| x.as_str().unwrap_or("").contains(&format!("from {addr} "))))
            })
        });
    }

    /// The host's IPv4 rules and routes of all tables, as `ip` prints them.
    pub fn routing_dump(&self) -> String {
        self.host_ok(&["ip", "-4", "rule"]) + &self.host_ok(&["ip", "-4", "route", "show", "table", "all"])
    }
}

/// What a user would look at for ethK with address `addr`.
#[derive(Debug)]
pub struct Outcome {
    /// `curl --interface ADDR`: the source the server saw, and the interfaces the request left by.
    pub by_addr: (Option<String>, Vec<String>),
    /// `curl --interface ethK`: the same.
    pub by_name: (Option<String>, Vec<String>),
    /// A client on the internet asks ADDR: the address that answered, and where the reply left.
    pub served: (Option<String>, Vec<String>),
    /// ADDR sent to another interface's MAC was answered (a weak host accepts it).
    pub wrong_interface_accepted: bool,
    /// Interfaces that answered ARP for ADDR.
    pub arp_repliers: Vec<String>,
}

impl Outcome {
    /// Each strong-host requirement this outcome breaks, in words.
    /// What was seen, in one line: the evidence behind a PASS.
    pub fn evidence(&self, addr: &str) -> String {
        let via = |out: &[String]| if out.is_empty() { "nothing".to_string() } else { out.join("+") };
        let seen = |s: &Option<String>| s.clone().unwrap_or_else(|| "nothing".into());
        format!(
            "curl --interface {addr}: server saw {} via {}; by name: {} via {}; {addr} asked: {} answered, reply via {}; \
             wrong interface: {}; ARP answered by {}",
            seen(&self.by_addr.0),
            via(&self.by_addr.1),
            seen(&self.by_name.0),
            via(&self.by_name.1),
            seen(&self.served.0),
            via(&self.served.1),
            if self.wrong_interface_accepted { "accepted" } else { "dropped" },
            via(&self.arp_repliers)
        )
    }

    pub fn failures(&self, k: usize, addr: &str) -> Vec<String> {
        let e = vec![format!("eth{k}")];
        let mut f = Vec::new();
        for (what, (seen, out)) in
            [(format!("curl --interface {addr}"), &self.by_addr), (format!("curl --interface eth{k}"), &self.by_name)]
        {
            if seen.as_deref() != Some(addr) || *out != e {
                f.push(format!("{what}: server saw {}, packets left by {}", seen.as_deref().unwrap_or("nothing (failed)"), out.join("+")));
            }
        }
        if self.served.0.as_deref() != Some(addr) || self.served.1 != e {
            f.push(format!(
                "request to {addr}: answered by {}, reply left by {}",
                self.served.0.as_deref().unwrap_or("nobody"),
                self.served.1.join("+")
            ));
        }
        if self.wrong_interface_accepted {
            f.push(format!("{addr} reached through another interface was accepted"));
        }
        if self.arp_repliers != e {
            f.push(format!("ARP for {addr} answered by {}", self.arp_repliers.join("+")));
        }
        f
    }
}

impl Lab {
    pub fn evaluate(&self, k: usize, addr: &str) -> Outcome {
        let curl = |bind: &str| {
            self.reset_counters();
            let seen = self.curl_from_host(bind);
            (seen, self.nonzero("inet", "web_"))
        };
        let by_addr = curl(addr);
        let by_name = curl(&format!("eth{k}"));
        self.reset_counters();
        let served = (self.curl_to_host("inet", addr), self.nonzero("inet", "srv_"));
        let wrong_interface_accepted = self.wrong_interface_probe(addr, (k + 1) % self.n);
        let arp_repliers = self.arp_repliers(addr);
        Outcome { by_addr, by_name, served, wrong_interface_accepted, arp_repliers }
    }

    /// ethK's global IPv6 addresses that are ready to use (DAD done), kernel order.
    pub fn global6(&self, k: usize) -> Vec<String> {
        let out = self.host_ok(&["ip", "-j", "-6", "addr", "show", "dev", &format!("eth{k}"), "scope", "global"]);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["tentative"] != true && a["dadfailed"] != true)
            .filter_map(|a| a["local"].as_str().map(str::to_string))
            .collect()
    }

    /// Replaces dnsmasq's IPv6 options (`ipv6_options`) and restarts it.
    pub fn set_ipv6(&mut self, options: Vec<String>) {
        self.ipv6 = options;
        self.reload_dhcp();
    }

    /// Waits until every interface has its address from DHCP (with or without stronghost).
    pub fn wait_addresses(&self, addrs: &[String]) {
        wait_for(Duration::from_secs(30), "DHCP addresses", || {
            let out = self.host_ok(&["ip", "-4", "-o", "addr"]);
            addrs.iter().all(|a| out.contains(&format!(" {a}/")))
        });
    }
}

impl Lab {
    /// Foreign state that stronghost must never touch: a rule inside its priority band, a route in a
    /// table inside its range (which must then not be allocated), and another nft table.
    pub fn seed_foreign(&self) {
        self.host_ok(&["ip", "rule", "add", "priority", "4105", "from", "192.0.2.77", "lookup", "100"]);
        self.host_ok(&["ip", "route", "add", "blackhole", "192.0.2.0/24", "table", "100"]);
        self.host_ok(&["ip", "route", "add", "blackhole", "192.0.2.99", "table", "4102"]);
        self.host_ok(&["nft", "add", "table", "inet", "foreign"]);
        self.host_ok(&["nft", "add", "chain", "inet", "foreign", "c", "{ type filter hook input priority 0; policy accept; }"]);
    }

    pub fn assert_foreign_intact(&self, step: &str) {
        let rules = self.host_ok(&["ip", "-4", "rule"]);
        assert!(rules.contains("4105:\tfrom 192.0.2.77 lookup 100"), "{step}: foreign rule gone:\n{rules}");
        let t100 = self.host_ok(&["ip", "route", "show", "table", "100"]);
        assert!(t100.contains("blackhole 192.0.2.0/24"), "{step}: foreign route gone");
        let t4102 = self.host_ok(&["ip", "route", "show", "table", "4102"]);
        assert_eq!(t4102.trim(), "blackhole 192.0.2.99", "{step}: table 4102 holds a foreign route and must stay as it was");
        assert!(self.host(&["nft", "list", "chain", "inet", "foreign", "c"]).status.success(), "{step}: foreign nft table gone");
    }

    /// Requirements 1-3 for interface k with address a: the server-seen source and the egress
    /// interface for `curl --interface` by address and by name, the interface replies leave by, the
    /// wrong-interface drop, and who answers ARP.
    pub fn assert_strong(&self, k: usize, a: &str) {
        let before = self.drops(&format!("eth{}", (k + 1) % self.n));
        let failures = self.evaluate(k, a).failures(k, a);
        assert!(failures.is_empty(), "eth{k} is not a strong host:\n{}", failures.join("\n"));
        assert!(
            self.drops(&format!("eth{}", (k + 1) % self.n)) > before,
            "the wrong-interface drop for {a} was not counted on eth{}",
            (k + 1) % self.n
        );
    }

    pub fn drops(&self, ifname: &str) -> u64 {
        self.status_of(ifname).unwrap()["wrong_interface_drops"].as_u64().unwrap()
    }
}

pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cleanup();
    }
}

impl Lab {
    fn cleanup(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut all: Vec<Child> = self.children.drain(..).map(|(_, c)| c).collect();
        all.extend(self.dnsmasq.take());
        for c in all.iter_mut() {
            let _ = c.kill();
        }
        for c in all.iter_mut() {
            let _ = c.wait();
        }
        // Daemons started by the stacks themselves (ifup's dhclient, ...) are not our children:
        // end every process still inside the lab's namespaces, and nothing else.
        for ns in &self.namespaces {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
        }
        if let Some(mut h) = self.holder.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).stderr(Stdio::null()).status();
        }
        if std::env::var_os("STRONGHOST_KEEP_LAB").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
