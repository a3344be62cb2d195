//! Conformance: a table of requests per endpoint and the exact status and body the simulator
//! answers, as insta snapshots (`snapshots/conformance__*.snap`). Values that change from run to
//! run (UPIDs' times, MACs, UUIDs, digests, tickets) are replaced by placeholders; everything
//! else is compared byte for byte, so any change in status, wording or shape shows in review.
//!
//! Each endpoint's cases run in order against a fresh two-node cluster holding an imported
//! image, a template 9000 on `local-lvm`, a running full clone 100 and a stopped linked clone
//! 101. When a request answers with a UPID, the task is awaited and its exit status recorded.

use std::fmt::Write as _;
use std::time::Duration;

use proxfleet::sim::SimConfig;
use serde_json::Value;

use super::common::snapshot_settings;
use super::sim::{Api, fast, template};

/// An Ed25519 public key with a comment, URL-encoded as `sshkeys` takes it.
const ED25519_KEY: &str = "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAINeA4p1Q2dIqor6pOI1wJK37hZeBNvahZhylneTi%2B5ph%20ops%40example.com";

/// Two keys on two lines, the second without a comment, URL-encoded.
const TWO_KEYS: &str = "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAINeA4p1Q2dIqor6pOI1wJK37hZeBNvahZhylneTi%2B5ph%20ops%40example.com%0Assh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIBVtWQ0e2i6rjkIh6Q4tYx1hXvNq4pM0o7u2f8s3k9dZ";

/// One request: what it shows, method, path (under `/api2/json`), parameters.
pub(super) type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

async fn fixture() -> (proxfleet::sim::SimHandle, Api) {
    let (sim, api) = Api::start(SimConfig { nodes: 2, ..fast() }).await;
    template(&api).await;
    let clone = |newid: &'static str, name: &'static str, full: &'static str| {
        [("newid", newid), ("name", name), ("full", full)]
    };
    assert_eq!(
        api.task(
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &clone("100", "web", "1")
        )
        .await,
        "OK"
    );
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/100/status/start", &[])
            .await,
        "OK"
    );
    assert_eq!(
        api.task(
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &clone("101", "db", "0")
        )
        .await,
        "OK"
    );
    sim.clear_requests();
    (sim, api)
}

