//! Preflight checks end to end against the simulator: a clean spec passes; a cluster and a
//! token that cannot take a spec fail every check that applies, all in one run, with who is
//! blocked and what to do; `plan` and `apply` stop on a failed check before observing, and
//! `--skip-checks` lets them go ahead.

use std::time::Duration;

use proxfleet::graph::DesiredGraph;
use proxfleet::preflight::{Facts, Group, Needs, Status, evaluate};
use proxfleet::pve::{NodeSummary, StorageSummary, VersionInfo, VmSummary};
use proxfleet::sim::{
    AclEntry, DEFAULT_TOKEN, SimBridge, SimConfig, SimHandle, SimPciMapping, SimStorage,
};
use serde_json::Value;

use crate::common::*;

const OPS: &str = "ops@pve!ci=1b6f1c52-0c8e-4d5f-9a3b-7e2d4c6f8a90";

async fn sim_with(config: SimConfig) -> (SimHandle, proxfleet::commands::Connection) {
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(5)),
        ..config
    })
    .await
    .expect("simulator starts");
    let conn = proxfleet::commands::Connection::to_sim(&sim).expect("client");
    (sim, conn)
}

/// The lines of the text report that start a check with this symbol.
fn lines_with<'a>(out: &'a str, symbol: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.trim_start().starts_with(symbol))
        .map(str::trim)
        .collect()
}

