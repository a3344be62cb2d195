//! The observed state of a cluster, as the differ sees it: VMs with their configuration and
//! ownership, image volumes with their notes. Filled by `observe`, built by hand in tests.

use std::collections::BTreeMap;

use crate::ownership::Marker;

/// A VM as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualVm {
    /// VM id.
    pub vmid: u32,
    /// Node it is on.
    pub node: String,
    /// Name.
    pub name: Option<String>,
    /// Running.
    pub running: bool,
    /// Is a template.
    pub template: bool,
    /// Config lock, if any.
    pub lock: Option<String>,
    /// Configuration (pending values applied), without `digest`; empty when not fetched.
    pub config: BTreeMap<String, String>,
    /// Config digest; empty when not fetched (a running VM read through `/pending`, which
    /// carries none).
    pub digest: String,
    /// A fingerprint of what was observed (options, pending values applied, and which are
    /// pending), whichever endpoint they came from: saved plans compare it.
    pub fingerprint: String,
    /// Options with a change pending until the next boot.
    pub pending: Vec<String>,
    /// Ownership marker from the description, when it is proxfleet's and matches the vmid.
    pub marker: Option<Marker>,
    /// Resource pool it belongs to.
    pub pool: Option<String>,
}

/// An LXC container as observed: proxfleet never manages one, but it holds its vmid and its
/// name, so a VM wanting either is in conflict with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualContainer {
    /// Container id (from the same range as vmids).
    pub vmid: u32,
    /// Node it is on.
    pub node: String,
    /// Host name, as `/cluster/resources` lists it.
    pub name: Option<String>,
}

/// A volume as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualVolume {
    /// Node it was listed on.
    pub node: String,
    /// Storage.
    pub storage: String,
    /// Volume id.
    pub volid: String,
    /// Size in bytes.
    pub size: Option<u64>,
}

/// The observed cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActualState {
    /// VMs by vmid (every VM in the cluster; configs fetched only where needed).
    pub vms: BTreeMap<u32, ActualVm>,
    /// Volumes by (node, volid) that proxfleet looked at.
    pub volumes: BTreeMap<(String, String), ActualVolume>,
    /// LXC containers by vmid.
    pub containers: BTreeMap<u32, ActualContainer>,
}

impl ActualVm {
    /// Whether a running task is still making this VM: Proxmox claims the vmid with a
    /// `create` or `clone` lock and writes the configuration (name, tags, our marker) only
    /// when the task ends, so until then it looks like a stranger.
    pub fn being_made(&self) -> bool {
        lock_means_being_made(self.lock.as_deref())
    }
}

/// Whether a VM with this lock is still being made by a running task (see
/// [`ActualVm::being_made`]); for the preflight, which sees only the cluster listing.
pub fn lock_means_being_made(lock: Option<&str>) -> bool {
    matches!(lock, Some("create" | "clone"))
}

impl ActualVm {
    /// Whether this VM is a linked clone of template `template_vmid`: one of its disks is a
    /// volume on that template's base disk (`local-lvm:base-9000-disk-0/vm-201-disk-0`).
    pub fn reads_base_of(&self, template_vmid: u32) -> bool {
        let base = format!("base-{template_vmid}-disk-");
        self.config
            .values()
            .any(|value| value.contains(&base) && value.contains('/'))
    }
}

impl ActualState {
    /// VMs owned by `project`.
    pub fn owned_vms<'a>(&'a self, project: &'a str) -> impl Iterator<Item = &'a ActualVm> + 'a {
        self.vms
            .values()
            .filter(move |vm| vm.marker.as_ref().is_some_and(|m| m.project == project))
    }
}