/// Replace what differs between runs by placeholders.
fn normalize(value: &mut Value, key: Option<&str>) {
    match value {
        Value::Object(map) => {
            // `/pending` lists the digest as an entry: {"key": "digest", "value": …}.
            let is_digest_entry = map.get("key").and_then(Value::as_str) == Some("digest");
            for (k, v) in map.iter_mut() {
                let key = if is_digest_entry && k == "value" {
                    "digest"
                } else {
                    k.as_str()
                };
                normalize(v, Some(key));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| normalize(v, key)),
        Value::String(text) => {
            *text = match key {
                Some("digest") => "<digest>".into(),
                Some("ticket") if text.starts_with("PVE:") => "<ticket>".into(),
                Some("CSRFPreventionToken") => "<csrf>".into(),
                Some("vmgenid") => "<uuid>".into(),
                Some("meta") => text
                    .split(',')
                    .map(|kv| {
                        if kv.starts_with("ctime=") {
                            "ctime=<time>"
                        } else {
                            kv
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                Some("smbios1") => "uuid=<uuid>".into(),
                _ => scrub(text),
            }
        }
        Value::Number(_) => {
            if matches!(
                key,
                Some("starttime" | "pstart" | "pid" | "ctime" | "uptime")
            ) {
                *value = Value::from(0);
            }
        }
        _ => {}
    }
}

/// UPIDs keep node, type, id and user; MACs and UUIDs become placeholders.
fn scrub(text: &str) -> String {
    uuids(&macs(text))
}

fn is_uuid(window: &[u8]) -> bool {
    window.len() == 36
        && window.iter().enumerate().all(|(j, b)| {
            if matches!(j, 8 | 13 | 18 | 23) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

fn uuids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() >= 36 && rest.is_char_boundary(36) && is_uuid(&rest.as_bytes()[..36]) {
            out.push_str("<uuid>");
            rest = &rest[36..];
        } else {
            let ch = rest.chars().next().unwrap_or('?');
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
    }
    out
}

fn macs(text: &str) -> String {
    if let Some(rest) = text.strip_prefix("UPID:") {
        let parts: Vec<&str> = rest.split(':').collect();
        if parts.len() >= 7 {
            return format!(
                "UPID:{}:<pid>:<pstart>:<time>:{}:{}:{}:",
                parts[0], parts[4], parts[5], parts[6]
            );
        }
    }
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let window = &bytes[i..(i + 17).min(bytes.len())];
        let is_mac = window.len() == 17
            && window.iter().enumerate().all(|(j, b)| {
                if j % 3 == 2 {
                    *b == b':'
                } else {
                    b.is_ascii_hexdigit()
                }
            });
        if is_mac {
            out.push_str("<MAC>");
            i += 17;
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

async fn wait_task(api: &Api, upid: &str) -> String {
    let node = upid.split(':').nth(1).unwrap_or("pve1").to_string();
    let encoded: String = url::form_urlencoded::byte_serialize(upid.as_bytes()).collect();
    for _ in 0..1000 {
        let (_, status) = api
            .call("GET", &format!("/nodes/{node}/tasks/{encoded}/status"), &[])
            .await;
        if status["data"]["status"] == "stopped" {
            return status["data"]["exitstatus"]
                .as_str()
                .unwrap_or("<none>")
                .to_string();
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    "<still running>".into()
}

/// Run an endpoint's cases in order and render the table.
pub(super) async fn run(cases: &[Case]) -> String {
    let (_sim, api) = fixture().await;
    let mut out = String::new();
    for (name, method, path, params) in cases {
        let (status, mut body) = api.call(method, path, params).await;
        let upid = body["data"]
            .as_str()
            .filter(|d| d.starts_with("UPID:"))
            .map(str::to_string);
        normalize(&mut body, None);
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "## {name}");
        let _ = writeln!(out, "> {method} {path} {}", query.join("&"));
        let _ = writeln!(out, "< {status} {body}");
        if let Some(upid) = upid {
            let _ = writeln!(out, "  task: {}", wait_task(&api, &upid).await);
        }
        let _ = writeln!(out);
    }
    out
}

macro_rules! conformance {
    ($test:ident, $cases:expr) => {
        #[tokio::test]
        async fn $test() {
            let table = run($cases).await;
            snapshot_settings().bind(|| {
                insta::assert_snapshot!(concat!("conformance__", stringify!($test)), table);
            });
        }
    };
}

conformance!(
    version_and_cluster,
    &[
        ("version", "GET", "/version", &[]),
        ("all resources", "GET", "/cluster/resources", &[]),
        ("vms only", "GET", "/cluster/resources", &[("type", "vm")]),
        (
            "bad type enum",
            "GET",
            "/cluster/resources",
            &[("type", "vms")]
        ),
        ("next id", "GET", "/cluster/nextid", &[]),
        (
            "next id taken",
            "GET",
            "/cluster/nextid",
            &[("vmid", "9000")]
        ),
        (
            "next id out of range",
            "GET",
            "/cluster/nextid",
            &[("vmid", "99")]
        ),
        ("nodes", "GET", "/nodes", &[]),
        ("unknown path", "GET", "/cluster/frobnicate", &[]),
        ("unknown method", "PATCH", "/version", &[]),
    ]
);

conformance!(
    storage,
    &[
        ("storages of a node", "GET", "/nodes/pve1/storage", &[]),
        (
            "storages with import content",
            "GET",
            "/nodes/pve2/storage",
            &[("content", "import")]
        ),
        ("unknown node", "GET", "/nodes/pve9/storage", &[]),
        ("content", "GET", "/nodes/pve1/storage/local/content", &[]),
        (
            "content by type",
            "GET",
            "/nodes/pve1/storage/local-lvm/content",
            &[("content", "images")]
        ),
        (
            "content of an unknown storage",
            "GET",
            "/nodes/pve1/storage/nope/content",
            &[]
        ),
        (
            "volume attributes",
            "GET",
            "/nodes/pve1/storage/local/content/local%3Aimport%2Fnoble.qcow2",
            &[]
        ),
        (
            "volume id not encoded: its slash splits the path",
            "GET",
            "/nodes/pve1/storage/local/content/local:import/noble.qcow2",
            &[]
        ),
        (
            "missing volume",
            "GET",
            "/nodes/pve1/storage/local/content/local%3Aimport%2Fnone.qcow2",
            &[]
        ),
        (
            "notes on a non-backup volume",
            "PUT",
            "/nodes/pve1/storage/local/content/local%3Aimport%2Fnoble.qcow2",
            &[("notes", "x")]
        ),
        (
            "delete a disk still in use",
            "DELETE",
            "/nodes/pve1/storage/local-lvm/content/local-lvm:vm-100-disk-1",
            &[]
        ),
    ]
);

conformance!(
    download_url,
    &[
        (
            "same file and checksum: nothing to do",
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &[
                ("content", "import"),
                ("filename", "noble.qcow2"),
                ("url", "https://example.com/noble.img"),
                (
                    "checksum",
                    "0000000000000000000000000000000000000000000000000000000000000001"
                ),
                ("checksum-algorithm", "sha256"),
            ]
        ),
        (
            "file exists, no checksum",
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &[
                ("content", "import"),
                ("filename", "noble.qcow2"),
                ("url", "https://example.com/noble.img"),
            ]
        ),
        (
            "name Proxmox refuses for import",
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &[
                ("content", "import"),
                ("filename", "noble.img"),
                ("url", "https://example.com/noble.img"),
            ]
        ),
        (
            "compression only for iso",
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &[
                ("content", "import"),
                ("filename", "x.qcow2"),
                ("url", "https://example.com/x.qcow2.zst"),
                ("compression", "zst"),
            ]
        ),
        (
            "storage without the content type",
            "POST",
            "/nodes/pve1/storage/local-lvm/download-url",
            &[
                ("content", "import"),
                ("filename", "x.qcow2"),
                ("url", "https://example.com/x.qcow2"),
            ]
        ),
        (
            "compression enum (computed at runtime)",
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &[
                ("content", "iso"),
                ("filename", "x.iso"),
                ("url", "https://example.com/x.iso.zstd"),
                ("compression", "zstd"),
            ]
        ),
        (
            "checksum algorithm enum",
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &[
                ("content", "import"),
                ("filename", "x.qcow2"),
                ("url", "https://example.com/x.qcow2"),
                ("checksum", "ab"),
                ("checksum-algorithm", "crc32"),
            ]
        ),
    ]
);

conformance!(
    create_vm,
    &[
        (
            "create",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "200"),
                ("name", "made"),
                ("memory", "1024"),
                ("net0", "virtio,bridge=vmbr0"),
                ("scsi0", "local-lvm:4"),
                ("tags", "B;a;b"),
            ]
        ),
        (
            "config as stored",
            "GET",
            "/nodes/pve1/qemu/200/config",
            &[]
        ),
        ("vmid taken", "POST", "/nodes/pve1/qemu", &[("vmid", "200")]),
        (
            "unknown parameter, bad boolean, out of range",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "201"),
                ("colour", "blue"),
                ("onboot", "yes"),
                ("cores", "0"),
            ]
        ),
        (
            "bad property string",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "201"), ("net0", "e1001,bridge=vmbr0")]
        ),
        (
            "import-from a missing volume",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "202"),
                (
                    "scsi0",
                    "local-lvm:0,import-from=local:import/missing.qcow2"
                ),
            ]
        ),
        (
            "disk on a storage without images",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "203"), ("scsi0", "local:4")]
        ),
        ("vm list of a node", "GET", "/nodes/pve1/qemu", &[]),
    ]
);

