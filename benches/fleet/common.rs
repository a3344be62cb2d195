//! What the sections share: the fleet spec they generate, the simulator they start, the
//! request counting by endpoint, and the tables they print.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use proxfleet::apply::{ApplyOptions, ApplyReport, EventSink};
use proxfleet::commands::Connection;
use proxfleet::graph::DesiredGraph;
use proxfleet::plan::Plan;
use proxfleet::sim::{RequestRecord, SimConfig, SimHandle};
use proxfleet::spec::Spec;
use proxfleet::state::ActualState;
use proxfleet::{diff, observe};

/// A clone group holds at most this many clones (the spec's limit).
const GROUP_SIZE: usize = 1000;

/// A fleet: the quickstart's image and template, and `n_clones` linked clones in groups of at
/// most 1000, each with a static address, its own cores and memory, started.
pub fn fleet_spec(n_clones: usize) -> String {
    let mut text = String::from(
        "project: bench\n\
         images:\n  debian-12:\n\
         \x20   url: https://cloud.debian.org/images/cloud/bookworm/20250210-2019/debian-12-genericcloud-amd64-20250210-2019.qcow2\n\
         \x20   checksum: sha512:a58d86525d75fd8e139a2302531ce5d2ab75ef0273cfe78f9d53aada4b23efd45f8433b4806fa4570cfe981c8fae26f5e5e855cbd66ba2198862f28125fd2d45\n\
         \x20   storage: local\n\
         \x20   node: pve1\n\
         templates:\n  debian-12-base:\n\
         \x20   vmid: 9000\n\
         \x20   node: pve1\n\
         \x20   image: debian-12\n\
         \x20   machine: q35\n\
         \x20   cores: 2\n\
         \x20   memory: 2GiB\n\
         \x20   disk:\n      storage: local-lvm\n      size: 20G\n\
         \x20   network:\n      - bridge: vmbr0\n        model: virtio\n\
         \x20   agent: true\n\
         \x20   cloud_init:\n      user: debian\n      ssh_keys:\n        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINeA4p1Q2dIqor6pOI1wJK37hZeBNvahZhylneTi+5ph ops@example.com\n      ipv4: dhcp\n",
    );
    if n_clones > 0 {
        text.push_str("clone_groups:\n");
    }
    let n_groups = n_clones.div_ceil(GROUP_SIZE);
    for group_idx in 0..n_groups {
        let count = (n_clones - group_idx * GROUP_SIZE).min(GROUP_SIZE);
        text.push_str(&format!(
            "  g{group_idx}:\n\
             \x20   count: {count}\n\
             \x20   name: g{group_idx}-vm-{{n}}\n\
             \x20   first_vmid: {first_vmid}\n\
             \x20   template: debian-12-base\n\
             \x20   full: false\n\
             \x20   cores: 2\n\
             \x20   memory: 2GiB\n\
             \x20   tags: [bench]\n\
             \x20   cloud_init:\n      ipv4: 10.{group_idx}.0.10/16\n      gateway: 10.{group_idx}.0.1\n",
            first_vmid = 10_000 + group_idx * GROUP_SIZE,
        ));
    }
    text
}

/// Where and how a fleet's clones are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Nodes the clones are spread over in turn (1: all on `pve1`, on `local-lvm`; more: the
    /// image and template on the shared NFS storage `shared`, as `examples/cluster.yaml`).
    pub n_nodes: usize,
    /// Full clones (copies of the template's disks) instead of linked ones.
    pub full: bool,
}

/// `fleet_spec` in another shape.
pub fn shaped_fleet_spec(n_clones: usize, shape: Shape) -> String {
    let mut text = fleet_spec(n_clones);
    if shape.full {
        text = text.replace("    full: false\n", "    full: true\n");
    }
    if shape.n_nodes > 1 {
        let nodes: Vec<String> = (1..=shape.n_nodes).map(|i| format!("pve{i}")).collect();
        text = text
            .replace("    storage: local\n", "    storage: shared\n")
            .replace("      storage: local-lvm\n", "      storage: shared\n")
            .replace(
                "    template: debian-12-base\n",
                &format!(
                    "    template: debian-12-base\n    nodes: [{}]\n",
                    nodes.join(", ")
                ),
            );
    }
    text
}