#[tokio::test]
async fn a_clean_quickstart_passes_every_check() {
    let (_sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    let run = check(&conn, &spec, false).await;
    assert!(run.result.is_ok(), "{}", run.out);
    assert_eq!(run.code, 0);
    assert!(lines_with(&run.out, "✗").is_empty(), "{}", run.out);
    assert!(run.out.ends_with("All 9 checks passed.\n"), "{}", run.out);
    for line in [
        "✓ Proxmox VE 9.1: the API answers (pve-manager 9.1.9)",
        "✓ local on pve1: dir, enabled and active, holds `import`",
        "✓ local-lvm on pve1: the new disks need up to 80.0 GiB; 400.0 GiB is free",
        "✓ vmbr0 on pve1: bridge, active",
        "✓ free: 9000, 201, 202, 203",
    ] {
        assert!(run.out.contains(line), "{line}\n{}", run.out);
    }

    let json: Value = serde_json::from_str(&check(&conn, &spec, true).await.out).unwrap();
    assert_eq!(
        (json["ok"].as_bool(), json["failed"].as_u64()),
        (Some(true), Some(0))
    );

    // Once applied, the vmids are the project's own and no new disk needs space.
    assert!(apply(&conn, &spec).await.result.is_ok());
    let again = check(&conn, &spec, false).await;
    assert!(again.result.is_ok(), "{}", again.out);
    assert!(
        again
            .out
            .contains("✓ new disks: none: every VM of the spec exists already"),
        "{}",
        again.out
    );
    assert!(
        again.out.contains(
            "✓ this project's already: 9000 `debian-12-base`, 201 `web-1`, 202 `web-2`, 203 `web-3`"
        ),
        "{}",
        again.out
    );
}

/// Everything wrong at once: a node that does not exist, an image storage that cannot hold
/// images to import, disks too big for a thick storage, a missing bridge, a VLAN on a bridge that
/// cannot carry it, a PCI mapping that does not exist, a token that may only look, and a vmid
/// held by a VM proxfleet did not create.
const BROKEN: &str = r#"
project: lab
images:
  debian-12:
    url: https://cloud.debian.org/images/cloud/bookworm/20250210-2019/debian-12-genericcloud-amd64-20250210-2019.qcow2
    checksum: sha512:a58d86525d75fd8e139a2302531ce5d2ab75ef0273cfe78f9d53aada4b23efd45f8433b4806fa4570cfe981c8fae26f5e5e855cbd66ba2198862f28125fd2d45
    storage: local-lvm
    nodes: [pve1, pve9]
templates:
  base:
    vmid: 9000
    node: pve1
    image: debian-12
    machine: q35
    cores: 2
    memory: 2GiB
    disk:
      storage: vg0
      size: 300G
    network:
      - bridge: vmbr0
        vlan: 20
      - bridge: vmbr1
        vlan: 30
      - bridge: vmbr7
    pci:
      - mapping: gpu0
        pcie: true
    cloud_init:
      user: debian
      ipv4: dhcp
clones:
  db-1:
    vmid: 201
    template: base
  web-1:
    vmid: 202
    template: base
"#;

async fn broken_cluster() -> (SimHandle, proxfleet::commands::Connection) {
    let (sim, conn) = sim_with(SimConfig {
        nodes: 2,
        // The first token is the one the connection uses: it may look at everything (the
        // auditor role) and change nothing.
        tokens: vec![OPS.to_string(), DEFAULT_TOKEN.to_string()],
        acls: vec![AclEntry::parse("/:PVEAuditor:ops@pve").unwrap()],
        pci_mappings: vec![SimPciMapping::new("nic0", &[("pve1", "0000:02:00.0")])],
        bridges: vec![SimBridge::new("pve1", "vmbr1")],
        // Thick LVM: a disk takes its whole size when it is made.
        storages: vec![SimStorage {
            id: "vg0".into(),
            kind: "lvm".into(),
            content: vec!["images".into(), "rootdir".into()],
            shared: false,
            total: 200 << 30,
        }],
        ..SimConfig::default()
    })
    .await;
    sim.insert_vm("pve1", 201, &[("name", "legacy-db"), ("memory", "1024")])
        .unwrap();
    (sim, conn)
}

#[tokio::test]
async fn every_problem_is_reported_at_once_with_what_to_do() {
    let (_sim, conn) = broken_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "lab.yaml", BROKEN);
    let run = check(&conn, &spec, false).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.result.as_ref().map_err(ToString::to_string),
        Err("16 preflight check(s) failed".to_string()),
        "{}",
        run.out
    );
    let failed = lines_with(&run.out, "✗");
    let expect = [
        "✗ pve9: no such node in the cluster (nodes: pve1, pve2)",
        "✗ local-lvm on pve1: cannot hold `import` content: it is a lvmthin storage",
        "✗ vg0 on pve1: the new disks need 600.0 GiB, but 200.0 GiB is free",
        "✗ vmbr1 on pve1: not VLAN-aware and without a physical port (eth*, en*, bond*), so a VM with VLAN 30 cannot start",
        "✗ vmbr7 on pve1: no such bridge (bridges there: vmbr0, vmbr1)",
        "✗ gpu0: no such PCI mapping (mappings: nic0)",
        "✗ /vms: the token lacks VM.Allocate, VM.Clone, VM.Config.CDROM, VM.Config.CPU, VM.Config.Cloudinit, VM.Config.Disk, VM.Config.HWType, VM.Config.Memory, VM.Config.Network, VM.Config.Options, VM.PowerMgmt",
        "✗ /storage/local-lvm: the token lacks Datastore.AllocateTemplate",
        "✗ /storage/vg0: the token lacks Datastore.AllocateSpace",
        "✗ /sdn/zones/localnetwork/vmbr1: the token lacks SDN.Use",
        "✗ /mapping/pci/gpu0: the token lacks Mapping.Use",
        "✗ /nodes/pve1: the token lacks Sys.AccessNetwork",
        "✗ /pool: the token lacks Pool.Allocate",
        "✗ 201 (clone.db-1): held by VM 201 `legacy-db` on pve1, which proxfleet did not create",
    ];
    for line in expect {
        assert!(
            failed.iter().any(|f| f.starts_with(line)),
            "missing {line}\n{}",
            run.out
        );
    }
    // The VLAN on vmbr0 works (Proxmox's traditional VLAN mode over eno1): a warning only.
    assert!(
        run.out.contains("! vmbr0 on pve1: not VLAN-aware: VLAN 20 will use Proxmox's traditional VLAN mode (a vmbr0v20 bridge over eno1.20, made when a VM starts)"),
        "{}",
        run.out
    );
    // What pve9 would have needed is not checked, and says so.
    assert!(
        run.out
            .contains("- storages on pve9: not checked: no such node")
    );
    // The hints carry commands to run.
    for hint in [
        "→ did you mean `pve1`?",
        "→ pveum acl modify /vms --tokens 'ops@pve!ci' --roles Proxfleet",
        "→ create it: Datacenter → Resource Mappings → PCI Devices → Add, id `gpu0`, with the device of pve1",
        "→ once, a role with what this spec needs: pveum role add Proxfleet -privs \"Datastore.AllocateSpace Datastore.AllocateTemplate Datastore.Audit Mapping.Use Pool.Allocate SDN.Use Sys.AccessNetwork VM.Allocate VM.Audit VM.Clone VM.Config.CDROM VM.Config.CPU VM.Config.Cloudinit VM.Config.Disk VM.Config.HWType VM.Config.Memory VM.Config.Network VM.Config.Options VM.PowerMgmt\"",
    ] {
        assert!(run.out.contains(hint), "missing {hint}\n{}", run.out);
    }
    snapshot_settings()
        .bind(|| insta::assert_snapshot!("preflight_every_problem_at_once", run.out));

    // The same as JSON, with details and hints for every check.
    let json: Value = serde_json::from_str(&check(&conn, &spec, true).await.out).unwrap();
    assert_eq!(
        (json["ok"].as_bool(), json["failed"].as_u64()),
        (Some(false), Some(16))
    );
    let bridge = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == "vmbr7 on pve1")
        .unwrap();
    assert_eq!(
        (bridge["group"].as_str(), bridge["status"].as_str()),
        (Some("bridges"), Some("fail"))
    );
    assert_eq!(
        bridge["details"][0],
        "needed by template.base, clone.db-1, clone.web-1"
    );
}

