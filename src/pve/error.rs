//! Client errors and their classification: which failures are worth retrying (connection
//! trouble, time-outs, lock contention, proxy errors) and which are final (parameters,
//! authentication, permissions). The one place that decides it.

use std::collections::BTreeMap;

/// A failed request or task.
#[derive(Debug, thiserror::Error)]
pub enum PveError {
    /// Proxmox answered with an error status.
    #[error(
        "{method} {path} failed with HTTP {status}: {message}{}",
        field_errors(errors)
    )]
    Http {
        /// HTTP method.
        method: String,
        /// Path (below `/api2/json`).
        path: String,
        /// Status code.
        status: u16,
        /// Proxmox's message, trimmed.
        message: String,
        /// Per-parameter messages (400).
        errors: BTreeMap<String, String>,
    },
    /// The server could not be reached or the connection broke.
    #[error("{method} {path}: cannot reach the server: {message}")]
    Connect {
        /// HTTP method.
        method: String,
        /// Path.
        path: String,
        /// What the transport said.
        message: String,
    },
    /// No answer in time.
    #[error("{method} {path}: no answer within the time-out")]
    Timeout {
        /// HTTP method.
        method: String,
        /// Path.
        path: String,
    },
    /// A task ended in error.
    #[error("task {upid} failed: {exitstatus}{}", log_tail(log))]
    TaskFailed {
        /// Task id.
        upid: String,
        /// Its exit status.
        exitstatus: String,
        /// Its log.
        log: Vec<String>,
    },
    /// A task did not end in time.
    #[error("task {upid} did not finish in time")]
    TaskTimeout {
        /// Task id.
        upid: String,
    },
    /// An answer could not be understood.
    #[error("cannot understand the answer to {what}: {message}")]
    Decode {
        /// Which request.
        what: String,
        /// Why.
        message: String,
    },
    /// The API token is malformed (the message never contains the secret).
    #[error("invalid API token: {reason}")]
    InvalidToken {
        /// Why.
        reason: String,
    },
    /// The endpoint is not a usable URL.
    #[error("invalid endpoint: {reason}")]
    InvalidEndpoint {
        /// Why.
        reason: String,
    },
    /// TLS set-up failed (CA file).
    #[error("TLS set-up failed: {reason}")]
    Tls {
        /// Why.
        reason: String,
    },
}

fn field_errors(errors: &BTreeMap<String, String>) -> String {
    errors
        .iter()
        .map(|(field, message)| format!("\n  {field}: {}", message.trim()))
        .collect()
}

fn log_tail(log: &[String]) -> String {
    let start = log.len().saturating_sub(10);
    log[start..]
        .iter()
        .map(|line| format!("\n  | {line}"))
        .collect()
}

