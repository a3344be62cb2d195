//! Raw cloud-init types: a template's, a group's or a clone's `cloud_init` block as the YAML
//! has it (user, keys, password reference, addresses of every interface, DNS, custom data and
//! its delivery).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// Cloud-init settings
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCloudInit {
    /// Storage for the cloud-init drive; default: the boot disk's storage
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"local-lvm")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"))]
    pub storage: Option<Spanned<String>>,
    /// Default user created by cloud-init: a login name `useradd` accepts (lower-case letter or
    /// `_` first, at most 32 characters), not a system account
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"debian")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_-]{0,30}[a-z0-9_$-]?$"))]
    pub user: Option<Spanned<String>>,
    /// OpenSSH public keys authorised for the user
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[schemars(example = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINeA4p1Q2dIqor6pOI1wJK37hZeBNvahZhylneTi+5ph ops@example.com"])]
    pub ssh_keys: Vec<Spanned<String>>,
    /// IPv4 for `net0`: `dhcp` or an address with prefix (`192.0.2.10/24`)
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"dhcp")]
    #[schemars(regex(
        pattern = r"^(dhcp|(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}/([0-9]|[12][0-9]|3[0-2]))$"
    ))]
    pub ipv4: Option<Spanned<String>>,
    /// IPv4 gateway for a static `ipv4`
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"192.0.2.1")]
    #[schemars(regex(
        pattern = r"^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}$"
    ))]
    pub gateway: Option<Spanned<String>>,
    /// IPv6 for `net0`: `dhcp`, `auto` (SLAAC) or an address with prefix (`2001:db8::10/64`)
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"auto")]
    #[schemars(regex(pattern = r"^(dhcp|auto|[0-9A-Fa-f:.]+/[0-9]{1,3})$"))]
    pub ipv6: Option<Spanned<String>>,
    /// IPv6 gateway for a static `ipv6`
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[schemars(example = &"2001:db8::1")]
    #[schemars(regex(pattern = r"^[0-9A-Fa-f:.]+$"))]
    pub gateway6: Option<Spanned<String>>,
    /// Password of the user: `env:NAME` or `file:PATH` (never printed); a literal is accepted
    /// with a warning
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"env:VM_PASSWORD")]
    pub password: Option<Spanned<String>>,
    /// Files with OpenSSH public keys (one per line), relative to the spec file
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[schemars(example = ["keys/ops.pub"])]
    pub ssh_key_files: Vec<Spanned<String>>,
    /// DNS settings
    #[serde(default)]
    #[schemars(example = serde_json::json!({"servers": ["192.0.2.53"], "search_domain": "example.internal"}))]
    pub dns: Option<RawDns>,
    /// Upgrade packages on first boot (Proxmox's default: yes)
    #[serde(default)]
    #[schemars(example = false)]
    pub upgrade: Option<bool>,
    /// File with custom user-data (`#cloud-config` YAML, a `#!` script or another cloud-init
    /// format), relative to the spec file; a `#cloud-config` gets the declared `user`,
    /// `ssh_keys` and `password` added. How it reaches the guest is `delivery`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"cloud-init/web.yaml")]
    pub user_data: Option<Spanned<String>>,
    /// File with custom vendor-data, relative to the spec file (same formats as `user_data`)
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"cloud-init/vendor.yaml")]
    pub vendor_data: Option<Spanned<String>>,
    /// File with a custom network-config (version 1 or 2), relative to the spec file; replaces
    /// the one proxfleet derives from `ipv4`, `ipv6` and `dns`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"cloud-init/network.yaml")]
    pub network_data: Option<Spanned<String>>,
    /// IP settings of `net1`, `net2`, … in order (`ipv4` and `ipv6` above are `net0`'s)
    #[serde(default)]
    #[schemars(example = serde_json::json!([{"ipv4": "10.0.0.10/24"}, {"ipv4": "dhcp", "ipv6": "auto"}]))]
    pub extra_interfaces: Vec<RawInterfaceIp>,
    /// How custom `user_data`, `vendor_data` and `network_data` reach the guest: `iso`
    /// (default; a NoCloud seed ISO proxfleet builds, uploads to `defaults.storage.iso` and
    /// attaches in place of Proxmox's cloud-init drive; needs nothing but the API token) or
    /// `snippets` (files written over SFTP to `defaults.storage.snippets` on each node and
    /// referenced with `cicustom`; Proxmox's drive stays and generates the rest, the network
    /// from `ipv4`/`ipv6`/`dns` included; needs `defaults.ssh`)
    #[serde(default)]
    #[schemars(with = "Option<RawDelivery>", example = &"snippets")]
    pub delivery: Option<Spanned<RawDelivery>>,
}

/// How custom cloud-init data reaches the guest
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawDelivery {
    /// A NoCloud seed ISO in place of Proxmox's cloud-init drive
    Iso,
    /// Snippets written over SFTP and referenced with `cicustom`
    Snippets,
}

/// IP settings of one more network interface, handed to the guest by cloud-init
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInterfaceIp {
    /// `dhcp` or an address with prefix (`10.0.0.10/24`)
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"10.0.0.10/24")]
    #[schemars(regex(
        pattern = r"^(dhcp|(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}/([0-9]|[12][0-9]|3[0-2]))$"
    ))]
    pub ipv4: Option<Spanned<String>>,
    /// IPv4 gateway for a static `ipv4`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"10.0.0.1")]
    #[schemars(regex(
        pattern = r"^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}$"
    ))]
    pub gateway: Option<Spanned<String>>,
    /// `dhcp`, `auto` (SLAAC) or an address with prefix
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"auto")]
    #[schemars(regex(pattern = r"^(dhcp|auto|[0-9A-Fa-f:.]+/[0-9]{1,3})$"))]
    pub ipv6: Option<Spanned<String>>,
    /// IPv6 gateway for a static `ipv6`
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"2001:db8:1::1")]
    #[schemars(regex(pattern = r"^[0-9A-Fa-f:.]+$"))]
    pub gateway6: Option<Spanned<String>>,
}

/// DNS settings handed to the guest by cloud-init
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// Name servers (IPv4 or IPv6 addresses)
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[schemars(example = ["192.0.2.53", "2001:db8::53"])]
    pub servers: Vec<Spanned<String>>,
    /// Search domain
    #[serde(default)]
    #[schemars(with = "Option<String>", example = &"example.internal")]
    pub search_domain: Option<Spanned<String>>,
}
