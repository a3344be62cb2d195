//! What a project owns in the cluster, as data: one `Owned` row per resource, read from the
//! ownership markers (VMs) and the content-addressed image files the spec names, with the
//! addresses known without waiting; and its three renderings: the `show` table, the `show
//! --json` document, and an Ansible inventory (static YAML or JSON, and the dynamic-inventory
//! contract of `--list` / `--host NAME`).
//!
//! Pure: `commands::show` observes the cluster and asks the guest agents; this module only
//! arranges what they found.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

use crate::graph::{DesiredGraph, Recipe, Resource};
use crate::ownership::{ResourceKey, ResourceKind};
use crate::state::ActualState;

/// Version of `show --json`'s and `inventory --format json`'s documents; bumped on any
/// incompatible change.
pub const SHOW_FORMAT_VERSION: u32 = 1;

/// Where a shown address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AddressSource {
    /// The VM's `ipconfig0` (a static address).
    Static,
    /// The QEMU guest agent answered.
    Agent,
}

/// One resource the project owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Owned {
    /// `clone.web-1`.
    pub key: ResourceKey,
    /// image, template or clone.
    pub kind: ResourceKind,
    /// VM name (VMs) or file name (images).
    pub name: String,
    /// VM id (VMs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    /// Node it is on.
    pub node: String,
    /// `running`, `stopped`, `template`, `present` (images), or the lock (`locked (clone)`).
    pub status: String,
    /// The template build fingerprint (templates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// The template a clone was made from (`template.debian-12-base`), as the spec says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<ResourceKey>,
    /// The clone group it was expanded from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Its address, when one is known without waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Where `address` comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_source: Option<AddressSource>,
    /// The cloud-init user (`ciuser`), Ansible's `ansible_user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Resource pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Options whose change waits for the next boot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// Whether the spec still declares it (an owned VM the spec dropped is shown, and the
    /// next `apply` deletes it).
    pub in_spec: bool,
}