conformance!(
    config,
    &[
        ("read", "GET", "/nodes/pve1/qemu/100/config", &[]),
        (
            "read a missing vm",
            "GET",
            "/nodes/pve1/qemu/555/config",
            &[]
        ),
        (
            "on the wrong node",
            "GET",
            "/nodes/pve2/qemu/100/config",
            &[]
        ),
        (
            "async update",
            "POST",
            "/nodes/pve1/qemu/101/config",
            &[("memory", "2048"), ("tags", "Web;db")]
        ),
        (
            "sync update",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cores", "4"), ("delete", "tags")]
        ),
        (
            "stale digest",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[
                ("cores", "2"),
                ("digest", "0123456789abcdef0123456789abcdef01234567")
            ]
        ),
        ("no options", "PUT", "/nodes/pve1/qemu/101/config", &[]),
        (
            "running vm: memory is pending",
            "PUT",
            "/nodes/pve1/qemu/100/config",
            &[("memory", "4096")]
        ),
        ("pending", "GET", "/nodes/pve1/qemu/100/pending", &[]),
    ]
);

conformance!(
    resize,
    &[
        (
            "grow by",
            "PUT",
            "/nodes/pve1/qemu/101/resize",
            &[("disk", "scsi0"), ("size", "+1G")]
        ),
        (
            "grow to",
            "PUT",
            "/nodes/pve1/qemu/101/resize",
            &[("disk", "scsi0"), ("size", "8G")]
        ),
        (
            "shrink",
            "PUT",
            "/nodes/pve1/qemu/101/resize",
            &[("disk", "scsi0"), ("size", "1G")]
        ),
        (
            "no such disk",
            "PUT",
            "/nodes/pve1/qemu/101/resize",
            &[("disk", "scsi7"), ("size", "+1G")]
        ),
        (
            "bad size",
            "PUT",
            "/nodes/pve1/qemu/101/resize",
            &[("disk", "scsi0"), ("size", "lots")]
        ),
        ("after", "GET", "/nodes/pve1/qemu/101/config", &[]),
    ]
);

conformance!(
    template_and_clone,
    &[
        (
            "template again",
            "POST",
            "/nodes/pve1/qemu/9000/template",
            &[]
        ),
        (
            "template of a running vm",
            "POST",
            "/nodes/pve1/qemu/100/template",
            &[]
        ),
        (
            "linked clone",
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "300"), ("name", "l"), ("full", "0")]
        ),
        (
            "full clone to another storage",
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "301"), ("full", "1"), ("storage", "shared")]
        ),
        (
            "to another node from local storage",
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "302"), ("target", "pve2"), ("full", "1")]
        ),
        (
            "linked clone with a storage",
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "303"), ("full", "0"), ("storage", "local-lvm")]
        ),
        (
            "linked clone of a vm",
            "POST",
            "/nodes/pve1/qemu/101/clone",
            &[("newid", "304"), ("full", "0")]
        ),
        (
            "newid taken",
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "100")]
        ),
        (
            "unknown target",
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "305"), ("target", "pve7")]
        ),
        (
            "the linked clone",
            "GET",
            "/nodes/pve1/qemu/300/config",
            &[]
        ),
    ]
);

