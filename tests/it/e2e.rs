//! The core pipeline end to end on the simulator: image → template → clones, then the plan
//! is empty, a second apply writes nothing, edits converge, removals destroy exactly what was
//! removed, and what proxfleet does not own is never touched.

use crate::common::*;

#[tokio::test]
async fn quickstart_apply_builds_image_template_and_running_clones_then_converges() {
    let (sim, conn) = sim().await;
    let spec = example("quickstart.yaml");

    let first_plan = plan(&conn, &spec).await;
    assert!(first_plan.result.is_ok(), "{:?}", first_plan.result);
    assert_eq!(first_plan.err, "", "the quickstart raises no warnings");
    snapshot_settings()
        .bind(|| insta::assert_snapshot!("quickstart_plan_on_empty_cluster", first_plan.out));

    let run = apply(&conn, &spec).await;
    assert!(
        run.result.is_ok(),
        "apply failed: {:?}\n{}",
        run.result,
        run.out
    );

    // The image volume, named by its content (the checksum's first 12 hex digits).
    let volumes = sim.volumes();
    assert!(
        volumes.iter().any(|v| v.volid
            == "local:import/debian-12-genericcloud-amd64-20250210-2019-a58d86525d75.qcow2"
            && v.content == "import"),
        "the image was downloaded into local (import): {volumes:?}"
    );

    // The template: converted, disks renamed base-*, EFI disk and TPM, cloud-init drive.
    let vms = sim.vms();
    let template = vms
        .iter()
        .find(|vm| vm.vmid == 9000)
        .expect("template 9000 exists");
    assert!(template.template, "9000 is a template");
    assert!(!template.running);
    let scsi0 = template.config.get("scsi0").expect("boot disk");
    assert!(
        scsi0.contains("base-9000-disk"),
        "boot disk renamed to base-*: {scsi0}"
    );
    assert!(
        scsi0.contains("size=20G"),
        "boot disk resized to 20G: {scsi0}"
    );
    assert!(
        template
            .config
            .get("efidisk0")
            .is_some_and(|v| v.contains("efitype=4m"))
    );
    assert!(
        template
            .config
            .get("tpmstate0")
            .is_some_and(|v| v.contains("version=v2.0"))
    );
    assert!(
        template
            .config
            .get("ide2")
            .is_some_and(|v| v.contains("cloudinit"))
    );
    assert_eq!(
        template.config.get("bios").map(String::as_str),
        Some("ovmf")
    );

    // Three running clones with their static addresses.
    for (vmid, name, ip) in [
        (201, "web-1", "192.0.2.11/24"),
        (202, "web-2", "192.0.2.12/24"),
        (203, "web-3", "192.0.2.13/24"),
    ] {
        let vm = vms
            .iter()
            .find(|vm| vm.vmid == vmid)
            .unwrap_or_else(|| panic!("clone {vmid} exists"));
        assert_eq!(vm.name.as_deref(), Some(name));
        assert!(vm.running, "{name} is running");
        assert!(!vm.template);
        let ipconfig = vm.config.get("ipconfig0").cloned().unwrap_or_default();
        assert!(
            ipconfig.contains(&format!("ip={ip}")) && ipconfig.contains("gw=192.0.2.1"),
            "{name}: {ipconfig}"
        );
        assert!(
            vm.config
                .get("tags")
                .is_some_and(|t| t.split(';').any(|t| t == "proxfleet"))
        );
    }

    // A fresh plan is empty.
    let second_plan = plan(&conn, &spec).await;
    assert!(second_plan.result.is_ok());
    assert!(
        second_plan.out.starts_with("No changes."),
        "{}",
        second_plan.out
    );

    // A second apply sends no write request at all.
    sim.clear_requests();
    let again = apply(&conn, &spec).await;
    assert!(again.result.is_ok(), "{:?}", again.result);
    assert_eq!(
        write_requests(&sim),
        Vec::<String>::new(),
        "a converged apply must not write"
    );
    assert!(!sim.requests().is_empty(), "it did observe the cluster");
}

