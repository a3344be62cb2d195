//! Validation at scale: `spec::load_str` on 100,000 clones (100 groups of 1,000), once valid and
//! once with mistakes repeated in every clone of some groups (an unknown template, vmids below
//! 100, a static address shared by every clone), printed as a table. The target is under a
//! second either way, with repeated problems collapsed into one line per group and mistake.
//!
//! `cargo bench --bench validate` runs it; `--quick` uses 10,000 clones.

use std::path::Path;
use std::time::{Duration, Instant};

/// The allocator the `proxfleet` binary uses (`src/main.rs`), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N_GROUPS: usize = 100;
const GROUP_SIZE: usize = 1000;
const RUNS: usize = 3;

/// A spec with `n_groups` groups of 1,000 clones; `mistakes` puts a mistake in every fourth
/// group, of each kind in turn.
fn fleet_spec(n_groups: usize, mistakes: bool) -> String {
    let mut text = String::from(
        "images:\n  debian:\n    url: https://example.com/debian.qcow2\n    checksum: sha256:0000000000000000000000000000000000000000000000000000000000000000\n    storage: local\n    node: pve1\ntemplates:\n  base:\n    vmid: 9000\n    node: pve1\n    image: debian\n    agent: true\n    disk: {storage: local-lvm, size: 20G}\n    network: [{bridge: vmbr0}]\nclone_groups:\n",
    );
    for group_idx in 0..n_groups {
        let first_vmid = 10_000 + group_idx * GROUP_SIZE;
        let (template, vmid, ipv6) = match (mistakes, group_idx % 4) {
            (true, 1) => ("nope", first_vmid, None),
            (true, 2) => ("base", 1, None),
            (true, 3) => ("base", first_vmid, Some("2001:db8::10/64")),
            _ => ("base", first_vmid, None),
        };
        text.push_str(&format!(
            "  g{group_idx}:\n    count: {GROUP_SIZE}\n    first_vmid: {vmid}\n    template: {template}\n    nodes: [pve1, pve2]\n    cloud_init:\n      ipv4: 10.{group_idx}.0.1/16\n"
        ));
        if let Some(ipv6) = ipv6 {
            text.push_str(&format!("      ipv6: {ipv6}\n"));
        }
    }
    text
}

/// The fastest of a few runs, the number of problems and the length of the error text.
fn measure(text: &str) -> (Duration, usize, usize, usize) {
    let mut best = Duration::MAX;
    let mut outcome = (0, 0, 0);
    for _ in 0..RUNS {
        let started = Instant::now();
        let result = proxfleet::spec::load_str(text, Path::new("fleet.yaml"));
        best = best.min(started.elapsed());
        outcome = match result {
            Ok(loaded) => (loaded.spec.clones.len(), 0, 0),
            Err(err) => (0, err.diagnostics().len(), err.to_string().lines().count()),
        };
    }
    (best, outcome.0, outcome.1, outcome.2)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n_groups = if quick { N_GROUPS / 10 } else { N_GROUPS };
    println!(
        "proxfleet {} validation benchmark: {} clones in {n_groups} groups, best of {RUNS}",
        env!("CARGO_PKG_VERSION"),
        n_groups * GROUP_SIZE
    );
    println!(
        "{:<16} {:>10} {:>10} {:>9} {:>11} {:>8}",
        "spec", "YAML", "time", "clones", "problems", "lines"
    );
    for (label, mistakes) in [("valid", false), ("with mistakes", true)] {
        let text = fleet_spec(n_groups, mistakes);
        let (time, n_clones, n_problems, n_lines) = measure(&text);
        let verdict = if time < Duration::from_secs(1) {
            "ok"
        } else {
            "OVER 1 s"
        };
        println!(
            "{label:<16} {:>8}KB {:>8.0}ms {n_clones:>9} {n_problems:>11} {n_lines:>8}  {verdict}",
            text.len() / 1024,
            time.as_secs_f64() * 1000.0
        );
        // What a user reads: one line per mistake and group, not one per clone.
        if let Err(err) = proxfleet::spec::load_str(&text, Path::new("fleet.yaml")) {
            for line in err
                .to_string()
                .lines()
                .filter(|l| l.starts_with("error:"))
                .take(4)
            {
                println!("    {line}");
            }
        }
    }
}
