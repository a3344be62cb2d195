//! NoCloud cloud-init seeds, built in memory: an ISO 9660 image writer with Rock Ridge and
//! Joliet names (what `genisoimage -iso-level 3 -R -J -V cidata` makes, and what Proxmox itself
//! attaches), the seed's `meta-data` and content-addressed file name, a merge of a user's
//! `#cloud-config` with the user proxfleet declares, and a network-config (version 2) renderer.
//!
//! Pure: no clock, no I/O, no other proxfleet module. The same inputs give the same bytes, so a
//! seed ISO can be named by its hash and a file with the desired name *is* the seed.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use sha2::Digest;

// ---------------------------------------------------------------------------------------------
// ISO 9660 writer
//
// Section numbers are ECMA-119 (4th edition, 2019, the same text as ISO 9660), SUSP 1.12
// (System Use Sharing Protocol), RRIP 1.12 (Rock Ridge Interchange Protocol) and the Joliet
// specification (Microsoft, 1995). Offsets in comments are 0-based; ECMA-119's BP is 1-based.
//
// The image is one flat root directory, laid out as:
//
//   sectors 0-15  system area (zeros)
//   16            primary volume descriptor
//   17            supplementary volume descriptor (Joliet)
//   18            volume descriptor set terminator
//   19, 20        primary path table, L (little-endian) and M (big-endian)
//   21, 22        Joliet path table, L and M
//   23 ..         primary root directory (ISO 9660 names + Rock Ridge entries)
//   next          Rock Ridge continuation area (the `ER` entry)
//   next ..       Joliet root directory
//   next ..       file data, each file from a sector boundary, in file name order

/// ECMA-119 6.1.2: a logical sector is 2048 bytes; the logical block size is the same.
const SECTOR_SIZE: usize = 2048;
/// ECMA-119 6.2.1: logical sectors 0 to 15 are the system area, left zero.
const SYSTEM_AREA_SECTORS: usize = 16;
/// ECMA-119 8.1.2: the standard identifier that opens every volume descriptor.
const STANDARD_IDENTIFIER: &[u8; 5] = b"CD001";
/// ECMA-119 8.4.1: volume descriptor type of the primary volume descriptor.
const PRIMARY_VOLUME_DESCRIPTOR: u8 = 1;
/// ECMA-119 8.5.1: volume descriptor type of a supplementary volume descriptor (Joliet's).
const SUPPLEMENTARY_VOLUME_DESCRIPTOR: u8 = 2;
/// ECMA-119 8.3.1: volume descriptor type of the volume descriptor set terminator.
const VOLUME_DESCRIPTOR_SET_TERMINATOR: u8 = 255;
/// ECMA-119 8.4.2, 8.4.31: volume descriptor version and file structure version.
const VERSION: u8 = 1;
/// Joliet 5.1: the escape sequence that marks a supplementary volume descriptor as Joliet,
/// UCS-2 level 3 (`%/E`), in the escape sequences field.
const JOLIET_UCS2_LEVEL_3: &[u8; 3] = b"%/E";
/// ECMA-119 9.1.6: file flags bit 1, "this record identifies a directory".
const FILE_FLAG_DIRECTORY: u8 = 0b10;
/// ECMA-119 9.1: the fixed part of a directory record, before the file identifier.
const DIRECTORY_RECORD_FIXED_LEN: usize = 33;
/// ECMA-119 6.8.2.2: the identifiers of a directory's own (`.`) and parent (`..`) records.
const SELF_IDENTIFIER: u8 = 0x00;
const PARENT_IDENTIFIER: u8 = 0x01;

const PRIMARY_L_PATH_TABLE_SECTOR: u32 = 19;
const PRIMARY_M_PATH_TABLE_SECTOR: u32 = 20;
const JOLIET_L_PATH_TABLE_SECTOR: u32 = 21;
const JOLIET_M_PATH_TABLE_SECTOR: u32 = 22;
const PRIMARY_ROOT_SECTOR: u32 = 23;

/// ECMA-119 9.4: the path table of a volume with only a root directory is one 10-byte record.
const PATH_TABLE_LEN: u32 = 10;

/// RRIP 1.12 4.1.1 file modes, as POSIX `st_mode`: a read-only medium, so read-only files.
const MODE_REGULAR_FILE: u32 = 0o100_444;
const MODE_DIRECTORY: u32 = 0o040_555;

/// RRIP 1.09's `RR` entry flags (the entry is gone from RRIP 1.12, but genisoimage writes it and
/// Linux stops reading Rock Ridge entries at an `RR` without the `PX` bit).
const RR_HAS_PX: u8 = 0x01;
const RR_HAS_NM: u8 = 0x08;

/// RRIP 1.12 5.1: the extension reference that says this image uses Rock Ridge. Linux prefers
/// Rock Ridge names over Joliet's only when it finds this entry.
const RRIP_ID: &[u8] = b"RRIP_1991A";
const RRIP_DESCRIPTOR: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const RRIP_SOURCE: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

/// The application identifier written in both volume descriptors.
const APPLICATION_ID: &str = "PROXFLEET";

/// Most files one image holds. A seed has four; the limit keeps the root directory small and
/// leaves the three-digit counter that makes ISO 9660 names unique always a free value.
pub const MAX_FILES: usize = 256;
/// Longest file name, in characters: Joliet's limit for a file identifier (64 UCS-2 units).
pub const MAX_FILE_NAME_LEN: usize = 64;
/// Longest volume id, in characters: Joliet's 32-byte volume identifier holds 16 UCS-2 units.
pub const MAX_VOLUME_ID_LEN: usize = 16;
/// Largest file, in bytes: ECMA-119 9.1.4's data length is a 32-bit number, and this writer
/// puts each file in one extent.
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;

/// The one date written everywhere (descriptors and directory records): 1970-01-01 00:00:00
/// UTC, the `SOURCE_DATE_EPOCH=0` of reproducible builds. A clock read would make every build
/// of the same seed a different file.
const RECORDING_TIME: Timestamp = Timestamp {
    year: 1970,
    month: 1,
    day: 1,
    hour: 0,
    minute: 0,
    second: 0,
};

