//! Raw → domain: every static check on a spec (ranges, names, references, addresses, keys,
//! uniqueness), all problems collected before returning so a user fixes them in one pass.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use serde_saphyr::Spanned;

use super::error::Diagnostic;
use super::model::*;
use super::raw::*;
use super::{Loaded, Warning};
use crate::secret::Secret;

struct Ctx {
    diagnostics: Vec<Diagnostic>,
    warnings: Vec<Warning>,
    /// Directory of the spec file: relative paths in it are relative to this.
    base_dir: PathBuf,
    defaults: Defaults,
    /// Files read besides the spec (SSH key files), for saved plans' fingerprints.
    files_read: Vec<PathBuf>,
}

/// The `defaults` block, validated.
#[derive(Default)]
struct Defaults {
    node: Option<String>,
    images: Option<String>,
    disks: Option<String>,
    iso: Option<String>,
    snippets: Option<String>,
    bridge: Option<String>,
}

impl Ctx {
    /// A required value: the resource's own, else the default, else an error at `place`.
    fn pick(
        &mut self,
        own: Option<&Spanned<String>>,
        default: Option<&String>,
        place: &Spanned<String>,
        path: &str,
        what: &str,
        default_key: &str,
    ) -> Option<String> {
        match (own, default) {
            (Some(own), _) => Some(own.value.clone()),
            (None, Some(default)) => Some(default.clone()),
            (None, None) => {
                self.error_at(
                    place,
                    path,
                    format!("no {what} given and no `{default_key}` to fall back on"),
                    Some(&format!(
                        "set `{}` here or `{default_key}`",
                        path.rsplit('.').next().unwrap_or(path)
                    )),
                );
                None
            }
        }
    }

    fn error_at<T>(
        &mut self,
        spanned: &Spanned<T>,
        path: &str,
        message: String,
        allowed: Option<&str>,
    ) {
        let loc = spanned.referenced;
        self.diagnostics.push(Diagnostic {
            path: path.to_string(),
            message,
            allowed: allowed.map(str::to_string),
            line: loc.line(),
            column: loc.column(),
            len: loc.span().len().max(1),
        });
    }
}

const DNS_LABEL_ALLOWED: &str =
    "letters, digits and `-` (not first or last), at most 63 characters; no `_`";
const STORAGE_ID_ALLOWED: &str = "a Proxmox storage id: `[a-z][a-z0-9-_.]*[a-z0-9]`";
const NODE_ALLOWED: &str = "a node name: letters, digits and `-`";
/// Proxmox's stock storages, local to each node.
const NODE_LOCAL_STORAGES: [&str; 3] = ["local", "local-lvm", "local-zfs"];
const TAG_ALLOWED: &str = "a Proxmox tag: `[a-z0-9_][a-z0-9_+.-]*`";

