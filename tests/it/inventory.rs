//! `show` and `inventory` after the quickstart, through the binary on the embedded simulator:
//! the five resources with the clones' addresses, the Ansible inventory in each form, and the
//! dynamic inventory read by a real `ansible-inventory --list` (skipped where Ansible is not
//! installed, required with `CI=true`).

use std::path::Path;

use serde_json::Value;

use super::common::{example, proxfleet, system_tool, text};

fn applied_quickstart() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = example("quickstart.yaml").display().to_string();
    let applied = proxfleet(
        dir.path(),
        &["--sim", "apply", "-f", &spec, "--auto-approve"],
    );
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    (dir, spec)
}

fn json_of(dir: &Path, args: &[&str]) -> Value {
    let run = proxfleet(dir, args);
    assert!(run.status.success(), "{args:?}: {}", text(&run.stderr));
    serde_json::from_slice(&run.stdout).expect("JSON output")
}

#[test]
fn show_lists_what_the_project_owns_with_the_clones_addresses() {
    let (dir, spec) = applied_quickstart();
    let shown = json_of(dir.path(), &["--sim", "show", "-f", &spec, "--json"]);
    assert_eq!(shown["format_version"], 1);
    assert_eq!(shown["count"], 5);
    let resources = shown["resources"].as_array().expect("resources");
    let keys: Vec<&str> = resources
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "image.debian-12",
            "template.debian-12-base",
            "clone.web-1",
            "clone.web-2",
            "clone.web-3"
        ]
    );
    for (idx, clone) in resources[2..].iter().enumerate() {
        assert_eq!(clone["vmid"], 201 + idx);
        assert_eq!(clone["status"], "running");
        assert_eq!(clone["address"], format!("192.0.2.{}", 11 + idx));
        assert_eq!(clone["address_source"], "static");
        assert_eq!(clone["template"], "template.debian-12-base");
        assert_eq!(clone["user"], "debian");
    }
    assert_eq!(resources[1]["status"], "template");
    assert!(
        resources[1]["build"]
            .as_str()
            .is_some_and(|b| !b.is_empty())
    );

    // `list` is the same command; `--target` filters; the table names every resource.
    let one = json_of(
        dir.path(),
        &[
            "--sim",
            "list",
            "-f",
            &spec,
            "--json",
            "--target",
            "clone.web-2",
        ],
    );
    assert_eq!(one["count"], 1);
    assert_eq!(one["resources"][0]["key"], "clone.web-2");
    let table = text(&proxfleet(dir.path(), &["--sim", "show", "-f", &spec]).stdout);
    assert!(table.starts_with("RESOURCE"), "{table}");
    assert_eq!(table.lines().count(), 6, "{table}");
    assert!(
        table.contains("clone.web-3              203   pve1  running   192.0.2.13"),
        "{table}"
    );
    let bad = proxfleet(
        dir.path(),
        &["--sim", "show", "-f", &spec, "--target", "web-1"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("not a resource address"));
}

