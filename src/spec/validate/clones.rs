//! Clones and clone groups: a group expanded into its clones, each clone's own settings checked
//! against its template, and what every clone claims alone (name, vmid, static address).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde_saphyr::Spanned;

use super::super::Warning;
use super::super::model::*;
use super::super::raw::*;
use super::cloud_init::check_cloud_init;
use super::scalars::{
    NODE_LOCAL_STORAGES, Taken, check_node, check_pool, check_storage, check_tags, check_vm_name,
    check_vmid, check_wait_timeout, claim_vmid, parse_memory, parse_size,
};
use super::templates::check_networks;
use super::{Defaults, Validator};

/// Every clone, declared alone or in a group, checked against its template; what each claims
/// alone (name, vmid, static address) checked against the others and the templates.
pub(super) fn check_clones(
    ctx: &mut Validator,
    raw: &RawSpec,
    templates: &[Template],
    taken: &mut Taken,
) -> (Vec<CloneVm>, BTreeMap<String, Vec<Explained>>) {
    let template_names: Vec<String> = raw.templates.keys().map(|k| k.value.clone()).collect();
    let mut entries: Vec<CloneEntry> = raw
        .clones
        .iter()
        .map(|(name, clone)| CloneEntry {
            name: name.clone(),
            source: format!("clones.{}", name.value),
            raw: clone.clone(),
            group: None,
            overridden: BTreeSet::new(),
        })
        .collect();
    for (group_name, group) in &raw.clone_groups {
        entries.extend(expand_group(ctx, group_name, group));
    }

    let mut ips: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut clones = Vec::new();
    let mut explanations = BTreeMap::new();
    for entry in &entries {
        let (name, clone) = (&entry.name, &entry.raw);
        let path = entry.source.clone();
        // Where to say a clone's own problem is: `clones.web-1`, or `clone_groups.web[web-2]`.
        let clone_path = match &entry.group {
            Some(_) => format!("{}[{}]", entry.source, name.value),
            None => entry.source.clone(),
        };
        check_vm_name(ctx, name, &clone_path, &mut taken.vm_names);
        let template = templates.iter().find(|t| t.name == clone.template.value);
        if template.is_none() && !template_names.contains(&clone.template.value) {
            let allowed = if template_names.is_empty() {
                "a template declared under `templates` (there are none)".to_string()
            } else {
                format!("one of the templates: {}", template_names.join(", "))
            };
            let known: Vec<&str> = template_names.iter().map(String::as_str).collect();
            let message = match crate::spec::closest(&clone.template.value, &known) {
                Some(near) => format!(
                    "unknown template `{}` (did you mean `{near}`?)",
                    clone.template.value
                ),
                None => format!("unknown template `{}`", clone.template.value),
            };
            // A group reports a bad template once, not once per clone.
            let already = ctx
                .diagnostics
                .iter()
                .any(|d| d.path == format!("{}.template", group_path(entry)));
            if !already {
                ctx.error_at(
                    &clone.template,
                    &format!("{}.template", group_path(entry)),
                    message,
                    Some(&allowed),
                );
            }
        }
        if let Some(mut c) = check_clone(ctx, name, clone, template, &path) {
            c.group = entry.group.clone();
            claim_vmid(
                ctx,
                &clone.vmid,
                &format!("{clone_path}.vmid"),
                &mut taken.vmids,
            );
            if let Some(CloudInit {
                ipv4: Some(Ipv4Config::Static { address, .. }),
                ..
            }) = &c.cloud_init
                && let Some(first) = ips.insert(address.addr(), c.name.clone())
                && let Some(ci) = clone.cloud_init.as_ref().and_then(|ci| ci.ipv4.as_ref())
            {
                ctx.error_at(
                    ci,
                    &format!("{clone_path}.cloud_init.ipv4"),
                    format!(
                        "address {} is already used by clone `{first}`",
                        address.addr()
                    ),
                    Some("an address no other clone uses"),
                );
            }
            if let Some(template) = template {
                explanations.insert(c.name.clone(), explain(entry, &c, template, &ctx.defaults));
            }
            clones.push(c);
        }
    }

    (clones, explanations)
}

/// A clone to validate: declared under `clones`, or expanded from a group.
pub(super) struct CloneEntry {
    name: Spanned<String>,
    /// Where its settings come from: `clones.NAME` or `clone_groups.GROUP`.
    source: String,
    raw: RawClone,
    group: Option<String>,
    /// Fields a group's per-clone override set.
    overridden: BTreeSet<&'static str>,
}

