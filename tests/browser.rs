//! The pages in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/browser/*.mjs`), against real daemons (the built binary, libp2p on
//! 127.0.0.1 only, no bootstrap peers).
//!
//! - `chat.mjs`: the chat example on two daemons: host on A, join from B with the
//!   connect string, a second guest on A itself (joined in-process), messages relayed
//!   to everyone, who joined and left, rejoin, close. Screenshots in `target/browser/`.
//! - `legacy.mjs`: a page written for the original's callback API
//!   (`tests/browser/legacy/legacy.html`, served with `-files`) gets hello and ident,
//!   listens, and accepts a connection from a page on another daemon.
//! - `game.mjs`: the game example, three players on two daemons connected with
//!   `-peer`: a game hosted on A is found through presence in the lobbies of a page on
//!   A and a page on B (no connect string), both join, everyone's moves reach everyone;
//!   a guest whose stream is held gets no state until it drains, then the newest only.
//! - `generations.mjs`: chat pages of the original's spring 2020 and July 2020
//!   generations (`tests/browser/generations/`, served with `-files`), each speaking its
//!   generation's bytes (Start, Hello, Identify), on two lazily started daemons per
//!   generation: host, join from the other daemon, chat both ways, Disconnect (done
//!   only on the Connection Closed of the closed stream), join again, chat again.
//!   The July pages name the TCP port their node listens on.
//! - `credit.mjs`: the credit extension between pages on two daemons (their own
//!   index.html, driving the embedded `/protocol.js`): a raw stream whose reader stops
//!   holds its writer well below the 16 MiB it writes, while a chat stream of the same
//!   sessions goes on; once the reader reads on, all 16 MiB arrive in order.
//! - `resume.mjs`: the resume extension on two daemons connected with `-peer`: a game
//!   (host on A, a player on B) and a chat (host on A, a guest on B) survive a 5 s cut
//!   of the B pages' network (a proxy in the script drops their WebSockets; Chromium's
//!   offline emulation does not break an open one): the player stays in the game, and
//!   numbered chat messages sent both ways across the cut arrive once each, in order.
//!   Then the host's game page reloads and takes its game's listener back; the player
//!   joins it again.
//! - `topics.mjs`: the game's states on a pubsub topic, three players on two daemons
//!   connected with `-peer`: the lobby topic brings the game's player count to both
//!   lobbies, the host publishes each state once and sends none on the guests' streams
//!   once they take them from the topic, everyone sees everyone's moves; a guest whose
//!   topic falls silent gets its stream back; a page without pubsub plays in the same
//!   game on its stream; a guest page reloaded (its session taken back, still
//!   subscribed) unsubscribes from the state topic.
//! - `dashboard.mjs`: `dashboard.html` on daemon A while two sessions of A run, one
//!   listening, one writing to a page on daemon B: it lists both sessions with their
//!   origin, B as a direct peer, the listened protocol, a rate and the chart, and
//!   updates without a reload; when the listener's page goes away, one session and one
//!   waiting for its page (resume). Screenshot `target/browser/dashboard.png`.
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

use daemon::{BinDaemon, Options, TempDir};

const CHROMIUM: &str = "/usr/bin/chromium";
/// One script (each bounds itself to 100 s at most; this is the backstop).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

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

/// Fails unless each screenshot is in `target/browser/` and not empty.
fn assert_shots(shots: &[&str]) {
    for shot in shots {
        let path = root().join("target/browser").join(shot);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "screenshot {} is missing or empty", path.display());
    }
}

#[test]
fn chat_works_between_two_daemons_in_chromium() {
    let a = daemon(&[]);
    let b = daemon(&[]);
    node_script("chat.mjs", &[a.url(""), b.url("")]);
    assert_shots(&[
        "chat-host.png",
        "chat-guest.png",
        "chat-host-phone.png",
        "chat-guest-phone.png",
        "chat-three.png",
    ]);
}

#[test]
fn a_held_stream_holds_only_itself_with_credit_in_chromium() {
    let a = daemon(&[]);
    let b = daemon(&[]);
    node_script("credit.mjs", &[a.url(""), b.url("")]);
    assert_shots(&["credit-a.png", "credit-b.png", "credit-done.png"]);
}

#[test]
fn the_dashboard_shows_two_sessions_and_a_transfer_in_chromium() {
    let a = daemon(&[]);
    let b = daemon(&[]);
    node_script("dashboard.mjs", &[a.url(""), b.url("")]);
    assert_shots(&["dashboard.png"]);
}

#[test]
fn a_page_for_the_original_callback_api_runs_unchanged() {
    // Served live from the test folder (and protocol.js from html/), not embedded.
    let legacy = daemon(&["-files", "tests/browser/legacy", "-files", "html"]);
    let other = daemon(&[]);
    node_script("legacy.mjs", &[legacy.url(""), other.url("")]);
}

/// How long a daemon started with a key may take to log its peer id and address, and
/// to connect to its `-peer`.
const NODE_UP: Duration = Duration::from_secs(20);

/// The peer id in a line like `... libp2p node started peer_id=12D3KooW... addresses=[...]`.
fn peer_id_in(line: &str) -> Option<String> {
    if !line.contains("libp2p node started") {
        return None;
    }
    let at = line.find("peer_id=")? + "peer_id=".len();
    let id: String = line[at..].chars().take_while(char::is_ascii_alphanumeric).collect();
    (!id.is_empty()).then_some(id)
}

