//! Storages and their content: a node's storages, a storage's `path`, the volumes a storage
//! holds, volume notes and deletion, and the two ways an image arrives (`download-url`, and an
//! upload from this machine), each with the wire struct of its answer.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{PveClient, de, flag, segment, upid_of};
use crate::pve::PveError;
use crate::pve::Upid;
use crate::pve::types::{DownloadRequest, StorageSummary, UploadRequest, VolumeInfo};

/// A row of `/nodes/{node}/storage`. Flags and sizes come as numbers or strings.
#[derive(Debug, Deserialize)]
struct StorageWire {
    #[serde(deserialize_with = "de::text")]
    storage: String,
    #[serde(rename = "type", default, deserialize_with = "de::optional_text")]
    kind: Option<String>,
    /// Comma-separated content types.
    #[serde(default, deserialize_with = "de::optional_text")]
    content: Option<String>,
    #[serde(default, deserialize_with = "de::flag")]
    shared: bool,
    #[serde(default, deserialize_with = "de::flag")]
    active: bool,
    /// Absent means enabled.
    #[serde(default, deserialize_with = "de::optional_flag")]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "de::optional_number")]
    avail: Option<u64>,
    #[serde(default, deserialize_with = "de::optional_number")]
    total: Option<u64>,
}

impl From<StorageWire> for StorageSummary {
    fn from(wire: StorageWire) -> StorageSummary {
        StorageSummary {
            storage: wire.storage,
            kind: wire.kind.unwrap_or_default(),
            content: wire
                .content
                .map(|content| content.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            shared: wire.shared,
            active: wire.active,
            enabled: wire.enabled.unwrap_or(true),
            avail: wire.avail,
            total: wire.total,
        }
    }
}

/// `/storage/{storage}`: the storage's entry in `storage.cfg`, of which proxfleet reads `path`.
#[derive(Debug, Deserialize)]
struct StorageConfigWire {
    #[serde(default, deserialize_with = "de::optional_text")]
    path: Option<String>,
}

/// A row of `/nodes/{node}/storage/{storage}/content`.
#[derive(Debug, Deserialize)]
struct VolumeWire {
    #[serde(deserialize_with = "de::text")]
    volid: String,
    #[serde(default, deserialize_with = "de::optional_text")]
    content: Option<String>,
    #[serde(default, deserialize_with = "de::optional_text")]
    format: Option<String>,
    #[serde(default, deserialize_with = "de::optional_number")]
    size: Option<u64>,
    #[serde(default, deserialize_with = "de::optional_text")]
    notes: Option<String>,
    #[serde(default, deserialize_with = "de::optional_vmid")]
    vmid: Option<u32>,
    #[serde(default, deserialize_with = "de::optional_text")]
    parent: Option<String>,
}

impl From<VolumeWire> for VolumeInfo {
    fn from(wire: VolumeWire) -> VolumeInfo {
        VolumeInfo {
            volid: wire.volid,
            content: wire.content,
            format: wire.format,
            size: wire.size,
            notes: wire.notes,
            vmid: wire.vmid,
            parent: wire.parent,
        }
    }
}

fn storage_summaries(data: &Value, what: &str) -> Result<Vec<StorageSummary>, PveError> {
    let wires: Vec<StorageWire> = de::decode(data, what)?;
    Ok(wires.into_iter().map(StorageSummary::from).collect())
}

fn volumes(data: &Value, what: &str) -> Result<Vec<VolumeInfo>, PveError> {
    let wires: Vec<VolumeWire> = de::decode(data, what)?;
    Ok(wires.into_iter().map(VolumeInfo::from).collect())
}

impl PveClient {
    /// `GET /nodes/{node}/storage`.
    ///
    /// # Errors
    /// HTTP errors; a storage without an id, or a flag or size of the wrong shape.
    pub async fn storages(&self, node: &str) -> Result<Vec<StorageSummary>, PveError> {
        let path = format!("/nodes/{}/storage", segment(node));
        let data = self.get("/nodes/{node}/storage", &path, &[]).await?;
        storage_summaries(&data, &format!("GET {path}"))
    }

    /// `GET /storage/{storage}`: the storage's `path` in `storage.cfg` (file-based storages
    /// have one; `None` for the others). Needs `Datastore.Allocate` on the storage.
    pub async fn storage_path(&self, storage: &str) -> Result<Option<String>, PveError> {
        let path = format!("/storage/{}", segment(storage));
        let data = self.get("/storage/{storage}", &path, &[]).await?;
        let wire: StorageConfigWire = de::decode(&data, &format!("GET {path}"))?;
        Ok(wire.path)
    }