pub(super) fn group_path(entry: &CloneEntry) -> String {
    entry.source.clone()
}

/// Expand a clone group into one entry per clone: names from the pattern, vmids and static
/// IPv4 addresses counting up, nodes taken in turn, per-clone overrides applied.
pub(super) fn expand_group(
    ctx: &mut Validator,
    group_name: &Spanned<String>,
    group: &RawCloneGroup,
) -> Vec<CloneEntry> {
    let path = format!("clone_groups.{}", group_name.value);
    let count = group.count.value;
    if !(1..=1000).contains(&count) {
        ctx.error_at(
            &group.count,
            &format!("{path}.count"),
            format!("count {count} is out of range"),
            Some("1..=1000"),
        );
        return Vec::new();
    }
    let pattern = group
        .name
        .as_ref()
        .map(|n| n.value.clone())
        .unwrap_or_else(|| format!("{}-{{n}}", group_name.value));
    let pattern_place = group.name.clone().unwrap_or_else(|| group_name.clone());
    if count > 1 && !pattern.contains("{n}") {
        ctx.error_at(&pattern_place, &format!("{path}.name"), format!("name pattern `{pattern}` has no `{{n}}`: all {count} clones would get the same name"), Some("a pattern with `{n}`, such as `web-{n}`"));
        return Vec::new();
    }
    let names: Vec<String> = (1..=count)
        .map(|n| pattern.replace("{n}", &n.to_string()))
        .collect();
    for (override_name, _) in &group.overrides {
        if !names.contains(&override_name.value) {
            let known: Vec<&str> = names.iter().map(String::as_str).collect();
            let message = match crate::spec::closest(&override_name.value, &known) {
                Some(near) => format!(
                    "`{}` is not a clone of this group (did you mean `{near}`?)",
                    override_name.value
                ),
                None => format!("`{}` is not a clone of this group", override_name.value),
            };
            let shown: Vec<&str> = known.iter().take(5).copied().collect();
            let more = if known.len() > 5 { ", …" } else { "" };
            ctx.error_at(
                override_name,
                &format!("{path}.overrides.{}", override_name.value),
                message,
                Some(&format!(
                    "one of the group's clones: {}{more}",
                    shown.join(", ")
                )),
            );
        }
    }
    let first_ip = group
        .cloud_init
        .as_ref()
        .and_then(|ci| ci.ipv4.as_ref())
        .and_then(|ip| {
            ip.value
                .parse::<Ipv4Net>()
                .ok()
                .map(|net| (net, ip.clone()))
        });
    let mut out = Vec::new();
    for (idx, name) in names.iter().enumerate() {
        let overrides = group
            .overrides
            .iter()
            .find(|(k, _)| &k.value == name)
            .map(|(_, v)| v);
        let mut overridden = BTreeSet::new();
        if let Some(o) = overrides {
            for (field, set) in [
                ("cores", o.cores.is_some()),
                ("memory", o.memory.is_some()),
                ("cloud_init", o.cloud_init.is_some()),
                ("tags", o.tags.is_some()),
                ("start", o.start.is_some()),
                ("onboot", o.onboot.is_some()),
                ("wait_for_ip", o.wait_for_ip.is_some()),
            ] {
                if set {
                    overridden.insert(field);
                }
            }
        }
        let mut cloud_init = merge_cloud_init(
            group.cloud_init.as_ref(),
            overrides.and_then(|o| o.cloud_init.as_ref()),
        );
        let own_ip = overrides
            .and_then(|o| o.cloud_init.as_ref())
            .and_then(|ci| ci.ipv4.as_ref())
            .is_some();
        if let (Some((net, place)), Some(ci), false) = (&first_ip, cloud_init.as_mut(), own_ip) {
            let addr = u32::from(net.addr())
                .checked_add(idx as u32)
                .map(Ipv4Addr::from);
            let inside = addr.filter(|a| net.contains(a) && *a != net.broadcast());
            match inside {
                Some(addr) => {
                    ci.ipv4 = Some(Spanned::new(
                        format!("{addr}/{}", net.prefix_len()),
                        place.referenced,
                        place.defined,
                    ))
                }
                None => {
                    ctx.error_at(
                        place,
                        &format!("{path}.cloud_init.ipv4"),
                        format!(
                            "{count} clones do not fit: `{name}` would get an address outside {}",
                            net.trunc()
                        ),
                        Some(&format!(
                            "a first address and count that stay inside {}",
                            net.trunc()
                        )),
                    );
                    return out;
                }
            }
        }
        let vmid = group.first_vmid.value.saturating_add(idx as u64);
        let node = (!group.nodes.is_empty()).then(|| group.nodes[idx % group.nodes.len()].clone());
        let raw = RawClone {
            storage: None,
            disk_size: overrides
                .and_then(|o| o.disk_size.clone())
                .or_else(|| group.disk_size.clone()),
            network: overrides
                .and_then(|o| o.network.clone())
                .or_else(|| group.network.clone()),
            vmid: Spanned::new(vmid, group.first_vmid.referenced, group.first_vmid.defined),
            template: group.template.clone(),
            node,
            full: group.full,
            cores: overrides.and_then(|o| o.cores).or(group.cores),
            memory: overrides
                .and_then(|o| o.memory.clone())
                .or_else(|| group.memory.clone()),
            cloud_init,
            tags: overrides
                .and_then(|o| o.tags.clone())
                .or_else(|| group.tags.clone()),
            start: overrides.and_then(|o| o.start).or(group.start),
            onboot: overrides.and_then(|o| o.onboot).or(group.onboot),
            pool: group.pool.clone(),
            description: None,
            // Adoption names one VM: it is not for groups.
            adopt: false,
            wait_for_ip: overrides.and_then(|o| o.wait_for_ip).or(group.wait_for_ip),
            wait_for_ip_timeout: group.wait_for_ip_timeout.clone(),
        };
        out.push(CloneEntry {
            name: Spanned::new(
                name.clone(),
                pattern_place.referenced,
                pattern_place.defined,
            ),
            source: path.clone(),
            raw,
            group: Some(group_name.value.clone()),
            overridden,
        });
    }
    out
}

