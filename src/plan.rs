//! A plan: the ordered list of changes that takes the cluster from what was observed to what the
//! spec asks for, as plain data (serialisable, rendered elsewhere, executed by `apply`). Each
//! change is a list of typed operations (set an option, start, move to a pool, grow a disk, …)
//! and typed reasons: the differ chooses them, the executor matches on them, and only
//! `render` puts them into words.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ownership::{ResourceKey, ResourceKind};

/// Version of the plan's JSON form (`plan --json` and saved plan files); bumped on any
/// incompatible change. Added optional fields do not bump it. Version 2: typed operations
/// and reasons in place of named fields and sentences.
pub const PLAN_FORMAT_VERSION: u32 = 2;

/// What happens to a resource.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Make it.
    Create,
    /// Change it in place.
    Update,
    /// Delete it and make it again.
    Replace,
    /// Delete it.
    Delete,
}

impl Action {
    /// Whether the action deletes something that exists.
    pub fn is_destructive(self) -> bool {
        matches!(self, Action::Replace | Action::Delete)
    }
}

/// One operation of a change: what the executor does, as data. The differ chooses them, the
/// executor matches on them, and `render` alone turns them into words (a plan's text and
/// JSON show each as a name and its old and new values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// A configuration option gets a value (`memory`, `ipconfig0`, `ide2`).
    SetOption {
        /// Proxmox option name.
        name: String,
        /// Observed value; `None` when unset or the VM is new.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<String>,
        /// Desired value.
        new: String,
    },
    /// A configuration option is removed (`cicustom` of an earlier `delivery: snippets`).
    DeleteOption {
        /// Proxmox option name.
        name: String,
        /// Observed value.
        old: String,
    },
    /// A write-only option (`cipassword`) sent when the VM is made; its value is never shown.
    SetSecret {
        /// Proxmox option name.
        name: String,
    },
    /// The VM is started or stopped.
    Power {
        /// Observed state; `None` when the VM is new.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<PowerState>,
        /// Desired state.
        new: PowerState,
    },
    /// The VM joins a resource pool (made when missing); pools are not config options.
    Pool {
        /// Observed pool; `None` when in none or the VM is new.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<String>,
        /// Desired pool.
        new: String,
    },
    /// A disk grows to a size (never shrinks).
    GrowDisk {
        /// Disk option (`scsi0`).
        slot: String,
        /// Observed size; `None` when unknown or the VM is new.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<String>,
        /// Desired size, as Proxmox writes it (`20G`).
        new: String,
    },
    /// A snippet `cicustom` already names is missing on the node (removed by hand): it is
    /// written again.
    WriteSnippet {
        /// The snippet's volume id.
        volid: String,
    },
    /// A cloud-init seed ISO (`delivery: iso`) is made for the VM's MAC, uploaded and attached
    /// as `ide2`; the seed it replaces is deleted.
    AttachSeed {
        /// Observed `ide2`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<String>,
        /// Desired `ide2`: the seed's volume id, or, for a VM not made yet, nothing (the name
        /// depends on the MAC Proxmox gives it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new: Option<String>,
        /// Storage the seed goes to.
        storage: String,
    },
    /// Proxmox's cloud-init drive goes back in place of a seed ISO of an earlier
    /// `delivery: iso` (now `delivery: snippets`), and the ISO is deleted.
    RestoreCloudInitDrive {
        /// Observed `ide2` (the seed ISO).
        old: String,
        /// Desired `ide2` (Proxmox's cloud-init drive).
        new: String,
    },
    /// A running VM is rebooted (`--allow-reboot`) so that options waiting for its next boot
    /// take effect.
    Reboot {
        /// The options that wait.
        options: Vec<String>,
    },
    /// An unmanaged VM is taken over (`adopt: true`): its marker and tag are written.
    Adopt {
        /// The VM.
        vmid: u32,
        /// Its name when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A replacement moves the resource to another vmid.
    Vmid {
        /// Observed vmid.
        old: u32,
        /// Desired vmid.
        new: u32,
    },
    /// An image is downloaded (or fetched and uploaded) into a volume named by its content.
    FetchImage {
        /// The volume it becomes.
        volid: String,
        /// Where it comes from.
        url: String,
        /// `algorithm:hex`.
        checksum: String,
    },
    /// A volume is deleted (an image file, or an earlier copy of one).
    DeleteVolume {
        /// The volume.
        volid: String,
    },
    /// A new VM is cloned from a template.
    CloneFrom {
        /// The template.
        template: ResourceKey,
        /// Its vmid.
        template_vmid: u32,
        /// Full clone (else linked).
        full: bool,
    },
    /// A new clone is made on its template's node (node-local disks) and then migrated.
    Migrate {
        /// Where it is made.
        from: String,
        /// The template's node-local storage.
        storage: String,
        /// Where it goes.
        to: String,
    },
    /// A built VM is converted to a template.
    ConvertToTemplate,
    /// A replaced clone is found healthy before its rollout goes on: the QEMU guest agent
    /// answers `ping` and, when the clone has a static address, reports it.
    CheckHealth {
        /// The address the agent must report.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        /// How long the check waits, in seconds.
        timeout_secs: u64,
    },
    /// A data disk is allocated, empty (`scsi1: local-lvm:20`).
    AddDisk {
        /// Disk option (`scsi1`).
        slot: String,
        /// Storage.
        storage: String,
        /// Size, as Proxmox writes it (`20G`).
        size: String,
        /// Pass discard.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        discard: bool,
    },
    /// A data disk the spec no longer declares stays on the VM, no longer managed: never
    /// deleted (only the marker stops naming it).
    ReleaseDisk {
        /// Disk option.
        slot: String,
        /// Its volume.
        volid: String,
    },
    /// Before a replacement deletes the VM, a `keep: true` data disk moves to a parking VM
    /// this change makes (Proxmox's disk reassign), so the volume outlives the VM.
    ParkDisk {
        /// Disk option.
        slot: String,
        /// Its volume.
        volid: String,
    },
    /// A kept data disk moves from a parking VM onto the VM at its slot.
    ReattachDisk {
        /// Disk option.
        slot: String,
        /// The volume as it is named now (on the parking VM, or, when this change parks it,
        /// on the VM it comes from).
        volid: String,
        /// The parking VM that holds it; `None`: the one this change makes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parking: Option<ParkingVm>,
    },
    /// A parking VM is deleted: empty once its disks are reattached, or, when its clone is
    /// deleted, with the volumes it still holds.
    DeleteParking {
        /// The parking VM; `None`: the one this change makes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parking: Option<ParkingVm>,
        /// Volumes deleted with it (only when its clone is deleted).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        volumes: Vec<String>,
    },
}

