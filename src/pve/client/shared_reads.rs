//! The cluster listing a run reads twice, read once: the preflight and the observation both
//! need `/cluster/resources`, one right after the other. What the preflight reads (between
//! `PveClient::preflight_reads` and the end of its guard) is kept and handed to the next read
//! of the same path and query outside it, once, if that comes within `SHARE_WINDOW`; any write
//! in between that may change a guest's row drops it (a pool's creation or deletion does not:
//! `PveClient::count`). Only the preflight keeps and only others take, so a preflight never
//! reads another's answer, and a reader that polls (waiting for VMs still being made) reads
//! afresh after its first look. The preflight reads the listing whole (guests, nodes and
//! storages: no `/nodes` and, mostly, no `/nodes/{node}/storage` beside it); a reader that
//! asks for one `type` of it is handed the rows of that type.
//!
//! The preflight reads before the run takes its lease (`commands::lease`), so another run may
//! still have been changing the cluster then: a listing that shows the project's lease pool
//! (held by someone when it was read) is dropped once the lease is this run's, and so is any
//! listing when the lease was taken over from a killed run (its tasks ran on after the read).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// How long a kept answer may be handed out after it was read.
const SHARE_WINDOW: Duration = Duration::from_secs(10);

/// The endpoints whose answers are shared.
const SHARED: &[&str] = &["/cluster/resources"];

/// A page of `data` and its `total`.
type Answer = (Value, Option<u64>);

/// Kept answers by path and query.
#[derive(Default)]
pub(crate) struct SharedReads {
    kept: Mutex<BTreeMap<String, (Instant, Answer)>>,
    /// The preflight is reading: keep, do not take.
    preflight: AtomicBool,
}

/// While it lives, the client's reads are the preflight's (see the module documentation).
pub(crate) struct PreflightReads<'a> {
    shared: &'a SharedReads,
}

impl Drop for PreflightReads<'_> {
    fn drop(&mut self) {
        self.shared.preflight.store(false, Ordering::Relaxed);
    }
}

fn key(path: &str, params: &[(String, String)]) -> String {
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", query.join("&"))
}

