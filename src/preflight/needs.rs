//! What a spec needs from a cluster, derived without I/O: the nodes it names, the content types
//! each storage must hold, the disks new VMs would allocate, the bridges and VLANs, the PCI
//! mappings, the privileges per ACL path, the vmids, and the Proxmox VE releases its features
//! need. Each need remembers who needs it (resource keys, in spec order), so a failed check can
//! say what it blocks.

use indexmap::{IndexMap, IndexSet};

use crate::graph::{DesiredGraph, Recipe, Resource};
use crate::ownership::{ResourceKey, ResourceKind};
use crate::spec::{CloneVm, ImageMode, Network, PciSource, Spec, Template};

/// The resource keys that need something, in spec order.
pub type Users = IndexSet<String>;

/// Size Proxmox allocates for an EFI vars disk, a TPM state disk or a cloud-init drive (at most
/// 4 MiB each), counted in full.
pub const SMALL_DISK_BYTES: u64 = 4 << 20;

/// A Proxmox VE release a feature of the spec needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionGate {
    /// What the feature is.
    pub feature: &'static str,
    /// First release with it, `(major, minor)`.
    pub since: (u32, u32),
    /// What to do on an older cluster.
    pub advice: &'static str,
    /// Resources that use it.
    pub users: Users,
}

/// A disk a VM allocates when it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskNeed {
    /// The VM's vmid (its disks count only while the VM does not exist).
    pub vmid: u32,
    /// The VM's key.
    pub user: String,
    /// Node the disk is allocated on.
    pub node: String,
    /// Storage.
    pub storage: String,
    /// Bytes, at most (thin storages allocate less).
    pub bytes: u64,
}

/// A bridge some NICs of the spec attach to on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeNeed {
    /// Who attaches to it.
    pub users: Users,
    /// VLAN tags used on it, and by whom.
    pub vlans: IndexMap<u16, Users>,
}

/// One privilege on one ACL path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivilegeNeed {
    /// ACL path, e.g. `/vms/201`.
    pub path: String,
    /// Privilege, e.g. `VM.Allocate`.
    pub privilege: &'static str,
    /// Who needs it.
    pub users: Users,
    /// What for (actions and option names).
    pub what: IndexSet<String>,
    /// Other grants that do instead, each a set of (path, privilege) that must all be held.
    pub instead: Vec<Vec<(String, &'static str)>>,
}

/// Everything a spec needs from a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// The spec's project.
    pub project: String,
    /// Releases the spec's features need.
    pub gates: Vec<VersionGate>,
    /// Nodes named by the spec.
    pub nodes: IndexMap<String, Users>,
    /// Per (node, storage): the content types it must hold, and who needs each.
    pub storages: IndexMap<(String, String), IndexMap<&'static str, Users>>,
    /// Disks the spec's VMs allocate when they are made.
    pub disks: Vec<DiskNeed>,
    /// Per (node, bridge): who attaches to it and with which VLAN tags.
    pub bridges: IndexMap<(String, String), BridgeNeed>,
    /// Per PCI mapping id: the nodes it must have a device on, and who needs each.
    pub pci_mappings: IndexMap<String, IndexMap<String, Users>>,
    /// Raw host PCI addresses, which API tokens cannot pass through: (user, address).
    pub raw_pci: Vec<(String, String)>,
    /// Privileges per (path, privilege).
    pub privileges: IndexMap<(String, &'static str), PrivilegeNeed>,
    /// Desired vmids and the key of the resource that wants each.
    pub vmids: IndexMap<u32, String>,
}

