//! The spec: YAML ⇄ raw serde/schemars types (the only place that parses YAML), then raw →
//! validated domain `Spec`, with every problem reported at once. No network, no Proxmox.

mod error;
mod layers;
mod model;
mod raw;
pub(crate) mod read;
mod rollout;
mod structure;
mod validate;
mod yaml_messages;

use std::path::Path;

pub use error::{Diagnostic, SpecError};
pub use layers::{CloneSettings, CloudInitSettings, Layer, Layered, Origin, explain};
pub use model::{
    Bios, BootDisk, Checksum, ChecksumAlgorithm, CloneVm, CloudInit, Compression, CustomData,
    DEFAULT_WAIT_FOR_IP_TIMEOUT, DataDisk, Delivery, DiskBus, DiskSize, EfiDisk, Explained,
    ExtraDisk, Image, ImageMode, InterfaceIp, Ipv4Config, Ipv6Config, Network, NicModel, PciDevice,
    PciSource, Spec, SshSettings, Template, Tpm, TpmVersion, VmId, human_duration, ipconfig,
    is_node_local_storage,
};
pub use rollout::{Health, MaxUnavailable, OnTemplateChange, Rollout};

/// A warning about a spec that is valid but probably not what was meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Dotted field path.
    pub path: String,
    /// What to look at.
    pub message: String,
}

/// A loaded spec and the warnings found while validating it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated spec.
    pub spec: Spec,
    /// Warnings, for stderr.
    pub warnings: Vec<Warning>,
    /// For every clone, each effective setting and the layer it comes from.
    pub explanations: std::collections::BTreeMap<String, Vec<Explained>>,
    /// Files the spec made proxfleet read besides itself (SSH key files), so a saved plan can
    /// tell when one changed. Password files are left out on purpose: a hash of a short
    /// secret is a guessable secret.
    pub files: Vec<std::path::PathBuf>,
}

/// Read and validate a spec file.
///
/// # Errors
/// [`SpecError::Read`] when the file cannot be read or is not a regular UTF-8 text file of at
/// most 64 MiB, [`SpecError::Invalid`] with every problem
/// found otherwise.
pub fn load(file: &Path) -> Result<Loaded, SpecError> {
    load_str(&read_spec_text(file)?, file)
}

/// A spec file's text, read safely: a regular file of at most 64 MiB (a device, a FIFO or a
/// `/proc` file is refused without being read in bulk).
///
/// # Errors
/// [`SpecError::Read`] naming the file and why.
pub fn read_spec_text(file: &Path) -> Result<String, SpecError> {
    read::read_text_capped(file, read::MAX_SPEC_FILE).map_err(|problem| SpecError::Read {
        file: file.to_path_buf(),
        source: problem.into_io_error(),
    })
}

/// Validate spec text; `file` only names it in messages and anchors relative paths.
///
/// # Errors
/// [`SpecError::Invalid`] with every problem found.
pub fn load_str(text: &str, file: &Path) -> Result<Loaded, SpecError> {
    let invalid = |diagnostics| SpecError::Invalid {
        file: file.to_path_buf(),
        source_text: text.to_string(),
        diagnostics,
    };
    let raw = parse_yaml(text).map_err(invalid)?;
    validate::validate(raw, file).map_err(invalid)
}

/// The JSON Schema of the spec format, pretty-printed with a trailing newline.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(raw::RawSpec).to_value();
    drop_null_defaults(&mut schema);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// schemars writes `"default": null` for every optional field; it says nothing an absent key
/// does not, and yaml-language-server's completion fails on it (it then offers a few keys only).
fn drop_null_defaults(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("default").is_some_and(serde_json::Value::is_null) {
                map.shift_remove("default");
            }
            map.values_mut().for_each(drop_null_defaults);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_defaults),
        _ => {}
    }
}

/// The raw spec, or every structural problem: serde stops at the first, so on failure the
/// text is walked against the schema (`structure`) for all of them.
fn parse_yaml(text: &str) -> Result<raw::RawSpec, Vec<Diagnostic>> {
    parse_yaml_first(text).map_err(|first| {
        // The walk finds serde's first problem too, in its own words; when it finds nothing
        // (the YAML does not parse, a duplicate key), serde's is the one.
        let all = structure::problems(text);
        if all.is_empty() { vec![first] } else { all }
    })
}

fn parse_yaml_first(text: &str) -> Result<raw::RawSpec, Diagnostic> {
    // An empty file is an empty spec, not a type error.
    if text
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
    {
        return Ok(raw::RawSpec {
            project: None,
            defaults: None,
            clone_groups: Default::default(),
            images: Default::default(),
            templates: Default::default(),
            clones: Default::default(),
        });
    }
    let mut field_path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|err| {
            field_path = err.path().to_string();
            err.into_inner()
        })
    });
    result.map_err(|err| yaml_diagnostic(&err, field_path, text))
}

