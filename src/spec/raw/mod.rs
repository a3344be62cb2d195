//! Raw spec types: shaped exactly like the YAML file, read by serde-saphyr and described by
//! schemars for the JSON Schema that editors use.
//!
//! Nothing here is validated beyond types and known keys; `validate` turns these into the domain
//! types in `model`. Fields that later checks must point at are `Spanned`, so an error can name
//! the line and column of the offending value.

mod cloud_init;
mod hardware;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

pub use cloud_init::{RawCloudInit, RawDelivery};
pub use hardware::{
    RawBus, RawCache, RawDataDisk, RawDisk, RawEfiDisk, RawExtraDisk, RawNetwork, RawNicModel,
    RawPci, RawTpm, RawTpmVersion,
};

/// A proxfleet spec: cloud images, the templates built from them, and the clones made from the
/// templates
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "proxfleet spec", extend("$id" = "https://proxfleet.dev/schema/proxfleet.schema.json"))]
pub struct RawSpec {
    /// Name of this set of resources; proxfleet records it on everything it creates and only
    /// ever changes or deletes resources of the same project. Default `default`
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"web-tier")]
    pub project: Option<Spanned<String>>,
    /// Cluster-wide defaults: the node, storages by role and bridge used where a resource does
    /// not name its own
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    /// Cloud images fetched into a Proxmox storage (content type `import`), keyed by image name
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, RawImage>")]
    pub images: IndexMap<Spanned<String>, RawImage>,
    /// Template VMs built from an image and converted to templates, keyed by template name (the
    /// VM name in Proxmox)
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, RawTemplate>")]
    pub templates: IndexMap<Spanned<String>, RawTemplate>,
    /// VMs cloned from a template, keyed by VM name (also the cloud-init hostname)
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, RawClone>")]
    pub clones: IndexMap<Spanned<String>, RawClone>,
    /// Groups of clones made alike: `count` clones named by a pattern, with vmids and IPv4
    /// addresses counting up from the first, spread over nodes; keyed by group name
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, RawCloneGroup>")]
    pub clone_groups: IndexMap<Spanned<String>, RawCloneGroup>,
}

/// Defaults for the whole cluster (the lowest layer: template < clone group < clone override them)
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Node for images, templates and clones that name none
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"pve1")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"))]
    pub node: Option<Spanned<String>>,
    /// Storages by role
    #[serde(default)]
    #[schemars(example = serde_json::json!({"images": "local", "disks": "local-lvm"}))]
    pub storage: Option<RawStorageRoles>,
    /// Bridge for network interfaces that name none
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"vmbr0")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.\-]{1,15}$"))]
    pub bridge: Option<Spanned<String>>,
    /// How proxfleet reaches the nodes over SSH (SFTP) to write cloud-init snippets, for
    /// `cloud_init.delivery: snippets`
    #[serde(default)]
    #[schemars(example = serde_json::json!({"user": "root", "key_file": "~/.ssh/id_ed25519", "host": {"pve1": "192.0.2.11"}}))]
    pub ssh: Option<RawSsh>,
}

/// SSH access to the nodes, used only to write cloud-init snippets (`cloud_init.delivery:
/// snippets`): Proxmox's API cannot write them
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    /// User to log in as; it must be able to write the snippets directory. Default `root`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"root")]
    pub user: Option<Spanned<String>>,
    /// SSH port of every node. Default 22
    #[serde(default)]
    #[schemars(with = "Option<u16>", range(min = 1, max = 65535), example = 22)]
    pub port: Option<Spanned<u64>>,
    /// Private key file (OpenSSH format, not encrypted), relative to the spec file; `~/`
    /// is the home directory. Default: the key in `PROXFLEET_SSH_KEY`, else `~/.ssh/id_ed25519`,
    /// `~/.ssh/id_ecdsa` or `~/.ssh/id_rsa`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"~/.ssh/id_ed25519")]
    pub key_file: Option<Spanned<String>>,
    /// known_hosts file the nodes' host keys are checked against, relative to the spec file;
    /// default `~/.ssh/known_hosts`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"known_hosts")]
    pub known_hosts: Option<Spanned<String>>,
    /// Accept any host key without checking it (anyone on the path can then read and change
    /// the snippets); reported as a warning
    #[serde(default)]
    #[schemars(example = false)]
    pub insecure_ignore_host_key: bool,
    /// Address to reach each node at, keyed by node name; a node not listed is reached by its
    /// name
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    #[schemars(example = serde_json::json!({"pve1": "192.0.2.11", "pve2": "pve2.example.internal"}))]
    pub host: IndexMap<Spanned<String>, Spanned<String>>,
    /// Absolute directory on the nodes that holds the snippets storage's `snippets/`; default:
    /// `/var/lib/vz/snippets` for `local`, else the storage's `path` (from
    /// `GET /storage/{storage}`, which needs `Datastore.Allocate` on it) followed by `/snippets`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"/mnt/pve/nfs-snippets/snippets")]
    pub snippets_dir: Option<Spanned<String>>,
}

