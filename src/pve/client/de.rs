//! Decoding Proxmox's JSON into the client's private wire structs. Proxmox's Perl serialises
//! a value as a number or as a string depending on how the server last touched it (`vmid`,
//! `memory`, `maxmem`; `active` and `shared` as `1` or `"1"`; `/cluster/nextid` as `"100"`),
//! so every scalar field goes through one lenient reader here, [`Scalar`], and the
//! `deserialize_with` helpers built on it. A value that fits none of the shapes is an error
//! that names the request and the path inside the answer, never a silently dropped item.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;

use crate::pve::PveError;

/// One JSON scalar as Proxmox may send it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar {
    /// A string.
    Text(String),
    /// A non-negative integer.
    Unsigned(u64),
    /// A negative integer.
    Signed(i64),
    /// A number with a fraction (`cpulimit`, or an integer Perl last used as a float).
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a number or a boolean")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Scalar, E> {
        Ok(Scalar::Unsigned(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Scalar, E> {
        Ok(u64::try_from(value).map_or(Scalar::Signed(value), Scalar::Unsigned))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(value.to_string()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<Scalar, D::Error> {
        inner.deserialize_any(ScalarVisitor)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scalar, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl Scalar {
    /// The value as Proxmox's own text would show it (`2048`, `0.5`, `1` for `true`); `None`
    /// for `null`.
    pub(super) fn into_text(self) -> Option<String> {
        match self {
            Scalar::Text(text) => Some(text),
            Scalar::Unsigned(n) => Some(n.to_string()),
            Scalar::Signed(n) => Some(n.to_string()),
            // serde_json's rendering, so `1.0` stays `1.0` as it was sent.
            Scalar::Float(f) => Some(
                serde_json::Number::from_f64(f).map_or_else(|| f.to_string(), |n| n.to_string()),
            ),
            Scalar::Bool(b) => Some(if b { "1" } else { "0" }.to_string()),
            Scalar::Null => None,
        }
    }

    /// The value as a count of something; `Ok(None)` for `null` or an empty string.
    fn into_number(self) -> Result<Option<u64>, String> {
        match self {
            Scalar::Unsigned(n) => Ok(Some(n)),
            // Perl sometimes sends an integer as a float (`1.073741824e9`); whole bytes are
            // what is meant.
            Scalar::Float(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
            Scalar::Text(text) if text.trim().is_empty() => Ok(None),
            Scalar::Text(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("expected a non-negative integer, got \"{text}\"")),
            Scalar::Null => Ok(None),
            Scalar::Signed(n) => Err(format!("expected a non-negative integer, got {n}")),
            Scalar::Float(f) => Err(format!("expected a non-negative integer, got {f}")),
            Scalar::Bool(b) => Err(format!("expected a non-negative integer, got {b}")),
        }
    }

    /// The value as a flag: `1`/`0`, `"1"`/`"0"`, `true`/`false`, `yes`/`no`, `on`/`off`;
    /// `null` and `""` are unset.
    fn into_flag(self) -> Result<Option<bool>, String> {
        match self {
            Scalar::Bool(b) => Ok(Some(b)),
            Scalar::Unsigned(n) => Ok(Some(n != 0)),
            Scalar::Signed(n) => Ok(Some(n != 0)),
            Scalar::Float(f) => Ok(Some(f != 0.0)),
            Scalar::Null => Ok(None),
            Scalar::Text(text) => match text.trim() {
                "" => Ok(None),
                "true" | "yes" | "on" => Ok(Some(true)),
                "false" | "no" | "off" => Ok(Some(false)),
                other => other
                    .parse::<i64>()
                    .map(|n| Some(n != 0))
                    .map_err(|_| format!("expected a flag (0 or 1), got \"{text}\"")),
            },
        }
    }
}

/// A required string; a number or a boolean is taken as its text.
pub(super) fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Scalar::deserialize(deserializer)?
        .into_text()
        .ok_or_else(|| de::Error::custom("expected a string, got null"))
}

/// An optional string; a number or a boolean is taken as its text. Use with `#[serde(default)]`.
pub(super) fn optional_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Scalar::deserialize(deserializer)?.into_text())
}

/// An optional string that Proxmox leaves empty rather than absent (`lock`, `pool`).
pub(super) fn non_empty_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(optional_text(deserializer)?.filter(|text| !text.is_empty()))
}

/// An optional count (bytes, a page total): a number or a string of digits.
pub(super) fn optional_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    Scalar::deserialize(deserializer)?
        .into_number()
        .map_err(de::Error::custom)
}

/// A required vmid: a number or a string of digits, below 2³².
pub(super) fn vmid<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    optional_vmid(deserializer)?.ok_or_else(|| de::Error::custom("expected a vmid, got nothing"))
}

/// An optional vmid. Use with `#[serde(default)]`.
pub(super) fn optional_vmid<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    optional_number(deserializer)?
        .map(|n| u32::try_from(n).map_err(|_| de::Error::custom(format!("{n} is not a vmid"))))
        .transpose()
}

