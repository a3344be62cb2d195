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

/// What to do about one of Proxmox's lock and time-out messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockVerdict {
    /// The lock was never taken, so nothing was done: the same request may be sent again
    /// after a backoff.
    Retry,
    /// Another task holds the object and works on it: wait for its lock to go, then decide
    /// afresh (the other task may have done the work already).
    Wait,
    /// Waiting will not help (the locked work was cut off midway, or the guest is parked in a
    /// state only an operator ends): report it.
    Fail,
}

/// One wording of Proxmox's, where it comes from, and what it means for proxfleet.
struct LockWording {
    /// Lower-case text that identifies the message.
    needle: &'static str,
    verdict: LockVerdict,
}

/// Every lock and time-out message Proxmox produces on the paths proxfleet uses (create,
/// clone, config, resize, template, migrate, start, shutdown, delete, download-url, and the
/// storage allocations below them), most severe first so that a message matching two entries
/// gets the stricter verdict. The wording is Proxmox's, read in its sources:
const LOCK_WORDINGS: &[LockWording] = &[
    // pve-cluster `src/PVE/Cluster.pm`, `$cfs_lock`: the code under a cluster lock ran past
    // its 60 s alarm and was killed midway ("got lock timeout - aborting command"); what it
    // had done is unknown, so repeating it blindly is wrong.
    LockWording {
        needle: "got lock timeout - aborting command",
        verdict: LockVerdict::Fail,
    },
    // pve-guest-common `src/PVE/AbstractConfig.pm`, `check_lock` (qemu-server's own
    // `check_lock` in `PVE/QemuServer.pm` before it): "VM is locked (suspended)" is a
    // hibernated VM, which stays so until resumed by hand.
    LockWording {
        needle: "is locked (suspended)",
        verdict: LockVerdict::Fail,
    },
    // pve-cluster `src/PVE/Cluster.pm`, `$cfs_lock`: "cfs-lock '<id>' error: got lock request
    // timeout" when the pmxcfs lock (`storage-<id>` for a shared storage's allocations via
    // pve-storage's `cluster_lock_storage`, `file-<name>`, `domain-<name>`) could not be taken
    // within its time-out (10 s unless given). The locked code never ran.
    LockWording {
        needle: "got lock request timeout",
        verdict: LockVerdict::Retry,
    },
    // pve-cluster `src/PVE/Cluster.pm`, `$cfs_lock`: "pve cluster filesystem not online." when
    // /etc/pve/priv/lock cannot be made (pmxcfs restarting, no quorum yet). Nothing ran.
    LockWording {
        needle: "pve cluster filesystem not online",
        verdict: LockVerdict::Retry,
    },
    // pve-common `src/PVE/Tools.pm`, `lock_file_full`: "can't lock file '<path>' - got
    // timeout" when the flock was not had in time: `/var/lock/qemu-server/lock-<vmid>.conf`
    // (every config change, clone, migrate: pve-guest-common's `lock_config`) and
    // `/var/lock/pve-manager/pve-storage-<id>` (a local storage's allocations: pve-storage
    // `src/PVE/Storage/Plugin.pm`, `cluster_lock_storage`). The locked code never ran.
    LockWording {
        needle: "can't lock file",
        verdict: LockVerdict::Retry,
    },
    // pve-common `src/PVE/Tools.pm`, `run_with_timeout`: "got timeout", the alarm's message,
    // also behind a storage command that stalled (`command '/sbin/lvs …' failed: got timeout`).
    LockWording {
        needle: "got timeout",
        verdict: LockVerdict::Retry,
    },
    // pve-guest-common `src/PVE/AbstractConfig.pm`, `check_lock`: "VM is locked (<lock>)"
    // while a task holds the VM: `create`, `clone` (the source and the target), `migrate`,
    // `backup`, `snapshot`, `rollback`, `disk` (a move or import), `suspending`.
    LockWording {
        needle: "is locked (",
        verdict: LockVerdict::Wait,
    },
    // pve-common `src/PVE/Tools.pm`, `lock_file_full`, and pve-cluster `src/PVE/Cluster.pm`,
    // `$cfs_lock`: a task that waits for a lock says so in its log ("trying to acquire
    // lock...", "trying to acquire cfs lock '<id>' ..."; older releases spell it "aquire").
    // The task is queued, not failed.
    LockWording {
        needle: "trying to acquire",
        verdict: LockVerdict::Wait,
    },
    LockWording {
        needle: "trying to aquire",
        verdict: LockVerdict::Wait,
    },
];

/// What one of Proxmox's messages (an error, an exit status, a task log line) says about a
/// lock or a time-out, when it says anything.
pub fn lock_verdict_of(message: &str) -> Option<LockVerdict> {
    let lower = message.to_ascii_lowercase();
    LOCK_WORDINGS
        .iter()
        .find(|wording| lower.contains(wording.needle))
        .map(|wording| wording.verdict)
}

