//! Tasks (UPIDs): a node's task list, a task's status and log, and waiting for one to
//! end (through the shared watcher, `task_watch`), with the wire structs of
//! `/nodes/{node}/tasks`, `/nodes/{node}/tasks/{upid}/status` and `…/log`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::retry::started_task;
use super::task_watch::{ActiveQuery, ListedTasks, Seen, task_poll_delay};
use super::{PveClient, ReadRetry, de, segment};
use crate::pve::types::{TaskOutcome, TaskStatus};
use crate::pve::{PveError, Upid};

/// `/nodes/{node}/tasks/{upid}/status`, the fields proxfleet reads.
#[derive(Debug, Deserialize)]
struct TaskStatusWire {
    /// `running` or `stopped`.
    #[serde(deserialize_with = "de::text")]
    status: String,
    /// Once stopped: `OK`, `WARNINGS: n`, or the error.
    #[serde(default, deserialize_with = "de::optional_text")]
    exitstatus: Option<String>,
}

/// An entry of `/nodes/{node}/tasks` as the watcher reads it: its UPID, and its `status`:
/// `RUNNING` while it runs, its exit status once it has ended.
#[derive(Debug, Deserialize)]
struct ListedTaskWire {
    #[serde(deserialize_with = "de::text")]
    upid: String,
    #[serde(default, deserialize_with = "de::optional_text")]
    status: Option<String>,
}

/// An entry of `/nodes/{node}/tasks` as searched for a task whose answer was lost.
#[derive(Debug, Deserialize)]
struct StartedWire {
    #[serde(deserialize_with = "de::text")]
    upid: String,
    #[serde(rename = "type", deserialize_with = "de::text")]
    task_type: String,
    #[serde(default, deserialize_with = "de::text")]
    id: String,
    #[serde(deserialize_with = "de::text")]
    user: String,
    #[serde(default, deserialize_with = "de::optional_text")]
    tokenid: Option<String>,
}

/// How far back (seconds) the search for a task whose answer was lost looks before the request.
const LOST_ANSWER_LOOKBACK_SECS: u64 = 60;

/// How many tasks `running_tasks_of` lists at most (the running ones come first).
const RUNNING_TASKS_LISTED: usize = 600;

/// Seconds since the epoch by this machine's clock (UPIDs carry the node's).
fn epoch_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A line of `/nodes/{node}/tasks/{upid}/log`.
#[derive(Debug, Deserialize)]
struct LogLineWire {
    #[serde(deserialize_with = "de::text")]
    t: String,
}

fn task_status(data: &Value, what: &str) -> Result<TaskStatus, PveError> {
    let wire: TaskStatusWire = de::decode(data, what)?;
    Ok(TaskStatus {
        running: wire.status == "running",
        exitstatus: wire.exitstatus,
    })
}

fn log_lines(data: &Value, what: &str) -> Result<Vec<String>, PveError> {
    let lines: Vec<LogLineWire> = de::decode(data, what)?;
    Ok(lines.into_iter().map(|line| line.t).collect())
}

/// How a stopped task ended: `OK` and `WARNINGS: n` are success, anything else the error.
fn outcome(exitstatus: &str) -> Option<TaskOutcome> {
    if exitstatus == "OK" {
        return Some(TaskOutcome { warnings: 0 });
    }
    let warnings = exitstatus.strip_prefix("WARNINGS: ")?;
    Some(TaskOutcome {
        warnings: warnings.trim().parse().unwrap_or(1),
    })
}

/// A task listing's running and ended tasks. A task without a status is taken as running:
/// only an exit status ends a wait.
fn listed_tasks(entries: Vec<ListedTaskWire>, total: Option<u64>) -> ListedTasks {
    let n_listed = entries.len() as u64;
    let cut = total.is_some_and(|total| total > n_listed);
    let last_runs = entries
        .last()
        .is_some_and(|entry| entry.status.as_deref().is_none_or(|s| s == "RUNNING"));
    let mut listed = ListedTasks {
        running: BTreeSet::new(),
        ended: BTreeMap::new(),
        running_complete: !(cut && last_runs),
    };
    for entry in entries {
        match entry.status {
            Some(status) if status != "RUNNING" => {
                listed.ended.insert(entry.upid, status);
            }
            _ => {
                listed.running.insert(entry.upid);
            }
        }
    }
    listed
}

