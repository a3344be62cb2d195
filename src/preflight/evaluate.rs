//! Needs against facts: one `Check` per thing checked, in group order, each failure with who it
//! blocks and what to do. Pure: the same needs and facts always give the same report.
//!
//! The groups of checks by subject: the API, nodes and vmids here; `storage` (storages and
//! space), `network` (bridges), `pci` (mappings) and `privileges` beside it.

mod network;
mod pci;
mod privileges;
mod storage;

use std::collections::BTreeMap;

use super::gather::Facts;
use super::needs::{Needs, Users};
use super::{Check, Group, Report, Status};
use crate::pve::PveError;

/// Compare what the spec needs with what the cluster answered.
pub fn evaluate(needs: &Needs, facts: &Facts) -> Report {
    let mut out = Checks::default();
    api(needs, facts, &mut out);
    if facts.version.is_ok() {
        nodes(needs, facts, &mut out);
        storage::storages(needs, facts, &mut out);
        storage::space(needs, facts, &mut out);
        network::bridges(needs, facts, &mut out);
        pci::pci(needs, facts, &mut out);
        privileges::privileges(needs, facts, &mut out);
        vmids(needs, facts, &mut out);
    } else {
        out.group = Some(Group::Api);
        out.push(
            Status::Skip,
            "other checks",
            "not run: every other check asks the API",
        );
    }
    Report { checks: out.checks }
}

/// Collects checks for the current group.
#[derive(Default)]
struct Checks {
    group: Option<Group>,
    checks: Vec<Check>,
}

impl Checks {
    fn push(&mut self, status: Status, subject: impl Into<String>, message: impl Into<String>) {
        self.push_with(status, subject, message, Vec::new(), Vec::new());
    }

    fn push_with(
        &mut self,
        status: Status,
        subject: impl Into<String>,
        message: impl Into<String>,
        details: Vec<String>,
        hints: Vec<String>,
    ) {
        self.checks.push(Check {
            group: self.group.unwrap_or(Group::Api),
            status,
            subject: subject.into(),
            message: message.into(),
            details,
            hints,
        });
    }

    /// Start a group; `finish` adds a skipped check when it stayed empty.
    fn start(&mut self, group: Group) -> usize {
        self.group = Some(group);
        self.checks.len()
    }

    fn finish(&mut self, started: usize, nothing: &str) {
        if self.checks.len() == started {
            self.push(Status::Skip, "nothing to check", nothing);
        }
    }
}

/// "a, b, c and 4 more".
fn list<'a>(items: impl IntoIterator<Item = &'a String>, max: usize) -> String {
    let items: Vec<&String> = items.into_iter().collect();
    let shown: Vec<&str> = items.iter().take(max).map(|s| s.as_str()).collect();
    let mut text = shown.join(", ");
    if items.len() > max {
        text.push_str(&format!(" and {} more", items.len() - max));
    }
    text
}

fn needed_by(users: &Users) -> String {
    format!("needed by {}", list(users, 4))
}

/// Bytes as Proxmox's UI shows them: GiB with one decimal, MiB below one GiB.
pub fn size_text(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let bytes_f = bytes as f64;
    if bytes_f >= GIB {
        format!("{:.1} GiB", bytes_f / GIB)
    } else {
        format!("{:.1} MiB", bytes_f / MIB)
    }
}

/// `9.1` → (9, 1); `8.4.1` → (8, 4).
fn release(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// Why a node's storages and bridges could not be checked, if they could not.
fn unusable(facts: &Facts, node: &str) -> Option<&'static str> {
    match &facts.nodes {
        Some(Ok(nodes)) => match nodes.iter().find(|n| n.name == node) {
            None => Some("no such node"),
            Some(n) if !n.online => Some("the node is offline"),
            Some(_) => None,
        },
        _ => Some("the cluster's nodes could not be listed"),
    }
}

