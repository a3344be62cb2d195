//! Images: the URL, the checksum, where the file goes (storage, nodes) and the name it gets in
//! the storage, which must suit Proxmox's `import` content type.

use serde_saphyr::Spanned;

use super::super::model::*;
use super::super::raw::*;
use super::Validator;
use super::scalars::{check_node, check_storage};

pub(super) fn check_image(
    ctx: &mut Validator,
    name: &Spanned<String>,
    image: &RawImage,
) -> Option<Image> {
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
    if let Some(storage) = &image.storage {
        check_storage(ctx, storage, &format!("{path}.storage"));
    }
    if let Some(node) = &image.node {
        check_node(ctx, node, &format!("{path}.node"));
        if !image.nodes.is_empty() {
            ctx.error_at(
                node,
                &format!("{path}.node"),
                "give `node` or `nodes`, not both".to_string(),
                Some("`node: pve1`, or `nodes: [pve1, pve2]`"),
            );
        }
    }
    for (node_idx, node) in image.nodes.iter().enumerate() {
        check_node(ctx, node, &format!("{path}.nodes[{node_idx}]"));
        if image.nodes[..node_idx]
            .iter()
            .any(|earlier| earlier.value == node.value)
        {
            ctx.error_at(
                node,
                &format!("{path}.nodes[{node_idx}]"),
                format!("node `{}` is listed twice", node.value),
                Some("each node once"),
            );
        }
    }
    let defaults_images = ctx.defaults.images.clone();
    let defaults_node = ctx.defaults.node.clone();
    let storage = ctx.pick(
        image.storage.as_ref(),
        defaults_images.as_ref(),
        name,
        &format!("{path}.storage"),
        "storage",
        "defaults.storage.images",
    );
    let nodes: Option<Vec<String>> = if image.nodes.is_empty() {
        ctx.pick(
            image.node.as_ref(),
            defaults_node.as_ref(),
            name,
            &format!("{path}.node"),
            "node",
            "defaults.node",
        )
        .map(|n| vec![n])
    } else {
        Some(image.nodes.iter().map(|n| n.value.clone()).collect())
    };
    let mode = match image.mode {
        Some(RawImageMode::Upload) => ImageMode::Upload,
        _ => ImageMode::Download,
    };
    let (file_name, compression) = import_file_name(ctx, image, parsed_url.as_ref(), mode, &path);
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    Some(Image {
        name: name.value.clone(),
        url: url.clone(),
        checksum: checksum?,
        storage: storage?,
        nodes: nodes?,
        mode,
        file_name,
        compression,
    })
}

/// The name an image gets in the storage, and how the file at its URL is compressed.
///
/// Proxmox takes `.qcow2`, `.raw` and `.vmdk` as `import` content and decompresses only ISO
/// images it downloads, so a compressed image, or one named `.img`, reaches a node only through
/// proxfleet (`mode: upload`): it drops the compression suffix and names an `.img` `.qcow2`
/// (what Ubuntu's are; the fetched bytes are checked), unless `file_name` names it.
pub(super) fn import_file_name(
    ctx: &mut Validator,
    image: &RawImage,
    url: Option<&url::Url>,
    mode: ImageMode,
    path: &str,
) -> (String, Option<Compression>) {
    let published = url
        .and_then(|u| u.path_segments().and_then(|mut segs| segs.next_back()))
        .unwrap_or_default()
        .to_string();
    let (inner, compression) = Compression::split(&published);
    let (inner, compression) = (inner.to_string(), compression);
    let url_path = format!("{path}.url");
    if url.is_some() && mode == ImageMode::Download {
        if let Some(compression) = compression {
            ctx.error_at(
                &image.url,
                &url_path,
                format!(
                    "`{published}` is compressed ({}), and a node cannot decompress an image it downloads for import (Proxmox's `compression` works only for `iso`)",
                    compression.as_str()
                ),
                Some("`mode: upload`: proxfleet downloads it, verifies its checksum, decompresses it and uploads the image"),
            );
            return (inner, Some(compression));
        }
        if image.file_name.is_none()
            && let Some(stem) = inner.strip_suffix(".img")
        {
            ctx.error_at(
                &image.url,
                &url_path,
                format!(
                    "the file name `{published}` taken from the url cannot be used for the `import` content type, which takes `.qcow2`, `.raw` and `.vmdk` only"
                ),
                Some(&format!(
                    "`mode: upload` (proxfleet checks that it is qcow2 and uploads it as `.qcow2`), or `file_name: {stem}.qcow2` if it is qcow2 (Ubuntu's `.img` cloud images are)"
                )),
            );
            return (inner, None);
        }
    }
    if let Some(file_name) = &image.file_name {
        check_import_file_name(ctx, file_name, &format!("{path}.file_name"), None);
        return (file_name.value.clone(), compression);
    }
    let stored = match inner.strip_suffix(".img") {
        Some(stem) if mode == ImageMode::Upload => format!("{stem}.qcow2"),
        _ => inner,
    };
    if url.is_some() {
        let spanned = Spanned::new(stored.clone(), image.url.referenced, image.url.defined);
        check_import_file_name(ctx, &spanned, &url_path, Some(&published));
    }
    (stored, compression)
}

/// Check a name for the `import` content type; `derived_from` is the URL's file name when the
/// name was taken from it (and is what the message names).
pub(super) fn check_import_file_name(
    ctx: &mut Validator,
    file_name: &Spanned<String>,
    path: &str,
    derived_from: Option<&str>,
) {
    let name = &file_name.value;
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name.as_str(), ""));
    let stem_ok = !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.+=_".contains(c));
    if stem_ok && matches!(ext, "qcow2" | "raw" | "vmdk") {
        return;
    }
    let what = if let Some(published) = derived_from {
        format!(
            "the file name `{published}` taken from the url cannot be used for the `import` content type; set `file_name`"
        )
    } else {
        format!("file name `{name}` cannot be used for the `import` content type")
    };
    let allowed = "a name of `[a-zA-Z0-9-.+=_]` ending in `.qcow2`, `.raw` or `.vmdk` that matches the image format (Ubuntu's `.img` cloud images are qcow2: name them `.qcow2`)";
    ctx.error_at(file_name, path, what, Some(allowed));
}

pub(super) fn parse_checksum(
    ctx: &mut Validator,
    checksum: &Spanned<String>,
    path: &str,
) -> Option<Checksum> {
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
