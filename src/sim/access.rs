//! Access control as pve-access-control does it: built-in roles, ACL entries on paths for users
//! and API tokens, privilege-separated tokens (their privileges are the user's intersected with
//! the token's own), `root@pam` as superuser, and the permission checks of the official schema
//! (`api-permissions.json`, extracted with the parameter schema) evaluated per request.
//!
//! Role contents follow the built-in roles described in pveum(1) ("Roles"); the simulator models
//! the privileges proxfleet's endpoints check, not every privilege Proxmox knows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::Value;

const PERMISSIONS_TEXT: &str = include_str!("api-permissions.json");

/// Every privilege the simulator knows (PVE 9).
pub(crate) const ALL_PRIVILEGES: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Mapping.Audit",
    "Mapping.Modify",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "Realm.Allocate",
    "Realm.AllocateUser",
    "SDN.Allocate",
    "SDN.Audit",
    "SDN.Use",
    "Sys.AccessNetwork",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Incoming",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "Sys.Syslog",
    "User.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.GuestAgent.Unrestricted",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Replicate",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

const VM_CONFIG: &[&str] = &[
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
];

/// The privileges of a built-in role, or `None` for an unknown role.
pub(crate) fn builtin_role(name: &str) -> Option<BTreeSet<String>> {
    let privs: Vec<&str> = match name {
        "Administrator" => ALL_PRIVILEGES.to_vec(),
        "NoAccess" => Vec::new(),
        "PVEAdmin" => ALL_PRIVILEGES
            .iter()
            .copied()
            .filter(|p| {
                !matches!(
                    *p,
                    "Sys.PowerMgmt" | "Sys.Modify" | "Realm.Allocate" | "Permissions.Modify"
                )
            })
            .collect(),
        "PVEAuditor" => vec![
            "Datastore.Audit",
            "Mapping.Audit",
            "Pool.Audit",
            "SDN.Audit",
            "Sys.Audit",
            "VM.Audit",
            "VM.GuestAgent.Audit",
        ],
        "PVEDatastoreAdmin" => vec![
            "Datastore.Allocate",
            "Datastore.AllocateSpace",
            "Datastore.AllocateTemplate",
            "Datastore.Audit",
        ],
        "PVEDatastoreUser" => vec!["Datastore.AllocateSpace", "Datastore.Audit"],
        "PVEMappingUser" => vec!["Mapping.Audit", "Mapping.Use"],
        "PVEPoolUser" => vec!["Pool.Audit"],
        "PVESDNUser" => vec!["SDN.Audit", "SDN.Use"],
        "PVESysAdmin" => vec![
            "Sys.AccessNetwork",
            "Sys.Audit",
            "Sys.Console",
            "Sys.Syslog",
            "Sys.PowerMgmt",
            "Sys.Modify",
        ],
        "PVETemplateUser" => vec!["VM.Audit", "VM.Clone"],
        "PVEVMAdmin" => {
            let mut privs = vec![
                "VM.Allocate",
                "VM.Audit",
                "VM.Backup",
                "VM.Clone",
                "VM.Console",
                "VM.GuestAgent.Audit",
                "VM.GuestAgent.Unrestricted",
                "VM.Migrate",
                "VM.PowerMgmt",
                "VM.Snapshot",
                "VM.Snapshot.Rollback",
                "Pool.Audit",
            ];
            privs.extend_from_slice(VM_CONFIG);
            privs
        }
        "PVEVMUser" => vec![
            "VM.Audit",
            "VM.Backup",
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Console",
            "VM.GuestAgent.Audit",
            "VM.PowerMgmt",
            "Pool.Audit",
        ],
        _ => return None,
    };
    Some(privs.into_iter().map(str::to_string).collect())
}

/// One ACL entry, as `pveum acl modify PATH --roles ROLE --users|--tokens UGID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    /// ACL path, e.g. `/`, `/vms/100`, `/storage/local-lvm`.
    pub path: String,
    /// Role name.
    pub role: String,
    /// User (`alice@pve`) or token (`alice@pve!ci`).
    pub ugid: String,
    /// Whether it applies below `path` too (Proxmox's default: yes).
    pub propagate: bool,
}

