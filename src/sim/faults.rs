//! Faults on demand: latency, errors and dropped connections on matching requests, tasks that
//! fail with a given message, locks held on VMs, nodes going offline. Rules come from Rust tests
//! (`SimHandle::add_fault`) or from the command line (`proxfleet sim serve --fault …`), written
//! as property strings the way Proxmox writes its own options:
//!
//! ```text
//! latency,ms=200[,method=GET][,path=/cluster/resources]
//! error[,status=500][,method=POST][,path=/nodes/*/qemu/*/clone][,rate=0.3][,times=2][,message=TEXT]
//! drop[,when=before|after][,method=…][,path=…][,rate=…][,times=…]
//! task-error[,method=…][,path=…][,rate=…][,times=…][,message=TEXT]
//! lock,vmid=100[,lock=backup][,seconds=5]
//! offline,node=pve2[,seconds=5]
//! ```
//!
//! `path` is matched against the API path after `/api2/json`; `*` matches within one segment
//! and `**` any number of segments. `rate` (0..1, default 1) draws from a seeded generator;
//! `times` bounds how often a rule fires. `message` takes the rest of the text, commas included.

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};

/// What a matching request suffers.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Wait this long before answering.
    Latency(Duration),
    /// Answer with this status and message instead of handling the request.
    Error {
        /// HTTP status.
        status: u16,
        /// Message, in the reason phrase and the body's `message`.
        message: String,
    },
    /// Drop the connection: before handling the request, or after (the change happens, the
    /// client never hears of it).
    Drop {
        /// Whether the request is handled first.
        after: bool,
    },
    /// The task the request starts fails with this exit status, and does nothing.
    TaskError(String),
}

/// A rule: which requests, how often, what happens.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// What happens.
    pub action: FaultAction,
    /// HTTP method to match (any when `None`).
    pub method: Option<String>,
    /// Path glob to match (any when `None`).
    pub path: Option<String>,
    /// Probability of firing on a matching request.
    pub rate: f64,
    /// How many more times it may fire (unbounded when `None`).
    pub times: Option<u32>,
}

impl Fault {
    /// A rule that fires on every request matching `method` and `path`.
    pub fn on(method: &str, path: &str, action: FaultAction) -> Fault {
        Fault {
            action,
            method: Some(method.to_ascii_uppercase()),
            path: Some(path.to_string()),
            rate: 1.0,
            times: None,
        }
    }

    /// Fire at most `times` times.
    pub fn times(mut self, times: u32) -> Fault {
        self.times = Some(times);
        self
    }

    /// Fire with probability `rate`.
    pub fn rate(mut self, rate: f64) -> Fault {
        self.rate = rate;
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path
                .as_deref()
                .is_none_or(|glob| glob_match(glob, path))
    }
}

/// A fault as written on the command line: a request rule, or a change to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultSpec {
    /// A request rule.
    Rule(Fault),
    /// Hold a lock on a VM (released after `seconds`, if given).
    Lock {
        /// VM id.
        vmid: u32,
        /// Lock name (`backup`, `migrate`, …).
        lock: String,
        /// Release after.
        release_after: Option<Duration>,
    },
    /// Take a node offline (back online after `seconds`, if given).
    Offline {
        /// Node.
        node: String,
        /// Back after.
        back_after: Option<Duration>,
    },
}

