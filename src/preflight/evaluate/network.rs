//! The bridges the spec's interfaces use, on each node: there, active, VLAN-aware when a tag
//! asks for it (with the tag in its `bridge-vids`), with a physical port behind it.

use std::collections::BTreeSet;

use super::{Checks, list, needed_by, unusable};
use crate::preflight::gather::Facts;
use crate::preflight::needs::{Needs, Users};
use crate::preflight::{Group, Status};
use crate::pve::NetworkInterface;

pub(super) fn bridges(needs: &Needs, facts: &Facts, out: &mut Checks) {
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
    need: &crate::preflight::needs::BridgeNeed,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
