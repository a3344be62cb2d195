//! An independent reader of the seed ISOs, written from ECMA-119 (ISO 9660), SUSP/RRIP 1.12
//! (Rock Ridge) and the Joliet specification alone, sharing no code with `nocloud`'s writer. It
//! needs no system tool, so the main path (every seed proxfleet makes reads back in all three
//! trees) is checked on any machine; `nocloud.rs` checks the same with `isoinfo` and `xorriso`
//! where they are installed.
//!
//! It reads what a seed has: one flat root directory of small files. Subdirectories, multi-extent
//! files and Rock Ridge continuation areas (`CE`) are refused, not guessed at.

use std::collections::BTreeMap;

use proxfleet::nocloud::{
    self, DeclaredUser, Interface, Ipv4Addressing, Ipv6Addressing, MacAddress, Seed,
};

const SECTOR: usize = 2048;

/// Which directory tree to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// The primary volume descriptor's tree, with ISO 9660 names (`USER_DAT.;1`).
    Plain,
    /// The same tree, with the names of Rock Ridge `NM` entries (`user-data`).
    RockRidge,
    /// The supplementary (Joliet) volume descriptor's tree, with UCS-2 names.
    Joliet,
}

/// A read ISO image: its volume id and, per tree, the root directory's files by name.
#[derive(Debug)]
pub struct Image {
    pub volume_id: String,
    pub n_sectors: usize,
    pub has_rock_ridge: bool,
    pub trees: BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>,
}

fn le_u32(bytes: &[u8], at: usize) -> Result<usize, String> {
    let field = bytes
        .get(at..at + 4)
        .ok_or_else(|| format!("field at {at} is past the end"))?;
    Ok(u32::from_le_bytes([field[0], field[1], field[2], field[3]]) as usize)
}

/// Both-endian 32-bit fields (7.3.3) must agree: a writer that gets one half wrong is caught.
fn both_u32(bytes: &[u8], at: usize) -> Result<usize, String> {
    let little = le_u32(bytes, at)?;
    let big = bytes
        .get(at + 4..at + 8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| format!("field at {at} is past the end"))?;
    if little != big {
        return Err(format!("both-endian field at {at}: {little} != {big}"));
    }
    Ok(little)
}

fn sector(iso: &[u8], index: usize) -> Result<&[u8], String> {
    iso.get(index * SECTOR..(index + 1) * SECTOR)
        .ok_or_else(|| format!("sector {index} is past the end of the image"))
}

/// One directory record (9.1).
struct Record<'a> {
    extent: usize,
    size: usize,
    is_dir: bool,
    name: &'a [u8],
    system_use: &'a [u8],
}

fn records(iso: &[u8], extent: usize, size: usize) -> Result<Vec<Record<'_>>, String> {
    let mut out = Vec::new();
    for index in 0..size.div_ceil(SECTOR) {
        let block = sector(iso, extent + index)?;
        let mut at = 0;
        // Records never cross a sector; a zero length byte pads to the next one (6.8.1.1).
        while at < SECTOR && block[at] != 0 {
            let length = usize::from(block[at]);
            let record = block
                .get(at..at + length)
                .filter(|r| r.len() >= 34)
                .ok_or_else(|| format!("directory record at {at} of sector {extent} is cut"))?;
            let name_len = usize::from(record[32]);
            let name = record
                .get(33..33 + name_len)
                .ok_or("name past the record")?;
            let padded = 33 + name_len + usize::from(name_len % 2 == 0);
            if record[25] & 0x80 != 0 {
                return Err("multi-extent files are not read".into());
            }
            out.push(Record {
                extent: both_u32(record, 2)?,
                size: both_u32(record, 10)?,
                is_dir: record[25] & 0x02 != 0,
                name,
                system_use: record.get(padded..).unwrap_or_default(),
            });
            at += length;
        }
    }
    Ok(out)
}

/// The Rock Ridge name (`NM`) of a record's system use area, if any (RRIP 4.1.4).
fn rock_ridge_name(system_use: &[u8]) -> Result<Option<String>, String> {
    let mut at = 0;
    let mut name = None;
    while at + 4 <= system_use.len() {
        let signature = &system_use[at..at + 2];
        let length = usize::from(system_use[at + 2]);
        if length < 4 || at + length > system_use.len() {
            break;
        }
        let data = &system_use[at + 4..at + length];
        match signature {
            b"NM" => {
                let flags = data.first().copied().unwrap_or(0);
                if flags & 0x01 != 0 {
                    return Err("NM continues in another entry: not read".into());
                }
                let text = std::str::from_utf8(data.get(1..).unwrap_or_default())
                    .map_err(|e| format!("NM is not UTF-8: {e}"))?;
                name = Some(text.to_string());
            }
            b"CE" => return Err("continuation areas are not read".into()),
            b"ST" => break,
            _ => {}
        }
        at += length;
    }
    Ok(name)
}