/// A flag, false when absent. Use with `#[serde(default)]`.
pub(super) fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(optional_flag(deserializer)?.unwrap_or(false))
}

/// A flag whose absence means something of its own (`enabled`: absent is enabled). Use with
/// `#[serde(default)]`.
pub(super) fn optional_flag<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<bool>, D::Error> {
    Scalar::deserialize(deserializer)?
        .into_flag()
        .map_err(de::Error::custom)
}

/// Decode an answer's `data` into its wire struct. The error names the request (`what`) and
/// where in the answer the value that did not fit sits (`[3].vmid`).
pub(super) fn decode<'a, T: Deserialize<'a>>(data: &'a Value, what: &str) -> Result<T, PveError> {
    serde_path_to_error::deserialize(data).map_err(|err| {
        let path = err.path().to_string();
        let message = if path == "." {
            err.inner().to_string()
        } else {
            format!("at `{path}`: {}", err.inner())
        };
        PveError::Decode {
            what: what.to_string(),
            message,
        }
    })
}

/// What `run` logs, as text, beside what it returns: the tests of skipped items check that
/// the skip was said.
#[cfg(test)]
pub(super) fn logged<T>(run: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buffer) = self.0.lock() {
                buffer.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let result = tracing::subscriber::with_default(subscriber, run);
    let text = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
    (result, String::from_utf8_lossy(&text).into_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Row {
        #[serde(deserialize_with = "vmid")]
        vmid: u32,
        #[serde(default, deserialize_with = "optional_number")]
        maxmem: Option<u64>,
        #[serde(default, deserialize_with = "flag")]
        active: bool,
        #[serde(default, deserialize_with = "optional_flag")]
        enabled: Option<bool>,
        #[serde(default, deserialize_with = "optional_text")]
        memory: Option<String>,
        #[serde(default, deserialize_with = "non_empty_text")]
        lock: Option<String>,
    }

    fn row(value: Value) -> Result<Row, PveError> {
        decode(&value, "GET /test")
    }

    #[test]
    fn numbers_come_as_numbers_or_strings() {
        let as_numbers = row(json!({"vmid": 100, "maxmem": 2147483648u64, "memory": 2048}));
        let as_strings = row(json!({"vmid": "100", "maxmem": "2147483648", "memory": "2048"}));
        assert_eq!(as_numbers.unwrap(), as_strings.unwrap());
        let as_float = row(json!({"vmid": 100, "maxmem": 2147483648.0})).unwrap();
        assert_eq!(as_float.maxmem, Some(2147483648));
        let empty = row(json!({"vmid": 100, "maxmem": ""})).unwrap();
        assert_eq!(empty.maxmem, None);
    }

    #[test]
    fn flags_come_as_numbers_strings_or_booleans() {
        for (value, expected) in [
            (json!(1), true),
            (json!("1"), true),
            (json!(true), true),
            (json!("yes"), true),
            (json!(0), false),
            (json!("0"), false),
            (json!(false), false),
            (json!(null), false),
        ] {
            let decoded = row(json!({"vmid": 1, "active": value})).unwrap();
            assert_eq!(decoded.active, expected, "{value}");
        }
        assert_eq!(row(json!({"vmid": 1})).unwrap().enabled, None);
        assert_eq!(
            row(json!({"vmid": 1, "enabled": "0"})).unwrap().enabled,
            Some(false)
        );
    }

    #[test]
    fn text_keeps_what_was_sent() {
        for (value, expected) in [
            (json!("2048"), "2048"),
            (json!(2048), "2048"),
            (json!(-1), "-1"),
            (json!(0.5), "0.5"),
            (json!(1.0), "1.0"),
            (json!(true), "1"),
        ] {
            let decoded = row(json!({"vmid": 1, "memory": value})).unwrap();
            assert_eq!(decoded.memory.as_deref(), Some(expected));
        }
        let unlocked = row(json!({"vmid": 1, "lock": ""})).unwrap();
        assert_eq!(unlocked.lock, None);
    }

    #[test]
    fn what_does_not_fit_is_named_with_its_place() {
        for (value, needle) in [
            (json!({}), "missing field `vmid`"),
            (
                json!({"vmid": "abc"}),
                "at `vmid`: expected a non-negative integer",
            ),
            (json!({"vmid": -3}), "at `vmid`"),
            (
                json!({"vmid": 5_000_000_000u64}),
                "5000000000 is not a vmid",
            ),
            (json!({"vmid": 1, "active": "maybe"}), "at `active`"),
            (
                json!({"vmid": 1, "memory": [1]}),
                "at `memory`: invalid type",
            ),
        ] {
            let err = row(value.clone()).unwrap_err().to_string();
            assert!(
                err.contains("GET /test") && err.contains(needle),
                "{value}: {err}"
            );
        }
        let list: Result<Vec<Row>, _> = decode(&json!([{"vmid": 1}, {"vmid": "x"}]), "GET /list");
        let err = list.unwrap_err().to_string();
        assert!(err.contains("at `[1].vmid`"), "{err}");
    }
}