conformance!(
    power_and_destroy,
    &[
        (
            "status of a running vm",
            "GET",
            "/nodes/pve1/qemu/100/status/current",
            &[]
        ),
        (
            "start a template",
            "POST",
            "/nodes/pve1/qemu/9000/status/start",
            &[]
        ),
        (
            "destroy a running vm",
            "DELETE",
            "/nodes/pve1/qemu/100",
            &[]
        ),
        (
            "shutdown",
            "POST",
            "/nodes/pve1/qemu/100/status/shutdown",
            &[("timeout", "30")]
        ),
        (
            "stop a stopped vm",
            "POST",
            "/nodes/pve1/qemu/100/status/stop",
            &[]
        ),
        (
            "destroy a template with linked clones",
            "DELETE",
            "/nodes/pve1/qemu/9000",
            &[]
        ),
        (
            "destroy the linked clone",
            "DELETE",
            "/nodes/pve1/qemu/101",
            &[("purge", "1"), ("destroy-unreferenced-disks", "1")]
        ),
        (
            "destroy the template",
            "DELETE",
            "/nodes/pve1/qemu/9000",
            &[]
        ),
        (
            "status of a missing vm",
            "GET",
            "/nodes/pve1/qemu/9000/status/current",
            &[]
        ),
    ]
);

conformance!(
    tasks_and_access,
    &[
        (
            "a task that does not exist",
            "GET",
            "/nodes/pve1/tasks/UPID:pve1:00000001:00000001:00000001:qmstart:1:root@pam:/status",
            &[]
        ),
        ("not a upid", "GET", "/nodes/pve1/tasks/nonsense/log", &[]),
        (
            "login with a wrong password",
            "POST",
            "/access/ticket",
            &[("username", "root@pam"), ("password", "wrong")]
        ),
        (
            "own permissions",
            "GET",
            "/access/permissions",
            &[("path", "/vms/100")]
        ),
        (
            "permissions: bad userid",
            "GET",
            "/access/permissions",
            &[("userid", "not a user")]
        ),
    ]
);

conformance!(
    network_and_mappings,
    &[
        ("interfaces of a node", "GET", "/nodes/pve1/network", &[]),
        (
            "bridges only",
            "GET",
            "/nodes/pve2/network",
            &[("type", "any_bridge")]
        ),
        (
            "physical interfaces only",
            "GET",
            "/nodes/pve1/network",
            &[("type", "eth")]
        ),
        (
            "bad type enum",
            "GET",
            "/nodes/pve1/network",
            &[("type", "bridges")]
        ),
        ("unknown node", "GET", "/nodes/pve9/network", &[]),
        ("pci mappings (none)", "GET", "/cluster/mapping/pci", &[]),
        (
            "pci mappings checked on a node",
            "GET",
            "/cluster/mapping/pci",
            &[("check-node", "pve1")]
        ),
    ]
);

