//! Named formats (`format => 'pve-node'`), as pve-common (`PVE::JSONSchema`,
//! `PVE::ParseUtils`), pve-storage, pve-access-control and qemu-server register them: each
//! answers with the `die` message of its verifier. A `-list` format checks every item of
//! `split_list` (separated by `,`, `;` or blanks); formats the simulator does not know pass.
//! The property-string formats named here (`pve-qm-ipconfig`, `pve-qm-cicustom`, `pve-qm-boot`) are data
//! transcribed from qemu-server; a VM's `cpu` (`pve-vm-cpu-conf`) is in `cpu.rs`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::{cpu, max_index, property_string};

/// Check `value` against the named `format`; the error is the verifier's `die` message.
pub(super) fn check(path: &str, format: &str, value: &str) -> Result<(), String> {
    if let Some(sub) = property_string_format(format) {
        return property_string::check(path, sub, value);
    }
    if format == "pve-vm-cpu-conf" {
        // A named format with a validator: `parse_property_string` checks the keys, then
        // calls `validate_vm_cpu_conf` on what it parsed.
        property_string::check(path, cpu::format(), value)?;
        return cpu::validate_vm_cpu_conf(&property_string::parse(cpu::format(), value)?);
    }
    if let Some(item_format) = format.strip_suffix("-list") {
        // `check_format`: "we allow empty lists".
        return split_list(value).try_for_each(|item| check_one(item_format, item));
    }
    if let Some(item_format) = format.strip_suffix("-opt") {
        if value.is_empty() {
            return Ok(());
        }
        return check_one(item_format, value);
    }
    check_one(format, value)
}

/// `PVE::ParseUtils::split_list`: NUL-separated, or else by `,`, `;` and whitespace.
fn split_list(text: &str) -> impl Iterator<Item = &str> {
    let separators: &[char] = if text.contains('\0') {
        &['\0']
    } else {
        &[',', ';', ' ', '\t', '\n', '\r']
    };
    text.split(separators).filter(|item| !item.is_empty())
}

fn check_one(format: &str, value: &str) -> Result<(), String> {
    let fail = |message: String| Err(message + "\n");
    match format {
        // pve-common `pve_verify_vmid`.
        "pve-vmid" if !is_vmid(value) => fail("value does not look like a valid VM ID".into()),
        // pve-common `pve_verify_node_name`.
        "pve-node" if !is_dns_label(value) => {
            fail("value does not look like a valid node name".into())
        }
        // pve-common `pve_verify_dns_name`.
        "dns-name" if !value.split('.').all(is_dns_label) => {
            fail("value does not look like a valid DNS name".into())
        }
        // pve-common `parse_storage_id` (`parse_id`).
        "pve-storage-id" => check_id(value, "storage"),
        // pve-common `parse_bridge_id`.
        "pve-bridge-id" if !is_word(value, "-_.") => fail(format!("invalid bridge ID '{value}'")),
        // pve-common `pve_verify_configid`.
        "pve-configid" if !is_configid(value) => {
            fail(format!("invalid configuration ID '{value}'"))
        }
        // pve-common `pve_verify_urlencoded`.
        "urlencoded"
            if !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-%_.!~*'()".contains(c)) =>
        {
            fail(format!("invalid urlencoded string: {value}"))
        }
        // pve-common `pve_verify_tag` (`pve-tag-list` is its list).
        "pve-tag" if !is_tag(value) => fail("invalid characters in tag".into()),
        // pve-common `pve_verify_mac_addr`: unicast only (the I/G bit clear).
        "mac-addr" if !is_unicast_mac(value) => {
            fail("value does not look like a valid unicast MAC address".into())
        }
        // pve-common `pve_verify_ipv4`, `pve_verify_ipv6`, `pve_verify_ip`.
        "ipv4" if value.parse::<Ipv4Addr>().is_err() => {
            fail("value does not look like a valid IPv4 address".into())
        }
        "ipv6" if value.parse::<Ipv6Addr>().is_err() => {
            fail("value does not look like a valid IPv6 address".into())
        }
        "ip" if value.parse::<std::net::IpAddr>().is_err() => {
            fail("value does not look like a valid IP address".into())
        }
        // pve-common `pve_verify_ipv4_config`, `pve_verify_ipv6_config`.
        "pve-ipv4-config" if !(matches!(value, "dhcp" | "manual") || is_cidr_v4(value)) => {
            fail("value does not look like a valid ipv4 network configuration".into())
        }
        "pve-ipv6-config"
            if !(matches!(value, "auto" | "dhcp" | "manual") || is_cidr_v6(value)) =>
        {
            fail("value does not look like a valid ipv6 network configuration".into())
        }
        // qemu-server `parse_phys_bits` (PVE::QemuServer::CPUConfig).
        "pve-phys-bits" => cpu::check_phys_bits(value),
        // pve-access-control `verify_poolname` (PVE::AccessControl).
        "pve-poolid" => check_pool_id(value),
        // qemu-server `verify_bootdev` (PVE::QemuServer).
        "pve-qm-bootdev" if !is_boot_device(value) => {
            fail(format!("invalid boot device '{value}'"))
        }
        // pve-storage `parse_volume_id` (PVE::Storage).
        "pve-volume-id" if !is_volume_id(value) => {
            fail(format!("unable to parse volume ID '{value}'"))
        }
        // qemu-server `verify_volume_id_or_qm_path` and `verify_volume_id_or_absolute_path`:
        // `none`, `cdrom` (the first only), an absolute path, or a volume id.
        "pve-volume-id-or-qm-path" if matches!(value, "none" | "cdrom") => Ok(()),
        "pve-volume-id-or-qm-path" | "pve-volume-id-or-absolute-path"
            if !(value.starts_with('/') || is_volume_id(value)) =>
        {
            fail(format!("unable to parse volume ID '{value}'"))
        }
        _ => Ok(()),
    }
}