pub(super) fn validate(raw: RawSpec, file: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let mut ctx = Ctx {
        diagnostics: Vec::new(),
        warnings: Vec::new(),
        base_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        defaults: Defaults::default(),
        files_read: Vec::new(),
    };
    if let Some(defaults) = &raw.defaults {
        if let Some(node) = &defaults.node {
            check_node(&mut ctx, node, "defaults.node");
        }
        let roles = defaults.storage.as_ref();
        for (storage, path) in [
            (
                roles.and_then(|r| r.images.as_ref()),
                "defaults.storage.images",
            ),
            (
                roles.and_then(|r| r.disks.as_ref()),
                "defaults.storage.disks",
            ),
            (roles.and_then(|r| r.iso.as_ref()), "defaults.storage.iso"),
            (
                roles.and_then(|r| r.snippets.as_ref()),
                "defaults.storage.snippets",
            ),
        ] {
            if let Some(storage) = storage {
                check_storage(&mut ctx, storage, path);
            }
        }
        ctx.defaults = Defaults {
            node: defaults.node.as_ref().map(|n| n.value.clone()),
            images: roles
                .and_then(|r| r.images.as_ref())
                .map(|s| s.value.clone()),
            disks: roles
                .and_then(|r| r.disks.as_ref())
                .map(|s| s.value.clone()),
            iso: roles.and_then(|r| r.iso.as_ref()).map(|s| s.value.clone()),
            snippets: roles
                .and_then(|r| r.snippets.as_ref())
                .map(|s| s.value.clone()),
            bridge: defaults.bridge.as_ref().map(|b| b.value.clone()),
        };
    }
    let ssh = raw
        .defaults
        .as_ref()
        .and_then(|d| d.ssh.as_ref())
        .map(|ssh| check_ssh(&mut ctx, ssh))
        .unwrap_or_default();
    let image_names: Vec<String> = raw.images.keys().map(|k| k.value.clone()).collect();
    let template_names: Vec<String> = raw.templates.keys().map(|k| k.value.clone()).collect();

    let images: Vec<Image> = raw
        .images
        .iter()
        .filter_map(|(name, image)| check_image(&mut ctx, name, image))
        .collect();

    let mut vmids: BTreeMap<u32, String> = BTreeMap::new();
    let mut vm_names: BTreeMap<String, String> = BTreeMap::new();
    let mut templates = Vec::new();
    for (name, template) in &raw.templates {
        let path = format!("templates.{}", name.value);
        check_vm_name(&mut ctx, name, &path, &mut vm_names);
        if let Some(t) = check_template(&mut ctx, name, template, &image_names, &images) {
            claim_vmid(
                &mut ctx,
                &template.vmid,
                &format!("{path}.vmid"),
                &mut vmids,
            );
            templates.push(t);
        }
    }

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
        entries.extend(expand_group(&mut ctx, group_name, group));
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
        check_vm_name(&mut ctx, name, &clone_path, &mut vm_names);
        let template = templates.iter().find(|t| t.name == clone.template.value);
        if template.is_none() && !template_names.contains(&clone.template.value) {
            let allowed = if template_names.is_empty() {
                "a template declared under `templates` (there are none)".to_string()
            } else {
                format!("one of the templates: {}", template_names.join(", "))
            };
            let known: Vec<&str> = template_names.iter().map(String::as_str).collect();
            let message = match super::closest(&clone.template.value, &known) {
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
        if let Some(mut c) = check_clone(&mut ctx, name, clone, template, &path) {
            c.group = entry.group.clone();
            claim_vmid(
                &mut ctx,
                &clone.vmid,
                &format!("{clone_path}.vmid"),
                &mut vmids,
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

    let project = match &raw.project {
        None => "default".to_string(),
        Some(project) if is_dns_label(&project.value) => project.value.clone(),
        Some(project) => {
            ctx.error_at(
                project,
                "project",
                format!("`{}` is not a valid project name", project.value),
                Some(DNS_LABEL_ALLOWED),
            );
            String::new()
        }
    };
    if ctx.diagnostics.is_empty() {
        Ok(Loaded {
            spec: Spec {
                project,
                iso_storage: ctx.defaults.iso.clone(),
                snippets_storage: ctx.defaults.snippets.clone(),
                ssh,
                images,
                templates,
                clones,
            },
            warnings: ctx.warnings,
            explanations,
            files: {
                let mut files = ctx.files_read;
                files.sort();
                files.dedup();
                files
            },
        })
    } else {
        ctx.diagnostics.sort_by_key(|d| (d.line, d.column));
        // A group's clones share the group's lines: report each problem once.
        ctx.diagnostics.dedup();
        Err(ctx.diagnostics)
    }
}

/// A clone to validate: declared under `clones`, or expanded from a group.
struct CloneEntry {
    name: Spanned<String>,
    /// Where its settings come from: `clones.NAME` or `clone_groups.GROUP`.
    source: String,
    raw: RawClone,
    group: Option<String>,
    /// Fields a group's per-clone override set.
    overridden: BTreeSet<&'static str>,
}

fn group_path(entry: &CloneEntry) -> String {
    entry.source.clone()
}

/// Expand a clone group into one entry per clone: names from the pattern, vmids and static
/// IPv4 addresses counting up, nodes taken in turn, per-clone overrides applied.
fn expand_group(
    ctx: &mut Ctx,
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
            let message = match super::closest(&override_name.value, &known) {
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
fn merge_cloud_init(
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
fn explain(entry: &CloneEntry, c: &CloneVm, t: &Template, defaults: &Defaults) -> Vec<Explained> {
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

fn claim_vmid(ctx: &mut Ctx, vmid: &Spanned<u64>, path: &str, seen: &mut BTreeMap<u32, String>) {
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
        seen.insert(id, path.trim_end_matches(".vmid").to_string());
    }
}

fn check_vm_name(
    ctx: &mut Ctx,
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

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn is_storage_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() >= 2
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(b))
        && (bytes[bytes.len() - 1].is_ascii_lowercase() || bytes[bytes.len() - 1].is_ascii_digit())
}

/// A pool id as `pve-poolid` allows (`/` separates nested pools, PVE >= 8.1).
fn check_pool(ctx: &mut Ctx, pool: &Spanned<String>, path: &str) -> Option<String> {
    let ok = !pool.value.is_empty()
        && pool.value.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Some(pool.value.clone())
    } else {
        ctx.error_at(
            pool,
            path,
            format!("`{}` is not a valid pool id", pool.value),
            Some("letters, digits, `-` and `_`, with `/` between nested pools"),
        );
        None
    }
}

fn check_storage(ctx: &mut Ctx, storage: &Spanned<String>, path: &str) {
    if !is_storage_id(&storage.value) {
        ctx.error_at(
            storage,
            path,
            format!("`{}` is not a valid storage id", storage.value),
            Some(STORAGE_ID_ALLOWED),
        );
    }
}

fn check_node(ctx: &mut Ctx, node: &Spanned<String>, path: &str) {
    if !is_dns_label(&node.value) {
        ctx.error_at(
            node,
            path,
            format!("`{}` is not a valid node name", node.value),
            Some(NODE_ALLOWED),
        );
    }
}

fn check_image(ctx: &mut Ctx, name: &Spanned<String>, image: &RawImage) -> Option<Image> {
    let path = format!("images.{}", name.value);
    let n_before = ctx.diagnostics.len();
    let url = &image.url.value;
    let parsed_url = url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    if parsed_url.is_none() {
        ctx.error_at(
            &image.url,
            &format!("{path}.url"),
            format!("`{url}` is not an http or https URL"),
            Some("an http:// or https:// URL"),
        );
    }
    let checksum = parse_checksum(ctx, &image.checksum, &format!("{path}.checksum"));
    if let Some(storage) = &image.storage {
        check_storage(ctx, storage, &format!("{path}.storage"));
    }
    if let Some(node) = &image.node {
        check_node(ctx, node, &format!("{path}.node"));
        if !image.nodes.is_empty() {
            ctx.error_at(
                node,
                &format!("{path}.node"),
                "give `node` or `nodes`, not both".to_string(),
                Some("`node: pve1`, or `nodes: [pve1, pve2]`"),
            );
        }
    }
    for (node_idx, node) in image.nodes.iter().enumerate() {
        check_node(ctx, node, &format!("{path}.nodes[{node_idx}]"));
        if image.nodes[..node_idx]
            .iter()
            .any(|earlier| earlier.value == node.value)
        {
            ctx.error_at(
                node,
                &format!("{path}.nodes[{node_idx}]"),
                format!("node `{}` is listed twice", node.value),
                Some("each node once"),
            );
        }
    }
    let defaults_images = ctx.defaults.images.clone();
    let defaults_node = ctx.defaults.node.clone();
    let storage = ctx.pick(
        image.storage.as_ref(),
        defaults_images.as_ref(),
        name,
        &format!("{path}.storage"),
        "storage",
        "defaults.storage.images",
    );
    let nodes: Option<Vec<String>> = if image.nodes.is_empty() {
        ctx.pick(
            image.node.as_ref(),
            defaults_node.as_ref(),
            name,
            &format!("{path}.node"),
            "node",
            "defaults.node",
        )
        .map(|n| vec![n])
    } else {
        Some(image.nodes.iter().map(|n| n.value.clone()).collect())
    };
    let mode = match image.mode {
        Some(RawImageMode::Upload) => ImageMode::Upload,
        _ => ImageMode::Download,
    };
    let (file_name, compression) = import_file_name(ctx, image, parsed_url.as_ref(), mode, &path);
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    Some(Image {
        name: name.value.clone(),
        url: url.clone(),
        checksum: checksum?,
        storage: storage?,
        nodes: nodes?,
        mode,
        file_name,
        compression,
    })
}

/// The name an image gets in the storage, and how the file at its URL is compressed.
///
/// Proxmox takes `.qcow2`, `.raw` and `.vmdk` as `import` content and decompresses only ISO
/// images it downloads, so a compressed image, or one named `.img`, reaches a node only through
/// proxfleet (`mode: upload`): it drops the compression suffix and names an `.img` `.qcow2`
/// (what Ubuntu's are; the fetched bytes are checked), unless `file_name` names it.
fn import_file_name(
    ctx: &mut Ctx,
    image: &RawImage,
    url: Option<&url::Url>,
    mode: ImageMode,
    path: &str,
) -> (String, Option<Compression>) {
    let published = url
        .and_then(|u| u.path_segments().and_then(|mut segs| segs.next_back()))
        .unwrap_or_default()
        .to_string();
    let (inner, compression) = Compression::split(&published);
    let (inner, compression) = (inner.to_string(), compression);
    let url_path = format!("{path}.url");
    if url.is_some() && mode == ImageMode::Download {
        if let Some(compression) = compression {
            ctx.error_at(
                &image.url,
                &url_path,
                format!(
                    "`{published}` is compressed ({}), and a node cannot decompress an image it downloads for import (Proxmox's `compression` works only for `iso`)",
                    compression.as_str()
                ),
                Some("`mode: upload`: proxfleet downloads it, verifies its checksum, decompresses it and uploads the image"),
            );
            return (inner, Some(compression));
        }
        if image.file_name.is_none()
            && let Some(stem) = inner.strip_suffix(".img")
        {
            ctx.error_at(
                &image.url,
                &url_path,
                format!(
                    "the file name `{published}` taken from the url cannot be used for the `import` content type, which takes `.qcow2`, `.raw` and `.vmdk` only"
                ),
                Some(&format!(
                    "`mode: upload` (proxfleet checks that it is qcow2 and uploads it as `.qcow2`), or `file_name: {stem}.qcow2` if it is qcow2 (Ubuntu's `.img` cloud images are)"
                )),
            );
            return (inner, None);
        }
    }
    if let Some(file_name) = &image.file_name {
        check_import_file_name(ctx, file_name, &format!("{path}.file_name"), None);
        return (file_name.value.clone(), compression);
    }
    let stored = match inner.strip_suffix(".img") {
        Some(stem) if mode == ImageMode::Upload => format!("{stem}.qcow2"),
        _ => inner,
    };
    if url.is_some() {
        let spanned = Spanned::new(stored.clone(), image.url.referenced, image.url.defined);
        check_import_file_name(ctx, &spanned, &url_path, Some(&published));
    }
    (stored, compression)
}

/// Check a name for the `import` content type; `derived_from` is the URL's file name when the
/// name was taken from it (and is what the message names).
fn check_import_file_name(
    ctx: &mut Ctx,
    file_name: &Spanned<String>,
    path: &str,
    derived_from: Option<&str>,
) {
    let name = &file_name.value;
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name.as_str(), ""));
    let stem_ok = !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.+=_".contains(c));
    if stem_ok && matches!(ext, "qcow2" | "raw" | "vmdk") {
        return;
    }
    let what = if let Some(published) = derived_from {
        format!(
            "the file name `{published}` taken from the url cannot be used for the `import` content type; set `file_name`"
        )
    } else {
        format!("file name `{name}` cannot be used for the `import` content type")
    };
    let allowed = "a name of `[a-zA-Z0-9-.+=_]` ending in `.qcow2`, `.raw` or `.vmdk` that matches the image format (Ubuntu's `.img` cloud images are qcow2: name them `.qcow2`)";
    ctx.error_at(file_name, path, what, Some(allowed));
}

fn parse_checksum(ctx: &mut Ctx, checksum: &Spanned<String>, path: &str) -> Option<Checksum> {
    let allowed = "`sha256:` followed by 64 hex digits, or `sha512:` followed by 128 hex digits";
    let Some((algo, hex)) = checksum.value.split_once(':') else {
        ctx.error_at(
            checksum,
            path,
            "checksum has no algorithm prefix".to_string(),
            Some(allowed),
        );
        return None;
    };
    let (algorithm, expected_len) = match algo {
        "sha256" => (ChecksumAlgorithm::Sha256, 64),
        "sha512" => (ChecksumAlgorithm::Sha512, 128),
        other => {
            ctx.error_at(
                checksum,
                path,
                format!("unsupported checksum algorithm `{other}`"),
                Some(allowed),
            );
            return None;
        }
    };
    if hex.len() != expected_len || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        ctx.error_at(
            checksum,
            path,
            format!(
                "{algo} checksum must be {expected_len} hex digits, found {} characters",
                hex.len()
            ),
            Some(allowed),
        );
        return None;
    }
    Some(Checksum {
        algorithm,
        hex: hex.to_ascii_lowercase(),
    })
}

fn check_vmid(ctx: &mut Ctx, vmid: &Spanned<u64>, path: &str) -> Option<VmId> {
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
fn parse_size(text: &str, bare_unit: u64) -> Option<u64> {
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

fn parse_memory(ctx: &mut Ctx, memory: &Spanned<String>, path: &str) -> Option<u64> {
    let allowed =
        "a whole number of MiB (`2048`) or a size with a unit (`2GiB`, `2048MiB`), at least 16 MiB";
    match parse_size(&memory.value, 1 << 20) {
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

fn parse_ipv4(ctx: &mut Ctx, ci: &RawCloudInit, path: &str) -> Option<Option<Ipv4Config>> {
    let Some(ipv4) = &ci.ipv4 else {
        if let Some(gw) = &ci.gateway {
            ctx.error_at(
                gw,
                &format!("{path}.gateway"),
                "a gateway needs a static `ipv4`".to_string(),
                Some("`gateway` together with `ipv4: <address>/<prefix>`"),
            );
            return None;
        }
        return Some(None);
    };
    if ipv4.value == "dhcp" {
        if let Some(gw) = &ci.gateway {
            ctx.error_at(
                gw,
                &format!("{path}.gateway"),
                "a gateway cannot be combined with `ipv4: dhcp`".to_string(),
                Some("no gateway with dhcp"),
            );
            return None;
        }
        return Some(Some(Ipv4Config::Dhcp));
    }
    let address: Ipv4Net = match ipv4.value.parse() {
        Ok(net) => net,
        Err(_) => {
            ctx.error_at(
                ipv4,
                &format!("{path}.ipv4"),
                format!("`{}` is not an IPv4 address with prefix", ipv4.value),
                Some("`dhcp` or an address with prefix such as `192.0.2.10/24`"),
            );
            return None;
        }
    };
    if address.prefix_len() < 8 {
        ctx.error_at(
            ipv4,
            &format!("{path}.ipv4"),
            format!(
                "prefix /{} is shorter than Proxmox accepts",
                address.prefix_len()
            ),
            Some("a prefix of 8..=32"),
        );
        return None;
    }
    let gateway = match &ci.gateway {
        None => None,
        Some(gw) => match gw.value.parse::<Ipv4Addr>() {
            Ok(addr) if address.contains(&addr) && addr != address.addr() => Some(addr),
            Ok(addr) => {
                let message = if addr == address.addr() {
                    format!("gateway {addr} is the clone's own address")
                } else {
                    format!("gateway {addr} is outside the subnet {}", address.trunc())
                };
                ctx.error_at(
                    gw,
                    &format!("{path}.gateway"),
                    message,
                    Some(&format!("an address inside {}", address.trunc())),
                );
                return None;
            }
            Err(_) => {
                ctx.error_at(
                    gw,
                    &format!("{path}.gateway"),
                    format!("`{}` is not an IPv4 address", gw.value),
                    Some("an IPv4 address such as `192.0.2.1`"),
                );
                return None;
            }
        },
    };
    Some(Some(Ipv4Config::Static { address, gateway }))
}

fn check_ssh_key(ctx: &mut Ctx, key: &Spanned<String>, path: &str) {
    const TYPES: [&str; 8] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-dss",
    ];
    let mut parts = key.value.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let body_ok = body.len() >= 16
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        && body.starts_with("AAAA");
    if !TYPES.contains(&kind) || !body_ok || key.value.contains('\n') {
        ctx.error_at(
            key,
            path,
            "not an OpenSSH public key".to_string(),
            Some("one line `<type> <base64> [comment]`, type one of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com"),
        );
    }
}

fn check_cloud_init(ctx: &mut Ctx, ci: &RawCloudInit, path: &str) -> Option<CloudInit> {
    let n_before = ctx.diagnostics.len();
    let mut ssh_keys: Vec<String> = Vec::new();
    for (key_idx, key) in ci.ssh_keys.iter().enumerate() {
        check_ssh_key(ctx, key, &format!("{path}.ssh_keys[{key_idx}]"));
        ssh_keys.push(key.value.trim().to_string());
    }
    for (file_idx, file) in ci.ssh_key_files.iter().enumerate() {
        let file_path = format!("{path}.ssh_key_files[{file_idx}]");
        let full = ctx.base_dir.join(&file.value);
        match std::fs::read_to_string(&full) {
            Ok(text) => {
                ctx.files_read.push(full.clone());
                for line in text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    let key = Spanned::new(line.to_string(), file.referenced, file.defined);
                    check_ssh_key(ctx, &key, &file_path);
                    ssh_keys.push(line.to_string());
                }
            }
            Err(err) => ctx.error_at(
                file,
                &file_path,
                format!("cannot read `{}`: {err}", full.display()),
                Some("a readable file of OpenSSH public keys, relative to the spec file"),
            ),
        }
    }
    let ipv4 = parse_ipv4(ctx, ci, path);
    let ipv6 = parse_ipv6(ctx, ci, path);
    let mut extra_interfaces = Vec::new();
    for (idx, nic) in ci.extra_interfaces.iter().enumerate() {
        // The same rules as net0's, through the same checks.
        let as_ci = RawCloudInit {
            ipv4: nic.ipv4.clone(),
            gateway: nic.gateway.clone(),
            ipv6: nic.ipv6.clone(),
            gateway6: nic.gateway6.clone(),
            ..RawCloudInit::default()
        };
        let nic_path = format!("{path}.extra_interfaces[{idx}]");
        if let (Some(ipv4), Some(ipv6)) = (
            parse_ipv4(ctx, &as_ci, &nic_path),
            parse_ipv6(ctx, &as_ci, &nic_path),
        ) {
            extra_interfaces.push(InterfaceIp { ipv4, ipv6 });
        }
    }
    let password = ci
        .password
        .as_ref()
        .and_then(|p| resolve_secret(ctx, p, &format!("{path}.password")));
    let mut nameservers = Vec::new();
    let mut searchdomain = None;
    if let Some(dns) = &ci.dns {
        for (server_idx, server) in dns.servers.iter().enumerate() {
            match server.value.parse::<IpAddr>() {
                Ok(ip) => nameservers.push(ip),
                Err(_) => ctx.error_at(
                    server,
                    &format!("{path}.dns.servers[{server_idx}]"),
                    format!("`{}` is not an IP address", server.value),
                    Some("an IPv4 or IPv6 address such as `192.0.2.53`"),
                ),
            }
        }
        if let Some(domain) = &dns.search_domain {
            let ok = domain.value.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
            if ok {
                searchdomain = Some(domain.value.clone());
            } else {
                ctx.error_at(
                    domain,
                    &format!("{path}.dns.search_domain"),
                    format!("`{}` is not a domain name", domain.value),
                    Some("DNS labels joined by dots, such as `example.internal`"),
                );
            }
        }
    }
    if let Some(storage) = &ci.storage
        && !is_storage_id(storage)
    {
        let place = ci.ipv4.clone().or_else(|| {
            ci.user.clone().map(|u| {
                Spanned::new(
                    u,
                    serde_saphyr::Location::UNKNOWN,
                    serde_saphyr::Location::UNKNOWN,
                )
            })
        });
        match place {
            Some(place) => ctx.error_at(
                &place,
                &format!("{path}.storage"),
                format!("`{storage}` is not a valid storage id"),
                Some(STORAGE_ID_ALLOWED),
            ),
            None => ctx.diagnostics.push(Diagnostic {
                path: format!("{path}.storage"),
                message: format!("`{storage}` is not a valid storage id"),
                allowed: Some(STORAGE_ID_ALLOWED.to_string()),
                line: 0,
                column: 0,
                len: 1,
            }),
        }
    }
    let user_data = ci
        .user_data
        .as_ref()
        .and_then(|f| read_custom_data(ctx, f, &format!("{path}.user_data"), CustomKind::User));
    let vendor_data = ci
        .vendor_data
        .as_ref()
        .and_then(|f| read_custom_data(ctx, f, &format!("{path}.vendor_data"), CustomKind::Vendor));
    let network_data = ci.network_data.as_ref().and_then(|f| {
        read_custom_data(ctx, f, &format!("{path}.network_data"), CustomKind::Network)
    });
    if let Some(file) = &ci.user_data
        && let Some(data) = &user_data
    {
        let declares_user = ci.user.is_some() || !ssh_keys.is_empty() || ci.password.is_some();
        let cloud_config = data.content.lines().next() == Some("#cloud-config");
        if declares_user && !cloud_config {
            ctx.warnings.push(Warning {
                path: format!("{path}.user_data"),
                message: format!(
                    "`{}` is not a #cloud-config: the declared user, SSH keys and password are not added to it",
                    file.value
                ),
            });
        } else if cloud_config
            && ci.user.is_none()
            && (!ssh_keys.is_empty() || ci.password.is_some())
        {
            ctx.error_at(
                file,
                &format!("{path}.user"),
                "SSH keys and a password go to the user proxfleet adds to the user-data, which needs a name".to_string(),
                Some("`user: NAME` beside `user_data`"),
            );
        }
    }
    let delivery = ci.delivery.as_ref().map(|delivery| match delivery.value {
        RawDelivery::Iso => Delivery::Iso,
        RawDelivery::Snippets => {
            if ctx.defaults.snippets.is_none() {
                ctx.error_at(
                    delivery,
                    &format!("{path}.delivery"),
                    "`delivery: snippets` needs a storage with the `snippets` content type, and there is no `defaults.storage.snippets`".to_string(),
                    Some("`defaults.storage.snippets: local` (or another storage with `snippets` content), or `delivery: iso`"),
                );
            }
            Delivery::Snippets
        }
    });
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    Some(CloudInit {
        delivery,
        storage: ci.storage.clone(),
        user: ci.user.clone(),
        password,
        ssh_keys,
        ipv4: ipv4?,
        ipv6: ipv6?,
        nameservers,
        searchdomain,
        upgrade: ci.upgrade,
        user_data,
        vendor_data,
        network_data,
        extra_interfaces,
    })
}

/// A path from the spec: `~/…` under the home directory, a relative one under the spec's.
fn spec_path(ctx: &Ctx, text: &str) -> PathBuf {
    match text.strip_prefix("~/") {
        Some(rest) => std::env::home_dir().unwrap_or_default().join(rest),
        None => ctx.base_dir.join(text),
    }
}

/// `defaults.ssh`: the login, the key and known_hosts files (which must exist), the node
/// addresses and the snippets directory.
fn check_ssh(ctx: &mut Ctx, ssh: &RawSsh) -> SshSettings {
    let mut settings = SshSettings::default();
    if let Some(user) = &ssh.user {
        let ok = !user.value.is_empty()
            && user
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if ok {
            settings.user = user.value.clone();
        } else {
            ctx.error_at(
                user,
                "defaults.ssh.user",
                format!("`{}` is not a user name", user.value),
                Some("letters, digits, `.`, `_` and `-`, such as `root`"),
            );
        }
    }
    if let Some(port) = &ssh.port {
        match u16::try_from(port.value).ok().filter(|p| *p > 0) {
            Some(p) => settings.port = p,
            None => ctx.error_at(
                port,
                "defaults.ssh.port",
                format!("port {} is out of range", port.value),
                Some("1..=65535"),
            ),
        }
    }
    if let Some(file) = &ssh.key_file {
        let full = spec_path(ctx, &file.value);
        match std::fs::metadata(&full) {
            Ok(meta) if meta.is_file() => settings.key_file = Some(full),
            Ok(_) => ctx.error_at(
                file,
                "defaults.ssh.key_file",
                format!("`{}` is not a file", full.display()),
                Some("an OpenSSH private key file, relative to the spec file or under `~/`"),
            ),
            Err(err) => ctx.error_at(
                file,
                "defaults.ssh.key_file",
                format!("cannot read `{}`: {err}", full.display()),
                Some("an OpenSSH private key file, relative to the spec file or under `~/`"),
            ),
        }
    }
    if let Some(file) = &ssh.known_hosts {
        let full = spec_path(ctx, &file.value);
        match std::fs::metadata(&full) {
            Ok(meta) if meta.is_file() => settings.known_hosts = Some(full),
            Ok(_) => ctx.error_at(
                file,
                "defaults.ssh.known_hosts",
                format!("`{}` is not a file", full.display()),
                Some("a known_hosts file, relative to the spec file or under `~/`"),
            ),
            Err(err) => ctx.error_at(
                file,
                "defaults.ssh.known_hosts",
                format!("cannot read `{}`: {err}", full.display()),
                Some("a known_hosts file, relative to the spec file or under `~/`"),
            ),
        }
    }
    if ssh.insecure_ignore_host_key {
        settings.insecure_ignore_host_key = true;
        ctx.warnings.push(Warning {
            path: "defaults.ssh.insecure_ignore_host_key".to_string(),
            message: "the nodes' SSH host keys are not checked: whoever sits between proxfleet and a node can read and change the cloud-init snippets (passwords and keys included); record the host keys in a known_hosts file instead".to_string(),
        });
    }
    for (node, address) in &ssh.host {
        check_node(ctx, node, &format!("defaults.ssh.host.{}", node.value));
        let ok = !address.value.is_empty()
            && address
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c));
        if ok {
            settings
                .hosts
                .insert(node.value.clone(), address.value.clone());
        } else {
            ctx.error_at(
                address,
                &format!("defaults.ssh.host.{}", node.value),
                format!("`{}` is not a host name or address", address.value),
                Some("a host name or an IP address, such as `192.0.2.11`"),
            );
        }
    }
    if let Some(dir) = &ssh.snippets_dir {
        if dir.value.starts_with('/') && !dir.value.contains(['\n', '\0']) {
            settings.snippets_dir = Some(dir.value.trim_end_matches('/').to_string())
                .filter(|d| !d.is_empty())
                .or(Some("/".to_string()));
        } else {
            ctx.error_at(
                dir,
                "defaults.ssh.snippets_dir",
                format!("`{}` is not an absolute path", dir.value),
                Some("an absolute directory on the nodes, such as `/var/lib/vz/snippets`"),
            );
        }
    }
    settings
}

/// Which custom cloud-init file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CustomKind {
    User,
    Vendor,
    Network,
}

/// Largest custom cloud-init file accepted (cloud-init itself reads far less from a seed).
const MAX_CUSTOM_DATA: u64 = 1 << 20;

/// Read a custom cloud-init file and check that cloud-init can take it.
fn read_custom_data(
    ctx: &mut Ctx,
    file: &Spanned<String>,
    path: &str,
    kind: CustomKind,
) -> Option<CustomData> {
    let full = ctx.base_dir.join(&file.value);
    let text = match std::fs::metadata(&full) {
        Ok(meta) if meta.len() > MAX_CUSTOM_DATA => {
            ctx.error_at(
                file,
                path,
                format!("`{}` is {} bytes", full.display(), meta.len()),
                Some("a file of at most 1 MiB"),
            );
            return None;
        }
        _ => match std::fs::read_to_string(&full) {
            Ok(text) => text,
            Err(err) => {
                ctx.error_at(
                    file,
                    path,
                    format!("cannot read `{}`: {err}", full.display()),
                    Some("a readable UTF-8 file, relative to the spec file"),
                );
                return None;
            }
        },
    };
    ctx.files_read.push(full.clone());
    let first = text.lines().next().unwrap_or_default();
    let problem =
        match kind {
            CustomKind::Network => match serde_saphyr::from_str::<serde_json::Value>(&text) {
                Ok(value) => {
                    let config = value.get("network").unwrap_or(&value);
                    match config.get("version").and_then(serde_json::Value::as_u64) {
                        Some(1 | 2) => None,
                        _ => Some("it has no `version: 1` or `version: 2`".to_string()),
                    }
                }
                Err(err) => Some(format!("it is not YAML: {err}")),
            },
            _ if first == "#cloud-config" => {
                match serde_saphyr::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(map)) => (kind == CustomKind::User
                    && map.contains_key("user"))
                .then(|| {
                    "it sets `user:`, which proxfleet writes from the spec's `user`, `ssh_keys` and `password`; use `users:` for further users".to_string()
                }),
                Ok(serde_json::Value::Null) => None,
                Ok(_) => Some("its #cloud-config is not a YAML mapping".to_string()),
                Err(err) => Some(format!("its #cloud-config is not YAML: {err}")),
            }
            }
            _ if [
                "#!",
                "#include",
                "#cloud-boothook",
                "#cloud-config-archive",
                "#part-handler",
                "Content-Type:",
            ]
            .iter()
            .any(|header| first.starts_with(header)) =>
            {
                None
            }
            _ => Some(format!(
                "its first line `{first}` is not a cloud-init format"
            )),
        };
    if let Some(problem) = problem {
        let allowed = match kind {
            CustomKind::Network => {
                "a cloud-init network-config: YAML with `version: 1` or `version: 2`"
            }
            _ => {
                "a file starting with `#cloud-config` (YAML), `#!` (a script), `#include`, `#cloud-boothook` or `Content-Type:` (MIME multipart)"
            }
        };
        ctx.error_at(
            file,
            path,
            format!("`{}`: {problem}", file.value),
            Some(allowed),
        );
        return None;
    }
    Some(CustomData {
        path: file.value.clone(),
        content: text,
    })
}

