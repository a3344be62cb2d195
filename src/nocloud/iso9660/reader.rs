//! A minimal ISO 9660 reader, to check the layout from the inside (the integration tests read
//! the images with isoinfo and xorriso).

use super::SECTOR_SIZE;

/// One sector of the image.
pub(in crate::nocloud) fn sector(image: &[u8], number: u32) -> &[u8] {
    let start = number as usize * SECTOR_SIZE;
    &image[start..start + SECTOR_SIZE]
}

/// A both-byte-order 32-bit field, checked to agree with itself.
pub(in crate::nocloud) fn both32(bytes: &[u8], at: usize) -> u32 {
    let le = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let be = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().unwrap());
    assert_eq!(le, be, "both-endian field at {at}");
    le
}

#[derive(Debug)]
pub(in crate::nocloud) struct Record {
    pub(in crate::nocloud) identifier: Vec<u8>,
    pub(in crate::nocloud) sector: u32,
    pub(in crate::nocloud) size: u32,
    pub(in crate::nocloud) flags: u8,
    pub(in crate::nocloud) system_use: Vec<u8>,
}

pub(in crate::nocloud) fn parse_record(bytes: &[u8]) -> Record {
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
pub(in crate::nocloud) fn read_directory(
    image: &[u8],
    extent_sector: u32,
    size: u32,
) -> Vec<Record> {
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
pub(in crate::nocloud) fn susp_entries(system_use: &[u8]) -> Vec<(String, Vec<u8>)> {
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

pub(in crate::nocloud) fn root_of(image: &[u8], descriptor: u32) -> Record {
    parse_record(&sector(image, descriptor)[156..190])
}

/// Files by the name each tree gives them: (Rock Ridge `NM` or Joliet name) → content.
pub(in crate::nocloud) fn files_in(image: &[u8], descriptor: u32) -> Vec<(String, Vec<u8>)> {
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
