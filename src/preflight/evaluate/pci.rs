//! PCI passthrough: devices given by raw address (refused: only cluster mappings are portable)
//! and the cluster mappings the spec names, present on the nodes that use them.

use super::{Checks, list, needed_by};
use crate::preflight::gather::Facts;
use crate::preflight::needs::{Needs, Users};
use crate::preflight::{Group, Status};

pub(super) fn pci(needs: &Needs, facts: &Facts, out: &mut Checks) {
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
