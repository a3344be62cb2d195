//! `wait_for_ip`: a clone's address read from the QEMU guest agent after proxfleet starts it,
//! and the simulator's agent as Proxmox answers for it (not configured, VM not running, agent
//! not up yet, then its interfaces). A static address is shown without asking; an agent that
//! never answers is a warning after the clone's own time-out, never a failed change, and an
//! interrupt ends the wait at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proxfleet::apply::{ApplyOptions, Event, StepResult};
use proxfleet::commands::Connection;
use proxfleet::graph::DesiredGraph;
use proxfleet::sim::{SimConfig, SimHandle};
use serde_json::json;

use crate::common::*;
use crate::sim::{Api, fast};

/// The quickstart's image, then `rest` (templates, clones, groups).
fn spec_with(rest: &str) -> String {
    let quickstart = quickstart_text();
    let end = quickstart.find("templates:").unwrap();
    format!("{}{rest}", &quickstart[..end])
}

fn template(extra: &str) -> String {
    format!(
        "templates:
  base:
    vmid: 9000
    node: pve1
    image: debian-12
    disk:
      storage: local-lvm
      size: 20G
    network:
      - bridge: vmbr0
    cloud_init:
      user: debian
      ipv4: dhcp
{extra}"
    )
}

async fn sim_booting_in(boot: Duration) -> (SimHandle, Connection) {
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(5)),
        agent_boot_delay: boot,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let conn = Connection::to_sim(&sim).unwrap();
    (sim, conn)
}

fn agent_requests(sim: &SimHandle, vmid: u32) -> usize {
    let path = format!("/api2/json/nodes/pve1/qemu/{vmid}/agent/network-get-interfaces");
    sim.requests().iter().filter(|r| r.path == path).count()
}