/// Storages by role
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStorageRoles {
    /// Storage with the `import` content type that receives cloud images
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"local")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub images: Option<Spanned<String>>,
    /// Storage with the `images` content type for VM disks, EFI and TPM state and cloud-init drives
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"local-lvm")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub disks: Option<Spanned<String>>,
    /// Storage with the `iso` content type for the cloud-init seed ISOs proxfleet builds for
    /// custom `user_data`, `vendor_data` and `network_data`; default: the storage of the
    /// template's image
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"local")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub iso: Option<Spanned<String>>,
    /// Storage with the `snippets` content type for the cloud-init snippets proxfleet writes
    /// over SFTP for `cloud_init.delivery: snippets` (`local` keeps them in
    /// `/var/lib/vz/snippets`)
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"local")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub snippets: Option<Spanned<String>>,
}

/// A group of alike clones
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCloneGroup {
    /// How many clones (1..=1000)
    #[schemars(with = "u32", range(min = 1, max = 1000))]
    #[schemars(example = 3)]
    pub count: Spanned<u64>,
    /// Name pattern; `{n}` is replaced by 1, 2, …; default `<group>-{n}`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"web-{n}")]
    pub name: Option<Spanned<String>>,
    /// VM id of the first clone; the others count up from it
    #[schemars(with = "u64", range(min = 100, max = 999_999_999))]
    #[schemars(example = 201)]
    pub first_vmid: Spanned<u64>,
    /// Name of the template (under `templates`) to clone
    #[schemars(with = "String")]
    #[schemars(example = &"debian-12-base")]
    pub template: Spanned<String>,
    /// Nodes to spread the clones over, in turn; default: the template's node
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[schemars(example = ["pve1", "pve2"])]
    pub nodes: Vec<Spanned<String>>,
    /// Full clones (default) or linked clones (`false`)
    #[serde(default)]
    #[schemars(example = true)]
    pub full: Option<bool>,
    /// Grow the boot disk to this size (never shrinks): `40G`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"40G")]
    #[schemars(regex(pattern = r"^[0-9]+(K|k|M|G|T|KiB|MiB|GiB|TiB)$"))]
    pub disk_size: Option<Spanned<String>>,
    /// Data disks of its own, allocated empty after cloning (`keep: true`: moved to the clone's
    /// replacement, never deleted with it)
    #[serde(default)]
    #[schemars(with = "Option<Vec<RawDataDisk>>")]
    #[schemars(example = serde_json::json!([{"slot": "scsi1", "storage": "local-lvm", "size": "20G", "keep": true}]))]
    pub data_disks: Option<Vec<RawDataDisk>>,
    /// Replace the template's network interfaces, `net0` first (MAC addresses are kept)
    #[serde(default)]
    #[schemars(with = "Option<Vec<RawNetwork>>")]
    #[schemars(example = serde_json::json!([{"bridge": "vmbr0", "vlan": 20}]))]
    pub network: Option<Vec<RawNetwork>>,
    /// Override the template's cores
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1, max = 1024))]
    #[schemars(example = 2)]
    pub cores: Option<Spanned<u32>>,
    /// Override the template's memory: MiB or a size with a unit (`4GiB`)
    #[serde(default)]
    #[schemars(schema_with = "optional_string_or_integer_schema")]
    #[schemars(example = &"4GiB")]
    pub memory: Option<Spanned<String>>,
    /// Cloud-init for every clone; a static `ipv4` is the first clone's address and counts up
    #[serde(default)]
    #[schemars(example = serde_json::json!({"user": "debian", "ipv4": "192.0.2.10/24", "gateway": "192.0.2.1"}))]
    pub cloud_init: Option<RawCloudInit>,
    /// Tags (besides `proxfleet`); when given they replace the template's tags
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    #[schemars(example = ["web", "debian"])]
    pub tags: Option<Vec<Spanned<String>>>,
    /// Start the clones and keep them running; default `true`
    #[serde(default)]
    #[schemars(example = true)]
    pub start: Option<bool>,
    /// Start the clones when their node boots
    #[serde(default)]
    #[schemars(example = true)]
    pub onboot: Option<bool>,
    /// Resource pool the VM is put in (created when missing)
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"web")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9.\-_]+(/[A-Za-z0-9.\-_]+){0,2}$"))]
    pub pool: Option<Spanned<String>>,
    /// After starting the clones, wait for their address from the QEMU guest agent and show it in
    /// the apply summary (the image needs `qemu-guest-agent`, the template `agent: true`); a
    /// static `ipv4` is shown without waiting. Default `false`
    #[serde(default)]
    #[schemars(example = true)]
    pub wait_for_ip: Option<bool>,
    /// How long to wait for that address: seconds, or a number with a unit (`90s`, `5m`,
    /// `1h`); default `5m`. No address by then is a warning, not a failure
    #[serde(default)]
    #[schemars(schema_with = "optional_timeout_schema", example = &"5m")]
    pub wait_for_ip_timeout: Option<Spanned<String>>,
    /// What happens when the template gets a new build (templates with `builds`): `keep`
    /// (default: the clone stays on the build it was made from) or `replace` (the clone is
    /// made again from the new build, in a rollout)
    #[serde(default)]
    #[schemars(with = "Option<RawOnTemplateChange>", example = &"replace")]
    pub on_template_change: Option<Spanned<RawOnTemplateChange>>,
    /// How `on_template_change: replace` rolls out: batches and health check
    #[serde(default)]
    #[schemars(example = serde_json::json!({"max_unavailable": 1, "health": "agent"}))]
    pub rollout: Option<RawRollout>,
    /// Per-clone overrides, keyed by the generated clone name
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, RawCloneOverride>")]
    #[schemars(example = serde_json::json!({"web-1": {"memory": "4GiB"}}))]
    pub overrides: IndexMap<Spanned<String>, RawCloneOverride>,
}

