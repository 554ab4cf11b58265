//! The pipeline part (`--only pipeline`): a WebSocket client of a daemon echoes bytes
//! through a plain rust-libp2p echo node with at most W bytes in flight, without and
//! with the credit extension, beside a direct node doing the same; the same pipeline
//! beside a stream whose remote never reads; and the daemon's memory for credit
//! streams to such a remote, idle and filled.
//!
//! One echo node (`p2p-pipe-echo`) serves the pipelines; each run gets a fresh daemon
//! (or direct node). The credit session uses the daemon's default windows.

use std::time::Duration;

use super::{
    harness::{secs, Fields, Proc},
    mb_per_s, peak_row, transfer_timeout, ws_url, Measured, Row, Run, Size, Table, MIB, TCP,
};

const ECHO: &str = "/bench/pipe-echo/1";
const HOLD: &str = "/bench/never-reads/1";
/// The two in-flight limits compared.
const SMALL: u64 = 256 * 1024;
const LARGE: u64 = 8 * MIB;
/// Without credit, what is written into the stalled stream: more than the session's
/// write budget (8 MiB), so that the daemon stops reading the WebSocket for it.
const FILL: u64 = 16 * MIB;
/// The daemon's default stall timeout (without credit), which the runs allow for.
const STALL: Duration = Duration::from_secs(10);

/// The node all pipelines echo through, and whose second protocol never reads.
struct Remote {
    _proc: Proc,
    /// Its multiaddr with `/p2p/`, for direct nodes.
    addr: String,
    /// Its connect string, for the daemon.
    target: String,
}

impl Remote {
    fn start(name: &str) -> Result<Self, String> {
        let args = [("echo", ECHO.to_string()), ("hold", HOLD.to_string())];
        let mut proc = Proc::role(name, "p2p-pipe-echo", &args)?;
        let ready = proc.expect("ready", secs(60))?;
        Ok(Self {
            addr: ready.str("addr")?.to_string(),
            target: ready.str("target")?.to_string(),
            _proc: proc,
        })
    }
}

/// One pipeline run.
#[derive(Clone, Copy)]
struct Pipe {
    frames: bool,
    window: u64,
    /// Beside a stream to the never-reading protocol, filled first.
    stall: bool,
}

impl Pipe {
    fn args(&self, size: &Size) -> Vec<(&'static str, String)> {
        vec![
            ("echo", ECHO.to_string()),
            ("hold", HOLD.to_string()),
            ("frames", u8::from(self.frames).to_string()),
            ("window", self.window.to_string()),
            ("bytes", size.bytes.to_string()),
            ("stall", u8::from(self.stall).to_string()),
            ("fill", FILL.to_string()),
        ]
    }
}

fn timeout(size: &Size) -> Duration {
    transfer_timeout(2 * size.bytes) + STALL
}

fn check_bytes(result: &Fields, size: &Size) -> Result<(), String> {
    let got = result.num("bytes")? as u64;
    if got != size.bytes {
        return Err(format!("{got} bytes came back of {}", size.bytes));
    }
    Ok(())
}

/// Through a fresh daemon. Values: MB/s; how long after its fill the stalled stream
/// was closed (ms; -1: it was not); the stream window (credit; else 0).
fn pipe_gateway(size: &Size, remote: &Remote, pipe: Pipe, credit: bool) -> Run {
    let (daemon, port) = Proc::daemon("daemon", &[TCP], &[])?;
    let mut args = pipe.args(size);
    args.extend([
        ("url", ws_url(port)),
        ("peer", remote.target.clone()),
        ("credit", u8::from(credit).to_string()),
    ]);
    let mut client = Proc::role("pipeline client", "ws-pipe", &args)?;
    let result = client.expect("result", timeout(size))?;
    check_bytes(&result, size)?;
    let window = if credit { result.num("stream_window")? } else { 0.0 };
    Ok(Measured {
        values: vec![
            mb_per_s(size.bytes, result.num("nanos")?),
            result.num("stalled_closed_ms")?,
            window,
        ],
        peak_kib: daemon.memory()?.1,
        cpu_per_gb: 0.0,
    })
}