fn parse_ipv6(ctx: &mut Ctx, ci: &RawCloudInit, path: &str) -> Option<Option<Ipv6Config>> {
    let Some(ipv6) = &ci.ipv6 else {
        if let Some(gw) = &ci.gateway6 {
            ctx.error_at(
                gw,
                &format!("{path}.gateway6"),
                "an IPv6 gateway needs a static `ipv6`".to_string(),
                Some("`gateway6` together with `ipv6: <address>/<prefix>`"),
            );
            return None;
        }
        return Some(None);
    };
    let config = match ipv6.value.as_str() {
        "dhcp" => Ipv6Config::Dhcp,
        "auto" => Ipv6Config::Auto,
        text => match text.parse::<Ipv6Net>() {
            Ok(address) => {
                let gateway = match &ci.gateway6 {
                    None => None,
                    Some(gw) => match gw.value.parse::<Ipv6Addr>() {
                        Ok(addr) => Some(addr),
                        Err(_) => {
                            ctx.error_at(
                                gw,
                                &format!("{path}.gateway6"),
                                format!("`{}` is not an IPv6 address", gw.value),
                                Some("an IPv6 address such as `2001:db8::1`"),
                            );
                            return None;
                        }
                    },
                };
                return Some(Some(Ipv6Config::Static { address, gateway }));
            }
            Err(_) => {
                ctx.error_at(ipv6, &format!("{path}.ipv6"), format!("`{text}` is not an IPv6 setting"), Some("`dhcp`, `auto` (SLAAC) or an address with prefix such as `2001:db8::10/64`"));
                return None;
            }
        },
    };
    if let Some(gw) = &ci.gateway6 {
        ctx.error_at(
            gw,
            &format!("{path}.gateway6"),
            format!("a gateway cannot be combined with `ipv6: {}`", ipv6.value),
            Some("`gateway6` only with a static `ipv6`"),
        );
        return None;
    }
    Some(Some(config))
}

