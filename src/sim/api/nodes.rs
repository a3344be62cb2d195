//! Nodes (`API2/Nodes.pm` and `API2/Network.pm` in pve-manager): the node list and a node's
//! network interfaces.

use serde_json::{Value, json};

use super::request::ApiCall;
use super::{Reply, data};

/// `GET /nodes`.
pub(crate) fn node_list(call: &ApiCall) -> Reply {
    data(call.shared.read(|c| {
        Value::Array(
            c.nodes
                .iter()
                .map(|n| {
                    super::cluster::node_row(n, ("ssl_fingerprint", json!(fingerprint(&n.name))))
                })
                .collect(),
        )
    }))
}

/// A node's certificate fingerprint as `/nodes` shows it: 32 colon-separated hex bytes (made
/// up from the name; the simulator's HTTPS certificate is one for all nodes).
fn fingerprint(node: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(node.as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `GET /nodes/{node}/network`: the node's interfaces (`eno1` and its bridges), filtered by
/// `type` as pve-manager's `API2::Network` does (`any_bridge`: Linux and OVS bridges; the
/// simulator has no SDN VNets).
pub(crate) fn node_network(call: &ApiCall) -> Reply {
    let node = call.node();
    let kind = call.get("type");
    let wanted = |iface_type: &str| match kind {
        None | Some("include_sdn") => true,
        Some("any_bridge" | "any_local_bridge") => matches!(iface_type, "bridge" | "OVSBridge"),
        Some(other) => other == iface_type,
    };
    data(call.shared.read(|c| {
        let mut out = Vec::new();
        if wanted("eth") {
            out.push(json!({
                "iface": "eno1", "type": "eth", "method": "manual", "method6": "manual",
                // A bridge port: real answers list no `active` for it.
                "families": ["inet"], "exists": 1, "priority": 2,
            }));
        }
        for (index, bridge) in c.bridges_of(&node).iter().enumerate() {
            if !wanted(&bridge.kind) {
                continue;
            }
            let mut entry = json!({"iface": bridge.iface, "type": bridge.kind});
            let fields = entry.as_object_mut().map(|map| {
                let ports = bridge.ports.join(" ");
                if bridge.kind == "OVSBridge" {
                    if !ports.is_empty() {
                        map.insert("ovs_ports".into(), json!(ports));
                    }
                } else {
                    map.insert(
                        "bridge_ports".into(),
                        json!(if ports.is_empty() {
                            "none".to_string()
                        } else {
                            ports
                        }),
                    );
                    map.insert("bridge_stp".into(), json!("off"));
                    map.insert("bridge_fd".into(), json!("0"));
                    if bridge.vlan_aware {
                        map.insert("bridge_vlan_aware".into(), json!(1));
                        map.insert("bridge_vids".into(), json!("2-4094"));
                    }
                }
                match &bridge.cidr {
                    Some(cidr) => {
                        let (address, prefix) = cidr.split_once('/').unwrap_or((cidr, "24"));
                        let gateway = address
                            .rsplit_once('.')
                            .map(|(net, _)| format!("{net}.1"))
                            .unwrap_or_default();
                        map.insert("method".into(), json!("static"));
                        map.insert("cidr".into(), json!(cidr));
                        map.insert("address".into(), json!(address));
                        map.insert("netmask".into(), json!(prefix));
                        map.insert("gateway".into(), json!(gateway));
                    }
                    None => {
                        map.insert("method".into(), json!("manual"));
                    }
                }
                map.insert("method6".into(), json!("manual"));
                map.insert("families".into(), json!(["inet"]));
                // ifupdown2 reports only interfaces that are up.
                if bridge.active {
                    map.insert("active".into(), json!(1));
                }
                map.insert("autostart".into(), json!(1));
                map.insert("priority".into(), json!(3 + index));
            });
            if fields.is_some() {
                out.push(entry);
            }
        }
        Value::Array(out)
    }))
}