/// Why an ISO 9660 image could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsoError {
    /// The volume id is empty, too long, or has characters other than letters, digits, `_`, `-`.
    #[error("invalid volume id `{volume_id}`: {reason}")]
    InvalidVolumeId {
        /// The volume id as given.
        volume_id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file name is empty, too long, `.` or `..`, or has characters outside the portable set.
    #[error("invalid file name `{name}`: {reason}")]
    InvalidFileName {
        /// The file name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two files have the same name.
    #[error("file name `{name}` is given twice")]
    DuplicateFileName {
        /// The repeated name.
        name: String,
    },
    /// More files than [`MAX_FILES`].
    #[error("{count} files given, an image holds at most {max}")]
    TooManyFiles {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A file larger than [`MAX_FILE_SIZE`].
    #[error("file `{name}` is {size} bytes, an ISO 9660 extent holds at most {max}")]
    FileTooLarge {
        /// The file's name.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The whole image would need more sectors than ISO 9660's 32-bit sector numbers address.
    #[error("the image would be {sectors} sectors, ISO 9660 addresses at most 4294967295")]
    ImageTooLarge {
        /// Sectors needed.
        sectors: u64,
    },
}

/// Write an ISO 9660 image holding `files` (name, content) in its root directory.
///
/// Names are the files' real names (Rock Ridge `NM` and Joliet identifiers), which must be
/// 1 to [`MAX_FILE_NAME_LEN`] characters from the POSIX portable set (letters, digits, `.`,
/// `_`, `-`), not `.` or `..`. Each file also gets a unique ISO 9660 name of d-characters in 8.3
/// form (`user-data` → `USER_DAT.;1`) for readers that know neither extension. The volume id
/// (for a NoCloud seed, `cidata`) is written as given in both volume descriptors.
///
/// # Guarantees
/// The same volume id and files give the same bytes, whatever the order of `files`: there is
/// no clock read (every date is 1970-01-01 00:00:00 UTC) and files are laid out by name.
///
/// # Errors
/// An invalid volume id or file name, a name given twice, more than [`MAX_FILES`] files, or a
/// file larger than [`MAX_FILE_SIZE`].
pub fn iso9660(volume_id: &str, files: &[(&str, &[u8])]) -> Result<Vec<u8>, IsoError> {
    check_volume_id(volume_id)?;
    if files.len() > MAX_FILES {
        return Err(IsoError::TooManyFiles {
            count: files.len(),
            max: MAX_FILES,
        });
    }
    let mut by_name: Vec<(&str, &[u8])> = files.to_vec();
    by_name.sort_by(|a, b| a.0.cmp(b.0));
    for pair in by_name.windows(2) {
        if let [(first, _), (second, _)] = pair
            && first == second
        {
            return Err(IsoError::DuplicateFileName {
                name: (*first).to_string(),
            });
        }
    }
    let mut used_names = BTreeSet::new();
    let mut entries = Vec::with_capacity(by_name.len());
    for (name, data) in by_name {
        check_file_name(name)?;
        let size = data_length(name, data.len())?;
        let iso_name = unique_iso_name(name, &mut used_names)?;
        entries.push(Entry {
            name,
            iso_name,
            data,
            size,
            sector: 0,
        });
    }

    // Record lengths do not depend on where things are, so a first build with every location
    // zero measures the directories; the second, with the real layout, is the one written.
    let measured = Layout::default();
    let primary_root_len = primary_root(&entries, &measured)?.len();
    let joliet_root_len = joliet_root(&entries, &measured)?.len();

    let mut next_sector = u64::from(PRIMARY_ROOT_SECTOR) + sectors_for(primary_root_len);
    let continuation_sector = next_sector;
    next_sector += 1;
    let joliet_root_sector = next_sector;
    next_sector += sectors_for(joliet_root_len);
    let mut file_sectors = Vec::with_capacity(entries.len());
    for entry in &entries {
        // An empty file points where its data would start and takes no sector, as genisoimage
        // lays it out.
        file_sectors.push(next_sector);
        next_sector += sectors_for(entry.data.len());
    }
    let total_sectors = next_sector;
    let sector_number = |sector: u64| {
        u32::try_from(sector).map_err(|_| IsoError::ImageTooLarge {
            sectors: total_sectors,
        })
    };
    let layout = Layout {
        total_sectors: sector_number(total_sectors)?,
        continuation_sector: sector_number(continuation_sector)?,
        primary_root: Extent {
            sector: PRIMARY_ROOT_SECTOR,
            size: directory_size(primary_root_len),
        },
        joliet_root: Extent {
            sector: sector_number(joliet_root_sector)?,
            size: directory_size(joliet_root_len),
        },
    };
    for (entry, sector) in entries.iter_mut().zip(file_sectors) {
        entry.sector = sector_number(sector)?;
    }

    let mut image = Vec::with_capacity(layout.total_sectors as usize * SECTOR_SIZE);
    image.resize(SYSTEM_AREA_SECTORS * SECTOR_SIZE, 0);
    image.extend_from_slice(&volume_descriptor(Tree::Primary, volume_id, &layout));
    image.extend_from_slice(&volume_descriptor(Tree::Joliet, volume_id, &layout));
    image.extend_from_slice(&terminator());
    for (root, big_endian) in [
        (layout.primary_root.sector, false),
        (layout.primary_root.sector, true),
        (layout.joliet_root.sector, false),
        (layout.joliet_root.sector, true),
    ] {
        push_sectors(&mut image, &path_table(root, big_endian));
    }
    push_sectors(&mut image, &primary_root(&entries, &layout)?);
    push_sectors(&mut image, &rrip_extension_reference());
    push_sectors(&mut image, &joliet_root(&entries, &layout)?);
    for entry in &entries {
        push_sectors(&mut image, entry.data);
    }
    Ok(image)
}

/// One file of the image, with its names and (once laid out) its first sector.
struct Entry<'a> {
    name: &'a str,
    iso_name: IsoName,
    data: &'a [u8],
    size: u32,
    sector: u32,
}

/// An ISO 9660 file identifier, `NAME.EXT;1`, kept in parts for ECMA-119 9.3's ordering.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct IsoName {
    stem: String,
    extension: String,
}

impl IsoName {
    /// ECMA-119 7.5.1: name, SEPARATOR 1 (`.`, present even when the extension is empty),
    /// extension, SEPARATOR 2 (`;`), version number.
    fn identifier(&self) -> String {
        format!("{}.{};1", self.stem, self.extension)
    }
}

/// Where the image's parts are, in sectors.
#[derive(Default)]
struct Layout {
    total_sectors: u32,
    continuation_sector: u32,
    primary_root: Extent,
    joliet_root: Extent,
}

/// A run of sectors: its first sector and its length in bytes.
#[derive(Default, Clone, Copy)]
struct Extent {
    sector: u32,
    size: u32,
}

/// The two directory trees: ISO 9660 names with Rock Ridge, and Joliet's UCS-2 names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tree {
    Primary,
    Joliet,
}

/// A date and time in UTC.
struct Timestamp {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl Timestamp {
    /// ECMA-119 9.1.5: years since 1900, month, day, hour, minute, second, and the offset from
    /// GMT in 15-minute steps (0).
    fn directory_record_bytes(&self) -> [u8; 7] {
        [
            u8::try_from(self.year.saturating_sub(1900)).unwrap_or(u8::MAX),
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            0,
        ]
    }

    /// ECMA-119 8.4.26.1: `YYYYMMDDHHMMSScc` in digits, then the offset from GMT (0).
    fn descriptor_bytes(&self) -> [u8; 17] {
        let digits = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}00",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        let mut bytes = [0; 17];
        for (slot, digit) in bytes.iter_mut().zip(digits.bytes()) {
            *slot = digit;
        }
        bytes
    }
}

/// ECMA-119 8.4.26.1: a date "not specified" is sixteen `0` digits and a zero offset.
const UNSPECIFIED_DATE: [u8; 17] = *b"0000000000000000\0";

fn check_volume_id(volume_id: &str) -> Result<(), IsoError> {
    let invalid = |reason| IsoError::InvalidVolumeId {
        volume_id: volume_id.to_string(),
        reason,
    };
    if volume_id.is_empty() {
        return Err(invalid("it is empty"));
    }
    if volume_id.chars().count() > MAX_VOLUME_ID_LEN {
        return Err(invalid("it is longer than 16 characters"));
    }
    // ECMA-119 wants d-characters (upper case), but the NoCloud label is `cidata` and
    // genisoimage writes the volume id as given; Joliet repeats it in UCS-2 anyway.
    if !volume_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid("only letters, digits, `_` and `-` are allowed"));
    }
    Ok(())
}

fn check_file_name(name: &str) -> Result<(), IsoError> {
    let invalid = |reason| IsoError::InvalidFileName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("`.` and `..` name directories"));
    }
    if name.chars().count() > MAX_FILE_NAME_LEN {
        return Err(invalid("it is longer than 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            "only letters, digits, `.`, `_` and `-` are allowed",
        ));
    }
    Ok(())
}

/// The file's data length field, or why it does not fit one.
fn data_length(name: &str, len: usize) -> Result<u32, IsoError> {
    u32::try_from(len).map_err(|_| IsoError::FileTooLarge {
        name: name.to_string(),
        size: u64::try_from(len).unwrap_or(u64::MAX),
        max: MAX_FILE_SIZE,
    })
}

/// ECMA-119 7.4.1: d-characters are `A`-`Z`, `0`-`9` and `_`.
fn d_characters(text: &str, max_len: usize) -> String {
    text.chars()
        .map(|c| {
            let upper = c.to_ascii_uppercase();
            if upper.is_ascii_uppercase() || upper.is_ascii_digit() {
                upper
            } else {
                '_'
            }
        })
        .take(max_len)
        .collect()
}

/// The file's ISO 9660 name: upper-cased, other characters as `_`, the part before the last `.`
/// cut to 8 characters and the part after it to 3 (level 1 names, which every reader takes).
/// A name already taken gets its stem's end replaced by a counter: `USER_000`, `USER_001`, ...
fn unique_iso_name(name: &str, used: &mut BTreeSet<IsoName>) -> Result<IsoName, IsoError> {
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, extension)) => (stem, extension),
        None => (name, ""),
    };
    let natural = IsoName {
        stem: d_characters(stem, 8),
        extension: d_characters(extension, 3),
    };
    let candidates = std::iter::once(natural.clone()).chain((0..1000).map(|counter| IsoName {
        stem: format!("{}{counter:03}", d_characters(stem, 5)),
        extension: natural.extension.clone(),
    }));
    for candidate in candidates {
        if used.insert(candidate.clone()) {
            return Ok(candidate);
        }
    }
    Err(IsoError::TooManyFiles {
        count: used.len() + 1,
        max: MAX_FILES,
    })
}

fn sectors_for(len: usize) -> u64 {
    (len as u64).div_ceil(SECTOR_SIZE as u64)
}

