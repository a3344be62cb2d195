//! Drift: the quickstart applied, then the cluster changed by hand in one way, then `plan`. Each
//! scenario's plan is an insta snapshot (`snapshots/drift__*.snap`): what proxfleet reports,
//! and what it deliberately does not (settings the spec does not declare are never drift).
//! Every scenario then applies and must converge, except where the plan is blocked by a
//! conflict, which must stay blocked and change nothing.

use std::time::Duration;

use proxfleet::sim::{SimConfig, SimHandle};

use super::common::{apply, example, plan, snapshot_settings};

type Drift = fn(&SimHandle);

const CLONE: u32 = 201;
const TEMPLATE: u32 = 9000;

fn set(sim: &SimHandle, vmid: u32, key: &str, value: Option<&str>) {
    sim.set_vm_config(vmid, key, value).expect("hand edit");
}

fn config(sim: &SimHandle, vmid: u32, key: &str) -> String {
    sim.vms()
        .into_iter()
        .find(|vm| vm.vmid == vmid)
        .and_then(|vm| vm.config.get(key).cloned())
        .unwrap_or_default()
}

const SCENARIOS: &[(&str, Drift)] = &[
    ("memory_changed_by_hand", |sim| {
        set(sim, CLONE, "memory", Some("4096"))
    }),
    ("cores_changed_on_the_template", |sim| {
        set(sim, TEMPLATE, "cores", Some("8"))
    }),
    ("clone_deleted_by_hand", |sim| {
        sim.remove_vm(CLONE).expect("remove")
    }),
    ("template_converted_back_to_a_vm", |sim| {
        set(sim, TEMPLATE, "template", None)
    }),
    ("clone_converted_to_a_template", |sim| {
        set(sim, CLONE, "template", Some("1"))
    }),
    ("tags_edited_by_hand", |sim| {
        set(sim, CLONE, "tags", Some("proxfleet;hand-made"))
    }),
    ("proxfleet_tag_removed", |sim| set(sim, CLONE, "tags", None)),
    ("ip_changed_by_hand", |sim| {
        set(
            sim,
            CLONE,
            "ipconfig0",
            Some("gw=192.0.2.1,ip=192.0.2.99/24"),
        )
    }),
    ("extra_disk_attached_by_hand", |sim| {
        set(sim, CLONE, "scsi1", Some("local-lvm:vm-201-disk-9,size=8G"))
    }),
    ("vm_locked_by_a_backup", |sim| {
        sim.set_lock(CLONE, Some("backup")).expect("lock")
    }),
    ("clone_stopped_by_hand", |sim| {
        sim.set_running(CLONE, false).expect("stop")
    }),
    ("clone_renamed_by_hand", |sim| {
        set(sim, CLONE, "name", Some("renamed"))
    }),
    ("description_text_edited_marker_kept", |sim| {
        let description = config(sim, CLONE, "description");
        set(
            sim,
            CLONE,
            "description",
            Some(&format!("edited by hand\n{description}")),
        );
    }),
    ("ownership_marker_removed", |sim| {
        set(sim, CLONE, "description", Some("mine now"))
    }),
    ("ssh_keys_replaced_by_hand", |sim| {
        set(
            sim,
            TEMPLATE,
            "sshkeys",
            Some(
                "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIHandMadeKeyHandMadeKeyHandMadeKeyHand%20x",
            ),
        )
    }),
    ("undeclared_nameserver_added", |sim| {
        set(sim, CLONE, "nameserver", Some("192.0.2.53"))
    }),
    ("undeclared_onboot_set", |sim| {
        set(sim, CLONE, "onboot", Some("1"))
    }),
    ("mac_address_changed_by_hand", |sim| {
        let net0 = config(sim, CLONE, "net0");
        let changed = net0
            .split(',')
            .map(|part| match part.split_once('=') {
                Some(("virtio", _)) => "virtio=BC:24:11:AA:BB:CC".to_string(),
                _ => part.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        set(sim, CLONE, "net0", Some(&changed));
    }),
    ("bridge_changed_on_a_clone", |sim| {
        let net0 = config(sim, CLONE, "net0").replace("bridge=vmbr0", "bridge=vmbr1");
        set(sim, CLONE, "net0", Some(&net0));
    }),
    ("disk_shrunk_in_config", |sim| {
        let scsi0 = config(sim, CLONE, "scsi0").replace("size=20G", "size=10G");
        set(sim, CLONE, "scsi0", Some(&scsi0));
    }),
    ("image_file_deleted_by_hand", |sim| {
        let volid = sim
            .volumes()
            .into_iter()
            .find(|v| v.content == "import")
            .map(|v| v.volid)
            .expect("the image");
        sim.remove_volume(&volid).expect("remove");
    }),
    ("unmanaged_vm_in_the_way", |sim| {
        sim.remove_vm(203).expect("remove");
        sim.insert_vm("pve1", 203, &[("name", "someone-elses")])
            .expect("insert");
    }),
    ("unmanaged_vm_takes_a_wanted_name", |sim| {
        sim.remove_vm(203).expect("remove");
        sim.insert_vm("pve1", 777, &[("name", "web-3")])
            .expect("insert");
    }),
    ("clone_migrated_to_another_node", |sim| {
        sim.move_vm(CLONE, "pve2").expect("move")
    }),
    ("ciuser_changed_by_hand", |sim| {
        set(sim, TEMPLATE, "ciuser", Some("root"))
    }),
    ("tpm_version_changed_on_the_template", |sim| {
        let tpm = config(sim, TEMPLATE, "tpmstate0").replace("version=v2.0", "version=v1.2");
        set(sim, TEMPLATE, "tpmstate0", Some(&tpm));
    }),
];

/// Proxmox generates MACs at random: keep snapshots stable.
fn scrub_macs(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("BC:24:11:") {
        out.push_str(&rest[..at]);
        out.push_str("BC:24:11:<MAC>");
        rest = &rest[(at + 17).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn drift_scenarios_are_planned_as_snapshotted_and_converge() {
    let spec = example("quickstart.yaml");
    let mut failures = Vec::new();
    for (name, drift) in SCENARIOS {
        let sim = SimHandle::start(SimConfig {
            nodes: 2,
            task_duration: Some(Duration::from_millis(2)),
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let conn = proxfleet::commands::Connection::to_sim(&sim).expect("client");
        assert!(
            apply(&conn, &spec).await.result.is_ok(),
            "{name}: first apply"
        );
        drift(&sim);
        let planned = plan(&conn, &spec).await;
        let mut shown = scrub_macs(&planned.out);
        if let Err(err) = &planned.result {
            shown.push_str(&format!("\n[error] {err}\n"));
        }
        snapshot_settings().bind(|| insta::assert_snapshot!(format!("drift__{name}"), shown));
        let before = sim.vms();
        let run = apply(&conn, &spec).await;
        if planned.result.is_err() {
            // Blocked: nothing may have changed.
            if run.result.is_ok() || sim.vms() != before {
                failures.push(format!("{name}: a blocked plan was applied"));
            }
            continue;
        }
        let after = plan(&conn, &spec).await;
        if run.result.is_err() || !after.out.starts_with("No changes.") {
            failures.push(format!(
                "{name}: did not converge\n{}\n{}\n{}",
                run.out, run.err, after.out
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Notes added by hand in the web UI to a managed VM are the operator's: not drift, kept by
/// an apply that updates the VM for another reason, and a second apply writes nothing.
#[tokio::test]
async fn notes_added_by_hand_survive_apply_and_a_second_apply_is_a_no_op() {
    let (sim, conn) = super::common::sim().await;
    let spec = example("quickstart.yaml");
    assert!(apply(&conn, &spec).await.result.is_ok());
    let marker = config(&sim, CLONE, "description");
    let notes = format!("Owner: ops team\nSee ticket 4711 before rebooting.\n\n{marker}");
    set(&sim, CLONE, "description", Some(&notes));

    let planned = plan(&conn, &spec).await;
    assert!(planned.out.starts_with("No changes."), "{}", planned.out);

    // Drift of a declared option: the update writes memory, and leaves the notes alone.
    set(&sim, CLONE, "memory", Some("4096"));
    sim.clear_requests();
    let applied = apply(&conn, &spec).await;
    assert!(applied.result.is_ok(), "{}\n{}", applied.out, applied.err);
    assert_eq!(config(&sim, CLONE, "memory"), "2048");
    assert_eq!(config(&sim, CLONE, "description").trim_end(), notes);
    assert!(!super::common::write_requests(&sim).is_empty());

    sim.clear_requests();
    let again = apply(&conn, &spec).await;
    assert!(again.result.is_ok(), "{}", again.out);
    assert_eq!(super::common::write_requests(&sim), Vec::<String>::new());
    assert_eq!(config(&sim, CLONE, "description").trim_end(), notes);
}