/// Messages of lock contention and busy resources that go away when tried again.
fn is_transient_message(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "can't lock file",
        "got timeout",
        "vm is locked",
        "is locked (",
        "temporarily unavailable",
        "connection refused",
        "connection reset",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

impl PveError {
    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            PveError::Connect { .. } | PveError::Timeout { .. } => true,
            PveError::Http {
                status, message, ..
            } => match status {
                // 59x: pveproxy could not reach the node it proxies to.
                595 | 596 | 599 | 502 | 503 | 504 => true,
                500 => {
                    !self.is_digest_mismatch()
                        && (is_transient_message(message) || message.contains("timeout"))
                }
                _ => false,
            },
            PveError::TaskFailed { exitstatus, .. } => is_transient_message(exitstatus),
            PveError::TaskTimeout { .. }
            | PveError::Decode { .. }
            | PveError::InvalidToken { .. }
            | PveError::InvalidEndpoint { .. }
            | PveError::Tls { .. } => false,
        }
    }

    /// Whether a write was refused because the config changed since it was read.
    pub fn is_digest_mismatch(&self) -> bool {
        match self {
            PveError::Http { message, .. } => {
                message.contains("checksum mismatch") || message.contains("digest")
            }
            _ => false,
        }
    }

    /// Whether a start was refused because the VM runs already (an earlier start whose answer
    /// was lost, or one landing between observing and starting). qemu-server's `vm_start`
    /// (`PVE/QemuServer.pm`): `die "VM $vmid already running\n"`, the start task's exit status.
    pub fn is_already_running(&self) -> bool {
        self.says("already running")
    }

    /// Whether a create or clone was refused because the vmid is taken. pve-guest-common's
    /// `create_and_lock_config` (`PVE/AbstractConfig.pm`): `die "unable to create VM $vmid:
    /// config file already exists\n"`; pve-cluster's `check_vmid_unused`
    /// (`PVE/Cluster.pm`): `die "VM $vmid already exists on node '$node'\n"`, which the API
    /// reports against the `vmid` parameter. Whether the VM there is the one wanted is the
    /// caller's to check.
    pub fn is_already_exists(&self) -> bool {
        self.says("already exists")
    }

    /// Whether a conversion to a template was refused because the VM is one already (an
    /// earlier conversion whose answer was lost). qemu-server's `template` endpoint
    /// (`PVE/API2/Qemu.pm`): `die "you can't convert a template to a template\n"`.
    pub fn is_already_template(&self) -> bool {
        self.says("you can't convert a template to a template")
    }

    /// Whether the guest agent was asked about a VM without the `agent` option, so asking
    /// again cannot help. qemu-server's `assert_agent_available`
    /// (`PVE/QemuServer/Agent.pm`): `die "No QEMU guest agent configured\n"`.
    pub fn is_no_guest_agent(&self) -> bool {
        self.says("No QEMU guest agent configured")
    }

    /// Whether Proxmox's words for this failure (its message, a parameter's message, a task's
    /// exit status) contain `needle`.
    fn says(&self, needle: &str) -> bool {
        match self {
            PveError::Http {
                message, errors, ..
            } => message.contains(needle) || errors.values().any(|m| m.contains(needle)),
            PveError::TaskFailed { exitstatus, .. } => exitstatus.contains(needle),
            _ => false,
        }
    }

    /// The HTTP status, when Proxmox answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            PveError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, message: &str) -> PveError {
        PveError::Http {
            method: "POST".into(),
            path: "/x".into(),
            status,
            message: message.into(),
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn transient_and_permanent_errors() {
        let task = |exit: &str| PveError::TaskFailed {
            upid: "U".into(),
            exitstatus: exit.into(),
            log: vec![],
        };
        let cases = [
            (
                http(
                    500,
                    "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
                ),
                true,
            ),
            (http(500, "VM is locked (clone)"), true),
            (http(599, "Too many redirections"), true),
            (http(503, "service unavailable"), true),
            (
                http(500, "checksum mismatch (file change by other user?)"),
                false,
            ),
            (
                http(500, "unable to create VM 100: config file already exists"),
                false,
            ),
            (http(400, "Parameter verification failed."), false),
            (http(401, "authentication failure"), false),
            (http(403, "Permission check failed"), false),
            (http(501, "Method 'GET /nope' not implemented"), false),
            (
                task("can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout"),
                true,
            ),
            (task("storage 'nope' does not exist"), false),
            (
                PveError::Connect {
                    method: "GET".into(),
                    path: "/".into(),
                    message: "refused".into(),
                },
                true,
            ),
            (
                PveError::Timeout {
                    method: "GET".into(),
                    path: "/".into(),
                },
                true,
            ),
        ];
        for (err, transient) in cases {
            assert_eq!(err.is_transient(), transient, "{err}");
        }
        assert!(http(500, "checksum mismatch (file change by other user?)").is_digest_mismatch());
    }

    #[test]
    fn already_done_answers_are_recognised_wherever_proxmox_puts_them() {
        let task = |exit: &str| PveError::TaskFailed {
            upid: "U".into(),
            exitstatus: exit.into(),
            log: vec![],
        };
        let vmid_taken = PveError::Http {
            method: "POST".into(),
            path: "/nodes/pve1/qemu".into(),
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: BTreeMap::from([("vmid".into(), "VM 100 already exists".into())]),
        };
        assert!(task("VM 100 already running").is_already_running());
        assert!(http(500, "VM 100 already running").is_already_running());
        assert!(!task("VM 100 not running").is_already_running());
        assert!(vmid_taken.is_already_exists());
        assert!(
            http(500, "unable to create VM 100: config file already exists").is_already_exists()
        );
        assert!(!http(500, "VM 100 does not exist").is_already_exists());
        assert!(http(500, "you can't convert a template to a template").is_already_template());
        assert!(!http(500, "VM is locked (clone)").is_already_template());
        assert!(http(500, "No QEMU guest agent configured").is_no_guest_agent());
        assert!(!http(500, "QEMU guest agent is not running").is_no_guest_agent());
        let unreachable = PveError::Connect {
            method: "GET".into(),
            path: "/".into(),
            message: "VM 100 already running".into(),
        };
        assert!(!unreachable.is_already_running());
    }

    #[test]
    fn task_failures_show_the_log_tail() {
        let err = PveError::TaskFailed {
            upid: "UPID:x".into(),
            exitstatus: "boom".into(),
            log: (0..20).map(|i| format!("line {i}")).collect(),
        };
        let text = err.to_string();
        assert!(
            text.contains("| line 19")
                && text.contains("| line 10")
                && !text.contains("| line 9\n"),
            "{text}"
        );
    }
}
