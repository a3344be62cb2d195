//! The storages the spec uses, on each node: defined there, enabled, active, holding the
//! content types it needs (`import` only on file-based ones); and the space new disks take.

use std::collections::BTreeSet;

use indexmap::IndexMap;

use super::{Checks, list, needed_by, size_text, unusable};
use crate::preflight::gather::Facts;
use crate::preflight::needs::Needs;
use crate::preflight::{Group, Status};
use crate::pve::StorageSummary;

/// Storages that can hold `import` content: the file-based ones.
const FILE_BASED: [&str; 6] = ["dir", "nfs", "cifs", "cephfs", "btrfs", "esxi"];

pub(super) fn storages(needs: &Needs, facts: &Facts, out: &mut Checks) {
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
            let (message, hints) =
                not_listed(facts, node, storage, contents.keys().copied(), listed);
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
            if let Some((problem, hint)) = content_problem(node, storage, content, found, listed) {
                problems.push(problem);
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

/// Why `storage` is not among the storages `listed` on `node`, and what to do: the message and
/// the hints.
fn not_listed(
    facts: &Facts,
    node: &str,
    storage: &str,
    contents: impl Iterator<Item = &'static str>,
    listed: &[StorageSummary],
) -> (String, Vec<String>) {
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
    for content in contents {
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
    (message, hints)
}

/// Why `found` cannot hold `content`, and what to do; `None` when it holds it.
fn content_problem(
    node: &str,
    storage: &str,
    content: &str,
    found: &StorageSummary,
    listed: &[StorageSummary],
) -> Option<(String, String)> {
    if found.content.iter().any(|c| c == content) {
        return None;
    }
    let holds = found.content.join(",");
    if content == "import" && !FILE_BASED.contains(&found.kind.as_str()) {
        let problem = format!(
            "cannot hold `import` content: it is a {} storage, and images to import live on file-based ones (dir, NFS, CIFS, CephFS, BTRFS)",
            found.kind
        );
        let others = holding(listed, content);
        let hint = if others.is_empty() {
            format!(
                "add a directory storage with `import` content on {node}, e.g. enable it on `local`"
            )
        } else {
            format!("use a storage that holds `import`: {}", list(&others, 6))
        };
        Some((problem, hint))
    } else {
        let problem = format!("does not hold `{content}` content (it holds: {holds})");
        let mut hint = format!("enable it: pvesm set {storage} --content {holds},{content}");
        if content == "import" {
            hint.push_str(" (disk images as import content need PVE ≥ 8.4)");
        }
        Some((problem, hint))
    }
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

pub(super) fn space(needs: &Needs, facts: &Facts, out: &mut Checks) {
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
