//! The token's privileges: each one the spec needs on each ACL path, held there, propagated
//! from above, or granted instead by an equivalent; the missing ones grouped by path, with the
//! `pveum` commands that grant them. The run's lease (`Pool.Allocate` on its pool) is granted
//! on `/pool`: a grant on the lease pool itself would go when the first run deletes the pool.

use std::collections::BTreeSet;

use indexmap::{IndexMap, IndexSet};

use super::{Checks, list, unusable};
use crate::preflight::gather::Facts;
use crate::preflight::needs::{Needs, PrivilegeNeed, Users};
use crate::preflight::{Group, ROLE, Status};
use crate::pve::PveError;

pub(super) fn privileges(needs: &Needs, facts: &Facts, out: &mut Checks) {
    let started = out.start(Group::Privileges);
    let token = facts.token_id.as_str();
    let (missing, unreadable) = unmet(needs, facts);
    for (path, error) in &unreadable {
        out.push(
            Status::Fail,
            *path,
            format!("cannot read the token's privileges: {error}"),
        );
    }
    let by_path = missing_by_path(needs, &missing);
    let all_privileges: BTreeSet<&str> = needs.privileges.keys().map(|(_, p)| *p).collect();
    let user = token.split_once('!').map(|(user, _)| user);
    for (index, (path, privileges)) in by_path.iter().enumerate() {
        let names: Vec<&str> = privileges.keys().copied().collect();
        let details = privileges
            .iter()
            .map(|(privilege, (users, what))| {
                let what: Vec<String> = what.iter().cloned().collect();
                format!("{privilege}: {} ({})", list(&what, 4), list(users, 3))
            })
            .collect();
        let mut hints = Vec::new();
        if index == 0 {
            let privs: Vec<&str> = all_privileges.iter().copied().collect();
            hints.push(format!(
                "once, a role with what this spec needs: pveum role add {ROLE} -privs \"{}\"",
                privs.join(" ")
            ));
        }
        hints.push(format!(
            "pveum acl modify {path} --tokens '{token}' --roles {ROLE}"
        ));
        if path == LEASE_GRANT_PATH {
            hints.push(format!(
                "on {path}, not on the lease's own pool: Proxmox deletes a pool's ACL entries with the pool, and each run deletes its lease when it ends"
            ));
        }
        if index == 0
            && let Some(user) = user
        {
            hints.push(format!(
                "a privilege-separated token holds only what its user holds too: if {user} lacks them, grant the same with --users {user}"
            ));
        }
        out.push_with(
            Status::Fail,
            path,
            format!("the token lacks {}", names.join(", ")),
            details,
            hints,
        );
    }
    if missing.is_empty() && unreadable.is_empty() && !needs.privileges.is_empty() {
        let n_paths = needs.privilege_paths().len();
        out.push(
            Status::Pass,
            format!("token {token}"),
            format!(
                "holds the {} privileges the spec needs, on all {n_paths} paths",
                all_privileges.len()
            ),
        );
    }
    out.finish(started, "the spec needs no privilege");
}

/// The privileges needs that the token lacks, and the paths whose privileges could not be
/// read (with why).
fn unmet<'a>(needs: &'a Needs, facts: &'a Facts) -> Unmet<'a> {
    let held = |path: &str, privilege: &str| {
        facts
            .privileges_on(path)
            .map(|privileges| privileges.contains(privilege))
    };
    let mut missing: Vec<&PrivilegeNeed> = Vec::new();
    let mut unreadable: IndexMap<&str, &PveError> = IndexMap::new();
    for need in needs.privileges.values() {
        // A node that does not exist fails its own check; privileges there are moot.
        let absent_node = need
            .path
            .strip_prefix("/nodes/")
            .is_some_and(|node| unusable(facts, node) == Some("no such node"));
        if absent_node {
            continue;
        }
        match held(&need.path, need.privilege) {
            Some(true) => {}
            Some(false) => {
                let instead = need.instead.iter().any(|grants| {
                    grants
                        .iter()
                        .all(|(path, privilege)| held(path, privilege) == Some(true))
                });
                if !instead {
                    missing.push(need);
                }
            }
            None => {
                if let Some(Err(error)) = facts.privileges.get(&need.path) {
                    unreadable.insert(&need.path, error);
                }
            }
        }
    }
    (missing, unreadable)
}

/// The missing privileges by the path to grant them on, each with who needs it and for what;
/// sorted by privilege within a path.
fn missing_by_path<'a>(needs: &Needs, missing: &[&'a PrivilegeNeed]) -> MissingByPath<'a> {
    // When a privilege is missing on every VM that needs it (more than one), one grant on
    // /vms is the fix: report every missing VM privilege there.
    let on_vms = |need: &PrivilegeNeed| need.path.starts_with("/vms/");
    let collapse = missing.iter().filter(|m| on_vms(m)).any(|m| {
        let needing: Vec<&PrivilegeNeed> = needs
            .privileges
            .values()
            .filter(|n| n.privilege == m.privilege && n.path.starts_with("/vms/"))
            .collect();
        needing.len() > 1
            && needing
                .iter()
                .all(|n| missing.iter().any(|x| std::ptr::eq(*x, *n)))
    });
    let mut by_path: IndexMap<String, IndexMap<&str, (Users, IndexSet<String>)>> = IndexMap::new();
    let lease_path = format!("/pool/{}", crate::lease::POOL_PREFIX);
    for need in missing {
        let path = if collapse && on_vms(need) {
            "/vms".to_string()
        } else if need.path.starts_with(&lease_path) {
            // pve-access-control's `delete_pool_acl` drops the pool's entries with the pool.
            LEASE_GRANT_PATH.to_string()
        } else {
            need.path.clone()
        };
        let entry = by_path
            .entry(path)
            .or_default()
            .entry(need.privilege)
            .or_default();
        entry.0.extend(need.users.iter().cloned());
        entry.1.extend(need.what.iter().cloned());
    }
    for privileges in by_path.values_mut() {
        privileges.sort_keys();
    }
    by_path
}

/// Where the lease's privilege is granted: every pool below it inherits it (with propagation,
/// `pveum`'s default).
const LEASE_GRANT_PATH: &str = "/pool";

/// Needs the token lacks, and paths whose privileges could not be read (with why).
type Unmet<'a> = (Vec<&'a PrivilegeNeed>, IndexMap<&'a str, &'a PveError>);

/// Missing privileges: path → privilege → (who needs it, what for).
type MissingByPath<'a> = IndexMap<String, IndexMap<&'a str, (Users, IndexSet<String>)>>;