/// Whether the root's `.` record announces Rock Ridge: SUSP's `SP` first (SUSP 5.3), and an `ER`
/// naming RRIP (RRIP 1.12 5.1: `RRIP_1991A`, or `IEEE_P1282`/`IEEE_1282`), there or in the
/// continuation area a `CE` points to (SUSP 5.1).
fn announces_rock_ridge(iso: &[u8], system_use: &[u8]) -> Result<bool, String> {
    if !system_use.starts_with(b"SP") {
        return Ok(false);
    }
    let mut area = system_use.to_vec();
    for _ in 0..8 {
        let mut at = 0;
        let mut next = None;
        while at + 4 <= area.len() {
            let length = usize::from(area[at + 2]);
            if length < 4 || at + length > area.len() {
                break;
            }
            let entry = &area[at..at + length];
            match &entry[..2] {
                b"ER" => {
                    let id_len = usize::from(entry[4]);
                    let id = entry.get(8..8 + id_len).unwrap_or_default();
                    if matches!(id, b"RRIP_1991A" | b"IEEE_P1282" | b"IEEE_1282") {
                        return Ok(true);
                    }
                }
                b"CE" => {
                    let start = both_u32(entry, 4)? * SECTOR + both_u32(entry, 12)?;
                    let len = both_u32(entry, 20)?;
                    next = Some(
                        iso.get(start..start + len)
                            .ok_or("a continuation area past the end of the image")?
                            .to_vec(),
                    );
                }
                b"ST" => break,
                _ => {}
            }
            at += length;
        }
        match next {
            Some(continued) => area = continued,
            None => return Ok(false),
        }
    }
    Err("continuation areas loop".into())
}

fn joliet_name(raw: &[u8]) -> Result<String, String> {
    if !raw.len().is_multiple_of(2) {
        return Err("a Joliet name has an odd length".into());
    }
    let units: Vec<u16> = raw
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    let name = String::from_utf16(&units).map_err(|e| format!("Joliet name: {e}"))?;
    Ok(name.trim_end_matches(";1").to_string())
}

fn read_tree(
    iso: &[u8],
    descriptor: &[u8],
    tree: Tree,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let root = &descriptor[156..190];
    let mut files = BTreeMap::new();
    for record in records(iso, both_u32(root, 2)?, both_u32(root, 10)?)? {
        if record.name == [0] || record.name == [1] {
            continue; // `.` and `..`
        }
        if record.is_dir {
            return Err("a seed has no subdirectories".into());
        }
        let name = match tree {
            Tree::Plain => String::from_utf8(record.name.to_vec()).map_err(|e| e.to_string())?,
            Tree::RockRidge => {
                rock_ridge_name(record.system_use)?.ok_or("a file without a Rock Ridge name")?
            }
            Tree::Joliet => joliet_name(record.name)?,
        };
        let start = record.extent * SECTOR;
        let content = iso
            .get(start..start + record.size)
            .ok_or_else(|| format!("{name}'s data is past the end of the image"))?;
        if files.insert(name.clone(), content.to_vec()).is_some() {
            return Err(format!("{name} is listed twice"));
        }
    }
    Ok(files)
}

/// Read an image's volume descriptors and its three trees.
pub fn read(iso: &[u8]) -> Result<Image, String> {
    if !iso.len().is_multiple_of(SECTOR) {
        return Err(format!("{} bytes is not whole sectors", iso.len()));
    }
    let mut primary = None;
    let mut joliet = None;
    for index in 16.. {
        let descriptor = sector(iso, index)?;
        if &descriptor[1..6] != b"CD001" {
            return Err(format!("sector {index} is not a volume descriptor"));
        }
        match descriptor[0] {
            1 => primary = Some(descriptor),
            // Joliet: a supplementary descriptor whose escape sequence names UCS-2 level 1-3.
            2 if matches!(&descriptor[88..91], b"%/@" | b"%/C" | b"%/E") => {
                joliet = Some(descriptor)
            }
            255 => break,
            _ => {}
        }
    }
    let primary = primary.ok_or("no primary volume descriptor")?;
    let joliet = joliet.ok_or("no Joliet descriptor")?;
    if u16::from_le_bytes([primary[128], primary[129]]) as usize != SECTOR {
        return Err("the logical block size is not 2048".into());
    }
    let n_sectors = both_u32(primary, 80)?;
    let root = &primary[156..190];
    let dot = records(iso, both_u32(root, 2)?, both_u32(root, 10)?)?;
    let has_rock_ridge = match dot.first() {
        Some(record) => announces_rock_ridge(iso, record.system_use)?,
        None => false,
    };
    let mut trees = BTreeMap::new();
    trees.insert("plain", read_tree(iso, primary, Tree::Plain)?);
    trees.insert("rock ridge", read_tree(iso, primary, Tree::RockRidge)?);
    trees.insert("joliet", read_tree(iso, joliet, Tree::Joliet)?);
    let volume_id = String::from_utf8_lossy(&primary[40..72])
        .trim_end()
        .to_string();
    Ok(Image {
        volume_id,
        n_sectors,
        has_rock_ridge,
        trees,
    })
}

