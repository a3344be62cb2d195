//! Layers: a clone's settings come from `defaults` < its template < its clone group < itself
//! (or its entry in the group's `overrides`). This module is the one place that precedence is
//! decided: a group's fields merged with an `overrides` entry, then every layered setting of a
//! clone resolved once into its value and its origin (the layer, and where in the file that
//! layer is). The graph and the seed read the values; `validate --explain` reads the origins, so
//! the two cannot disagree.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use super::model::{
    CloneVm, CloudInit, CustomData, DEFAULT_WAIT_FOR_IP_TIMEOUT, Delivery, Explained, InterfaceIp,
    Ipv4Config, Ipv6Config, Network, Template, human_duration, ipconfig,
};
use super::raw::{RawClone, RawCloneGroup, RawCloneOverride, RawCloudInit};
use crate::secret::Secret;

/// A layer of the spec that can give a clone a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// No layer of the spec gives it: proxfleet's own default.
    ProxfleetDefault,
    /// The `defaults` block.
    Defaults,
    /// A template (`templates.NAME`).
    Template(String),
    /// A clone group (`clone_groups.GROUP`).
    Group(String),
    /// One clone's entry in its group's `overrides`.
    GroupOverride {
        /// The group.
        group: String,
        /// The clone.
        clone: String,
    },
    /// A clone declared alone (`clones.NAME`).
    Clone(String),
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::ProxfleetDefault => f.write_str("proxfleet default"),
            Layer::Defaults => f.write_str("defaults"),
            Layer::Template(name) => write!(f, "templates.{name}"),
            Layer::Group(group) => write!(f, "clone_groups.{group}"),
            Layer::GroupOverride { group, clone } => {
                write!(f, "clone_groups.{group}.overrides.{clone}")
            }
            Layer::Clone(name) => write!(f, "clones.{name}"),
        }
    }
}

/// Where a setting comes from: its layer, and the place in the spec file where that layer is
/// declared (its key; 0 and 0 for a proxfleet default, which has no place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The layer.
    pub layer: Layer,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl Origin {
    /// proxfleet's own default, declared nowhere.
    pub fn proxfleet_default() -> Origin {
        Origin {
            layer: Layer::ProxfleetDefault,
            line: 0,
            column: 0,
        }
    }

    /// Whether the template gives it (the clone inherits it when it is cloned).
    pub fn is_template(&self) -> bool {
        matches!(self.layer, Layer::Template(_))
    }
}

/// A setting's effective value and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layered<T> {
    /// The value.
    pub value: T,
    /// Its origin.
    pub origin: Origin,
}

/// Every layered setting of a clone, resolved: the value proxfleet asks of Proxmox, and its
/// origin.
#[derive(Debug, Clone, PartialEq)]
pub struct CloneSettings {
    /// The clone's own entry: `clones.NAME`, or its group (vmid and template come from there).
    pub entry: Origin,
    /// Node.
    pub node: Layered<String>,
    /// Full (true) or linked (false).
    pub full: Layered<bool>,
    /// Cores per socket.
    pub cores: Layered<u32>,
    /// Sockets.
    pub sockets: Layered<u32>,
    /// Memory in MiB.
    pub memory_mib: Layered<u64>,
    /// CPU type, when the template sets one.
    pub cpu: Option<Layered<String>>,
    /// User tags (lower-case, sorted, unique).
    pub tags: Layered<Vec<String>>,
    /// Network interfaces, `net0` first.
    pub networks: Layered<Vec<Network>>,
    /// Keep running.
    pub start: Layered<bool>,
    /// Start on node boot, when a layer says.
    pub onboot: Option<Layered<bool>>,
    /// Resource pool, when a layer names one.
    pub pool: Option<Layered<String>>,
    /// How long to wait for its address after starting it; `None`: do not wait. The origin is
    /// that of `wait_for_ip` (the time-out may come from a lower layer or the default).
    pub wait_for_ip: Option<Layered<Duration>>,
    /// Cloud-init, field by field.
    pub cloud_init: CloudInitSettings,
}