#[tokio::test]
async fn changing_one_clones_memory_is_one_in_place_update_that_converges() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let base = write_spec(dir.path(), "base.yaml", &quickstart_text());
    assert!(apply(&conn, &base).await.result.is_ok());

    let edited = quickstart_text().replace(
        "  web-2:\n    vmid: 202\n    template: debian-12-base\n",
        "  web-2:\n    vmid: 202\n    template: debian-12-base\n    memory: 4GiB\n",
    );
    assert_ne!(edited, quickstart_text(), "the edit applies to the example");
    let spec = write_spec(dir.path(), "edited.yaml", &edited);

    let run = plan(&conn, &spec).await;
    assert!(run.result.is_ok());
    assert_eq!(
        change_headers(&run.out),
        vec!["# clone.web-2 (vmid 202 on pve1) will be updated in place"]
    );
    assert!(
        run.out.contains("~ memory = \"2048\" → \"4096\""),
        "{}",
        run.out
    );
    assert!(
        run.out
            .contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{}",
        run.out
    );
    snapshot_settings().bind(|| insta::assert_snapshot!("memory_change_plan", run.out));

    let applied = apply(&conn, &spec).await;
    assert!(applied.result.is_ok(), "{:?}", applied.result);
    let web2 = sim.vms().into_iter().find(|vm| vm.vmid == 202).unwrap();
    assert_eq!(web2.config.get("memory").map(String::as_str), Some("4096"));
    let after = plan(&conn, &spec).await;
    assert!(after.out.starts_with("No changes."), "{}", after.out);
}

#[tokio::test]
async fn removing_a_clone_from_the_spec_destroys_exactly_that_clone() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let base = write_spec(dir.path(), "base.yaml", &quickstart_text());
    assert!(apply(&conn, &base).await.result.is_ok());

    let without_web3 = quickstart_text().replace(
        "  web-3:\n    vmid: 203\n    template: debian-12-base\n    cloud_init:\n      ipv4: 192.0.2.13/24\n      gateway: 192.0.2.1\n",
        "",
    );
    assert_ne!(without_web3, quickstart_text());
    let spec = write_spec(dir.path(), "two.yaml", &without_web3);

    let run = plan(&conn, &spec).await;
    assert_eq!(
        change_headers(&run.out),
        vec!["# clone.web-3 (vmid 203 on pve1) will be destroyed"]
    );
    assert!(
        run.out
            .contains("Plan: 0 to add, 0 to change, 1 to destroy."),
        "{}",
        run.out
    );

    assert!(apply(&conn, &spec).await.result.is_ok());
    let vmids: Vec<u32> = sim.vms().iter().map(|vm| vm.vmid).collect();
    assert_eq!(vmids, vec![201, 202, 9000]);
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));
}

#[tokio::test]
async fn destroy_removes_clones_then_template_and_never_touches_an_unmanaged_vm() {
    let (sim, conn) = sim().await;
    sim.insert_vm(
        "pve1",
        300,
        &[("name", "legacy-db"), ("memory", "1024"), ("tags", "prod")],
    )
    .unwrap();
    let unmanaged_before = sim.vms().into_iter().find(|vm| vm.vmid == 300).unwrap();
    let spec = example("quickstart.yaml");

    assert!(apply(&conn, &spec).await.result.is_ok());
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));

    let run = destroy(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    let headers = change_headers(&run.out);
    assert_eq!(headers.len(), 4, "{}", run.out);
    assert!(
        headers[..3].iter().all(|h| h.starts_with("# clone.")),
        "clones first: {headers:?}"
    );
    assert_eq!(
        headers[3],
        "# template.debian-12-base (vmid 9000 on pve1) will be destroyed"
    );

    let remaining = sim.vms();
    assert_eq!(remaining.len(), 1, "only the unmanaged VM is left");
    assert_eq!(
        remaining[0], unmanaged_before,
        "the unmanaged VM is untouched"
    );
    // proxfleet never wrote to it.
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.method == "GET" || !r.path.contains("/qemu/300"))
    );
}

