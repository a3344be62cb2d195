//! Validated domain types of a spec. They do not derive `Deserialize`: the only way to get one is
//! through `spec::load`, which has checked every invariant the rest of proxfleet relies on.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

use super::rollout::{OnTemplateChange, Rollout};
use crate::secret::Secret;

/// A Proxmox VM id, known to be in 100..=999999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmId(u32);

impl VmId {
    /// Smallest VM id Proxmox accepts.
    pub const MIN: u32 = 100;
    /// Largest VM id Proxmox accepts.
    pub const MAX: u32 = 999_999_999;

    /// The id, if it lies in Proxmox's range.
    pub fn new(id: u64) -> Option<VmId> {
        u32::try_from(id)
            .ok()
            .filter(|id| (Self::MIN..=Self::MAX).contains(id))
            .map(VmId)
    }

    /// The raw number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A validated spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Project name recorded in ownership markers.
    pub project: String,
    /// Storage for cloud-init seed ISOs (`defaults.storage.iso`); default: the template image's.
    pub iso_storage: Option<String>,
    /// Storage for cloud-init snippets (`defaults.storage.snippets`); set whenever a
    /// cloud-init block asks for `delivery: snippets`.
    pub snippets_storage: Option<String>,
    /// SSH access to the nodes, for writing snippets (`defaults.ssh`).
    pub ssh: SshSettings,
    /// Cloud images, in file order.
    pub images: Vec<Image>,
    /// Templates, in file order.
    pub templates: Vec<Template>,
    /// Clones, in file order.
    pub clones: Vec<CloneVm>,
}

/// How proxfleet logs in to the nodes to write cloud-init snippets over SFTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    /// Login user.
    pub user: String,
    /// Port of every node.
    pub port: u16,
    /// Private key file, resolved against the spec's directory; `None` for the key in
    /// `PROXFLEET_SSH_KEY` or the user's default keys.
    pub key_file: Option<std::path::PathBuf>,
    /// known_hosts file, resolved; `None` for `~/.ssh/known_hosts`.
    pub known_hosts: Option<std::path::PathBuf>,
    /// Accept any host key.
    pub insecure_ignore_host_key: bool,
    /// Address per node; a node not listed is reached by its name.
    pub hosts: std::collections::BTreeMap<String, String>,
    /// The directory on the nodes behind `<snippets storage>:snippets/`, when the spec gives it.
    pub snippets_dir: Option<String>,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            user: "root".to_string(),
            port: 22,
            key_file: None,
            known_hosts: None,
            insecure_ignore_host_key: false,
            hosts: std::collections::BTreeMap::new(),
            snippets_dir: None,
        }
    }
}

impl SshSettings {
    /// The address a node is reached at.
    pub fn host_of<'a>(&'a self, node: &'a str) -> &'a str {
        self.hosts.get(node).map_or(node, String::as_str)
    }
}

/// How custom cloud-init data reaches a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// A NoCloud seed ISO uploaded through the API, in place of Proxmox's cloud-init drive.
    #[default]
    Iso,
    /// Snippets written over SFTP, referenced with `cicustom`; Proxmox's drive stays.
    Snippets,
}

impl Delivery {
    /// The spec's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Iso => "iso",
            Delivery::Snippets => "snippets",
        }
    }
}

/// A checksum algorithm Proxmox's download-url accepts and the spec allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    /// SHA-256
    Sha256,
    /// SHA-512
    Sha512,
}

impl ChecksumAlgorithm {
    /// The name Proxmox uses (`checksum-algorithm`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Sha256 => "sha256",
            ChecksumAlgorithm::Sha512 => "sha512",
        }
    }
}

/// An expected checksum: algorithm and lower-case hex digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// The algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// The digest, lower-case hex of the right length.
    pub hex: String,
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

/// A cloud image to fetch into an `import` storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Name in the spec.
    pub name: String,
    /// Download URL.
    pub url: String,
    /// Expected checksum.
    pub checksum: Checksum,
    /// Target storage.
    pub storage: String,
    /// Nodes that download it (at least one).
    pub nodes: Vec<String>,
    /// How it reaches the storage.
    pub mode: ImageMode,
    /// File name in the storage, as given or taken from the URL (ends in `.qcow2`, `.raw` or
    /// `.vmdk`; a compression suffix dropped, `.img` named `.qcow2`).
    pub file_name: String,
    /// How the file at the URL is compressed (`mode: upload` only: proxfleet decompresses it
    /// before uploading).
    pub compression: Option<Compression>,
}

