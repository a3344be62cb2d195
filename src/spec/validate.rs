//! Raw → domain: every static check on a spec (ranges, names, references, addresses, keys,
//! uniqueness), all problems collected before returning so a user fixes them in one pass.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_saphyr::Spanned;

use super::error::Diagnostic;
use super::model::*;
use super::raw::*;
use super::{Loaded, Warning};

struct Ctx {
    diagnostics: Vec<Diagnostic>,
    warnings: Vec<Warning>,
}

impl Ctx {
    fn error_at<T>(
        &mut self,
        spanned: &Spanned<T>,
        path: &str,
        message: String,
        allowed: Option<&str>,
    ) {
        let loc = spanned.referenced;
        self.diagnostics.push(Diagnostic {
            path: path.to_string(),
            message,
            allowed: allowed.map(str::to_string),
            line: loc.line(),
            column: loc.column(),
            len: loc.span().len().max(1),
        });
    }
}

const DNS_LABEL_ALLOWED: &str =
    "letters, digits and `-` (not first or last), at most 63 characters; no `_`";
const STORAGE_ID_ALLOWED: &str = "a Proxmox storage id: `[a-z][a-z0-9-_.]*[a-z0-9]`";
const NODE_ALLOWED: &str = "a node name: letters, digits and `-`";
const TAG_ALLOWED: &str = "a Proxmox tag: `[a-z0-9_][a-z0-9_+.-]*`";

pub(super) fn validate(raw: RawSpec) -> Result<Loaded, Vec<Diagnostic>> {
    let mut ctx = Ctx {
        diagnostics: Vec::new(),
        warnings: Vec::new(),
    };
    let image_names: Vec<String> = raw.images.keys().map(|k| k.value.clone()).collect();
    let template_names: Vec<String> = raw.templates.keys().map(|k| k.value.clone()).collect();

    let images: Vec<Image> = raw
        .images
        .iter()
        .filter_map(|(name, image)| check_image(&mut ctx, name, image))
        .collect();

    let mut vmids: BTreeMap<u32, String> = BTreeMap::new();
    let mut vm_names: BTreeMap<String, String> = BTreeMap::new();
    let mut templates = Vec::new();
    for (name, template) in &raw.templates {
        let path = format!("templates.{}", name.value);
        check_vm_name(&mut ctx, name, &path, &mut vm_names);
        if let Some(t) = check_template(&mut ctx, name, template, &image_names) {
            claim_vmid(
                &mut ctx,
                &template.vmid,
                &format!("{path}.vmid"),
                &mut vmids,
            );
            templates.push(t);
        }
    }

    let mut ips: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut clones = Vec::new();
    for (name, clone) in &raw.clones {
        let path = format!("clones.{}", name.value);
        check_vm_name(&mut ctx, name, &path, &mut vm_names);
        let template = templates.iter().find(|t| t.name == clone.template.value);
        if template.is_none() {
            let allowed = if template_names.is_empty() {
                "a template declared under `templates` (there are none)".to_string()
            } else {
                format!("one of the templates: {}", template_names.join(", "))
            };
            let known: Vec<&str> = template_names.iter().map(String::as_str).collect();
            let message = match super::closest(&clone.template.value, &known) {
                Some(near) => format!(
                    "unknown template `{}` (did you mean `{near}`?)",
                    clone.template.value
                ),
                None => format!("unknown template `{}`", clone.template.value),
            };
            if template_names.contains(&clone.template.value) {
                // Declared but invalid: its own errors were reported already.
            } else {
                ctx.error_at(
                    &clone.template,
                    &format!("{path}.template"),
                    message,
                    Some(&allowed),
                );
            }
        }
        if let Some(c) = check_clone(&mut ctx, name, clone, template) {
            claim_vmid(&mut ctx, &clone.vmid, &format!("{path}.vmid"), &mut vmids);
            if let Some(CloudInit {
                ipv4: Some(Ipv4Config::Static { address, .. }),
                ..
            }) = &c.cloud_init
                && let Some(first) = ips.insert(address.addr(), c.name.clone())
                && let Some(ci) = clone.cloud_init.as_ref().and_then(|ci| ci.ipv4.as_ref())
            {
                ctx.error_at(
                    ci,
                    &format!("{path}.cloud_init.ipv4"),
                    format!(
                        "address {} is already used by clone `{first}`",
                        address.addr()
                    ),
                    Some("an address no other clone uses"),
                );
            }
            clones.push(c);
        }
    }

    let project = match &raw.project {
        None => "default".to_string(),
        Some(project) if is_dns_label(&project.value) => project.value.clone(),
        Some(project) => {
            ctx.error_at(
                project,
                "project",
                format!("`{}` is not a valid project name", project.value),
                Some(DNS_LABEL_ALLOWED),
            );
            String::new()
        }
    };
    if ctx.diagnostics.is_empty() {
        Ok(Loaded {
            spec: Spec {
                project,
                images,
                templates,
                clones,
            },
            warnings: ctx.warnings,
        })
    } else {
        ctx.diagnostics.sort_by_key(|d| (d.line, d.column));
        Err(ctx.diagnostics)
    }
}

