//! The differ as a table, in rust-analyzer's `check(…)` style: a clone's spec fragment, an
//! edit of the cluster that the quickstart's apply leaves behind, and the plan's operations
//! in a compact text. One line per case says what it is about.

use std::collections::BTreeMap;
use std::path::Path;

use crate::graph::{DesiredGraph, Recipe, Resource};
use crate::ownership::Marker;
use crate::plan::{Operation, Plan, PowerState};
use crate::state::{ActualState, ActualVm, ActualVolume};

use super::{PlanOptions, diff_with};

const QUICKSTART: &str = include_str!("../../examples/quickstart.yaml");
const WEB_1: &str = "  web-1:\n    vmid: 201\n    template: debian-12-base\n";

/// The quickstart with `fragment` added to clone web-1's entry.
fn desired(fragment: &str) -> DesiredGraph {
    let text = QUICKSTART.replace(WEB_1, &format!("{WEB_1}{fragment}"));
    let loaded = crate::spec::load_str(&text, Path::new("fleet.yaml"))
        .unwrap_or_else(|err| panic!("the case's spec does not load: {err}"));
    DesiredGraph::build(&loaded.spec)
}

/// What apply leaves behind for `desired`: every managed option set, disks at their size,
/// templates converted, clones running, pools joined.
fn converged(desired: &DesiredGraph) -> ActualState {
    let mut state = ActualState::default();
    for resource in desired.in_order() {
        match resource {
            Resource::Image(image) => {
                state.volumes.insert(
                    (image.node.clone(), image.volid.clone()),
                    ActualVolume {
                        node: image.node.clone(),
                        storage: image.storage.clone(),
                        volid: image.volid.clone(),
                        size: Some(1 << 30),
                    },
                );
            }
            Resource::Vm(vm) => {
                let mut config: BTreeMap<String, String> = vm.settings.clone();
                if let Recipe::Build(build) = &vm.recipe {
                    config.extend(build.create_params.iter().cloned());
                }
                if let Some((slot, size)) = &vm.disk_grow {
                    let disk =
                        format!("local-lvm:vm-{}-disk-0,size={}", vm.vmid, size.to_proxmox());
                    config.insert(slot.clone(), disk);
                }
                config.insert(
                    "net0".into(),
                    "virtio=BC:24:11:00:00:01,bridge=vmbr0".into(),
                );
                let description = config.get("description").cloned().unwrap_or_default();
                state.vms.insert(
                    vm.vmid,
                    ActualVm {
                        vmid: vm.vmid,
                        node: vm.node.clone(),
                        name: Some(vm.name.clone()),
                        running: vm.running,
                        template: matches!(vm.recipe, Recipe::Build(_)),
                        lock: None,
                        config,
                        digest: "0".repeat(40),
                        fingerprint: "0".repeat(40),
                        pending: Vec::new(),
                        marker: Marker::find(&description),
                        pool: vm.pool.clone(),
                    },
                );
            }
        }
    }
    state
}

fn power(state: Option<PowerState>) -> &'static str {
    match state {
        None => "-",
        Some(PowerState::Running) => "running",
        Some(PowerState::Stopped) => "stopped",
    }
}

/// An operation in a line, values shortened to what a case needs to see.
fn compact(operation: &Operation) -> String {
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    match operation {
        // A value on several lines (a description) on one, its line breaks as `|`.
        Operation::SetOption { name, old, new } => {
            format!("set {name} {} -> {}", or_none(old), new.replace('\n', "|"))
        }
        Operation::DeleteOption { name, old } => format!("delete {name} {old}"),
        Operation::SetSecret { name } => format!("secret {name}"),
        Operation::Power { old, new } => format!("power {} -> {}", power(*old), power(Some(*new))),
        Operation::Pool { old, new } => format!("pool {} -> {new}", or_none(old)),
        Operation::GrowDisk { slot, old, new } => format!("grow {slot} {} -> {new}", or_none(old)),
        Operation::WriteSnippet { volid } => format!("snippet {volid}"),
        Operation::AttachSeed { old, new, .. } => {
            format!("seed {} -> {}", or_none(old), or_none(new))
        }
        Operation::RestoreCloudInitDrive { old, new } => format!("drive {old} -> {new}"),
        Operation::Reboot { options } => format!("reboot for {}", options.join(",")),
        Operation::Adopt { vmid, .. } => format!("adopt {vmid}"),
        Operation::Vmid { old, new } => format!("vmid {old} -> {new}"),
        Operation::FetchImage { volid, .. } => format!("fetch {volid}"),
        Operation::DeleteVolume { volid } => format!("delete volume {volid}"),
        Operation::CloneFrom { template, full, .. } => format!("clone {template} full={full}"),
        Operation::Migrate { from, to, .. } => format!("migrate {from} -> {to}"),
        Operation::ConvertToTemplate => "template".into(),
        Operation::CheckHealth { address, .. } => format!("health {}", or_none(address)),
        Operation::AddDisk { slot, size, .. } => format!("add {slot} {size}"),
        Operation::ReleaseDisk { slot, .. } => format!("release {slot}"),
        Operation::ParkDisk { slot, .. } => format!("park {slot}"),
        Operation::ReattachDisk { slot, parking, .. } => format!(
            "reattach {slot} from {}",
            parking
                .as_ref()
                .map_or("new".into(), |p| p.vmid.to_string())
        ),
        Operation::DeleteParking { parking, .. } => format!(
            "delete parking {}",
            parking
                .as_ref()
                .map_or("new".into(), |p| p.vmid.to_string())
        ),
    }
}