/// A parking VM that holds a clone's kept data disks (see `ownership::Parking`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ParkingVm {
    /// Its vmid.
    pub vmid: u32,
    /// Its node.
    pub node: String,
}

/// A VM's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
}

impl Operation {
    /// The configuration option this operation writes in an update's one config request, with
    /// the value the plan observed and the one it wants (`None`: removed). Operations carried
    /// out otherwise (power, pools, disks, seeds, snippets, reboots) write none.
    pub fn config_write(&self) -> Option<ConfigWrite<'_>> {
        match self {
            Operation::SetOption { name, old, new } => Some(ConfigWrite {
                name,
                old: old.as_deref(),
                new: Some(new),
            }),
            Operation::DeleteOption { name, old } => Some(ConfigWrite {
                name,
                old: Some(old),
                new: None,
            }),
            Operation::RestoreCloudInitDrive { old, new } => Some(ConfigWrite {
                name: "ide2",
                old: Some(old),
                new: Some(new),
            }),
            _ => None,
        }
    }

    /// Whether on a running VM this operation takes effect only at its next boot (the
    /// options are Proxmox's to decide, see `qemu_config::applies_at_once`).
    pub fn waits_for_boot(&self) -> Option<&str> {
        let write = self.config_write()?;
        (!crate::qemu_config::applies_at_once(write.name)).then_some(write.name)
    }

    /// Whether this operation starts the VM (a start or a reboot).
    pub fn starts_the_vm(&self) -> bool {
        matches!(
            self,
            Operation::Power {
                new: PowerState::Running,
                ..
            } | Operation::Reboot { .. }
        )
    }
}

