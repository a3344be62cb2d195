//! Files a spec makes proxfleet read or use besides itself: `defaults.ssh`'s key and known_hosts
//! files, custom cloud-init data, secrets behind `file:` (and `env:`) references, each resolved
//! against the spec's directory and never echoed in a message.

use std::path::PathBuf;

use serde_saphyr::Spanned;

use super::super::Warning;
use super::super::model::*;
use super::super::raw::*;
use super::Validator;
use super::cloud_init::check_ssh_key;
use super::scalars::check_node;
use crate::secret::Secret;
use crate::spec::read::read_text_capped;

/// A path from the spec: `~/…` under the home directory, a relative one under the spec's.
pub(super) fn spec_path(ctx: &Validator, text: &str) -> PathBuf {
    match text.strip_prefix("~/") {
        Some(rest) => std::env::home_dir().unwrap_or_default().join(rest),
        None => ctx.base_dir.join(text),
    }
}

/// `defaults.ssh`: the login, the key and known_hosts files (which must exist), the node
/// addresses and the snippets directory.
pub(super) fn check_ssh(ctx: &mut Validator, ssh: &RawSsh) -> SshSettings {
    let mut settings = SshSettings::default();
    if let Some(user) = &ssh.user {
        let ok = !user.value.is_empty()
            && user
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if ok {
            settings.user = user.value.clone();
        } else {
            ctx.error_at(
                user,
                "defaults.ssh.user",
                format!("`{}` is not a user name", user.value),
                Some("letters, digits, `.`, `_` and `-`, such as `root`"),
            );
        }
    }
    if let Some(port) = &ssh.port {
        match u16::try_from(port.value).ok().filter(|p| *p > 0) {
            Some(p) => settings.port = p,
            None => ctx.error_at(
                port,
                "defaults.ssh.port",
                format!("port {} is out of range", port.value),
                Some("1..=65535"),
            ),
        }
    }
    if let Some(file) = &ssh.key_file {
        let full = spec_path(ctx, &file.value);
        match std::fs::metadata(&full) {
            Ok(meta) if meta.is_file() => settings.key_file = Some(full),
            Ok(_) => ctx.error_at(
                file,
                "defaults.ssh.key_file",
                format!("`{}` is not a file", full.display()),
                Some("an OpenSSH private key file, relative to the spec file or under `~/`"),
            ),
            Err(err) => ctx.error_at(
                file,
                "defaults.ssh.key_file",
                format!("cannot read `{}`: {err}", full.display()),
                Some("an OpenSSH private key file, relative to the spec file or under `~/`"),
            ),
        }
    }
    if let Some(file) = &ssh.known_hosts {
        let full = spec_path(ctx, &file.value);
        match std::fs::metadata(&full) {
            Ok(meta) if meta.is_file() => settings.known_hosts = Some(full),
            Ok(_) => ctx.error_at(
                file,
                "defaults.ssh.known_hosts",
                format!("`{}` is not a file", full.display()),
                Some("a known_hosts file, relative to the spec file or under `~/`"),
            ),
            Err(err) => ctx.error_at(
                file,
                "defaults.ssh.known_hosts",
                format!("cannot read `{}`: {err}", full.display()),
                Some("a known_hosts file, relative to the spec file or under `~/`"),
            ),
        }
    }
    if ssh.insecure_ignore_host_key {
        settings.insecure_ignore_host_key = true;
        ctx.warnings.push(Warning {
            path: "defaults.ssh.insecure_ignore_host_key".to_string(),
            message: "the nodes' SSH host keys are not checked: whoever sits between proxfleet and a node can read and change the cloud-init snippets (passwords and keys included); record the host keys in a known_hosts file instead".to_string(),
        });
    }
    for (node, address) in &ssh.host {
        check_node(ctx, node, &format!("defaults.ssh.host.{}", node.value));
        let ok = !address.value.is_empty()
            && address
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c));
        if ok {
            settings
                .hosts
                .insert(node.value.clone(), address.value.clone());
        } else {
            ctx.error_at(
                address,
                &format!("defaults.ssh.host.{}", node.value),
                format!("`{}` is not a host name or address", address.value),
                Some("a host name or an IP address, such as `192.0.2.11`"),
            );
        }
    }
    if let Some(dir) = &ssh.snippets_dir {
        if dir.value.starts_with('/') && !dir.value.contains(['\n', '\0']) {
            settings.snippets_dir = Some(dir.value.trim_end_matches('/').to_string())
                .filter(|d| !d.is_empty())
                .or(Some("/".to_string()));
        } else {
            ctx.error_at(
                dir,
                "defaults.ssh.snippets_dir",
                format!("`{}` is not an absolute path", dir.value),
                Some("an absolute directory on the nodes, such as `/var/lib/vz/snippets`"),
            );
        }
    }
    settings
}

/// Which custom cloud-init file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum CustomKind {
    User,
    Vendor,
    Network,
}

/// Largest custom cloud-init file accepted (cloud-init itself reads far less from a seed).
pub(super) const MAX_CUSTOM_DATA: u64 = 1 << 20;

/// Largest password file accepted: a password is a line, not a document.
const MAX_SECRET_FILE: u64 = 64 << 10;

/// Largest `ssh_key_files` file accepted: thousands of public keys.
const MAX_SSH_KEY_FILE: u64 = 256 << 10;

/// Where a YAML error is, without the error's own words: those may quote the file.
fn yaml_error_place(err: &serde_saphyr::Error) -> String {
    match err.location() {
        Some(loc) => format!(" (line {}, column {})", loc.line(), loc.column()),
        None => String::new(),
    }
}