/// A directory's data length: its whole sectors (directories are built sector-padded).
fn directory_size(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Append `data` and pad the image to the next sector boundary.
fn push_sectors(image: &mut Vec<u8>, data: &[u8]) {
    image.extend_from_slice(data);
    let padded = image.len().div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
    image.resize(padded, 0);
}

/// ECMA-119 7.2.3: a 16-bit number recorded both-byte orders, little-endian first.
fn both_u16(value: u16) -> [u8; 4] {
    let [le0, le1] = value.to_le_bytes();
    let [be0, be1] = value.to_be_bytes();
    [le0, le1, be0, be1]
}

/// ECMA-119 7.3.3: a 32-bit number recorded both-byte orders, little-endian first.
fn both_u32(value: u32) -> [u8; 8] {
    let mut bytes = [0; 8];
    for (slot, byte) in bytes
        .iter_mut()
        .zip(value.to_le_bytes().into_iter().chain(value.to_be_bytes()))
    {
        *slot = byte;
    }
    bytes
}

/// A text field of `len` bytes: ASCII padded with spaces in the primary descriptor, UCS-2
/// big-endian padded with UCS-2 spaces in Joliet's (an odd length ends in one zero byte, as
/// genisoimage writes it).
fn text_field(tree: Tree, text: &str, len: usize) -> Vec<u8> {
    let mut field = Vec::with_capacity(len);
    match tree {
        Tree::Primary => {
            field.extend(text.bytes());
            field.resize(len, b' ');
        }
        Tree::Joliet => {
            field.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
            while field.len() + 2 <= len {
                field.extend([0, b' ']);
            }
            field.resize(len, 0);
        }
    }
    field.truncate(len);
    field
}

/// ECMA-119 8.4 (primary) and 8.5 (supplementary, here Joliet): the volume descriptor, field by
/// field in order.
fn volume_descriptor(tree: Tree, volume_id: &str, layout: &Layout) -> Vec<u8> {
    let (descriptor_type, root, l_table, m_table) = match tree {
        Tree::Primary => (
            PRIMARY_VOLUME_DESCRIPTOR,
            layout.primary_root,
            PRIMARY_L_PATH_TABLE_SECTOR,
            PRIMARY_M_PATH_TABLE_SECTOR,
        ),
        Tree::Joliet => (
            SUPPLEMENTARY_VOLUME_DESCRIPTOR,
            layout.joliet_root,
            JOLIET_L_PATH_TABLE_SECTOR,
            JOLIET_M_PATH_TABLE_SECTOR,
        ),
    };
    let mut d = Vec::with_capacity(SECTOR_SIZE);
    d.push(descriptor_type); // 0: volume descriptor type
    d.extend_from_slice(STANDARD_IDENTIFIER); // 1..6
    d.push(VERSION); // 6: volume descriptor version
    d.push(0); // 7: unused (primary); volume flags (supplementary): only registered escapes
    d.extend(text_field(tree, "", 32)); // 8..40: system identifier
    d.extend(text_field(tree, volume_id, 32)); // 40..72: volume identifier
    d.extend([0; 8]); // 72..80: unused
    d.extend(both_u32(layout.total_sectors)); // 80..88: volume space size
    let mut escapes = [0; 32]; // 88..120: unused (primary); escape sequences (supplementary)
    if tree == Tree::Joliet {
        for (slot, byte) in escapes.iter_mut().zip(JOLIET_UCS2_LEVEL_3) {
            *slot = *byte;
        }
    }
    d.extend(escapes);
    d.extend(both_u16(1)); // 120..124: volume set size
    d.extend(both_u16(1)); // 124..128: volume sequence number
    d.extend(both_u16(SECTOR_SIZE as u16)); // 128..132: logical block size
    d.extend(both_u32(PATH_TABLE_LEN)); // 132..140: path table size
    d.extend(l_table.to_le_bytes()); // 140..144: type L path table
    d.extend([0; 4]); // 144..148: optional type L path table (none)
    d.extend(m_table.to_be_bytes()); // 148..152: type M path table
    d.extend([0; 4]); // 152..156: optional type M path table (none)
    d.extend(directory_record(
        root,
        FILE_FLAG_DIRECTORY,
        &[SELF_IDENTIFIER],
        &[],
    )); // 156..190: root
    d.extend(text_field(tree, "", 128)); // 190..318: volume set identifier
    d.extend(text_field(tree, "", 128)); // 318..446: publisher identifier
    d.extend(text_field(tree, "", 128)); // 446..574: data preparer identifier
    d.extend(text_field(tree, APPLICATION_ID, 128)); // 574..702: application identifier
    d.extend(text_field(tree, "", 37)); // 702..739: copyright file identifier
    d.extend(text_field(tree, "", 37)); // 739..776: abstract file identifier
    d.extend(text_field(tree, "", 37)); // 776..813: bibliographic file identifier
    d.extend(RECORDING_TIME.descriptor_bytes()); // 813..830: volume creation
    d.extend(RECORDING_TIME.descriptor_bytes()); // 830..847: volume modification
    d.extend(UNSPECIFIED_DATE); // 847..864: volume expiration
    d.extend(UNSPECIFIED_DATE); // 864..881: volume effective
    d.push(VERSION); // 881: file structure version
    // 882: reserved; 883..1395: application use; 1395..2048: reserved. All zero.
    d.resize(SECTOR_SIZE, 0);
    d
}

/// ECMA-119 8.3: the volume descriptor set terminator.
fn terminator() -> Vec<u8> {
    let mut d = Vec::with_capacity(SECTOR_SIZE);
    d.push(VOLUME_DESCRIPTOR_SET_TERMINATOR);
    d.extend_from_slice(STANDARD_IDENTIFIER);
    d.push(VERSION);
    d.resize(SECTOR_SIZE, 0);
    d
}

/// ECMA-119 9.4: the path table of a tree whose only directory is the root: directory number
/// 1, its own parent, identifier 0x00, padded to an even length.
fn path_table(root_sector: u32, big_endian: bool) -> Vec<u8> {
    let mut table = Vec::with_capacity(PATH_TABLE_LEN as usize);
    table.push(1); // length of directory identifier
    table.push(0); // extended attribute record length
    if big_endian {
        table.extend(root_sector.to_be_bytes());
        table.extend(1u16.to_be_bytes()); // parent directory number
    } else {
        table.extend(root_sector.to_le_bytes());
        table.extend(1u16.to_le_bytes());
    }
    table.push(SELF_IDENTIFIER);
    table.push(0); // padding field
    table
}

/// ECMA-119 9.1: one directory record. Its length byte is only right when the record is at
/// most 255 bytes: [`file_record`] checks that for files, and `.` and `..` are fixed and short.
fn directory_record(extent: Extent, flags: u8, identifier: &[u8], system_use: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(DIRECTORY_RECORD_FIXED_LEN + identifier.len() + 1);
    record.push(0); // 0: length of directory record, set below
    record.push(0); // 1: extended attribute record length
    record.extend(both_u32(extent.sector)); // 2..10: location of extent
    record.extend(both_u32(extent.size)); // 10..18: data length
    record.extend(RECORDING_TIME.directory_record_bytes()); // 18..25: recording date and time
    record.push(flags); // 25: file flags
    record.push(0); // 26: file unit size (not interleaved)
    record.push(0); // 27: interleave gap size
    record.extend(both_u16(1)); // 28..32: volume sequence number
    record.push(u8::try_from(identifier.len()).unwrap_or(u8::MAX)); // 32: length of file identifier
    record.extend_from_slice(identifier); // 33..: file identifier
    if identifier.len().is_multiple_of(2) {
        record.push(0); // padding field: the system use field starts at an even offset
    }
    record.extend_from_slice(system_use);
    if !record.len().is_multiple_of(2) {
        record.push(0); // a record has an even length (SUSP 4: padding after the last entry)
    }
    let record_len = u8::try_from(record.len()).unwrap_or(u8::MAX);
    if let Some(first) = record.first_mut() {
        *first = record_len;
    }
    record
}

/// Pack records into whole sectors: ECMA-119 6.8.1.1, a record ends in the sector it begins
/// in, so a record that does not fit the rest of a sector starts the next one.
fn pack_directory(records: &[Vec<u8>]) -> Vec<u8> {
    let mut directory = Vec::with_capacity(SECTOR_SIZE);
    for record in records {
        let used = directory.len() % SECTOR_SIZE;
        if used + record.len() > SECTOR_SIZE {
            directory.resize(directory.len() + SECTOR_SIZE - used, 0);
        }
        directory.extend_from_slice(record);
    }
    let padded = directory.len().div_ceil(SECTOR_SIZE).max(1) * SECTOR_SIZE;
    directory.resize(padded, 0);
    directory
}

/// The record of one file, or the error saying its name does not fit one.
fn file_record(
    entry: &Entry<'_>,
    identifier: &[u8],
    system_use: &[u8],
) -> Result<Vec<u8>, IsoError> {
    let extent = Extent {
        sector: entry.sector,
        size: entry.size,
    };
    let record = directory_record(extent, 0, identifier, system_use);
    if record.len() > usize::from(u8::MAX) {
        return Err(IsoError::InvalidFileName {
            name: entry.name.to_string(),
            reason: "it does not fit a directory record",
        });
    }
    Ok(record)
}

/// The primary root directory: `.` (opening the SUSP area with `SP`, pointing to the `ER` in
/// the continuation area), `..`, then the files in ECMA-119 9.3 order, each with Rock Ridge
/// `RR`, `PX` and `NM` entries.
fn primary_root(entries: &[Entry<'_>], layout: &Layout) -> Result<Vec<u8>, IsoError> {
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

/// The Joliet root directory: `.`, `..`, then the files by their UCS-2 names, which Joliet
/// records without a `;1` version, as genisoimage does.
fn joliet_root(entries: &[Entry<'_>], layout: &Layout) -> Result<Vec<u8>, IsoError> {
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
fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
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
fn rrip_extension_reference() -> Vec<u8> {
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

// ---------------------------------------------------------------------------------------------
// NoCloud seed

/// The volume id cloud-init's NoCloud data source looks for.
pub const VOLUME_ID: &str = "cidata";

/// Why a seed, its user-data or its network-config could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    /// The hostname is not an RFC 1123 host name.
    #[error(
        "invalid hostname `{hostname}`: expected labels of letters, digits and `-`, joined by `.`"
    )]
    InvalidHostname {
        /// The hostname as given.
        hostname: String,
    },
    /// The declared user's name is not one `useradd` takes.
    #[error(
        "invalid user name `{name}`: expected a lower-case letter or `_`, then letters, digits, `_` or `-`, at most 32"
    )]
    InvalidUserName {
        /// The name as given.
        name: String,
    },
    /// An SSH key is empty or spans several lines.
    #[error("invalid SSH key #{index} of user `{user}`: {reason}")]
    InvalidSshKey {
        /// The user.
        user: String,
        /// 1-based position in the list.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The password hash is not a crypt(3) hash (the value is not repeated: it may be a password).
    #[error("the password hash of user `{user}` is not a crypt(3) hash such as `$6$...`")]
    InvalidPasswordHash {
        /// The user.
        user: String,
    },
    /// The user-data says `#cloud-config` but is not a YAML mapping.
    #[error("user-data is #cloud-config but not a YAML mapping: {message}")]
    UserDataNotMapping {
        /// The YAML parser's message.
        message: String,
    },
    /// The user-data sets `user`, which proxfleet sets from the declared user.
    #[error(
        "user-data sets `user`, which proxfleet sets for the declared user `{user}`: declare the user in one place"
    )]
    UserDataSetsUser {
        /// The declared user.
        user: String,
    },
    /// The declared user could not be appended to the user-data and stay one mapping (for
    /// example a flow mapping `{...}`, or a document ended by `...`).
    #[error(
        "cannot add the declared user to this user-data: {message} (write it as a block mapping)"
    )]
    UserDataNotMergeable {
        /// What went wrong.
        message: String,
    },
    /// An interface name is not a Linux interface name.
    #[error("invalid interface name `{name}`: expected 1 to 15 letters, digits, `.`, `_` or `-`")]
    InvalidInterfaceName {
        /// The name as given.
        name: String,
    },
    /// Two interfaces have the same name.
    #[error("interface `{name}` is given twice")]
    DuplicateInterface {
        /// The repeated name.
        name: String,
    },
    /// Two interfaces match the same MAC address.
    #[error("MAC address {mac} is matched by two interfaces")]
    DuplicateMac {
        /// The repeated address.
        mac: MacAddress,
    },
    /// An interface is static but has no address.
    #[error("interface `{interface}` has a static {family} configuration without addresses")]
    StaticWithoutAddress {
        /// The interface.
        interface: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// A search domain is not a DNS name.
    #[error("invalid search domain `{domain}` on interface `{interface}`")]
    InvalidSearchDomain {
        /// The interface.
        interface: String,
        /// The domain as given.
        domain: String,
    },
    /// A MAC address is not six colon-separated hexadecimal bytes.
    #[error(
        "invalid MAC address `{text}`: expected six hexadecimal bytes such as `bc:24:11:00:00:01`"
    )]
    InvalidMac {
        /// The text as given.
        text: String,
    },
    /// The ISO image could not be written.
    #[error(transparent)]
    Iso(#[from] IsoError),
}

