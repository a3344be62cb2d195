//! user-data: a user's `#cloud-config` with the user proxfleet declares appended as text (the
//! user's YAML is read only to check its top-level keys, never re-emitted), or any other format
//! passed through.

use std::fmt;

use super::SeedError;
use super::text::yaml_quoted;

/// The user proxfleet declares on a VM (what Proxmox calls `ciuser`, `sshkeys` and a hashed
/// `cipassword`). It becomes cloud-init's default user: the distribution's groups and sudo
/// rights, this name, these keys. `Debug` prints the password hash as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeclaredUser {
    /// The login name.
    pub name: String,
    /// OpenSSH public keys, one per entry (`ssh-ed25519 AAAA... comment`).
    pub ssh_authorized_keys: Vec<String>,
    /// A crypt(3) hash (`$6$...`, `$y$...`), never a plain password. `None` locks the password:
    /// the user logs in with a key only. The hash ends up readable in the seed ISO.
    pub password_hash: Option<String>,
}

impl fmt::Debug for DeclaredUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeclaredUser")
            .field("name", &self.name)
            .field("ssh_authorized_keys", &self.ssh_authorized_keys)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The first line that marks user-data as cloud-config.
const CLOUD_CONFIG_HEADER: &str = "#cloud-config";

/// User-data with the declared user added.
///
/// - No user-data: a `#cloud-config` with the user.
/// - A `#cloud-config` (first line exactly that): the text unchanged, comments and all, with a
///   top-level `user:` appended. cloud-init merges `user:` into the distribution's default user
///   and always creates it, so the user-data's own `users:`, `ssh_authorized_keys:` and the rest
///   keep their meaning and add to it.
/// - Anything else (a `#!` script, `#include`, `#cloud-config-archive`, MIME multipart, ...):
///   returned unchanged; the declared user is not applied, so the caller may want to say so.
///
/// The user-data is parsed only to check that it is a mapping without `user:`, and parsed
/// again with the user appended to check that the result is that mapping plus `user`: the
/// user's YAML is never re-emitted, so YAML 1.1 readings (`yes`, `0644`) stay cloud-init's.
///
/// # Errors
/// An invalid declared user; a `#cloud-config` that is not a YAML mapping, sets `user:`, or
/// cannot take a block-style key appended at its end.
pub fn merge_user_data(user_data: Option<&str>, user: &DeclaredUser) -> Result<String, SeedError> {
    let block = user_block(user)?;
    let Some(text) = user_data else {
        return Ok(format!("{CLOUD_CONFIG_HEADER}\n{block}"));
    };
    let first_line = text.lines().next().unwrap_or_default();
    if first_line.trim_end() != CLOUD_CONFIG_HEADER {
        return Ok(text.to_string());
    }
    let keys = top_level_keys(text).map_err(|message| SeedError::UserDataNotMapping { message })?;
    if keys.iter().any(|key| key == "user") {
        return Err(SeedError::UserDataSetsUser {
            user: user.name.clone(),
        });
    }
    let mut merged = text.to_string();
    if !merged.ends_with('\n') {
        merged.push('\n');
    }
    merged.push_str(&block);
    let merged_keys =
        top_level_keys(&merged).map_err(|message| SeedError::UserDataNotMergeable { message })?;
    let mut expected = keys;
    expected.push("user".to_string());
    if merged_keys != expected {
        return Err(SeedError::UserDataNotMergeable {
            message: format!("the result has the keys {merged_keys:?}, not {expected:?}"),
        });
    }
    Ok(merged)
}

/// The top-level keys of a YAML document that is a mapping (an empty document has none).
fn top_level_keys(text: &str) -> Result<Vec<String>, String> {
    let mapping: Option<indexmap::IndexMap<String, serde::de::IgnoredAny>> =
        serde_saphyr::from_str(text).map_err(|err| err.to_string())?;
    Ok(mapping.unwrap_or_default().into_keys().collect())
}

/// The `user:` block for the declared user, after checking it.
fn user_block(user: &DeclaredUser) -> Result<String, SeedError> {
    if !is_user_name(&user.name) {
        return Err(SeedError::InvalidUserName {
            name: user.name.clone(),
        });
    }
    let mut block = String::from("# The user proxfleet declares.\nuser:\n");
    block.push_str(&format!("  name: {}\n", yaml_quoted(&user.name)));
    match &user.password_hash {
        None => block.push_str("  lock_passwd: true\n"),
        Some(hash) => {
            let is_crypt = hash.starts_with('$')
                && hash.len() > 1
                && hash.chars().all(|c| c.is_ascii_graphic());
            if !is_crypt {
                return Err(SeedError::InvalidPasswordHash {
                    user: user.name.clone(),
                });
            }
            block.push_str("  lock_passwd: false\n");
            block.push_str(&format!("  passwd: {}\n", yaml_quoted(hash)));
        }
    }
    if !user.ssh_authorized_keys.is_empty() {
        block.push_str("  ssh_authorized_keys:\n");
    }
    for (key_idx, key) in user.ssh_authorized_keys.iter().enumerate() {
        let invalid = |reason| SeedError::InvalidSshKey {
            user: user.name.clone(),
            index: key_idx + 1,
            reason,
        };
        // Surrounding white space (the newline that ends a key file) is not part of the key.
        let key = key.trim();
        if key.is_empty() {
            return Err(invalid("it is empty"));
        }
        if key.chars().any(char::is_control) {
            return Err(invalid("it has a line break or another control character"));
        }
        block.push_str(&format!("    - {}\n", yaml_quoted(key)));
    }
    Ok(block)
}

