//! The seed itself: `meta-data` with an `instance-id` derived from every file's content, and
//! the seed ISO (volume `cidata`) named by its content.

use std::fmt;

use sha2::Digest;

use super::SeedError;
use super::iso9660::iso9660;
use super::text::{is_dns_name, yaml_quoted};

/// The volume id cloud-init's NoCloud data source looks for.
pub const VOLUME_ID: &str = "cidata";
/// What a NoCloud seed holds. Each text is the file's whole content; `None` leaves an optional
/// file out (`user-data` is then written empty: cloud-init requires the file). `Debug` prints
/// the files' sizes only: user-data often holds secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Seed {
    /// The guest's host name (`local-hostname` in `meta-data`).
    pub hostname: String,
    /// `user-data`: a `#cloud-config` (see [`merge_user_data`](super::merge_user_data)), a
    /// script, or any format cloud-init reads.
    pub user_data: Option<String>,
    /// `vendor-data`, in the same formats as user-data.
    pub vendor_data: Option<String>,
    /// `network-config` (see [`network_config`](super::network_config())).
    pub network_config: Option<String>,
}

/// A seed ISO, ready to upload as `iso` content and attach as a CD-ROM.
#[derive(Clone, PartialEq, Eq)]
pub struct SeedIso {
    /// `proxfleet-ci-<first 12 hex digits of the image's SHA-256>.iso`.
    pub file_name: String,
    /// The `instance-id` in its `meta-data`.
    pub instance_id: String,
    /// The image.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for SeedIso {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedIso")
            .field("file_name", &self.file_name)
            .field("instance_id", &self.instance_id)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size =
            |text: &Option<String>| text.as_ref().map(|text| format!("<{} bytes>", text.len()));
        f.debug_struct("Seed")
            .field("hostname", &self.hostname)
            .field("user_data", &size(&self.user_data))
            .field("vendor_data", &size(&self.vendor_data))
            .field("network_config", &size(&self.network_config))
            .finish()
    }
}

impl Seed {
    /// `proxfleet-` and 16 hex digits of a SHA-256 over the hostname and every file's content
    /// (each length-prefixed, absent distinct from empty). Any change gives a new id, which
    /// cloud-init takes as a new instance: it runs its once-per-instance modules again.
    pub fn instance_id(&self) -> String {
        let mut hasher = sha2::Sha256::new();
        for (field, value) in [
            ("local-hostname", Some(&self.hostname)),
            ("user-data", self.user_data.as_ref()),
            ("vendor-data", self.vendor_data.as_ref()),
            ("network-config", self.network_config.as_ref()),
        ] {
            hasher.update(field.as_bytes());
            match value {
                None => hasher.update([0]),
                Some(text) => {
                    hasher.update([1]);
                    hasher.update((text.len() as u64).to_be_bytes());
                    hasher.update(text.as_bytes());
                }
            }
        }
        let digest = hasher.finalize();
        format!("proxfleet-{}", hex::encode(&digest[..8]))
    }

    /// The `meta-data` file: `instance-id` and `local-hostname`.
    ///
    /// # Errors
    /// The hostname is not an RFC 1123 host name.
    pub fn meta_data(&self) -> Result<String, SeedError> {
        if !is_dns_name(&self.hostname) {
            return Err(SeedError::InvalidHostname {
                hostname: self.hostname.clone(),
            });
        }
        Ok(format!(
            "instance-id: {}\nlocal-hostname: {}\n",
            yaml_quoted(&self.instance_id()),
            yaml_quoted(&self.hostname)
        ))
    }