fn claim_vmid(ctx: &mut Ctx, vmid: &Spanned<u64>, path: &str, seen: &mut BTreeMap<u32, String>) {
    let Ok(id) = u32::try_from(vmid.value) else {
        return;
    };
    if let Some(first) = seen.get(&id) {
        ctx.error_at(
            vmid,
            path,
            format!("vmid {id} is already used by {first}"),
            Some("a vmid no other template or clone uses"),
        );
    } else {
        seen.insert(id, path.trim_end_matches(".vmid").to_string());
    }
}

fn check_vm_name(
    ctx: &mut Ctx,
    name: &Spanned<String>,
    path: &str,
    seen: &mut BTreeMap<String, String>,
) {
    if !is_dns_label(&name.value) {
        ctx.error_at(
            name,
            path,
            format!("`{}` is not a valid VM name", name.value),
            Some(DNS_LABEL_ALLOWED),
        );
    }
    let lower = name.value.to_ascii_lowercase();
    if let Some(first) = seen.get(&lower) {
        ctx.error_at(
            name,
            path,
            format!("name `{}` is already used by {first}", name.value),
            Some("a VM name no other template or clone uses"),
        );
    } else {
        seen.insert(lower, path.to_string());
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn is_storage_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() >= 2
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(b))
        && (bytes[bytes.len() - 1].is_ascii_lowercase() || bytes[bytes.len() - 1].is_ascii_digit())
}

fn check_storage(ctx: &mut Ctx, storage: &Spanned<String>, path: &str) {
    if !is_storage_id(&storage.value) {
        ctx.error_at(
            storage,
            path,
            format!("`{}` is not a valid storage id", storage.value),
            Some(STORAGE_ID_ALLOWED),
        );
    }
}

fn check_node(ctx: &mut Ctx, node: &Spanned<String>, path: &str) {
    if !is_dns_label(&node.value) {
        ctx.error_at(
            node,
            path,
            format!("`{}` is not a valid node name", node.value),
            Some(NODE_ALLOWED),
        );
    }
}

fn check_image(ctx: &mut Ctx, name: &Spanned<String>, image: &RawImage) -> Option<Image> {
    let path = format!("images.{}", name.value);
    let n_before = ctx.diagnostics.len();
    let url = &image.url.value;
    let parsed_url = url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    if parsed_url.is_none() {
        ctx.error_at(
            &image.url,
            &format!("{path}.url"),
            format!("`{url}` is not an http or https URL"),
            Some("an http:// or https:// URL"),
        );
    }
    let checksum = parse_checksum(ctx, &image.checksum, &format!("{path}.checksum"));
    check_storage(ctx, &image.storage, &format!("{path}.storage"));
    check_node(ctx, &image.node, &format!("{path}.node"));
    let file_name = match &image.file_name {
        Some(file_name) => {
            check_import_file_name(ctx, file_name, &format!("{path}.file_name"), false);
            file_name.value.clone()
        }
        None => {
            let derived = parsed_url
                .as_ref()
                .and_then(|u| {
                    u.path_segments()
                        .and_then(|mut segs| segs.next_back().map(str::to_string))
                })
                .unwrap_or_default();
            let spanned = Spanned::new(derived.clone(), image.url.referenced, image.url.defined);
            if parsed_url.is_some() {
                check_import_file_name(ctx, &spanned, &format!("{path}.url"), true);
            }
            derived
        }
    };
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    Some(Image {
        name: name.value.clone(),
        url: url.clone(),
        checksum: checksum?,
        storage: image.storage.value.clone(),
        node: image.node.value.clone(),
        file_name,
    })
}

