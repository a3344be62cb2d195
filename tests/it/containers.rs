//! LXC containers beside VMs: the simulator creates, lists and destroys them and lets them hold
//! their vmids (Proxmox's wording when a VM wants one), and proxfleet treats a vmid or a name
//! held by a container as taken, in preflight and in the plan, without ever touching it.

use proxfleet::sim::{SimConfig, SimContainer, SimHandle};
use serde_json::Value;

use super::common::*;
use super::sim::{Api, fast};

const TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";

/// Two nodes, the Debian container template on `local` of pve2.
async fn with_template() -> (SimHandle, Api) {
    let (sim, api) = Api::start(SimConfig { nodes: 2, ..fast() }).await;
    let download = [
        ("content", "vztmpl"),
        ("filename", "debian-12-standard_12.7-1_amd64.tar.zst"),
        ("url", "https://example.com/debian-12-standard.tar.zst"),
    ];
    assert_eq!(
        api.task("POST", "/nodes/pve2/storage/local/download-url", &download)
            .await,
        "OK"
    );
    (sim, api)
}

fn row<'a>(resources: &'a Value, id: &str) -> Option<&'a Value> {
    resources["data"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id))
}

#[tokio::test]
async fn a_container_is_created_listed_holds_its_vmid_and_is_destroyed() {
    let (_sim, api) = with_template().await;
    let create = [
        ("vmid", "100"),
        ("ostemplate", TEMPLATE),
        ("hostname", "ct-dns"),
        ("rootfs", "local-lvm:8"),
        ("memory", "1024"),
        ("net0", "name=eth0,bridge=vmbr0,ip=dhcp"),
        ("tags", "infra"),
    ];
    assert_eq!(api.task("POST", "/nodes/pve2/lxc", &create).await, "OK");

    let (_, resources) = api
        .call("GET", "/cluster/resources", &[("type", "vm")])
        .await;
    let ct = row(&resources, "lxc/100").expect("the container is listed");
    assert_eq!(ct["type"], "lxc");
    assert_eq!(ct["vmid"], 100);
    assert_eq!(ct["node"], "pve2");
    assert_eq!(ct["name"], "ct-dns");
    assert_eq!(ct["status"], "stopped");
    assert_eq!(ct["maxmem"], 1024u64 << 20);
    assert_eq!(ct["maxdisk"], 8u64 << 30);
    assert_eq!(ct["tags"], "infra");

    let (_, listed) = api.call("GET", "/nodes/pve2/lxc", &[]).await;
    assert_eq!(listed["data"][0]["vmid"], 100);
    assert_eq!(listed["data"][0]["type"], "lxc");
    let (_, elsewhere) = api.call("GET", "/nodes/pve1/lxc", &[]).await;
    assert_eq!(elsewhere["data"], serde_json::json!([]));

    // The vmid is taken for VMs too (pve-cluster `check_vmid_unused`).
    let (_, next) = api.call("GET", "/cluster/nextid", &[]).await;
    assert_eq!(next["data"], "101");
    let (status, taken) = api.call("GET", "/cluster/nextid", &[("vmid", "100")]).await;
    assert_eq!(status, 400);
    assert_eq!(taken["errors"]["vmid"], "VM 100 already exists");
    let (status, refused) = api
        .call(
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "100"), ("name", "vm")],
        )
        .await;
    assert_eq!(status, 500);
    assert_eq!(
        refused["message"],
        "unable to create VM 100 - CT 100 already exists on node 'pve2'\n"
    );
    let (status, again) = api.call("POST", "/nodes/pve1/lxc", &create).await;
    assert_eq!(status, 500);
    assert_eq!(again["message"], "CT 100 already exists on node 'pve2'\n");

    let (status, wrong_node) = api.call("DELETE", "/nodes/pve1/lxc/100", &[]).await;
    assert_eq!(status, 500);
    assert_eq!(
        wrong_node["message"],
        "Configuration file 'nodes/pve1/lxc/100.conf' does not exist\n"
    );
    assert_eq!(api.task("DELETE", "/nodes/pve2/lxc/100", &[]).await, "OK");
    let (_, resources) = api.call("GET", "/cluster/resources", &[]).await;
    assert!(row(&resources, "lxc/100").is_none());
    let (_, next) = api.call("GET", "/cluster/nextid", &[]).await;
    assert_eq!(next["data"], "100");
}

