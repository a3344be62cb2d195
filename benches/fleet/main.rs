//! proxfleet's fleet-scale benchmarks, each against the simulator in-process (or no I/O at all),
//! printed as tables:
//!
//! - `noop`: a converged fleet of 50, 200 and 1000 clones planned again with 10 ms of latency;
//! - `apply`: 20 and 100 clones applied at parallelism 1, 4, 8 and 16 with 1 s tasks;
//! - `pure`: graph + diff + render for 10,000 clones, time and peak heap;
//! - `start`: process start, `proxfleet --version`.
//!
//! `cargo bench --bench fleet` runs them all; `cargo bench --bench fleet -- noop pure` runs
//! some; `--quick` shrinks them (smaller fleets, 0.1 s tasks) for a fast look. The figures and
//! the targets they are held to are in `docs/PERFORMANCE.md`.

mod apply;
mod common;
mod noop_plan;
mod pure_plan;
mod startup;

use peak_alloc::PeakAlloc;

/// Counts the heap in use and its peak, for the pure plan's memory figure.
#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

const SECTIONS: [&str; 4] = ["noop", "apply", "pure", "start"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // Cargo passes `--bench`; other flags are not ours either.
    let chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let Some(unknown) = chosen.iter().find(|a| !SECTIONS.contains(a)) {
        eprintln!(
            "unknown section `{unknown}`; choose from {}",
            SECTIONS.join(", ")
        );
        std::process::exit(2);
    }
    let wanted = |section: &str| chosen.is_empty() || chosen.contains(&section);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // The machine may be shared: its load says how much of it the figures had.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .map(|one_minute| format!(", load average {one_minute}"))
        .unwrap_or_default();
    println!(
        "proxfleet {} fleet benchmarks, {} cores{load}{}",
        env!("CARGO_PKG_VERSION"),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if quick { ", quick" } else { "" }
    );
    if wanted("start") {
        startup::run();
    }
    if wanted("pure") {
        pure_plan::run(&runtime, quick);
    }
    if wanted("noop") {
        noop_plan::run(&runtime, quick);
    }
    if wanted("apply") {
        apply::run(&runtime, quick);
    }
}
