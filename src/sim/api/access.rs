//! Access (`API2/AccessControl.pm` in pve-access-control): password login with tickets and
//! CSRF tokens, and the caller's privileges per ACL path.

use axum::http::StatusCode;
use serde_json::json;

use super::request::ApiCall;
use super::tasks::now;
use super::{ApiError, Reply, data};
use crate::sim::Session;

/// Tickets live two hours, as pve-access-control's `$ticket_lifetime`.
pub(crate) const TICKET_LIFETIME_SECS: u64 = 2 * 3600;

/// `POST /access/ticket`: password login (or renewal with a ticket as the password).
pub(crate) fn login(call: &ApiCall) -> Reply {
    let mut username = call.req("username").to_string();
    if !username.contains('@')
        && let Some(realm) = call.get("realm")
    {
        username = format!("{username}@{realm}");
    }
    let password = call.req("password");
    let fail = || ApiError::new(StatusCode::UNAUTHORIZED, "authentication failure");
    let by_password = call
        .shared
        .config
        .users
        .iter()
        .any(|u| u.split_once(':') == Some((username.as_str(), password)));
    let by_ticket = call.shared.tickets.lock().ok().is_some_and(|t| {
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
    if let Ok(mut tickets) = call.shared.tickets.lock() {
        tickets.insert(
            ticket.clone(),
            Session {
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

/// `GET /access/permissions`: the caller's privileges per ACL path (or another user's, for
/// callers with `Sys.Audit` on `/access`, or the caller's own tokens).
pub(crate) fn permissions(call: &ApiCall) -> Reply {
    let target = call.get("userid").unwrap_or(&call.user).to_string();
    let own_user = call
        .user
        .split_once('!')
        .map_or(call.user.as_str(), |(u, _)| u);
    let allowed = target == call.user
        || target
            .split_once('!')
            .is_some_and(|(user, _)| user == own_user && !call.user.contains('!'))
        || call.allowed("/access", &["Sys.Audit"], false);
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Permission check failed (/access, Sys.Audit)",
        ));
    }
    data(
        call.shared
            .access
            .permissions_dump(&target, call.get("path")),
    )
}