fn api(needs: &Needs, facts: &Facts, out: &mut Checks) {
    out.start(Group::Api);
    let version = match &facts.version {
        Ok(version) => version,
        Err(error) => {
            let (message, hints) = api_failure(error);
            out.push_with(Status::Fail, "API", message, Vec::new(), hints);
            return;
        }
    };
    out.push(
        Status::Pass,
        format!("Proxmox VE {}", version.release),
        format!("the API answers (pve-manager {})", version.version),
    );
    let Some(have) = release(&version.release) else {
        out.push(
            Status::Warn,
            "version",
            format!(
                "cannot read the release `{}`; the features below were not checked against it",
                version.release
            ),
        );
        return;
    };
    for gate in &needs.gates {
        let subject = format!("PVE ≥ {}.{}", gate.since.0, gate.since.1);
        if have >= gate.since {
            out.push(
                Status::Pass,
                subject,
                format!("{}, used by {}", gate.feature, list(&gate.users, 3)),
            );
        } else {
            out.push_with(
                Status::Fail,
                subject,
                format!(
                    "{} needs PVE {}.{} or later; the cluster runs {}",
                    gate.feature, gate.since.0, gate.since.1, version.release
                ),
                vec![needed_by(&gate.users)],
                vec![gate.advice.to_string()],
            );
        }
    }
}

fn api_failure(error: &PveError) -> (String, Vec<String>) {
    match error {
        PveError::Http { status: 401, .. } => (
            "the API token was refused (HTTP 401, authentication failure)".into(),
            vec![
                "check PROXMOX_VE_API_TOKEN: user@realm!tokenid=secret, of a token that exists and has not expired, whose user is enabled".into(),
            ],
        ),
        PveError::Connect { .. } | PveError::Timeout { .. } => (
            format!("cannot reach the API: {error}"),
            vec![
                "check PROXMOX_VE_ENDPOINT (https://HOST:8006), that the node is up and that port 8006 is open".into(),
                "a cluster with its own CA: pass --ca-file (a node's /etc/pve/pve-root-ca.pem), or --insecure to skip verification".into(),
            ],
        ),
        other => (format!("the API failed: {other}"), Vec::new()),
    }
}

fn nodes(needs: &Needs, facts: &Facts, out: &mut Checks) {
    let started = out.start(Group::Nodes);
    match &facts.nodes {
        Some(Ok(known)) => {
            let names: Vec<String> = known.iter().map(|n| n.name.clone()).collect();
            for (node, users) in &needs.nodes {
                match known.iter().find(|n| &n.name == node) {
                    Some(n) if n.online => out.push(Status::Pass, node, "online"),
                    Some(_) => out.push_with(
                        Status::Fail,
                        node,
                        "offline",
                        vec![needed_by(users)],
                        vec![format!(
                            "bring {node} back online, or move what the spec puts on it; its storages and bridges were not checked"
                        )],
                    ),
                    None => {
                        let mut hints = Vec::new();
                        if let Some(guess) = closest(node, &names) {
                            hints.push(format!("did you mean `{guess}`?"));
                        }
                        hints.push(format!(
                            "change the spec's `node:` to a node of the cluster, or join {node} to the cluster"
                        ));
                        out.push_with(
                            Status::Fail,
                            node,
                            format!("no such node in the cluster (nodes: {})", list(&names, 8)),
                            vec![needed_by(users)],
                            hints,
                        );
                    }
                }
            }
        }
        Some(Err(error)) => out.push(
            Status::Fail,
            "nodes",
            format!("cannot list the cluster's nodes: {error}"),
        ),
        None => {}
    }
    out.finish(started, "the spec names no node");
}