/// How a published image is compressed, as its URL's file name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `.gz`
    Gzip,
    /// `.xz`
    Xz,
    /// `.zst`
    Zstd,
}

impl Compression {
    /// The format's name, as `file` or `tar` would say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// A file name without its compression suffix, and the compression.
    ///
    /// ```
    /// use proxfleet::spec::Compression;
    /// assert_eq!(Compression::split("noble.img.xz"), ("noble.img", Some(Compression::Xz)));
    /// assert_eq!(Compression::split("noble.qcow2"), ("noble.qcow2", None));
    /// ```
    pub fn split(name: &str) -> (&str, Option<Compression>) {
        for (suffix, compression) in [
            (".gz", Compression::Gzip),
            (".xz", Compression::Xz),
            (".zst", Compression::Zstd),
        ] {
            if let Some(inner) = name.strip_suffix(suffix) {
                return (inner, Some(compression));
            }
        }
        (name, None)
    }
}

impl Image {
    /// The name the file gets in the storage: content-addressed, `<stem>-<first 12 hex digits
    /// of the checksum>.<ext>`. Proxmox keeps no notes on import volumes, so the name is what
    /// says which content a file has: a file with this name is this image, verified by Proxmox
    /// when it was downloaded, and a changed checksum is a new file.
    pub fn stored_name(&self) -> String {
        let (stem, ext) = self
            .file_name
            .rsplit_once('.')
            .unwrap_or((self.file_name.as_str(), "qcow2"));
        format!(
            "{stem}-{}.{ext}",
            &self.checksum.hex[..12.min(self.checksum.hex.len())]
        )
    }

    /// The Proxmox volume id the image has once downloaded.
    pub fn volid(&self) -> String {
        format!("{}:import/{}", self.storage, self.stored_name())
    }

    /// Whether `volid` is an earlier copy of this image: same storage, stem and extension, a
    /// different 12-hex-digit content tag.
    pub fn is_stale_copy(&self, volid: &str) -> bool {
        let (stem, ext) = self
            .file_name
            .rsplit_once('.')
            .unwrap_or((self.file_name.as_str(), "qcow2"));
        let Some(name) = volid.strip_prefix(&format!("{}:import/{stem}-", self.storage)) else {
            return false;
        };
        let Some(tag) = name.strip_suffix(&format!(".{ext}")) else {
            return false;
        };
        tag.len() == 12
            && tag
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && volid != self.volid()
    }
}

/// How an image reaches the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageMode {
    /// The node fetches it (download-url).
    Download,
    /// proxfleet fetches, verifies and uploads it.
    Upload,
}

/// BIOS implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bios {
    /// Legacy BIOS.
    SeaBios,
    /// UEFI.
    Ovmf,
}

/// EFI disk of an OVMF VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EfiDisk {
    /// Storage.
    pub storage: String,
    /// Secure Boot keys enrolled.
    pub pre_enrolled_keys: bool,
}

/// TPM version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpmVersion {
    /// 1.2
    V12,
    /// 2.0
    V20,
}

impl TpmVersion {
    /// Proxmox's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TpmVersion::V12 => "v1.2",
            TpmVersion::V20 => "v2.0",
        }
    }
}

/// TPM state disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tpm {
    /// Storage.
    pub storage: String,
    /// Version.
    pub version: TpmVersion,
}

/// Disk bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    /// VirtIO SCSI.
    Scsi,
    /// VirtIO block.
    Virtio,
    /// SATA.
    Sata,
}

impl DiskBus {
    /// Proxmox's option prefix (`scsi`, `virtio`, `sata`).
    pub fn as_str(self) -> &'static str {
        match self {
            DiskBus::Scsi => "scsi",
            DiskBus::Virtio => "virtio",
            DiskBus::Sata => "sata",
        }
    }
}

/// A disk size in bytes, whole mebibytes at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiskSize(pub u64);