/// A group's cloud-init with a clone's overrides on top, field by field.
pub(super) fn merge_cloud_init(
    base: Option<&RawCloudInit>,
    top: Option<&RawCloudInit>,
) -> Option<RawCloudInit> {
    match (base, top) {
        (None, None) => None,
        (Some(b), None) => Some(b.clone()),
        (None, Some(t)) => Some(t.clone()),
        (Some(b), Some(t)) => Some(RawCloudInit {
            storage: t.storage.clone().or_else(|| b.storage.clone()),
            user: t.user.clone().or_else(|| b.user.clone()),
            ssh_keys: if t.ssh_keys.is_empty() {
                b.ssh_keys.clone()
            } else {
                t.ssh_keys.clone()
            },
            ipv4: t.ipv4.clone().or_else(|| b.ipv4.clone()),
            gateway: t.gateway.clone().or_else(|| b.gateway.clone()),
            ipv6: t.ipv6.clone().or_else(|| b.ipv6.clone()),
            gateway6: t.gateway6.clone().or_else(|| b.gateway6.clone()),
            password: t.password.clone().or_else(|| b.password.clone()),
            ssh_key_files: if t.ssh_key_files.is_empty() {
                b.ssh_key_files.clone()
            } else {
                t.ssh_key_files.clone()
            },
            dns: t.dns.clone().or_else(|| b.dns.clone()),
            upgrade: t.upgrade.or(b.upgrade),
            user_data: t.user_data.clone().or_else(|| b.user_data.clone()),
            vendor_data: t.vendor_data.clone().or_else(|| b.vendor_data.clone()),
            network_data: t.network_data.clone().or_else(|| b.network_data.clone()),
            extra_interfaces: if t.extra_interfaces.is_empty() {
                b.extra_interfaces.clone()
            } else {
                t.extra_interfaces.clone()
            },
            delivery: t.delivery.clone().or_else(|| b.delivery.clone()),
        }),
    }
}

/// Picks one cloud-init value for `--explain`.
type CiField = dyn Fn(&CloudInit) -> Option<String>;

