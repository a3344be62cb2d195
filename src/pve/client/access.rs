//! Access: the caller's own privileges, `GET /access/permissions`, on one ACL path or on every
//! path it has entries on, with the wire struct of the answer (path → privilege → propagate).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use super::{PveClient, de};
use crate::pve::PveError;

/// Whether a privilege propagates to the paths below (`1` or `0`, `"1"` on some versions).
#[derive(Debug, Deserialize)]
struct PropagateWire(#[serde(deserialize_with = "de::flag")] bool);

/// `/access/permissions`: ACL path → privilege → propagate.
type PermissionsWire = BTreeMap<String, BTreeMap<String, PropagateWire>>;

const WHAT: &str = "GET /access/permissions";

/// The privileges on `acl_path`. Proxmox names the path as it was asked; a lone entry under
/// another spelling is taken as that path's.
fn privileges_on(data: &Value, acl_path: &str) -> Result<BTreeSet<String>, PveError> {
    let mut paths: PermissionsWire = de::decode(data, WHAT)?;
    let entry = match paths.remove(acl_path) {
        Some(entry) => Some(entry),
        None if paths.len() == 1 => paths.into_values().next(),
        None => None,
    };
    Ok(entry
        .map(|privileges| privileges.into_keys().collect())
        .unwrap_or_default())
}

fn permissions_dump(data: &Value) -> Result<BTreeMap<String, BTreeMap<String, bool>>, PveError> {
    let paths: PermissionsWire = de::decode(data, WHAT)?;
    Ok(paths
        .into_iter()
        .map(|(path, privileges)| {
            let privileges = privileges
                .into_iter()
                .map(|(name, PropagateWire(propagates))| (name, propagates))
                .collect();
            (path, privileges)
        })
        .collect())
}

impl PveClient {
    /// `GET /access/permissions?path=PATH`: the caller's privileges on exactly that path, as
    /// Proxmox computes them (inheritance, propagation, privilege-separated tokens).
    ///
    /// # Errors
    /// HTTP errors; an answer that is not an object of objects of flags.
    pub async fn privileges_on(&self, acl_path: &str) -> Result<BTreeSet<String>, PveError> {
        let data = self
            .get(
                "/access/permissions",
                "/access/permissions",
                &[("path".into(), acl_path.into())],
            )
            .await?;
        privileges_on(&data, acl_path)
    }

    /// `GET /access/permissions` without a path: the caller's privileges on every ACL path it
    /// has entries on, each with its propagate flag (path → privilege → propagates).
    ///
    /// # Errors
    /// HTTP errors; an answer that is not an object of objects of flags.
    pub async fn permissions_dump(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, bool>>, PveError> {
        let data = self
            .get("/access/permissions", "/access/permissions", &[])
            .await?;
        permissions_dump(&data)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn privileges_on_a_path_with_flags_as_numbers_or_strings() {
        for data in [
            json!({"/vms/100": {"VM.Audit": 1, "VM.Config.Disk": 0}}),
            json!({"/vms/100": {"VM.Audit": "1", "VM.Config.Disk": "0"}}),
        ] {
            let privileges = privileges_on(&data, "/vms/100").unwrap();
            assert_eq!(
                privileges.into_iter().collect::<Vec<_>>(),
                ["VM.Audit", "VM.Config.Disk"]
            );
        }
        let respelled = json!({"/vms/100/": {"VM.Audit": 1}});
        assert_eq!(privileges_on(&respelled, "/vms/100").unwrap().len(), 1);
        let none = json!({});
        assert!(privileges_on(&none, "/vms/100").unwrap().is_empty());
        let others = json!({"/": {"Sys.Audit": 1}, "/pool/lab": {"Pool.Audit": 1}});
        assert!(privileges_on(&others, "/vms/100").unwrap().is_empty());
    }

    #[test]
    fn the_dump_keeps_each_propagate_flag() {
        let data = json!({
            "/": {"Sys.Audit": 1, "Datastore.Audit": "0"},
            "/storage/local": {"Datastore.AllocateSpace": true},
        });
        let dump = permissions_dump(&data).unwrap();
        assert!(dump["/"]["Sys.Audit"]);
        assert!(!dump["/"]["Datastore.Audit"]);
        assert!(dump["/storage/local"]["Datastore.AllocateSpace"]);
    }

    #[test]
    fn a_malformed_answer_is_an_error() {
        for (data, needle) in [
            (json!([]), "invalid type"),
            (json!({"/": ["Sys.Audit"]}), "at `/`: invalid type"),
            (json!({"/": {"Sys.Audit": "often"}}), "at `/.Sys.Audit`"),
        ] {
            let err = permissions_dump(&data).unwrap_err().to_string();
            assert!(err.contains(WHAT) && err.contains(needle), "{err}");
        }
    }
}
