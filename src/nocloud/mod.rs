//! NoCloud cloud-init seeds, built in memory: an ISO 9660 image writer with Rock Ridge and
//! Joliet names (what `genisoimage -iso-level 3 -R -J -V cidata` makes, and what Proxmox itself
//! attaches), the seed's `meta-data` and content-addressed file name, a merge of a user's
//! `#cloud-config` with the user proxfleet declares, and a network-config (version 2) renderer.
//!
//! Pure: no clock, no I/O, no other proxfleet module. The same inputs give the same bytes, so a
//! seed ISO can be named by its hash and a file with the desired name *is* the seed.
//! The rooms: `iso9660` (the writer, with `rock_ridge` and `joliet`), `meta_data` (the seed,
//! its `instance-id` and ISO name), `user_data`, `network_config`, and `text` (the DNS-name and
//! YAML-quoting rules they share).

mod iso9660;
mod meta_data;
mod network_config;
mod text;
mod user_data;

pub use iso9660::{
    IsoError, MAX_FILE_NAME_LEN, MAX_FILE_SIZE, MAX_FILES, MAX_VOLUME_ID_LEN, iso9660,
};
pub use meta_data::{Seed, SeedIso, VOLUME_ID};
pub use network_config::{Interface, Ipv4Addressing, Ipv6Addressing, MacAddress, network_config};
pub use user_data::{DeclaredUser, merge_user_data};

/// Why a seed, its user-data or its network-config could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    /// The hostname is not an RFC 1123 host name.
    #[error(
        "invalid hostname `{hostname}`: expected labels of letters, digits and `-`, joined by `.`"
    )]
    InvalidHostname {
        /// The hostname as given.
        hostname: String,
    },
    /// The declared user's name is not one `useradd` takes.
    #[error(
        "invalid user name `{name}`: expected a lower-case letter or `_`, then letters, digits, `_` or `-`, at most 32"
    )]
    InvalidUserName {
        /// The name as given.
        name: String,
    },
    /// An SSH key is empty or spans several lines.
    #[error("invalid SSH key #{index} of user `{user}`: {reason}")]
    InvalidSshKey {
        /// The user.
        user: String,
        /// 1-based position in the list.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The password hash is not a crypt(3) hash (the value is not repeated: it may be a password).
    #[error("the password hash of user `{user}` is not a crypt(3) hash such as `$6$...`")]
    InvalidPasswordHash {
        /// The user.
        user: String,
    },
    /// The user-data says `#cloud-config` but is not a YAML mapping.
    #[error("user-data is #cloud-config but not a YAML mapping: {message}")]
    UserDataNotMapping {
        /// The YAML parser's message.
        message: String,
    },
    /// The user-data sets `user`, which proxfleet sets from the declared user.
    #[error(
        "user-data sets `user`, which proxfleet sets for the declared user `{user}`: declare the user in one place"
    )]
    UserDataSetsUser {
        /// The declared user.
        user: String,
    },
    /// The declared user could not be appended to the user-data and stay one mapping (for
    /// example a flow mapping `{...}`, or a document ended by `...`).
    #[error(
        "cannot add the declared user to this user-data: {message} (write it as a block mapping)"
    )]
    UserDataNotMergeable {
        /// What went wrong.
        message: String,
    },
    /// An interface name is not a Linux interface name.
    #[error("invalid interface name `{name}`: expected 1 to 15 letters, digits, `.`, `_` or `-`")]
    InvalidInterfaceName {
        /// The name as given.
        name: String,
    },
    /// Two interfaces have the same name.
    #[error("interface `{name}` is given twice")]
    DuplicateInterface {
        /// The repeated name.
        name: String,
    },
    /// Two interfaces match the same MAC address.
    #[error("MAC address {mac} is matched by two interfaces")]
    DuplicateMac {
        /// The repeated address.
        mac: MacAddress,
    },
    /// An interface is static but has no address.
    #[error("interface `{interface}` has a static {family} configuration without addresses")]
    StaticWithoutAddress {
        /// The interface.
        interface: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// A search domain is not a DNS name.
    #[error("invalid search domain `{domain}` on interface `{interface}`")]
    InvalidSearchDomain {
        /// The interface.
        interface: String,
        /// The domain as given.
        domain: String,
    },
    /// A MAC address is not six colon-separated hexadecimal bytes.
    #[error(
        "invalid MAC address `{text}`: expected six hexadecimal bytes such as `bc:24:11:00:00:01`"
    )]
    InvalidMac {
        /// The text as given.
        text: String,
    },
    /// The ISO image could not be written.
    #[error(transparent)]
    Iso(#[from] IsoError),
}