#[tokio::test]
async fn storage_state_mapping_entries_offline_nodes_and_hidden_vmids() {
    let spec_text = r#"
project: lab
images:
  debian-12:
    url: https://cloud.debian.org/images/cloud/bookworm/20250210-2019/debian-12-genericcloud-amd64-20250210-2019.qcow2
    checksum: sha512:a58d86525d75fd8e139a2302531ce5d2ab75ef0273cfe78f9d53aada4b23efd45f8433b4806fa4570cfe981c8fae26f5e5e855cbd66ba2198862f28125fd2d45
    storage: local
    nodes: [pve1, pve3]
templates:
  base:
    vmid: 9000
    node: pve1
    image: debian-12
    machine: q35
    disk:
      storage: shared
      size: 10G
    network:
      - bridge: vmbr1
        vlan: 20
    pci:
      - mapping: gpu0
clones:
  app-1:
    vmid: 150
    template: base
    node: pve2
    full: false
"#;
    let mut vlan_bridge = SimBridge::new("pve1", "vmbr1");
    vlan_bridge.vlan_aware = true;
    vlan_bridge.ports = vec!["bond0".into()];
    let mut pve2_bridge = vlan_bridge.clone();
    pve2_bridge.node = "pve2".into();
    let (sim, conn) = sim_with(SimConfig {
        nodes: 3,
        tokens: vec![OPS.to_string()],
        acls: vec![
            AclEntry::parse("/:Administrator:ops@pve").unwrap(),
            AclEntry::parse("/vms/150:NoAccess:ops@pve").unwrap(),
        ],
        pci_mappings: vec![SimPciMapping::new("gpu0", &[("pve1", "0000:01:00.0")])],
        bridges: vec![vlan_bridge, pve2_bridge],
        ..SimConfig::default()
    })
    .await;
    sim.set_storage_enabled("local", false).unwrap();
    sim.set_storage_active("pve2", "shared", false).unwrap();
    sim.set_node_online("pve3", false).unwrap();
    sim.insert_vm("pve2", 150, &[("name", "someone-elses")])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "lab.yaml", spec_text);
    let run = check(&conn, &spec, false).await;
    assert_eq!(run.code, 1, "{}", run.out);
    for line in [
        "✗ pve3: offline",
        "- storages on pve3: not checked: the node is offline",
        "✗ local on pve1: disabled",
        "✗ shared on pve2: not active on pve2",
        "✓ shared (shared): the new disks need up to 10.0 GiB",
        "✓ vmbr1 on pve1: bridge, active, VLAN-aware (VLAN 20)",
        "✓ gpu0 on pve1: maps 0000:01:00.0 (10de:2204)",
        "✗ gpu0 on pve2: the mapping has no device on pve2",
        "✗ /vms/150: the token lacks VM.Allocate, VM.Audit",
        "✗ 150 (clone.app-1): taken by a VM the token cannot see (it lacks VM.Audit on /vms/150)",
    ] {
        assert!(
            run.out.lines().any(|l| l.trim().starts_with(line)),
            "missing {line}\n{}",
            run.out
        );
    }
    assert!(run.out.contains("→ enable it: pvesm set local --disable 0"));
    // Linked clones count only the disks Proxmox copies for them.
    assert!(!run.out.contains("clone.app-1 (vmid 150)"), "{}", run.out);
}

