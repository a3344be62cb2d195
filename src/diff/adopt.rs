//! Taking over an unmanaged VM (`adopt: true`): the marker and tag are written and the
//! declared settings applied in place. An adoption never replaces: what would need a rebuild
//! (a VM that is not the template the spec says, a template whose options differ from its
//! recipe) is a conflict.

use crate::graph::{DesiredVm, Recipe};
use crate::plan::{Action, AdoptBlocker, Change, Conflict, Operation, PowerState, Problem, Reason};
use crate::qemu_config::{is_disk_option, same_value};
use crate::state::ActualVm;

/// The update that adopts `occupant` as `vm`, or the conflict that names what stops it.
pub(super) fn adopt(vm: &DesiredVm, occupant: &ActualVm) -> Result<Change, Box<Conflict>> {
    let mut blockers = Vec::new();
    let mut operations = vec![Operation::Adopt {
        vmid: occupant.vmid,
        name: occupant.name.clone(),
    }];
    match &vm.recipe {
        Recipe::Build(build) => {
            if !occupant.template {
                blockers.push(AdoptBlocker::NotATemplate);
            }
            for (option, want) in &build.create_params {
                if is_disk_option(option) {
                    continue;
                }
                let seen = occupant.config.get(option.as_str());
                let same = same_value(option, seen.map(String::as_str), want);
                match option.as_str() {
                    // What adoption writes (the marker beside the operator's Notes).
                    "description" | "tags" => {
                        operations.extend(super::vm::set_option(option, seen, want));
                    }
                    "name" => {}
                    _ if !same => blockers.push(AdoptBlocker::OptionDiffers {
                        option: option.clone(),
                        seen: seen.cloned(),
                        recipe: want.clone(),
                    }),
                    _ => {}
                }
            }
        }
        Recipe::Clone(_) => {
            if occupant.template {
                blockers.push(AdoptBlocker::IsATemplate);
            }
            operations.extend(vm.settings.iter().filter_map(|(option, want)| {
                super::vm::set_option(option, occupant.config.get(option), want)
            }));
            if vm.running && !occupant.running {
                operations.push(Operation::Power {
                    old: Some(PowerState::Stopped),
                    new: PowerState::Running,
                });
            }
        }
    }
    if occupant.node != vm.node {
        blockers.push(AdoptBlocker::OtherNode {
            node: occupant.node.clone(),
            wanted: vm.node.clone(),
        });
    }
    if !blockers.is_empty() {
        return Err(Box::new(Conflict {
            key: vm.key.clone(),
            problem: Problem::NotAdoptable {
                vmid: occupant.vmid,
                blockers,
            },
        }));
    }
    if let Some(pool) = &vm.pool
        && occupant.pool.as_ref() != Some(pool)
    {
        operations.push(Operation::Pool {
            old: occupant.pool.clone(),
            new: pool.clone(),
        });
    }
    Ok(Change {
        key: vm.key.clone(),
        action: Action::Update,
        vmid: Some(vm.vmid),
        node: occupant.node.clone(),
        operations,
        reasons: vec![Reason::Adopted],
        depends_on: Vec::new(),
        rollout: None,
    })
}