/// One option an update writes (see `Operation::config_write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigWrite<'a> {
    /// Proxmox option name.
    pub name: &'a str,
    /// The value observed when planning.
    pub old: Option<&'a str>,
    /// The value wanted; `None` when the option is removed.
    pub new: Option<&'a str>,
}

/// Why a resource is replaced, or taken over, rather than updated in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// The spec gives another vmid.
    VmidChanged {
        /// Observed.
        old: u32,
        /// Desired.
        new: u32,
    },
    /// The spec gives another node.
    NodeChanged {
        /// Observed.
        old: String,
        /// Desired.
        new: String,
    },
    /// A template's build did not finish: the VM is not a template yet.
    BuildUnfinished,
    /// A template's build fingerprint changed.
    BuildChanged {
        /// Observed (`None`: the marker has none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<String>,
        /// Desired.
        new: String,
    },
    /// A template's options were edited outside proxfleet since its build.
    EditedOutside {
        /// The options and how they differ.
        edits: Vec<HandEdit>,
    },
    /// A property Proxmox fixes when it creates a disk differs from the recipe's.
    CreateOnly {
        /// Disk option (`efidisk0`).
        disk: String,
        /// The property (`efitype`).
        property: String,
        /// Observed (`None`: unset).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<String>,
        /// Desired (`None`: unset).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new: Option<String>,
    },
    /// A clone was converted to a template.
    ConvertedToTemplate,
    /// An older template build no clone uses any more, after this plan.
    BuildSuperseded {
        /// Its number.
        build: u32,
        /// The template's current build.
        current: u32,
    },
    /// The clone's template has a newer build (`on_template_change: replace`).
    TemplateBuildChanged {
        /// The build it was made from (`None`: not recorded, or gone).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<u32>,
        /// The build it is made from now.
        new: u32,
    },
    /// `--replace` names it.
    ReplaceRequested,
    /// An image's checksum changed: a new file replaces the earlier copy.
    ImageChecksumChanged,
    /// `adopt: true` takes the VM over.
    Adopted,
    /// Options set before wait for a reboot (`--allow-reboot`).
    PendingFromBefore,
}

/// An option of a template that differs from what its build set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HandEdit {
    /// Proxmox option name.
    pub option: String,
    /// Observed value (`None`: unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<String>,
    /// What the build set.
    pub built: String,
}

/// A change to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    /// The resource.
    pub key: ResourceKey,
    /// What happens.
    pub action: Action,
    /// VM id (VMs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    /// Node the change runs on.
    pub node: String,
    /// What is done, in order.
    pub operations: Vec<Operation>,
    /// Why (replacements, adoptions, reboots of what waited from before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// Changes in this plan that must finish first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ResourceKey>,
    /// The clone's place in a rollout to a new template build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStep>,
}

/// A replaced clone's place in its rollout: batches run one after the other, each after the
/// one before it was found healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RolloutStep {
    /// The clone group (or the clone, alone).
    pub group: String,
    /// Its batch, from 1.
    pub batch: usize,
    /// How many batches the group's rollout has in this plan.
    pub batches: usize,
}

