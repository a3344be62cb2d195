//! The spec's shape, checked all at once: when serde stops at the first structural problem (an
//! unknown key, a bad enum value, a wrong type, a missing field), the file is read again into a
//! loose tree of YAML nodes with their places (`Node`), and that tree is walked against the JSON
//! Schema the raw types generate, collecting every structural problem with its line, column,
//! field path and what is allowed. The schema is the raw types' own, so the walk and the loader
//! agree on which keys exist and what each holds.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{Location, Spanned};

use super::error::Diagnostic;

/// A YAML node as parsed, with no meaning given to it yet.
#[derive(Debug)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    /// A whole number; i128 holds both i64 and u64.
    Int(i128),
    Float,
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A node and where it is.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) at: Location,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Kind>::deserialize(deserializer)?;
        Ok(Node {
            kind: spanned.value,
            at: spanned.referenced,
        })
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(i128::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Int(i128::from(v)))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Kind, E> {
        Ok(i128::try_from(v).map_or(Kind::Float, Kind::Int))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Float)
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Node, Node>()? {
            entries.push((key, value));
        }
        Ok(Kind::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

impl Kind {
    /// What a user would call this node.
    fn noun(&self) -> &'static str {
        match self {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "true or false",
            Kind::Int(_) => "a whole number",
            Kind::Float => "a decimal number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The text of a scalar, as a map key or an enum value.
    fn scalar_text(&self) -> Option<String> {
        match self {
            Kind::Str(text) => Some(text.clone()),
            Kind::Int(n) => Some(n.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// The spec's JSON Schema as a value, made once.
fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(&super::json_schema()).unwrap_or(Value::Null))
}

/// Every structural problem of `text` against the spec's schema; empty when the text does not
/// parse as YAML (serde's own error says why) or has none.
pub(crate) fn problems(text: &str) -> Vec<Diagnostic> {
    // This second reading expands every alias into the tree (serde's own stopped at its first
    // problem): a tighter replay budget keeps an alias bomb from costing seconds here.
    let mut options = serde_saphyr::Options::default();
    options.alias_limits.max_total_replayed_events = 50_000;
    let Ok(root) = serde_saphyr::from_str_with_options::<Node>(text, options) else {
        return Vec::new();
    };
    let schema = schema();
    let mut walk = Walk {
        defs: schema.get("$defs").and_then(Value::as_object),
        found: Vec::new(),
        budget: 5_000_000,
    };
    walk.check(&root, schema, "");
    walk.found.sort_by_key(|d| (d.line, d.column));
    walk.found
}

/// One walk of a tree against the schema.
struct Walk<'s> {
    defs: Option<&'s serde_json::Map<String, Value>>,
    found: Vec<Diagnostic>,
    /// Nodes left to visit: a tree made large by aliases is not walked to its end.
    budget: u64,
}

impl<'s> Walk<'s> {
    /// A schema with its `$ref` followed.
    fn resolve(&self, mut schema: &'s Value) -> &'s Value {
        for _ in 0..8 {
            let Some(name) = schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
            else {
                break;
            };
            match self.defs.and_then(|defs| defs.get(name)) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn report(&mut self, node: &Node, path: &str, message: String, allowed: String) {
        self.found.push(Diagnostic {
            path: path.to_string(),
            message,
            allowed: Some(allowed),
            line: node.at.line(),
            column: node.at.column(),
            len: node.at.span().len().max(1),
        });
    }

    fn check(&mut self, node: &Node, schema: &'s Value, path: &str) {
        if self.budget == 0 {
            return;
        }
        self.budget -= 1;
        let schema = self.resolve(schema);
        if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
            return self.check_any_of(node, branches, path);
        }
        let types = types_of(schema);
        if matches!(node.kind, Kind::Null) && types.contains(&"null") {
            return;
        }
        if let Some(values) = enum_values(schema) {
            return self.check_enum(node, &values, path);
        }
        if !types.is_empty() && !types.iter().any(|t| accepts(t, &node.kind)) {
            let message = format!("must be {}, found {}", expected(&types), node.kind.noun());
            let allowed = self.allowed(schema, &types);
            return self.report(node, path, message, allowed);
        }
        match &node.kind {
            Kind::Map(entries) => self.check_map(node, entries, schema, path),
            Kind::Seq(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (idx, item) in items.iter().enumerate() {
                        self.check(item, item_schema, &format!("{path}[{idx}]"));
                    }
                }
            }
            Kind::Int(n) => self.check_range(node, *n, schema, path),
            _ => {}
        }
    }

    /// `Option<T>` is `anyOf: [T, null]`; other unions take the first branch that fits.
    fn check_any_of(&mut self, node: &Node, branches: &'s [Value], path: &str) {
        let mut first_errors = None;
        for branch in branches {
            let mut trial = Walk {
                defs: self.defs,
                found: Vec::new(),
                budget: self.budget,
            };
            trial.check(node, branch, path);
            if trial.found.is_empty() {
                self.budget = trial.budget;
                return;
            }
            let is_null = types_of(self.resolve(branch)) == ["null"];
            if first_errors.is_none() && !is_null {
                first_errors = Some(trial.found);
            }
        }
        self.found.extend(first_errors.unwrap_or_default());
    }

    fn check_enum(&mut self, node: &Node, values: &[String], path: &str) {
        let text = node.kind.scalar_text();
        if text.as_ref().is_some_and(|t| values.contains(t)) {
            return;
        }
        let names: Vec<&str> = values.iter().map(String::as_str).collect();
        let allowed = names.join(", ");
        let message = match text {
            Some(text) => match super::closest(&text, &names) {
                Some(near) => format!("unknown value `{text}` (did you mean `{near}`?)"),
                None => format!("unknown value `{text}`"),
            },
            None => format!("must be one of the names below, found {}", node.kind.noun()),
        };
        self.report(node, path, message, allowed);
    }

    fn check_map(&mut self, node: &Node, entries: &[(Node, Node)], schema: &'s Value, path: &str) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let join = |key: &str| {
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            }
        };
        let mut seen: BTreeMap<String, ()> = BTreeMap::new();
        for (key, value) in entries {
            let Some(name) = key.kind.scalar_text() else {
                self.report(
                    key,
                    path,
                    format!("a key must be a plain name, found {}", key.kind.noun()),
                    "a name such as `web-1`".to_string(),
                );
                continue;
            };
            seen.insert(name.clone(), ());
            if let Some(prop) = properties.and_then(|p| p.get(&name)) {
                self.check(value, prop, &join(&name));
            } else if let Some(extra) = additional.filter(|a| a.is_object()) {
                self.check(value, extra, &join(&name));
            } else if properties.is_some() {
                let known: Vec<&str> = properties
                    .into_iter()
                    .flat_map(|p| p.keys())
                    .map(String::as_str)
                    .collect();
                let message = match super::closest(&name, &known) {
                    Some(near) => format!("unknown field `{name}` (did you mean `{near}`?)"),
                    None => format!("unknown field `{name}`"),
                };
                self.report(key, &join(&name), message, known.join(", "));
            }
        }
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !seen.contains_key(required) {
                let what = properties
                    .and_then(|p| p.get(required))
                    .map(|prop| self.describe(prop))
                    .unwrap_or_else(|| "a value".to_string());
                self.report(
                    node,
                    path,
                    format!("missing field `{required}`"),
                    format!("`{required}`: {what}"),
                );
            }
        }
    }

    fn check_range(&mut self, node: &Node, n: i128, schema: &Value, path: &str) {
        let (min, max) = bounds(schema);
        if n < min || n > max {
            let message = format!("{n} is out of range");
            self.report(node, path, message, format!("{min}..={max}"));
        }
    }

    /// What a schema accepts, in a few words.
    fn describe(&self, schema: &'s Value) -> String {
        let schema = self.resolve(schema);
        if let Some(values) = enum_values(schema) {
            return format!("one of {}", values.join(", "));
        }
        if let Some(branch) = schema
            .get("anyOf")
            .and_then(Value::as_array)
            .and_then(|b| b.first())
        {
            return self.describe(branch);
        }
        let types = types_of(schema);
        self.allowed(schema, &types)
    }

    /// What is allowed where a value of the wrong type was found.
    fn allowed(&self, schema: &Value, types: &[&str]) -> String {
        let mut text = expected(types);
        if types.contains(&"integer") {
            let (min, max) = bounds(schema);
            text.push_str(&format!(" ({min}..={max})"));
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            let keys: Vec<&str> = props.keys().map(String::as_str).collect();
            text.push_str(&format!(" with keys {}", keys.join(", ")));
        }
        text
    }
}

/// The names an enum schema allows: schemars writes `oneOf` of `const`s (one per documented
/// variant) or `enum`.
fn enum_values(schema: &Value) -> Option<Vec<String>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        );
    }
    let branches = schema.get("oneOf").and_then(Value::as_array)?;
    branches
        .iter()
        .map(|b| b.get("const").and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn types_of(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether a node of `kind` is read as a value of JSON type `ty` by the loader: serde-saphyr
/// reads any scalar into a string field, so `string` takes numbers and booleans too.
fn accepts(ty: &str, kind: &Kind) -> bool {
    matches!(
        (ty, kind),
        ("null", Kind::Null)
            | ("boolean", Kind::Bool(_))
            | ("integer", Kind::Int(_))
            | ("number", Kind::Int(_) | Kind::Float)
            | (
                "string",
                Kind::Str(_) | Kind::Int(_) | Kind::Float | Kind::Bool(_)
            )
            | ("array", Kind::Seq(_))
            | ("object", Kind::Map(_))
    )
}

fn expected(types: &[&str]) -> String {
    let words: Vec<&str> = types
        .iter()
        .filter(|t| **t != "null")
        .map(|t| match *t {
            "boolean" => "true or false",
            "integer" => "a whole number",
            "number" => "a number",
            "string" => "a string",
            "array" => "a list",
            "object" => "a mapping",
            other => other,
        })
        .collect();
    match words.as_slice() {
        [] => "nothing".to_string(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The range an integer schema allows: its `minimum`/`maximum`, else its format's.
fn bounds(schema: &Value) -> (i128, i128) {
    let format_max = match schema.get("format").and_then(Value::as_str) {
        Some("uint8") => i128::from(u8::MAX),
        Some("uint16") => i128::from(u16::MAX),
        Some("uint32") => i128::from(u32::MAX),
        Some("int32") => i128::from(i32::MAX),
        _ => i128::from(u64::MAX),
    };
    let min = schema
        .get("minimum")
        .and_then(Value::as_i64)
        .map_or(0, i128::from);
    let max = schema
        .get("maximum")
        .and_then(Value::as_u64)
        .map_or(format_max, i128::from);
    (min, max.min(format_max))
}

#[cfg(test)]
mod tests {
    use super::problems;

    fn messages(text: &str) -> Vec<String> {
        problems(text)
            .into_iter()
            .map(|d| format!("{}:{} {}: {}", d.line, d.column, d.path, d.message))
            .collect()
    }

    #[test]
    fn every_structural_problem_is_found_in_one_walk() {
        let text = "\
projekt: x
templates:
  t:
    vmid: 9000
    image: i
    bios: uefi
    cores: two
    disk: {size: 20G}
clones:
  web: a string
";
        assert_eq!(
            messages(text),
            vec![
                "1:1 projekt: unknown field `projekt` (did you mean `project`?)",
                "6:11 templates.t.bios: unknown value `uefi`",
                "7:12 templates.t.cores: must be a whole number, found a string",
                "10:8 clones.web: must be a mapping, found a string",
            ]
        );
    }

    #[test]
    fn missing_fields_and_ranges_are_structural_too() {
        let text = "templates:\n  t:\n    image: i\n    sockets: 99\n    disk: {size: 1G}\n";
        assert_eq!(
            messages(text),
            vec![
                "3:5 templates.t: missing field `vmid`",
                "4:14 templates.t.sockets: 99 is out of range",
            ]
        );
    }

    #[test]
    fn a_valid_shape_has_no_problem() {
        let ostype =
            "templates:\n  t:\n    vmid: 100\n    image: i\n    ostype: ~\n    disk: {size: 1G}\n";
        assert_eq!(messages(ostype), Vec::<String>::new());
        let text = "project: p\nclones:\n  web:\n    vmid: 100\n    template: t\n    memory: 2048\n    network: [{bridge: vmbr0}]\n";
        assert_eq!(messages(text), Vec::<String>::new());
    }
}
