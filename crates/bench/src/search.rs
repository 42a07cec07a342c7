//! Session search: how fast sessions are indexed, and how long searches take over an index of
//! many recorded sessions (goal: p99 < 100 ms). Synthetic sessions shaped like real ones — typed
//! commands and their output in one-second windows — go straight into the index (the same
//! encrypted directory and feed the server uses), then a mix of rare words, common words,
//! phrases and filtered searches is timed. `PORTCULLIS_BENCH_SEARCH_MIB` sets the amount of
//! session text (default 1024; quick: 16).

use std::time::{Duration, Instant};

use portcullis_recording::{Event, EventKind};
use portcullis_search::{Facts, Kind, SearchIndex, SearchQuery};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{percentile, Metric};

const COMMANDS: &[&str] = &[
    "systemctl status nginx",
    "systemctl restart postgresql",
    "journalctl -u sshd --since today",
    "tail -n 200 /var/log/syslog",
    "df -h",
    "ps aux --sort=-%mem",
    "cat /etc/hosts",
    "ls -la /var/lib/postgresql",
    "grep -r ERROR /var/log/app",
    "sudo -l",
    "ip addr show",
    "free -m",
];

/// A word of a 50,000-word vocabulary with Zipf's law (the word of rank r about 1/r as often
/// as the commonest, which is about 6 % of all words), as natural and log text has it.
fn word(rng: &mut StdRng) -> String {
    let rank = (rng.gen_range(0.0f64..1.0) * 50_000f64.ln()).exp() as u32;
    match rank % 7 {
        0 => format!("w{rank}"),
        1 => format!("/var/lib/app{}/data{}", rank % 97, rank),
        2 => format!("{:08x}", rank.wrapping_mul(2_654_435_761)),
        3 => format!("{rank}"),
        _ => format!("term{rank}"),
    }
}

fn session(ix: &SearchIndex, i: u64, bytes: usize, rng: &mut StdRng) -> usize {
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let assets = ["db1", "db2", "web1", "web2", "app1", "cache1", "mq1", "lb1"];
    let facts = Facts {
        session_id: format!("s{i:06}"),
        user: users[i as usize % users.len()].into(),
        account: "root".into(),
        asset: assets[(i as usize / 3) % assets.len()].into(),
        protocol: "ssh".into(),
        client: "10.0.0.7:51234".into(),
        started_at: 1_790_000_000_000_000 + i as i64 * 600_000_000,
    };
    let mut feed = ix.live(facts);
    feed.event(&Event::new(0, EventKind::Meta, 0, b"{}".to_vec()));
    feed.event(&Event::new(1, EventKind::Shell, 1, Vec::new()));
    let (mut at, mut done) = (1_000_000u64, 0usize);
    while done < bytes {
        let cmd = COMMANDS[rng.gen_range(0..COMMANDS.len())];
        feed.event(&Event::new(at, EventKind::Input, 1, format!("{cmd}\r").into_bytes()));
        // About 4 KiB of output per command, in lines of 6 to 14 words.
        let mut out = String::new();
        while out.len() < 4096 {
            let n = rng.gen_range(6..14);
            let line: Vec<String> = (0..n).map(|_| word(rng)).collect();
            out.push_str(&line.join(" "));
            out.push_str("\r\n");
        }
        done += out.len() + cmd.len();
        feed.event(&Event::new(at + 50_000, EventKind::Output, 1, out.into_bytes()));
        at += 2_000_000;
    }
    feed.event(&Event::new(at, EventKind::End, 0, b"the client closed the connection".to_vec()));
    done
}

pub fn run(quick: bool) -> Vec<Metric> {
    let mib: usize = std::env::var("PORTCULLIS_BENCH_SEARCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 16 } else { 1024 });
    let dir = tempfile::tempdir().expect("temp dir");
    let key = zeroize::Zeroizing::new([9u8; 32]);
    let ix = SearchIndex::open(dir.path(), &key).expect("index");
    let mut rng = StdRng::seed_from_u64(20261130);
    // Sessions of about 1 MiB of text each.
    let per = 1 << 20;
    let start = Instant::now();
    let mut total = 0usize;
    let mut i = 0u64;
    while total < mib << 20 {
        total += session(&ix, i, per, &mut rng);
        i += 1;
        // The live feed never waits: keep its queue from overflowing, as sessions arriving
        // over time (not all at once) would.
        while ix.backlog() > 8 << 20 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    ix.flush().expect("flush");
    let secs = start.elapsed().as_secs_f64();
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    let queries: Vec<SearchQuery> = {
        let mut q = Vec::new();
        let mut r = StdRng::seed_from_u64(7);
        for n in 0..200 {
            let mut s = SearchQuery { limit: 50, ..SearchQuery::default() };
            match n % 5 {
                0 => s.text = word(&mut r),
                1 => s.text = "\"systemctl restart\"".into(),
                2 => {
                    s.text = word(&mut r);
                    s.asset = Some("db1".into());
                    s.kinds = vec![Kind::Output];
                }
                3 => {
                    s.text = "postgresql".into();
                    s.user = Some("alice".into());
                    s.from = Some(1_790_000_000_000_000 + 86_400_000_000);
                }
                _ => s.text = format!("{} {}", word(&mut r), word(&mut r)),
            }
            q.push(s);
        }
        q
    };
    let mut times: Vec<Duration> = Vec::new();
    let mut by_kind: [Duration; 5] = Default::default();
    let mut hits = 0usize;
    for (n, q) in queries.iter().enumerate() {
        let t = Instant::now();
        hits += ix.search(q).expect("search").len();
        let d = t.elapsed();
        if std::env::var_os("PORTCULLIS_BENCH_SEARCH_VERBOSE").is_some() && d > Duration::from_millis(30) {
            eprintln!("slow search ({:.0} ms): {:?}", d.as_secs_f64() * 1000.0, q);
        }
        by_kind[n % 5] = by_kind[n % 5].max(d);
        times.push(d);
    }
    times.sort();
    let slowest = format!(
        "slowest by kind: word {:.0} ms, phrase {:.0} ms, word+asset+kind {:.0} ms, word+user+time {:.0} ms, two words {:.0} ms",
        by_kind[0].as_secs_f64() * 1000.0,
        by_kind[1].as_secs_f64() * 1000.0,
        by_kind[2].as_secs_f64() * 1000.0,
        by_kind[3].as_secs_f64() * 1000.0,
        by_kind[4].as_secs_f64() * 1000.0
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let label = format!("{mib} MiB of session text, {i} sessions");
    vec![
        Metric {
            name: "search: indexing throughput".into(),
            value: (total as f64 / (1 << 20) as f64) / secs,
            unit: "MiB/s",
            spread: (0.0, 0.0),
            goal: String::new(),
            note: format!(
                "{label}; index {:.0} MiB on disk (encrypted), {} entries",
                on_disk as f64 / (1 << 20) as f64,
                ix.entries()
            ),
        },
        Metric {
            name: "search: query latency p50".into(),
            value: ms(percentile(&times, 50.0)),
            unit: "ms",
            spread: (ms(times[0]), ms(times[times.len() - 1])),
            goal: String::new(),
            note: format!("{} searches over {label}; {hits} hits in all", times.len()),
        },
        Metric {
            name: "search: query latency p99".into(),
            value: ms(percentile(&times, 99.0)),
            unit: "ms",
            spread: (ms(times[0]), ms(times[times.len() - 1])),
            goal: "< 100".into(),
            note: slowest,
        },
    ]
}