/// The plan in lines: each change's action and key, its reasons (as data), its operations;
/// each conflict's key.
fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    for change in &plan.changes {
        out.push_str(&format!("{:?} {}\n", change.action, change.key));
        for reason in &change.reasons {
            out.push_str(&format!("  because {reason:?}\n"));
        }
        // What a new VM is made with is the spec's whole recipe: counted, not listed.
        let mut made_with = 0;
        for operation in &change.operations {
            match operation {
                Operation::SetOption { old: None, .. } => made_with += 1,
                operation => out.push_str(&format!("  {}\n", compact(operation))),
            }
        }
        if made_with > 0 {
            out.push_str(&format!("  set {made_with} options\n"));
        }
    }
    for conflict in &plan.conflicts {
        out.push_str(&format!("conflict {}\n", conflict.key));
    }
    for pending in &plan.pending {
        out.push_str(&format!(
            "pending {} {}\n",
            pending.key,
            pending.options.join(",")
        ));
    }
    out
}

/// Diff web-1 with `fragment` against the converged cluster as `edit` leaves it.
fn check_with(
    fragment: &str,
    options: &PlanOptions,
    edit: impl FnOnce(&mut ActualState),
    expect: &str,
) {
    let desired = desired(fragment);
    let mut actual = converged(&desired);
    edit(&mut actual);
    let got = plan_text(&diff_with(&desired, &actual, options));
    let expect = expect
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .fold(String::new(), |mut out, line| {
            let first_word = line.split(' ').next().unwrap_or_default();
            let top = [
                "Create", "Update", "Replace", "Delete", "conflict", "pending",
            ];
            if !top.contains(&first_word) {
                out.push_str("  ");
            }
            out.push_str(line);
            out.push('\n');
            out
        });
    assert_eq!(
        got, expect,
        "\n--- got ---\n{got}--- expected ---\n{expect}"
    );
}

fn check(fragment: &str, edit: impl FnOnce(&mut ActualState), expect: &str) {
    check_with(fragment, &PlanOptions::default(), edit, expect);
}

fn web_1(actual: &mut ActualState) -> &mut ActualVm {
    actual.vms.get_mut(&201).expect("web-1 is observed")
}

#[test]
fn a_converged_cluster_plans_nothing() {
    check("", |_| {}, "");
    check(
        "    memory: 4GiB\n    pool: web\n    disk_size: 30G\n",
        |_| {},
        "",
    );
}

#[test]
fn a_declared_option_changed_by_hand_is_set_back() {
    check(
        "",
        |actual| {
            web_1(actual).config.insert("memory".into(), "8192".into());
        },
        "Update clone.web-1
         set memory 8192 -> 2048
         pending clone.web-1 memory",
    );
}

#[test]
fn options_no_layer_declares_never_drift() {
    check(
        "",
        |actual| {
            let config = &mut web_1(actual).config;
            config.insert("balloon".into(), "0".into());
            config.insert(
                "net0".into(),
                "virtio=BC:24:11:99:99:99,bridge=vmbr0".into(),
            );
        },
        "",
    );
}

#[test]
fn values_that_mean_the_same_are_the_same() {
    check(
        "    tags: [web, prod]\n",
        |actual| {
            let config = &mut web_1(actual).config;
            let tags = config.get("tags").cloned().unwrap_or_default();
            config.insert("tags".into(), tags.replace(';', ",").to_uppercase());
            let ipconfig = config.get("ipconfig0").cloned().unwrap_or_default();
            let reordered: Vec<&str> = ipconfig.split(',').rev().collect();
            config.insert("ipconfig0".into(), reordered.join(","));
        },
        "",
    );
}

