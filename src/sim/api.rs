//! The simulator's HTTP API: authentication, routing, parameter parsing and schema validation,
//! Proxmox's envelopes and errors, the endpoint handlers and the tasks they start.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::propstr::{NIC_MODELS, Props, parse_size, print_size};
use super::state::{self, Cluster, Task, Vm, Volume};
use super::{RequestRecord, Shared, access, schema};

mod agent;

type Params = BTreeMap<String, String>;
type Reply = Result<(Value, Option<u64>), ApiError>;

/// An error answer: status, message, per-parameter errors.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    errors: BTreeMap<String, String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            errors: BTreeMap::new(),
        }
    }

    /// A handler error before any task forked (HTTP 500).
    fn fail(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn params(errors: BTreeMap<String, String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "Parameter verification failed.".into(),
            errors,
        }
    }

    fn param(name: &str, message: impl Into<String>) -> ApiError {
        ApiError::params(BTreeMap::from([(name.to_string(), message.into())]))
    }

    fn into_response(self) -> Response {
        let mut body = json!({"data": null, "message": format!("{}\n", self.message)});
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

fn data(value: Value) -> Reply {
    Ok((value, None))
}

/// The largest request body the simulator reads. pveproxy spools uploads to disk without
/// such a small cap as axum's default 2 MB; the simulator keeps them in memory, so a bound stays.
const BODY_LIMIT: usize = 1 << 30;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(shared)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api_path = uri.path().strip_prefix("/api2/json").unwrap_or(uri.path());
    let effects = shared
        .faults
        .lock()
        .map(|mut faults| faults.effects(method.as_str(), api_path))
        .unwrap_or_default();
    let latency = shared.config.latency + effects.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let response = if effects.drop == Some(false) {
        dropped_connection()
    } else if let Some((status, message)) = effects.error {
        ApiError::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
        )
        .into_response()
    } else {
        let answer = match parse_multipart(&headers, body.clone()).await {
            Ok(upload) => dispatch(
                &shared,
                &method,
                &uri,
                &headers,
                &body,
                upload,
                effects.task_error,
            ),
            Err(err) => Err(err),
        };
        let response = match answer {
            Ok((value, total)) => {
                let mut envelope = json!({ "data": value });
                if let Some(total) = total {
                    envelope["total"] = json!(total);
                }
                (StatusCode::OK, axum::Json(envelope)).into_response()
            }
            Err(err) => err.into_response(),
        };
        if effects.drop == Some(true) {
            dropped_connection()
        } else {
            response
        }
    };
    if let Ok(mut requests) = shared.requests.lock() {
        requests.push(RequestRecord {
            method: method.to_string(),
            path: uri.path().to_string(),
            status: response.status().as_u16(),
        });
    }
    response
}

/// A response whose body breaks off: the client sees its connection reset mid-answer.
fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection dropped by fault injection",
        ))
    });
    (
        StatusCode::OK,
        [("content-type", "application/json;charset=UTF-8")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Who is calling, from the `Authorization` header.
fn authenticate(shared: &Shared, headers: &HeaderMap, method: &Method) -> Result<String, ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "authentication failure");
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(token) = authorization
        .strip_prefix("PVEAPIToken=")
        .or_else(|| authorization.strip_prefix("PVEAPIToken "))
    {
        let (id, secret) = token.trim().rsplit_once('=').ok_or_else(unauthorized)?;
        if !shared
            .access
            .tokens
            .iter()
            .any(|t| t.id == id && t.secret == secret)
        {
            return Err(unauthorized());
        }
        return Ok(id.to_string());
    }
    // A ticket, as cookie or as `Authorization: PVEAuthCookie=…`.
    let cookie = headers
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let ticket = cookie
        .split(';')
        .find_map(|part| part.trim().strip_prefix("PVEAuthCookie="))
        .or_else(|| authorization.strip_prefix("PVEAuthCookie="))
        .map(|t| percent_decode(t.trim()))
        .ok_or_else(unauthorized)?;
    let session = shared
        .tickets
        .lock()
        .ok()
        .and_then(|tickets| tickets.get(&ticket).cloned())
        .ok_or_else(unauthorized)?;
    if now().saturating_sub(session.issued) > TICKET_LIFETIME_SECS {
        return Err(unauthorized());
    }
    if method != Method::GET {
        let csrf = headers
            .get("csrfpreventiontoken")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if csrf != session.csrf {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Permission denied - invalid csrf token",
            ));
        }
    }
    Ok(session.user)
}

/// Tickets live two hours, as pve-access-control's `$ticket_lifetime`.
const TICKET_LIFETIME_SECS: u64 = 2 * 3600;

/// `POST /access/ticket`: password login (or renewal with a ticket as the password).
fn login(ctx: &Ctx) -> Reply {
    let mut username = ctx.req("username").to_string();
    if !username.contains('@')
        && let Some(realm) = ctx.get("realm")
    {
        username = format!("{username}@{realm}");
    }
    let password = ctx.req("password");
    let fail = || ApiError::new(StatusCode::UNAUTHORIZED, "authentication failure");
    let by_password = ctx
        .shared
        .config
        .users
        .iter()
        .any(|u| u.split_once(':') == Some((username.as_str(), password)));
    let by_ticket = ctx.shared.tickets.lock().ok().is_some_and(|t| {
        t.get(password).is_some_and(|s| {
            s.user == username && now().saturating_sub(s.issued) <= TICKET_LIFETIME_SECS
        })
    });
    if !by_password && !by_ticket {
        return Err(fail());
    }
    let issued = now();
    let ticket = format!(
        "PVE:{username}:{issued:08X}::{}",
        hex::encode(rand::random::<[u8; 24]>())
    );
    let csrf = format!("{issued:08X}:{}", hex::encode(rand::random::<[u8; 16]>()));
    if let Ok(mut tickets) = ctx.shared.tickets.lock() {
        tickets.insert(
            ticket.clone(),
            super::Session {
                user: username.clone(),
                csrf: csrf.clone(),
                issued,
            },
        );
    }
    data(
        json!({"ticket": ticket, "CSRFPreventionToken": csrf, "username": username, "clustername": "proxfleet-sim"}),
    )
}

/// A `multipart/form-data` body: its text fields, then the file part (pveproxy spools it to
/// `/var/tmp`; here it stays in memory).
pub(crate) struct Upload {
    fields: Vec<(String, String)>,
    file_name: Option<String>,
    bytes: Option<Bytes>,
}

async fn parse_multipart(headers: &HeaderMap, body: Bytes) -> Result<Option<Upload>, ApiError> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("multipart/form-data") {
        return Ok(None);
    }
    let bad = |e: multer::Error| ApiError::fail(format!("unable to parse multipart body: {e}"));
    let boundary = multer::parse_boundary(content_type).map_err(bad)?;
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut upload = Upload {
        fields: Vec::new(),
        file_name: None,
        bytes: None,
    };
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        if let Some(file_name) = field.file_name().map(str::to_string) {
            // pve-storage normalises the name: characters outside [a-zA-Z0-9_.-] become `_`.
            let normalised: String = file_name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            upload.file_name = Some(normalised);
            upload.bytes = Some(field.bytes().await.map_err(bad)?);
        } else {
            if upload.bytes.is_some() {
                // pveproxy reads the form fields before the file; anything after it is lost.
                return Err(ApiError::fail(format!(
                    "multipart field '{name}' after the file part"
                )));
            }
            let text = field.text().await.map_err(bad)?;
            upload.fields.push((name, text));
        }
    }
    Ok(Some(upload))
}

fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    upload: Option<Upload>,
    task_error: Option<String>,
) -> Reply {
    let raw_path = uri.path();
    let not_implemented = || {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "Method '{method} {}' not implemented",
                raw_path.trim_start_matches("/api2/json")
            ),
        )
    };
    let path = raw_path
        .strip_prefix("/api2/json")
        .ok_or_else(not_implemented)?;
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();

    let mut params = Params::new();
    let mut endpoint = None;
    for served in schema::served() {
        let Some((served_method, template)) = served.split_once(' ') else {
            continue;
        };
        if served_method != method.as_str() {
            continue;
        }
        let parts: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut path_params = Params::new();
        let matched = parts.iter().zip(&segments).all(|(part, segment)| {
            match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => {
                    path_params.insert(name.to_string(), segment.clone());
                    true
                }
                None => part == segment,
            }
        });
        if matched {
            endpoint = Some(served);
            params = path_params;
            break;
        }
    }
    let endpoint = endpoint.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("Method '{method} {path}' not implemented"),
        )
    })?;
    // The ticket endpoint is open to anyone (it is how one logs in); every other one needs a
    // token, or a ticket plus, for writes, its CSRF token.
    let user = if endpoint == "POST /access/ticket" {
        String::new()
    } else {
        authenticate(shared, headers, method)?
    };

    let mut request_params = Params::new();
    if let Some(query) = uri.query() {
        request_params.extend(
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let mut upload_bytes = None;
    if let Some(upload) = upload {
        request_params.extend(upload.fields);
        if let Some(file_name) = upload.file_name {
            request_params.insert("filename".into(), file_name);
        }
        upload_bytes = upload.bytes;
    } else if !body.is_empty() {
        if json_body {
            let value: Value = serde_json::from_slice(body)
                .map_err(|_| ApiError::fail("unable to parse JSON body"))?;
            for (key, value) in value.as_object().into_iter().flatten() {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                request_params.insert(key.clone(), text);
            }
        } else {
            request_params.extend(
                url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
    }
    for (key, value) in request_params {
        params.entry(key).or_insert(value);
    }
    let errors = schema::validate(endpoint, &params, json_body);
    if !errors.is_empty() {
        return Err(ApiError::params(errors));
    }
    // JSON booleans arrive as true/false; handlers read 1/0.
    for value in params.values_mut() {
        match value.as_str() {
            "true" if json_body => *value = "1".into(),
            "false" if json_body => *value = "0".into(),
            _ => {}
        }
    }
    if let Some(node) = params.get("node") {
        let known = shared.read(|c| c.node(node).map(|n| n.online));
        match known {
            None => {
                return Err(ApiError::fail(format!(
                    "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
                )));
            }
            Some(false) => {
                return Err(ApiError::new(
                    StatusCode::from_u16(595).unwrap_or(StatusCode::BAD_GATEWAY),
                    format!("no route to host {node}"),
                ));
            }
            Some(true) => {}
        }
    }
    if user.contains('!') && !access::allows_token(endpoint) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication failure: API tokens are not allowed here",
        ));
    }
    if access::check_endpoint(&shared.access, endpoint, &user, &params).is_err() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Permission check failed",
        ));
    }
    let ctx = Ctx {
        shared: Arc::clone(shared),
        user,
        params,
        upload: upload_bytes,
        task_error,
    };
    route(endpoint, &ctx)
}

struct Ctx {
    shared: Arc<Shared>,
    user: String,
    params: Params,
    /// The file part of an upload.
    upload: Option<Bytes>,
    /// An injected failure for the task this request starts.
    task_error: Option<String>,
}

impl Ctx {
    fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    fn req(&self, name: &str) -> &str {
        // Required parameters were checked by the schema validation.
        self.get(name).unwrap_or_default()
    }

    fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).map(|v| v == "1")
    }

    fn node(&self) -> String {
        self.req("node").to_string()
    }

    fn vmid(&self) -> u32 {
        self.get("vmid")
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    /// Whether the caller has `privs` (all, or any with `any`) on `path`.
    fn allowed(&self, path: &str, privs: &[&str], any: bool) -> bool {
        self.shared.access.has(&self.user, path, privs, any)
    }

    /// A handler's own permission check, failing as `$rpcenv->check` does.
    fn require(&self, path: &str, privs: &[&str]) -> Result<(), ApiError> {
        match privs.iter().find(|p| !self.allowed(path, &[p], false)) {
            None => Ok(()),
            Some(missing) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Permission check failed ({path}, {missing})"),
            )),
        }
    }

    /// Like `require`, but any one of `privs` will do.
    fn require_any(&self, path: &str, privs: &[&str]) -> Result<(), ApiError> {
        if self.allowed(path, privs, true) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Permission check failed ({path}, {})", privs.join("|")),
            ))
        }
    }
}

fn route(endpoint: &str, ctx: &Ctx) -> Reply {
    match endpoint {
        "POST /access/ticket" => login(ctx),
        "GET /access/permissions" => permissions(ctx),
        "GET /version" => data(json!({"release": "9.1", "version": "9.1.9", "repoid": "proxfleet-sim"})),
        "GET /cluster/resources" => cluster_resources(ctx),
        "GET /cluster/nextid" => next_id(ctx),
        "GET /nodes" => data(ctx.shared.read(|c| {
            Value::Array(c.nodes.iter().map(|n| json!({"node": n.name, "status": if n.online {"online"} else {"offline"}, "maxcpu": 16, "maxmem": 68_719_476_736u64, "level": ""})).collect())
        })),
        "GET /nodes/{node}/storage" => node_storages(ctx),
        "GET /storage/{storage}" => storage_config(ctx),
        "GET /nodes/{node}/storage/{storage}/content" => storage_content(ctx),
        "GET /nodes/{node}/storage/{storage}/content/{volume}" => volume_info(ctx),
        "PUT /nodes/{node}/storage/{storage}/content/{volume}" => volume_update(ctx),
        "DELETE /nodes/{node}/storage/{storage}/content/{volume}" => volume_delete(ctx),
        "POST /nodes/{node}/storage/{storage}/download-url" => download_url(ctx),
        "POST /nodes/{node}/storage/{storage}/upload" => upload(ctx),
        "GET /nodes/{node}/qemu" => vm_list(ctx),
        "POST /nodes/{node}/qemu" => create_vm(ctx),
        "GET /nodes/{node}/qemu/{vmid}/config" => vm_config(ctx),
        "POST /nodes/{node}/qemu/{vmid}/config" => update_config(ctx, true),
        "PUT /nodes/{node}/qemu/{vmid}/config" => update_config(ctx, false),
        "GET /nodes/{node}/qemu/{vmid}/pending" => vm_pending(ctx),
        "PUT /nodes/{node}/qemu/{vmid}/resize" => resize(ctx),
        "POST /nodes/{node}/qemu/{vmid}/template" => template(ctx),
        "POST /nodes/{node}/qemu/{vmid}/clone" => clone_vm(ctx),
        "POST /nodes/{node}/qemu/{vmid}/migrate" => migrate_vm(ctx),
        "GET /nodes/{node}/qemu/{vmid}/status/current" => vm_status(ctx),
        "GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces" => agent::network_get_interfaces(ctx),
        "POST /nodes/{node}/qemu/{vmid}/status/start" => power(ctx, "qmstart"),
        "POST /nodes/{node}/qemu/{vmid}/status/shutdown" => power(ctx, "qmshutdown"),
        "POST /nodes/{node}/qemu/{vmid}/status/stop" => power(ctx, "qmstop"),
        "DELETE /nodes/{node}/qemu/{vmid}" => destroy_vm(ctx),
        "GET /nodes/{node}/tasks/{upid}/status" => task_status(ctx),
        "GET /nodes/{node}/tasks/{upid}/log" => task_log(ctx),
        "GET /pools" => pools_list(ctx),
        "POST /pools" => pool_create(ctx),
        "PUT /pools" => pool_update(ctx),
        "GET /nodes/{node}/network" => node_network(ctx),
        "GET /cluster/mapping/pci" => pci_mappings(ctx),
        other => Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, format!("Method '{other}' not implemented"))),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn random_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    let h = hex::encode(bytes);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn random_mac() -> String {
    let bytes: [u8; 3] = rand::random();
    format!(
        "BC:24:11:{:02X}:{:02X}:{:02X}",
        bytes[0], bytes[1], bytes[2]
    )
}

/// Start a task: record it as running, run `work` after the configured duration, then record
/// how it ended. Returns the UPID.
fn start_task<F>(
    ctx: &Ctx,
    cluster: &mut Cluster,
    node: &str,
    kind: &str,
    id: &str,
    work: F,
) -> String
where
    F: Future<Output = Result<Vec<String>, String>> + Send + 'static,
{
    cluster.next_pid += 1;
    let pid = cluster.next_pid;
    let starttime = now();
    let pstart = (starttime % 0xFFFF_FFFF) as u32;
    let upid = format!(
        "UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{id}:{}:",
        ctx.user
    );
    cluster.tasks.insert(
        upid.clone(),
        Task {
            upid: upid.clone(),
            node: node.to_string(),
            pid,
            pstart,
            starttime,
            kind: kind.to_string(),
            id: id.to_string(),
            user: ctx.user.clone(),
            running: true,
            exitstatus: None,
            log: Vec::new(),
        },
    );
    let shared = Arc::clone(&ctx.shared);
    let duration = shared
        .config
        .task_duration
        .unwrap_or_else(|| nominal_duration(kind, ctx))
        .mul_f64(shared.config.task_scale.max(0.0));
    let task_upid = upid.clone();
    // An injected failure: the task does nothing and fails; a VM it was creating (whose id was
    // claimed with a lock before the task forked) is removed again, as Proxmox cleans up.
    let injected = ctx.task_error.clone();
    let placeholder = match kind {
        "qmcreate" => Some(ctx.vmid()),
        "qmclone" => ctx.get("newid").and_then(|v| v.parse::<u32>().ok()),
        _ => None,
    };
    // Allocating volumes takes each storage's lock in turn (pve-storage `vdisk_alloc` under
    // `cluster_lock_storage`): a task queues behind allocations already reserved there, and
    // gives up when its wait would pass the lock time-out.
    let allocations = storage_allocations(ctx, cluster, node, kind);
    let lock = reserve_storage_locks(&shared, &allocations, node);
    // A download reports its progress in its log as it goes, as wget does under Proxmox.
    let progress_kind = kind == "download";
    let runner = async move {
        let (waited, lock_failure) = lock;
        tokio::time::sleep(waited).await;
        if progress_kind && lock_failure.is_none() {
            for percent in [25u32, 50, 75] {
                tokio::time::sleep(duration / 4).await;
                shared.mutate(|cluster| {
                    if let Some(task) = cluster.tasks.get_mut(&task_upid) {
                        task.log.push(format!("downloading: {percent}% done"));
                    }
                });
            }
            tokio::time::sleep(duration / 4).await;
        } else {
            tokio::time::sleep(duration).await;
        }
        let injected = injected.or(lock_failure);
        let result = match injected {
            None => work.await,
            Some(message) => {
                if let Some(vmid) = placeholder {
                    shared.mutate(|c| {
                        if c.vms.get(&vmid).is_some_and(|vm| vm.lock().is_some()) {
                            c.remove_vm(vmid);
                        }
                    });
                }
                Err(message)
            }
        };
        shared.mutate(|cluster| {
            if let Some(task) = cluster.tasks.get_mut(&task_upid) {
                task.running = false;
                match result {
                    Ok(lines) => {
                        task.log.extend(lines);
                        task.log.push("TASK OK".into());
                        task.exitstatus = Some("OK".into());
                    }
                    Err(message) => {
                        task.log.push(format!("TASK ERROR: {message}"));
                        task.exitstatus = Some(message);
                    }
                }
            }
        });
    };
    if let Ok(mut tasks) = ctx.shared.running_tasks.lock() {
        // Reap finished runners so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(runner);
    }
    upid
}

