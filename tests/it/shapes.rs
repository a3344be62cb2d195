//! The shapes of the simulator's answers, field by field with their JSON types, for the
//! endpoints proxfleet reads, held against what real Proxmox VE clusters send. The expected
//! fields were written down here from the responses go-proxmox keeps as test mocks
//! (`../shared/go-proxmox-captures/pve9x.json`, commit c85962ec; its README says which are real
//! captures): each table names the mock it was compared with. Only real captures count; the
//! hand-written ones (`/version`, configs, tasks, storage lists) were not used.
//!
//! Also the answers that differ between releases: `memory` in a config is a number before
//! PVE 8.1 and a string since, and the client reads both.

use std::collections::BTreeMap;

use proxfleet::sim::{SimConfig, SimContainer, SimHandle};
use serde_json::Value;

use super::sim::{Api, fast, template};

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every `(field, JSON type)` of `expected` must be in `row` with that type.
fn assert_shape(what: &str, row: &Value, expected: &[(&str, &str)]) {
    let fields: BTreeMap<&str, &'static str> = row
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.as_str(), json_type(v)))
                .collect()
        })
        .unwrap_or_default();
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(field, kind)| fields.get(field) != Some(kind))
        .map(|(field, kind)| format!("{field}: want {kind}, got {:?}", fields.get(field)))
        .collect();
    assert!(wrong.is_empty(), "{what}: {wrong:?}\nin {row}");
}

fn find<'a>(rows: &'a Value, id: &str) -> &'a Value {
    rows["data"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id || r["iface"] == id))
        .unwrap_or_else(|| panic!("no row {id} in {rows}"))
}

/// A two-node cluster with a template 9000, its running full clone 100 and a container 150.
async fn cluster() -> (SimHandle, Api) {
    let (sim, api) = Api::start(SimConfig { nodes: 2, ..fast() }).await;
    template(&api).await;
    let clone = [("newid", "100"), ("name", "web"), ("full", "1")];
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/9000/clone", &clone)
            .await,
        "OK"
    );
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/100/status/start", &[])
            .await,
        "OK"
    );
    sim.insert_container(SimContainer::new("pve2", 150, "ct-dns"))
        .unwrap();
    (sim, api)
}

const GUEST_FIGURES: [(&str, &str); 13] = [
    ("id", "string"),
    ("type", "string"),
    ("vmid", "number"),
    ("node", "string"),
    ("status", "string"),
    ("template", "number"),
    ("maxcpu", "number"),
    ("maxmem", "number"),
    ("maxdisk", "number"),
    ("mem", "number"),
    ("cpu", "number"),
    ("uptime", "number"),
    ("name", "string"),
];

#[tokio::test]
async fn cluster_resources_rows_have_the_fields_of_a_real_cluster() {
    let (_sim, api) = cluster().await;
    let (_, resources) = api.call("GET", "/cluster/resources", &[]).await;
    // pve9x/cluster.go:97 (a real four-node PVE 9 cluster), rows `qemu/100` and `qemu/101`.
    let traffic = [
        ("disk", "number"),
        ("diskread", "number"),
        ("diskwrite", "number"),
        ("netin", "number"),
        ("netout", "number"),
    ];
    for id in ["qemu/100", "qemu/9000", "lxc/150"] {
        let row = find(&resources, id);
        assert_shape(id, row, &GUEST_FIGURES);
        assert_shape(id, row, &traffic);
    }
    assert_eq!(find(&resources, "lxc/150")["type"], "lxc");
    // Same mock, rows `node/node1` … `node/node4`.
    assert_shape(
        "node/pve1",
        find(&resources, "node/pve1"),
        &[
            ("id", "string"),
            ("type", "string"),
            ("node", "string"),
            ("status", "string"),
            ("level", "string"),
            ("cgroup-mode", "number"),
            ("maxcpu", "number"),
            ("maxmem", "number"),
            ("maxdisk", "number"),
            ("mem", "number"),
            ("disk", "number"),
            ("cpu", "number"),
            ("uptime", "number"),
        ],
    );
    // Same mock, rows `storage/node1/local` and the like.
    assert_shape(
        "storage/pve1/local",
        find(&resources, "storage/pve1/local"),
        &[
            ("id", "string"),
            ("type", "string"),
            ("node", "string"),
            ("storage", "string"),
            ("plugintype", "string"),
            ("content", "string"),
            ("shared", "number"),
            ("status", "string"),
            ("maxdisk", "number"),
            ("disk", "number"),
        ],
    );
}

#[tokio::test]
async fn next_id_and_its_refusal_have_real_shapes() {
    let (_sim, api) = cluster().await;
    // pve9x/cluster.go:9: `{"data": "100"}`, a string.
    let (_, next) = api.call("GET", "/cluster/nextid", &[]).await;
    assert_eq!(json_type(&next["data"]), "string");
    let (_, asked) = api.call("GET", "/cluster/nextid", &[("vmid", "300")]).await;
    assert_eq!(asked["data"], "300");
    // pve9x/cluster.go:20: 400 with `errors.vmid` (that mock has no `message`; pve-http-server's
    // JSON formatter adds one to every error since, and the client reads either).
    let (status, taken) = api.call("GET", "/cluster/nextid", &[("vmid", "150")]).await;
    assert_eq!(status, 400);
    assert_eq!(taken["errors"]["vmid"], "VM 150 already exists");
    assert_eq!(taken["data"], Value::Null);
}