#[test]
fn a_stopped_clone_is_started() {
    check(
        "",
        |actual| web_1(actual).running = false,
        "Update clone.web-1
         power stopped -> running",
    );
}

#[test]
fn a_pool_move_is_an_operation_beside_the_options() {
    check(
        "    pool: db\n    memory: 4GiB\n",
        |actual| {
            let vm = web_1(actual);
            vm.pool = Some("web".into());
            vm.config.insert("memory".into(), "2048".into());
        },
        "Update clone.web-1
         set memory 2048 -> 4096
         pool web -> db
         pending clone.web-1 memory",
    );
}

#[test]
fn a_disk_grows_and_never_shrinks() {
    check(
        "    disk_size: 30G\n",
        |actual| {
            let disk = "local-lvm:vm-201-disk-0,size=20G".to_string();
            web_1(actual).config.insert("scsi0".into(), disk);
        },
        "Update clone.web-1
         grow scsi0 20G -> 30G",
    );
    check(
        "    disk_size: 30G\n",
        |actual| {
            let disk = "local-lvm:vm-201-disk-0,size=40G".to_string();
            web_1(actual).config.insert("scsi0".into(), disk);
        },
        "",
    );
}

#[test]
fn a_missing_clone_is_created() {
    check(
        "    pool: web\n",
        |actual| {
            actual.vms.remove(&201);
        },
        "Create clone.web-1
         clone template.debian-12-base full=true
         power - -> running
         pool - -> web
         set 10 options",
    );
}

#[test]
fn a_clone_on_another_node_is_replaced_and_says_why() {
    check(
        "",
        |actual| web_1(actual).node = "pve2".into(),
        r#"Replace clone.web-1
           because NodeChanged { old: "pve2", new: "pve1" }
           clone template.debian-12-base full=true
           power - -> running
           set 10 options"#,
    );
}

#[test]
fn a_clone_at_another_vmid_is_made_again_at_the_spec_s() {
    check(
        "",
        |actual| {
            let mut moved = actual.vms.remove(&201).expect("web-1");
            moved.vmid = 299;
            actual.vms.insert(299, moved);
        },
        "Replace clone.web-1
         because VmidChanged { old: 299, new: 201 }
         vmid 299 -> 201
         clone template.debian-12-base full=true
         power - -> running
         set 10 options",
    );
}

#[test]
fn a_clone_converted_to_a_template_is_replaced() {
    check(
        "",
        |actual| web_1(actual).template = true,
        "Replace clone.web-1
         because ConvertedToTemplate
         clone template.debian-12-base full=true
         power - -> running
         set 10 options",
    );
}

#[test]
fn a_replacement_on_request_says_so() {
    let options = PlanOptions {
        replace: ["clone.web-1".parse().expect("an address")].into(),
        ..PlanOptions::default()
    };
    check_with(
        "",
        &options,
        |_| {},
        "Replace clone.web-1
         because ReplaceRequested
         clone template.debian-12-base full=true
         power - -> running
         set 10 options",
    );
}

#[test]
fn a_stranger_on_the_vmid_is_a_conflict_unless_adopted() {
    let stranger = |actual: &mut ActualState| {
        let vm = web_1(actual);
        vm.marker = None;
        vm.name = Some("old-web".into());
        vm.config
            .insert("description".into(), "made by hand".into());
        vm.config.insert("memory".into(), "1024".into());
    };
    check("", stranger, "conflict clone.web-1");
    check(
        "    adopt: true\n",
        stranger,
        "Update clone.web-1
         because Adopted
         adopt 201
         set description made by hand -> made by hand||managed-by: proxfleet project=default key=clone.web-1 vmid=201
         set memory 1024 -> 2048",
    );
}

#[test]
fn a_change_that_waits_for_a_boot_is_pending_or_rebooted() {
    let edit = |actual: &mut ActualState| {
        web_1(actual).config.insert("memory".into(), "8192".into());
    };
    check(
        "",
        edit,
        "Update clone.web-1
         set memory 8192 -> 2048
         pending clone.web-1 memory",
    );
    let options = PlanOptions {
        allow_reboot: true,
        ..PlanOptions::default()
    };
    check_with(
        "",
        &options,
        edit,
        "Update clone.web-1
         set memory 8192 -> 2048
         reboot for memory
         pending clone.web-1 memory",
    );
}

