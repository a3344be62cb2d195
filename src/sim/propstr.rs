//! The simulator's own property-string handling (it shares no code with the client): parse
//! `key=value` lists with a bare default-key value, and print them back the way Proxmox does,
//! default key bare and first, the rest sorted by key.

use std::collections::BTreeMap;

/// NIC models; in `net[n]` a model's key carries the MAC (`virtio=BC:24:11:…`).
pub(crate) const NIC_MODELS: [&str; 14] = [
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

/// A parsed property string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Props {
    pub first: Option<String>,
    pub rest: BTreeMap<String, String>,
}

impl Props {
    pub fn parse(text: &str, default_key: &str) -> Props {
        let mut props = Props::default();
        for item in text.split(',').filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some((key, value)) if key == default_key => props.first = Some(value.to_string()),
                Some((key, value)) => {
                    props.rest.insert(key.to_string(), value.to_string());
                }
                None if props.first.is_none() => props.first = Some(item.to_string()),
                None => {}
            }
        }
        props
    }

    pub fn print(&self) -> String {
        let mut parts: Vec<String> = self.first.iter().cloned().collect();
        parts.extend(self.rest.iter().map(|(k, v)| format!("{k}={v}")));
        parts.join(",")
    }
}

/// Parse a disk size (`20G`, `+2G`, `512M`, bytes without unit) into (is_relative, bytes).
pub(crate) fn parse_size(text: &str) -> Option<(bool, u64)> {
    let (relative, text) = match text.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((relative, (number * factor) as u64))
}

/// Print a size as Proxmox does: the largest unit that divides it exactly.
pub(crate) fn print_size(bytes: u64) -> String {
    for (factor, unit) in [
        (1u64 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reprints_canonically() {
        let props = Props::parse("ssd=1,file=local-lvm:vm-1-disk-0,discard=on", "file");
        assert_eq!(props.print(), "local-lvm:vm-1-disk-0,discard=on,ssd=1");
        assert_eq!(parse_size("+2G"), Some((true, 2 << 30)));
        assert_eq!(print_size(3584 << 20), "3584M");
        assert_eq!(print_size(32 << 30), "32G");
    }
}
