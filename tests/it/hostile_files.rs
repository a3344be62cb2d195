//! Files a spec names that must not be read in bulk or echoed: devices, FIFOs, directories,
//! `/proc` files, oversized, binary and non-UTF-8 files, and files of secrets. Each is run through
//! the real binary with a canary token in its environment and in a file; the output never holds it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const CANARY: &str = "CANARY-7d41c2e9-never-print-me";

const TEMPLATE_HEAD: &str = "\
images:
  debian-12:
    url: https://example.com/debian-12.qcow2
    checksum: sha256:0000000000000000000000000000000000000000000000000000000000000000
    storage: local
    node: pve1
templates:
  base:
    vmid: 9000
    node: pve1
    image: debian-12
    disk:
      storage: local-lvm
      size: 20G
    cloud_init:
      user: debian
";

/// `proxfleet validate --file spec.yaml` in `dir` with the canary in the environment; killed (and the
/// test failed) if it has not finished in ten seconds, as it would if it read a device or a FIFO.
fn validate_with_canary(dir: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_proxfleet"))
        .args(["validate", "--file", "spec.yaml"])
        .current_dir(dir)
        .env_remove("PROXMOX_VE_ENDPOINT")
        .env_remove("PROXMOX_VE_API_TOKEN")
        .env("PROXFLEET_TEST_CANARY_TOKEN", CANARY)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let started = Instant::now();
    while child.try_wait().expect("child waits").is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("validate did not finish: it is reading what it should refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    (output.status.code().unwrap_or(-1), all)
}

/// The spec in `dir` with `line` added to the template's cloud_init.
fn write_spec(dir: &Path, line: &str) {
    std::fs::write(
        dir.join("spec.yaml"),
        format!("{TEMPLATE_HEAD}      {line}\n"),
    )
    .unwrap();
}

fn assert_refused(dir: &Path, line: &str, expected: &str) {
    write_spec(dir, line);
    let (code, output) = validate_with_canary(dir);
    assert_eq!(code, 1, "{line}: {output}");
    assert!(
        !output.contains(CANARY) && !output.contains("CANARY"),
        "{line}: the output holds the canary: {output}"
    );
    assert!(
        output.contains(expected),
        "{line}: expected `{expected}` in: {output}"
    );
}

#[test]
fn hostile_files_are_refused_without_reading_them_or_echoing_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let fifo = path.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::create_dir(path.join("subdir")).unwrap();
    std::fs::write(path.join("huge"), vec![b'#'; (1 << 20) + 1]).unwrap();
    std::fs::write(path.join("binary"), b"#cloud-config\n\0\x01\x02").unwrap();
    std::fs::write(path.join("latin1"), b"#cloud-config\n# caf\xe9\n").unwrap();
    let secrets = format!("PROXMOX_VE_API_TOKEN=root@pam!ci={CANARY}\nOTHER=1\n");
    std::fs::write(path.join("secrets.env"), &secrets).unwrap();
    std::fs::write(
        path.join("broken.cloud-config"),
        format!("#cloud-config\ntoken: \"{CANARY}\n  - : [\n"),
    )
    .unwrap();
    std::fs::write(path.join("network.yaml"), &secrets).unwrap();
    let cases = [
        ("user_data: /dev/zero", "it is a device, not a regular file"),
        ("user_data: fifo", "it is a FIFO, not a regular file"),
        (
            "vendor_data: subdir",
            "it is a directory, not a regular file",
        ),
        ("user_data: /proc/self/environ", "a /proc or /sys file"),
        ("user_data: huge", "more than the 1 MiB allowed"),
        ("user_data: binary", "it is binary"),
        ("user_data: latin1", "it is not UTF-8 text"),
        (
            "user_data: secrets.env",
            "its first line is not a cloud-init format",
        ),
        (
            "user_data: broken.cloud-config",
            "its #cloud-config is not YAML",
        ),
        ("network_data: network.yaml", "network_data"),
        ("password: file:/dev/zero", "it is a device"),
        ("password: file:/proc/self/environ", "a /proc or /sys file"),
        ("password: file:fifo", "it is a FIFO"),
        (
            "ssh_key_files: [/proc/self/environ]",
            "a /proc or /sys file",
        ),
        ("ssh_key_files: [secrets.env]", "not an OpenSSH public key"),
        ("ssh_key_files: [fifo]", "it is a FIFO"),
    ];
    for (line, expected) in cases {
        assert_refused(path, line, expected);
    }
}

#[test]
fn a_spec_file_that_is_a_fifo_or_a_device_is_refused_by_load() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("spec.yaml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let err = proxfleet::spec::load(&fifo).expect_err("a FIFO is no spec");
    assert!(
        err.to_string().contains("it is a FIFO, not a regular file"),
        "{err}"
    );
    let err = proxfleet::spec::load(Path::new("/dev/zero")).expect_err("a device is no spec");
    assert!(
        err.to_string()
            .contains("it is a device, not a regular file"),
        "{err}"
    );
}

/// The spec itself hostile: an alias bomb, a `/proc` file, a sparse file larger than the cap, and
/// private keys (inline and in a key file) holding the canary. Each is refused quickly, exit 1,
/// and the canary never shows.
#[test]
fn hostile_specs_are_refused_without_expanding_them_or_echoing_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let spec = path.join("spec.yaml");
    let run = |expected: &str| {
        let (code, output) = validate_with_canary(path);
        assert_eq!(code, 1, "{output}");
        assert!(!output.contains("CANARY"), "the canary shows: {output}");
        assert!(
            output.contains(expected),
            "expected `{expected}` in: {output}"
        );
    };

    // Billion laughs: nine aliases of nine aliases, nine levels deep.
    let mut bomb = String::from(
        "a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
    );
    for level in 1..10 {
        let prev = format!("*a{}", level - 1);
        let items = [prev.as_str(); 9].join(", ");
        bomb.push_str(&format!("a{level}: &a{level} [{items}]\n"));
    }
    std::fs::write(&spec, &bomb).unwrap();
    run("spec.yaml");

    let inline_private = format!(
        "{TEMPLATE_HEAD}      ssh_keys:\n        - \"-----BEGIN OPENSSH PRIVATE KEY----- {CANARY} -----END OPENSSH PRIVATE KEY-----\"\n"
    );
    std::fs::write(&spec, inline_private).unwrap();
    run("this is a private key");

    std::fs::write(
        path.join("id_ed25519"),
        format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{CANARY}\n-----END OPENSSH PRIVATE KEY-----\n"
        ),
    )
    .unwrap();
    write_spec(path, "ssh_key_files: [id_ed25519]");
    run("this is a private key");

    std::fs::remove_file(&spec).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", &spec).unwrap();
    run("a /proc or /sys file");

    std::fs::remove_file(&spec).unwrap();
    let sparse = std::fs::File::create(&spec).unwrap();
    sparse.set_len((64 << 20) + 1).unwrap();
    run("more than the");
}
