//! Seed ISOs read back by independent readers: `isoinfo` (genisoimage's, the tool family that
//! makes Proxmox's own cloud-init drives) reads the volume descriptors, lists the ISO 9660, Rock
//! Ridge and Joliet trees and extracts every file from each; `xorriso` (libisofs) extracts the
//! Rock Ridge, Joliet and plain ISO 9660 trees again. Both tools must be installed (`.ci/run`
//! installs them): a missing tool fails the test, it does not skip it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use proxfleet::nocloud::{
    self, DeclaredUser, Interface, Ipv4Addressing, Ipv6Addressing, MacAddress, Seed,
};

/// Run a reader and return its standard output; fail the test if it is missing or fails.
fn run(program: &str, args: &[&str], package: &str) -> Vec<u8> {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run {program} ({err}): install it with `apt-get install -y {package}`")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn isoinfo(args: &[&str]) -> Vec<u8> {
    run("isoinfo", args, "genisoimage")
}

fn isoinfo_text(args: &[&str]) -> String {
    String::from_utf8(isoinfo(args)).expect("isoinfo prints UTF-8")
}

/// A file as `isoinfo -l` lists it: mode, size, name.
#[derive(Debug, PartialEq, Eq)]
struct Listed {
    mode: String,
    size: u64,
    name: String,
}

/// The files (not `.` and `..`) of an `isoinfo -l` listing of the root directory, like
/// `-r--r--r--   1    0    0   15 Jan  1 1970 [     31 00]  meta-data `.
fn listing(text: &str) -> Vec<Listed> {
    text.lines()
        .filter_map(|line| {
            let (fields, rest) = line.split_once('[')?;
            let (_, name) = rest.split_once(']')?;
            let fields: Vec<&str> = fields.split_whitespace().collect();
            let name = name.trim().to_string();
            (name != "." && name != "..").then(|| Listed {
                mode: fields[0].to_string(),
                size: fields[4].parse().expect("a size"),
                name,
            })
        })
        .collect()
}

