//! `--only metrics`: what counting costs. The gateway's TCP throughput (raw and framed)
//! with the daemons' metrics on, as they run by default, and off (`-nometrics`), the
//! runs of both interleaved so that drift in the machine's speed hits both alike. The
//! table gives the median of each and the spread of its runs: "within noise" means the
//! medians differ by less than the runs of one setting differ among themselves.

use crate::{throughput_gateway, Measured, Row, Size, Table, TCP};

/// Runs of each setting at least.
const RUNS: usize = 5;

pub fn run(size: &Size, table: &mut Table) -> bool {
    let mut failed = false;
    table.rows.push(Row::section("metrics on (default) vs -nometrics, TCP (MB/s)"));
    for frames in [false, true] {
        let mode = if frames { "framed 64 KiB" } else { "raw" };
        let metric = format!("throughput TCP {mode}, metrics on | off");
        eprintln!("- {metric}");
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..size.runs.max(RUNS) {
            for (flags, into) in [(&[][..], &mut on), (&["-nometrics"][..], &mut off)] {
                match throughput_gateway(size, TCP, frames, flags) {
                    Ok(Measured { values, cpu_per_gb, .. }) => into.push((values[0], cpu_per_gb)),
                    Err(e) => {
                        failed |= table.failed(&metric, &e);
                        return failed;
                    }
                }
            }
        }
        table.rows.extend(rows(&metric, &mut on, &mut off));
    }
    failed
}

/// The throughput row and the CPU row, from each setting's runs.
fn rows(metric: &str, on: &mut [(f64, f64)], off: &mut [(f64, f64)]) -> [Row; 2] {
    let median = |runs: &mut [(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        (values[values.len() / 2], values[0], values[values.len() - 1])
    };
    let (on_mb, on_lo, on_hi) = median(on, |r| r.0);
    let (off_mb, off_lo, off_hi) = median(off, |r| r.0);
    let spread = (on_hi - on_lo).max(off_hi - off_lo);
    let verdict = if (on_mb - off_mb).abs() <= spread {
        format!("within noise (runs on {on_lo:.0}–{on_hi:.0}, off {off_lo:.0}–{off_hi:.0})")
    } else {
        format!("OUTSIDE noise (runs on {on_lo:.0}–{on_hi:.0}, off {off_lo:.0}–{off_hi:.0})")
    };
    eprintln!("  metrics on {on_mb:.0} MB/s, off {off_mb:.0} MB/s: {verdict}");
    let (on_cpu, ..) = median(on, |r| r.1);
    let (off_cpu, ..) = median(off, |r| r.1);
    [
        Row {
            metric: metric.to_string(),
            gateway: format!("{on_mb:.0}"),
            direct: format!("{off_mb:.0}"),
            ratio: format!("{:.3}", on_mb / off_mb),
            target: "within noise".into(),
            verdict,
        },
        Row {
            metric: "  CPU s per GB (the 2 daemons), on | off".into(),
            gateway: format!("{on_cpu:.2}"),
            direct: format!("{off_cpu:.2}"),
            ratio: format!("{:.3}", on_cpu / off_cpu),
            ..Default::default()
        },
    ]
}
