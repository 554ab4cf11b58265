//! `cargo bench --bench gateway [-- --quick]`: the daemon beside direct rust-libp2p.
//!
//! On loopback, in one run: throughput (a WebSocket client of daemon A sends to a
//! WebSocket client listening on daemon B, framed and raw, over TCP and QUIC) next to
//! one direct rust-libp2p stream between two plain nodes; 64-byte round trips through
//! both daemons next to a direct stream echo; how many streams and sessions one daemon
//! holds and its memory for them; echo pipelines with at most W bytes in flight,
//! without and with the credit extension, alone and beside a stream whose remote never
//! reads, and the daemon's memory for credit streams (`pipeline.rs`); a topic's
//! fan-out to many sessions beside one stream per subscriber, and the daemon's memory
//! per subscription (`topics.rs`); and each daemon's peak RSS per run. `--only
//! metrics` (not in the default set) compares the throughput with the daemons'
//! metrics on and off (`metrics_cost.rs`).
//!
//! Every client, node and daemon is a process of its own (this binary re-executed in a
//! role, see `roles.rs`), so the daemon's figures are its own. Every wait has a
//! deadline, and every child dies with the bench.
//!
//! Flags: `--quick` (a few MiB, for CI), `--only
//! throughput,latency,streams,sessions,pipeline,topics,metrics`, `--bytes MIB`, `--runs N` (median of
//! N throughput, latency and pipeline runs). Without `--bench` (cargo test
//! --all-targets runs benches that way) it runs `--quick`.

mod harness;
mod metrics_cost;
mod pipeline;
mod roles;
mod topics;

use std::time::Duration;

use harness::{load_average, raise_fd_limit, secs, Fields, Proc};

const MIB: u64 = 1024 * 1024;
const TCP: &str = "/ip4/127.0.0.1/tcp/0";
const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";

/// How big a run is.
struct Size {
    bytes: u64,
    round_trips: usize,
    warmup: usize,
    /// Sessions × streams per session for the stream scale run, over `peers` peers.
    stream_sessions: usize,
    streams_per_session: usize,
    peers: usize,
    sessions: usize,
    /// Credit streams to a never-reading remote, in the pipeline part.
    hold_streams: usize,
    /// Subscriber sessions of a fan-out, messages timed (after a warm-up), and the
    /// paced round's messages per second, in the topics part.
    topic_sessions: usize,
    topic_messages: usize,
    topic_warmup: usize,
    topic_pace: usize,
    /// Idle sessions, and topics each subscribes to (the same ones for all; its own,
    /// within the daemon's default cap of 1,024 topics), for the memory per
    /// subscription.
    idle_sessions: usize,
    idle_topics: usize,
    idle_own_topics: usize,
    runs: usize,
}