impl Needs {
    /// What `spec` needs; `desired` is its graph, for the options each VM is created or
    /// configured with.
    pub fn of(spec: &Spec, desired: &DesiredGraph) -> Needs {
        let mut needs = Needs {
            project: spec.project.clone(),
            ..Needs::default()
        };
        for image in &spec.images {
            let user = key(ResourceKind::Image, &image.name);
            for node in &image.nodes {
                needs.node(node, &user);
                needs.content(node, &image.storage, "import", &user);
                let storage_path = format!("/storage/{}", image.storage);
                let what = match image.mode {
                    ImageMode::Download => "download-url",
                    ImageMode::Upload => "upload",
                };
                needs.privilege(&storage_path, "Datastore.AllocateTemplate", &user, what);
                needs.storage_audit(&image.storage, &user, "list image files");
                if image.mode == ImageMode::Download {
                    needs.privilege_or(
                        &format!("/nodes/{node}"),
                        "Sys.AccessNetwork",
                        &user,
                        "download-url on the node",
                        vec![vec![
                            ("/".to_string(), "Sys.Audit"),
                            ("/".to_string(), "Sys.Modify"),
                        ]],
                    );
                }
            }
        }
        if !spec.images.is_empty() {
            needs.gate(
                "disk images (qcow2, raw, vmdk) as `import` content, by download-url or upload",
                (8, 4),
                "upgrade the cluster: PVE 8.3 takes only OVA files as `import` content and older releases none at all (without it, an image reaches a node only by copying it there and importing it as root@pam, which no API token can do)",
                spec.images
                    .iter()
                    .map(|i| key(ResourceKind::Image, &i.name)),
            );
        }
        let ciupgrade_users: Vec<String> = spec
            .templates
            .iter()
            .filter(|t| t.cloud_init.as_ref().is_some_and(|c| c.upgrade.is_some()))
            .map(|t| key(ResourceKind::Template, &t.name))
            .chain(
                spec.clones
                    .iter()
                    .filter(|c| c.cloud_init.as_ref().is_some_and(|c| c.upgrade.is_some()))
                    .map(|c| key(ResourceKind::Clone, &c.name)),
            )
            .collect();
        if !ciupgrade_users.is_empty() {
            needs.gate(
                "the `ciupgrade` cloud-init option (`cloud_init.upgrade`)",
                (8, 0),
                "upgrade the cluster, or leave `upgrade` out of the spec",
                ciupgrade_users,
            );
        }
        let mapping_users: Vec<String> = spec
            .templates
            .iter()
            .filter(|t| {
                t.pci
                    .iter()
                    .any(|d| matches!(d.source, PciSource::Mapping(_)))
            })
            .map(|t| key(ResourceKind::Template, &t.name))
            .collect();
        if !mapping_users.is_empty() {
            needs.gate(
                "PCI resource mappings",
                (8, 0),
                "upgrade the cluster; older releases pass devices through only by raw address, which API tokens cannot use",
                mapping_users,
            );
        }
        needs.data_disk_gate(spec);
        for template in &spec.templates {
            needs.template(spec, template, desired);
        }
        for clone in &spec.clones {
            if let Some(template) = spec.templates.iter().find(|t| t.name == clone.template) {
                needs.clone_vm(clone, template, desired, spec.ssh.snippets_dir.as_deref());
            }
        }
        // `apply` and `destroy` hold the project's lease, a pool they create, renew and delete:
        // `Pool.Allocate` on its path, which pve-manager's `API2/Pool.pm` checks for all three.
        needs.privilege(
            &format!("/pool/{}", crate::lease::pool_id(&spec.project)),
            "Pool.Allocate",
            "the run's lease",
            "create, renew and delete it (apply, destroy)",
        );
        needs
    }

    /// The ACL paths whose privileges the checks read.
    pub fn privilege_paths(&self) -> IndexSet<String> {
        let mut paths = IndexSet::new();
        for need in self.privileges.values() {
            paths.insert(need.path.clone());
            for alternative in &need.instead {
                paths.extend(alternative.iter().map(|(path, _)| path.clone()));
            }
        }
        paths
    }

    fn template(&mut self, spec: &Spec, t: &Template, desired: &DesiredGraph) {
        let user = key(ResourceKind::Template, &t.name);
        let vmid = t.vmid.get();
        self.vmids.insert(vmid, user.clone());
        self.node(&t.node, &user);
        for disk in template_disks(t) {
            self.content(&t.node, &disk.storage, "images", &user);
            self.privilege(
                &format!("/storage/{}", disk.storage),
                "Datastore.AllocateSpace",
                &user,
                "allocate disks",
            );
            self.disk(vmid, &user, &t.node, &disk.storage, disk.bytes);
        }
        if let Some(image) = spec.images.iter().find(|i| i.name == t.image) {
            self.storage_audit(&image.storage, &user, "import-from");
        }
        let vm_path = format!("/vms/{vmid}");
        self.privilege(&vm_path, "VM.Allocate", &user, "create");
        self.privilege(&vm_path, "VM.Allocate", &user, "convert to template");
        self.privilege(&vm_path, "VM.Audit", &user, "read the VM");
        self.privilege(&vm_path, "VM.Config.Disk", &user, "resize");
        let resource = desired.get(&ResourceKey::new(ResourceKind::Template, &t.name));
        if let Some(Resource::Vm(vm)) = resource
            && let Recipe::Build(build) = &vm.recipe
        {
            let options = build
                .create_params
                .iter()
                .map(|(option, value)| (option.as_str(), value.as_str()))
                .chain(vm.secrets.iter().map(|(option, _)| (option.as_str(), "")));
            for (option, value) in options {
                for privilege in option_privileges(option, value) {
                    self.privilege(&vm_path, privilege, &user, option);
                }
            }
        }
        self.networks(&t.node, &t.networks, &user);
        for device in &t.pci {
            match &device.source {
                PciSource::Mapping(id) => self.mapping(id, &t.node, &user),
                PciSource::Host(address) => self.raw_pci.push((user.clone(), address.clone())),
            }
        }
    }

