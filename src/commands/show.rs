//! `proxfleet show` (alias `list`) and `proxfleet inventory`: what the project owns, read-only.
//! Observes the cluster as `plan` does, asks the guest agents of running clones without a static
//! address for theirs (each at most `AGENT_TIMEOUT`, all at once: never waiting on a guest), and
//! hands the rows to `inventory` to render.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;

use super::{CommandError, Connection, Io, load_spec};
use crate::cli::{InventoryArgs, InventoryFormat, ShowArgs};
use crate::graph::DesiredGraph;
use crate::inventory::{self, Owned};
use crate::ownership::{ResourceKey, ResourceKind};
use crate::pve::PveClient;
use crate::state::ActualState;

/// How long one guest agent may take to answer before its clone is shown without an address.
const AGENT_TIMEOUT: Duration = Duration::from_secs(2);

/// How many guest agents are asked at once.
const AGENT_CONCURRENCY: usize = 8;

/// `show`: a table, or `--json`.
///
/// # Errors
/// Spec errors, observation failures, `--target` addresses that are not resource keys.
pub async fn run_show(
    args: &ShowArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    let mut targets = Vec::new();
    for text in &args.targets {
        let key: ResourceKey = text.parse().map_err(|_| {
            CommandError::Usage(format!(
                "--target {text}: not a resource address (image.NAME, template.NAME or clone.NAME)"
            ))
        })?;
        targets.push(key);
    }
    let (project, rows) = owned_rows(&args.spec.file, conn, io).await?;
    let rows = inventory::filter(rows, &targets);
    let text = if args.json {
        crate::report::to_json(&crate::report::ShowDocument::of(&project, &rows))
    } else {
        inventory::table(&project, &rows)
    };
    let _ = io.out.write_all(text.as_bytes());
    Ok(())
}

/// `inventory`: YAML, JSON, or the dynamic-inventory contract (`--list`, `--host NAME`).
///
/// # Errors
/// Spec errors, observation failures.
pub async fn run_inventory(
    args: &InventoryArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    let (_, rows) = owned_rows(&args.spec.file, conn, io).await?;
    let text = if let Some(host) = &args.host {
        format!("{}\n", inventory::ansible_host(&rows, host))
    } else if args.list || args.format == InventoryFormat::Json {
        let list = inventory::ansible_list(&rows);
        format!(
            "{}\n",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        )
    } else {
        inventory::ansible_yaml(&rows)
    };
    let _ = io.out.write_all(text.as_bytes());
    Ok(())
}

async fn owned_rows(
    file: &std::path::Path,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(String, Vec<Owned>), CommandError> {
    let loaded = load_spec(file, io)?;
    let desired = DesiredGraph::build(&loaded.spec);
    let actual = crate::observe::observe(&conn.client, &desired)
        .await
        .map_err(|e| CommandError::Observe(Box::new(e)))?;
    let groups: BTreeMap<String, String> = loaded
        .spec
        .clones
        .iter()
        .filter_map(|c| c.group.clone().map(|g| (c.name.clone(), g)))
        .collect();
    let agent = agent_addresses(&conn.client, &desired.project, &actual).await;
    let rows = inventory::owned(&desired, &actual, &groups, &agent);
    Ok((desired.project.clone(), rows))
}

/// The addresses guest agents report for the project's running clones without a static address:
/// asked once each, at once, under `AGENT_TIMEOUT`; a silent agent is no address.
async fn agent_addresses(
    client: &PveClient,
    project: &str,
    actual: &ActualState,
) -> BTreeMap<u32, String> {
    let asked: Vec<(u32, String, Option<String>)> = actual
        .owned_vms(project)
        .filter(|vm| vm.running && !vm.template)
        .filter(|vm| {
            vm.marker
                .as_ref()
                .is_some_and(|m| m.key.kind == ResourceKind::Clone)
        })
        .filter(|vm| {
            vm.config
                .get("ipconfig0")
                .is_none_or(|ipconfig| inventory::static_ip(ipconfig).is_none())
        })
        .filter(|vm| vm.config.contains_key("agent"))
        .map(|vm| {
            let mac = vm
                .config
                .get("net0")
                .and_then(|net0| crate::qemu_config::propstr::nic_mac(net0));
            (vm.vmid, vm.node.clone(), mac)
        })
        .collect();
    futures::stream::iter(asked)
        .map(|(vmid, node, mac)| async move {
            let answer =
                tokio::time::timeout(AGENT_TIMEOUT, client.guest_interfaces(&node, vmid)).await;
            let address = match answer {
                Ok(Ok(interfaces)) => crate::address::pick_address(&interfaces, mac.as_deref()),
                _ => None,
            };
            address.map(|address| (vmid, address.to_string()))
        })
        .buffer_unordered(AGENT_CONCURRENCY)
        .filter_map(|found| async move { found })
        .collect()
        .await
}