/// From a fresh plain node. Values: MB/s.
fn pipe_direct(size: &Size, remote: &Remote, pipe: Pipe) -> Run {
    let mut args = pipe.args(size);
    args.push(("addr", remote.addr.clone()));
    let mut node = Proc::role("direct pipeline node", "p2p-pipe", &args)?;
    let result = node.expect("result", timeout(size))?;
    check_bytes(&result, size)?;
    Ok(Measured {
        values: vec![mb_per_s(size.bytes, result.num("nanos")?)],
        peak_kib: result.num("hwm_kib")? as u64,
        cpu_per_gb: 0.0,
    })
}

/// A credit session opening `size.hold_streams` streams to the never-reading remote,
/// then filling them. Values: RSS per idle stream (KiB), RSS growth once filled (KiB),
/// bytes held (sent, not credited back), streams that got data, session window.
fn hold_gateway(size: &Size) -> Run {
    let remote = Remote::start("never-reading remote")?;
    let (daemon, port) = Proc::daemon("daemon", &[TCP], &[])?;
    let mut client = Proc::role(
        "credit session",
        "ws-hold",
        &[
            ("url", ws_url(port)),
            ("peer", remote.target.clone()),
            ("echo", ECHO.to_string()),
            ("hold", HOLD.to_string()),
            ("streams", size.hold_streams.to_string()),
        ],
    )?;
    let ready = client.expect("ready", secs(60))?;
    let (idle, full, filled, opened) = held(&mut client, || daemon.memory().map(|m| m.0))?;
    let peak = daemon.memory()?.1;
    eprintln!(
        "  credit session: {} bytes sent, {} credited back, in {} rounds",
        filled.str("sent")?,
        filled.str("credited")?,
        filled.str("rounds")?
    );
    Ok(Measured {
        values: vec![
            idle / opened,
            full,
            filled.num("held")?,
            filled.num("streams")?,
            ready.num("session_window")?,
        ],
        peak_kib: peak,
        cpu_per_gb: 0.0,
    })
}

/// The direct twin, idle only (a plain node has no window to fill): a plain node
/// opening as many streams to the same kind of remote. Values: RSS per idle stream
/// (KiB).
fn hold_direct(size: &Size) -> Run {
    let remote = Remote::start("never-reading remote")?;
    let mut node = Proc::role(
        "direct node",
        "p2p-hold",
        &[
            ("addr", remote.addr.clone()),
            ("echo", ECHO.to_string()),
            ("hold", HOLD.to_string()),
            ("streams", size.hold_streams.to_string()),
        ],
    )?;
    node.expect("ready", secs(60))?;
    let before = node.memory()?.0;
    node.tell("open")?;
    let opened = node.expect("opened", secs(120))?;
    std::thread::sleep(Duration::from_millis(500));
    let (idle, peak) = node.memory()?;
    node.tell("exit")?;
    Ok(Measured {
        values: vec![idle.saturating_sub(before) as f64 / opened.num("ok")?.max(1.0)],
        peak_kib: peak,
        cpu_per_gb: 0.0,
    })
}

/// Tells `client` to `open`, then to `fill`, reading `rss` before, after opening and
/// after filling. Returns the RSS growth after opening and after filling (KiB), the
/// `filled` answer and how many streams were opened.
fn held(
    client: &mut Proc,
    rss: impl Fn() -> Result<u64, String>,
) -> Result<(f64, f64, Fields, f64), String> {
    let before = rss()?;
    client.tell("open")?;
    let opened = client.expect("opened", secs(120))?;
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss()?;
    client.tell("fill")?;
    let filled = client.expect("filled", secs(180))?;
    std::thread::sleep(Duration::from_millis(500));
    let full = rss()?;
    client.tell("exit")?;
    let ok = opened.num("ok")?.max(1.0);
    Ok((idle.saturating_sub(before) as f64, full.saturating_sub(before) as f64, filled, ok))
}

