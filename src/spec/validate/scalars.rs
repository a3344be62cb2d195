//! Single values the spec names or counts: names and ids in Proxmox's formats (VM names, nodes,
//! storages, pools, tags), vmids, sizes and memory, time-outs; and the uniqueness of names and
//! vmids across templates and clones.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_saphyr::Spanned;

use super::Validator;

use super::super::model::*;

pub(super) const DNS_LABEL_ALLOWED: &str =
    "letters, digits and `-` (not first or last), at most 63 characters; no `_`";
pub(super) const STORAGE_ID_ALLOWED: &str = "a Proxmox storage id: `[a-z][a-z0-9-_.]*[a-z0-9]`";
pub(super) const NODE_ALLOWED: &str = "a node name: letters, digits and `-`";
/// Proxmox's stock storages, local to each node.
pub(super) const NODE_LOCAL_STORAGES: [&str; 3] = ["local", "local-lvm", "local-zfs"];
pub(super) const TAG_ALLOWED: &str = "a Proxmox tag: `[a-z0-9_][a-z0-9_+.-]*`";

/// The vmids and VM names templates and clones have claimed so far, each with its claimant.
#[derive(Default)]
pub(super) struct Taken {
    /// vmid → `templates.NAME` or the clone's path.
    pub(super) vmids: BTreeMap<u32, String>,
    /// Lower-case VM name → its claimant's path.
    pub(super) vm_names: BTreeMap<String, String>,
}

pub(super) fn claim_vmid(
    ctx: &mut Validator,
    vmid: &Spanned<u64>,
    path: &str,
    seen: &mut BTreeMap<u32, String>,
) {
    claim_vmid_as(ctx, vmid, path, path.trim_end_matches(".vmid"), seen);
}

/// Claim a vmid for `claimant` (as later claimants are told), reporting a second claim at `path`.
pub(super) fn claim_vmid_as(
    ctx: &mut Validator,
    vmid: &Spanned<u64>,
    path: &str,
    claimant: &str,
    seen: &mut BTreeMap<u32, String>,
) {
    let Ok(id) = u32::try_from(vmid.value) else {
        return;
    };
    if let Some(first) = seen.get(&id) {
        ctx.error_at(
            vmid,
            path,
            format!("vmid {id} is already used by {first}"),
            Some("a vmid no other template or clone uses"),
        );
    } else {
        seen.insert(id, claimant.to_string());
    }
}

pub(super) fn check_vm_name(
    ctx: &mut Validator,
    name: &Spanned<String>,
    path: &str,
    seen: &mut BTreeMap<String, String>,
) {
    if !is_dns_label(&name.value) {
        ctx.error_at(
            name,
            path,
            format!("`{}` is not a valid VM name", name.value),
            Some(DNS_LABEL_ALLOWED),
        );
    }
    let lower = name.value.to_ascii_lowercase();
    if let Some(first) = seen.get(&lower) {
        ctx.error_at(
            name,
            path,
            format!("name `{}` is already used by {first}", name.value),
            Some("a VM name no other template or clone uses"),
        );
    } else {
        seen.insert(lower, path.to_string());
    }
}

pub(super) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

pub(super) fn is_storage_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() >= 2
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(b))
        && (bytes[bytes.len() - 1].is_ascii_lowercase() || bytes[bytes.len() - 1].is_ascii_digit())
}

/// A pool id as `pve-poolid` allows: pve-access-control's `verify_poolname`
/// (`src/PVE/AccessControl.pm`) takes `^[A-Za-z0-9\.\-_]+(?:/[A-Za-z0-9\.\-_]+){0,2}$`, so
/// `a.b` is a pool and `/` nests pools at most three levels deep (PVE >= 8.1).
pub(super) fn check_pool(
    ctx: &mut Validator,
    pool: &Spanned<String>,
    path: &str,
) -> Option<String> {
    let parts: Vec<&str> = pool.value.split('/').collect();
    let ok = parts.len() <= 3
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    // The run lease is a pool of this name (`lease/`): a spec's pool there would hold VMs in
    // the lease, which then could never be deleted.
    if ok && pool.value.starts_with(crate::lease::POOL_PREFIX) {
        ctx.error_at(
            pool,
            path,
            format!(
                "pool `{}` is named like proxfleet's run lease (`{}<project>`)",
                pool.value,
                crate::lease::POOL_PREFIX
            ),
            Some("any other pool id"),
        );
        return None;
    }
    if ok {
        Some(pool.value.clone())
    } else {
        let message = if parts.len() > 3 {
            format!(
                "pool `{}` is nested more than three levels deep",
                pool.value
            )
        } else {
            format!("`{}` is not a valid pool id", pool.value)
        };
        ctx.error_at(
            pool,
            path,
            message,
            Some("letters, digits, `-`, `_` and `.`, with `/` between nested pools (at most three levels)"),
        );
        None
    }
}

/// A count within what Proxmox (or the spec's schema) allows.
pub(super) fn check_count(
    ctx: &mut Validator,
    value: &Spanned<u32>,
    path: &str,
    what: &str,
    range: std::ops::RangeInclusive<u32>,
) {
    if !range.contains(&value.value) {
        ctx.error_at(
            value,
            path,
            format!("{} {what} is out of range", value.value),
            Some(&format!("{}..={}", range.start(), range.end())),
        );
    }
}

/// Proxmox keeps at most 8 KiB of description (`description` has `maxLength: 8192` in the API
/// schema), and proxfleet appends its ownership line to it.
pub(super) const MAX_DESCRIPTION: usize = 8192 - 256;