impl DiskSize {
    /// Proxmox's way of printing a size: the largest unit that divides it exactly.
    ///
    /// ```
    /// use proxfleet::spec::DiskSize;
    /// assert_eq!(DiskSize(20 << 30).to_proxmox(), "20G");
    /// assert_eq!(DiskSize(3584 << 20).to_proxmox(), "3584M");
    /// ```
    pub fn to_proxmox(self) -> String {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "T"),
            (1 << 30, "G"),
            (1 << 20, "M"),
            (1 << 10, "K"),
        ];
        for (factor, unit) in UNITS {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return format!("{}{unit}", self.0 / factor);
            }
        }
        self.0.to_string()
    }
}

/// The boot disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootDisk {
    /// Bus.
    pub bus: DiskBus,
    /// Storage.
    pub storage: String,
    /// Size after import.
    pub size: DiskSize,
    /// Pass discard.
    pub discard: bool,
    /// Emulate an SSD.
    pub ssd: bool,
    /// Own I/O thread.
    pub iothread: bool,
    /// Cache mode (`none`, `writeback`, …).
    pub cache: Option<String>,
}

impl BootDisk {
    /// The Proxmox option name of the boot disk (`scsi0`, `virtio0`, `sata0`).
    pub fn slot(&self) -> String {
        format!("{}0", self.bus.as_str())
    }
}

/// An extra, empty disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraDisk {
    /// Option name (`scsi1`).
    pub slot: String,
    /// Storage.
    pub storage: String,
    /// Size, whole GiB.
    pub size: DiskSize,
    /// Pass discard.
    pub discard: bool,
}

/// A clone's own data disk (`data_disks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDisk {
    /// Option name (`scsi1`).
    pub slot: String,
    /// Storage.
    pub storage: String,
    /// Size, whole GiB.
    pub size: DiskSize,
    /// Pass discard.
    pub discard: bool,
    /// Moved to the clone's replacement rather than deleted with it.
    pub keep: bool,
}

impl DataDisk {
    /// The value that allocates it: `local-lvm:20,discard=on`.
    pub fn allocation(&self) -> String {
        let mut value = format!("{}:{}", self.storage, self.size.0 >> 30);
        if self.discard {
            value.push_str(",discard=on");
        }
        value
    }
}

/// NIC model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    /// VirtIO.
    Virtio,
    /// E1000.
    E1000,
    /// vmxnet3.
    Vmxnet3,
    /// RTL8139.
    Rtl8139,
}

impl NicModel {
    /// Proxmox's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio",
            NicModel::E1000 => "e1000",
            NicModel::Vmxnet3 => "vmxnet3",
            NicModel::Rtl8139 => "rtl8139",
        }
    }
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Model.
    pub model: NicModel,
    /// Bridge.
    pub bridge: String,
    /// VLAN tag.
    pub vlan: Option<u16>,
    /// Firewall on.
    pub firewall: bool,
    /// MTU.
    pub mtu: Option<u32>,
}

/// A PCI device passed through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    /// Resource mapping id, or raw host address.
    pub source: PciSource,
    /// PCIe.
    pub pcie: bool,
    /// Primary GPU.
    pub primary_gpu: bool,
    /// Option ROM.
    pub rombar: Option<bool>,
    /// Mediated device type.
    pub mdev: Option<String>,
}

/// Where a passed-through PCI device comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PciSource {
    /// A cluster resource mapping.
    Mapping(String),
    /// A raw host address (root@pam only).
    Host(String),
}

impl PciDevice {
    /// The `hostpciN` property string.
    pub fn to_proxmox(&self) -> String {
        let mut value = match &self.source {
            PciSource::Mapping(id) => format!("mapping={id}"),
            PciSource::Host(addr) => addr.clone(),
        };
        if let Some(mdev) = &self.mdev {
            value.push_str(&format!(",mdev={mdev}"));
        }
        if self.pcie {
            value.push_str(",pcie=1");
        }
        if let Some(rombar) = self.rombar {
            value.push_str(&format!(",rombar={}", u8::from(rombar)));
        }
        if self.primary_gpu {
            value.push_str(",x-vga=1");
        }
        value
    }
}

/// IPv4 configuration of `net0` through cloud-init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Config {
    /// DHCP.
    Dhcp,
    /// Static address with optional gateway.
    Static {
        /// Address and prefix.
        address: Ipv4Net,
        /// Gateway, inside the subnet.
        gateway: Option<Ipv4Addr>,
    },
}

/// IPv6 configuration of `net0` through cloud-init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Config {
    /// DHCPv6.
    Dhcp,
    /// SLAAC (`auto`).
    Auto,
    /// Static address with optional gateway.
    Static {
        /// Address and prefix.
        address: Ipv6Net,
        /// Gateway.
        gateway: Option<Ipv6Addr>,
    },
}

