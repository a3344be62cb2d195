//! `proxfleet sim serve`: the simulated cluster as an HTTP server for other tools.

use std::time::Duration;

use super::{CommandError, Io};
use crate::cli::SimServeArgs;
use crate::sim::{AclEntry, FaultSpec, SimConfig, SimContainer, SimHandle};

/// A random UUID-shaped secret.
fn generated_secret() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Serve until Ctrl-C.
///
/// # Errors
/// The address cannot be bound or the state file cannot be read.
pub async fn serve(args: &SimServeArgs, io: &mut Io<'_>) -> Result<(), CommandError> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| CommandError::Io {
            context: format!("cannot listen on {}", args.listen),
            source,
        })?;
    let invalid = |message: String| CommandError::Usage(message);
    let acls = args
        .acls
        .iter()
        .map(|a| AclEntry::parse(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let faults = args
        .faults
        .iter()
        .map(|f| FaultSpec::parse(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let mut roles = std::collections::BTreeMap::new();
    for role in &args.roles {
        let (name, privs) = role
            .split_once('=')
            .ok_or_else(|| invalid(format!("invalid role '{role}': expected NAME=PRIV[,PRIV…]")))?;
        roles.insert(
            name.to_string(),
            privs.split(',').map(str::to_string).collect(),
        );
    }
    let mut config = SimConfig {
        nodes: usize::from(args.nodes),
        task_duration: args.task_ms.map(Duration::from_millis),
        task_scale: if args.task_ms.is_some() {
            1.0
        } else {
            args.task_scale
        },
        acls,
        roles,
        faults,
        fault_seed: args.fault_seed,
        pools: args.pools.clone(),
        latency: Duration::from_millis(args.latency_ms),
        state_file: args.state.clone(),
        tls: args.tls,
        users: args.users.clone(),
        containers: args
            .containers
            .iter()
            .map(|c| SimContainer::parse(c))
            .collect::<Result<_, _>>()
            .map_err(invalid)?,
        release: args.release.clone(),
        ..SimConfig::default()
    };
    config.tokens = if args.tokens.is_empty() {
        // A fresh secret each time: a served simulator may be reachable by others.
        vec![format!("root@pam!proxfleet={}", generated_secret())]
    } else {
        args.tokens.clone()
    };
    let sim = SimHandle::start_on(config, listener).await?;
    let _ = writeln!(
        io.out,
        "simulated Proxmox VE listening on {}",
        sim.endpoint()
    );
    let mut ca_hint = String::new();
    if let Some(pem) = sim.certificate_pem() {
        std::fs::write(&args.ca_file, pem).map_err(|source| CommandError::Io {
            context: format!("cannot write {}", args.ca_file.display()),
            source,
        })?;
        let _ = writeln!(
            io.out,
            "certificate to trust (self-signed): {}",
            args.ca_file.display()
        );
        ca_hint = format!(" PROXMOX_VE_CA_FILE={}", args.ca_file.display());
    }
    if args.tokens.is_empty() {
        // Printed once so the user can copy it: it was made for this run and opens only the
        // simulator.
        let _ = writeln!(io.out, "API token (made for this run): {}", sim.token());
    }
    let _ = writeln!(
        io.out,
        "try: PROXMOX_VE_ENDPOINT={}{ca_hint} PROXMOX_VE_API_TOKEN='<token>' proxfleet plan",
        sim.endpoint()
    );
    let _ = io.out.flush();
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    Ok(())
}