/// A clone's cloud-init, each field from the highest layer that gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloudInitSettings {
    /// Storage of the cloud-init drive.
    pub storage: Option<Layered<String>>,
    /// Default user.
    pub user: Option<Layered<String>>,
    /// The user's password; never printed.
    pub password: Option<Layered<Secret>>,
    /// OpenSSH public keys.
    pub ssh_keys: Option<Layered<Vec<String>>>,
    /// IPv4 of `net0`.
    pub ipv4: Option<Layered<Ipv4Config>>,
    /// IPv6 of `net0`.
    pub ipv6: Option<Layered<Ipv6Config>>,
    /// Name servers.
    pub nameservers: Option<Layered<Vec<std::net::IpAddr>>>,
    /// Search domain.
    pub searchdomain: Option<Layered<String>>,
    /// Package upgrade on first boot.
    pub upgrade: Option<Layered<bool>>,
    /// Custom user-data.
    pub user_data: Option<Layered<CustomData>>,
    /// Custom vendor-data.
    pub vendor_data: Option<Layered<CustomData>>,
    /// Custom network-config.
    pub network_data: Option<Layered<CustomData>>,
    /// IP settings of `net1`, `net2`, ….
    pub extra_interfaces: Option<Layered<Vec<InterfaceIp>>>,
    /// How custom data reaches the guest.
    pub delivery: Option<Layered<Delivery>>,
}

impl CloudInitSettings {
    /// The effective cloud-init block; `None` when no layer gives any of it.
    pub fn value(&self) -> Option<CloudInit> {
        fn get<T: Clone>(field: &Option<Layered<T>>) -> Option<T> {
            field.as_ref().map(|layered| layered.value.clone())
        }
        let ci = CloudInit {
            storage: get(&self.storage),
            user: get(&self.user),
            password: get(&self.password),
            ssh_keys: get(&self.ssh_keys).unwrap_or_default(),
            ipv4: get(&self.ipv4),
            ipv6: get(&self.ipv6),
            nameservers: get(&self.nameservers).unwrap_or_default(),
            searchdomain: get(&self.searchdomain),
            upgrade: get(&self.upgrade),
            user_data: get(&self.user_data),
            vendor_data: get(&self.vendor_data),
            network_data: get(&self.network_data),
            extra_interfaces: get(&self.extra_interfaces).unwrap_or_default(),
            delivery: get(&self.delivery),
        };
        (ci != CloudInit::default()).then_some(ci)
    }

    /// The password, when the clone's own layers give it: one from the template came with the
    /// clone when it was cloned.
    pub fn own_password(&self) -> Option<&Secret> {
        self.password
            .as_ref()
            .filter(|password| !password.origin.is_template())
            .map(|password| &password.value)
    }
}

/// A group's fields with one clone's `overrides` entry on top, field by field, and the names of
/// the fields the entry set (cloud-init ones as `cloud_init.FIELD`, named as in `CloudInit`).
pub(super) fn group_over(
    group: &RawCloneGroup,
    entry: Option<&RawCloneOverride>,
) -> (RawClone, BTreeSet<&'static str>) {
    let mut merge = Merge::default();
    let raw = RawClone {
        storage: None,
        disk_size: merge.pick("disk_size", &group.disk_size, entry.map(|o| &o.disk_size)),
        data_disks: merge.pick(
            "data_disks",
            &group.data_disks,
            entry.map(|o| &o.data_disks),
        ),
        network: merge.pick("network", &group.network, entry.map(|o| &o.network)),
        vmid: group.first_vmid.clone(),
        template: group.template.clone(),
        node: None,
        full: group.full,
        cores: merge.pick("cores", &group.cores, entry.map(|o| &o.cores)),
        memory: merge.pick("memory", &group.memory, entry.map(|o| &o.memory)),
        cloud_init: cloud_init_over(
            &mut merge,
            group.cloud_init.as_ref(),
            entry.and_then(|o| o.cloud_init.as_ref()),
        ),
        tags: merge.pick("tags", &group.tags, entry.map(|o| &o.tags)),
        start: merge.pick("start", &group.start, entry.map(|o| &o.start)),
        onboot: merge.pick("onboot", &group.onboot, entry.map(|o| &o.onboot)),
        pool: group.pool.clone(),
        description: None,
        // Adoption names one VM: it is not for groups.
        adopt: false,
        wait_for_ip: merge.pick(
            "wait_for_ip",
            &group.wait_for_ip,
            entry.map(|o| &o.wait_for_ip),
        ),
        wait_for_ip_timeout: group.wait_for_ip_timeout.clone(),
        on_template_change: group.on_template_change.clone(),
        rollout: group.rollout.clone(),
    };
    (raw, merge.overridden)
}