/// Per-clone overrides inside a group
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCloneOverride {
    /// Grow the boot disk to this size (never shrinks): `40G`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"40G")]
    #[schemars(regex(pattern = r"^[0-9]+(K|k|M|G|T|KiB|MiB|GiB|TiB)$"))]
    pub disk_size: Option<Spanned<String>>,
    /// Data disks of its own, allocated empty after cloning (`keep: true`: moved to the clone's
    /// replacement, never deleted with it)
    #[serde(default)]
    #[schemars(with = "Option<Vec<RawDataDisk>>")]
    #[schemars(example = serde_json::json!([{"slot": "scsi1", "storage": "local-lvm", "size": "20G", "keep": true}]))]
    pub data_disks: Option<Vec<RawDataDisk>>,
    /// Replace the template's network interfaces, `net0` first (MAC addresses are kept)
    #[serde(default)]
    #[schemars(with = "Option<Vec<RawNetwork>>")]
    #[schemars(example = serde_json::json!([{"bridge": "vmbr0", "vlan": 20}]))]
    pub network: Option<Vec<RawNetwork>>,
    /// Override the cores
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1, max = 1024))]
    #[schemars(example = 2)]
    pub cores: Option<Spanned<u32>>,
    /// Override the memory
    #[serde(default)]
    #[schemars(schema_with = "optional_string_or_integer_schema")]
    #[schemars(example = &"4GiB")]
    pub memory: Option<Spanned<String>>,
    /// Override cloud-init settings
    #[serde(default)]
    #[schemars(example = serde_json::json!({"user": "debian", "ipv4": "192.0.2.10/24", "gateway": "192.0.2.1"}))]
    pub cloud_init: Option<RawCloudInit>,
    /// Override the tags
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    #[schemars(example = ["web", "debian"])]
    pub tags: Option<Vec<Spanned<String>>>,
    /// Override start
    #[serde(default)]
    #[schemars(example = true)]
    pub start: Option<bool>,
    /// Override start on boot
    #[serde(default)]
    #[schemars(example = true)]
    pub onboot: Option<bool>,
    /// Override `wait_for_ip`
    #[serde(default)]
    #[schemars(example = true)]
    pub wait_for_ip: Option<bool>,
}

