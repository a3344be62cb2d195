//! QEMU guests: reading a VM's config, its pending changes and its status, and every call
//! that changes one (create, clone, config update, resize, template, migrate, start, shutdown,
//! stop, delete), with the wire structs of the answers read. The guest agent is in `agent`.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{PveClient, de, flag, segment};
use crate::pve::types::{CloneRequest, PendingEntry, VmConfig, VmStatus};
use crate::pve::{PveError, Upid};

/// `/nodes/{node}/qemu/{vmid}/config`: every option, each a string or a number depending on
/// its schema type and the Proxmox version (`memory` became a property string in 8.1).
#[derive(Debug, Deserialize)]
struct ConfigWire(BTreeMap<String, de::Scalar>);

/// A row of `/nodes/{node}/qemu/{vmid}/pending`.
#[derive(Debug, Deserialize)]
struct PendingWire {
    #[serde(deserialize_with = "de::text")]
    key: String,
    #[serde(default, deserialize_with = "de::optional_text")]
    value: Option<String>,
    #[serde(default, deserialize_with = "de::optional_text")]
    pending: Option<String>,
    /// `1`, or `2` for a forced removal.
    #[serde(default, deserialize_with = "de::flag")]
    delete: bool,
}

/// `/nodes/{node}/qemu/{vmid}/status/current`, the fields proxfleet reads.
#[derive(Debug, Deserialize)]
struct StatusWire {
    #[serde(default, deserialize_with = "de::optional_text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "de::non_empty_text")]
    lock: Option<String>,
    #[serde(default, deserialize_with = "de::flag")]
    template: bool,
}

fn vm_config(data: &Value, what: &str) -> Result<VmConfig, PveError> {
    let ConfigWire(options) = de::decode(data, what)?;
    let mut values = BTreeMap::new();
    let mut digest = String::new();
    for (key, value) in options {
        // `null` is an option that is not set.
        let Some(text) = value.into_text() else {
            continue;
        };
        if key == "digest" {
            digest = text;
        } else {
            values.insert(key, text);
        }
    }
    Ok(VmConfig { digest, values })
}

fn pending_entries(data: &Value, what: &str) -> Result<Vec<PendingEntry>, PveError> {
    let wires: Vec<PendingWire> = de::decode(data, what)?;
    Ok(wires
        .into_iter()
        .map(|wire| PendingEntry {
            key: wire.key,
            value: wire.value,
            pending: wire.pending,
            delete: wire.delete,
        })
        .collect())
}

fn vm_status(data: &Value, what: &str) -> Result<VmStatus, PveError> {
    let wire: StatusWire = de::decode(data, what)?;
    Ok(VmStatus {
        running: wire.status.as_deref() == Some("running"),
        lock: wire.lock,
        template: wire.template,
    })
}

/// Reads.
impl PveClient {
    /// `GET /nodes/{node}/qemu/{vmid}/config` (pending values applied).
    ///
    /// # Errors
    /// HTTP errors; an answer that is not an object of scalars.
    pub async fn vm_config(&self, node: &str, vmid: u32) -> Result<VmConfig, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/config", segment(node));
        let data = self
            .get("/nodes/{node}/qemu/{vmid}/config", &path, &[])
            .await?;
        vm_config(&data, &format!("GET {path}"))
    }

    /// `GET /nodes/{node}/qemu/{vmid}/pending`.
    ///
    /// # Errors
    /// HTTP errors; an entry without a key, or with a value that is not a scalar.
    pub async fn vm_pending(&self, node: &str, vmid: u32) -> Result<Vec<PendingEntry>, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/pending", segment(node));
        let data = self
            .get("/nodes/{node}/qemu/{vmid}/pending", &path, &[])
            .await?;
        pending_entries(&data, &format!("GET {path}"))
    }

    /// `GET /nodes/{node}/qemu/{vmid}/status/current`.
    pub async fn vm_status(&self, node: &str, vmid: u32) -> Result<VmStatus, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/status/current", segment(node));
        let data = self
            .get("/nodes/{node}/qemu/{vmid}/status/current", &path, &[])
            .await?;
        vm_status(&data, &format!("GET {path}"))
    }
}