impl Size {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                bytes: 4 * MIB,
                round_trips: 300,
                warmup: 30,
                stream_sessions: 4,
                streams_per_session: 50,
                peers: 4,
                sessions: 50,
                hold_streams: 20,
                topic_sessions: 10,
                topic_messages: 50,
                topic_warmup: 5,
                topic_pace: 200,
                idle_sessions: 10,
                idle_topics: 4,
                idle_own_topics: 4,
                runs: 1,
            }
        } else {
            // 10,000 streams: 10 sessions of 1,000, over 32 peers so that no peer gets
            // more than 313, under the daemon's default cap of 400 streams per peer.
            Self {
                bytes: 256 * MIB,
                round_trips: 10_000,
                warmup: 500,
                stream_sessions: 10,
                streams_per_session: 1000,
                peers: 32,
                sessions: 1000,
                hold_streams: 200,
                topic_sessions: 100,
                topic_messages: 2000,
                topic_warmup: 100,
                topic_pace: 200,
                idle_sessions: 100,
                idle_topics: 32,
                idle_own_topics: 10,
                runs: 1,
            }
        }
    }

    fn streams(&self) -> usize {
        self.stream_sessions * self.streams_per_session
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__role") {
        let role = args.get(2).cloned().unwrap_or_default();
        roles::main(&role, &args[3..]);
    }
    let flag = |name: &str| args.iter().any(|a| a == name);
    let value =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs benches without it.
    let quick = flag("--quick") || !flag("--bench");
    let mut size = Size::new(quick);
    if let Some(mib) = value("--bytes").and_then(|v| v.parse::<u64>().ok()) {
        size.bytes = mib * MIB;
    }
    if let Some(runs) = value("--runs").and_then(|v| v.parse::<usize>().ok()) {
        size.runs = runs.max(1);
    }
    let only = value("--only")
        .unwrap_or_else(|| "throughput,latency,streams,sessions,pipeline,topics".into());
    let wanted = |part: &str| only.split(',').any(|p| p == part);

    harness::watchdog(if quick { secs(10 * 60) } else { secs(45 * 60) });
    if let Err(e) = raise_fd_limit(size.sessions as u64 * 2 + 512) {
        eprintln!("gateway bench: {e}");
        std::process::exit(1);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile =
        if cfg!(debug_assertions) { "debug (numbers are not meaningful)" } else { "release" };
    let load_before = load_average();
    eprintln!(
        "gateway bench: {} run, {profile} build, {cores} cores, load average {load_before}",
        if quick { "quick" } else { "full" }
    );

    let mut table = Table::default();
    let mut peaks: Vec<Row> = Vec::new();
    let mut failed = false;

    if wanted("throughput") {
        for (transport, listen, frames) in
            [("TCP", TCP, true), ("TCP", TCP, false), ("QUIC", QUIC, true), ("QUIC", QUIC, false)]
        {
            let mode = if frames { "framed 64 KiB" } else { "raw" };
            let name = format!("throughput {transport} {mode} (MB/s)");
            eprintln!("- {name}");
            let gateway = median_of(size.runs, || throughput_gateway(&size, listen, frames, &[]));
            let direct = median_of(size.runs, || throughput_direct(&size, listen, frames));
            // CPU time is counted in 10 ms ticks: meaningless for a few MiB.
            let show_cpu = size.bytes >= 64 * MIB;
            failed |= table.throughput(&name, &gateway, &direct, show_cpu);
            peaks.push(peak_row(
                &format!("peak RSS, throughput {transport} {mode}"),
                &gateway,
                &direct,
            ));
        }
    }
    if wanted("latency") {
        eprintln!("- round trip 64 B");
        let gateway = median_of(size.runs, || latency_gateway(&size));
        let direct = median_of(size.runs, || latency_direct(&size));
        failed |= table.latency(&gateway, &direct);
        peaks.push(peak_row("peak RSS, round trips", &gateway, &direct));
    }
    if wanted("streams") {
        for frames in [true, false] {
            let mode = if frames { "framed" } else { "raw" };
            eprintln!("- {} concurrent {mode} streams", size.streams());
            let run = streams(&size, frames);
            failed |= table.streams(&size, mode, &run);
            peaks.push(peak_row(&format!("peak RSS, {mode} streams"), &run, &Err(String::new())));
        }
    }
    if wanted("sessions") {
        eprintln!("- {} concurrent sessions", size.sessions);
        let run = sessions(&size);
        failed |= table.sessions(&size, &run);
        peaks.push(peak_row("peak RSS, sessions", &run, &Err(String::new())));
    }
    if wanted("pipeline") {
        failed |= pipeline::run(&size, &mut table, &mut peaks);
    }
    if wanted("topics") {
        failed |= topics::run(&size, &mut table, &mut peaks);
    }
    if wanted("metrics") {
        failed |= metrics_cost::run(&size, &mut table);
    }

    table.rows.push(Row::section("daemon peak RSS per run (MiB; direct: the larger node)"));
    table.rows.extend(peaks);
    println!();
    println!(
        "libp2p-websocket gateway bench: {} run, {profile} build, {cores} cores, loopback",
        if quick { "quick" } else { "full" }
    );
    println!(
        "throughput: {} MiB per run in 64 KiB messages; round trips: {} of 64 B after {} warm-up; \
         median of {} run(s)",
        size.bytes / MIB,
        size.round_trips,
        size.warmup,
        size.runs
    );
    println!("load average before {load_before}, after {}", load_average());
    println!();
    table.print();
    if failed {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------
// Runs

/// What one run measured: the figures, and the daemons' (or direct nodes') peak RSS.
struct Measured {
    values: Vec<f64>,
    peak_kib: u64,
    /// CPU seconds per GB moved: the two daemons (gateway) or the two nodes (direct).
    cpu_per_gb: f64,
}

type Run = Result<Measured, String>;

/// Runs `f` `n` times and keeps the run with the median first value.
fn median_of(n: usize, mut f: impl FnMut() -> Run) -> Run {
    let mut runs = Vec::new();
    for _ in 0..n {
        runs.push(f()?);
    }
    runs.sort_by(|a, b| a.values[0].total_cmp(&b.values[0]));
    Ok(runs.swap_remove(runs.len() / 2))
}

fn ws_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/libp2p")
}

/// The longest a transfer of `bytes` may take (1 MB/s is a failure, not a figure).
fn transfer_timeout(bytes: u64) -> Duration {
    secs(60 + bytes / 1_000_000)
}

fn mb_per_s(bytes: u64, nanos: f64) -> f64 {
    bytes as f64 / (nanos / 1e9) / 1e6
}

/// Client A on daemon A → daemon A → daemon B → client B (listening on daemon B); both
/// daemons run with the `flags` given.
fn throughput_gateway(size: &Size, listen: &str, frames: bool, flags: &[&str]) -> Run {
    let (daemon_a, port_a) = Proc::daemon("daemon A", &[listen], flags)?;
    let (daemon_b, port_b) = Proc::daemon("daemon B", &[listen], flags)?;
    let common = [
        ("proto", "/bench/throughput/1".to_string()),
        ("frames", u8::from(frames).to_string()),
        ("bytes", size.bytes.to_string()),
    ];
    let mut receiver =
        Proc::role("client B", "ws-recv", &[&[("url", ws_url(port_b))][..], &common].concat())?;
    let peer = receiver.expect("ready", secs(60))?.str("peer")?.to_string();
    let mut sender = Proc::role(
        "client A",
        "ws-send",
        &[&[("url", ws_url(port_a)), ("peer", peer)][..], &common].concat(),
    )?;
    sender.expect("connected", secs(60))?;
    let cpu_before = daemon_a.cpu_secs()? + daemon_b.cpu_secs()?;
    sender.tell("go")?;
    let (result, done) = both(&mut sender, &mut receiver, transfer_timeout(size.bytes))?;
    check_bytes(&done, size.bytes)?;
    let gb = size.bytes as f64 / 1e9;
    let daemons = (daemon_a.cpu_secs()? + daemon_b.cpu_secs()? - cpu_before) / gb;
    let clients = (result.num("cpu_s")? + done.num("cpu_s")?) / gb;
    let messages = done.num("messages")?;
    eprintln!(
        "  gateway: {messages} Data messages to client B ({:.1} KiB on average); CPU s per GB: \
         daemons {daemons:.2}, WebSocket clients {clients:.2}",
        size.bytes as f64 / messages / 1024.0
    );
    let peak = daemon_a.memory()?.1.max(daemon_b.memory()?.1);
    Ok(Measured {
        values: vec![mb_per_s(size.bytes, result.num("nanos")?)],
        peak_kib: peak,
        cpu_per_gb: daemons,
    })
}

/// The same bytes over one stream between two plain rust-libp2p nodes.
fn throughput_direct(size: &Size, listen: &str, frames: bool) -> Run {
    let transport = if listen == QUIC { "quic" } else { "tcp" };
    let common = [
        ("proto", "/bench/throughput/1".to_string()),
        ("frames", u8::from(frames).to_string()),
        ("bytes", size.bytes.to_string()),
    ];
    let mut receiver = Proc::role(
        "direct receiver",
        "p2p-recv",
        &[&[("transport", transport.to_string())][..], &common].concat(),
    )?;
    let addr = receiver.expect("ready", secs(60))?.str("addr")?.to_string();
    let mut sender =
        Proc::role("direct sender", "p2p-send", &[&[("addr", addr)][..], &common].concat())?;
    sender.expect("connected", secs(60))?;
    sender.tell("go")?;
    let (result, done) = both(&mut sender, &mut receiver, transfer_timeout(size.bytes))?;
    check_bytes(&done, size.bytes)?;
    let peak = (result.num("hwm_kib")? as u64).max(done.num("hwm_kib")? as u64);
    let nodes = (result.num("cpu_s")? + done.num("cpu_s")?) / (size.bytes as f64 / 1e9);
    Ok(Measured {
        values: vec![mb_per_s(size.bytes, result.num("nanos")?)],
        peak_kib: peak,
        cpu_per_gb: nodes,
    })
}

/// The sender's `result` and the receiver's `done`; when the sender fails, the
/// receiver's own error (often the cause) is reported with it.
fn both(
    sender: &mut Proc,
    receiver: &mut Proc,
    timeout: Duration,
) -> Result<(Fields, Fields), String> {
    match sender.expect("result", timeout) {
        Ok(result) => Ok((result, receiver.expect("done", secs(60))?)),
        Err(e) => match receiver.expect("done", secs(2)) {
            Err(cause) => Err(format!("{e}; {cause}")),
            Ok(_) => Err(e),
        },
    }
}

fn check_bytes(done: &Fields, bytes: u64) -> Result<(), String> {
    let got = done.num("bytes")? as u64;
    if got != bytes {
        return Err(format!("{got} bytes arrived of {bytes}"));
    }
    Ok(())
}

fn rtt_args(size: &Size) -> Vec<(&'static str, String)> {
    vec![
        ("proto", "/bench/echo/1".to_string()),
        ("count", size.round_trips.to_string()),
        ("warmup", size.warmup.to_string()),
        ("size", "64".to_string()),
    ]
}

/// Client A → daemon A → daemon B → client B, which echoes, and back; TCP.
fn latency_gateway(size: &Size) -> Run {
    let (daemon_a, port_a) = Proc::daemon("daemon A", &[TCP], &[])?;
    let (daemon_b, port_b) = Proc::daemon("daemon B", &[TCP], &[])?;
    let mut echo = Proc::role(
        "client B",
        "ws-echo",
        &[("url", ws_url(port_b)), ("proto", "/bench/echo/1".to_string())],
    )?;
    let peer = echo.expect("ready", secs(60))?.str("peer")?.to_string();
    let mut args = rtt_args(size);
    args.extend([("url", ws_url(port_a)), ("peer", peer)]);
    let mut ping = Proc::role("client A", "ws-ping", &args)?;
    let result = ping.expect("result", secs(60 + size.round_trips as u64 / 50))?;
    let peak = daemon_a.memory()?.1.max(daemon_b.memory()?.1);
    Ok(Measured {
        values: vec![result.num("p50_us")?, result.num("p99_us")?],
        peak_kib: peak,
        cpu_per_gb: 0.0,
    })
}

/// A direct rust-libp2p stream echo over TCP.
fn latency_direct(size: &Size) -> Run {
    let mut echo = Proc::role(
        "direct echo",
        "p2p-echo",
        &[("transport", "tcp".to_string()), ("proto", "/bench/echo/1".to_string())],
    )?;
    let addr = echo.expect("ready", secs(60))?.str("addr")?.to_string();
    let mut args = rtt_args(size);
    args.push(("addr", addr));
    let mut ping = Proc::role("direct ping", "p2p-ping", &args)?;
    let result = ping.expect("result", secs(60 + size.round_trips as u64 / 50))?;
    let peak = result.num("hwm_kib")? as u64;
    Ok(Measured {
        values: vec![result.num("p50_us")?, result.num("p99_us")?],
        peak_kib: peak,
        cpu_per_gb: 0.0,
    })
}

/// Streams from WebSocket sessions of one daemon to peers in a sink process; values:
/// opened, refused, seconds to open, RSS per idle stream (KiB), streams echoing a byte.
fn streams(size: &Size, frames: bool) -> Run {
    let (daemon, port) = Proc::daemon("daemon", &[TCP], &[])?;
    let protocol = "/bench/hold/1".to_string();
    let mut sink = Proc::role(
        "sink peers",
        "p2p-sink",
        &[("peers", size.peers.to_string()), ("proto", protocol.clone())],
    )?;
    let mut args = vec![
        ("url", ws_url(port)),
        ("sessions", size.stream_sessions.to_string()),
        ("streams", size.streams_per_session.to_string()),
        ("frames", u8::from(frames).to_string()),
        ("proto", protocol),
    ];
    for _ in 0..size.peers {
        args.push(("target", sink.expect("target", secs(60))?.str("addr")?.to_string()));
    }
    sink.expect("ready", secs(60))?;
    let mut clients = Proc::role("stream clients", "ws-streams", &args)?;
    clients.expect("ready", secs(120))?;
    let before = daemon.memory()?.0;
    clients.tell("open")?;
    let opened = clients.expect("opened", secs(300))?;
    std::thread::sleep(Duration::from_millis(500));
    let after = daemon.memory()?.0;
    clients.tell("check")?;
    let checked = clients.expect("checked", secs(300))?;
    let peak = daemon.memory()?.1;
    clients.tell("exit")?;
    let ok = opened.num("ok")?;
    let per_stream = if ok > 0.0 { after.saturating_sub(before) as f64 / ok } else { 0.0 };
    Ok(Measured {
        values: vec![
            ok,
            opened.num("refused")?,
            opened.num("nanos")? / 1e9,
            per_stream,
            checked.num("ok")?,
        ],
        peak_kib: peak,
        cpu_per_gb: 0.0,
    })
}

/// WebSocket sessions on one daemon, each listening; values: opened, failed, seconds
/// to open, RSS per session (KiB).
fn sessions(size: &Size) -> Run {
    let (daemon, port) = Proc::daemon("daemon", &[TCP], &[])?;
    let mut clients = Proc::role(
        "session clients",
        "ws-sessions",
        &[
            ("url", ws_url(port)),
            ("count", size.sessions.to_string()),
            ("concurrency", "64".to_string()),
        ],
    )?;
    clients.expect("ready", secs(60))?;
    let before = daemon.memory()?.0;
    clients.tell("open")?;
    let opened = clients.expect("opened", secs(300))?;
    std::thread::sleep(Duration::from_millis(500));
    let (after, peak) = daemon.memory()?;
    clients.tell("exit")?;
    let ok = opened.num("ok")?;
    let per_session = if ok > 1.0 { after.saturating_sub(before) as f64 / (ok - 1.0) } else { 0.0 };
    Ok(Measured {
        values: vec![ok, opened.num("failed")?, opened.num("nanos")? / 1e9, per_session],
        peak_kib: peak,
        cpu_per_gb: 0.0,
    })
}

// ---------------------------------------------------------------------------------
// The table

#[derive(Default)]
struct Row {
    metric: String,
    gateway: String,
    direct: String,
    ratio: String,
    target: String,
    verdict: String,
}

impl Row {
    fn section(title: &str) -> Self {
        Self { metric: title.to_string(), ..Default::default() }
    }
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

fn fmt_err(e: &str) -> String {
    format!("FAILED: {e}")
}

fn peak_row(metric: &str, gateway: &Run, direct: &Run) -> Row {
    let mib = |run: &Run| match run {
        Ok(m) => format!("{:.1}", m.peak_kib as f64 / 1024.0),
        Err(_) => "-".into(),
    };
    let ratio = match (gateway, direct) {
        (Ok(g), Ok(d)) if d.peak_kib > 0 => format!("{:.2}", g.peak_kib as f64 / d.peak_kib as f64),
        _ => String::new(),
    };
    Row {
        metric: metric.to_string(),
        gateway: mib(gateway),
        direct: mib(direct),
        ratio,
        ..Default::default()
    }
}

impl Table {
    /// Adds a failed row; returns true.
    fn failed(&mut self, metric: &str, error: &str) -> bool {
        eprintln!("  {metric}: {}", fmt_err(error));
        self.rows.push(Row {
            metric: metric.to_string(),
            verdict: fmt_err(error),
            ..Default::default()
        });
        true
    }

    fn throughput(&mut self, metric: &str, gateway: &Run, direct: &Run, show_cpu: bool) -> bool {
        let (g, d, g_cpu, d_cpu) = match (gateway, direct) {
            (Ok(g), Ok(d)) => (g.values[0], d.values[0], g.cpu_per_gb, d.cpu_per_gb),
            (Err(e), _) => return self.failed(metric, &format!("gateway: {e}")),
            (_, Err(e)) => return self.failed(metric, &format!("direct: {e}")),
        };
        let ratio = g / d;
        let verdict = if ratio >= 0.75 {
            "met (and the 75% aim)".to_string()
        } else if ratio >= 0.60 {
            "met (aim 75% missed)".to_string()
        } else {
            format!("MISSED by {:.0} MB/s ({:.0} points)", 0.60 * d - g, (0.60 - ratio) * 100.0)
        };
        eprintln!("  gateway {g:.0} MB/s, direct {d:.0} MB/s");
        self.rows.push(Row {
            metric: metric.to_string(),
            gateway: format!("{g:.0}"),
            direct: format!("{d:.0}"),
            ratio: format!("{ratio:.2}"),
            target: "≥ 0.60 (aim 0.75)".into(),
            verdict,
        });
        self.rows.extend(show_cpu.then(|| Row {
            metric: "  CPU s per GB (the 2 daemons; the 2 nodes)".into(),
            gateway: format!("{g_cpu:.2}"),
            direct: format!("{d_cpu:.2}"),
            ratio: format!("{:.2}", g_cpu / d_cpu),
            ..Default::default()
        }));
        false
    }

    fn latency(&mut self, gateway: &Run, direct: &Run) -> bool {
        let metric = "round trip 64 B p50 (µs)";
        let (g, d) = match (gateway, direct) {
            (Ok(g), Ok(d)) => (&g.values, &d.values),
            (Err(e), _) => return self.failed(metric, &format!("gateway: {e}")),
            (_, Err(e)) => return self.failed(metric, &format!("direct: {e}")),
        };
        let limit = 2.0 * d[0] + 200.0;
        let verdict = if g[0] <= limit {
            "met".to_string()
        } else {
            format!("MISSED by {:.0} µs", g[0] - limit)
        };
        eprintln!(
            "  gateway p50 {:.0} µs p99 {:.0} µs, direct p50 {:.0} µs p99 {:.0} µs",
            g[0], g[1], d[0], d[1]
        );
        self.rows.push(Row {
            metric: metric.into(),
            gateway: format!("{:.0}", g[0]),
            direct: format!("{:.0}", d[0]),
            ratio: format!("{:.2}", g[0] / d[0]),
            target: format!("≤ 2×direct+200 = {limit:.0}"),
            verdict,
        });
        self.rows.push(Row {
            metric: "round trip 64 B p99 (µs)".into(),
            gateway: format!("{:.0}", g[1]),
            direct: format!("{:.0}", d[1]),
            ratio: format!("{:.2}", g[1] / d[1]),
            ..Default::default()
        });
        false
    }

    fn streams(&mut self, size: &Size, mode: &str, run: &Run) -> bool {
        let metric = format!("concurrent {mode} streams opened");
        let v = match run {
            Ok(m) => &m.values,
            Err(e) => return self.failed(&metric, e),
        };
        let want = size.streams() as f64;
        let (ok, refused, secs, per_stream, echoed) = (v[0], v[1], v[2], v[3], v[4]);
        eprintln!(
            "  {ok} opened, {refused} refused, in {secs:.2} s, {per_stream:.1} KiB each, {echoed} echoed"
        );
        let all = ok == want && echoed == want;
        self.rows.push(Row {
            metric,
            gateway: format!("{ok:.0}/{want:.0}"),
            target: format!("{want:.0} without error"),
            verdict: if all {
                "met".into()
            } else {
                format!("MISSED: {refused:.0} refused, {:.0} silent", ok - echoed)
            },
            ..Default::default()
        });
        self.rows.push(Row {
            metric: format!("  time to open them (s; {} peers)", size.peers),
            gateway: format!("{secs:.2}"),
            ..Default::default()
        });
        self.rows.push(Row {
            metric: format!("  daemon RSS per idle {mode} stream (KiB)"),
            gateway: format!("{per_stream:.1}"),
            target: "≤ 32".into(),
            verdict: if per_stream <= 32.0 {
                "met".into()
            } else {
                format!("MISSED by {:.1} KiB", per_stream - 32.0)
            },
            ..Default::default()
        });
        !all
    }

    fn sessions(&mut self, size: &Size, run: &Run) -> bool {
        let metric = "concurrent sessions (each listening)";
        let v = match run {
            Ok(m) => &m.values,
            Err(e) => return self.failed(metric, e),
        };
        let want = size.sessions as f64;
        let (ok, failed, secs, per_session) = (v[0], v[1], v[2], v[3]);
        eprintln!("  {ok} sessions, {failed} failed, in {secs:.2} s, {per_session:.1} KiB each");
        let all = ok == want;
        self.rows.push(Row {
            metric: metric.into(),
            gateway: format!("{ok:.0}/{want:.0}"),
            target: format!("{want:.0} without error"),
            verdict: if all { "met".into() } else { format!("MISSED: {failed:.0} failed") },
            ..Default::default()
        });
        self.rows.push(Row {
            metric: "  time to open them (s)".into(),
            gateway: format!("{secs:.2}"),
            ..Default::default()
        });
        self.rows.push(Row {
            metric: "  daemon RSS per session (KiB)".into(),
            gateway: format!("{per_session:.1}"),
            ..Default::default()
        });
        !all
    }

    fn print(&self) {
        let width = |f: fn(&Row) -> &String, min: usize| {
            self.rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0).max(min)
        };
        let w = [
            width(|r| &r.metric, 6),
            width(|r| &r.gateway, 7),
            width(|r| &r.direct, 6),
            width(|r| &r.ratio, 5),
            width(|r| &r.target, 6),
        ];
        let pad = |s: &str, n: usize, right: bool| {
            let fill = " ".repeat(n.saturating_sub(s.chars().count()));
            if right {
                format!("{fill}{s}")
            } else {
                format!("{s}{fill}")
            }
        };
        let line = |r: &Row| {
            let text = format!(
                "{}  {}  {}  {}  {}  {}",
                pad(&r.metric, w[0], false),
                pad(&r.gateway, w[1], true),
                pad(&r.direct, w[2], true),
                pad(&r.ratio, w[3], true),
                pad(&r.target, w[4], false),
                r.verdict
            );
            println!("{}", text.trim_end());
        };
        line(&Row {
            metric: "metric".into(),
            gateway: "gateway".into(),
            direct: "direct".into(),
            ratio: "ratio".into(),
            target: "target".into(),
            verdict: "verdict".into(),
        });
        for row in &self.rows {
            line(row);
        }
    }
}
