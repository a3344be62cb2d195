//! Claims: which VM a resource key belongs to. A marker claims a key for the VM it is written
//! on; a key claimed by two VMs or more (a description copied by hand, a backup restored to
//! another vmid and its marker edited) belongs to none of them. It is a conflict for `plan`
//! and `destroy` alike, and neither VM is compared, changed or deleted: proxfleet cannot tell
//! which one is the resource, and guessing could delete the operator's VM.

use std::collections::BTreeMap;

use crate::ownership::ResourceKey;
use crate::plan::{Conflict, NamedVm, Problem};
use crate::state::{ActualState, ActualVm};

/// The project's VMs by the key their markers claim.
pub(super) struct Claims<'a> {
    /// Keys claimed by exactly one VM: that VM is the resource.
    pub(super) owned: BTreeMap<&'a ResourceKey, &'a ActualVm>,
    /// Keys claimed by more than one VM, with every claimant in vmid order.
    pub(super) contested: BTreeMap<&'a ResourceKey, Vec<&'a ActualVm>>,
}

impl<'a> Claims<'a> {
    /// Sort the claims of `project`'s VMs in `actual`.
    pub(super) fn of(actual: &'a ActualState, project: &'a str) -> Claims<'a> {
        let mut by_key: BTreeMap<&ResourceKey, Vec<&ActualVm>> = BTreeMap::new();
        for vm in actual.owned_vms(project) {
            if let Some(marker) = &vm.marker {
                by_key.entry(&marker.key).or_default().push(vm);
            }
        }
        let mut owned = BTreeMap::new();
        let mut contested = BTreeMap::new();
        for (key, vms) in by_key {
            match vms.as_slice() {
                [only] => {
                    owned.insert(key, *only);
                }
                _ => {
                    contested.insert(key, vms);
                }
            }
        }
        Claims { owned, contested }
    }

    /// Whether more than one VM claims `key`.
    pub(super) fn is_contested(&self, key: &ResourceKey) -> bool {
        self.contested.contains_key(key)
    }

    /// One conflict per contested key, naming its claimants.
    pub(super) fn conflicts(&self) -> Vec<Conflict> {
        self.contested
            .iter()
            .map(|(key, vms)| Conflict {
                key: (*key).clone(),
                problem: Problem::ClaimedTwice {
                    vms: vms
                        .iter()
                        .map(|vm| NamedVm {
                            vmid: vm.vmid,
                            name: vm.name.clone(),
                        })
                        .collect(),
                },
            })
            .collect()
    }
}
