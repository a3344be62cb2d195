//! Keeping a fleet current (issue 16): what the rollout relies on in the simulator, the guest
//! agent's `ping` that a replaced clone's health check sends.

use std::time::Duration;

use proxfleet::sim::SimConfig;

use super::sim::{Api, fast};

#[tokio::test(start_paused = true)]
async fn agent_ping_answers_once_the_guest_agent_runs() {
    let (sim, api) = Api::start(SimConfig {
        agent_boot_delay: Duration::from_millis(300),
        ..fast()
    })
    .await;
    sim.insert_vm("pve1", 100, &[("name", "plain")]).unwrap();
    sim.insert_vm("pve1", 101, &[("name", "web"), ("agent", "enabled=1")])
        .unwrap();
    let ping = |vmid: u32| format!("/nodes/pve1/qemu/{vmid}/agent/ping");
    let message =
        |body: &serde_json::Value| body["message"].as_str().unwrap_or_default().to_string();

    let (status, body) = api.call("POST", &ping(100), &[]).await;
    assert_eq!(
        (status, message(&body)),
        (500, "No QEMU guest agent configured\n".into())
    );
    let (status, body) = api.call("POST", &ping(101), &[]).await;
    assert_eq!(
        (status, message(&body)),
        (500, "VM 101 is not running\n".into())
    );
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/101/status/start", &[])
            .await,
        "OK"
    );
    let (status, body) = api.call("POST", &ping(101), &[]).await;
    assert_eq!(
        (status, message(&body)),
        (500, "QEMU guest agent is not running\n".into())
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, body) = api.call("POST", &ping(101), &[]).await;
    assert_eq!(
        (status, body["data"].clone()),
        (200, serde_json::json!({"result": {}}))
    );
}
