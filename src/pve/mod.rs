//! The Proxmox VE HTTP client: API-token auth, TLS, typed calls, UPID task waiting, error
//! classification. Proxmox's JSON is decoded here and never leaves this module as such. The
//! property-string codec lives in `qemu_config`, which the pure core shares.

mod client;
mod error;
mod types;
mod upid;

pub use client::{ApiToken, ClientConfig, ClusterListing, PveClient, ReadRetry};
pub use error::{LockVerdict, PveError, lock_verdict_of};
pub use types::{
    CloneRequest, DownloadRequest, GuestInterface, GuestKind, NetworkInterface, NodeSummary,
    PciMapEntry, PciMapping, PendingEntry, StorageSummary, TaskOutcome, TaskStatus, UploadRequest,
    VersionInfo, VmConfig, VmStatus, VmSummary, VolumeInfo,
};
pub use upid::{BadUpid, Upid};
