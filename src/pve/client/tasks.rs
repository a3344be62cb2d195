//! Tasks (UPIDs): a task's status and log, and waiting for one to end, with the wire structs
//! of `/nodes/{node}/tasks/{upid}/status` and `…/log`.

use std::time::Duration;

use tokio::time::Instant;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

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

impl PveClient {
    /// `GET /nodes/{node}/tasks/{upid}/status`.
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
        task_status(&data, &format!("GET {path}"))
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

    /// Wait for a task, looking at it again after a tenth of the time waited so far (10 ms to
    /// 1 s; see `task_poll_delay`). Success is `OK` or `WARNINGS: n`; anything else fails with
    /// the task's log.
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
        let started = Instant::now();
        let deadline = started + timeout;
        let mut failed_looks = 0_u32;
        loop {
            let poll_delay = task_poll_delay(started.elapsed());
            tokio::time::sleep(poll_delay + self.failed_look_delay(failed_looks)).await;
            let status = match self.task_status(upid).await {
                Ok(status) => {
                    failed_looks = 0;
                    status
                }
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
            };
            if !status.running {
                let exit = status.exitstatus.unwrap_or_default();
                if let Some(outcome) = outcome(&exit) {
                    return Ok(outcome);
                }
                // The log only adds detail to a failure already known: a log that cannot be
                // read (after its own retries) leaves the failure without it.
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
