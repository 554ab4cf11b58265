//! The pages in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/browser/*.mjs`), against real daemons (the built binary, libp2p on
//! 127.0.0.1 only, no bootstrap peers).
//!
//! - `chat.mjs`: the chat example on two daemons: host on A, join from B with the
//!   connect string, messages both ways, leave, rejoin, close. Screenshots in
//!   `target/browser/`.
//! - `legacy.mjs`: a page written for the original's callback API
//!   (`tests/browser/legacy/legacy.html`, served with `-files`) gets hello and ident,
//!   listens, and accepts a connection from a page on another daemon.
//!
//! The first run installs what is missing: `apt-get install chromium` (as root) when
//! `/usr/bin/chromium` is absent, and `npm ci` in `tests/browser/` (playwright-core
//! only; it never downloads a browser). Every step runs under a timeout.

#[path = "browser/daemon.rs"]
mod daemon;

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use daemon::{BinDaemon, Options};

const CHROMIUM: &str = "/usr/bin/chromium";
/// One script (it bounds itself to 60 s; this is the backstop).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `command` to its end within `timeout`; kills it past that. Returns whether it
/// succeeded and what it printed (stdout then stderr).
fn run_bounded(mut command: Command, timeout: Duration) -> (bool, String) {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let pipe = |mut p: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = p.read_to_string(&mut text);
            text
        })
    };
    let out = pipe(Box::new(child.stdout.take().unwrap()));
    let err = pipe(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => (status.success(), text),
        None => (false, format!("{text}\n(killed: {what} ran past {timeout:?})")),
    }
}

/// Installs Chromium and playwright-core if they are missing; once per test run.
fn prepare() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if !Path::new(CHROMIUM).exists() {
            for (args, minutes) in [(&["update"][..], 5), (&["install", "-y", "chromium"][..], 15)]
            {
                let mut apt = Command::new("apt-get");
                apt.args(args).env("DEBIAN_FRONTEND", "noninteractive");
                let (ok, output) = run_bounded(apt, Duration::from_secs(60 * minutes));
                if !ok {
                    return Err(format!(
                        "{CHROMIUM} is missing and `apt-get {}` failed (the browser tests need \
                         Debian's chromium package; run as root or install it by hand):\n{output}",
                        args.join(" ")
                    ));
                }
            }
            if !Path::new(CHROMIUM).exists() {
                return Err(format!("apt-get installed chromium but {CHROMIUM} is still missing"));
            }
        }
        let dir = root().join("tests/browser");
        if !dir.join("node_modules/playwright-core").exists() {
            let mut npm = Command::new("npm");
            npm.args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir);
            let (ok, output) = run_bounded(npm, Duration::from_secs(300));
            if !ok {
                return Err(format!("`npm ci` in tests/browser failed:\n{output}"));
            }
        }
        Ok(())
    });
    if let Err(e) = ready {
        panic!("{e}");
    }
}

/// Runs `node tests/browser/<script> <args>` and fails the test with its output unless
/// it succeeds. One browser at a time: the machine may be small.
fn node_script(script: &str, args: &[String]) {
    static ONE_BROWSER: Mutex<()> = Mutex::new(());
    prepare();
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let shots = root().join("target/browser");
    let mut node = Command::new("node");
    node.arg(root().join("tests/browser").join(script))
        .args(args)
        .current_dir(root())
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", CHROMIUM);
    let (ok, output) = run_bounded(node, SCRIPT_TIMEOUT);
    eprintln!("node {script}:\n{output}");
    assert!(ok, "the browser script {script} failed:\n{output}");
    assert!(output.contains("ok: "), "{script} did not report success:\n{output}");
}

fn daemon(extra: &[&str]) -> BinDaemon {
    let mut args = vec!["-nobrowse"];
    args.extend_from_slice(extra);
    BinDaemon::start(Options::new(&args))
}

#[test]
fn chat_works_between_two_daemons_in_chromium() {
    let a = daemon(&[]);
    let b = daemon(&[]);
    node_script("chat.mjs", &[a.url(""), b.url("")]);
    for shot in ["chat-host.png", "chat-guest.png", "chat-host-phone.png", "chat-guest-phone.png"] {
        let path = root().join("target/browser").join(shot);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "screenshot {} is missing or empty", path.display());
    }
}

#[test]
fn a_page_for_the_original_callback_api_runs_unchanged() {
    // Served live from the test folder (and protocol.js from html/), not embedded.
    let legacy = daemon(&["-files", "tests/browser/legacy", "-files", "html"]);
    let other = daemon(&[]);
    node_script("legacy.mjs", &[legacy.url(""), other.url("")]);
}
