//! Node reads: the cluster's nodes (`/nodes`) and a node's network interfaces
//! (`/nodes/{node}/network`), each with the wire struct of its answer.

use serde::Deserialize;
use serde_json::Value;

use super::{PveClient, de, segment};
use crate::pve::PveError;
use crate::pve::types::{NetworkInterface, NodeSummary};

/// A row of `/nodes`.
#[derive(Debug, Deserialize)]
pub(super) struct NodeWire {
    #[serde(deserialize_with = "de::text")]
    node: String,
    #[serde(default, deserialize_with = "de::optional_text")]
    status: Option<String>,
}

/// A row of `/nodes/{node}/network`. Flags come as `1` or `"1"` depending on the version.
#[derive(Debug, Deserialize)]
struct NetworkWire {
    #[serde(deserialize_with = "de::text")]
    iface: String,
    #[serde(rename = "type", default, deserialize_with = "de::optional_text")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "de::flag")]
    active: bool,
    #[serde(default, deserialize_with = "de::flag")]
    autostart: bool,
    #[serde(default, deserialize_with = "de::flag")]
    bridge_vlan_aware: bool,
    #[serde(default, deserialize_with = "de::optional_text")]
    bridge_ports: Option<String>,
    #[serde(default, deserialize_with = "de::optional_text")]
    ovs_ports: Option<String>,
    #[serde(default, deserialize_with = "de::optional_text")]
    bridge_vids: Option<String>,
}

impl From<NodeWire> for NodeSummary {
    fn from(wire: NodeWire) -> NodeSummary {
        NodeSummary {
            name: wire.node,
            online: wire.status.as_deref() == Some("online"),
        }
    }
}

impl From<NetworkWire> for NetworkInterface {
    fn from(wire: NetworkWire) -> NetworkInterface {
        let ports = wire.bridge_ports.or(wire.ovs_ports).unwrap_or_default();
        NetworkInterface {
            name: wire.iface,
            kind: wire.kind.unwrap_or_default(),
            active: wire.active,
            autostart: wire.autostart,
            vlan_aware: wire.bridge_vlan_aware,
            ports: ports
                .split([' ', ','])
                .filter(|port| !port.is_empty() && *port != "none")
                .map(str::to_string)
                .collect(),
            vids: wire.bridge_vids.filter(|vids| !vids.trim().is_empty()),
        }
    }
}

fn node_summaries(data: &Value, what: &str) -> Result<Vec<NodeSummary>, PveError> {
    let wires: Vec<NodeWire> = de::decode(data, what)?;
    Ok(wires.into_iter().map(NodeSummary::from).collect())
}

fn network_interfaces(data: &Value, what: &str) -> Result<Vec<NetworkInterface>, PveError> {
    let wires: Vec<NetworkWire> = de::decode(data, what)?;
    Ok(wires.into_iter().map(NetworkInterface::from).collect())
}

impl PveClient {
    /// `GET /nodes`.
    ///
    /// # Errors
    /// HTTP errors; a row without a node name.
    pub async fn nodes(&self) -> Result<Vec<NodeSummary>, PveError> {
        let data = self.get("/nodes", "/nodes", &[]).await?;
        node_summaries(&data, "GET /nodes")
    }

    /// `GET /nodes/{node}/network`, optionally only interfaces of one `type` (`any_bridge`:
    /// Linux and OVS bridges, and SDN VNets).
    ///
    /// # Errors
    /// HTTP errors; an interface without a name, or a flag that is not one.
    pub async fn networks(
        &self,
        node: &str,
        kind: Option<&str>,
    ) -> Result<Vec<NetworkInterface>, PveError> {
        let path = format!("/nodes/{}/network", segment(node));
        let params: Vec<(String, String)> = kind
            .map(|k| ("type".to_string(), k.to_string()))
            .into_iter()
            .collect();
        let data = self.get("/nodes/{node}/network", &path, &params).await?;
        network_interfaces(&data, &format!("GET {path}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nodes_online_or_not() {
        let data = json!([
            {"node": "pve1", "status": "online", "type": "node", "maxmem": 34359738368u64},
            {"node": "pve2", "status": "offline", "maxmem": "17179869184"},
            {"node": "pve3"},
        ]);
        let nodes = node_summaries(&data, "GET /nodes").unwrap();
        let online: Vec<_> = nodes.iter().map(|n| (n.name.as_str(), n.online)).collect();
        assert_eq!(online, [("pve1", true), ("pve2", false), ("pve3", false)]);
        let err = node_summaries(
            &json!([{"node": "pve1"}, {"status": "online"}]),
            "GET /nodes",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("at `[1]`: missing field `node`"),
            "{err}"
        );
    }

    #[test]
    fn interfaces_with_flags_as_numbers_or_strings() {
        let as_numbers = json!([{
            "iface": "vmbr0", "type": "bridge", "active": 1, "autostart": 1,
            "bridge_vlan_aware": 1, "bridge_ports": "eno1 eno2", "bridge_vids": "2-4094",
            "families": ["inet"], "exists": null, "priority": 3,
        }]);
        let as_strings = json!([{
            "iface": "vmbr0", "type": "bridge", "active": "1", "autostart": "1",
            "bridge_vlan_aware": "1", "bridge_ports": "eno1,eno2", "bridge_vids": "2-4094",
        }]);
        let expected = NetworkInterface {
            name: "vmbr0".into(),
            kind: "bridge".into(),
            active: true,
            autostart: true,
            vlan_aware: true,
            ports: vec!["eno1".into(), "eno2".into()],
            vids: Some("2-4094".into()),
        };
        for data in [as_numbers, as_strings] {
            assert_eq!(
                network_interfaces(&data, "GET n").unwrap(),
                std::slice::from_ref(&expected)
            );
        }
        let ovs = json!([{"iface": "vmbr1", "type": "OVSBridge", "ovs_ports": "none",
            "bridge_vids": " "}]);
        let ovs = &network_interfaces(&ovs, "GET n").unwrap()[0];
        assert!(!ovs.active && ovs.ports.is_empty() && ovs.vids.is_none());
        let numeric_vids = json!([{"iface": "vmbr2", "bridge_vids": 100}]);
        let numeric_vids = &network_interfaces(&numeric_vids, "GET n").unwrap()[0];
        assert_eq!(numeric_vids.vids.as_deref(), Some("100"));
    }

    #[test]
    fn a_malformed_interface_is_an_error() {
        for (row, needle) in [
            (json!({"type": "bridge"}), "missing field `iface`"),
            (json!({"iface": "vmbr0", "active": "up"}), "at `[0].active`"),
            (json!({"iface": ["vmbr0"]}), "at `[0].iface`"),
        ] {
            let err = network_interfaces(&json!([row]), "GET /nodes/pve1/network")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("/nodes/pve1/network") && err.contains(needle),
                "{err}"
            );
        }
    }
}
