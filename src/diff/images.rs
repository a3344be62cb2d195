//! Image volumes: a file with the desired name is the image (its name is its content), so an
//! image is fetched only when that file is missing, and earlier copies (same name, another
//! content tag) go with it.

use crate::graph::DesiredImage;
use crate::plan::{Action, Change, Operation, Reason};
use crate::state::ActualState;

/// The volumes on the image's node that are this image: the current file and earlier copies
/// (same name, another content tag). Only these are ever deleted: proxfleet names image files
/// by their content, and no other file has such a name.
pub(super) fn image_copies(image: &DesiredImage, actual: &ActualState) -> Vec<String> {
    actual
        .volumes
        .values()
        .filter(|vol| {
            vol.node == image.node
                && (vol.volid == image.volid || image.image.is_stale_copy(&vol.volid))
        })
        .map(|vol| vol.volid.clone())
        .collect()
}

/// The change that fetches `image`, `None` when its file is there (and not `forced`).
pub(super) fn diff_image(
    image: &DesiredImage,
    actual: &ActualState,
    forced: bool,
) -> Option<Change> {
    if !forced
        && actual
            .volumes
            .contains_key(&(image.node.clone(), image.volid.clone()))
    {
        // The name is content-addressed: the file is this image, as Proxmox verified it.
        return None;
    }
    // With `--replace`, the current file is among the copies to delete and fetch again.
    let stale: Vec<String> = image_copies(image, actual);
    let mut reasons = Vec::new();
    if stale.iter().any(|volid| *volid != image.volid) {
        reasons.push(Reason::ImageChecksumChanged);
    }
    if forced && !stale.is_empty() {
        reasons.push(Reason::ReplaceRequested);
    }
    let action = if stale.is_empty() {
        Action::Create
    } else {
        Action::Replace
    };
    let mut operations: Vec<Operation> = stale
        .into_iter()
        .map(|volid| Operation::DeleteVolume { volid })
        .collect();
    operations.push(Operation::FetchImage {
        volid: image.volid.clone(),
        url: image.url.clone(),
        checksum: format!("{}:{}", image.checksum_algorithm, image.checksum_hex),
    });
    Some(Change {
        key: image.key.clone(),
        action,
        vmid: None,
        node: image.node.clone(),
        operations,
        reasons,
        depends_on: Vec::new(),
        rollout: None,
    })
}