/// Each effective setting of a clone and the layer it comes from.
pub(super) fn explain(
    entry: &CloneEntry,
    c: &CloneVm,
    t: &Template,
    defaults: &Defaults,
) -> Vec<Explained> {
    let own = |field: &'static str| -> String {
        if entry.overridden.contains(field) {
            format!("{}.overrides.{}", entry.source, c.name)
        } else {
            entry.source.clone()
        }
    };
    let template_layer = format!("templates.{}", t.name);
    let mut out = Vec::new();
    let mut add = |field: &str, value: String, source: String| {
        out.push(Explained {
            field: field.to_string(),
            value,
            source,
        })
    };
    add("vmid", c.vmid.to_string(), entry.source.clone());
    add(
        "template",
        format!("{} (vmid {})", t.name, t.vmid),
        entry.source.clone(),
    );
    let node_source = if entry.raw.node.is_some() {
        own("node")
    } else if defaults.node.as_deref() == Some(t.node.as_str()) && t.node == c.node {
        "defaults".to_string()
    } else {
        template_layer.clone()
    };
    add("node", c.node.clone(), node_source);
    add(
        "full",
        c.full.to_string(),
        if entry.raw.full.is_some() {
            own("full")
        } else {
            "proxfleet default".into()
        },
    );
    match c.cores {
        Some(cores) => add("cores", cores.to_string(), own("cores")),
        None => add("cores", t.cores.to_string(), template_layer.clone()),
    }
    add("sockets", t.sockets.to_string(), template_layer.clone());
    match c.memory_mib {
        Some(memory) => add("memory", format!("{memory} MiB"), own("memory")),
        None => add(
            "memory",
            format!("{} MiB", t.memory_mib),
            template_layer.clone(),
        ),
    }
    match &c.tags {
        Some(tags) => add("tags", tags.join(";"), own("tags")),
        None => add("tags", t.tags.join(";"), template_layer.clone()),
    }
    add(
        "start",
        c.start.to_string(),
        if entry.raw.start.is_some() {
            own("start")
        } else {
            "proxfleet default".into()
        },
    );
    if let Some(timeout) = c.wait_for_ip {
        let source = if entry.raw.wait_for_ip.is_some() {
            own("wait_for_ip")
        } else {
            template_layer.clone()
        };
        add(
            "wait_for_ip",
            format!("true (up to {})", human_duration(timeout)),
            source,
        );
    }
    if let Some(onboot) = c.onboot {
        let source = if entry.raw.onboot.is_some() {
            own("onboot")
        } else {
            template_layer.clone()
        };
        add("onboot", onboot.to_string(), source);
    }
    if let Some(pool) = &c.pool {
        let source = if entry.raw.pool.is_some() {
            own("pool")
        } else {
            template_layer.clone()
        };
        add("pool", pool.clone(), source);
    }
    let ci_layer = |pick: &CiField| -> Option<(String, String)> {
        if let Some(value) = c.cloud_init.as_ref().and_then(pick) {
            return Some((value, own("cloud_init")));
        }
        t.cloud_init
            .as_ref()
            .and_then(pick)
            .map(|value| (value, template_layer.clone()))
    };
    let fields: [(&str, &CiField); 10] = [
        ("cloud_init.user", &|ci| ci.user.clone()),
        ("cloud_init.ipconfig0", &|ci| ipconfig(ci.ipv4, ci.ipv6)),
        ("cloud_init.ssh_keys", &|ci| {
            (!ci.ssh_keys.is_empty()).then(|| format!("{} key(s)", ci.ssh_keys.len()))
        }),
        ("cloud_init.dns.servers", &|ci| {
            (!ci.nameservers.is_empty()).then(|| {
                ci.nameservers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        }),
        ("cloud_init.dns.search_domain", &|ci| {
            ci.searchdomain.clone()
        }),
        ("cloud_init.password", &|ci| {
            ci.password.as_ref().map(|_| "(sensitive)".to_string())
        }),
        ("cloud_init.user_data", &|ci| {
            ci.user_data.as_ref().map(|d| d.path.clone())
        }),
        ("cloud_init.vendor_data", &|ci| {
            ci.vendor_data.as_ref().map(|d| d.path.clone())
        }),
        ("cloud_init.network_data", &|ci| {
            ci.network_data.as_ref().map(|d| d.path.clone())
        }),
        ("cloud_init.delivery", &|ci| {
            ci.delivery.map(|d| d.as_str().to_string())
        }),
    ];
    for (field, pick) in fields {
        if let Some((value, source)) = ci_layer(pick) {
            out.push(Explained {
                field: field.to_string(),
                value,
                source,
            });
        }
    }
    out
}

pub(super) fn check_clone(
    ctx: &mut Validator,
    name: &Spanned<String>,
    c: &RawClone,
    template: Option<&Template>,
    path: &str,
) -> Option<CloneVm> {
    let path = path.to_string();
    let n_before = ctx.diagnostics.len();
    let vmid = check_vmid(ctx, &c.vmid, &format!("{path}.vmid"));
    if let Some(node) = &c.node {
        check_node(ctx, node, &format!("{path}.node"));
    }
    let memory_mib = c
        .memory
        .as_ref()
        .and_then(|m| parse_memory(ctx, m, &format!("{path}.memory")));
    let cloud_init = c
        .cloud_init
        .as_ref()
        .and_then(|ci| check_cloud_init(ctx, ci, &format!("{path}.cloud_init")));
    let tags = c
        .tags
        .as_ref()
        .map(|tags| check_tags(ctx, tags, &format!("{path}.tags")));
    // Cloning to another node needs the template's disks on shared storage. Proxmox's stock
    // storages `local`, `local-lvm` and `local-zfs` are node-local: a full clone is then made on
    // the template's node and migrated (the plan says so), but a linked clone cannot leave its
    // base image.
    if let (Some(node), Some(template)) = (&c.node, template)
        && node.value != template.node
        && NODE_LOCAL_STORAGES.contains(&template.disk.storage.as_str())
        && c.full == Some(false)
    {
        ctx.error_at(
            node,
            &format!("{path}.node"),
            format!(
                "a linked clone on node `{}` cannot be made from template `{}`: its disks are on `{}`, which is local to node `{}`, and a linked clone stays with its base image",
                node.value, template.name, template.disk.storage, template.node
            ),
            Some("the template's node, a full clone (it is made there and migrated), or a template whose disks are on shared storage (NFS, Ceph, …)"),
        );
    }
    let disk_size = c
        .disk_size
        .as_ref()
        .and_then(|size| match parse_size(&size.value, 0) {
            Some(bytes) if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) => {
                if let Some(template) = template
                    && bytes < template.disk.size.0
                {
                    ctx.error_at(
                        size,
                        &format!("{path}.disk_size"),
                        format!(
                            "{} is smaller than the template's {}: disks can only grow",
                            DiskSize(bytes).to_proxmox(),
                            template.disk.size.to_proxmox()
                        ),
                        Some(&format!("{} or more", template.disk.size.to_proxmox())),
                    );
                    return None;
                }
                Some(DiskSize(bytes))
            }
            _ => {
                ctx.error_at(
                    size,
                    &format!("{path}.disk_size"),
                    format!("`{}` is not a valid disk size", size.value),
                    Some("a whole number with a unit: `40G`, `512M`"),
                );
                None
            }
        });
    let networks = c
        .network
        .as_ref()
        .map(|nics| check_networks(ctx, nics, &path, name));
    let wait_for_ip_timeout = c
        .wait_for_ip_timeout
        .as_ref()
        .and_then(|text| check_wait_timeout(ctx, text, &format!("{path}.wait_for_ip_timeout")));
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    let template = template?;
    let wait_for_ip = wait_for_ip_of(ctx, c, template, wait_for_ip_timeout, &path);
    if let Some(storage) = &c.storage {
        check_storage(ctx, storage, &format!("{path}.storage"));
        if c.full == Some(false) {
            ctx.error_at(
                storage,
                &format!("{path}.storage"),
                "a linked clone stays on its template's storage".to_string(),
                Some("`storage` only with a full clone (`full: true`, the default)"),
            );
        }
    }
    Some(CloneVm {
        disk_size,
        networks,
        storage: c.storage.as_ref().map(|s| s.value.clone()),
        name: name.value.clone(),
        vmid: vmid?,
        template: template.name.clone(),
        node: c
            .node
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| template.node.clone()),
        full: c.full.unwrap_or(true),
        cores: c.cores,
        memory_mib,
        cloud_init,
        tags,
        start: c.start.unwrap_or(true),
        onboot: c.onboot.or(template.onboot),
        pool: match &c.pool {
            Some(pool) => check_pool(ctx, pool, &format!("{path}.pool")),
            None => template.pool.clone(),
        },
        description: c.description.clone(),
        group: None,
        adopt: c.adopt,
        wait_for_ip,
    })
}

/// Whether and how long a clone waits for its address: its own `wait_for_ip` (or its
/// group's), else its template's; the timeout likewise, else the default. Waiting through a
/// template without `agent: true` cannot work: Proxmox has no agent to ask.
pub(super) fn wait_for_ip_of(
    ctx: &mut Validator,
    c: &RawClone,
    template: &Template,
    own_timeout: Option<Duration>,
    path: &str,
) -> Option<Duration> {
    if !c.wait_for_ip.or(template.wait_for_ip).unwrap_or(false) {
        return None;
    }
    let warning = Warning {
        path: format!("{path}.wait_for_ip"),
        message: format!(
            "template `{}` does not enable the guest agent (`agent: true`), so Proxmox has no agent to ask for the address",
            template.name
        ),
    };
    // A group's clones share the group's path: say it once.
    if !template.agent && !ctx.warnings.contains(&warning) {
        ctx.warnings.push(warning);
    }
    Some(
        own_timeout
            .or(template.wait_for_ip_timeout)
            .unwrap_or(DEFAULT_WAIT_FOR_IP_TIMEOUT),
    )
}
