//! The desired-state graph: every resource the spec asks for (image → template → clones), the
//! Proxmox settings each one should have, and the dependency edges between them, in petgraph.
//!
//! Pure: built from a validated `Spec`, it cannot fail and does no I/O. The settings use
//! Proxmox's option names because those are what an operator reads in the UI and in a plan.

use std::collections::BTreeMap;

use petgraph::graph::{DiGraph, NodeIndex};
use sha2::{Digest, Sha256};

use crate::ownership::{Marker, ResourceKey, ResourceKind, TAG};
use crate::qemu_config::propstr::encode_sshkeys;
use crate::secret::Secret;
use crate::seed::SeedDelivery;
use crate::spec::{
    Bios, CloneVm, CloudInit, Delivery, DiskBus, DiskSize, Image, Network, Spec, Template, ipconfig,
};

/// An image volume the spec wants.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredImage {
    /// `image.NAME`.
    pub key: ResourceKey,
    /// Node that downloads it.
    pub node: String,
    /// Storage.
    pub storage: String,
    /// Content-addressed file name in the storage.
    pub file_name: String,
    /// Volume id once present.
    pub volid: String,
    /// The spec's image: its mode, and its name to recognise earlier copies.
    pub image: Image,
    /// Source URL.
    pub url: String,
    /// Checksum algorithm (`sha256`, `sha512`).
    pub checksum_algorithm: String,
    /// Checksum hex.
    pub checksum_hex: String,
}

/// How a template VM is built.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildRecipe {
    /// The image it imports.
    pub image: ResourceKey,
    /// Options for `POST /nodes/{node}/qemu`, in order.
    pub create_params: Vec<(String, String)>,
    /// Boot disk option name and absolute size to grow it to after import.
    pub resize: (String, String),
    /// Fingerprint of everything above plus the image checksum.
    pub fingerprint: String,
}

/// How a clone is made.
#[derive(Debug, Clone, PartialEq)]
pub struct CloneRecipe {
    /// The template it is cloned from.
    pub template: ResourceKey,
    /// Template vmid.
    pub template_vmid: u32,
    /// Template node (clone requests go there).
    pub template_node: String,
    /// Full or linked.
    pub full: bool,
    /// Target storage of a full clone.
    pub storage: Option<String>,
    /// The template's boot disk storage (where a clone's copies go without `storage`).
    pub template_storage: String,
    /// How many volumes a full clone allocates (the template's disks, EFI and TPM state and
    /// cloud-init drive included); a linked clone allocates its cloud-init drive and TPM state.
    pub volumes: usize,
    /// The template's disks are on node-local storage and the clone belongs on another node:
    /// Proxmox cannot clone there (`target` needs shared storage), so the clone is made on the
    /// template's node and then migrated (offline) to this one.
    pub migrate_to: Option<String>,
    /// The clone's own data disks (`data_disks`), allocated after cloning.
    pub data_disks: Vec<crate::spec::DataDisk>,
}

/// How a VM comes to exist.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipe {
    /// Built from an image and converted to a template.
    Build(BuildRecipe),
    /// Cloned from a template.
    Clone(CloneRecipe),
}

