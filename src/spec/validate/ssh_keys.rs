//! SSH public keys and login names as the guest will take them: a key's blob is decoded and
//! read as OpenSSH writes it (RFC 4253 §6.6: length-prefixed strings, the first the key type),
//! so a key whose type word does not match its blob, a truncated key, or a private key pasted
//! where a public one goes is refused before Proxmox or cloud-init sees it (qemu-server runs
//! `ssh-keygen -l` on `sshkeys`). Login names follow `useradd`'s rules.

/// What is wrong with an SSH public key line, if anything. Never quotes the key.
pub(super) fn key_problem(line: &str) -> Option<String> {
    // A block scalar (`|`) ends with a newline: that is still one key.
    let line = line.trim();
    if line.contains("PRIVATE KEY") {
        return Some(
            "this is a private key: it must stay on your machine; give the public key (the `.pub` file) instead".to_string(),
        );
    }
    if line.contains('\n') {
        return Some("a key is one line; this holds several".to_string());
    }
    let mut parts = line.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let fields = expected_fields(kind)?;
    let Some(blob) = decode_base64(body) else {
        return Some(format!(
            "the `{kind}` key's base64 does not decode (cut short or mistyped?)"
        ));
    };
    let strings = match read_strings(&blob) {
        Ok(strings) => strings,
        Err(()) => {
            return Some(format!(
                "the `{kind}` key is truncated: its data is shorter than the lengths it declares"
            ));
        }
    };
    let blob_kind = strings
        .first()
        .map(|s| String::from_utf8_lossy(s).to_string())
        .unwrap_or_default();
    if blob_kind != kind {
        return Some(format!(
            "the key says `{kind}` but its data is a `{blob_kind}` key"
        ));
    }
    if strings.len() < fields {
        return Some(format!(
            "the `{kind}` key is truncated: it has {} of its {fields} parts",
            strings.len()
        ));
    }
    None
}

/// How many length-prefixed strings a key type's blob holds, or `None` for an unknown type
/// (said by the caller's own message).
fn expected_fields(kind: &str) -> Option<usize> {
    match kind {
        // type, key
        "ssh-ed25519" => Some(2),
        // type, e, n
        "ssh-rsa" => Some(3),
        // type, curve, point
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => Some(3),
        // type, key, application
        "sk-ssh-ed25519@openssh.com" => Some(3),
        // type, curve, point, application
        "sk-ecdsa-sha2-nistp256@openssh.com" => Some(4),
        // type, p, q, g, y
        "ssh-dss" => Some(5),
        _ => None,
    }
}

/// The blob's length-prefixed strings; `Err` when one declares more bytes than remain.
fn read_strings(mut blob: &[u8]) -> Result<Vec<&[u8]>, ()> {
    let mut strings = Vec::new();
    while !blob.is_empty() {
        let (len, rest) = blob.split_first_chunk::<4>().ok_or(())?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| ())?;
        if len > rest.len() {
            return Err(());
        }
        let (string, rest) = rest.split_at(len);
        strings.push(string);
        blob = rest;
    }
    Ok(strings)
}

/// Standard base64 with padding, as OpenSSH writes it; `None` for anything else.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (chunk_idx, chunk) in bytes.chunks(4).enumerate() {
        let last = chunk_idx == bytes.len() / 4 - 1;
        let n_pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if n_pad > 2 || (n_pad > 0 && !last) {
            return None;
        }
        let mut acc = 0u32;
        for c in &chunk[..4 - n_pad] {
            acc = (acc << 6) | value(*c)?;
        }
        acc <<= 6 * n_pad as u32;
        let decoded = acc.to_be_bytes();
        out.extend_from_slice(&decoded[1..4 - n_pad]);
    }
    Some(out)
}

/// Names `useradd` refuses by default or that are the image's own system accounts.
const RESERVED_USERS: [&str; 24] = [
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "systemd-network",
    "systemd-resolve",
    "messagebus",
    "sshd",
    "_apt",
    "syslog",
];

pub(super) const USER_ALLOWED: &str = "a login name as `useradd` takes it: a lower-case letter or `_`, then lower-case letters, digits, `_` or `-` (a final `$` allowed), at most 32 characters, not a system account such as `root`";

/// What is wrong with a login name for cloud-init's default user, if anything: Debian's and
/// Ubuntu's `useradd` accept `^[a-z_][a-z0-9_-]*[$]?$` (shadow's default `NAME_REGEX`) of at
/// most 32 characters, and cloud-init will not make a system account its default user.
pub(super) fn user_problem(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let body = name.strip_suffix('$').unwrap_or(name);
    if name.is_empty() {
        return Some("the user name is empty".to_string());
    }
    if bytes.len() > 32 {
        return Some(format!(
            "`{name}` is {} characters; Linux user names have at most 32",
            bytes.len()
        ));
    }
    let first_ok = body
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = body
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !first_ok || !rest_ok {
        return Some(format!("`{name}` is not a user name useradd accepts"));
    }
    if RESERVED_USERS.contains(&name) {
        return Some(format!(
            "`{name}` is a system account of the image, not a user cloud-init can create"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINeA4p1Q2dIqor6pOI1wJK37hZeBNvahZhylneTi+5ph ops@example.com";

    #[test]
    fn keys_are_read_as_openssh_writes_them() {
        assert_eq!(key_problem(ED25519), None);
        assert_eq!(key_problem(&format!("{ED25519}\n")), None, "a block scalar");
        let relabelled = ED25519.replace("ssh-ed25519 ", "ssh-rsa ");
        assert_eq!(
            key_problem(&relabelled).unwrap(),
            "the key says `ssh-rsa` but its data is a `ssh-ed25519` key"
        );
        let cut = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINeA4p1Q2dIqor6pOI1wJK37";
        assert!(key_problem(cut).unwrap().contains("truncated"));
        let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
        let said = key_problem(private).unwrap();
        assert!(said.contains("private key") && !said.contains("b3Blbn"));
        assert_eq!(
            key_problem("ssh-ed25519 not*base64"),
            Some(
                "the `ssh-ed25519` key's base64 does not decode (cut short or mistyped?)"
                    .to_string()
            )
        );
    }

    #[test]
    fn user_names_follow_useradd() {
        for ok in ["debian", "ops_1", "_svc", "deploy-bot", "host$"] {
            assert_eq!(user_problem(ok), None, "{ok}");
        }
        for bad in [
            "Admin",
            "1ops",
            "ops user",
            "root",
            &"a".repeat(33),
            "jürgen",
        ] {
            assert!(user_problem(bad).is_some(), "{bad}");
        }
    }
}
