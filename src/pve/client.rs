//! The HTTP client: base URL, API-token auth, TLS, one request function that decodes
//! Proxmox's envelopes and errors, the typed calls proxfleet uses, and task waiting. Every
//! request is counted by endpoint (path template), for `-v` and for the benchmarks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::error::PveError;
use super::types::*;
use super::upid::Upid;
use crate::secret::Secret;

/// An API token `user@realm!tokenid=secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// `user@realm`.
    pub user: String,
    /// Token id.
    pub token_id: String,
    secret: Secret,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiToken({}=***)", self.id())
    }
}

impl ApiToken {
    /// Parse `user@realm!tokenid=secret` (split at the last `=`).
    ///
    /// # Errors
    /// [`PveError::InvalidToken`], whose message never contains the secret.
    pub fn parse(text: &str) -> Result<ApiToken, PveError> {
        let invalid = |reason: &str| PveError::InvalidToken {
            reason: reason.to_string(),
        };
        let (id, secret) = text
            .trim()
            .rsplit_once('=')
            .ok_or_else(|| invalid("expected user@realm!tokenid=secret (no `=` found)"))?;
        let (user, token_id) = id.split_once('!').ok_or_else(|| {
            invalid("expected user@realm!tokenid=secret (no `!` in the token id)")
        })?;
        let realm_ok = user
            .split_once('@')
            .is_some_and(|(u, r)| !u.is_empty() && !r.is_empty());
        if !realm_ok {
            return Err(invalid(
                "the user must be user@realm, e.g. root@pam or proxfleet@pve",
            ));
        }
        if token_id.is_empty()
            || !token_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                "the token id must be letters, digits, `-`, `_` or `.`",
            ));
        }
        if secret.is_empty() {
            return Err(invalid("the secret after `=` is empty"));
        }
        Ok(ApiToken {
            user: user.to_string(),
            token_id: token_id.to_string(),
            secret: Secret::new(secret),
        })
    }

    /// `user@realm!tokenid`, safe to print.
    pub fn id(&self) -> String {
        format!("{}!{}", self.user, self.token_id)
    }
}

impl std::str::FromStr for ApiToken {
    type Err = PveError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ApiToken::parse(text)
    }
}

/// How to reach a cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://host:8006` (or `http://…` for the simulator), with or without `/api2/json`.
    pub endpoint: String,
    /// The API token.
    pub token: ApiToken,
    /// Skip certificate verification.
    pub insecure: bool,
    /// Extra root CA (PEM).
    pub ca_file: Option<PathBuf>,
    /// Per-request time-out.
    pub timeout: Duration,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    token_id: String,
    counts: Mutex<BTreeMap<String, u64>>,
    writes: AtomicU64,
}

/// A Proxmox VE API client; cheap to clone, usable from many tasks at once.
#[derive(Clone)]
pub struct PveClient {
    inner: Arc<Inner>,
}

/// Percent-encode one path segment (UPIDs and volids contain `:` and `/`).
fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn flag(value: bool) -> String {
    if value { "1" } else { "0" }.to_string()
}