#[tokio::test]
async fn the_examples_pass_on_clusters_that_can_take_them() {
    // The homelab's GPU template needs its mapping; the cluster example needs three nodes and
    // tags VLANs on the stock vmbr0, which Proxmox's traditional VLAN mode carries (a warning).
    let (sim, conn) = sim_with(SimConfig {
        pci_mappings: vec![SimPciMapping::new("gpu0", &[("pve1", "0000:01:00.0")])],
        ..SimConfig::default()
    })
    .await;
    let homelab = check(&conn, &example("homelab.yaml"), false).await;
    assert!(homelab.result.is_ok(), "{}", homelab.out);
    assert!(
        homelab
            .out
            .contains("✓ gpu0 on pve1: maps 0000:01:00.0 (10de:2204)")
    );
    // On a smaller thin pool the disks fit while they stay sparse: Proxmox allows the
    // overcommitment, the check warns.
    sim.add_storage(SimStorage {
        id: "local-lvm".into(),
        kind: "lvmthin".into(),
        content: vec!["images".into(), "rootdir".into()],
        shared: false,
        total: 100 << 30,
    });
    let small = check(&conn, &example("homelab.yaml"), false).await;
    assert!(small.result.is_ok(), "{}", small.out);
    assert!(
        small.out.contains("! local-lvm on pve1: the new disks may grow to 224.1 GiB, more than the 100.0 GiB free: lvmthin is thin-provisioned"),
        "{}",
        small.out
    );

    let (_sim, conn) = sim_with(SimConfig {
        nodes: 3,
        ..SimConfig::default()
    })
    .await;
    let cluster = check(&conn, &example("cluster.yaml"), false).await;
    assert!(cluster.result.is_ok(), "{}", cluster.out);
    assert_eq!(lines_with(&cluster.out, "!").len(), 3, "{}", cluster.out);
    assert!(
        cluster
            .out
            .contains("✓ shared (shared): the new disks need up to"),
        "{}",
        cluster.out
    );
}

