//! Request validation against the official API schema, as pveproxy does it before a handler
//! runs: unknown parameters, missing required ones, types, enums, ranges, lengths, a few named
//! formats, and property strings against their sub-schemas. Messages use Proxmox's wording.
//!
//! The schema subset is data (`api-schema.json`), extracted by `scripts/extract-sim-schema.py`
//! from the Proxmox VE API viewer's apidata (PVE 9.1).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

const SCHEMA_TEXT: &str = include_str!("api-schema.json");

fn schema() -> &'static BTreeMap<String, BTreeMap<String, Value>> {
    static SCHEMA: OnceLock<BTreeMap<String, BTreeMap<String, Value>>> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(SCHEMA_TEXT).unwrap_or_default())
}

#[cfg(test)]
/// The endpoints the simulator serves, as `METHOD /path/{template}`.
pub(crate) fn served() -> impl Iterator<Item = &'static str> {
    schema().keys().map(String::as_str)
}

/// Highest index of each `name[n]` family (qemu-server's limits).
fn max_index(family: &str) -> Option<u32> {
    Some(match family {
        "scsi" => 30,
        "virtio" => 15,
        "sata" => 5,
        "ide" => 3,
        "net" | "ipconfig" => 31,
        "hostpci" => 15,
        "serial" | "parallel" => 3,
        "usb" => 4,
        "unused" => 255,
        "numa" => 7,
        "virtiofs" => 9,
        _ => return None,
    })
}

/// The schema entry for a concrete parameter name (`scsi0` → `scsi[n]`).
fn lookup<'a>(params: &'a BTreeMap<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(spec) = params.get(name) {
        return Some(spec);
    }
    let digits_at = name.find(|c: char| c.is_ascii_digit())?;
    let (family, index) = name.split_at(digits_at);
    let index: u32 = index.parse().ok()?;
    if index > max_index(family)? {
        return None;
    }
    params.get(&format!("{family}[n]"))
}

fn is_true(value: Option<&Value>) -> bool {
    matches!(value, Some(Value::Number(n)) if n.as_u64() == Some(1))
        || matches!(value, Some(Value::Bool(true)))
}

/// Validate request parameters for `endpoint`; returns per-parameter messages.
pub(crate) fn validate(
    endpoint: &str,
    params: &BTreeMap<String, String>,
    json_body: bool,
) -> BTreeMap<String, String> {
    let mut errors = BTreeMap::new();
    let Some(spec) = schema().get(endpoint) else {
        return errors;
    };
    for (name, value) in params {
        match lookup(spec, name) {
            None => {
                errors.insert(name.clone(), "property is not defined in schema and the schema does not allow additional properties".to_string());
            }
            Some(param) => {
                if let Err(message) = check_value(name, param, value, json_body) {
                    errors.insert(name.clone(), message);
                }
            }
        }
    }
    for (name, param) in spec {
        if name.ends_with("[n]") || is_true(param.get("optional")) {
            continue;
        }
        if !params.contains_key(name) {
            errors.insert(
                name.clone(),
                "property is missing and it is not optional".to_string(),
            );
        }
    }
    errors
}