/// An older build of a template that the plan keeps, because clones made from it remain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeptBuild {
    /// The build's key (`template.NAME` or `template.NAME#N`).
    pub key: ResourceKey,
    /// Its number.
    pub build: u32,
    /// Its vmid.
    pub vmid: u32,
    /// The clones that remain on it.
    pub clones: Vec<NamedVm>,
    /// How many of them are linked clones (reading from its disks).
    pub linked: usize,
}

/// Something in the cluster that stops the plan from being applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Conflict {
    /// The resource that cannot be reconciled.
    pub key: ResourceKey,
    /// What is in the way.
    #[serde(flatten)]
    pub problem: Problem,
}

/// What stops a resource from being reconciled (`render` says it, with what the user can do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The desired vmid is held by a VM that is not this resource.
    VmidTaken {
        /// The vmid.
        vmid: u32,
        /// The VM that holds it.
        holder: NamedVm,
        /// Its node.
        node: String,
        /// Whose it is.
        owner: Holder,
        /// A VM, or a container (which proxfleet never makes).
        #[serde(default, skip_serializing_if = "Guest::is_vm")]
        guest: Guest,
    },
    /// A VM outside the project has the name a new VM would get.
    NameTaken {
        /// That VM.
        holder: NamedVm,
        /// Its node.
        node: String,
        /// A VM, or a container (which proxfleet never makes).
        #[serde(default, skip_serializing_if = "Guest::is_vm")]
        guest: Guest,
    },
    /// A VM `adopt: true` names cannot be taken over as it is.
    NotAdoptable {
        /// The VM.
        vmid: u32,
        /// What would need a rebuild.
        blockers: Vec<AdoptBlocker>,
    },
    /// The custom cloud-init data cannot be made into snippets.
    SnippetsUnbuildable {
        /// Why.
        error: String,
    },
    /// The custom cloud-init data cannot be made into a seed ISO.
    SeedUnbuildable {
        /// Why.
        error: String,
    },
    /// A template to delete or rebuild still has linked clones reading from its base disks.
    LinkedClonesRead {
        /// Deleted (else rebuilt).
        deleted: bool,
        /// The clones.
        clones: Vec<NamedVm>,
    },
    /// The markers of several VMs claim this resource: none of them is changed or deleted.
    ClaimedTwice {
        /// The VMs whose markers claim it, in vmid order.
        vms: Vec<NamedVm>,
    },
    /// A template's new build has no free vmid in its range: every one holds a build clones
    /// still use, or another VM.
    BuildRangeFull {
        /// The range's first vmid.
        first: u32,
        /// Its last.
        last: u32,
    },
    /// A data disk is larger than the spec says: disks never shrink.
    DataDiskShrinks {
        /// Disk option.
        slot: String,
        /// Observed size (`30G`).
        observed: String,
        /// Declared size.
        declared: String,
    },
    /// A parked data disk's slot is taken on the clone by another disk.
    ParkedSlotTaken {
        /// Disk option.
        slot: String,
        /// The parked volume.
        volid: String,
        /// The parking VM.
        parking: u32,
    },
    /// A kept change needs a resource the plan's scope leaves out, which does not exist yet
    /// or is being rebuilt.
    DependencyLeftOut {
        /// The resource left out.
        dependency: ResourceKey,
        /// What the full plan does to it (create or replace).
        action: Action,
    },
}

/// What kind of guest stands in the way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Guest {
    /// A QEMU VM.
    #[default]
    Vm,
    /// An LXC container.
    Container,
}

impl Guest {
    /// Whether it is a VM (the usual case, left out of a plan's JSON).
    pub fn is_vm(&self) -> bool {
        *self == Guest::Vm
    }
}

/// A VM named in a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamedVm {
    /// VM id.
    pub vmid: u32,
    /// Name, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Whose a VM in the way is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "owner", rename_all = "snake_case")]
pub enum Holder {
    /// Another proxfleet project's.
    OtherProject {
        /// The project.
        project: String,
    },
    /// This project's, as another resource.
    OtherResource {
        /// The resource.
        key: ResourceKey,
    },
    /// Nobody's that proxfleet knows: made by hand.
    Unmanaged,
}