/// The `ipconfig0` property string for the given IPv4 and IPv6 settings, keys sorted as
/// Proxmox prints them.
///
/// ```
/// use proxfleet::spec::{ipconfig, Ipv4Config, Ipv6Config};
/// let v4 = Ipv4Config::Static { address: "192.0.2.10/24".parse().unwrap(), gateway: Some("192.0.2.1".parse().unwrap()) };
/// assert_eq!(ipconfig(Some(v4), Some(Ipv6Config::Auto)).as_deref(), Some("gw=192.0.2.1,ip=192.0.2.10/24,ip6=auto"));
/// assert_eq!(ipconfig(None, None), None);
/// ```
pub fn ipconfig(ipv4: Option<Ipv4Config>, ipv6: Option<Ipv6Config>) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(Ipv4Config::Static {
        gateway: Some(gw), ..
    }) = ipv4
    {
        parts.push(format!("gw={gw}"));
    }
    if let Some(Ipv6Config::Static {
        gateway: Some(gw), ..
    }) = ipv6
    {
        parts.push(format!("gw6={gw}"));
    }
    match ipv4 {
        Some(Ipv4Config::Dhcp) => parts.push("ip=dhcp".into()),
        Some(Ipv4Config::Static { address, .. }) => parts.push(format!("ip={address}")),
        None => {}
    }
    match ipv6 {
        Some(Ipv6Config::Dhcp) => parts.push("ip6=dhcp".into()),
        Some(Ipv6Config::Auto) => parts.push("ip6=auto".into()),
        Some(Ipv6Config::Static { address, .. }) => parts.push(format!("ip6={address}")),
        None => {}
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Cloud-init settings. Every field is optional: what is not given is inherited or left as
/// Proxmox sets it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloudInit {
    /// Storage of the cloud-init drive (templates only).
    pub storage: Option<String>,
    /// Default user.
    pub user: Option<String>,
    /// The user's password, resolved from its reference; never printed.
    pub password: Option<Secret>,
    /// OpenSSH public keys (inline and from files).
    pub ssh_keys: Vec<String>,
    /// IPv4 of `net0`.
    pub ipv4: Option<Ipv4Config>,
    /// IPv6 of `net0`.
    pub ipv6: Option<Ipv6Config>,
    /// Name servers.
    pub nameservers: Vec<IpAddr>,
    /// Search domain.
    pub searchdomain: Option<String>,
    /// Package upgrade on first boot.
    pub upgrade: Option<bool>,
    /// Custom user-data.
    pub user_data: Option<CustomData>,
    /// Custom vendor-data.
    pub vendor_data: Option<CustomData>,
    /// Custom network-config.
    pub network_data: Option<CustomData>,
    /// IP settings of `net1`, `net2`, … in order.
    pub extra_interfaces: Vec<InterfaceIp>,
    /// How custom data reaches the guest; `None` for the default (`iso`).
    pub delivery: Option<Delivery>,
}

/// IP settings of one more network interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InterfaceIp {
    /// IPv4.
    pub ipv4: Option<Ipv4Config>,
    /// IPv6.
    pub ipv6: Option<Ipv6Config>,
}

/// Proxmox's stock storages that are local to each node (`local`, `local-lvm`, `local-zfs`):
/// a disk on them cannot be cloned to another node directly.
pub fn is_node_local_storage(storage: &str) -> bool {
    matches!(storage, "local" | "local-lvm" | "local-zfs")
}

/// A custom cloud-init file, read when the spec was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomData {
    /// The path as the spec gives it (relative to the spec file).
    pub path: String,
    /// The file's content.
    pub content: String,
}

impl CloudInit {
    /// Whether this block carries custom data (delivered as `delivery` says).
    pub fn has_custom_data(&self) -> bool {
        self.user_data.is_some() || self.vendor_data.is_some() || self.network_data.is_some()
    }
}