impl AclEntry {
    /// Parse `PATH:ROLE:USER_OR_TOKEN[:0]` (the last field is the propagate flag, default 1).
    ///
    /// # Errors
    /// A malformed entry, with what is expected.
    pub fn parse(text: &str) -> Result<AclEntry, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let usage = || {
            format!(
                "invalid ACL entry '{text}': expected PATH:ROLE:USER_OR_TOKEN[:PROPAGATE], e.g. /:PVEVMAdmin:ci@pve!deploy"
            )
        };
        let (path, role, ugid, propagate) = match parts.as_slice() {
            [path, role, ugid] => (*path, *role, *ugid, true),
            [path, role, ugid, flag] => (
                *path,
                *role,
                *ugid,
                match *flag {
                    "1" => true,
                    "0" => false,
                    _ => return Err(usage()),
                },
            ),
            _ => return Err(usage()),
        };
        if !path.starts_with('/') || ugid.is_empty() || !ugid.contains('@') {
            return Err(usage());
        }
        Ok(AclEntry {
            path: normalize_path(path),
            role: role.to_string(),
            ugid: ugid.to_string(),
            propagate,
        })
    }
}

fn normalize_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

/// A token as the simulator knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// `user@realm!id`.
    pub id: String,
    pub secret: String,
    /// Privilege separation: the token's privileges are the user's intersected with its own ACLs.
    pub privsep: bool,
}

impl Token {
    /// Parse `USER@REALM!ID=SECRET[,privsep=1]`.
    pub fn parse(text: &str) -> Result<Token, String> {
        let (main, privsep) = match text.split_once(",privsep=") {
            Some((main, "1")) => (main, true),
            Some((main, "0")) => (main, false),
            Some(_) => {
                return Err(format!(
                    "invalid token '{}…': privsep must be 0 or 1",
                    token_id_of(text)
                ));
            }
            None => (text, false),
        };
        let (id, secret) = main.rsplit_once('=').ok_or_else(|| {
            "invalid token: expected USER@REALM!ID=SECRET[,privsep=1]".to_string()
        })?;
        let valid_id = id
            .split_once('!')
            .is_some_and(|(user, name)| user.contains('@') && !name.is_empty());
        if !valid_id || secret.is_empty() {
            return Err(format!(
                "invalid token '{}…': expected USER@REALM!ID=SECRET[,privsep=1]",
                token_id_of(text)
            ));
        }
        Ok(Token {
            id: id.to_string(),
            secret: secret.to_string(),
            privsep,
        })
    }
}

/// The id part of a token text, never its secret (for error messages).
fn token_id_of(text: &str) -> &str {
    text.split_once('=').map_or("", |(id, _)| id)
}

/// ACLs, roles and tokens of the simulated cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessControl {
    pub acls: Vec<AclEntry>,
    pub roles: BTreeMap<String, BTreeSet<String>>,
    pub tokens: Vec<Token>,
}

impl AccessControl {
    fn role(&self, name: &str) -> BTreeSet<String> {
        self.roles
            .get(name)
            .cloned()
            .or_else(|| builtin_role(name))
            .unwrap_or_default()
    }

    /// Privileges of one ACL subject (user or token, no intersection) on `path`: the roles of the
    /// most specific path that has entries for it, where entries on ancestors count only when
    /// they propagate (pve-access-control `roles()`).
    fn subject_privileges(&self, ugid: &str, path: &str) -> BTreeSet<String> {
        let path = normalize_path(path);
        let mut chain = vec!["/".to_string()];
        let mut current = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            current.push('/');
            current.push_str(part);
            chain.push(current.clone());
        }
        let mut roles: Option<Vec<&str>> = None;
        for (depth, level) in chain.iter().enumerate() {
            let is_target = depth + 1 == chain.len();
            let here: Vec<&str> = self
                .acls
                .iter()
                .filter(|e| &e.path == level && e.ugid == ugid && (is_target || e.propagate))
                .map(|e| e.role.as_str())
                .collect();
            if !here.is_empty() {
                roles = Some(here);
            }
        }
        roles
            .unwrap_or_default()
            .into_iter()
            .flat_map(|role| self.role(role))
            .collect()
    }

    /// Effective privileges of an authenticated id (`user@realm` or `user@realm!token`) on a path.
    pub fn privileges(&self, authid: &str, path: &str) -> BTreeSet<String> {
        let (user, token) = match authid.split_once('!') {
            Some((user, _)) => (user, Some(authid)),
            None => (authid, None),
        };
        let user_privs = if user == "root@pam" {
            ALL_PRIVILEGES.iter().map(|p| p.to_string()).collect()
        } else {
            self.subject_privileges(user, path)
        };
        match token.and_then(|id| self.tokens.iter().find(|t| t.id == id)) {
            Some(token) if token.privsep => {
                let own = self.subject_privileges(&token.id, path);
                user_privs.intersection(&own).cloned().collect()
            }
            _ => user_privs,
        }
    }

    /// Whether `authid` has `privs` on `path` (all of them, or any with `any`).
    pub fn has(&self, authid: &str, path: &str, privs: &[&str], any: bool) -> bool {
        let have = self.privileges(authid, path);
        if any {
            privs.iter().any(|p| have.contains(*p))
        } else {
            privs.iter().all(|p| have.contains(*p))
        }
    }

    /// Every ACL path the caller has entries on (and `/`), with its privileges there, as
    /// `GET /access/permissions` reports them: path → privilege → propagate flag.
    pub fn permissions_dump(&self, authid: &str, only: Option<&str>) -> Value {
        let mut paths: BTreeSet<String> = BTreeSet::from(["/".to_string()]);
        let user = authid.split_once('!').map_or(authid, |(user, _)| user);
        for entry in &self.acls {
            if entry.ugid == authid || entry.ugid == user {
                paths.insert(entry.path.clone());
            }
        }
        if let Some(only) = only {
            paths = BTreeSet::from([normalize_path(only)]);
        }
        let mut out = serde_json::Map::new();
        for path in paths {
            // A path with entries that grant nothing (`NoAccess`) is listed empty: it stops
            // what would propagate from above.
            let privs = self.privileges(authid, &path);
            if privs.is_empty() && path == "/" && only.is_none() {
                continue;
            }
            // The flag says whether the privilege propagates below the path.
            let below = self.privileges(authid, &format!("{}/~", path.trim_end_matches('/')));
            let entry: serde_json::Map<String, Value> = privs
                .into_iter()
                .map(|p| {
                    let flag = u8::from(below.contains(&p));
                    (p, Value::from(flag))
                })
                .collect();
            out.insert(path, Value::Object(entry));
        }
        Value::Object(out)
    }
}