fn check_value(name: &str, param: &Value, value: &str, json_body: bool) -> Result<(), String> {
    let kind = param
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    match kind {
        "boolean" => {
            // Form bodies and query strings pass only 1/0; JSON bodies may carry true/false.
            let ok = matches!(value, "0" | "1") || (json_body && matches!(value, "true" | "false"));
            if !ok {
                return Err(format!("type check ('boolean') failed - got '{value}'"));
            }
        }
        "integer" => {
            let number: i64 = value
                .parse()
                .map_err(|_| format!("type check ('integer') failed - got '{value}'"))?;
            check_range(param, number as f64)?;
        }
        "number" => {
            let number: f64 = value
                .parse()
                .map_err(|_| format!("type check ('number') failed - got '{value}'"))?;
            check_range(param, number)?;
        }
        _ => {
            if let Some(max) = param.get("maxLength").and_then(Value::as_u64)
                && value.chars().count() as u64 > max
            {
                return Err(format!("value may only be {max} characters long"));
            }
            check_enum(param, value)?;
            if let Some(pattern) = param.get("pattern").and_then(Value::as_str) {
                check_pattern(pattern, value)?;
            }
            match param.get("format") {
                Some(Value::Object(sub)) => check_property_string(name, sub, value)?,
                Some(Value::String(format)) => check_named_format(format, value)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// JSONSchema.pm matches `m/^$pattern$/`; Perl's `(?^:…)` groups are plain groups here.
fn check_pattern(pattern: &str, value: &str) -> Result<(), String> {
    static CACHE: OnceLock<std::sync::Mutex<BTreeMap<String, Option<regex::Regex>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    let compiled = cache.entry(pattern.to_string()).or_insert_with(|| {
        regex::Regex::new(&format!("^(?:{})$", pattern.replace("(?^:", "(?:"))).ok()
    });
    match compiled {
        Some(re) if !re.is_match(value) => Err("value does not match the regex pattern".into()),
        _ => Ok(()),
    }
}

fn check_range(param: &Value, number: f64) -> Result<(), String> {
    if let Some(min) = param.get("minimum").and_then(Value::as_f64)
        && number < min
    {
        return Err(format!("value must have a minimum value of {min}"));
    }
    if let Some(max) = param.get("maximum").and_then(Value::as_f64)
        && number > max
    {
        return Err(format!("value must have a maximum value of {max}"));
    }
    Ok(())
}

fn check_enum(param: &Value, value: &str) -> Result<(), String> {
    if let Some(options) = param.get("enum").and_then(Value::as_array) {
        let names: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
        if !names.contains(&value) {
            return Err(format!(
                "value '{value}' does not have a value in the enumeration '{}'",
                names.join(", ")
            ));
        }
    }
    Ok(())
}

fn check_named_format(format: &str, value: &str) -> Result<(), String> {
    let ok = match format {
        "pve-vmid" => {
            value.len() >= 3
                && value.len() <= 9
                && !value.starts_with('0')
                && value.bytes().all(|b| b.is_ascii_digit())
        }
        "pve-node" | "dns-name" => value.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        }),
        "pve-storage-id" => {
            let b = value.as_bytes();
            b.len() >= 2
                && b[0].is_ascii_alphabetic()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
                && b[b.len() - 1].is_ascii_alphanumeric()
        }
        // qemu-server's `pve-qm-cicustom`: `[meta=<volume>][,network=…][,user=…][,vendor=…]`.
        "pve-qm-cicustom" => value.split(',').all(|item| {
            item.split_once('=').is_some_and(|(key, volid)| {
                matches!(key, "meta" | "network" | "user" | "vendor")
                    && volid
                        .split_once(':')
                        .is_some_and(|(storage, name)| !storage.is_empty() && !name.is_empty())
            })
        }),
        "urlencoded" => value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-%_.!~*'()".contains(&b)),
        "pve-tag-list" => value
            .split([';', ',', ' '])
            .filter(|t| !t.is_empty())
            .all(|t| {
                t.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-+.".contains(&b))
            }),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "value does not match the regex pattern or is not a valid {format}"
        ))
    }
}

