//! `proxfleet sim serve`: the simulated cluster as an HTTP server for other tools.

use std::time::Duration;

use super::{CommandError, Io};
use crate::cli::SimServeArgs;
use crate::sim::{SimConfig, SimHandle};

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
    let mut config = SimConfig {
        nodes: usize::from(args.nodes),
        task_duration: Duration::from_millis(args.task_ms),
        latency: Duration::from_millis(args.latency_ms),
        state_file: args.state.clone(),
        tls: args.tls,
        users: args.users.clone(),
        ..SimConfig::default()
    };
    if !args.tokens.is_empty() {
        config.tokens = args.tokens.clone();
    }
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
        // The default token is not a secret: it is documented and only opens the simulator.
        let _ = writeln!(io.out, "API token (default): {}", sim.token());
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
