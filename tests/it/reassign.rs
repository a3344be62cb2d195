//! Disk reassign (`POST …/move_disk` with `target-vmid`, qemu-server `API2/Qemu.pm`
//! `move_vm_disk`): the refusals in Proxmox's wording as a conformance table, and the
//! reassign itself: the volume renamed to the new vmid, the entry moved between the configs,
//! and the same volume (its contents token) on the other side.

use proxfleet::sim::SimConfig;

use super::common::snapshot_settings;
use super::conformance::{Case, run};
use super::sim::{Api, fast, template};

/// A stopped VM 102 on pve1 with a system disk and a data disk, and a VM 200 on pve2, beside
/// the conformance fixture (template 9000, running full clone 100, stopped linked clone 101).
const SETUP: &[Case] = &[
    (
        "setup: a VM with a data disk",
        "POST",
        "/nodes/pve1/qemu",
        &[
            ("vmid", "102"),
            ("scsi0", "local-lvm:1"),
            ("scsi1", "local-lvm:2,discard=on"),
            ("boot", "order=scsi0;scsi1"),
        ],
    ),
    (
        "setup: a VM on the other node",
        "POST",
        "/nodes/pve2/qemu",
        &[("vmid", "200"), ("scsi0", "local-lvm:1")],
    ),
];

const REFUSALS: &[Case] = &[
    (
        "refused: neither storage nor target-vmid",
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &[("disk", "scsi1")],
    ),
    (
        "refused: both storage and target-vmid",
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &[
            ("disk", "scsi1"),
            ("target-vmid", "101"),
            ("storage", "local-lvm"),
        ],
    ),
    (
        "refused: the same VM",
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &[("disk", "scsi1"), ("target-vmid", "102")],
    ),
    (
        "refused: no such source VM",
        "POST",
        "/nodes/pve1/qemu/999/move_disk",
        &[("disk", "scsi1"), ("target-vmid", "101")],
    ),
    (
        "refused: no such target VM",
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &[("disk", "scsi1"), ("target-vmid", "998")],
    ),
    (
        "refused: VMs on two nodes, even for a disk on a shared storage",
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &[("disk", "scsi1"), ("target-vmid", "200")],
    ),
    (
        "refused: from a template",
        "POST",
        "/nodes/pve1/qemu/9000/move_disk",
        &[("disk", "scsi0"), ("target-vmid", "101")],
    ),
    (
        "refused: a stale target digest",
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &[
            ("disk", "scsi1"),
            ("target-vmid", "101"),
            ("target-digest", "0000000000000000000000000000000000000000"),
        ],
    ),
    (
        "refused: no such disk",
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &[("disk", "scsi5"), ("target-vmid", "101")],
    ),
    (
        "refused: the target key is in use",
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &[
            ("disk", "scsi1"),
            ("target-vmid", "101"),
            ("target-disk", "scsi0"),
        ],
    ),
    (
        "refused: a CD drive",
        "POST",
        "/nodes/pve1/qemu/101/move_disk",
        &[
            ("disk", "ide2"),
            ("target-vmid", "102"),
            ("target-disk", "ide3"),
        ],
    ),
    (
        "refused: the source is running",
        "POST",
        "/nodes/pve1/qemu/100/move_disk",
        &[
            ("disk", "scsi0"),
            ("target-vmid", "102"),
            ("target-disk", "scsi2"),
        ],
    ),
    (
        "accepted: the data disk to VM 101 as scsi3",
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &[
            ("disk", "scsi1"),
            ("target-vmid", "101"),
            ("target-disk", "scsi3"),
        ],
    ),
    (
        "the source lost the disk and its boot entry",
        "GET",
        "/nodes/pve1/qemu/102/config",
        &[],
    ),
    (
        "the target has it, renamed to its vmid",
        "GET",
        "/nodes/pve1/qemu/101/config",
        &[],
    ),
    (
        "a linked clone's disk keeps its base",
        "POST",
        "/nodes/pve1/qemu/101/move_disk",
        &[
            ("disk", "scsi0"),
            ("target-vmid", "102"),
            ("target-disk", "scsi4"),
        ],
    ),
    (
        "storage content after both",
        "GET",
        "/nodes/pve1/storage/local-lvm/content",
        &[],
    ),
];

