//! A network lab made of Linux network namespaces, for `tests/netns.rs`.
//!
//! ```text
//!   root namespace (this test)            inet namespace: bridge br0, 11.0.0.0/24
//!     | management veths, one /30 each      |-- P   11.0.0.1        (public hosts)
//!     | (172.31.x.y; connected route only)  |-- Q   11.0.0.2
//!     v                                     |-- R1  11.0.0.11 (WAN) -- br0 10.1.0.1/24 -- D1 .2, D1b .3
//!   each daemon's HTTP/WebSocket port       `-- R2  11.0.0.12 (WAN) -- br0 10.2.0.1/24 -- D2 .2
//! ```
//!
//! The routers masquerade their LAN behind their WAN address and route nothing else:
//! no namespace has a route out of the lab (the routers and public hosts have only their
//! connected subnets, the NATed hosts a default route via their router), and a
//! management veth carries only its own /30. 11.0.0.0/24 looks globally routable on
//! purpose (AutoNAT ignores private addresses), but it exists only inside the lab.
//!
//! Everything is named `l2w<pid><tag>-…`, so concurrent tests and runs never collide;
//! [`Lab`]'s `Drop` kills the daemons and deletes the namespaces, also on panic, and a
//! new run first removes what a killed earlier run left behind.

use std::{
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, SocketAddr},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc, Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use base64::Engine as _;
use libp2p::{identity::Keypair, multiaddr::Protocol, Multiaddr, PeerId};

/// Said when the lab cannot be built here (the test then passes without running).
pub const SKIP_HINT: &str = "the loopback versions of these scenarios are in tests/reach.rs";

/// Every lab name starts with this, then the pid of the test process.
const NAME_PREFIX: &str = "l2w";

/// Runs a command; its stdout, or an error naming the command and its stderr.
fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs a setup command that must work once namespaces do.
fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("lab setup: {e}");
    }
}

/// Deletes namespaces left by earlier runs of this file that were killed before their
/// `Drop` ran (their test process is gone), with any daemon still inside. Also takes
/// names carrying this process's pid: none of this process's labs exists yet.
fn remove_stale_labs() {
    let Ok(list) = run(&["ip", "netns", "list"]) else { return };
    let own = std::process::id().to_string();
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else { continue };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if pid.is_empty() || (pid != own && std::path::Path::new(&format!("/proc/{pid}")).exists())
        {
            continue;
        }
        if let Ok(pids) = run(&["ip", "netns", "pids", name]) {
            for pid in pids.split_whitespace() {
                let _ = run(&["kill", "-KILL", pid]);
            }
        }
        let _ = run(&["ip", "netns", "del", name]);
    }
}

/// The iptables binary that can masquerade inside a namespace here, installing the
/// `iptables` package first if there is none. Decided once per test process.
pub fn iptables() -> Result<&'static str, String> {
    static CHOSEN: OnceLock<Result<&'static str, String>> = OnceLock::new();
    CHOSEN.get_or_init(find_iptables).clone()
}

fn find_iptables() -> Result<&'static str, String> {
    const CANDIDATES: [&str; 3] = ["iptables-nft", "iptables-legacy", "iptables"];
    let installed = |c: &str| run(&[c, "--version"]).is_ok();
    if !CANDIDATES.iter().any(|c| installed(c)) {
        eprintln!("netns lab: iptables is missing; installing it with apt-get");
        run(&["apt-get", "update", "-qq"])?;
        let out = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "iptables"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("apt-get install iptables: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "apt-get install iptables failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    // Which one works inside a namespace depends on the kernel: try them in a scratch one.
    let probe = format!("{NAME_PREFIX}{}-probe", std::process::id());
    let _ = run(&["ip", "netns", "del", &probe]);
    run(&["ip", "netns", "add", &probe])?;
    let mut errors = Vec::new();
    let mut chosen = None;
    for candidate in CANDIDATES.iter().copied().filter(|c| installed(c)) {
        let rule = ["-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE"];
        let mut args = vec!["ip", "netns", "exec", &probe, candidate];
        args.extend(rule);
        match run(&args) {
            Ok(_) => {
                chosen = Some(candidate);
                break;
            }
            Err(e) => errors.push(e),
        }
    }
    let _ = run(&["ip", "netns", "del", &probe]);
    match chosen {
        Some(c) => {
            eprintln!("netns lab: masquerading with {c}");
            Ok(c)
        }
        None => Err(format!("no iptables variant can masquerade in a namespace: {errors:?}")),
    }
}

/// A host of the lab: a namespace with an address on the lab's network and a
/// management address the test reaches from the root namespace.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub mgmt: Ipv4Addr,
}

