//! Templates: the build recipe (machine, firmware, CPU and memory, boot and extra disks, network
//! interfaces, PCI devices) and the defaults a template gives its clones.

use serde_saphyr::Spanned;

use super::super::Warning;
use super::super::model::*;
use super::super::raw::*;
use super::Validator;
use super::cloud_init::check_cloud_init;
use super::scalars::{
    NODE_LOCAL_STORAGES, check_count, check_description, check_node, check_pool, check_storage,
    check_tags, check_vmid, check_wait_timeout, parse_memory, parse_size,
};

/// Validate network interfaces (`net0` first); `place` is where a missing default bridge is
/// reported.
pub(super) fn check_networks(
    ctx: &mut Validator,
    nics: &[RawNetwork],
    path: &str,
    place: &Spanned<String>,
) -> Vec<Network> {
    let defaults_bridge = ctx.defaults.bridge.clone();
    let mut networks = Vec::new();
    for (nic_idx, nic) in nics.iter().enumerate() {
        let nic_path = format!("{path}.network[{nic_idx}]");
        if let Some(bridge) = &nic.bridge {
            // Linux limits interface names to 15 bytes (IFNAMSIZ less the NUL).
            let bridge_ok = !bridge.value.is_empty()
                && bridge.value.len() <= 15
                && bridge
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !bridge_ok {
                ctx.error_at(
                    bridge,
                    &format!("{nic_path}.bridge"),
                    format!("`{}` is not a valid bridge name", bridge.value),
                    Some("a bridge name of 1 to 15 letters, digits, `-`, `_` or `.`, such as `vmbr0`"),
                );
            }
        }
        let bridge = ctx.pick(
            nic.bridge.as_ref(),
            defaults_bridge.as_ref(),
            place,
            &format!("{nic_path}.bridge"),
            "bridge",
            "defaults.bridge",
        );
        let mtu = match &nic.mtu {
            Some(mtu) if (1..=65520).contains(&mtu.value) => Some(mtu.value),
            Some(mtu) => {
                ctx.error_at(
                    mtu,
                    &format!("{nic_path}.mtu"),
                    format!("MTU {} is out of range", mtu.value),
                    Some("1..=65520 (1 = the bridge's MTU)"),
                );
                None
            }
            None => None,
        };
        let model = match nic.model.unwrap_or(RawNicModel::Virtio) {
            RawNicModel::Virtio => NicModel::Virtio,
            RawNicModel::E1000 => NicModel::E1000,
            RawNicModel::Vmxnet3 => NicModel::Vmxnet3,
            RawNicModel::Rtl8139 => NicModel::Rtl8139,
        };
        if mtu.is_some()
            && model != NicModel::Virtio
            && let Some(place) = &nic.mtu
        {
            ctx.error_at(
                place,
                &format!("{nic_path}.mtu"),
                "an MTU can only be set on a virtio interface".to_string(),
                Some("`model: virtio` with `mtu`"),
            );
        }
        let vlan = match &nic.vlan {
            Some(tag) if (1..=4094).contains(&tag.value) => u16::try_from(tag.value).ok(),
            Some(tag) => {
                ctx.error_at(
                    tag,
                    &format!("{nic_path}.vlan"),
                    format!("VLAN tag {} is out of range", tag.value),
                    Some("1..=4094"),
                );
                None
            }
            None => None,
        };
        networks.push(Network {
            model,
            bridge: bridge.unwrap_or_default(),
            vlan,
            firewall: nic.firewall,
            mtu,
        });
    }
    networks
}