/// Why a VM cannot be adopted as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "blocker", rename_all = "snake_case")]
pub enum AdoptBlocker {
    /// The spec wants a template.
    NotATemplate,
    /// The spec wants a clone.
    IsATemplate,
    /// A template's option differs from its recipe.
    OptionDiffers {
        /// Option.
        option: String,
        /// Observed (`None`: unset).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seen: Option<String>,
        /// What the recipe says.
        recipe: String,
    },
    /// It is on another node than the spec says.
    OtherNode {
        /// Where it is.
        node: String,
        /// Where the spec wants it.
        wanted: String,
    },
}

/// An ordered plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// JSON format version.
    pub format_version: u32,
    /// Project.
    pub project: String,
    /// Changes, in an order that respects `depends_on`.
    pub changes: Vec<Change>,
    /// Resources already as desired.
    pub unchanged: usize,
    /// Blocking conflicts; a plan with any cannot be applied.
    pub conflicts: Vec<Conflict>,
    /// What the plan was limited to, when it is partial (`--target`, `--only`, `--skip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targeting: Option<Targeting>,
    /// Running VMs with managed options that take effect only at their next boot: changed by
    /// this plan, or pending from before. With `reboot`, apply reboots them (`--allow-reboot`);
    /// otherwise they stay pending and the plan says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingReboot>,
    /// Older template builds kept because clones made from them remain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_builds: Vec<KeptBuild>,
}

/// A running VM whose managed options wait for its next boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PendingReboot {
    /// The VM.
    pub key: ResourceKey,
    /// VM id.
    pub vmid: u32,
    /// The options.
    pub options: Vec<String>,
    /// Whether apply reboots it (`--allow-reboot`).
    pub reboot: bool,
}

/// Which way a target reaches through the dependency graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// A target brings in what it depends on (plan, apply): a clone needs its template.
    Dependencies,
    /// A target brings in what depends on it (destroy): a template takes its clones with it.
    Dependants,
}

