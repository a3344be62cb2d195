//! The words of a plan's changes: each typed operation as the lines a plan shows (a name, an
//! old and a new value), and each reason for a replacement as a sentence.

use crate::plan::{Operation, PowerState, Reason};

/// One line of a change as a plan shows it: a name, and the old and new values (`None`: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownLine {
    /// The option or what the line is about (`memory`, `status`, `scsi0 size`, `clone of`).
    pub name: String,
    /// Before.
    pub old: Option<String>,
    /// After.
    pub new: Option<String>,
}

fn line(name: impl Into<String>, old: Option<String>, new: Option<String>) -> ShownLine {
    ShownLine {
        name: name.into(),
        old,
        new,
    }
}

fn power_word(state: PowerState) -> String {
    match state {
        PowerState::Running => "running",
        PowerState::Stopped => "stopped",
    }
    .to_string()
}

/// The lines an operation shows as in a plan (most show as one).
pub fn operation_lines(operation: &Operation) -> Vec<ShownLine> {
    let one = |name: &str, old: Option<String>, new: Option<String>| vec![line(name, old, new)];
    match operation {
        Operation::SetOption { name, old, new } => one(name, old.clone(), Some(new.clone())),
        Operation::DeleteOption { name, old } => one(name, Some(old.clone()), None),
        Operation::SetSecret { name } => one(name, None, Some("(sensitive)".into())),
        Operation::Power { old, new } => one("status", old.map(power_word), Some(power_word(*new))),
        Operation::Pool { old, new } => one("pool", old.clone(), Some(new.clone())),
        Operation::GrowDisk { slot, old, new } => {
            one(&format!("{slot} size"), old.clone(), Some(new.clone()))
        }
        Operation::WriteSnippet { volid } => one("snippet", None, Some(volid.clone())),
        Operation::AttachSeed { old, new, storage } => {
            let new = new.clone().unwrap_or_else(|| {
                format!(
                    "cloud-init seed ISO on {storage} (named by its content once the clone's MAC is known)"
                )
            });
            one("ide2", old.clone(), Some(new))
        }
        Operation::RestoreCloudInitDrive { old, new } => {
            one("ide2", Some(old.clone()), Some(new.clone()))
        }
        Operation::Reboot { options } => one(
            "reboot",
            None,
            Some(format!("to apply {}", options.join(", "))),
        ),
        Operation::Adopt { vmid, name } => {
            let named = name
                .as_deref()
                .map(|n| format!(" (`{n}`)"))
                .unwrap_or_default();
            one(
                "adopt",
                None,
                Some(format!("VM {vmid}{named} becomes managed by proxfleet")),
            )
        }
        Operation::Vmid { old, new } => one("vmid", Some(old.to_string()), Some(new.to_string())),
        Operation::FetchImage {
            volid,
            url,
            checksum,
        } => vec![
            line("volume", None, Some(volid.clone())),
            line("url", None, Some(url.clone())),
            line("checksum", None, Some(checksum.clone())),
        ],
        Operation::DeleteVolume { volid } => one("volume", Some(volid.clone()), None),
        Operation::CloneFrom {
            template,
            template_vmid,
            full,
        } => vec![
            line(
                "clone of",
                None,
                Some(format!("{template} (vmid {template_vmid})")),
            ),
            line("full", None, Some(if *full { "1" } else { "0" }.into())),
        ],
        Operation::Migrate { from, storage, to } => one(
            "migrate",
            None,
            Some(format!(
                "made on {from} beside the template (its disks are on node-local `{storage}`), then migrated to {to}"
            )),
        ),
        Operation::ConvertToTemplate => one("template", None, Some("1".into())),
        Operation::CheckHealth {
            address,
            timeout_secs,
        } => one(
            "health",
            None,
            Some(match address {
                Some(address) => format!(
                    "guest agent answers and reports {address} (within {})",
                    crate::spec::human_duration(std::time::Duration::from_secs(*timeout_secs))
                ),
                None => format!(
                    "guest agent answers (within {})",
                    crate::spec::human_duration(std::time::Duration::from_secs(*timeout_secs))
                ),
            }),
        ),
        data_disk => data_disk_lines(data_disk),
    }
}

