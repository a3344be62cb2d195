//! Process start: `proxfleet --version`, the release binary Cargo built for this bench, spawned
//! and waited for. Timed here (median and minimum of 100 runs after 5 warm-ups), and by
//! hyperfine as a second opinion when it is installed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, shown, verdict};

const WARMUP: usize = 5;
const RUNS: usize = 100;

pub fn run() {
    let binary = Path::new(env!("CARGO_BIN_EXE_proxfleet"));
    let mut table = common::table(&["timed by", "runs", "median", "mean", "min", "≤ 10 ms"]);

    let spawn = || {
        let status = Command::new(binary)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("proxfleet starts");
        assert!(status.success(), "proxfleet --version failed");
    };
    for _ in 0..WARMUP {
        spawn();
    }
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        spawn();
        samples.push(started.elapsed());
    }
    let mean = samples.iter().sum::<Duration>() / RUNS as u32;
    let min = samples.iter().min().copied().unwrap_or_default();
    let median = common::median(samples);
    table.add_row(vec![
        "this bench (spawn + wait)".to_string(),
        RUNS.to_string(),
        shown(median),
        shown(mean),
        shown(min),
        verdict(median <= Duration::from_millis(10)).to_string(),
    ]);
    match hyperfine(binary) {
        Some((mean, min, median, runs)) => {
            table.add_row(vec![
                "hyperfine -N".to_string(),
                runs.to_string(),
                shown(median),
                shown(mean),
                shown(min),
                verdict(median <= Duration::from_millis(10)).to_string(),
            ]);
        }
        None => {
            table.add_row(vec!["hyperfine (not installed)", "", "", "", "", ""]);
        }
    }
    println!("\nProcess start: {} --version", binary.display());
    println!("{table}");
}

/// hyperfine's mean, min and median (and the number of runs), when it is on the PATH.
fn hyperfine(binary: &Path) -> Option<(Duration, Duration, Duration, usize)> {
    let dir = tempfile::tempdir().ok()?;
    let json = dir.path().join("hyperfine.json");
    let command = format!("{} --version", binary.display());
    let status = Command::new("hyperfine")
        .args(["-N", "--warmup", "5", "--runs", "200", "--style", "none"])
        .arg("--export-json")
        .arg(&json)
        .arg(&command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).ok()?).ok()?;
    let result = value.get("results")?.get(0)?;
    let seconds = |key: &str| result.get(key)?.as_f64().map(Duration::from_secs_f64);
    let runs = result.get("times")?.as_array()?.len();
    Some((seconds("mean")?, seconds("min")?, seconds("median")?, runs))
}
