//! Clones and clone groups: a group expanded into its clones, each clone's own settings checked
//! and resolved over its template's (`layers`), and what every clone claims alone (name, vmid,
//! static address) checked against the others.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_saphyr::Spanned;

use super::super::Warning;
use super::super::layers::{self, CloneLayers, CloneSettings, Declared, Layer, Origin};
use super::super::model::*;
use super::super::raw::*;
use super::super::rollout::{Health, MaxUnavailable, OnTemplateChange, Rollout};
use super::Validator;
use super::cloud_init::check_cloud_init;
use super::scalars::{
    NODE_LOCAL_STORAGES, Taken, check_count, check_description, check_node, check_pool,
    check_storage, check_tags, check_vm_name, check_vmid, check_wait_timeout, claim_vmid_as,
    parse_memory, parse_size,
};
use super::templates::check_networks;

/// Every clone, declared alone or in a group, checked against its template; what each claims
/// alone (name, vmid, static address) checked against the others and the templates.
pub(super) fn check_clones(
    ctx: &mut Validator,
    raw: &RawSpec,
    templates: &[Template],
    taken: &mut Taken,
) -> (Vec<CloneVm>, BTreeMap<String, Vec<Explained>>) {
    let template_layers = template_layers(raw);
    let mut entries: Vec<CloneEntry> = raw
        .clones
        .iter()
        .map(|(name, clone)| CloneEntry {
            name: name.clone(),
            source: format!("clones.{}", name.value),
            raw: clone.clone(),
            group: None,
            layer: origin_at(Layer::Clone(name.value.clone()), name),
            overrides: None,
        })
        .collect();
    for (group_name, group) in &raw.clone_groups {
        entries.extend(expand_group(ctx, group_name, group));
    }

    let mut ips: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    // Groups whose unknown template is reported: once per group, not once per clone.
    let mut reported_templates: BTreeSet<String> = BTreeSet::new();
    let mut clones = Vec::new();
    let mut explanations = BTreeMap::new();
    for entry in &entries {
        let (name, clone) = (&entry.name, &entry.raw);
        // A group clone's problems are said at the group, naming the clone (`subjects`).
        let clone_path = entry.source.clone();
        let template = templates.iter().find(|t| t.name == clone.template.value);
        // The group's problem, not one clone's: said before this clone's own are counted.
        if template.is_none()
            && !template_layers.contains_key(&clone.template.value)
            && reported_templates.insert(entry.source.clone())
        {
            report_unknown_template(ctx, raw, entry);
        }
        let n_before = ctx.diagnostics.len();
        check_vm_name(ctx, name, &clone_path, &mut taken.vm_names);
        let layers = template.and_then(|t| template_layers.get(&t.name));
        if let Some(c) = check_clone(ctx, entry, template.zip(layers)) {
            let (vmid_field, claimant) = match &entry.group {
                Some(_) => ("first_vmid", format!("clone `{}`", name.value)),
                None => ("vmid", clone_path.clone()),
            };
            claim_vmid_as(
                ctx,
                &clone.vmid,
                &format!("{clone_path}.{vmid_field}"),
                &claimant,
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
                explanations.insert(c.name.clone(), layers::explain(&c, template));
            }
            clones.push(c);
        }
        if entry.group.is_some() && ctx.diagnostics.len() > n_before {
            let end = ctx.diagnostics.len();
            ctx.subjects.push((n_before, end, name.value.clone()));
        }
    }
    (clones, explanations)
}

/// For each template by name: where it is declared, and where its node comes from (itself or
/// `defaults.node`).
fn template_layers(raw: &RawSpec) -> BTreeMap<String, (Origin, Origin)> {
    let defaults_node = raw.defaults.as_ref().and_then(|d| d.node.as_ref());
    raw.templates
        .iter()
        .map(|(name, template)| {
            let layer = Layer::Template(name.value.clone());
            let node = match (&template.node, defaults_node) {
                (Some(node), _) => origin_at(layer.clone(), node),
                (None, Some(node)) => origin_at(Layer::Defaults, node),
                (None, None) => origin_at(layer.clone(), name),
            };
            (name.value.clone(), (origin_at(layer, name), node))
        })
        .collect()
}