    fn clone_vm(
        &mut self,
        c: &CloneVm,
        t: &Template,
        desired: &DesiredGraph,
        snippets_dir: Option<&str>,
    ) {
        let user = key(ResourceKind::Clone, &c.name);
        let vmid = c.vmid.get();
        self.vmids.insert(vmid, user.clone());
        self.node(&c.node, &user);
        self.privilege(&format!("/vms/{}", t.vmid), "VM.Clone", &user, "clone it");
        let vm_path = format!("/vms/{vmid}");
        self.privilege(&vm_path, "VM.Allocate", &user, "clone to it");
        self.privilege(&vm_path, "VM.Audit", &user, "read the VM");
        if let Some(storage) = c.storage.as_ref().filter(|_| c.full) {
            self.privilege(
                &format!("/storage/{storage}"),
                "Datastore.AllocateSpace",
                &user,
                "full clone to it",
            );
        }
        // Where its disks land: a full clone copies every disk (to its own storage if given), a
        // linked one copies only the cloud-init drive and the TPM state (Proxmox never links
        // those) and shares the rest with the template.
        let moved = c.node != t.node || (c.full && c.storage.is_some());
        for disk in template_disks(t) {
            let target = c
                .storage
                .clone()
                .filter(|_| c.full)
                .unwrap_or_else(|| disk.storage.clone());
            if moved {
                self.content(&c.node, &target, "images", &user);
            }
            let bytes = match disk.kind {
                DiskKind::Boot if c.full => c.disk_size.map_or(disk.bytes, |s| s.0.max(disk.bytes)),
                DiskKind::CloudInit | DiskKind::Tpm => disk.bytes,
                _ if c.full => disk.bytes,
                _ => continue,
            };
            self.disk(vmid, &user, &c.node, &target, bytes);
        }
        let resource = desired.get(&ResourceKey::new(ResourceKind::Clone, &c.name));
        if let Some(Resource::Vm(vm)) = resource {
            let options = vm
                .settings
                .iter()
                .filter(|(option, _)| !matches!(option.as_str(), "name" | "description"))
                .map(|(option, value)| (option.as_str(), value.as_str()))
                .chain(vm.secrets.iter().map(|(option, _)| (option.as_str(), "")));
            for (option, value) in options {
                for privilege in option_privileges(option, value) {
                    self.privilege(&vm_path, privilege, &user, option);
                }
            }
            if vm.disk_grow.is_some() {
                self.privilege(&vm_path, "VM.Config.Disk", &user, "resize");
            }
            if vm.running {
                self.privilege(&vm_path, "VM.PowerMgmt", &user, "start");
            }
            if let Recipe::Clone(recipe) = &vm.recipe
                && recipe.migrate_to.is_some()
            {
                self.privilege(
                    &vm_path,
                    "VM.Migrate",
                    &user,
                    "migrate it from the template's node",
                );
            }
            // Snippets are written over SFTP, not through the API; the API only has to know
            // the storage takes them (and, to find its directory, its configuration).
            if let Some(plan) = vm.seed.as_deref().filter(|plan| plan.is_snippets()) {
                self.content(&c.node, &plan.storage, "snippets", &user);
                self.storage_audit(&plan.storage, &user, "list snippets");
                if snippets_dir.is_none() && plan.storage != "local" {
                    self.privilege(
                        &format!("/storage/{}", plan.storage),
                        "Datastore.Allocate",
                        &user,
                        "read the storage's path for its snippets (or set defaults.ssh.snippets_dir)",
                    );
                }
            }
            if vm.running && vm.wait_for_ip.is_some() && vm.static_address().is_none() {
                self.privilege_or(
                    &vm_path,
                    "VM.GuestAgent.Audit",
                    &user,
                    "read its address from the guest agent",
                    vec![vec![(vm_path.clone(), "VM.GuestAgent.Unrestricted")]],
                );
            }
        }
        // Its own NICs, or the template's, which it inherits; likewise its PCI devices.
        self.networks(&c.node, c.networks.as_ref().unwrap_or(&t.networks), &user);
        for device in &t.pci {
            match &device.source {
                PciSource::Mapping(id) => self.mapping(id, &c.node, &user),
                PciSource::Host(_) => {}
            }
        }
    }

