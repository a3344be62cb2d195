//! Ownership: how proxfleet marks what it creates and recognises it later. The cluster itself is
//! the state (no local state file): a VM carries the `proxfleet` tag and one marker line in its
//! description. (Image files carry no marker: Proxmox keeps notes only on backups; they are
//! named by their content instead, see `spec::Image::stored_name`.)
//!
//! A marker names the project, the resource key and the vmid the resource was created with, so
//! a VM cloned by hand from a proxfleet template (which copies the description) is not mistaken
//! for the template itself.

use std::fmt;
use std::str::FromStr;

/// The tag every VM proxfleet creates carries (a fast filter; the marker decides).
pub const TAG: &str = "proxfleet";

const MARKER_PREFIX: &str = "managed-by: proxfleet";

/// What kind of resource a key names.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// A cloud image volume.
    Image,
    /// A template VM.
    Template,
    /// A clone VM.
    Clone,
}

impl ResourceKind {
    /// The key prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Image => "image",
            ResourceKind::Template => "template",
            ResourceKind::Clone => "clone",
        }
    }
}

/// A resource's address, `image.NAME`, `template.NAME` or `clone.NAME`.
///
/// ```
/// use proxfleet::ownership::{ResourceKey, ResourceKind};
/// let key: ResourceKey = "clone.web-1".parse().unwrap();
/// assert_eq!(key, ResourceKey::new(ResourceKind::Clone, "web-1"));
/// assert_eq!(key.to_string(), "clone.web-1");
/// assert!("vm.web-1".parse::<ResourceKey>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    /// Kind.
    pub kind: ResourceKind,
    /// Name in the spec.
    pub name: String,
}

impl ResourceKey {
    /// A key of the given kind.
    pub fn new(kind: ResourceKind, name: impl Into<String>) -> ResourceKey {
        ResourceKey {
            kind,
            name: name.into(),
        }
    }
}

impl ResourceKey {
    /// The key of this template's `number`th build (see `spec::Template::builds`): the
    /// template's own key for the first, `template.NAME#N` for later ones.
    ///
    /// ```
    /// use proxfleet::ownership::ResourceKey;
    /// let base: ResourceKey = "template.base".parse().unwrap();
    /// assert_eq!(base.build(1), base);
    /// assert_eq!(base.build(3).to_string(), "template.base#3");
    /// assert_eq!(base.build(3).template_build(), Some((base.clone(), 3)));
    /// assert_eq!(base.template_build(), Some((base, 1)));
    /// ```
    pub fn build(&self, number: u32) -> ResourceKey {
        if number <= 1 {
            return self.clone();
        }
        ResourceKey::new(self.kind, format!("{}#{number}", self.name))
    }

    /// The key the spec names: a template's for any of its builds, else the key itself.
    ///
    /// ```
    /// use proxfleet::ownership::ResourceKey;
    /// let build: ResourceKey = "template.base#3".parse().unwrap();
    /// assert_eq!(build.spec_key().to_string(), "template.base");
    /// let clone: ResourceKey = "clone.web-1".parse().unwrap();
    /// assert_eq!(clone.spec_key(), clone);
    /// ```
    pub fn spec_key(&self) -> ResourceKey {
        self.template_build()
            .map_or_else(|| self.clone(), |(template, _)| template)
    }

    /// For a template's key: the template's own key and the build it names (1 for the plain
    /// key); `None` for other kinds.
    pub fn template_build(&self) -> Option<(ResourceKey, u32)> {
        if self.kind != ResourceKind::Template {
            return None;
        }
        match self.name.rsplit_once('#') {
            Some((name, number)) => {
                let number: u32 = number.parse().ok().filter(|n| *n > 1)?;
                Some((ResourceKey::new(self.kind, name), number))
            }
            None => Some((self.clone(), 1)),
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.name)
    }
}

/// Why a string is not a resource key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a resource address; expected image.NAME, template.NAME or clone.NAME")]
pub struct BadResourceKey(pub String);

impl FromStr for ResourceKey {
    type Err = BadResourceKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, name) = text
            .split_once('.')
            .ok_or_else(|| BadResourceKey(text.to_string()))?;
        let kind = match kind {
            "image" => ResourceKind::Image,
            "template" => ResourceKind::Template,
            "clone" => ResourceKind::Clone,
            _ => return Err(BadResourceKey(text.to_string())),
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(BadResourceKey(text.to_string()));
        }
        Ok(ResourceKey::new(kind, name))
    }
}

/// The parsed ownership marker of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Project.
    pub project: String,
    /// Resource key.
    pub key: ResourceKey,
    /// The vmid the VM was created with (VMs only).
    pub vmid: Option<u32>,
    /// Build fingerprint (templates only).
    pub build: Option<String>,
    /// The template build a clone was made from (`template.NAME` for a template's first build,
    /// `template.NAME#N` for its Nth); `None` on clones made before builds were recorded.
    pub from: Option<ResourceKey>,
}