fn permissions() -> &'static BTreeMap<String, Value> {
    static PERMISSIONS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    PERMISSIONS.get_or_init(|| serde_json::from_str(PERMISSIONS_TEXT).unwrap_or_default())
}

/// Whether an endpoint may be called with an API token (`allowtoken`).
pub(crate) fn allows_token(endpoint: &str) -> bool {
    permissions()
        .get(endpoint)
        .and_then(|p| p.get("allowtoken"))
        .and_then(Value::as_i64)
        .is_none_or(|v| v != 0)
}

/// Evaluate the schema's `check` for an endpoint. `Ok` when it passes or the endpoint has none
/// (`user: all` endpoints check in their handlers); `Err` when it fails.
pub(crate) fn check_endpoint(
    access: &AccessControl,
    endpoint: &str,
    authid: &str,
    params: &BTreeMap<String, String>,
) -> Result<(), ()> {
    let Some(check) = permissions().get(endpoint).and_then(|p| p.get("check")) else {
        return Ok(());
    };
    if evaluate(access, check, authid, params) {
        Ok(())
    } else {
        Err(())
    }
}

fn substitute(template: &str, params: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        let name = &rest[start + 1..end];
        out.push_str(params.get(name)?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn evaluate(
    access: &AccessControl,
    check: &Value,
    authid: &str,
    params: &BTreeMap<String, String>,
) -> bool {
    let Some(items) = check.as_array() else {
        return false;
    };
    match items.first().and_then(Value::as_str) {
        Some("and") => items[1..]
            .iter()
            .all(|c| evaluate(access, c, authid, params)),
        Some("or") => items[1..]
            .iter()
            .any(|c| evaluate(access, c, authid, params)),
        Some("perm") => {
            let Some(path) = items
                .get(1)
                .and_then(Value::as_str)
                .and_then(|p| substitute(p, params))
            else {
                // A path parameter the request lacks: the check cannot pass.
                return false;
            };
            let privs: Vec<&str> = items
                .get(2)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut any = false;
            let mut options = items[3.min(items.len())..].iter();
            while let Some(key) = options.next() {
                let value = options.next();
                match key.as_str() {
                    Some("any") => any = value.and_then(Value::as_i64) == Some(1),
                    Some("require_param")
                        if value
                            .and_then(Value::as_str)
                            .is_none_or(|name| !params.contains_key(name)) =>
                    {
                        return false;
                    }
                    _ => {}
                }
            }
            access.has(authid, &path, &privs, any)
        }
        _ => false,
    }
}

/// The privilege `PUT|POST …/config` needs for one option (qemu-server
/// `check_vm_modify_config_perm`).
pub(crate) fn config_privilege(option: &str) -> &'static str {
    let family = option.trim_end_matches(|c: char| c.is_ascii_digit());
    match family {
        "memory" | "balloon" | "shares" => "VM.Config.Memory",
        "cores" | "sockets" | "cpu" | "cpulimit" | "cpuunits" | "vcpus" | "affinity" | "numa" => {
            "VM.Config.CPU"
        }
        "net" => "VM.Config.Network",
        "ciuser" | "cipassword" | "sshkeys" | "ipconfig" | "nameserver" | "searchdomain"
        | "citype" | "cicustom" | "ciupgrade" => "VM.Config.Cloudinit",
        "scsi" | "virtio" | "sata" | "ide" | "efidisk" | "tpmstate" | "unused" => "VM.Config.Disk",
        "machine" | "bios" | "scsihw" | "vga" | "hostpci" | "usb" | "serial" | "parallel"
        | "audio" | "rng" | "keyboard" | "tablet" | "smbios" | "acpi" | "kvm" => "VM.Config.HWType",
        _ => "VM.Config.Options",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(text: &str) -> AclEntry {
        AclEntry::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn root_has_everything_and_others_nothing_without_acls() {
        let access = AccessControl::default();
        assert!(access.has("root@pam!t", "/vms/100", &["VM.Allocate"], false));
        assert!(!access.has("alice@pve", "/vms/100", &["VM.Audit"], false));
    }

    #[test]
    fn more_specific_paths_override_and_propagation_counts() {
        let access = AccessControl {
            acls: vec![
                acl("/:PVEVMAdmin:alice@pve"),
                acl("/vms/100:PVEAuditor:alice@pve"),
                acl("/storage:PVEDatastoreUser:alice@pve:0"),
            ],
            ..AccessControl::default()
        };
        assert!(access.has("alice@pve", "/vms/101", &["VM.Allocate"], false));
        assert!(!access.has("alice@pve", "/vms/100", &["VM.Allocate"], false));
        assert!(access.has("alice@pve", "/vms/100", &["VM.Audit"], false));
        // Not propagated: /storage itself only; below it, the / entry applies.
        assert!(access.has("alice@pve", "/storage", &["Datastore.AllocateSpace"], false));
        assert!(!access.has(
            "alice@pve",
            "/storage/local",
            &["Datastore.AllocateSpace"],
            false
        ));
    }

    #[test]
    fn privilege_separated_tokens_intersect() {
        let access = AccessControl {
            acls: vec![
                acl("/:PVEVMAdmin:alice@pve"),
                acl("/:PVEAuditor:alice@pve!ci"),
            ],
            tokens: vec![
                Token::parse("alice@pve!ci=s,privsep=1").unwrap_or_else(|e| panic!("{e}")),
                Token::parse("alice@pve!full=s").unwrap_or_else(|e| panic!("{e}")),
            ],
            ..AccessControl::default()
        };
        assert!(access.has("alice@pve!ci", "/vms/1", &["VM.Audit"], false));
        assert!(!access.has("alice@pve!ci", "/vms/1", &["VM.Allocate"], false));
        assert!(access.has("alice@pve!full", "/vms/1", &["VM.Allocate"], false));
    }

    #[test]
    fn schema_checks_evaluate_and_or_any_and_require_param() {
        let access = AccessControl {
            acls: vec![
                acl("/vms/9000:PVETemplateUser:bob@pve"),
                acl("/vms/201:PVEVMAdmin:bob@pve"),
            ],
            ..AccessControl::default()
        };
        let params = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let clone = "POST /nodes/{node}/qemu/{vmid}/clone";
        assert!(
            check_endpoint(
                &access,
                clone,
                "bob@pve",
                &params(&[("vmid", "9000"), ("newid", "201")])
            )
            .is_ok()
        );
        assert!(
            check_endpoint(
                &access,
                clone,
                "bob@pve",
                &params(&[("vmid", "9000"), ("newid", "202")])
            )
            .is_err()
        );
        let config = "PUT /nodes/{node}/qemu/{vmid}/config";
        assert!(check_endpoint(&access, config, "bob@pve", &params(&[("vmid", "9000")])).is_err());
        assert!(check_endpoint(&access, config, "bob@pve", &params(&[("vmid", "201")])).is_ok());
        assert!(!allows_token("POST /access/ticket"));
        assert!(allows_token("GET /version"));
    }

    #[test]
    fn bad_entries_are_explained() {
        assert!(AclEntry::parse("vms:PVEAdmin:alice@pve").is_err());
        assert!(AclEntry::parse("/:PVEAdmin").is_err());
        let err = Token::parse("alice@pve!ci=secret-value,privsep=2").unwrap_err();
        assert!(!err.contains("secret-value"), "{err}");
    }
}