#[test]
fn old_releases_fail_the_version_gates_they_miss() {
    let loaded = proxfleet::spec::load(&example("homelab.yaml")).unwrap();
    let desired = DesiredGraph::build(&loaded.spec);
    let needs = Needs::of(&loaded.spec, &desired);
    let mut facts = Facts::unreachable(
        "ops@pve!ci",
        proxfleet::pve::PveError::Timeout {
            method: "GET".into(),
            path: "/version".into(),
        },
    );
    let unreachable = evaluate(&needs, &facts);
    assert_eq!(
        unreachable
            .checks
            .iter()
            .map(|c| (c.status, c.subject.as_str()))
            .collect::<Vec<_>>(),
        [(Status::Fail, "API"), (Status::Skip, "other checks")]
    );
    assert!(unreachable.checks[0].hints[0].contains("PROXMOX_VE_ENDPOINT"));

    facts.version = Ok(VersionInfo {
        release: "8.3".into(),
        version: "8.3.5".into(),
    });
    facts.nodes = Some(Ok(vec![NodeSummary {
        name: "pve1".into(),
        online: true,
    }]));
    facts.vms = Some(Ok(Vec::<VmSummary>::new()));
    facts.storages.insert(
        "pve1".into(),
        Ok(vec![StorageSummary {
            storage: "local".into(),
            kind: "dir".into(),
            content: vec!["iso".into(), "import".into()],
            shared: false,
            active: true,
            enabled: true,
            avail: Some(1 << 40),
            total: Some(1 << 40),
        }]),
    );
    let report = evaluate(&needs, &facts);
    let api: Vec<(Status, &str, &str)> = report
        .checks
        .iter()
        .filter(|c| c.group == Group::Api)
        .map(|c| (c.status, c.subject.as_str(), c.message.as_str()))
        .collect();
    assert_eq!(
        api,
        [
            (
                Status::Pass,
                "Proxmox VE 8.3",
                "the API answers (pve-manager 8.3.5)"
            ),
            (
                Status::Fail,
                "PVE ≥ 8.4",
                "disk images (qcow2, raw, vmdk) as `import` content, by download-url or upload needs PVE 8.4 or later; the cluster runs 8.3"
            ),
            (
                Status::Pass,
                "PVE ≥ 8.0",
                "PCI resource mappings, used by template.ubuntu-gpu"
            ),
        ]
    );
}

#[test]
fn plan_and_apply_stop_on_a_failed_check_and_skip_checks_skips_them() {
    let dir = tempfile::tempdir().unwrap();
    let spec = quickstart_text().replace("bridge: vmbr0", "bridge: vmbr7");
    write_spec(dir.path(), "proxfleet.yaml", &spec);

    let planned = proxfleet(dir.path(), &["--sim", "plan"]);
    assert_eq!(planned.status.code(), Some(1));
    let err = text(&planned.stderr);
    assert!(
        err.starts_with("error: a preflight check failed, so nothing was observed or changed:\nBridges\n  ✗ vmbr7 on pve1: no such bridge (bridges there: vmbr0)\n"),
        "{err}"
    );
    assert!(
        err.contains("hint: `proxfleet --sim check -f proxfleet.yaml` shows every check; --skip-checks goes ahead without them"),
        "{err}"
    );
    assert_eq!(text(&planned.stdout), "");

    let applied = proxfleet(dir.path(), &["--sim", "apply", "--auto-approve"]);
    assert_eq!(applied.status.code(), Some(1));
    assert!(text(&applied.stderr).contains("✗ vmbr7 on pve1: no such bridge"));

    let checked = proxfleet(dir.path(), &["--sim", "check"]);
    assert_eq!(checked.status.code(), Some(1));
    assert!(text(&checked.stdout).ends_with("1 of 9 checks failed.\n"));

    // --skip-checks goes ahead: the plan is made and saved; applying the saved plan checks the
    // spec it was made from, unless told not to.
    let skipped = proxfleet(
        dir.path(),
        &["--sim", "plan", "--skip-checks", "--out", "plan.json"],
    );
    assert_eq!(skipped.status.code(), Some(0), "{}", text(&skipped.stderr));
    assert!(text(&skipped.stdout).contains("Plan: 5 to add, 0 to change, 0 to destroy."));
    assert!(text(&skipped.stderr).contains("warning: preflight checks skipped (--skip-checks)"));
    let refused = proxfleet(dir.path(), &["--sim", "apply", "plan.json"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("✗ vmbr7 on pve1: no such bridge"));
    let forced = proxfleet(
        dir.path(),
        &["--sim", "apply", "plan.json", "--skip-checks"],
    );
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    assert!(text(&forced.stdout).contains("Apply complete: 5 succeeded"));
}