/// The fields an `overrides` entry set, as `group_over` merges them.
#[derive(Default)]
struct Merge {
    overridden: BTreeSet<&'static str>,
}

impl Merge {
    /// The entry's value when it gives one, else the group's.
    fn pick<T: Clone>(
        &mut self,
        field: &'static str,
        group: &Option<T>,
        entry: Option<&Option<T>>,
    ) -> Option<T> {
        match entry.and_then(Option::as_ref) {
            Some(value) => {
                self.overridden.insert(field);
                Some(value.clone())
            }
            None => group.clone(),
        }
    }

    /// A list is given when it is not empty.
    fn pick_list<T: Clone>(&mut self, field: &'static str, group: &[T], entry: &[T]) -> Vec<T> {
        if entry.is_empty() {
            group.to_vec()
        } else {
            self.overridden.insert(field);
            entry.to_vec()
        }
    }
}

/// A group's cloud-init with an entry's on top, field by field; each raw field recorded under
/// the name of the `CloudInit` field it becomes.
fn cloud_init_over(
    merge: &mut Merge,
    group: Option<&RawCloudInit>,
    entry: Option<&RawCloudInit>,
) -> Option<RawCloudInit> {
    let Some(entry) = entry else {
        return group.cloned();
    };
    let base = group.cloned().unwrap_or_default();
    let e = Some(entry);
    Some(RawCloudInit {
        storage: merge.pick("cloud_init.storage", &base.storage, e.map(|c| &c.storage)),
        user: merge.pick("cloud_init.user", &base.user, e.map(|c| &c.user)),
        ssh_keys: merge.pick_list("cloud_init.ssh_keys", &base.ssh_keys, &entry.ssh_keys),
        ipv4: merge.pick("cloud_init.ipv4", &base.ipv4, e.map(|c| &c.ipv4)),
        gateway: merge.pick("cloud_init.ipv4", &base.gateway, e.map(|c| &c.gateway)),
        ipv6: merge.pick("cloud_init.ipv6", &base.ipv6, e.map(|c| &c.ipv6)),
        gateway6: merge.pick("cloud_init.ipv6", &base.gateway6, e.map(|c| &c.gateway6)),
        password: merge.pick(
            "cloud_init.password",
            &base.password,
            e.map(|c| &c.password),
        ),
        ssh_key_files: merge.pick_list(
            "cloud_init.ssh_keys",
            &base.ssh_key_files,
            &entry.ssh_key_files,
        ),
        dns: {
            let dns = merge.pick("cloud_init.nameservers", &base.dns, e.map(|c| &c.dns));
            if entry.dns.is_some() {
                merge.overridden.insert("cloud_init.searchdomain");
            }
            dns
        },
        upgrade: merge.pick("cloud_init.upgrade", &base.upgrade, e.map(|c| &c.upgrade)),
        user_data: merge.pick(
            "cloud_init.user_data",
            &base.user_data,
            e.map(|c| &c.user_data),
        ),
        vendor_data: merge.pick(
            "cloud_init.vendor_data",
            &base.vendor_data,
            e.map(|c| &c.vendor_data),
        ),
        network_data: merge.pick(
            "cloud_init.network_data",
            &base.network_data,
            e.map(|c| &c.network_data),
        ),
        extra_interfaces: merge.pick_list(
            "cloud_init.extra_interfaces",
            &base.extra_interfaces,
            &entry.extra_interfaces,
        ),
        delivery: merge.pick(
            "cloud_init.delivery",
            &base.delivery,
            e.map(|c| &c.delivery),
        ),
    })
}

