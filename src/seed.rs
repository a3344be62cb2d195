//! Cloud-init seed ISOs for clones with custom `user_data`, `vendor_data` or `network_data`.
//!
//! Proxmox's API cannot write snippets, so a clone with custom data gets its whole NoCloud seed
//! from proxfleet: an ISO (see `nocloud`) uploaded as `iso` content and attached as `ide2` in
//! place of Proxmox's cloud-init drive (two `cidata` sources would race). The seed holds the
//! clone's host name, the custom user-data with the declared user, keys and password hash
//! added, the vendor-data, and the custom network-config or one derived from `ipv4`, `ipv6` and
//! `dns`, matched to `net0` by its MAC address.
//!
//! The MAC is Proxmox's to choose when it clones, so the seed is a function of the spec *and*
//! the observed MAC: `SeedPlan` holds the spec's part, `SeedPlan::build` adds the MAC. The ISO is
//! named by its content, so a changed seed is a changed `ide2` in the plan. Everything here is
//! deterministic, including the password hash (its salt comes from the resource and the
//! password), so an unchanged spec gives the same bytes and converges.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::nocloud::{self, DeclaredUser, Interface, Seed, SeedError, SeedIso};
use crate::pve::propstr::nic_mac;
use crate::secret::Secret;
use crate::spec::{CloudInit, InterfaceIp, Ipv4Config, Ipv6Config};

/// The spec's part of a clone's seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedPlan {
    /// Storage the ISO is uploaded to (`iso` content).
    pub storage: String,
    /// The guest's host name.
    pub hostname: String,
    /// The clone's effective cloud-init (template < group < clone).
    pub cloud_init: CloudInit,
    /// Resource key, mixed into the password hash's salt.
    pub salt_seed: String,
}

/// A VM's effective cloud-init: `top`'s fields over `base`'s.
pub fn effective(base: Option<&CloudInit>, top: Option<&CloudInit>) -> Option<CloudInit> {
    match (base, top) {
        (None, None) => None,
        (Some(b), None) => Some(b.clone()),
        (None, Some(t)) => Some(t.clone()),
        (Some(b), Some(t)) => Some(CloudInit {
            storage: t.storage.clone().or_else(|| b.storage.clone()),
            user: t.user.clone().or_else(|| b.user.clone()),
            password: t.password.clone().or_else(|| b.password.clone()),
            ssh_keys: if t.ssh_keys.is_empty() {
                b.ssh_keys.clone()
            } else {
                t.ssh_keys.clone()
            },
            ipv4: t.ipv4.or(b.ipv4),
            ipv6: t.ipv6.or(b.ipv6),
            nameservers: if t.nameservers.is_empty() {
                b.nameservers.clone()
            } else {
                t.nameservers.clone()
            },
            searchdomain: t.searchdomain.clone().or_else(|| b.searchdomain.clone()),
            upgrade: t.upgrade.or(b.upgrade),
            user_data: t.user_data.clone().or_else(|| b.user_data.clone()),
            vendor_data: t.vendor_data.clone().or_else(|| b.vendor_data.clone()),
            network_data: t.network_data.clone().or_else(|| b.network_data.clone()),
            extra_interfaces: if t.extra_interfaces.is_empty() {
                b.extra_interfaces.clone()
            } else {
                t.extra_interfaces.clone()
            },
        }),
    }
}

/// A SHA-512 crypt(3) hash (`$6$…`) with a salt derived from `salt_seed` and the password: the
/// same inputs give the same hash, so the seed is reproducible.
pub fn password_hash(password: &Secret, salt_seed: &str, user: &str) -> Result<String, SeedError> {
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::new()
        .chain_update(b"proxfleet seed salt\0")
        .chain_update(salt_seed.as_bytes())
        .chain_update([0])
        .chain_update(password.expose().as_bytes())
        .finalize();
    let salt: String = digest[..16]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    let params = sha_crypt::Sha512Params::default();
    let hash = sha_crypt::sha512_crypt_b64(password.expose().as_bytes(), salt.as_bytes(), &params)
        .map_err(|_| SeedError::InvalidPasswordHash {
            user: user.to_string(),
        })?;
    Ok(format!("$6${salt}${hash}"))
}