impl Marker {
    /// The marker line.
    pub fn to_line(&self) -> String {
        let mut line = format!("{MARKER_PREFIX} project={} key={}", self.project, self.key);
        if let Some(vmid) = self.vmid {
            line.push_str(&format!(" vmid={vmid}"));
        }
        if let Some(build) = &self.build {
            line.push_str(&format!(" build={build}"));
        }
        if let Some(from) = &self.from {
            line.push_str(&format!(" from={from}"));
        }
        line
    }

    /// A description (or volume notes) holding the user's text, then the marker line.
    pub fn to_description(&self, user_text: Option<&str>) -> String {
        match user_text.map(str::trim_end).filter(|t| !t.is_empty()) {
            Some(text) => format!("{text}\n\n{}", self.to_line()),
            None => self.to_line(),
        }
    }

    /// Find and parse the marker line in a description or notes text.
    ///
    /// ```
    /// use proxfleet::ownership::Marker;
    /// let notes = "Web tier\n\nmanaged-by: proxfleet project=default key=clone.web-1 vmid=201";
    /// let marker = Marker::find(notes).unwrap();
    /// assert_eq!((marker.project.as_str(), marker.vmid), ("default", Some(201)));
    /// assert!(Marker::find("created by hand").is_none());
    /// ```
    pub fn find(text: &str) -> Option<Marker> {
        let line = text
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with(MARKER_PREFIX))?;
        let mut project = None;
        let mut key = None;
        let mut vmid = None;
        let mut build = None;
        let mut from = None;
        for field in line.trim()[MARKER_PREFIX.len()..].split_whitespace() {
            let Some((name, value)) = field.split_once('=') else {
                continue;
            };
            match name {
                "project" => project = Some(value.to_string()),
                "key" => key = value.parse().ok(),
                "vmid" => vmid = value.parse().ok(),
                "build" => build = Some(value.to_string()),
                "from" => from = value.parse().ok(),
                _ => {}
            }
        }
        Some(Marker {
            project: project?,
            key: key?,
            vmid,
            build,
            from,
        })
    }
}

/// The operator's part of a description: every line but proxfleet's marker line, without
/// the blank lines that separated them.
pub fn operator_notes(description: &str) -> String {
    description
        .lines()
        .filter(|line| !line.trim_start().starts_with(MARKER_PREFIX))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// The description to write on a VM whose description is `observed`, when the spec wants
/// `desired` (the spec's text, if it declares one, and the marker line); `None` when nothing
/// needs writing. The marker line is proxfleet's. When the spec declares a description, the
/// whole text is the spec's; when it does not, every other line is the operator's (Notes
/// edited in the web UI): it is not drift, and it is kept when the marker is written.
pub fn description_to_write(observed: Option<&str>, desired: &str) -> Option<String> {
    let Some(wanted) = Marker::find(desired) else {
        return (observed.map(str::trim_end) != Some(desired.trim_end()))
            .then(|| desired.to_string());
    };
    if !operator_notes(desired).is_empty() {
        return (observed.map(str::trim_end) != Some(desired.trim_end()))
            .then(|| desired.to_string());
    }
    let disks = managed_disks(desired);
    if observed.and_then(Marker::find).as_ref() == Some(&wanted)
        && observed.map(managed_disks).unwrap_or_default() == disks
    {
        return None;
    }
    let notes = observed.map(operator_notes).unwrap_or_default();
    Some(with_managed_disks(
        wanted.to_description(Some(&notes)),
        &disks,
    ))
}

/// The field of a clone's marker line that names the data disks proxfleet manages on it
/// (`disks=scsi1,scsi2`): a disk the spec drops is told apart from one the operator added, and
/// the plan says once that it is no longer managed (the marker is written without it). Read
/// and written only here; `Marker::find` skips it.
const DISKS_FIELD: &str = "disks=";

/// `description` (ending with its marker line, as `Marker::to_description` writes it) with the
/// managed data disks' slots on the marker line; unchanged when there are none.
pub fn with_managed_disks(description: String, slots: &[String]) -> String {
    if slots.is_empty() {
        description
    } else {
        format!("{description} {DISKS_FIELD}{}", slots.join(","))
    }
}

/// The data disk slots the marker line of `text` names as managed (empty without a marker or
/// the field).
pub fn managed_disks(text: &str) -> Vec<String> {
    text.lines()
        .rev()
        .find(|l| l.trim_start().starts_with(MARKER_PREFIX))
        .and_then(|line| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix(DISKS_FIELD))
        })
        .map(|slots| {
            slots
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The marker of a parking VM: a small stopped VM without disks of its own that holds a
/// clone's kept data disks while the clone is replaced at the same vmid (Proxmox reassigns a
/// disk only between two existing VMs). Its line, `managed-by: proxfleet project=P
/// parking=clone.NAME vmid=N`, carries no `key`, so `Marker::find` does not read it as a claim
/// on the clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parking {
    /// Project.
    pub project: String,
    /// The clone it holds disks for.
    pub parks_for: ResourceKey,
    /// Its own vmid.
    pub vmid: u32,
}

impl Parking {
    /// The marker line (the parking VM's whole description).
    pub fn to_line(&self) -> String {
        format!(
            "{MARKER_PREFIX} project={} parking={} vmid={}",
            self.project, self.parks_for, self.vmid
        )
    }

    /// Find and parse a parking marker in a description.
    ///
    /// ```
    /// use proxfleet::ownership::{Marker, Parking};
    /// let text = "managed-by: proxfleet project=default parking=clone.db-1 vmid=105";
    /// let parking = Parking::find(text).unwrap();
    /// assert_eq!((parking.parks_for.to_string(), parking.vmid), ("clone.db-1".into(), 105));
    /// assert!(Marker::find(text).is_none());
    /// ```
    pub fn find(text: &str) -> Option<Parking> {
        let line = text
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with(MARKER_PREFIX))?;
        let mut project = None;
        let mut parks_for = None;
        let mut vmid = None;
        for field in line.trim()[MARKER_PREFIX.len()..].split_whitespace() {
            match field.split_once('=') {
                Some(("project", value)) => project = Some(value.to_string()),
                Some(("parking", value)) => parks_for = value.parse().ok(),
                Some(("vmid", value)) => vmid = value.parse().ok(),
                _ => {}
            }
        }
        Some(Parking {
            project: project?,
            parks_for: parks_for?,
            vmid: vmid?,
        })
    }
}

