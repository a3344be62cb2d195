//! Proxmox property strings (`virtio=BC:24:11:2A:3B:4C,bridge=vmbr0,firewall=1`): parsing,
//! canonical printing as the server does it (default key bare and first, the rest sorted), and
//! the semantic normalisation the differ compares with. Also the `sshkeys` percent-encoding.
//! Pure functions, no I/O: both the differ (comparing) and the client's callers (writing) use them.

use std::collections::BTreeMap;

/// A parsed property string: an optional bare default-key value and `key=value` pairs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PropertyString {
    /// The default key's value when given bare (`virtio` in `virtio,bridge=vmbr0`).
    pub bare: Option<String>,
    /// The keyed values, sorted by key.
    pub entries: BTreeMap<String, String>,
}

impl PropertyString {
    /// Parse `text`; empty items are ignored, a later duplicate key wins, a second bare value is
    /// kept as a key without value.
    pub fn parse(text: &str) -> PropertyString {
        let mut out = PropertyString::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some((key, value)) => {
                    out.entries
                        .insert(key.trim().to_string(), value.trim().to_string());
                }
                // Proxmox takes a value without `key=` as the default key's, wherever it stands.
                None if out.bare.is_none() => out.bare = Some(item.to_string()),
                None => {
                    out.entries.insert(item.to_string(), String::new());
                }
            }
        }
        out
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Print canonically: `default_key`'s value bare first (when known), then the rest sorted.
    pub fn to_canonical(&self, default_key: Option<&str>) -> String {
        let mut parts = Vec::new();
        let mut entries = self.entries.clone();
        let first = match (default_key, &self.bare) {
            (_, Some(bare)) => Some(bare.clone()),
            (Some(key), None) => entries.remove(key),
            (None, None) => None,
        };
        if let (Some(key), Some(_)) = (default_key, &self.bare) {
            entries.remove(key);
        }
        parts.extend(first);
        parts.extend(
            entries
                .into_iter()
                .map(|(k, v)| if v.is_empty() { k } else { format!("{k}={v}") }),
        );
        parts.join(",")
    }
}

const NIC_MODELS: [&str; 14] = [
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "e1000e",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
    "rtl8139",
    "virtio",
    "vmxnet3",
];

/// Sub-keys that are booleans in the property strings proxfleet compares.
const BOOLEAN_KEYS: [&str; 12] = [
    "enabled",
    "firewall",
    "link_down",
    "ssd",
    "iothread",
    "backup",
    "replicate",
    "ro",
    "pre-enrolled-keys",
    "pcie",
    "x-vga",
    "rombar",
];

fn normal_bool(value: &str) -> Option<&'static str> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some("1"),
        "0" | "off" | "no" | "false" => Some("0"),
        _ => None,
    }
}