pub(super) fn check_template(
    ctx: &mut Validator,
    name: &Spanned<String>,
    t: &RawTemplate,
    image_names: &[String],
    images: &[Image],
) -> Option<Template> {
    let path = format!("templates.{}", name.value);
    let n_before = ctx.diagnostics.len();
    let vmid = check_vmid(ctx, &t.vmid, &format!("{path}.vmid"));
    if let Some(node) = &t.node {
        check_node(ctx, node, &format!("{path}.node"));
    }
    let defaults_node = ctx.defaults.node.clone();
    let template_node = ctx.pick(
        t.node.as_ref(),
        defaults_node.as_ref(),
        name,
        &format!("{path}.node"),
        "node",
        "defaults.node",
    );
    check_image_reference(ctx, t, &path, image_names);
    check_machine(ctx, t, &path);
    check_template_scalars(ctx, t, &path);
    let memory_mib = parse_memory(ctx, &t.memory, &format!("{path}.memory"));
    let disk = check_boot_disk(ctx, name, t, &path);
    let networks = check_networks(ctx, &t.network, &path, name);
    if t.network.is_empty() {
        ctx.warnings.push(Warning {
            path: format!("{path}.network"),
            message: "the template has no network interface: its clones have none unless they declare `network`".to_string(),
        });
    }
    if let Some(node) = &template_node {
        check_image_on_node(ctx, t, &path, images, node);
    }
    let disk_storage = disk.as_ref().map(|d| d.storage.clone()).unwrap_or_default();
    let (bios, efi_disk, tpm) = check_firmware(ctx, t, &path, &disk_storage);
    let cloud_init = t
        .cloud_init
        .as_ref()
        .and_then(|ci| check_cloud_init(ctx, ci, &format!("{path}.cloud_init")));
    let tags = check_tags(ctx, &t.tags, &format!("{path}.tags"));
    let pci = check_pci(ctx, t, &path);
    let extra_disks = check_extra_disks(ctx, t, &path, &disk_storage);
    let wait_for_ip_timeout = t
        .wait_for_ip_timeout
        .as_ref()
        .and_then(|text| check_wait_timeout(ctx, text, &format!("{path}.wait_for_ip_timeout")));
    let builds = t.builds.as_ref().and_then(|builds| {
        let ok = (2..=100).contains(&builds.value);
        if !ok {
            ctx.error_at(
                builds,
                &format!("{path}.builds"),
                format!("{} builds is out of range", builds.value),
                Some("2..=100 (the builds take the vmids from `vmid` on)"),
            );
        }
        ok.then_some(builds.value as u32)
    });
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    Some(Template {
        builds,
        pci,
        extra_disks,
        name: name.value.clone(),
        vmid: vmid?,
        node: template_node?,
        image: t.image.value.clone(),
        machine: t.machine.as_ref().map(|m| m.value.clone()),
        bios,
        efi_disk,
        tpm,
        cpu: t.cpu.clone(),
        cores: t.cores.value,
        sockets: t.sockets.value,
        memory_mib: memory_mib?,
        disk: disk?,
        networks,
        agent: t.agent,
        serial_console: t.serial_console,
        ostype: t
            .ostype
            .as_ref()
            .map_or_else(|| "l26".to_string(), |o| o.value.clone()),
        cloud_init,
        tags,
        description: t.description.as_ref().map(|d| d.value.clone()),
        // Checked last, as it always was: a bad pool fails the spec but still lets the
        // template's clones be checked against it.
        pool: t
            .pool
            .as_ref()
            .and_then(|p| check_pool(ctx, p, &format!("{path}.pool"))),
        onboot: t.onboot,
        adopt: t.adopt,
        wait_for_ip: t.wait_for_ip,
        wait_for_ip_timeout,
    })
}

/// The template's image is one the spec declares.
fn check_image_reference(ctx: &mut Validator, t: &RawTemplate, path: &str, image_names: &[String]) {
    if !image_names.contains(&t.image.value) {
        let known: Vec<&str> = image_names.iter().map(String::as_str).collect();
        let message = match crate::spec::closest(&t.image.value, &known) {
            Some(near) => format!("unknown image `{}` (did you mean `{near}`?)", t.image.value),
            None => format!("unknown image `{}`", t.image.value),
        };
        let allowed = if image_names.is_empty() {
            "an image declared under `images` (there are none)".to_string()
        } else {
            format!("one of the images: {}", image_names.join(", "))
        };
        ctx.error_at(&t.image, &format!("{path}.image"), message, Some(&allowed));
    }
}

/// An image on node-local storage, or fetched onto several nodes, must be on the template's.
fn check_image_on_node(
    ctx: &mut Validator,
    t: &RawTemplate,
    path: &str,
    images: &[Image],
    node: &str,
) {
    if let Some(image) = images.iter().find(|i| i.name == t.image.value) {
        let local = NODE_LOCAL_STORAGES.contains(&image.storage.as_str());
        if !image.nodes.iter().any(|n| n == node) && (image.nodes.len() > 1 || local) {
            ctx.error_at(
                &t.image,
                &format!("{path}.image"),
                format!(
                    "image `{}` is not fetched onto node `{node}`, where this template is built",
                    image.name
                ),
                Some(&format!(
                    "add `{node}` to the image's `nodes`, or keep the image on shared storage"
                )),
            );
        }
    }
}