/// The storages a task allocates volumes on, with how many: a create's disks, a full clone's
/// copies (a linked clone allocates its cloud-init drive only), a download's or upload's file.
fn storage_allocations(
    ctx: &Ctx,
    cluster: &Cluster,
    node: &str,
    kind: &str,
) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    let mut count = |storage: &str| {
        let key = match cluster.storage(storage) {
            Some(def) if def.shared => storage.to_string(),
            _ => format!("{storage}@{node}"),
        };
        *out.entry(key).or_default() += 1;
    };
    match kind {
        "download" | "imgcopy" => {
            if let Some(storage) = ctx.get("storage") {
                count(storage);
            }
        }
        "qmcreate" => {
            for (key, value) in ctx.params.iter().filter(|(k, _)| is_disk_key(k)) {
                let _ = key;
                if let Some((storage, rest)) =
                    Props::parse(value, "file").first.as_deref().and_then(|f| {
                        f.split_once(':')
                            .map(|(s, r)| (s.to_string(), r.to_string()))
                    })
                    && (rest == "cloudinit" || rest.parse::<f64>().is_ok())
                {
                    count(&storage);
                }
            }
        }
        "qmclone" => {
            let full = ctx.flag("full").unwrap_or(false);
            if let Some(source) = cluster.vms.get(&ctx.vmid()) {
                for (key, value) in source.config.iter().filter(|(k, _)| is_disk_key(k)) {
                    let linked_copy = value.contains("cloudinit") || key.starts_with("tpmstate");
                    if !full && !linked_copy {
                        continue;
                    }
                    let storage = ctx
                        .get("storage")
                        .filter(|_| full)
                        .map(str::to_string)
                        .or_else(|| disk_storage(value));
                    if let Some(storage) = storage {
                        count(&storage);
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// Reserve the storages' locks for a task's allocations: how long it waits for them, and the
/// failure when a wait passes the time-out.
fn reserve_storage_locks(
    shared: &Shared,
    allocations: &BTreeMap<String, usize>,
    node: &str,
) -> (std::time::Duration, Option<String>) {
    let config = &shared.config;
    let scale = config.task_scale.max(0.0);
    let hold = match (config.storage_lock_hold, config.task_duration) {
        (Some(hold), _) => hold,
        (None, Some(_)) => return (std::time::Duration::ZERO, None),
        (None, None) => std::time::Duration::from_millis(1_500).mul_f64(scale),
    };
    let timeout = config
        .storage_lock_timeout
        .unwrap_or_else(|| std::time::Duration::from_secs(10).mul_f64(scale));
    if hold.is_zero() || allocations.is_empty() {
        return (std::time::Duration::ZERO, None);
    }
    let Ok(mut locks) = shared.storage_locks.lock() else {
        return (std::time::Duration::ZERO, None);
    };
    let now = tokio::time::Instant::now();
    let mut waited = std::time::Duration::ZERO;
    for (key, volumes) in allocations {
        let free_at = locks.get(key).copied().unwrap_or(now).max(now);
        let wait = free_at - now;
        if wait > timeout {
            shared
                .lock_timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let storage = key.split('@').next().unwrap_or(key);
            let message = if key.contains('@') {
                format!(
                    "can't lock file '/var/lock/pve-manager/pve-storage-{storage}' - got timeout"
                )
            } else {
                format!("cfs-lock 'storage-{storage}' error: got lock request timeout")
            };
            let _ = node;
            return (timeout, Some(message));
        }
        locks.insert(key.clone(), free_at + hold * (*volumes as u32));
        waited = waited.max(wait + hold * (*volumes as u32));
    }
    (waited, None)
}

/// How long a task of this kind takes on real hardware, roughly (scaled by `task_scale`).
fn nominal_duration(kind: &str, ctx: &Ctx) -> std::time::Duration {
    let millis = match kind {
        "qmclone" if ctx.flag("full") == Some(false) => 1_500,
        "qmclone" => 12_000,
        "qmcreate" => 4_000,
        "download" => 30_000,
        "imgcopy" => 5_000,
        "qmtemplate" => 2_000,
        "qmstart" => 1_500,
        "qmshutdown" => 4_000,
        "qmdestroy" => 2_000,
        "resize" => 1_000,
        _ => 500,
    };
    std::time::Duration::from_millis(millis)
}

/// `GET /access/permissions`: the caller's privileges per ACL path (or another user's, for
/// callers with `Sys.Audit` on `/access`, or the caller's own tokens).
fn permissions(ctx: &Ctx) -> Reply {
    let target = ctx.get("userid").unwrap_or(&ctx.user).to_string();
    let own_user = ctx
        .user
        .split_once('!')
        .map_or(ctx.user.as_str(), |(u, _)| u);
    let allowed = target == ctx.user
        || target
            .split_once('!')
            .is_some_and(|(user, _)| user == own_user && !ctx.user.contains('!'))
        || ctx.allowed("/access", &["Sys.Audit"], false);
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Permission check failed (/access, Sys.Audit)",
        ));
    }
    data(ctx.shared.access.permissions_dump(&target, ctx.get("path")))
}

/// Put a new VM into a pool (create and clone take `pool`); the pool must exist.
fn join_pool(c: &mut Cluster, pool: Option<&str>, vmid: u32) -> Result<(), ApiError> {
    let Some(pool) = pool else {
        return Ok(());
    };
    let members = c
        .pools
        .get_mut(pool)
        .ok_or_else(|| ApiError::fail(format!("pool '{pool}' does not exist")))?;
    members.vms.insert(vmid);
    Ok(())
}

/// `GET /pools`: the pools the caller may audit (or one, with `poolid`, with its members).
fn pools_list(ctx: &Ctx) -> Reply {
    ctx.shared.read(|c| {
        let wanted = ctx.get("poolid");
        if let Some(id) = wanted
            && !c.pools.contains_key(id)
        {
            return Err(ApiError::fail(format!("pool '{id}' does not exist")));
        }
        let list: Vec<Value> = c
            .pools
            .iter()
            .filter(|(id, _)| wanted.is_none_or(|w| w == id.as_str()))
            .filter(|(id, _)| ctx.allowed(&format!("/pool/{id}"), &["Pool.Audit"], false))
            .map(|(id, pool)| {
                let mut entry = json!({"poolid": id});
                if let Some(comment) = &pool.comment {
                    entry["comment"] = json!(comment);
                }
                if wanted.is_some() {
                    entry["members"] = Value::Array(
                        pool.vms
                            .iter()
                            .filter_map(|vmid| c.vms.get(vmid))
                            .map(|vm| json!({"id": format!("qemu/{}", vm.vmid), "type": "qemu", "vmid": vm.vmid, "node": vm.node}))
                            .collect(),
                    );
                }
                entry
            })
            .collect();
        data(Value::Array(list))
    })
}

/// `POST /pools`.
fn pool_create(ctx: &Ctx) -> Reply {
    let id = ctx.req("poolid").to_string();
    ctx.shared.mutate(|c| {
        if c.pools.contains_key(&id) {
            return Err(ApiError::fail(format!(
                "create failed - pool '{id}' already exists"
            )));
        }
        c.pools.insert(
            id,
            state::Pool {
                comment: ctx.get("comment").map(str::to_string),
                vms: Default::default(),
            },
        );
        data(Value::Null)
    })
}

/// `PUT /pools`: add VMs (moving them from another pool only with `allow-move`), or remove
/// them with `delete`.
fn pool_update(ctx: &Ctx) -> Reply {
    let id = ctx.req("poolid").to_string();
    let vmids: Vec<u32> = ctx
        .get("vms")
        .map(|v| {
            v.split([',', ';', ' '])
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for vmid in &vmids {
        ctx.require(&format!("/vms/{vmid}"), &["VM.Allocate"])?;
    }
    ctx.shared.mutate(|c| {
        if !c.pools.contains_key(&id) {
            return Err(ApiError::fail(format!("pool '{id}' does not exist")));
        }
        let delete = ctx.flag("delete").unwrap_or(false);
        for vmid in &vmids {
            if !c.vms.contains_key(vmid) {
                return Err(ApiError::fail(format!("no such VMID '{vmid}'")));
            }
            let current = c.pool_of(*vmid).map(str::to_string);
            if delete {
                if let Some(pool) = c.pools.get_mut(&id) {
                    pool.vms.remove(vmid);
                }
                continue;
            }
            match current {
                Some(other) if other == id => {}
                Some(other) if !ctx.flag("allow-move").unwrap_or(false) => {
                    return Err(ApiError::fail(format!(
                        "VM {vmid} belongs already to pool '{other}'"
                    )));
                }
                Some(other) => {
                    if let Some(pool) = c.pools.get_mut(&other) {
                        pool.vms.remove(vmid);
                    }
                    if let Some(pool) = c.pools.get_mut(&id) {
                        pool.vms.insert(*vmid);
                    }
                }
                None => {
                    if let Some(pool) = c.pools.get_mut(&id) {
                        pool.vms.insert(*vmid);
                    }
                }
            }
        }
        if let Some(comment) = ctx.get("comment")
            && let Some(pool) = c.pools.get_mut(&id)
        {
            pool.comment = Some(comment.to_string());
        }
        data(Value::Null)
    })
}

fn missing_vm(node: &str, vmid: u32) -> ApiError {
    ApiError::fail(format!(
        "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
    ))
}

fn vm_on<'a>(cluster: &'a Cluster, node: &str, vmid: u32) -> Result<&'a Vm, ApiError> {
    cluster
        .vms
        .get(&vmid)
        .filter(|vm| vm.node == node)
        .ok_or_else(|| missing_vm(node, vmid))
}

fn check_unlocked(vm: &Vm) -> Result<(), ApiError> {
    match vm.lock() {
        Some(lock) => Err(ApiError::fail(format!("VM is locked ({lock})"))),
        None => Ok(()),
    }
}

fn check_digest(ctx: &Ctx, vm: &Vm) -> Result<(), ApiError> {
    match ctx.get("digest") {
        Some(digest) if digest != vm.digest() => Err(ApiError::fail(
            "checksum mismatch (file change by other user?)",
        )),
        _ => Ok(()),
    }
}

const DISK_PREFIXES: [&str; 4] = ["scsi", "virtio", "sata", "ide"];

fn is_disk_key(key: &str) -> bool {
    key == "efidisk0"
        || key == "tpmstate0"
        || DISK_PREFIXES.iter().any(|p| {
            key.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

fn is_net_key(key: &str) -> bool {
    key.strip_prefix("net")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Re-print a NIC as Proxmox stores it: `<model>=<MAC>,key=value…`, generating a MAC if needed.
fn canonical_net(value: &str, new_mac: bool) -> String {
    let mut model = None;
    let mut mac = None;
    let mut rest = BTreeMap::new();
    for item in value.split(',').filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some(("model", m)) => model = Some(m.to_string()),
            Some(("macaddr", m)) => mac = Some(m.to_ascii_uppercase()),
            Some((k, m)) if NIC_MODELS.contains(&k) => {
                model = Some(k.to_string());
                mac = Some(m.to_ascii_uppercase());
            }
            Some((k, v)) => {
                rest.insert(k.to_string(), v.to_string());
            }
            None => model = Some(item.to_string()),
        }
    }
    let mac = if new_mac {
        random_mac()
    } else {
        mac.unwrap_or_else(random_mac)
    };
    let mut out = format!("{}={mac}", model.unwrap_or_else(|| "virtio".into()));
    for (k, v) in rest {
        out.push_str(&format!(",{k}={v}"));
    }
    out
}

/// Proxmox stores cloud-init passwords hashed (crypt); the simulator keeps a salted SHA-256.
fn hash_password(password: &str) -> String {
    use sha2::Digest as _;
    let salt: [u8; 8] = rand::random();
    format!(
        "$5${}${}",
        hex::encode(salt),
        hex::encode(sha2::Sha256::digest(
            [&salt[..], password.as_bytes()].concat()
        ))
    )
}

fn normalize_tags(value: &str) -> String {
    let mut tags: Vec<String> = value
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    tags.sort();
    tags.dedup();
    tags.join(";")
}

/// Storage id of a disk's volume (`local-lvm` in `local-lvm:vm-1-disk-0,size=2G`).
fn disk_storage(value: &str) -> Option<String> {
    let file = Props::parse(value, "file").first?;
    file.split_once(':').map(|(s, _)| s.to_string())
}

/// Check, before a task forks, that every storage a new disk names exists and holds images.
/// What qemu-server's `check_vm_modify_config_perm` and friends ask of a create or config
/// change: each option's privilege on the VM, space on every storage a disk is allocated on
/// (and read access to an `import-from` source), `SDN.Use` on each bridge, `Mapping.Use` on each
/// PCI mapping, and root for raw PCI devices.
fn check_config_permissions(ctx: &Ctx, vmid: u32, deleted: &[String]) -> Result<(), ApiError> {
    let vm_path = format!("/vms/{vmid}");
    let options = ctx
        .params
        .keys()
        .filter(|k| !CONTROL.contains(&k.as_str()))
        .chain(deleted.iter());
    for option in options {
        ctx.require(&vm_path, &[access::config_privilege(option)])?;
    }
    for (key, value) in ctx
        .params
        .iter()
        .filter(|(k, _)| !CONTROL.contains(&k.as_str()))
    {
        let props = Props::parse(value, if is_net_key(key) { "model" } else { "file" });
        if is_disk_key(key) {
            if let Some((storage, rest)) = props.first.as_deref().and_then(|f| f.split_once(':'))
                && (rest == "cloudinit" || rest.parse::<f64>().is_ok())
            {
                ctx.require(&format!("/storage/{storage}"), &["Datastore.AllocateSpace"])?;
            }
            if let Some((storage, _)) = props
                .rest
                .get("import-from")
                .and_then(|f| f.split_once(':'))
            {
                ctx.require_any(
                    &format!("/storage/{storage}"),
                    &["Datastore.Audit", "Datastore.AllocateSpace"],
                )?;
            }
        } else if is_net_key(key) {
            if let Some(bridge) = props.rest.get("bridge") {
                ctx.require(&format!("/sdn/zones/localnetwork/{bridge}"), &["SDN.Use"])?;
            }
        } else if key.starts_with("hostpci") {
            let props = Props::parse(value, "host");
            if let Some(mapping) = props.rest.get("mapping") {
                ctx.require(&format!("/mapping/pci/{mapping}"), &["Mapping.Use"])?;
            } else if ctx.user != "root@pam" {
                return Err(ApiError::fail(format!(
                    "only root can set '{key}' config for non-mapped devices"
                )));
            }
        }
    }
    Ok(())
}

fn check_disk_storages(cluster: &Cluster, params: &Params) -> Result<(), ApiError> {
    for (key, value) in params.iter().filter(|(k, _)| is_disk_key(k)) {
        let Some(file) = Props::parse(value, "file").first else {
            continue;
        };
        if matches!(file.as_str(), "none" | "cdrom") {
            continue;
        }
        let Some((storage, rest)) = file.split_once(':') else {
            return Err(ApiError::param(
                key,
                format!("unable to parse volume ID '{file}'"),
            ));
        };
        let Some(def) = cluster.storage(storage) else {
            return Err(ApiError::fail(format!(
                "storage '{storage}' does not exist"
            )));
        };
        let allocates = rest == "cloudinit" || rest.parse::<f64>().is_ok();
        if allocates && !def.has_content("images") {
            return Err(ApiError::fail(format!(
                "storage '{storage}' does not support vm images"
            )));
        }
    }
    Ok(())
}

/// Allocate what a disk option asks for and return the value Proxmox stores.
fn allocate_disk(
    cluster: &mut Cluster,
    node: &str,
    vmid: u32,
    key: &str,
    value: &str,
    allocated: &mut Vec<String>,
) -> Result<String, String> {
    let mut props = Props::parse(value, "file");
    let file = props.first.clone().unwrap_or_default();
    let Some((storage, rest)) = file.split_once(':') else {
        return Ok(value.to_string());
    };
    if rest.starts_with("iso/") && cluster.find_volume(node, &file).is_none() {
        return Err(format!("volume '{file}' does not exist"));
    }
    let storage = storage.to_string();
    let file_based = cluster.storage(&storage).is_some_and(|s| s.file_based());
    let vol_node = cluster.volume_node(&storage, node);
    if rest == "cloudinit" {
        let volid = if file_based {
            format!("{storage}:{vmid}/vm-{vmid}-cloudinit.qcow2")
        } else {
            format!("{storage}:vm-{vmid}-cloudinit")
        };
        let format = if file_based { "qcow2" } else { "raw" }.to_string();
        cluster.volumes.push(Volume::vm_disk(
            vol_node,
            storage.clone(),
            volid.clone(),
            format,
            4 << 20,
            vmid,
            None,
        ));
        allocated.push(volid.clone());
        props.first = Some(volid);
        props.rest.insert("media".into(), "cdrom".into());
        return Ok(props.print());
    }
    let Ok(gib) = rest.parse::<f64>() else {
        return Ok(value.to_string());
    };
    let size = if let Some(source) = props.rest.remove("import-from") {
        let volume = cluster
            .find_volume(node, &source)
            .ok_or_else(|| format!("volume '{source}' does not exist"))?;
        if !matches!(volume.content.as_str(), "import" | "images") {
            return Err(format!(
                "'{source}' is not a valid source to import from: content type '{}'",
                volume.content
            ));
        }
        volume.virtual_size
    } else if key == "efidisk0" || key == "tpmstate0" {
        4 << 20
    } else {
        (gib * (1u64 << 30) as f64) as u64
    };
    let (volid, format) = cluster.next_disk_volid(node, &storage, vmid);
    cluster.volumes.push(Volume::vm_disk(
        vol_node,
        storage,
        volid.clone(),
        format,
        size,
        vmid,
        None,
    ));
    allocated.push(volid.clone());
    props.first = Some(volid);
    props.rest.insert("size".into(), print_size(size));
    Ok(props.print())
}

/// Control parameters of create/update that are not config options.
const CONTROL: [&str; 16] = [
    "node",
    "vmid",
    "start",
    "pool",
    "storage",
    "unique",
    "archive",
    "force",
    "live-restore",
    "bwlimit",
    "import-working-storage",
    "ha-managed",
    "digest",
    "delete",
    "revert",
    "background_delay",
];

fn cluster_resources(ctx: &Ctx) -> Reply {
    let kind = ctx.get("type");
    data(ctx.shared.read(|c| {
        let mut out = Vec::new();
        if kind.is_none() || kind == Some("vm") {
            for vm in c.vms.values() {
                if !ctx.allowed(&format!("/vms/{}", vm.vmid), &["VM.Audit"], false) {
                    continue;
                }
                let config = vm.effective_config();
                let mut entry = json!({
                    "id": format!("qemu/{}", vm.vmid), "type": "qemu", "vmid": vm.vmid, "node": vm.node,
                    "status": if vm.running {"running"} else {"stopped"},
                    "template": u8::from(vm.is_template()),
                    "maxmem": config.get("memory").and_then(|m| m.parse::<u64>().ok()).unwrap_or(512) << 20,
                    "maxcpu": config.get("cores").and_then(|m| m.parse::<u64>().ok()).unwrap_or(1),
                });
                if let Some(name) = config.get("name") {
                    entry["name"] = json!(name);
                }
                if let Some(tags) = config.get("tags") {
                    entry["tags"] = json!(tags);
                }
                if let Some(lock) = vm.lock() {
                    entry["lock"] = json!(lock);
                }
                if let Some(pool) = c.pool_of(vm.vmid) {
                    entry["pool"] = json!(pool);
                }
                out.push(entry);
            }
        }
        if kind.is_none() || kind == Some("node") {
            for node in &c.nodes {
                out.push(json!({"id": format!("node/{}", node.name), "type": "node", "node": node.name, "status": if node.online {"online"} else {"offline"}}));
            }
        }
        if kind.is_none() || kind == Some("storage") {
            for node in &c.nodes {
                for storage in &c.storages {
                    if !ctx.allowed(&format!("/storage/{}", storage.id), STORAGE_READ, true) {
                        continue;
                    }
                    out.push(json!({
                        "id": format!("storage/{}/{}", node.name, storage.id), "type": "storage", "node": node.name,
                        "storage": storage.id, "plugintype": storage.kind, "content": storage.content.join(","),
                        "shared": u8::from(storage.shared), "status": "available",
                        "maxdisk": storage.total, "disk": c.used_bytes(&node.name, &storage.id),
                    }));
                }
            }
        }
        Value::Array(out)
    }))
}

fn next_id(ctx: &Ctx) -> Reply {
    ctx.shared.read(
        |c| match ctx.get("vmid").and_then(|v| v.parse::<u32>().ok()) {
            Some(vmid) if c.vms.contains_key(&vmid) => {
                Err(ApiError::param("vmid", format!("VM {vmid} already exists")))
            }
            Some(vmid) => data(json!(vmid)),
            None => data(json!(
                (100u32..).find(|id| !c.vms.contains_key(id)).unwrap_or(100)
            )),
        },
    )
}

fn node_storages(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    data(ctx.shared.read(|c| {
        Value::Array(
            c.storages
                .iter()
                .filter(|s| ctx.allowed(&format!("/storage/{}", s.id), STORAGE_READ, true))
                .filter(|s| ctx.get("content").is_none_or(|want| s.has_content(want)))
                .filter(|s| ctx.get("storage").is_none_or(|want| s.id == want))
                .filter(|s| ctx.flag("enabled") != Some(true) || c.storage_state(&node, &s.id).0)
                .map(|s| {
                    let used = c.used_bytes(&node, &s.id);
                    let (enabled, active) = c.storage_state(&node, &s.id);
                    if !active {
                        // pvesm reports no usage for a storage it cannot activate.
                        return json!({
                            "storage": s.id, "type": s.kind, "content": s.content.join(","), "shared": u8::from(s.shared),
                            "active": 0, "enabled": u8::from(enabled),
                        });
                    }
                    json!({
                        "storage": s.id, "type": s.kind, "content": s.content.join(","), "shared": u8::from(s.shared),
                        "active": 1, "enabled": 1, "total": s.total, "used": used, "avail": s.total.saturating_sub(used),
                        "used_fraction": used as f64 / s.total as f64,
                    })
                })
                .collect(),
        )
    }))
}

/// Either privilege lets a caller see a storage and read its volumes.
const STORAGE_READ: &[&str] = &["Datastore.Audit", "Datastore.AllocateSpace"];

fn volume_json(v: &Volume) -> Value {
    let mut entry = json!({"volid": v.volid, "content": v.content, "format": v.format, "size": v.size, "ctime": v.ctime});
    if let Some(vmid) = v.vmid {
        entry["vmid"] = json!(vmid);
    }
    if let Some(parent) = &v.parent {
        entry["parent"] = json!(parent);
    }
    if let Some(notes) = &v.notes {
        entry["notes"] = json!(notes);
    }
    entry
}

fn storage_of(c: &Cluster, storage: &str) -> Result<(), ApiError> {
    c.storage(storage)
        .map(|_| ())
        .ok_or_else(|| ApiError::fail(format!("storage '{storage}' does not exist")))
}

fn storage_content(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let storage = ctx.req("storage").to_string();
    ctx.shared.read(|c| {
        storage_of(c, &storage)?;
        let key = c.volume_node(&storage, &node);
        let vmid = ctx.get("vmid").and_then(|v| v.parse::<u32>().ok());
        let mut volumes: Vec<Value> = c
            .volumes
            .iter()
            .filter(|v| v.storage == storage && v.node == key)
            .filter(|v| ctx.get("content").is_none_or(|want| v.content == want))
            .filter(|v| vmid.is_none_or(|id| v.vmid == Some(id)))
            .map(volume_json)
            .collect();
        if ctx.get("content").is_none_or(|want| want == "snippets") && vmid.is_none() {
            volumes.extend(snippet_files(&ctx.shared, &node, &storage));
        }
        data(Value::Array(volumes))
    })
}

/// The snippets on a node's storage: the files in the directory registered for its `local`
/// (`SimConfig::snippets_dirs`), as pve-storage lists them (format `snippet`).
fn snippet_files(shared: &Shared, node: &str, storage: &str) -> Vec<Value> {
    let Some(dir) = shared
        .config
        .snippets_dirs
        .get(node)
        .filter(|_| storage == "local")
    else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<Value> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let meta = entry.metadata().ok()?;
            let ctime = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or_default();
            Some(json!({"volid": format!("{storage}:snippets/{name}"), "content": "snippets", "format": "snippet", "size": meta.len(), "ctime": ctime}))
        })
        .collect();
    files.sort_by(|a, b| a["volid"].as_str().cmp(&b["volid"].as_str()));
    files
}

/// The first volume a `cicustom` value names that is not a snippet on the VM's node, with
/// qemu-server's complaint about it.
fn missing_snippet(
    c: &Cluster,
    dirs: &BTreeMap<String, std::path::PathBuf>,
    node: &str,
    cicustom: &str,
) -> Option<String> {
    for item in cicustom.split(',') {
        let Some((_, volid)) = item.split_once('=') else {
            continue;
        };
        let (storage, path) = volid.split_once(':').unwrap_or((volid, ""));
        if c.storage(storage).is_none() {
            return Some(format!("storage '{storage}' does not exist"));
        }
        let Some(name) = path.strip_prefix("snippets/") else {
            return Some(format!("{volid} is not in the snippets directory"));
        };
        let exists = storage == "local"
            && !name.contains('/')
            && dirs.get(node).is_some_and(|dir| dir.join(name).is_file());
        if !exists {
            return Some(format!("volume '{volid}' does not exist"));
        }
    }
    None
}

/// `GET /storage/{storage}`: the storage's section of `storage.cfg`.
fn storage_config(ctx: &Ctx) -> Reply {
    let storage = ctx.req("storage").to_string();
    ctx.shared.read(|c| {
        let s = c
            .storage(&storage)
            .ok_or_else(|| ApiError::fail(format!("storage '{storage}' does not exist")))?;
        let mut config = json!({
            "storage": s.id, "type": s.kind, "content": s.content.join(","),
            "digest": hex::encode(<sha1::Sha1 as sha1::Digest>::digest(s.id.as_bytes())),
        });
        if s.shared {
            config["shared"] = json!(1);
        }
        match s.kind.as_str() {
            "dir" | "btrfs" if s.id == "local" => config["path"] = json!("/var/lib/vz"),
            "dir" | "btrfs" => config["path"] = json!(format!("/srv/{}", s.id)),
            "nfs" | "cifs" | "cephfs" => config["path"] = json!(format!("/mnt/pve/{}", s.id)),
            "lvmthin" => {
                config["vgname"] = json!("pve");
                config["thinpool"] = json!("data");
            }
            _ => {}
        }
        if c.disabled_storages.contains(&s.id) {
            config["disable"] = json!(1);
        }
        data(config)
    })
}

/// The volume a `{volume}` path parameter names: a full volid, or a name on `{storage}`.
fn volume_param(ctx: &Ctx) -> String {
    let volume = ctx.req("volume");
    if volume.contains(':') {
        volume.to_string()
    } else {
        format!("{}:{volume}", ctx.req("storage"))
    }
}

fn volume_info(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let volid = volume_param(ctx);
    ctx.require_any(&format!("/storage/{}", ctx.req("storage")), STORAGE_READ)?;
    ctx.shared.read(|c| {
        let v = c.find_volume(&node, &volid).ok_or_else(|| ApiError::fail(format!("volume '{volid}' does not exist")))?;
        let mut info = json!({"path": format!("/var/lib/vz/{}", v.volid.split_once(':').map(|(_, n)| n).unwrap_or_default()), "size": v.size, "used": v.size, "format": v.format});
        if let Some(notes) = &v.notes {
            info["notes"] = json!(notes);
        }
        data(info)
    })
}

fn volume_update(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let volid = volume_param(ctx);
    ctx.require_any(&format!("/storage/{}", ctx.req("storage")), STORAGE_READ)?;
    ctx.shared.mutate(|c| {
        let v = c
            .find_volume_mut(&node, &volid)
            .ok_or_else(|| ApiError::fail(format!("volume '{volid}' does not exist")))?;
        if let Some(notes) = ctx.get("notes") {
            // pve-storage keeps notes only for backup archives.
            if v.content != "backup" {
                return Err(ApiError::fail("only backups can have notes"));
            }
            v.notes = Some(notes.to_string()).filter(|n| !n.is_empty());
        }
        data(Value::Null)
    })
}

fn volume_delete(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let volid = volume_param(ctx);
    ctx.require(
        &format!("/storage/{}", ctx.req("storage")),
        &["Datastore.Allocate"],
    )?;
    let shared = Arc::clone(&ctx.shared);
    ctx.shared.mutate(|c| {
        let v = c
            .find_volume(&node, &volid)
            .ok_or_else(|| ApiError::fail(format!("volume '{volid}' does not exist")))?;
        if let Some(owner) = v.vmid
            && c.vms.contains_key(&owner)
            && v.content == "images"
        {
            return Err(ApiError::fail(format!(
                "unable to delete '{volid}' - volume is used by VM {owner}"
            )));
        }
        let (task_node, task_volid) = (node.clone(), volid.clone());
        let upid = start_task(ctx, c, &node, "imgdel", "", async move {
            shared.mutate(|c| c.remove_volume(&task_node, &task_volid));
            Ok(vec![format!("removed volume '{task_volid}'")])
        });
        data(json!(upid))
    })
}

/// File name rules of upload and download-url (pve-storage `API2/Storage/Status.pm`).
fn check_file_name(content: &str, filename: &str) -> Result<(), ApiError> {
    let ok_chars = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.+=_".contains(c))
    };
    let ok = match content {
        "iso" => filename.ends_with(".iso") || filename.ends_with(".img"),
        "vztmpl" => [".tar", ".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2"]
            .iter()
            .any(|e| filename.ends_with(e)),
        "import" => [".ova", ".qcow2", ".raw", ".vmdk"]
            .iter()
            .any(|e| filename.strip_suffix(e).is_some_and(ok_chars)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::param(
            "filename",
            format!("invalid filename or wrong extension for content type '{content}'"),
        ))
    }
}

fn is_loopback(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|host| {
            host == "localhost"
                || host == "[::1]"
                || host == "::1"
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}

fn digest_hex(algorithm: &str, bytes: &[u8]) -> Option<String> {
    use sha2::Digest as _;
    Some(match algorithm {
        "sha256" => hex::encode(sha2::Sha256::digest(bytes)),
        "sha512" => hex::encode(sha2::Sha512::digest(bytes)),
        "sha1" => hex::encode(sha1::Sha1::digest(bytes)),
        "sha224" => hex::encode(sha2::Sha224::digest(bytes)),
        "sha384" => hex::encode(sha2::Sha384::digest(bytes)),
        _ => return None,
    })
}

/// Virtual size of a qcow2 image (header bytes 24..32, big-endian), else the file size.
fn virtual_size(bytes: &[u8]) -> u64 {
    if bytes.len() >= 32 && &bytes[..4] == b"QFI\xfb" {
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[24..32]);
        return u64::from_be_bytes(size);
    }
    bytes.len() as u64
}

fn download_url(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let storage = ctx.req("storage").to_string();
    let content = ctx.req("content").to_string();
    let filename = ctx.req("filename").to_string();
    let url = ctx.req("url").to_string();
    let checksum = ctx.get("checksum").map(str::to_ascii_lowercase);
    let algorithm = ctx.get("checksum-algorithm").map(str::to_string);
    match (&checksum, &algorithm) {
        (Some(_), None) => {
            return Err(ApiError::param(
                "checksum-algorithm",
                "'checksum-algorithm' is required when 'checksum' is set",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::param(
                "checksum",
                "'checksum' is required when 'checksum-algorithm' is set",
            ));
        }
        _ => {}
    }
    check_file_name(&content, &filename)?;
    let shared = Arc::clone(&ctx.shared);
    ctx.shared.mutate(|c| {
        let def = c.storage(&storage).ok_or_else(|| ApiError::fail(format!("storage '{storage}' does not exist")))?;
        if !def.has_content(&content) {
            return Err(ApiError::fail(format!("storage '{storage}' is not configured for content-type '{content}'")));
        }
        let compression = ctx.get("compression").map(str::to_string);
        let volid = format!("{storage}:{content}/{filename}");
        let vol_node = c.volume_node(&storage, &node);
        let task_node = node.clone();
        let upid = start_task(ctx, c, &node, "download", &storage, async move {
            if compression.is_some() && content != "iso" {
                return Err("decompression is only supported for content type 'iso'".to_string());
            }
            let existing = shared.read(|c| c.find_volume(&task_node, &volid).map(|v| v.checksums.clone()));
            if let Some(known) = existing {
                return match (&checksum, &algorithm) {
                    (Some(want), Some(algo)) if known.get(algo) == Some(want) => Ok(vec![format!("file '{filename}' already exists and its checksum matches, skipping download")]),
                    (Some(_), Some(_)) => Err(format!("checksum mismatch: file '{filename}' exists with different content")),
                    _ => Err(format!("refusing to override existing file '{filename}'")),
                };
            }
            let mut log = vec![format!("downloading {url} to {filename}")];
            let (size, vsize, checksums) = if is_loopback(&url) {
                let body = reqwest::get(&url).await.and_then(reqwest::Response::error_for_status).map_err(|e| format!("download failed: {e}"))?;
                let bytes = body.bytes().await.map_err(|e| format!("download failed: {e}"))?;
                let mut sums = BTreeMap::new();
                for algo in ["sha256", "sha512"] {
                    sums.insert(algo.to_string(), digest_hex(algo, &bytes).unwrap_or_default());
                }
                if let (Some(want), Some(algo)) = (&checksum, &algorithm) {
                    let got = digest_hex(algo, &bytes).unwrap_or_default();
                    if &got != want {
                        return Err(format!("checksum mismatch: got '{got}' != expected '{want}'"));
                    }
                    sums.insert(algo.clone(), got);
                }
                (bytes.len() as u64, virtual_size(&bytes), sums)
            } else {
                // No internet here: the download is simulated. The file is taken to be what its
                // checksum says; a cloud image of ~400 MiB with a 2 GiB virtual disk.
                let mut sums = BTreeMap::new();
                if let (Some(want), Some(algo)) = (&checksum, &algorithm) {
                    sums.insert(algo.clone(), want.clone());
                }
                log.push("simulated download (no network in the simulator)".into());
                (400 << 20, 2 << 30, sums)
            };
            if let (Some(_), Some(algo)) = (&checksum, &algorithm) {
                log.push(format!("calculating checksum... OK, {algo} checksum verified"));
            }
            shared.mutate(|c| {
                c.volumes.push(Volume::file(vol_node, &volid, &content, size, vsize, checksums))
            });
            log.push(format!("download of '{url}' to '{volid}' finished"));
            Ok(log)
        });
        data(json!(upid))
    })
}

fn upload(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let storage = ctx.req("storage").to_string();
    let content = ctx.req("content").to_string();
    let filename = ctx.req("filename").to_string();
    let checksum = ctx.get("checksum").map(str::to_ascii_lowercase);
    let algorithm = ctx.get("checksum-algorithm").map(str::to_string);
    if checksum.is_some() != algorithm.is_some() {
        return Err(ApiError::param(
            if checksum.is_some() {
                "checksum-algorithm"
            } else {
                "checksum"
            },
            "'checksum' and 'checksum-algorithm' go together",
        ));
    }
    check_file_name(&content, &filename)?;
    let Some(bytes) = ctx.upload.clone() else {
        return Err(ApiError::param(
            "filename",
            "property is missing and it is not optional",
        ));
    };
    let shared = Arc::clone(&ctx.shared);
    ctx.shared.mutate(|c| {
        let def = c
            .storage(&storage)
            .ok_or_else(|| ApiError::fail(format!("storage '{storage}' does not exist")))?;
        if !def.has_content(&content) {
            return Err(ApiError::fail(format!(
                "storage '{storage}' is not configured for content-type '{content}'"
            )));
        }
        if !def.file_based() {
            return Err(ApiError::fail(format!(
                "storage '{storage}' is not a file based storage"
            )));
        }
        let volid = format!("{storage}:{content}/{filename}");
        let vol_node = c.volume_node(&storage, &node);
        let lookup_node = vol_node_or(&vol_node, &node);
        let upid = start_task(ctx, c, &node, "imgcopy", "", async move {
            let mut log = vec![format!(
                "starting file import from: /var/tmp/pveupload-{}",
                hex::encode(&digest_hex("sha256", &bytes).unwrap_or_default()[..8])
            )];
            if let (Some(want), Some(algo)) = (&checksum, &algorithm) {
                let got = digest_hex(algo, &bytes).unwrap_or_default();
                if &got != want {
                    return Err(format!(
                        "checksum mismatch: got '{got}' != expected '{want}'"
                    ));
                }
                log.push(format!(
                    "calculating checksum... OK, {algo} checksum verified"
                ));
            }
            let qcow2 = bytes.len() >= 4 && &bytes[..4] == b"QFI\xfb";
            if content == "import" && filename.ends_with(".qcow2") != qcow2 {
                return Err(format!(
                    "detected format of '{filename}' does not match its extension"
                ));
            }
            let mut checksums = BTreeMap::new();
            for algo in ["sha256", "sha512"] {
                checksums.insert(
                    algo.to_string(),
                    digest_hex(algo, &bytes).unwrap_or_default(),
                );
            }
            shared.mutate(|c| {
                // An existing file of that name is silently replaced, as pve-storage does.
                c.remove_volume(&lookup_node, &volid);
                c.volumes.push(Volume::file(
                    vol_node.clone(),
                    &volid,
                    &content,
                    bytes.len() as u64,
                    virtual_size(&bytes),
                    checksums,
                ));
            });
            log.push(format!("target file: {volid}"));
            Ok(log)
        });
        data(json!(upid))
    })
}

/// The node a volume lookup goes through (shared storages are stored under the empty node).
fn vol_node_or(vol_node: &str, node: &str) -> String {
    if vol_node.is_empty() {
        node.to_string()
    } else {
        vol_node.to_string()
    }
}

fn vm_list(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    data(ctx.shared.read(|c| {
        Value::Array(
            c.vms
                .values()
                .filter(|vm| vm.node == node)
                .filter(|vm| ctx.allowed(&format!("/vms/{}", vm.vmid), &["VM.Audit"], false))
                .map(|vm| {
                    let config = vm.effective_config();
                    let mut entry = json!({"vmid": vm.vmid, "status": if vm.running {"running"} else {"stopped"}, "template": u8::from(vm.is_template())});
                    for key in ["name", "tags", "lock"] {
                        if let Some(value) = config.get(key) {
                            entry[key] = json!(value);
                        }
                    }
                    entry
                })
                .collect(),
        )
    }))
}

fn create_vm(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let vmid = ctx.vmid();
    let params = ctx.params.clone();
    let start = ctx.flag("start").unwrap_or(false);
    let shared = Arc::clone(&ctx.shared);
    match ctx.get("pool") {
        Some(pool) if ctx.allowed(&format!("/pool/{pool}"), &["VM.Allocate"], false) => {}
        _ => ctx.require(&format!("/vms/{vmid}"), &["VM.Allocate"])?,
    }
    check_config_permissions(ctx, vmid, &[])?;
    ctx.shared.mutate(|c| {
        if c.vms.contains_key(&vmid) {
            return Err(ApiError::fail(format!(
                "unable to create VM {vmid}: config file already exists"
            )));
        }
        join_pool(c, ctx.get("pool"), vmid)?;
        check_disk_storages(c, &params)?;
        // The vmid is claimed before the task forks.
        c.vms.insert(
            vmid,
            Vm {
                vmid,
                node: node.clone(),
                config: BTreeMap::from([("lock".to_string(), "create".to_string())]),
                pending: BTreeMap::new(),
                running: false,
            },
        );
        let task_node = node.clone();
        let upid = start_task(ctx, c, &node, "qmcreate", &vmid.to_string(), async move {
            shared.mutate(|c| {
                let mut allocated = Vec::new();
                let result = build_config(c, &task_node, vmid, &params, &mut allocated);
                match result {
                    Ok(config) => {
                        if let Some(vm) = c.vms.get_mut(&vmid) {
                            vm.config = config;
                            vm.running = start;
                        }
                        Ok(vec![format!("VM {vmid} created")])
                    }
                    Err(message) => {
                        // A failed create removes what it allocated, and the config.
                        for volid in allocated {
                            c.remove_volume(&task_node, &volid);
                        }
                        c.remove_vm(vmid);
                        Err(message)
                    }
                }
            })
        });
        data(json!(upid))
    })
}

fn build_config(
    c: &mut Cluster,
    node: &str,
    vmid: u32,
    params: &Params,
    allocated: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut config = BTreeMap::new();
    let mut disk_keys: Vec<&String> = params.keys().filter(|k| is_disk_key(k)).collect();
    // EFI disk first, TPM state last, as Proxmox numbers them.
    disk_keys.sort_by_key(|k| match k.as_str() {
        "efidisk0" => 0,
        "tpmstate0" => 2,
        _ => 1,
    });
    for key in disk_keys {
        let value = allocate_disk(c, node, vmid, key, &params[key], allocated)?;
        config.insert(key.clone(), value);
    }
    for (key, value) in params {
        if CONTROL.contains(&key.as_str()) || is_disk_key(key) {
            continue;
        }
        let value = if is_net_key(key) {
            canonical_net(value, false)
        } else if key == "cipassword" {
            hash_password(value)
        } else {
            value.clone()
        };
        config.insert(key.clone(), value);
    }
    config
        .entry("smbios1".into())
        .or_insert_with(|| format!("uuid={}", random_uuid()));
    config.entry("vmgenid".into()).or_insert_with(random_uuid);
    config.insert(
        "meta".into(),
        format!("creation-qemu=9.2.0,ctime={}", now()),
    );
    Ok(config)
}

fn vm_config(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let vmid = ctx.vmid();
    ctx.shared.read(|c| {
        let vm = vm_on(c, &node, vmid)?;
        let config = if ctx.flag("current") == Some(true) {
            vm.config.clone()
        } else {
            vm.effective_config()
        };
        let mut out = serde_json::Map::new();
        for (key, value) in config {
            // Proxmox never shows the stored password hash.
            let value = if key == "cipassword" {
                "**********".to_string()
            } else {
                value
            };
            let number = matches!(
                key.as_str(),
                // `memory` is a property string since PVE 8.1 (`[current=]<integer>`), so it
                // stays a string, as check_type leaves strings.
                "cores"
                    | "sockets"
                    | "onboot"
                    | "template"
                    | "protection"
                    | "ciupgrade"
                    | "balloon"
            )
            .then(|| value.parse::<i64>().ok())
            .flatten();
            out.insert(key, number.map_or_else(|| json!(value), |n| json!(n)));
        }
        out.insert("digest".into(), json!(vm.digest()));
        data(Value::Object(out))
    })
}

fn vm_pending(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let vmid = ctx.vmid();
    ctx.shared.read(|c| {
        let vm = vm_on(c, &node, vmid)?;
        let mut keys: Vec<&String> = vm.config.keys().chain(vm.pending.keys()).collect();
        keys.sort();
        keys.dedup();
        data(Value::Array(
            keys.into_iter()
                .map(|key| {
                    let mut entry = json!({"key": key});
                    if let Some(value) = vm.config.get(key) {
                        entry["value"] = json!(value);
                    }
                    match vm.pending.get(key) {
                        Some(Some(pending)) => entry["pending"] = json!(pending),
                        Some(None) => entry["delete"] = json!(1),
                        None => {}
                    }
                    entry
                })
                // `config_with_pending_array` walks the loaded config, which carries its
                // digest (qm's `format_pending` skips that key when printing).
                .chain(std::iter::once(
                    json!({"key": "digest", "value": vm.digest()}),
                ))
                .collect(),
        ))
    })
}

/// Options a running VM takes at once; the rest wait for the next start.
fn hotpluggable(key: &str) -> bool {
    matches!(
        key,
        "name"
            | "description"
            | "tags"
            | "onboot"
            | "protection"
            | "ciuser"
            | "cipassword"
            | "sshkeys"
            | "nameserver"
            | "searchdomain"
            | "ciupgrade"
            | "cicustom"
            | "citype"
            | "startup"
    ) || key.starts_with("ipconfig")
        || is_net_key(key)
        || (is_disk_key(key) && key != "efidisk0" && key != "tpmstate0")
}

fn update_config(ctx: &Ctx, asynchronous: bool) -> Reply {
    let node = ctx.node();
    let vmid = ctx.vmid();
    let set: Vec<(String, String)> = ctx
        .params
        .iter()
        .filter(|(k, _)| !CONTROL.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete: Vec<String> = ctx
        .get("delete")
        .map(|d| {
            d.split([',', ';', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if set.is_empty() && delete.is_empty() && ctx.get("revert").is_none() {
        return Err(ApiError::fail("no options specified"));
    }
    check_config_permissions(ctx, vmid, &delete)?;
    let shared = Arc::clone(&ctx.shared);
    let task_node = node.clone();
    let apply = move |c: &mut Cluster| -> Result<(), String> {
        let mut allocated = Vec::new();
        let mut changes = Vec::new();
        for (key, value) in &set {
            let value = if is_disk_key(key) {
                allocate_disk(c, &task_node, vmid, key, value, &mut allocated)?
            } else if is_net_key(key) {
                canonical_net(value, false)
            } else if key == "tags" {
                normalize_tags(value)
            } else if key == "cipassword" {
                hash_password(value)
            } else {
                value.clone()
            };
            changes.push((key.clone(), Some(value)));
        }
        changes.extend(delete.iter().map(|key| (key.clone(), None)));
        let Some(vm) = c.vms.get_mut(&vmid) else {
            return Err(format!("VM {vmid} does not exist"));
        };
        let mut freed = Vec::new();
        for (key, value) in changes {
            if vm.running && !hotpluggable(&key) {
                vm.pending.insert(key, value);
            } else {
                vm.pending.remove(&key);
                let old = match value {
                    Some(value) => vm.config.insert(key.clone(), value),
                    None => vm.config.remove(&key),
                };
                // A replaced or removed cloud-init drive is freed, as qemu-server does.
                if let Some(old) = old
                    && is_disk_key(&key)
                    && vm.config.get(&key) != Some(&old)
                    && let Some(volid) = Props::parse(&old, "file").first
                    && volid.ends_with("-cloudinit") | volid.contains("-cloudinit.")
                {
                    freed.push(volid);
                }
            }
        }
        for volid in freed {
            c.remove_volume(&task_node, &volid);
        }
        Ok(())
    };
    ctx.shared.mutate(|c| {
        let vm = vm_on(c, &node, vmid)?;
        check_unlocked(vm)?;
        check_digest(ctx, vm)?;
        if asynchronous {
            let upid = start_task(ctx, c, &node, "qmconfig", &vmid.to_string(), async move {
                shared
                    .mutate(apply)
                    .map(|()| vec!["update VM config".to_string()])
            });
            data(json!(upid))
        } else {
            apply(c).map_err(ApiError::fail)?;
            data(Value::Null)
        }
    })
}

fn resize(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let vmid = ctx.vmid();
    let disk = ctx.req("disk").to_string();
    let size = ctx.req("size").to_string();
    let Some((relative, amount)) = parse_size(&size) else {
        return Err(ApiError::param(
            "size",
            "value does not match the regex pattern",
        ));
    };
    let shared = Arc::clone(&ctx.shared);
    ctx.shared.mutate(|c| {
        let vm = vm_on(c, &node, vmid)?;
        check_unlocked(vm)?;
        check_digest(ctx, vm)?;
        let value = vm
            .effective_config()
            .get(&disk)
            .cloned()
            .ok_or_else(|| ApiError::fail(format!("disk '{disk}' does not exist")))?;
        if value.contains("media=cdrom") {
            return Err(ApiError::fail(format!(
                "you can't resize a cdrom or a cloud-init drive ({disk})"
            )));
        }
        let task_node = node.clone();
        let upid = start_task(ctx, c, &node, "resize", &vmid.to_string(), async move {
            shared.mutate(|c| {
                let mut props = Props::parse(&value, "file");
                let volid = props.first.clone().unwrap_or_default();
                let current = c
                    .find_volume(&task_node, &volid)
                    .map(|v| v.size)
                    .ok_or_else(|| format!("volume '{volid}' does not exist"))?;
                let new_size = if relative { current + amount } else { amount };
                if new_size < current {
                    return Err("shrinking disks is not supported".to_string());
                }
                if let Some(volume) = c.find_volume_mut(&task_node, &volid) {
                    volume.size = new_size;
                    volume.virtual_size = new_size;
                }
                props.rest.insert("size".into(), print_size(new_size));
                if let Some(vm) = c.vms.get_mut(&vmid) {
                    vm.config.insert(disk.clone(), props.print());
                }
                Ok(vec![format!(
                    "resized {disk} from {} to {}",
                    print_size(current),
                    print_size(new_size)
                )])
            })
        });
        data(json!(upid))
    })
}

fn template(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let vmid = ctx.vmid();
    let shared = Arc::clone(&ctx.shared);
    ctx.shared.mutate(|c| {
        let vm = vm_on(c, &node, vmid)?;
        check_unlocked(vm)?;
        if vm.is_template() {
            return Err(ApiError::fail("you can't convert a template to a template"));
        }
        if vm.running {
            return Err(ApiError::fail(
                "you can't convert a VM to template if VM is running",
            ));
        }
        let task_node = node.clone();
        let upid = start_task(ctx, c, &node, "qmtemplate", &vmid.to_string(), async move {
            shared.mutate(|c| {
                let Some(vm) = c.vms.get(&vmid) else {
                    return Err(format!("VM {vmid} does not exist"));
                };
                let mut renames = Vec::new();
                for (key, value) in &vm.config {
                    if !is_disk_key(key) || value.contains("media=cdrom") {
                        continue;
                    }
                    let mut props = Props::parse(value, "file");
                    let Some(volid) = props.first.clone() else {
                        continue;
                    };
                    let base =
                        volid.replace(&format!("vm-{vmid}-disk-"), &format!("base-{vmid}-disk-"));
                    if base != volid {
                        props.first = Some(base.clone());
                        renames.push((key.clone(), volid, base, props.print()));
                    }
                }
                let mut log = Vec::new();
                for (key, old, new, value) in renames {
                    if let Some(volume) = c.find_volume_mut(&task_node, &old) {
                        volume.volid = new.clone();
                    }
                    if let Some(vm) = c.vms.get_mut(&vmid) {
                        vm.config.insert(key, value);
                    }
                    log.push(format!("renamed {old} to {new}"));
                }
                if let Some(vm) = c.vms.get_mut(&vmid) {
                    vm.config.insert("template".into(), "1".into());
                }
                Ok(log)
            })
        });
        data(json!(upid))
    })
}

fn clone_vm(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let vmid = ctx.vmid();
    let newid: u32 = ctx
        .get("newid")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let shared = Arc::clone(&ctx.shared);
    ctx.shared.mutate(|c| {
        let source = vm_on(c, &node, vmid)?;
        check_unlocked(source)?;
        if c.vms.contains_key(&newid) {
            return Err(ApiError::fail(format!("unable to create VM {newid}: config file already exists")));
        }
        let template = source.is_template();
        let full = ctx.flag("full").unwrap_or(!template);
        if !full {
            if ctx.get("storage").is_some() {
                return Err(ApiError::param("storage", "changing the storage is only possible for full clones"));
            }
            if ctx.get("format").is_some() {
                return Err(ApiError::param("format", "changing the format is only possible for full clones"));
            }
            if !template {
                return Err(ApiError::fail("linked clones can only be created from templates"));
            }
        }
        let target = ctx.get("target").unwrap_or(&node).to_string();
        if c.node(&target).is_none() {
            return Err(ApiError::param("target", format!("no such cluster node '{target}'")));
        }
        let config = source.config.clone();
        let disks: Vec<(String, String)> = config.iter().filter(|(k, _)| is_disk_key(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, value) in &disks {
            let Some(storage) = disk_storage(value) else { continue };
            let Some(def) = c.storage(&storage) else { continue };
            if target != node && !def.shared && !value.contains("media=cdrom") {
                return Err(ApiError::fail(format!("can't clone VM to node '{target}' (VM uses local storage '{storage}' for {key})")));
            }
            if !full && !value.contains("media=cdrom") && key != "tpmstate0" && !def.can_link() {
                return Err(ApiError::fail(format!("Linked clone feature is not supported for drive '{key}'")));
            }
        }
        if let Some(storage) = ctx.get("storage")
            && c.storage(storage).is_none()
        {
            return Err(ApiError::fail(format!("storage '{storage}' does not exist")));
        }
        if let Some(storage) = ctx.get("storage") {
            ctx.require(&format!("/storage/{storage}"), &["Datastore.AllocateSpace"])?;
        }
        join_pool(c, ctx.get("pool"), newid)?;
        c.vms.insert(newid, Vm { vmid: newid, node: target.clone(), config: BTreeMap::from([("lock".to_string(), "clone".to_string())]), pending: BTreeMap::new(), running: false });
        let name = ctx.get("name").map(str::to_string).unwrap_or_else(|| format!("Copy-of-VM-{}", config.get("name").cloned().unwrap_or_else(|| vmid.to_string())));
        let description = ctx.get("description").map(str::to_string);
        let target_storage = ctx.get("storage").map(str::to_string);
        let task_node = node.clone();
        let upid = start_task(ctx, c, &node, "qmclone", &vmid.to_string(), async move {
            shared.mutate(|c| {
                let mut new_config: BTreeMap<String, String> = BTreeMap::new();
                let mut allocated = Vec::new();
                let mut log = Vec::new();
                for (key, value) in &config {
                    if matches!(key.as_str(), "template" | "lock" | "meta") {
                        continue;
                    }
                    let value = if is_net_key(key) {
                        canonical_net(value, true)
                    } else if key == "smbios1" {
                        format!("uuid={}", random_uuid())
                    } else if key == "vmgenid" {
                        random_uuid()
                    } else if is_disk_key(key) {
                        match clone_disk(c, &task_node, &target, vmid, newid, key, value, full, target_storage.as_deref(), &mut allocated) {
                            Ok(value) => value,
                            Err(message) => {
                                for volid in &allocated {
                                    c.remove_volume(&target, volid);
                                }
                                c.remove_vm(newid);
                                return Err(message);
                            }
                        }
                    } else {
                        value.clone()
                    };
                    new_config.insert(key.clone(), value);
                }
                new_config.insert("name".into(), name);
                if let Some(description) = description {
                    new_config.insert("description".into(), description);
                }
                log.push(format!("create {} clone of drive(s) of VM {vmid}", if full { "full" } else { "linked" }));
                if let Some(vm) = c.vms.get_mut(&newid) {
                    vm.config = new_config;
                }
                Ok(log)
            })
        });
        data(json!(upid))
    })
}

#[allow(clippy::too_many_arguments)]
fn clone_disk(
    c: &mut Cluster,
    node: &str,
    target: &str,
    vmid: u32,
    newid: u32,
    key: &str,
    value: &str,
    full: bool,
    target_storage: Option<&str>,
    allocated: &mut Vec<String>,
) -> Result<String, String> {
    let mut props = Props::parse(value, "file");
    let Some(volid) = props.first.clone() else {
        return Ok(value.to_string());
    };
    let Some(source) = c.find_volume(node, &volid).cloned() else {
        return Ok(value.to_string());
    };
    let cloudinit = volid.contains("-cloudinit");
    let storage = if full {
        target_storage.unwrap_or(&source.storage).to_string()
    } else {
        source.storage.clone()
    };
    let file_based = c.storage(&storage).is_some_and(|s| s.file_based());
    let (new_volid, format, parent) = if cloudinit {
        let id = if file_based {
            format!("{storage}:{newid}/vm-{newid}-cloudinit.qcow2")
        } else {
            format!("{storage}:vm-{newid}-cloudinit")
        };
        (id, source.format.clone(), None)
    } else if full || key == "tpmstate0" {
        let (id, format) = c.next_disk_volid(target, &storage, newid);
        (id, format, None)
    } else {
        let (plain, format) = c.next_disk_volid(target, &storage, newid);
        let base = volid.split_once(':').map(|(_, n)| n).unwrap_or_default();
        let name = plain.split_once(':').map(|(_, n)| n).unwrap_or_default();
        let linked = if file_based {
            format!(
                "{storage}:{vmid}/{}/{name}",
                base.rsplit('/').next().unwrap_or(base)
            )
        } else {
            format!("{storage}:{base}/{name}")
        };
        (linked, format, Some(volid.clone()))
    };
    let vol_node = c.volume_node(&storage, target);
    let mut volume = Volume::vm_disk(
        vol_node,
        storage,
        new_volid.clone(),
        format,
        source.size,
        newid,
        parent,
    );
    volume.virtual_size = source.virtual_size;
    c.volumes.push(volume);
    allocated.push(new_volid.clone());
    props.first = Some(new_volid);
    Ok(props.print())
}

fn vm_status(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let vmid = ctx.vmid();
    ctx.shared.read(|c| {
        let vm = vm_on(c, &node, vmid)?;
        let config = vm.effective_config();
        let mut status = json!({
            "vmid": vmid, "status": if vm.running {"running"} else {"stopped"}, "qmpstatus": if vm.running {"running"} else {"stopped"},
            "ha": {"managed": 0}, "template": u8::from(vm.is_template()),
            "maxmem": config.get("memory").and_then(|m| m.parse::<u64>().ok()).unwrap_or(512) << 20,
        });
        if let Some(name) = config.get("name") {
            status["name"] = json!(name);
        }
        if let Some(lock) = vm.lock() {
            status["lock"] = json!(lock);
        }
        data(status)
    })
}

fn power(ctx: &Ctx, kind: &'static str) -> Reply {
    let node = ctx.node();
    let vmid = ctx.vmid();
    let shared = Arc::clone(&ctx.shared);
    ctx.shared.mutate(|c| {
        let vm = vm_on(c, &node, vmid)?;
        check_unlocked(vm)?;
        let upid = start_task(ctx, c, &node, kind, &vmid.to_string(), async move {
            let snippets_dirs = &shared.config.snippets_dirs;
            let powered = shared.mutate(|c| {
                // qemu-server reads the `cicustom` files when it builds the cloud-init drive.
                let missing = c.vms.get(&vmid).and_then(|vm| {
                    let cicustom = vm.effective_config().get("cicustom").cloned()?;
                    missing_snippet(c, snippets_dirs, &vm.node, &cicustom)
                });
                let Some(vm) = c.vms.get_mut(&vmid) else {
                    return Err(format!("VM {vmid} does not exist"));
                };
                match kind {
                    "qmstart" if vm.is_template() => {
                        Err("you can't start a vm if it's a template".to_string())
                    }
                    "qmstart" if vm.running => Err(format!("VM {vmid} already running")),
                    "qmstart" if missing.is_some() => Err(missing.unwrap_or_default()),
                    "qmstart" => {
                        vm.apply_pending();
                        vm.running = true;
                        Ok(vec![format!("started VM {vmid}")])
                    }
                    _ if !vm.running => Err(format!("VM {vmid} not running")),
                    _ => {
                        vm.running = false;
                        vm.apply_pending();
                        Ok(vec![format!("stopped VM {vmid}")])
                    }
                }
            });
            if powered.is_ok() {
                shared.note_power(vmid, kind == "qmstart");
            }
            powered
        });
        data(json!(upid))
    })
}

/// `POST …/migrate`: offline migration moves the VM and its local disks to the target node
/// (storages of the same id there); a running VM needs `online`, which the simulator refuses
/// to model; a linked clone's disks cannot leave their local base image.
fn migrate_vm(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let vmid = ctx.vmid();
    let target = ctx.req("target").to_string();
    let shared = Arc::clone(&ctx.shared);
    ctx.shared.mutate(|c| {
        let vm = vm_on(c, &node, vmid)?;
        check_unlocked(vm)?;
        if target == node {
            return Err(ApiError::fail("target is local node."));
        }
        match c.node(&target) {
            None => {
                return Err(ApiError::param(
                    "target",
                    format!("no such cluster node '{target}'"),
                ));
            }
            Some(n) if !n.online => {
                return Err(ApiError::fail(format!(
                    "target node '{target}' is not online"
                )));
            }
            Some(_) => {}
        }
        if vm.running {
            if ctx.flag("online") == Some(true) {
                return Err(ApiError::fail(
                    "online migration is not simulated: shut the VM down first",
                ));
            }
            return Err(ApiError::fail(
                "can't migrate running VM without --online",
            ));
        }
        if let Some(vm) = c.vms.get_mut(&vmid) {
            vm.config.insert("lock".into(), "migrate".into());
        }
        let task_node = node.clone();
        let upid = start_task(ctx, c, &node, "qmigrate", &vmid.to_string(), async move {
            shared.mutate(|c| {
                let linked: Option<String> = c
                    .volumes
                    .iter()
                    .filter(|v| v.vmid == Some(vmid) && v.node == task_node)
                    .find(|v| v.parent.is_some())
                    .map(|v| v.volid.clone());
                let unlock = |c: &mut Cluster| {
                    if let Some(vm) = c.vms.get_mut(&vmid) {
                        vm.config.remove("lock");
                    }
                };
                if let Some(volid) = linked {
                    unlock(c);
                    return Err(format!(
                        "can't migrate local disk '{volid}': it is a linked clone of a base image on local storage"
                    ));
                }
                let mut log = vec![format!("starting migration of VM {vmid} to node '{target}'")];
                for volume in c
                    .volumes
                    .iter_mut()
                    .filter(|v| v.vmid == Some(vmid) && v.node == task_node)
                {
                    log.push(format!("copying local disk '{}' to node '{target}'", volume.volid));
                    volume.node = target.clone();
                }
                if let Some(vm) = c.vms.get_mut(&vmid) {
                    vm.node = target.clone();
                }
                unlock(c);
                log.push("migration finished successfully".into());
                Ok(log)
            })
        });
        data(json!(upid))
    })
}

fn destroy_vm(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let vmid = ctx.vmid();
    let shared = Arc::clone(&ctx.shared);
    ctx.shared.mutate(|c| {
        let vm = vm_on(c, &node, vmid)?;
        check_unlocked(vm)?;
        if vm.running {
            return Err(ApiError::fail(format!(
                "VM {vmid} is running - destroy failed"
            )));
        }
        if vm.config.get("protection").is_some_and(|p| p == "1") {
            return Err(ApiError::fail(format!(
                "can't remove VM {vmid} - protection mode enabled"
            )));
        }
        let task_node = node.clone();
        let upid = start_task(ctx, c, &node, "qmdestroy", &vmid.to_string(), async move {
            shared.mutate(|c| {
                let owned: Vec<Volume> = c
                    .volumes
                    .iter()
                    .filter(|v| v.vmid == Some(vmid) && (v.node.is_empty() || v.node == task_node))
                    .cloned()
                    .collect();
                for base in &owned {
                    let in_use = c
                        .volumes
                        .iter()
                        .any(|v| v.parent.as_deref() == Some(base.volid.as_str()));
                    // qemu-server `destroy_vm` refuses for every storage type (pve-storage's
                    // `vdisk_free` notes that LVM-thin itself would allow it).
                    if in_use {
                        return Err(format!(
                            "base volume '{}' is still in use by linked cloned",
                            base.volid
                        ));
                    }
                }
                for volume in &owned {
                    c.remove_volume(&task_node, &volume.volid);
                }
                c.remove_vm(vmid);
                Ok(vec![format!(
                    "destroyed VM {vmid} and {} volume(s)",
                    owned.len()
                )])
            })
        });
        data(json!(upid))
    })
}

fn find_task<'a>(c: &'a Cluster, ctx: &Ctx) -> Result<&'a Task, ApiError> {
    let upid = ctx.req("upid");
    // PVE::Tools::upid_decode
    let fields: Vec<&str> = upid.split(':').collect();
    if fields.len() < 9 || fields[0] != "UPID" {
        return Err(ApiError::fail(format!(
            "unable to parse worker upid '{upid}'"
        )));
    }
    let task = c
        .tasks
        .get(upid)
        .filter(|t| t.node == ctx.req("node"))
        .ok_or_else(|| ApiError::fail(format!("no such task '{upid}'")))?;
    // Other users' tasks need Sys.Audit on the node.
    if task.user != ctx.user {
        ctx.require(&format!("/nodes/{}", task.node), &["Sys.Audit"])?;
    }
    Ok(task)
}

fn task_status(ctx: &Ctx) -> Reply {
    ctx.shared.read(|c| {
        let task = find_task(c, ctx)?;
        let mut status = json!({
            "upid": task.upid, "node": task.node, "pid": task.pid, "pstart": task.pstart, "starttime": task.starttime,
            "type": task.kind, "id": task.id, "user": task.user, "status": if task.running {"running"} else {"stopped"},
        });
        if let Some(exit) = &task.exitstatus {
            status["exitstatus"] = json!(exit);
        }
        data(status)
    })
}

fn task_log(ctx: &Ctx) -> Reply {
    ctx.shared.read(|c| {
        let task = find_task(c, ctx)?;
        let start = ctx
            .get("start")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let limit = ctx
            .get("limit")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(50);
        let lines: Vec<Value> = task
            .log
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, t)| json!({"n": i + 1, "t": t}))
            .collect();
        Ok((Value::Array(lines), Some(task.log.len() as u64)))
    })
}

/// `GET /nodes/{node}/network`: the node's interfaces (`eno1` and its bridges), filtered by
/// `type` as pve-manager's `API2::Network` does (`any_bridge`: Linux and OVS bridges; the
/// simulator has no SDN VNets).
fn node_network(ctx: &Ctx) -> Reply {
    let node = ctx.node();
    let kind = ctx.get("type");
    let wanted = |iface_type: &str| match kind {
        None | Some("include_sdn") => true,
        Some("any_bridge" | "any_local_bridge") => matches!(iface_type, "bridge" | "OVSBridge"),
        Some(other) => other == iface_type,
    };
    data(ctx.shared.read(|c| {
        let mut out = Vec::new();
        if wanted("eth") {
            out.push(json!({
                "iface": "eno1", "type": "eth", "method": "manual", "method6": "manual",
                "families": ["inet"], "active": 1, "exists": 1, "priority": 2,
            }));
        }
        for (index, bridge) in c.bridges_of(&node).iter().enumerate() {
            if !wanted(&bridge.kind) {
                continue;
            }
            let mut entry = json!({"iface": bridge.iface, "type": bridge.kind});
            let fields = entry.as_object_mut().map(|map| {
                let ports = bridge.ports.join(" ");
                if bridge.kind == "OVSBridge" {
                    if !ports.is_empty() {
                        map.insert("ovs_ports".into(), json!(ports));
                    }
                } else {
                    map.insert(
                        "bridge_ports".into(),
                        json!(if ports.is_empty() {
                            "none".to_string()
                        } else {
                            ports
                        }),
                    );
                    map.insert("bridge_stp".into(), json!("off"));
                    map.insert("bridge_fd".into(), json!("0"));
                    if bridge.vlan_aware {
                        map.insert("bridge_vlan_aware".into(), json!(1));
                        map.insert("bridge_vids".into(), json!("2-4094"));
                    }
                }
                match &bridge.cidr {
                    Some(cidr) => {
                        let (address, prefix) = cidr.split_once('/').unwrap_or((cidr, "24"));
                        let gateway = address
                            .rsplit_once('.')
                            .map(|(net, _)| format!("{net}.1"))
                            .unwrap_or_default();
                        map.insert("method".into(), json!("static"));
                        map.insert("cidr".into(), json!(cidr));
                        map.insert("address".into(), json!(address));
                        map.insert("netmask".into(), json!(prefix));
                        map.insert("gateway".into(), json!(gateway));
                    }
                    None => {
                        map.insert("method".into(), json!("manual"));
                    }
                }
                map.insert("method6".into(), json!("manual"));
                map.insert("families".into(), json!(["inet"]));
                // ifupdown2 reports only interfaces that are up.
                if bridge.active {
                    map.insert("active".into(), json!(1));
                }
                map.insert("autostart".into(), json!(1));
                map.insert("priority".into(), json!(3 + index));
            });
            if fields.is_some() {
                out.push(entry);
            }
        }
        Value::Array(out)
    }))
}

/// `GET /cluster/mapping/pci`: the mappings the caller may see (`Mapping.Audit`, `Mapping.Use`
/// or `Mapping.Modify` on `/mapping/pci/<id>`); with `check-node`, `checks` says when a mapping
/// has no entry for that node (pve-manager `API2::Cluster::Mapping::PCI`).
fn pci_mappings(ctx: &Ctx) -> Reply {
    let check_node = ctx.get("check-node");
    data(ctx.shared.read(|c| {
        Value::Array(
            c.pci_mappings
                .iter()
                .filter(|m| {
                    ctx.allowed(
                        &format!("/mapping/pci/{}", m.id),
                        &["Mapping.Audit", "Mapping.Use", "Mapping.Modify"],
                        true,
                    )
                })
                .map(|m| {
                    let mut entry =
                        json!({"id": m.id, "description": m.description, "map": m.map});
                    if let Some(node) = check_node {
                        let has_entry = m.map.iter().any(|e| {
                            e.split(',')
                                .any(|kv| kv.strip_prefix("node=") == Some(node))
                        });
                        let checks: Vec<Value> = if has_entry {
                            Vec::new()
                        } else {
                            vec![json!({"severity": "warning", "message": format!("No mapping for node {node}.")})]
                        };
                        entry["checks"] = json!(checks);
                    }
                    entry
                })
                .collect(),
        )
    }))
}
