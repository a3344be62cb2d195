//! What a plan lists for a VM it makes (created, or made again by a replacement): the build's
//! options, disk and conversion for a template; the clone request, settings, disk, seed and
//! start for a clone; then the pool and the write-only options.

use crate::graph::{DesiredVm, Recipe};
use crate::plan::{Operation, PowerState};

/// The operations that make `vm`, in the order the executor carries them out.
pub(super) fn creation_operations(vm: &DesiredVm) -> Vec<Operation> {
    let set = |name: &str, value: &str| Operation::SetOption {
        name: name.to_string(),
        old: None,
        new: value.to_string(),
    };
    let mut operations = Vec::new();
    match &vm.recipe {
        Recipe::Build(build) => {
            operations.extend(build.create_params.iter().map(|(k, v)| set(k, v)));
            operations.push(Operation::GrowDisk {
                slot: build.resize.0.clone(),
                old: None,
                new: build.resize.1.clone(),
            });
            operations.push(Operation::ConvertToTemplate);
        }
        Recipe::Clone(clone) => {
            operations.push(Operation::CloneFrom {
                template: clone.template.clone(),
                template_vmid: clone.template_vmid,
                full: clone.full,
            });
            if let Some(target) = &clone.migrate_to {
                operations.push(Operation::Migrate {
                    from: clone.template_node.clone(),
                    storage: clone.template_storage.clone(),
                    to: target.clone(),
                });
            }
            operations.extend(vm.settings.iter().map(|(k, v)| set(k, v)));
            if let Some((slot, size)) = &vm.disk_grow {
                operations.push(Operation::GrowDisk {
                    slot: slot.clone(),
                    old: None,
                    new: size.to_proxmox(),
                });
            }
            if let Some(plan) = vm.seed.as_deref().filter(|plan| !plan.is_snippets()) {
                operations.push(Operation::AttachSeed {
                    old: None,
                    new: None,
                    storage: plan.storage.clone(),
                });
            }
            if vm.running {
                operations.push(Operation::Power {
                    old: None,
                    new: PowerState::Running,
                });
            }
        }
    }
    if let Some(pool) = &vm.pool {
        operations.push(Operation::Pool {
            old: None,
            new: pool.clone(),
        });
    }
    operations.extend(vm.secrets.iter().map(|(option, _)| Operation::SetSecret {
        name: option.clone(),
    }));
    operations
}