#[tokio::test]
async fn a_clone_onto_a_containers_vmid_fails_in_its_task() {
    let (sim, api) = Api::start(fast()).await;
    super::sim::template(&api).await;
    sim.insert_container(SimContainer::new("pve1", 150, "ct-proxy"))
        .unwrap();
    // The early `-f $conffile` check passes (no QEMU config there); pmxcfs refuses the rename.
    let status = api
        .task(
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "150"), ("name", "web")],
        )
        .await;
    assert_eq!(
        status,
        "close (rename) atomic file '/etc/pve/nodes/pve1/qemu-server/150.conf' failed: File exists"
    );
    let (_, resources) = api.call("GET", "/cluster/resources", &[]).await;
    assert_eq!(row(&resources, "lxc/150").unwrap()["name"], "ct-proxy");
    assert!(row(&resources, "qemu/150").is_none());
}

#[tokio::test]
async fn a_container_template_that_is_missing_fails_the_create_task() {
    let (_sim, api) = Api::start(fast()).await;
    let status = api
        .task(
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "120"),
                ("ostemplate", TEMPLATE),
                ("rootfs", "local-lvm:4"),
            ],
        )
        .await;
    assert_eq!(
        status,
        format!("unable to create CT 120 - can't find file '{TEMPLATE}'")
    );
    let (_, next) = api.call("GET", "/cluster/nextid", &[]).await;
    assert_eq!(next["data"], "100", "the failed create left nothing behind");
}

/// The quickstart's web-2 wants vmid 202 and the name `web-2`.
async fn cluster_with(container: SimContainer) -> (SimHandle, proxfleet::commands::Connection) {
    let (sim, conn) = sim().await;
    sim.insert_container(container).unwrap();
    (sim, conn)
}

#[tokio::test]
async fn a_vmid_held_by_a_container_is_a_plan_conflict_and_a_preflight_failure() {
    let (sim, conn) = cluster_with(SimContainer::new("pve1", 202, "ct-name")).await;
    let spec = example("quickstart.yaml");

    let run = plan(&conn, &spec).await;
    let message = run
        .result
        .expect_err("a conflict fails the plan")
        .to_string();
    assert!(
        message.contains(
            "clone.web-2: vmid 202 is taken by container 202 (`ct-name`) on node pve1, which proxfleet did not create"
        ),
        "{message}"
    );

    let checked = check(&conn, &spec, false).await;
    assert_eq!(checked.code, 1, "{}", checked.out);
    assert!(
        checked.out.contains(
            "✗ 202 (clone.web-2): held by container 202 `ct-name` on pve1, which proxfleet did not create"
        ),
        "{}",
        checked.out
    );

    sim.clear_requests();
    assert!(apply(&conn, &spec).await.result.is_err());
    assert_eq!(write_requests(&sim), Vec::<String>::new());
    assert!(
        sim.requests().iter().all(|r| !r.path.contains("/202")),
        "nothing reads or writes the container: {:?}",
        sim.requests()
    );
}

#[tokio::test]
async fn a_name_held_by_a_container_is_a_plan_conflict_as_for_a_foreign_vm() {
    let (_sim, conn) = cluster_with(SimContainer::new("pve1", 150, "web-2")).await;
    let run = plan(&conn, &example("quickstart.yaml")).await;
    let message = run
        .result
        .expect_err("a conflict fails the plan")
        .to_string();
    assert!(
        message.contains(
            "clone.web-2: container 150 on node pve1 already has the name `web-2` and is not managed by this project"
        ),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_serve_seeds_containers_and_answers_as_an_older_release() {
    const TOKEN: &str = "root@pam!ci=6f1c52b1-0c8e-4d5f-9a3b-7e2d4c6f8a90";
    let dir = tempfile::tempdir().unwrap();
    let server = sim_serve_tls(
        dir.path(),
        &[
            "--token",
            TOKEN,
            "--nodes",
            "2",
            "--container",
            "pve2:105:ct-name",
            "--pve-release",
            "8.0",
        ],
    );
    assert!(server.ready, "sim serve --tls did not come up");
    let client = proxfleet::pve::PveClient::new(proxfleet::pve::ClientConfig {
        endpoint: format!("https://{}", server.listen),
        token: proxfleet::pve::ApiToken::parse(TOKEN).unwrap(),
        insecure: false,
        ca_file: Some(server.ca.clone()),
        timeout: std::time::Duration::from_secs(10),
        read_retry: proxfleet::pve::ReadRetry::never(),
    })
    .unwrap();
    assert_eq!(client.version().await.unwrap().release, "8.0");
    let guests = client.cluster_vms().await.unwrap();
    let ct = guests.iter().find(|g| g.vmid == 105).expect("listed");
    assert_eq!(ct.kind, proxfleet::pve::GuestKind::Lxc);
    assert_eq!(
        (ct.node.as_str(), ct.name.as_deref()),
        ("pve2", Some("ct-name"))
    );
    assert!(!client.vmid_is_free(105).await.unwrap());
    assert_eq!(client.next_id().await.unwrap(), 100);
}