/// What a NoCloud seed holds. Each text is the file's whole content; `None` leaves an optional
/// file out (`user-data` is then written empty: cloud-init requires the file). `Debug` prints
/// the files' sizes only: user-data often holds secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Seed {
    /// The guest's host name (`local-hostname` in `meta-data`).
    pub hostname: String,
    /// `user-data`: a `#cloud-config` (see [`merge_user_data`]), a script, or any format
    /// cloud-init reads.
    pub user_data: Option<String>,
    /// `vendor-data`, in the same formats as user-data.
    pub vendor_data: Option<String>,
    /// `network-config` (see [`network_config`]).
    pub network_config: Option<String>,
}

/// A seed ISO, ready to upload as `iso` content and attach as a CD-ROM.
#[derive(Clone, PartialEq, Eq)]
pub struct SeedIso {
    /// `proxfleet-ci-<first 12 hex digits of the image's SHA-256>.iso`.
    pub file_name: String,
    /// The `instance-id` in its `meta-data`.
    pub instance_id: String,
    /// The image.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for SeedIso {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedIso")
            .field("file_name", &self.file_name)
            .field("instance_id", &self.instance_id)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size =
            |text: &Option<String>| text.as_ref().map(|text| format!("<{} bytes>", text.len()));
        f.debug_struct("Seed")
            .field("hostname", &self.hostname)
            .field("user_data", &size(&self.user_data))
            .field("vendor_data", &size(&self.vendor_data))
            .field("network_config", &size(&self.network_config))
            .finish()
    }
}

impl Seed {
    /// `proxfleet-` and 16 hex digits of a SHA-256 over the hostname and every file's content
    /// (each length-prefixed, absent distinct from empty). Any change gives a new id, which
    /// cloud-init takes as a new instance: it runs its once-per-instance modules again.
    pub fn instance_id(&self) -> String {
        let mut hasher = sha2::Sha256::new();
        for (field, value) in [
            ("local-hostname", Some(&self.hostname)),
            ("user-data", self.user_data.as_ref()),
            ("vendor-data", self.vendor_data.as_ref()),
            ("network-config", self.network_config.as_ref()),
        ] {
            hasher.update(field.as_bytes());
            match value {
                None => hasher.update([0]),
                Some(text) => {
                    hasher.update([1]);
                    hasher.update((text.len() as u64).to_be_bytes());
                    hasher.update(text.as_bytes());
                }
            }
        }
        let digest = hasher.finalize();
        format!("proxfleet-{}", hex::encode(&digest[..8]))
    }

    /// The `meta-data` file: `instance-id` and `local-hostname`.
    ///
    /// # Errors
    /// The hostname is not an RFC 1123 host name.
    pub fn meta_data(&self) -> Result<String, SeedError> {
        if !is_dns_name(&self.hostname) {
            return Err(SeedError::InvalidHostname {
                hostname: self.hostname.clone(),
            });
        }
        Ok(format!(
            "instance-id: {}\nlocal-hostname: {}\n",
            yaml_quoted(&self.instance_id()),
            yaml_quoted(&self.hostname)
        ))
    }

    /// The seed ISO: volume `cidata` with `meta-data`, `user-data` and, when given,
    /// `vendor-data` and `network-config`, named by its content.
    ///
    /// # Errors
    /// An invalid hostname, or a file too large for ISO 9660.
    pub fn build(&self) -> Result<SeedIso, SeedError> {
        let meta_data = self.meta_data()?;
        let mut files: Vec<(&str, &[u8])> = vec![
            ("meta-data", meta_data.as_bytes()),
            (
                "user-data",
                self.user_data.as_deref().unwrap_or_default().as_bytes(),
            ),
        ];
        if let Some(vendor_data) = &self.vendor_data {
            files.push(("vendor-data", vendor_data.as_bytes()));
        }
        if let Some(network_config) = &self.network_config {
            files.push(("network-config", network_config.as_bytes()));
        }
        let bytes = iso9660(VOLUME_ID, &files)?;
        let digest = sha2::Sha256::digest(&bytes);
        Ok(SeedIso {
            file_name: format!("proxfleet-ci-{}.iso", hex::encode(&digest[..6])),
            instance_id: self.instance_id(),
            bytes,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// user-data

/// The user proxfleet declares on a VM (what Proxmox calls `ciuser`, `sshkeys` and a hashed
/// `cipassword`). It becomes cloud-init's default user: the distribution's groups and sudo
/// rights, this name, these keys. `Debug` prints the password hash as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeclaredUser {
    /// The login name.
    pub name: String,
    /// OpenSSH public keys, one per entry (`ssh-ed25519 AAAA... comment`).
    pub ssh_authorized_keys: Vec<String>,
    /// A crypt(3) hash (`$6$...`, `$y$...`), never a plain password. `None` locks the password:
    /// the user logs in with a key only. The hash ends up readable in the seed ISO.
    pub password_hash: Option<String>,
}

impl fmt::Debug for DeclaredUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeclaredUser")
            .field("name", &self.name)
            .field("ssh_authorized_keys", &self.ssh_authorized_keys)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The first line that marks user-data as cloud-config.
const CLOUD_CONFIG_HEADER: &str = "#cloud-config";

/// User-data with the declared user added.
///
/// - No user-data: a `#cloud-config` with the user.
/// - A `#cloud-config` (first line exactly that): the text unchanged, comments and all, with a
///   top-level `user:` appended. cloud-init merges `user:` into the distribution's default user
///   and always creates it, so the user-data's own `users:`, `ssh_authorized_keys:` and the rest
///   keep their meaning and add to it.
/// - Anything else (a `#!` script, `#include`, `#cloud-config-archive`, MIME multipart, ...):
///   returned unchanged; the declared user is not applied, so the caller may want to say so.
///
/// The user-data is parsed only to check that it is a mapping without `user:`, and parsed
/// again with the user appended to check that the result is that mapping plus `user`: the
/// user's YAML is never re-emitted, so YAML 1.1 readings (`yes`, `0644`) stay cloud-init's.
///
/// # Errors
/// An invalid declared user; a `#cloud-config` that is not a YAML mapping, sets `user:`, or
/// cannot take a block-style key appended at its end.
pub fn merge_user_data(user_data: Option<&str>, user: &DeclaredUser) -> Result<String, SeedError> {
    let block = user_block(user)?;
    let Some(text) = user_data else {
        return Ok(format!("{CLOUD_CONFIG_HEADER}\n{block}"));
    };
    let first_line = text.lines().next().unwrap_or_default();
    if first_line.trim_end() != CLOUD_CONFIG_HEADER {
        return Ok(text.to_string());
    }
    let keys = top_level_keys(text).map_err(|message| SeedError::UserDataNotMapping { message })?;
    if keys.iter().any(|key| key == "user") {
        return Err(SeedError::UserDataSetsUser {
            user: user.name.clone(),
        });
    }
    let mut merged = text.to_string();
    if !merged.ends_with('\n') {
        merged.push('\n');
    }
    merged.push_str(&block);
    let merged_keys =
        top_level_keys(&merged).map_err(|message| SeedError::UserDataNotMergeable { message })?;
    let mut expected = keys;
    expected.push("user".to_string());
    if merged_keys != expected {
        return Err(SeedError::UserDataNotMergeable {
            message: format!("the result has the keys {merged_keys:?}, not {expected:?}"),
        });
    }
    Ok(merged)
}

/// The top-level keys of a YAML document that is a mapping (an empty document has none).
fn top_level_keys(text: &str) -> Result<Vec<String>, String> {
    let mapping: Option<indexmap::IndexMap<String, serde::de::IgnoredAny>> =
        serde_saphyr::from_str(text).map_err(|err| err.to_string())?;
    Ok(mapping.unwrap_or_default().into_keys().collect())
}

/// The `user:` block for the declared user, after checking it.
fn user_block(user: &DeclaredUser) -> Result<String, SeedError> {
    if !is_user_name(&user.name) {
        return Err(SeedError::InvalidUserName {
            name: user.name.clone(),
        });
    }
    let mut block = String::from("# The user proxfleet declares.\nuser:\n");
    block.push_str(&format!("  name: {}\n", yaml_quoted(&user.name)));
    match &user.password_hash {
        None => block.push_str("  lock_passwd: true\n"),
        Some(hash) => {
            let is_crypt = hash.starts_with('$')
                && hash.len() > 1
                && hash.chars().all(|c| c.is_ascii_graphic());
            if !is_crypt {
                return Err(SeedError::InvalidPasswordHash {
                    user: user.name.clone(),
                });
            }
            block.push_str("  lock_passwd: false\n");
            block.push_str(&format!("  passwd: {}\n", yaml_quoted(hash)));
        }
    }
    if !user.ssh_authorized_keys.is_empty() {
        block.push_str("  ssh_authorized_keys:\n");
    }
    for (key_idx, key) in user.ssh_authorized_keys.iter().enumerate() {
        let invalid = |reason| SeedError::InvalidSshKey {
            user: user.name.clone(),
            index: key_idx + 1,
            reason,
        };
        // Surrounding white space (the newline that ends a key file) is not part of the key.
        let key = key.trim();
        if key.is_empty() {
            return Err(invalid("it is empty"));
        }
        if key.chars().any(char::is_control) {
            return Err(invalid("it has a line break or another control character"));
        }
        block.push_str(&format!("    - {}\n", yaml_quoted(key)));
    }
    Ok(block)
}

/// `useradd`'s default rule (Debian's `NAME_REGEX` without upper case): a lower-case letter or
/// `_`, then lower-case letters, digits, `_` or `-`, at most 32 characters.
fn is_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// RFC 1123 host names (and DNS names generally): labels of 1 to 63 letters, digits and `-`,
/// not starting or ending with `-`, joined by `.`, at most 253 characters.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A YAML double-quoted scalar, which reads the same in YAML 1.1 (cloud-init's PyYAML) and 1.2:
/// no `yes`, `0644` or `1:30` surprises. Whatever is not YAML-printable is escaped.
fn yaml_quoted(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            // YAML 1.1 5.1 c-printable, less the line breaks and tab escaped above.
            ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' => {
                quoted.push(c);
            }
            c if u32::from(c) >= 0x10000 => quoted.push(c),
            c => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
        }
    }
    quoted.push('"');
    quoted
}

