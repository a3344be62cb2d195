//! UPIDs, Proxmox's task ids: `UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:`.
//! The node in it is where the task's status must be polled.

use std::fmt;
use std::str::FromStr;

/// A parsed task id (ordered by its text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Upid {
    text: String,
    node: String,
    task_type: String,
    id: String,
    user: String,
    starttime: u64,
}

/// Why a string is not a UPID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a Proxmox task id (UPID)")]
pub struct BadUpid(pub String);

fn is_hex(text: &str, lengths: &[usize]) -> bool {
    lengths.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_node_name(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

impl FromStr for Upid {
    type Err = BadUpid;

    fn from_str(text: &str) -> Result<Upid, BadUpid> {
        let bad = || BadUpid(text.to_string());
        let fields: Vec<&str> = text.split(':').collect();
        // "UPID", 8 fields, and the empty string after the trailing colon.
        let [tag, node, pid, pstart, starttime, task_type, id, user, rest] = fields.as_slice()
        else {
            return Err(bad());
        };
        let free = |s: &str| !s.contains(|c: char| c.is_whitespace() || c == '/');
        let ok = *tag == "UPID"
            && rest.is_empty()
            && is_node_name(node)
            && is_hex(pid, &[8])
            && is_hex(pstart, &[8, 9])
            && is_hex(starttime, &[8])
            && !task_type.is_empty()
            && free(task_type)
            && free(id)
            && !user.is_empty()
            && free(user);
        if !ok {
            return Err(bad());
        }
        Ok(Upid {
            text: text.to_string(),
            node: node.to_string(),
            task_type: task_type.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            starttime: u64::from_str_radix(starttime, 16).map_err(|_| bad())?,
        })
    }
}

impl Upid {
    /// The node that runs the task.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The task type (`qmcreate`, `qmclone`, `download`, …).
    pub fn task_type(&self) -> &str {
        &self.task_type
    }

    /// The task's object id (a vmid for VM tasks; the source vmid for clones).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Who started it (a token id when a token did).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// When it started, in seconds since the epoch (by its node's clock).
    pub fn starttime(&self) -> u64 {
        self.starttime
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_upids() {
        let upid: Upid = "UPID:pve1:00010D94:001CA6EA:6124E1B9:qmclone:9000:root@pam!ci:"
            .parse()
            .unwrap();
        assert_eq!(
            (upid.node(), upid.task_type(), upid.id(), upid.user()),
            ("pve1", "qmclone", "9000", "root@pam!ci")
        );
        assert_eq!(upid.starttime(), 0x6124_E1B9);
        assert_eq!(
            upid.to_string(),
            "UPID:pve1:00010D94:001CA6EA:6124E1B9:qmclone:9000:root@pam!ci:"
        );
        assert!(
            "UPID:pve-2:00010D94:101CA6EAF:6124E1B9:download::root@pam:"
                .parse::<Upid>()
                .is_ok()
        );
    }

    #[test]
    fn rejects_what_is_not_a_upid() {
        for bad in [
            "",
            "null",
            "UPID:pve1:00010D94:001CA6EA:6124E1B9:qmclone:9000:root@pam",
            "UPID:pve1:10D94:001CA6EA:6124E1B9:qmclone:9000:root@pam:",
            "UPID:-pve:00010D94:001CA6EA:6124E1B9:qmclone:9000:root@pam:",
            "UPID:pve1:00010D94:001CA6EA:6124E1B9:qm clone:9000:root@pam:",
            "XPID:pve1:00010D94:001CA6EA:6124E1B9:qmclone:9000:root@pam:",
        ] {
            assert!(bad.parse::<Upid>().is_err(), "{bad}");
        }
    }
}