fn check_import_file_name(ctx: &mut Ctx, file_name: &Spanned<String>, path: &str, derived: bool) {
    let name = &file_name.value;
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name.as_str(), ""));
    let stem_ok = !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.+=_".contains(c));
    if stem_ok && matches!(ext, "qcow2" | "raw" | "vmdk") {
        return;
    }
    let what = if derived {
        format!(
            "the file name `{name}` taken from the url cannot be used for the `import` content type; set `file_name`"
        )
    } else {
        format!("file name `{name}` cannot be used for the `import` content type")
    };
    let allowed = "a name of `[a-zA-Z0-9-.+=_]` ending in `.qcow2`, `.raw` or `.vmdk` that matches the image format (Ubuntu's `.img` cloud images are qcow2: name them `.qcow2`)";
    ctx.error_at(file_name, path, what, Some(allowed));
}

fn parse_checksum(ctx: &mut Ctx, checksum: &Spanned<String>, path: &str) -> Option<Checksum> {
    let allowed = "`sha256:` followed by 64 hex digits, or `sha512:` followed by 128 hex digits";
    let Some((algo, hex)) = checksum.value.split_once(':') else {
        ctx.error_at(
            checksum,
            path,
            "checksum has no algorithm prefix".to_string(),
            Some(allowed),
        );
        return None;
    };
    let (algorithm, expected_len) = match algo {
        "sha256" => (ChecksumAlgorithm::Sha256, 64),
        "sha512" => (ChecksumAlgorithm::Sha512, 128),
        other => {
            ctx.error_at(
                checksum,
                path,
                format!("unsupported checksum algorithm `{other}`"),
                Some(allowed),
            );
            return None;
        }
    };
    if hex.len() != expected_len || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        ctx.error_at(
            checksum,
            path,
            format!(
                "{algo} checksum must be {expected_len} hex digits, found {} characters",
                hex.len()
            ),
            Some(allowed),
        );
        return None;
    }
    Some(Checksum {
        algorithm,
        hex: hex.to_ascii_lowercase(),
    })
}

fn check_vmid(ctx: &mut Ctx, vmid: &Spanned<u64>, path: &str) -> Option<VmId> {
    let id = VmId::new(vmid.value);
    if id.is_none() {
        ctx.error_at(
            vmid,
            path,
            format!("vmid {} is out of range", vmid.value),
            Some("100..=999999999"),
        );
    }
    id
}

/// Parse a size with an optional binary unit into bytes. A bare number means `bare_unit`.
fn parse_size(text: &str, bare_unit: u64) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" => bare_unit,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn parse_memory(ctx: &mut Ctx, memory: &Spanned<String>, path: &str) -> Option<u64> {
    let allowed =
        "a whole number of MiB (`2048`) or a size with a unit (`2GiB`, `2048MiB`), at least 16 MiB";
    match parse_size(&memory.value, 1 << 20) {
        Some(bytes) if bytes.is_multiple_of(1 << 20) && bytes >= 16 << 20 => Some(bytes >> 20),
        _ => {
            ctx.error_at(
                memory,
                path,
                format!("`{}` is not a valid memory size", memory.value),
                Some(allowed),
            );
            None
        }
    }
}