// ---------------------------------------------------------------------------------------------
// network-config

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl FromStr for MacAddress {
    type Err = SeedError;

    /// Six hexadecimal bytes separated by `:` (as Proxmox writes them) or `-`, either case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || SeedError::InvalidMac {
            text: text.to_string(),
        };
        let mut bytes = [0; 6];
        let mut parts = text.split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(invalid)?;
            // `from_str_radix` alone would take a sign: `+c`.
            if part.len() != 2 || !part.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(MacAddress(bytes))
    }
}

impl fmt::Display for MacAddress {
    /// Lower case with colons, the form netplan documents.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// How an interface gets its IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ipv4Config {
    /// No IPv4 configuration.
    #[default]
    None,
    /// DHCP (`dhcp4: true`).
    Dhcp,
    /// Fixed addresses, with the default gateway when there is one.
    Static {
        /// Addresses with their prefix length (`192.0.2.10/24`).
        addresses: Vec<ipnet::Ipv4Net>,
        /// `gateway4`.
        gateway: Option<Ipv4Addr>,
    },
}

/// How an interface gets its IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ipv6Config {
    /// No IPv6 configuration (the kernel's defaults).
    #[default]
    None,
    /// DHCPv6 (`dhcp6: true`).
    Dhcp,
    /// Stateless autoconfiguration from router advertisements (`accept-ra: true`).
    Slaac,
    /// Fixed addresses, with the default gateway when there is one.
    Static {
        /// Addresses with their prefix length (`2001:db8::10/64`).
        addresses: Vec<ipnet::Ipv6Net>,
        /// `gateway6`.
        gateway: Option<Ipv6Addr>,
    },
}

/// One Ethernet interface of a network-config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The interface's id in the config and, when it is matched by MAC, its name in the guest
    /// (`set-name`); otherwise the guest's name for it (`eth0`, `ens18`).
    pub name: String,
    /// Match the NIC by MAC address rather than by name.
    pub mac: Option<MacAddress>,
    /// IPv4.
    pub ipv4: Ipv4Config,
    /// IPv6.
    pub ipv6: Ipv6Config,
    /// DNS servers.
    pub nameservers: Vec<IpAddr>,
    /// DNS search domains.
    pub search: Vec<String>,
}

/// A cloud-init network-config, version 2 (netplan's format), for `interfaces`: `version: 2`
/// and `ethernets` at the top level, the form NoCloud has always read. Every value is quoted.
///
/// # Errors
/// An invalid or repeated interface name, a MAC matched twice, a static configuration without
/// addresses, an invalid search domain.
pub fn network_config(interfaces: &[Interface]) -> Result<String, SeedError> {
    let mut names = BTreeSet::new();
    let mut macs = BTreeSet::new();
    let mut out = String::from("version: 2\n");
    if interfaces.is_empty() {
        out.push_str("ethernets: {}\n");
        return Ok(out);
    }
    out.push_str("ethernets:\n");
    for interface in interfaces {
        let name = &interface.name;
        let name_ok = !name.is_empty()
            && name.len() <= 15
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(SeedError::InvalidInterfaceName { name: name.clone() });
        }
        if !names.insert(name.as_str()) {
            return Err(SeedError::DuplicateInterface { name: name.clone() });
        }
        out.push_str(&format!("  {}:\n", yaml_quoted(name)));
        if let Some(mac) = interface.mac {
            if !macs.insert(mac) {
                return Err(SeedError::DuplicateMac { mac });
            }
            out.push_str("    match:\n");
            out.push_str(&format!(
                "      macaddress: {}\n",
                yaml_quoted(&mac.to_string())
            ));
            out.push_str(&format!("    set-name: {}\n", yaml_quoted(name)));
        }
        let mut addresses = Vec::new();
        match &interface.ipv4 {
            Ipv4Config::None => {}
            Ipv4Config::Dhcp => out.push_str("    dhcp4: true\n"),
            Ipv4Config::Static { addresses: v4, .. } => {
                if v4.is_empty() {
                    return Err(SeedError::StaticWithoutAddress {
                        interface: name.clone(),
                        family: "IPv4",
                    });
                }
                addresses.extend(v4.iter().map(ToString::to_string));
            }
        }
        match &interface.ipv6 {
            Ipv6Config::None | Ipv6Config::Static { .. } => {}
            Ipv6Config::Dhcp => out.push_str("    dhcp6: true\n"),
            Ipv6Config::Slaac => out.push_str("    accept-ra: true\n"),
        }
        if let Ipv6Config::Static { addresses: v6, .. } = &interface.ipv6 {
            if v6.is_empty() {
                return Err(SeedError::StaticWithoutAddress {
                    interface: name.clone(),
                    family: "IPv6",
                });
            }
            addresses.extend(v6.iter().map(ToString::to_string));
        }
        push_list(&mut out, "    addresses", &addresses);
        if let Ipv4Config::Static {
            gateway: Some(gateway),
            ..
        } = &interface.ipv4
        {
            out.push_str(&format!(
                "    gateway4: {}\n",
                yaml_quoted(&gateway.to_string())
            ));
        }
        if let Ipv6Config::Static {
            gateway: Some(gateway),
            ..
        } = &interface.ipv6
        {
            out.push_str(&format!(
                "    gateway6: {}\n",
                yaml_quoted(&gateway.to_string())
            ));
        }
        if let Some(domain) = interface.search.iter().find(|domain| !is_dns_name(domain)) {
            return Err(SeedError::InvalidSearchDomain {
                interface: name.clone(),
                domain: domain.clone(),
            });
        }
        if !interface.nameservers.is_empty() || !interface.search.is_empty() {
            out.push_str("    nameservers:\n");
            let servers: Vec<String> = interface
                .nameservers
                .iter()
                .map(ToString::to_string)
                .collect();
            push_list(&mut out, "      addresses", &servers);
            push_list(&mut out, "      search", &interface.search);
        }
    }
    Ok(out)
}