/// A VM the spec wants.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredVm {
    /// `template.NAME` or `clone.NAME`.
    pub key: ResourceKey,
    /// VM name.
    pub name: String,
    /// VM id.
    pub vmid: u32,
    /// Node.
    pub node: String,
    /// The options proxfleet manages on this VM, with their desired values. Options not here
    /// are inherited or left as Proxmox sets them, and never drift.
    pub settings: BTreeMap<String, String>,
    /// How it is created.
    pub recipe: Recipe,
    /// Should it be running (clones with `start`).
    pub running: bool,
    /// Grow the boot disk (option name, size) after cloning; never shrinks.
    pub disk_grow: Option<(String, DiskSize)>,
    /// Write-only options (`cipassword`): sent when the VM is made, never shown in a plan and
    /// never compared (Proxmox answers `**********` for them).
    pub secrets: Vec<(String, Secret)>,
    /// Custom cloud-init data (clones with `user_data`, `vendor_data` or `network_data`): a
    /// seed ISO that replaces Proxmox's cloud-init drive, its `ide2` computed against the
    /// observed MAC; or snippets, whose `cicustom` is among the `settings` (see `seed`).
    pub seed: Option<Box<crate::seed::SeedPlan>>,
    /// Resource pool (not a config option: set at creation, moved with `PUT /pools`).
    pub pool: Option<String>,
    /// Take over an unmanaged VM that holds the vmid (`adopt: true`).
    pub adopt: bool,
    /// After this run starts the clone, wait up to this long for its address from the guest
    /// agent (`wait_for_ip`); not a Proxmox option, so never part of a plan.
    pub wait_for_ip: Option<std::time::Duration>,
    /// A template's builds kept side by side (`builds`): vmids `vmid .. vmid + builds`.
    pub builds: Option<u32>,
    /// How a clone follows its template's new builds.
    pub policy: Option<ClonePolicy>,
}

/// How a clone follows its template's new builds (`on_template_change`, `rollout`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClonePolicy {
    /// Keep or replace.
    pub on_template_change: crate::spec::OnTemplateChange,
    /// Batches and health check.
    pub rollout: crate::spec::Rollout,
    /// The rollout group: the clone group's name, or `clones of TEMPLATE` for the clones
    /// declared alone from one template.
    pub group: String,
    /// How many clones the group has in the spec (a percentage's base).
    pub group_size: usize,
}

impl DesiredVm {
    /// The vmids this VM may take: its own, and for a template with builds its whole range.
    pub fn vmids(&self) -> std::ops::Range<u32> {
        self.vmid..self.vmid.saturating_add(self.builds.unwrap_or(1))
    }

    /// Its static address from its desired `ipconfig0` (IPv4, else IPv6), without the prefix
    /// length; `None` for DHCP, SLAAC or no cloud-init network.
    pub fn static_address(&self) -> Option<String> {
        let ipconfig = self.settings.get("ipconfig0")?;
        let item = |name: &str| {
            ipconfig
                .split(',')
                .find_map(|kv| kv.strip_prefix(name))
                .filter(|ip| ip.contains('/'))
                .map(|ip| ip.split('/').next().unwrap_or(ip).to_string())
        };
        item("ip=").or_else(|| item("ip6="))
    }
}

/// A node of the desired graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// An image volume.
    Image(DesiredImage),
    /// A template or clone VM.
    Vm(DesiredVm),
}

impl Resource {
    /// The resource's key.
    pub fn key(&self) -> &ResourceKey {
        match self {
            Resource::Image(image) => &image.key,
            Resource::Vm(vm) => &vm.key,
        }
    }
}

/// The desired state: resources and their dependencies (edges point from a dependency to its
/// dependant: image → template → clone).
#[derive(Debug, Clone)]
pub struct DesiredGraph {
    /// The project the resources belong to.
    pub project: String,
    graph: DiGraph<Resource, ()>,
    by_key: BTreeMap<ResourceKey, NodeIndex>,
    order: Vec<NodeIndex>,
}