fn is_vmid(value: &str) -> bool {
    // `^[1-9][0-9]{2,8}$`
    (3..=9).contains(&value.len())
        && !value.starts_with('0')
        && value.bytes().all(|b| b.is_ascii_digit())
}

/// `[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?`
fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// `^[-_.\w\d]+$` and the like: word characters plus `extra`.
fn is_word(value: &str, extra: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(c))
}

/// `$CONFIGID_RE`: `[a-z][a-z0-9_-]+`, case-insensitive.
fn is_configid(value: &str) -> bool {
    let mut chars = value.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && value.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `parse_id`: at least two characters, `^[a-z][a-z0-9\-\_\.]*[a-z0-9]$` (any case).
fn check_id(value: &str, kind: &str) -> Result<(), String> {
    if value.len() < 2 {
        return Err(format!(
            "{kind} ID '{value}' cannot be shorter than 2 characters\n"
        ));
    }
    let bytes = value.as_bytes();
    let ok = bytes[0].is_ascii_alphabetic()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b));
    if ok {
        Ok(())
    } else {
        Err(format!("{kind} ID '{value}' contains illegal characters\n"))
    }
}

/// `$PVE_TAG_RE`: `[a-z0-9_][a-z0-9_\-\+\.]*`, any case.
fn is_tag(value: &str) -> bool {
    value
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-+.".contains(&b))
}

/// `^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$`, any case.
fn is_unicast_mac(value: &str) -> bool {
    let octets: Vec<&str> = value.split(':').collect();
    octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()))
        && u8::from_str_radix(octets[0], 16).is_ok_and(|first| first & 1 == 0)
}

/// `pve_verify_cidrv4`: an IPv4 address and a prefix of 8 to 32.
fn is_cidr_v4(value: &str) -> bool {
    value
        .split_once('/')
        .is_some_and(|(ip, prefix)| ip.parse::<Ipv4Addr>().is_ok() && is_prefix_in(prefix, 8, 32))
}

