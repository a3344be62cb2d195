//! Settings that layer from the template down to its clones, end to end on the simulator:
//! resource pools (created when missing, moved when the spec moves a VM), start on boot as a
//! template-level default, and IP settings for interfaces after `net0`.

use super::common::{apply, plan, quickstart_text, sim, write_spec};

fn spec_text(web2_pool: &str) -> String {
    quickstart_text()
        .replace(
            "    agent: true\n",
            "    agent: true\n    pool: templates\n    onboot: true\n",
        )
        .replace(
            "      - bridge: vmbr0\n        model: virtio\n",
            "      - bridge: vmbr0\n        model: virtio\n      - bridge: vmbr0\n        model: virtio\n        vlan: 20\n",
        )
        .replace(
            "      ipv4: 192.0.2.11/24\n      gateway: 192.0.2.1\n",
            "      ipv4: 192.0.2.11/24\n      gateway: 192.0.2.1\n      extra_interfaces:\n        - ipv4: 10.20.0.11/24\n          ipv6: auto\n",
        )
        .replace(
            "  web-2:\n    vmid: 202\n    template: debian-12-base\n",
            &format!("  web-2:\n    vmid: 202\n    template: debian-12-base\n    pool: {web2_pool}\n    onboot: false\n"),
        )
}

async fn pools(conn: &proxfleet::commands::Connection) -> Vec<(u32, Option<String>)> {
    let mut out: Vec<(u32, Option<String>)> = conn
        .client
        .cluster_vms()
        .await
        .expect("resources")
        .into_iter()
        .map(|vm| (vm.vmid, vm.pool))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn pools_onboot_defaults_and_extra_interfaces_converge() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write_spec(dir.path(), "fleet.yaml", &spec_text("web"));
    let planned = plan(&conn, &spec).await;
    assert!(planned.out.contains("pool"), "{}", planned.out);
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);

    let some = |p: &str| Some(p.to_string());
    assert_eq!(
        pools(&conn).await,
        vec![
            (201, some("templates")),
            (202, some("web")),
            (203, some("templates")),
            (9000, some("templates")),
        ]
    );
    let vms = sim.vms();
    let config = |vmid: u32| {
        vms.iter()
            .find(|vm| vm.vmid == vmid)
            .map(|vm| vm.config.clone())
            .unwrap_or_default()
    };
    assert_eq!(config(201).get("onboot").map(String::as_str), Some("1"));
    assert_eq!(config(203).get("onboot").map(String::as_str), Some("1"));
    assert_eq!(config(202).get("onboot").map(String::as_str), Some("0"));
    assert_eq!(
        config(201).get("ipconfig1").map(String::as_str),
        Some("ip=10.20.0.11/24,ip6=auto")
    );
    assert!(!config(202).contains_key("ipconfig1"));

    let again = plan(&conn, &spec).await;
    assert!(again.out.starts_with("No changes."), "{}", again.out);

    // Moving a clone to another pool is an in-place change.
    let spec = write_spec(dir.path(), "fleet.yaml", &spec_text("db"));
    let moved = plan(&conn, &spec).await;
    assert!(
        moved.out.contains("~ pool = \"web\" → \"db\""),
        "{}",
        moved.out
    );
    assert!(moved.out.contains("1 to change"), "{}", moved.out);
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert!(pools(&conn).await.contains(&(202, some("db"))));
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));
}

#[tokio::test]
async fn a_template_its_linked_clones_read_from_is_not_rebuilt_and_the_plan_says_why() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let linked = quickstart_text().replace(
        "  web-3:\n    vmid: 203\n    template: debian-12-base\n",
        "  web-3:\n    vmid: 203\n    template: debian-12-base\n    full: false\n",
    );
    let spec = write_spec(dir.path(), "fleet.yaml", &linked);
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{:?}", run.out, run.result);

    // A rebuild of the template (here: more cores) would have to delete its base disks.
    let rebuilt = write_spec(
        dir.path(),
        "fleet.yaml",
        &linked.replace("    cores: 2\n", "    cores: 4\n"),
    );
    sim.clear_requests();
    let planned = plan(&conn, &rebuilt).await;
    let message = format!("{:?}", planned.result);
    assert!(
        message.contains(
            "it cannot be rebuilt: linked clones still use its base disks: VM 203 (`web-3`)"
        ),
        "{message}"
    );
    let refused = apply(&conn, &rebuilt).await;
    assert!(refused.result.is_err());
    assert!(
        crate::common::write_requests(&sim).is_empty(),
        "nothing was changed"
    );

    // The simulator refuses as Proxmox does when asked anyway.
    let template_vmid = 9000;
    let upid = conn
        .client
        .delete_vm("pve1", template_vmid, true)
        .await
        .expect("the request is accepted; the task fails");
    let err = conn
        .client
        .wait_task(&upid, std::time::Duration::from_secs(10))
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("is still in use by linked cloned"),
        "{err}"
    );
}