/// The machine type as the API schema's `machine` format allows it (qemu-server's
/// `PVE/QemuServer/Machine.pm`, `type` pattern, at most 40 characters).
fn check_machine(ctx: &mut Validator, t: &RawTemplate, path: &str) {
    static MACHINE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let pattern = MACHINE.get_or_init(|| {
        regex::Regex::new(
            r"^(pc|pc(-i440fx)?-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|q35|pc-q35-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|virt(?:-\d+(\.\d+)+)?(\+pve\d+)?)$",
        )
        .ok()
    });
    if let Some(machine) = &t.machine {
        let m = machine.value.as_str();
        let ok = m.len() <= 40 && pattern.as_ref().is_some_and(|re| re.is_match(m));
        if !ok {
            ctx.error_at(
                machine,
                &format!("{path}.machine"),
                format!("unknown machine type `{m}`"),
                Some(
                    "`q35`, `pc`, or a pinned version such as `pc-q35-9.2+pve1` or `pc-i440fx-8.1`",
                ),
            );
        }
    }
}

/// Proxmox's `ostype` values (the API schema's enum for `ostype`).
const OSTYPES: [&str; 13] = [
    "other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24",
    "l26", "solaris",
];

/// Counts, guest OS type, description and the firmware disks' storages.
fn check_template_scalars(ctx: &mut Validator, t: &RawTemplate, path: &str) {
    check_count(ctx, &t.cores, &format!("{path}.cores"), "cores", 1..=1024);
    check_count(
        ctx,
        &t.sockets,
        &format!("{path}.sockets"),
        "sockets",
        1..=16,
    );
    if let Some(ostype) = &t.ostype
        && !OSTYPES.contains(&ostype.value.as_str())
    {
        let message = match crate::spec::closest(&ostype.value, &OSTYPES) {
            Some(near) => format!("unknown ostype `{}` (did you mean `{near}`?)", ostype.value),
            None => format!("unknown ostype `{}`", ostype.value),
        };
        ctx.error_at(
            ostype,
            &format!("{path}.ostype"),
            message,
            Some(&OSTYPES.join(", ")),
        );
    }
    if let Some(description) = &t.description {
        check_description(ctx, description, &format!("{path}.description"));
    }
    let efi = t.efi_disk.as_ref().and_then(|e| e.storage.as_ref());
    let tpm = t.tpm.as_ref().and_then(|e| e.storage.as_ref());
    if let Some(storage) = efi {
        check_storage(ctx, storage, &format!("{path}.efi_disk.storage"));
    }
    if let Some(storage) = tpm {
        check_storage(ctx, storage, &format!("{path}.tpm.storage"));
    }
}

/// The boot disk: its storage (or the default), size, bus and options; `None` when invalid.
fn check_boot_disk(
    ctx: &mut Validator,
    name: &Spanned<String>,
    t: &RawTemplate,
    path: &str,
) -> Option<BootDisk> {
    let defaults_disks = ctx.defaults.disks.clone();
    if let Some(storage) = &t.disk.storage {
        check_storage(ctx, storage, &format!("{path}.disk.storage"));
    }
    let disk_storage = ctx.pick(
        t.disk.storage.as_ref(),
        defaults_disks.as_ref(),
        name,
        &format!("{path}.disk.storage"),
        "disk storage",
        "defaults.storage.disks",
    );
    let disk_size = match parse_size(&t.disk.size.value, 0) {
        Some(bytes) if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) => Some(DiskSize(bytes)),
        _ => {
            ctx.error_at(
                &t.disk.size,
                &format!("{path}.disk.size"),
                format!("`{}` is not a valid disk size", t.disk.size.value),
                Some("a whole number with a unit: `20G`, `20GiB`, `512M`"),
            );
            None
        }
    };
    let bus = match t.disk.bus.unwrap_or(RawBus::Scsi) {
        RawBus::Scsi => DiskBus::Scsi,
        RawBus::Virtio => DiskBus::Virtio,
        RawBus::Sata => DiskBus::Sata,
    };
    if bus == DiskBus::Virtio && t.disk.ssd {
        ctx.error_at(
            &t.disk.size,
            &format!("{path}.disk.ssd"),
            "`ssd` is not supported on the virtio bus".to_string(),
            Some("`ssd` with bus `scsi` or `sata`"),
        );
    }
    // Proxmox has `iothread` on virtio and SCSI disks only; on SATA it refuses the VM config.
    if bus == DiskBus::Sata && t.disk.iothread {
        ctx.error_at(
            &t.disk.size,
            &format!("{path}.disk.iothread"),
            "`iothread` is not supported on the sata bus".to_string(),
            Some("`iothread` with bus `scsi` or `virtio`"),
        );
    }
    Some(BootDisk {
        bus,
        storage: disk_storage?,
        size: disk_size?,
        discard: t.disk.discard,
        ssd: t.disk.ssd,
        iothread: t.disk.iothread,
        cache: t.disk.cache.map(|c| {
            match c {
                RawCache::None => "none",
                RawCache::Writethrough => "writethrough",
                RawCache::Writeback => "writeback",
                RawCache::Unsafe => "unsafe",
                RawCache::Directsync => "directsync",
            }
            .to_string()
        }),
    })
}