/// Validate a property string against its sub-schema.
fn check_property_string(
    name: &str,
    sub: &serde_json::Map<String, Value>,
    value: &str,
) -> Result<(), String> {
    let default_key = sub
        .iter()
        .find(|(_, s)| is_true(s.get("default_key")))
        .map(|(k, _)| k.clone());
    let mut seen_default = false;
    for item in value.split(',').filter(|i| !i.is_empty()) {
        let (key, item_value) = match item.split_once('=') {
            Some((k, v)) => (k.to_string(), v),
            None => {
                let Some(key) = default_key.clone().filter(|_| !seen_default) else {
                    return Err(format!(
                        "invalid format - format error\n{name}: value without key, but schema does not define a default key"
                    ));
                };
                seen_default = true;
                (key, item)
            }
        };
        let spec = match sub.get(&key) {
            // NIC models carry the MAC: `virtio=BC:24:..` is the `model` key's alias form.
            None if name.starts_with("net") && is_nic_model(&key) => continue,
            None => {
                return Err(format!(
                    "invalid format - format error\n{name}.{key}: property is not defined in schema and the schema does not allow additional properties"
                ));
            }
            Some(spec) => spec,
        };
        let spec = match spec.get("alias").and_then(Value::as_str) {
            Some(target) => sub.get(target).unwrap_or(spec),
            None => spec,
        };
        let kind = spec.get("type").and_then(Value::as_str).unwrap_or("string");
        let bad = match kind {
            "boolean" => !matches!(
                item_value.to_ascii_lowercase().as_str(),
                "1" | "0" | "on" | "off" | "yes" | "no" | "true" | "false"
            ),
            "integer" => item_value.parse::<i64>().is_err(),
            "number" => item_value.parse::<f64>().is_err(),
            _ => false,
        };
        if bad {
            return Err(format!(
                "invalid format - format error\n{name}.{key}: type check ('{kind}') failed - got '{item_value}'"
            ));
        }
        if kind == "string"
            && let Err(message) = check_enum(spec, item_value)
        {
            return Err(format!(
                "invalid format - format error\n{name}.{key}: {message}"
            ));
        }
        if matches!(kind, "integer" | "number")
            && let Ok(number) = item_value.parse::<f64>()
            && let Err(message) = check_range(spec, number)
        {
            return Err(format!(
                "invalid format - format error\n{name}.{key}: {message}"
            ));
        }
    }
    Ok(())
}

fn is_nic_model(key: &str) -> bool {
    super::propstr::NIC_MODELS.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_schema_subset_is_loaded() {
        assert!(served().count() >= 20);
        assert!(served().any(|e| e == "POST /nodes/{node}/qemu/{vmid}/clone"));
    }

    #[test]
    fn rejects_like_pveproxy() {
        let create = "POST /nodes/{node}/qemu";
        let errors = validate(
            create,
            &params(&[
                ("node", "pve1"),
                ("vmid", "100"),
                ("bogus", "1"),
                ("onboot", "true"),
                ("scsi31", "x"),
                ("cores", "0"),
            ]),
            false,
        );
        assert_eq!(
            errors["bogus"],
            "property is not defined in schema and the schema does not allow additional properties"
        );
        assert_eq!(
            errors["onboot"],
            "type check ('boolean') failed - got 'true'"
        );
        assert!(errors.contains_key("scsi31"), "scsi goes up to 30");
        assert_eq!(errors["cores"], "value must have a minimum value of 1");
        let ok = validate(
            create,
            &params(&[
                ("node", "pve1"),
                ("vmid", "100"),
                (
                    "scsi0",
                    "local-lvm:0,import-from=local:import/a.qcow2,discard=on,ssd=1",
                ),
                ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr0"),
                ("onboot", "1"),
            ]),
            false,
        );
        assert!(ok.is_empty(), "{ok:?}");
        let missing = validate(create, &params(&[("node", "pve1")]), false);
        assert_eq!(
            missing["vmid"],
            "property is missing and it is not optional"
        );
        let bad_prop = validate(
            create,
            &params(&[
                ("node", "pve1"),
                ("vmid", "100"),
                ("scsi0", "local-lvm:1,discard=maybe"),
            ]),
            false,
        );
        assert!(
            bad_prop["scsi0"]
                .contains("scsi0.discard: value 'maybe' does not have a value in the enumeration"),
            "{bad_prop:?}"
        );
    }
}