/// A NAT router: its namespace, WAN address and LAN prefix (`10.N.0.0/24`).
#[derive(Debug, Clone)]
pub struct Router {
    pub ns: String,
    pub wan: Ipv4Addr,
    lan: u8,
}

/// A daemon running in a host of the lab.
#[derive(Debug, Clone)]
pub struct Daemon {
    pub name: String,
    pub host: Host,
    pub peer_id: PeerId,
    /// Its HTTP/WebSocket address (a management address).
    pub http: SocketAddr,
}

impl Daemon {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/libp2p", self.http)
    }

    /// Its TCP listen address with `/p2p/<peer id>`: what `-peer` and `--relay-via` take.
    pub fn tcp_addr(&self) -> Multiaddr {
        self.tcp().with(Protocol::P2p(self.peer_id))
    }

    pub fn tcp(&self) -> Multiaddr {
        format!("/ip4/{}/tcp/4001", self.host.ip).parse().unwrap()
    }

    pub fn quic(&self) -> Multiaddr {
        format!("/ip4/{}/udp/4001/quic-v1", self.host.ip).parse().unwrap()
    }

    /// The `/addrs/` connect string naming its lab addresses.
    pub fn connect_string(&self) -> String {
        libp2p_websocket::protocol::ConnectTarget {
            peer: self.peer_id,
            addrs: vec![self.tcp(), self.quic()],
        }
        .to_connect_string()
    }
}

struct Running {
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

/// Builds the lab and tears it down on drop.
pub struct Lab {
    prefix: String,
    inet: String,
    namespaces: Vec<String>,
    root_links: Vec<String>,
    daemons: Vec<Running>,
    iptables: &'static str,
}

/// Hands out management /30s, unique within this process and (by the pid) most likely
/// across processes: subnet k is 172.31.(k / 64).(k % 64 * 4)/30.
fn next_mgmt_subnet() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 32;
    let k = (std::process::id() % 512) * 32 + n;
    Ipv4Addr::new(172, 31, (k / 64) as u8, ((k % 64) * 4) as u8)
}