/// The summary row of a resource: its cells, trimmed.
fn row(out: &str, key: &str) -> Vec<String> {
    let line = out
        .lines()
        .find(|l| l.starts_with('│') && l.contains(&format!(" {key} ")))
        .unwrap_or_else(|| panic!("no row for {key}:\n{out}"));
    line.split(['│', '┆'])
        .map(|cell| cell.trim().to_string())
        .filter(|cell| !cell.is_empty())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_simulated_agent_answers_as_proxmox_does_once_the_guest_has_booted() {
    let acl = |text: &str| proxfleet::sim::AclEntry::parse(text).unwrap();
    let (sim, api) = Api::start(SimConfig {
        agent_boot_delay: Duration::from_millis(300),
        tokens: vec![
            proxfleet::sim::DEFAULT_TOKEN.to_string(),
            AUDITOR.to_string(),
            CLONER.to_string(),
        ],
        acls: vec![
            acl("/vms:PVEAuditor:audit@pve"),
            acl("/vms:PVETemplateUser:clone@pve"),
        ],
        ..fast()
    })
    .await;
    let path = |vmid: u32| format!("/nodes/pve1/qemu/{vmid}/agent/network-get-interfaces");
    sim.insert_vm("pve1", 100, &[("name", "plain")]).unwrap();
    sim.insert_vm(
        "pve1",
        101,
        &[
            ("name", "dhcp"),
            ("agent", "enabled=1"),
            ("net0", "virtio=BC:24:11:0A:0B:0C,bridge=vmbr0"),
            ("net1", "virtio=BC:24:11:0A:0B:0D,bridge=vmbr0"),
            ("ipconfig0", "ip=dhcp"),
            ("ipconfig1", "gw=10.9.0.1,ip=10.9.0.7/16,ip6=2001:db8::7/64"),
        ],
    )
    .unwrap();
    sim.insert_vm(
        "pve1",
        102,
        &[
            ("agent", "0"),
            ("net0", "virtio=BC:24:11:0A:0B:0E,bridge=vmbr0"),
        ],
    )
    .unwrap();
    let message =
        |body: &serde_json::Value| body["message"].as_str().unwrap_or_default().to_string();

    // No `agent` option at all, running or not.
    let (status, body) = api.call("GET", &path(100), &[]).await;
    assert_eq!(
        (status, message(&body)),
        (500, "No QEMU guest agent configured\n".into())
    );
    // Configured, but the VM is stopped.
    let (status, body) = api.call("GET", &path(101), &[]).await;
    assert_eq!(
        (status, message(&body)),
        (500, "VM 101 is not running\n".into())
    );
    // Started: the guest boots, its agent answers only after the boot delay.
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/101/status/start", &[])
            .await,
        "OK"
    );
    let (status, body) = api.call("GET", &path(101), &[]).await;
    assert_eq!(
        (status, message(&body)),
        (500, "QEMU guest agent is not running\n".into())
    );
    // On the paused clock: the boot delay passes without waiting for it.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, body) = api.call("GET", &path(101), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"result": [
            {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
                {"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
                {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}]},
            {"name": "eth0", "hardware-address": "bc:24:11:0a:0b:0c", "ip-addresses": [
                {"ip-address-type": "ipv4", "ip-address": "198.51.100.201", "prefix": 24},
                {"ip-address-type": "ipv6", "ip-address": "fe80::be24:11ff:fe0a:b0c", "prefix": 64}]},
            {"name": "eth1", "hardware-address": "bc:24:11:0a:0b:0d", "ip-addresses": [
                {"ip-address-type": "ipv4", "ip-address": "10.9.0.7", "prefix": 16},
                {"ip-address-type": "ipv6", "ip-address": "2001:db8::7", "prefix": 64},
                {"ip-address-type": "ipv6", "ip-address": "fe80::be24:11ff:fe0a:b0d", "prefix": 64}]},
        ]}),
        "DHCP on net0 (a lease by vmid), the static address of ipconfig1 on net1"
    );
    // The same VM gets the same lease each time it boots.
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/101/status/stop", &[])
            .await,
        "OK"
    );
    let (_, body) = api.call("GET", &path(101), &[]).await;
    assert_eq!(message(&body), "VM 101 is not running\n");
    // `agent: 0`: configured off, so no agent ever answers in the guest.
    sim.set_running(102, true).unwrap();
    let (status, body) = api.call("GET", &path(102), &[]).await;
    assert_eq!(
        (status, message(&body)),
        (500, "QEMU guest agent is not running\n".into())
    );
    // Reading it takes VM.GuestAgent.Audit (or .Unrestricted) on the VM.
    let (status, body) = api.as_token(CLONER).call("GET", &path(102), &[]).await;
    assert_eq!(
        (status, message(&body)),
        (403, "Permission check failed\n".into())
    );
    let (status, _) = api.as_token(AUDITOR).call("GET", &path(102), &[]).await;
    assert_eq!(status, 500, "allowed to ask; the agent does not answer");
}

const AUDITOR: &str = "audit@pve!ci=11111111-2222-4333-8444-000000000001";
const CLONER: &str = "clone@pve!ci=11111111-2222-4333-8444-000000000002";

#[tokio::test]
async fn clones_show_the_address_their_guest_agent_reports_and_static_ones_without_asking() {
    let (sim, conn) = sim_booting_in(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let text = spec_with(&format!(
        "{}clones:
  dhcp-1:
    vmid: 201
    template: base
  fixed-1:
    vmid: 202
    template: base
    cloud_init:
      ipv4: 192.0.2.12/24
      gateway: 192.0.2.1
clone_groups:
  app:
    count: 2
    first_vmid: 301
    template: base
    wait_for_ip_timeout: 30s
    overrides:
      app-2:
        wait_for_ip: false
",
        template("    agent: true\n    wait_for_ip: true\n")
    ));
    let spec = write_spec(dir.path(), "agent.yaml", &text);
    // `validate --explain` says which layer asks for the wait.
    let loaded = proxfleet::spec::load_str(&text, &spec).unwrap();
    let explained = |clone: &str| {
        loaded.explanations[clone]
            .iter()
            .find(|e| e.field == "wait_for_ip")
            .map(|e| format!("{} from {}", e.value, e.source))
    };
    assert_eq!(
        explained("dhcp-1").as_deref(),
        Some("true (up to 5m) from templates.base")
    );
    assert_eq!(
        explained("app-1").as_deref(),
        Some("true (up to 30s) from templates.base")
    );
    assert_eq!(explained("app-2"), None);
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert_eq!(
        row(&run.out, "clone.dhcp-1").last().unwrap(),
        "198.51.100.151"
    );
    assert_eq!(row(&run.out, "clone.fixed-1").last().unwrap(), "192.0.2.12");
    assert_eq!(
        row(&run.out, "clone.app-1").last().unwrap(),
        "198.51.100.101"
    );
    assert!(
        !row(&run.out, "clone.app-2")
            .iter()
            .any(|c| c.starts_with("198.51.100.")),
        "app-2 does not wait: {:?}",
        row(&run.out, "clone.app-2")
    );
    assert!(!run.out.contains("warning:"), "{}", run.out);
    assert!(
        agent_requests(&sim, 201) >= 2,
        "asked until the guest booted"
    );
    assert_eq!(
        agent_requests(&sim, 202),
        0,
        "a static address is used as it is"
    );
    assert_eq!(agent_requests(&sim, 302), 0, "app-2 overrides its group");
    // Waiting is not state: the next plan is empty, and a run without changes asks nothing.
    sim.clear_requests();
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));
    assert_eq!(agent_requests(&sim, 201), 0);
}