#[tokio::test]
async fn an_unmanaged_vm_holding_a_desired_vmid_is_a_conflict_not_a_takeover() {
    let (sim, conn) = sim().await;
    sim.insert_vm("pve1", 202, &[("name", "someone-elses"), ("memory", "512")])
        .unwrap();
    let spec = example("quickstart.yaml");

    let run = plan(&conn, &spec).await;
    let err = run.result.expect_err("a conflict fails the plan");
    let message = err.to_string();
    assert!(message.contains("clone.web-2: vmid 202 is taken by VM 202 (`someone-elses`) on node pve1, which is not managed by proxfleet"), "{message}");
    assert!(message.contains("hint:"), "{message}");

    sim.clear_requests();
    let applied = apply(&conn, &spec).await;
    assert!(applied.result.is_err());
    assert_eq!(
        write_requests(&sim),
        Vec::<String>::new(),
        "nothing is written when the plan has conflicts"
    );
}

#[tokio::test]
async fn plan_json_is_versioned_data() {
    let (_sim, conn) = sim().await;
    let run = plan_json(&conn, &example("quickstart.yaml")).await;
    assert!(run.result.is_ok());
    let value: serde_json::Value = serde_json::from_str(&run.out).expect("valid JSON");
    assert_eq!(value["format_version"], 2);
    assert_eq!(
        value["counts"],
        serde_json::json!({"add": 5, "change": 0, "destroy": 0})
    );
    let actions: Vec<(&str, &str)> = value["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["key"].as_str().unwrap(), c["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("image.debian-12", "create"),
            ("template.debian-12-base", "create"),
            ("clone.web-1", "create"),
            ("clone.web-2", "create"),
            ("clone.web-3", "create"),
        ]
    );
}

#[tokio::test]
async fn a_changed_image_checksum_downloads_a_new_file_and_rebuilds_the_template() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let base = write_spec(dir.path(), "base.yaml", &quickstart_text());
    assert!(apply(&conn, &base).await.result.is_ok());
    let old_sum = "a58d86525d75fd8e139a2302531ce5d2ab75ef0273cfe78f9d53aada4b23efd45f8433b4806fa4570cfe981c8fae26f5e5e855cbd66ba2198862f28125fd2d45";
    let new_sum = format!("b{}", &old_sum[1..]);
    let spec = write_spec(
        dir.path(),
        "new.yaml",
        &quickstart_text().replace(old_sum, &new_sum),
    );
    let run = plan(&conn, &spec).await;
    assert_eq!(
        change_headers(&run.out),
        vec![
            "# image.debian-12 (on pve1) must be replaced",
            "# template.debian-12-base (vmid 9000 on pve1) must be replaced",
        ],
        "clones are not replaced unless asked: {}",
        run.out
    );
    let applied = apply(&conn, &spec).await;
    assert!(
        applied.result.is_ok(),
        "{:?}\n{}",
        applied.result,
        applied.out
    );
    let imports: Vec<String> = sim
        .volumes()
        .into_iter()
        .filter(|v| v.content == "import")
        .map(|v| v.volid)
        .collect();
    assert_eq!(
        imports,
        vec![
            "local:import/debian-12-genericcloud-amd64-20250210-2019-b58d86525d75.qcow2"
                .to_string()
        ],
        "the old copy is gone"
    );
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));
}