/// Read a custom cloud-init file and check that cloud-init can take it.
pub(super) fn read_custom_data(
    ctx: &mut Validator,
    file: &Spanned<String>,
    path: &str,
    kind: CustomKind,
) -> Option<CustomData> {
    let full = ctx.base_dir.join(&file.value);
    let text = match read_text_capped(&full, MAX_CUSTOM_DATA) {
        Ok(text) => text,
        Err(problem) => {
            ctx.error_at(
                file,
                path,
                format!("cannot read `{}`: {problem}", full.display()),
                Some("a regular UTF-8 text file of at most 1 MiB, relative to the spec file"),
            );
            return None;
        }
    };
    ctx.files_read.push(full.clone());
    let first = text.lines().next().unwrap_or_default();
    let problem =
        match kind {
            CustomKind::Network => match serde_saphyr::from_str::<serde_json::Value>(&text) {
                Ok(value) => {
                    let config = value.get("network").unwrap_or(&value);
                    match config.get("version").and_then(serde_json::Value::as_u64) {
                        Some(1 | 2) => None,
                        _ => Some("it has no `version: 1` or `version: 2`".to_string()),
                    }
                }
                Err(err) => Some(format!("it is not YAML{}", yaml_error_place(&err))),
            },
            _ if first == "#cloud-config" => {
                match serde_saphyr::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(map)) => (kind == CustomKind::User
                    && map.contains_key("user"))
                .then(|| {
                    "it sets `user:`, which proxfleet writes from the spec's `user`, `ssh_keys` and `password`; use `users:` for further users".to_string()
                }),
                Ok(serde_json::Value::Null) => None,
                Ok(_) => Some("its #cloud-config is not a YAML mapping".to_string()),
                Err(err) => Some(format!(
                    "its #cloud-config is not YAML{}",
                    yaml_error_place(&err)
                )),
            }
            }
            _ if [
                "#!",
                "#include",
                "#cloud-boothook",
                "#cloud-config-archive",
                "#part-handler",
                "Content-Type:",
            ]
            .iter()
            .any(|header| first.starts_with(header)) =>
            {
                None
            }
            // The line itself is not quoted: a mistyped path may name a file of secrets.
            _ => Some("its first line is not a cloud-init format".to_string()),
        };
    if let Some(problem) = problem {
        let allowed = match kind {
            CustomKind::Network => {
                "a cloud-init network-config: YAML with `version: 1` or `version: 2`"
            }
            _ => {
                "a file starting with `#cloud-config` (YAML), `#!` (a script), `#include`, `#cloud-boothook` or `Content-Type:` (MIME multipart)"
            }
        };
        ctx.error_at(
            file,
            path,
            format!("`{}`: {problem}", file.value),
            Some(allowed),
        );
        return None;
    }
    Some(CustomData {
        path: file.value.clone(),
        content: text,
    })
}

/// Resolve `env:NAME` or `file:PATH` (relative to the spec) into a secret. A literal is
/// accepted with a warning. The value never appears in a message.
pub(super) fn resolve_secret(
    ctx: &mut Validator,
    reference: &Spanned<String>,
    path: &str,
) -> Option<Secret> {
    let text = reference.value.as_str();
    if let Some(name) = text.strip_prefix("env:") {
        return match std::env::var(name) {
            Ok(value) if !value.is_empty() => Some(Secret::new(value)),
            _ => {
                ctx.error_at(
                    reference,
                    path,
                    format!("environment variable `{name}` is not set"),
                    Some("`env:NAME` of a set variable, or `file:PATH`"),
                );
                None
            }
        };
    }
    if let Some(file) = text.strip_prefix("file:") {
        let full = ctx.base_dir.join(file);
        return match read_text_capped(&full, MAX_SECRET_FILE) {
            Ok(value) if !value.trim().is_empty() => {
                Some(Secret::new(value.trim_end_matches(['\n', '\r'])))
            }
            Ok(_) => {
                ctx.error_at(
                    reference,
                    path,
                    format!("`{}` is empty", full.display()),
                    Some("a file holding the password"),
                );
                None
            }
            Err(problem) => {
                ctx.error_at(
                    reference,
                    path,
                    format!("cannot read `{}`: {problem}", full.display()),
                    Some("`file:PATH` of a regular text file of at most 64 KiB, relative to the spec file"),
                );
                None
            }
        };
    }
    ctx.warnings.push(Warning {
        path: path.to_string(),
        message: "a literal password is stored in the spec; use `env:NAME` or `file:PATH` instead"
            .to_string(),
    });
    Some(Secret::new(text))
}

/// The keys in `ssh_key_files`, one per line (blank lines and `#` comments skipped), each
/// checked as an inline key is.
pub(super) fn read_ssh_key_files(
    ctx: &mut Validator,
    files: &[Spanned<String>],
    path: &str,
    ssh_keys: &mut Vec<String>,
) {
    for (file_idx, file) in files.iter().enumerate() {
        let file_path = format!("{path}.ssh_key_files[{file_idx}]");
        let full = ctx.base_dir.join(&file.value);
        match read_text_capped(&full, MAX_SSH_KEY_FILE) {
            Ok(text) => {
                ctx.files_read.push(full.clone());
                for line in text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    let key = Spanned::new(line.to_string(), file.referenced, file.defined);
                    check_ssh_key(ctx, &key, &file_path);
                    // The rest of a private key file is the key itself: said once, never read on.
                    if line.contains("PRIVATE KEY") {
                        break;
                    }
                    ssh_keys.push(line.to_string());
                }
            }
            Err(problem) => ctx.error_at(
                file,
                &file_path,
                format!("cannot read `{}`: {problem}", full.display()),
                Some("a regular text file of OpenSSH public keys of at most 256 KiB, relative to the spec file"),
            ),
        }
    }
}
