//! Putting files on a storage (`API2/Storage/Status.pm` in pve-manager): `download-url` (a
//! loopback URL is really fetched, any other simulated) and `upload`, with pve-storage's file
//! name rules and checksum checks.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::super::request::ApiCall;
use super::super::tasks::start_task;
use super::super::{ApiError, Reply, data};
use crate::sim::state::Volume;

/// File name rules of upload and download-url (pve-storage `API2/Storage/Status.pm`).
pub(crate) fn check_file_name(content: &str, filename: &str) -> Result<(), ApiError> {
    let ok_chars = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.+=_".contains(c))
    };
    let ok = match content {
        "iso" => filename.ends_with(".iso") || filename.ends_with(".img"),
        "vztmpl" => [".tar", ".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2"]
            .iter()
            .any(|e| filename.ends_with(e)),
        "import" => [".ova", ".qcow2", ".raw", ".vmdk"]
            .iter()
            .any(|e| filename.strip_suffix(e).is_some_and(ok_chars)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::param(
            "filename",
            format!("invalid filename or wrong extension for content type '{content}'"),
        ))
    }
}

pub(crate) fn is_loopback(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|host| {
            host == "localhost"
                || host == "[::1]"
                || host == "::1"
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}

pub(crate) fn digest_hex(algorithm: &str, bytes: &[u8]) -> Option<String> {
    use sha2::Digest as _;
    Some(match algorithm {
        "sha256" => hex::encode(sha2::Sha256::digest(bytes)),
        "sha512" => hex::encode(sha2::Sha512::digest(bytes)),
        "sha1" => hex::encode(sha1::Sha1::digest(bytes)),
        "sha224" => hex::encode(sha2::Sha224::digest(bytes)),
        "sha384" => hex::encode(sha2::Sha384::digest(bytes)),
        _ => return None,
    })
}

/// Virtual size of a qcow2 image (header bytes 24..32, big-endian), else the file size.
pub(crate) fn virtual_size(bytes: &[u8]) -> u64 {
    if bytes.len() >= 32 && &bytes[..4] == b"QFI\xfb" {
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[24..32]);
        return u64::from_be_bytes(size);
    }
    bytes.len() as u64
}

