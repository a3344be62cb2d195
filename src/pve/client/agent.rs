//! The QEMU guest agent through Proxmox: `network-get-interfaces`, the guest's own view of its
//! interfaces and addresses, with the wire structs of the agent's reply (`data.result`).

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use reqwest::Method;

use super::{PveClient, de, segment};
use crate::pve::PveError;
use crate::pve::types::GuestInterface;

/// `data` of an agent call: the agent's own JSON under `result`.
#[derive(Debug, Deserialize)]
struct AgentReplyWire {
    result: Vec<GuestInterfaceWire>,
}

/// One interface as qemu-ga reports it.
#[derive(Debug, Deserialize)]
struct GuestInterfaceWire {
    #[serde(deserialize_with = "de::text")]
    name: String,
    #[serde(
        rename = "hardware-address",
        default,
        deserialize_with = "de::optional_text"
    )]
    hardware_address: Option<String>,
    /// Absent on an interface without addresses.
    #[serde(rename = "ip-addresses", default)]
    ip_addresses: Vec<GuestAddressWire>,
}

/// One address of an interface.
#[derive(Debug, Deserialize)]
struct GuestAddressWire {
    #[serde(rename = "ip-address", deserialize_with = "de::text")]
    ip_address: String,
}

/// An address as the guest wrote it. A Windows guest appends the zone to a link-local IPv6
/// address (`fe80::1%12`), which is not part of the address.
fn guest_address(text: &str) -> Option<IpAddr> {
    let without_zone = text.split_once('%').map_or(text, |(address, _)| address);
    without_zone.trim().parse().ok()
}

fn guest_interfaces(data: &Value, what: &str) -> Result<Vec<GuestInterface>, PveError> {
    let reply: AgentReplyWire = de::decode(data, what)?;
    Ok(reply
        .result
        .into_iter()
        .map(|interface| {
            let mut addresses = Vec::new();
            for address in &interface.ip_addresses {
                match guest_address(&address.ip_address) {
                    Some(parsed) => addresses.push(parsed),
                    // The guest's word, not Proxmox's: one odd address must not hide the
                    // others, so it is skipped, and said.
                    None => tracing::warn!(
                        interface = interface.name,
                        address = address.ip_address,
                        "{what}: the guest agent reported an address that is not one; skipped"
                    ),
                }
            }
            GuestInterface {
                name: interface.name,
                mac: interface
                    .hardware_address
                    .map(|mac| mac.to_ascii_uppercase()),
                addresses,
            }
        })
        .collect())
}

impl PveClient {
    /// `GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces`: the guest's interfaces
    /// and addresses, from its QEMU guest agent. Proxmox answers 500 while the agent does not
    /// (`QEMU guest agent is not running`), for a stopped VM and for one without `agent`.
    ///
    /// # Errors
    /// The request fails (the agent is not answering among others); the reply has no
    /// `result`, or an interface without a name.
    pub async fn guest_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Vec<GuestInterface>, PveError> {
        let template = "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces";
        let path = format!(
            "/nodes/{}/qemu/{vmid}/agent/network-get-interfaces",
            segment(node)
        );
        let data = self.get(template, &path, &[]).await?;
        guest_interfaces(&data, &format!("GET {path}"))
    }

    /// `POST /nodes/{node}/qemu/{vmid}/agent/ping`: whether the guest agent answers (it
    /// changes nothing, so asking again is safe). Proxmox answers 500 while it does not.
    ///
    /// # Errors
    /// The request fails, the agent among others not answering.
    pub async fn agent_ping(&self, node: &str, vmid: u32) -> Result<(), PveError> {
        let template = "/nodes/{node}/qemu/{vmid}/agent/ping";
        let path = format!("/nodes/{}/qemu/{vmid}/agent/ping", segment(node));
        self.call(Method::POST, template, &path, &[])
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const WHAT: &str = "GET /nodes/pve1/qemu/100/agent/network-get-interfaces";

    #[test]
    fn interfaces_and_their_addresses() {
        let data = json!({"result": [
            {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
                {"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
                {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": "128"},
            ]},
            {"name": "eth0", "hardware-address": "bc:24:11:00:00:01", "ip-addresses": [
                {"ip-address-type": "ipv4", "ip-address": "10.0.0.10", "prefix": 24},
                {"ip-address-type": "ipv6", "ip-address": "fe80::be24:11ff:fe00:1%2", "prefix": 64},
            ], "statistics": {"rx-bytes": 1}},
            {"name": "eth1", "hardware-address": "bc:24:11:00:00:02"},
            {"name": "tun0"},
        ]});
        let interfaces = guest_interfaces(&data, WHAT).unwrap();
        assert_eq!(interfaces.len(), 4);
        assert_eq!(interfaces[1].mac.as_deref(), Some("BC:24:11:00:00:01"));
        let eth0: Vec<String> = interfaces[1]
            .addresses
            .iter()
            .map(IpAddr::to_string)
            .collect();
        assert_eq!(eth0, ["10.0.0.10", "fe80::be24:11ff:fe00:1"]);
        assert!(interfaces[2].addresses.is_empty());
        assert_eq!(interfaces[3].mac, None);
    }

    #[test]
    fn an_address_that_is_not_one_is_skipped() {
        let data = json!({"result": [{"name": "eth0", "ip-addresses": [
            {"ip-address": "10.0.0.300"}, {"ip-address": "10.0.0.3"},
        ]}]});
        let (interfaces, log) = de::logged(|| guest_interfaces(&data, WHAT));
        let interfaces = interfaces.unwrap();
        assert_eq!(
            interfaces[0].addresses,
            ["10.0.0.3".parse::<IpAddr>().unwrap()]
        );
        let warning = log
            .lines()
            .find(|line| line.contains("WARN"))
            .unwrap_or_default();
        assert!(
            warning.contains("10.0.0.300") && warning.contains("eth0") && warning.contains(WHAT),
            "{log}"
        );
    }

    #[test]
    fn a_malformed_reply_is_an_error() {
        for (data, needle) in [
            (json!({}), "missing field `result`"),
            (
                json!({"result": [{"hardware-address": "x"}]}),
                "at `result[0]`: missing field `name`",
            ),
            (
                json!({"result": [{"name": "eth0", "ip-addresses": [{"prefix": 24}]}]}),
                "at `result[0].ip-addresses[0]`: missing field `ip-address`",
            ),
            (
                json!({"result": {"name": "eth0"}}),
                "at `result`: invalid type",
            ),
        ] {
            let err = guest_interfaces(&data, WHAT).unwrap_err().to_string();
            assert!(err.contains(WHAT) && err.contains(needle), "{err}");
        }
    }
}