/// A cloud image downloaded by the node into a storage with the `import` content type
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = example_image())]
pub struct RawImage {
    /// Where the image is downloaded from (http or https). A compressed image (`.gz`, `.xz`,
    /// `.zst`) needs `mode: upload`: nodes do not decompress images to import
    #[schemars(with = "String", url)]
    #[schemars(example = &"https://cloud.debian.org/images/cloud/bookworm/20250210-2019/debian-12-genericcloud-amd64-20250210-2019.qcow2")]
    pub url: Spanned<String>,
    /// Expected checksum of the file at the url (compressed, as published) as `sha256:<hex>` or
    /// `sha512:<hex>`; verified by Proxmox after download, or by proxfleet in `mode: upload`
    #[schemars(with = "String", regex(pattern = r"^(sha256|sha512):[0-9a-fA-F]+$"))]
    #[schemars(example = &"sha512:a58d86525d75fd8e139a2302531ce5d2ab75ef0273cfe78f9d53aada4b23efd45f8433b4806fa4570cfe981c8fae26f5e5e855cbd66ba2198862f28125fd2d45")]
    pub checksum: Spanned<String>,
    /// Storage that receives the file; it must have the `import` content type. Default:
    /// `defaults.storage.images`
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"local-lvm")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub storage: Option<Spanned<String>>,
    /// Node that downloads the image; default: `defaults.node`
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"pve1")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"))]
    pub node: Option<Spanned<String>>,
    /// Several nodes that each download the image (for templates on several nodes with
    /// node-local storage); instead of `node`
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[schemars(example = ["pve1", "pve2"])]
    pub nodes: Vec<Spanned<String>>,
    /// `download`: the node fetches the URL itself (default); `upload`: proxfleet fetches it,
    /// verifies the checksum, decompresses a `.gz`, `.xz` or `.zst` image and uploads it, for
    /// nodes without internet access and for images a node cannot import (compressed ones,
    /// `.img` names)
    #[serde(default)]
    #[schemars(example = &"upload")]
    pub mode: Option<RawImageMode>,
    /// File name in the storage; default: the last path segment of the url, without its
    /// compression suffix (in `mode: upload` an `.img` becomes `.qcow2`, checked when fetched).
    /// Proxmox requires `.qcow2`, `.raw` or `.vmdk` for the `import` content type, matching the
    /// image's format
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"noble-server-cloudimg-amd64.qcow2")]
    pub file_name: Option<Spanned<String>>,
}

fn example_image() -> serde_json::Value {
    serde_json::json!({
        "url": "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
        "checksum": "sha512:cafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafecafe",
        "storage": "local",
        "node": "pve1"
    })
}

/// How an image reaches the storage
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawImageMode {
    /// The node downloads it (Proxmox's download-url)
    Download,
    /// proxfleet downloads it and uploads it to the node
    Upload,
}

/// BIOS implementation of a VM
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawBios {
    /// Legacy BIOS (Proxmox's default)
    Seabios,
    /// UEFI; brings an EFI disk that keeps the EFI variables
    Ovmf,
}

