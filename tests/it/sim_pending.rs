//! The simulator's pending changes as qemu-server keeps them: a running VM's change that waits
//! for the next boot is pending until then, but a pending value equal to the current one is
//! no change and is dropped, and so is a pending deletion of an option the VM does not have
//! (`update_vm` ends with pve-guest-common's `cleanup_pending`).

use serde_json::Value;

use super::sim::{Api, fast};

async fn pending(api: &Api) -> Vec<(String, Value)> {
    let (status, body) = api.call("GET", "/nodes/pve1/qemu/100/pending", &[]).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|entry| entry.get("pending").is_some() || entry.get("delete").is_some())
        .map(|entry| {
            let key = entry["key"].as_str().unwrap_or_default().to_string();
            let what = entry
                .get("pending")
                .cloned()
                .unwrap_or_else(|| entry["delete"].clone());
            (key, what)
        })
        .collect()
}

#[tokio::test]
async fn pending_values_equal_to_the_current_ones_are_dropped_as_qemu_server_does() {
    let (_sim, api) = Api::start(fast()).await;
    let exit = api
        .task(
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "100"), ("memory", "2048"), ("cores", "2")],
        )
        .await;
    assert_eq!(exit, "OK");
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/100/status/start", &[])
            .await,
        "OK"
    );
    let put = async |form: &[(&str, &str)]| {
        let (status, body) = api.call("PUT", "/nodes/pve1/qemu/100/config", form).await;
        assert_eq!(status, 200, "{body}");
    };

    // A change for the next boot is pending.
    put(&[("memory", "4096")]).await;
    assert_eq!(
        pending(&api).await,
        vec![("memory".to_string(), Value::from("4096"))]
    );
    // Set back to the current value: no change left, nothing pending.
    put(&[("memory", "2048")]).await;
    assert_eq!(pending(&api).await, Vec::new());
    // The current value set again, and an absent option deleted: never pending.
    put(&[("cores", "2")]).await;
    put(&[("delete", "balloon")]).await;
    assert_eq!(pending(&api).await, Vec::new());
    // A real deletion of a present option still waits for the boot.
    put(&[("delete", "cores")]).await;
    assert_eq!(
        pending(&api)
            .await
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>(),
        vec!["cores".to_string()]
    );
}