/// Write a fleet spec of `n_clones` in `shape` into `dir`.
pub fn write_shaped_fleet_spec(dir: &Path, n_clones: usize, shape: Shape) -> PathBuf {
    let path = dir.join(format!(
        "fleet-{n_clones}-{}n-{}.yaml",
        shape.n_nodes,
        if shape.full { "full" } else { "linked" }
    ));
    std::fs::write(&path, shaped_fleet_spec(n_clones, shape)).expect("write the spec");
    path
}

/// Write a fleet spec of `n_clones` into `dir`.
pub fn write_fleet_spec(dir: &Path, n_clones: usize) -> PathBuf {
    let path = dir.join(format!("fleet-{n_clones}.yaml"));
    std::fs::write(&path, fleet_spec(n_clones)).expect("write the spec");
    path
}

/// Load a spec the benches wrote (it is valid by construction).
pub fn load(file: &Path) -> Spec {
    match proxfleet::spec::load(file) {
        Ok(loaded) => loaded.spec,
        Err(err) => panic!("the generated spec is invalid: {err}"),
    }
}

/// A simulator on loopback whose tasks all take `task_duration`, without latency.
pub async fn start_sim(task_duration: Duration) -> SimHandle {
    SimHandle::start(SimConfig {
        task_duration: Some(task_duration),
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

/// An event sink that drops every event (apply's progress is not what is measured).
pub fn silent() -> EventSink {
    Arc::new(|_| {})
}

/// Observe and diff: the plan for `spec` on the connection.
pub async fn plan_for(conn: &Connection, spec: &Spec) -> (DesiredGraph, ActualState, Plan) {
    let desired = DesiredGraph::build(spec);
    let actual = observe::observe(&conn.client, &desired)
        .await
        .expect("the simulator can be observed");
    let plan = diff::diff(&desired, &actual);
    assert!(plan.conflicts.is_empty(), "conflicts: {:?}", plan.conflicts);
    (desired, actual, plan)
}

/// Apply `spec` with `parallelism`, failing loudly if any change fails.
pub async fn converge(conn: &Connection, spec: &Spec, parallelism: usize) -> ApplyReport {
    let (desired, actual, plan) = plan_for(conn, spec).await;
    let options = ApplyOptions {
        parallelism,
        ..ApplyOptions::default()
    };
    let report =
        proxfleet::apply::apply(&conn.client, &plan, &desired, &actual, &options, silent()).await;
    assert!(!report.failed(), "apply failed: {:?}", report.outcomes);
    report
}

/// The API path template of a request the simulator served: node names, vmids, storages,
/// volumes and task ids replaced by `{node}`, `{vmid}`, `{storage}`, `{volume}`, `{upid}`.
pub fn endpoint(record: &RequestRecord) -> String {
    let path = record
        .path
        .strip_prefix("/api2/json")
        .unwrap_or(&record.path);
    let mut out = Vec::new();
    let mut previous = "";
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let shown = match previous {
            "nodes" => "{node}",
            "qemu" if segment.chars().all(|c| c.is_ascii_digit()) => "{vmid}",
            "storage" => "{storage}",
            "content" => "{volume}",
            "tasks" => "{upid}",
            _ => segment,
        };
        out.push(shown.to_string());
        previous = segment;
    }
    format!("{} /{}", record.method, out.join("/"))
}

/// Requests by endpoint template.
pub fn by_endpoint(records: &[RequestRecord]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in records {
        *counts.entry(endpoint(record)).or_default() += 1;
    }
    counts
}

/// How many requests repeat an earlier one exactly (same method and path).
pub fn repeated(records: &[RequestRecord]) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    records
        .iter()
        .filter(|r| !seen.insert((r.method.as_str(), r.path.as_str())))
        .count()
}

/// A table in the style of proxfleet's own.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(header.iter().copied());
    table
}

/// Seconds with three decimals, or milliseconds below a second.
pub fn shown(duration: Duration) -> String {
    if duration >= Duration::from_secs(1) {
        format!("{:.2} s", duration.as_secs_f64())
    } else {
        format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
    }
}

/// The median of some durations.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// `ok` or `MISSED`, for a target column.
pub fn verdict(met: bool) -> &'static str {
    if met { "ok" } else { "MISSED" }
}

/// How long this thread has run on a CPU, and waited for one, so far (Linux's schedstat). On a
/// shared machine the first is the work and the second is other people's builds.
pub fn thread_times() -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let on_cpu = fields.next()??;
    let waiting = fields.next()??;
    Some((Duration::from_nanos(on_cpu), Duration::from_nanos(waiting)))
}