/// A template: a base VM built from an image, configured, then converted to a template
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    /// VM id of the template (100..=999999999)
    #[schemars(with = "u64", range(min = 100, max = 999_999_999))]
    #[schemars(example = 9000)]
    pub vmid: Spanned<u64>,
    /// Node the template lives on; default: `defaults.node`
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"pve1")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"))]
    pub node: Option<Spanned<String>>,
    /// Name of the image (under `images`) whose disk becomes the boot disk
    #[schemars(with = "String")]
    #[schemars(example = &"debian-12")]
    pub image: Spanned<String>,
    /// Machine type, e.g. `q35` or `pc`; default: Proxmox's (`pc`)
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"q35")]
    #[schemars(regex(
        pattern = r"^(pc|pc(-i440fx)?-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|q35|pc-q35-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|virt(?:-\d+(\.\d+)+)?(\+pve\d+)?)$"
    ))]
    pub machine: Option<Spanned<String>>,
    /// BIOS: `seabios` (default) or `ovmf` (UEFI)
    #[serde(default)]
    #[schemars(example = &"ovmf")]
    pub bios: Option<RawBios>,
    /// EFI disk, for `bios: ovmf`; default: on the boot disk's storage
    #[serde(default)]
    #[schemars(example = serde_json::json!({"pre_enrolled_keys": true}))]
    pub efi_disk: Option<RawEfiDisk>,
    /// TPM state disk
    #[serde(default)]
    #[schemars(example = serde_json::json!({"version": "v2.0"}))]
    pub tpm: Option<RawTpm>,
    /// CPU type, e.g. `host` or `x86-64-v2-AES`; default: Proxmox's
    #[serde(default)]
    #[schemars(example = &"host")]
    pub cpu: Option<String>,
    /// CPU cores per socket
    #[serde(default = "default_cores")]
    #[schemars(with = "u32", range(min = 1, max = 1024))]
    #[schemars(example = 2)]
    pub cores: Spanned<u32>,
    /// CPU sockets
    #[serde(default = "default_sockets")]
    #[schemars(with = "u32", range(min = 1, max = 16))]
    #[schemars(example = 1)]
    pub sockets: Spanned<u32>,
    /// Memory: a number of MiB, or a size with a unit (`2GiB`, `2048MiB`)
    #[serde(default = "default_memory")]
    #[schemars(schema_with = "string_or_integer_schema", example = &"2GiB")]
    pub memory: Spanned<String>,
    /// The boot disk, imported from the image and resized
    #[schemars(example = serde_json::json!({"storage": "local-lvm", "size": "20G", "discard": true, "ssd": true}))]
    pub disk: RawDisk,
    /// More disks, empty, after the boot disk on its bus (`scsi1`, `scsi2`, …)
    #[serde(default)]
    #[schemars(example = serde_json::json!([{"size": "100G"}]))]
    pub extra_disks: Vec<RawExtraDisk>,
    /// Network interfaces, `net0` first
    #[serde(default)]
    #[schemars(example = serde_json::json!([{"bridge": "vmbr0", "vlan": 20}]))]
    pub network: Vec<RawNetwork>,
    /// PCI devices passed through (GPUs, NICs, HBAs), `hostpci0` first
    #[serde(default)]
    #[schemars(example = serde_json::json!([{"mapping": "gpu0", "pcie": true}]))]
    pub pci: Vec<RawPci>,
    /// Enable the QEMU guest agent
    #[serde(default)]
    #[schemars(example = true)]
    pub agent: bool,
    /// Add a serial console and use it as the display (many cloud images expect one)
    #[serde(default)]
    #[schemars(example = true)]
    pub serial_console: bool,
    /// Guest OS type, one of Proxmox's `ostype` values: `l26` (Linux 2.6+, the default), `l24`,
    /// `win11`, `win10`, `win8`, `win7`, `wvista`, `w2k8`, `w2k3`, `w2k`, `wxp`, `solaris`, `other`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"l26")]
    #[schemars(extend("enum" = ["other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24", "l26", "solaris", null]))]
    pub ostype: Option<Spanned<String>>,
    /// Cloud-init settings baked into the template; clones inherit them
    #[serde(default)]
    #[schemars(example = serde_json::json!({"user": "debian", "ipv4": "192.0.2.10/24", "gateway": "192.0.2.1"}))]
    pub cloud_init: Option<RawCloudInit>,
    /// Tags (besides `proxfleet`, which is always added)
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[schemars(example = ["web", "debian"])]
    pub tags: Vec<Spanned<String>>,
    /// Free text shown in the Proxmox UI notes; proxfleet appends its ownership line
    #[serde(default)]
    #[schemars(with = "Option<String>", length(max = 7936))]
    #[schemars(example = &"Web tier, managed in git")]
    pub description: Option<Spanned<String>>,
    /// Resource pool the template is put in (created when missing); also the default of its
    /// clones
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"templates")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9.\-_]+(/[A-Za-z0-9.\-_]+){0,2}$"))]
    pub pool: Option<Spanned<String>>,
    /// Start-on-boot default of the clones made from this template
    #[serde(default)]
    #[schemars(example = true)]
    pub onboot: Option<bool>,
    /// Take over a VM that already holds this vmid but was not made by proxfleet: the plan shows
    /// it as an adoption (marker and tag written, declared settings applied); without it such a
    /// VM is a conflict. Never adopts by replacing
    #[serde(default)]
    #[schemars(example = true)]
    pub adopt: bool,
    /// `wait_for_ip` default of the clones made from this template
    #[serde(default)]
    #[schemars(example = true)]
    pub wait_for_ip: Option<bool>,
    /// `wait_for_ip_timeout` default of the clones made from this template
    #[serde(default)]
    #[schemars(schema_with = "optional_timeout_schema", example = &"5m")]
    pub wait_for_ip_timeout: Option<Spanned<String>>,
    /// Keep builds side by side (2..=100): the vmids `vmid` .. `vmid + builds - 1` are the
    /// template's. A changed image or recipe makes a new build at the next free vmid of that
    /// range beside the old one, which is kept while clones made from it remain. Without it a
    /// change rebuilds the template in place
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 2, max = 100))]
    #[schemars(example = 3)]
    pub builds: Option<Spanned<u64>>,
}