fn parse_ipv4(ctx: &mut Ctx, ci: &RawCloudInit, path: &str) -> Option<Option<Ipv4Config>> {
    let Some(ipv4) = &ci.ipv4 else {
        if let Some(gw) = &ci.gateway {
            ctx.error_at(
                gw,
                &format!("{path}.gateway"),
                "a gateway needs a static `ipv4`".to_string(),
                Some("`gateway` together with `ipv4: <address>/<prefix>`"),
            );
            return None;
        }
        return Some(None);
    };
    if ipv4.value == "dhcp" {
        if let Some(gw) = &ci.gateway {
            ctx.error_at(
                gw,
                &format!("{path}.gateway"),
                "a gateway cannot be combined with `ipv4: dhcp`".to_string(),
                Some("no gateway with dhcp"),
            );
            return None;
        }
        return Some(Some(Ipv4Config::Dhcp));
    }
    let address: Ipv4Net = match ipv4.value.parse() {
        Ok(net) => net,
        Err(_) => {
            ctx.error_at(
                ipv4,
                &format!("{path}.ipv4"),
                format!("`{}` is not an IPv4 address with prefix", ipv4.value),
                Some("`dhcp` or an address with prefix such as `192.0.2.10/24`"),
            );
            return None;
        }
    };
    if address.prefix_len() < 8 {
        ctx.error_at(
            ipv4,
            &format!("{path}.ipv4"),
            format!(
                "prefix /{} is shorter than Proxmox accepts",
                address.prefix_len()
            ),
            Some("a prefix of 8..=32"),
        );
        return None;
    }
    let gateway = match &ci.gateway {
        None => None,
        Some(gw) => match gw.value.parse::<Ipv4Addr>() {
            Ok(addr) if address.contains(&addr) && addr != address.addr() => Some(addr),
            Ok(addr) => {
                let message = if addr == address.addr() {
                    format!("gateway {addr} is the clone's own address")
                } else {
                    format!("gateway {addr} is outside the subnet {}", address.trunc())
                };
                ctx.error_at(
                    gw,
                    &format!("{path}.gateway"),
                    message,
                    Some(&format!("an address inside {}", address.trunc())),
                );
                return None;
            }
            Err(_) => {
                ctx.error_at(
                    gw,
                    &format!("{path}.gateway"),
                    format!("`{}` is not an IPv4 address", gw.value),
                    Some("an IPv4 address such as `192.0.2.1`"),
                );
                return None;
            }
        },
    };
    Some(Some(Ipv4Config::Static { address, gateway }))
}

fn check_ssh_key(ctx: &mut Ctx, key: &Spanned<String>, path: &str) {
    const TYPES: [&str; 8] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-dss",
    ];
    let mut parts = key.value.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let body_ok = body.len() >= 16
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        && body.starts_with("AAAA");
    if !TYPES.contains(&kind) || !body_ok || key.value.contains('\n') {
        ctx.error_at(
            key,
            path,
            "not an OpenSSH public key".to_string(),
            Some("one line `<type> <base64> [comment]`, type one of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com"),
        );
    }
}

fn check_cloud_init(ctx: &mut Ctx, ci: &RawCloudInit, path: &str) -> Option<CloudInit> {
    let n_before = ctx.diagnostics.len();
    for (key_idx, key) in ci.ssh_keys.iter().enumerate() {
        check_ssh_key(ctx, key, &format!("{path}.ssh_keys[{key_idx}]"));
    }
    let ipv4 = parse_ipv4(ctx, ci, path);
    if let Some(storage) = &ci.storage
        && !is_storage_id(storage)
    {
        ctx.diagnostics.push(Diagnostic {
            path: format!("{path}.storage"),
            message: format!("`{storage}` is not a valid storage id"),
            allowed: Some(STORAGE_ID_ALLOWED.to_string()),
            line: 0,
            column: 0,
            len: 1,
        });
    }
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    Some(CloudInit {
        storage: ci.storage.clone(),
        user: ci.user.clone(),
        ssh_keys: ci
            .ssh_keys
            .iter()
            .map(|k| k.value.trim().to_string())
            .collect(),
        ipv4: ipv4?,
        upgrade: ci.upgrade,
    })
}

fn check_tags(ctx: &mut Ctx, tags: &[Spanned<String>], path: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    for (tag_idx, tag) in tags.iter().enumerate() {
        let lower = tag.value.to_ascii_lowercase();
        let ok = lower
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && lower
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+.-".contains(c));
        if ok {
            out.insert(lower);
        } else {
            ctx.error_at(
                tag,
                &format!("{path}[{tag_idx}]"),
                format!("`{}` is not a valid tag", tag.value),
                Some(TAG_ALLOWED),
            );
        }
    }
    out.into_iter().collect()
}

