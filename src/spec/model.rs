//! Validated domain types of a spec. They do not derive `Deserialize`: the only way to get one is
//! through `spec::load`, which has checked every invariant the rest of proxfleet relies on.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

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
    /// Cloud images, in file order.
    pub images: Vec<Image>,
    /// Templates, in file order.
    pub templates: Vec<Template>,
    /// Clones, in file order.
    pub clones: Vec<CloneVm>,
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
    /// Node that downloads it.
    pub node: String,
    /// File name in the storage (ends in `.qcow2`, `.raw` or `.vmdk`).
    pub file_name: String,
}

impl Image {
    /// The Proxmox volume id the image has once downloaded.
    pub fn volid(&self) -> String {
        format!("{}:import/{}", self.storage, self.file_name)
    }
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
}

impl BootDisk {
    /// The Proxmox option name of the boot disk (`scsi0`, `virtio0`, `sata0`).
    pub fn slot(&self) -> String {
        format!("{}0", self.bus.as_str())
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

impl Ipv4Config {
    /// The `ipconfig0` property string.
    pub fn to_proxmox(self) -> String {
        match self {
            Ipv4Config::Dhcp => "ip=dhcp".to_string(),
            Ipv4Config::Static {
                address,
                gateway: Some(gw),
            } => format!("gw={gw},ip={address}"),
            Ipv4Config::Static {
                address,
                gateway: None,
            } => format!("ip={address}"),
        }
    }
}

/// Cloud-init settings. Every field is optional: what is not given is inherited or left as
/// Proxmox sets it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloudInit {
    /// Storage of the cloud-init drive (templates only).
    pub storage: Option<String>,
    /// Default user.
    pub user: Option<String>,
    /// OpenSSH public keys.
    pub ssh_keys: Vec<String>,
    /// IPv4 of `net0`.
    pub ipv4: Option<Ipv4Config>,
    /// Package upgrade on first boot.
    pub upgrade: Option<bool>,
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
    /// Node.
    pub node: String,
    /// Full (true) or linked (false).
    pub full: bool,
    /// Cores override.
    pub cores: Option<u32>,
    /// Memory override in MiB.
    pub memory_mib: Option<u64>,
    /// Cloud-init overrides.
    pub cloud_init: Option<CloudInit>,
    /// Tags override (lower-case, sorted, unique).
    pub tags: Option<Vec<String>>,
    /// Keep running.
    pub start: bool,
    /// Start on node boot.
    pub onboot: Option<bool>,
    /// User description.
    pub description: Option<String>,
}