// What pve-common's `PVE::JSONSchema::parse_property_string` refuses (and `check_object`
// after it), with its wording; each case names the rule and the source it mirrors.
conformance!(
    property_strings,
    &[
        (
            "refused: duplicate key (JSONSchema.pm parse_property_string)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                ("net0", "virtio,bridge=vmbr0,bridge=vmbr1")
            ]
        ),
        (
            "refused: key without a value (JSONSchema.pm parse_property_string)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("net0", "virtio,bridge=")]
        ),
        (
            "refused: value without a key (JSONSchema.pm parse_property_string)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("net0", "virtio,=vmbr0")]
        ),
        (
            "refused: default key twice (JSONSchema.pm parse_property_string)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("scsi0", "local-lvm:1,local-lvm:2")]
        ),
        (
            "refused: default key given by name, then bare (JSONSchema.pm parse_property_string)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("scsi0", "file=local-lvm:1,local-lvm:2")]
        ),
        (
            "refused: key alias already defined (JSONSchema.pm parse_property_string, keyAlias)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                ("net0", "model=virtio,virtio=BC:24:11:00:00:01")
            ]
        ),
        (
            "refused: a key its alias already set (JSONSchema.pm parse_property_string, alias)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                ("net0", "virtio=BC:24:11:00:00:01,macaddr=BC:24:11:00:00:02")
            ]
        ),
        (
            "refused: an alias for a key already set (JSONSchema.pm parse_property_string, alias)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                ("net0", "macaddr=BC:24:11:00:00:02,virtio=BC:24:11:00:00:01")
            ]
        ),
        (
            "refused: unknown key (JSONSchema.pm parse_property_string)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("net0", "virtio,speed=fast")]
        ),
        (
            "refused: required sub-property missing (JSONSchema.pm check_object)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("efidisk0", "efitype=4m")]
        ),
        (
            "refused: boolean sub-property (JSONSchema.pm check_type)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("scsi0", "local-lvm:1,ssd=maybe")]
        ),
        (
            "refused: integer sub-property out of range (JSONSchema.pm check_prop)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("net0", "virtio,bridge=vmbr0,tag=4095")]
        ),
        (
            "refused: gateway without an address (JSONSchema.pm check_object requires; qemu-server Network.pm ipconfig)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("ipconfig0", "gw=192.0.2.1")]
        ),
        (
            "refused: cicustom key unknown (qemu-server QemuServer.pm cicustom_fmt)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                ("cicustom", "userdata=local:snippets/u.yaml")
            ]
        ),
        (
            "refused: sub-property not in its enumeration (JSONSchema.pm check_prop)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("tpmstate0", "local-lvm:1,version=v3.0")]
        ),
        (
            "refused: number sub-property not a number (JSONSchema.pm check_type)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("net0", "virtio,bridge=vmbr0,rate=fast")]
        ),
        (
            "refused: duplicate key in ipconfig (JSONSchema.pm parse_property_string)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("ipconfig0", "ip=dhcp,ip=manual")]
        ),
        (
            "refused: duplicate key in cicustom (JSONSchema.pm parse_property_string)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                (
                    "cicustom",
                    "user=local:snippets/a.yaml,user=local:snippets/b.yaml"
                )
            ]
        ),
        (
            "accepted: on/yes booleans, a model's MAC, an alias for the default key",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "301"),
                ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=on"),
                ("scsi0", "volume=local-lvm:1,ssd=yes"),
                ("ipconfig0", "ip=192.0.2.10/24,gw=192.0.2.1"),
            ]
        ),
        (
            "accepted: an empty item between commas",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "302"), ("net0", "virtio,,bridge=vmbr0")]
        ),
    ]
);