/// `useradd`'s default rule (Debian's `NAME_REGEX` without upper case): a lower-case letter or
/// `_`, then lower-case letters, digits, `_` or `-`, at most 32 characters.
fn is_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> DeclaredUser {
        DeclaredUser {
            name: "admin".into(),
            ssh_authorized_keys: vec!["ssh-ed25519 AAAAC3Nza admin@laptop\n".into()],
            password_hash: None,
        }
    }

    const ADMIN_BLOCK: &str = "# The user proxfleet declares.\nuser:\n  name: \"admin\"\n  lock_passwd: true\n  ssh_authorized_keys:\n    - \"ssh-ed25519 AAAAC3Nza admin@laptop\"\n";

    #[test]
    fn no_user_data_is_a_cloud_config_with_the_user() {
        assert_eq!(
            merge_user_data(None, &admin()).unwrap(),
            format!("#cloud-config\n{ADMIN_BLOCK}")
        );
        let with_hash = DeclaredUser {
            password_hash: Some("$6$salt$hash".into()),
            ssh_authorized_keys: Vec::new(),
            ..admin()
        };
        assert_eq!(
            merge_user_data(None, &with_hash).unwrap(),
            "#cloud-config\n# The user proxfleet declares.\nuser:\n  name: \"admin\"\n  lock_passwd: false\n  passwd: \"$6$salt$hash\"\n"
        );
    }

    #[test]
    fn cloud_config_keeps_its_text_and_gains_the_user() {
        let text = "#cloud-config\n# mine\nusers:\n  - default\n  - name: bob\nwrite_files:\n  - path: /etc/motd\n    permissions: 0644\n    content: |\n      hello\nssh_pwauth: yes";
        let merged = merge_user_data(Some(text), &admin()).unwrap();
        assert_eq!(merged, format!("{text}\n{ADMIN_BLOCK}"));
        assert_eq!(
            top_level_keys(&merged).unwrap(),
            ["users", "write_files", "ssh_pwauth", "user"]
        );
        // Trailing spaces or a CR after the header are still cloud-config.
        let crlf = "#cloud-config \r\npackages: [curl]\r\n";
        assert_eq!(
            merge_user_data(Some(crlf), &admin()).unwrap(),
            format!("{crlf}{ADMIN_BLOCK}")
        );
        let empty = "#cloud-config\n";
        assert_eq!(
            merge_user_data(Some(empty), &admin()).unwrap(),
            format!("{empty}{ADMIN_BLOCK}")
        );
    }

    #[test]
    fn other_formats_pass_through_unchanged() {
        for text in [
            "#!/bin/sh\necho hello\n",
            "#cloud-config-archive\n- type: text/cloud-config\n  content: 'a: 1'\n",
            "#include\nhttps://example.com/user-data\n",
            "Content-Type: multipart/mixed; boundary=\"x\"\n",
            " #cloud-config\na: 1\n",
            "",
        ] {
            assert_eq!(merge_user_data(Some(text), &admin()).unwrap(), text);
        }
    }

    #[test]
    fn cloud_config_that_cannot_take_the_user_is_refused() {
        let err = merge_user_data(Some("#cloud-config\nuser: ubuntu\n"), &admin()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "user-data sets `user`, which proxfleet sets for the declared user `admin`: declare the user in one place"
        );
        for text in [
            "#cloud-config\n- a\n- b\n",
            "#cloud-config\na: [1\n",
            "#cloud-config\njust text\n",
        ] {
            let err = merge_user_data(Some(text), &admin()).unwrap_err();
            assert!(
                matches!(err, SeedError::UserDataNotMapping { .. }),
                "{text}: {err}"
            );
        }
        for text in [
            "#cloud-config\n{a: 1}\n",
            "#cloud-config\na: 1\n...\n",
            "#cloud-config\n  a: 1\n",
        ] {
            let err = merge_user_data(Some(text), &admin()).unwrap_err();
            assert!(
                matches!(err, SeedError::UserDataNotMergeable { .. }),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn bad_declared_users_are_refused() {
        for name in ["", "Admin", "1admin", "ad min", &"a".repeat(33)] {
            let user = DeclaredUser {
                name: name.to_string(),
                ..admin()
            };
            assert_eq!(
                merge_user_data(None, &user),
                Err(SeedError::InvalidUserName {
                    name: name.to_string()
                })
            );
        }
        let plain = DeclaredUser {
            password_hash: Some("hunter2".into()),
            ..admin()
        };
        assert!(!format!("{plain:?}").contains("hunter2"), "{plain:?}");
        let err = merge_user_data(None, &plain).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(
            err,
            SeedError::InvalidPasswordHash {
                user: "admin".into()
            }
        );
        for (key, reason) in [
            ("  ", "it is empty"),
            (
                "ssh-ed25519 AAAA\nssh-rsa BBBB",
                "it has a line break or another control character",
            ),
        ] {
            let user = DeclaredUser {
                ssh_authorized_keys: vec!["ssh-ed25519 AAAA".into(), key.into()],
                ..admin()
            };
            assert_eq!(
                merge_user_data(None, &user),
                Err(SeedError::InvalidSshKey {
                    user: "admin".into(),
                    index: 2,
                    reason
                })
            );
        }
    }
}
