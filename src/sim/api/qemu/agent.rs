//! The QEMU guest agent, as far as the simulator plays it: `network-get-interfaces` and `ping`, with
//! qemu-server's availability checks first (`PVE::QemuServer::Agent::assert_agent_available`:
//! an `agent` option, a running VM, an agent that answers) and the agent's own JSON under
//! `data.result`. A guest's agent answers once the VM has been running for the simulator's
//! `agent_boot_delay`; its addresses are the static ones of `ipconfigN` and, for DHCP, a lease
//! derived from the vmid, so the same VM always gets the same address.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::super::request::ApiCall;
use super::super::{ApiError, Reply, data};
use super::vm_on;
use crate::sim::propstr::{NIC_MODELS, Props};
use crate::sim::state::Vm;

/// `GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces`.
pub(crate) fn network_get_interfaces(call: &ApiCall) -> Reply {
    agent_answer(
        call,
        |vmid, vm| json!({ "result": interfaces(vmid, &vm.config) }),
    )
}

/// `POST /nodes/{node}/qemu/{vmid}/agent/ping`: the agent's `guest-ping`, an empty result.
pub(crate) fn ping(call: &ApiCall) -> Reply {
    agent_answer(call, |_, _| json!({ "result": {} }))
}

/// qemu-server's availability checks before any agent command, then its answer.
fn agent_answer(call: &ApiCall, answer: impl FnOnce(u32, &Vm) -> Value) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    let booted = call.shared.booted_for(vmid);
    call.shared.read(|c| {
        let vm = vm_on(c, &node, vmid)?;
        // The running QEMU has the devices of the committed config; a pending `agent` waits
        // for the next boot.
        let Some(agent) = vm.config.get("agent") else {
            return Err(ApiError::fail("No QEMU guest agent configured"));
        };
        if !vm.running {
            return Err(ApiError::fail(format!("VM {vmid} is not running")));
        }
        let enabled = Props::parse(agent, "enabled").first.as_deref() == Some("1");
        if !enabled || booted.is_some_and(|up| up < call.shared.config.agent_boot_delay) {
            return Err(ApiError::fail("QEMU guest agent is not running"));
        }
        data(answer(vmid, vm))
    })
}

/// The interfaces a Linux guest reports: `lo`, then `eth<N>` for each `net<N>`.
fn interfaces(vmid: u32, config: &std::collections::BTreeMap<String, String>) -> Vec<Value> {
    let mut out = vec![json!({
        "name": "lo",
        "hardware-address": "00:00:00:00:00:00",
        "ip-addresses": [
            {"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
            {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128},
        ],
    })];
    let mut nics: Vec<(u32, &String)> = config
        .iter()
        .filter_map(|(key, value)| {
            let index = key.strip_prefix("net")?.parse::<u32>().ok()?;
            Some((index, value))
        })
        .collect();
    nics.sort();
    for (index, value) in nics {
        let mac = value
            .split(',')
            .find_map(|item| {
                let (key, mac) = item.split_once('=')?;
                (NIC_MODELS.contains(&key) || key == "macaddr").then_some(mac)
            })
            .unwrap_or("00:00:00:00:00:00")
            .to_ascii_lowercase();
        let ipconfig = config
            .get(&format!("ipconfig{index}"))
            .map(|v| Props::parse(v, "ip"))
            .unwrap_or_default();
        let mut addresses = Vec::new();
        let declared = config.contains_key(&format!("ipconfig{index}"));
        match ipconfig.first.as_deref() {
            Some(cidr) if cidr.contains('/') => {
                if let Some((ip, prefix)) = cidr.split_once('/') {
                    addresses.push(json!({"ip-address-type": "ipv4", "ip-address": ip, "prefix": prefix.parse::<u8>().unwrap_or(24)}));
                }
            }
            // `ip=dhcp`, or nothing said for the first NIC (cloud-init's fallback): a lease.
            Some("dhcp") => addresses.push(dhcp_lease(vmid, index)),
            None if index == 0 && !declared => addresses.push(dhcp_lease(vmid, index)),
            _ => {}
        }
        if let Some(cidr) = ipconfig.rest.get("ip6").filter(|v| v.contains('/'))
            && let Some((ip, prefix)) = cidr.split_once('/')
        {
            addresses.push(json!({"ip-address-type": "ipv6", "ip-address": ip, "prefix": prefix.parse::<u8>().unwrap_or(64)}));
        }
        addresses
            .push(json!({"ip-address-type": "ipv6", "ip-address": link_local(&mac), "prefix": 64}));
        out.push(json!({
            "name": format!("eth{index}"),
            "hardware-address": mac,
            "ip-addresses": addresses,
        }));
    }
    out
}

/// The DHCP lease of a VM's NIC: 198.51.100.100–249 on the first, 203.0.113.100–249 on the
/// others, by vmid.
fn dhcp_lease(vmid: u32, index: u32) -> Value {
    let host = 100 + (vmid % 150) as u8;
    let ip = if index == 0 {
        Ipv4Addr::new(198, 51, 100, host)
    } else {
        Ipv4Addr::new(203, 0, 113, host)
    };
    json!({"ip-address-type": "ipv4", "ip-address": ip.to_string(), "prefix": 24})
}

/// The IPv6 link-local address a guest derives from its MAC (modified EUI-64).
fn link_local(mac: &str) -> String {
    let bytes: Vec<u8> = mac
        .split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    let Ok([a, b, c, d, e, f]) = <[u8; 6]>::try_from(bytes) else {
        return "fe80::1".to_string();
    };
    let groups = [
        u16::from_be_bytes([a ^ 0x02, b]),
        u16::from_be_bytes([c, 0xff]),
        u16::from_be_bytes([0xfe, d]),
        u16::from_be_bytes([e, f]),
    ];
    std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, groups[0], groups[1], groups[2], groups[3]).to_string()
}
