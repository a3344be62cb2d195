//! The differ on hand-built observed states: only declared options are managed, values are
//! compared semantically, ownership is proved by the marker, and the result is deterministic.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proxfleet::diff::diff;
use proxfleet::graph::{DesiredGraph, Resource};
use proxfleet::ownership::Marker;
use proxfleet::plan::{Action, Operation, Reason};
use proxfleet::qemu_config::same_value;
use proxfleet::state::{ActualState, ActualVm, ActualVolume};

use crate::common::*;

fn quickstart_graph() -> DesiredGraph {
    let loaded = proxfleet::spec::load(&example("quickstart.yaml")).unwrap();
    DesiredGraph::build(&loaded.spec)
}

/// The state apply leaves behind, written from the desired graph: every managed option set,
/// templates converted, clones running.
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
                // A template holds what its build set.
                if let proxfleet::graph::Recipe::Build(build) = &vm.recipe {
                    config.extend(build.create_params.iter().cloned());
                }
                let description = match &vm.recipe {
                    proxfleet::graph::Recipe::Build(build) => build
                        .create_params
                        .iter()
                        .find(|(k, _)| k == "description")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default(),
                    proxfleet::graph::Recipe::Clone(_) => {
                        vm.settings.get("description").cloned().unwrap_or_default()
                    }
                };
                config.insert("description".into(), description.clone());
                // Options Proxmox adds or the template passes on: never drift.
                config.insert(
                    "smbios1".into(),
                    "uuid=0b6c4c33-5e8a-4d7a-9b0c-0a1b2c3d4e5f".into(),
                );
                config.insert(
                    "net0".into(),
                    "virtio=BC:24:11:00:00:01,bridge=vmbr0".into(),
                );
                config.insert("cores".into(), "2".into());
                state.vms.insert(
                    vm.vmid,
                    ActualVm {
                        vmid: vm.vmid,
                        node: vm.node.clone(),
                        name: Some(vm.name.clone()),
                        running: vm.running,
                        template: matches!(vm.recipe, proxfleet::graph::Recipe::Build(_)),
                        lock: None,
                        config,
                        digest: "0".repeat(40),
                        fingerprint: "0".repeat(40),
                        pending: Vec::new(),
                        marker: Marker::find(&description),
                        pool: None,
                    },
                );
            }
        }
    }
    state
}

#[test]
fn a_converged_cluster_plans_nothing() {
    let desired = quickstart_graph();
    let plan = diff(&desired, &converged(&desired));
    assert!(plan.is_empty(), "{plan:#?}");
    assert_eq!(plan.unchanged, 5);
}

#[test]
fn options_the_spec_does_not_declare_never_drift() {
    let desired = quickstart_graph();
    let mut actual = converged(&desired);
    let web1 = actual.vms.get_mut(&201).unwrap();
    // Changed by hand, but no layer of the spec (clone, group, template, defaults) says
    // anything about them.
    web1.config.insert("balloon".into(), "0".into());
    web1.config.insert("onboot".into(), "1".into());
    web1.config.insert("nameserver".into(), "192.0.2.53".into());
    web1.config.insert(
        "net0".into(),
        "virtio=BC:24:11:99:99:99,bridge=vmbr0".into(),
    );
    assert!(diff(&desired, &actual).is_empty());
}

#[test]
fn an_option_the_template_declares_is_managed_on_its_clones_too() {
    let desired = quickstart_graph();
    let mut actual = converged(&desired);
    // The quickstart declares memory on the template only: the clones' effective memory.
    actual
        .vms
        .get_mut(&201)
        .unwrap()
        .config
        .insert("memory".into(), "8192".into());
    let plan = diff(&desired, &actual);
    assert_eq!(plan.changes.len(), 1, "{plan:#?}");
    assert_eq!(
        plan.changes[0].operations,
        vec![Operation::SetOption {
            name: "memory".into(),
            old: Some("8192".into()),
            new: "2048".into(),
        }]
    );
}