fn default_key(option: &str) -> Option<&'static str> {
    let disk = ["scsi", "virtio", "sata", "ide", "unused"].iter().any(|p| {
        option
            .strip_prefix(p)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    if disk || option == "efidisk0" || option == "tpmstate0" {
        return Some("file");
    }
    match option {
        "agent" => Some("enabled"),
        "vga" => Some("type"),
        "machine" => Some("type"),
        "memory" => Some("current"),
        "cpu" => Some("cputype"),
        _ => None,
    }
}

/// Canonical form of an option's value for semantic comparison: property strings re-printed
/// with the default key bare and first, the rest sorted, booleans as `1`/`0`, server-written
/// `size=` dropped from disks, NIC models separated from their MAC; tags as a sorted set.
pub fn normalize(option: &str, value: &str) -> String {
    if option == "tags" {
        return normalize_tags(value);
    }
    if matches!(
        option,
        "onboot" | "ciupgrade" | "protection" | "template" | "numa" | "kvm"
    ) {
        return normal_bool(value)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
    }
    if !value.contains('=') && !value.contains(',') {
        return normal_bool_for(option, value);
    }
    let mut parsed = PropertyString::parse(value);
    let is_net = option
        .strip_prefix("net")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if is_net {
        // `virtio=BC:24:..` carries model and MAC in one item; `model=virtio,macaddr=..` too.
        let model = NIC_MODELS
            .iter()
            .find(|m| parsed.entries.contains_key(**m))
            .copied();
        if let Some(model) = model {
            let mac = parsed.entries.remove(model).unwrap_or_default();
            parsed.entries.insert("model".into(), model.into());
            if !mac.is_empty() {
                parsed
                    .entries
                    .insert("macaddr".into(), mac.to_ascii_uppercase());
            }
        } else if let Some(bare) = parsed.bare.take() {
            parsed.entries.insert("model".into(), bare);
        }
        if let Some(mac) = parsed.entries.get_mut("macaddr") {
            *mac = mac.to_ascii_uppercase();
        }
    }
    let key = default_key(option);
    if let (Some(key), Some(bare)) = (key, parsed.bare.take()) {
        parsed.entries.insert(key.to_string(), bare);
    }
    if key == Some("file") {
        parsed.entries.remove("size");
    }
    for (sub, sub_value) in parsed.entries.iter_mut() {
        if BOOLEAN_KEYS.contains(&sub.as_str())
            && let Some(b) = normal_bool(sub_value)
        {
            *sub_value = b.to_string();
        }
    }
    parsed.to_canonical(key)
}

fn normal_bool_for(option: &str, value: &str) -> String {
    if option == "agent" {
        return normal_bool(value)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
    }
    value.to_string()
}

/// The `size=` of a disk option in bytes (`local-lvm:vm-1-disk-0,size=20G` → 20 GiB).
pub fn disk_size_bytes(value: &str) -> Option<u64> {
    let size = PropertyString::parse(value).entries.get("size")?.clone();
    let split = size
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(size.len());
    let (number, unit) = size.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    Some((number * factor as f64) as u64)
}

/// The MAC address of a `netN` value (`virtio=BC:24:11:..` or `macaddr=..`), upper-case.
pub fn nic_mac(value: &str) -> Option<String> {
    let parsed = PropertyString::parse(value);
    parsed
        .entries
        .iter()
        .find(|(key, v)| {
            (NIC_MODELS.contains(&key.as_str()) || key.as_str() == "macaddr") && !v.is_empty()
        })
        .map(|(_, mac)| mac.to_ascii_uppercase())
}

/// A `netN` value with the given MAC carried over (`virtio,bridge=vmbr0` →
/// `virtio=BC:24:11:..,bridge=vmbr0`), so an update does not make Proxmox invent a new one.
pub fn with_mac(value: &str, mac: &str) -> String {
    if nic_mac(value).is_some() {
        return value.to_string();
    }
    let mut items: Vec<String> = value.split(',').map(str::to_string).collect();
    match items
        .iter()
        .position(|item| NIC_MODELS.contains(&item.as_str()))
    {
        Some(idx) => items[idx] = format!("{}={mac}", items[idx]),
        None => items.push(format!("macaddr={mac}")),
    }
    items.join(",")
}

/// Tags as Proxmox stores them: split on `;`, `,` or whitespace, lower-cased, unique, sorted,
/// joined with `;`.
pub fn normalize_tags(value: &str) -> String {
    let mut tags: Vec<String> = value
        .split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    tags.sort();
    tags.dedup();
    tags.join(";")
}

/// Percent-encode SSH public keys for the `sshkeys` option: every byte outside
/// `[a-zA-Z0-9_.!~*'()-]` becomes `%XX`, including spaces, `+`, `/`, `=`, `@` and newlines.
pub fn encode_sshkeys(keys: &[String]) -> String {
    let text = keys.iter().map(|k| k.trim()).collect::<Vec<_>>().join("\n");
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decode an `sshkeys` value into its keys (trimmed, blank lines dropped). Invalid escapes are
/// kept as they are.
pub fn decode_sshkeys(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        if bytes[idx] == b'%'
            && let Some(hex) = value.get(idx + 1..idx + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            decoded.push(byte);
            idx += 3;
            continue;
        }
        decoded.push(bytes[idx]);
        idx += 1;
    }
    String::from_utf8_lossy(&decoded)
        .lines()
        .map(|line| line.trim().to_string())
        .filter(|line| !line.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_strings_print_canonically() {
        let parsed = PropertyString::parse("bridge=vmbr0,virtio,firewall=1");
        assert_eq!(parsed.bare.as_deref(), Some("virtio"));
        assert_eq!(
            parsed.to_canonical(Some("model")),
            "virtio,bridge=vmbr0,firewall=1"
        );
        let disk = PropertyString::parse("discard=on,file=local-lvm:vm-100-disk-0,ssd=1");
        assert_eq!(
            disk.to_canonical(Some("file")),
            "local-lvm:vm-100-disk-0,discard=on,ssd=1"
        );
    }

    #[test]
    fn normalisation_compares_meaning_not_text() {
        let cases = [
            (
                "net0",
                "virtio=bc:24:11:2a:3b:4c,bridge=vmbr0",
                "model=virtio,macaddr=BC:24:11:2A:3B:4C,bridge=vmbr0",
            ),
            (
                "scsi0",
                "local-lvm:vm-9000-disk-1,discard=on,size=20G,ssd=1",
                "file=local-lvm:vm-9000-disk-1,ssd=on,discard=on",
            ),
            (
                "ipconfig0",
                "ip=192.0.2.10/24,gw=192.0.2.1",
                "gw=192.0.2.1,ip=192.0.2.10/24",
            ),
            ("agent", "1", "enabled=1"),
            (
                "agent",
                "enabled=yes,fstrim_cloned_disks=1",
                "fstrim_cloned_disks=1,enabled=1",
            ),
            ("tags", "Web;proxfleet", "proxfleet,web"),
            ("onboot", "yes", "1"),
            ("memory", "current=2048", "2048"),
        ];
        for (option, a, b) in cases {
            assert_eq!(
                normalize(option, a),
                normalize(option, b),
                "{option}: {a} vs {b}"
            );
        }
        assert_ne!(
            normalize("net0", "virtio,bridge=vmbr0,tag=10"),
            normalize("net0", "virtio,bridge=vmbr0,tag=20")
        );
        assert_ne!(normalize("memory", "2048"), normalize("memory", "4096"));
    }

    #[test]
    fn disk_sizes_and_macs_are_read_from_option_values() {
        assert_eq!(
            disk_size_bytes("local-lvm:vm-1-disk-0,discard=on,size=20G"),
            Some(20 << 30)
        );
        assert_eq!(disk_size_bytes("local-lvm:vm-1-disk-0"), None);
        assert_eq!(
            nic_mac("virtio=bc:24:11:00:00:01,bridge=vmbr0").as_deref(),
            Some("BC:24:11:00:00:01")
        );
        assert_eq!(
            with_mac("virtio,bridge=vmbr1,tag=30", "BC:24:11:00:00:01"),
            "virtio=BC:24:11:00:00:01,bridge=vmbr1,tag=30"
        );
    }

    #[test]
    fn sshkeys_are_fully_percent_encoded_and_round_trip() {
        let keys = vec![
            "ssh-ed25519 AAAAC3Nz+a/b= ops@example.com".to_string(),
            "ssh-rsa AAAAB3 x".to_string(),
        ];
        let encoded = encode_sshkeys(&keys);
        assert_eq!(
            encoded,
            "ssh-ed25519%20AAAAC3Nz%2Ba%2Fb%3D%20ops%40example.com%0Assh-rsa%20AAAAB3%20x"
        );
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()%".contains(&b))
        );
        assert_eq!(decode_sshkeys(&encoded), keys);
        assert_eq!(
            decode_sshkeys("bad%zzescape"),
            vec!["bad%zzescape".to_string()]
        );
    }
}