/// Messages that go away when tried again: a lock that was not had (retry) or is held by a
/// task that will end (wait), and a busy or restarting server.
fn is_transient_message(message: &str) -> bool {
    match lock_verdict_of(message) {
        Some(LockVerdict::Retry | LockVerdict::Wait) => true,
        Some(LockVerdict::Fail) => false,
        None => {
            let lower = message.to_ascii_lowercase();
            [
                "temporarily unavailable",
                "connection refused",
                "connection reset",
            ]
            .iter()
            .any(|needle| lower.contains(needle))
        }
    }
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
                        && lock_verdict_of(message) != Some(LockVerdict::Fail)
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

    /// What Proxmox's words for this failure say about a lock or a time-out (see
    /// `LOCK_WORDINGS`), when they say anything.
    pub fn lock_verdict(&self) -> Option<LockVerdict> {
        match self {
            PveError::Http {
                message, errors, ..
            } => std::iter::once(message)
                .chain(errors.values())
                .filter_map(|text| lock_verdict_of(text))
                .next(),
            PveError::TaskFailed { exitstatus, .. } => lock_verdict_of(exitstatus),
            _ => None,
        }
    }

    /// Whether a lock could not be had in time, so the request did nothing and may be sent
    /// again: pmxcfs' "cfs-lock '…' error: got lock request timeout" (pve-cluster
    /// `src/PVE/Cluster.pm`) or a flock's "can't lock file '…' - got timeout" (pve-common
    /// `src/PVE/Tools.pm`).
    pub fn is_lock_timeout(&self) -> bool {
        self.says("got lock request timeout")
            || (self.says("can't lock file") && self.says("got timeout"))
    }

    /// Whether the VM is held by a task ("VM is locked (clone)", pve-guest-common
    /// `src/PVE/AbstractConfig.pm` `check_lock`); [`PveError::vm_lock`] names the lock.
    pub fn is_vm_locked(&self) -> bool {
        self.vm_lock().is_some()
    }

    /// Proxmox's own words for this failure, without the request (`QEMU guest agent is not
    /// running`): an HTTP error's message, else the whole error.
    pub fn answer(&self) -> String {
        match self {
            PveError::Http { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The lock named by "VM is locked (<lock>)": `create`, `clone`, `migrate`, `backup`…
    pub fn vm_lock(&self) -> Option<String> {
        let text = match self {
            PveError::Http { message, .. } => message,
            PveError::TaskFailed { exitstatus, .. } => exitstatus,
            _ => return None,
        };
        let (_, rest) = text.split_once("is locked (")?;
        let (lock, _) = rest.split_once(')')?;
        Some(lock.to_string())
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

    /// Whether a VM's configuration was asked for and it does not exist: the VM was deleted
    /// since it was listed (a task still running from a run that was killed, an operator).
    /// pve-guest-common's `load_config` (`PVE/AbstractConfig.pm`): `die "Configuration file
    /// '$cfspath' does not exist\n"`.
    pub fn is_config_missing(&self) -> bool {
        self.says("Configuration file '") && self.says("' does not exist")
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
        assert!(
            http(
                500,
                "Configuration file 'nodes/pve1/qemu-server/9000.conf' does not exist"
            )
            .is_config_missing()
        );
        assert!(!http(500, "storage 'nope' does not exist").is_config_missing());
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

    /// Proxmox's words, and what proxfleet makes of them: the verdict, whether it is a lock
    /// time-out, and the VM lock it names.
    type LockCase = (
        &'static str,
        Option<LockVerdict>,
        bool,
        Option<&'static str>,
    );

    const LOCK_CASES: &[LockCase] = &[
        (
            "cfs-lock 'storage-shared' error: got lock request timeout",
            Some(LockVerdict::Retry),
            true,
            None,
        ),
        (
            "cfs-lock 'file-user_cfg' error: got lock request timeout",
            Some(LockVerdict::Retry),
            true,
            None,
        ),
        (
            "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
            Some(LockVerdict::Retry),
            true,
            None,
        ),
        (
            "can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout",
            Some(LockVerdict::Retry),
            true,
            None,
        ),
        (
            "command '/sbin/lvs --noheadings' failed: got timeout",
            Some(LockVerdict::Retry),
            false,
            None,
        ),
        (
            "pve cluster filesystem not online.",
            Some(LockVerdict::Retry),
            false,
            None,
        ),
        (
            "VM is locked (clone)",
            Some(LockVerdict::Wait),
            false,
            Some("clone"),
        ),
        (
            "VM is locked (create)",
            Some(LockVerdict::Wait),
            false,
            Some("create"),
        ),
        (
            "VM is locked (migrate)",
            Some(LockVerdict::Wait),
            false,
            Some("migrate"),
        ),
        (
            "VM is locked (backup)",
            Some(LockVerdict::Wait),
            false,
            Some("backup"),
        ),
        (
            "trying to acquire lock...",
            Some(LockVerdict::Wait),
            false,
            None,
        ),
        (
            "trying to aquire lock... OK",
            Some(LockVerdict::Wait),
            false,
            None,
        ),
        (
            "trying to acquire cfs lock 'storage-shared' ...",
            Some(LockVerdict::Wait),
            false,
            None,
        ),
        (
            "VM is locked (suspended)",
            Some(LockVerdict::Fail),
            false,
            Some("suspended"),
        ),
        (
            "got lock timeout - aborting command",
            Some(LockVerdict::Fail),
            false,
            None,
        ),
        ("storage 'nope' does not exist", None, false, None),
        (
            "unable to create VM 100: config file already exists",
            None,
            false,
            None,
        ),
    ];

    #[test]
    fn every_catalogued_lock_and_timeout_wording_has_its_verdict() {
        let task = |exit: &str| PveError::TaskFailed {
            upid: "U".into(),
            exitstatus: exit.into(),
            log: vec![],
        };
        for (words, verdict, lock_timeout, vm_lock) in LOCK_CASES {
            assert_eq!(lock_verdict_of(words), *verdict, "{words}");
            // Retry and wait are worth another go; fail and unknown words are not.
            let transient = matches!(verdict, Some(LockVerdict::Retry | LockVerdict::Wait));
            for err in [http(500, words), task(words)] {
                assert_eq!(err.lock_verdict(), *verdict, "{err}");
                assert_eq!(err.is_transient(), transient, "{err}");
                assert_eq!(err.is_lock_timeout(), *lock_timeout, "{err}");
                assert_eq!(err.is_vm_locked(), vm_lock.is_some(), "{err}");
                assert_eq!(err.vm_lock().as_deref(), *vm_lock, "{err}");
            }
        }
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