/// Resolve `env:NAME` or `file:PATH` (relative to the spec) into a secret. A literal is
/// accepted with a warning. The value never appears in a message.
fn resolve_secret(ctx: &mut Ctx, reference: &Spanned<String>, path: &str) -> Option<Secret> {
    let text = reference.value.as_str();
    if let Some(name) = text.strip_prefix("env:") {
        return match std::env::var(name) {
            Ok(value) if !value.is_empty() => Some(Secret::new(value)),
            _ => {
                ctx.error_at(
                    reference,
                    path,
                    format!("environment variable `{name}` is not set"),
                    Some("`env:NAME` of a set variable, or `file:PATH`"),
                );
                None
            }
        };
    }
    if let Some(file) = text.strip_prefix("file:") {
        let full = ctx.base_dir.join(file);
        return match std::fs::read_to_string(&full) {
            Ok(value) if !value.trim().is_empty() => {
                Some(Secret::new(value.trim_end_matches(['\n', '\r'])))
            }
            Ok(_) => {
                ctx.error_at(
                    reference,
                    path,
                    format!("`{}` is empty", full.display()),
                    Some("a file holding the password"),
                );
                None
            }
            Err(err) => {
                ctx.error_at(
                    reference,
                    path,
                    format!("cannot read `{}`: {err}", full.display()),
                    Some("`file:PATH` of a readable file, relative to the spec file"),
                );
                None
            }
        };
    }
    ctx.warnings.push(Warning {
        path: path.to_string(),
        message: "a literal password is stored in the spec; use `env:NAME` or `file:PATH` instead"
            .to_string(),
    });
    Some(Secret::new(text))
}