fn check_template(
    ctx: &mut Ctx,
    name: &Spanned<String>,
    t: &RawTemplate,
    image_names: &[String],
) -> Option<Template> {
    let path = format!("templates.{}", name.value);
    let n_before = ctx.diagnostics.len();
    let vmid = check_vmid(ctx, &t.vmid, &format!("{path}.vmid"));
    check_node(ctx, &t.node, &format!("{path}.node"));
    if !image_names.contains(&t.image.value) {
        let known: Vec<&str> = image_names.iter().map(String::as_str).collect();
        let message = match super::closest(&t.image.value, &known) {
            Some(near) => format!("unknown image `{}` (did you mean `{near}`?)", t.image.value),
            None => format!("unknown image `{}`", t.image.value),
        };
        let allowed = if image_names.is_empty() {
            "an image declared under `images` (there are none)".to_string()
        } else {
            format!("one of the images: {}", image_names.join(", "))
        };
        ctx.error_at(&t.image, &format!("{path}.image"), message, Some(&allowed));
    }
    if let Some(machine) = &t.machine {
        let m = machine.value.as_str();
        let ok = m == "q35"
            || m == "pc"
            || m.starts_with("pc-q35-")
            || m.starts_with("pc-i440fx-")
            || m.starts_with("virt");
        if !ok {
            ctx.error_at(
                machine,
                &format!("{path}.machine"),
                format!("unknown machine type `{m}`"),
                Some("`q35`, `pc`, or a pinned version such as `pc-q35-9.2+pve1`"),
            );
        }
    }
    let memory_mib = parse_memory(ctx, &t.memory, &format!("{path}.memory"));
    check_storage(ctx, &t.disk.storage, &format!("{path}.disk.storage"));
    let disk_size = match parse_size(&t.disk.size.value, 0) {
        Some(bytes) if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) => Some(DiskSize(bytes)),
        _ => {
            ctx.error_at(
                &t.disk.size,
                &format!("{path}.disk.size"),
                format!("`{}` is not a valid disk size", t.disk.size.value),
                Some("a whole number with a unit: `20G`, `20GiB`, `512M`"),
            );
            None
        }
    };
    let mut networks = Vec::new();
    for (nic_idx, nic) in t.network.iter().enumerate() {
        let nic_path = format!("{path}.network[{nic_idx}]");
        let bridge_ok = !nic.bridge.value.is_empty()
            && nic
                .bridge
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !bridge_ok {
            ctx.error_at(
                &nic.bridge,
                &format!("{nic_path}.bridge"),
                format!("`{}` is not a valid bridge name", nic.bridge.value),
                Some("a bridge name such as `vmbr0`"),
            );
        }
        let vlan = match &nic.vlan {
            Some(tag) if (1..=4094).contains(&tag.value) => u16::try_from(tag.value).ok(),
            Some(tag) => {
                ctx.error_at(
                    tag,
                    &format!("{nic_path}.vlan"),
                    format!("VLAN tag {} is out of range", tag.value),
                    Some("1..=4094"),
                );
                None
            }
            None => None,
        };
        networks.push(Network {
            model: match nic.model.unwrap_or(RawNicModel::Virtio) {
                RawNicModel::Virtio => NicModel::Virtio,
                RawNicModel::E1000 => NicModel::E1000,
                RawNicModel::Vmxnet3 => NicModel::Vmxnet3,
                RawNicModel::Rtl8139 => NicModel::Rtl8139,
            },
            bridge: nic.bridge.value.clone(),
            vlan,
            firewall: nic.firewall,
        });
    }
    let bios = match t.bios.unwrap_or(RawBios::Seabios) {
        RawBios::Seabios => Bios::SeaBios,
        RawBios::Ovmf => Bios::Ovmf,
    };
    if bios == Bios::SeaBios && t.efi_disk.is_some() {
        // The EFI disk block has no span of its own: point at the template's vmid.
        let place = Spanned::new((), t.vmid.referenced, t.vmid.defined);
        ctx.error_at(
            &place,
            &format!("{path}.efi_disk"),
            "an EFI disk needs `bios: ovmf`".to_string(),
            Some("`efi_disk` only together with `bios: ovmf`"),
        );
    }
    let disk_storage = t.disk.storage.value.clone();
    let efi_disk = (bios == Bios::Ovmf).then(|| {
        let raw = t.efi_disk.as_ref();
        EfiDisk {
            storage: raw
                .and_then(|e| e.storage.clone())
                .unwrap_or_else(|| disk_storage.clone()),
            pre_enrolled_keys: raw.is_some_and(|e| e.pre_enrolled_keys),
        }
    });
    let tpm = t.tpm.as_ref().map(|tpm| Tpm {
        storage: tpm.storage.clone().unwrap_or_else(|| disk_storage.clone()),
        version: match tpm.version.unwrap_or(RawTpmVersion::V20) {
            RawTpmVersion::V12 => TpmVersion::V12,
            RawTpmVersion::V20 => TpmVersion::V20,
        },
    });
    let cloud_init = t
        .cloud_init
        .as_ref()
        .and_then(|ci| check_cloud_init(ctx, ci, &format!("{path}.cloud_init")));
    let tags = check_tags(ctx, &t.tags, &format!("{path}.tags"));
    let bus = match t.disk.bus.unwrap_or(RawBus::Scsi) {
        RawBus::Scsi => DiskBus::Scsi,
        RawBus::Virtio => DiskBus::Virtio,
        RawBus::Sata => DiskBus::Sata,
    };
    if bus == DiskBus::Virtio && t.disk.ssd {
        ctx.error_at(
            &t.disk.size,
            &format!("{path}.disk.ssd"),
            "`ssd` is not supported on the virtio bus".to_string(),
            Some("`ssd` with bus `scsi` or `sata`"),
        );
    }
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    Some(Template {
        name: name.value.clone(),
        vmid: vmid?,
        node: t.node.value.clone(),
        image: t.image.value.clone(),
        machine: t.machine.as_ref().map(|m| m.value.clone()),
        bios,
        efi_disk,
        tpm,
        cpu: t.cpu.clone(),
        cores: t.cores,
        sockets: t.sockets,
        memory_mib: memory_mib?,
        disk: BootDisk {
            bus,
            storage: disk_storage,
            size: disk_size?,
            discard: t.disk.discard,
            ssd: t.disk.ssd,
        },
        networks,
        agent: t.agent,
        serial_console: t.serial_console,
        ostype: t.ostype.clone().unwrap_or_else(|| "l26".to_string()),
        cloud_init,
        tags,
        description: t.description.clone(),
    })
}