#[tokio::test]
async fn adopt_takes_over_a_vm_made_by_hand_and_refuses_what_it_would_have_to_rebuild() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A VM someone made by hand, holding web-1's vmid.
    sim.insert_vm(
        "pve1",
        201,
        &[("name", "old-web"), ("memory", "1024"), ("cores", "1")],
    )
    .expect("insert");
    let plain = write_spec(dir.path(), "fleet.yaml", &quickstart_text());
    let refused = plan(&conn, &plain).await;
    assert!(
        format!("{:?}", refused.result).contains("vmid 201 is taken by VM 201 (`old-web`)"),
        "without adopt it is a conflict: {:?}",
        refused.result
    );

    let adopting = write_spec(
        dir.path(),
        "fleet.yaml",
        &quickstart_text().replace(
            "  web-1:\n    vmid: 201\n",
            "  web-1:\n    vmid: 201\n    adopt: true\n",
        ),
    );
    let planned = plan(&conn, &adopting).await;
    assert!(planned.result.is_ok(), "{:?}", planned.result);
    assert!(
        planned
            .out
            .contains("+ adopt       = \"VM 201 (`old-web`) becomes managed by proxfleet\""),
        "{}",
        planned.out
    );
    assert!(
        planned
            .out
            .contains("~ name        = \"old-web\" → \"web-1\""),
        "{}",
        planned.out
    );
    let run = apply(&conn, &adopting).await;
    assert!(run.result.is_ok(), "{}\n{:?}", run.out, run.result);
    let vm = sim
        .vms()
        .into_iter()
        .find(|vm| vm.vmid == 201)
        .expect("still there");
    assert_eq!(vm.name.as_deref(), Some("web-1"));
    assert_eq!(vm.config.get("memory").map(String::as_str), Some("2048"));
    assert!(vm.config["description"].contains("key=clone.web-1 vmid=201"));
    assert!(vm.running);
    assert!(plan(&conn, &adopting).await.out.starts_with("No changes."));

    // Adopting what would have to be rebuilt is refused: a hand-made VM is not the template.
    let (sim, conn) = super::common::sim().await;
    sim.insert_vm("pve1", 9100, &[("name", "not-a-template")])
        .expect("insert");
    let template = write_spec(
        dir.path(),
        "fleet.yaml",
        &quickstart_text().replace("    vmid: 9000\n", "    vmid: 9100\n    adopt: true\n"),
    );
    let refused = plan(&conn, &template).await;
    let message = format!("{:?}", refused.result);
    assert!(
        message.contains("VM 9100 cannot be adopted as it is: it is not a template"),
        "{message}"
    );
}

