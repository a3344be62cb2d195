//! A rollout's health check (`Operation::CheckHealth`): once a replaced clone is started, its
//! QEMU guest agent must answer `ping` and, when the clone has a static address, report that
//! address, within the clone's time-out. A clone that does not is a failed change: the batches
//! after it never start (they depend on it), so a rollout stops where a new build misbehaves
//! and the next `apply` resumes it.

use std::ops::ControlFlow;
use std::time::Duration;

use tokio::time::Instant;

use super::change::{ChangeRun, StepError};
use super::poll::{PollLimits, Polled, poll_until};
use crate::address::agent_backoff;
use crate::graph::DesiredVm;
use crate::plan::Operation;
use crate::spec::human_duration;

impl ChangeRun {
    /// Carry out the change's health check, if it has one.
    pub(super) async fn check_health(&self, vm: &DesiredVm) -> Result<(), StepError> {
        let Some((address, timeout)) = self.change.operations.iter().find_map(|op| match op {
            Operation::CheckHealth {
                address,
                timeout_secs,
            } => Some((address.clone(), Duration::from_secs(*timeout_secs))),
            _ => None,
        }) else {
            return Ok(());
        };
        if let Some(err) = self.cancelled_before("the health check") {
            return Err(err);
        }
        let limits = PollLimits {
            deadline: Some(Instant::now() + timeout),
            cancel: Some(&self.options.cancel),
        };
        let (node, vmid) = (vm.node.as_str(), vm.vmid);
        let polled = poll_until(agent_backoff(Duration::from_secs(5)), limits, || async {
            if let Err(err) = self.client.agent_ping(node, vmid).await {
                return ControlFlow::Continue(Some(err.answer()));
            }
            let Some(address) = &address else {
                return ControlFlow::Break(());
            };
            match self.client.guest_interfaces(node, vmid).await {
                Ok(interfaces) => {
                    let reported = interfaces
                        .iter()
                        .flat_map(|i| &i.addresses)
                        .any(|ip| ip.to_string() == *address);
                    if reported {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(Some(format!(
                            "the guest agent answers but does not report {address} yet"
                        )))
                    }
                }
                Err(err) => ControlFlow::Continue(Some(err.answer())),
            }
        })
        .await;
        match polled {
            Polled::Done(()) => {
                self.step(match &address {
                    Some(address) => {
                        format!("healthy: the guest agent answers and reports {address}")
                    }
                    None => "healthy: the guest agent answers".to_string(),
                });
                Ok(())
            }
            Polled::Cancelled => Err(StepError::Cancelled {
                next: "the end of the health check".into(),
            }),
            Polled::GaveUp { last } => Err(StepError::Unhealthy(format!(
                "VM {vmid} is not healthy after {}: {}; the rollout stops here (the next apply resumes it)",
                human_duration(timeout),
                last.as_deref().unwrap_or("no answer from the guest agent")
            ))),
        }
    }
}
