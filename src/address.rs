//! A clone's address once proxfleet has started it (`wait_for_ip`): read from the QEMU guest
//! agent, polled with backoff under the clone's own time-out. Cloud images often lack the
//! agent, so running out of time is an answer (a warning in the apply summary), never a failed
//! change; an interrupt ends the wait at once. Static addresses never come here: the executor
//! shows them as the spec gives them.

use std::net::IpAddr;
use std::ops::ControlFlow;
use std::time::Duration;

use backon::ExponentialBuilder;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::apply::poll::{PollLimits, Polled, poll_until};
use crate::pve::{GuestInterface, PveClient, PveError};
use crate::qemu_config::propstr::nic_mac;
use crate::spec::human_duration;

/// How often a guest agent is asked (for an address here, for a rollout's health check in
/// `apply::health`): soon after the start, then less and less often, at most every `max`.
pub(crate) fn agent_backoff(max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(max)
        .with_factor(2.0)
        .without_max_times()
}

/// Wait for the address of VM `vmid` on `node`: the first address the guest agent reports on
/// `net0` (IPv4 first), asked until `timeout` has passed.
///
/// # Errors
/// Why there is no address, worded for the summary's warnings: the time-out passed (with the
/// last answer), the VM has no guest agent configured, or `cancel` fired.
pub async fn wait_for_address(
    client: &PveClient,
    node: &str,
    vmid: u32,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<IpAddr, String> {
    let deadline = Instant::now() + timeout;
    let interrupted = || "stopped waiting for an address: the run was interrupted".to_string();
    // The guest names its interfaces itself (`eth0`, `ens18`); net0's MAC says which is which.
    let mac = client
        .vm_config(node, vmid)
        .await
        .ok()
        .and_then(|config| config.values.get("net0").and_then(|net0| nic_mac(net0)));
    let limits = PollLimits {
        deadline: Some(deadline),
        cancel: Some(cancel),
    };
    let polled = poll_until(agent_backoff(Duration::from_secs(10)), limits, || async {
        match client.guest_interfaces(node, vmid).await {
            Ok(interfaces) => match pick_address(&interfaces, mac.as_deref()) {
                Some(address) => ControlFlow::Break(Ok(address)),
                None => ControlFlow::Continue(Some("the agent reports no address yet".into())),
            },
            // No `agent` option: asking again cannot help.
            Err(err) if err.is_no_guest_agent() => ControlFlow::Break(Err(
                "no address: the VM has no QEMU guest agent configured (`agent: true` on its template)".into(),
            )),
            Err(err) => {
                let answer = err.answer();
                // Refused (a missing privilege, an API without the endpoint): nor here.
                if retryable(&err) {
                    ControlFlow::Continue(Some(answer))
                } else {
                    ControlFlow::Break(Err(format!("no address from the guest agent: {answer}")))
                }
            }
        }
    })
    .await;
    match polled {
        Polled::Done(address) => address,
        Polled::Cancelled => Err(interrupted()),
        Polled::GaveUp { last } => Err(format!(
            "no address from the guest agent within {} (last answer: {})",
            human_duration(timeout),
            last.as_deref().unwrap_or("no answer")
        )),
    }
}

/// Whether asking the agent again may answer: Proxmox's 500s (the agent or the VM not running
/// yet, an agent command timing out) and transient errors; not a refusal (403, 501).
fn retryable(err: &PveError) -> bool {
    err.status() == Some(500) || err.is_transient()
}

/// The address to show: on the interface with net0's MAC when the agent names it, else on any
/// interface but loopback; IPv4 before IPv6, never loopback or link-local.
pub fn pick_address(interfaces: &[GuestInterface], mac: Option<&str>) -> Option<IpAddr> {
    let usable = |ip: &&IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    };
    let on_net0: Vec<&GuestInterface> = interfaces
        .iter()
        .filter(|i| mac.is_some_and(|mac| i.mac.as_deref() == Some(mac)))
        .collect();
    let others: Vec<&GuestInterface> = interfaces.iter().filter(|i| i.name != "lo").collect();
    let candidates = if on_net0.is_empty() { others } else { on_net0 };
    let addresses = || {
        candidates
            .iter()
            .flat_map(|i| i.addresses.iter())
            .filter(usable)
    };
    addresses()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addresses().next())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str, mac: &str, addresses: &[&str]) -> GuestInterface {
        GuestInterface {
            name: name.into(),
            mac: Some(mac.into()),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn the_address_is_net0s_ipv4_never_loopback_or_link_local() {
        let interfaces = [
            interface("lo", "00:00:00:00:00:00", &["127.0.0.1", "::1"]),
            interface(
                "eth0",
                "BC:24:11:00:00:01",
                &["fe80::1", "2001:db8::5", "10.0.0.5"],
            ),
            interface("eth1", "BC:24:11:00:00:02", &["10.1.0.5"]),
        ];
        let pick = |mac| pick_address(&interfaces, mac).map(|ip| ip.to_string());
        assert_eq!(pick(Some("BC:24:11:00:00:02")).as_deref(), Some("10.1.0.5"));
        assert_eq!(pick(Some("BC:24:11:00:00:01")).as_deref(), Some("10.0.0.5"));
        // Without a MAC to go by (or an unknown one), any interface but loopback.
        assert_eq!(pick(None).as_deref(), Some("10.0.0.5"));
        let v6_only = [interface(
            "eth0",
            "BC:24:11:00:00:01",
            &["fe80::1", "2001:db8::5"],
        )];
        assert_eq!(
            pick_address(&v6_only, None)
                .map(|ip| ip.to_string())
                .as_deref(),
            Some("2001:db8::5")
        );
        let link_local_only = [
            interface("lo", "00:00:00:00:00:00", &["127.0.0.1"]),
            interface("eth0", "BC:24:11:00:00:01", &["fe80::1", "169.254.3.4"]),
        ];
        assert_eq!(pick_address(&link_local_only, None), None);
    }
}