impl FaultSpec {
    /// Parse a fault written as a property string (see the module documentation).
    ///
    /// # Errors
    /// Unknown kinds or keys and bad values, with what is allowed.
    pub fn parse(text: &str) -> Result<FaultSpec, String> {
        let (kind, rest) = text.split_once(',').unwrap_or((text, ""));
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            if let Some(message) = rest.strip_prefix("message=") {
                pairs.push(("message".into(), message.to_string()));
                break;
            }
            let (item, tail) = rest.split_once(',').unwrap_or((rest, ""));
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("fault '{text}': expected key=value, found '{item}'"))?;
            pairs.push((key.to_string(), value.to_string()));
            rest = tail;
        }
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let allowed: &[&str] = match kind {
            "latency" => &["ms", "method", "path", "rate", "times"],
            "error" => &["status", "message", "method", "path", "rate", "times"],
            "drop" => &["when", "method", "path", "rate", "times"],
            "task-error" => &["message", "method", "path", "rate", "times"],
            "lock" => &["vmid", "lock", "seconds"],
            "offline" => &["node", "seconds"],
            other => {
                return Err(format!(
                    "unknown fault kind '{other}': allowed are latency, error, drop, task-error, lock, offline"
                ));
            }
        };
        if let Some((key, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(format!(
                "fault '{kind}' has no key '{key}': allowed are {}",
                allowed.join(", ")
            ));
        }
        let number = |key: &str| -> Result<Option<f64>, String> {
            get(key)
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite() && *n >= 0.0)
                        .ok_or_else(|| {
                            format!("fault '{kind}': {key}={v} is not a non-negative number")
                        })
                })
                .transpose()
        };
        let seconds = number("seconds")?.map(Duration::from_secs_f64);
        let rule = |action: FaultAction| -> Result<FaultSpec, String> {
            let rate = number("rate")?.unwrap_or(1.0);
            if rate > 1.0 {
                return Err(format!("fault '{kind}': rate must be between 0 and 1"));
            }
            Ok(FaultSpec::Rule(Fault {
                action,
                method: get("method").map(str::to_ascii_uppercase),
                path: get("path").map(str::to_string),
                rate,
                times: number("times")?.map(|n| n as u32),
            }))
        };
        match kind {
            "latency" => {
                let ms = number("ms")?.ok_or_else(|| "fault 'latency' needs ms=N".to_string())?;
                rule(FaultAction::Latency(Duration::from_secs_f64(ms / 1000.0)))
            }
            "error" => {
                let status = number("status")?.unwrap_or(500.0) as u16;
                if !(400..=599).contains(&status) {
                    return Err(format!(
                        "fault 'error': status={status} is not between 400 and 599"
                    ));
                }
                let message = get("message").unwrap_or("simulated failure").to_string();
                rule(FaultAction::Error { status, message })
            }
            "drop" => {
                let after = match get("when").unwrap_or("before") {
                    "before" => false,
                    "after" => true,
                    other => {
                        return Err(format!(
                            "fault 'drop': when={other} is not allowed: before or after"
                        ));
                    }
                };
                rule(FaultAction::Drop { after })
            }
            "task-error" => rule(FaultAction::TaskError(
                get("message")
                    .unwrap_or("simulated task failure")
                    .to_string(),
            )),
            "lock" => {
                let vmid =
                    number("vmid")?.ok_or_else(|| "fault 'lock' needs vmid=N".to_string())? as u32;
                Ok(FaultSpec::Lock {
                    vmid,
                    lock: get("lock").unwrap_or("backup").to_string(),
                    release_after: seconds,
                })
            }
            "offline" => Ok(FaultSpec::Offline {
                node: get("node")
                    .ok_or_else(|| "fault 'offline' needs node=NAME".to_string())?
                    .to_string(),
                back_after: seconds,
            }),
            _ => Err(format!("unknown fault kind '{kind}'")),
        }
    }
}

/// `*` matches within one segment, `**` any number of segments (including none).
fn glob_match(glob: &str, path: &str) -> bool {
    let glob: Vec<&str> = glob.split('/').filter(|s| !s.is_empty()).collect();
    let path: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segments_match(&glob, &path)
}

fn segments_match(glob: &[&str], path: &[&str]) -> bool {
    match glob.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| segments_match(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((segment, tail)) => segment_match(first, segment) && segments_match(rest, tail),
            None => false,
        },
    }
}

fn segment_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, suffix_pattern)) => {
            let Some(rest) = text.strip_prefix(prefix) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| segment_match(suffix_pattern, &rest[i..]))
        }
    }
}

/// The active rules and the generator behind their rates.
pub(crate) struct Faults {
    rules: Vec<Fault>,
    rng: StdRng,
    /// Every time a rule fired, since the start: how a test knows its fault struck, and how
    /// the fault figures tell a handled write from one that never happened.
    fired: Vec<Fired>,
}

/// A rule that fired on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// HTTP method of the request.
    pub method: String,
    /// Its API path (after `/api2/json`).
    pub path: String,
    /// What it suffered: `latency`, `error`, `drop-before`, `drop-after` or `task-error`.
    pub action: &'static str,
}

/// What a request suffers, all matching rules together.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub latency: Duration,
    pub error: Option<(u16, String)>,
    pub drop: Option<bool>,
    pub task_error: Option<String>,
}

