//! The connection to a Proxmox VE API: base URL, API-token auth, TLS, and the one request
//! function every call goes through, which counts the request by endpoint (path template, for
//! `-v` and the benchmarks), decodes Proxmox's envelope and maps a failure to [`PveError`].
//! The typed calls live beside it, one file per API area, each with the private wire structs
//! of its answers: `cluster` (resources, next id, PCI mappings, version), `nodes` (nodes and
//! their networks), `qemu` (configs, pending changes, status, lifecycle), `agent` (the guest
//! agent's interfaces), `storage` (storages, their content, download-url and upload), `pools`,
//! `access` (permissions) and `tasks` (UPID status, log and waiting, through the per-node
//! watcher in `task_watch`), and the cluster listing the preflight and the observation share
//! (`shared_reads`). `de` holds the lenient
//! scalar decoding they share.

mod access;
mod agent;
mod cluster;
pub use cluster::ClusterListing;
mod de;
mod nodes;
mod pools;
mod qemu;
mod retry;
mod shared_reads;
mod storage;
mod task_watch;
mod tasks;
mod token;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::error::PveError;
use super::upid::Upid;
pub use retry::ReadRetry;
pub use token::ApiToken;

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
    /// How reads are retried on transient failures (writes never are; see `retry`).
    pub read_retry: ReadRetry,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    /// `scheme://host:port` of the endpoint: what errors name (never a path or query).
    origin: String,
    token_id: String,
    counts: Mutex<BTreeMap<String, u64>>,
    writes: AtomicU64,
    read_retry: ReadRetry,
    /// The tasks being waited for, polled per node (`task_watch`).
    task_watch: task_watch::TaskWatch,
    /// The cluster listing read once for the preflight and the observation (`shared_reads`).
    shared_reads: shared_reads::SharedReads,
    /// The storages each node has shared, from the last whole cluster listing: which storages
    /// are shared is `storage.cfg`, not usage, so the storage gate may use it all run long.
    shared_storages: Mutex<BTreeMap<String, BTreeMap<String, bool>>>,
    /// The tasks a wait gave up on (timed out, or could no longer be looked at): they may
    /// still run when the run ends (`tasks_given_up`).
    given_up: Mutex<BTreeSet<crate::pve::Upid>>,
}

/// A Proxmox VE API client; cheap to clone, usable from many tasks at once.
#[derive(Clone)]
pub struct PveClient {
    inner: Arc<Inner>,
}

impl Envelope {
    fn from_body(body: &[u8]) -> Result<Envelope, String> {
        serde_json::from_slice(body).map_err(|err| match err.classify() {
            serde_json::error::Category::Data => format!("not a Proxmox answer: {err}"),
            _ => "the body is not JSON".to_string(),
        })
    }
}