/// The lines of a data disk's operations (`AddDisk`, `ReleaseDisk`, `ParkDisk`,
/// `ReattachDisk`, `DeleteParking`).
fn data_disk_lines(operation: &Operation) -> Vec<ShownLine> {
    let parking_vm = |parking: &Option<crate::plan::ParkingVm>| match parking {
        Some(p) => format!("parking VM {} on {}", p.vmid, p.node),
        None => "the parking VM this change makes".to_string(),
    };
    let shown = match operation {
        Operation::AddDisk {
            slot,
            storage,
            size,
            discard,
        } => line(
            slot.clone(),
            None,
            Some(format!(
                "new data disk, {size} on {storage}{}",
                if *discard { ", discard" } else { "" }
            )),
        ),
        Operation::ReleaseDisk { slot, volid } => line(
            slot.clone(),
            Some(volid.clone()),
            Some("no longer managed: left on the VM, never deleted".into()),
        ),
        Operation::ParkDisk { slot, volid } => line(
            format!("{slot} kept"),
            Some(volid.clone()),
            Some("parked on a new parking VM before the old VM is deleted".into()),
        ),
        Operation::ReattachDisk {
            slot,
            volid,
            parking,
        } => line(
            format!("{slot} kept"),
            Some(volid.clone()),
            Some(format!("reattached from {}", parking_vm(parking))),
        ),
        Operation::DeleteParking { parking, volumes } => line(
            "parking VM",
            Some(parking_vm(parking)),
            Some(if volumes.is_empty() {
                "deleted once empty".to_string()
            } else {
                format!("deleted with {}", volumes.join(", "))
            }),
        ),
        _ => return Vec::new(),
    };
    vec![shown]
}

/// Why a change is a replacement (or an adoption, or a reboot only), as the plan says it.
pub fn reason_text(reason: &Reason) -> String {
    match reason {
        Reason::VmidChanged { old, new } => format!("vmid changes from {old} to {new}"),
        Reason::NodeChanged { old, new } => format!("node changes from {old} to {new}"),
        Reason::BuildUnfinished => {
            "the build did not finish: the VM is not a template yet".to_string()
        }
        Reason::BuildChanged { old, new } => format!(
            "build settings changed (fingerprint {} → {new})",
            old.as_deref().unwrap_or("none")
        ),
        Reason::EditedOutside { edits } => {
            let edits: Vec<String> = edits
                .iter()
                .map(|edit| match &edit.seen {
                    // Keys are long and encoded: name the change, not the values.
                    Some(_) if edit.option == "sshkeys" => {
                        "the SSH keys differ from the build's".to_string()
                    }
                    Some(seen) => {
                        format!("{} is {seen}, the build set {}", edit.option, edit.built)
                    }
                    None => format!("{} is unset, the build set {}", edit.option, edit.built),
                })
                .collect();
            format!("changed outside proxfleet: {}", edits.join("; "))
        }
        Reason::CreateOnly {
            disk,
            property,
            old,
            new,
        } => format!(
            "{disk} {property} is create-only: {} → {}",
            old.as_deref().unwrap_or("unset"),
            new.as_deref().unwrap_or("unset")
        ),
        Reason::ConvertedToTemplate => "the VM was converted to a template".to_string(),
        Reason::BuildSuperseded { build, current } => {
            format!("build {build} is superseded by build {current} and no clone remains on it")
        }
        Reason::TemplateBuildChanged { old, new } => match old {
            Some(old) => format!(
                "its template has a new build: made again from build {new} (was build {old})"
            ),
            None => format!("its template has a new build: made again from build {new}"),
        },
        Reason::ReplaceRequested => "replacement requested with --replace".to_string(),
        Reason::ImageChecksumChanged => {
            "the image checksum changed: a new file replaces the earlier copy".to_string()
        }
        Reason::Adopted => "adopted: `adopt: true` in the spec".to_string(),
        Reason::PendingFromBefore => "changes pending from before wait for a reboot".to_string(),
    }
}