/// BIOS, EFI disk and TPM; the disks default to the boot disk's storage.
fn check_firmware(
    ctx: &mut Validator,
    t: &RawTemplate,
    path: &str,
    disk_storage: &str,
) -> (Bios, Option<EfiDisk>, Option<Tpm>) {
    let bios = match t.bios.unwrap_or(RawBios::Seabios) {
        RawBios::Seabios => Bios::SeaBios,
        RawBios::Ovmf => Bios::Ovmf,
    };
    if bios == Bios::SeaBios && t.efi_disk.is_some() {
        // The EFI disk block has no span of its own: point at the template's vmid.
        let place = Spanned::new((), t.vmid.referenced, t.vmid.defined);
        ctx.error_at(
            &place,
            &format!("{path}.efi_disk"),
            "an EFI disk needs `bios: ovmf`".to_string(),
            Some("`efi_disk` only together with `bios: ovmf`"),
        );
    }
    let efi_disk = (bios == Bios::Ovmf).then(|| {
        let raw = t.efi_disk.as_ref();
        EfiDisk {
            storage: raw
                .and_then(|e| e.storage.as_ref())
                .map_or_else(|| disk_storage.to_string(), |s| s.value.clone()),
            pre_enrolled_keys: raw.is_some_and(|e| e.pre_enrolled_keys),
        }
    });
    let tpm = t.tpm.as_ref().map(|tpm| Tpm {
        storage: tpm
            .storage
            .as_ref()
            .map_or_else(|| disk_storage.to_string(), |s| s.value.clone()),
        version: match tpm.version.unwrap_or(RawTpmVersion::V20) {
            RawTpmVersion::V12 => TpmVersion::V12,
            RawTpmVersion::V20 => TpmVersion::V20,
        },
    });
    (bios, efi_disk, tpm)
}

/// PCI devices: each a resource mapping or a host address, PCIe only on q35, one primary GPU.
fn check_pci(ctx: &mut Validator, t: &RawTemplate, path: &str) -> Vec<PciDevice> {
    let q35 = t
        .machine
        .as_ref()
        .is_some_and(|m| m.value == "q35" || m.value.starts_with("pc-q35-"));
    let mut pci = Vec::new();
    for (pci_idx, dev) in t.pci.iter().enumerate() {
        let pci_path = format!("{path}.pci[{pci_idx}]");
        let source = pci_source(ctx, dev, t, &pci_path);
        if dev.pcie && !q35 {
            let place = dev
                .mapping
                .clone()
                .or_else(|| dev.host.clone())
                .unwrap_or_else(|| Spanned::new(String::new(), t.vmid.referenced, t.vmid.defined));
            ctx.error_at(
                &place,
                &format!("{pci_path}.pcie"),
                "PCIe passthrough needs the q35 machine type".to_string(),
                Some("`machine: q35` on the template, or `pcie: false`"),
            );
        }
        if let Some(mdev) = &dev.mdev
            && (mdev.value.is_empty() || mdev.value.contains(['/', '.', ':']))
        {
            ctx.error_at(
                mdev,
                &format!("{pci_path}.mdev"),
                format!("`{}` is not a mediated device type", mdev.value),
                Some("a type name such as `nvidia-63` (no `/`, `.` or `:`)"),
            );
        }
        if let Some(source) = source {
            pci.push(PciDevice {
                source,
                pcie: dev.pcie,
                primary_gpu: dev.primary_gpu,
                rombar: dev.rombar,
                mdev: dev.mdev.as_ref().map(|m| m.value.clone()),
            });
        }
    }
    if t.pci.iter().filter(|d| d.primary_gpu).count() > 1 {
        let place = Spanned::new((), t.vmid.referenced, t.vmid.defined);
        ctx.error_at(
            &place,
            &format!("{path}.pci"),
            "more than one PCI device is the primary GPU".to_string(),
            Some("`primary_gpu: true` on one device at most"),
        );
    }
    pci
}