impl PveClient {
    /// Build a client.
    ///
    /// # Errors
    /// A malformed endpoint, an unreadable CA file, or a TLS set-up failure.
    pub fn new(config: ClientConfig) -> Result<Self, PveError> {
        let endpoint = config.endpoint.trim().trim_end_matches('/');
        if !endpoint.contains("://") {
            // `pve1.example.com:8006` parses as a URL of scheme `pve1.example.com`.
            return Err(PveError::InvalidEndpoint {
                reason: format!(
                    "`{endpoint}` has no scheme: write https://{endpoint} (Proxmox VE serves its API over HTTPS on port 8006)"
                ),
            });
        }
        let parsed = url::Url::parse(endpoint).map_err(|err| PveError::InvalidEndpoint {
            reason: format!("`{endpoint}`: {err}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(PveError::InvalidEndpoint {
                reason: format!("`{endpoint}` is not an http(s)://host[:port] URL"),
            });
        }
        let origin = parsed.origin().ascii_serialization();
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
                origin,
                token_id: config.token.id(),
                counts: Mutex::default(),
                writes: AtomicU64::new(0),
                read_retry: config.read_retry,
                task_watch: task_watch::TaskWatch::default(),
                shared_reads: shared_reads::SharedReads::default(),
                shared_storages: Mutex::default(),
                given_up: Mutex::default(),
            }),
        })
    }

    /// Which of `storage`'s rows on `node` the last whole cluster listing showed shared, if it
    /// showed the storage there at all.
    pub fn listed_as_shared(&self, node: &str, storage: &str) -> Option<bool> {
        let listed = self.inner.shared_storages.lock().ok()?;
        listed.get(node)?.get(storage).copied()
    }

    /// Keep which storages a whole cluster listing showed shared (`listed_as_shared`).
    fn remember_storages(&self, listing: &ClusterListing) {
        if let Ok(mut kept) = self.inner.shared_storages.lock() {
            *kept = listing
                .storages
                .iter()
                .map(|(node, rows)| {
                    let flags = rows.iter().map(|s| (s.storage.clone(), s.shared)).collect();
                    (node.clone(), flags)
                })
                .collect();
        }
    }

    /// Mark this client's reads, until the guard drops, as the preflight's: the cluster
    /// listing it reads is handed to the observation that follows (see `shared_reads`).
    pub(crate) fn preflight_reads(&self) -> shared_reads::PreflightReads<'_> {
        self.inner.shared_reads.preflight()
    }

    /// The run has taken its lease, the pool `poolid` (from a killed run when `taken_over`):
    /// a cluster listing the preflight kept that was read while another run could still
    /// change the cluster (one that shows the lease pool, or any after a takeover) is not
    /// handed on (see `shared_reads`).
    pub(crate) fn lease_taken(&self, poolid: &str, taken_over: bool) {
        if taken_over {
            self.inner.shared_reads.forget();
        } else {
            self.inner.shared_reads.forget_if_it_lists_pool(poolid);
        }
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

    /// Count a request under its endpoint, and as a write unless it is a GET.
    fn count(&self, method: &Method, template: &str) {
        if let Ok(mut counts) = self.inner.counts.lock() {
            *counts.entry(format!("{method} {template}")).or_default() += 1;
        }
        if *method != Method::GET {
            self.inner.writes.fetch_add(1, Ordering::Relaxed);
            // Creating a pool (the run's lease, a spec's pool) or deleting one (Proxmox deletes
            // only empty pools) changes no guest's row in the shared cluster listing; moving
            // a VM into a pool (`PUT /pools`) does.
            let leaves_guests_alone =
                template == "/pools" && (*method == Method::POST || *method == Method::DELETE);
            if !leaves_guests_alone {
                self.inner.shared_reads.forget();
            }
        }
    }

    /// Send a request and return the envelope's `data` (and `total` when present). A `GET`
    /// that fails transiently is sent again under the configured [`ReadRetry`]; any other
    /// method is sent exactly once (see `retry` for why).
    async fn call(
        &self,
        method: Method,
        template: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<(Value, Option<u64>), PveError> {
        if method != Method::GET {
            return self.call_once(method, template, path, params).await;
        }
        if let Some(answer) = self.inner.shared_reads.take(template, path, params) {
            return Ok(answer);
        }
        let mut delays = self.inner.read_retry.delays();
        loop {
            let result = self.call_once(Method::GET, template, path, params).await;
            if let Ok(answer) = &result {
                self.inner.shared_reads.keep(template, path, params, answer);
            }
            match result {
                Err(err) if err.is_transient() => match delays.next() {
                    Some(delay) => {
                        tracing::debug!(path, %err, ?delay, "retrying a read");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(err),
                },
                other => return other,
            }
        }
    }

    /// Send one request, once.
    async fn call_once(
        &self,
        method: Method,
        template: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<(Value, Option<u64>), PveError> {
        self.count(&method, template);
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
                    message: connect_message(&self.inner.origin, &err),
                }
            }
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|err| PveError::Connect {
            method: method.to_string(),
            path: path.to_string(),
            message: connect_message(&self.inner.origin, &err),
        })?;
        tracing::debug!(%method, path, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "proxmox request");
        if !status.is_success() {
            let json: Option<Value> = serde_json::from_slice(&body).ok();
            let mut error = http_error(&method, path, status, json.as_ref());
            if json.is_none()
                && let PveError::Http { message, .. } = &mut error
            {
                message.push_str(&not_proxmox_hint(&self.inner.origin, &body));
            }
            return Err(error);
        }
        // Straight from the bytes: a cluster listing's `data` is the whole cluster.
        let envelope = Envelope::from_body(&body).map_err(|message| PveError::Decode {
            what: format!("{method} {path}"),
            message: if serde_json::from_slice::<Value>(&body).is_err() {
                format!("{message}{}", not_proxmox_hint(&self.inner.origin, &body))
            } else {
                message
            },
        })?;
        Ok((envelope.data, envelope.total))
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

    /// A request whose answer is the UPID of the task it started.
    async fn task_call(
        &self,
        method: Method,
        template: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Upid, PveError> {
        let data = self
            .task_request(method.clone(), template, path, params)
            .await?;
        upid_of(&data, &format!("{method} {path}"))
    }

    /// A request that answers with a UPID when it started a task and `null` when it did the
    /// work at once (a config change without hot-plugging, a resize on some storages).
    async fn optional_task_call(
        &self,
        method: Method,
        template: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Option<Upid>, PveError> {
        let data = self
            .task_request(method.clone(), template, path, params)
            .await?;
        if data.is_null() {
            return Ok(None);
        }
        upid_of(&data, &format!("{method} {path}")).map(Some)
    }
}

/// Proxmox's answer around every successful result.
#[derive(Debug, Deserialize)]
struct Envelope {
    /// The result; absent for calls that return nothing.
    #[serde(default)]
    data: Value,
    /// The number of items in all pages (task logs).
    #[serde(default, deserialize_with = "de::optional_number")]
    total: Option<u64>,
}

/// Percent-encode one path segment (UPIDs and volids contain `:` and `/`).
fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A boolean parameter as Proxmox takes it.
fn flag(value: bool) -> String {
    if value { "1" } else { "0" }.to_string()
}

/// Where a transport error happened (the endpoint's origin, never a path or query) and what
/// the transport said, with the likely cause when the text shows it: nothing listening, a name
/// that does not resolve, `http://` to a TLS port or `https://` to a plain one, an untrusted
/// certificate.
fn connect_message(origin: &str, err: &reqwest::Error) -> String {
    let text = without_url(err);
    let lower = text.to_ascii_lowercase();
    let https = origin.starts_with("https://");
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    let hint = if has(&["connection refused"]) {
        " (nothing listens there: check the host and the port; Proxmox VE's API is on 8006)"
    } else if has(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
    ]) {
        " (the host name does not resolve)"
    } else if https && has(&["certificate", "unknownissuer", "unknown issuer"]) {
        " (the server's certificate is not trusted: pass --ca-file with the cluster's CA, /etc/pve/pve-root-ca.pem on any node, or --insecure for a lab)"
    } else if https
        && has(&[
            "corrupt message",
            "invalidcontenttype",
            "invalid content type",
            "wrong version number",
            "peer is incompatible",
        ])
    {
        " (the server does not speak TLS there: try http:// or another port)"
    } else if !https
        && has(&[
            "connection closed before message completed",
            "invalid http version",
            "connection reset",
            "invalid status",
        ])
    {
        " (the server may expect TLS there: try https://)"
    } else {
        ""
    };
    format!("{origin}: {text}{hint}")
}

/// The hint for an answer that is not JSON: whatever answered is not Proxmox VE's API.
fn not_proxmox_hint(origin: &str, body: &[u8]) -> String {
    let start = String::from_utf8_lossy(&body[..body.len().min(64)]).to_ascii_lowercase();
    let what = if start.trim_start().starts_with('<') {
        "an HTML page"
    } else {
        "something that is not JSON"
    };
    format!(
        " ({origin} answered with {what}: it does not look like Proxmox VE's API; the endpoint is https://NODE:8006)"
    )
}

/// A transport error's text without the URL (which could carry query parameters).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "").replace(" for url ()", "");
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text.trim().to_string()
}

/// The error of a failed request. Its body is whatever the server sent (Proxmox's envelope
/// with or without `message`, a proxy's HTML page), so nothing in it is required.
fn http_error(method: &Method, path: &str, status: StatusCode, body: Option<&Value>) -> PveError {
    let message = body
        .and_then(|body| body.get("message"))
        .and_then(Value::as_str)
        .map(|message| message.trim().to_string())
        .filter(|message| !message.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let errors = body
        .and_then(|body| body.get("errors"))
        .and_then(Value::as_object)
        .map(|errors| {
            errors
                .iter()
                .map(|(parameter, message)| {
                    let text = de::Scalar::deserialize(message)
                        .ok()
                        .and_then(de::Scalar::into_text)
                        .unwrap_or_default();
                    (parameter.clone(), text.trim().to_string())
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

/// The UPID a task-starting call answers with.
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn endpoints_normalise_to_the_api_base() {
        let token = ApiToken::parse("root@pam!t=s").unwrap();
        let config = |endpoint: &str| ClientConfig {
            endpoint: endpoint.into(),
            token: token.clone(),
            insecure: false,
            ca_file: None,
            timeout: Duration::from_secs(1),
            read_retry: ReadRetry::never(),
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
    fn path_segments_are_percent_encoded() {
        assert_eq!(
            segment("UPID:pve1:0:0:0:qmclone:9000:root@pam!x:"),
            "UPID%3Apve1%3A0%3A0%3A0%3Aqmclone%3A9000%3Aroot%40pam%21x%3A"
        );
    }

    #[test]
    fn envelopes_carry_data_and_maybe_a_total() {
        let paged = Envelope::from_body(br#"{"data": [1], "total": "7"}"#).unwrap();
        assert_eq!((paged.data, paged.total), (json!([1]), Some(7)));
        let counted = Envelope::from_body(br#"{"data": [], "total": 7}"#).unwrap();
        assert_eq!(counted.total, Some(7));
        let empty = Envelope::from_body(b"{}").unwrap();
        assert_eq!((empty.data, empty.total), (Value::Null, None));
        let bad = Envelope::from_body(br#"{"data": 1, "total": "many"}"#).unwrap_err();
        assert!(bad.contains("not a Proxmox answer"), "{bad}");
        let html = Envelope::from_body(b"<html>").unwrap_err();
        assert_eq!(html, "the body is not JSON");
    }

    #[test]
    fn error_bodies_with_and_without_a_message() {
        let status = StatusCode::BAD_REQUEST;
        let with = json!({"data": null, "message": "Parameter verification failed.\n",
            "errors": {"vmid": "VM 200 already exists", "cores": 4}});
        let PveError::Http {
            message, errors, ..
        } = http_error(&Method::GET, "/cluster/nextid", status, Some(&with))
        else {
            panic!("not an HTTP error");
        };
        assert_eq!(message, "Parameter verification failed.");
        assert_eq!(errors["vmid"], "VM 200 already exists");
        assert_eq!(errors["cores"], "4");
        let without = json!({"data": null, "errors": {"vmid": "VM 200 already exists"}});
        let err = http_error(&Method::GET, "/cluster/nextid", status, Some(&without));
        assert!(err.to_string().contains("HTTP 400: Bad Request"), "{err}");
        let not_json = http_error(&Method::GET, "/x", StatusCode::BAD_GATEWAY, None);
        assert!(not_json.to_string().contains("HTTP 502: Bad Gateway"));
    }
}
