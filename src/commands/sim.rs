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
    if args.tokens.is_empty() {
        // The default token is not a secret: it is documented and only opens the simulator.
        let _ = writeln!(io.out, "API token (default): {}", sim.token());
    }
    let _ = writeln!(
        io.out,
        "try: PROXMOX_VE_ENDPOINT={} PROXMOX_VE_API_TOKEN='<token>' proxfleet plan",
        sim.endpoint()
    );
    let _ = io.out.flush();
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    Ok(())
}
