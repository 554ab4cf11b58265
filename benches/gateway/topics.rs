//! The topics part (`--only topics`): the pubsub extension's fan-out beside the same
//! fan-out done with one stream per subscriber, and the daemon's memory per
//! subscription.
//!
//! A publisher session on the first daemon sends messages of 64 to 1024 bytes to
//! `topic_sessions` subscriber sessions, all on that daemon or spread over 3 daemons
//! whose nodes are connected (the second dials the first, the third both, with
//! `--peer`). Each message carries its send time on CLOCK_MONOTONIC, which every
//! process of the machine shares; each subscriber takes receive time minus send time,
//! and the figures are over every delivery. Two rounds on the same sessions: paced
//! (`topic_pace` messages a second: the latency) and flat out (as fast as the
//! publisher's WebSocket takes them, within the daemon's backpressure: deliveries per
//! second, from the first timed send to the last timed delivery). The first
//! `topic_warmup` messages of each round are delivered but not timed.
//!
//! - **topic**: every subscriber session subscribes to the round's topic; the
//!   publisher, subscribed too (to hear the other nodes join), sends one Publish.
//! - **stream**: every subscriber session listens on a protocol of its own
//!   (`/fan/<i>`); the publisher opens one framed stream to each (Connect to its
//!   daemon's connect string: in-process on the publisher's own daemon) and writes
//!   each message to all of them.
//!
//! Memory: a daemon with `idle_sessions` sessions (pubsub on) is read before and after
//! each subscribes to `idle_topics` topics, the same ones for all, or to
//! `idle_own_topics` of its own (all of them within the daemon's default cap of 1,024
//! topics).

use std::time::Duration;

use super::{
    harness::{secs, Fields, Proc},
    peak_row, ws_url, Measured, Row, Run, Size, Table, TCP,
};

/// The two rounds of a fan-out.
const ROUNDS: usize = 2;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Topic,
    Stream,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Topic => "topic",
            Mode::Stream => "stream",
        }
    }
}

/// One round's figures, over every subscriber.
#[derive(Default)]
struct Round {
    p50_ms: f64,
    p99_ms: f64,
    per_s: f64,
    /// Deliveries expected, said missed (Missed), neither received nor missed (lost).
    expected: u64,
    missed: u64,
    lost: u64,
    /// What the publisher's WebSocket carried per message (bytes).
    upload_per_msg: f64,
    /// CPU seconds of all the daemons during the round.
    cpu_s: f64,

    refused: u64,
}

struct Fan {
    rounds: Vec<Round>,
    peak_kib: u64,
}

/// Latency buckets (ns) and their counts, from the subscribers' `hist=`.
fn histogram(fields: &Fields, into: &mut Vec<(u64, u64)>) -> Result<(), String> {
    for pair in fields.str("hist")?.split(',').filter(|p| !p.is_empty()) {
        let (ns, n) = pair.split_once(':').ok_or_else(|| format!("bad bucket {pair}"))?;
        let parse = |s: &str| s.parse::<u64>().map_err(|_| format!("bad bucket {pair}"));
        into.push((parse(ns)?, parse(n)?));
    }
    Ok(())
}

/// The `q` quantile of a histogram, in ms.
fn quantile_ms(sorted: &[(u64, u64)], q: f64) -> f64 {
    let total: u64 = sorted.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return f64::NAN;
    }
    let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (ns, n) in sorted {
        seen += n;
        if seen >= rank {
            return *ns as f64 / 1e6;
        }
    }
    f64::NAN
}

/// The sessions on each of `daemons` daemons: as even as can be, the first ones first.
fn spread(sessions: usize, daemons: usize) -> Vec<usize> {
    (0..daemons).map(|d| sessions / daemons + usize::from(d < sessions % daemons)).collect()
}

fn topic_name(round: usize) -> String {
    format!("bench/fan/{round}")
}

/// A subscriber's `done`; if it is not whole in time, what it has (`finish`).
fn round_done(sub: &mut Proc, wait: Duration) -> Result<Fields, String> {
    match sub.expect("done", wait) {
        Err(e) if e.contains("nothing after") => {
            sub.tell("finish")?;
            sub.expect("done", secs(30))
        }
        other => other,
    }
}

