//! The orchestrator's side of the processes: spawning the daemon and the bench's own
//! roles, reading their lines under a deadline, their memory, and killing them on every
//! way out (drop, panic, a watchdog, the bench's own death).

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::process::CommandExt as _,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError},
        Mutex,
    },
    time::{Duration, Instant},
};

/// Pids of every child alive, for the watchdog.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The daemon binary, built by cargo for this bench.
pub const DAEMON: &str = env!("CARGO_BIN_EXE_libp2p-websocket");

/// One child process: a daemon or a role of this binary.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    fn spawn(name: &str, mut command: Command) -> Result<Self, String> {
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        // If the bench dies (even by SIGKILL) its children die with it. The flag is tied
        // to the spawning thread: only the main thread spawns.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        LIVE.lock().unwrap().push(child.id());
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Self { name: name.to_string(), child, stdin, lines })
    }

    /// Starts this bench binary in `role` with `key=value` arguments.
    pub fn role(name: &str, role: &str, args: &[(&str, String)]) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut command = Command::new(exe);
        command.arg("__role").arg(role);
        for (key, value) in args {
            command.arg(format!("{key}={value}"));
        }
        Self::spawn(name, command)
    }

    /// Starts the daemon on loopback only (`-nopeers`, libp2p on `listen`), with `extra`
    /// flags, and waits for the URL it logs.
    pub fn daemon(name: &str, listen: &[&str], extra: &[&str]) -> Result<(Self, u16), String> {
        let mut command = Command::new(DAEMON);
        command.args(["-nopeers", "-nomdns", "-nobrowse", "-port", "0", "-addr", "127.0.0.1"]);
        for addr in listen {
            assert!(addr.starts_with("/ip4/127.0.0.1/"), "the bench stays on loopback");
            command.args(["-listen", addr]);
        }
        command.args(extra).env("RUST_LOG", "info");
        let mut daemon = Self::spawn(name, command)?;
        let line = daemon.wait_line(|l| libp2p_websocket::ready_address(l).is_some(), secs(20))?;
        let (_, port) = libp2p_websocket::ready_address(&line)
            .ok_or_else(|| format!("{name}: no port in {line:?}"))?;
        Ok((daemon, port))
    }

    /// Waits for a line for which `pick` holds, skipping others (a daemon's log).
    pub fn wait_line(
        &mut self,
        pick: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pick(&line) => return Ok(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{}: nothing after {} s", self.name, timeout.as_secs()))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!("{} exited ({status})", self.name));
                }
            }
        }
    }

    /// Waits for the role's line starting with `word` and returns its `key=value` fields.
    /// A line `error ...` from the role is returned as the error.
    pub fn expect(&mut self, word: &str, timeout: Duration) -> Result<Fields, String> {
        let line = self.wait_line(
            |l| l.split_whitespace().next().is_some_and(|w| w == word || w == "error"),
            timeout,
        )?;
        if let Some(reason) = line.strip_prefix("error ") {
            return Err(format!("{}: {reason}", self.name));
        }
        Ok(Fields::parse(&line))
    }

    /// Sends a command line to the role.
    pub fn tell(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: {e}", self.name))
    }

    /// CPU seconds the process has used.
    pub fn cpu_secs(&self) -> Result<f64, String> {
        cpu_secs_of(self.child.id())
            .ok_or_else(|| format!("{}: cannot read its CPU time", self.name))
    }

    /// `(VmRSS, VmHWM)` in KiB.
    pub fn memory(&self) -> Result<(u64, u64), String> {
        memory_of(self.child.id()).ok_or_else(|| format!("{}: cannot read its memory", self.name))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        LIVE.lock().unwrap().retain(|p| *p != pid);
    }
}

/// `key=value` words of a role's line.
pub struct Fields(HashMap<String, String>);

impl Fields {
    pub fn parse(line: &str) -> Self {
        Self(
            line.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    pub fn str(&self, key: &str) -> Result<&str, String> {
        self.0.get(key).map(String::as_str).ok_or_else(|| format!("no {key}= in the answer"))
    }

    pub fn num(&self, key: &str) -> Result<f64, String> {
        self.str(key)?.parse().map_err(|_| format!("{key}= is not a number"))
    }
}

/// `(VmRSS, VmHWM)` of a process in KiB.
pub fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_secs_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// Kills every child and exits if the whole bench takes longer than `limit`.
pub fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("gateway bench: over its time limit of {} s; stopping", limit.as_secs());
        for pid in LIVE.lock().unwrap().iter() {
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
        std::process::exit(2);
    });
}

/// Raises this process's open-file limit (inherited by children) to at least `need`.
pub fn raise_fd_limit(need: u64) -> Result<u64, String> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if limit.rlim_cur >= need {
        return Ok(limit.rlim_cur);
    }
    if limit.rlim_max < need {
        return Err(format!(
            "the open-file limit is {} (hard {}); this bench needs {need}: raise it with \
             `ulimit -Hn {need}` (as root) or run with --quick",
            limit.rlim_cur, limit.rlim_max
        ));
    }
    limit.rlim_cur = limit.rlim_max;
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(limit.rlim_cur)
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