    /// The seed ISO: volume `cidata` with `meta-data`, `user-data` and, when given,
    /// `vendor-data` and `network-config`, named by its content.
    ///
    /// # Errors
    /// An invalid hostname, or a file too large for ISO 9660.
    pub fn build(&self) -> Result<SeedIso, SeedError> {
        let meta_data = self.meta_data()?;
        let mut files: Vec<(&str, &[u8])> = vec![
            ("meta-data", meta_data.as_bytes()),
            (
                "user-data",
                self.user_data.as_deref().unwrap_or_default().as_bytes(),
            ),
        ];
        if let Some(vendor_data) = &self.vendor_data {
            files.push(("vendor-data", vendor_data.as_bytes()));
        }
        if let Some(network_config) = &self.network_config {
            files.push(("network-config", network_config.as_bytes()));
        }
        let bytes = iso9660(VOLUME_ID, &files)?;
        let digest = sha2::Sha256::digest(&bytes);
        Ok(SeedIso {
            file_name: format!("proxfleet-ci-{}.iso", hex::encode(&digest[..6])),
            instance_id: self.instance_id(),
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::nocloud::iso9660::reader::{files_in, sector};

    fn seed() -> Seed {
        Seed {
            hostname: "web-1".into(),
            user_data: Some("#cloud-config\npackages: [nginx]\n".into()),
            vendor_data: None,
            network_config: Some("version: 2\nethernets: {}\n".into()),
        }
    }

    #[test]
    fn meta_data_names_the_instance_and_host() {
        // Pinned: a new instance-id makes cloud-init treat every VM as a new instance.
        assert_eq!(
            seed().meta_data().unwrap(),
            "instance-id: \"proxfleet-8b4c8eba2f99d63d\"\nlocal-hostname: \"web-1\"\n"
        );
    }

    #[test]
    fn instance_id_changes_with_any_content() {
        let base = seed();
        let mut ids = BTreeSet::from([base.instance_id()]);
        let variants = [
            Seed {
                hostname: "web-2".into(),
                ..base.clone()
            },
            Seed {
                user_data: None,
                ..base.clone()
            },
            Seed {
                vendor_data: Some(String::new()),
                ..base.clone()
            },
            Seed {
                network_config: None,
                ..base.clone()
            },
            // The same text in another file is another seed.
            Seed {
                user_data: None,
                vendor_data: base.user_data.clone(),
                ..base.clone()
            },
        ];
        for variant in &variants {
            assert!(ids.insert(variant.instance_id()), "{variant:?}");
        }
        assert_eq!(seed().instance_id(), base.instance_id());
    }

    #[test]
    fn the_seed_iso_is_named_by_its_content() {
        let iso = seed().build().unwrap();
        let digest = hex::encode(sha2::Sha256::digest(&iso.bytes));
        assert_eq!(iso.file_name, format!("proxfleet-ci-{}.iso", &digest[..12]));
        assert_eq!(iso.instance_id, seed().instance_id());
        assert_eq!(seed().build().unwrap(), iso, "deterministic");
        assert!(format!("{iso:?}").contains(&format!("<{} bytes>", iso.bytes.len())));
        assert!(!format!("{:?}", seed()).contains("nginx"), "{:?}", seed());
        assert_eq!(sector(&iso.bytes, 16)[40..46], *b"cidata");
        let files = files_in(&iso.bytes, 16);
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["meta-data", "network-config", "user-data"]);
        assert_eq!(files[0].1, seed().meta_data().unwrap().as_bytes());

        // cloud-init requires user-data: an empty one is written when there is none.
        let bare = Seed {
            hostname: "web-1".into(),
            user_data: None,
            vendor_data: None,
            network_config: None,
        };
        let files = files_in(&bare.build().unwrap().bytes, 17);
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["meta-data", "user-data"]);
        assert!(files[1].1.is_empty());
    }

    #[test]
    fn bad_hostnames_are_refused() {
        for hostname in ["", "web_1", "-web", "web-", "a..b", &"a".repeat(64), "wéb"] {
            let bad = Seed {
                hostname: hostname.to_string(),
                ..seed()
            };
            assert_eq!(
                bad.build(),
                Err(SeedError::InvalidHostname {
                    hostname: hostname.to_string()
                })
            );
        }
        for hostname in ["web-1", "web-1.example.com", "123", "true"] {
            let good = Seed {
                hostname: hostname.to_string(),
                ..seed()
            };
            assert!(good.build().is_ok(), "{hostname}");
        }
    }

    // --- user-data ---
}