#[tokio::test]
async fn clone_disk_and_network_overrides_converge_and_keep_the_mac() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let with_overrides = |vlan: u32| {
        quickstart_text()
            .replace("      discard: true\n      ssd: true\n", "      discard: true\n      ssd: true\n    extra_disks:\n      - size: 10G\n")
            .replace(
                "  web-1:\n    vmid: 201\n    template: debian-12-base\n",
                &format!("  web-1:\n    vmid: 201\n    template: debian-12-base\n    disk_size: 40G\n    network:\n      - bridge: vmbr1\n        vlan: {vlan}\n"),
            )
    };
    let spec = write_spec(dir.path(), "a.yaml", &with_overrides(30));
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    let web1 = sim.vms().into_iter().find(|vm| vm.vmid == 201).unwrap();
    assert!(
        web1.config["scsi0"].contains("size=40G"),
        "{}",
        web1.config["scsi0"]
    );
    assert!(
        web1.config["scsi1"].contains("size=10G"),
        "extra disk from the template"
    );
    let net0 = web1.config["net0"].clone();
    assert!(
        net0.starts_with("virtio=BC:24:11:")
            && net0.contains("bridge=vmbr1")
            && net0.contains("tag=30"),
        "{net0}"
    );
    assert!(
        plan(&conn, &spec).await.out.starts_with("No changes."),
        "a MAC Proxmox chose is not drift"
    );

    let spec = write_spec(dir.path(), "b.yaml", &with_overrides(31));
    let run = plan(&conn, &spec).await;
    assert_eq!(
        change_headers(&run.out),
        vec!["# clone.web-1 (vmid 201 on pve1) will be updated in place"]
    );
    assert!(apply(&conn, &spec).await.result.is_ok());
    let after = sim
        .vms()
        .into_iter()
        .find(|vm| vm.vmid == 201)
        .unwrap()
        .config["net0"]
        .clone();
    assert!(after.contains("tag=31"), "{after}");
    assert_eq!(
        after.split(',').next(),
        net0.split(',').next(),
        "the interface keeps its MAC"
    );
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));
}

/// An update that changes an option and moves the VM to another pool, applied after an
/// unrelated edit changed the VM's config digest: the executor re-reads the config, sees
/// that every option it sets still has its planned value, and writes again. A pool is not a
/// config option, so its absence from the config must not make the plan look stale.
#[tokio::test]
async fn an_option_change_with_a_pool_move_survives_an_unrelated_edit_since_the_plan() {
    use proxfleet::apply::{ApplyOptions, StepResult};
    use proxfleet::graph::DesiredGraph;

    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let web_2 = "  web-2:\n    vmid: 202\n    template: debian-12-base\n";
    let in_pool =
        |extra: &str| quickstart_text().replace(web_2, &format!("{web_2}    pool: web\n{extra}"));
    let base = write_spec(dir.path(), "base.yaml", &in_pool(""));
    assert!(apply(&conn, &base).await.result.is_ok());
    let moved = in_pool("    memory: 4GiB\n").replace("    pool: web\n", "    pool: db\n");
    let file = write_spec(dir.path(), "moved.yaml", &moved);
    let desired = DesiredGraph::build(&proxfleet::spec::load(&file).unwrap().spec);
    let actual = proxfleet::observe::observe(&conn.client, &desired)
        .await
        .unwrap();
    let plan = proxfleet::diff::diff(&desired, &actual);
    assert_eq!(plan.changes.len(), 1, "{plan:?}");

    // Someone sets an option the spec does not manage: the digest changes, the plan holds.
    sim.set_vm_config(202, "startup", Some("order=3")).unwrap();
    let options = ApplyOptions {
        backoff: backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(1)),
        ..ApplyOptions::default()
    };
    let report = proxfleet::apply::apply(
        &conn.client,
        &plan,
        &desired,
        &actual,
        &options,
        std::sync::Arc::new(|_| {}),
    )
    .await;
    assert_eq!(report.outcomes[0].result, StepResult::Ok, "{report:?}");
    let web2 = sim.vms().into_iter().find(|vm| vm.vmid == 202).unwrap();
    assert_eq!(web2.config.get("memory").map(String::as_str), Some("4096"));
    assert_eq!(
        web2.config.get("startup").map(String::as_str),
        Some("order=3")
    );
    let pools: Vec<(u32, Option<String>)> = conn
        .client
        .cluster_vms()
        .await
        .unwrap()
        .into_iter()
        .map(|vm| (vm.vmid, vm.pool))
        .collect();
    assert!(pools.contains(&(202, Some("db".into()))), "{pools:?}");
}