impl DesiredGraph {
    /// Build the graph of a validated spec.
    pub fn build(spec: &Spec) -> DesiredGraph {
        let mut graph = DiGraph::new();
        let mut by_key = BTreeMap::new();
        for image in &spec.images {
            for node in &image.nodes {
                let resource = Resource::Image(desired_image(image, node));
                by_key.insert(resource.key().clone(), graph.add_node(resource));
            }
        }
        for template in &spec.templates {
            let image = spec.images.iter().find(|i| i.name == template.image);
            let vm = desired_template(&spec.project, template, image);
            let key = vm.key.clone();
            let image_key = image
                .map(|i| image_key(i, &template.node))
                .unwrap_or_else(|| ResourceKey::new(ResourceKind::Image, &template.image));
            let idx = graph.add_node(Resource::Vm(vm));
            if let Some(&image_idx) = by_key.get(&image_key) {
                graph.add_edge(image_idx, idx, ());
            }
            by_key.insert(key, idx);
        }
        // Rollout groups: a clone group, or the clones declared alone from one template.
        let mut group_sizes: BTreeMap<&str, usize> = BTreeMap::new();
        let mut alone: BTreeMap<&str, usize> = BTreeMap::new();
        for clone in &spec.clones {
            match &clone.group {
                Some(group) => *group_sizes.entry(group.as_str()).or_default() += 1,
                None => *alone.entry(clone.template.as_str()).or_default() += 1,
            }
        }
        for clone in &spec.clones {
            let Some(template) = spec.templates.iter().find(|t| t.name == clone.template) else {
                continue; // validation guarantees the reference; nothing to link otherwise
            };
            let iso_storage = spec.iso_storage.clone().unwrap_or_else(|| {
                spec.images
                    .iter()
                    .find(|i| i.name == template.image)
                    .map(|i| i.storage.clone())
                    .unwrap_or_else(|| "local".to_string())
            });
            let group_size = match &clone.group {
                Some(group) => group_sizes.get(group.as_str()),
                None => alone.get(template.name.as_str()),
            }
            .copied()
            .unwrap_or(1);
            let vm = desired_clone(
                &spec.project,
                clone,
                group_size,
                template,
                &iso_storage,
                spec.snippets_storage.as_deref(),
            );
            let key = vm.key.clone();
            let template_key = ResourceKey::new(ResourceKind::Template, &template.name);
            let idx = graph.add_node(Resource::Vm(vm));
            if let Some(&template_idx) = by_key.get(&template_key) {
                graph.add_edge(template_idx, idx, ());
            }
            by_key.insert(key, idx);
        }
        let order = spec_ordered_toposort(&graph);
        DesiredGraph {
            project: spec.project.clone(),
            graph,
            by_key,
            order,
        }
    }

    /// Resources in dependency order (a resource after everything it depends on).
    pub fn in_order(&self) -> impl Iterator<Item = &Resource> {
        self.order.iter().map(|&idx| &self.graph[idx])
    }

    /// The resource with this key.
    pub fn get(&self, key: &ResourceKey) -> Option<&Resource> {
        self.by_key.get(key).map(|&idx| &self.graph[idx])
    }

    /// The resource an owned VM's key stands for: the resource with that key, or for a later
    /// build of a template (`template.NAME#N`) the template, while it keeps builds.
    pub fn owner_of(&self, key: &ResourceKey) -> Option<&Resource> {
        let spec_key = key.spec_key();
        let resource = self.get(&spec_key)?;
        let builds_kept = matches!(resource, Resource::Vm(vm) if vm.builds.is_some());
        (spec_key == *key || builds_kept).then_some(resource)
    }

    /// The keys this resource depends on directly.
    pub fn dependencies(&self, key: &ResourceKey) -> Vec<ResourceKey> {
        let Some(&idx) = self.by_key.get(key) else {
            return Vec::new();
        };
        self.graph
            .neighbors_directed(idx, petgraph::Direction::Incoming)
            .map(|dep| self.graph[dep].key().clone())
            .collect()
    }

    /// The keys that depend on this resource directly.
    pub fn dependants(&self, key: &ResourceKey) -> Vec<ResourceKey> {
        let Some(&idx) = self.by_key.get(key) else {
            return Vec::new();
        };
        self.graph
            .neighbors_directed(idx, petgraph::Direction::Outgoing)
            .map(|next| self.graph[next].key().clone())
            .collect()
    }

    /// Number of resources.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether the spec asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }
}

