//! The real `libp2p-websocket` binary, run as a child process for tests
//! (`tests/pages.rs`, `tests/browser.rs` include this file with `#[path]`).
//!
//! Every daemon started here gets `-nopeers -nomdns -listen /ip4/127.0.0.1/tcp/0 -port 0`, so it
//! never dials the public bootstrap peers nor multicasts on the LAN: its traffic stays on loopback. Its
//! stdout and stderr are collected line by line; the HTTP port is read from the line
//! that logs `url=http://localhost:PORT/`. Every wait is bounded.
#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

/// How long a daemon may take to log its URL.
pub const STARTUP: Duration = Duration::from_secs(30);

/// The path of the daemon binary cargo built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_libp2p-websocket"))
}

/// Lines a child printed, shared with the threads reading its pipes.
#[derive(Default)]
struct Log {
    lines: Mutex<(Vec<String>, usize)>, // (lines, pipes closed)
    changed: Condvar,
}

impl Log {
    fn collect(self: &Arc<Self>, pipe: impl Read + Send + 'static, echo: &'static str) {
        let log = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{echo}] {line}");
                log.lines.lock().unwrap().0.push(line);
                log.changed.notify_all();
            }
            log.lines.lock().unwrap().1 += 1;
            log.changed.notify_all();
        });
    }

    /// The first line for which `pick` returns something, waiting up to `timeout`.
    /// `None` if the time runs out or both pipes close first.
    fn wait_for<T>(&self, timeout: Duration, pick: impl Fn(&str) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lines.lock().unwrap();
        loop {
            if let Some(found) = guard.0.iter().find_map(|l| pick(l)) {
                return Some(found);
            }
            let now = Instant::now();
            if guard.1 >= 2 || now >= deadline {
                return None;
            }
            guard = self.changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().0.join("\n")
    }
}

/// How to start a daemon.
pub struct Options {
    /// Flags after the mandatory loopback ones (e.g. `-nobrowse`, `-files DIR`).
    pub args: Vec<String>,
    /// The working directory (default: the crate root).
    pub dir: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The binary to run (default: [`binary`]).
    pub program: Option<PathBuf>,
}

impl Options {
    pub fn new(args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|a| a.to_string()).collect(),
            dir: None,
            env: Vec::new(),
            program: None,
        }
    }

    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn program(mut self, program: &Path) -> Self {
        self.program = Some(program.to_path_buf());
        self
    }
}

/// A running daemon process; killed when dropped.
pub struct BinDaemon {
    child: Child,
    log: Arc<Log>,
    /// The HTTP port it serves on (127.0.0.1).
    pub port: u16,
}

impl BinDaemon {
    /// Starts the daemon and waits until it logs the URL it serves.
    pub fn start(options: Options) -> Self {
        let (mut child, log) = spawn(options);
        let port = log.wait_for(STARTUP, parse_port);
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the daemon did not log its url= line within {STARTUP:?}; it printed:\n{}",
                log.text()
            );
        };
        Self { child, log, port }
    }

    /// `http://127.0.0.1:PORT/PAGE`.
    pub fn url(&self, page: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, page.trim_start_matches('/'))
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Waits up to `timeout` for a line of its output containing every one of `parts`.
    pub fn wait_for_line(&self, parts: &[&str], timeout: Duration) -> Option<String> {
        self.log.wait_for(timeout, |l| parts.iter().all(|p| l.contains(p)).then(|| l.to_string()))
    }

    /// Waits up to `timeout` for the first line of its output for which `pick` returns
    /// something.
    pub fn wait_for<T>(&self, timeout: Duration, pick: impl Fn(&str) -> Option<T>) -> Option<T> {
        self.log.wait_for(timeout, pick)
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.log.text()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for BinDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the daemon to its end (for flags that make it exit at once), within `timeout`:
/// its exit code (`None`: killed by a signal) and everything it printed.
pub fn run_to_exit(options: Options, timeout: Duration) -> (Option<i32>, String) {
    let (mut child, log) = spawn(options);
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            // Both pipes close when the process ends; wait for the readers to finish.
            log.wait_for(Duration::from_secs(5), |_| None::<()>);
            return (status.code(), log.text());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon did not exit within {timeout:?}; it printed:\n{}", log.text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(options: Options) -> (Child, Arc<Log>) {
    let program = options.program.unwrap_or_else(binary);
    let mut command = Command::new(&program);
    command
        .args(["-nopeers", "-nomdns", "-listen", "/ip4/127.0.0.1/tcp/0", "-port", "0"])
        .args(&options.args)
        .current_dir(options.dir.unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .envs(options.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child =
        command.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let log = Arc::new(Log::default());
    log.collect(child.stdout.take().unwrap(), "daemon");
    log.collect(child.stderr.take().unwrap(), "daemon!");
    (child, log)
}

/// The port of the daemon's ready line (escape codes allowed).
pub fn parse_port(line: &str) -> Option<u16> {
    libp2p_websocket::ready_address(line).map(|(_, port)| port)
}

/// A fresh empty folder under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "libp2p-websocket-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path.canonicalize().unwrap())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
