//! Every example applied end to end on the simulator, and the spec features they show:
//! cluster defaults, clone groups spread over nodes, linked clones from shared storage,
//! VLANs, DNS, IPv6, overrides, and passwords that never show.

use std::time::Duration;

use proxfleet::commands::Connection;
use proxfleet::sim::{SimConfig, SimHandle};

use crate::common::*;

async fn cluster_sim(nodes: usize) -> (SimHandle, Connection) {
    let sim = SimHandle::start(SimConfig {
        nodes,
        task_duration: Some(Duration::from_millis(2)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let conn = Connection::to_sim(&sim).unwrap();
    (sim, conn)
}

#[tokio::test]
async fn homelab_applies_and_converges() {
    let (sim, conn) = cluster_sim(1).await;
    let spec = example("homelab.yaml");
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));

    let vms = sim.vms();
    let template = vms.iter().find(|vm| vm.vmid == 9000).unwrap();
    assert!(template.config["efidisk0"].contains("pre-enrolled-keys=1"));
    assert_eq!(
        template.config["scsihw"], "virtio-scsi-single",
        "iothread needs one controller per disk"
    );
    assert!(template.config["scsi0"].contains("iothread=1"));
    assert!(
        template.config["net0"].contains("firewall=1") && template.config["net0"].contains("mtu=1")
    );
    assert_eq!(template.config["nameserver"], "192.168.1.1");
    assert_eq!(template.config["searchdomain"], "home.arpa");
    assert!(template.config["ipconfig0"].contains("ip6=auto"));

    let gpu = vms.iter().find(|vm| vm.vmid == 9001).unwrap();
    assert_eq!(gpu.config["hostpci0"], "mapping=gpu0,pcie=1");
    let jellyfin = vms.iter().find(|vm| vm.vmid == 120).unwrap();
    assert_eq!(
        jellyfin.config["hostpci0"], "mapping=gpu0,pcie=1",
        "the clone inherits the device"
    );
    let nas = vms.iter().find(|vm| vm.vmid == 110).unwrap();
    assert_eq!(
        (
            nas.config["memory"].as_str(),
            nas.config["cores"].as_str(),
            nas.config["onboot"].as_str()
        ),
        ("8192", "4", "1")
    );
    assert!(nas.running);
    let dev = vms.iter().find(|vm| vm.vmid == 112).unwrap();
    assert!(!dev.running, "start: false");
    let dev_disk = dev.config["scsi0"].split(',').next().unwrap().to_string();
    let volume = sim
        .volumes()
        .into_iter()
        .find(|v| v.volid == dev_disk)
        .unwrap();
    assert!(
        volume
            .parent
            .as_deref()
            .is_some_and(|p| p.contains("base-9000-disk")),
        "dev is a linked clone: {volume:?}"
    );
}

#[tokio::test]
async fn cluster_spreads_thirty_linked_clones_over_three_nodes() {
    let (sim, conn) = cluster_sim(3).await;
    let spec = example("cluster.yaml");
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert!(
        run.out
            .contains("Apply complete: 32 succeeded, 0 failed, 0 skipped."),
        "{}",
        run.out
    );
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));

    let vms = sim.vms();
    let clones: Vec<_> = vms
        .iter()
        .filter(|vm| vm.vmid >= 1000 && vm.vmid < 9000)
        .collect();
    assert_eq!(clones.len(), 30);
    let per_node = |node: &str| clones.iter().filter(|vm| vm.node == node).count();
    assert_eq!(
        (per_node("pve1"), per_node("pve2"), per_node("pve3")),
        (8, 11, 11),
        "app in turns over 3 nodes, db over pve2/pve3"
    );
    let app_24 = clones
        .iter()
        .find(|vm| vm.name.as_deref() == Some("app-24"))
        .unwrap();
    assert_eq!((app_24.vmid, app_24.node.as_str()), (1024, "pve3"));
    assert!(
        app_24.config["ipconfig0"].contains("ip=10.20.0.34/24"),
        "addresses count up from .11"
    );
    assert_eq!(app_24.config["nameserver"], "10.20.0.2 10.20.0.3");
    assert!(
        app_24.config["net0"].contains("tag=20"),
        "VLAN from the template"
    );
    assert_eq!(app_24.config["tags"], "app;debian;proxfleet");
    let app_1 = clones
        .iter()
        .find(|vm| vm.name.as_deref() == Some("app-1"))
        .unwrap();
    assert_eq!(app_1.config["memory"], "4096", "per-clone override");
    let db_6 = clones
        .iter()
        .find(|vm| vm.name.as_deref() == Some("db-6"))
        .unwrap();
    assert_eq!(
        (
            db_6.vmid,
            db_6.config["cores"].as_str(),
            db_6.config["memory"].as_str()
        ),
        (2006, "4", "8192")
    );
    let linked = sim
        .volumes()
        .into_iter()
        .filter(|v| v.parent.is_some())
        .count();
    assert_eq!(
        linked, 30,
        "every clone's boot disk is linked to the template's base disk"
    );
}