#[test]
fn the_inventory_groups_the_clones_and_gives_ansible_their_host_and_user() {
    let (dir, spec) = applied_quickstart();
    let list = json_of(dir.path(), &["--sim", "inventory", "-f", &spec, "--list"]);
    assert_eq!(
        list["proxfleet"]["hosts"],
        serde_json::json!(["web-1", "web-2", "web-3"])
    );
    assert_eq!(
        list["template_debian_12_base"]["hosts"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(list["node_pve1"]["hosts"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        list["_meta"]["hostvars"]["web-2"]["ansible_host"],
        "192.0.2.12"
    );
    assert_eq!(list["_meta"]["hostvars"]["web-2"]["ansible_user"], "debian");
    let host = json_of(
        dir.path(),
        &["--sim", "inventory", "-f", &spec, "--host", "web-3"],
    );
    assert_eq!(host["ansible_host"], "192.0.2.13");
    assert_eq!(host["proxmox_vmid"], 203);
    let unknown = json_of(
        dir.path(),
        &["--sim", "inventory", "-f", &spec, "--host", "nope"],
    );
    assert_eq!(unknown, serde_json::json!({}));
    let yaml = text(&proxfleet(dir.path(), &["--sim", "inventory", "-f", &spec]).stdout);
    assert!(yaml.contains("\n    proxfleet:\n      hosts:\n        web-1:\n          ansible_host: \"192.0.2.11\"\n"), "{yaml}");

    if !system_tool(
        "ansible-inventory",
        "ansible-core (python3 -m pip install ansible-core)",
    ) {
        return;
    }
    // Ansible's script plugin runs an executable inventory with `--list`.
    let script = dir.path().join("proxfleet-inventory.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncd '{}' && exec '{}' --sim inventory -f '{spec}' \"$@\"\n",
            dir.path().display(),
            env!("CARGO_BIN_EXE_proxfleet"),
        ),
    )
    .expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for source in [script.clone(), {
        let file = dir.path().join("inventory.yml");
        std::fs::write(&file, &yaml).expect("static inventory");
        file
    }] {
        let run = std::process::Command::new("ansible-inventory")
            .args(["--list", "-i"])
            .arg(&source)
            .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
            .env("ANSIBLE_LOCAL_TEMP", dir.path().join("ansible-tmp"))
            .env("ANSIBLE_HOME", dir.path().join("ansible-home"))
            .output()
            .expect("ansible-inventory runs");
        assert!(
            run.status.success(),
            "{}: {}",
            source.display(),
            text(&run.stderr)
        );
        let seen: Value = serde_json::from_slice(&run.stdout).expect("ansible-inventory JSON");
        let hostvars = &seen["_meta"]["hostvars"];
        for (idx, host) in ["web-1", "web-2", "web-3"].iter().enumerate() {
            assert_eq!(
                hostvars[host]["ansible_host"],
                format!("192.0.2.{}", 11 + idx),
                "{}: {seen}",
                source.display()
            );
            assert_eq!(hostvars[host]["ansible_user"], "debian");
        }
        let mut hosts: Vec<&str> = seen["proxfleet"]["hosts"]
            .as_array()
            .expect("the proxfleet group")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        hosts.sort();
        assert_eq!(hosts, ["web-1", "web-2", "web-3"], "{}", source.display());
    }
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bash = proxfleet(dir.path(), &["completions", "bash"]);
    assert!(bash.status.success());
    let script = text(&bash.stdout);
    assert!(
        script.contains("_proxfleet()") && script.contains("inventory"),
        "{script}"
    );
    if system_tool("bash", "bash") {
        let file = dir.path().join("proxfleet.bash");
        std::fs::write(&file, &script).expect("write");
        let loaded = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}' && complete -p proxfleet",
                file.display()
            ))
            .output()
            .expect("bash runs");
        assert!(loaded.status.success(), "{}", text(&loaded.stderr));
        assert!(text(&loaded.stdout).contains("-F _proxfleet proxfleet"));
    }
    for shell in ["zsh", "fish", "powershell"] {
        let run = proxfleet(dir.path(), &["completions", shell]);
        assert!(run.status.success() && !run.stdout.is_empty(), "{shell}");
    }
    let man = proxfleet(dir.path(), &["man"]);
    let page = text(&man.stdout);
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH proxfleet 1"),
        "{page}"
    );
    assert!(page.contains("inventory"), "{page}");
    if system_tool("man", "man-db") {
        let file = dir.path().join("proxfleet.1");
        std::fs::write(&file, &man.stdout).expect("write");
        let rendered = std::process::Command::new("man")
            .arg("-l")
            .arg(&file)
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .expect("man runs");
        assert!(rendered.status.success(), "{}", text(&rendered.stderr));
        let shown = text(&rendered.stdout);
        assert!(
            shown.contains("NAME") && shown.contains("proxfleet"),
            "{shown}"
        );
    }
    let pages = dir.path().join("man");
    let written = proxfleet(dir.path(), &["man", "--dir", pages.to_str().unwrap()]);
    assert!(written.status.success(), "{}", text(&written.stderr));
    for name in [
        "proxfleet.1",
        "proxfleet-plan.1",
        "proxfleet-inventory.1",
        "proxfleet-sim-serve.1",
    ] {
        assert!(pages.join(name).is_file(), "{name}");
    }
}