/// The medians of `n` runs of `a` and of `b`, taken in turns (a, b, a, b, ...), so
/// that a change in the machine's load falls on both sides of the comparison.
fn medians_of_pair(n: usize, mut a: impl FnMut() -> Run, mut b: impl FnMut() -> Run) -> [Run; 2] {
    let (mut runs_a, mut runs_b) = (Vec::new(), Vec::new());
    for _ in 0..n {
        runs_a.push(a());
        runs_b.push(b());
    }
    [runs_a, runs_b].map(|runs| {
        let mut runs = runs.into_iter().collect::<Result<Vec<_>, _>>()?;
        runs.sort_by(|x, y| x.values[0].total_cmp(&y.values[0]));
        Ok(runs.swap_remove(runs.len() / 2))
    })
}

/// The largest peak of the runs, as one run for [`peak_row`].
fn largest(runs: &[&Run]) -> Run {
    let peak = runs.iter().filter_map(|r| r.as_ref().ok()).map(|m| m.peak_kib).max();
    match peak {
        Some(peak_kib) => Ok(Measured { values: vec![], peak_kib, cpu_per_gb: 0.0 }),
        None => Err(String::new()),
    }
}

/// Runs the part; returns true when a run failed.
pub fn run(size: &Size, table: &mut Table, peaks: &mut Vec<Row>) -> bool {
    let remote = match Remote::start("echo node") {
        Ok(remote) => remote,
        Err(e) => return table.failed("echo pipeline", &e),
    };
    let mut failed = false;
    let runs = size.runs;

    table.rows.push(Row::section(&format!(
        "echo pipeline: {} MiB in 64 KiB Data through a rust-libp2p echo, at most W in flight",
        size.bytes / MIB
    )));
    let (mut all_gateway, mut all_direct) = (Vec::new(), Vec::new());
    for frames in [false, true] {
        let mode = if frames { "framed 64 KiB" } else { "raw" };
        let pipe = |window| Pipe { frames, window, stall: false };
        eprintln!("- echo pipeline {mode}, direct");
        let direct = medians_of_pair(
            runs,
            || pipe_direct(size, &remote, pipe(SMALL)),
            || pipe_direct(size, &remote, pipe(LARGE)),
        );
        for credit in [false, true] {
            let name = format!("echo pipeline {mode}{}", if credit { ", credit" } else { "" });
            eprintln!("- {name}");
            let gateway = medians_of_pair(
                runs,
                || pipe_gateway(size, &remote, pipe(SMALL), credit),
                || pipe_gateway(size, &remote, pipe(LARGE), credit),
            );
            failed |= table.pipeline(&name, &gateway, &direct);
            all_gateway.extend(gateway);
        }
        all_direct.extend(direct);
    }
    let (g, d) = (all_gateway.iter().collect::<Vec<_>>(), all_direct.iter().collect::<Vec<_>>());
    peaks.push(peak_row("peak RSS, echo pipelines (the largest)", &largest(&g), &largest(&d)));

    table.rows.push(Row::section(
        "stalled neighbour: the raw W 8 MiB pipeline beside a stream whose remote never reads",
    ));
    let solo = Pipe { frames: false, window: LARGE, stall: false };
    let stalled = Pipe { stall: true, ..solo };
    eprintln!("- stalled neighbour, direct");
    let [direct_stalled, direct_solo] = medians_of_pair(
        runs,
        || pipe_direct(size, &remote, stalled),
        || pipe_direct(size, &remote, solo),
    );
    for credit in [true, false] {
        let mode = if credit { "credit" } else { "without credit" };
        eprintln!("- stalled neighbour, {mode}");
        let [gateway_stalled, gateway_solo] = medians_of_pair(
            runs,
            || pipe_gateway(size, &remote, stalled, credit),
            || pipe_gateway(size, &remote, solo, credit),
        );
        failed |= table.stalled(
            mode,
            credit,
            [&gateway_stalled, &gateway_solo],
            [&direct_stalled, &direct_solo],
        );
        peaks.push(peak_row(
            &format!("peak RSS, stalled neighbour, {mode}"),
            &gateway_stalled,
            &direct_stalled,
        ));
    }
    drop(remote);

    eprintln!("- {} credit streams to a never-reading remote", size.hold_streams);
    let gateway = hold_gateway(size);
    let direct = hold_direct(size);
    failed |= table.hold(size, &gateway, &direct);
    peaks.push(peak_row(
        &format!("peak RSS, {} credit streams filled", size.hold_streams),
        &gateway,
        &direct,
    ));
    failed
}