#[test]
fn a_template_edited_by_hand_is_rebuilt() {
    check(
        "",
        |actual| {
            let template = actual.vms.get_mut(&9000).expect("the template");
            template.config.insert("cores".into(), "4".into());
        },
        r#"Replace template.debian-12-base
           because EditedOutside { edits: [HandEdit { option: "cores", seen: Some("4"), built: "2" }] }
           grow scsi0 - -> 20G
           template
           set 22 options"#,
    );
}

#[test]
fn a_vm_the_spec_no_longer_has_is_deleted_after_stopping() {
    check(
        "",
        |actual| {
            let mut orphan = actual.vms[&202].clone();
            orphan.vmid = 299;
            let description = orphan.config["description"]
                .replace("web-2", "old")
                .replace("202", "299");
            orphan.marker = Marker::find(&description);
            actual.vms.insert(299, orphan);
        },
        "Delete clone.old
         power running -> stopped",
    );
}

/// Data disks (`data_disks.rs`): a kept disk on web-1, and what an interrupted replacement
/// leaves: a parking VM (vmid 150) holding the disk, or empty.
mod data_disks {
    use super::*;
    use crate::ownership::{ResourceKey, ResourceKind};

    const KEPT: &str =
        "    data_disks:\n      - slot: scsi1\n        size: 2G\n        keep: true\n";

    /// web-1's data disk at its size, as apply leaves it.
    fn with_disk(actual: &mut ActualState) {
        web_1(actual)
            .config
            .insert("scsi1".into(), "local-lvm:vm-201-disk-1,size=2G".into());
    }

    /// A parking VM of `project` for web-1, holding `disks`.
    fn parking(actual: &mut ActualState, project: &str, disks: &[(&str, &str)]) {
        let mut vm = web_1(actual).clone();
        vm.vmid = 150;
        vm.name = Some("parking-web-1".into());
        vm.running = false;
        vm.marker = None;
        vm.pool = None;
        vm.config = BTreeMap::from([(
            "description".to_string(),
            format!("managed-by: proxfleet project={project} parking=clone.web-1 vmid=150"),
        )]);
        for (slot, value) in disks {
            vm.config.insert(slot.to_string(), value.to_string());
        }
        actual.vms.insert(150, vm);
    }

    #[test]
    fn a_converged_clone_with_its_data_disk_plans_nothing() {
        check(KEPT, with_disk, "");
    }

    #[test]
    fn a_replacement_parks_the_kept_disk_and_reattaches_it() {
        check_with(
            KEPT,
            &PlanOptions {
                replace: [ResourceKey::new(ResourceKind::Clone, "web-1")].into(),
                ..PlanOptions::default()
            },
            with_disk,
            "Replace clone.web-1
               because ReplaceRequested
               park scsi1
               clone template.debian-12-base full=true
               reattach scsi1 from new
               delete parking new
               power - -> running
               set 10 options",
        );
    }

    #[test]
    fn a_parked_disk_goes_back_to_its_clone_and_the_parking_vm_is_deleted() {
        check(
            KEPT,
            |actual| {
                parking(
                    actual,
                    "default",
                    &[("scsi1", "local-lvm:vm-150-disk-0,size=2G")],
                )
            },
            "Update clone.web-1
               reattach scsi1 from 150
               delete parking 150",
        );
    }

    #[test]
    fn a_clone_gone_with_its_disk_parked_is_made_without_a_fresh_disk_in_that_slot() {
        check(
            KEPT,
            |actual| {
                parking(
                    actual,
                    "default",
                    &[("scsi1", "local-lvm:vm-150-disk-0,size=2G")],
                );
                actual.vms.remove(&201);
            },
            "Create clone.web-1
               clone template.debian-12-base full=true
               reattach scsi1 from 150
               delete parking 150
               power - -> running
               set 10 options",
        );
    }

    #[test]
    fn an_empty_parking_vm_is_deleted_and_another_projects_is_left_alone() {
        check(
            KEPT,
            |actual| {
                with_disk(actual);
                parking(actual, "default", &[]);
            },
            "Update clone.web-1
               delete parking 150",
        );
        check(
            KEPT,
            |actual| {
                with_disk(actual);
                parking(
                    actual,
                    "other",
                    &[("scsi1", "local-lvm:vm-150-disk-0,size=2G")],
                );
            },
            "",
        );
    }

    #[test]
    fn a_parked_disk_whose_slot_is_taken_is_a_conflict() {
        check(
            KEPT,
            |actual| {
                with_disk(actual);
                parking(
                    actual,
                    "default",
                    &[("scsi1", "local-lvm:vm-150-disk-0,size=2G")],
                );
            },
            "conflict clone.web-1",
        );
    }
}
