//! Convergence under interruption: Ctrl-C (a cancellation token) stops a run cleanly; a run
//! killed after any request (the process gone, its tasks still running in the cluster) is
//! finished by the next `apply`, with exactly the spec's VMs and volumes and nothing twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proxfleet::apply::{ApplyOptions, Event, StepResult};
use proxfleet::commands::{Connection, EXIT_INTERRUPTED, Interrupt};
use proxfleet::graph::DesiredGraph;
use proxfleet::ownership::ResourceKind;
use proxfleet::sim::{SimConfig, SimHandle};
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// A fresh simulator whose tasks take `task_ms`, and a connection to it.
async fn sim_with_tasks(task_ms: u64) -> (SimHandle, Connection) {
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(task_ms)),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let conn = Connection::to_sim(&sim).expect("client for the simulator");
    (sim, conn)
}

/// What a converged quickstart cluster must look like: a second apply succeeds, a fresh plan
/// is empty, exactly the spec's four VMs (no duplicates, none locked) and as many volumes as a
/// clean run leaves. Returns the problems found.
async fn converged_problems(
    sim: &SimHandle,
    conn: &Connection,
    clean_volumes: usize,
) -> Vec<String> {
    let spec = example("quickstart.yaml");
    let mut problems = Vec::new();
    let rerun = apply(conn, &spec).await;
    if rerun.result.is_err() {
        problems.push(format!(
            "rerun failed: {:?}\n{}\n{}",
            rerun.result, rerun.out, rerun.err
        ));
    }
    let after = plan(conn, &spec).await;
    if !after.out.starts_with("No changes.") {
        problems.push(format!(
            "plan after the rerun is not empty:\n{}{:?}",
            after.out, after.result
        ));
    }
    let vms = sim.vms();
    let names: Vec<String> = vms.iter().filter_map(|vm| vm.name.clone()).collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    let vmids: Vec<u32> = vms.iter().map(|vm| vm.vmid).collect();
    if vmids != [201, 202, 203, 9000] || unique.len() != names.len() || names.len() != 4 {
        problems.push(format!("VMs {vmids:?} named {names:?}"));
    }
    if let Some(locked) = vms.iter().find(|vm| vm.lock.is_some()) {
        problems.push(format!("VM {} is left locked", locked.vmid));
    }
    let volumes = sim.volumes();
    if volumes.len() != clean_volumes {
        let listed: Vec<&str> = volumes.iter().map(|v| v.volid.as_str()).collect();
        problems.push(format!(
            "{} volumes, a clean run leaves {clean_volumes}: {listed:?}",
            volumes.len()
        ));
    }
    problems
}