/// `pve_verify_cidrv6`: an IPv6 address (no zone id) and a prefix of 8 to 128.
fn is_cidr_v6(value: &str) -> bool {
    value
        .split_once('/')
        .is_some_and(|(ip, prefix)| ip.parse::<Ipv6Addr>().is_ok() && is_prefix_in(prefix, 8, 128))
}

/// `(\d+)` with `$1 > 7 && $1 <= max`.
fn is_prefix_in(prefix: &str, min: u32, max: u32) -> bool {
    !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && prefix
            .parse::<u32>()
            .is_ok_and(|p| (min..=max).contains(&p))
}

/// pve-access-control `verify_poolname` (PVE::AccessControl): at most three `/`-separated
/// levels of `[A-Za-z0-9\.\-_]+`.
fn check_pool_id(value: &str) -> Result<(), String> {
    // Perl's `split` drops trailing empty fields before they are counted.
    let n_levels = value.trim_end_matches('/').split('/').count();
    if n_levels > 3 {
        return Err(format!(
            "pool name '{value}' nested too deeply (max levels = 3)\n"
        ));
    }
    let level_ok = |level: &str| {
        !level.is_empty()
            && level
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
    };
    if value.split('/').all(level_ok) {
        Ok(())
    } else {
        Err(format!("pool name '{value}' contains invalid characters\n"))
    }
}

/// A device `verify_bootdev` accepts: a drive (not `efidisk`, `tpmstate` or `unused`), a NIC,
/// a USB or a PCI device, within qemu-server's index limits.
fn is_boot_device(value: &str) -> bool {
    let Some(at) = value.find(|c: char| c.is_ascii_digit()) else {
        return false;
    };
    let (family, index) = value.split_at(at);
    let bootable = matches!(
        family,
        "ide" | "sata" | "scsi" | "virtio" | "net" | "usb" | "hostpci"
    );
    bootable
        && index.bytes().all(|b| b.is_ascii_digit())
        && index
            .parse::<u32>()
            .is_ok_and(|n| max_index(family).is_some_and(|max| n <= max))
}

/// pve-storage `parse_volume_id`: `<storage id>:<name>` (`^([a-z][a-z0-9\-\_\.]*[a-z0-9]):(.+)$`).
fn is_volume_id(value: &str) -> bool {
    value
        .split_once(':')
        .is_some_and(|(storage, name)| check_id(storage, "storage").is_ok() && !name.is_empty())
}

/// The property-string formats registered by name that the served paths use.
fn property_string_format(format: &str) -> Option<&'static Map<String, Value>> {
    static FORMATS: OnceLock<Map<String, Value>> = OnceLock::new();
    let formats = FORMATS.get_or_init(|| {
        let value = json!({
            // qemu-server `$ipconfig_fmt` (PVE::QemuServer::Network).
            "pve-qm-ipconfig": {
                "ip": {"type": "string", "format": "pve-ipv4-config", "optional": 1},
                "gw": {"type": "string", "format": "ipv4", "optional": 1, "requires": "ip"},
                "ip6": {"type": "string", "format": "pve-ipv6-config", "optional": 1},
                "gw6": {"type": "string", "format": "ipv6", "optional": 1, "requires": "ip6"},
            },
            // qemu-server `$cicustom_fmt` (PVE::QemuServer).
            "pve-qm-cicustom": {
                "meta": {"type": "string", "optional": 1, "format": "pve-volume-id"},
                "network": {"type": "string", "optional": 1, "format": "pve-volume-id"},
                "user": {"type": "string", "optional": 1, "format": "pve-volume-id"},
                "vendor": {"type": "string", "optional": 1, "format": "pve-volume-id"},
            },
            // qemu-server `$boot_fmt` (PVE::QemuServer).
            "pve-qm-boot": {
                "legacy": {"type": "string", "optional": 1, "default_key": 1, "pattern": "[acdn]{1,4}"},
                "order": {"type": "string", "optional": 1, "format": "pve-qm-bootdev-list"},
            },
        });
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    });
    formats.get(format).and_then(Value::as_object)
}