/// MB/s: whole numbers, but for what would round to a few.
fn mbs(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn percent(part: f64, whole: f64) -> String {
    format!("{:.0}%", 100.0 * part / whole)
}

impl Table {
    /// W 256 KiB and W 8 MiB, and their ratio (the aim: a deeper pipeline is not
    /// slower, ≥ 90 %).
    fn pipeline(&mut self, name: &str, gateway: &[Run; 2], direct: &[Run; 2]) -> bool {
        let mut v = [[0.0; 2]; 2];
        let mut window = 0.0;
        for (i, (g, d)) in gateway.iter().zip(direct).enumerate() {
            match (g, d) {
                (Ok(g), Ok(d)) => {
                    v[i] = [g.values[0], d.values[0]];
                    window = g.values[2];
                }
                (Err(e), _) => return self.failed(name, &format!("gateway: {e}")),
                (_, Err(e)) => return self.failed(name, &format!("direct: {e}")),
            }
        }
        eprintln!(
            "  W 256 KiB: gateway {:.0} MB/s, direct {:.0} MB/s; W 8 MiB: gateway {:.0} MB/s, \
             direct {:.0} MB/s",
            v[0][0], v[0][1], v[1][0], v[1][1]
        );
        for (i, w) in ["256 KiB", "8 MiB"].iter().enumerate() {
            let capped = i == 1 && window > 0.0 && window < LARGE as f64;
            self.rows.push(Row {
                metric: format!("{name}, W {w} (MB/s)"),
                gateway: mbs(v[i][0]),
                direct: mbs(v[i][1]),
                ratio: format!("{:.2}", v[i][0] / v[i][1]),
                verdict: if capped {
                    format!("(in flight ≤ {:.0} MiB: the stream window)", window / MIB as f64)
                } else {
                    String::new()
                },
                ..Default::default()
            });
        }
        let deeper = v[1][0] / v[0][0];
        self.rows.push(Row {
            metric: "  W 8 MiB / W 256 KiB".into(),
            gateway: percent(v[1][0], v[0][0]),
            direct: percent(v[1][1], v[0][1]),
            target: "≥ 90%".into(),
            verdict: if deeper >= 0.9 {
                "met".into()
            } else {
                format!("MISSED by {:.1} points", (0.9 - deeper) * 100.0)
            },
            ..Default::default()
        });
        false
    }

    /// Beside the stalled stream and solo, gateway and direct, and stalled / solo.
    fn stalled(&mut self, mode: &str, credit: bool, gateway: [&Run; 2], direct: [&Run; 2]) -> bool {
        let metric = format!("{mode}: beside the stalled stream (MB/s)");
        let mut v = [[0.0; 2]; 2];
        let mut closed_ms = -1.0;
        for (i, (g, d)) in gateway.iter().zip(direct).enumerate() {
            match (g, d) {
                (Ok(g), Ok(d)) => {
                    v[i] = [g.values[0], d.values[0]];
                    if i == 0 {
                        closed_ms = g.values[1];
                    }
                }
                (Err(e), _) => return self.failed(&metric, &format!("gateway: {e}")),
                (_, Err(e)) => return self.failed(&metric, &format!("direct: {e}")),
            }
        }
        eprintln!(
            "  beside the stalled stream: gateway {:.1} MB/s, direct {:.1} MB/s; solo: gateway \
             {:.1} MB/s, direct {:.1} MB/s",
            v[0][0], v[0][1], v[1][0], v[1][1]
        );
        let closed = if closed_ms >= 0.0 {
            format!("(the stalled stream was closed {:.1} s after its fill)", closed_ms / 1e3)
        } else {
            "(the stalled stream stayed open)".into()
        };
        self.rows.push(Row {
            metric,
            gateway: mbs(v[0][0]),
            direct: mbs(v[0][1]),
            ratio: format!("{:.2}", v[0][0] / v[0][1]),
            verdict: closed,
            ..Default::default()
        });
        self.rows.push(Row {
            metric: format!("{mode}: solo (MB/s)"),
            gateway: mbs(v[1][0]),
            direct: mbs(v[1][1]),
            ratio: format!("{:.2}", v[1][0] / v[1][1]),
            ..Default::default()
        });
        let kept = v[0][0] / v[1][0];
        let (target, verdict) = if credit {
            let verdict = if kept >= 0.9 {
                "met".into()
            } else {
                format!("MISSED by {:.1} points", (0.9 - kept) * 100.0)
            };
            ("≥ 90%".into(), verdict)
        } else {
            (
                String::new(),
                format!("(the session waits for the {} s stall timeout)", STALL.as_secs()),
            )
        };
        self.rows.push(Row {
            metric: format!("  {mode}: stalled neighbour / solo"),
            gateway: percent(v[0][0], v[1][0]),
            direct: percent(v[0][1], v[1][1]),
            target,
            verdict,
            ..Default::default()
        });
        false
    }

    /// Credit streams to a never-reading remote: idle, then filled.
    fn hold(&mut self, size: &Size, gateway: &Run, direct: &Run) -> bool {
        let k = size.hold_streams;
        let metric = format!("{k} credit streams to a never-reading remote");
        let (g, d) = match (gateway, direct) {
            (Ok(g), Ok(d)) => (&g.values, &d.values),
            (Err(e), _) => return self.failed(&metric, &format!("gateway: {e}")),
            (_, Err(e)) => return self.failed(&metric, &format!("direct: {e}")),
        };
        let (idle, full, held, with_data, session) = (g[0], g[1], g[2], g[3], g[4]);
        let beyond = full - held / 1024.0;
        eprintln!(
            "  idle {idle:.1} KiB per stream (direct {:.1}); filled: {:.1} MiB held for \
             {with_data} streams, daemon RSS +{:.1} MiB",
            d[0],
            held / MIB as f64,
            full / 1024.0
        );
        self.rows.push(Row::section(&format!(
            "{metric} (default windows; session window {:.0} MiB)",
            session / MIB as f64
        )));
        self.rows.push(Row {
            metric: "  idle (open, nothing sent): daemon RSS per stream (KiB)".into(),
            gateway: format!("{idle:.1}"),
            direct: format!("{:.1}", d[0]),
            ratio: format!("{:.2}", idle / d[0]),
            target: "≤ 32".into(),
            verdict: if idle <= 32.0 {
                "met".into()
            } else {
                format!("MISSED by {:.1} KiB", idle - 32.0)
            },
        });
        self.rows.push(Row {
            metric: format!("  filled: bytes held for them (MiB; {with_data:.0} streams got some)"),
            gateway: format!("{:.1}", held / MIB as f64),
            target: format!("≤ {:.1} (the session window)", session / MIB as f64),
            verdict: if held <= session {
                "met".into()
            } else {
                format!("MISSED by {:.0} bytes", held - session)
            },
            ..Default::default()
        });
        self.rows.push(Row {
            metric: "  filled: daemon RSS growth in all (MiB)".into(),
            gateway: format!("{:.1}", full / 1024.0),
            ..Default::default()
        });
        self.rows.push(Row {
            metric: "  filled: daemon RSS per stream (KiB)".into(),
            gateway: format!("{:.1}", full / k as f64),
            ..Default::default()
        });
        self.rows.push(Row {
            metric: "  filled: RSS growth beyond the bytes held (MiB)".into(),
            gateway: format!("{:.1}", beyond / 1024.0),
            ..Default::default()
        });
        false
    }
}