/// serde's path names map keys it could not capture (our keys are `Spanned`) as `?`, and a
/// `Spanned` value adds a `value` segment. Fill the keys in from the block structure of the
/// YAML text above the error line, and drop the `value` segment.
fn readable_path(serde_path: &str, text: &str, line: u64) -> String {
    let mut segments: Vec<String> = serde_path.split('.').map(str::to_string).collect();
    if segments.last().is_some_and(|s| s == "value") {
        segments.pop();
    }
    if segments.iter().any(|s| s == "?") {
        let keys = block_keys_above(text, line);
        let n_keys = segments.len();
        if keys.len() >= n_keys {
            for (segment, key) in segments.iter_mut().zip(&keys) {
                if segment == "?" {
                    *segment = key.clone();
                }
            }
        }
    }
    // Keys the text above could not name are left out rather than shown as `?`.
    segments.retain(|s| s != "?");
    segments.join(".")
}

/// The mapping keys enclosing `line` (1-based) in block-style YAML, outermost first, the key on
/// `line` itself last.
fn block_keys_above(text: &str, line: u64) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = usize::try_from(line)
        .ok()
        .and_then(|l| l.checked_sub(1))
        .filter(|&l| l < lines.len())
    else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    // Keys that enclose the position are strictly less indented than everything seen so far.
    let mut limit = usize::MAX;
    for raw in lines[..=start].iter().rev() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let key_of = |body: &str| {
            body.split_once(':')
                .map(|(key, _)| key.trim().trim_matches(['"', '\'']).to_string())
        };
        if let Some(item) = trimmed.strip_prefix("- ") {
            // A sequence item `- key: value`: its mapping's keys sit two columns further in.
            if indent < limit {
                if indent + 2 < limit {
                    keys.extend(key_of(item));
                }
                limit = indent;
            }
        } else if indent < limit {
            keys.extend(key_of(trimmed));
            limit = indent;
        }
        if limit == 0 {
            break;
        }
    }
    keys.reverse();
    keys
}

fn yaml_diagnostic(err: &serde_saphyr::Error, field_path: String, text: &str) -> Diagnostic {
    use serde_saphyr::Error as E;
    let location = err.location();
    let err = err.without_snippet();
    let (line, column, len) = location
        .map(|loc| (loc.line(), loc.column(), loc.span().len().max(1)))
        .unwrap_or((0, 0, 1));
    let path = if field_path == "." {
        String::new()
    } else {
        readable_path(&field_path, text, line)
    };
    if let Some(said) = yaml_messages::for_user(err, text, &path, line, column) {
        let (line, column, len) = said.place.map_or((line, column, len), |(l, c)| (l, c, 1));
        // Moved to another line (a tab): its path is that of the mapping above it.
        let path = match said.place {
            Some((moved, _)) => block_keys_above(text, moved.saturating_sub(1)).join("."),
            None => path,
        };
        return Diagnostic {
            path,
            message: said.message,
            allowed: Some(said.allowed),
            line,
            column,
            len,
        };
    }
    let (message, allowed) = match err {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            let suggestion = closest(field, expected);
            let message = match suggestion {
                Some(near) => format!("unknown field `{field}` (did you mean `{near}`?)"),
                None => format!("unknown field `{field}`"),
            };
            (message, Some(expected.join(", ")))
        }
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let message = match closest(variant, expected) {
                Some(near) => format!("unknown value `{variant}` (did you mean `{near}`?)"),
                None => format!("unknown value `{variant}`"),
            };
            (message, Some(expected.join(", ")))
        }
        E::SerdeMissingField { field, .. } => (format!("missing field `{field}`"), None),
        other => {
            // The library's own message starts with its location and carries a snippet; keep
            // only the first line's text after the location.
            let text = other.without_snippet().to_string();
            let first = text.lines().next().unwrap_or_default().to_string();
            let first = first.strip_prefix("error: ").unwrap_or(&first).to_string();
            let message = match first.split_once(": ") {
                Some((head, rest)) if head.starts_with("line ") => rest.to_string(),
                _ => first,
            };
            let message = match message.rfind(" at line ") {
                Some(cut) => message[..cut].to_string(),
                None => message,
            };
            let message = match message.as_str() {
                "invalid u8" | "invalid u16" | "invalid u32" | "invalid u64" => {
                    "expected a whole number".to_string()
                }
                "invalid bool" => "expected true or false".to_string(),
                _ => message,
            };
            (message, None)
        }
    };
    Diagnostic {
        path,
        message,
        allowed,
        line,
        column,
        len,
    }
}

/// The candidate closest to `word`, when one is close enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|cand| (strsim::jaro_winkler(word, cand), *cand))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, cand)| cand)
}