impl SharedReads {
    /// Mark the reads until the guard drops as the preflight's.
    pub(crate) fn preflight(&self) -> PreflightReads<'_> {
        self.preflight.store(true, Ordering::Relaxed);
        PreflightReads { shared: self }
    }

    /// The kept answer for this read, if there is one (it is handed out once).
    pub(crate) fn take(
        &self,
        template: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Option<Answer> {
        if !SHARED.contains(&template) || self.preflight.load(Ordering::Relaxed) {
            return None;
        }
        let mut kept = self.kept.lock().ok()?;
        if let Some((read_at, answer)) = kept.remove(&key(path, params)) {
            return (read_at.elapsed() <= SHARE_WINDOW).then_some(answer);
        }
        // `type=vm` (or `node`, `storage`) out of the whole listing.
        let [(name, wanted)] = params else {
            return None;
        };
        let kinds: &[&str] = match (name.as_str(), wanted.as_str()) {
            ("type", "vm") => &["qemu", "lxc", "openvz"],
            ("type", "node") => &["node"],
            ("type", "storage") => &["storage"],
            _ => return None,
        };
        let (read_at, (whole, _)) = kept.remove(&key(path, &[]))?;
        if read_at.elapsed() > SHARE_WINDOW {
            return None;
        }
        let rows: Vec<Value> = whole
            .as_array()?
            .iter()
            .filter(|row| {
                row.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|kind| kinds.contains(&kind))
            })
            .cloned()
            .collect();
        Some((Value::Array(rows), None))
    }

    /// Keep a fresh answer for the next reader.
    pub(crate) fn keep(
        &self,
        template: &str,
        path: &str,
        params: &[(String, String)],
        answer: &Answer,
    ) {
        if !SHARED.contains(&template) || !self.preflight.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut kept) = self.kept.lock() {
            kept.insert(key(path, params), (Instant::now(), answer.clone()));
        }
    }

    /// Drop the kept listing if it shows the pool `poolid` (pools come only in the whole
    /// listing, which the preflight reads): read while that pool existed.
    pub(crate) fn forget_if_it_lists_pool(&self, poolid: &str) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let lists_pool = kept.values().any(|(_, (rows, _))| {
            rows.as_array().is_some_and(|rows| {
                rows.iter().any(|row| {
                    row.get("type").and_then(Value::as_str) == Some("pool")
                        && row.get("pool").and_then(Value::as_str) == Some(poolid)
                })
            })
        });
        if lists_pool {
            kept.clear();
        }
    }

    /// Drop every kept answer: the client wrote something.
    pub(crate) fn forget(&self) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_handed_to_the_next_reader_once_until_a_write() {
        let shared = SharedReads::default();
        let params = vec![("type".to_string(), "vm".to_string())];
        let answer = (json!([{"vmid": 100}]), None);
        // Outside the preflight nothing is kept.
        shared.keep("/cluster/resources", "/cluster/resources", &params, &answer);
        assert_eq!(
            shared.take("/cluster/resources", "/cluster/resources", &params),
            None
        );
        let preflight = shared.preflight();
        shared.keep("/cluster/resources", "/cluster/resources", &params, &answer);
        // The preflight does not read its own (or an earlier preflight's) answer.
        assert_eq!(
            shared.take("/cluster/resources", "/cluster/resources", &params),
            None
        );
        drop(preflight);
        assert_eq!(
            shared.take("/cluster/resources", "/cluster/resources", &params),
            Some(answer.clone())
        );
        assert_eq!(
            shared.take("/cluster/resources", "/cluster/resources", &params),
            None
        );
        // Another query is another read.
        shared.keep("/cluster/resources", "/cluster/resources", &params, &answer);
        assert_eq!(
            shared.take("/cluster/resources", "/cluster/resources", &[]),
            None
        );
        // A write drops it; so does time.
        shared.forget();
        assert_eq!(
            shared.take("/cluster/resources", "/cluster/resources", &params),
            None
        );
        let preflight = shared.preflight();
        shared.keep("/cluster/resources", "/cluster/resources", &params, &answer);
        drop(preflight);
        tokio::time::advance(SHARE_WINDOW + Duration::from_secs(1)).await;
        assert_eq!(
            shared.take("/cluster/resources", "/cluster/resources", &params),
            None
        );
        // A reader of one type is handed those rows of the whole listing.
        let whole = (
            json!([{"type": "node", "node": "pve1"}, {"type": "qemu", "vmid": 100}, {"type": "lxc", "vmid": 101}]),
            None,
        );
        let preflight = shared.preflight();
        shared.keep("/cluster/resources", "/cluster/resources", &[], &whole);
        drop(preflight);
        assert_eq!(
            shared.take("/cluster/resources", "/cluster/resources", &params),
            Some((
                json!([{"type": "qemu", "vmid": 100}, {"type": "lxc", "vmid": 101}]),
                None
            ))
        );
        assert_eq!(
            shared.take("/cluster/resources", "/cluster/resources", &params),
            None
        );
        // Only the listings are shared.
        shared.keep(
            "/nodes/{node}/qemu/{vmid}/config",
            "/nodes/pve1/qemu/100/config",
            &[],
            &answer,
        );
        assert_eq!(
            shared.take(
                "/nodes/{node}/qemu/{vmid}/config",
                "/nodes/pve1/qemu/100/config",
                &[]
            ),
            None
        );
    }

    #[test]
    fn a_listing_that_shows_the_lease_pool_is_dropped() {
        let shared = SharedReads::default();
        let whole = |pools: &[&str]| {
            let mut rows: Vec<Value> = pools
                .iter()
                .map(|pool| json!({"id": format!("/pool/{pool}"), "type": "pool", "pool": pool}))
                .collect();
            rows.push(json!({"type": "qemu", "vmid": 100, "pool": "proxfleet-lease-web"}));
            (Value::Array(rows), None)
        };
        let kept_after = |pools: &[&str], lease: &str| {
            let preflight = shared.preflight();
            shared.keep(
                "/cluster/resources",
                "/cluster/resources",
                &[],
                &whole(pools),
            );
            drop(preflight);
            shared.forget_if_it_lists_pool(lease);
            shared
                .take("/cluster/resources", "/cluster/resources", &[])
                .is_some()
        };
        // Free when read: handed on. Another project's lease, a team's pool, or a guest's
        // `pool` field naming the lease are not the lease held.
        assert!(kept_after(&[], "proxfleet-lease-web"));
        assert!(kept_after(
            &["proxfleet-lease-db", "team"],
            "proxfleet-lease-web"
        ));
        // Held when read: dropped.
        assert!(!kept_after(
            &["proxfleet-lease-web", "team"],
            "proxfleet-lease-web"
        ));
    }
}