#[tokio::test]
async fn move_disk_to_another_vm_answers_as_proxmox() {
    let cases: Vec<Case> = SETUP.iter().chain(REFUSALS).copied().collect();
    let table = run(&cases).await;
    snapshot_settings().bind(|| insta::assert_snapshot!("conformance__move_disk", table));
}

#[tokio::test]
async fn a_reassigned_volume_is_the_same_volume_under_the_new_vmid() {
    let (sim, api) = Api::start(SimConfig { nodes: 2, ..fast() }).await;
    template(&api).await;
    for (vmid, data_disk) in [("300", "shared:4"), ("301", "none,media=cdrom")] {
        let exit = api
            .task(
                "POST",
                "/nodes/pve2/qemu",
                &[("vmid", vmid), ("scsi0", "shared:1"), ("ide3", data_disk)],
            )
            .await;
        assert_eq!(exit, "OK");
    }
    let vms = sim.vms();
    let ide3 = &vms.iter().find(|vm| vm.vmid == 300).unwrap().config["ide3"];
    let data = ide3.split(',').next().unwrap().to_string();
    assert!(data.starts_with("shared:300/vm-300-disk-"), "{ide3}");
    sim.write_volume(&data, "database files").unwrap();

    let exit = api
        .task(
            "POST",
            "/nodes/pve2/qemu/300/move_disk",
            &[
                ("disk", "ide3"),
                ("target-vmid", "301"),
                ("target-disk", "scsi1"),
            ],
        )
        .await;
    assert_eq!(exit, "OK");

    let volumes = sim.volumes();
    assert!(volumes.iter().all(|v| v.volid != data), "{volumes:?}");
    let volume = volumes
        .iter()
        .find(|v| v.contents == "database files")
        .unwrap();
    let moved = volume.volid.clone();
    assert!(moved.starts_with("shared:301/vm-301-disk-"), "{moved}");
    assert_eq!(volume.size, 4 << 30);
    let vms = sim.vms();
    let config = |vmid: u32| &vms.iter().find(|vm| vm.vmid == vmid).unwrap().config;
    assert!(!config(300).contains_key("ide3"));
    assert_eq!(config(301)["scsi1"], format!("{moved},size=4G"));

    // The VM it left can be destroyed without taking the volume along.
    assert_eq!(api.task("DELETE", "/nodes/pve2/qemu/300", &[]).await, "OK");
    let volumes = sim.volumes();
    assert!(
        volumes
            .iter()
            .any(|v| v.volid == moved && v.contents == "database files")
    );
}