impl PveClient {
    /// `GET /nodes/{node}/tasks/{upid}/status`. A task seen stopped is no longer one given up
    /// on (`tasks_given_up`).
    ///
    /// # Errors
    /// HTTP errors; an answer without a `status`.
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, PveError> {
        let path = format!(
            "/nodes/{}/tasks/{}/status",
            segment(upid.node()),
            segment(&upid.to_string())
        );
        let data = self
            .get("/nodes/{node}/tasks/{upid}/status", &path, &[])
            .await?;
        let status = task_status(&data, &format!("GET {path}"))?;
        if !status.running
            && let Ok(mut given_up) = self.inner.given_up.lock()
        {
            given_up.remove(upid);
        }
        Ok(status)
    }

    /// `GET /nodes/{node}/tasks/{upid}/log`, every page.
    ///
    /// # Errors
    /// HTTP errors; a line without its text.
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
            let page = log_lines(&data, &format!("GET {path}"))?;
            let n_page = page.len();
            lines.extend(page);
            let done = n_page == 0 || total.is_none_or(|total| lines.len() as u64 >= total);
            if done {
                return Ok(lines);
            }
        }
    }

    /// `GET /nodes/{node}/tasks?source=all`, narrowed as `query` says: the node's running
    /// tasks, then the ones that ended, the most recently archived first, each ended one with
    /// its exit status (pve-manager `PVE/API2/Tasks.pm`, `node_tasks`: the active part reads
    /// `/var/log/pve/tasks/active`, where a task that has ended but is not archived yet shows its
    /// exit status, and skips the archived ones; the rest reads the index backwards, an entry
    /// `UPID endtime status` a task, the same status `…/tasks/{upid}/status` answers as its
    /// `exitstatus`, both from `PVE::Tools::upid_read_status`). So one request a round says
    /// which awaited tasks still run and how most of those that ended did, and a task's own
    /// status is read only when the listing could not show its end.
    ///
    /// `running_complete` is false when the limit may have cut running tasks off: the list was
    /// cut and its last entry still runs (the running tasks come first).
    ///
    /// # Errors
    /// HTTP errors (an older Proxmox refuses `source` as an unknown parameter); an entry
    /// without a UPID.
    pub(crate) async fn active_tasks(
        &self,
        node: &str,
        query: &ActiveQuery,
    ) -> Result<ListedTasks, PveError> {
        let path = format!("/nodes/{}/tasks", segment(node));
        // Room for every awaited task twice (running, or ended since the last round) and as
        // many others again; the default is 50.
        let limit = (query.n_awaited * 3).max(50);
        let mut params = vec![
            ("source".to_string(), "all".to_string()),
            ("since".to_string(), query.since.to_string()),
            ("limit".to_string(), limit.to_string()),
        ];
        let optional = [
            ("typefilter", &query.typefilter),
            ("vmid", &query.vmid),
            ("userfilter", &query.userfilter),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                params.push((name.to_string(), value.clone()));
            }
        }
        let (data, total) = self
            .call(Method::GET, "/nodes/{node}/tasks", &path, &params)
            .await?;
        let entries: Vec<ListedTaskWire> = de::decode(&data, &format!("GET {path}"))?;
        Ok(listed_tasks(entries, total))
    }

    /// The tasks `token` (`user@realm!token`) started on `node` at `since` or later that still
    /// run: one listing, narrowed to the token's user (pve-manager's `node_tasks` matches
    /// `userfilter` against the user, without the token's name), the token told apart by the
    /// UPIDs. `complete` is false when the listing's limit may have cut some off.
    ///
    /// # Errors
    /// HTTP errors; an entry without a UPID.
    pub async fn running_tasks_of(
        &self,
        node: &str,
        token: &str,
        since: u64,
    ) -> Result<(Vec<Upid>, bool), PveError> {
        let user = token.split('!').next().unwrap_or(token);
        let query = ActiveQuery {
            since,
            typefilter: None,
            vmid: None,
            userfilter: Some(user.to_string()),
            n_awaited: RUNNING_TASKS_LISTED / 3,
            covered: BTreeSet::new(),
        };
        let listed = self.active_tasks(node, &query).await?;
        let running = listed
            .running
            .iter()
            .filter_map(|text| text.parse::<Upid>().ok())
            .filter(|upid| upid.user().eq_ignore_ascii_case(token))
            .collect();
        Ok((running, listed.running_complete))
    }

    /// Send a write that may start a task, and return its answer (a UPID, or `null` when the
    /// work was done at once). When the answer is lost (a dropped connection, a time-out) the
    /// node's task list is searched for the task the request would have started (see
    /// `retry`): found, its UPID is the answer; surely absent, the error is returned as it
    /// came (the request did nothing, and may be sent again); unknowable, the error is final.
    pub(super) async fn task_request(
        &self,
        method: Method,
        template: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Value, PveError> {
        // The node's clock may differ from ours: look back a minute more than needed; tasks
        // this client knows are told apart by their UPIDs.
        let since = epoch_now().saturating_sub(LOST_ANSWER_LOOKBACK_SECS);
        match self.call(method.clone(), template, path, params).await {
            Ok((data, _)) => {
                if let (Some(upid), Ok(mut known)) =
                    (data.as_str(), self.inner.task_watch.known.lock())
                {
                    known.insert(upid.to_string());
                }
                Ok(data)
            }
            Err(err @ (PveError::Connect { .. } | PveError::Timeout { .. })) => {
                let Some((task_type, id)) = started_task(&method, template, path, params) else {
                    return Err(err);
                };
                let node = path.split('/').nth(2).unwrap_or_default().to_string();
                match self
                    .find_started(&node, task_type, id.as_deref(), since)
                    .await
                {
                    Ok(Some(upid)) => {
                        tracing::warn!(%upid, %err, "the answer was lost but the task started: waiting for it");
                        Ok(Value::String(upid))
                    }
                    Ok(None) => Err(err),
                    Err(why) => Err(PveError::Decode {
                        what: format!("{method} {path}"),
                        message: format!(
                            "the answer was lost ({err}) and {why}: not sending it again"
                        ),
                    }),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// The task of `task_type` for `id` that this client's token started on `node` since
    /// `since` and was not told of, if the node lists exactly one; an explanation when the
    /// list cannot be read or names more than one.
    async fn find_started(
        &self,
        node: &str,
        task_type: &str,
        id: Option<&str>,
        since: u64,
    ) -> Result<Option<String>, String> {
        let path = format!("/nodes/{}/tasks", segment(node));
        let token = self.token_id().to_string();
        let mut params = vec![
            ("source".to_string(), "all".to_string()),
            ("typefilter".to_string(), task_type.to_string()),
            ("since".to_string(), since.to_string()),
            ("limit".to_string(), "500".to_string()),
            (
                "userfilter".to_string(),
                token.split('!').next().unwrap_or_default().to_string(),
            ),
        ];
        if let Some(vmid) = id.filter(|id| id.parse::<u32>().is_ok_and(|n| n >= 100)) {
            params.push(("vmid".to_string(), vmid.to_string()));
        }
        // A concurrent request's answer may still be on its way: a second look tells its task
        // from ours.
        for attempt in 0..2 {
            let data = self
                .get("/nodes/{node}/tasks", &path, &params)
                .await
                .map_err(|err| {
                    format!("the node's task list cannot say whether it started ({err})")
                })?;
            let entries: Vec<StartedWire> =
                de::decode(&data, &format!("GET {path}")).map_err(|err| err.to_string())?;
            let known = self
                .inner
                .task_watch
                .known
                .lock()
                .map(|known| known.clone())
                .unwrap_or_default();
            let ours: Vec<String> = entries
                .into_iter()
                .filter(|e| e.task_type == task_type && id.is_none_or(|id| e.id == id))
                .filter(|e| match &e.tokenid {
                    Some(tokenid) => format!("{}!{tokenid}", e.user) == token,
                    None => e.user == token,
                })
                .map(|e| e.upid)
                .filter(|upid| !known.contains(upid))
                .collect();
            match ours.as_slice() {
                [] => return Ok(None),
                [upid] => {
                    if let Ok(mut known) = self.inner.task_watch.known.lock() {
                        known.insert(upid.clone());
                    }
                    return Ok(Some(upid.clone()));
                }
                _ if attempt == 0 => tokio::time::sleep(Duration::from_millis(500)).await,
                _ => {}
            }
        }
        Err(format!(
            "the node lists more than one {task_type} task it could be"
        ))
    }

    /// Wait for a task: until its node's task list shows it ended, with its exit status (one
    /// listing per node and round, shared by every task awaited there; see `task_watch`); when
    /// it has left the running tasks but the list did not show how it ended, its status is read
    /// once. Where the listing cannot answer, the task is looked at on its
    /// own instead, after a tenth of the time waited so far (10 ms to 1 s). Success is `OK` or
    /// `WARNINGS: n`; anything else fails with the task's log.
    ///
    /// A look that fails transiently (a 503, a dropped connection, a time-out, each already
    /// retried as a read) is only a look: the task runs on regardless, so the wait goes on,
    /// backing off, until the task's own `timeout`. Ending the wait there would make the caller
    /// send the request that started the task again (see `retry`).
    ///
    /// # Errors
    /// [`PveError::TaskFailed`] with the log; [`PveError::TaskTimeout`] when the task has not
    /// ended (or could not be seen to end) within `timeout`; a permanent polling error (403,
    /// 400, an answer that cannot be decoded).
    pub async fn wait_task(&self, upid: &Upid, timeout: Duration) -> Result<TaskOutcome, PveError> {
        let waited = self.wait_for_task(upid, timeout).await;
        // Any end of the wait but the task's own leaves it perhaps running.
        let perhaps_running =
            matches!(&waited, Err(err) if !matches!(err, PveError::TaskFailed { .. }));
        if let Ok(mut given_up) = self.inner.given_up.lock() {
            if perhaps_running {
                given_up.insert(upid.clone());
            } else {
                given_up.remove(upid);
            }
        }
        waited
    }

    /// The tasks a `wait_task` of this client gave up on (it timed out, or the task could no
    /// longer be looked at), which may still run: a run that ends with some leaves its lease
    /// for the next run to wait for them (`crate::lease`).
    pub fn tasks_given_up(&self) -> Vec<Upid> {
        self.inner
            .given_up
            .lock()
            .map(|given_up| given_up.iter().cloned().collect())
            .unwrap_or_default()
    }

    async fn wait_for_task(&self, upid: &Upid, timeout: Duration) -> Result<TaskOutcome, PveError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let left = tokio::time::timeout_at(deadline, self.task_left(upid)).await;
        let status = match left {
            Err(_) => {
                return Err(PveError::TaskTimeout {
                    upid: upid.to_string(),
                });
            }
            // Listed as ended: its exit status came with the listing.
            Ok(Seen::Ended(exitstatus)) => Some(TaskStatus {
                running: false,
                exitstatus: Some(exitstatus),
            }),
            // Gone from the list: one look for its exit status (a look that fails
            // transiently falls back to looking on).
            Ok(Seen::Left) => match self.task_status(upid).await {
                Ok(status) if !status.running => Some(status),
                Ok(_) => None,
                Err(err) if err.is_transient() => None,
                Err(err) => return Err(err),
            },
            Ok(Seen::Unanswered) => None,
        };
        let status = match status {
            Some(status) => status,
            None => self.look_until_stopped(upid, started, deadline).await?,
        };
        let exit = status.exitstatus.unwrap_or_default();
        if let Some(outcome) = outcome(&exit) {
            return Ok(outcome);
        }
        // The log only adds detail to a failure already known: a log that cannot be read
        // (after its own retries) leaves the failure without it.
        let log = self.task_log(upid).await.unwrap_or_default();
        Err(PveError::TaskFailed {
            upid: upid.to_string(),
            exitstatus: exit,
            log,
        })
    }

    /// Look at one task on its own until it has stopped, after a tenth of the time waited
    /// since `started` each time (see `task_poll_delay`), through transient failures until
    /// `deadline`.
    async fn look_until_stopped(
        &self,
        upid: &Upid,
        started: Instant,
        deadline: Instant,
    ) -> Result<TaskStatus, PveError> {
        let mut failed_looks = 0_u32;
        loop {
            let poll_delay = task_poll_delay(started.elapsed());
            tokio::time::sleep(poll_delay + self.failed_look_delay(failed_looks)).await;
            match self.task_status(upid).await {
                Ok(status) if !status.running => return Ok(status),
                Ok(_) => failed_looks = 0,
                Err(err) if err.is_transient() && Instant::now() < deadline => {
                    failed_looks += 1;
                    tracing::debug!(%upid, %err, failed_looks, "cannot see the task; waiting on");
                    continue;
                }
                Err(err) if err.is_transient() => {
                    tracing::warn!(%upid, %err, "cannot see the task, and its time is up");
                    return Err(PveError::TaskTimeout {
                        upid: upid.to_string(),
                    });
                }
                Err(err) => return Err(err),
            }
            if Instant::now() >= deadline {
                return Err(PveError::TaskTimeout {
                    upid: upid.to_string(),
                });
            }
        }
    }

    /// The extra wait after `failed_looks` looks in a row failed: the read budget's delays,
    /// growing with each failure and capped at its longest, jittered, so that a node that
    /// drops every poll is not hammered while its task runs on.
    fn failed_look_delay(&self, failed_looks: u32) -> Duration {
        if failed_looks == 0 {
            return Duration::ZERO;
        }
        let retry = self.inner.read_retry;
        let n_steps = (failed_looks as usize).min(8);
        ReadRetry {
            max_retries: n_steps,
            ..retry
        }
        .delays()
        .last()
        .unwrap_or(retry.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn status_running_stopped_and_its_numbers_as_either_shape() {
        let running = json!({"status": "running", "upid": "UPID:x", "pid": 1, "pstart": "2",
            "starttime": 1700000000, "type": "qmclone", "id": "9000", "user": "root@pam"});
        assert_eq!(
            task_status(&running, "GET s").unwrap(),
            TaskStatus {
                running: true,
                exitstatus: None
            }
        );
        let stopped = json!({"status": "stopped", "exitstatus": "WARNINGS: 2", "pid": "1",
            "endtime": "1700000010"});
        let stopped = task_status(&stopped, "GET s").unwrap();
        assert!(!stopped.running);
        assert_eq!(stopped.exitstatus.as_deref(), Some("WARNINGS: 2"));
        let err = task_status(
            &json!({"exitstatus": "OK"}),
            "GET /nodes/pve1/tasks/U/status",
        );
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("tasks/U/status: missing field `status`")
        );
    }

    #[test]
    fn a_listing_tells_running_from_ended_and_whether_it_was_cut() {
        let entries = |statuses: &[(&str, Option<&str>)]| -> Vec<ListedTaskWire> {
            statuses
                .iter()
                .map(|(upid, status)| ListedTaskWire {
                    upid: upid.to_string(),
                    status: status.map(str::to_string),
                })
                .collect()
        };
        let listed = listed_tasks(
            entries(&[
                ("A", Some("RUNNING")),
                ("B", None),
                ("C", Some("OK")),
                ("D", Some("command 'qm' failed")),
            ]),
            Some(4),
        );
        assert_eq!(listed.running, ["A", "B"].map(String::from).into());
        assert_eq!(listed.ended["C"], "OK");
        assert_eq!(listed.ended["D"], "command 'qm' failed");
        assert!(listed.running_complete);
        // Cut after an ended task: the running ones (listed first) are all there.
        let cut_in_ended = listed_tasks(
            entries(&[("A", Some("RUNNING")), ("C", Some("OK"))]),
            Some(9),
        );
        assert!(cut_in_ended.running_complete);
        // Cut while still listing running tasks: some may be missing.
        let cut_in_running = listed_tasks(entries(&[("A", Some("RUNNING"))]), Some(9));
        assert!(!cut_in_running.running_complete);
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(outcome("OK"), Some(TaskOutcome { warnings: 0 }));
        assert_eq!(outcome("WARNINGS: 3"), Some(TaskOutcome { warnings: 3 }));
        assert_eq!(outcome("WARNINGS: many"), Some(TaskOutcome { warnings: 1 }));
        assert_eq!(outcome("unable to create VM 100"), None);
        assert_eq!(outcome(""), None);
    }

    #[test]
    fn log_lines_and_a_malformed_one() {
        let data = json!([{"n": 1, "t": "starting"}, {"n": "2", "t": "done"}, {"n": 3, "t": 42}]);
        assert_eq!(
            log_lines(&data, "GET l").unwrap(),
            ["starting", "done", "42"]
        );
        let err = log_lines(&json!([{"n": 1, "t": "a"}, {"n": 2}]), "GET l").unwrap_err();
        assert!(
            err.to_string().contains("at `[1]`: missing field `t`"),
            "{err}"
        );
    }
}