    /// `GET /nodes/{node}/storage/{storage}/content`.
    ///
    /// # Errors
    /// HTTP errors; a volume without a volid, or a size or vmid of the wrong shape.
    pub async fn storage_content(
        &self,
        node: &str,
        storage: &str,
        content: Option<&str>,
    ) -> Result<Vec<VolumeInfo>, PveError> {
        let path = format!(
            "/nodes/{}/storage/{}/content",
            segment(node),
            segment(storage)
        );
        let params: Vec<(String, String)> = content
            .map(|c| ("content".to_string(), c.to_string()))
            .into_iter()
            .collect();
        let data = self
            .get("/nodes/{node}/storage/{storage}/content", &path, &params)
            .await?;
        volumes(&data, &format!("GET {path}"))
    }

    /// `PUT /nodes/{node}/storage/{storage}/content/{volume}` with `notes`.
    pub async fn set_volume_notes(
        &self,
        node: &str,
        storage: &str,
        volid: &str,
        notes: &str,
    ) -> Result<(), PveError> {
        let path = format!(
            "/nodes/{}/storage/{}/content/{}",
            segment(node),
            segment(storage),
            segment(volid)
        );
        self.call(
            Method::PUT,
            "/nodes/{node}/storage/{storage}/content/{volume}",
            &path,
            &[("notes".into(), notes.into())],
        )
        .await?;
        Ok(())
    }

    /// `DELETE /nodes/{node}/storage/{storage}/content/{volume}`.
    pub async fn delete_volume(
        &self,
        node: &str,
        storage: &str,
        volid: &str,
    ) -> Result<Option<Upid>, PveError> {
        let path = format!(
            "/nodes/{}/storage/{}/content/{}",
            segment(node),
            segment(storage),
            segment(volid)
        );
        self.optional_task_call(
            Method::DELETE,
            "/nodes/{node}/storage/{storage}/content/{volume}",
            &path,
            &[],
        )
        .await
    }

    /// `POST /nodes/{node}/storage/{storage}/download-url`.
    pub async fn download_url(
        &self,
        node: &str,
        storage: &str,
        req: &DownloadRequest,
    ) -> Result<Upid, PveError> {
        let path = format!(
            "/nodes/{}/storage/{}/download-url",
            segment(node),
            segment(storage)
        );
        let mut params = vec![
            ("url".to_string(), req.url.clone()),
            ("filename".to_string(), req.filename.clone()),
            ("content".to_string(), req.content.clone()),
        ];
        if let Some((algorithm, hex)) = &req.checksum {
            params.push(("checksum".into(), hex.clone()));
            params.push(("checksum-algorithm".into(), algorithm.clone()));
        }
        if let Some(verify) = req.verify_certificates {
            params.push(("verify-certificates".into(), flag(verify)));
        }
        self.task_call(
            Method::POST,
            "/nodes/{node}/storage/{storage}/download-url",
            &path,
            &params,
        )
        .await
    }