impl SeedPlan {
    /// The seed for a VM with this config (its `netN` options give the MACs the network-config
    /// matches; interfaces without one are left out).
    ///
    /// # Errors
    /// What the seed builder refuses (a user-data it cannot add the user to, a bad host name).
    pub fn seed(&self, config: &BTreeMap<String, String>) -> Result<Seed, SeedError> {
        let ci = &self.cloud_init;
        let user_data = match &ci.user {
            Some(name) => {
                let user = DeclaredUser {
                    name: name.clone(),
                    ssh_authorized_keys: ci.ssh_keys.clone(),
                    password_hash: ci
                        .password
                        .as_ref()
                        .map(|p| password_hash(p, &self.salt_seed, name))
                        .transpose()?,
                };
                Some(nocloud::merge_user_data(
                    ci.user_data.as_ref().map(|d| d.content.as_str()),
                    &user,
                )?)
            }
            None => ci.user_data.as_ref().map(|d| d.content.clone()),
        };
        let network_config = match &ci.network_data {
            Some(custom) => Some(custom.content.clone()),
            None => {
                let net0 = InterfaceIp {
                    ipv4: ci.ipv4,
                    ipv6: ci.ipv6,
                };
                let mut interfaces = Vec::new();
                for (idx, ip) in std::iter::once(&net0)
                    .chain(&ci.extra_interfaces)
                    .enumerate()
                {
                    let mac = config.get(&format!("net{idx}")).and_then(|v| nic_mac(v));
                    if let (Some(mac), true) = (mac, ip.ipv4.is_some() || ip.ipv6.is_some()) {
                        interfaces.push(self.interface(idx, mac.parse()?, ip));
                    }
                }
                if interfaces.is_empty() {
                    None
                } else {
                    Some(nocloud::network_config(&interfaces)?)
                }
            }
        };
        Ok(Seed {
            hostname: self.hostname.clone(),
            user_data,
            vendor_data: ci.vendor_data.as_ref().map(|d| d.content.clone()),
            network_config,
        })
    }

    /// The ISO for a VM with this config.
    ///
    /// # Errors
    /// See `seed`.
    pub fn build(&self, config: &BTreeMap<String, String>) -> Result<SeedIso, SeedError> {
        self.seed(config)?.build()
    }

    /// The volume id an ISO gets on this plan's storage.
    pub fn volid(&self, iso: &SeedIso) -> String {
        format!("{}:iso/{}", self.storage, iso.file_name)
    }

    fn interface(&self, idx: usize, mac: nocloud::MacAddress, ip: &InterfaceIp) -> Interface {
        let ci = &self.cloud_init;
        let ipv4 = match ip.ipv4 {
            None => nocloud::Ipv4Config::None,
            Some(Ipv4Config::Dhcp) => nocloud::Ipv4Config::Dhcp,
            Some(Ipv4Config::Static { address, gateway }) => nocloud::Ipv4Config::Static {
                addresses: vec![address],
                gateway,
            },
        };
        let ipv6 = match ip.ipv6 {
            None => nocloud::Ipv6Config::None,
            Some(Ipv6Config::Dhcp) => nocloud::Ipv6Config::Dhcp,
            Some(Ipv6Config::Auto) => nocloud::Ipv6Config::Slaac,
            Some(Ipv6Config::Static { address, gateway }) => nocloud::Ipv6Config::Static {
                addresses: vec![address],
                gateway,
            },
        };
        // DNS goes with the first interface, as Proxmox's own cloud-init drive does.
        let first = idx == 0;
        Interface {
            name: format!("eth{idx}"),
            mac: Some(mac),
            ipv4,
            ipv6,
            nameservers: if first {
                ci.nameservers.to_vec()
            } else {
                Vec::new()
            },
            search: if first {
                ci.searchdomain.iter().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// Whether a volume id names a seed ISO proxfleet made.
pub fn is_seed_volid(volid: &str) -> bool {
    volid
        .split_once(":iso/")
        .is_some_and(|(_, name)| name.starts_with("proxfleet-ci-") && name.ends_with(".iso"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_are_sha512_crypt_and_reproducible() {
        // glibc's test vector: "Hello world!" with salt "saltstring".
        let params = sha_crypt::Sha512Params::default();
        let hash = sha_crypt::sha512_crypt_b64(b"Hello world!", b"saltstring", &params)
            .unwrap_or_default();
        assert_eq!(
            hash,
            "svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
        let secret = Secret::new("hunter2");
        let a = password_hash(&secret, "clone.web-1", "ops").unwrap_or_default();
        assert!(a.starts_with("$6$") && a.len() > 100, "{a}");
        assert_eq!(
            a,
            password_hash(&secret, "clone.web-1", "ops").unwrap_or_default()
        );
        assert_ne!(
            a,
            password_hash(&secret, "clone.web-2", "ops").unwrap_or_default()
        );
        assert!(!a.contains("hunter2"));
    }

    #[test]
    fn seed_volids_are_recognised() {
        assert!(is_seed_volid("local:iso/proxfleet-ci-0123456789ab.iso"));
        assert!(!is_seed_volid("local:iso/debian.iso"));
        assert!(!is_seed_volid("local-lvm:vm-100-cloudinit"));
    }
}
