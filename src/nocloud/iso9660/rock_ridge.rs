//! Rock Ridge (RRIP 1.12, over SUSP 1.12) in the primary tree: each file's real name (`NM`)
//! and POSIX mode (`PX`) beside its 8.3 ISO 9660 name, and the extension reference (`ER`) that
//! tells Linux to prefer them.

use super::{
    Entry, FILE_FLAG_DIRECTORY, IsoError, Layout, PARENT_IDENTIFIER, SELF_IDENTIFIER, both_u32,
    directory_record, file_record, pack_directory,
};

/// RRIP 1.12 4.1.1 file modes, as POSIX `st_mode`: a read-only medium, so read-only files.
const MODE_REGULAR_FILE: u32 = 0o100_444;
const MODE_DIRECTORY: u32 = 0o040_555;

/// RRIP 1.09's `RR` entry flags (the entry is gone from RRIP 1.12, but genisoimage writes it and
/// Linux stops reading Rock Ridge entries at an `RR` without the `PX` bit).
pub(super) const RR_HAS_PX: u8 = 0x01;
pub(super) const RR_HAS_NM: u8 = 0x08;

/// RRIP 1.12 5.1: the extension reference that says this image uses Rock Ridge. Linux prefers
/// Rock Ridge names over Joliet's only when it finds this entry.
const RRIP_ID: &[u8] = b"RRIP_1991A";
const RRIP_DESCRIPTOR: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const RRIP_SOURCE: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

/// The primary root directory: `.` (opening the SUSP area with `SP`, pointing to the `ER` in
/// the continuation area), `..`, then the files in ECMA-119 9.3 order, each with Rock Ridge
/// `RR`, `PX` and `NM` entries.
pub(super) fn primary_root(entries: &[Entry<'_>], layout: &Layout) -> Result<Vec<u8>, IsoError> {
    let mut self_system_use = susp_sp().to_vec();
    self_system_use.extend(rrip_rr(RR_HAS_PX));
    self_system_use.extend(rrip_px(MODE_DIRECTORY, 2));
    self_system_use.extend(susp_ce(
        layout.continuation_sector,
        rrip_extension_reference().len(),
    ));
    let mut parent_system_use = rrip_rr(RR_HAS_PX).to_vec();
    parent_system_use.extend(rrip_px(MODE_DIRECTORY, 2));
    let special = |identifier, system_use: &[u8]| {
        directory_record(
            layout.primary_root,
            FILE_FLAG_DIRECTORY,
            &[identifier],
            system_use,
        )
    };
    let mut records = vec![
        special(SELF_IDENTIFIER, &self_system_use),
        special(PARENT_IDENTIFIER, &parent_system_use),
    ];
    // ECMA-119 9.3: by name, then extension, each padded with spaces; every d-character sorts
    // after the space, so that is plain byte order of (stem, extension).
    let mut ordered: Vec<&Entry<'_>> = entries.iter().collect();
    ordered.sort_by(|a, b| a.iso_name.cmp(&b.iso_name));
    for entry in ordered {
        let mut system_use = rrip_rr(RR_HAS_PX | RR_HAS_NM).to_vec();
        system_use.extend(rrip_px(MODE_REGULAR_FILE, 1));
        system_use.extend(rrip_nm(entry.name));
        let identifier = entry.iso_name.identifier();
        records.push(file_record(entry, identifier.as_bytes(), &system_use)?);
    }
    Ok(pack_directory(&records))
}
/// SUSP 5.3 `SP`: the System Use Sharing Protocol is in use; first entry of the root's `.`
/// record, check bytes BE EF, no bytes to skip in other records.
fn susp_sp() -> [u8; 7] {
    [b'S', b'P', 7, 1, 0xBE, 0xEF, 0]
}

/// SUSP 5.1 `CE`: the rest of this record's entries are `len` bytes at offset 0 of `sector`.
fn susp_ce(sector: u32, len: usize) -> Vec<u8> {
    let mut entry = vec![b'C', b'E', 28, 1];
    entry.extend(both_u32(sector)); // block location of continuation area
    entry.extend(both_u32(0)); // offset to start of continuation area
    entry.extend(both_u32(u32::try_from(len).unwrap_or(u32::MAX))); // length
    entry
}

/// SUSP 5.5 `ER`, the extension reference for Rock Ridge (RRIP 1.12 5.1), alone in the
/// continuation area because it does not fit the root's `.` record.
pub(super) fn rrip_extension_reference() -> Vec<u8> {
    const LEN: usize = 8 + RRIP_ID.len() + RRIP_DESCRIPTOR.len() + RRIP_SOURCE.len();
    const _: () = assert!(LEN <= 255, "an SUSP entry's length is one byte");
    let mut entry = vec![
        b'E',
        b'R',
        LEN as u8,
        1,
        RRIP_ID.len() as u8,
        RRIP_DESCRIPTOR.len() as u8,
        RRIP_SOURCE.len() as u8,
        1, // extension version
    ];
    entry.extend_from_slice(RRIP_ID);
    entry.extend_from_slice(RRIP_DESCRIPTOR);
    entry.extend_from_slice(RRIP_SOURCE);
    entry
}

/// RRIP 1.09 `RR`: which Rock Ridge entries follow in this record.
fn rrip_rr(flags: u8) -> [u8; 5] {
    [b'R', b'R', 5, 1, flags]
}

/// RRIP 4.1.1 `PX`: POSIX mode, link count, owner and group (root). The 36-byte form without a
/// file serial number, as genisoimage writes it; readers take both.
fn rrip_px(mode: u32, links: u32) -> Vec<u8> {
    let mut entry = vec![b'P', b'X', 36, 1];
    entry.extend(both_u32(mode));
    entry.extend(both_u32(links));
    entry.extend(both_u32(0)); // user id
    entry.extend(both_u32(0)); // group id
    entry
}

/// RRIP 4.1.4 `NM`: the file's real name, whole (flags 0: no continuation).
fn rrip_nm(name: &str) -> Vec<u8> {
    let mut entry = vec![
        b'N',
        b'M',
        u8::try_from(5 + name.len()).unwrap_or(u8::MAX),
        1,
        0,
    ];
    entry.extend_from_slice(name.as_bytes());
    entry
}