/// Kahn's algorithm, always taking the ready resource declared first, so the order is
/// topological and otherwise follows the spec file. The edges only ever point image → template
/// → clone, so there is no cycle; if there were, the remaining nodes follow in insertion order.
fn spec_ordered_toposort(graph: &DiGraph<Resource, ()>) -> Vec<NodeIndex> {
    let mut in_degree: Vec<usize> = graph
        .node_indices()
        .map(|idx| {
            graph
                .neighbors_directed(idx, petgraph::Direction::Incoming)
                .count()
        })
        .collect();
    let mut ready: std::collections::BTreeSet<NodeIndex> = graph
        .node_indices()
        .filter(|idx| in_degree[idx.index()] == 0)
        .collect();
    let mut order = Vec::with_capacity(graph.node_count());
    while let Some(idx) = ready.pop_first() {
        order.push(idx);
        for next in graph.neighbors_directed(idx, petgraph::Direction::Outgoing) {
            in_degree[next.index()] -= 1;
            if in_degree[next.index()] == 0 {
                ready.insert(next);
            }
        }
    }
    if order.len() < graph.node_count() {
        let placed: std::collections::BTreeSet<NodeIndex> = order.iter().copied().collect();
        order.extend(graph.node_indices().filter(|idx| !placed.contains(idx)));
    }
    order
}

/// `image.NAME`, or `image.NAME@NODE` for an image fetched onto several nodes.
fn image_key(image: &Image, node: &str) -> ResourceKey {
    if image.nodes.len() > 1 {
        ResourceKey::new(ResourceKind::Image, format!("{}@{node}", image.name))
    } else {
        ResourceKey::new(ResourceKind::Image, &image.name)
    }
}

fn desired_image(image: &Image, node: &str) -> DesiredImage {
    DesiredImage {
        key: image_key(image, node),
        node: node.to_string(),
        storage: image.storage.clone(),
        file_name: image.stored_name(),
        volid: image.volid(),
        url: image.url.clone(),
        checksum_algorithm: image.checksum.algorithm.as_str().to_string(),
        checksum_hex: image.checksum.hex.clone(),
        image: image.clone(),
    }
}

/// A `netN` value without a MAC: Proxmox generates one, and keeps it on later updates.
fn network_value(nic: &Network) -> String {
    let mut value = format!("{},bridge={}", nic.model.as_str(), nic.bridge);
    if nic.firewall {
        value.push_str(",firewall=1");
    }
    if let Some(mtu) = nic.mtu {
        value.push_str(&format!(",mtu={mtu}"));
    }
    if let Some(tag) = nic.vlan {
        value.push_str(&format!(",tag={tag}"));
    }
    value
}