    fn networks(&mut self, node: &str, networks: &[Network], user: &str) {
        for nic in networks {
            let need = self
                .bridges
                .entry((node.to_string(), nic.bridge.clone()))
                .or_default();
            need.users.insert(user.to_string());
            if let Some(tag) = nic.vlan {
                need.vlans.entry(tag).or_default().insert(user.to_string());
            }
            // The bridge's path, as qemu-server checks it; a grant there propagates to its
            // VLANs (`…/<bridge>/<tag>`).
            let path = format!("/sdn/zones/localnetwork/{}", nic.bridge);
            self.privilege(&path, "SDN.Use", user, "NICs");
        }
    }

    fn mapping(&mut self, id: &str, node: &str, user: &str) {
        self.pci_mappings
            .entry(id.to_string())
            .or_default()
            .entry(node.to_string())
            .or_default()
            .insert(user.to_string());
        self.privilege(
            &format!("/mapping/pci/{id}"),
            "Mapping.Use",
            user,
            "pass the device through",
        );
    }

    /// Clones with `keep: true` data disks: a replacement moves them with the disk reassign
    /// (`move_disk` with `target-vmid`), which qemu-server has since PVE 7.2. Checked for the
    /// spec, before any observation says whether this plan replaces one: any later plan may.
    fn data_disk_gate(&mut self, spec: &Spec) {
        let keepers: Vec<String> = spec
            .clones
            .iter()
            .filter(|c| c.data_disks.iter().any(|d| d.keep))
            .map(|c| key(ResourceKind::Clone, &c.name))
            .collect();
        if !keepers.is_empty() {
            self.gate(
                "moving kept data disks to a replaced clone (`data_disks` with `keep: true`: disk reassign, `move_disk` with `target-vmid`)",
                (7, 2),
                "upgrade the cluster, or drop `keep` (a replacement then deletes the disk with the old VM)",
                keepers,
            );
        }
    }

    fn gate(
        &mut self,
        feature: &'static str,
        since: (u32, u32),
        advice: &'static str,
        users: impl IntoIterator<Item = String>,
    ) {
        self.gates.push(VersionGate {
            feature,
            since,
            advice,
            users: users.into_iter().collect(),
        });
    }

    fn node(&mut self, node: &str, user: &str) {
        self.nodes
            .entry(node.to_string())
            .or_default()
            .insert(user.to_string());
    }

    fn content(&mut self, node: &str, storage: &str, content: &'static str, user: &str) {
        self.storages
            .entry((node.to_string(), storage.to_string()))
            .or_default()
            .entry(content)
            .or_default()
            .insert(user.to_string());
    }

    fn disk(&mut self, vmid: u32, user: &str, node: &str, storage: &str, bytes: u64) {
        self.disks.push(DiskNeed {
            vmid,
            user: user.to_string(),
            node: node.to_string(),
            storage: storage.to_string(),
            bytes,
        });
    }

    /// Reading a storage's content takes `Datastore.Audit`, or `Datastore.AllocateSpace`.
    fn storage_audit(&mut self, storage: &str, user: &str, what: &str) {
        let path = format!("/storage/{storage}");
        self.privilege_or(
            &path,
            "Datastore.Audit",
            user,
            what,
            vec![vec![(path.clone(), "Datastore.AllocateSpace")]],
        );
    }

    fn privilege(&mut self, path: &str, privilege: &'static str, user: &str, what: &str) {
        self.privilege_or(path, privilege, user, what, Vec::new());
    }

    fn privilege_or(
        &mut self,
        path: &str,
        privilege: &'static str,
        user: &str,
        what: &str,
        instead: Vec<Vec<(String, &'static str)>>,
    ) {
        let need = self
            .privileges
            .entry((path.to_string(), privilege))
            .or_insert_with(|| PrivilegeNeed {
                path: path.to_string(),
                privilege,
                users: Users::new(),
                what: IndexSet::new(),
                instead,
            });
        need.users.insert(user.to_string());
        need.what.insert(what.to_string());
    }
}

fn key(kind: ResourceKind, name: &str) -> String {
    ResourceKey::new(kind, name).to_string()
}

/// Which disk of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiskKind {
    Boot,
    Extra,
    Efi,
    Tpm,
    CloudInit,
}

