//! The simulator's HTTP API, laid out by API area as pve-manager's `API2` tree is: access
//! (`access.rs`), tasks (`tasks.rs`), storage and its content (`storage/`), QEMU VMs (`qemu/`:
//! config, disks, power, clone and template, the guest agent), pools (`pools.rs`), cluster
//! (`cluster.rs`), nodes (`nodes.rs`) and LXC containers (`lxc.rs`). This file owns the route table, its registration with
//! axum's router, the steps every request goes through (faults, latency, the request log) and
//! Proxmox's envelopes and errors; `request.rs` turns a request into an authenticated,
//! schema-validated `ApiCall`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use serde_json::{Value, json};

use super::{RequestRecord, Shared};

mod access;
mod cluster;
mod lxc;
mod nodes;
mod pools;
mod qemu;
mod request;
mod storage;
mod tasks;

use request::ApiCall;

type Params = BTreeMap<String, String>;
type Reply = Result<(Value, Option<u64>), ApiError>;

/// What serves one endpoint, once the request is authenticated and validated.
type Handler = fn(&ApiCall) -> Reply;

/// Every endpoint the simulator serves, as `METHOD /path` exactly as `api-schema.json` names it
/// (the schema validation looks the request up by that key), with its handler.
fn routes() -> Vec<(&'static str, Handler)> {
    vec![
        ("POST /access/ticket", access::login),
        ("GET /access/permissions", access::permissions),
        ("GET /version", cluster::version),
        ("GET /cluster/resources", cluster::cluster_resources),
        ("GET /cluster/nextid", cluster::next_id),
        ("GET /cluster/mapping/pci", cluster::pci_mappings),
        ("GET /nodes", nodes::node_list),
        ("GET /nodes/{node}/network", nodes::node_network),
        ("GET /nodes/{node}/storage", storage::node_storages),
        ("GET /storage/{storage}", storage::storage_config),
        (
            "GET /nodes/{node}/storage/{storage}/content",
            storage::content::storage_content,
        ),
        (
            "GET /nodes/{node}/storage/{storage}/content/{volume}",
            storage::content::volume_info,
        ),
        (
            "PUT /nodes/{node}/storage/{storage}/content/{volume}",
            storage::content::volume_update,
        ),
        (
            "DELETE /nodes/{node}/storage/{storage}/content/{volume}",
            storage::content::volume_delete,
        ),
        (
            "POST /nodes/{node}/storage/{storage}/download-url",
            storage::transfer::download_url,
        ),
        (
            "POST /nodes/{node}/storage/{storage}/upload",
            storage::transfer::upload,
        ),
        ("GET /nodes/{node}/qemu", qemu::vm_list),
        ("POST /nodes/{node}/qemu", qemu::config::create_vm),
        (
            "GET /nodes/{node}/qemu/{vmid}/config",
            qemu::config::vm_config,
        ),
        ("POST /nodes/{node}/qemu/{vmid}/config", |call| {
            qemu::config::update_config(call, true)
        }),
        ("PUT /nodes/{node}/qemu/{vmid}/config", |call| {
            qemu::config::update_config(call, false)
        }),
        (
            "GET /nodes/{node}/qemu/{vmid}/pending",
            qemu::config::vm_pending,
        ),
        ("PUT /nodes/{node}/qemu/{vmid}/resize", qemu::disks::resize),
        (
            "POST /nodes/{node}/qemu/{vmid}/move_disk",
            qemu::disks::move_disk,
        ),
        (
            "POST /nodes/{node}/qemu/{vmid}/template",
            qemu::clone::template,
        ),
        (
            "POST /nodes/{node}/qemu/{vmid}/clone",
            qemu::clone::clone_vm,
        ),
        (
            "POST /nodes/{node}/qemu/{vmid}/migrate",
            qemu::power::migrate_vm,
        ),
        (
            "GET /nodes/{node}/qemu/{vmid}/status/current",
            qemu::vm_status,
        ),
        ("POST /nodes/{node}/qemu/{vmid}/status/start", |call| {
            qemu::power::power(call, "qmstart")
        }),
        ("POST /nodes/{node}/qemu/{vmid}/status/shutdown", |call| {
            qemu::power::power(call, "qmshutdown")
        }),
        ("POST /nodes/{node}/qemu/{vmid}/status/stop", |call| {
            qemu::power::power(call, "qmstop")
        }),
        (
            "GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
            qemu::agent::network_get_interfaces,
        ),
        (
            "POST /nodes/{node}/qemu/{vmid}/agent/ping",
            qemu::agent::ping,
        ),
        ("DELETE /nodes/{node}/qemu/{vmid}", qemu::destroy_vm),
        ("GET /nodes/{node}/lxc", lxc::ct_list),
        ("POST /nodes/{node}/lxc", lxc::create_ct),
        ("DELETE /nodes/{node}/lxc/{vmid}", lxc::destroy_ct),
        ("GET /nodes/{node}/tasks", tasks::node_tasks),
        ("GET /nodes/{node}/tasks/{upid}/status", tasks::task_status),
        ("GET /nodes/{node}/tasks/{upid}/log", tasks::task_log),
        ("GET /pools", pools::pools_list),
        ("POST /pools", pools::pool_create),
        ("PUT /pools", pools::pool_update),
        ("DELETE /pools", pools::pool_delete),
        ("PUT /pools/{poolid}", pools::pool_update),
        ("DELETE /pools/{poolid}", pools::pool_delete),
    ]
}