// Named formats of the served paths, each answered with its verifier's `die` message.
conformance!(
    named_formats,
    &[
        (
            "refused: multicast MAC (JSONSchema.pm pve_verify_mac_addr)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                ("net0", "virtio=01:24:11:00:00:01,bridge=vmbr0")
            ]
        ),
        (
            "refused: malformed MAC (JSONSchema.pm pve_verify_mac_addr)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("net0", "virtio,macaddr=BC:24:11:00:00")]
        ),
        (
            "refused: IPv4 prefix too long (JSONSchema.pm pve_verify_ipv4_config)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("ipconfig0", "ip=192.0.2.10/33")]
        ),
        (
            "refused: IPv4 address without prefix (JSONSchema.pm pve_verify_cidrv4)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("ipconfig0", "ip=192.0.2.10")]
        ),
        (
            "refused: IPv4 octet out of range (JSONSchema.pm pve_verify_ipv4_config)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("ipconfig0", "ip=192.0.2.300/24")]
        ),
        (
            "refused: IPv6 zone id (JSONSchema.pm pve_verify_ipv6_config)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("ipconfig0", "ip6=fe80::1%eth0/64")]
        ),
        (
            "refused: IPv4 gateway not an address (JSONSchema.pm pve_verify_ipv4)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                ("ipconfig0", "ip=192.0.2.10/24,gw=gateway")
            ]
        ),
        (
            "refused: IPv6 gateway given as IPv4 (JSONSchema.pm pve_verify_ipv6)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("ipconfig0", "ip6=auto,gw6=192.0.2.1")]
        ),
        (
            "refused: EFI disk as boot device (qemu-server QemuServer.pm verify_bootdev)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("boot", "order=scsi0;efidisk0")]
        ),
        (
            "refused: unused disk as boot device (qemu-server QemuServer.pm verify_bootdev)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("boot", "order=unused0")]
        ),
        (
            "refused: legacy boot letters (qemu-server QemuServer.pm boot_fmt pattern)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("boot", "cx")]
        ),
        (
            "refused: tag with a bad character (JSONSchema.pm pve_verify_tag)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("tags", "web;-db")]
        ),
        (
            "refused: SSH keys not URL-encoded (JSONSchema.pm pve_verify_urlencoded)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("sshkeys", "ssh-ed25519 AAAA")]
        ),
        (
            "refused: DNS name with a leading dash (JSONSchema.pm pve_verify_dns_name)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("name", "-web")]
        ),
        (
            "refused: volume id without storage (pve-storage Plugin.pm parse_volume_id)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("cicustom", "user=u.yaml")]
        ),
        (
            "refused: disk volume not a volume id (qemu-server QemuServer.pm verify_volume_id_or_qm_path)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("scsi0", "disk.qcow2")]
        ),
        (
            "refused: import source not a volume id (qemu-server QemuServer.pm verify_volume_id_or_absolute_path)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                ("scsi0", "local-lvm:0,import-from=noble.qcow2")
            ]
        ),
        (
            "refused: storage id too short (JSONSchema.pm parse_id)",
            "POST",
            "/nodes/pve1/storage/l/download-url",
            &[
                ("content", "iso"),
                ("filename", "a.iso"),
                ("url", "https://example.com/a.iso")
            ]
        ),
        (
            "refused: storage id with a bad character (JSONSchema.pm parse_id)",
            "POST",
            "/nodes/pve1/storage/local_/download-url",
            &[
                ("content", "iso"),
                ("filename", "a.iso"),
                ("url", "https://example.com/a.iso")
            ]
        ),
        (
            "refused: node name with an underscore (JSONSchema.pm pve_verify_node_name)",
            "GET",
            "/nodes/pve_1/qemu",
            &[]
        ),
        (
            "refused: clone target node name (JSONSchema.pm pve_verify_node_name)",
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "300"), ("target", "pve.1")]
        ),
        (
            "refused: pool nested four levels (pve-access-control AccessControl.pm verify_poolname)",
            "POST",
            "/pools",
            &[("poolid", "a/b/c/d")]
        ),
        (
            "refused: pool name with a space (pve-access-control AccessControl.pm verify_poolname)",
            "POST",
            "/pools",
            &[("poolid", "my pool")]
        ),
        (
            "refused: NIC index past the last as boot device (qemu-server QemuServer.pm verify_bootdev)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("boot", "order=net32")]
        ),
        (
            "refused: tag with an at sign (JSONSchema.pm pve_verify_tag)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("tags", "a@b")]
        ),
        (
            "refused: IPv6 prefix too long (JSONSchema.pm pve_verify_cidrv6)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("ipconfig0", "ip6=2001:db8::1/129")]
        ),
        (
            "refused: pool name with an empty level (pve-access-control AccessControl.pm verify_poolname)",
            "POST",
            "/pools",
            &[("poolid", "/a")]
        ),
        (
            "refused: a parameter given twice in the body (pve-http-server AnyEvent.pm decode_urlencoded; JSONSchema.pm check_type)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("cores", "2"), ("cores", "4")]
        ),
        (
            "refused: a parameter given twice in the query (pve-http-server AnyEvent.pm decode_urlencoded; JSONSchema.pm check_type)",
            "GET",
            "/cluster/resources",
            &[("type", "vm"), ("type", "node")]
        ),
        (
            "refused: pool name not starting with a letter (pve-manager API2/Pool.pm create_pool)",
            "POST",
            "/pools",
            &[("poolid", "1web")]
        ),
        (
            "refused: nested pool without its parent (pve-manager API2/Pool.pm create_pool)",
            "POST",
            "/pools",
            &[("poolid", "nope/web")]
        ),
        (
            "accepted: pool with a dot",
            "POST",
            "/pools",
            &[("poolid", "a.b")]
        ),
        (
            "accepted: addresses, DHCP and SLAAC, boot order, tags, encoded keys",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "303"),
                ("name", "web-1.example"),
                ("net0", "virtio,bridge=vmbr0"),
                ("ipconfig0", "ip=dhcp,ip6=auto"),
                (
                    "ipconfig1",
                    "ip=198.51.100.7/24,gw=198.51.100.1,ip6=2001:db8::7/64,gw6=2001:db8::1"
                ),
                ("boot", "order=scsi0;ide2;net0"),
                ("tags", "web;prod,v1.2"),
                ("sshkeys", ED25519_KEY),
            ]
        ),
    ]
);