fn bool_flag(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

/// Tags as Proxmox stores them: lower-case, unique, sorted, `;`-joined, always with ours.
fn tag_list(tags: &[String]) -> String {
    let mut all: Vec<String> = tags.iter().map(|t| t.to_ascii_lowercase()).collect();
    all.push(TAG.to_string());
    all.sort();
    all.dedup();
    all.join(";")
}

/// Cloud-init options of a `CloudInit` block; only what it declares.
fn cloud_init_settings(ci: &CloudInit, out: &mut BTreeMap<String, String>) {
    if let Some(user) = &ci.user {
        out.insert("ciuser".into(), user.clone());
    }
    if !ci.ssh_keys.is_empty() {
        out.insert("sshkeys".into(), encode_sshkeys(&ci.ssh_keys));
    }
    if let Some(ipconfig0) = ipconfig(ci.ipv4, ci.ipv6) {
        out.insert("ipconfig0".into(), ipconfig0);
    }
    for (idx, nic) in ci.extra_interfaces.iter().enumerate() {
        if let Some(value) = ipconfig(nic.ipv4, nic.ipv6) {
            out.insert(format!("ipconfig{}", idx + 1), value);
        }
    }
    if !ci.nameservers.is_empty() {
        let servers: Vec<String> = ci.nameservers.iter().map(ToString::to_string).collect();
        out.insert("nameserver".into(), servers.join(" "));
    }
    if let Some(domain) = &ci.searchdomain {
        out.insert("searchdomain".into(), domain.clone());
    }
    if let Some(upgrade) = ci.upgrade {
        out.insert("ciupgrade".into(), bool_flag(upgrade).into());
    }
}

fn cloud_init_secrets(password: Option<&Secret>) -> Vec<(String, Secret)> {
    password
        .map(|p| vec![("cipassword".to_string(), p.clone())])
        .unwrap_or_default()
}

fn desired_template(project: &str, t: &Template, image: Option<&Image>) -> DesiredVm {
    let key = ResourceKey::new(ResourceKind::Template, &t.name);
    let volid = image.map(Image::volid).unwrap_or_default();
    let mut params: Vec<(String, String)> = vec![("name".into(), t.name.clone())];
    if let Some(machine) = &t.machine {
        params.push(("machine".into(), machine.clone()));
    }
    if t.bios == Bios::Ovmf {
        params.push(("bios".into(), "ovmf".into()));
    }
    if let Some(efi) = &t.efi_disk {
        params.push((
            "efidisk0".into(),
            format!(
                "{}:1,efitype=4m,pre-enrolled-keys={}",
                efi.storage,
                bool_flag(efi.pre_enrolled_keys)
            ),
        ));
    }
    if let Some(tpm) = &t.tpm {
        params.push((
            "tpmstate0".into(),
            format!("{}:1,version={}", tpm.storage, tpm.version.as_str()),
        ));
    }
    if let Some(cpu) = &t.cpu {
        params.push(("cpu".into(), cpu.clone()));
    }
    params.push(("cores".into(), t.cores.to_string()));
    params.push(("sockets".into(), t.sockets.to_string()));
    params.push(("memory".into(), t.memory_mib.to_string()));
    let slot = t.disk.slot();
    disk_params(t, &volid, &mut params);
    for (nic_idx, nic) in t.networks.iter().enumerate() {
        params.push((format!("net{nic_idx}"), network_value(nic)));
    }
    for (pci_idx, device) in t.pci.iter().enumerate() {
        params.push((format!("hostpci{pci_idx}"), device.to_proxmox()));
    }
    if t.agent {
        params.push(("agent".into(), "enabled=1".into()));
    }
    if t.serial_console {
        params.push(("serial0".into(), "socket".into()));
        params.push(("vga".into(), "serial0".into()));
    }
    params.push(("ostype".into(), t.ostype.clone()));
    params.push(("boot".into(), format!("order={slot}")));
    if let Some(ci) = &t.cloud_init {
        let storage = ci.storage.clone().unwrap_or_else(|| t.disk.storage.clone());
        params.push(("ide2".into(), format!("{storage}:cloudinit")));
        let mut ci_settings = BTreeMap::new();
        cloud_init_settings(ci, &mut ci_settings);
        params.extend(ci_settings);
    }
    params.push(("tags".into(), tag_list(&t.tags)));
    let resize = (slot, t.disk.size.to_proxmox());

    let fingerprint = fingerprint(&params, &resize, image);

    let marker = Marker {
        project: project.to_string(),
        key: key.clone(),
        vmid: Some(t.vmid.get()),
        build: Some(fingerprint.clone()),
        from: None,
    };
    let description = marker.to_description(t.description.as_deref());

    params.push(("description".into(), description));
    DesiredVm {
        key,
        name: t.name.clone(),
        vmid: t.vmid.get(),
        node: t.node.clone(),
        // Templates are immutable: their whole configuration is the build recipe, compared by
        // fingerprint, so no option is managed in place.
        settings: BTreeMap::new(),
        recipe: Recipe::Build(BuildRecipe {
            image: image
                .map(|i| image_key(i, &t.node))
                .unwrap_or_else(|| ResourceKey::new(ResourceKind::Image, &t.image)),
            create_params: params,
            resize,
            fingerprint,
        }),
        running: false,
        disk_grow: None,
        secrets: cloud_init_secrets(t.cloud_init.as_ref().and_then(|ci| ci.password.as_ref())),
        seed: None,
        pool: t.pool.clone(),
        adopt: t.adopt,
        wait_for_ip: None,
        builds: t.builds,
        policy: None,
    }
}

fn desired_clone(
    project: &str,
    c: &CloneVm,
    group_size: usize,
    template: &Template,
    iso_storage: &str,
    snippets_storage: Option<&str>,
) -> DesiredVm {
    let key = ResourceKey::new(ResourceKind::Clone, &c.name);
    let layered = &c.settings;
    let cloud_init = layered.cloud_init.value();
    let seed = clone_seed(project, &key, c, template, iso_storage, snippets_storage);
    let marker = Marker {
        project: project.to_string(),
        key: key.clone(),
        vmid: Some(c.vmid.get()),
        build: None,
        from: None,
    };
    let mut settings = BTreeMap::new();
    settings.insert("name".to_string(), c.name.clone());
    settings.insert(
        "description".to_string(),
        crate::ownership::with_managed_disks(
            marker.to_description(c.description.as_deref()),
            &c.data_disks
                .iter()
                .map(|d| d.slot.clone())
                .collect::<Vec<_>>(),
        ),
    );
    // What the template declares and the clone does not override is still declared (the
    // layers below the clone): managed on the clone too, so a hand edit is drift. Whatever no
    // layer declares is left as Proxmox sets it.
    settings.insert("tags".to_string(), tag_list(&layered.tags.value));
    settings.insert("cores".into(), layered.cores.value.to_string());
    settings.insert("sockets".into(), layered.sockets.value.to_string());
    settings.insert("memory".into(), layered.memory_mib.value.to_string());
    if let Some(cpu) = &layered.cpu {
        settings.insert("cpu".into(), cpu.value.clone());
    }
    if let Some(onboot) = &layered.onboot {
        settings.insert("onboot".into(), bool_flag(onboot.value).into());
    }
    if let Some(ci) = &cloud_init {
        cloud_init_settings(ci, &mut settings);
    }
    // Snippets depend on the spec alone, so `cicustom` is an ordinary setting; one whose
    // user-data cannot take the declared user is left out here and made a conflict by `diff`.
    if let Some(plan) = seed.as_deref().filter(|plan| plan.is_snippets())
        && let Ok(snippets) = plan.snippets()
    {
        settings.insert("cicustom".into(), plan.cicustom(&snippets));
    }
    for (nic_idx, nic) in layered.networks.value.iter().enumerate() {
        settings.insert(format!("net{nic_idx}"), network_value(nic));
    }
    DesiredVm {
        key,
        name: c.name.clone(),
        vmid: c.vmid.get(),
        node: c.node.clone(),
        settings,
        recipe: Recipe::Clone(CloneRecipe {
            template: ResourceKey::new(ResourceKind::Template, &template.name),
            template_vmid: template.vmid.get(),
            template_node: template.node.clone(),
            full: c.full,
            storage: c.storage.clone(),
            template_storage: template.disk.storage.clone(),
            migrate_to: (c.node != template.node
                && crate::spec::is_node_local_storage(&template.disk.storage))
            .then(|| c.node.clone()),
            data_disks: c.data_disks.clone(),
            volumes: if c.full {
                1 + template.extra_disks.len()
                    + usize::from(template.efi_disk.is_some())
                    + usize::from(template.tpm.is_some())
                    + usize::from(template.cloud_init.is_some())
            } else {
                usize::from(template.tpm.is_some()) + usize::from(template.cloud_init.is_some())
            },
        }),
        running: layered.start.value,
        disk_grow: c.disk_size.map(|size| (template.disk.slot(), size)),
        // A password from the template came with the clone when it was cloned.
        secrets: cloud_init_secrets(layered.cloud_init.own_password()),
        seed,
        pool: layered.pool.as_ref().map(|pool| pool.value.clone()),
        adopt: c.adopt,
        wait_for_ip: layered.wait_for_ip.as_ref().map(|wait| wait.value),
        builds: None,
        policy: Some(clone_policy(c, template, group_size)),
    }
}

/// A clone's custom cloud-init data, when it has any: a seed ISO or snippets.
fn clone_seed(
    project: &str,
    key: &ResourceKey,
    c: &CloneVm,
    template: &Template,
    iso_storage: &str,
    snippets_storage: Option<&str>,
) -> Option<Box<crate::seed::SeedPlan>> {
    let cloud_init = c.settings.cloud_init.value();
    cloud_init
        .clone()
        .filter(CloudInit::has_custom_data)
        .map(|cloud_init| {
            let (storage, delivery) = match cloud_init.delivery.unwrap_or_default() {
                Delivery::Iso => (iso_storage.to_string(), SeedDelivery::Iso),
                Delivery::Snippets => {
                    let drive = template
                        .cloud_init
                        .as_ref()
                        .and_then(|ci| ci.storage.clone())
                        .unwrap_or_else(|| template.disk.storage.clone());
                    (
                        // Validation requires the storage with the delivery.
                        snippets_storage.unwrap_or("local").to_string(),
                        SeedDelivery::Snippets {
                            cloudinit_drive: format!("{drive}:cloudinit"),
                        },
                    )
                }
            };
            Box::new(crate::seed::SeedPlan {
                storage,
                delivery,
                hostname: c.name.clone(),
                cloud_init,
                salt_seed: format!("{project}/{key}"),
            })
        })
}

/// How a clone follows its template's new builds; clones declared alone from one template roll
/// out as one group.
fn clone_policy(c: &CloneVm, template: &Template, group_size: usize) -> ClonePolicy {
    ClonePolicy {
        on_template_change: c.on_template_change,
        rollout: c.rollout.clone(),
        group: c
            .group
            .clone()
            .unwrap_or_else(|| format!("clones of {}", template.name)),
        group_size,
    }
}

/// The boot disk (imported from the image) and the extra disks, with the SCSI controller.
fn disk_params(t: &Template, volid: &str, params: &mut Vec<(String, String)>) {
    let slot = t.disk.slot();
    if t.disk.bus == DiskBus::Scsi {
        // An I/O thread per SCSI disk needs one controller per disk.
        let controller = if t.disk.iothread {
            "virtio-scsi-single"
        } else {
            "virtio-scsi-pci"
        };
        params.push(("scsihw".into(), controller.into()));
    }
    let mut disk = format!("{}:0,import-from={volid}", t.disk.storage);
    if t.disk.discard {
        disk.push_str(",discard=on");
    }
    if t.disk.ssd {
        disk.push_str(",ssd=1");
    }
    if t.disk.iothread {
        disk.push_str(",iothread=1");
    }
    if let Some(cache) = &t.disk.cache {
        disk.push_str(&format!(",cache={cache}"));
    }
    params.push((slot, disk));
    for (disk, extra) in t
        .extra_disks
        .iter()
        .map(|d| (d, format!("{}:{}", d.storage, d.size.0 >> 30)))
    {
        let value = if disk.discard {
            format!("{extra},discard=on")
        } else {
            extra
        };
        params.push((disk.slot.clone(), value));
    }
}

/// What a template is built from, hashed: its creation options, its disk size and its image's
/// checksum. A change to any of them is a new template.
fn fingerprint(
    params: &[(String, String)],
    resize: &(String, String),
    image: Option<&Image>,
) -> String {
    let mut hasher = Sha256::new();
    for (option, value) in params {
        hasher.update(option.as_bytes());
        hasher.update(b"=");
        hasher.update(value.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(format!("resize {}={}\n", resize.0, resize.1).as_bytes());
    if let Some(image) = image {
        hasher.update(format!("image {}\n", image.checksum).as_bytes());
    }
    hex::encode(&hasher.finalize()[..6])
}