/// The largest request body the simulator reads. pveproxy spools uploads to disk without
/// such a small cap as axum's default 2 MB; the simulator keeps them in memory, so a bound stays.
const BODY_LIMIT: usize = 1 << 30;

/// Where Proxmox serves its JSON API.
const API_PREFIX: &str = "/api2/json";

/// The router: each endpoint of `routes()` under `/api2/json`, and for any other path or
/// method pveproxy's `501 Method '…' not implemented`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut by_path: BTreeMap<&'static str, MethodRouter<Arc<Shared>>> = BTreeMap::new();
    for (endpoint, handler) in routes() {
        let Some((method, path)) = endpoint.split_once(' ') else {
            continue;
        };
        let Ok(filter) = Method::from_bytes(method.as_bytes())
            .map_err(|_| ())
            .and_then(|m| MethodFilter::try_from(m).map_err(|_| ()))
        else {
            continue;
        };
        let serve_endpoint = move |State(shared): State<Arc<Shared>>,
                                   Path(path_params): Path<Params>,
                                   method: Method,
                                   uri: Uri,
                                   headers: HeaderMap,
                                   body: Bytes| async move {
            let route = Some(Route {
                endpoint,
                handler,
                path_params,
            });
            serve(&shared, route, &method, &uri, &headers, body).await
        };
        let methods = by_path.remove(path).unwrap_or_default();
        by_path.insert(path, methods.on(filter, serve_endpoint));
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(&format!("{API_PREFIX}{path}"), methods)
        })
        .fallback(not_served)
        .method_not_allowed_fallback(not_served)
        .with_state(shared)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

/// An endpoint matched by the router, with its path parameters decoded.
struct Route {
    endpoint: &'static str,
    handler: Handler,
    path_params: Params,
}

/// A path or method the simulator does not serve (faults and the request log still apply).
async fn not_served(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, None, &method, &uri, &headers, body).await
}

/// What every request goes through: injected faults and latency around the answer, and the
/// request log.
async fn serve(
    shared: &Arc<Shared>,
    route: Option<Route>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let api_path = uri.path().strip_prefix(API_PREFIX).unwrap_or(uri.path());
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
        let answer = match route {
            None => Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("Method '{method} {api_path}' not implemented"),
            )),
            Some(route) => {
                let incoming = request::Incoming {
                    method,
                    uri,
                    headers,
                    body,
                    task_error: effects.task_error,
                };
                match ApiCall::accept(shared, route.endpoint, route.path_params, incoming).await {
                    Ok(call) => (route.handler)(&call),
                    Err(err) => Err(err),
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_schema_and_every_schema_endpoint_is_routed() {
        let routed: std::collections::BTreeSet<&str> =
            routes().into_iter().map(|(endpoint, _)| endpoint).collect();
        let served: std::collections::BTreeSet<&str> = super::super::schema::served().collect();
        assert_eq!(routed, served);
    }
}