/// The first `/ip4/127.0.0.1/tcp/PORT` (PORT not 0) in a line that logs the node's
/// addresses (`libp2p node started ... addresses=[...]` or `listening address=...`).
fn tcp_address_in(line: &str) -> Option<String> {
    const PREFIX: &str = "/ip4/127.0.0.1/tcp/";
    if !(line.contains("libp2p node started") || line.contains("listening")) {
        return None;
    }
    line.match_indices(PREFIX).find_map(|(at, _)| {
        let digits: String =
            line[at + PREFIX.len()..].chars().take_while(char::is_ascii_digit).collect();
        let port: u16 = digits.parse().ok().filter(|p| *p != 0)?;
        Some(format!("{PREFIX}{port}"))
    })
}

/// Daemons A and B for a two-daemon page test: A starts its node at launch (a key
/// file), so its peer id and TCP address are in its log before any page opens; B
/// dials it as its bootstrap peer. The temporary folder (their key files), A, B and
/// A's peer id.
fn two_connected_daemons(name: &str) -> (TempDir, BinDaemon, BinDaemon, String) {
    let dir = TempDir::new(name);
    let key_a = dir.path().join("a.key");
    let key_b = dir.path().join("b.key");
    let a = daemon(&["--key-file", key_a.to_str().unwrap()]);
    let peer_a = a
        .wait_for(NODE_UP, peer_id_in)
        .unwrap_or_else(|| panic!("A did not log its peer id; it printed:\n{}", a.output()));
    let addr_a = a
        .wait_for(NODE_UP, tcp_address_in)
        .unwrap_or_else(|| panic!("A did not log its TCP address; it printed:\n{}", a.output()));
    let peer = format!("{addr_a}/p2p/{peer_a}");
    let b = daemon(&["--key-file", key_b.to_str().unwrap(), "-peer", &peer]);
    assert!(
        b.wait_for_line(&["connected to bootstrap peer", &peer_a], NODE_UP).is_some(),
        "B did not connect to A at {peer}; it printed:\n{}",
        b.output()
    );
    (dir, a, b, peer_a)
}

#[test]
fn game_lobby_finds_games_across_two_daemons_in_chromium() {
    let (_dir, a, b, peer_a) = two_connected_daemons("game");
    node_script("game.mjs", &[a.url(""), b.url(""), peer_a]);
    assert_shots(&[
        "game-lobby.png",
        "game-host.png",
        "game-guest-local.png",
        "game-guest-remote.png",
        "game-phone.png",
    ]);
}

/// A TCP port in `range` free on 127.0.0.1 just now (tried from a point that differs
/// from run to run).
fn free_port_in(range: std::ops::Range<u16>) -> u16 {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    let (start, len) = (u32::from(range.start), u32::from(range.end - range.start));
    (0..len)
        .map(|i| (start + (seed % len + i * 97) % len) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .unwrap_or_else(|| panic!("no free TCP port on 127.0.0.1 in {range:?}"))
}

#[test]
fn chat_pages_of_the_originals_spring_and_july_2020_generations_run_in_chromium() {
    // Two lazily started daemons (no key) per generation: each page's Start starts its
    // own daemon's node, in its generation's layout. Pages served live, not embedded.
    let files = ["-files", "tests/browser/generations"];
    {
        let host = daemon(&files);
        let guest = daemon(&files);
        node_script("generations.mjs", &["spring".into(), host.url(""), guest.url("")]);
    }
    let host = daemon(&files);
    let guest = daemon(&files);
    // The pages' Start is [0][PORT:2] (no key). The host's port is below 8192: its first
    // byte is below 0x20, like a `str` length (the daemon used to read it as one: "KEY
    // length … exceeds message"). The guest's is above 32767: its first byte is not a
    // base64 character, so it is not read as key text.
    let (host_port, guest_port) = (free_port_in(2048..8192), free_port_in(32768..61000));
    node_script(
        "generations.mjs",
        &[
            "july".into(),
            host.url(""),
            guest.url(""),
            host_port.to_string(),
            guest_port.to_string(),
        ],
    );
    // The July Start's PORT became the node's TCP port (the pages saw it in Identify;
    // the daemon logs it when the node starts, or later as `listening address=...`).
    for (who, d, port) in [("host", &host, host_port), ("guest", &guest, guest_port)] {
        let address = format!("/ip4/127.0.0.1/tcp/{port}");
        let on_port = |line: &str| {
            (line.contains("libp2p node started") || line.contains("listening")).then_some(())?;
            line.match_indices(&address)
                .any(|(at, _)| {
                    !line[at + address.len()..].starts_with(|c: char| c.is_ascii_digit())
                })
                .then_some(())
        };
        assert!(
            d.wait_for(Duration::from_secs(5), on_port).is_some(),
            "the July {who} daemon's node did not listen on {address}; it printed:\n{}",
            d.output()
        );
    }
    assert_shots(&[
        "generations-spring-host.png",
        "generations-spring-guest.png",
        "generations-july-host.png",
        "generations-july-guest.png",
    ]);
}

#[test]
fn a_game_and_a_chat_survive_a_network_cut_and_a_reload_in_chromium() {
    let (_dir, a, b, peer_a) = two_connected_daemons("resume");
    node_script("resume.mjs", &[a.url(""), b.url(""), peer_a]);
    assert_shots(&["resume-cut.png", "resume-after.png", "resume-reload.png"]);
}

#[test]
fn game_states_go_on_a_pubsub_topic_across_two_daemons_in_chromium() {
    let (_dir, a, b, peer_a) = two_connected_daemons("topics");
    node_script("topics.mjs", &[a.url(""), b.url(""), peer_a]);
    assert_shots(&["topics-lobby.png", "topics-host.png", "topics-guest-remote.png"]);
}