/// A layer declared at a place in the file.
fn origin_at<T>(layer: Layer, place: &Spanned<T>) -> Origin {
    Origin {
        layer,
        line: place.referenced.line(),
        column: place.referenced.column(),
    }
}

fn report_unknown_template(ctx: &mut Validator, raw: &RawSpec, entry: &CloneEntry) {
    let clone = &entry.raw;
    let template_names: Vec<String> = raw.templates.keys().map(|k| k.value.clone()).collect();
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
    ctx.error_at(
        &clone.template,
        &format!("{}.template", entry.source),
        message,
        Some(&allowed),
    );
}

/// A clone to validate: declared under `clones`, or expanded from a group.
pub(super) struct CloneEntry {
    name: Spanned<String>,
    /// `clones.NAME` or `clone_groups.GROUP`: where its settings are, and its problems reported.
    source: String,
    /// Its own settings (a group's merged with its `overrides` entry).
    raw: RawClone,
    group: Option<String>,
    /// Its own layer: the clone, or its group.
    layer: Origin,
    /// A group clone's `overrides` entry, and the fields it set.
    overrides: Option<(Origin, BTreeSet<&'static str>)>,
}

/// Expand a clone group into one entry per clone: names from the pattern, vmids and static
/// IPv4 addresses counting up, nodes taken in turn, per-clone overrides applied.
pub(super) fn expand_group(
    ctx: &mut Validator,
    group_name: &Spanned<String>,
    group: &RawCloneGroup,
) -> Vec<CloneEntry> {
    let Some((path, names, pattern_place)) = group_names(ctx, group_name, group) else {
        return Vec::new();
    };
    let count = group.count.value;
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
        let entry = group.overrides.iter().find(|(k, _)| &k.value == name);
        let (mut raw, overridden) = layers::group_over(group, entry.map(|(_, v)| v));
        // An entry's own address is not counted.
        let own_ip = entry
            .and_then(|(_, o)| o.cloud_init.as_ref())
            .is_some_and(|ci| ci.ipv4.is_some());
        if let (Some((net, place)), Some(ci), false) = (&first_ip, raw.cloud_init.as_mut(), own_ip)
        {
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
        raw.vmid = Spanned::new(vmid, group.first_vmid.referenced, group.first_vmid.defined);
        raw.node = (!group.nodes.is_empty()).then(|| group.nodes[idx % group.nodes.len()].clone());
        out.push(CloneEntry {
            name: Spanned::new(
                name.clone(),
                pattern_place.referenced,
                pattern_place.defined,
            ),
            source: path.clone(),
            raw,
            group: Some(group_name.value.clone()),
            layer: origin_at(Layer::Group(group_name.value.clone()), group_name),
            overrides: entry.map(|(key, _)| {
                let layer = Layer::GroupOverride {
                    group: group_name.value.clone(),
                    clone: name.clone(),
                };
                (origin_at(layer, key), overridden)
            }),
        });
    }
    out
}

/// A group's path, its clones' names from its pattern, and where the pattern is; every
/// `overrides` entry must name one of them. `None` when the count or pattern cannot work.
fn group_names(
    ctx: &mut Validator,
    group_name: &Spanned<String>,
    group: &RawCloneGroup,
) -> Option<(String, Vec<String>, Spanned<String>)> {
    let path = format!("clone_groups.{}", group_name.value);
    let count = group.count.value;
    if !(1..=1000).contains(&count) {
        ctx.error_at(
            &group.count,
            &format!("{path}.count"),
            format!("count {count} is out of range"),
            Some("1..=1000"),
        );
        return None;
    }
    let pattern = group
        .name
        .as_ref()
        .map(|n| n.value.clone())
        .unwrap_or_else(|| format!("{}-{{n}}", group_name.value));
    let pattern_place = group.name.clone().unwrap_or_else(|| group_name.clone());
    if count > 1 && !pattern.contains("{n}") {
        ctx.error_at(&pattern_place, &format!("{path}.name"), format!("name pattern `{pattern}` has no `{{n}}`: all {count} clones would get the same name"), Some("a pattern with `{n}`, such as `web-{n}`"));
        return None;
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
    Some((path, names, pattern_place))
}

/// A clone's own settings checked; resolved over its template's when it has one (`None`
/// otherwise, or when its own settings have problems).
fn check_clone(
    ctx: &mut Validator,
    entry: &CloneEntry,
    template: Option<(&Template, &(Origin, Origin))>,
) -> Option<CloneVm> {
    let (name, c) = (&entry.name, &entry.raw);
    let path = entry.source.clone();
    let n_before = ctx.diagnostics.len();
    let vmid_field = if entry.group.is_some() {
        "first_vmid"
    } else {
        "vmid"
    };
    let vmid = check_vmid(ctx, &c.vmid, &format!("{path}.{vmid_field}"));
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
    check_linked_clone_node(ctx, c, template.map(|(t, _)| t), &path);
    let disk_size = check_disk_size(ctx, c, template.map(|(t, _)| t), &path);
    let data_disks = super::data_disks::check_data_disks(
        ctx,
        c.data_disks.as_deref().unwrap_or_default(),
        template.map(|(t, _)| t),
        c.cloud_init.is_some(),
        c.storage.as_ref().map(|s| s.value.as_str()),
        &path,
    );
    let networks = c
        .network
        .as_ref()
        .map(|nics| check_networks(ctx, nics, &path, name));
    let wait_for_ip_timeout = c
        .wait_for_ip_timeout
        .as_ref()
        .and_then(|text| check_wait_timeout(ctx, text, &format!("{path}.wait_for_ip_timeout")));
    if let Some(cores) = &c.cores {
        check_count(ctx, cores, &format!("{path}.cores"), "cores", 1..=1024);
    }
    if let Some(description) = &c.description {
        check_description(ctx, description, &format!("{path}.description"));
    }
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    let (template, (template_origin, template_node)) = template?;
    check_clone_storage(ctx, c, &path);
    let declared = Declared {
        node: c.node.as_ref().map(|n| n.value.clone()),
        full: c.full,
        cores: c.cores.as_ref().map(|c| c.value),
        memory_mib,
        tags,
        networks: networks.clone(),
        start: c.start,
        onboot: c.onboot,
        pool: c
            .pool
            .as_ref()
            .and_then(|pool| check_pool(ctx, pool, &format!("{path}.pool"))),
        wait_for_ip: c.wait_for_ip,
        wait_for_ip_timeout,
        cloud_init: cloud_init.clone(),
    };
    let layers = CloneLayers {
        entry: entry.layer.clone(),
        overrides: entry
            .overrides
            .as_ref()
            .map(|(origin, fields)| (origin.clone(), fields)),
        template: template_origin.clone(),
        template_node: template_node.clone(),
    };
    let settings = layers::resolve(&layers, declared, template);
    warn_wait_without_agent(ctx, &settings, template, &path);
    let (on_template_change, rollout) =
        check_rollout(ctx, c, template, &path, wait_for_ip_timeout)?;
    Some(CloneVm {
        name: name.value.clone(),
        vmid: vmid?,
        template: template.name.clone(),
        node: settings.node.value.clone(),
        full: settings.full.value,
        storage: c.storage.as_ref().map(|s| s.value.clone()),
        disk_size,
        data_disks,
        data_disks_origin: c.data_disks.as_ref().map(|_| match &entry.overrides {
            Some((origin, fields)) if fields.contains("data_disks") => origin.clone(),
            _ => entry.layer.clone(),
        }),
        networks,
        cloud_init,
        description: c.description.as_ref().map(|d| d.value.clone()),
        group: entry.group.clone(),
        adopt: c.adopt,
        settings,
        on_template_change,
        rollout,
    })
}

/// A full clone's target storage: a storage name, and not for a linked clone.
fn check_clone_storage(ctx: &mut Validator, c: &RawClone, path: &str) {
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
}

/// `on_template_change` and `rollout`: `replace` needs a template that keeps builds side by
/// side, and an `agent` health check a template with the guest agent on.
fn check_rollout(
    ctx: &mut Validator,
    c: &RawClone,
    template: &Template,
    path: &str,
    timeout: Option<std::time::Duration>,
) -> Option<(OnTemplateChange, Rollout)> {
    let n_before = ctx.diagnostics.len();
    let on_change = match c.on_template_change.as_ref().map(|v| v.value) {
        Some(RawOnTemplateChange::Replace) => OnTemplateChange::Replace,
        Some(RawOnTemplateChange::Keep) | None => OnTemplateChange::Keep,
    };
    let mut rollout = Rollout {
        timeout: timeout
            .or(template.wait_for_ip_timeout)
            .unwrap_or(DEFAULT_WAIT_FOR_IP_TIMEOUT),
        ..Rollout::default()
    };
    if let Some(raw) = &c.rollout {
        if let Some(max) = &raw.max_unavailable {
            let field = format!("{path}.rollout.max_unavailable");
            match parse_max_unavailable(&max.value) {
                Some(value) => rollout.max_unavailable = value,
                None => ctx.error_at(
                    max,
                    &field,
                    format!("`{}` is not a count or a percentage", max.value),
                    Some("a count 1..=1000 (`1`) or a percentage 1%..=100% (`25%`)"),
                ),
            }
        }
        if raw.health.as_ref().map(|h| h.value) == Some(RawHealth::None) {
            rollout.health = Health::None;
        }
    }
    if let Some(place) = c
        .on_template_change
        .as_ref()
        .filter(|_| on_change == OnTemplateChange::Replace)
    {
        if template.builds.is_none() {
            ctx.error_at(
                place,
                &format!("{path}.on_template_change"),
                format!(
                    "`replace` makes clones again from a new build of templates.{}, which rebuilds in place",
                    template.name
                ),
                Some(&format!(
                    "`builds: N` (2..=100) on templates.{}, or `on_template_change: keep`",
                    template.name
                )),
            );
        }
        if rollout.health == Health::Agent && !template.agent {
            // At `health: agent` when the spec says it, else at the policy that asks for it.
            let health = c.rollout.as_ref().and_then(|r| r.health.as_ref());
            let (line, column, field) = match health {
                Some(h) => (h.referenced, h.defined, "rollout.health"),
                None => (place.referenced, place.defined, "on_template_change"),
            };
            ctx.error_at(
                &Spanned::new((), line, column),
                &format!("{path}.{field}"),
                format!(
                    "the `agent` health check asks the QEMU guest agent, and templates.{} has no `agent: true`",
                    template.name
                ),
                Some(&format!(
                    "`agent: true` on templates.{}, or `rollout: {{health: none}}`",
                    template.name
                )),
            );
        }
    }
    (ctx.diagnostics.len() == n_before).then_some((on_change, rollout))
}

/// `max_unavailable`: `N` (1..=1000) or `P%` (1..=100).
fn parse_max_unavailable(text: &str) -> Option<MaxUnavailable> {
    let text = text.trim();
    match text.strip_suffix('%') {
        Some(percent) => percent
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .map(MaxUnavailable::Percent),
        None => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .map(MaxUnavailable::Count),
    }
}

fn check_linked_clone_node(
    ctx: &mut Validator,
    c: &RawClone,
    template: Option<&Template>,
    path: &str,
) {
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
}

/// The boot disk's size: whole MiB, and never smaller than the template's (disks only grow).
fn check_disk_size(
    ctx: &mut Validator,
    c: &RawClone,
    template: Option<&Template>,
    path: &str,
) -> Option<DiskSize> {
    c.disk_size
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
        })
}

/// Waiting for an address through a template without `agent: true` cannot work: Proxmox has no
/// agent to ask.
fn warn_wait_without_agent(
    ctx: &mut Validator,
    settings: &CloneSettings,
    template: &Template,
    path: &str,
) {
    if settings.wait_for_ip.is_none() || template.agent {
        return;
    }
    let warning = Warning {
        path: format!("{path}.wait_for_ip"),
        message: format!(
            "template `{}` does not enable the guest agent (`agent: true`), so Proxmox has no agent to ask for the address",
            template.name
        ),
    };
    // A group's clones share the group's path: say it once.
    if !ctx.warnings.contains(&warning) {
        ctx.warnings.push(warning);
    }
}