#[tokio::test]
async fn a_reassign_rechecks_under_the_lock_and_fails_its_task_when_the_target_got_locked() {
    let (sim, api) = Api::start(SimConfig {
        nodes: 1,
        task_duration: Some(std::time::Duration::from_millis(200)),
        ..SimConfig::default()
    })
    .await;
    for (vmid, disks) in [("400", "local-lvm:1"), ("401", "local-lvm:1")] {
        let (status, body) = api
            .call(
                "POST",
                "/nodes/pve1/qemu",
                &[("vmid", vmid), ("scsi0", disks), ("scsi1", disks)],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        api.wait(body["data"].as_str().unwrap()).await;
    }
    let (status, body) = api
        .call(
            "POST",
            "/nodes/pve1/qemu/400/move_disk",
            &[
                ("disk", "scsi1"),
                ("target-vmid", "401"),
                ("target-disk", "scsi2"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    sim.set_lock(401, Some("backup")).unwrap();
    let exit = api.wait(body["data"].as_str().unwrap()).await;
    assert_eq!(exit, "VM is locked (backup)");
    let volumes = sim.volumes();
    assert!(volumes.iter().any(|v| v.volid == "local-lvm:vm-400-disk-1"));
}

#[tokio::test]
async fn a_running_vm_gives_up_an_unused_volume_and_the_target_gets_a_plain_volume_id() {
    let (sim, api) = Api::start(fast()).await;
    for vmid in ["500", "501"] {
        let exit = api
            .task(
                "POST",
                "/nodes/pve1/qemu",
                &[("vmid", vmid), ("scsi0", "local-lvm:1")],
            )
            .await;
        assert_eq!(exit, "OK");
    }
    let exit = api
        .task(
            "POST",
            "/nodes/pve1/qemu/500/config",
            &[("scsi1", "local-lvm:3")],
        )
        .await;
    assert_eq!(exit, "OK");
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/500/status/start", &[])
            .await,
        "OK"
    );
    // Detached by hand, as `qm set 500 --delete scsi1` leaves it: an unused entry.
    sim.set_vm_config(500, "scsi1", None).unwrap();
    sim.set_vm_config(500, "unused0", Some("local-lvm:vm-500-disk-1"))
        .unwrap();
    sim.write_volume("local-lvm:vm-500-disk-1", "logs").unwrap();

    let exit = api
        .task(
            "POST",
            "/nodes/pve1/qemu/500/move_disk",
            &[("disk", "unused0"), ("target-vmid", "501")],
        )
        .await;
    assert_eq!(exit, "OK");
    let vms = sim.vms();
    let config = |vmid: u32| &vms.iter().find(|vm| vm.vmid == vmid).unwrap().config;
    assert!(!config(500).contains_key("unused0"));
    assert_eq!(config(501)["unused0"], "local-lvm:vm-501-disk-1");
    let volumes = sim.volumes();
    let moved = volumes
        .iter()
        .find(|v| v.volid == "local-lvm:vm-501-disk-1")
        .unwrap();
    assert_eq!(moved.contents, "logs");
}

/// Tokens with disk rights on VM 600 only; on all VMs; on all VMs and space on `local-lvm`.
const ONE_VM: &str = "one@pve!ci=11111111-2222-4333-8444-000000000007";
const ALL_VMS: &str = "vms@pve!ci=11111111-2222-4333-8444-000000000008";
const WITH_SPACE: &str = "space@pve!ci=11111111-2222-4333-8444-000000000009";

#[tokio::test]
async fn a_reassign_needs_disk_rights_on_both_vms_and_space_on_the_storage() {
    let acl = |text: &str| proxfleet::sim::AclEntry::parse(text).unwrap();
    let (_sim, api) = Api::start(SimConfig {
        tokens: [proxfleet::sim::DEFAULT_TOKEN, ONE_VM, ALL_VMS, WITH_SPACE]
            .map(str::to_string)
            .to_vec(),
        acls: vec![
            acl("/vms/600:PVEVMAdmin:one@pve"),
            acl("/vms:PVEVMAdmin:vms@pve"),
            acl("/vms:PVEVMAdmin:space@pve"),
            acl("/storage/local-lvm:PVEDatastoreUser:space@pve"),
        ],
        ..fast()
    })
    .await;
    for vmid in ["600", "601"] {
        let exit = api
            .task(
                "POST",
                "/nodes/pve1/qemu",
                &[("vmid", vmid), ("scsi0", "local-lvm:1")],
            )
            .await;
        assert_eq!(exit, "OK");
    }
    let reassign = [
        ("disk", "scsi0"),
        ("target-vmid", "601"),
        ("target-disk", "scsi1"),
    ];
    let path = "/nodes/pve1/qemu/600/move_disk";
    let message =
        |body: &serde_json::Value| body["message"].as_str().unwrap_or_default().to_string();

    let (status, body) = api.as_token(ONE_VM).call("POST", path, &reassign).await;
    assert_eq!(
        (status, message(&body)),
        (
            403,
            "Permission check failed (/vms/601, VM.Config.Disk)\n".into()
        )
    );
    let (status, body) = api.as_token(ALL_VMS).call("POST", path, &reassign).await;
    assert_eq!(
        (status, message(&body)),
        (
            403,
            "Permission check failed (/storage/local-lvm, Datastore.AllocateSpace)\n".into()
        )
    );
    let (status, body) = api.as_token(WITH_SPACE).call("POST", path, &reassign).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.wait(body["data"].as_str().unwrap()).await, "OK");
}
