//! The Joliet tree (Microsoft's Joliet specification, 1995): the files again under their real
//! names in UCS-2, for readers without Rock Ridge (Windows).

use super::{
    Entry, FILE_FLAG_DIRECTORY, IsoError, Layout, PARENT_IDENTIFIER, SELF_IDENTIFIER,
    directory_record, file_record, pack_directory,
};

/// Joliet 5.1: the escape sequence that marks a supplementary volume descriptor as Joliet,
/// UCS-2 level 3 (`%/E`), in the escape sequences field.
pub(super) const JOLIET_UCS2_LEVEL_3: &[u8; 3] = b"%/E";

/// The Joliet root directory: `.`, `..`, then the files by their UCS-2 names, which Joliet
/// records without a `;1` version, as genisoimage does.
pub(super) fn joliet_root(entries: &[Entry<'_>], layout: &Layout) -> Result<Vec<u8>, IsoError> {
    let special =
        |identifier| directory_record(layout.joliet_root, FILE_FLAG_DIRECTORY, &[identifier], &[]);
    let mut records = vec![special(SELF_IDENTIFIER), special(PARENT_IDENTIFIER)];
    let mut ordered: Vec<(Vec<u8>, &Entry<'_>)> = entries
        .iter()
        .map(|entry| (ucs2(entry.name), entry))
        .collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    for (identifier, entry) in ordered {
        records.push(file_record(entry, &identifier, &[])?);
    }
    Ok(pack_directory(&records))
}

/// UCS-2 big-endian, Joliet's encoding (names here are ASCII, so no surrogates arise).
pub(super) fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}
