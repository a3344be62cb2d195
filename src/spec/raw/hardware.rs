//! Raw hardware types of a template or clone, shaped like the YAML: firmware disks (EFI, TPM),
//! the boot and extra disks with their bus and cache, PCI passthrough and network interfaces.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// EFI disk settings
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEfiDisk {
    /// Storage for the EFI disk; default: the boot disk's storage
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"local-lvm")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub storage: Option<Spanned<String>>,
    /// Enrol the distribution and Microsoft Secure Boot keys (Secure Boot on)
    #[serde(default)]
    #[schemars(example = true)]
    pub pre_enrolled_keys: bool,
}

/// TPM state disk settings
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTpm {
    /// Storage for the TPM state; default: the boot disk's storage
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"local-lvm")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub storage: Option<Spanned<String>>,
    /// TPM version; cannot be changed after creation
    #[serde(default)]
    #[schemars(example = &"v2.0")]
    pub version: Option<RawTpmVersion>,
}

/// TPM version
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum RawTpmVersion {
    /// TPM 1.2
    #[serde(rename = "v1.2")]
    V12,
    /// TPM 2.0 (needed by Windows 11)
    #[serde(rename = "v2.0")]
    V20,
}

/// Disk bus
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawBus {
    /// VirtIO SCSI (recommended for cloud images)
    Scsi,
    /// VirtIO block
    Virtio,
    /// SATA
    Sata,
}

/// The boot disk
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    /// Storage that holds the disk (content type `images`); default: `defaults.storage.disks`
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"local-lvm")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub storage: Option<Spanned<String>>,
    /// Size after import, with a unit: `20G`, `20GiB`, `512M`
    #[schemars(with = "String", example = &"20G")]
    #[schemars(regex(pattern = r"^[0-9]+(K|k|M|G|T|KiB|MiB|GiB|TiB)$"))]
    pub size: Spanned<String>,
    /// Bus the disk is attached to; default `scsi`
    #[serde(default)]
    #[schemars(example = &"scsi")]
    pub bus: Option<RawBus>,
    /// Pass TRIM/discard to the storage
    #[serde(default)]
    #[schemars(example = true)]
    pub discard: bool,
    /// Present the disk as an SSD to the guest (not on virtio)
    #[serde(default)]
    #[schemars(example = true)]
    pub ssd: bool,
    /// Give the disk its own I/O thread (SCSI uses the `virtio-scsi-single` controller then)
    #[serde(default)]
    #[schemars(example = true)]
    pub iothread: bool,
    /// Cache mode; default: Proxmox's (no host page cache)
    #[serde(default)]
    #[schemars(example = &"none")]
    pub cache: Option<RawCache>,
}

/// An extra, empty disk
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExtraDisk {
    /// Size in whole GiB: `100G`, `1T`
    #[schemars(with = "String", example = &"100G")]
    #[schemars(regex(pattern = r"^[0-9]+(K|k|M|G|T|KiB|MiB|GiB|TiB)$"))]
    pub size: Spanned<String>,
    /// Storage; default: the boot disk's
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"local-lvm")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub storage: Option<Spanned<String>>,
    /// Pass TRIM/discard to the storage
    #[serde(default)]
    #[schemars(example = true)]
    pub discard: bool,
}

/// A data disk of a clone: allocated empty after cloning, grown when its size grows (never
/// shrunk), left on the VM when the spec drops it; with `keep`, moved to the clone's
/// replacement instead of deleted with it
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDataDisk {
    /// Proxmox disk slot: `scsi0`…`scsi30`, `virtio0`…`virtio15`, `sata0`…`sata5`, `ide0`…`ide3`;
    /// not the boot disk's, the cloud-init drive's or one of the template's extra disks
    #[schemars(with = "String", example = &"scsi1")]
    #[schemars(regex(pattern = r"^(scsi|virtio|sata|ide)[0-9]+$"))]
    pub slot: Spanned<String>,
    /// Storage; default: the clone's (`storage`), else the template's boot disk's
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"local-lvm")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub storage: Option<Spanned<String>>,
    /// Size in whole GiB: `20G`, `1T`; a larger size later grows the disk, a smaller one is an
    /// error (disks never shrink)
    #[schemars(with = "String", example = &"20G")]
    #[schemars(regex(pattern = r"^[0-9]+(K|k|M|G|T|KiB|MiB|GiB|TiB)$"))]
    pub size: Spanned<String>,
    /// Pass TRIM/discard to the storage
    #[serde(default)]
    #[schemars(example = true)]
    pub discard: bool,
    /// Keep the disk's volume when the clone is replaced: it is moved to the new VM (Proxmox's
    /// disk reassign, PVE 7.2 or later), never deleted with the old one
    #[serde(default)]
    #[schemars(example = true)]
    pub keep: bool,
}

/// Disk cache mode
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawCache {
    /// No host page cache
    None,
    /// Write-through
    Writethrough,
    /// Write-back
    Writeback,
    /// Write-back, flushes ignored (unsafe)
    Unsafe,
    /// Direct sync
    Directsync,
}

/// A PCI device passed through to the VM
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPci {
    /// Cluster resource mapping id (Datacenter → Resource Mappings); works with API tokens
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"gpu0")]
    pub mapping: Option<Spanned<String>>,
    /// Raw host address `bus:dev[.func]`, e.g. `0000:01:00`; Proxmox allows it for root@pam
    /// only, so API tokens cannot use it: prefer `mapping`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"0000:01:00")]
    pub host: Option<Spanned<String>>,
    /// Attach as PCIe (needs machine `q35`)
    #[serde(default)]
    #[schemars(example = true)]
    pub pcie: bool,
    /// The VM's primary GPU (`x-vga`)
    #[serde(default)]
    #[schemars(example = false)]
    pub primary_gpu: bool,
    /// Expose the device's option ROM; default: yes
    #[serde(default)]
    #[schemars(example = true)]
    pub rombar: Option<bool>,
    /// Mediated device type (vGPU), e.g. `nvidia-63`
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"nvidia-63")]
    pub mdev: Option<Spanned<String>>,
}

/// Network interface model
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawNicModel {
    /// Paravirtualised (recommended)
    Virtio,
    /// Intel E1000
    E1000,
    /// VMware vmxnet3
    Vmxnet3,
    /// Realtek RTL8139
    Rtl8139,
}

/// A network interface
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    /// Bridge on the node, e.g. `vmbr0`; default: `defaults.bridge`
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"vmbr0")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.\-]{1,15}$"))]
    pub bridge: Option<Spanned<String>>,
    /// NIC model; default `virtio`
    #[serde(default)]
    #[schemars(example = &"virtio")]
    pub model: Option<RawNicModel>,
    /// VLAN tag (1..=4094)
    #[serde(default)]
    #[schemars(with = "Option<u16>", range(min = 1, max = 4094))]
    #[schemars(example = 20)]
    pub vlan: Option<Spanned<u32>>,
    /// Enable the Proxmox firewall on this interface
    #[serde(default)]
    #[schemars(example = true)]
    pub firewall: bool,
    /// MTU (virtio only; 1 = the bridge's MTU)
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1, max = 65520))]
    #[schemars(example = 1)]
    pub mtu: Option<Spanned<u32>>,
}
