//! Who holds a project's lease, as the lease pool's comment says it: the codec of that comment
//! (one line of `key=value` words after `proxfleet lease:`), the lease pool's id for a project,
//! and the two ways a held lease may be taken over (its expiry has passed; on this host, its
//! process is gone). Pure apart from reading `/proc` for the process check.

use std::fmt;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Every lease pool's id starts so; `show`, `inventory` and the spec's `pool:` never see such
/// a pool because no VM is ever put into one.
pub const POOL_PREFIX: &str = "proxfleet-lease-";

/// The longest lease pool id proxfleet makes. `pve-poolid` (pve-access-control's
/// `verify_poolname`) has no length limit, only `[A-Za-z0-9.\-_]+`; the ids are kept short
/// anyway, because they are shown in the web UI's pool tree and in messages.
const MAX_POOL_ID: usize = 64;

/// The words that open a lease comment.
const TAG: &str = "proxfleet lease:";

/// The lease pool's id for `project`: `proxfleet-lease-<project>`, or when that is longer than
/// 64 characters, the project's first characters and 8 hex digits of its SHA-256 (the same
/// project always gives the same id). Characters a pool id cannot hold become `-` (a project
/// is a DNS label, so there are none today).
pub fn pool_id(project: &str) -> String {
    let clean: String = project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let full = format!("{POOL_PREFIX}{clean}");
    if full.len() <= MAX_POOL_ID && clean == project {
        return full;
    }
    let digest = hex::encode(Sha256::digest(project.as_bytes()));
    let keep = MAX_POOL_ID - POOL_PREFIX.len() - 9;
    let head: String = clean.chars().take(keep).collect();
    format!("{POOL_PREFIX}{head}-{}", &digest[..8])
}

/// The holder of a lease, as written in the lease pool's comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The API user or token that took it (`user@realm!token`).
    pub holder: String,
    /// The host proxfleet ran on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// A random id of the run, so that two runs of one process (tests, a library caller)
    /// never take each other's lease for their own.
    pub run: String,
    /// When the run took the lease.
    pub since: OffsetDateTime,
    /// When the lease ends unless renewed.
    pub expires: OffsetDateTime,
}

/// Why a lease comment cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadComment {
    /// It is not proxfleet's.
    #[error("it does not start with `{TAG}`")]
    NotALease,
    /// A word proxfleet writes is absent.
    #[error("`{0}` is missing")]
    Missing(&'static str),
    /// A word has a value that does not parse.
    #[error("`{key}={value}` is not valid")]
    Invalid {
        /// The word.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

impl Holder {
    /// The comment proxfleet writes: `proxfleet lease: holder=… host=… pid=… run=… since=…
    /// expires=…`, times in RFC 3339 (UTC, milliseconds).
    pub fn encode(&self) -> String {
        format!(
            "{TAG} holder={} host={} pid={} run={} since={} expires={}",
            word(&self.holder),
            word(&self.host),
            self.pid,
            word(&self.run),
            rfc3339(self.since),
            rfc3339(self.expires)
        )
    }

    /// Read a comment `encode` wrote; words it does not know are ignored (a later version
    /// may add some).
    ///
    /// # Errors
    /// Not a lease comment, a word missing or not parsing.
    pub fn decode(comment: &str) -> Result<Holder, BadComment> {
        let rest = comment
            .trim()
            .strip_prefix(TAG)
            .ok_or(BadComment::NotALease)?;
        let words: Vec<(&str, &str)> = rest
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        let get = |key: &'static str| {
            words
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .ok_or(BadComment::Missing(key))
        };
        let invalid = |key: &'static str, value: &str| BadComment::Invalid {
            key,
            value: value.to_string(),
        };
        let time_of = |key: &'static str| {
            let value = get(key)?;
            OffsetDateTime::parse(value, &Rfc3339).map_err(|_| invalid(key, value))
        };
        let pid = get("pid")?;
        Ok(Holder {
            holder: get("holder")?.to_string(),
            host: get("host")?.to_string(),
            pid: pid.parse().map_err(|_| invalid("pid", pid))?,
            run: get("run")?.to_string(),
            since: time_of("since")?,
            expires: time_of("expires")?,
        })
    }

    /// Whether the lease has run out at `now`.
    pub fn expired_at(&self, now: OffsetDateTime) -> bool {
        self.expires <= now
    }

    /// Whether the holder's process is known to be gone: it ran on `host` (this host) and no
    /// process has its id. Only Linux's `/proc` is asked; elsewhere nothing is known.
    pub fn process_gone_on(&self, host: &str) -> bool {
        self.host == host
            && std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl fmt::Display for Holder {
    /// `root@pam!ci (pid 4242 on ws1, since 2026-12-03T16:20:00.000Z, expires …)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, since {}, expires {})",
            self.holder,
            self.pid,
            self.host,
            rfc3339(self.since),
            rfc3339(self.expires)
        )
    }
}