#[tokio::test]
async fn nodes_and_their_networks_have_real_shapes() {
    let (_sim, api) = cluster().await;
    let (_, nodes) = api.call("GET", "/nodes", &[]).await;
    // pve9x/nodes.go:10 (real): every field of an online node.
    assert_shape(
        "/nodes",
        &nodes["data"][0],
        &[
            ("id", "string"),
            ("type", "string"),
            ("node", "string"),
            ("status", "string"),
            ("level", "string"),
            ("maxcpu", "number"),
            ("maxmem", "number"),
            ("maxdisk", "number"),
            ("mem", "number"),
            ("disk", "number"),
            ("cpu", "number"),
            ("uptime", "number"),
            ("ssl_fingerprint", "string"),
        ],
    );
    let (_, network) = api.call("GET", "/nodes/pve1/network", &[]).await;
    // pve9x/nodes.go:369 (real): the port and the bridge over it; `netmask` and `bridge_fd`
    // are strings, the flags numbers, and a bridge port carries no `active`.
    let port = find(&network, "eno1");
    assert_shape(
        "eno1",
        port,
        &[
            ("iface", "string"),
            ("type", "string"),
            ("method", "string"),
            ("method6", "string"),
            ("priority", "number"),
            ("families", "array"),
            ("exists", "number"),
        ],
    );
    assert!(port.get("active").is_none(), "{port}");
    assert_shape(
        "vmbr0",
        find(&network, "vmbr0"),
        &[
            ("iface", "string"),
            ("type", "string"),
            ("method", "string"),
            ("method6", "string"),
            ("address", "string"),
            ("netmask", "string"),
            ("cidr", "string"),
            ("gateway", "string"),
            ("bridge_ports", "string"),
            ("bridge_stp", "string"),
            ("bridge_fd", "string"),
            ("autostart", "number"),
            ("active", "number"),
            ("priority", "number"),
            ("families", "array"),
        ],
    );
}

#[tokio::test]
async fn vm_status_and_container_list_have_real_shapes() {
    let (_sim, api) = cluster().await;
    let (_, status) = api
        .call("GET", "/nodes/pve1/qemu/100/status/current", &[])
        .await;
    // pve9x/virtual_machines.go:94 (real): the figures of a running VM.
    assert_shape(
        "status/current",
        &status["data"],
        &[
            ("vmid", "number"),
            ("name", "string"),
            ("status", "string"),
            ("qmpstatus", "string"),
            ("ha", "object"),
            ("cpus", "number"),
            ("maxmem", "number"),
            ("maxdisk", "number"),
            ("mem", "number"),
            ("disk", "number"),
            ("cpu", "number"),
            ("uptime", "number"),
            ("netin", "number"),
            ("netout", "number"),
            ("diskread", "number"),
            ("diskwrite", "number"),
        ],
    );
    // pve9x/containers.go:10 (`PVE::LXC::vmstatus` rows).
    let (_, containers) = api.call("GET", "/nodes/pve2/lxc", &[]).await;
    assert_shape(
        "/nodes/pve2/lxc",
        &containers["data"][0],
        &[
            ("vmid", "number"),
            ("status", "string"),
            ("name", "string"),
            ("cpus", "number"),
            ("maxmem", "number"),
            ("maxdisk", "number"),
            ("maxswap", "number"),
            ("uptime", "number"),
        ],
    );
}

/// `memory` became a property string in PVE 8.1; before, a config showed it as a number.
#[tokio::test]
async fn memory_is_a_number_before_8_1_and_a_string_since_and_the_client_reads_both() {
    for (release, kind) in [("8.0", "number"), ("9.1", "string")] {
        let (sim, api) = Api::start(SimConfig {
            release: release.to_string(),
            ..fast()
        })
        .await;
        sim.insert_vm(
            "pve1",
            120,
            &[("name", "old"), ("memory", "2048"), ("cores", "2")],
        )
        .unwrap();
        let (_, version) = api.call("GET", "/version", &[]).await;
        assert_eq!(version["data"]["release"], release);
        let (_, config) = api.call("GET", "/nodes/pve1/qemu/120/config", &[]).await;
        assert_eq!(json_type(&config["data"]["memory"]), kind, "{release}");
        assert_eq!(json_type(&config["data"]["cores"]), "number", "{release}");
        let conn = proxfleet::commands::Connection::to_sim(&sim).unwrap();
        let read = conn.client.vm_config("pve1", 120).await.unwrap();
        assert_eq!(read.values["memory"], "2048", "{release}");
        assert_eq!(read.values["cores"], "2", "{release}");
    }
}
