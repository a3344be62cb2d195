//! Addresses as every clone ends up with them, after its layers: a static address declared on a
//! template or a group is copied to each clone that inherits it, so two clones would answer for
//! one address (IPv4, IPv6 and extra interfaces alike); addresses for interfaces the VM does not
//! have. One pass over the clones with a map of addresses taken, so linear in their number.

use std::collections::HashMap;
use std::net::IpAddr;

use super::super::layers::{Layer, Layered, Origin};
use super::super::model::*;
use super::Validator;
use super::error_at_origin;

/// A static address a clone gets, with the field and layer it comes from.
struct Claim {
    addr: IpAddr,
    field: String,
    origin: Origin,
}

fn claims(clone: &CloneVm) -> Vec<Claim> {
    let ci = &clone.settings.cloud_init;
    let mut out = Vec::new();
    let mut add = |addr: IpAddr, field: String, origin: &Origin| {
        out.push(Claim {
            addr,
            field,
            origin: origin.clone(),
        })
    };
    // A clone's own `ipv4` is checked where it is declared (`check_clones`), with its place.
    if let Some(Layered {
        value: Ipv4Config::Static { address, .. },
        origin,
    }) = &ci.ipv4
        && !matches!(origin.layer, Layer::Clone(_))
    {
        add(IpAddr::V4(address.addr()), "cloud_init.ipv4".into(), origin);
    }
    if let Some(Layered {
        value: Ipv6Config::Static { address, .. },
        origin,
    }) = &ci.ipv6
    {
        add(IpAddr::V6(address.addr()), "cloud_init.ipv6".into(), origin);
    }
    if let Some(extra) = &ci.extra_interfaces {
        for (idx, nic) in extra.value.iter().enumerate() {
            let field = |family: &str| format!("cloud_init.extra_interfaces[{idx}].{family}");
            if let Some(Ipv4Config::Static { address, .. }) = &nic.ipv4 {
                add(IpAddr::V4(address.addr()), field("ipv4"), &extra.origin);
            }
            if let Some(Ipv6Config::Static { address, .. }) = &nic.ipv6 {
                add(IpAddr::V6(address.addr()), field("ipv6"), &extra.origin);
            }
        }
    }
    out
}

/// Every clone's static addresses against the others', and its addresses against its network
/// interfaces.
pub(super) fn check_shared_addresses(ctx: &mut Validator, clones: &[CloneVm]) {
    let mut taken: HashMap<IpAddr, &str> = HashMap::new();
    for clone in clones {
        let n_before = ctx.diagnostics.len();
        for claim in claims(clone) {
            match taken.get(&claim.addr) {
                Some(first) => {
                    let why = match &claim.origin.layer {
                        Layer::Clone(_) => String::new(),
                        layer => format!(
                            ": it is declared on `{layer}`, which every one of them inherits"
                        ),
                    };
                    // A group's clone is named by the collapsed problem; another is named here.
                    let who = match &clone.group {
                        Some(_) => String::new(),
                        None => format!("clone `{}`: ", clone.name),
                    };
                    error_at_origin(
                        ctx,
                        &claim.origin,
                        &format!("{}.{}", claim.origin.layer, claim.field),
                        format!(
                            "{who}address {} is already given to clone `{first}`{why}",
                            claim.addr
                        ),
                        "an address per clone, declared on each (a group counts `ipv4` up, not IPv6 or extra interfaces)",
                    );
                }
                None => {
                    taken.insert(claim.addr, &clone.name);
                }
            }
        }
        check_interfaces(ctx, clone);
        if clone.group.is_some() && ctx.diagnostics.len() > n_before {
            let end = ctx.diagnostics.len();
            ctx.subjects.push((n_before, end, clone.name.clone()));
        }
    }
}

/// Addresses need interfaces: `extra_interfaces` no longer than `net1…`, and any address at
/// all needs `net0`.
fn check_interfaces(ctx: &mut Validator, clone: &CloneVm) {
    let ci = &clone.settings.cloud_init;
    let n_nics = clone.settings.networks.value.len();
    let addressed = ci
        .ipv4
        .as_ref()
        .map(|l| &l.origin)
        .or(ci.ipv6.as_ref().map(|l| &l.origin));
    if n_nics == 0
        && let Some(origin) = addressed
    {
        error_at_origin(
            ctx,
            origin,
            &format!("{}.cloud_init", origin.layer),
            "the clone has no network interface (its template declares none), so its address goes nowhere".to_string(),
            "a `network` list on the template (or the clone), or no address",
        );
        return;
    }
    if let Some(extra) = &ci.extra_interfaces
        && !extra.value.is_empty()
        && 1 + extra.value.len() > n_nics
    {
        error_at_origin(
            ctx,
            &extra.origin,
            &format!("{}.cloud_init.extra_interfaces", extra.origin.layer),
            format!(
                "`extra_interfaces` addresses net1…net{}, but the clone has {n_nics} network interface(s)",
                extra.value.len()
            ),
            "one entry per interface after `net0`: add interfaces to `network`, or remove entries",
        );
    }
}