/// A time as RFC 3339 in UTC with milliseconds, `2026-12-03T16:20:00.123Z`.
pub fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let millis = at.millisecond();
    let whole = at.replace_nanosecond(0).unwrap_or(at);
    let text = whole
        .format(&Rfc3339)
        .unwrap_or_else(|_| whole.unix_timestamp().to_string());
    match text.strip_suffix('Z') {
        Some(seconds) => format!("{seconds}.{millis:03}Z"),
        None => text,
    }
}

/// A value as one word of the comment: blanks (which would end it) become `_`.
fn word(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// This host's name: the kernel's, else `$HOSTNAME`, else `unknown-host` (whose leases are
/// never taken over early, since its processes cannot be told apart).
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| word(name.trim()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| UNKNOWN_HOST.to_string())
}

/// The host name used when none can be read.
pub const UNKNOWN_HOST: &str = "unknown-host";

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn holder() -> Holder {
        Holder {
            holder: "ops@pve!ci".into(),
            host: "build-1".into(),
            pid: 4242,
            run: "0a1b2c3d".into(),
            since: datetime!(2026-12-03 16:20:00.123 UTC),
            expires: datetime!(2026-12-03 16:22:00.123 UTC),
        }
    }

    #[test]
    fn a_comment_reads_back_as_written() {
        let text = holder().encode();
        assert_eq!(
            text,
            "proxfleet lease: holder=ops@pve!ci host=build-1 pid=4242 run=0a1b2c3d \
             since=2026-12-03T16:20:00.123Z expires=2026-12-03T16:22:00.123Z"
        );
        assert_eq!(Holder::decode(&text), Ok(holder()));
    }

    #[test]
    fn blanks_in_values_cannot_break_the_words() {
        let mut spaced = holder();
        spaced.host = "my host\tname".into();
        let back = Holder::decode(&spaced.encode()).unwrap();
        assert_eq!(back.host, "my_host_name");
    }

    #[test]
    fn unknown_words_are_ignored_and_offsets_are_understood() {
        let text = "proxfleet lease: v=2 holder=a@pam host=h pid=7 run=r \
                    since=2026-12-03T17:20:00+01:00 expires=2026-12-03T16:21:00Z note=x";
        let read = Holder::decode(text).unwrap();
        assert_eq!(read.since, datetime!(2026-12-03 16:20:00 UTC));
        assert_eq!(read.pid, 7);
    }

    #[test]
    fn broken_comments_say_what_is_wrong() {
        let cases = [
            ("team pool", BadComment::NotALease),
            (
                "proxfleet lease: holder=a host=h pid=1 run=r since=2026-12-03T16:20:00Z",
                BadComment::Missing("expires"),
            ),
            (
                "proxfleet lease: holder=a host=h pid=x run=r since=a expires=b",
                BadComment::Invalid {
                    key: "pid",
                    value: "x".into(),
                },
            ),
            (
                "proxfleet lease: holder=a host=h pid=1 run=r since=yesterday expires=b",
                BadComment::Invalid {
                    key: "since",
                    value: "yesterday".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Holder::decode(text), Err(expected), "{text}");
        }
    }

    #[test]
    fn expiry_is_inclusive() {
        let lease = holder();
        assert!(!lease.expired_at(datetime!(2026-12-03 16:22:00.122 UTC)));
        assert!(lease.expired_at(lease.expires));
    }

    #[test]
    fn a_gone_process_counts_only_on_this_host() {
        let mut lease = holder();
        // A child that has been waited for has no /proc entry any more.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        lease.pid = child.id();
        child.wait().unwrap();
        let linux = std::path::Path::new("/proc/self").exists();
        assert_eq!(lease.process_gone_on("build-1"), linux);
        assert!(!lease.process_gone_on("elsewhere"));
        lease.pid = std::process::id();
        assert!(!lease.process_gone_on("build-1"), "this process is alive");
    }

    #[test]
    fn pool_ids_are_valid_short_and_stable() {
        assert_eq!(pool_id("homelab"), "proxfleet-lease-homelab");
        let long = "a".repeat(63);
        let id = pool_id(&long);
        assert_eq!(id.len(), 64);
        assert_eq!(id, pool_id(&long));
        assert_ne!(id, pool_id(&"a".repeat(62)));
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        );
        assert!(pool_id("a b").starts_with("proxfleet-lease-a-b-"));
    }
}