/// What a clone's own layers declare (the clone alone, or its group with its `overrides`
/// entry), validated; `None` or empty where they declare nothing.
#[derive(Debug, Clone, Default)]
pub(super) struct Declared {
    pub(super) node: Option<String>,
    pub(super) full: Option<bool>,
    pub(super) cores: Option<u32>,
    pub(super) memory_mib: Option<u64>,
    pub(super) tags: Option<Vec<String>>,
    pub(super) networks: Option<Vec<Network>>,
    pub(super) start: Option<bool>,
    pub(super) onboot: Option<bool>,
    pub(super) pool: Option<String>,
    pub(super) wait_for_ip: Option<bool>,
    pub(super) wait_for_ip_timeout: Option<Duration>,
    pub(super) cloud_init: Option<CloudInit>,
}

/// The layers a clone sits on, with their places in the file.
pub(super) struct CloneLayers<'a> {
    /// `clones.NAME`, or the group.
    pub(super) entry: Origin,
    /// A group clone's `overrides` entry and the fields it set.
    pub(super) overrides: Option<(Origin, &'a BTreeSet<&'static str>)>,
    /// The template.
    pub(super) template: Origin,
    /// Where the template's node comes from: the template, or `defaults.node`.
    pub(super) template_node: Origin,
}

impl CloneLayers<'_> {
    /// The origin of a field the clone's own layers declare.
    fn own(&self, field: &str) -> Origin {
        match &self.overrides {
            Some((origin, fields)) if fields.contains(field) => origin.clone(),
            _ => self.entry.clone(),
        }
    }

    /// The clone's own value if it declares one, else the template's.
    fn over<T>(&self, field: &str, own: Option<T>, template: Option<T>) -> Option<Layered<T>> {
        match own {
            Some(value) => Some(Layered {
                value,
                origin: self.own(field),
            }),
            None => template.map(|value| Layered {
                value,
                origin: self.template.clone(),
            }),
        }
    }

    /// Like `over`, for a value every template has.
    fn over_template<T>(&self, field: &str, own: Option<T>, template: T) -> Layered<T> {
        match own {
            Some(value) => Layered {
                value,
                origin: self.own(field),
            },
            None => Layered {
                value: template,
                origin: self.template.clone(),
            },
        }
    }

    /// The clone's own value, else proxfleet's default.
    fn over_default<T>(&self, field: &str, own: Option<T>, default: T) -> Layered<T> {
        match own {
            Some(value) => Layered {
                value,
                origin: self.own(field),
            },
            None => Layered {
                value: default,
                origin: Origin::proxfleet_default(),
            },
        }
    }
}

/// Every layered setting of a clone, from what its own layers declare and its template.
pub(super) fn resolve(
    layers: &CloneLayers<'_>,
    declared: Declared,
    template: &Template,
) -> CloneSettings {
    let node = match declared.node {
        Some(node) => Layered {
            value: node,
            origin: layers.own("node"),
        },
        None => Layered {
            value: template.node.clone(),
            origin: layers.template_node.clone(),
        },
    };
    let wait_for_ip = layers
        .over("wait_for_ip", declared.wait_for_ip, template.wait_for_ip)
        .filter(|wait| wait.value)
        .map(|wait| Layered {
            value: declared
                .wait_for_ip_timeout
                .or(template.wait_for_ip_timeout)
                .unwrap_or(DEFAULT_WAIT_FOR_IP_TIMEOUT),
            origin: wait.origin,
        });
    CloneSettings {
        entry: layers.entry.clone(),
        node,
        full: layers.over_default("full", declared.full, true),
        cores: layers.over_template("cores", declared.cores, template.cores),
        sockets: layers.over_template("sockets", None, template.sockets),
        memory_mib: layers.over_template("memory", declared.memory_mib, template.memory_mib),
        cpu: layers.over("cpu", None, template.cpu.clone()),
        tags: layers.over_template("tags", declared.tags, template.tags.clone()),
        networks: layers.over_template("network", declared.networks, template.networks.clone()),
        start: layers.over_default("start", declared.start, true),
        onboot: layers.over("onboot", declared.onboot, template.onboot),
        pool: layers.over("pool", declared.pool, template.pool.clone()),
        wait_for_ip,
        cloud_init: resolve_cloud_init(
            layers,
            declared.cloud_init.unwrap_or_default(),
            template.cloud_init.clone().unwrap_or_default(),
        ),
    }
}