#[tokio::test]
async fn a_password_is_sent_but_never_shown_or_compared() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw.txt"), "correct horse battery staple\n").unwrap();
    let text = quickstart_text().replace(
        "      user: debian\n",
        "      user: debian\n      password: file:pw.txt\n",
    );
    let spec = write_spec(dir.path(), "pw.yaml", &text);
    let planned = plan(&conn, &spec).await;
    assert!(
        planned.out.contains("+ cipassword  = \"(sensitive)\""),
        "{}",
        planned.out
    );
    let applied = apply(&conn, &spec).await;
    assert!(applied.result.is_ok(), "{:?}", applied.result);
    for output in [&planned.out, &planned.err, &applied.out, &applied.err] {
        assert!(!output.contains("correct horse"), "{output}");
    }
    let template = sim.vms().into_iter().find(|vm| vm.vmid == 9000).unwrap();
    assert!(
        template.config["cipassword"].starts_with("$5$"),
        "stored hashed"
    );
    let seen = conn.client.vm_config("pve1", 9000).await.unwrap();
    assert_eq!(
        seen.values["cipassword"], "**********",
        "and the API shows it masked"
    );
    assert!(
        plan(&conn, &spec).await.out.starts_with("No changes."),
        "a masked password is not drift"
    );
}

#[tokio::test]
async fn an_image_fetched_onto_several_nodes_feeds_a_template_on_each() {
    let (sim, conn) = cluster_sim(2).await;
    let dir = tempfile::tempdir().unwrap();
    let text = quickstart_text()
        .replace("    node: pve1\n\ntemplates:", "    nodes: [pve1, pve2]\n\ntemplates:")
        .replace("clones:\n", "  debian-12-base-2:\n    vmid: 9001\n    node: pve2\n    image: debian-12\n    disk:\n      storage: local-lvm\n      size: 20G\n\nclones:\n");
    let spec = write_spec(dir.path(), "two.yaml", &text);
    let run = plan(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    let headers = change_headers(&run.out);
    assert!(
        headers.contains(&"# image.debian-12@pve1 (on pve1) will be created".to_string()),
        "{headers:?}"
    );
    assert!(
        headers.contains(&"# image.debian-12@pve2 (on pve2) will be created".to_string()),
        "{headers:?}"
    );
    assert!(apply(&conn, &spec).await.result.is_ok());
    let imports: Vec<(String, String)> = sim
        .volumes()
        .into_iter()
        .filter(|v| v.content == "import")
        .map(|v| (v.node, v.storage))
        .collect();
    assert_eq!(
        imports,
        vec![
            ("pve1".to_string(), "local".to_string()),
            ("pve2".to_string(), "local".to_string())
        ]
    );
    let vms = sim.vms();
    let second = vms.iter().find(|vm| vm.vmid == 9001).unwrap();
    assert_eq!((second.node.as_str(), second.template), ("pve2", true));
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));
}