    /// `POST /nodes/{node}/storage/{storage}/upload`: a file as `multipart/form-data` with a
    /// `Content-Length` (Proxmox refuses chunked uploads); `content`, `checksum-algorithm` and
    /// `checksum` come before the file part, as pveproxy requires.
    ///
    /// # Errors
    /// The file cannot be read, or the request fails.
    pub async fn upload(
        &self,
        node: &str,
        storage: &str,
        req: &UploadRequest,
    ) -> Result<Upid, PveError> {
        let path = format!(
            "/nodes/{}/storage/{}/upload",
            segment(node),
            segment(storage)
        );
        self.count(&Method::POST, "/nodes/{node}/storage/{storage}/upload");
        let unreadable = |err: std::io::Error| PveError::Decode {
            what: format!("upload of {}", req.file.display()),
            message: err.to_string(),
        };
        let file = tokio::fs::File::open(&req.file).await.map_err(unreadable)?;
        let len = file.metadata().await.map_err(unreadable)?.len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let mut form = reqwest::multipart::Form::new().text("content", req.content.clone());
        if let Some((algorithm, hex)) = &req.checksum {
            form = form
                .text("checksum-algorithm", algorithm.clone())
                .text("checksum", hex.clone());
        }
        let part =
            reqwest::multipart::Part::stream_with_length(body, len).file_name(req.filename.clone());
        form = form.part("filename", part);
        let url = format!("{}{path}", self.inner.base);
        // Uploads take as long as the bytes do: no per-request time-out here.
        let request = self
            .inner
            .http
            .post(&url)
            .multipart(form)
            .timeout(Duration::from_secs(24 * 3600));
        let (data, _) = self.send(Method::POST, &path, request).await?;
        upid_of(&data, &format!("POST {path}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn storages_with_numbers_or_strings() {
        let as_numbers = json!([{
            "storage": "local-lvm", "type": "lvmthin", "content": "images,rootdir",
            "shared": 0, "active": 1, "enabled": 1, "avail": 100000000000u64,
            "total": 120000000000u64, "used": 20000000000u64, "used_fraction": 0.16,
        }]);
        let as_strings = json!([{
            "storage": "local-lvm", "type": "lvmthin", "content": "images,rootdir",
            "shared": "0", "active": "1", "enabled": "1", "avail": "100000000000",
            "total": "120000000000",
        }]);
        let expected = StorageSummary {
            storage: "local-lvm".into(),
            kind: "lvmthin".into(),
            content: vec!["images".into(), "rootdir".into()],
            shared: false,
            active: true,
            enabled: true,
            avail: Some(100_000_000_000),
            total: Some(120_000_000_000),
        };
        for data in [as_numbers, as_strings] {
            assert_eq!(
                storage_summaries(&data, "GET s").unwrap(),
                std::slice::from_ref(&expected)
            );
        }
        let inactive = json!([
            {"storage": "nfs", "type": "nfs", "shared": 1, "active": 0, "enabled": 0},
            {"storage": "cidata", "type": "dir", "content": "iso", "active": 1},
        ]);
        let inactive = storage_summaries(&inactive, "GET s").unwrap();
        assert!(inactive[0].shared && !inactive[0].active && !inactive[0].enabled);
        assert_eq!((inactive[0].avail, inactive[0].total), (None, None));
        assert!(inactive[1].enabled, "an absent `enabled` is enabled");
    }

    #[test]
    fn a_malformed_storage_is_an_error() {
        for (row, needle) in [
            (json!({"type": "dir"}), "at `[0]`: missing field `storage`"),
            (
                json!({"storage": "local", "shared": "sometimes"}),
                "at `[0].shared`",
            ),
            (
                json!({"storage": "local", "avail": "lots"}),
                "at `[0].avail`",
            ),
            (json!({"storage": "local", "total": -1}), "at `[0].total`"),
        ] {
            let err = storage_summaries(&json!([row]), "GET /nodes/pve1/storage")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("GET /nodes/pve1/storage") && err.contains(needle),
                "{err}"
            );
        }
    }

    #[test]
    fn volumes_with_numbers_or_strings() {
        let as_numbers = json!([{
            "volid": "local:import/noble-0123456789ab.qcow2", "content": "import",
            "format": "qcow2", "size": 614400000, "ctime": 1700000000, "vmid": 9000,
            "notes": "managed-by: proxfleet", "parent": "base-9000-disk-0",
        }]);
        let as_strings = json!([{
            "volid": "local:import/noble-0123456789ab.qcow2", "content": "import",
            "format": "qcow2", "size": "614400000", "vmid": "9000",
            "notes": "managed-by: proxfleet", "parent": "base-9000-disk-0",
        }]);
        let expected = VolumeInfo {
            volid: "local:import/noble-0123456789ab.qcow2".into(),
            content: Some("import".into()),
            format: Some("qcow2".into()),
            size: Some(614_400_000),
            notes: Some("managed-by: proxfleet".into()),
            vmid: Some(9000),
            parent: Some("base-9000-disk-0".into()),
        };
        for data in [as_numbers, as_strings] {
            assert_eq!(
                volumes(&data, "GET c").unwrap(),
                std::slice::from_ref(&expected)
            );
        }
        let bare = volumes(&json!([{"volid": "local:iso/a.iso"}]), "GET c").unwrap();
        assert_eq!((bare[0].size, bare[0].vmid), (None, None));
    }

    #[test]
    fn a_malformed_volume_is_an_error() {
        for (row, needle) in [
            (
                json!({"format": "iso", "size": 1}),
                "at `[1]`: missing field `volid`",
            ),
            (
                json!({"volid": "local:iso/b.iso", "size": "big"}),
                "at `[1].size`",
            ),
            (
                json!({"volid": "local:iso/b.iso", "vmid": "x"}),
                "at `[1].vmid`",
            ),
        ] {
            let data = json!([{"volid": "local:iso/a.iso"}, row]);
            let err = volumes(&data, "GET /nodes/pve1/storage/local/content")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("local/content") && err.contains(needle),
                "{err}"
            );
        }
    }

    #[test]
    fn a_storage_path_may_be_absent() {
        let dir: StorageConfigWire =
            de::decode(&json!({"storage": "local", "path": "/var/lib/vz"}), "GET s").unwrap();
        assert_eq!(dir.path.as_deref(), Some("/var/lib/vz"));
        let lvm: StorageConfigWire = de::decode(&json!({"storage": "lvm"}), "GET s").unwrap();
        assert_eq!(lvm.path, None);
    }
}