fn check_tags(ctx: &mut Ctx, tags: &[Spanned<String>], path: &str) -> Vec<String> {
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

/// Validate network interfaces (`net0` first); `place` is where a missing default bridge is
/// reported.
fn check_networks(
    ctx: &mut Ctx,
    nics: &[RawNetwork],
    path: &str,
    place: &Spanned<String>,
) -> Vec<Network> {
    let defaults_bridge = ctx.defaults.bridge.clone();
    let mut networks = Vec::new();
    for (nic_idx, nic) in nics.iter().enumerate() {
        let nic_path = format!("{path}.network[{nic_idx}]");
        if let Some(bridge) = &nic.bridge {
            let bridge_ok = !bridge.value.is_empty()
                && bridge
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !bridge_ok {
                ctx.error_at(
                    bridge,
                    &format!("{nic_path}.bridge"),
                    format!("`{}` is not a valid bridge name", bridge.value),
                    Some("a bridge name such as `vmbr0`"),
                );
            }
        }
        let bridge = ctx.pick(
            nic.bridge.as_ref(),
            defaults_bridge.as_ref(),
            place,
            &format!("{nic_path}.bridge"),
            "bridge",
            "defaults.bridge",
        );
        let mtu = match &nic.mtu {
            Some(mtu) if (1..=65520).contains(&mtu.value) => Some(mtu.value),
            Some(mtu) => {
                ctx.error_at(
                    mtu,
                    &format!("{nic_path}.mtu"),
                    format!("MTU {} is out of range", mtu.value),
                    Some("1..=65520 (1 = the bridge's MTU)"),
                );
                None
            }
            None => None,
        };
        let model = match nic.model.unwrap_or(RawNicModel::Virtio) {
            RawNicModel::Virtio => NicModel::Virtio,
            RawNicModel::E1000 => NicModel::E1000,
            RawNicModel::Vmxnet3 => NicModel::Vmxnet3,
            RawNicModel::Rtl8139 => NicModel::Rtl8139,
        };
        if mtu.is_some()
            && model != NicModel::Virtio
            && let Some(place) = &nic.mtu
        {
            ctx.error_at(
                place,
                &format!("{nic_path}.mtu"),
                "an MTU can only be set on a virtio interface".to_string(),
                Some("`model: virtio` with `mtu`"),
            );
        }
        let vlan = match &nic.vlan {
            Some(tag) if (1..=4094).contains(&tag.value) => u16::try_from(tag.value).ok(),
            Some(tag) => {
                ctx.error_at(
                    tag,
                    &format!("{nic_path}.vlan"),
                    format!("VLAN tag {} is out of range", tag.value),
                    Some("1..=4094"),
                );
                None
            }
            None => None,
        };
        networks.push(Network {
            model,
            bridge: bridge.unwrap_or_default(),
            vlan,
            firewall: nic.firewall,
            mtu,
        });
    }
    networks
}

fn check_template(
    ctx: &mut Ctx,
    name: &Spanned<String>,
    t: &RawTemplate,
    image_names: &[String],
    images: &[Image],
) -> Option<Template> {
    let path = format!("templates.{}", name.value);
    let n_before = ctx.diagnostics.len();
    let vmid = check_vmid(ctx, &t.vmid, &format!("{path}.vmid"));
    if let Some(node) = &t.node {
        check_node(ctx, node, &format!("{path}.node"));
    }
    let defaults_node = ctx.defaults.node.clone();
    let defaults_disks = ctx.defaults.disks.clone();
    let template_node = ctx.pick(
        t.node.as_ref(),
        defaults_node.as_ref(),
        name,
        &format!("{path}.node"),
        "node",
        "defaults.node",
    );
    if !image_names.contains(&t.image.value) {
        let known: Vec<&str> = image_names.iter().map(String::as_str).collect();
        let message = match super::closest(&t.image.value, &known) {
            Some(near) => format!("unknown image `{}` (did you mean `{near}`?)", t.image.value),
            None => format!("unknown image `{}`", t.image.value),
        };
        let allowed = if image_names.is_empty() {
            "an image declared under `images` (there are none)".to_string()
        } else {
            format!("one of the images: {}", image_names.join(", "))
        };
        ctx.error_at(&t.image, &format!("{path}.image"), message, Some(&allowed));
    }
    if let Some(machine) = &t.machine {
        let m = machine.value.as_str();
        let ok = m == "q35"
            || m == "pc"
            || m.starts_with("pc-q35-")
            || m.starts_with("pc-i440fx-")
            || m.starts_with("virt");
        if !ok {
            ctx.error_at(
                machine,
                &format!("{path}.machine"),
                format!("unknown machine type `{m}`"),
                Some("`q35`, `pc`, or a pinned version such as `pc-q35-9.2+pve1`"),
            );
        }
    }
    let memory_mib = parse_memory(ctx, &t.memory, &format!("{path}.memory"));
    if let Some(storage) = &t.disk.storage {
        check_storage(ctx, storage, &format!("{path}.disk.storage"));
    }
    let disk_storage = ctx.pick(
        t.disk.storage.as_ref(),
        defaults_disks.as_ref(),
        name,
        &format!("{path}.disk.storage"),
        "disk storage",
        "defaults.storage.disks",
    );
    let disk_size = match parse_size(&t.disk.size.value, 0) {
        Some(bytes) if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) => Some(DiskSize(bytes)),
        _ => {
            ctx.error_at(
                &t.disk.size,
                &format!("{path}.disk.size"),
                format!("`{}` is not a valid disk size", t.disk.size.value),
                Some("a whole number with a unit: `20G`, `20GiB`, `512M`"),
            );
            None
        }
    };
    let networks = check_networks(ctx, &t.network, &path, name);
    if let (Some(image), Some(node)) = (
        images.iter().find(|i| i.name == t.image.value),
        &template_node,
    ) {
        let local = NODE_LOCAL_STORAGES.contains(&image.storage.as_str());
        if !image.nodes.contains(node) && (image.nodes.len() > 1 || local) {
            ctx.error_at(
                &t.image,
                &format!("{path}.image"),
                format!(
                    "image `{}` is not fetched onto node `{node}`, where this template is built",
                    image.name
                ),
                Some(&format!(
                    "add `{node}` to the image's `nodes`, or keep the image on shared storage"
                )),
            );
        }
    }
    let bios = match t.bios.unwrap_or(RawBios::Seabios) {
        RawBios::Seabios => Bios::SeaBios,
        RawBios::Ovmf => Bios::Ovmf,
    };
    if bios == Bios::SeaBios && t.efi_disk.is_some() {
        // The EFI disk block has no span of its own: point at the template's vmid.
        let place = Spanned::new((), t.vmid.referenced, t.vmid.defined);
        ctx.error_at(
            &place,
            &format!("{path}.efi_disk"),
            "an EFI disk needs `bios: ovmf`".to_string(),
            Some("`efi_disk` only together with `bios: ovmf`"),
        );
    }
    let disk_storage = disk_storage.unwrap_or_default();
    let efi_disk = (bios == Bios::Ovmf).then(|| {
        let raw = t.efi_disk.as_ref();
        EfiDisk {
            storage: raw
                .and_then(|e| e.storage.clone())
                .unwrap_or_else(|| disk_storage.clone()),
            pre_enrolled_keys: raw.is_some_and(|e| e.pre_enrolled_keys),
        }
    });
    let tpm = t.tpm.as_ref().map(|tpm| Tpm {
        storage: tpm.storage.clone().unwrap_or_else(|| disk_storage.clone()),
        version: match tpm.version.unwrap_or(RawTpmVersion::V20) {
            RawTpmVersion::V12 => TpmVersion::V12,
            RawTpmVersion::V20 => TpmVersion::V20,
        },
    });
    let cloud_init = t
        .cloud_init
        .as_ref()
        .and_then(|ci| check_cloud_init(ctx, ci, &format!("{path}.cloud_init")));
    let tags = check_tags(ctx, &t.tags, &format!("{path}.tags"));
    let bus = match t.disk.bus.unwrap_or(RawBus::Scsi) {
        RawBus::Scsi => DiskBus::Scsi,
        RawBus::Virtio => DiskBus::Virtio,
        RawBus::Sata => DiskBus::Sata,
    };
    if bus == DiskBus::Virtio && t.disk.ssd {
        ctx.error_at(
            &t.disk.size,
            &format!("{path}.disk.ssd"),
            "`ssd` is not supported on the virtio bus".to_string(),
            Some("`ssd` with bus `scsi` or `sata`"),
        );
    }
    let q35 = t
        .machine
        .as_ref()
        .is_some_and(|m| m.value == "q35" || m.value.starts_with("pc-q35-"));
    let mut pci = Vec::new();
    for (pci_idx, dev) in t.pci.iter().enumerate() {
        let pci_path = format!("{path}.pci[{pci_idx}]");
        let source = match (&dev.mapping, &dev.host) {
            (Some(mapping), None) => {
                let ok = mapping.value.len() >= 2
                    && mapping
                        .value
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic())
                    && mapping
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
                if !ok {
                    ctx.error_at(
                        mapping,
                        &format!("{pci_path}.mapping"),
                        format!("`{}` is not a resource mapping id", mapping.value),
                        Some("an id such as `gpu0`: a letter, then letters, digits, `-` or `_`"),
                    );
                }
                Some(PciSource::Mapping(mapping.value.clone()))
            }
            (None, Some(host)) => {
                let ok = host.value.split(';').all(|addr| {
                    let parts: Vec<&str> = addr.split(':').collect();
                    let hex = |s: &str, n: usize| {
                        s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit())
                    };
                    let (bus, devfn) = match parts.as_slice() {
                        [domain, bus, devfn]
                            if domain.len() >= 4
                                && domain.chars().all(|c| c.is_ascii_hexdigit()) =>
                        {
                            (*bus, *devfn)
                        }
                        [bus, devfn] => (*bus, *devfn),
                        _ => return false,
                    };
                    let (dev_part, func) = devfn
                        .split_once('.')
                        .map_or((devfn, None), |(d, f)| (d, Some(f)));
                    hex(bus, 2) && hex(dev_part, 2) && func.is_none_or(|f| hex(f, 1))
                });
                if ok {
                    ctx.warnings.push(Warning { path: format!("{pci_path}.host"), message: "raw PCI host ids are allowed for root@pam only: API tokens cannot use them; create a resource mapping and use `mapping` instead".to_string() });
                } else {
                    ctx.error_at(
                        host,
                        &format!("{pci_path}.host"),
                        format!("`{}` is not a PCI address", host.value),
                        Some("`[domain:]bus:dev[.func]` in hex, such as `0000:01:00` or `01:00.0`"),
                    );
                }
                Some(PciSource::Host(host.value.to_ascii_lowercase()))
            }
            (Some(mapping), Some(_)) => {
                ctx.error_at(
                    mapping,
                    &pci_path,
                    "give either `mapping` or `host`, not both".to_string(),
                    Some("exactly one of `mapping` (works with API tokens) and `host`"),
                );
                None
            }
            (None, None) => {
                let place = Spanned::new((), t.vmid.referenced, t.vmid.defined);
                ctx.error_at(
                    &place,
                    &pci_path,
                    "a PCI device needs `mapping` or `host`".to_string(),
                    Some("exactly one of `mapping` (works with API tokens) and `host`"),
                );
                None
            }
        };
        if dev.pcie && !q35 {
            let place = dev
                .mapping
                .clone()
                .or_else(|| dev.host.clone())
                .unwrap_or_else(|| Spanned::new(String::new(), t.vmid.referenced, t.vmid.defined));
            ctx.error_at(
                &place,
                &format!("{pci_path}.pcie"),
                "PCIe passthrough needs the q35 machine type".to_string(),
                Some("`machine: q35` on the template, or `pcie: false`"),
            );
        }
        if let Some(mdev) = &dev.mdev
            && (mdev.value.is_empty() || mdev.value.contains(['/', '.', ':']))
        {
            ctx.error_at(
                mdev,
                &format!("{pci_path}.mdev"),
                format!("`{}` is not a mediated device type", mdev.value),
                Some("a type name such as `nvidia-63` (no `/`, `.` or `:`)"),
            );
        }
        if let Some(source) = source {
            pci.push(PciDevice {
                source,
                pcie: dev.pcie,
                primary_gpu: dev.primary_gpu,
                rombar: dev.rombar,
                mdev: dev.mdev.as_ref().map(|m| m.value.clone()),
            });
        }
    }
    if t.pci.iter().filter(|d| d.primary_gpu).count() > 1 {
        let place = Spanned::new((), t.vmid.referenced, t.vmid.defined);
        ctx.error_at(
            &place,
            &format!("{path}.pci"),
            "more than one PCI device is the primary GPU".to_string(),
            Some("`primary_gpu: true` on one device at most"),
        );
    }
    let mut extra_disks = Vec::new();
    for (disk_idx, disk) in t.extra_disks.iter().enumerate() {
        let disk_path = format!("{path}.extra_disks[{disk_idx}]");
        if let Some(storage) = &disk.storage {
            check_storage(ctx, storage, &format!("{disk_path}.storage"));
        }
        match parse_size(&disk.size.value, 0) {
            Some(bytes) if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) => {
                extra_disks.push(ExtraDisk {
                    slot: format!(
                        "{}{}",
                        t.disk.bus.map_or("scsi", |b| match b {
                            RawBus::Scsi => "scsi",
                            RawBus::Virtio => "virtio",
                            RawBus::Sata => "sata",
                        }),
                        disk_idx + 1
                    ),
                    storage: disk
                        .storage
                        .as_ref()
                        .map(|s| s.value.clone())
                        .unwrap_or_else(|| disk_storage.clone()),
                    size: DiskSize(bytes),
                    discard: disk.discard,
                })
            }
            _ => ctx.error_at(
                &disk.size,
                &format!("{disk_path}.size"),
                format!("`{}` is not a size in whole GiB", disk.size.value),
                Some("a whole number of GiB with a unit: `100G`, `1T`"),
            ),
        }
    }
    let max_slot = match t.disk.bus.unwrap_or(RawBus::Scsi) {
        RawBus::Scsi => 30,
        RawBus::Virtio => 15,
        RawBus::Sata => 5,
    };
    if t.extra_disks.len() > max_slot
        && let Some(last) = t.extra_disks.last()
    {
        ctx.error_at(
            &last.size,
            &format!("{path}.extra_disks"),
            format!("{} extra disks do not fit on the bus", t.extra_disks.len()),
            Some(&format!("at most {max_slot} besides the boot disk")),
        );
    }
    let wait_for_ip_timeout = t
        .wait_for_ip_timeout
        .as_ref()
        .and_then(|text| check_wait_timeout(ctx, text, &format!("{path}.wait_for_ip_timeout")));
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    Some(Template {
        pci,
        extra_disks,
        name: name.value.clone(),
        vmid: vmid?,
        node: template_node?,
        image: t.image.value.clone(),
        machine: t.machine.as_ref().map(|m| m.value.clone()),
        bios,
        efi_disk,
        tpm,
        cpu: t.cpu.clone(),
        cores: t.cores,
        sockets: t.sockets,
        memory_mib: memory_mib?,
        disk: BootDisk {
            bus,
            storage: disk_storage,
            size: disk_size?,
            discard: t.disk.discard,
            ssd: t.disk.ssd,
            iothread: t.disk.iothread,
            cache: t.disk.cache.map(|c| {
                match c {
                    RawCache::None => "none",
                    RawCache::Writethrough => "writethrough",
                    RawCache::Writeback => "writeback",
                    RawCache::Unsafe => "unsafe",
                    RawCache::Directsync => "directsync",
                }
                .to_string()
            }),
        },
        networks,
        agent: t.agent,
        serial_console: t.serial_console,
        ostype: t.ostype.clone().unwrap_or_else(|| "l26".to_string()),
        cloud_init,
        tags,
        description: t.description.clone(),
        pool: t
            .pool
            .as_ref()
            .and_then(|p| check_pool(ctx, p, &format!("{path}.pool"))),
        onboot: t.onboot,
        adopt: t.adopt,
        wait_for_ip: t.wait_for_ip,
        wait_for_ip_timeout,
    })
}

fn check_clone(
    ctx: &mut Ctx,
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
fn wait_for_ip_of(
    ctx: &mut Ctx,
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

/// `wait_for_ip_timeout`: whole seconds, or a number with `s`, `m` or `h`; 1 s to 24 h.
fn check_wait_timeout(ctx: &mut Ctx, text: &Spanned<String>, path: &str) -> Option<Duration> {
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
