//! Custom cloud-init data (`user_data`, `vendor_data`, `network_data`) for clones, in either
//! delivery the spec chooses.
//!
//! `iso` (the default): Proxmox's API cannot write snippets, so the clone gets its whole NoCloud
//! seed from proxfleet: an ISO (see `nocloud`) uploaded as `iso` content and attached as `ide2`
//! in place of Proxmox's cloud-init drive (two `cidata` sources would race). The seed holds the
//! clone's host name, the custom user-data with the declared user, keys and password hash
//! added, the vendor-data, and the custom network-config or one derived from `ipv4`, `ipv6` and
//! `dns`, matched to `net0` by its MAC address. The MAC is Proxmox's to choose when it clones,
//! so the ISO is a function of the spec *and* the observed MAC: `SeedPlan` holds the spec's
//! part, `SeedPlan::build` adds the MAC; the ISO is named by its content, so a changed seed is a
//! changed `ide2` in the plan.
//!
//! `snippets`: the custom files themselves (the user-data with the declared user added, since
//! Proxmox does not merge `ciuser`/`sshkeys` into a custom user file), written over SFTP to a
//! `snippets` storage and referenced with `cicustom`; Proxmox's own drive stays and generates
//! the parts not given (meta-data, and the network-config from `ipconfigN`). They depend on the
//! spec alone, so their names (`proxfleet-<clone>-<part>-<12 hex>.yaml`, content-addressed)
//! and the `cicustom` value are known when the graph is built.
//!
//! Everything here is deterministic, including the password hash (its salt comes from the
//! resource and the password), so an unchanged spec gives the same bytes and converges.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::nocloud::{self, DeclaredUser, Interface, Seed, SeedError, SeedIso};
use crate::qemu_config::propstr::nic_mac;
use crate::secret::Secret;
use crate::spec::{CloudInit, InterfaceIp, Ipv4Config, Ipv6Config};

/// How a clone's custom data reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedDelivery {
    /// A seed ISO on `SeedPlan::storage`, attached as `ide2`.
    Iso,
    /// Snippets on `SeedPlan::storage` referenced by `cicustom`, beside Proxmox's cloud-init
    /// drive.
    Snippets {
        /// The drive to put back where an earlier seed ISO was: `<storage>:cloudinit`, as the
        /// template has it.
        cloudinit_drive: String,
    },
}

/// One part of the custom data as a snippet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// `user`, `vendor` or `network`: its key in `cicustom`.
    pub part: &'static str,
    /// Content-addressed: `proxfleet-<clone>-<part>-<12 hex of its SHA-256>.yaml`.
    pub file_name: String,
    /// The file's text.
    pub content: String,
}