/// A file of a seed ISO by its Rock Ridge name (what cloud-init's NoCloud reads); `None` when the
/// seed has no such file. An image that does not read back fails the test.
pub fn file(iso: &[u8], name: &str) -> Option<String> {
    let image = read(iso).unwrap_or_else(|e| panic!("the ISO reads back: {e}"));
    let content = image.trees["rock ridge"].get(name.trim_start_matches('/'))?;
    Some(String::from_utf8(content.clone()).expect("UTF-8 content"))
}

fn seed(n_extra_lines: usize) -> Seed {
    let mut user_data = String::from("#cloud-config\npackages:\n  - nginx\nruncmd:\n");
    for line in 0..n_extra_lines {
        user_data.push_str(&format!("  - [echo, line {line}]\n"));
    }
    let user_data = nocloud::merge_user_data(
        Some(&user_data),
        &DeclaredUser {
            name: "admin".into(),
            ssh_authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxP6VwNh a@b".into()],
            password_hash: None,
        },
    )
    .expect("the user-data merges");
    let network_config = nocloud::network_config(&[Interface {
        name: "eth0".into(),
        mac: Some("BC:24:11:00:00:01".parse::<MacAddress>().expect("a MAC")),
        ipv4: Ipv4Addressing::Static {
            addresses: vec!["192.0.2.10/24".parse().expect("a CIDR")],
            gateway: Some("192.0.2.1".parse().expect("an address")),
        },
        ipv6: Ipv6Addressing::Slaac,
        nameservers: vec![],
        search: vec![],
    }])
    .expect("the network-config renders");
    Seed {
        hostname: "web-1".into(),
        user_data: Some(user_data),
        vendor_data: Some("#cloud-config\npackage_upgrade: true\n".into()),
        network_config: Some(network_config),
    }
}

#[test]
fn every_tree_of_a_seed_holds_the_four_files_with_their_contents() {
    // Small files and ones over a sector, so extents and sizes are checked past one block.
    for n_extra_lines in [0, 300] {
        let seed = seed(n_extra_lines);
        let iso = seed.build().expect("the seed builds");
        let image = read(&iso.bytes).expect("the ISO reads back");
        assert_eq!(image.volume_id, "cidata");
        assert_eq!(image.n_sectors * SECTOR, iso.bytes.len());
        assert!(image.has_rock_ridge, "Rock Ridge announced in the root");
        let meta_data = seed.meta_data().expect("meta-data");
        let expected: BTreeMap<&str, &str> = BTreeMap::from([
            ("meta-data", meta_data.as_str()),
            ("network-config", seed.network_config.as_deref().unwrap()),
            ("user-data", seed.user_data.as_deref().unwrap()),
            ("vendor-data", seed.vendor_data.as_deref().unwrap()),
        ]);
        for tree in ["rock ridge", "joliet"] {
            let files: BTreeMap<&str, &str> = image.trees[tree]
                .iter()
                .map(|(name, content)| {
                    (name.as_str(), std::str::from_utf8(content).expect("UTF-8"))
                })
                .collect();
            assert_eq!(files, expected, "{tree} tree");
        }
        let plain: Vec<&str> = image.trees["plain"].keys().map(String::as_str).collect();
        assert_eq!(
            plain,
            ["META_DAT.;1", "NETWORK_.;1", "USER_DAT.;1", "VENDOR_D.;1"]
        );
        assert_eq!(
            image.trees["plain"]["USER_DAT.;1"],
            seed.user_data.as_deref().unwrap().as_bytes()
        );
        if n_extra_lines > 0 {
            assert!(seed.user_data.as_deref().unwrap().len() > SECTOR);
        }
    }
}

#[test]
fn the_reader_refuses_what_is_not_an_iso() {
    assert!(read(&[0; 100]).is_err(), "not whole sectors");
    assert!(read(&vec![0; 40 * SECTOR]).is_err(), "no descriptors");
    let mut iso = seed(0).build().expect("the seed builds").bytes;
    // The primary descriptor's volume size, little-endian half only: both-endian disagrees.
    iso[16 * SECTOR + 80] ^= 1;
    assert!(read(&iso).unwrap_err().contains("both-endian"));
}
