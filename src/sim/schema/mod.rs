//! Request validation against the official API schema, as pveproxy does it before a handler
//! runs (pve-common's `PVE::JSONSchema::validate` and `check_prop`): unknown parameters,
//! missing required ones, then per parameter its type, format, pattern, length, range and
//! enumeration, the first failure being its error. Property strings are parsed as
//! `parse_property_string` does (`property_string.rs`), named formats checked as their
//! verifiers do (`formats.rs`; a VM's `cpu` in `cpu.rs`). Messages use Proxmox's wording.
//!
//! The schema subset is data (`api-schema.json`), extracted by `scripts/extract-sim-schema.py`
//! from the Proxmox VE API viewer's apidata (PVE 9.1).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::Value;

mod cpu;
mod formats;
mod property_string;

const SCHEMA_TEXT: &str = include_str!("../api-schema.json");

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
        // pve-container `MAX_MOUNT_POINTS` and `MAX_DEVICES`.
        "mp" | "dev" => 255,
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

/// Validate request parameters for `endpoint`; returns per-parameter messages. `repeated`
/// names the parameters given more than once, which pve-http-server hands on as an array.
pub(crate) fn validate(
    endpoint: &str,
    params: &BTreeMap<String, String>,
    repeated: &BTreeSet<String>,
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
            // `check_type` of a scalar type given an array reference.
            Some(param) if repeated.contains(name) => {
                let kind = param
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("string");
                errors.insert(
                    name.clone(),
                    format!("type check ('{kind}') failed - got ARRAY"),
                );
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
    // Form bodies and query strings pass only 1/0; JSON bodies may carry true/false.
    let json_boolean = json_body && matches!(value, "true" | "false");
    let is_boolean = param.get("type").and_then(Value::as_str) == Some("boolean");
    if !(is_boolean && json_boolean) {
        property_string::check_type(param, value)?;
    }
    check_constraints(name, param, value)
}

/// What `check_prop` checks of a scalar after its type, in its order: the format (a property
/// string, or a named format), the pattern, the length, the range (of a number) and the
/// enumeration. The first failure is the parameter's error.
fn check_constraints(path: &str, param: &Value, value: &str) -> Result<(), String> {
    match param.get("format") {
        Some(Value::Object(sub)) => property_string::check(path, sub, value),
        Some(Value::String(format)) => formats::check(path, format, value),
        _ => Ok(()),
    }
    .map_err(|message| format!("invalid format - {message}"))?;
    if let Some(pattern) = param.get("pattern").and_then(Value::as_str) {
        check_pattern(pattern, value)?;
    }
    let length = value.chars().count() as u64;
    if let Some(max) = param.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        return Err(format!("value may only be {max} characters long"));
    }
    if let Some(min) = param.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        return Err(format!("value must be at least {min} characters long"));
    }
    if property_string::is_number(value)
        && let Ok(number) = value.parse::<f64>()
    {
        check_range(param, number)?;
    }
    check_enum(param, value)
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
            &BTreeSet::new(),
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
            &BTreeSet::new(),
            false,
        );
        assert!(ok.is_empty(), "{ok:?}");
        let missing = validate(
            create,
            &params(&[("node", "pve1")]),
            &BTreeSet::new(),
            false,
        );
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
            &BTreeSet::new(),
            false,
        );
        assert!(
            bad_prop["scsi0"]
                .contains("scsi0.discard: value 'maybe' does not have a value in the enumeration"),
            "{bad_prop:?}"
        );
    }
}