/// One fan-out setup, both rounds.
fn fanout(size: &Size, daemons: usize, mode: Mode) -> Result<Fan, String> {
    let count = size.topic_warmup + size.topic_messages;
    let per = spread(size.topic_sessions, daemons);
    let common = |args: &mut Vec<(&'static str, String)>| {
        args.extend([
            ("mode", mode.name().to_string()),
            ("rounds", ROUNDS.to_string()),
            ("count", count.to_string()),
            ("warmup", size.topic_warmup.to_string()),
        ]);
        args.extend((0..ROUNDS).map(|r| ("topic", topic_name(r))));
    };
    let (mut procs, mut subs, mut addrs, mut targets) = (vec![], vec![], vec![], vec![]);
    let mut first_port = 0;
    for (d, n) in per.iter().enumerate() {
        let name = ["daemon A", "daemon B", "daemon C"].get(d).copied().unwrap_or("daemon");
        let extra: Vec<&str> = addrs.iter().flat_map(|a: &String| ["--peer", a.as_str()]).collect();
        let (daemon, port) = Proc::daemon(name, &[TCP], &extra)?;
        if d == 0 {
            first_port = port;
        }
        let mut args = vec![
            ("url", ws_url(port)),
            ("sessions", n.to_string()),
            ("first", per[..d].iter().sum::<usize>().to_string()),
        ];
        common(&mut args);
        let mut sub = Proc::role(&format!("subscribers on {name}"), "ws-topic-sub", &args)?;
        let ready = sub.expect("ready", secs(120))?;
        addrs.push(ready.str("addr")?.to_string());
        targets.push(("target", format!("{n}:{}", ready.str("peer")?)));
        procs.push(daemon);
        subs.push(sub);
    }
    let mut args = vec![("url", ws_url(first_port)), ("peers", (daemons - 1).to_string())];
    common(&mut args);
    args.extend([("pace", size.topic_pace.to_string()), ("pace", "0".to_string())]);
    args.extend(targets);
    let mut publisher = Proc::role("publisher", "ws-topic-pub", &args)?;
    publisher.expect("ready", secs(120))?;

    let expected = (size.topic_sessions * count) as u64;
    let cpu = || procs.iter().map(Proc::cpu_secs).sum::<Result<f64, String>>();
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let cpu_before = cpu()?;
        publisher.tell("go")?;
        let copies = match mode {
            Mode::Topic => 1,
            Mode::Stream => size.topic_sessions as u64,
        };
        let publish_time = match round {
            0 => secs(60 + count as u64 / size.topic_pace.max(1) as u64),
            _ => secs(60 + count as u64 * copies / 1000),
        };
        let published = publisher.expect("published", publish_time)?;
        let mut buckets = Vec::new();
        let (mut received, mut missed, mut last_ns) = (0u64, 0u64, 0u64);
        for sub in &mut subs {
            let done = round_done(sub, secs(30 + expected / 10_000))?;
            histogram(&done, &mut buckets)?;
            received += done.num("received")? as u64;
            missed += done.num("missed")? as u64;
            last_ns = last_ns.max(done.num("last_ns")? as u64);
        }
        buckets.sort_unstable();
        let timed: u64 = buckets.iter().map(|(_, n)| n).sum();
        let start_ns = published.num("start_ns")? as u64;
        let seconds = last_ns.saturating_sub(start_ns) as f64 / 1e9;
        let r = Round {
            p50_ms: quantile_ms(&buckets, 0.50),
            p99_ms: quantile_ms(&buckets, 0.99),
            per_s: if seconds > 0.0 { timed as f64 / seconds } else { f64::NAN },
            expected,
            missed,
            lost: expected.saturating_sub(received + missed),
            upload_per_msg: published.num("ws_bytes")? / count as f64,
            cpu_s: cpu()? - cpu_before,
            refused: published.num("refused")? as u64,
        };
        eprintln!(
            "  {} {}: p50 {:.2} ms, p99 {:.2} ms, {:.0} deliveries/s, {received} of {expected} \
             delivered, {missed} missed, {} lost, {} refused, daemons' CPU {:.2} s",
            mode.name(),
            ["paced", "flat out"][round],
            r.p50_ms,
            r.p99_ms,
            r.per_s,
            r.lost,
            r.refused,
            r.cpu_s
        );
        rounds.push(r);
    }
    let peak_kib = procs.iter().map(|p| p.memory().map(|m| m.1)).max().unwrap_or(Ok(0))?;
    for proc in subs.iter_mut().chain([&mut publisher]) {
        let _ = proc.tell("exit");
    }
    Ok(Fan { rounds, peak_kib })
}