/// What a partial plan was limited to, so it can say so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Targeting {
    /// `--target` addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<ResourceKey>,
    /// `--only` kinds (empty: every kind).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<ResourceKind>,
    /// `--skip` kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<ResourceKind>,
    /// What a target brings in with it.
    pub reach: Reach,
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// (to add, to change, to destroy), counting a replacement as one add and one destroy.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut add = 0;
        let mut change = 0;
        let mut destroy = 0;
        for c in &self.changes {
            match c.action {
                Action::Create => add += 1,
                Action::Update => change += 1,
                Action::Replace => {
                    add += 1;
                    destroy += 1;
                }
                Action::Delete => destroy += 1,
            }
        }
        (add, change, destroy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each operation.
    fn every_operation() -> Vec<Operation> {
        let some = |text: &str| Some(text.to_string());
        vec![
            Operation::SetOption {
                name: "memory".into(),
                old: some("2048"),
                new: "4096".into(),
            },
            Operation::DeleteOption {
                name: "cicustom".into(),
                old: "user=local:snippets/u.yaml".into(),
            },
            Operation::SetSecret {
                name: "cipassword".into(),
            },
            Operation::Power {
                old: Some(PowerState::Stopped),
                new: PowerState::Running,
            },
            Operation::Pool {
                old: None,
                new: "web".into(),
            },
            Operation::GrowDisk {
                slot: "scsi0".into(),
                old: some("20G"),
                new: "30G".into(),
            },
            Operation::WriteSnippet {
                volid: "local:snippets/u.yaml".into(),
            },
            Operation::AttachSeed {
                old: None,
                new: None,
                storage: "local".into(),
            },
            Operation::RestoreCloudInitDrive {
                old: "local:iso/seed.iso,media=cdrom".into(),
                new: "local-lvm:cloudinit".into(),
            },
            Operation::Reboot {
                options: vec!["memory".into()],
            },
            Operation::Adopt {
                vmid: 201,
                name: some("old-web"),
            },
            Operation::Vmid { old: 299, new: 201 },
            Operation::FetchImage {
                volid: "local:import/a.qcow2".into(),
                url: "https://example.com/a.qcow2".into(),
                checksum: "sha256:00".into(),
            },
            Operation::DeleteVolume {
                volid: "local:import/b.qcow2".into(),
            },
            Operation::CloneFrom {
                template: "template.base".parse().expect("an address"),
                template_vmid: 9000,
                full: true,
            },
            Operation::Migrate {
                from: "pve1".into(),
                storage: "local-lvm".into(),
                to: "pve2".into(),
            },
            Operation::ConvertToTemplate,
            Operation::AddDisk {
                slot: "scsi1".into(),
                storage: "local-lvm".into(),
                size: "20G".into(),
                discard: true,
            },
            Operation::ReleaseDisk {
                slot: "scsi2".into(),
                volid: "local-lvm:vm-201-disk-2".into(),
            },
            Operation::ParkDisk {
                slot: "scsi1".into(),
                volid: "local-lvm:vm-201-disk-1".into(),
            },
            Operation::ReattachDisk {
                slot: "scsi1".into(),
                volid: "local-lvm:vm-105-disk-0".into(),
                parking: Some(ParkingVm {
                    vmid: 105,
                    node: "pve1".into(),
                }),
            },
            Operation::DeleteParking {
                parking: None,
                volumes: Vec::new(),
            },
        ]
    }

    /// Every operation, reason and problem reads back as it was written: saved plans are
    /// compared with the plan made again, so the JSON form must lose nothing.
    #[test]
    fn a_plan_survives_its_json_form() {
        let key: ResourceKey = "clone.web-1".parse().expect("an address");
        let some = |text: &str| Some(text.to_string());
        let operations = every_operation();
        let reasons = vec![
            Reason::VmidChanged { old: 299, new: 201 },
            Reason::EditedOutside {
                edits: vec![HandEdit {
                    option: "cores".into(),
                    seen: None,
                    built: "2".into(),
                }],
            },
            Reason::CreateOnly {
                disk: "efidisk0".into(),
                property: "efitype".into(),
                old: some("2m"),
                new: some("4m"),
            },
            Reason::ReplaceRequested,
        ];
        let conflicts = vec![
            Conflict {
                key: key.clone(),
                problem: Problem::VmidTaken {
                    vmid: 201,
                    holder: NamedVm {
                        vmid: 201,
                        name: some("old-web"),
                    },
                    node: "pve1".into(),
                    owner: Holder::Unmanaged,
                    guest: Guest::Vm,
                },
            },
            Conflict {
                key: key.clone(),
                problem: Problem::NotAdoptable {
                    vmid: 201,
                    blockers: vec![
                        AdoptBlocker::IsATemplate,
                        AdoptBlocker::OtherNode {
                            node: "pve2".into(),
                            wanted: "pve1".into(),
                        },
                    ],
                },
            },
        ];
        let plan = Plan {
            format_version: PLAN_FORMAT_VERSION,
            project: "default".into(),
            changes: vec![Change {
                key,
                action: Action::Replace,
                vmid: Some(201),
                node: "pve1".into(),
                operations,
                reasons,
                depends_on: Vec::new(),
                rollout: None,
            }],
            unchanged: 0,
            conflicts,
            targeting: None,
            pending: Vec::new(),
            kept_builds: Vec::new(),
        };
        let text = serde_json::to_string_pretty(&plan).expect("serialisable");
        assert!(text.contains("\"op\": \"set_option\""), "{text}");
        assert!(text.contains("\"problem\": \"vmid_taken\""), "{text}");
        let back: Plan = serde_json::from_str(&text).expect("readable");
        assert_eq!(back, plan);
    }
}