/// The spec's part of a clone's seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedPlan {
    /// Storage the ISO is uploaded to (`iso` content), or the snippets are written to
    /// (`snippets` content).
    pub storage: String,
    /// How the data reaches the guest.
    pub delivery: SeedDelivery,
    /// The guest's host name.
    pub hostname: String,
    /// The clone's effective cloud-init (`CloneSettings::cloud_init`, resolved in `spec`).
    pub cloud_init: CloudInit,
    /// Resource key, mixed into the password hash's salt.
    pub salt_seed: String,
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
        let user_data = self.user_data(ci.user_data.as_ref().map(|d| d.content.as_str()))?;
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

    /// The user-data: `custom` with the declared user, keys and password hash added (to a
    /// `#cloud-config`; other formats are left as they are), or that user alone.
    fn user_data(&self, custom: Option<&str>) -> Result<Option<String>, SeedError> {
        let ci = &self.cloud_init;
        let Some(name) = &ci.user else {
            return Ok(custom.map(str::to_string));
        };
        let user = DeclaredUser {
            name: name.clone(),
            ssh_authorized_keys: ci.ssh_keys.clone(),
            password_hash: ci
                .password
                .as_ref()
                .map(|p| password_hash(p, &self.salt_seed, name))
                .transpose()?,
        };
        nocloud::merge_user_data(custom, &user).map(Some)
    }

    /// The snippets for `delivery: snippets`: one per custom file the spec gives (a part it does
    /// not give is Proxmox's to generate, from `ciuser`, `sshkeys`, `ipconfigN` and so on), in
    /// `cicustom`'s key order.
    ///
    /// # Errors
    /// A user-data the declared user cannot be added to.
    pub fn snippets(&self) -> Result<Vec<Snippet>, SeedError> {
        let ci = &self.cloud_init;
        let mut out = Vec::new();
        if let Some(custom) = &ci.network_data {
            out.push(self.snippet("network", custom.content.clone()));
        }
        if let Some(custom) = &ci.user_data
            && let Some(text) = self.user_data(Some(&custom.content))?
        {
            out.push(self.snippet("user", text));
        }
        if let Some(custom) = &ci.vendor_data {
            out.push(self.snippet("vendor", custom.content.clone()));
        }
        Ok(out)
    }

    fn snippet(&self, part: &'static str, content: String) -> Snippet {
        let digest = Sha256::digest(content.as_bytes());
        Snippet {
            part,
            file_name: format!(
                "{SNIPPET_PREFIX}{}-{part}-{}.yaml",
                self.hostname,
                hex::encode(&digest[..6])
            ),
            content,
        }
    }

    /// The volume id a snippet has on this plan's storage.
    pub fn snippet_volid(&self, snippet: &Snippet) -> String {
        format!("{}:snippets/{}", self.storage, snippet.file_name)
    }

    /// The `cicustom` value referencing these snippets.
    pub fn cicustom(&self, snippets: &[Snippet]) -> String {
        snippets
            .iter()
            .map(|s| format!("{}={}", s.part, self.snippet_volid(s)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether the data goes as snippets.
    pub fn is_snippets(&self) -> bool {
        matches!(self.delivery, SeedDelivery::Snippets { .. })
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
            None => nocloud::Ipv4Addressing::None,
            Some(Ipv4Config::Dhcp) => nocloud::Ipv4Addressing::Dhcp,
            Some(Ipv4Config::Static { address, gateway }) => nocloud::Ipv4Addressing::Static {
                addresses: vec![address],
                gateway,
            },
        };
        let ipv6 = match ip.ipv6 {
            None => nocloud::Ipv6Addressing::None,
            Some(Ipv6Config::Dhcp) => nocloud::Ipv6Addressing::Dhcp,
            Some(Ipv6Config::Auto) => nocloud::Ipv6Addressing::Slaac,
            Some(Ipv6Config::Static { address, gateway }) => nocloud::Ipv6Addressing::Static {
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

/// How every snippet file proxfleet writes is named at first.
const SNIPPET_PREFIX: &str = "proxfleet-";

/// The snippet volumes a `cicustom` value references (`user=local:snippets/a.yaml,…`).
pub fn cicustom_volids(cicustom: &str) -> Vec<String> {
    cicustom
        .split(',')
        .filter_map(|item| item.split_once('=').map(|(_, volid)| volid.trim()))
        .filter(|volid| !volid.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether a volume id names a snippet proxfleet wrote: `<storage>:snippets/proxfleet-…-<part>-<12
/// hex>.yaml`. Returns the storage and the file name.
pub fn proxfleet_snippet(volid: &str) -> Option<(&str, &str)> {
    let (storage, name) = volid.split_once(":snippets/")?;
    let stem = name.strip_prefix(SNIPPET_PREFIX)?.strip_suffix(".yaml")?;
    let (rest, tag) = stem.rsplit_once('-')?;
    let known_part = ["user", "vendor", "network"]
        .iter()
        .any(|part| rest.ends_with(&format!("-{part}")));
    let hex_tag = tag.len() == 12
        && tag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (known_part && hex_tag && !name.contains('/')).then_some((storage, name))
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
    fn snippet_volids_are_recognised() {
        assert_eq!(
            proxfleet_snippet("local:snippets/proxfleet-web-1-user-0123456789ab.yaml"),
            Some(("local", "proxfleet-web-1-user-0123456789ab.yaml"))
        );
        assert!(proxfleet_snippet("local:snippets/web-user.yaml").is_none());
        assert!(proxfleet_snippet("local:snippets/proxfleet-web-1-user-0123.yaml").is_none());
        assert!(
            proxfleet_snippet("local:snippets/proxfleet-web-1-hook-0123456789ab.yaml").is_none()
        );
        assert_eq!(
            cicustom_volids("user=local:snippets/a.yaml,network=nfs:snippets/b.yaml"),
            vec!["local:snippets/a.yaml", "nfs:snippets/b.yaml"]
        );
    }

    #[test]
    fn seed_volids_are_recognised() {
        assert!(is_seed_volid("local:iso/proxfleet-ci-0123456789ab.iso"));
        assert!(!is_seed_volid("local:iso/debian.iso"));
        assert!(!is_seed_volid("local-lvm:vm-100-cloudinit"));
    }
}
