//! The ISO 9660 writer: one flat root directory of files, laid out as `genisoimage -iso-level
//! 3 -R -J` would, in memory and without a clock, so the same files give the same bytes. The
//! Rock Ridge names of the primary tree are in `rock_ridge`, the Joliet tree in `joliet`.
//!
//! Section numbers are ECMA-119 (4th edition, 2019, the same text as ISO 9660), SUSP 1.12
//! (System Use Sharing Protocol), RRIP 1.12 (Rock Ridge Interchange Protocol) and the Joliet
//! specification (Microsoft, 1995). Offsets in comments are 0-based; ECMA-119's BP is 1-based.
//!
//! The image is one flat root directory, laid out as:
//!
//! ```text
//!   sectors 0-15  system area (zeros)
//!   16            primary volume descriptor
//!   17            supplementary volume descriptor (Joliet)
//!   18            volume descriptor set terminator
//!   19, 20        primary path table, L (little-endian) and M (big-endian)
//!   21, 22        Joliet path table, L and M
//!   23 ..         primary root directory (ISO 9660 names + Rock Ridge entries)
//!   next          Rock Ridge continuation area (the `ER` entry)
//!   next ..       Joliet root directory
//!   next ..       file data, each file from a sector boundary, in file name order
//! ```

mod joliet;
#[cfg(test)]
pub(super) mod reader;
mod rock_ridge;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use joliet::{JOLIET_UCS2_LEVEL_3, joliet_root};
use rock_ridge::{primary_root, rrip_extension_reference};

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
