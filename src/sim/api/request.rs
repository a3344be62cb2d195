//! From an HTTP request to an `ApiCall`, in pveproxy's order: who is calling (API token, or
//! ticket plus CSRF token for writes), the parameters (path, query string, form, JSON or
//! multipart body), their validation against the official schema, the node they name, and the
//! endpoint's permission check. Handlers see only the `ApiCall`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

use super::access::TICKET_LIFETIME_SECS;
use super::tasks::now;
use super::{ApiError, Params};
use crate::sim::{Shared, access, schema};

/// A request as it reached the router, with the fault (if any) its task is to fail with.
pub(super) struct Incoming<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// An injected failure for the task this request starts.
    pub task_error: Option<String>,
}

pub(super) fn percent_decode(text: &str) -> String {
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

/// A `multipart/form-data` body: its text fields, then the file part (pveproxy spools it to
/// `/var/tmp`; here it stays in memory).
pub(super) struct Upload {
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

/// The parameters of a request besides the path's, as pve-http-server's `extract_params`
/// gathers them: the body (form, JSON or multipart fields, an upload's file name), then the
/// query string over it; the names given more than once in one of them (`decode_urlencoded`
/// makes those an array, which no served parameter's type accepts); the upload's bytes.
fn request_params(
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    upload: Option<Upload>,
) -> Result<RequestParams, ApiError> {
    let mut gathered = RequestParams::default();
    if let Some(upload) = upload {
        gathered.params.extend(upload.fields);
        if let Some(file_name) = upload.file_name {
            gathered.params.insert("filename".into(), file_name);
        }
        gathered.upload = upload.bytes;
    } else if !body.is_empty() && is_json(headers) {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| ApiError::fail("unable to parse JSON body"))?;
        for (key, value) in value.as_object().into_iter().flatten() {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Null => continue,
                other => other.to_string(),
            };
            gathered.params.insert(key.clone(), text);
        }
    } else if !body.is_empty() {
        gathered.add_form(body);
    }
    if let Some(query) = uri.query() {
        gathered.add_form(query.as_bytes());
    }
    Ok(gathered)
}

/// What `request_params` gathers.
#[derive(Default)]
struct RequestParams {
    params: Params,
    /// Names given more than once in the body or more than once in the query string.
    repeated: BTreeSet<String>,
    upload: Option<Bytes>,
}

impl RequestParams {
    /// Add a form-encoded body or query string; its values replace earlier sources'.
    fn add_form(&mut self, form: &[u8]) {
        let mut seen = BTreeSet::new();
        for (key, value) in url::form_urlencoded::parse(form) {
            let key = key.into_owned();
            if seen.contains(&key) {
                self.repeated.insert(key.clone());
            } else {
                self.repeated.remove(&key);
                seen.insert(key.clone());
            }
            self.params.insert(key, value.into_owned());
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// A request naming a node is forwarded there by pveproxy: an unknown node fails the name
/// lookup, an offline one the connection.
fn check_node(shared: &Shared, params: &Params) -> Result<(), ApiError> {
    let Some(node) = params.get("node") else {
        return Ok(());
    };
    match shared.read(|c| c.node(node).map(|n| n.online)) {
        None => Err(ApiError::fail(format!(
            "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
        ))),
        Some(false) => Err(ApiError::new(
            StatusCode::from_u16(595).unwrap_or(StatusCode::BAD_GATEWAY),
            format!("no route to host {node}"),
        )),
        Some(true) => Ok(()),
    }
}

impl ApiCall {
    /// Accept a request for `endpoint` (`METHOD /path/{template}`): authenticate it, gather and
    /// validate its parameters, check the node it names and the endpoint's permissions.
    pub(super) async fn accept(
        shared: &Arc<Shared>,
        endpoint: &str,
        path_params: Params,
        incoming: Incoming<'_>,
    ) -> Result<ApiCall, ApiError> {
        let upload = parse_multipart(incoming.headers, incoming.body.clone()).await?;
        // The ticket endpoint is open to anyone (it is how one logs in); every other one needs
        // a token, or a ticket plus, for writes, its CSRF token.
        let user = if endpoint == "POST /access/ticket" {
            String::new()
        } else {
            authenticate(shared, incoming.headers, incoming.method)?
        };
        let gathered = request_params(incoming.uri, incoming.headers, &incoming.body, upload)?;
        let mut params = path_params;
        for (key, value) in gathered.params {
            params.entry(key).or_insert(value);
        }
        let json_body = is_json(incoming.headers);
        let errors = schema::validate(endpoint, &params, &gathered.repeated, json_body);
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
        check_node(shared, &params)?;
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
        Ok(ApiCall {
            shared: Arc::clone(shared),
            user,
            params,
            upload: gathered.upload,
            task_error: incoming.task_error,
        })
    }
}

/// An authenticated call whose parameters passed the schema: who makes it, with which
/// parameters (path, query and body merged), and what a handler needs besides.
pub(crate) struct ApiCall {
    pub(crate) shared: Arc<Shared>,
    pub(crate) user: String,
    pub(crate) params: Params,
    /// The file part of an upload.
    pub(crate) upload: Option<Bytes>,
    /// An injected failure for the task this request starts.
    pub(crate) task_error: Option<String>,
}

impl ApiCall {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub(crate) fn req(&self, name: &str) -> &str {
        // Required parameters were checked by the schema validation.
        self.get(name).unwrap_or_default()
    }

    pub(crate) fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).map(|v| v == "1")
    }

    pub(crate) fn node(&self) -> String {
        self.req("node").to_string()
    }

    pub(crate) fn vmid(&self) -> u32 {
        self.get("vmid")
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    /// Whether the caller has `privs` (all, or any with `any`) on `path`.
    pub(crate) fn allowed(&self, path: &str, privs: &[&str], any: bool) -> bool {
        self.shared.access.has(&self.user, path, privs, any)
    }

    /// A handler's own permission check, failing as `$rpcenv->check` does.
    pub(crate) fn require(&self, path: &str, privs: &[&str]) -> Result<(), ApiError> {
        match privs.iter().find(|p| !self.allowed(path, &[p], false)) {
            None => Ok(()),
            Some(missing) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Permission check failed ({path}, {missing})"),
            )),
        }
    }

    /// Like `require`, but any one of `privs` will do.
    pub(crate) fn require_any(&self, path: &str, privs: &[&str]) -> Result<(), ApiError> {
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
