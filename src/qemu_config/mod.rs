//! What proxfleet knows about the options of a Proxmox QEMU VM's configuration, in one pure
//! place that the differ and the executor share: the property-string codec (`propstr`), when
//! two values of an option mean the same (`same_value`), which options are disks, and which
//! take effect on a running VM at once rather than at its next boot. No I/O, and nothing of
//! the HTTP client: the pure core reads these rules without depending on `pve`.

pub mod propstr;

use std::collections::BTreeSet;

use propstr::{decode_sshkeys, nic_mac, normalize};

/// The option that names custom cloud-init files (snippets); proxfleet writes the files it
/// names before the option, and removes the ones an old value named after it.
pub const CICUSTOM: &str = "cicustom";

/// Whether an observed option value equals the desired one, semantically.
pub fn same_value(option: &str, observed: Option<&str>, desired: &str) -> bool {
    let Some(observed) = observed else {
        return false;
    };
    // The same text is the same value, whatever the option (most of a converged fleet).
    if observed == desired {
        return true;
    }
    match option {
        "sshkeys" => {
            let a: BTreeSet<String> = decode_sshkeys(observed).into_iter().collect();
            let b: BTreeSet<String> = decode_sshkeys(desired).into_iter().collect();
            a == b
        }
        "description" | "name" | "ciuser" | "searchdomain" => {
            observed.trim_end() == desired.trim_end()
        }
        // A MAC the spec does not give is Proxmox's to choose: not drift.
        nic if nic.starts_with("net") && nic_mac(desired).is_none() => {
            let without_mac = |value: &str| {
                normalize(nic, value)
                    .split(',')
                    .filter(|item| !item.starts_with("macaddr="))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            without_mac(observed) == without_mac(desired)
        }
        _ => normalize(option, observed) == normalize(option, desired),
    }
}

/// Disk options: their values change form once Proxmox allocates them (`local-lvm:1` becomes a
/// volume), so a template's disks are judged by its build fingerprint, not compared.
pub fn is_disk_option(option: &str) -> bool {
    let family = option.trim_end_matches(|c: char| c.is_ascii_digit());
    family != option
        && matches!(
            family,
            "scsi" | "virtio" | "sata" | "ide" | "efidisk" | "tpmstate" | "unused"
        )
}

/// Whether Proxmox applies a change of this option to a running VM at once (its default
/// `hotplug` is `network,disk,usb`; names, notes, tags and cloud-init options are not
/// hardware), or only at the next boot.
pub fn applies_at_once(option: &str) -> bool {
    let family = option.trim_end_matches(|c: char| c.is_ascii_digit());
    matches!(
        option,
        "name"
            | "description"
            | "tags"
            | "onboot"
            | "protection"
            | "ciuser"
            | "cipassword"
            | "sshkeys"
            | "nameserver"
            | "searchdomain"
            | "ciupgrade"
            | "cicustom"
            | "citype"
            | "startup"
    ) || matches!(family, "ipconfig" | "net" | "unused")
        || (is_disk_option(option) && family != "efidisk" && family != "tpmstate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_waits_for_a_boot_and_the_rest_applies_at_once() {
        for option in ["memory", "cores", "cpu", "efidisk0", "tpmstate0", "bios"] {
            assert!(!applies_at_once(option), "{option}");
        }
        for option in ["tags", "ipconfig1", "net0", "scsi1", "ide2", "cicustom"] {
            assert!(applies_at_once(option), "{option}");
        }
    }

    #[test]
    fn disks_are_numbered_members_of_a_disk_family() {
        assert!(is_disk_option("scsi0"));
        assert!(is_disk_option("efidisk0"));
        assert!(!is_disk_option("scsihw"));
        assert!(!is_disk_option("ide"));
    }
}