fn default_cores() -> Spanned<u32> {
    unplaced(1)
}
fn default_sockets() -> Spanned<u32> {
    unplaced(1)
}
/// A default value: it has no place in the file.
fn unplaced<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}
/// Memory as the loader takes it: a bare number of MiB, or text with a binary unit.
fn string_or_integer_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["string", "integer"], "minimum": 16, "pattern": "^[0-9]+(K|k|M|G|T|KiB|MiB|GiB|TiB)?$"})
}

/// [`string_or_integer_schema`] for a memory that may be absent.
fn optional_string_or_integer_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["string", "integer", "null"], "minimum": 16, "pattern": "^[0-9]+(K|k|M|G|T|KiB|MiB|GiB|TiB)?$"})
}

/// A time-out as the loader takes it: whole seconds, or a number with `s`, `m` or `h`.
fn optional_timeout_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["string", "integer", "null"], "minimum": 1, "maximum": 86400, "pattern": "^[0-9]+(s|m|h)?$"})
}

fn default_memory() -> Spanned<String> {
    Spanned::new(
        "512".to_string(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

/// A VM cloned from a template
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClone {
    /// VM id of the clone (100..=999999999)
    #[schemars(with = "u64", range(min = 100, max = 999_999_999))]
    #[schemars(example = 9000)]
    pub vmid: Spanned<u64>,
    /// Name of the template (under `templates`) to clone
    #[schemars(with = "String")]
    #[schemars(example = &"debian-12-base")]
    pub template: Spanned<String>,
    /// Node the clone runs on; default: the template's node
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"pve1")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"))]
    pub node: Option<Spanned<String>>,
    /// Full clone (independent copy); `false` makes a linked clone. Default `true`
    #[serde(default)]
    #[schemars(example = true)]
    pub full: Option<bool>,
    /// Storage for a full clone's disks; default: the template's. Not for linked clones
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"local-lvm")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub storage: Option<Spanned<String>>,
    /// Grow the boot disk to this size (never shrinks): `40G`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"40G")]
    #[schemars(regex(pattern = r"^[0-9]+(K|k|M|G|T|KiB|MiB|GiB|TiB)$"))]
    pub disk_size: Option<Spanned<String>>,
    /// Data disks of its own, allocated empty after cloning (`keep: true`: moved to the clone's
    /// replacement, never deleted with it)
    #[serde(default)]
    #[schemars(with = "Option<Vec<RawDataDisk>>")]
    #[schemars(example = serde_json::json!([{"slot": "scsi1", "storage": "local-lvm", "size": "20G", "keep": true}]))]
    pub data_disks: Option<Vec<RawDataDisk>>,
    /// Replace the template's network interfaces, `net0` first (MAC addresses are kept)
    #[serde(default)]
    #[schemars(with = "Option<Vec<RawNetwork>>")]
    #[schemars(example = serde_json::json!([{"bridge": "vmbr0", "vlan": 20}]))]
    pub network: Option<Vec<RawNetwork>>,
    /// Override the template's cores
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1, max = 1024))]
    #[schemars(example = 2)]
    pub cores: Option<Spanned<u32>>,
    /// Override the template's memory: MiB or a size with a unit (`4GiB`)
    #[serde(default)]
    #[schemars(schema_with = "optional_string_or_integer_schema")]
    #[schemars(example = &"4GiB")]
    pub memory: Option<Spanned<String>>,
    /// Cloud-init settings for this clone (override the template's)
    #[serde(default)]
    #[schemars(example = serde_json::json!({"user": "debian", "ipv4": "192.0.2.10/24", "gateway": "192.0.2.1"}))]
    pub cloud_init: Option<RawCloudInit>,
    /// Tags (besides `proxfleet`); when given they replace the template's tags on this clone
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    #[schemars(example = ["web", "debian"])]
    pub tags: Option<Vec<Spanned<String>>>,
    /// Start the clone after creating it, and keep it running; default `true`
    #[serde(default)]
    #[schemars(example = true)]
    pub start: Option<bool>,
    /// Start the clone when the node boots
    #[serde(default)]
    #[schemars(example = true)]
    pub onboot: Option<bool>,
    /// Free text shown in the Proxmox UI notes; proxfleet appends its ownership line
    #[serde(default)]
    #[schemars(with = "Option<String>", length(max = 7936))]
    #[schemars(example = &"Web tier, managed in git")]
    pub description: Option<Spanned<String>>,
    /// Resource pool the VM is put in (created when missing)
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"web")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9.\-_]+(/[A-Za-z0-9.\-_]+){0,2}$"))]
    pub pool: Option<Spanned<String>>,
    /// Take over a VM that already holds this vmid but was not made by proxfleet: the plan shows
    /// it as an adoption (marker and tag written, declared settings applied); without it such a
    /// VM is a conflict. Never adopts by replacing
    #[serde(default)]
    #[schemars(example = true)]
    pub adopt: bool,
    /// After starting the clone, wait for its address from the QEMU guest agent and show it in
    /// the apply summary (the image needs `qemu-guest-agent`, the template `agent: true`); a
    /// static `ipv4` is shown without waiting. Default `false`
    #[serde(default)]
    #[schemars(example = true)]
    pub wait_for_ip: Option<bool>,
    /// How long to wait for that address: seconds, or a number with a unit (`90s`, `5m`,
    /// `1h`); default `5m`. No address by then is a warning, not a failure
    #[serde(default)]
    #[schemars(schema_with = "optional_timeout_schema", example = &"5m")]
    pub wait_for_ip_timeout: Option<Spanned<String>>,
    /// What happens when the template gets a new build (templates with `builds`): `keep`
    /// (default: the clone stays on the build it was made from) or `replace` (the clone is
    /// made again from the new build, in a rollout)
    #[serde(default)]
    #[schemars(with = "Option<RawOnTemplateChange>", example = &"replace")]
    pub on_template_change: Option<Spanned<RawOnTemplateChange>>,
    /// How `on_template_change: replace` rolls out: batches and health check
    #[serde(default)]
    #[schemars(example = serde_json::json!({"max_unavailable": 1, "health": "agent"}))]
    pub rollout: Option<RawRollout>,
}

/// What a clone does when its template gets a new build
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawOnTemplateChange {
    /// Stay on the build it was made from
    Keep,
    /// Be made again from the new build, in batches
    Replace,
}

/// How clones move to a template's new build
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    /// How many clones of the group are replaced at once: a count (`1`, the default) or a
    /// percentage of the group (`25%`, at least one)
    #[serde(default)]
    #[schemars(schema_with = "max_unavailable_schema", example = &"25%")]
    pub max_unavailable: Option<Spanned<String>>,
    /// How a replaced clone is found healthy before the next batch: `agent` (default: the QEMU
    /// guest agent answers and reports the clone's static address, within
    /// `wait_for_ip_timeout`) or `none`
    #[serde(default)]
    #[schemars(with = "Option<RawHealth>", example = &"agent")]
    pub health: Option<Spanned<RawHealth>>,
}

/// A replaced clone's health check
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawHealth {
    /// The guest agent answers (and reports the static address)
    Agent,
    /// No check
    None,
}

/// `max_unavailable` as the loader takes it: a count or a percentage.
fn max_unavailable_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["string", "integer", "null"], "minimum": 1, "pattern": "^[0-9]+%?$"})
}
