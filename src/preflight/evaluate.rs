//! Needs against facts: one `Check` per thing checked, in group order, each failure with who it
//! blocks and what to do. Pure: the same needs and facts always give the same report.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::{IndexMap, IndexSet};

use super::gather::Facts;
use super::needs::{Needs, PrivilegeNeed, Users};
use super::{Check, Group, ROLE, Report, Status};
use crate::pve::{NetworkInterface, PveError, StorageSummary};

/// Compare what the spec needs with what the cluster answered.
pub fn evaluate(needs: &Needs, facts: &Facts) -> Report {
    let mut out = Checks::default();
    api(needs, facts, &mut out);
    if facts.version.is_ok() {
        nodes(needs, facts, &mut out);
        storages(needs, facts, &mut out);
        space(needs, facts, &mut out);
        bridges(needs, facts, &mut out);
        pci(needs, facts, &mut out);
        privileges(needs, facts, &mut out);
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

/// Storages that can hold `import` content: the file-based ones.
const FILE_BASED: [&str; 6] = ["dir", "nfs", "cifs", "cephfs", "btrfs", "esxi"];

fn storages(needs: &Needs, facts: &Facts, out: &mut Checks) {
    let started = out.start(Group::Storages);
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for ((node, storage), contents) in &needs.storages {
        let subject = format!("{storage} on {node}");
        if let Some(reason) = unusable(facts, node) {
            if reported.insert(node) {
                out.push(
                    Status::Skip,
                    format!("storages on {node}"),
                    format!("not checked: {reason}"),
                );
            }
            continue;
        }
        let listed = match facts.storages.get(node) {
            Some(Ok(listed)) => listed,
            Some(Err(error)) => {
                if reported.insert(node) {
                    out.push(
                        Status::Fail,
                        format!("storages on {node}"),
                        format!("cannot list them: {error}"),
                    );
                }
                continue;
            }
            None => continue,
        };
        let details: Vec<String> = contents
            .iter()
            .map(|(content, users)| format!("`{content}` {}", needed_by(users)))
            .collect();
        let Some(found) = listed.iter().find(|s| &s.storage == storage) else {
            let path = format!("/storage/{storage}");
            let hidden = facts.privileges_on(&path).is_some_and(|held| {
                !held.contains("Datastore.Audit") && !held.contains("Datastore.AllocateSpace")
            });
            let message = if hidden {
                format!(
                    "not listed: Proxmox hides a storage from a token without Datastore.Audit or Datastore.AllocateSpace on {path} (see Privileges), or it is not defined for {node}"
                )
            } else {
                let names: Vec<String> = listed.iter().map(|s| s.storage.clone()).collect();
                format!(
                    "no such storage on {node} (storages there: {})",
                    list(&names, 8)
                )
            };
            let mut hints = Vec::new();
            for content in contents.keys() {
                let others = holding(listed, content);
                if !others.is_empty() {
                    hints.push(format!(
                        "storages on {node} holding `{content}`: {}",
                        list(&others, 6)
                    ));
                }
            }
            hints.push(format!(
                "or make `{storage}` available on {node} (Datacenter → Storage → {storage} → Nodes)"
            ));
            out.push_with(Status::Fail, subject, message, details, hints);
            continue;
        };
        let mut problems = Vec::new();
        let mut hints = Vec::new();
        if !found.enabled {
            problems.push("disabled".to_string());
            hints.push(format!("enable it: pvesm set {storage} --disable 0"));
        } else if !found.active {
            problems.push(format!("not active on {node}"));
            hints.push(format!(
                "see `pvesm status` on {node}: an unreachable NFS/CIFS server or a missing volume group or pool leaves a storage inactive"
            ));
        }
        for content in contents.keys() {
            if found.content.iter().any(|c| c == content) {
                continue;
            }
            let holds = found.content.join(",");
            if *content == "import" && !FILE_BASED.contains(&found.kind.as_str()) {
                problems.push(format!(
                    "cannot hold `import` content: it is a {} storage, and images to import live on file-based ones (dir, NFS, CIFS, CephFS, BTRFS)",
                    found.kind
                ));
                let others = holding(listed, content);
                hints.push(if others.is_empty() {
                    format!(
                        "add a directory storage with `import` content on {node}, e.g. enable it on `local`"
                    )
                } else {
                    format!("use a storage that holds `import`: {}", list(&others, 6))
                });
            } else {
                problems.push(format!(
                    "does not hold `{content}` content (it holds: {holds})"
                ));
                let mut hint =
                    format!("enable it: pvesm set {storage} --content {holds},{content}");
                if *content == "import" {
                    hint.push_str(" (disk images as import content need PVE ≥ 8.4)");
                }
                hints.push(hint);
            }
        }
        if problems.is_empty() {
            let kinds: Vec<String> = contents.keys().map(|c| format!("`{c}`")).collect();
            out.push(
                Status::Pass,
                subject,
                format!(
                    "{}, enabled and active, holds {}",
                    found.kind,
                    kinds.join(" and ")
                ),
            );
        } else {
            // Who is blocked: by a missing content type, those who need it; otherwise all.
            let lacking: Vec<String> = contents
                .iter()
                .filter(|(content, _)| !found.content.iter().any(|c| c == *content))
                .map(|(content, users)| format!("`{content}` {}", needed_by(users)))
                .collect();
            let details = if found.enabled && found.active && !lacking.is_empty() {
                lacking
            } else {
                details
            };
            out.push_with(Status::Fail, subject, problems.join("; "), details, hints);
        }
    }
    out.finish(started, "the spec uses no storage");
}

/// Enabled, active storages in `listed` that hold `content`.
fn holding(listed: &[StorageSummary], content: &str) -> Vec<String> {
    listed
        .iter()
        .filter(|s| s.enabled && s.active && s.content.iter().any(|c| c == content))
        .map(|s| s.storage.clone())
        .collect()
}

/// Storage types whose disks take space only as they are written (ZFS reserves a volume's
/// size unless the pool is `sparse`, and thick LVM allocates it: those are not here).
const THIN: [&str; 7] = ["lvmthin", "dir", "nfs", "cifs", "cephfs", "btrfs", "rbd"];

fn space(needs: &Needs, facts: &Facts, out: &mut Checks) {
    let started = out.start(Group::Space);
    let existing: Option<BTreeSet<u32>> = match &facts.vms {
        Some(Ok(vms)) => Some(vms.iter().map(|vm| vm.vmid).collect()),
        _ => None,
    };
    struct Tally<'a> {
        subject: String,
        kind: String,
        avail: u64,
        bytes: u64,
        by_vm: IndexMap<(&'a str, u32), u64>,
    }
    let mut tallies: IndexMap<(String, String), Tally> = IndexMap::new();
    let mut n_new = BTreeSet::new();
    for disk in &needs.disks {
        if existing.as_ref().is_some_and(|e| e.contains(&disk.vmid)) {
            continue;
        }
        n_new.insert(disk.vmid);
        // A storage that is missing or inactive fails its own check; its space is unknown.
        let Some(Ok(listed)) = facts.storages.get(&disk.node) else {
            continue;
        };
        let Some(found) = listed.iter().find(|s| s.storage == disk.storage) else {
            continue;
        };
        let Some(avail) = found.avail.filter(|_| found.active) else {
            continue;
        };
        let (key, subject) = if found.shared {
            (
                (String::new(), disk.storage.clone()),
                format!("{} (shared)", disk.storage),
            )
        } else {
            (
                (disk.node.clone(), disk.storage.clone()),
                format!("{} on {}", disk.storage, disk.node),
            )
        };
        let tally = tallies.entry(key).or_insert_with(|| Tally {
            subject,
            kind: found.kind.clone(),
            avail,
            bytes: 0,
            by_vm: IndexMap::new(),
        });
        tally.bytes += disk.bytes;
        *tally
            .by_vm
            .entry((disk.user.as_str(), disk.vmid))
            .or_default() += disk.bytes;
    }
    let counted = if existing.is_some() {
        "VMs that do not exist yet"
    } else {
        "every VM of the spec (the cluster's VMs could not be listed)"
    };
    for tally in tallies.values() {
        if tally.bytes <= tally.avail {
            out.push(
                Status::Pass,
                &tally.subject,
                format!(
                    "the new disks need up to {}; {} is free",
                    size_text(tally.bytes),
                    size_text(tally.avail)
                ),
            );
            continue;
        }
        let mut by_size: Vec<(&(&str, u32), &u64)> = tally.by_vm.iter().collect();
        by_size.sort_by(|a, b| b.1.cmp(a.1));
        let mut details = vec![format!("counting {counted}:")];
        details.extend(
            by_size.iter().take(5).map(|((user, vmid), bytes)| {
                format!("{user} (vmid {vmid}): {}", size_text(**bytes))
            }),
        );
        if by_size.len() > 5 {
            details.push(format!("and {} more VMs", by_size.len() - 5));
        }
        let (need, avail) = (size_text(tally.bytes), size_text(tally.avail));
        if THIN.contains(&tally.kind.as_str()) {
            // Proxmox lets thin storage be overcommitted: the disks take only what is written.
            out.push_with(
                Status::Warn,
                &tally.subject,
                format!(
                    "the new disks may grow to {need}, more than the {avail} free: {} is thin-provisioned, so they fit while they stay sparse, but a full pool stops the VMs on it",
                    tally.kind
                ),
                details,
                vec!["watch its use, or free space or move some disks before they fill it".into()],
            );
        } else {
            out.push_with(
                Status::Fail,
                &tally.subject,
                format!("the new disks need {need}, but {avail} is free"),
                details,
                vec![
                    "free space there, put some disks on another storage, or make them smaller"
                        .into(),
                ],
            );
        }
    }
    if out.checks.len() == started && !needs.disks.is_empty() && n_new.is_empty() {
        out.push(
            Status::Pass,
            "new disks",
            "none: every VM of the spec exists already",
        );
    }
    out.finish(started, "the spec makes no VM");
}

fn bridges(needs: &Needs, facts: &Facts, out: &mut Checks) {
    let started = out.start(Group::Bridges);
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for ((node, bridge), need) in &needs.bridges {
        let subject = format!("{bridge} on {node}");
        if let Some(reason) = unusable(facts, node) {
            if reported.insert(node) {
                out.push(
                    Status::Skip,
                    format!("bridges on {node}"),
                    format!("not checked: {reason}"),
                );
            }
            continue;
        }
        let listed = match facts.bridges.get(node) {
            Some(Ok(listed)) => listed,
            Some(Err(error)) => {
                if reported.insert(node) {
                    out.push(
                        Status::Fail,
                        format!("bridges on {node}"),
                        format!("cannot list the network: {error}"),
                    );
                }
                continue;
            }
            None => continue,
        };
        let names: Vec<String> = listed.iter().map(|i| i.name.clone()).collect();
        let Some(found) = listed.iter().find(|i| &i.name == bridge) else {
            let there = if names.is_empty() {
                "it has none".to_string()
            } else {
                format!("bridges there: {}", list(&names, 8))
            };
            out.push_with(
                Status::Fail,
                subject,
                format!("no such bridge ({there})"),
                vec![needed_by(&need.users)],
                vec![format!(
                    "create it on {node} (System → Network → Create → Linux Bridge) and apply, or use an existing bridge"
                )],
            );
            continue;
        };
        let (status, message, details, hints) = bridge_state(node, found, need);
        out.push_with(status, subject, message, details, hints);
    }
    out.finish(started, "the spec attaches no NIC");
}

/// One found bridge: active, and able to carry the VLAN tags set on it.
fn bridge_state(
    node: &str,
    found: &NetworkInterface,
    need: &super::needs::BridgeNeed,
) -> (Status, String, Vec<String>, Vec<String>) {
    let bridge = &found.name;
    let mut status = Status::Pass;
    let mut problems = Vec::new();
    let mut details = Vec::new();
    let mut hints = Vec::new();
    if !found.active {
        status = Status::Fail;
        problems.push("not active: written to the configuration but not applied".to_string());
        details.push(needed_by(&need.users));
        hints.push(format!(
            "apply the network configuration on {node}: ifreload -a, or Apply Configuration in the UI"
        ));
    }
    let tags: Vec<String> = need.vlans.keys().map(u16::to_string).collect();
    let vlan_users: Users = need.vlans.values().flatten().cloned().collect();
    let mut summary = format!("{}, active", found.kind);
    if !tags.is_empty() {
        let tag_list = tags.join(", ");
        match found.kind.as_str() {
            "bridge" if found.vlan_aware => {
                let outside: Vec<String> = need
                    .vlans
                    .keys()
                    .filter(|tag| {
                        found
                            .vids
                            .as_deref()
                            .is_some_and(|vids| !vids_contain(vids, **tag))
                    })
                    .map(u16::to_string)
                    .collect();
                if outside.is_empty() {
                    summary.push_str(&format!(", VLAN-aware (VLAN {tag_list})"));
                } else {
                    status = Status::Fail;
                    problems.push(format!(
                        "VLAN {} outside its bridge-vids ({})",
                        outside.join(", "),
                        found.vids.as_deref().unwrap_or_default()
                    ));
                    details.push(format!("VLANs {}", needed_by(&vlan_users)));
                    hints.push(format!(
                        "add them to bridge-vids of {bridge} on {node} (System → Network → {bridge}) and apply"
                    ));
                }
            }
            "bridge" => {
                let physical: Vec<&String> =
                    found.ports.iter().filter(|p| is_physical(p)).collect();
                match physical.first() {
                    Some(port) => {
                        status = status.max(Status::Warn);
                        let tag = need.vlans.keys().next().copied().unwrap_or_default();
                        problems.push(format!(
                            "not VLAN-aware: VLAN {tag_list} will use Proxmox's traditional VLAN mode (a {bridge}v{tag} bridge over {port}.{tag}, made when a VM starts)"
                        ));
                        details.push(format!("VLANs {}", needed_by(&vlan_users)));
                        hints.push(format!(
                            "to tag on {bridge} itself, make it VLAN-aware (System → Network → {bridge} → VLAN aware, i.e. bridge-vlan-aware yes) and apply"
                        ));
                    }
                    None => {
                        status = Status::Fail;
                        problems.push(format!(
                            "not VLAN-aware and without a physical port (eth*, en*, bond*), so a VM with VLAN {tag_list} cannot start (Proxmox: no physical interface on bridge '{bridge}')"
                        ));
                        details.push(format!("VLANs {}", needed_by(&vlan_users)));
                        hints.push(format!(
                            "make {bridge} VLAN-aware on {node} (System → Network → {bridge} → VLAN aware, i.e. bridge-vlan-aware yes) and apply, or drop the VLAN tag"
                        ));
                    }
                }
            }
            // Open vSwitch bridges and SDN VNets take tags as they are.
            _ => summary.push_str(&format!(" (VLAN {tag_list})")),
        }
    }
    let message = if problems.is_empty() {
        summary
    } else {
        problems.join("; ")
    };
    (status, message, details, hints)
}

/// The interfaces Proxmox's traditional VLAN mode builds on: `((eth|bond)\d+|en[^.]+)(\.\d+)?`
/// (pve-common `PVE::Network::activate_bridge_vlan`).
fn is_physical(port: &str) -> bool {
    let base = match port.rsplit_once('.') {
        Some((base, vlan)) if !vlan.is_empty() && vlan.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => port,
    };
    let numbered = |prefix: &str| {
        base.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    numbered("eth")
        || numbered("bond")
        || (base.len() > 2 && base.starts_with("en") && !base.contains('.'))
}

/// Whether a `bridge-vids` list (`2-4094`, `2 4 100-200`) allows `tag`.
fn vids_contain(vids: &str, tag: u16) -> bool {
    vids.split([' ', ',', ';'])
        .filter(|part| !part.is_empty())
        .any(|part| match part.split_once('-') {
            Some((low, high)) => match (low.parse::<u16>(), high.parse::<u16>()) {
                (Ok(low), Ok(high)) => (low..=high).contains(&tag),
                _ => false,
            },
            None => part.parse::<u16>() == Ok(tag),
        })
}

fn pci(needs: &Needs, facts: &Facts, out: &mut Checks) {
    let started = out.start(Group::PciMappings);
    for (user, address) in &needs.raw_pci {
        out.push_with(
            Status::Fail,
            user,
            format!(
                "passes the raw PCI device {address} through, which only root@pam logged in with a password may do; API tokens never can"
            ),
            Vec::new(),
            vec![
                "map the device (Datacenter → Resource Mappings → PCI Devices → Add) and write `mapping: NAME` in the spec".into(),
            ],
        );
    }
    match &facts.pci_mappings {
        Some(Err(error)) => out.push(
            Status::Fail,
            "PCI mappings",
            format!("cannot list them: {error}"),
        ),
        Some(Ok(mappings)) => {
            for (id, nodes) in &needs.pci_mappings {
                let Some(mapping) = mappings.iter().find(|m| &m.id == id) else {
                    let path = format!("/mapping/pci/{id}");
                    let hidden = facts.privileges_on(&path).is_some_and(|held| {
                        !["Mapping.Audit", "Mapping.Use", "Mapping.Modify"]
                            .iter()
                            .any(|p| held.contains(*p))
                    });
                    let message = if hidden {
                        format!(
                            "not listed: Proxmox shows a mapping only to a token with Mapping.Audit, Mapping.Use or Mapping.Modify on {path} (see Privileges), or it does not exist"
                        )
                    } else if mappings.is_empty() {
                        "no such PCI mapping (the cluster has none)".to_string()
                    } else {
                        let ids: Vec<String> = mappings.iter().map(|m| m.id.clone()).collect();
                        format!("no such PCI mapping (mappings: {})", list(&ids, 8))
                    };
                    let users: Users = nodes.values().flatten().cloned().collect();
                    let node_names: Vec<String> = nodes.keys().cloned().collect();
                    out.push_with(
                        Status::Fail,
                        id,
                        message,
                        vec![needed_by(&users)],
                        vec![format!(
                            "create it: Datacenter → Resource Mappings → PCI Devices → Add, id `{id}`, with the device of {}",
                            list(&node_names, 8)
                        )],
                    );
                    continue;
                };
                for (node, users) in nodes {
                    let subject = format!("{id} on {node}");
                    match mapping.devices.iter().find(|d| &d.node == node) {
                        Some(device) => {
                            let model = device
                                .device_id
                                .as_deref()
                                .map(|d| format!(" ({d})"))
                                .unwrap_or_default();
                            out.push(
                                Status::Pass,
                                subject,
                                format!("maps {}{model}", device.path),
                            );
                        }
                        None => out.push_with(
                            Status::Fail,
                            subject,
                            format!("the mapping has no device on {node}"),
                            vec![needed_by(users)],
                            vec![format!(
                                "add {node}'s device to it (Datacenter → Resource Mappings → {id} → Add), or keep these VMs on a node it maps"
                            )],
                        ),
                    }
                }
            }
        }
        None => {}
    }
    out.finish(started, "the spec passes no PCI device through");
}

fn privileges(needs: &Needs, facts: &Facts, out: &mut Checks) {
    let started = out.start(Group::Privileges);
    let token = facts.token_id.as_str();
    let held = |path: &str, privilege: &str| {
        facts
            .privileges_on(path)
            .map(|privileges| privileges.contains(privilege))
    };
    let mut missing: Vec<&PrivilegeNeed> = Vec::new();
    let mut unreadable: IndexMap<&str, &PveError> = IndexMap::new();
    for need in needs.privileges.values() {
        // A node that does not exist fails its own check; privileges there are moot.
        let absent_node = need
            .path
            .strip_prefix("/nodes/")
            .is_some_and(|node| unusable(facts, node) == Some("no such node"));
        if absent_node {
            continue;
        }
        match held(&need.path, need.privilege) {
            Some(true) => {}
            Some(false) => {
                let instead = need.instead.iter().any(|grants| {
                    grants
                        .iter()
                        .all(|(path, privilege)| held(path, privilege) == Some(true))
                });
                if !instead {
                    missing.push(need);
                }
            }
            None => {
                if let Some(Err(error)) = facts.privileges.get(&need.path) {
                    unreadable.insert(&need.path, error);
                }
            }
        }
    }
    for (path, error) in &unreadable {
        out.push(
            Status::Fail,
            *path,
            format!("cannot read the token's privileges: {error}"),
        );
    }
    // When a privilege is missing on every VM that needs it (more than one), one grant on
    // /vms is the fix: report every missing VM privilege there.
    let on_vms = |need: &PrivilegeNeed| need.path.starts_with("/vms/");
    let collapse = missing.iter().filter(|m| on_vms(m)).any(|m| {
        let needing: Vec<&PrivilegeNeed> = needs
            .privileges
            .values()
            .filter(|n| n.privilege == m.privilege && n.path.starts_with("/vms/"))
            .collect();
        needing.len() > 1
            && needing
                .iter()
                .all(|n| missing.iter().any(|x| std::ptr::eq(*x, *n)))
    });
    let mut by_path: IndexMap<String, IndexMap<&str, (Users, IndexSet<String>)>> = IndexMap::new();
    for need in &missing {
        let path = if collapse && on_vms(need) {
            "/vms".to_string()
        } else {
            need.path.clone()
        };
        let entry = by_path
            .entry(path)
            .or_default()
            .entry(need.privilege)
            .or_default();
        entry.0.extend(need.users.iter().cloned());
        entry.1.extend(need.what.iter().cloned());
    }
    let all_privileges: BTreeSet<&str> = needs.privileges.keys().map(|(_, p)| *p).collect();
    let user = token.split_once('!').map(|(user, _)| user);
    for privileges in by_path.values_mut() {
        privileges.sort_keys();
    }
    for (index, (path, privileges)) in by_path.iter().enumerate() {
        let names: Vec<&str> = privileges.keys().copied().collect();
        let details = privileges
            .iter()
            .map(|(privilege, (users, what))| {
                let what: Vec<String> = what.iter().cloned().collect();
                format!("{privilege}: {} ({})", list(&what, 4), list(users, 3))
            })
            .collect();
        let mut hints = Vec::new();
        if index == 0 {
            let privs: Vec<&str> = all_privileges.iter().copied().collect();
            hints.push(format!(
                "once, a role with what this spec needs: pveum role add {ROLE} -privs \"{}\"",
                privs.join(" ")
            ));
        }
        hints.push(format!(
            "pveum acl modify {path} --tokens '{token}' --roles {ROLE}"
        ));
        if index == 0
            && let Some(user) = user
        {
            hints.push(format!(
                "a privilege-separated token holds only what its user holds too: if {user} lacks them, grant the same with --users {user}"
            ));
        }
        out.push_with(
            Status::Fail,
            path,
            format!("the token lacks {}", names.join(", ")),
            details,
            hints,
        );
    }
    if missing.is_empty() && unreadable.is_empty() && !needs.privileges.is_empty() {
        let n_paths = needs.privilege_paths().len();
        out.push(
            Status::Pass,
            format!("token {token}"),
            format!(
                "holds the {} privileges the spec needs, on all {n_paths} paths",
                all_privileges.len()
            ),
        );
    }
    out.finish(started, "the spec needs no privilege");
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
    for (vmid, key) in &needs.vmids {
        let subject = format!("{vmid} ({key})");
        let Some(vm) = listed.get(vmid) else {
            match facts.hidden.get(vmid) {
                Some(Ok(false)) => out.push_with(
                    Status::Fail,
                    subject,
                    format!(
                        "taken by a VM the token cannot see (it lacks VM.Audit on /vms/{vmid})"
                    ),
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
            continue;
        };
        let name = vm
            .name
            .as_deref()
            .map(|n| format!(" `{n}`"))
            .unwrap_or_default();
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
    fn physical_ports_as_proxmox_finds_them() {
        for port in ["eno1", "eth0", "bond0", "enp3s0f1", "eno1.100"] {
            assert!(is_physical(port), "{port}");
        }
        for port in ["nic0", "veth100i0", "tap101i0", "vmbr0", "bond", "en"] {
            assert!(!is_physical(port), "{port}");
        }
    }

    #[test]
    fn vids_lists_and_ranges() {
        assert!(vids_contain("2-4094", 20));
        assert!(vids_contain("2 4 100-200", 150));
        assert!(!vids_contain("2 4 100-200", 20));
        assert!(!vids_contain("garbage", 20));
    }

    #[test]
    fn sizes_read_like_the_ui() {
        assert_eq!(size_text(20 << 30), "20.0 GiB");
        assert_eq!(size_text(12 << 20), "12.0 MiB");
        assert_eq!(size_text(3 << 29), "1.5 GiB");
    }
}