#[tokio::test]
async fn an_agent_that_never_answers_is_a_warning_after_the_timeout_not_a_failure() {
    // A cloud image without qemu-guest-agent: the agent never comes up.
    let (sim, conn) = sim_booting_in(Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let text = spec_with(&format!(
        "{}clones:
  web-1:
    vmid: 201
    template: base
    wait_for_ip: true
    wait_for_ip_timeout: 1s
",
        template("    agent: true\n")
    ));
    let spec = write_spec(dir.path(), "agent.yaml", &text);
    let started = Instant::now();
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert_eq!(run.code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "never hangs past the time-out: {:?}",
        started.elapsed()
    );
    assert!(
        run.out.contains("Apply complete: 3 succeeded, 0 failed, 0 skipped.\n\nwarning: clone.web-1: no address from the guest agent within 1s (last answer: QEMU guest agent is not running)\n"),
        "{}",
        run.out
    );
    assert_eq!(row(&run.out, "clone.web-1")[2], "ok");
    assert!(agent_requests(&sim, 201) >= 2, "polled, with backoff");
    assert!(sim.vms().iter().any(|vm| vm.vmid == 201 && vm.running));
}

#[tokio::test]
async fn a_template_without_the_agent_is_said_at_once_and_warned_about_when_validating() {
    let (sim, conn) = sim_booting_in(Duration::from_millis(50)).await;
    let dir = tempfile::tempdir().unwrap();
    let text = spec_with(&format!(
        "{}clones:
  web-1:
    vmid: 201
    template: base
    wait_for_ip: true
",
        template("")
    ));
    let spec = write_spec(dir.path(), "agent.yaml", &text);
    let loaded = proxfleet::spec::load_str(&text, &spec).unwrap();
    assert_eq!(
        loaded
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.path, w.message))
            .collect::<Vec<_>>(),
        vec![
            "clones.web-1.wait_for_ip: template `base` does not enable the guest agent (`agent: true`), so Proxmox has no agent to ask for the address"
        ]
    );
    let started = Instant::now();
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert!(
        run.out.contains("warning: clone.web-1: no address: the VM has no QEMU guest agent configured (`agent: true` on its template)"),
        "{}",
        run.out
    );
    assert_eq!(
        agent_requests(&sim, 201),
        1,
        "asked once: asking again cannot help"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn waiting_clones_hold_no_parallelism_slot_and_an_interrupt_ends_the_wait() {
    let (_sim, conn) = sim_booting_in(Duration::from_secs(3600)).await;
    let text = spec_with(&format!(
        "{}clone_groups:
  web:
    count: 3
    first_vmid: 201
    template: base
    wait_for_ip: true
    wait_for_ip_timeout: 1h
",
        template("    agent: true\n")
    ));
    let spec = std::path::Path::new("agent.yaml");
    let loaded = proxfleet::spec::load_str(&text, spec).unwrap();
    let desired = DesiredGraph::build(&loaded.spec);
    let actual = proxfleet::observe::observe(&conn.client, &desired)
        .await
        .unwrap();
    let plan = proxfleet::diff::diff(&desired, &actual);
    let options = ApplyOptions {
        parallelism: 1,
        ..ApplyOptions::default()
    };
    // Interrupt once every clone is started: each then waits (for an hour) for its address.
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let events = Arc::clone(&events);
        let cancel = options.cancel.clone();
        Arc::new(move |event: Event| {
            let mut events = events.lock().unwrap();
            events.push(event);
            let n_started = events
                .iter()
                .filter(|e| matches!(e, Event::Step { what, .. } if what == "start"))
                .count();
            if n_started == 3 {
                cancel.cancel();
            }
        })
    };
    let started = Instant::now();
    let report =
        proxfleet::apply::apply(&conn.client, &plan, &desired, &actual, &options, sink).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the interrupt ended the waits: {:?}",
        started.elapsed()
    );
    // With one slot, the second and third clones started while the first still waited.
    let events = events.lock().unwrap();
    let position = |wanted: &dyn Fn(&Event) -> bool| events.iter().position(wanted).unwrap();
    let web1_done =
        position(&|e| matches!(e, Event::Finished { key, .. } if key.to_string() == "clone.web-1"));
    let web3_started =
        position(&|e| matches!(e, Event::Started { key, .. } if key.to_string() == "clone.web-3"));
    assert!(web3_started < web1_done, "{events:#?}");
    for outcome in report
        .outcomes
        .iter()
        .filter(|o| o.key.to_string().starts_with("clone."))
    {
        assert_eq!(outcome.result, StepResult::Ok, "{}", outcome.key);
        assert_eq!(
            outcome.warnings,
            vec!["stopped waiting for an address: the run was interrupted".to_string()]
        );
        assert_eq!(outcome.ip, None);
    }
    assert!(
        !report.interrupted(),
        "every change was done; only the waits were cut short"
    );
}