/// Whether setting `option` to `value` allocates a volume: a disk given as `STORAGE:SIZE`
/// (`STORAGE:0` with `import-from`) or a new cloud-init drive (`STORAGE:cloudinit`).
fn allocates(option: &str, value: &str) -> bool {
    if !crate::qemu_config::is_disk_option(option) {
        return false;
    }
    let file = value.split(',').next().unwrap_or_default();
    let new_volume = file.split_once(':').is_some_and(|(_, rest)| {
        rest == "cloudinit" || (!rest.is_empty() && rest.parse::<f64>().is_ok())
    });
    new_volume
        || value
            .split(',')
            .any(|part| part.starts_with("import-from="))
}

/// Creating, changing and converting.
impl PveClient {
    /// `POST /nodes/{node}/qemu`.
    pub async fn create_vm(
        &self,
        node: &str,
        vmid: u32,
        params: &[(String, String)],
    ) -> Result<Upid, PveError> {
        let path = format!("/nodes/{}/qemu", segment(node));
        let mut all = vec![("vmid".to_string(), vmid.to_string())];
        all.extend(params.iter().cloned());
        self.task_call(Method::POST, "/nodes/{node}/qemu", &path, &all)
            .await
    }

    /// Change a VM's options: `PUT /nodes/{node}/qemu/{vmid}/config`, answered when done (no
    /// task to wait for), when nothing is allocated; `POST`, which forks a `qmconfig` task,
    /// when a disk is allocated or imported. Both run the same update under the config lock
    /// (qemu-server `API2/Qemu.pm`, `$update_vm_api` with `$sync` set for `update_vm`); PUT's
    /// description asks for POST "for any actions involving hotplug or storage allocation",
    /// which may take longer than an API request should.
    pub async fn update_vm_config(
        &self,
        node: &str,
        vmid: u32,
        set: &[(String, String)],
        delete: &[String],
        digest: Option<&str>,
    ) -> Result<Option<Upid>, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/config", segment(node));
        let mut params: Vec<(String, String)> = set.to_vec();
        if !delete.is_empty() {
            params.push(("delete".into(), delete.join(",")));
        }
        if let Some(digest) = digest {
            params.push(("digest".into(), digest.to_string()));
        }
        let method = if set.iter().any(|(option, value)| allocates(option, value)) {
            Method::POST
        } else {
            Method::PUT
        };
        let sent = self
            .optional_task_call(
                method.clone(),
                "/nodes/{node}/qemu/{vmid}/config",
                &path,
                &params,
            )
            .await;
        match sent {
            // A synchronous write starts no task to look for: whether it was done is in the
            // VM's configuration (see `retry`'s table).
            Err(err @ (PveError::Connect { .. } | PveError::Timeout { .. }))
                if method == Method::PUT =>
            {
                self.config_written_despite(err, node, vmid, set, delete)
                    .await
            }
            other => other,
        }
    }

    /// After the answer to `PUT …/config` was lost: `Ok(None)` when the VM's configuration
    /// (current or pending) already holds every value set and lacks every option deleted, so
    /// the write was done and is not sent again; the error as it came when it surely was not
    /// (it may be sent again); a final error when the configuration cannot be read.
    async fn config_written_despite(
        &self,
        err: PveError,
        node: &str,
        vmid: u32,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<Option<Upid>, PveError> {
        let entries = match self.vm_pending(node, vmid).await {
            Ok(entries) => entries,
            Err(why) => {
                return Err(PveError::Decode {
                    what: format!("PUT /nodes/{node}/qemu/{vmid}/config"),
                    message: format!(
                        "the answer was lost ({err}) and the configuration cannot be read ({why}): not sending it again"
                    ),
                });
            }
        };
        let now = |key: &str| {
            entries
                .iter()
                .find(|entry| entry.key == key)
                .and_then(|entry| {
                    if entry.delete {
                        None
                    } else {
                        entry.pending.clone().or_else(|| entry.value.clone())
                    }
                })
        };
        let done = set
            .iter()
            .all(|(key, value)| crate::qemu_config::same_value(key, now(key).as_deref(), value))
            && delete.iter().all(|key| now(key).is_none());
        if done {
            tracing::warn!(%err, vmid, "the answer was lost but the configuration was written");
            Ok(None)
        } else {
            Err(err)
        }
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/resize`.
    pub async fn resize_disk(
        &self,
        node: &str,
        vmid: u32,
        disk: &str,
        size: &str,
        digest: Option<&str>,
    ) -> Result<Option<Upid>, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/resize", segment(node));
        let mut params = vec![
            ("disk".to_string(), disk.to_string()),
            ("size".to_string(), size.to_string()),
        ];
        if let Some(digest) = digest {
            params.push(("digest".into(), digest.to_string()));
        }
        self.optional_task_call(
            Method::PUT,
            "/nodes/{node}/qemu/{vmid}/resize",
            &path,
            &params,
        )
        .await
    }

    /// `POST /nodes/{node}/qemu/{vmid}/template`.
    pub async fn convert_to_template(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/template", segment(node));
        self.task_call(
            Method::POST,
            "/nodes/{node}/qemu/{vmid}/template",
            &path,
            &[],
        )
        .await
    }

    /// `POST /nodes/{node}/qemu/{vmid}/migrate`, offline: the stopped VM and its local disks
    /// move to `target`.
    ///
    /// # Errors
    /// HTTP errors (a running VM, an unknown or offline target).
    pub async fn migrate_vm(&self, node: &str, vmid: u32, target: &str) -> Result<Upid, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/migrate", segment(node));
        self.task_call(
            Method::POST,
            "/nodes/{node}/qemu/{vmid}/migrate",
            &path,
            &[("target".to_string(), target.to_string())],
        )
        .await
    }

    /// `POST /nodes/{node}/qemu/{vmid}/clone`.
    pub async fn clone_vm(
        &self,
        node: &str,
        vmid: u32,
        req: &CloneRequest,
    ) -> Result<Upid, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/clone", segment(node));
        let mut params = vec![("newid".to_string(), req.newid.to_string())];
        let optional = [
            ("name", req.name.clone()),
            ("target", req.target.clone()),
            ("storage", req.storage.clone()),
            ("description", req.description.clone()),
            ("pool", req.pool.clone()),
        ];
        params.extend(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v))),
        );
        if let Some(full) = req.full {
            params.push(("full".into(), flag(full)));
        }
        self.task_call(
            Method::POST,
            "/nodes/{node}/qemu/{vmid}/clone",
            &path,
            &params,
        )
        .await
    }
}

/// Power and deletion.
impl PveClient {
    /// `POST /nodes/{node}/qemu/{vmid}/status/start`.
    pub async fn start_vm(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/status/start", segment(node));
        self.task_call(
            Method::POST,
            "/nodes/{node}/qemu/{vmid}/status/start",
            &path,
            &[],
        )
        .await
    }

    /// `POST /nodes/{node}/qemu/{vmid}/status/shutdown`.
    pub async fn shutdown_vm(
        &self,
        node: &str,
        vmid: u32,
        timeout_secs: Option<u32>,
        force_stop: bool,
    ) -> Result<Upid, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/status/shutdown", segment(node));
        let mut params = vec![("forceStop".to_string(), flag(force_stop))];
        if let Some(timeout) = timeout_secs {
            params.push(("timeout".into(), timeout.to_string()));
        }
        self.task_call(
            Method::POST,
            "/nodes/{node}/qemu/{vmid}/status/shutdown",
            &path,
            &params,
        )
        .await
    }

    /// `POST /nodes/{node}/qemu/{vmid}/status/stop`.
    pub async fn stop_vm(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/status/stop", segment(node));
        self.task_call(
            Method::POST,
            "/nodes/{node}/qemu/{vmid}/status/stop",
            &path,
            &[],
        )
        .await
    }

    /// `DELETE /nodes/{node}/qemu/{vmid}`; with `purge` also unreferenced disks and job entries.
    pub async fn delete_vm(&self, node: &str, vmid: u32, purge: bool) -> Result<Upid, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}", segment(node));
        let params = if purge {
            vec![
                ("purge".to_string(), flag(true)),
                ("destroy-unreferenced-disks".to_string(), flag(true)),
            ]
        } else {
            Vec::new()
        };
        self.task_call(Method::DELETE, "/nodes/{node}/qemu/{vmid}", &path, &params)
            .await
    }
}

/// Data disks moved between VMs.
impl PveClient {
    /// `POST /nodes/{node}/qemu/{vmid}/move_disk` with `target-vmid`: Proxmox's disk reassign
    /// (PVE 7.2 and later, qemu-server `API2/Qemu.pm` `move_vm_disk`). The volume is renamed to
    /// the target's vmid and its entry moves from `disk` on the source to `target_disk` on the
    /// target; both VMs must be on `node`, the source stopped (or the disk unused).
    pub async fn reassign_disk(
        &self,
        node: &str,
        vmid: u32,
        disk: &str,
        target_vmid: u32,
        target_disk: &str,
    ) -> Result<Upid, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/move_disk", segment(node));
        self.task_call(
            Method::POST,
            "/nodes/{node}/qemu/{vmid}/move_disk",
            &path,
            &[
                ("disk".to_string(), disk.to_string()),
                ("target-vmid".to_string(), target_vmid.to_string()),
                ("target-disk".to_string(), target_disk.to_string()),
            ],
        )
        .await
    }

    /// Whether a disk reassign to or from VM `vmid` runs on `node` now: its `qmmove` task,
    /// whose id is `SOURCE-DISK>TARGET-DISK` (qemu-server `API2/Qemu.pm` `move_vm_disk`), is
    /// on the node's active list. A reassign locks the two configurations with a file lock
    /// only, which no configuration read shows.
    ///
    /// # Errors
    /// HTTP errors; an entry without a UPID.
    pub async fn reassign_running(&self, node: &str, vmid: u32) -> Result<bool, PveError> {
        let listed = self
            .active_tasks(
                node,
                &super::task_watch::ActiveQuery {
                    since: 0,
                    typefilter: Some("qmmove".into()),
                    vmid: None,
                    userfilter: None,
                    n_awaited: 0,
                    covered: std::collections::BTreeSet::new(),
                },
            )
            .await?;
        let involves = |id: &str| {
            id.split('>')
                .any(|side| side.split('-').next() == Some(vmid.to_string().as_str()))
        };
        Ok(!listed.running_complete
            || listed
                .running
                .iter()
                .filter_map(|upid| upid.parse::<Upid>().ok())
                .any(|upid| upid.task_type() == "qmmove" && involves(upid.id())))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_allocations_take_the_asynchronous_config_write() {
        assert!(allocates("scsi1", "local-lvm:8"));
        assert!(allocates(
            "scsi0",
            "local-lvm:0,import-from=local:import/d.qcow2"
        ));
        assert!(allocates("ide2", "local-lvm:cloudinit"));
        assert!(allocates("efidisk0", "local-lvm:1,efitype=4m"));
        assert!(!allocates("ide2", "local:iso/seed.iso,media=cdrom"));
        assert!(!allocates("scsi0", "local-lvm:vm-100-disk-0,discard=on"));
        assert!(!allocates("memory", "2048"));
        assert!(!allocates("ipconfig0", "ip=10.0.0.2/24,gw=10.0.0.1"));
    }

    const WHAT: &str = "GET /nodes/pve1/qemu/100/config";

    #[test]
    fn config_values_as_numbers_or_strings() {
        let as_numbers = json!({
            "digest": "0123abcd", "name": "web", "cores": 2, "sockets": 1, "memory": 2048,
            "balloon": 0, "template": 1, "cpulimit": 0.5, "ostype": "l26",
        });
        let as_strings = json!({
            "digest": "0123abcd", "name": "web", "cores": "2", "sockets": "1",
            "memory": "2048", "balloon": "0", "template": "1", "cpulimit": "0.5",
            "ostype": "l26",
        });
        let numbers = vm_config(&as_numbers, WHAT).unwrap();
        assert_eq!(numbers, vm_config(&as_strings, WHAT).unwrap());
        assert_eq!(numbers.digest, "0123abcd");
        assert_eq!(numbers.values["memory"], "2048");
        assert_eq!(numbers.values["cpulimit"], "0.5");
        assert!(!numbers.values.contains_key("digest"));
        let property_string = json!({"digest": "d", "memory": "current=4096"});
        let property_string = vm_config(&property_string, WHAT).unwrap();
        assert_eq!(property_string.values["memory"], "current=4096");
    }

    #[test]
    fn a_config_without_a_digest_or_with_nulls() {
        let config = vm_config(&json!({"name": "web", "lock": null}), WHAT).unwrap();
        assert_eq!(config.digest, "");
        assert_eq!(config.values.keys().collect::<Vec<_>>(), ["name"]);
    }

    #[test]
    fn a_malformed_config_is_an_error() {
        for (data, needle) in [
            (
                json!({"digest": "d", "net0": ["virtio"]}),
                "at `net0`: invalid type",
            ),
            (
                json!({"digest": "d", "meta": {"ctime": 1}}),
                "at `meta`: invalid type",
            ),
            (json!(["digest"]), "invalid type"),
        ] {
            let err = vm_config(&data, WHAT).unwrap_err().to_string();
            assert!(err.contains(WHAT) && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn pending_entries_with_numbers_or_strings() {
        let as_numbers = json!([
            {"key": "cores", "value": 2, "pending": 4},
            {"key": "memory", "value": 2048},
            {"key": "ipconfig0", "value": "ip=dhcp", "delete": 1},
            {"key": "net1", "pending": "virtio,bridge=vmbr1"},
            {"key": "serial0", "value": "socket", "delete": 2},
        ]);
        let as_strings = json!([
            {"key": "cores", "value": "2", "pending": "4"},
            {"key": "memory", "value": "2048"},
            {"key": "ipconfig0", "value": "ip=dhcp", "delete": "1"},
            {"key": "net1", "pending": "virtio,bridge=vmbr1"},
            {"key": "serial0", "value": "socket", "delete": "2"},
        ]);
        let entries = pending_entries(&as_numbers, "GET p").unwrap();
        assert_eq!(entries, pending_entries(&as_strings, "GET p").unwrap());
        assert_eq!(entries[0].pending.as_deref(), Some("4"));
        assert_eq!(entries[1].pending, None);
        assert!(!entries[1].delete && entries[2].delete && entries[4].delete);
        assert_eq!(entries[3].value, None);
    }

    #[test]
    fn a_malformed_pending_entry_is_an_error() {
        for (row, needle) in [
            (json!({"value": 2}), "at `[1]`: missing field `key`"),
            (json!({"key": "cores", "pending": [4]}), "at `[1].pending`"),
            (json!({"key": "cores", "delete": "soon"}), "at `[1].delete`"),
        ] {
            let data = json!([{"key": "name", "value": "web"}, row]);
            let err = pending_entries(&data, "GET /nodes/pve1/qemu/100/pending")
                .unwrap_err()
                .to_string();
            assert!(err.contains("100/pending") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn status_with_numbers_or_strings() {
        let as_numbers = json!({"status": "running", "vmid": 100, "template": 0, "lock": "",
            "maxmem": 2147483648u64, "ha": {"managed": 0}, "qmpstatus": "running"});
        let as_strings = json!({"status": "running", "vmid": "100", "template": "0",
            "maxmem": "2147483648"});
        let expected = VmStatus {
            running: true,
            lock: None,
            template: false,
        };
        assert_eq!(vm_status(&as_numbers, "GET s").unwrap(), expected);
        assert_eq!(vm_status(&as_strings, "GET s").unwrap(), expected);
        let locked = json!({"status": "stopped", "template": 1, "lock": "clone"});
        let locked = vm_status(&locked, "GET s").unwrap();
        assert!(!locked.running && locked.template);
        assert_eq!(locked.lock.as_deref(), Some("clone"));
        assert!(vm_status(&json!({"template": "perhaps"}), "GET s").is_err());
    }
}