/// Extra empty disks: whole GiB, as many as the boot disk's bus has slots for.
fn check_extra_disks(
    ctx: &mut Validator,
    t: &RawTemplate,
    path: &str,
    disk_storage: &str,
) -> Vec<ExtraDisk> {
    let mut extra_disks = Vec::new();
    for (disk_idx, disk) in t.extra_disks.iter().enumerate() {
        let disk_path = format!("{path}.extra_disks[{disk_idx}]");
        if let Some(storage) = &disk.storage {
            check_storage(ctx, storage, &format!("{disk_path}.storage"));
        }
        match parse_size(&disk.size.value, 0) {
            Some(bytes) if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) => {
                extra_disks.push(ExtraDisk {
                    slot: format!(
                        "{}{}",
                        t.disk.bus.map_or("scsi", |b| match b {
                            RawBus::Scsi => "scsi",
                            RawBus::Virtio => "virtio",
                            RawBus::Sata => "sata",
                        }),
                        disk_idx + 1
                    ),
                    storage: disk
                        .storage
                        .as_ref()
                        .map(|s| s.value.clone())
                        .unwrap_or_else(|| disk_storage.to_string()),
                    size: DiskSize(bytes),
                    discard: disk.discard,
                })
            }
            _ => ctx.error_at(
                &disk.size,
                &format!("{disk_path}.size"),
                format!("`{}` is not a size in whole GiB", disk.size.value),
                Some("a whole number of GiB with a unit: `100G`, `1T`"),
            ),
        }
    }
    let max_slot = match t.disk.bus.unwrap_or(RawBus::Scsi) {
        RawBus::Scsi => 30,
        RawBus::Virtio => 15,
        RawBus::Sata => 5,
    };
    if t.extra_disks.len() > max_slot
        && let Some(last) = t.extra_disks.last()
    {
        ctx.error_at(
            &last.size,
            &format!("{path}.extra_disks"),
            format!("{} extra disks do not fit on the bus", t.extra_disks.len()),
            Some(&format!("at most {max_slot} besides the boot disk")),
        );
    }
    extra_disks
}

/// Where a PCI device comes from: a resource mapping (works with API tokens) or a raw host
/// address (root@pam only, so a warning), exactly one of them.
fn pci_source(
    ctx: &mut Validator,
    dev: &RawPci,
    t: &RawTemplate,
    pci_path: &str,
) -> Option<PciSource> {
    match (&dev.mapping, &dev.host) {
        (Some(mapping), None) => {
            let ok = mapping.value.len() >= 2
                && mapping
                    .value
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && mapping
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
            if !ok {
                ctx.error_at(
                    mapping,
                    &format!("{pci_path}.mapping"),
                    format!("`{}` is not a resource mapping id", mapping.value),
                    Some("an id such as `gpu0`: a letter, then letters, digits, `-` or `_`"),
                );
            }
            Some(PciSource::Mapping(mapping.value.clone()))
        }
        (None, Some(host)) => {
            let ok = host.value.split(';').all(|addr| {
                let parts: Vec<&str> = addr.split(':').collect();
                let hex =
                    |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
                let (bus, devfn) = match parts.as_slice() {
                    [domain, bus, devfn]
                        if domain.len() >= 4 && domain.chars().all(|c| c.is_ascii_hexdigit()) =>
                    {
                        (*bus, *devfn)
                    }
                    [bus, devfn] => (*bus, *devfn),
                    _ => return false,
                };
                let (dev_part, func) = devfn
                    .split_once('.')
                    .map_or((devfn, None), |(d, f)| (d, Some(f)));
                hex(bus, 2) && hex(dev_part, 2) && func.is_none_or(|f| hex(f, 1))
            });
            if ok {
                ctx.warnings.push(Warning { path: format!("{pci_path}.host"), message: "raw PCI host ids are allowed for root@pam only: API tokens cannot use them; create a resource mapping and use `mapping` instead".to_string() });
            } else {
                ctx.error_at(
                    host,
                    &format!("{pci_path}.host"),
                    format!("`{}` is not a PCI address", host.value),
                    Some("`[domain:]bus:dev[.func]` in hex, such as `0000:01:00` or `01:00.0`"),
                );
            }
            Some(PciSource::Host(host.value.to_ascii_lowercase()))
        }
        (Some(mapping), Some(_)) => {
            ctx.error_at(
                mapping,
                pci_path,
                "give either `mapping` or `host`, not both".to_string(),
                Some("exactly one of `mapping` (works with API tokens) and `host`"),
            );
            None
        }
        (None, None) => {
            let place = Spanned::new((), t.vmid.referenced, t.vmid.defined);
            ctx.error_at(
                &place,
                pci_path,
                "a PCI device needs `mapping` or `host`".to_string(),
                Some("exactly one of `mapping` (works with API tokens) and `host`"),
            );
            None
        }
    }
}