pub(super) fn check_description(ctx: &mut Validator, text: &Spanned<String>, path: &str) {
    if text.value.len() > MAX_DESCRIPTION {
        ctx.error_at(
            text,
            path,
            format!(
                "the description is {} bytes; Proxmox keeps at most 8192, and proxfleet appends its ownership line",
                text.value.len()
            ),
            Some(&format!("at most {MAX_DESCRIPTION} bytes")),
        );
    }
}

pub(super) fn check_storage(ctx: &mut Validator, storage: &Spanned<String>, path: &str) {
    if !is_storage_id(&storage.value) {
        ctx.error_at(
            storage,
            path,
            format!("`{}` is not a valid storage id", storage.value),
            Some(STORAGE_ID_ALLOWED),
        );
    }
}

pub(super) fn check_node(ctx: &mut Validator, node: &Spanned<String>, path: &str) {
    if !is_dns_label(&node.value) {
        ctx.error_at(
            node,
            path,
            format!("`{}` is not a valid node name", node.value),
            Some(NODE_ALLOWED),
        );
    }
}

pub(super) fn check_vmid(ctx: &mut Validator, vmid: &Spanned<u64>, path: &str) -> Option<VmId> {
    let id = VmId::new(vmid.value);
    if id.is_none() {
        ctx.error_at(
            vmid,
            path,
            format!("vmid {} is out of range", vmid.value),
            Some("100..=999999999"),
        );
    }
    id
}

/// Parse a size with an optional binary unit into bytes. A bare number means `bare_unit`.
pub(super) fn parse_size(text: &str, bare_unit: u64) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" => bare_unit,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Largest memory accepted: beyond any Proxmox host, so a larger value is a unit mistake.
const MAX_MEMORY_BYTES: u64 = 16 << 40;

pub(super) fn parse_memory(
    ctx: &mut Validator,
    memory: &Spanned<String>,
    path: &str,
) -> Option<u64> {
    let allowed = "a whole number of MiB (`2048`) or a size with a unit (`2GiB`, `2048MiB`), from 16 MiB to 16 TiB";
    let bare_number = memory.value.trim().chars().all(|c| c.is_ascii_digit());
    match parse_size(&memory.value, 1 << 20) {
        // No Proxmox host has 16 TiB of memory; a bare number that large was meant in bytes.
        // Memory in MiB is never 2^31 or more in practice (2 PiB): a number that large was
        // written in bytes.
        Some(_)
            if bare_number
                && memory
                    .value
                    .trim()
                    .parse::<u64>()
                    .is_ok_and(|n| n >= 1 << 31) =>
        {
            let n: u64 = memory.value.trim().parse().unwrap_or_default();
            let meant = if n.is_multiple_of(1 << 30) {
                format!("{}G", n >> 30)
            } else {
                format!("{}M", (n >> 20).max(1))
            };
            ctx.error_at(
                memory,
                path,
                format!("`{}` is read as MiB, far more memory than any host has: it looks like bytes (did you mean {meant}?)", memory.value),
                Some(allowed),
            );
            None
        }
        Some(bytes) if bytes > MAX_MEMORY_BYTES => {
            let message = if bare_number {
                format!(
                    "`{}` is read as MiB, {} TiB: more memory than any host has (was it meant in bytes?)",
                    memory.value,
                    bytes >> 40
                )
            } else {
                format!("`{}` is more memory than any host has", memory.value)
            };
            ctx.error_at(memory, path, message, Some(allowed));
            None
        }
        Some(bytes) if bytes.is_multiple_of(1 << 20) && bytes >= 16 << 20 => Some(bytes >> 20),
        _ => {
            ctx.error_at(
                memory,
                path,
                format!("`{}` is not a valid memory size", memory.value),
                Some(allowed),
            );
            None
        }
    }
}

pub(super) fn check_tags(ctx: &mut Validator, tags: &[Spanned<String>], path: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    for (tag_idx, tag) in tags.iter().enumerate() {
        let lower = tag.value.to_ascii_lowercase();
        let ok = lower
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && lower
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+.-".contains(c));
        if ok {
            out.insert(lower);
        } else {
            ctx.error_at(
                tag,
                &format!("{path}[{tag_idx}]"),
                format!("`{}` is not a valid tag", tag.value),
                Some(TAG_ALLOWED),
            );
        }
    }
    out.into_iter().collect()
}

/// `wait_for_ip_timeout`: whole seconds, or a number with `s`, `m` or `h`; 1 s to 24 h.
pub(super) fn check_wait_timeout(
    ctx: &mut Validator,
    text: &Spanned<String>,
    path: &str,
) -> Option<Duration> {
    let value = text.value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let factor = match unit {
        "" | "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        _ => None,
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .zip(factor)
        .and_then(|(n, f)| n.checked_mul(f))
        .filter(|s| (1..=24 * 3600).contains(s));
    if seconds.is_none() {
        ctx.error_at(
            text,
            path,
            format!("`{}` is not a valid time-out", text.value),
            Some("whole seconds (`300`) or a number with `s`, `m` or `h` (`90s`, `5m`), from 1 s to 24 h"),
        );
    }
    seconds.map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        let cases = [
            ("2GiB", 1 << 20, Some(2u64 << 30)),
            ("2048", 1 << 20, Some(2048u64 << 20)),
            ("2048MiB", 1 << 20, Some(2048u64 << 20)),
            ("20G", 0, Some(20u64 << 30)),
            ("1T", 0, Some(1u64 << 40)),
            ("2 GB", 1 << 20, None),
            ("-1", 1 << 20, None),
            ("", 1 << 20, None),
        ];
        for (text, bare, expect) in cases {
            assert_eq!(parse_size(text, bare), expect, "{text}");
        }
    }
}