#[test]
fn the_token_needs_to_read_the_guest_agent_only_for_clones_that_wait() {
    let text = spec_with(&format!(
        "{}clones:
  dhcp-1:
    vmid: 201
    template: base
  fixed-1:
    vmid: 202
    template: base
    cloud_init:
      ipv4: 192.0.2.12/24
  quiet-1:
    vmid: 203
    template: base
    wait_for_ip: false
",
        template("    agent: true\n    wait_for_ip: true\n")
    ));
    let loaded = proxfleet::spec::load_str(&text, std::path::Path::new("agent.yaml")).unwrap();
    let desired = DesiredGraph::build(&loaded.spec);
    let needs = proxfleet::preflight::Needs::of(&loaded.spec, &desired);
    let agent_paths: Vec<&str> = needs
        .privileges
        .keys()
        .filter(|(_, privilege)| *privilege == "VM.GuestAgent.Audit")
        .map(|(path, _)| path.as_str())
        .collect();
    assert_eq!(agent_paths, ["/vms/201"]);
}

#[tokio::test]
async fn a_refusal_is_not_asked_again() {
    // A token with what proxfleet needs to build the fleet, but not VM.GuestAgent.Audit.
    let privileges = "Sys.Audit,Sys.AccessNetwork,VM.Allocate,VM.Clone,VM.Audit,VM.PowerMgmt,VM.Config.Disk,VM.Config.CDROM,VM.Config.CPU,VM.Config.Memory,VM.Config.Network,VM.Config.HWType,VM.Config.Options,VM.Config.Cloudinit,Datastore.Allocate,Datastore.AllocateSpace,Datastore.AllocateTemplate,Datastore.Audit,SDN.Use,Mapping.Use,Pool.Allocate";
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(5)),
        tokens: vec![CLONER.to_string()],
        roles: [(
            "NoAgent".to_string(),
            privileges.split(',').map(str::to_string).collect(),
        )]
        .into(),
        acls: vec![proxfleet::sim::AclEntry::parse("/:NoAgent:clone@pve").unwrap()],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let conn = Connection::to_sim(&sim).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = spec_with(&format!(
        "{}clones:
  web-1:
    vmid: 201
    template: base
    wait_for_ip: true
",
        template("    agent: true\n")
    ));
    let spec = write_spec(dir.path(), "agent.yaml", &text);
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert!(
        run.out.contains(
            "warning: clone.web-1: no address from the guest agent: Permission check failed\n"
        ),
        "{}",
        run.out
    );
    assert_eq!(agent_requests(&sim, 201), 1);
}