/// RSS per subscription (KiB) with `idle_sessions` sessions on `idle_topics` topics
/// each, all the same (or `idle_own_topics` of their own), and what unsubscribing
/// gave back (KiB per subscription).
fn idle(size: &Size, distinct: bool) -> Result<(f64, f64, u64), String> {
    let topics = if distinct { size.idle_own_topics } else { size.idle_topics };
    let (daemon, port) = Proc::daemon("daemon", &[TCP], &[])?;
    let mut sessions = Proc::role(
        "idle sessions",
        "ws-topic-idle",
        &[
            ("url", ws_url(port)),
            ("sessions", size.idle_sessions.to_string()),
            ("topics", topics.to_string()),
            ("distinct", u8::from(distinct).to_string()),
        ],
    )?;
    sessions.expect("ready", secs(120))?;
    let settle = || std::thread::sleep(Duration::from_millis(500));
    settle();
    let before = daemon.memory()?.0;
    sessions.tell("subscribe")?;
    let subscribed = sessions.expect("subscribed", secs(120))?;
    settle();
    let after = daemon.memory()?.0;
    sessions.tell("unsubscribe")?;
    sessions.expect("unsubscribed", secs(60))?;
    settle();
    let (left, peak) = daemon.memory()?;
    sessions.tell("exit")?;
    let n = subscribed.num("ok")?.max(1.0);
    Ok((after.saturating_sub(before) as f64 / n, after.saturating_sub(left) as f64 / n, peak))
}

fn as_run(fan: &Result<Fan, String>) -> Run {
    match fan {
        Ok(fan) => Ok(Measured { values: vec![], peak_kib: fan.peak_kib, cpu_per_gb: 0.0 }),
        Err(e) => Err(e.clone()),
    }
}

/// Runs the part; returns true when a run failed.
pub fn run(size: &Size, table: &mut Table, peaks: &mut Vec<Row>) -> bool {
    let mut failed = false;
    for daemons in [1, 3] {
        let place = match daemons {
            1 => "1 daemon".to_string(),
            n => format!("{n} daemons"),
        };
        let mut fans = Vec::new();
        for mode in [Mode::Topic, Mode::Stream] {
            eprintln!(
                "- fan-out to {} sessions on {place}, {}",
                size.topic_sessions,
                match mode {
                    Mode::Topic => "one topic",
                    Mode::Stream => "one stream per subscriber",
                }
            );
            fans.push(fanout(size, daemons, mode));
        }
        failed |= table.fanout(size, daemons, &fans[0], &fans[1]);
        peaks.push(peak_row(
            &format!("peak RSS, fan-out on {place} (the largest daemon)"),
            &as_run(&fans[0]),
            &as_run(&fans[1]),
        ));
    }

    eprintln!("- {} idle sessions with topics: daemon RSS per subscription", size.idle_sessions);
    let shared = idle(size, false);
    let distinct = idle(size, true);
    failed |= table.subscriptions(size, &shared, &distinct);
    let peak = |r: &Result<(f64, f64, u64), String>| -> Run {
        let peak_kib = r.as_ref().map_err(Clone::clone)?.2;
        Ok(Measured { values: vec![], peak_kib, cpu_per_gb: 0.0 })
    };
    peaks.push(peak_row(
        "peak RSS, idle subscriptions (topics of their own)",
        &peak(&distinct),
        &Err(String::new()),
    ));
    failed
}

/// Milliseconds, to a precision that suits them.
fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    }
}