// Handler rules of qemu-server's `API2/Qemu.pm` (and pve-cluster's `check_node_exists`): a
// parameter exception is a 400 with `errors`, a `die` a 500 with its message.
conformance!(
    qemu_handler_rules,
    &[
        (
            "refused: import-from onto a sized disk (Qemu.pm check_drive_param)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                ("scsi0", "local-lvm:8,import-from=local:import/noble.qcow2")
            ]
        ),
        (
            "refused: import-from onto an existing volume (Qemu.pm check_drive_param)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                (
                    "scsi0",
                    "local-lvm:vm-100-disk-1,import-from=local:import/noble.qcow2"
                )
            ]
        ),
        (
            "refused: EFI disk import without efitype (Qemu.pm check_drive_param)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                (
                    "efidisk0",
                    "local-lvm:0,import-from=local:import/noble.qcow2"
                )
            ]
        ),
        (
            "refused: EFI disk import without pre-enrolled-keys (Qemu.pm check_drive_param)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                (
                    "efidisk0",
                    "local-lvm:0,efitype=4m,import-from=local:import/noble.qcow2"
                )
            ]
        ),
        (
            "refused: TPM state import without version (Qemu.pm check_drive_param)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                (
                    "tpmstate0",
                    "local-lvm:0,import-from=local:import/noble.qcow2"
                )
            ]
        ),
        (
            "refused: ISO image without media=cdrom (Qemu.pm check_drive_param)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("ide2", "local:iso/debian.iso")]
        ),
        (
            "refused: ISO image as a disk in a config change (Qemu.pm check_drive_param)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("sata1", "local:iso/debian.iso,media=disk")]
        ),
        (
            "refused: no options (Qemu.pm update_vm_api)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[]
        ),
        (
            "refused: storage on a linked clone (Qemu.pm clone_vm)",
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "300"), ("full", "0"), ("storage", "local-lvm")]
        ),
        (
            "refused: format on a linked clone (Qemu.pm clone_vm)",
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "300"), ("full", "0"), ("format", "qcow2")]
        ),
        (
            "refused: clone to a node not in the cluster (pve-cluster check_node_exists)",
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "300"), ("target", "pve9")]
        ),
        (
            "refused: migrate to the node it is on (Qemu.pm migrate_vm)",
            "POST",
            "/nodes/pve1/qemu/101/migrate",
            &[("target", "pve1")]
        ),
        (
            "refused: migrate to a node not in the cluster (pve-cluster check_node_exists)",
            "POST",
            "/nodes/pve1/qemu/101/migrate",
            &[("target", "pve9")]
        ),
        (
            "refused: SSH key cut short (pve-common Tools.pm validate_ssh_public_keys)",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "300"),
                ("sshkeys", "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5")
            ]
        ),
        (
            "refused: not an SSH key in a config change (pve-common Tools.pm validate_ssh_public_keys)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("sshkeys", "hello%20world")]
        ),
        (
            "accepted: SSH keys, one a line",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("sshkeys", TWO_KEYS)]
        ),
        (
            "accepted: import onto <storage>:0 with what EFI and TPM need",
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "304"),
                ("scsi0", "local-lvm:0,import-from=local:import/noble.qcow2"),
                ("efidisk0", "local-lvm:1,efitype=4m"),
                ("tpmstate0", "local-lvm:1,version=v2.0"),
            ]
        ),
        (
            "accepted: a config change",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("memory", "2048")]
        ),
    ]
);

// Config changes Proxmox accepts: each format and property string in a valid form.
conformance!(
    accepted_config_changes,
    &[
        (
            "accepted: a VLAN tag",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("net0", "virtio,bridge=vmbr0,tag=100")]
        ),
        (
            "accepted: a second NIC with a model's MAC",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("net1", "e1000=BC:24:11:AA:BB:CC,bridge=vmbr0")]
        ),
        (
            "accepted: manual IPv4",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("ipconfig0", "ip=manual")]
        ),
        (
            "accepted: DHCPv6",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("ipconfig1", "ip6=dhcp")]
        ),
        (
            "accepted: tags",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("tags", "a;b")]
        ),
        (
            "accepted: a boot order",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("boot", "order=scsi0;net0")]
        ),
        (
            "accepted: legacy boot letters",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("boot", "cdn")]
        ),
        (
            "accepted: custom cloud-init user data",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cicustom", "user=local:snippets/u.yaml")]
        ),
        (
            "accepted: a DNS name",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("name", "db-1.example")]
        ),
        (
            "accepted: an SSH key",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("sshkeys", ED25519_KEY)]
        ),
        (
            "accepted: a new disk with flags",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("scsi1", "local-lvm:1,ssd=on,discard=on")]
        ),
        ("accepted: a pool", "POST", "/pools", &[("poolid", "team")]),
        (
            "accepted: a nested pool",
            "POST",
            "/pools",
            &[("poolid", "team/web")]
        ),
        (
            "refused: a pool that exists (pve-manager API2/Pool.pm create_pool)",
            "POST",
            "/pools",
            &[("poolid", "team/web")]
        ),
        (
            "refused: a nested pool's own name not starting with a letter (pve-manager API2/Pool.pm create_pool)",
            "POST",
            "/pools",
            &[("poolid", "team/2")]
        ),
    ]
);

