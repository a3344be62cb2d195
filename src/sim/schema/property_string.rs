//! Property strings (`scsi0`, `net0`, `efidisk0`, …) checked as pve-common's
//! `PVE::JSONSchema::parse_property_string` parses them and `check_object` then checks the
//! result: duplicate keys, keys without a value, the default key given twice, aliases and key
//! aliases (`virtio=<MAC>` in `netN` sets `macaddr` and names the `model`), unknown keys, then
//! each key's type, format, pattern, length, range and enumeration and the required keys.
//! The wording is Proxmox's: a `die` in the parser is the whole message, the checks' errors
//! follow `format error` one per line, each with its path (`net0.model: …`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{check_constraints, is_true};

/// Check `value` of parameter `path` against its property-string `format`; the error is what
/// follows `invalid format - ` in Proxmox's answer.
pub(super) fn check(path: &str, format: &Map<String, Value>, value: &str) -> Result<(), String> {
    let parsed = parse(format, value)?;
    let errors = check_object(path, format, &parsed);
    if errors.is_empty() {
        return Ok(());
    }
    // `raise "format error\n", errors => …` stringified by PVE::Exception: one line per error.
    let mut message = "format error\n".to_string();
    for (key, error) in errors {
        message.push_str(&format!("{key}: {error}\n"));
    }
    Err(message)
}

/// The parse loop of `parse_property_string`: the keys and values, or the parser's `die`.
pub(super) fn parse(
    format: &Map<String, Value>,
    data: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut parsed: BTreeMap<String, String> = BTreeMap::new();
    let mut default_key: Option<&str> = None;
    for part in data.split(',') {
        if part.trim().is_empty() {
            continue;
        }
        if let Some((key, value)) = keyed(part) {
            if parsed.contains_key(key) {
                return Err(format!(
                    "duplicate key in comma-separated list property: {key}\n"
                ));
            }
            let mut key = key.to_string();
            let mut schema = format.get(&key);
            if let Some(alias) = schema.and_then(|s| s.get("alias")).and_then(Value::as_str) {
                if let Some(key_alias) = schema
                    .and_then(|s| s.get("keyAlias"))
                    .and_then(Value::as_str)
                {
                    if parsed.contains_key(key_alias) {
                        return Err(format!("key alias '{key_alias}' is already defined\n"));
                    }
                    parsed.insert(key_alias.to_string(), key.clone());
                }
                key = alias.to_string();
                schema = format.get(&key);
                if parsed.contains_key(&key) {
                    return Err(format!("key '{key}' is already defined (via alias)\n"));
                }
            }
            let Some(schema) = schema else {
                return Err(format!(
                    "invalid key in comma-separated list property: {key}\n"
                ));
            };
            parsed.insert(key, boolean_or_text(schema, value));
        } else if !part.contains('=') {
            if let Some(key) = default_key {
                return Err(format!(
                    "duplicate key in comma-separated list property: {key}\n"
                ));
            }
            let Some((key, schema)) = format.iter().find(|(_, s)| is_true(s.get("default_key")))
            else {
                return Err(
                    "value without key, but schema does not define a default key\n".to_string(),
                );
            };
            default_key = Some(key);
            // Perl's truth: a value of "" or "0" does not count as given.
            if parsed.get(key).is_some_and(|v| !v.is_empty() && v != "0") {
                return Err(format!(
                    "duplicate key in comma-separated list property: {key}\n"
                ));
            }
            parsed.insert(key.clone(), boolean_or_text(schema, part));
        } else {
            return Err("missing key in comma-separated list property\n".to_string());
        }
    }
    Ok(parsed)
}

/// `key=value` with a key of at least one character and a value of at least one (`^([^=]+)=(.+)$`).
fn keyed(part: &str) -> Option<(&str, &str)> {
    let (key, value) = part.split_once('=')?;
    (!key.is_empty() && !value.is_empty()).then_some((key, value))
}

/// A boolean key's value as `parse_boolean` reads it (`on`, `yes`, `true` are 1), else as given.
fn boolean_or_text(schema: &Value, value: &str) -> String {
    if schema.get("type").and_then(Value::as_str) != Some("boolean") {
        return value.to_string();
    }
    match value.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => "1".to_string(),
        "0" | "off" | "no" | "false" => "0".to_string(),
        _ => value.to_string(),
    }
}

/// `check_object` with no additional properties allowed: every key of the format checked (a
/// missing one that is neither optional nor an alias is an error), `requires` honoured, and
/// every parsed key known. Errors by path, at most one per path.
fn check_object(
    path: &str,
    format: &Map<String, Value>,
    parsed: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut errors = BTreeMap::new();
    for (key, schema) in format {
        let key_path = format!("{path}.{key}");
        match parsed.get(key) {
            None => {
                let excused = is_true(schema.get("optional")) || schema.get("alias").is_some();
                if !excused {
                    errors.insert(
                        key_path,
                        "property is missing and it is not optional".into(),
                    );
                }
            }
            Some(value) => {
                if let Err(error) = check_type(schema, value)
                    .and_then(|()| check_constraints(&key_path, schema, value))
                {
                    errors.insert(key_path, error);
                }
            }
        }
    }
    for key in parsed.keys() {
        let key_path = format!("{path}.{key}");
        let Some(schema) = format.get(key) else {
            errors.insert(
                key_path,
                "property is not defined in schema and the schema does not allow additional properties".into(),
            );
            continue;
        };
        if let Some(required) = schema.get("requires").and_then(Value::as_str)
            && !parsed.contains_key(required)
        {
            errors.insert(
                format!("{path}.{required}"),
                format!("missing property - '{key_path}' requires this property"),
            );
        }
    }
    errors
}

/// `check_type` for the scalar types a property string holds.
pub(super) fn check_type(schema: &Value, value: &str) -> Result<(), String> {
    let kind = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let ok = match kind {
        "boolean" => matches!(value, "0" | "1"),
        "integer" => is_integer(value),
        "number" => is_number(value),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("type check ('{kind}') failed - got '{value}'"))
    }
}

/// `PVE::JSONSchema::is_integer`: `^[+-]?\d+$`.
pub(super) fn is_integer(value: &str) -> bool {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `PVE::JSONSchema::is_number`: `^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$`.
pub(super) fn is_number(value: &str) -> bool {
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            (!whole.is_empty() || !fraction.is_empty()) && digits(whole) && digits(fraction)
        }
        None => !mantissa.is_empty() && digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(is_integer);
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_json_schema_pm_reads_them() {
        for number in ["1", "+1", "-1.5", "1.", ".5", "2e10", "2E-3"] {
            assert!(is_number(number), "{number}");
        }
        for not_number in ["", ".", "e5", "1e", "0x10", "1.2.3", " 1"] {
            assert!(!is_number(not_number), "{not_number}");
        }
        assert!(is_integer("-7") && !is_integer("7.0") && !is_integer("+"));
    }

    #[test]
    fn aliases_and_key_aliases_land_where_the_parser_puts_them() {
        let format = serde_json::json!({
            "model": {"type": "string", "default_key": 1},
            "macaddr": {"type": "string", "optional": 1},
            "virtio": {"alias": "macaddr", "keyAlias": "model"},
            "firewall": {"type": "boolean", "optional": 1},
        });
        let format = format.as_object().cloned().unwrap_or_default();
        let parsed = parse(&format, "virtio=BC:24:11:00:00:01,firewall=on").unwrap_or_default();
        assert_eq!(parsed["model"], "virtio");
        assert_eq!(parsed["macaddr"], "BC:24:11:00:00:01");
        assert_eq!(parsed["firewall"], "1");
    }
}