/// Cloud-init field by field; an empty list is one a layer does not give.
fn resolve_cloud_init(layers: &CloneLayers<'_>, own: CloudInit, t: CloudInit) -> CloudInitSettings {
    fn list<T>(list: Vec<T>) -> Option<Vec<T>> {
        (!list.is_empty()).then_some(list)
    }
    CloudInitSettings {
        storage: layers.over("cloud_init.storage", own.storage, t.storage),
        user: layers.over("cloud_init.user", own.user, t.user),
        password: layers.over("cloud_init.password", own.password, t.password),
        ssh_keys: layers.over("cloud_init.ssh_keys", list(own.ssh_keys), list(t.ssh_keys)),
        ipv4: layers.over("cloud_init.ipv4", own.ipv4, t.ipv4),
        ipv6: layers.over("cloud_init.ipv6", own.ipv6, t.ipv6),
        nameservers: layers.over(
            "cloud_init.nameservers",
            list(own.nameservers),
            list(t.nameservers),
        ),
        searchdomain: layers.over("cloud_init.searchdomain", own.searchdomain, t.searchdomain),
        upgrade: layers.over("cloud_init.upgrade", own.upgrade, t.upgrade),
        user_data: layers.over("cloud_init.user_data", own.user_data, t.user_data),
        vendor_data: layers.over("cloud_init.vendor_data", own.vendor_data, t.vendor_data),
        network_data: layers.over("cloud_init.network_data", own.network_data, t.network_data),
        extra_interfaces: layers.over(
            "cloud_init.extra_interfaces",
            list(own.extra_interfaces),
            list(t.extra_interfaces),
        ),
        delivery: layers.over("cloud_init.delivery", own.delivery, t.delivery),
    }
}

/// `validate --explain`: each effective setting of a clone and the layer it comes from, read
/// from the settings the graph is built from.
pub fn explain(clone: &CloneVm, template: &Template) -> Vec<Explained> {
    let s = &clone.settings;
    let mut out = Vec::new();
    let mut add = |field: &str, value: String, origin: &Origin| {
        out.push(Explained {
            field: field.to_string(),
            value,
            source: origin.layer.to_string(),
        })
    };
    add("vmid", clone.vmid.to_string(), &s.entry);
    add(
        "template",
        format!("{} (vmid {})", template.name, template.vmid),
        &s.entry,
    );
    add("node", s.node.value.clone(), &s.node.origin);
    add("full", s.full.value.to_string(), &s.full.origin);
    add("cores", s.cores.value.to_string(), &s.cores.origin);
    add("sockets", s.sockets.value.to_string(), &s.sockets.origin);
    let memory = format!("{} MiB", s.memory_mib.value);
    add("memory", memory, &s.memory_mib.origin);
    add("tags", s.tags.value.join(";"), &s.tags.origin);
    add("start", s.start.value.to_string(), &s.start.origin);
    if let Some(wait) = &s.wait_for_ip {
        let value = format!("true (up to {})", human_duration(wait.value));
        add("wait_for_ip", value, &wait.origin);
    }
    if let Some(onboot) = &s.onboot {
        add("onboot", onboot.value.to_string(), &onboot.origin);
    }
    if let Some(pool) = &s.pool {
        add("pool", pool.value.clone(), &pool.origin);
    }
    if let Some(origin) = &clone.data_disks_origin {
        add("data_disks", data_disks_text(&clone.data_disks), origin);
    }
    out.extend(explain_cloud_init(&s.cloud_init));
    out
}

/// A clone's data disks in one line: `scsi1 20G on local-lvm (keep), scsi2 …`.
fn data_disks_text(disks: &[super::model::DataDisk]) -> String {
    let shown: Vec<String> = disks
        .iter()
        .map(|d| {
            format!(
                "{} {} on {}{}{}",
                d.slot,
                d.size.to_proxmox(),
                d.storage,
                if d.discard { ", discard" } else { "" },
                if d.keep { " (keep)" } else { "" }
            )
        })
        .collect();
    if shown.is_empty() {
        "none".to_string()
    } else {
        shown.join("; ")
    }
}