impl PveClient {
    /// Build a client.
    ///
    /// # Errors
    /// A malformed endpoint, an unreadable CA file, or a TLS set-up failure.
    pub fn new(config: ClientConfig) -> Result<Self, PveError> {
        let endpoint = config.endpoint.trim().trim_end_matches('/');
        let parsed = url::Url::parse(endpoint).map_err(|err| PveError::InvalidEndpoint {
            reason: format!("`{endpoint}`: {err}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(PveError::InvalidEndpoint {
                reason: format!("`{endpoint}` is not an http(s)://host[:port] URL"),
            });
        }
        let base = if endpoint.ends_with("/api2/json") {
            endpoint.to_string()
        } else {
            format!("{endpoint}/api2/json")
        };

        let mut auth = HeaderValue::from_str(&format!(
            "PVEAPIToken={}={}",
            config.token.id(),
            config.token.secret.expose()
        ))
        .map_err(|_| PveError::InvalidToken {
            reason: "the token contains characters that cannot go into an HTTP header".into(),
        })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);

        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .danger_accept_invalid_certs(config.insecure)
            .pool_max_idle_per_host(32);
        if let Some(ca_file) = &config.ca_file {
            let pem = std::fs::read(ca_file).map_err(|err| PveError::Tls {
                reason: format!("cannot read CA file {}: {err}", ca_file.display()),
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|err| PveError::Tls {
                reason: format!("{} is not a PEM certificate: {err}", ca_file.display()),
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|err| PveError::Tls {
            reason: err.to_string(),
        })?;
        Ok(PveClient {
            inner: Arc::new(Inner {
                http,
                base,
                token_id: config.token.id(),
                counts: Mutex::default(),
                writes: AtomicU64::new(0),
            }),
        })
    }

    /// The API token's id, `user@realm!tokenid` (never its secret).
    pub fn token_id(&self) -> &str {
        &self.inner.token_id
    }

    /// Requests sent so far, by `METHOD /path/{template}`.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.inner
            .counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Non-GET requests sent so far.
    pub fn write_count(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// Send one request and return the envelope's `data` (and `total` when present).
    async fn call(
        &self,
        method: Method,
        template: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<(Value, Option<u64>), PveError> {
        if let Ok(mut counts) = self.inner.counts.lock() {
            *counts.entry(format!("{method} {template}")).or_default() += 1;
        }
        if method != Method::GET {
            self.inner.writes.fetch_add(1, Ordering::Relaxed);
        }
        let url = format!("{}{path}", self.inner.base);
        let mut request = self.inner.http.request(method.clone(), &url);
        request = if method == Method::GET || method == Method::DELETE {
            request.query(params)
        } else {
            request.form(params)
        };
        self.send(method, path, request).await
    }

    /// Send a prepared request and decode Proxmox's envelope: `data` (and `total`), or the
    /// error with its message and per-parameter errors.
    async fn send(
        &self,
        method: Method,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(Value, Option<u64>), PveError> {
        let started = Instant::now();
        let response = request.send().await.map_err(|err| {
            if err.is_timeout() {
                PveError::Timeout {
                    method: method.to_string(),
                    path: path.to_string(),
                }
            } else {
                PveError::Connect {
                    method: method.to_string(),
                    path: path.to_string(),
                    message: without_url(&err),
                }
            }
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|err| PveError::Connect {
            method: method.to_string(),
            path: path.to_string(),
            message: without_url(&err),
        })?;
        tracing::debug!(%method, path, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "proxmox request");
        let envelope: Option<Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            return Err(http_error(&method, path, status, envelope.as_ref()));
        }
        let mut envelope = envelope.ok_or_else(|| PveError::Decode {
            what: format!("{method} {path}"),
            message: "the body is not JSON".into(),
        })?;
        let total = envelope.get("total").and_then(as_u64);
        // Moved out, not cloned: a cluster listing's `data` is the whole cluster.
        let data = envelope
            .as_object_mut()
            .and_then(|fields| fields.remove("data"))
            .unwrap_or(Value::Null);
        Ok((data, total))
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
        let template = "/nodes/{node}/storage/{storage}/upload";
        let path = format!(
            "/nodes/{}/storage/{}/upload",
            segment(node),
            segment(storage)
        );
        if let Ok(mut counts) = self.inner.counts.lock() {
            *counts.entry(format!("POST {template}")).or_default() += 1;
        }
        self.inner.writes.fetch_add(1, Ordering::Relaxed);
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

    async fn get(
        &self,
        template: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Value, PveError> {
        self.call(Method::GET, template, path, params)
            .await
            .map(|(data, _)| data)
    }

    async fn task_call(
        &self,
        method: Method,
        template: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Upid, PveError> {
        let data = self
            .call(method.clone(), template, path, params)
            .await
            .map(|(data, _)| data)?;
        upid_of(&data, &format!("{method} {path}"))
    }

    async fn optional_task_call(
        &self,
        method: Method,
        template: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Option<Upid>, PveError> {
        let data = self
            .call(method.clone(), template, path, params)
            .await
            .map(|(data, _)| data)?;
        if data.is_null() {
            return Ok(None);
        }
        upid_of(&data, &format!("{method} {path}")).map(Some)
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<VersionInfo, PveError> {
        let data = self.get("/version", "/version", &[]).await?;
        Ok(VersionInfo {
            release: string(&data, "release").unwrap_or_default(),
            version: string(&data, "version").unwrap_or_default(),
        })
    }

    /// `GET /cluster/resources?type=vm`, QEMU guests only.
    pub async fn cluster_vms(&self) -> Result<Vec<VmSummary>, PveError> {
        let data = self
            .get(
                "/cluster/resources",
                "/cluster/resources",
                &[("type".into(), "vm".into())],
            )
            .await?;
        let items = array(&data, "GET /cluster/resources")?;
        Ok(items
            .iter()
            .filter(|item| string(item, "type").as_deref() == Some("qemu"))
            .filter_map(|item| {
                Some(VmSummary {
                    vmid: u32::try_from(item.get("vmid").and_then(as_u64)?).ok()?,
                    node: string(item, "node")?,
                    name: string(item, "name"),
                    running: string(item, "status").as_deref() == Some("running"),
                    template: boolean(item, "template"),
                    tags: string(item, "tags")
                        .map(|t| {
                            t.split([';', ',', ' '])
                                .filter(|t| !t.is_empty())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                    lock: string(item, "lock").filter(|l| !l.is_empty()),
                    pool: string(item, "pool").filter(|p| !p.is_empty()),
                })
            })
            .collect())
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeSummary>, PveError> {
        let data = self.get("/nodes", "/nodes", &[]).await?;
        Ok(array(&data, "GET /nodes")?
            .iter()
            .filter_map(|item| {
                Some(NodeSummary {
                    name: string(item, "node")?,
                    online: string(item, "status").as_deref() == Some("online"),
                })
            })
            .collect())
    }

    /// `GET /nodes/{node}/storage`.
    pub async fn storages(&self, node: &str) -> Result<Vec<StorageSummary>, PveError> {
        let path = format!("/nodes/{}/storage", segment(node));
        let data = self.get("/nodes/{node}/storage", &path, &[]).await?;
        Ok(array(&data, "GET /nodes/{node}/storage")?
            .iter()
            .filter_map(|item| {
                Some(StorageSummary {
                    storage: string(item, "storage")?,
                    kind: string(item, "type").unwrap_or_default(),
                    content: string(item, "content")
                        .map(|c| c.split(',').map(str::to_string).collect())
                        .unwrap_or_default(),
                    shared: boolean(item, "shared"),
                    active: boolean(item, "active"),
                    enabled: item.get("enabled").is_none() || boolean(item, "enabled"),
                    avail: item.get("avail").and_then(as_u64),
                    total: item.get("total").and_then(as_u64),
                })
            })
            .collect())
    }

    /// `GET /nodes/{node}/network`, optionally only interfaces of one `type` (`any_bridge`:
    /// Linux and OVS bridges, and SDN VNets).
    pub async fn networks(
        &self,
        node: &str,
        kind: Option<&str>,
    ) -> Result<Vec<NetworkInterface>, PveError> {
        let path = format!("/nodes/{}/network", segment(node));
        let params: Vec<(String, String)> = kind
            .map(|k| ("type".to_string(), k.to_string()))
            .into_iter()
            .collect();
        let data = self.get("/nodes/{node}/network", &path, &params).await?;
        Ok(array(&data, "GET /nodes/{node}/network")?
            .iter()
            .filter_map(|item| {
                let ports = string(item, "bridge_ports")
                    .or_else(|| string(item, "ovs_ports"))
                    .unwrap_or_default();
                Some(NetworkInterface {
                    name: string(item, "iface")?,
                    kind: string(item, "type").unwrap_or_default(),
                    active: boolean(item, "active"),
                    autostart: boolean(item, "autostart"),
                    vlan_aware: boolean(item, "bridge_vlan_aware"),
                    ports: ports
                        .split([' ', ','])
                        .filter(|p| !p.is_empty() && *p != "none")
                        .map(str::to_string)
                        .collect(),
                    vids: string(item, "bridge_vids").filter(|v| !v.trim().is_empty()),
                })
            })
            .collect())
    }

    /// `GET /cluster/mapping/pci`: the PCI resource mappings the caller may see.
    pub async fn pci_mappings(&self) -> Result<Vec<PciMapping>, PveError> {
        let data = self
            .get("/cluster/mapping/pci", "/cluster/mapping/pci", &[])
            .await?;
        Ok(array(&data, "GET /cluster/mapping/pci")?
            .iter()
            .filter_map(|item| {
                let devices = item
                    .get("map")
                    .and_then(Value::as_array)
                    .map(|entries| {
                        entries
                            .iter()
                            .filter_map(Value::as_str)
                            .filter_map(|entry| {
                                let field = |key: &str| {
                                    entry.split(',').find_map(|kv| {
                                        kv.split_once('=')
                                            .filter(|(k, _)| *k == key)
                                            .map(|(_, v)| v.to_string())
                                    })
                                };
                                Some(PciMapEntry {
                                    node: field("node")?,
                                    path: field("path").unwrap_or_default(),
                                    device_id: field("id"),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Some(PciMapping {
                    id: string(item, "id")?,
                    description: string(item, "description").unwrap_or_default(),
                    devices,
                })
            })
            .collect())
    }

    /// `GET /access/permissions?path=PATH`: the caller's privileges on exactly that path, as
    /// Proxmox computes them (inheritance, propagation, privilege-separated tokens).
    pub async fn privileges_on(&self, acl_path: &str) -> Result<BTreeSet<String>, PveError> {
        let data = self
            .get(
                "/access/permissions",
                "/access/permissions",
                &[("path".into(), acl_path.into())],
            )
            .await?;
        let Value::Object(paths) = data else {
            return Err(PveError::Decode {
                what: "GET /access/permissions".into(),
                message: "expected an object".into(),
            });
        };
        let entry = paths.get(acl_path).or_else(|| {
            // Proxmox names the path as asked; take a lone entry under another spelling.
            (paths.len() == 1).then(|| paths.values().next()).flatten()
        });
        Ok(entry
            .and_then(Value::as_object)
            .map(|privileges| privileges.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// `GET /access/permissions` without a path: the caller's privileges on every ACL path it
    /// has entries on, each with its propagate flag (path → privilege → propagates).
    ///
    /// # Errors
    /// HTTP errors; an answer that is not an object of objects.
    pub async fn permissions_dump(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, bool>>, PveError> {
        let data = self
            .get("/access/permissions", "/access/permissions", &[])
            .await?;
        let Value::Object(paths) = data else {
            return Err(PveError::Decode {
                what: "GET /access/permissions".into(),
                message: "expected an object".into(),
            });
        };
        Ok(paths
            .into_iter()
            .map(|(path, privileges)| {
                let privileges = privileges
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(name, flag)| {
                                (name.clone(), flag.as_u64().is_none_or(|f| f != 0))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (path, privileges)
            })
            .collect())
    }

    /// `GET /cluster/nextid?vmid=N`: whether a vmid is free cluster-wide, including VMs the
    /// caller cannot see.
    pub async fn vmid_is_free(&self, vmid: u32) -> Result<bool, PveError> {
        match self
            .get(
                "/cluster/nextid",
                "/cluster/nextid",
                &[("vmid".into(), vmid.to_string())],
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(PveError::Http {
                status: 400,
                errors,
                ..
            }) if errors.contains_key("vmid") => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// `GET /storage/{storage}`: the storage's `path` in `storage.cfg` (file-based storages
    /// have one; `None` for the others). Needs `Datastore.Allocate` on the storage.
    pub async fn storage_path(&self, storage: &str) -> Result<Option<String>, PveError> {
        let path = format!("/storage/{}", segment(storage));
        let data = self.get("/storage/{storage}", &path, &[]).await?;
        Ok(string(&data, "path"))
    }

    /// `GET /nodes/{node}/storage/{storage}/content`.
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
        Ok(array(&data, "GET /nodes/{node}/storage/{storage}/content")?
            .iter()
            .filter_map(|item| {
                Some(VolumeInfo {
                    volid: string(item, "volid")?,
                    content: string(item, "content"),
                    format: string(item, "format"),
                    size: item.get("size").and_then(as_u64),
                    notes: string(item, "notes"),
                    vmid: item
                        .get("vmid")
                        .and_then(as_u64)
                        .and_then(|v| u32::try_from(v).ok()),
                    parent: string(item, "parent"),
                })
            })
            .collect())
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

    /// `GET /cluster/nextid`.
    pub async fn next_id(&self) -> Result<u32, PveError> {
        let data = self.get("/cluster/nextid", "/cluster/nextid", &[]).await?;
        as_u64(&data)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| PveError::Decode {
                what: "GET /cluster/nextid".into(),
                message: format!("not a vmid: {data}"),
            })
    }

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

    /// `GET /nodes/{node}/qemu/{vmid}/config` (pending values applied).
    pub async fn vm_config(&self, node: &str, vmid: u32) -> Result<VmConfig, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/config", segment(node));
        let data = self
            .get("/nodes/{node}/qemu/{vmid}/config", &path, &[])
            .await?;
        let Value::Object(map) = data else {
            return Err(PveError::Decode {
                what: format!("GET {path}"),
                message: "expected an object".into(),
            });
        };
        let mut values = BTreeMap::new();
        let mut digest = String::new();
        for (key, value) in map {
            let Some(text) = scalar_text(&value) else {
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

    /// `GET /nodes/{node}/qemu/{vmid}/pending`.
    pub async fn vm_pending(&self, node: &str, vmid: u32) -> Result<Vec<PendingEntry>, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/pending", segment(node));
        let data = self
            .get("/nodes/{node}/qemu/{vmid}/pending", &path, &[])
            .await?;
        Ok(array(&data, "GET /nodes/{node}/qemu/{vmid}/pending")?
            .iter()
            .filter_map(|item| {
                Some(PendingEntry {
                    key: string(item, "key")?,
                    value: item.get("value").and_then(scalar_text),
                    pending: item.get("pending").and_then(scalar_text),
                    delete: item.get("delete").and_then(as_u64).unwrap_or(0) > 0,
                })
            })
            .collect())
    }

    /// `POST /nodes/{node}/qemu/{vmid}/config`.
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
        self.optional_task_call(
            Method::POST,
            "/nodes/{node}/qemu/{vmid}/config",
            &path,
            &params,
        )
        .await
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

    /// `GET /nodes/{node}/qemu/{vmid}/status/current`.
    pub async fn vm_status(&self, node: &str, vmid: u32) -> Result<VmStatus, PveError> {
        let path = format!("/nodes/{}/qemu/{vmid}/status/current", segment(node));
        let data = self
            .get("/nodes/{node}/qemu/{vmid}/status/current", &path, &[])
            .await?;
        Ok(VmStatus {
            running: string(&data, "status").as_deref() == Some("running"),
            lock: string(&data, "lock").filter(|l| !l.is_empty()),
            template: boolean(&data, "template"),
        })
    }

    /// `GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces`: the guest's interfaces
    /// and addresses, from its QEMU guest agent. Proxmox answers 500 while the agent does not
    /// (`QEMU guest agent is not running`), for a stopped VM and for one without `agent`.
    ///
    /// # Errors
    /// The request fails (the agent is not answering among others).
    pub async fn guest_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Vec<GuestInterface>, PveError> {
        let template = "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces";
        let path = format!(
            "/nodes/{}/qemu/{vmid}/agent/network-get-interfaces",
            segment(node)
        );
        let data = self.get(template, &path, &[]).await?;
        let interfaces = data
            .get("result")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(interfaces
            .iter()
            .map(|item| GuestInterface {
                name: string(item, "name").unwrap_or_default(),
                mac: string(item, "hardware-address").map(|m| m.to_ascii_uppercase()),
                addresses: item
                    .get("ip-addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|a| string(a, "ip-address")?.parse().ok())
                    .collect(),
            })
            .collect())
    }

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

    /// Make sure a resource pool exists: `GET /pools?poolid=`, then `POST /pools` if it does
    /// not. Returns whether it was created.
    ///
    /// # Errors
    /// HTTP and permission errors other than the pool's absence.
    pub async fn ensure_pool(&self, poolid: &str) -> Result<bool, PveError> {
        let query = [("poolid".to_string(), poolid.to_string())];
        match self.get("/pools", "/pools", &query).await {
            Ok(_) => Ok(false),
            Err(PveError::Http { message, .. }) if message.contains("does not exist") => {
                match self.call(Method::POST, "/pools", "/pools", &query).await {
                    Ok(_) => Ok(true),
                    // Made by a concurrent step in the meantime.
                    Err(PveError::Http { message, .. }) if message.contains("already exists") => {
                        Ok(false)
                    }
                    Err(err) => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// `PUT /pools`: put a VM into a pool, moving it from another one.
    ///
    /// # Errors
    /// HTTP and permission errors.
    pub async fn set_pool(&self, poolid: &str, vmid: u32) -> Result<(), PveError> {
        let params = [
            ("poolid".to_string(), poolid.to_string()),
            ("vms".to_string(), vmid.to_string()),
            ("allow-move".to_string(), flag(true)),
        ];
        self.call(Method::PUT, "/pools", "/pools", &params).await?;
        Ok(())
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`.
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, PveError> {
        let path = format!(
            "/nodes/{}/tasks/{}/status",
            segment(upid.node()),
            segment(&upid.to_string())
        );
        let data = self
            .get("/nodes/{node}/tasks/{upid}/status", &path, &[])
            .await?;
        Ok(TaskStatus {
            running: string(&data, "status").as_deref() == Some("running"),
            exitstatus: string(&data, "exitstatus"),
        })
    }

    /// `GET /nodes/{node}/tasks/{upid}/log`, every page.
    pub async fn task_log(&self, upid: &Upid) -> Result<Vec<String>, PveError> {
        const PAGE: u64 = 500;
        let path = format!(
            "/nodes/{}/tasks/{}/log",
            segment(upid.node()),
            segment(&upid.to_string())
        );
        let mut lines = Vec::new();
        loop {
            let params = [
                ("start".to_string(), lines.len().to_string()),
                ("limit".to_string(), PAGE.to_string()),
            ];
            let (data, total) = self
                .call(
                    Method::GET,
                    "/nodes/{node}/tasks/{upid}/log",
                    &path,
                    &params,
                )
                .await?;
            let page = array(&data, "GET /nodes/{node}/tasks/{upid}/log")?;
            let n_page = page.len();
            lines.extend(page.iter().filter_map(|item| string(item, "t")));
            let done = n_page == 0 || total.is_none_or(|total| lines.len() as u64 >= total);
            if done {
                return Ok(lines);
            }
        }
    }

    /// Wait for a task, looking at it again after a tenth of the time waited so far (10 ms to
    /// 1 s; see `task_poll_delay`). Success is `OK` or `WARNINGS: n`; anything else fails with
    /// the task's log.
    ///
    /// # Errors
    /// [`PveError::TaskFailed`] with the log, [`PveError::TaskTimeout`], or a polling error.
    pub async fn wait_task(&self, upid: &Upid, timeout: Duration) -> Result<TaskOutcome, PveError> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            tokio::time::sleep(task_poll_delay(started.elapsed())).await;
            let status = self.task_status(upid).await?;
            if !status.running {
                let exit = status.exitstatus.unwrap_or_default();
                if exit == "OK" {
                    return Ok(TaskOutcome { warnings: 0 });
                }
                if let Some(n) = exit.strip_prefix("WARNINGS: ") {
                    return Ok(TaskOutcome {
                        warnings: n.trim().parse().unwrap_or(1),
                    });
                }
                let log = self.task_log(upid).await.unwrap_or_default();
                return Err(PveError::TaskFailed {
                    upid: upid.to_string(),
                    exitstatus: exit,
                    log,
                });
            }
            if Instant::now() >= deadline {
                return Err(PveError::TaskTimeout {
                    upid: upid.to_string(),
                });
            }
        }
    }
}

/// The shortest wait between two looks at a running task.
const TASK_POLL_MIN: Duration = Duration::from_millis(10);
/// The longest.
const TASK_POLL_MAX: Duration = Duration::from_secs(1);

/// How long to wait before looking at a task again once it has run for `waited`: a tenth of
/// that, between 10 ms and 1 s. So a task's end is noticed at most 10 ms or a tenth of its run
/// time later (never more than 1 s), and a task polled this way costs about 35 requests at 1 s
/// and 60 at 12 s. A backoff that multiplies its own delay instead (10 ms, × 1.5, up to 1 s)
/// costs fewer but can notice a task half its run time late (a 0.5 s task at 0.74 s).
fn task_poll_delay(waited: Duration) -> Duration {
    (waited / 10).clamp(TASK_POLL_MIN, TASK_POLL_MAX)
}

/// A transport error's text without the URL (which could carry query parameters).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text.trim().to_string()
}

fn http_error(
    method: &Method,
    path: &str,
    status: StatusCode,
    envelope: Option<&Value>,
) -> PveError {
    let message = envelope
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let errors = envelope
        .and_then(|e| e.get("errors"))
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        scalar_text(v).unwrap_or_default().trim().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    PveError::Http {
        method: method.to_string(),
        path: path.to_string(),
        status: status.as_u16(),
        message,
        errors,
    }
}

fn upid_of(data: &Value, what: &str) -> Result<Upid, PveError> {
    let text = data.as_str().ok_or_else(|| PveError::Decode {
        what: what.to_string(),
        message: format!("expected a task id, got {data}"),
    })?;
    text.parse()
        .map_err(|err: super::upid::BadUpid| PveError::Decode {
            what: what.to_string(),
            message: err.to_string(),
        })
}

fn array<'a>(data: &'a Value, what: &str) -> Result<&'a Vec<Value>, PveError> {
    data.as_array().ok_or_else(|| PveError::Decode {
        what: what.to_string(),
        message: "expected a list".into(),
    })
}

/// Numbers may come as strings and strings as numbers.
fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(flag(*b)),
        _ => None,
    }
}

fn string(item: &Value, key: &str) -> Option<String> {
    item.get(key).and_then(scalar_text)
}

fn boolean(item: &Value, key: &str) -> bool {
    match item.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            as_u64(other).is_some_and(|n| n != 0)
                || other
                    .as_str()
                    .is_some_and(|s| matches!(s, "true" | "yes" | "on"))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_never_show_their_secret() {
        let token =
            ApiToken::parse("proxfleet@pve!ci=d3adb33f-0000-4000-8000-c0ffee000001").unwrap();
        assert_eq!(token.id(), "proxfleet@pve!ci");
        assert_eq!(
            token.secret.expose(),
            "d3adb33f-0000-4000-8000-c0ffee000001"
        );
        assert!(!format!("{token:?}").contains("d3adb33f"));
        for bad in [
            "root@pam",
            "root@pam!=x",
            "root!ci=x",
            "root@pam!ci=",
            "@pam!ci=sekret",
        ] {
            let err = ApiToken::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("sekret"), "{err}");
        }
    }

    #[test]
    fn endpoints_normalise_to_the_api_base() {
        let token = ApiToken::parse("root@pam!t=s").unwrap();
        let config = |endpoint: &str| ClientConfig {
            endpoint: endpoint.into(),
            token: token.clone(),
            insecure: false,
            ca_file: None,
            timeout: Duration::from_secs(1),
        };
        for endpoint in [
            "https://pve:8006",
            "https://pve:8006/",
            "https://pve:8006/api2/json",
        ] {
            assert_eq!(
                PveClient::new(config(endpoint)).unwrap().inner.base,
                "https://pve:8006/api2/json"
            );
        }
        assert!(PveClient::new(config("pve:8006")).is_err());
        assert!(PveClient::new(config("ftp://pve")).is_err());
    }

    #[test]
    fn tasks_are_noticed_soon_after_they_end() {
        for millis in [
            1, 5, 10, 50, 100, 300, 500, 1_000, 1_500, 4_000, 12_000, 120_000,
        ] {
            let run_time = Duration::from_millis(millis);
            let mut waited = Duration::ZERO;
            let mut n_polls = 0;
            while waited < run_time {
                waited += task_poll_delay(waited);
                n_polls += 1;
            }
            let late = waited - run_time;
            let allowed = (run_time / 10).clamp(TASK_POLL_MIN, TASK_POLL_MAX);
            assert!(late <= allowed, "{run_time:?} noticed {late:?} late");
            // Logarithmic up to 10 s, then one a second.
            let budget = 64 + run_time.as_secs().saturating_sub(10);
            assert!(n_polls <= budget, "{run_time:?} took {n_polls} polls");
        }
    }

    #[test]
    fn lenient_decoding() {
        assert_eq!(as_u64(&serde_json::json!("42")), Some(42));
        assert_eq!(as_u64(&serde_json::json!(42)), Some(42));
        assert!(boolean(&serde_json::json!({"t": "1"}), "t"));
        assert!(!boolean(&serde_json::json!({"t": 0}), "t"));
        assert_eq!(scalar_text(&serde_json::json!(2048)), Some("2048".into()));
        assert_eq!(
            segment("UPID:pve1:0:0:0:qmclone:9000:root@pam!x:"),
            "UPID%3Apve1%3A0%3A0%3A0%3Aqmclone%3A9000%3Aroot%40pam%21x%3A"
        );
    }
}
