//! Targeting: which resources a plan covers when `--target`, `--only` or `--skip` select some,
//! and which ones `--replace` forces. Addresses are checked against the spec and against what
//! the project owns in the cluster, with a "did you mean" for near misses. A target brings in
//! what it depends on (for destroy: what depends on it), as Terraform's `-target` does, so a
//! partial plan never builds a clone without its template. Pure: no I/O.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::diff::PlanOptions;
use crate::graph::DesiredGraph;
use crate::ownership::{ResourceKey, ResourceKind};
use crate::plan::{Reach, Targeting};
use crate::state::ActualState;

/// What the command line asked for, before it is checked. Saved with a plan, so `apply FILE`
/// can make the same plan again and compare.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// `--target` addresses, as typed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// `--only` kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<ResourceKind>,
    /// `--skip` kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<ResourceKind>,
    /// `--replace` addresses, as typed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<String>,
    /// `--allow-reboot`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_reboot: bool,
}

/// An address on the command line that names nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAddress {
    /// The flag it came with (`--target`, `--replace`).
    pub flag: &'static str,
    /// The address as typed.
    pub address: String,
    /// Why it names nothing.
    pub problem: String,
    /// The closest valid address, when one is close.
    pub suggestion: Option<ResourceKey>,
}

/// Addresses that name nothing, and the ones that would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_unknown(problems, valid))]
pub struct UnknownAddresses {
    /// Every address that names nothing, in command-line order.
    pub problems: Vec<UnknownAddress>,
    /// The valid addresses: the spec's resources, then what the project owns outside it.
    pub valid: Vec<ResourceKey>,
}