/// A disk a template allocates.
struct TemplateDisk {
    kind: DiskKind,
    storage: String,
    /// At most.
    bytes: u64,
}

/// The disks a template allocates, boot disk first.
fn template_disks(t: &Template) -> Vec<TemplateDisk> {
    let disk = |kind, storage: &str, bytes| TemplateDisk {
        kind,
        storage: storage.to_string(),
        bytes,
    };
    let mut disks = vec![disk(DiskKind::Boot, &t.disk.storage, t.disk.size.0)];
    disks.extend(
        t.extra_disks
            .iter()
            .map(|d| disk(DiskKind::Extra, &d.storage, d.size.0)),
    );
    if let Some(efi) = &t.efi_disk {
        disks.push(disk(DiskKind::Efi, &efi.storage, SMALL_DISK_BYTES));
    }
    if let Some(tpm) = &t.tpm {
        disks.push(disk(DiskKind::Tpm, &tpm.storage, SMALL_DISK_BYTES));
    }
    if let Some(ci) = &t.cloud_init {
        let storage = ci.storage.as_deref().unwrap_or(&t.disk.storage);
        disks.push(disk(DiskKind::CloudInit, storage, SMALL_DISK_BYTES));
    }
    disks
}

/// The privileges setting a VM option takes, as qemu-server's `check_vm_modify_config_perm`
/// and its drive checks ask for them: a cloud-init drive is a CD-ROM that needs the cloud-init
/// privilege too; `boot` is a disk option; hardware options need `VM.Config.HWType`.
pub fn option_privileges(option: &str, value: &str) -> Vec<&'static str> {
    let family = option.trim_end_matches(|c: char| c.is_ascii_digit());
    match family {
        "memory" | "balloon" | "shares" => vec!["VM.Config.Memory"],
        "cores" | "sockets" | "cpu" | "cpulimit" | "cpuunits" | "vcpus" | "affinity" | "numa" => {
            vec!["VM.Config.CPU"]
        }
        "net" => vec!["VM.Config.Network"],
        "ipconfig" | "ciuser" | "cipassword" | "sshkeys" | "nameserver" | "searchdomain"
        | "citype" | "cicustom" | "ciupgrade" => vec!["VM.Config.Cloudinit"],
        "scsi" | "virtio" | "sata" | "ide" => {
            let file = value.split(',').next().unwrap_or_default();
            if file.ends_with(":cloudinit") {
                vec!["VM.Config.Cloudinit", "VM.Config.CDROM"]
            } else if value.split(',').any(|kv| kv == "media=cdrom") {
                vec!["VM.Config.CDROM"]
            } else {
                vec!["VM.Config.Disk"]
            }
        }
        "efidisk" | "tpmstate" | "unused" | "boot" | "bootdisk" => vec!["VM.Config.Disk"],
        "machine" | "bios" | "scsihw" | "vga" | "hostpci" | "usb" | "serial" | "parallel"
        | "audio" | "rng" | "keyboard" | "tablet" | "smbios" | "acpi" | "kvm" | "watchdog"
        | "hotplug" => vec!["VM.Config.HWType"],
        _ => vec!["VM.Config.Options"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_map_to_qemu_server_privileges() {
        assert_eq!(option_privileges("memory", "2048"), ["VM.Config.Memory"]);
        assert_eq!(
            option_privileges("ide2", "local-lvm:cloudinit"),
            ["VM.Config.Cloudinit", "VM.Config.CDROM"]
        );
        assert_eq!(
            option_privileges("scsi0", "local-lvm:0,import-from=local:import/x.qcow2"),
            ["VM.Config.Disk"]
        );
        assert_eq!(
            option_privileges("ipconfig0", "ip=dhcp"),
            ["VM.Config.Cloudinit"]
        );
        assert_eq!(
            option_privileges("hostpci0", "mapping=gpu0"),
            ["VM.Config.HWType"]
        );
        assert_eq!(
            option_privileges("tags", "proxfleet"),
            ["VM.Config.Options"]
        );
        assert_eq!(option_privileges("boot", "order=scsi0"), ["VM.Config.Disk"]);
    }
}