impl Lab {
    /// A lab with its fake internet (the `inet` namespace and its bridge), or why there
    /// can be none here. `tag` (one letter or digit) tells this test's lab from others.
    pub fn new(tag: char) -> Result<Self, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        run(&["ip", "-V"]).map_err(|e| format!("no `ip` command: {e}"))?;
        static STALE: OnceLock<()> = OnceLock::new();
        STALE.get_or_init(remove_stale_labs);
        let prefix = format!("{NAME_PREFIX}{}{tag}", std::process::id());
        let inet = format!("{prefix}-inet");
        run(&["ip", "netns", "add", &inet])?;
        let mut lab = Self {
            prefix,
            inet: inet.clone(),
            namespaces: vec![inet.clone()],
            root_links: Vec::new(),
            daemons: Vec::new(),
            iptables: "iptables",
        };
        lab.iptables = iptables()?;
        must(&["ip", "-n", &inet, "link", "set", "lo", "up"]);
        must(&["ip", "-n", &inet, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &inet, "link", "set", "br0", "up"]);
        Ok(lab)
    }

    fn add_ns(&mut self, short: &str) -> String {
        let ns = format!("{}-{short}", self.prefix);
        must(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A veth from `bridge_ns`'s `br0` (port `port`) to `ns`'s `dev`, with `addr` on `dev`.
    fn attach(&self, bridge_ns: &str, port: &str, ns: &str, dev: &str, addr: &str) {
        must(&[
            "ip", "-n", bridge_ns, "link", "add", port, "type", "veth", "peer", "name", dev,
            "netns", ns,
        ]);
        must(&["ip", "-n", bridge_ns, "link", "set", port, "master", "br0", "up"]);
        must(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        must(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }

    /// A management veth from the root namespace to `ns`: root side .1, host side .2.
    fn management(&mut self, ns: &str) -> Ipv4Addr {
        let base = next_mgmt_subnet().octets();
        let root_ip = Ipv4Addr::new(base[0], base[1], base[2], base[3] + 1);
        let host_ip = Ipv4Addr::new(base[0], base[1], base[2], base[3] + 2);
        let link = format!("{}m{}", self.prefix, self.root_links.len());
        assert!(link.len() <= 15, "interface name {link} too long");
        must(&["ip", "link", "add", &link, "type", "veth", "peer", "name", "mgmt", "netns", ns]);
        self.root_links.push(link.clone());
        must(&["ip", "addr", "add", &format!("{root_ip}/30"), "dev", &link]);
        must(&["ip", "link", "set", &link, "up"]);
        must(&["ip", "-n", ns, "addr", "add", &format!("{host_ip}/30"), "dev", "mgmt"]);
        must(&["ip", "-n", ns, "link", "set", "mgmt", "up"]);
        host_ip
    }

    /// A host on the fake internet at `11.0.0.<octet>`, with no route beyond it.
    pub fn public_host(&mut self, name: &str, octet: u8) -> Host {
        let ns = self.add_ns(name);
        let ip = Ipv4Addr::new(11, 0, 0, octet);
        self.attach(&self.inet, &format!("v{name}"), &ns, "eth0", &format!("{ip}/24"));
        let mgmt = self.management(&ns);
        Host { name: name.into(), ns, ip, mgmt }
    }

    /// A NAT router at `11.0.0.<wan_octet>` masquerading the LAN `10.<lan>.0.0/24`.
    pub fn router(&mut self, name: &str, wan_octet: u8, lan: u8) -> Router {
        let ns = self.add_ns(name);
        let wan = Ipv4Addr::new(11, 0, 0, wan_octet);
        self.attach(&self.inet, &format!("v{name}"), &ns, "wan", &format!("{wan}/24"));
        must(&["ip", "-n", &ns, "link", "add", "br0", "type", "bridge"]);
        // Flood multicast (mDNS) to every port, querier or not.
        must(&["ip", "-n", &ns, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"]);
        must(&["ip", "-n", &ns, "addr", "add", &format!("10.{lan}.0.1/24"), "dev", "br0"]);
        must(&["ip", "-n", &ns, "link", "set", "br0", "up"]);
        must(&["ip", "netns", "exec", &ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let nat = ["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"];
        // Like a home router, drop (not refuse) what nobody inside asked for: a hole
        // punch's first packet from outside is lost instead of resetting the attempt.
        let drop =
            ["-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"];
        for rule in [&nat[..], &drop[..]] {
            let mut args = vec!["ip", "netns", "exec", &ns, self.iptables];
            args.extend(rule);
            must(&args);
        }
        Router { ns, wan, lan }
    }

    /// A host at `10.<lan>.0.<octet>` on `router`'s LAN, its default route via the router.
    pub fn nat_host(&mut self, router: &Router, name: &str, octet: u8) -> Host {
        let ns = self.add_ns(name);
        let ip = Ipv4Addr::new(10, router.lan, 0, octet);
        self.attach(&router.ns, &format!("v{name}"), &ns, "eth0", &format!("{ip}/24"));
        let gateway = format!("10.{}.0.1", router.lan);
        must(&["ip", "-n", &ns, "route", "add", "default", "via", &gateway]);
        let mgmt = self.management(&ns);
        Host { name: name.into(), ns, ip, mgmt }
    }

    /// Runs a UPnP IGD on `router` (Debian's `miniupnpd-nftables`, installed with apt
    /// when missing), answering its LAN and mapping ports of its WAN address in an
    /// nftables table of its own. Stops with the lab; its log is dumped with the others.
    pub fn upnp_gateway(&mut self, router: &Router) -> Result<(), String> {
        if run(&["miniupnpd", "--version"]).is_err() || run(&["nft", "--version"]).is_err() {
            eprintln!("netns lab: installing miniupnpd-nftables and nftables with apt-get");
            run(&["apt-get", "update", "-qq"])?;
            let out = Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(["miniupnpd-nftables", "nftables"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("apt-get install miniupnpd-nftables: {e}"))?;
            if !out.status.success() {
                let why = String::from_utf8_lossy(&out.stderr);
                return Err(format!("apt-get install miniupnpd-nftables: {}", why.trim()));
            }
        }
        let dir = std::env::temp_dir().join(format!("{}-upnp", router.ns));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // The hooks miniupnpd adds its rules to: a forward chain that accepts, and NAT
        // chains for the port forwards.
        let rules = dir.join("miniupnpd.nft");
        std::fs::write(
            &rules,
            "table inet miniupnpd {\n\
             chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }\n\
             chain miniupnpd { }\n\
             chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }\n\
             chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }\n\
             chain prerouting_miniupnpd { }\n\
             chain postrouting_miniupnpd { }\n\
             }\n",
        )
        .map_err(|e| e.to_string())?;
        run(&["ip", "netns", "exec", &router.ns, "nft", "-f", rules.to_str().unwrap()])?;
        let conf = dir.join("miniupnpd.conf");
        let lan = format!("10.{}.0.0/24", router.lan);
        std::fs::write(
            &conf,
            format!(
                "ext_ifname=wan\nlistening_ip=br0\nport=0\nenable_upnp=yes\nenable_natpmp=yes\n\
                 secure_mode=yes\nsystem_uptime=yes\nnotify_interval=30\n\
                 uuid=3b8e2a3c-1f4e-4c55-9d7a-2c1b6d0e5f01\n\
                 upnp_table_name=miniupnpd\nupnp_nat_table_name=miniupnpd\n\
                 upnp_forward_chain=miniupnpd\nupnp_nat_chain=prerouting_miniupnpd\n\
                 upnp_nat_postrouting_chain=postrouting_miniupnpd\n\
                 allow 1024-65535 {lan} 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let pid = dir.join("miniupnpd.pid");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &router.ns, "miniupnpd", "-d", "-f"])
            .arg(&conf)
            .arg("-P")
            .arg(&pid)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("miniupnpd: {e}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let name = format!("miniupnpd on {}", router.ns);
        self.daemons.push(Running { name, child, log });
        Ok(())
    }

    /// What the daemon `name` logged so far.
    pub fn log_of(&self, name: &str) -> String {
        self.daemons
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.log.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Runs `ip netns exec <host> args…` and returns its stdout.
    pub fn exec(&self, host: &Host, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &host.ns];
        all.extend(args);
        run(&all).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Whether a TCP connection from `host` to `ip:port` opens within 3 s.
    pub fn tcp_reaches(&self, host: &Host, ip: Ipv4Addr, port: u16) -> bool {
        let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
        run(&["ip", "netns", "exec", &host.ns, "timeout", "3", "bash", "-c", &script]).is_ok()
    }

    /// Starts the daemon in `host` with a new identity, listening on TCP and QUIC port
    /// 4001 of the host's lab address, serving HTTP on its management address, with no
    /// bootstrap peers but those in `flags`. Waits until it serves.
    pub fn daemon(&mut self, host: &Host, flags: &[&str]) -> Daemon {
        let keypair = Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id();
        let key = base64::engine::general_purpose::STANDARD
            .encode(keypair.to_protobuf_encoding().expect("ed25519 encodes"));
        let mgmt = host.mgmt.to_string();
        let tcp = format!("/ip4/{}/tcp/4001", host.ip);
        let quic = format!("/ip4/{}/udp/4001/quic-v1", host.ip);
        let mut args = vec![
            "netns",
            "exec",
            &host.ns,
            env!("CARGO_BIN_EXE_libp2p-websocket"),
            // Never the default bootstrap list: it is on the internet.
            "-nopeers",
            "-nobrowse",
            "-addr",
            &mgmt,
            "-port",
            "0",
            "-key",
            &key,
            "-listen",
            &tcp,
            "-listen",
            &quic,
        ];
        args.extend(flags);
        let log_filter = std::env::var("NETNS_RUST_LOG")
            .unwrap_or_else(|_| "info,libp2p_websocket=debug".into());
        let mut child = Command::new("ip")
            .args(&args)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ip netns exec");
        let log = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((host, port)) = libp2p_websocket::ready_address(&line) {
                    let _ = url_tx.send(format!("{host}:{port}"));
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str("stderr: ");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let name = host.name.clone();
        self.daemons.push(Running { name: name.clone(), child, log: log.clone() });
        let hostport = url_rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| {
            std::thread::sleep(Duration::from_millis(200)); // let stderr arrive
            panic!(
                "daemon {name} did not log its URL within 20 s (flags {flags:?}); its log:\n{}",
                log.lock().unwrap()
            )
        });
        let port = hostport.rsplit(':').next().unwrap().parse::<u16>().expect("a port");
        Daemon { name, host: host.clone(), peer_id, http: SocketAddr::new(host.mgmt.into(), port) }
    }

    /// Prints the tail of every daemon's log (and where the whole logs are).
    pub fn dump_logs(&self) {
        let dir = std::env::temp_dir().join(format!("{}-logs", self.prefix));
        let _ = std::fs::create_dir_all(&dir);
        for daemon in &self.daemons {
            let log = daemon.log.lock().unwrap().clone();
            let path = dir.join(format!("{}.log", daemon.name));
            let _ = std::fs::write(&path, &log);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(120)..];
            eprintln!(
                "===== daemon {} ({} lines, all in {}) =====\n{}",
                daemon.name,
                lines.len(),
                path.display(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for daemon in &mut self.daemons {
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
        }
        if std::thread::panicking() || std::env::var_os("NETNS_LOGS").is_some() {
            self.dump_logs();
        }
        for link in &self.root_links {
            let _ = run(&["ip", "link", "del", link]);
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = run(&["ip", "netns", "del", ns]) {
                eprintln!("netns lab teardown: {e}");
            }
        }
    }
}