fn explain_cloud_init(ci: &CloudInitSettings) -> Vec<Explained> {
    fn row<T>(
        field: &str,
        layered: &Option<Layered<T>>,
        show: impl Fn(&T) -> String,
    ) -> Option<Explained> {
        layered.as_ref().map(|layered| Explained {
            field: field.to_string(),
            value: show(&layered.value),
            source: layered.origin.layer.to_string(),
        })
    }
    let custom = |data: &CustomData| data.path.clone();
    [
        row("cloud_init.user", &ci.user, String::clone),
        ipconfig0_row(ci),
        row("cloud_init.ssh_keys", &ci.ssh_keys, |keys| {
            format!("{} key(s)", keys.len())
        }),
        row("cloud_init.dns.servers", &ci.nameservers, |servers| {
            let servers: Vec<String> = servers.iter().map(ToString::to_string).collect();
            servers.join(" ")
        }),
        row(
            "cloud_init.dns.search_domain",
            &ci.searchdomain,
            String::clone,
        ),
        row("cloud_init.password", &ci.password, |_| {
            "(sensitive)".to_string()
        }),
        row("cloud_init.user_data", &ci.user_data, custom),
        row("cloud_init.vendor_data", &ci.vendor_data, custom),
        row("cloud_init.network_data", &ci.network_data, custom),
        row("cloud_init.delivery", &ci.delivery, |d| {
            d.as_str().to_string()
        }),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `ipconfig0` joins IPv4 and IPv6, which different layers may give: then both are named.
fn ipconfig0_row(ci: &CloudInitSettings) -> Option<Explained> {
    let value = ipconfig(
        ci.ipv4.as_ref().map(|l| l.value),
        ci.ipv6.as_ref().map(|l| l.value),
    )?;
    let source = match (&ci.ipv4, &ci.ipv6) {
        (Some(v4), Some(v6)) if v4.origin.layer != v6.origin.layer => {
            format!("{} (ipv4), {} (ipv6)", v4.origin.layer, v6.origin.layer)
        }
        (Some(layered), _) => layered.origin.layer.to_string(),
        (None, Some(layered)) => layered.origin.layer.to_string(),
        (None, None) => return None,
    };
    Some(Explained {
        field: "cloud_init.ipconfig0".to_string(),
        value,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::raw::RawSpec;

    fn group(yaml: &str) -> RawCloneGroup {
        let spec: RawSpec = serde_saphyr::from_str(yaml).unwrap_or_else(|err| panic!("{err}"));
        spec.clone_groups
            .into_values()
            .next()
            .unwrap_or_else(|| panic!("no group"))
    }

    #[test]
    fn an_overrides_entry_wins_field_by_field_and_says_which_fields() {
        let group = group(
            "clone_groups:\n  web:\n    count: 2\n    first_vmid: 300\n    template: base\n    cores: 2\n    memory: 2GiB\n    cloud_init:\n      user: ops\n      ipv4: 10.0.0.10/24\n      gateway: 10.0.0.1\n    overrides:\n      web-2:\n        memory: 4GiB\n        cloud_init:\n          ipv6: auto\n",
        );
        let entry = group.overrides.values().next();
        let (raw, overridden) = group_over(&group, entry);
        assert_eq!(raw.cores.map(|c| c.value), Some(2));
        assert_eq!(raw.memory.map(|m| m.value).as_deref(), Some("4GiB"));
        let ci = raw.cloud_init.unwrap_or_default();
        assert_eq!(
            ci.user.as_ref().map(|u| u.value.as_str()),
            Some("ops"),
            "the group's, kept"
        );
        assert_eq!(ci.ipv4.map(|ip| ip.value).as_deref(), Some("10.0.0.10/24"));
        assert_eq!(ci.ipv6.map(|ip| ip.value).as_deref(), Some("auto"));
        let fields: Vec<&str> = overridden.into_iter().collect();
        assert_eq!(fields, vec!["cloud_init.ipv6", "memory"]);

        let (plain, none) = group_over(&group, None);
        assert_eq!(plain.memory.map(|m| m.value).as_deref(), Some("2GiB"));
        assert!(none.is_empty());
    }
}