#[tokio::test]
async fn a_cancelled_apply_starts_nothing_new_and_reports_the_rest_as_cancelled() {
    let (sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    let loaded = proxfleet::spec::load_str(&text, &spec).expect("the quickstart is valid");
    let desired = DesiredGraph::build(&loaded.spec);
    let actual = proxfleet::observe::observe(&conn.client, &desired)
        .await
        .unwrap();
    let plan = proxfleet::diff::diff(&desired, &actual);

    // Interrupt as soon as the template is built, through the event sink.
    let cancel = CancellationToken::new();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = {
        let cancel = cancel.clone();
        let events = Arc::clone(&events);
        Arc::new(move |event: Event| {
            if let Event::Finished { key, .. } = &event
                && key.kind == ResourceKind::Template
            {
                cancel.cancel();
            }
            events.lock().unwrap().push(event);
        })
    };
    let options = ApplyOptions {
        cancel,
        ..ApplyOptions::default()
    };
    let report =
        proxfleet::apply::apply(&conn.client, &plan, &desired, &actual, &options, sink).await;

    let results: Vec<(String, &StepResult)> = report
        .outcomes
        .iter()
        .map(|o| (o.key.to_string(), &o.result))
        .collect();
    let not_started = StepResult::Cancelled("not started: the run was interrupted".into());
    assert_eq!(
        results,
        vec![
            ("image.debian-12".to_string(), &StepResult::Ok),
            ("template.debian-12-base".to_string(), &StepResult::Ok),
            ("clone.web-1".to_string(), &not_started),
            ("clone.web-2".to_string(), &not_started),
            ("clone.web-3".to_string(), &not_started),
        ]
    );
    assert!(report.interrupted());
    assert!(
        !sim.requests().iter().any(|r| r.path.ends_with("/clone")),
        "no clone was requested after the interruption"
    );
    let cancelled_events = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Finished {
                    result: StepResult::Cancelled(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        cancelled_events, 3,
        "each cancelled change is reported as an event"
    );
    let table = proxfleet::render::report_table(&report, "Apply", true);
    assert!(
        table.contains("Apply interrupted: 2 succeeded, 0 failed, 0 skipped, 3 cancelled."),
        "{table}"
    );

    // The rerun builds only the clones.
    let again = plan_json(&conn, &spec).await;
    let value: serde_json::Value = serde_json::from_str(&again.out).unwrap();
    let keys: Vec<&str> = value["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["clone.web-1", "clone.web-2", "clone.web-3"]);
    let clean_volumes = {
        let (clean_sim, clean_conn) = sim_with_tasks(2).await;
        assert!(apply(&clean_conn, &spec).await.result.is_ok());
        clean_sim.volumes().len()
    };
    let problems = converged_problems(&sim, &conn, clean_volumes).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn ctrl_c_during_the_clones_waits_for_their_tasks_prints_the_report_and_exits_130() {
    // Tasks long enough that the interruption lands while the clone tasks run.
    let (sim, conn) = sim_with_tasks(150).await;
    let spec = example("quickstart.yaml");
    let token = CancellationToken::new();
    let interrupt = Interrupt::by(token.clone());
    let args = apply_args(&spec);
    let watcher = async {
        while !sim
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/clone"))
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        token.cancel();
    };
    let (run, ()) = tokio::join!(apply_interruptible(&conn, &args, &interrupt), watcher);

    assert_eq!(run.code, EXIT_INTERRUPTED, "{}\n{:?}", run.out, run.result);
    assert!(
        run.out
            .contains("Apply interrupted: 2 succeeded, 0 failed, 0 skipped, 3 cancelled."),
        "{}",
        run.out
    );
    assert!(
        run.out.contains("Interrupted: after the interrupt"),
        "{}",
        run.out
    );
    assert!(
        run.out.contains("┆ 192.0.2.11 │"),
        "a clone's address: {}",
        run.out
    );
    assert!(
        run.out
            .contains("clone.web-1: interrupted before configure")
            || run.out.contains("clone.web-1: not started"),
        "{}",
        run.out
    );
    assert!(
        run.result
            .as_ref()
            .is_err_and(|e| e.to_string().contains("run the same command again")),
        "{:?}",
        run.result
    );
    // Every clone task that had started was awaited: nothing is left locked, and nothing was
    // configured or started after the interruption.
    assert!(
        sim.vms().iter().all(|vm| vm.lock.is_none()),
        "{:?}",
        sim.vms()
    );
    let configured = write_requests(&sim)
        .into_iter()
        .filter(|r| r.ends_with("/config") || r.ends_with("/status/start"))
        .count();
    assert_eq!(configured, 0, "{:?}", write_requests(&sim));

    // A rerun configures and starts the clones, and then there is nothing left to do.
    let rerun = plan(&conn, &spec).await;
    assert!(
        change_headers(&rerun.out)
            .iter()
            .all(|h| h.starts_with("# clone.") && h.ends_with("will be updated in place")),
        "{}",
        rerun.out
    );
    let clean_volumes = {
        let (clean_sim, clean_conn) = sim_with_tasks(2).await;
        assert!(apply(&clean_conn, &spec).await.result.is_ok());
        clean_sim.volumes().len()
    };
    let problems = converged_problems(&sim, &conn, clean_volumes).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
/// A request path with numbers and node names generalised, for the coverage table.
fn request_kind(method: &str, path: &str) -> String {
    let path = path.strip_prefix("/api2/json").unwrap_or(path);
    let generic: Vec<String> = path
        .split('/')
        .map(|segment| {
            if segment.chars().all(|c| c.is_ascii_digit()) && !segment.is_empty() {
                "N".to_string()
            } else if segment.starts_with("UPID") {
                "UPID".to_string()
            } else {
                segment.to_string()
            }
        })
        .collect();
    format!("{method} {}", generic.join("/"))
}

#[tokio::test]
async fn apply_killed_after_any_request_is_finished_by_the_next_apply() {
    let spec = example("quickstart.yaml");
    // Tasks that outlive the killed run long enough for the rerun to meet them running.
    const TASK_MS: u64 = 15;

    let (clean_sim, clean_conn) = sim_with_tasks(TASK_MS).await;
    assert!(apply(&clean_conn, &spec).await.result.is_ok());
    let clean_volumes = clean_sim.volumes().len();
    let n_requests = clean_sim.requests().len();
    let n_writes = write_requests(&clean_sim).len();
    assert!(
        n_requests >= 20,
        "the quickstart takes {n_requests} requests"
    );

    // Kill after the k-th request of any kind, and after the w-th write: timing moves the
    // writes among the task polls from run to run, so the second list makes sure that every
    // write is once the last thing the killed run did.
    let points: Vec<(&str, usize)> = (1..=n_requests)
        .map(|k| ("request", k))
        .chain((1..=n_writes).map(|w| ("write", w)))
        .collect();
    let started = Instant::now();
    let mut problems = Vec::new();
    let mut killed_after = BTreeSet::new();
    let mut table = String::new();
    for &(unit, k) in &points {
        let (sim, conn) = sim_with_tasks(TASK_MS).await;
        let count = || match unit {
            "write" => write_requests(&sim).len(),
            _ => sim.requests().len(),
        };
        // SIGKILL: the run is dropped at once, its jobs with it; whatever it started in the
        // cluster goes on.
        let _ = run_until(apply(&conn, &spec), || count() >= k).await;
        let served = sim.requests();
        let last = served
            .last()
            .map(|r| request_kind(&r.method, &r.path))
            .unwrap_or_default();
        let busy: Vec<String> = sim
            .vms()
            .iter()
            .filter_map(|vm| vm.lock.as_ref().map(|l| format!("{} {l}", vm.vmid)))
            .collect();
        table.push_str(&format!(
            "{unit:>7} {k:>3} {:>3} {last:<48} {}\n",
            served.len(),
            busy.join(" ")
        ));
        killed_after.insert(last.clone());
        for problem in converged_problems(&sim, &conn, clean_volumes).await {
            problems.push(format!("killed after {unit} {k} ({last}): {problem}"));
        }
    }
    println!(
        "killed at {} points in {:.1}s:\n{table}",
        points.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    for step in [
        "POST /nodes/pve1/storage/local/download-url",
        "POST /nodes/pve1/qemu",
        "PUT /nodes/pve1/qemu/N/resize",
        "POST /nodes/pve1/qemu/N/template",
        "POST /nodes/pve1/qemu/N/clone",
        "PUT /nodes/pve1/qemu/N/config",
        "POST /nodes/pve1/qemu/N/status/start",
    ] {
        assert!(
            killed_after.contains(step),
            "no kill right after {step}: {killed_after:?}"
        );
    }
}

/// The convergence property on random fleets: whatever an earlier spec and hand edits left,
/// `apply` reaches a state whose plan is empty, and a second `apply` writes nothing.
mod property {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;

    const IMAGE: &str = "images:
  deb:
    url: https://cloud.example.com/deb-12.qcow2
    checksum: sha256:1111111111111111111111111111111111111111111111111111111111111111
    storage: local
    node: pve1
";
    const TEMPLATES: [(&str, u32); 2] = [("tpl-a", 9000), ("tpl-b", 9001)];
    const CLONES: [(&str, u32); 4] = [("c1", 201), ("c2", 202), ("c3", 203), ("c4", 204)];
    /// A VM made by hand, out of the spec's way: never touched.
    const STRANGER: u32 = 300;

    #[derive(Debug, Clone)]
    struct CloneSpec {
        template: usize,
        full: bool,
        memory_mib: Option<u32>,
        cores: Option<u32>,
        start: bool,
        static_ip: bool,
    }

    /// 1–2 templates (memory changes their build fingerprint) and 0–4 clones.
    #[derive(Debug, Clone)]
    struct Fleet {
        templates: Vec<(usize, u32)>,
        clones: Vec<Option<CloneSpec>>,
    }

    impl Fleet {
        fn yaml(&self) -> String {
            let mut text = format!("{IMAGE}templates:\n");
            for &(idx, memory_gib) in &self.templates {
                let (name, vmid) = TEMPLATES[idx];
                text.push_str(&format!(
                    "  {name}:\n    vmid: {vmid}\n    node: pve1\n    image: deb\n    memory: {memory_gib}GiB\n    disk:\n      storage: local-lvm\n      size: 8G\n    network:\n      - bridge: vmbr0\n    cloud_init:\n      user: debian\n"
                ));
            }
            let clones: Vec<String> = self
                .clones
                .iter()
                .zip(CLONES)
                .filter_map(|(clone, (name, vmid))| {
                    let clone = clone.as_ref()?;
                    let (template, _) = TEMPLATES[self.templates[clone.template % self.templates.len()].0];
                    let mut entry = format!(
                        "  {name}:\n    vmid: {vmid}\n    template: {template}\n    full: {}\n    start: {}\n",
                        clone.full, clone.start
                    );
                    if let Some(memory) = clone.memory_mib {
                        entry.push_str(&format!("    memory: {memory}MiB\n"));
                    }
                    if let Some(cores) = clone.cores {
                        entry.push_str(&format!("    cores: {cores}\n"));
                    }
                    if clone.static_ip {
                        entry.push_str(&format!(
                            "    cloud_init:\n      ipv4: 192.0.2.{}/24\n      gateway: 192.0.2.1\n",
                            vmid - 190
                        ));
                    }
                    Some(entry)
                })
                .collect();
            if !clones.is_empty() {
                text.push_str("clones:\n");
                text.push_str(&clones.concat());
            }
            text
        }

        fn vmids(&self) -> BTreeSet<u32> {
            let templates = self.templates.iter().map(|&(idx, _)| TEMPLATES[idx].1);
            let clones = self
                .clones
                .iter()
                .zip(CLONES)
                .filter(|(clone, _)| clone.is_some())
                .map(|(_, (_, vmid))| vmid);
            templates.chain(clones).collect()
        }
    }

    fn fleet() -> impl Strategy<Value = Fleet> {
        let template = (0usize..2, 1u32..=2);
        let clone = (
            0usize..2,
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![512u32, 1024])),
            prop::option::of(1u32..=2),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(template, full, memory_mib, cores, start, static_ip)| CloneSpec {
                    template,
                    full,
                    memory_mib,
                    cores,
                    start,
                    static_ip,
                },
            );
        (
            prop::collection::vec(template, 1..=2),
            prop::collection::vec(prop::option::of(clone), 4),
        )
            .prop_map(|(mut templates, clones)| {
                templates.dedup_by_key(|(idx, _)| *idx);
                Fleet { templates, clones }
            })
    }

    /// What an operator does by hand between two runs.
    #[derive(Debug, Clone)]
    enum Edit {
        Stop(u32),
        Start(u32),
        Memory(u32, u32),
        Cores(u32, u32),
        Delete(u32),
        /// A base VM with this project's marker that never became a template: what an
        /// interrupted build leaves.
        HalfBuilt(usize),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let vmid = prop::sample::select(vec![201u32, 202, 203, 204, 9000, 9001]);
        prop_oneof![
            vmid.clone().prop_map(Edit::Stop),
            vmid.clone().prop_map(Edit::Start),
            (vmid.clone(), prop::sample::select(vec![256u32, 768, 4096]))
                .prop_map(|(v, m)| Edit::Memory(v, m)),
            (vmid.clone(), 3u32..=4).prop_map(|(v, c)| Edit::Cores(v, c)),
            vmid.prop_map(Edit::Delete),
            (0usize..2).prop_map(Edit::HalfBuilt),
        ]
    }

    async fn make_edit(sim: &SimHandle, conn: &Connection, edit: &Edit) {
        let vms = sim.vms();
        let existing = |vmid: u32| vms.iter().find(|vm| vm.vmid == vmid);
        match *edit {
            Edit::Stop(vmid) => {
                if existing(vmid).is_some() {
                    sim.set_running(vmid, false).unwrap();
                }
            }
            Edit::Start(vmid) => {
                if existing(vmid).is_some_and(|vm| !vm.template) {
                    sim.set_running(vmid, true).unwrap();
                }
            }
            Edit::Memory(vmid, memory) => {
                if existing(vmid).is_some() {
                    sim.set_vm_config(vmid, "memory", Some(&memory.to_string()))
                        .unwrap();
                }
            }
            Edit::Cores(vmid, cores) => {
                if existing(vmid).is_some() {
                    sim.set_vm_config(vmid, "cores", Some(&cores.to_string()))
                        .unwrap();
                }
            }
            Edit::Delete(vmid) => {
                if existing(vmid).is_some() {
                    sim.set_running(vmid, false).unwrap();
                    let upid = conn.client.delete_vm("pve1", vmid, true).await.unwrap();
                    // A template whose linked clones use its disks may refuse: then it stays.
                    let _ = conn.client.wait_task(&upid, Duration::from_secs(10)).await;
                }
            }
            Edit::HalfBuilt(idx) => {
                let (name, vmid) = TEMPLATES[idx];
                if existing(vmid).is_none() {
                    let marker = format!(
                        "managed-by: proxfleet project=default key=template.{name} vmid={vmid} build=000000000000"
                    );
                    sim.insert_vm(
                        "pve1",
                        vmid,
                        &[
                            ("name", name),
                            ("tags", "proxfleet"),
                            ("description", &marker),
                            ("memory", "1024"),
                        ],
                    )
                    .unwrap();
                }
            }
        }
    }

    async fn check_convergence(
        dir: &Path,
        earlier: Option<&Fleet>,
        edits: &[Edit],
        fleet: &Fleet,
    ) -> Result<(), String> {
        let (sim, conn) = sim_with_tasks(0).await;
        sim.insert_vm("pve1", STRANGER, &[("name", "by-hand"), ("memory", "512")])
            .unwrap();
        let stranger = sim.vms().into_iter().find(|vm| vm.vmid == STRANGER);
        if let Some(earlier) = earlier {
            let path = write_spec(dir, "earlier.yaml", &earlier.yaml());
            let run = apply(&conn, &path).await;
            if run.result.is_err() {
                return Err(format!(
                    "the earlier apply failed: {:?}\n{}",
                    run.result, run.out
                ));
            }
        }
        for edit in edits {
            make_edit(&sim, &conn, edit).await;
        }
        let path = write_spec(dir, "fleet.yaml", &fleet.yaml());
        sim.clear_requests();
        let first = apply(&conn, &path).await;
        if let Err(err) = &first.result {
            // The one refusal that is right: a template that linked clones read from cannot be
            // rebuilt (Proxmox would refuse to delete it). Then nothing may have been written.
            let refused = err
                .to_string()
                .contains("linked clones still use its base disks");
            if refused && write_requests(&sim).is_empty() {
                return Ok(());
            }
            return Err(format!("apply failed: {:?}\n{}", first.result, first.out));
        }
        let planned = plan(&conn, &path).await;
        if !planned.out.starts_with("No changes.") {
            return Err(format!(
                "the plan after apply is not empty:\n{}",
                planned.out
            ));
        }
        let before = sim.vms();
        sim.clear_requests();
        let second = apply(&conn, &path).await;
        let writes = write_requests(&sim);
        if second.result.is_err() || !writes.is_empty() {
            return Err(format!(
                "a second apply wrote {writes:?}: {:?}\n{}",
                second.result, second.out
            ));
        }
        if sim.vms() != before {
            return Err("a second apply changed the cluster".into());
        }
        let mut wanted = fleet.vmids();
        wanted.insert(STRANGER);
        let present: BTreeSet<u32> = sim.vms().iter().map(|vm| vm.vmid).collect();
        if present != wanted {
            return Err(format!("VMs {present:?}, the spec wants {wanted:?}"));
        }
        if sim.vms().into_iter().find(|vm| vm.vmid == STRANGER) != stranger {
            return Err("the VM made by hand was changed".into());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn apply_converges_from_any_earlier_fleet_and_hand_edits(
            earlier in prop::option::of(fleet()),
            edits in prop::collection::vec(edit(), 0..=3),
            fleet in fleet(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            // A paused clock: task polling and backoff sleeps end as soon as nothing else can
            // run, so a case costs its requests, not its waits.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            let outcome = runtime.block_on(check_convergence(dir.path(), earlier.as_ref(), &edits, &fleet));
            prop_assert!(outcome.is_ok(), "{}\nspec:\n{}", outcome.unwrap_err(), fleet.yaml());
        }
    }
}

#[test]
fn the_summary_lists_every_task_each_clones_address_and_what_was_cancelled() {
    use proxfleet::apply::{ApplyReport, Outcome};
    use proxfleet::plan::Action;

    let upid = |n: u32, kind: &str, id: u32| {
        format!("UPID:pve1:{n:08X}:6B06D635:6B06D635:{kind}:{id}:root@pam!proxfleet:")
    };
    let outcome =
        |key: &str, result: StepResult, seconds: f64, tasks: Vec<String>, ip: Option<&str>| {
            Outcome {
                key: key.parse().unwrap(),
                action: Action::Create,
                result,
                duration: Duration::from_secs_f64(seconds),
                tasks,
                ip: ip.map(str::to_string),
                warnings: Vec::new(),
            }
        };
    let report = ApplyReport {
        outcomes: vec![
            outcome(
                "image.debian-12",
                StepResult::Ok,
                30.2,
                vec![upid(1, "download", 0)],
                None,
            ),
            outcome(
                "template.debian-12-base",
                StepResult::Ok,
                7.4,
                vec![
                    upid(2, "qmcreate", 9000),
                    upid(3, "resize", 9000),
                    upid(4, "qmtemplate", 9000),
                ],
                None,
            ),
            outcome(
                "clone.web-1",
                StepResult::Ok,
                14.0,
                vec![
                    upid(5, "qmclone", 9000),
                    upid(8, "qmconfig", 201),
                    upid(9, "qmstart", 201),
                ],
                Some("192.0.2.11"),
            ),
            outcome(
                "clone.web-2",
                StepResult::Cancelled("interrupted before configure".into()),
                12.1,
                vec![upid(6, "qmclone", 9000)],
                Some("192.0.2.12"),
            ),
            outcome(
                "clone.web-3",
                StepResult::Cancelled("not started: the run was interrupted".into()),
                0.0,
                Vec::new(),
                None,
            ),
        ],
    };
    snapshot_settings().bind(|| {
        insta::assert_snapshot!(
            "report_table_interrupted",
            proxfleet::render::report_table(&report, "Apply", true)
        );
        // Without -v the task ids give way to their count, and the table fits 100 columns.
        let plain = proxfleet::render::report_table(&report, "Apply", false);
        assert!(plain.lines().all(|l| l.chars().count() <= 100), "{plain}");
        insta::assert_snapshot!("report_table_interrupted_plain", plain)
    });
}