fn seed() -> Seed {
    let user_data = nocloud::merge_user_data(
        Some("#cloud-config\npackages:\n  - nginx\nwrite_files:\n  - path: /etc/motd\n    permissions: 0644\n    content: hello\n"),
        &DeclaredUser {
            name: "admin".into(),
            ssh_authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxP6VwNh admin@laptop".into()],
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
        nameservers: vec!["192.0.2.53".parse().expect("an address")],
        search: vec!["example.com".into()],
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
fn seed_iso_reads_back_with_isoinfo() {
    let seed = seed();
    let iso = seed.build().expect("the seed builds");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(&iso.file_name);
    std::fs::write(&path, &iso.bytes).unwrap();
    let image = path.to_str().unwrap();

    let descriptors = isoinfo_text(&["-d", "-i", image]);
    for line in [
        "Volume id: cidata".to_string(),
        "Logical block size is: 2048".to_string(),
        format!("Volume size is: {}", iso.bytes.len() / 2048),
        "Joliet with UCS level 3 found".to_string(),
        "Rock Ridge signatures version 1 found".to_string(),
    ] {
        assert!(
            descriptors.lines().any(|l| l.trim() == line),
            "`{line}` in:\n{descriptors}"
        );
    }

    let meta_data = seed.meta_data().unwrap();
    let files: BTreeMap<&str, (&str, &[u8])> = BTreeMap::from([
        ("meta-data", ("META_DAT.;1", meta_data.as_bytes())),
        (
            "network-config",
            (
                "NETWORK_.;1",
                seed.network_config.as_deref().unwrap().as_bytes(),
            ),
        ),
        (
            "user-data",
            ("USER_DAT.;1", seed.user_data.as_deref().unwrap().as_bytes()),
        ),
        (
            "vendor-data",
            (
                "VENDOR_D.;1",
                seed.vendor_data.as_deref().unwrap().as_bytes(),
            ),
        ),
    ]);
    let expected = |iso_names: bool, mode: &str| -> Vec<Listed> {
        let mut listed: Vec<Listed> = files
            .iter()
            .map(|(name, (iso_name, content))| Listed {
                mode: mode.to_string(),
                size: content.len() as u64,
                name: if iso_names { iso_name } else { name }.to_string(),
            })
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        listed
    };
    // Without Rock Ridge there are no modes: isoinfo prints `----------`.
    assert_eq!(
        listing(&isoinfo_text(&["-l", "-i", image])),
        expected(true, "----------")
    );
    assert_eq!(
        listing(&isoinfo_text(&["-l", "-R", "-i", image])),
        expected(false, "-r--r--r--")
    );
    assert_eq!(
        listing(&isoinfo_text(&["-l", "-J", "-i", image])),
        expected(false, "----------")
    );

    for (name, (iso_name, content)) in &files {
        let rock_ridge = isoinfo(&["-R", "-x", &format!("/{name}"), "-i", image]);
        assert_eq!(rock_ridge, *content, "{name} by its Rock Ridge name");
        let joliet = isoinfo(&["-J", "-x", &format!("/{name}"), "-i", image]);
        assert_eq!(joliet, *content, "{name} by its Joliet name");
        let plain = isoinfo(&["-x", &format!("/{iso_name}"), "-i", image]);
        assert_eq!(plain, *content, "{name} by its ISO 9660 name {iso_name}");
    }
}

/// Every file under `dir`, by name.
fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

/// Extract the whole image with xorriso, reading the tree `read_fs` selects.
fn xorriso_extract(image: &Path, read_fs: &str, out: &Path) -> BTreeMap<String, Vec<u8>> {
    run(
        "xorriso",
        &[
            "-abort_on",
            "WARNING",
            "-read_fs",
            read_fs,
            "-indev",
            image.to_str().unwrap(),
            "-osirrox",
            "on",
            "-extract",
            "/",
            out.to_str().unwrap(),
        ],
        "xorriso",
    );
    let tree = read_tree(out);
    // The extracted root takes the image's read-only mode; make it removable again.
    let writable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(out, writable).unwrap();
    tree
}

/// Many files with sizes around sector boundaries, whose ISO 9660 names all collide: the
/// directories span several sectors and the names need counters.
#[test]
fn many_files_read_back_with_isoinfo_and_xorriso() {
    let sizes = [0usize, 1, 2047, 2048, 2049, 4096, 5000];
    let files: BTreeMap<String, Vec<u8>> = (0..60)
        .map(|file_idx| {
            let size = sizes[file_idx % sizes.len()];
            let content = (0..size)
                .map(|byte_idx| (byte_idx * 7 + file_idx) as u8)
                .collect();
            (format!("cloud-config-part-{file_idx:02}.yaml"), content)
        })
        .chain([("zz-empty".to_string(), Vec::new())])
        .collect();
    let pairs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(name, content)| (name.as_str(), content.as_slice()))
        .collect();
    let bytes = nocloud::iso9660("cidata", &pairs).expect("the image is written");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.iso");
    std::fs::write(&path, &bytes).unwrap();
    let image = path.to_str().unwrap();

    let rock_ridge = listing(&isoinfo_text(&["-l", "-R", "-i", image]));
    let listed: BTreeMap<String, u64> = rock_ridge.into_iter().map(|l| (l.name, l.size)).collect();
    let sizes: BTreeMap<String, u64> = files
        .iter()
        .map(|(name, content)| (name.clone(), content.len() as u64))
        .collect();
    assert_eq!(listed, sizes, "Rock Ridge names and sizes");
    let joliet = listing(&isoinfo_text(&["-l", "-J", "-i", image]));
    let listed: BTreeMap<String, u64> = joliet.into_iter().map(|l| (l.name, l.size)).collect();
    assert_eq!(listed, sizes, "Joliet names and sizes");
    let plain = listing(&isoinfo_text(&["-l", "-i", image]));
    let iso_names: std::collections::BTreeSet<&str> =
        plain.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        iso_names.len(),
        files.len(),
        "unique ISO 9660 names: {iso_names:?}"
    );
    assert!(iso_names.contains("CLOUD_CO.YAM;1"), "{iso_names:?}");
    assert!(iso_names.contains("CLOUD000.YAM;1"), "{iso_names:?}");

    for (name, content) in &files {
        assert_eq!(
            isoinfo(&["-R", "-x", &format!("/{name}"), "-i", image]),
            *content,
            "{name}"
        );
    }

    for read_fs in ["any", "norock"] {
        let out = dir.path().join(format!("extract-{read_fs}"));
        assert_eq!(
            xorriso_extract(&path, read_fs, &out),
            files,
            "xorriso -read_fs {read_fs}"
        );
    }
    let out = dir.path().join("extract-ecma119");
    let extracted = xorriso_extract(&path, "ecma119", &out);
    assert_eq!(extracted.len(), files.len(), "{:?}", extracted.keys());
    let mut extracted_contents: Vec<&Vec<u8>> = extracted.values().collect();
    let mut contents: Vec<&Vec<u8>> = files.values().collect();
    extracted_contents.sort();
    contents.sort();
    assert_eq!(extracted_contents, contents, "contents by ISO 9660 names");
}

#[test]
fn xorriso_reads_the_seed_volume_id() {
    let iso = seed().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(&iso.file_name);
    std::fs::write(&path, &iso.bytes).unwrap();
    let info = run(
        "xorriso",
        &["-indev", path.to_str().unwrap(), "-pvd_info"],
        "xorriso",
    );
    let info = String::from_utf8(info).unwrap();
    assert!(
        info.lines()
            .any(|line| line.starts_with("Volume Id") && line.trim_end().ends_with(": cidata")),
        "{info}"
    );
}