fn check_clone(
    ctx: &mut Ctx,
    name: &Spanned<String>,
    c: &RawClone,
    template: Option<&Template>,
) -> Option<CloneVm> {
    let path = format!("clones.{}", name.value);
    let n_before = ctx.diagnostics.len();
    let vmid = check_vmid(ctx, &c.vmid, &format!("{path}.vmid"));
    if let Some(node) = &c.node {
        check_node(ctx, node, &format!("{path}.node"));
    }
    let memory_mib = c
        .memory
        .as_ref()
        .and_then(|m| parse_memory(ctx, m, &format!("{path}.memory")));
    let cloud_init = c
        .cloud_init
        .as_ref()
        .and_then(|ci| check_cloud_init(ctx, ci, &format!("{path}.cloud_init")));
    let tags = c
        .tags
        .as_ref()
        .map(|tags| check_tags(ctx, tags, &format!("{path}.tags")));
    if let (Some(node), Some(template), Some(false)) = (&c.node, template, c.full)
        && node.value != template.node
    {
        ctx.warnings.push(Warning {
                path: format!("{path}.node"),
                message: format!(
                    "a linked clone on node `{}` needs the template's disks on storage shared with node `{}`",
                    node.value, template.node
                ),
            });
    }
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    let template = template?;
    Some(CloneVm {
        name: name.value.clone(),
        vmid: vmid?,
        template: template.name.clone(),
        node: c
            .node
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| template.node.clone()),
        full: c.full.unwrap_or(true),
        cores: c.cores,
        memory_mib,
        cloud_init,
        tags,
        start: c.start.unwrap_or(true),
        onboot: c.onboot,
        description: c.description.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        let cases = [
            ("2GiB", 1 << 20, Some(2u64 << 30)),
            ("2048", 1 << 20, Some(2048u64 << 20)),
            ("2048MiB", 1 << 20, Some(2048u64 << 20)),
            ("20G", 0, Some(20u64 << 30)),
            ("1T", 0, Some(1u64 << 40)),
            ("2 GB", 1 << 20, None),
            ("-1", 1 << 20, None),
            ("", 1 << 20, None),
        ];
        for (text, bare, expect) in cases {
            assert_eq!(parse_size(text, bare), expect, "{text}");
        }
    }
}