fn render_unknown(problems: &[UnknownAddress], valid: &[ResourceKey]) -> String {
    let mut out = String::new();
    let lines: Vec<String> = problems
        .iter()
        .map(|p| {
            let hint = p
                .suggestion
                .as_ref()
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            format!("{} {}: {}{hint}", p.flag, p.address, p.problem)
        })
        .collect();
    match lines.as_slice() {
        [one] => {
            let _ = writeln!(out, "unknown resource address: {one}");
        }
        _ => {
            let _ = writeln!(out, "unknown resource addresses:");
            for line in &lines {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    let valid: Vec<String> = valid.iter().map(ToString::to_string).collect();
    let _ = write!(
        out,
        "valid addresses: {}",
        if valid.is_empty() {
            "none (the spec declares nothing and the project owns nothing)".to_string()
        } else {
            valid.join(", ")
        }
    );
    out
}

/// Turn a request into plan options: check every address, close targets over the graph in
/// the direction `reach` says, filter by kind, and add the resources to replace.
///
/// # Errors
/// Every address that is malformed or names no resource, each with a suggestion when one is
/// close, and the list of valid addresses.
pub fn resolve(
    request: &Request,
    desired: &DesiredGraph,
    actual: &ActualState,
    reach: Reach,
) -> Result<PlanOptions, UnknownAddresses> {
    let in_spec: Vec<ResourceKey> = desired.in_order().map(|r| r.key().clone()).collect();
    let mut valid = in_spec.clone();
    let owned: BTreeSet<ResourceKey> = actual
        .owned_vms(&desired.project)
        .filter_map(|vm| vm.marker.as_ref().map(|m| m.key.clone()))
        .filter(|key| desired.get(key).is_none())
        .collect();
    valid.extend(owned.iter().cloned());
    let valid_set: BTreeSet<ResourceKey> = valid.iter().cloned().collect();

    let mut problems = Vec::new();
    let mut check = |flag: &'static str, address: &str, allowed: &dyn Fn(&ResourceKey) -> bool| {
        let problem = match address.parse::<ResourceKey>() {
            Err(_) => {
                "not an address; expected image.NAME, template.NAME or clone.NAME".to_string()
            }
            Ok(key) if allowed(&key) => return Some(key),
            Ok(key) if valid_set.contains(&key) => {
                "not in the spec (it is only in the cluster, to be destroyed)".to_string()
            }
            Ok(_) => "no such resource in the spec or the cluster".to_string(),
        };
        problems.push(UnknownAddress {
            flag,
            address: address.to_string(),
            problem,
            suggestion: suggest(address, &valid),
        });
        None
    };
    let targets: Vec<ResourceKey> = request
        .targets
        .iter()
        .filter_map(|a| check("--target", a, &|key| valid_set.contains(key)))
        .collect();
    let replace: BTreeSet<ResourceKey> = request
        .replace
        .iter()
        .filter_map(|a| check("--replace", a, &|key| desired.get(key).is_some()))
        .collect();
    if !problems.is_empty() {
        return Err(UnknownAddresses { problems, valid });
    }

    let only: BTreeSet<ResourceKind> = request.only.iter().copied().collect();
    let skip: BTreeSet<ResourceKind> = request.skip.iter().copied().collect();
    let partial = !targets.is_empty() || !only.is_empty() || !skip.is_empty();
    if !partial {
        return Ok(PlanOptions {
            scope: None,
            targeting: None,
            replace,
            allow_reboot: request.allow_reboot,
        });
    }
    let kind_selected =
        |kind: ResourceKind| (only.is_empty() || only.contains(&kind)) && !skip.contains(&kind);
    let reached = if targets.is_empty() {
        valid_set
    } else {
        closure(desired, &targets, reach)
    };
    let mut scope: BTreeSet<ResourceKey> = reached
        .into_iter()
        .filter(|key| kind_selected(key.kind))
        .collect();
    // A resource named by --replace is always part of the plan.
    scope.extend(replace.iter().cloned());
    let mut unique_targets = Vec::new();
    for key in targets {
        if !unique_targets.contains(&key) {
            unique_targets.push(key);
        }
    }
    Ok(PlanOptions {
        scope: Some(scope),
        targeting: Some(Targeting {
            targets: unique_targets,
            only: only.into_iter().collect(),
            skip: skip.into_iter().collect(),
            reach,
        }),
        replace,
        allow_reboot: request.allow_reboot,
    })
}

/// The targets and everything they reach in the desired graph, following dependencies or
/// dependants.
fn closure(desired: &DesiredGraph, targets: &[ResourceKey], reach: Reach) -> BTreeSet<ResourceKey> {
    let mut seen: BTreeSet<ResourceKey> = BTreeSet::new();
    let mut to_visit: Vec<ResourceKey> = targets.to_vec();
    while let Some(key) = to_visit.pop() {
        if !seen.insert(key.clone()) {
            continue;
        }
        let next = match reach {
            Reach::Dependencies => desired.dependencies(&key),
            Reach::Dependants => desired.dependants(&key),
        };
        to_visit.extend(next.into_iter().filter(|k| !seen.contains(k)));
    }
    seen
}

/// The valid address a mistyped one probably meant: the one resource with that name (`web-1`
/// or `vm.web-1` for `clone.web-1`), else the closest name among resources of the same kind.
fn suggest(address: &str, valid: &[ResourceKey]) -> Option<ResourceKey> {
    let (kind, name) = match address.split_once('.') {
        Some((kind, name)) => {
            let known = [
                ResourceKind::Image,
                ResourceKind::Template,
                ResourceKind::Clone,
            ]
            .into_iter()
            .find(|k| k.as_str() == kind);
            (known, name)
        }
        None => (None, address),
    };
    let same_name: Vec<&ResourceKey> = valid.iter().filter(|key| key.name == name).collect();
    if let [only_one] = same_name.as_slice() {
        return Some((*only_one).clone());
    }
    let pool: Vec<&ResourceKey> = valid
        .iter()
        .filter(|key| kind.is_none_or(|kind| key.kind == kind))
        .collect();
    let names: Vec<&str> = pool.iter().map(|key| key.name.as_str()).collect();
    let near = crate::spec::closest(name, &names)?;
    pool.into_iter().find(|key| key.name == near).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_suggests_its_address() {
        let valid: Vec<ResourceKey> = ["image.debian-12", "template.base", "clone.web-1"]
            .iter()
            .map(|k| k.parse().unwrap())
            .collect();
        assert_eq!(
            suggest("web-1", &valid).map(|k| k.to_string()),
            Some("clone.web-1".into())
        );
        assert_eq!(
            suggest("clone.web-l", &valid).map(|k| k.to_string()),
            Some("clone.web-1".into())
        );
        assert_eq!(
            suggest("vm.base", &valid).map(|k| k.to_string()),
            Some("template.base".into())
        );
        assert_eq!(suggest("clone.database", &valid), None);
    }
}
