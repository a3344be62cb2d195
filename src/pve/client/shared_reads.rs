//! Listings a run reads in two places, read once: the preflight and the observation both need
//! the cluster listing (`/cluster/resources`), the node list and the nodes' storage lists,
//! one right after the other. The first read's answer is kept and handed to the next read of
//! the same path and query, once, if that comes within `SHARE_WINDOW`; any write in between
//! drops every kept answer, so what is handed out is never older than the last change this
//! client made, and a reader that polls (waiting for VMs still being made) reads afresh every
//! other time at least.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// How long a kept answer may be handed out after it was read.
const SHARE_WINDOW: Duration = Duration::from_secs(10);

/// The endpoints whose answers are shared.
const SHARED: &[&str] = &["/cluster/resources", "/nodes", "/nodes/{node}/storage"];

/// A page of `data` and its `total`.
type Answer = (Value, Option<u64>);

/// Kept answers by path and query.
#[derive(Default)]
pub(crate) struct SharedReads {
    kept: Mutex<BTreeMap<String, (Instant, Answer)>>,
}

fn key(path: &str, params: &[(String, String)]) -> String {
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", query.join("&"))
}

impl SharedReads {
    /// The kept answer for this read, if there is one (it is handed out once).
    pub(crate) fn take(
        &self,
        template: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Option<Answer> {
        if !SHARED.contains(&template) {
            return None;
        }
        let (read_at, answer) = self.kept.lock().ok()?.remove(&key(path, params))?;
        (read_at.elapsed() <= SHARE_WINDOW).then_some(answer)
    }

    /// Keep a fresh answer for the next reader.
    pub(crate) fn keep(
        &self,
        template: &str,
        path: &str,
        params: &[(String, String)],
        answer: &Answer,
    ) {
        if !SHARED.contains(&template) {
            return;
        }
        if let Ok(mut kept) = self.kept.lock() {
            kept.insert(key(path, params), (Instant::now(), answer.clone()));
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
        shared.keep("/cluster/resources", "/cluster/resources", &params, &answer);
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
        shared.keep("/cluster/resources", "/cluster/resources", &params, &answer);
        tokio::time::advance(SHARE_WINDOW + Duration::from_secs(1)).await;
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
}