impl Faults {
    pub fn new(seed: u64) -> Faults {
        Faults {
            rules: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            fired: Vec::new(),
        }
    }

    /// Every time a rule fired.
    pub fn fired(&self) -> &[Fired] {
        &self.fired
    }

    pub fn add(&mut self, fault: Fault) {
        self.rules.push(fault);
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// Decide what happens to one request; firing rules use up their `times`.
    pub fn effects(&mut self, method: &str, path: &str) -> Effects {
        let mut effects = Effects::default();
        for rule in &mut self.rules {
            if rule.times == Some(0) || !rule.matches(method, path) {
                continue;
            }
            if rule.rate < 1.0 && !self.rng.random_bool(rule.rate.clamp(0.0, 1.0)) {
                continue;
            }
            let fired = match &rule.action {
                FaultAction::Latency(d) => {
                    effects.latency += *d;
                    Some("latency")
                }
                FaultAction::Error { status, message } if effects.error.is_none() => {
                    effects.error = Some((*status, message.clone()));
                    Some("error")
                }
                FaultAction::Drop { after } if effects.drop.is_none() => {
                    effects.drop = Some(*after);
                    Some(if *after { "drop-after" } else { "drop-before" })
                }
                FaultAction::TaskError(message) if effects.task_error.is_none() => {
                    effects.task_error = Some(message.clone());
                    Some("task-error")
                }
                _ => None,
            };
            if let Some(action) = fired {
                self.fired.push(Fired {
                    method: method.to_string(),
                    path: path.to_string(),
                    action,
                });
                if let Some(times) = &mut rule.times {
                    *times -= 1;
                }
            }
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "/nodes/*/qemu/*/clone",
            "/nodes/pve1/qemu/9000/clone"
        ));
        assert!(!glob_match(
            "/nodes/*/qemu/*/clone",
            "/nodes/pve1/qemu/9000/config"
        ));
        assert!(glob_match("/nodes/**", "/nodes/pve1/qemu/9000/config"));
        assert!(glob_match("/**/config", "/nodes/pve1/qemu/9000/config"));
        assert!(glob_match("/nodes/pve*/qemu", "/nodes/pve2/qemu"));
        assert!(!glob_match("/nodes/pve*/qemu", "/nodes/x/qemu"));
    }

    #[test]
    fn parses_every_kind() {
        let spec = FaultSpec::parse(
            "error,status=503,method=post,path=/nodes/*/qemu/*/clone,times=2,message=can't lock file, got timeout",
        );
        let Ok(FaultSpec::Rule(rule)) = spec else {
            panic!("{spec:?}")
        };
        assert_eq!(
            rule.action,
            FaultAction::Error {
                status: 503,
                message: "can't lock file, got timeout".into()
            }
        );
        assert_eq!(rule.method.as_deref(), Some("POST"));
        assert_eq!(rule.times, Some(2));
        assert!(matches!(
            FaultSpec::parse("lock,vmid=100,seconds=1.5"),
            Ok(FaultSpec::Lock { vmid: 100, .. })
        ));
        assert!(matches!(
            FaultSpec::parse("offline,node=pve2"),
            Ok(FaultSpec::Offline { .. })
        ));
        assert!(matches!(
            FaultSpec::parse("drop,when=after"),
            Ok(FaultSpec::Rule(Fault {
                action: FaultAction::Drop { after: true },
                ..
            }))
        ));
        for bad in [
            "explode",
            "error,status=200",
            "latency",
            "drop,when=later",
            "error,bogus=1",
            "error,rate=2",
        ] {
            assert!(FaultSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_and_rates_bound_firing() {
        let mut faults = Faults::new(7);
        faults.add(
            Fault::on(
                "GET",
                "/version",
                FaultAction::Error {
                    status: 500,
                    message: "x".into(),
                },
            )
            .times(2),
        );
        let fired = (0..5)
            .filter(|_| faults.effects("GET", "/version").error.is_some())
            .count();
        assert_eq!(fired, 2);
        let mut faults = Faults::new(7);
        faults.add(Fault::on("GET", "/version", FaultAction::Drop { after: false }).rate(0.5));
        let fired = (0..1000)
            .filter(|_| faults.effects("GET", "/version").drop.is_some())
            .count();
        assert!((350..650).contains(&fired), "{fired}");
    }
}