/// Every resource `project` owns: its VMs by their markers (in the spec or not), and the image
/// files of the spec that are present. `agent_addresses` holds what guest agents answered, by
/// vmid; a static address in `ipconfig0` wins over it.
pub fn owned(
    desired: &DesiredGraph,
    actual: &ActualState,
    groups: &BTreeMap<String, String>,
    agent_addresses: &BTreeMap<u32, String>,
) -> Vec<Owned> {
    let mut rows = Vec::new();
    for resource in desired.in_order() {
        if let Resource::Image(image) = resource
            && actual
                .volumes
                .contains_key(&(image.node.clone(), image.volid.clone()))
        {
            rows.push(Owned {
                key: image.key.clone(),
                kind: ResourceKind::Image,
                name: image.volid.clone(),
                vmid: None,
                node: image.node.clone(),
                status: "present".into(),
                build: None,
                template: None,
                group: None,
                address: None,
                address_source: None,
                user: None,
                tags: Vec::new(),
                pool: None,
                pending: Vec::new(),
                in_spec: true,
            });
        }
    }
    for vm in actual.owned_vms(&desired.project) {
        let Some(marker) = &vm.marker else {
            continue;
        };
        let wanted = match desired.owner_of(&marker.key) {
            Some(Resource::Vm(wanted)) => Some(wanted),
            _ => None,
        };
        // The template build a clone was made from, as its marker records it.
        let template = marker.from.clone().or_else(|| {
            wanted.and_then(|w| match &w.recipe {
                Recipe::Clone(clone) => Some(clone.template.clone()),
                Recipe::Build(_) => None,
            })
        });
        let static_address = vm
            .config
            .get("ipconfig0")
            .and_then(|ipconfig| static_ip(ipconfig));
        let (address, address_source) = match static_address {
            Some(address) => (Some(address), Some(AddressSource::Static)),
            None => match agent_addresses.get(&vm.vmid) {
                Some(address) => (Some(address.clone()), Some(AddressSource::Agent)),
                None => (None, None),
            },
        };
        let status = match (&vm.lock, vm.template, vm.running) {
            (Some(lock), _, _) => format!("locked ({lock})"),
            (None, true, _) => "template".into(),
            (None, false, true) => "running".into(),
            (None, false, false) => "stopped".into(),
        };
        let mut tags: Vec<String> = vm
            .config
            .get("tags")
            .map(|tags| {
                tags.split([';', ',', ' '])
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags.dedup();
        rows.push(Owned {
            key: marker.key.clone(),
            kind: marker.key.kind,
            name: vm.name.clone().unwrap_or_default(),
            vmid: Some(vm.vmid),
            node: vm.node.clone(),
            status,
            build: marker.build.clone(),
            template,
            group: groups.get(&marker.key.name).cloned(),
            address,
            address_source,
            user: vm
                .config
                .get("ciuser")
                .cloned()
                .or_else(|| wanted.and_then(|w| w.settings.get("ciuser").cloned())),
            tags,
            pool: vm.pool.clone(),
            pending: vm.pending.clone(),
            in_spec: wanted.is_some(),
        });
    }
    rows.sort_by(|a, b| (a.kind, &a.key.name, a.vmid).cmp(&(b.kind, &b.key.name, b.vmid)));
    rows
}

/// The address of `ip=ADDR/PREFIX` in an `ipconfigN` value, without its prefix; `None` for
/// `dhcp`, `auto` or no `ip`.
pub fn static_ip(ipconfig: &str) -> Option<String> {
    let ip = ipconfig
        .split(',')
        .find_map(|part| part.strip_prefix("ip="))?;
    let address = ip.split('/').next()?;
    (!address.is_empty() && address != "dhcp").then(|| address.to_string())
}

/// Keep only the rows named by `targets` (resource keys); all of them when `targets` is empty.
pub fn filter(rows: Vec<Owned>, targets: &[ResourceKey]) -> Vec<Owned> {
    if targets.is_empty() {
        return rows;
    }
    rows.into_iter()
        .filter(|row| targets.contains(&row.key))
        .collect()
}

/// The `show` table: one line per resource, columns as wide as their widest value.
pub fn table(project: &str, rows: &[Owned]) -> String {
    if rows.is_empty() {
        return format!("Project {project} owns nothing in this cluster.\n");
    }
    let header = ["RESOURCE", "VMID", "NODE", "STATUS", "ADDRESS", "NOTES"];
    let lines: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            let mut notes = Vec::new();
            if let Some(build) = &row.build {
                notes.push(format!("build {}", short(build)));
            }
            if let Some(template) = &row.template {
                notes.push(format!("from {template}"));
            }
            if !row.pending.is_empty() {
                notes.push(format!("pending: {}", row.pending.join(", ")));
            }
            if !row.in_spec {
                notes.push("no longer in the spec".into());
            }
            [
                row.key.to_string(),
                row.vmid
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                row.node.clone(),
                row.status.clone(),
                match (&row.address, row.address_source) {
                    (Some(address), Some(AddressSource::Agent)) => format!("{address} (agent)"),
                    (Some(address), _) => address.clone(),
                    (None, _) => "-".into(),
                },
                notes.join("; "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |cells: &[&str]| {
        let mut line = String::new();
        for (idx, cell) in cells.iter().enumerate() {
            if idx + 1 == cells.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[idx]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push(&header);
    for line in &lines {
        push(&line.each_ref().map(String::as_str));
    }
    out
}

fn short(build: &str) -> &str {
    build.get(..12).unwrap_or(build)
}

/// An Ansible group name from free text: letters, digits and underscores only (Ansible warns
/// about, and some plugins refuse, any other character in a group name).
fn group_name(prefix: &str, text: &str) -> String {
    let body: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}_{body}")
}

/// The host variables Ansible gets for a clone.
fn host_vars(row: &Owned) -> serde_json::Map<String, Value> {
    let mut vars = serde_json::Map::new();
    if let Some(address) = &row.address {
        vars.insert("ansible_host".into(), json!(address));
    }
    if let Some(user) = &row.user {
        vars.insert("ansible_user".into(), json!(user));
    }
    if let Some(vmid) = row.vmid {
        vars.insert("proxmox_vmid".into(), json!(vmid));
    }
    vars.insert("proxmox_node".into(), json!(row.node));
    vars.insert("proxfleet_key".into(), json!(row.key.to_string()));
    if !row.tags.is_empty() {
        vars.insert("proxmox_tags".into(), json!(row.tags));
    }
    vars
}

/// The groups a clone belongs to: `proxfleet`, its template, its clone group, each tag, its
/// node.
fn groups_of(row: &Owned) -> Vec<String> {
    let mut groups = vec!["proxfleet".to_string()];
    if let Some(template) = &row.template {
        // By template, whichever of its builds the clone was made from.
        groups.push(group_name("template", &template.spec_key().name));
    }
    if let Some(group) = &row.group {
        groups.push(group_name("group", group));
    }
    for tag in row.tags.iter().filter(|t| *t != "proxfleet") {
        groups.push(group_name("tag", tag));
    }
    groups.push(group_name("node", &row.node));
    groups
}

/// The clones as Ansible's dynamic-inventory `--list` document: every group with its `hosts`,
/// `all` with its `children`, and every host's variables under `_meta.hostvars` (so Ansible
/// does not call `--host` once per host).
pub fn ansible_list(rows: &[Owned]) -> Value {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut hostvars = serde_json::Map::new();
    for row in rows.iter().filter(|r| r.kind == ResourceKind::Clone) {
        for group in groups_of(row) {
            groups.entry(group).or_default().push(row.name.clone());
        }
        hostvars.insert(row.name.clone(), Value::Object(host_vars(row)));
    }
    let mut document = serde_json::Map::new();
    document.insert("_meta".into(), json!({ "hostvars": hostvars }));
    document.insert(
        "all".into(),
        json!({ "children": groups.keys().collect::<Vec<_>>() }),
    );
    for (group, hosts) in groups {
        document.insert(group, json!({ "hosts": hosts }));
    }
    Value::Object(document)
}

/// One host's variables, for `--host NAME` (an empty object for a host it does not know, as
/// Ansible's script plugin expects).
pub fn ansible_host(rows: &[Owned], name: &str) -> Value {
    rows.iter()
        .find(|r| r.kind == ResourceKind::Clone && r.name == name)
        .map(|row| Value::Object(host_vars(row)))
        .unwrap_or_else(|| json!({}))
}

/// The clones as a static Ansible inventory in YAML (`all: children: GROUP: hosts: …`), the
/// host variables under the `proxfleet` group.
pub fn ansible_yaml(rows: &[Owned]) -> String {
    let clones: Vec<&Owned> = rows
        .iter()
        .filter(|r| r.kind == ResourceKind::Clone)
        .collect();
    let mut groups: BTreeMap<String, Vec<&Owned>> = BTreeMap::new();
    for row in &clones {
        for group in groups_of(row) {
            groups.entry(group).or_default().push(row);
        }
    }
    let mut out =
        String::from("# Ansible inventory of the clones proxfleet manages\nall:\n  children:\n");
    for (group, hosts) in &groups {
        let _ = writeln!(out, "    {group}:\n      hosts:");
        for row in hosts {
            if group == "proxfleet" {
                let _ = writeln!(out, "        {}:", yaml_scalar(&row.name));
                for (name, value) in host_vars(row) {
                    let _ = writeln!(out, "          {name}: {}", yaml_value(&value));
                }
            } else {
                let _ = writeln!(out, "        {}: {{}}", yaml_scalar(&row.name));
            }
        }
    }
    if clones.is_empty() {
        out = String::from("# Ansible inventory of the clones proxfleet manages\nall: {}\n");
    }
    out
}

/// A YAML scalar for a value: JSON's quoting is valid YAML and never re-typed (`yes`, `0644`).
fn yaml_value(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn yaml_scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && text.starts_with(|c: char| c.is_ascii_alphabetic());
    if plain {
        text.to_string()
    } else {
        Value::String(text.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clone_row(name: &str, address: Option<&str>) -> Owned {
        Owned {
            key: ResourceKey::new(ResourceKind::Clone, name),
            kind: ResourceKind::Clone,
            name: name.into(),
            vmid: Some(201),
            node: "pve1".into(),
            status: "running".into(),
            build: None,
            template: Some(ResourceKey::new(ResourceKind::Template, "debian-12-base")),
            group: Some("web".into()),
            address: address.map(str::to_string),
            address_source: address.map(|_| AddressSource::Static),
            user: Some("debian".into()),
            tags: vec!["proxfleet".into(), "web-tier".into()],
            pool: None,
            pending: vec![],
            in_spec: true,
        }
    }

    #[test]
    fn static_addresses_come_from_ipconfig_without_their_prefix() {
        assert_eq!(
            static_ip("ip=192.0.2.11/24,gw=192.0.2.1").as_deref(),
            Some("192.0.2.11")
        );
        assert_eq!(static_ip("ip=dhcp"), None);
        assert_eq!(static_ip("ip6=auto"), None);
        assert_eq!(
            static_ip("ip6=2001:db8::5/64,ip=10.0.0.5/8").as_deref(),
            Some("10.0.0.5")
        );
    }

    #[test]
    fn the_dynamic_inventory_groups_clones_and_carries_their_variables() {
        let rows = [
            clone_row("web-1", Some("192.0.2.11")),
            clone_row("web-2", None),
        ];
        let list = ansible_list(&rows);
        assert_eq!(list["proxfleet"]["hosts"], json!(["web-1", "web-2"]));
        assert_eq!(
            list["template_debian_12_base"]["hosts"],
            json!(["web-1", "web-2"])
        );
        assert_eq!(list["group_web"]["hosts"], json!(["web-1", "web-2"]));
        assert_eq!(list["tag_web_tier"]["hosts"], json!(["web-1", "web-2"]));
        assert_eq!(list["node_pve1"]["hosts"], json!(["web-1", "web-2"]));
        let web1 = &list["_meta"]["hostvars"]["web-1"];
        assert_eq!(web1["ansible_host"], "192.0.2.11");
        assert_eq!(web1["ansible_user"], "debian");
        assert_eq!(web1["proxmox_vmid"], 201);
        assert!(
            list["_meta"]["hostvars"]["web-2"]
                .get("ansible_host")
                .is_none()
        );
        assert_eq!(ansible_host(&rows, "web-1"), *web1);
        assert_eq!(ansible_host(&rows, "nope"), json!({}));
    }

    #[test]
    fn the_static_inventory_is_yaml_with_the_variables_once() {
        let yaml = ansible_yaml(&[clone_row("web-1", Some("192.0.2.11"))]);
        assert!(yaml.contains("    proxfleet:\n      hosts:\n        web-1:\n          ansible_host: \"192.0.2.11\"\n"), "{yaml}");
        assert!(
            yaml.contains("    node_pve1:\n      hosts:\n        web-1: {}\n"),
            "{yaml}"
        );
        assert_eq!(
            ansible_yaml(&[]),
            "# Ansible inventory of the clones proxfleet manages\nall: {}\n"
        );
    }
}
