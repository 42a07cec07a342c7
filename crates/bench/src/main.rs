//! `cargo run -p portcullis-bench --release -- all` runs every benchmark and prints a table;
//! `--quick` runs tiny versions that only prove the harness works (CI). Results are also
//! written as JSON (with git revision and machine facts) to `target/bench/results.json`.
//! Timings are repeated; the median and the spread (min–max) are reported. Nothing here
//! asserts a time.

mod delivery;
mod nodes;
mod null_target;
mod policy;
mod proxy;
mod rdp;
mod search;
mod siem;
mod web;
mod workflow;

use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Portcullis benchmarks")]
struct Args {
    /// Which benchmark to run.
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Tiny sizes: checks that the harness works, not the speed.
    #[arg(long)]
    quick: bool,
    /// Only these parts of the proxy group (comma-separated): throughput, content, indexing, archive, scp,
    /// latency, telnet, setup, signins, recording, revocation, footprint.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/results.json")]
    json: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    Policy,
    Workflow,
    Proxy,
    Web,
    Siem,
    Delivery,
    Rdp,
    Search,
    Nodes,
}

/// One measured metric.
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub spread: (f64, f64),
    pub goal: String,
    pub note: String,
}

/// Median and min–max of repeated measurements.
pub fn summarize(mut samples: Vec<f64>) -> (f64, (f64, f64)) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let mid = samples[samples.len() / 2];
    (mid, (samples[0], samples[samples.len() - 1]))
}

/// The p-th percentile (0–100) of durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned()))
        .unwrap_or_default();
    json!({ "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "cpu": cpu, "mem_kib": mem })
}

fn main() {
    let args = Args::parse();
    if let Some(bad) = args.only.iter().find(|o| !proxy::PARTS.contains(&o.as_str())) {
        eprintln!("unknown part {bad:?}; the proxy group's parts are: {}", proxy::PARTS.join(", "));
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut metrics = Vec::new();
    if matches!(args.which, Which::All | Which::Policy) {
        metrics.extend(policy::run(args.quick));
        metrics.extend(policy::gateway(args.quick));
    }
    if matches!(args.which, Which::All | Which::Workflow) {
        metrics.extend(rt.block_on(workflow::run(args.quick)));
    }
    if matches!(args.which, Which::All | Which::Web) {
        metrics.extend(rt.block_on(web::run(args.quick)));
    }
    if matches!(args.which, Which::All | Which::Siem) {
        metrics.extend(rt.block_on(siem::run(args.quick)));
    }
    if matches!(args.which, Which::All | Which::Delivery) {
        metrics.extend(rt.block_on(delivery::run(args.quick)));
    }
    if matches!(args.which, Which::All | Which::Proxy) {
        metrics.extend(rt.block_on(proxy::run(args.quick, &args.only)));
    }
    if matches!(args.which, Which::All | Which::Nodes) {
        metrics.extend(rt.block_on(nodes::run(args.quick)));
    }
    if matches!(args.which, Which::All | Which::Search) {
        metrics.extend(search::run(args.quick));
    }
    if matches!(args.which, Which::All | Which::Rdp) {
        metrics.extend(rt.block_on(rdp::run(args.quick)));
    }
    println!();
    println!("{:<58} {:>14} {:<10} {:>27}  goal", "metric", "median", "unit", "spread (min–max)");
    for m in &metrics {
        println!(
            "{:<58} {:>14.1} {:<10} {:>12.1} – {:<12.1}  {}",
            m.name, m.value, m.unit, m.spread.0, m.spread.1, m.goal
        );
        if !m.note.is_empty() {
            println!("    {}", m.note);
        }
    }
    let out = json!({
        "revision": git_revision(),
        "date": jiff::Timestamp::now().to_string(),
        "quick": args.quick,
        "machine": machine(),
        "metrics": metrics.iter().map(|m| json!({ "name": m.name, "median": m.value, "unit": m.unit, "min": m.spread.0, "max": m.spread.1, "goal": m.goal, "note": m.note })).collect::<Vec<_>>(),
    });
    if let Some(dir) = std::path::Path::new(&args.json).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&args.json, serde_json::to_string_pretty(&out).expect("json")) {
        Ok(()) => println!("\nwrote {}", args.json),
        Err(e) => eprintln!("cannot write {}: {e}", args.json),
    }
}