#[tokio::test]
async fn a_full_clone_for_another_node_from_local_storage_is_made_beside_the_template_and_migrated()
{
    use proxfleet::sim::{SimConfig, SimHandle};
    let sim = SimHandle::start(SimConfig {
        nodes: 2,
        task_duration: Some(std::time::Duration::from_millis(3)),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let conn = proxfleet::commands::Connection::to_sim(&sim).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    // The quickstart's template is on local-lvm on pve1; web-2 belongs on pve2.
    let text = quickstart_text().replace(
        "  web-2:\n    vmid: 202\n    template: debian-12-base\n",
        "  web-2:\n    vmid: 202\n    template: debian-12-base\n    node: pve2\n",
    );
    let spec = write_spec(dir.path(), "fleet.yaml", &text);
    let planned = plan(&conn, &spec).await;
    assert!(
        planned.out.contains(
            "+ migrate     = \"made on pve1 beside the template (its disks are on node-local `local-lvm`), then migrated to pve2\""
        ),
        "{}",
        planned.out
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{:?}", run.out, run.result);
    let web2 = sim
        .vms()
        .into_iter()
        .find(|vm| vm.vmid == 202)
        .expect("web-2");
    assert_eq!(web2.node, "pve2");
    assert!(web2.running);
    let disks: Vec<_> = sim
        .volumes()
        .into_iter()
        .filter(|v| v.volid.contains("vm-202-"))
        .collect();
    assert!(!disks.is_empty());
    assert!(disks.iter().all(|v| v.node == "pve2"), "{disks:?}");
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));

    // A linked clone cannot leave its local base image: said before anything runs.
    let linked = write_spec(
        dir.path(),
        "linked.yaml",
        &text.replace("    node: pve2\n", "    node: pve2\n    full: false\n"),
    );
    let err = proxfleet::spec::load(&linked).expect_err("refused");
    assert!(
        err.to_string().contains(
            "a linked clone on node `pve2` cannot be made from template `debian-12-base`"
        ),
        "{err}"
    );
}

/// `validate --explain` reads the settings the graph is built from; for every clone of the
/// examples and of a spec with every layer, each value it shows is what the graph asks of
/// Proxmox, and each option the graph manages from a layer is explained.
#[test]
fn explained_values_are_what_the_graph_asks_of_proxmox() {
    use proxfleet::graph::{DesiredGraph, Recipe, Resource};
    use proxfleet::ownership::{ResourceKey, ResourceKind};

    let files = [
        super::common::example("quickstart.yaml"),
        super::common::example("homelab.yaml"),
        super::common::example("cluster.yaml"),
        super::common::root().join("tests/fixtures/valid/layered.yaml"),
    ];
    let mut n_rows = 0;
    for file in files {
        let loaded = proxfleet::spec::load(&file).expect("valid spec");
        let graph = DesiredGraph::build(&loaded.spec);
        for clone in &loaded.spec.clones {
            let key = ResourceKey::new(ResourceKind::Clone, &clone.name);
            let Some(Resource::Vm(vm)) = graph.get(&key) else {
                panic!("{key} is not in the graph of {}", file.display());
            };
            let Recipe::Clone(recipe) = &vm.recipe else {
                panic!("{key} is not a clone");
            };
            let template_key = ResourceKey::new(ResourceKind::Template, &clone.template);
            let Some(Resource::Vm(template)) = graph.get(&template_key) else {
                panic!("{template_key} is not in the graph");
            };
            let option = |name: &str| vm.settings.get(name).cloned();
            let rows = &loaded.explanations[&clone.name];
            for row in rows {
                let from_template = row.source.starts_with("templates.");
                let asked: Option<String> = match row.field.as_str() {
                    "vmid" => Some(vm.vmid.to_string()),
                    "template" => Some(format!(
                        "{} (vmid {})",
                        clone.template, recipe.template_vmid
                    )),
                    "node" => Some(vm.node.clone()),
                    "full" => Some(recipe.full.to_string()),
                    "cores" | "sockets" => option(&row.field),
                    "memory" => option("memory").map(|mib| format!("{mib} MiB")),
                    "tags" => option("tags").map(|tags| {
                        let user: Vec<&str> =
                            tags.split(';').filter(|t| *t != "proxfleet").collect();
                        user.join(";")
                    }),
                    "start" => Some(vm.running.to_string()),
                    "wait_for_ip" => vm.wait_for_ip.map(|timeout| {
                        format!("true (up to {})", proxfleet::spec::human_duration(timeout))
                    }),
                    "onboot" => option("onboot").map(|flag| (flag == "1").to_string()),
                    "pool" => vm.pool.clone(),
                    "cloud_init.user" => option("ciuser"),
                    "cloud_init.ipconfig0" => option("ipconfig0"),
                    "cloud_init.ssh_keys" => option("sshkeys")
                        .map(|keys| format!("{} key(s)", keys.split("%0A").count())),
                    "cloud_init.dns.servers" => option("nameserver"),
                    "cloud_init.dns.search_domain" => option("searchdomain"),
                    // Write-only: sent with the clone's own layers, or with the template it
                    // is cloned from.
                    "cloud_init.password" => {
                        let sender = if from_template { template } else { vm };
                        sender
                            .secrets
                            .iter()
                            .any(|(name, _)| name == "cipassword")
                            .then(|| "(sensitive)".to_string())
                    }
                    "cloud_init.user_data"
                    | "cloud_init.vendor_data"
                    | "cloud_init.network_data" => vm.seed.as_deref().and_then(|seed| {
                        let ci = &seed.cloud_init;
                        let data = match row.field.as_str() {
                            "cloud_init.user_data" => &ci.user_data,
                            "cloud_init.vendor_data" => &ci.vendor_data,
                            _ => &ci.network_data,
                        };
                        data.as_ref().map(|d| d.path.clone())
                    }),
                    "cloud_init.delivery" => match vm.seed.as_deref() {
                        Some(seed) if seed.is_snippets() => Some("snippets".to_string()),
                        Some(_) => Some("iso".to_string()),
                        // Nothing to deliver: the setting asks nothing of Proxmox.
                        None => Some(row.value.clone()),
                    },
                    other => panic!("--explain shows `{other}`, which this test does not know"),
                };
                assert_eq!(
                    asked.as_deref(),
                    Some(row.value.as_str()),
                    "{key} `{}` in {}: --explain says `{}` from {}",
                    row.field,
                    file.display(),
                    row.value,
                    row.source
                );
                n_rows += 1;
            }
            let explained = |field: &str| rows.iter().any(|row| row.field == field);
            for (option, field) in [
                ("cores", "cores"),
                ("sockets", "sockets"),
                ("memory", "memory"),
                ("tags", "tags"),
                ("onboot", "onboot"),
                ("ciuser", "cloud_init.user"),
                ("ipconfig0", "cloud_init.ipconfig0"),
                ("sshkeys", "cloud_init.ssh_keys"),
                ("nameserver", "cloud_init.dns.servers"),
                ("searchdomain", "cloud_init.dns.search_domain"),
            ] {
                assert!(
                    !vm.settings.contains_key(option) || explained(field),
                    "{key}: the graph sets `{option}` and --explain does not say why"
                );
            }
        }
    }
    assert!(n_rows > 300, "{n_rows}");
}

/// Each value's layer, where the old `--explain` got it wrong: a field an `overrides` entry
/// does not set comes from the group, and `ipconfig0` names both layers when IPv4 and IPv6
/// come from different ones.
#[test]
fn explained_layers_are_field_by_field() {
    let file = super::common::root().join("tests/fixtures/valid/layered.yaml");
    let loaded = proxfleet::spec::load(&file).expect("valid spec");
    let shown = |clone: &str, field: &str| {
        loaded.explanations[clone]
            .iter()
            .find(|row| row.field == field)
            .map(|row| format!("{} from {}", row.value, row.source))
    };
    let cases = [
        ("app-2", "cloud_init.user", "app from clone_groups.app"),
        (
            "app-2",
            "memory",
            "8192 MiB from clone_groups.app.overrides.app-2",
        ),
        (
            "app-2",
            "cloud_init.ipconfig0",
            "gw=10.0.0.1,ip=10.0.0.11/24,ip6=dhcp from clone_groups.app (ipv4), clone_groups.app.overrides.app-2 (ipv6)",
        ),
        (
            "app-3",
            "cloud_init.ipconfig0",
            "gw=10.0.0.1,ip=10.0.0.99/24,ip6=auto from clone_groups.app.overrides.app-3 (ipv4), templates.base (ipv6)",
        ),
        (
            "app-3",
            "tags",
            "special from clone_groups.app.overrides.app-3",
        ),
        (
            "app-1",
            "wait_for_ip",
            "true (up to 30s) from templates.base",
        ),
        (
            "solo",
            "cloud_init.ipconfig0",
            "gw=192.0.2.1,ip=192.0.2.11/24,ip6=auto from clones.solo (ipv4), templates.base (ipv6)",
        ),
        ("solo", "pool", "web from clones.solo"),
        ("plain", "node", "pve1 from defaults"),
        ("plain", "pool", "templates from templates.base"),
        ("plain", "full", "true from proxfleet default"),
    ];
    for (clone, field, expected) in cases {
        assert_eq!(
            shown(clone, field).as_deref(),
            Some(expected),
            "{clone} {field}"
        );
    }
    assert_eq!(shown("app-3", "wait_for_ip"), None, "app-3 does not wait");
}
