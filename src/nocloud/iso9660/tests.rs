//! The ISO writer's layout, names and refusals, read back with `reader`.

use super::joliet::ucs2;
use super::reader::{both32, files_in, read_directory, root_of, sector, susp_entries};
use super::rock_ridge::{RR_HAS_NM, RR_HAS_PX};
use super::*;

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
