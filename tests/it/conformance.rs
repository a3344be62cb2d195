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

/// One request: what it shows, method, path (under `/api2/json`), parameters.
type Case = (
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
async fn run(cases: &[Case]) -> String {
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