pub(crate) fn download_url(call: &ApiCall) -> Reply {
    let node = call.node();
    let storage = call.req("storage").to_string();
    let content = call.req("content").to_string();
    let filename = call.req("filename").to_string();
    let url = call.req("url").to_string();
    let checksum = call.get("checksum").map(str::to_ascii_lowercase);
    let algorithm = call.get("checksum-algorithm").map(str::to_string);
    match (&checksum, &algorithm) {
        (Some(_), None) => {
            return Err(ApiError::param(
                "checksum-algorithm",
                "'checksum-algorithm' is required when 'checksum' is set",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::param(
                "checksum",
                "'checksum' is required when 'checksum-algorithm' is set",
            ));
        }
        _ => {}
    }
    check_file_name(&content, &filename)?;
    let shared = Arc::clone(&call.shared);
    call.shared.mutate(|c| {
        let def = c.storage(&storage).ok_or_else(|| ApiError::fail(format!("storage '{storage}' does not exist")))?;
        if !def.has_content(&content) {
            return Err(ApiError::fail(format!("storage '{storage}' is not configured for content-type '{content}'")));
        }
        let compression = call.get("compression").map(str::to_string);
        let volid = format!("{storage}:{content}/{filename}");
        let vol_node = c.volume_node(&storage, &node);
        let task_node = node.clone();
        let upid = start_task(call, c, &node, "download", &storage, async move {
            if compression.is_some() && content != "iso" {
                return Err("decompression is only supported for content type 'iso'".to_string());
            }
            let existing = shared.read(|c| c.find_volume(&task_node, &volid).map(|v| v.checksums.clone()));
            if let Some(known) = existing {
                return match (&checksum, &algorithm) {
                    (Some(want), Some(algo)) if known.get(algo) == Some(want) => Ok(vec![format!("file '{filename}' already exists and its checksum matches, skipping download")]),
                    (Some(_), Some(_)) => Err(format!("checksum mismatch: file '{filename}' exists with different content")),
                    _ => Err(format!("refusing to override existing file '{filename}'")),
                };
            }
            let mut log = vec![format!("downloading {url} to {filename}")];
            let (size, vsize, checksums) = if is_loopback(&url) {
                let body = reqwest::get(&url).await.and_then(reqwest::Response::error_for_status).map_err(|e| format!("download failed: {e}"))?;
                let bytes = body.bytes().await.map_err(|e| format!("download failed: {e}"))?;
                let mut sums = BTreeMap::new();
                for algo in ["sha256", "sha512"] {
                    sums.insert(algo.to_string(), digest_hex(algo, &bytes).unwrap_or_default());
                }
                if let (Some(want), Some(algo)) = (&checksum, &algorithm) {
                    let got = digest_hex(algo, &bytes).unwrap_or_default();
                    if &got != want {
                        return Err(format!("checksum mismatch: got '{got}' != expected '{want}'"));
                    }
                    sums.insert(algo.clone(), got);
                }
                (bytes.len() as u64, virtual_size(&bytes), sums)
            } else {
                // No internet here: the download is simulated. The file is taken to be what its
                // checksum says; a cloud image of ~400 MiB with a 2 GiB virtual disk.
                let mut sums = BTreeMap::new();
                if let (Some(want), Some(algo)) = (&checksum, &algorithm) {
                    sums.insert(algo.clone(), want.clone());
                }
                log.push("simulated download (no network in the simulator)".into());
                (400 << 20, 2 << 30, sums)
            };
            if let (Some(_), Some(algo)) = (&checksum, &algorithm) {
                log.push(format!("calculating checksum... OK, {algo} checksum verified"));
            }
            shared.mutate(|c| {
                c.volumes.push(Volume::file(vol_node, &volid, &content, size, vsize, checksums))
            });
            log.push(format!("download of '{url}' to '{volid}' finished"));
            Ok(log)
        });
        data(json!(upid))
    })
}

pub(crate) fn upload(call: &ApiCall) -> Reply {
    let node = call.node();
    let storage = call.req("storage").to_string();
    let content = call.req("content").to_string();
    let filename = call.req("filename").to_string();
    let checksum = call.get("checksum").map(str::to_ascii_lowercase);
    let algorithm = call.get("checksum-algorithm").map(str::to_string);
    if checksum.is_some() != algorithm.is_some() {
        return Err(ApiError::param(
            if checksum.is_some() {
                "checksum-algorithm"
            } else {
                "checksum"
            },
            "'checksum' and 'checksum-algorithm' go together",
        ));
    }
    check_file_name(&content, &filename)?;
    let Some(bytes) = call.upload.clone() else {
        return Err(ApiError::param(
            "filename",
            "property is missing and it is not optional",
        ));
    };
    let shared = Arc::clone(&call.shared);
    call.shared.mutate(|c| {
        let def = c
            .storage(&storage)
            .ok_or_else(|| ApiError::fail(format!("storage '{storage}' does not exist")))?;
        if !def.has_content(&content) {
            return Err(ApiError::fail(format!(
                "storage '{storage}' is not configured for content-type '{content}'"
            )));
        }
        if !def.file_based() {
            return Err(ApiError::fail(format!(
                "storage '{storage}' is not a file based storage"
            )));
        }
        let volid = format!("{storage}:{content}/{filename}");
        let vol_node = c.volume_node(&storage, &node);
        let lookup_node = vol_node_or(&vol_node, &node);
        let upid = start_task(call, c, &node, "imgcopy", "", async move {
            let mut log = vec![format!(
                "starting file import from: /var/tmp/pveupload-{}",
                hex::encode(&digest_hex("sha256", &bytes).unwrap_or_default()[..8])
            )];
            if let (Some(want), Some(algo)) = (&checksum, &algorithm) {
                let got = digest_hex(algo, &bytes).unwrap_or_default();
                if &got != want {
                    return Err(format!(
                        "checksum mismatch: got '{got}' != expected '{want}'"
                    ));
                }
                log.push(format!(
                    "calculating checksum... OK, {algo} checksum verified"
                ));
            }
            let qcow2 = bytes.len() >= 4 && &bytes[..4] == b"QFI\xfb";
            if content == "import" && filename.ends_with(".qcow2") != qcow2 {
                return Err(format!(
                    "detected format of '{filename}' does not match its extension"
                ));
            }
            let mut checksums = BTreeMap::new();
            for algo in ["sha256", "sha512"] {
                checksums.insert(
                    algo.to_string(),
                    digest_hex(algo, &bytes).unwrap_or_default(),
                );
            }
            shared.mutate(|c| {
                // An existing file of that name is silently replaced, as pve-storage does.
                c.remove_volume(&lookup_node, &volid);
                c.volumes.push(Volume::file(
                    vol_node.clone(),
                    &volid,
                    &content,
                    bytes.len() as u64,
                    virtual_size(&bytes),
                    checksums,
                ));
            });
            log.push(format!("target file: {volid}"));
            Ok(log)
        });
        data(json!(upid))
    })
}

/// The node a volume lookup goes through (shared storages are stored under the empty node).
pub(crate) fn vol_node_or(vol_node: &str, node: &str) -> String {
    if vol_node.is_empty() {
        node.to_string()
    } else {
        vol_node.to_string()
    }
}
