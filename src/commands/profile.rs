//! Credentials and named profiles: `$XDG_CONFIG_HOME/proxfleet/config.toml` (else
//! `~/.config/proxfleet/config.toml`, or the file `PROXFLEET_CONFIG` names) holds
//! `[profiles.NAME]` tables with `endpoint`, `token` or `token_file`, `ca_file` and `insecure`.
//!
//! Precedence, per setting: the command line, then the environment (`PROXMOX_VE_ENDPOINT`,
//! `PROXMOX_VE_API_TOKEN`, `PROXMOX_VE_CA_FILE`, `PROXMOX_VE_INSECURE`), then the profile chosen by
//! `--profile` / `PROXFLEET_PROFILE`, or the one named `default` when none is chosen. A file that
//! holds a secret (a `token`, or a `token_file` it points to) must not be readable by everyone:
//! such a file is refused, as ssh refuses a private key others can read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::CommandError;
use crate::secret::Secret;

/// The environment variable that names another config file.
pub const CONFIG_ENV: &str = "PROXFLEET_CONFIG";

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
}

/// A profile as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    endpoint: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    insecure: Option<bool>,
}

/// A profile, read and checked.
#[derive(Debug, Default)]
pub struct Profile {
    /// The profile's name.
    pub name: String,
    /// `https://pve1.example.com:8006`.
    pub endpoint: Option<String>,
    /// `user@realm!tokenid=secret`, from `token` or `token_file`.
    pub token: Option<Secret>,
    /// CA file (relative paths are relative to the config file).
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification.
    pub insecure: Option<bool>,
}

/// Where the config file is: `PROXFLEET_CONFIG`, `$XDG_CONFIG_HOME/proxfleet/config.toml`, or
/// `~/.config/proxfleet/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("proxfleet").join("config.toml"))
}

/// The profile to use: `requested` (from `--profile` or `PROXFLEET_PROFILE`) must exist;
/// without one, the profile named `default` if the file has it; `None` otherwise.
///
/// # Errors
/// A requested profile that does not exist (or no config file for it), an unreadable or
/// malformed file, a secret in a file everyone can read.
pub fn load(requested: Option<&str>) -> Result<Option<Profile>, CommandError> {
    let Some(path) = config_path() else {
        return match requested {
            Some(name) => Err(CommandError::Usage(format!(
                "profile {name}: no config file (set XDG_CONFIG_HOME or HOME, or {CONFIG_ENV})"
            ))),
            None => Ok(None),
        };
    };
    if !path.exists() {
        return match requested {
            Some(name) => Err(CommandError::Usage(format!(
                "profile {name}: {} does not exist",
                path.display()
            ))),
            None => Ok(None),
        };
    }
    let text = read_small(&path)?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| {
        CommandError::Usage(format!("{}: {}", path.display(), e.to_string().trim_end()))
    })?;
    let name = requested.unwrap_or("default");
    let Some(raw) = file.profiles.get(name) else {
        if requested.is_none() {
            return Ok(None);
        }
        let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
        return Err(CommandError::Usage(format!(
            "profile {name} is not in {} (profiles: {})",
            path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    if file.profiles.values().any(|p| p.token.is_some()) {
        refuse_if_world_readable(&path, "holds an API token")?;
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let token = match (&raw.token, &raw.token_file) {
        (Some(_), Some(_)) => {
            return Err(CommandError::Usage(format!(
                "{}: profile {name} has both token and token_file: keep one",
                path.display()
            )));
        }
        (Some(token), None) => Some(Secret::new(token.trim().to_string())),
        (None, Some(file)) => {
            let file = base.join(file);
            refuse_if_world_readable(&file, "is an API token file")?;
            Some(Secret::new(read_small(&file)?.trim().to_string()))
        }
        (None, None) => None,
    };
    Ok(Some(Profile {
        name: name.to_string(),
        endpoint: raw.endpoint.clone(),
        token,
        ca_file: raw.ca_file.as_ref().map(|ca| base.join(ca)),
        insecure: raw.insecure,
    }))
}

/// Config and token files are small: read at most 64 KiB, and only regular files, as the spec
/// reads the files it references.
fn read_small(path: &Path) -> Result<String, CommandError> {
    const LIMIT: u64 = 64 * 1024;
    use crate::spec::read::{ReadProblem, read_text_capped};
    read_text_capped(path, LIMIT).map_err(|problem| match problem {
        ReadProblem::Io(source) => CommandError::Io {
            context: format!("cannot read {}", path.display()),
            source,
        },
        other => CommandError::Usage(format!("{}: {other}", path.display())),
    })
}

#[cfg(unix)]
fn refuse_if_world_readable(path: &Path, what: &str) -> Result<(), CommandError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| CommandError::Io {
            context: format!("cannot read {}", path.display()),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o004 != 0 {
        return Err(CommandError::Usage(format!(
            "{} {what} and everyone can read it (mode {:o}): run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_if_world_readable(_path: &Path, _what: &str) -> Result<(), CommandError> {
    Ok(())
}

/// `PROXMOX_VE_INSECURE` as the bpg Terraform provider reads it: `1`, `true`, `yes`, `on`
/// (any case) turn it on; `0`, `false`, `no`, `off` and empty turn it off.
///
/// # Errors
/// Any other value.
pub fn parse_boolish(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Ok(true),
        "" | "0" | "false" | "no" | "off" | "n" | "f" => Ok(false),
        _ => Err(format!(
            "'{text}' is not a yes/no value (1, true, yes / 0, false, no)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_reads_the_words_operators_use() {
        for yes in ["1", "true", "TRUE", "yes", "Yes", "on"] {
            assert_eq!(parse_boolish(yes), Ok(true), "{yes}");
        }
        for no in ["0", "false", "no", "off", ""] {
            assert_eq!(parse_boolish(no), Ok(false), "{no}");
        }
        assert!(parse_boolish("maybe").is_err());
    }
}