/// A template VM.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Name (VM name in Proxmox).
    pub name: String,
    /// VM id.
    pub vmid: VmId,
    /// Node.
    pub node: String,
    /// Image name.
    pub image: String,
    /// Machine type.
    pub machine: Option<String>,
    /// BIOS.
    pub bios: Bios,
    /// EFI disk (present exactly when `bios` is OVMF).
    pub efi_disk: Option<EfiDisk>,
    /// TPM.
    pub tpm: Option<Tpm>,
    /// CPU type.
    pub cpu: Option<String>,
    /// Cores per socket.
    pub cores: u32,
    /// Sockets.
    pub sockets: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Boot disk.
    pub disk: BootDisk,
    /// NICs, `net0` first.
    pub networks: Vec<Network>,
    /// PCI devices, `hostpci0` first.
    pub pci: Vec<PciDevice>,
    /// Extra empty disks, in slot order after the boot disk.
    pub extra_disks: Vec<ExtraDisk>,
    /// Guest agent.
    pub agent: bool,
    /// Serial console as display.
    pub serial_console: bool,
    /// OS type.
    pub ostype: String,
    /// Cloud-init.
    pub cloud_init: Option<CloudInit>,
    /// User tags (lower-case, sorted, unique).
    pub tags: Vec<String>,
    /// User description.
    pub description: Option<String>,
    /// Resource pool.
    pub pool: Option<String>,
    /// Start-on-boot default of its clones.
    pub onboot: Option<bool>,
    /// Take over an unmanaged VM at its vmid.
    pub adopt: bool,
    /// `wait_for_ip` default of its clones.
    pub wait_for_ip: Option<bool>,
    /// `wait_for_ip_timeout` default of its clones.
    pub wait_for_ip_timeout: Option<Duration>,
    /// Builds kept side by side (`builds`): the vmids `vmid .. vmid + builds`; `None` rebuilds
    /// in place.
    pub builds: Option<u32>,
}

/// A clone of a template.
#[derive(Debug, Clone, PartialEq)]
pub struct CloneVm {
    /// Name (VM name and hostname).
    pub name: String,
    /// VM id.
    pub vmid: VmId,
    /// Template name.
    pub template: String,
    /// Node (`settings.node`'s value).
    pub node: String,
    /// Full (true) or linked (false) (`settings.full`'s value).
    pub full: bool,
    /// Target storage of a full clone.
    pub storage: Option<String>,
    /// Boot disk size to grow to.
    pub disk_size: Option<DiskSize>,
    /// Its own data disks, in the spec's order.
    pub data_disks: Vec<DataDisk>,
    /// The layer that declares them (`validate --explain`); `None` when none does.
    pub data_disks_origin: Option<crate::spec::Origin>,
    /// Network interfaces its own layers declare in place of the template's (the effective
    /// ones are `settings.networks`).
    pub networks: Option<Vec<Network>>,
    /// Cloud-init its own layers declare (the effective block is `settings.cloud_init`).
    pub cloud_init: Option<CloudInit>,
    /// User description.
    pub description: Option<String>,
    /// The clone group it was expanded from, if any.
    pub group: Option<String>,
    /// Take over an unmanaged VM at its vmid.
    pub adopt: bool,
    /// Every setting its layers give it (defaults < template < group < clone), each resolved
    /// once with its origin: what the graph asks of Proxmox and what `--explain` shows.
    pub settings: crate::spec::CloneSettings,
    /// What happens when its template gets a new build.
    pub on_template_change: OnTemplateChange,
    /// How a `replace` rolls out.
    pub rollout: Rollout,
}

/// How long `wait_for_ip` waits when no layer sets `wait_for_ip_timeout`.
pub const DEFAULT_WAIT_FOR_IP_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// A duration as a spec writes it: `5m`, `90s`, `1h30m`.
///
/// ```
/// use std::time::Duration;
/// use proxfleet::spec::human_duration;
/// assert_eq!(human_duration(Duration::from_secs(300)), "5m");
/// assert_eq!(human_duration(Duration::from_secs(90)), "1m30s");
/// assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
/// ```
pub fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration.subsec_millis() != 0 || secs == 0 {
        return format!("{}s", duration.as_secs_f64());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// Where an effective value of a clone comes from (`validate --explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    /// Field, e.g. `memory`.
    pub field: String,
    /// Effective value as shown to the user.
    pub value: String,
    /// The layer that set it (`spec::Layer` as the spec names it): `clones.web-1`,
    /// `clone_groups.web`, `clone_groups.web.overrides.web-2`, `templates.base`, `defaults`, or
    /// `proxfleet default`; `ipconfig0` names two when IPv4 and IPv6 come from different layers.
    pub source: String,
}