// A VM's `cpu` (`pve-vm-cpu-conf`): `$cpu_fmt` and `validate_vm_cpu_conf` in qemu-server's
// `PVE/QemuServer/CPUConfig.pm` (models, `custom-` models, flags a VM may set).
conformance!(
    cpu_models,
    &[
        (
            "accepted: the host's CPU",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "host")]
        ),
        (
            "accepted: a built-in abstract model",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "x86-64-v2-AES")]
        ),
        (
            "accepted: a QEMU model with flags a VM may set",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "kvm64,flags=+aes;-pcid;+md-clear")]
        ),
        (
            "accepted: keyed type, hidden, host physical bits",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "cputype=EPYC-Rome,hidden=1,phys-bits=host")]
        ),
        (
            "accepted: guest physical bits and CPUID level",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "host,guest-phys-bits=40,level=30")]
        ),
        (
            "refused: an unknown model (CPUConfig.pm validate_vm_cpu_conf)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "Zen9")]
        ),
        (
            "refused: a custom model not defined (CPUConfig.pm get_custom_model)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "custom-fast")]
        ),
        (
            "refused: a flag a VM may not set (CPUConfig.pm validate_vm_cpu_conf)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "host,flags=+avx2")]
        ),
        (
            "refused: reported-model outside a custom model (CPUConfig.pm validate_vm_cpu_conf)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "host,reported-model=EPYC")]
        ),
        (
            "refused: no model (CPUConfig.pm validate_cpu_conf)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "flags=+aes")]
        ),
        (
            "refused: physical bits out of range (CPUConfig.pm parse_phys_bits)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "host,phys-bits=7")]
        ),
        (
            "refused: guest physical bits below 32 (CPUConfig.pm $cpu_fmt)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "host,guest-phys-bits=16")]
        ),
        (
            "refused: a Hyper-V vendor id over 12 characters (CPUConfig.pm $cpu_fmt)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "host,hv-vendor-id=ProxmoxVendorId")]
        ),
        (
            "refused: a flag without + or - (CPUConfig.pm $cpu_fmt pattern)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "host,flags=aes")]
        ),
        (
            "refused: an unknown key (JSONSchema.pm parse_property_string)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "host,sockets=2")]
        ),
        (
            "refused: the model twice (JSONSchema.pm parse_property_string)",
            "PUT",
            "/nodes/pve1/qemu/101/config",
            &[("cpu", "host,cputype=kvm64")]
        ),
        (
            "refused: on create too (CPUConfig.pm validate_vm_cpu_conf)",
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "300"), ("cpu", "Skylake")]
        ),
    ]
);

// LXC containers (pve-container `API2/LXC.pm`): created from a `vztmpl` volume, listed, holding
// their vmids against VMs (pve-cluster `check_vmid_unused`, pmxcfs), destroyed.
conformance!(
    containers,
    &[
        ("no containers yet", "GET", "/nodes/pve1/lxc", &[]),
        (
            "accepted: a container template",
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &[
                ("content", "vztmpl"),
                ("filename", "debian-12-standard_12.7-1_amd64.tar.zst"),
                ("url", "https://example.com/debian-12-standard.tar.zst"),
            ]
        ),
        (
            "accepted: a container",
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "200"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
                ),
                ("hostname", "ct-dns"),
                ("rootfs", "local-lvm:8"),
                ("net0", "name=eth0,bridge=vmbr0,ip=dhcp"),
            ]
        ),
        ("the node's containers", "GET", "/nodes/pve1/lxc", &[]),
        (
            "guests of the cluster",
            "GET",
            "/cluster/resources",
            &[("type", "vm")]
        ),
        ("next id skips the container", "GET", "/cluster/nextid", &[]),
        (
            "refused: next id at the container's vmid (pve-manager API2/Cluster.pm nextid)",
            "GET",
            "/cluster/nextid",
            &[("vmid", "200")]
        ),
        (
            "refused: a VM at the container's vmid (pve-guest-common create_and_lock_config)",
            "POST",
            "/nodes/pve2/qemu",
            &[("vmid", "200"), ("name", "vm")]
        ),
        (
            "refused: a clone onto the container's vmid (qemu-server clone_vm, pmxcfs memdb.c)",
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "200"), ("name", "web")]
        ),
        (
            "refused: a container at the container's vmid (pve-cluster check_vmid_unused)",
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "200"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
                ),
            ]
        ),
        (
            "refused: a container at a VM's vmid (pve-cluster check_vmid_unused)",
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "100"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
                ),
            ]
        ),
        (
            "refused: an ISO as template (pve-storage check_volume_access)",
            "POST",
            "/nodes/pve1/lxc",
            &[("vmid", "201"), ("ostemplate", "local:iso/debian.iso")]
        ),
        (
            "refused: a template on no storage (pve-storage parse_volname)",
            "POST",
            "/nodes/pve1/lxc",
            &[("vmid", "201"), ("ostemplate", "nope:vztmpl/x.tar.zst")]
        ),
        (
            "refused: a root disk where containers cannot live (API2/LXC.pm create_vm)",
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "201"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
                ),
                ("rootfs", "local:8"),
            ]
        ),
        (
            "refused: mount points without rootfs (API2/LXC.pm create_vm)",
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "201"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
                ),
                ("mp0", "local-lvm:4,mp=/srv"),
            ]
        ),
        (
            "refused: a network without a name (pve-container $netconf_desc)",
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "201"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
                ),
                ("net0", "bridge=vmbr0,ip=dhcp"),
            ]
        ),
        (
            "refused: a template that is not there (pve-storage abs_filesystem_path)",
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "201"),
                ("ostemplate", "local:vztmpl/alpine.tar.xz"),
                ("rootfs", "local-lvm:2"),
            ]
        ),
        (
            "refused: no template (JSONSchema.pm validate)",
            "POST",
            "/nodes/pve1/lxc",
            &[("vmid", "201")]
        ),
        (
            "refused: destroy on another node (API2/LXC.pm destroy_vm)",
            "DELETE",
            "/nodes/pve2/lxc/200",
            &[]
        ),
        ("accepted: destroy", "DELETE", "/nodes/pve1/lxc/200", &[]),
    ]
);