/// `key:` and one quoted item a line, or nothing for an empty list.
fn push_list(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    out.push_str(key);
    out.push_str(":\n");
    let indent = key.len() - key.trim_start().len() + 2;
    for item in items {
        out.push_str(&format!("{:indent$}- {}\n", "", yaml_quoted(item)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- a minimal reader, to check the layout from the inside (the integration tests read the
    // images with isoinfo and xorriso) ---

    fn sector(image: &[u8], number: u32) -> &[u8] {
        let start = number as usize * SECTOR_SIZE;
        &image[start..start + SECTOR_SIZE]
    }

    /// A both-byte-order 32-bit field, checked to agree with itself.
    fn both32(bytes: &[u8], at: usize) -> u32 {
        let le = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let be = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        assert_eq!(le, be, "both-endian field at {at}");
        le
    }

    #[derive(Debug)]
    struct Record {
        identifier: Vec<u8>,
        sector: u32,
        size: u32,
        flags: u8,
        system_use: Vec<u8>,
    }

    fn parse_record(bytes: &[u8]) -> Record {
        let identifier_len = bytes[32] as usize;
        let system_use_start = 33 + identifier_len + usize::from(identifier_len.is_multiple_of(2));
        Record {
            identifier: bytes[33..33 + identifier_len].to_vec(),
            sector: both32(bytes, 2),
            size: both32(bytes, 10),
            flags: bytes[25],
            system_use: bytes[system_use_start..bytes[0] as usize].to_vec(),
        }
    }

    /// Every record of the directory at `extent`, checking that none crosses a sector.
    fn read_directory(image: &[u8], extent_sector: u32, size: u32) -> Vec<Record> {
        assert_eq!(
            size as usize % SECTOR_SIZE,
            0,
            "directories are whole sectors"
        );
        let mut records = Vec::new();
        for sector_idx in 0..size / SECTOR_SIZE as u32 {
            let data = sector(image, extent_sector + sector_idx);
            let mut offset = 0;
            while offset < SECTOR_SIZE && data[offset] != 0 {
                let len = data[offset] as usize;
                assert!(offset + len <= SECTOR_SIZE, "a record crosses a sector");
                assert_eq!(len % 2, 0, "records have even lengths");
                records.push(parse_record(&data[offset..offset + len]));
                offset += len;
            }
        }
        records
    }

    /// System use entries as (signature, whole entry).
    fn susp_entries(system_use: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut entries = Vec::new();
        let mut rest = system_use;
        while rest.len() >= 4 {
            let len = rest[2] as usize;
            entries.push((
                String::from_utf8_lossy(&rest[..2]).into_owned(),
                rest[..len].to_vec(),
            ));
            rest = &rest[len..];
        }
        entries
    }

    fn root_of(image: &[u8], descriptor: u32) -> Record {
        parse_record(&sector(image, descriptor)[156..190])
    }

    /// Files by the name each tree gives them: (Rock Ridge `NM` or Joliet name) → content.
    fn files_in(image: &[u8], descriptor: u32) -> Vec<(String, Vec<u8>)> {
        let root = root_of(image, descriptor);
        read_directory(image, root.sector, root.size)
            .into_iter()
            .skip(2)
            .map(|record| {
                let name = if descriptor == 16 {
                    let (_, nm) = susp_entries(&record.system_use)
                        .into_iter()
                        .find(|(signature, _)| signature == "NM")
                        .expect("an NM entry");
                    String::from_utf8(nm[5..].to_vec()).unwrap()
                } else {
                    let units: Vec<u16> = record
                        .identifier
                        .chunks(2)
                        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                        .collect();
                    String::from_utf16(&units).unwrap()
                };
                let start = record.sector as usize * SECTOR_SIZE;
                let content = image[start..start + record.size as usize].to_vec();
                (name, content)
            })
            .collect()
    }

    fn seed_files() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("user-data", b"#cloud-config\n".as_slice()),
            ("meta-data", b"instance-id: a\n".as_slice()),
            ("network-config", b"version: 2\n".as_slice()),
            ("vendor-data", b"".as_slice()),
        ]
    }

    // --- the ISO writer ---

    #[test]
    fn same_files_give_same_bytes_in_any_order() {
        let files = seed_files();
        let mut reversed = files.clone();
        reversed.reverse();
        let first = iso9660("cidata", &files).unwrap();
        assert_eq!(iso9660("cidata", &files).unwrap(), first);
        assert_eq!(iso9660("cidata", &reversed).unwrap(), first);
        assert_ne!(iso9660("CIDATA", &files).unwrap(), first);
    }

    #[test]
    fn descriptors_are_where_ecma_119_puts_them() {
        let image = iso9660("cidata", &seed_files()).unwrap();
        assert_eq!(image.len() % SECTOR_SIZE, 0);
        let n_sectors = (image.len() / SECTOR_SIZE) as u32;
        assert!(
            image[..16 * SECTOR_SIZE].iter().all(|&b| b == 0),
            "system area"
        );

        let primary = sector(&image, 16);
        assert_eq!(&primary[..8], b"\x01CD001\x01\x00");
        assert_eq!(&primary[8..40], &[b' '; 32], "system identifier");
        assert_eq!(&primary[40..72], format!("{:32}", "cidata").as_bytes());
        assert_eq!(both32(primary, 80), n_sectors, "volume space size");
        assert_eq!(&primary[120..132], &[1, 0, 0, 1, 1, 0, 0, 1, 0, 8, 8, 0]);
        assert_eq!(both32(primary, 132), 10, "path table size");
        assert_eq!(&primary[140..144], &19u32.to_le_bytes());
        assert_eq!(&primary[148..152], &20u32.to_be_bytes());
        assert_eq!(primary[156], 34, "root directory record");
        assert_eq!(&primary[574..583], b"PROXFLEET");
        assert_eq!(&primary[813..830], b"1970010100000000\0", "creation");
        assert_eq!(&primary[830..847], b"1970010100000000\0", "modification");
        assert_eq!(&primary[847..864], b"0000000000000000\0", "expiration");
        assert_eq!(primary[881], 1, "file structure version");
        assert!(primary[882..].iter().all(|&b| b == 0));

        let joliet = sector(&image, 17);
        assert_eq!(&joliet[..8], b"\x02CD001\x01\x00");
        let mut volume_id = ucs2("cidata");
        volume_id.extend([0, b' '].repeat(10));
        assert_eq!(&joliet[40..72], volume_id.as_slice());
        assert_eq!(both32(joliet, 80), n_sectors);
        assert_eq!(&joliet[88..91], b"%/E");
        assert!(joliet[91..120].iter().all(|&b| b == 0));
        assert_eq!(&joliet[140..144], &21u32.to_le_bytes());
        assert_eq!(&joliet[148..152], &22u32.to_be_bytes());
        assert_eq!(
            &joliet[702..739],
            [[0, b' ']; 18]
                .concat()
                .iter()
                .chain(&[0])
                .copied()
                .collect::<Vec<u8>>()
                .as_slice()
        );

        assert_eq!(&sector(&image, 18)[..7], b"\xffCD001\x01");
        assert!(sector(&image, 18)[7..].iter().all(|&b| b == 0));
    }

    #[test]
    fn path_tables_point_at_each_root() {
        let image = iso9660("cidata", &seed_files()).unwrap();
        let primary_root = root_of(&image, 16).sector;
        let joliet_root = root_of(&image, 17).sector;
        assert_eq!(primary_root, 23);
        assert_ne!(joliet_root, primary_root);
        for (table_sector, root, big_endian) in [
            (19, primary_root, false),
            (20, primary_root, true),
            (21, joliet_root, false),
            (22, joliet_root, true),
        ] {
            let table = sector(&image, table_sector);
            let mut expected = vec![1, 0];
            if big_endian {
                expected.extend(root.to_be_bytes());
                expected.extend([0, 1, 0, 0]);
            } else {
                expected.extend(root.to_le_bytes());
                expected.extend([1, 0, 0, 0]);
            }
            assert_eq!(&table[..10], expected.as_slice(), "sector {table_sector}");
            assert!(table[10..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn rock_ridge_is_announced_in_the_root() {
        let image = iso9660("cidata", &seed_files()).unwrap();
        let root = root_of(&image, 16);
        let records = read_directory(&image, root.sector, root.size);
        let (dot, dotdot) = (&records[0], &records[1]);
        assert_eq!((dot.identifier.as_slice(), dot.flags), (&[0u8][..], 2));
        assert_eq!(
            (dotdot.identifier.as_slice(), dotdot.flags),
            (&[1u8][..], 2)
        );
        assert_eq!((dot.sector, dot.size), (root.sector, root.size));
        let entries = susp_entries(&dot.system_use);
        let signatures: Vec<&str> = entries.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(signatures, ["SP", "RR", "PX", "CE"]);
        assert_eq!(entries[0].1, [b'S', b'P', 7, 1, 0xBE, 0xEF, 0]);
        let ce = &entries[3].1;
        let (ce_sector, ce_offset, ce_len) = (both32(ce, 4), both32(ce, 12), both32(ce, 20));
        let er = &sector(&image, ce_sector)[ce_offset as usize..][..ce_len as usize];
        assert_eq!(&er[..2], b"ER");
        assert_eq!(er[2] as u32, ce_len);
        assert_eq!(&er[8..18], b"RRIP_1991A");
        let px = &entries[2].1;
        assert_eq!(both32(px, 4), 0o040_555, "directory mode");

        let user_data = records
            .iter()
            .find(|r| r.identifier == b"USER_DAT.;1")
            .unwrap();
        let entries = susp_entries(&user_data.system_use);
        let signatures: Vec<&str> = entries.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(signatures, ["RR", "PX", "NM"]);
        assert_eq!(entries[0].1[4], RR_HAS_PX | RR_HAS_NM);
        assert_eq!(both32(&entries[1].1, 4), 0o100_444, "file mode");
        assert_eq!(&entries[2].1[5..], b"user-data");
    }

    #[test]
    fn both_trees_find_every_file() {
        let names: Vec<String> = (0..80).map(|idx| format!("part-{idx:02}.cfg")).collect();
        let contents: Vec<Vec<u8>> = (0..80)
            .map(|idx| vec![idx as u8; [0, 1, 2047, 2048, 2049][idx % 5]])
            .collect();
        let files: Vec<(&str, &[u8])> = names
            .iter()
            .zip(&contents)
            .map(|(name, content)| (name.as_str(), content.as_slice()))
            .collect();
        let image = iso9660("cidata", &files).unwrap();
        let expected: Vec<(String, Vec<u8>)> = names.iter().cloned().zip(contents).collect();
        let root = root_of(&image, 16);
        assert!(
            root.size > SECTOR_SIZE as u32,
            "the directory spans sectors"
        );
        assert_eq!(files_in(&image, 16), expected, "Rock Ridge");
        assert_eq!(files_in(&image, 17), expected, "Joliet");
        let last = 18u32.max(expected.len() as u32);
        assert!(image.len() >= last as usize * SECTOR_SIZE);
    }

    #[test]
    fn no_files_is_an_empty_root() {
        let image = iso9660("cidata", &[]).unwrap();
        // 16 system + 3 descriptors + 4 path tables + primary root + continuation + Joliet root.
        assert_eq!(image.len(), 26 * SECTOR_SIZE);
        assert!(files_in(&image, 16).is_empty());
        assert!(files_in(&image, 17).is_empty());
    }

    fn iso_names(names: &[&str]) -> Vec<String> {
        let mut used = BTreeSet::new();
        names
            .iter()
            .map(|name| unique_iso_name(name, &mut used).unwrap().identifier())
            .collect()
    }

    #[test]
    fn iso_names_are_unique_8_3_d_characters() {
        assert_eq!(
            iso_names(&[
                "user-data",
                "meta-data",
                "network-config",
                "vendor-data",
                "seed.tar.gz",
                ".profile",
                "a.",
                "README",
            ]),
            [
                "USER_DAT.;1",
                "META_DAT.;1",
                "NETWORK_.;1",
                "VENDOR_D.;1",
                "SEED_TAR.GZ;1",
                ".PRO;1",
                "A.;1",
                "README.;1",
            ]
        );
        assert_eq!(
            iso_names(&["user-data", "user-data-1", "User-Data", "user_000"]),
            ["USER_DAT.;1", "USER_000.;1", "USER_001.;1", "USER_002.;1"]
        );
        let image = iso9660("cidata", &[("user-data", b"a"), ("user-data-1", b"b")]).unwrap();
        let root = root_of(&image, 16);
        let identifiers: Vec<Vec<u8>> = read_directory(&image, root.sector, root.size)
            .into_iter()
            .map(|r| r.identifier)
            .collect();
        assert_eq!(
            identifiers,
            [
                b"\0".to_vec(),
                b"\x01".to_vec(),
                b"USER_000.;1".to_vec(),
                b"USER_DAT.;1".to_vec()
            ],
            "ECMA-119 9.3 order"
        );
    }

    #[test]
    fn bad_volume_ids_are_refused() {
        for (volume_id, reason) in [
            ("", "it is empty"),
            ("seventeen-chars-x", "it is longer than 16 characters"),
            ("ci data", "only letters, digits, `_` and `-` are allowed"),
            ("cidätä", "only letters, digits, `_` and `-` are allowed"),
        ] {
            assert_eq!(
                iso9660(volume_id, &[]),
                Err(IsoError::InvalidVolumeId {
                    volume_id: volume_id.into(),
                    reason
                })
            );
        }
        assert!(iso9660("sixteen-chars-ok", &[]).is_ok());
    }

    #[test]
    fn bad_file_names_are_refused() {
        let long = "x".repeat(65);
        for (name, reason) in [
            ("", "it is empty"),
            (".", "`.` and `..` name directories"),
            ("..", "`.` and `..` name directories"),
            (long.as_str(), "it is longer than 64 characters"),
            (
                "dir/file",
                "only letters, digits, `.`, `_` and `-` are allowed",
            ),
            (
                "two words",
                "only letters, digits, `.`, `_` and `-` are allowed",
            ),
            (
                "grüße",
                "only letters, digits, `.`, `_` and `-` are allowed",
            ),
        ] {
            let err = iso9660("cidata", &[(name, b"")]).unwrap_err();
            assert_eq!(
                err,
                IsoError::InvalidFileName {
                    name: name.into(),
                    reason
                }
            );
        }
        assert!(iso9660("cidata", &[("x".repeat(64).as_str(), b"")]).is_ok());
    }

    #[test]
    fn duplicates_too_many_and_too_large_are_refused() {
        let err = iso9660("cidata", &[("a", b"1"), ("b", b""), ("a", b"2")]).unwrap_err();
        assert_eq!(err.to_string(), "file name `a` is given twice");

        let names: Vec<String> = (0..=MAX_FILES).map(|idx| format!("f{idx}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        let err = iso9660("cidata", &files).unwrap_err();
        assert_eq!(
            err.to_string(),
            "257 files given, an image holds at most 256"
        );
        assert!(iso9660("cidata", &files[..MAX_FILES]).is_ok());

        let err = data_length("big.img", u32::MAX as usize + 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "file `big.img` is 4294967296 bytes, an ISO 9660 extent holds at most 4294967295"
        );
        assert_eq!(data_length("max.img", u32::MAX as usize), Ok(u32::MAX));
    }

    // --- the seed ---

    fn seed() -> Seed {
        Seed {
            hostname: "web-1".into(),
            user_data: Some("#cloud-config\npackages: [nginx]\n".into()),
            vendor_data: None,
            network_config: Some("version: 2\nethernets: {}\n".into()),
        }
    }

    #[test]
    fn meta_data_names_the_instance_and_host() {
        // Pinned: a new instance-id makes cloud-init treat every VM as a new instance.
        assert_eq!(
            seed().meta_data().unwrap(),
            "instance-id: \"proxfleet-8b4c8eba2f99d63d\"\nlocal-hostname: \"web-1\"\n"
        );
    }

    #[test]
    fn instance_id_changes_with_any_content() {
        let base = seed();
        let mut ids = BTreeSet::from([base.instance_id()]);
        let variants = [
            Seed {
                hostname: "web-2".into(),
                ..base.clone()
            },
            Seed {
                user_data: None,
                ..base.clone()
            },
            Seed {
                vendor_data: Some(String::new()),
                ..base.clone()
            },
            Seed {
                network_config: None,
                ..base.clone()
            },
            // The same text in another file is another seed.
            Seed {
                user_data: None,
                vendor_data: base.user_data.clone(),
                ..base.clone()
            },
        ];
        for variant in &variants {
            assert!(ids.insert(variant.instance_id()), "{variant:?}");
        }
        assert_eq!(seed().instance_id(), base.instance_id());
    }

    #[test]
    fn the_seed_iso_is_named_by_its_content() {
        let iso = seed().build().unwrap();
        let digest = hex::encode(sha2::Sha256::digest(&iso.bytes));
        assert_eq!(iso.file_name, format!("proxfleet-ci-{}.iso", &digest[..12]));
        assert_eq!(iso.instance_id, seed().instance_id());
        assert_eq!(seed().build().unwrap(), iso, "deterministic");
        assert!(format!("{iso:?}").contains(&format!("<{} bytes>", iso.bytes.len())));
        assert!(!format!("{:?}", seed()).contains("nginx"), "{:?}", seed());
        assert_eq!(sector(&iso.bytes, 16)[40..46], *b"cidata");
        let files = files_in(&iso.bytes, 16);
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["meta-data", "network-config", "user-data"]);
        assert_eq!(files[0].1, seed().meta_data().unwrap().as_bytes());

        // cloud-init requires user-data: an empty one is written when there is none.
        let bare = Seed {
            hostname: "web-1".into(),
            user_data: None,
            vendor_data: None,
            network_config: None,
        };
        let files = files_in(&bare.build().unwrap().bytes, 17);
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["meta-data", "user-data"]);
        assert!(files[1].1.is_empty());
    }

    #[test]
    fn bad_hostnames_are_refused() {
        for hostname in ["", "web_1", "-web", "web-", "a..b", &"a".repeat(64), "wéb"] {
            let bad = Seed {
                hostname: hostname.to_string(),
                ..seed()
            };
            assert_eq!(
                bad.build(),
                Err(SeedError::InvalidHostname {
                    hostname: hostname.to_string()
                })
            );
        }
        for hostname in ["web-1", "web-1.example.com", "123", "true"] {
            let good = Seed {
                hostname: hostname.to_string(),
                ..seed()
            };
            assert!(good.build().is_ok(), "{hostname}");
        }
    }

    // --- user-data ---

    fn admin() -> DeclaredUser {
        DeclaredUser {
            name: "admin".into(),
            ssh_authorized_keys: vec!["ssh-ed25519 AAAAC3Nza admin@laptop\n".into()],
            password_hash: None,
        }
    }

    const ADMIN_BLOCK: &str = "# The user proxfleet declares.\nuser:\n  name: \"admin\"\n  lock_passwd: true\n  ssh_authorized_keys:\n    - \"ssh-ed25519 AAAAC3Nza admin@laptop\"\n";

    #[test]
    fn no_user_data_is_a_cloud_config_with_the_user() {
        assert_eq!(
            merge_user_data(None, &admin()).unwrap(),
            format!("#cloud-config\n{ADMIN_BLOCK}")
        );
        let with_hash = DeclaredUser {
            password_hash: Some("$6$salt$hash".into()),
            ssh_authorized_keys: Vec::new(),
            ..admin()
        };
        assert_eq!(
            merge_user_data(None, &with_hash).unwrap(),
            "#cloud-config\n# The user proxfleet declares.\nuser:\n  name: \"admin\"\n  lock_passwd: false\n  passwd: \"$6$salt$hash\"\n"
        );
    }

    #[test]
    fn cloud_config_keeps_its_text_and_gains_the_user() {
        let text = "#cloud-config\n# mine\nusers:\n  - default\n  - name: bob\nwrite_files:\n  - path: /etc/motd\n    permissions: 0644\n    content: |\n      hello\nssh_pwauth: yes";
        let merged = merge_user_data(Some(text), &admin()).unwrap();
        assert_eq!(merged, format!("{text}\n{ADMIN_BLOCK}"));
        assert_eq!(
            top_level_keys(&merged).unwrap(),
            ["users", "write_files", "ssh_pwauth", "user"]
        );
        // Trailing spaces or a CR after the header are still cloud-config.
        let crlf = "#cloud-config \r\npackages: [curl]\r\n";
        assert_eq!(
            merge_user_data(Some(crlf), &admin()).unwrap(),
            format!("{crlf}{ADMIN_BLOCK}")
        );
        let empty = "#cloud-config\n";
        assert_eq!(
            merge_user_data(Some(empty), &admin()).unwrap(),
            format!("{empty}{ADMIN_BLOCK}")
        );
    }

    #[test]
    fn other_formats_pass_through_unchanged() {
        for text in [
            "#!/bin/sh\necho hello\n",
            "#cloud-config-archive\n- type: text/cloud-config\n  content: 'a: 1'\n",
            "#include\nhttps://example.com/user-data\n",
            "Content-Type: multipart/mixed; boundary=\"x\"\n",
            " #cloud-config\na: 1\n",
            "",
        ] {
            assert_eq!(merge_user_data(Some(text), &admin()).unwrap(), text);
        }
    }

    #[test]
    fn cloud_config_that_cannot_take_the_user_is_refused() {
        let err = merge_user_data(Some("#cloud-config\nuser: ubuntu\n"), &admin()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "user-data sets `user`, which proxfleet sets for the declared user `admin`: declare the user in one place"
        );
        for text in [
            "#cloud-config\n- a\n- b\n",
            "#cloud-config\na: [1\n",
            "#cloud-config\njust text\n",
        ] {
            let err = merge_user_data(Some(text), &admin()).unwrap_err();
            assert!(
                matches!(err, SeedError::UserDataNotMapping { .. }),
                "{text}: {err}"
            );
        }
        for text in [
            "#cloud-config\n{a: 1}\n",
            "#cloud-config\na: 1\n...\n",
            "#cloud-config\n  a: 1\n",
        ] {
            let err = merge_user_data(Some(text), &admin()).unwrap_err();
            assert!(
                matches!(err, SeedError::UserDataNotMergeable { .. }),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn bad_declared_users_are_refused() {
        for name in ["", "Admin", "1admin", "ad min", &"a".repeat(33)] {
            let user = DeclaredUser {
                name: name.to_string(),
                ..admin()
            };
            assert_eq!(
                merge_user_data(None, &user),
                Err(SeedError::InvalidUserName {
                    name: name.to_string()
                })
            );
        }
        let plain = DeclaredUser {
            password_hash: Some("hunter2".into()),
            ..admin()
        };
        assert!(!format!("{plain:?}").contains("hunter2"), "{plain:?}");
        let err = merge_user_data(None, &plain).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(
            err,
            SeedError::InvalidPasswordHash {
                user: "admin".into()
            }
        );
        for (key, reason) in [
            ("  ", "it is empty"),
            (
                "ssh-ed25519 AAAA\nssh-rsa BBBB",
                "it has a line break or another control character",
            ),
        ] {
            let user = DeclaredUser {
                ssh_authorized_keys: vec!["ssh-ed25519 AAAA".into(), key.into()],
                ..admin()
            };
            assert_eq!(
                merge_user_data(None, &user),
                Err(SeedError::InvalidSshKey {
                    user: "admin".into(),
                    index: 2,
                    reason
                })
            );
        }
    }

    #[test]
    fn yaml_quoting_escapes_what_yaml_would_read_otherwise() {
        assert_eq!(yaml_quoted("yes"), "\"yes\"");
        assert_eq!(yaml_quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(yaml_quoted("a\nb\tc\u{7}"), "\"a\\nb\\tc\\u0007\"");
        assert_eq!(yaml_quoted("\u{fffe}é😀"), "\"\\ufffeé😀\"");
    }

    // --- network-config ---

    fn v4(text: &str) -> ipnet::Ipv4Net {
        text.parse().unwrap()
    }

    fn v6(text: &str) -> ipnet::Ipv6Net {
        text.parse().unwrap()
    }

    fn interface(name: &str) -> Interface {
        Interface {
            name: name.into(),
            mac: None,
            ipv4: Ipv4Config::None,
            ipv6: Ipv6Config::None,
            nameservers: Vec::new(),
            search: Vec::new(),
        }
    }

    #[test]
    fn network_config_renders_version_2() {
        let interfaces = [
            Interface {
                mac: Some("BC:24:11:0A:00:01".parse().unwrap()),
                ipv4: Ipv4Config::Static {
                    addresses: vec![v4("192.0.2.10/24"), v4("198.51.100.10/25")],
                    gateway: Some("192.0.2.1".parse().unwrap()),
                },
                ipv6: Ipv6Config::Static {
                    addresses: vec![v6("2001:db8::10/64")],
                    gateway: Some("2001:db8::1".parse().unwrap()),
                },
                nameservers: vec![
                    "192.0.2.53".parse().unwrap(),
                    "2001:db8::53".parse().unwrap(),
                ],
                search: vec!["example.com".into(), "lab.example.com".into()],
                ..interface("eth0")
            },
            Interface {
                ipv4: Ipv4Config::Dhcp,
                ipv6: Ipv6Config::Dhcp,
                ..interface("eth1")
            },
            Interface {
                ipv6: Ipv6Config::Slaac,
                search: vec!["example.org".into()],
                ..interface("ens20")
            },
        ];
        let text = network_config(&interfaces).unwrap();
        assert_eq!(
            text,
            r#"version: 2
ethernets:
  "eth0":
    match:
      macaddress: "bc:24:11:0a:00:01"
    set-name: "eth0"
    addresses:
      - "192.0.2.10/24"
      - "198.51.100.10/25"
      - "2001:db8::10/64"
    gateway4: "192.0.2.1"
    gateway6: "2001:db8::1"
    nameservers:
      addresses:
        - "192.0.2.53"
        - "2001:db8::53"
      search:
        - "example.com"
        - "lab.example.com"
  "eth1":
    dhcp4: true
    dhcp6: true
  "ens20":
    accept-ra: true
    nameservers:
      search:
        - "example.org"
"#
        );
        let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            parsed["ethernets"]["eth0"]["addresses"][2],
            "2001:db8::10/64"
        );
        assert_eq!(network_config(&[]).unwrap(), "version: 2\nethernets: {}\n");
    }

    #[test]
    fn bad_network_configs_are_refused() {
        let mac: MacAddress = "bc:24:11:00:00:01".parse().unwrap();
        let cases = [
            (
                vec![interface("")],
                SeedError::InvalidInterfaceName { name: "".into() },
            ),
            (
                vec![interface("a-very-long-name0")],
                SeedError::InvalidInterfaceName {
                    name: "a-very-long-name0".into(),
                },
            ),
            (
                vec![interface("eth 0")],
                SeedError::InvalidInterfaceName {
                    name: "eth 0".into(),
                },
            ),
            (
                vec![interface("eth0"), interface("eth0")],
                SeedError::DuplicateInterface {
                    name: "eth0".into(),
                },
            ),
            (
                vec![
                    Interface {
                        mac: Some(mac),
                        ..interface("eth0")
                    },
                    Interface {
                        mac: Some(mac),
                        ..interface("eth1")
                    },
                ],
                SeedError::DuplicateMac { mac },
            ),
            (
                vec![Interface {
                    ipv4: Ipv4Config::Static {
                        addresses: Vec::new(),
                        gateway: None,
                    },
                    ..interface("eth0")
                }],
                SeedError::StaticWithoutAddress {
                    interface: "eth0".into(),
                    family: "IPv4",
                },
            ),
            (
                vec![Interface {
                    ipv6: Ipv6Config::Static {
                        addresses: Vec::new(),
                        gateway: None,
                    },
                    ..interface("eth0")
                }],
                SeedError::StaticWithoutAddress {
                    interface: "eth0".into(),
                    family: "IPv6",
                },
            ),
            (
                vec![Interface {
                    search: vec!["bad domain".into()],
                    ..interface("eth0")
                }],
                SeedError::InvalidSearchDomain {
                    interface: "eth0".into(),
                    domain: "bad domain".into(),
                },
            ),
        ];
        for (interfaces, expected) in cases {
            assert_eq!(network_config(&interfaces), Err(expected));
        }
    }

    #[test]
    fn mac_addresses_parse_in_either_case_and_print_lower_case() {
        let mac: MacAddress = "BC-24-11-AB-cd-0F".parse().unwrap();
        assert_eq!(mac, MacAddress([0xbc, 0x24, 0x11, 0xab, 0xcd, 0x0f]));
        assert_eq!(mac.to_string(), "bc:24:11:ab:cd:0f");
        for text in [
            "",
            "bc:24:11:ab:cd",
            "bc:24:11:ab:cd:0f:00",
            "bc:24:11:ab:cd:g0",
            "bc:24:11:ab:cd:0",
            "+c:24:11:ab:cd:0f",
        ] {
            assert_eq!(
                text.parse::<MacAddress>(),
                Err(SeedError::InvalidMac { text: text.into() })
            );
        }
    }
}