impl serde::Serialize for ResourceKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

// In JSON a key is its text, so its schema is a string of the form `FromStr` accepts.
impl schemars::JsonSchema for ResourceKey {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ResourceKey".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A resource's address: image.NAME, template.NAME or clone.NAME.",
            "type": "string",
            "pattern": "^(image|template|clone)\\.\\S+$"
        })
    }
}

impl<'de> serde::Deserialize<'de> for ResourceKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_through_a_description() {
        let marker = Marker {
            project: "default".into(),
            key: "template.base".parse().unwrap(),
            vmid: Some(9000),
            build: Some("abc123".into()),
            from: None,
        };
        let text = marker.to_description(Some("Base image for web servers\n"));
        assert_eq!(
            text,
            "Base image for web servers\n\nmanaged-by: proxfleet project=default key=template.base vmid=9000 build=abc123"
        );
        assert_eq!(Marker::find(&text), Some(marker));
    }

    #[test]
    fn a_clone_s_marker_names_the_template_build_it_was_made_from() {
        let marker = Marker {
            project: "default".into(),
            key: ResourceKey::new(ResourceKind::Clone, "web-1"),
            vmid: Some(201),
            build: None,
            from: Some("template.base#2".parse().unwrap()),
        };
        let line = marker.to_line();
        assert!(line.ends_with(" from=template.base#2"), "{line}");
        assert_eq!(Marker::find(&line), Some(marker));
    }

    #[test]
    fn the_operator_s_notes_are_kept_and_never_drift_unless_the_spec_declares_a_description() {
        let marker = Marker {
            project: "default".into(),
            key: ResourceKey::new(ResourceKind::Clone, "web-1"),
            vmid: Some(201),
            build: None,
            from: None,
        };
        let line = marker.to_line();
        let noted = format!("Owner: ops team\nticket 4711\n\n{line}");
        // The spec declares none: the notes around a right marker are no change.
        assert_eq!(description_to_write(Some(&noted), &line), None);
        assert_eq!(
            description_to_write(Some(&format!("{line}\n")), &line),
            None
        );
        // A marker to write keeps them.
        let stale = "Owner: ops team\nticket 4711\n\nmanaged-by: proxfleet project=default key=clone.web-1 vmid=999";
        assert_eq!(
            description_to_write(Some(stale), &line),
            Some(noted.clone())
        );
        assert_eq!(
            description_to_write(Some("made by hand"), &line),
            Some(format!("made by hand\n\n{line}"))
        );
        assert_eq!(description_to_write(None, &line), Some(line.clone()));
        // The spec declares one: the whole text is the spec's.
        let declared = marker.to_description(Some("Web tier"));
        assert_eq!(description_to_write(Some(&declared), &declared), None);
        assert_eq!(
            description_to_write(Some(&noted), &declared),
            Some(declared.clone())
        );
        assert_eq!(operator_notes(&noted), "Owner: ops team\nticket 4711");
    }

    #[test]
    fn text_without_marker_is_not_owned() {
        assert_eq!(Marker::find("my own notes\nmanaged-by: someone else"), None);
        assert_eq!(
            Marker::find("managed-by: proxfleet key=clone.x"),
            None,
            "a marker needs its project"
        );
    }

    #[test]
    fn keys_parse_and_print() {
        for text in ["image.debian-12", "template.base", "clone.web-1"] {
            assert_eq!(text.parse::<ResourceKey>().unwrap().to_string(), text);
        }
        for bad in ["vm.x", "clone.", "web-1", "clone.a b"] {
            assert!(bad.parse::<ResourceKey>().is_err(), "{bad}");
        }
    }
}