/// The most similar candidate (the first of equals), if similar enough.
fn closest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a String> {
    let mut best: Option<(f64, &String)> = None;
    for candidate in candidates {
        let score = strsim::jaro_winkler(name, candidate);
        if score > 0.8 && best.is_none_or(|(top, _)| score > top) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// A desired vmid the cluster listing does not show: free, or held by a VM the token cannot see.
fn unlisted_vmid(
    facts: &Facts,
    vmid: u32,
    key: &str,
    subject: String,
    out: &mut Checks,
    free: &mut Vec<String>,
) {
    match facts.hidden.get(&vmid) {
        Some(Ok(false)) => out.push_with(
            Status::Fail,
            subject,
            format!("taken by a VM the token cannot see (it lacks VM.Audit on /vms/{vmid})"),
            Vec::new(),
            vec![format!(
                "give {key} another vmid, or grant VM.Audit to see what holds it"
            )],
        ),
        Some(Err(error)) => out.push(
            Status::Warn,
            subject,
            format!("cannot tell whether it is free: {error}"),
        ),
        _ => free.push(vmid.to_string()),
    }
}

fn vmids(needs: &Needs, facts: &Facts, out: &mut Checks) {
    let started = out.start(Group::Vmids);
    let listed: BTreeMap<u32, &crate::pve::VmSummary> = match &facts.vms {
        Some(Ok(vms)) => vms.iter().map(|vm| (vm.vmid, vm)).collect(),
        Some(Err(error)) => {
            out.push(
                Status::Fail,
                "VMs",
                format!("cannot list the cluster's VMs: {error}"),
            );
            return;
        }
        None => return,
    };
    let mut free = Vec::new();
    let mut ours = Vec::new();
    let mut making = Vec::new();
    for (vmid, key) in &needs.vmids {
        let subject = format!("{vmid} ({key})");
        let Some(vm) = listed.get(vmid) else {
            unlisted_vmid(facts, *vmid, key, subject, out, &mut free);
            continue;
        };
        let name = vm
            .name
            .as_deref()
            .map(|n| format!(" `{n}`"))
            .unwrap_or_default();
        if vm.kind == crate::pve::GuestKind::Lxc {
            out.push_with(
                Status::Fail,
                subject,
                format!(
                    "held by container {vmid}{name} on {}, which proxfleet did not create",
                    vm.node
                ),
                Vec::new(),
                vec![format!(
                    "give {key} another vmid: proxfleet never changes a container"
                )],
            );
            continue;
        }
        let another_project = matches!(
            facts.owners.get(vmid),
            Some(Ok(Some(marker))) if marker.project != needs.project
        );
        // A VM a task is still making has no marker yet (Proxmox writes the configuration when
        // the task ends): an earlier run's work in progress, which plan and apply wait for.
        if crate::state::lock_means_being_made(vm.lock.as_deref()) && !another_project {
            let lock = vm.lock.as_deref().unwrap_or_default();
            making.push(format!("{vmid}{name} (locked `{lock}`)"));
            continue;
        }
        match facts.owners.get(vmid) {
            Some(Ok(Some(marker))) if marker.project == needs.project => {
                ours.push(format!("{vmid} ({})", marker.key));
            }
            Some(Ok(Some(marker))) => out.push_with(
                Status::Fail,
                subject,
                format!(
                    "held by project `{}` ({}) on {}",
                    marker.project, marker.key, vm.node
                ),
                Vec::new(),
                vec![format!(
                    "give {key} another vmid: a project never touches another project's VMs"
                )],
            ),
            Some(Ok(None)) => out.push_with(
                Status::Fail,
                subject,
                format!(
                    "held by VM {vmid}{name} on {}, which proxfleet did not create",
                    vm.node
                ),
                Vec::new(),
                vec![format!(
                    "give {key} another vmid, or remove or renumber that VM: proxfleet never changes a VM it did not create"
                )],
            ),
            Some(Err(error)) => out.push(
                Status::Fail,
                subject,
                format!("cannot read the configuration of VM {vmid}: {error}"),
            ),
            // Tagged: the plan's observation proves ownership right after, reading what this
            // check does not.
            None if facts.tagged.contains(vmid) => ours.push(format!("{vmid}{name}")),
            None => free.push(vmid.to_string()),
        }
    }
    if !free.is_empty() {
        out.push(Status::Pass, "free", list(&free, 10));
    }
    if !ours.is_empty() {
        out.push(Status::Pass, "this project's already", list(&ours, 6));
    }
    if !making.is_empty() {
        out.push(
            Status::Pass,
            "being made by a running task (plan and apply wait for it)",
            list(&making, 6),
        );
    }
    out.finish(started, "the spec makes no VM");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse() {
        assert_eq!(release("9.1"), Some((9, 1)));
        assert_eq!(release("8.4.1"), Some((8, 4)));
        assert_eq!(release("8"), Some((8, 0)));
        assert_eq!(release("pve"), None);
        assert!((8, 3) < (8, 4) && (9, 0) > (8, 4));
    }

    #[test]
    fn sizes_read_like_the_ui() {
        assert_eq!(size_text(20 << 30), "20.0 GiB");
        assert_eq!(size_text(12 << 20), "12.0 MiB");
        assert_eq!(size_text(3 << 29), "1.5 GiB");
    }
}