impl Table {
    /// Topic beside one stream per subscriber (the gateway and direct columns).
    fn fanout(
        &mut self,
        size: &Size,
        daemons: usize,
        topic: &Result<Fan, String>,
        stream: &Result<Fan, String>,
    ) -> bool {
        let per = spread(size.topic_sessions, daemons);
        let place = match daemons {
            1 => "1 daemon".to_string(),
            _ => format!(
                "{daemons} connected daemons ({})",
                per.iter().map(ToString::to_string).collect::<Vec<_>>().join("+")
            ),
        };
        let metric = format!("fan-out to {} sessions on {place}", size.topic_sessions);
        let (t, s) = match (topic, stream) {
            (Ok(t), Ok(s)) => (&t.rounds, &s.rounds),
            (Err(e), _) => return self.failed(&metric, &format!("topic: {e}")),
            (_, Err(e)) => return self.failed(&metric, &format!("streams: {e}")),
        };
        self.rows.push(Row::section(&format!(
            "{metric}: {} messages of 64–1024 B (gateway: a topic; direct: a stream to each)",
            size.topic_messages
        )));
        let row = |metric: String, g: String, d: String, ratio: f64| Row {
            metric,
            gateway: g,
            direct: d,
            ratio: if ratio.is_finite() { format!("{ratio:.2}") } else { String::new() },
            ..Default::default()
        };
        let pace = size.topic_pace;
        for (round, name) in [(0, format!("paced {pace}/s")), (1, "flat out".to_string())] {
            let (g, d) = (&t[round], &s[round]);
            if round == 1 {
                self.rows.push(row(
                    "  flat out: deliveries/s".into(),
                    format!("{:.0}", g.per_s),
                    format!("{:.0}", d.per_s),
                    g.per_s / d.per_s,
                ));
            }
            self.rows.push(row(
                format!("  {name}: publish→deliver p50 (ms)"),
                ms(g.p50_ms),
                ms(d.p50_ms),
                g.p50_ms / d.p50_ms,
            ));
            self.rows.push(row(
                format!("  {name}: publish→deliver p99 (ms)"),
                ms(g.p99_ms),
                ms(d.p99_ms),
                g.p99_ms / d.p99_ms,
            ));
        }
        self.rows.push(row(
            "  publisher's WebSocket upload per message (KiB)".into(),
            format!("{:.2}", t[1].upload_per_msg / 1024.0),
            format!("{:.2}", s[1].upload_per_msg / 1024.0),
            t[1].upload_per_msg / s[1].upload_per_msg,
        ));
        self.rows.push(row(
            "  daemons' CPU s, flat-out round".into(),
            format!("{:.2}", t[1].cpu_s),
            format!("{:.2}", s[1].cpu_s),
            t[1].cpu_s / s[1].cpu_s,
        ));
        let gaps = |rounds: &[Round]| {
            let sum = |f: fn(&Round) -> u64| rounds.iter().map(f).sum::<u64>();
            (sum(|r| r.missed), sum(|r| r.lost), sum(|r| r.refused), sum(|r| r.expected))
        };
        let (tg, sg) = (gaps(t), gaps(s));
        let mut r = row(
            "  deliveries missed (told) / lost, both rounds".into(),
            format!("{}/{}", tg.0, tg.1),
            format!("{}/{}", sg.0, sg.1),
            f64::NAN,
        );
        r.verdict = format!("(of {} each; {} Publish refused)", tg.3, tg.2);
        self.rows.push(r);
        false
    }

    /// The daemon's RSS per subscription.
    fn subscriptions(
        &mut self,
        size: &Size,
        shared: &Result<(f64, f64, u64), String>,
        distinct: &Result<(f64, f64, u64), String>,
    ) -> bool {
        let (n, k, own) = (size.idle_sessions, size.idle_topics, size.idle_own_topics);
        let metric = format!("daemon RSS per topic subscription, {n} idle sessions");
        let (s, d) = match (shared, distinct) {
            (Ok(s), Ok(d)) => (s, d),
            (Err(e), _) | (_, Err(e)) => return self.failed(&metric, e),
        };
        eprintln!(
            "  the same topics: {:.2} KiB per subscription ({:.2} given back); topics of their \
             own: {:.2} KiB ({:.2} given back)",
            s.0, s.1, d.0, d.1
        );
        self.rows.push(Row::section(&metric));
        for (name, v) in [
            (format!("  each on the same {k} topics (KiB)"), s),
            (format!("  each on {own} topics of its own, {} topics (KiB)", n * own), d),
        ] {
            self.rows.push(Row {
                metric: name,
                gateway: format!("{:.2}", v.0),
                verdict: format!("({:.2} KiB given back on unsubscribing)", v.1),
                ..Default::default()
            });
        }
        false
    }
}