#[test]
fn a_declared_option_changed_by_hand_is_one_update() {
    let desired = quickstart_graph();
    let mut actual = converged(&desired);
    actual
        .vms
        .get_mut(&202)
        .unwrap()
        .config
        .insert("ipconfig0".into(), "ip=192.0.2.99/24,gw=192.0.2.1".into());
    let plan = diff(&desired, &actual);
    assert_eq!(plan.changes.len(), 1);
    let change = &plan.changes[0];
    assert_eq!(
        (change.key.to_string().as_str(), change.action),
        ("clone.web-2", Action::Update)
    );
    assert_eq!(
        change.operations,
        vec![Operation::SetOption {
            name: "ipconfig0".into(),
            old: Some("ip=192.0.2.99/24,gw=192.0.2.1".into()),
            new: "gw=192.0.2.1,ip=192.0.2.12/24".into(),
        }]
    );
}

#[test]
fn values_are_compared_semantically() {
    assert!(same_value("tags", Some("Web;proxfleet"), "proxfleet;web"));
    assert!(same_value("tags", Some("proxfleet,web"), "proxfleet;web"));
    assert!(!same_value("tags", Some("proxfleet"), "proxfleet;web"));
    assert!(same_value(
        "ipconfig0",
        Some("ip=192.0.2.12/24,gw=192.0.2.1"),
        "gw=192.0.2.1,ip=192.0.2.12/24"
    ));
    let keys = "ssh-ed25519%20AAAAC3Nza%20a%40b%0Assh-rsa%20AAAAB3Nza%20c%40d";
    let reordered = "ssh-rsa%20AAAAB3Nza%20c%40d%0Assh-ed25519%20AAAAC3Nza%20a%40b%0A";
    assert!(same_value("sshkeys", Some(keys), reordered));
    assert!(!same_value("memory", None, "2048"));
}

#[test]
fn a_hand_made_copy_of_a_template_is_not_owned() {
    let desired = quickstart_graph();
    let mut actual = converged(&desired);
    // Someone cloned the template by hand: the copy carries the template's description.
    let mut copy = actual.vms[&9000].clone();
    copy.vmid = 555;
    copy.template = false;
    copy.marker = None; // what observe concludes: the marker names vmid 9000, not 555
    actual.vms.insert(555, copy);
    let plan = diff(&desired, &actual);
    assert!(
        plan.is_empty(),
        "the copy is neither deleted nor adopted: {plan:#?}"
    );
}

#[test]
fn a_half_built_template_is_replaced() {
    let desired = quickstart_graph();
    let mut actual = converged(&desired);
    actual.vms.get_mut(&9000).unwrap().template = false;
    let plan = diff(&desired, &actual);
    let change = plan
        .changes
        .iter()
        .find(|c| c.key.to_string() == "template.debian-12-base")
        .unwrap();
    assert_eq!(change.action, Action::Replace);
    assert!(
        change.reasons.contains(&Reason::BuildUnfinished),
        "{:?}",
        change.reasons
    );
}

#[test]
fn another_projects_vms_are_left_alone() {
    let desired = quickstart_graph();
    let mut actual = converged(&desired);
    let mut theirs = actual.vms[&201].clone();
    theirs.vmid = 700;
    theirs.name = Some("their-web".into());
    theirs.marker = Some(Marker {
        project: "other".into(),
        key: "clone.their-web".parse().unwrap(),
        vmid: Some(700),
        build: None,
        from: None,
    });
    actual.vms.insert(700, theirs);
    assert!(diff(&desired, &actual).is_empty());
    assert!(
        proxfleet::diff::destroy(&desired, &actual, false)
            .changes
            .iter()
            .all(|c| c.vmid != Some(700))
    );
}

proptest! {
    #[test]
    fn the_differ_is_deterministic_and_deletes_only_what_it_owns(
        drop_mask in proptest::collection::vec(any::<bool>(), 5),
        memory in proptest::option::of(16u32..65536),
    ) {
        let desired = quickstart_graph();
        let mut actual = converged(&desired);
        let vmids: Vec<u32> = actual.vms.keys().copied().collect();
        for (vmid, drop) in vmids.iter().zip(&drop_mask) {
            if *drop {
                actual.vms.remove(vmid);
            }
        }
        if let Some(memory) = memory
            && let Some(vm) = actual.vms.get_mut(&201)
        {
            vm.config.insert("memory".into(), memory.to_string());
        }
        let first = diff(&desired, &actual);
        let second = diff(&desired, &actual);
        prop_assert_eq!(&first, &second);
        prop_assert!(first.conflicts.is_empty());
        for change in &first.changes {
            prop_assert!(change.action != Action::Delete);
        }
    }
}
