//! Plans users can trust: saved plans that apply exactly or not at all (stale spec, key file or
//! cluster), secrets that never reach a plan file, targeting by address and kind, detailed exit
//! codes, forced replacement, and colour only where it belongs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use proxfleet::cli::{ApplyArgs, DestroyArgs, KindArg, PlanArgs, SelectArgs};
use proxfleet::commands::CommandError;
use sha2::Digest;

use crate::common::*;

const WEB2_4GIB_FROM: &str = "  web-2:\n    vmid: 202\n    template: debian-12-base\n";
const WEB2_4GIB_TO: &str =
    "  web-2:\n    vmid: 202\n    template: debian-12-base\n    memory: 4GiB\n";

fn web2_with_4gib() -> String {
    let text = quickstart_text().replace(WEB2_4GIB_FROM, WEB2_4GIB_TO);
    assert_ne!(text, quickstart_text(), "the edit applies to the example");
    text
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `plan -f SPEC --out FILE`.
async fn plan_out(conn: &proxfleet::commands::Connection, spec: &Path, file: &Path) -> Run {
    let args = PlanArgs {
        out: Some(file.to_path_buf()),
        ..plan_args(spec)
    };
    plan_with(conn, &args).await
}

/// `apply FILE`, without --auto-approve and with nothing on standard input: it must not ask.
fn apply_file(file: &Path) -> ApplyArgs {
    ApplyArgs {
        plan_file: Some(file.to_path_buf()),
        auto_approve: false,
        json: false,
        ..apply_args(Path::new("proxfleet.yaml"))
    }
}

fn select(targets: &[&str], only: &[KindArg], skip: &[KindArg]) -> SelectArgs {
    SelectArgs {
        targets: targets.iter().map(|t| t.to_string()).collect(),
        only: only.to_vec(),
        skip: skip.to_vec(),
        allow_reboot: false,
    }
}

fn memory_of(sim: &proxfleet::sim::SimHandle, vmid: u32) -> Option<String> {
    sim.vms()
        .into_iter()
        .find(|vm| vm.vmid == vmid)
        .and_then(|vm| vm.config.get("memory").cloned())
}

fn stale_message(run: &Run) -> String {
    match &run.result {
        Err(CommandError::StalePlan(message)) => message.clone(),
        other => panic!("expected a stale plan, got {other:?}\n{}", run.out),
    }
}

#[tokio::test]
async fn a_saved_plan_applies_without_asking_and_converges() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "fleet.yaml", &quickstart_text());
    let file = dir.path().join("plan.json");

    let planned = plan_out(&conn, &spec, &file).await;
    assert!(planned.result.is_ok(), "{:?}", planned.result);
    assert!(
        planned
            .out
            .contains(&format!("Saved the plan to: {}", file.display())),
        "{}",
        planned.out
    );
    assert!(
        planned
            .out
            .contains(&format!("proxfleet apply {}", file.display()))
    );

    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).expect("JSON");
    assert_eq!(saved["format_version"], 2);
    assert_eq!(saved["changes"].as_array().unwrap().len(), 5);
    assert_eq!(saved["saved"]["spec"]["path"], spec.display().to_string());
    assert_eq!(
        saved["saved"]["spec"]["sha256"],
        sha256_hex(quickstart_text().as_bytes())
    );
    assert_eq!(saved["saved"]["cluster"]["vms"], serde_json::json!([]));

    let applied = apply_with(&conn, &apply_file(&file)).await;
    assert!(
        applied.result.is_ok(),
        "{:?}\n{}",
        applied.result,
        applied.out
    );
    assert!(
        applied.out.starts_with(&format!(
            "Applying the saved plan {}: 5 to add, 0 to change, 0 to destroy.",
            file.display()
        )),
        "{}",
        applied.out
    );
    assert!(
        applied
            .out
            .contains("Apply complete: 5 succeeded, 0 failed")
    );
    assert_eq!(sim.vms().len(), 4);
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));

    // The same file again: the cluster is no longer what the plan was made from.
    sim.clear_requests();
    let again = apply_with(&conn, &apply_file(&file)).await;
    let message = stale_message(&again);
    assert!(
        message.contains("✗ template.debian-12-base (vmid 9000): appeared on node pve1"),
        "{message}"
    );
    assert!(
        message.contains("✗ template.debian-12-base: the plan would no longer have it created"),
        "{message}"
    );
    assert_eq!(write_requests(&sim), Vec::<String>::new());
}

#[tokio::test]
async fn a_plan_made_stale_by_a_hand_edit_in_the_cluster_is_refused_and_changes_nothing() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let base = write_spec(dir.path(), "base.yaml", &quickstart_text());
    assert!(apply(&conn, &base).await.result.is_ok());
    let spec = write_spec(dir.path(), "fleet.yaml", &web2_with_4gib());
    let file = dir.path().join("plan.json");
    assert!(plan_out(&conn, &spec, &file).await.result.is_ok());

    // Someone turns web-1's ballooning off by hand: no layer of the spec manages it, but the
    // plan was computed from a configuration that no longer exists.
    sim.set_vm_config(201, "balloon", Some("0")).unwrap();
    sim.clear_requests();
    let refused = apply_with(&conn, &apply_file(&file)).await;
    assert_eq!(refused.code, 1);
    let message = stale_message(&refused);
    assert!(
        message.starts_with(&format!(
            "the saved plan {} is stale: what it was computed from has changed, so it was not applied and nothing was changed",
            file.display()
        )),
        "{message}"
    );
    assert!(
        message.contains("✗ clone.web-1 (vmid 201): its configuration changed (digest "),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "hint: run `proxfleet plan -f {} --out {}` again",
            spec.display(),
            file.display()
        )),
        "{message}"
    );
    assert_eq!(
        write_requests(&sim),
        Vec::<String>::new(),
        "a stale plan writes nothing"
    );
    assert_eq!(memory_of(&sim, 202).as_deref(), Some("2048"));

    // Planned again, it applies.
    assert!(plan_out(&conn, &spec, &file).await.result.is_ok());
    let applied = apply_with(&conn, &apply_file(&file)).await;
    assert!(applied.result.is_ok(), "{:?}", applied.result);
    assert_eq!(memory_of(&sim, 202).as_deref(), Some("4096"));
    let balloon = sim
        .vms()
        .into_iter()
        .find(|vm| vm.vmid == 201)
        .and_then(|vm| vm.config.get("balloon").cloned());
    assert_eq!(balloon.as_deref(), Some("0"), "left as set by hand");
}

#[tokio::test]
async fn a_plan_made_stale_by_a_deleted_vm_is_refused() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let base = write_spec(dir.path(), "base.yaml", &quickstart_text());
    assert!(apply(&conn, &base).await.result.is_ok());
    let spec = write_spec(dir.path(), "fleet.yaml", &web2_with_4gib());
    let file = dir.path().join("plan.json");
    assert!(plan_out(&conn, &spec, &file).await.result.is_ok());

    sim.set_running(203, false).unwrap();
    let upid = conn.client.delete_vm("pve1", 203, true).await.unwrap();
    conn.client
        .wait_task(&upid, Duration::from_secs(10))
        .await
        .unwrap();
    sim.clear_requests();

    let refused = apply_with(&conn, &apply_file(&file)).await;
    let message = stale_message(&refused);
    assert!(
        message.contains("✗ clone.web-3 (vmid 203): no longer exists"),
        "{message}"
    );
    assert!(
        message.contains("✗ clone.web-3: would now be created"),
        "{message}"
    );
    assert_eq!(write_requests(&sim), Vec::<String>::new());
    assert_eq!(memory_of(&sim, 202).as_deref(), Some("2048"));
}

#[tokio::test]
async fn only_what_a_plan_depends_on_can_make_it_stale() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let base = write_spec(dir.path(), "base.yaml", &quickstart_text());
    assert!(apply(&conn, &base).await.result.is_ok());
    let with_web4 = format!(
        "{}  web-4:\n    vmid: 204\n    template: debian-12-base\n",
        quickstart_text()
    );
    let spec = write_spec(dir.path(), "fleet.yaml", &with_web4);
    let file = dir.path().join("plan.json");
    assert!(plan_out(&conn, &spec, &file).await.result.is_ok());

    // Another project's VM and a VM nobody manages come and go: not this plan's business.
    let other = "managed-by: proxfleet project=other key=clone.db vmid=500";
    sim.insert_vm(
        "pve1",
        500,
        &[
            ("name", "db"),
            ("tags", "proxfleet"),
            ("description", other),
        ],
    )
    .unwrap();
    sim.insert_vm("pve1", 600, &[("name", "scratch")]).unwrap();
    let applied = apply_with(&conn, &apply_file(&file)).await;
    assert!(applied.result.is_ok(), "{:?}", applied.result);

    // A VM that takes a vmid the spec wants is.
    let with_web5 = format!("{with_web4}  web-5:\n    vmid: 205\n    template: debian-12-base\n");
    let spec = write_spec(dir.path(), "fleet.yaml", &with_web5);
    assert!(plan_out(&conn, &spec, &file).await.result.is_ok());
    sim.insert_vm("pve1", 205, &[("name", "intruder")]).unwrap();
    sim.clear_requests();
    let message = stale_message(&apply_with(&conn, &apply_file(&file)).await);
    assert!(
        message.contains("✗ VM 205 (`intruder`): appeared on node pve1\n"),
        "{message}"
    );
    assert!(
        message.contains("✗ clone.web-5: now conflicts: vmid 205 is taken by VM 205 (`intruder`)"),
        "{message}"
    );
    assert_eq!(write_requests(&sim), Vec::<String>::new());
}

#[tokio::test]
async fn power_and_lock_changes_make_even_an_empty_saved_plan_stale() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "fleet.yaml", &quickstart_text());
    assert!(apply(&conn, &spec).await.result.is_ok());
    let file = dir.path().join("plan.json");
    let planned = plan_out(&conn, &spec, &file).await;
    assert!(planned.out.starts_with("No changes."), "{}", planned.out);
    assert!(file.exists(), "an empty plan is saved too");

    sim.set_running(201, false).unwrap();
    sim.set_vm_config(203, "lock", Some("backup")).unwrap();
    sim.clear_requests();
    let message = stale_message(&apply_with(&conn, &apply_file(&file)).await);
    assert!(
        message.contains("✗ clone.web-1 (vmid 201): was stopped\n"),
        "{message}"
    );
    assert!(
        message.contains("✗ clone.web-1: would now be updated in place\n"),
        "{message}"
    );
    assert!(message.contains("; is now locked (backup)\n"), "{message}");
    assert_eq!(write_requests(&sim), Vec::<String>::new());
}

#[tokio::test]
async fn only_a_saved_plan_of_this_format_is_applied() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "fleet.yaml", &quickstart_text());
    let json = plan_json(&conn, &spec).await;
    let file = dir.path().join("plan.json");

    std::fs::write(&file, &json.out).unwrap();
    let run = apply_with(&conn, &apply_file(&file)).await;
    let message = run
        .result
        .expect_err("plan --json output is not a saved plan")
        .to_string();
    assert!(
        message.ends_with("it is a plan without the record of what it was computed from (`plan --json` output?); make it with `proxfleet plan --out FILE`"),
        "{message}"
    );

    assert!(plan_out(&conn, &spec, &file).await.result.is_ok());
    let newer = std::fs::read_to_string(&file).unwrap().replacen(
        "\"format_version\": 2",
        "\"format_version\": 3",
        1,
    );
    std::fs::write(&file, newer).unwrap();
    let run = apply_with(&conn, &apply_file(&file)).await;
    let message = run.result.expect_err("another format version").to_string();
    assert!(
        message.contains("it has plan format version 3, and this proxfleet reads version 2"),
        "{message}"
    );
    assert!(sim.vms().is_empty());
}

#[tokio::test]
async fn a_saved_plan_whose_spec_changed_is_refused_before_looking_at_the_cluster() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "fleet.yaml", &quickstart_text());
    let file = dir.path().join("plan.json");
    assert!(plan_out(&conn, &spec, &file).await.result.is_ok());

    write_spec(dir.path(), "fleet.yaml", &web2_with_4gib());
    sim.clear_requests();
    let refused = apply_with(&conn, &apply_file(&file)).await;
    let message = stale_message(&refused);
    assert!(
        message.contains(&format!(
            "✗ {}: changed since the plan was made (sha256 {} → {})",
            spec.display(),
            &sha256_hex(quickstart_text().as_bytes())[..12],
            &sha256_hex(web2_with_4gib().as_bytes())[..12]
        )),
        "{message}"
    );
    // Nothing but the run's lease, taken and released: not even a read of the cluster.
    assert!(
        sim.requests().iter().all(|r| r.path == "/api2/json/pools"),
        "{:?}",
        sim.requests()
    );
    assert!(sim.vms().is_empty());
}

#[tokio::test]
async fn a_changed_ssh_key_file_makes_a_saved_plan_stale() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("ops.pub");
    std::fs::write(
        &key_file,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINeA4p1Q2dIqor6pOI1wJK37hZeBNvahZhylneTi+5ph ops@example.com\n",
    )
    .unwrap();
    let text = quickstart_text().replace(
        "      ssh_keys:\n        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINeA4p1Q2dIqor6pOI1wJK37hZeBNvahZhylneTi+5ph ops@example.com\n",
        "      ssh_key_files:\n        - ops.pub\n",
    );
    assert_ne!(text, quickstart_text());
    let spec = write_spec(dir.path(), "fleet.yaml", &text);
    let file = dir.path().join("plan.json");
    let planned = plan_out(&conn, &spec, &file).await;
    assert!(planned.result.is_ok(), "{:?}", planned.result);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        saved["saved"]["spec"]["references"][0]["path"],
        key_file.display().to_string()
    );

    std::fs::write(
        &key_file,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVtWQ0e2i6rjkIh6Q4tYx1hXvNq4pM0o7u2f8s3k9dZ new@example.com\n",
    )
    .unwrap();
    let refused = apply_with(&conn, &apply_file(&file)).await;
    let message = stale_message(&refused);
    assert!(
        message.contains(&format!(
            "✗ {}: changed since the plan was made",
            key_file.display()
        )),
        "{message}"
    );
    assert!(sim.vms().is_empty());
}

#[tokio::test]
async fn secrets_never_reach_the_plan_file() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let password = "Pf-plan-secret-4711";
    std::fs::write(dir.path().join("pw.txt"), format!("{password}\n")).unwrap();
    let text = quickstart_text()
        .replace(
            "      user: debian\n",
            "      user: debian\n      password: file:pw.txt\n",
        )
        .replace(
            "      ipv4: 192.0.2.11/24\n",
            "      password: file:pw.txt\n      ipv4: 192.0.2.11/24\n",
        );
    let spec = write_spec(dir.path(), "fleet.yaml", &text);
    let file = dir.path().join("plan.json");
    let planned = plan_out(&conn, &spec, &file).await;
    assert!(planned.result.is_ok(), "{:?}", planned.result);

    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains("\"op\": \"set_secret\""),
        "the password is in the plan as a write-only option, without its value"
    );
    let token = sim.token();
    let token_secret = token.split_once('=').unwrap().1;
    for secret in [
        password.to_string(),
        sha256_hex(password.as_bytes()),
        sha256_hex(format!("{password}\n").as_bytes()),
        token.clone(),
        token_secret.to_string(),
    ] {
        assert!(
            !saved.contains(&secret),
            "{secret} leaked into the plan file"
        );
    }
    assert!(
        !saved.contains("pw.txt"),
        "password files are not even named"
    );

    let applied = apply_with(&conn, &apply_file(&file)).await;
    assert!(applied.result.is_ok(), "{:?}", applied.result);
    let web1 = sim.vms().into_iter().find(|vm| vm.vmid == 201).unwrap();
    assert!(
        web1.config["cipassword"].starts_with("$5$"),
        "the password was still sent"
    );
}

#[tokio::test]
async fn a_target_plans_the_resource_and_what_it_depends_on() {
    let (_sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    let args = PlanArgs {
        select: select(&["clone.web-1"], &[], &[]),
        ..plan_args(&spec)
    };
    let run = plan_with(&conn, &args).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(
        change_headers(&run.out),
        vec![
            "# image.debian-12 (on pve1) will be created",
            "# template.debian-12-base (vmid 9000 on pve1) will be created",
            "# clone.web-1 (vmid 201 on pve1) will be created",
        ]
    );
    snapshot_settings().bind(|| insta::assert_snapshot!("target_clone_web_1_plan", run.out));

    let json = plan_with(&conn, &PlanArgs { json: true, ..args }).await;
    let value: serde_json::Value = serde_json::from_str(&json.out).unwrap();
    assert_eq!(
        value["targeting"],
        serde_json::json!({"targets": ["clone.web-1"], "reach": "dependencies"})
    );
}

#[tokio::test]
async fn only_and_skip_select_kinds_and_refuse_to_leave_out_what_is_needed() {
    let (_sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    let headers = async |only: &[KindArg], skip: &[KindArg]| {
        let args = PlanArgs {
            select: select(&[], only, skip),
            ..plan_args(&spec)
        };
        let run = plan_with(&conn, &args).await;
        (change_headers(&run.out), run)
    };

    let (only_images, run) = headers(&[KindArg::Images], &[]).await;
    assert_eq!(
        only_images,
        vec!["# image.debian-12 (on pve1) will be created"]
    );
    snapshot_settings().bind(|| insta::assert_snapshot!("only_images_plan", run.out));

    let (no_clones, _) = headers(&[], &[KindArg::Clones]).await;
    assert_eq!(
        no_clones,
        vec![
            "# image.debian-12 (on pve1) will be created",
            "# template.debian-12-base (vmid 9000 on pve1) will be created",
        ]
    );

    let (_, run) = headers(&[KindArg::Templates, KindArg::Clones], &[]).await;
    let err = run
        .result
        .expect_err("a template cannot be built without its image");
    assert!(
        err.to_string().contains(
            "✗ template.debian-12-base: it needs image.debian-12, which does not exist yet but is left out of this plan"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_unknown_address_is_an_error_listing_the_valid_ones() {
    let (sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    let args = PlanArgs {
        select: select(&["clone.web-9"], &[], &[]),
        ..plan_args(&spec)
    };
    let run = plan_with(&conn, &args).await;
    assert_eq!(run.code, 1);
    let err = run.result.expect_err("unknown address");
    assert!(matches!(err, CommandError::UnknownAddresses(_)), "{err:?}");
    snapshot_settings().bind(|| insta::assert_snapshot!("unknown_target_address", err.to_string()));

    let args = PlanArgs {
        select: select(&["web-1"], &[], &[]),
        replace: vec!["template.debian12".into()],
        ..plan_args(&spec)
    };
    let message = plan_with(&conn, &args)
        .await
        .result
        .expect_err("two unknown addresses")
        .to_string();
    assert!(
        message.contains("--target web-1: not an address; expected image.NAME, template.NAME or clone.NAME (did you mean `clone.web-1`?)"),
        "{message}"
    );
    assert!(
        message.contains("--replace template.debian12: no such resource in the spec or the cluster (did you mean `template.debian-12-base`?)"),
        "{message}"
    );

    let destroy_args = DestroyArgs {
        targets: vec!["template.nope".into()],
        ..destroy_args(&spec)
    };
    assert!(matches!(
        destroy_with(&conn, &destroy_args).await.result,
        Err(CommandError::UnknownAddresses(_))
    ));
    assert_eq!(write_requests(&sim), Vec::<String>::new());
}

#[tokio::test]
async fn apply_and_destroy_with_targets_touch_only_the_selected_part() {
    let (sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    let vmids = || sim.vms().iter().map(|vm| vm.vmid).collect::<Vec<u32>>();

    let args = ApplyArgs {
        select: select(&["clone.web-1"], &[], &[]),
        ..apply_args(&spec)
    };
    let applied = apply_with(&conn, &args).await;
    assert!(applied.result.is_ok(), "{:?}", applied.result);
    assert!(
        applied
            .out
            .contains("Note: targeting is in effect (--target clone.web-1)")
    );
    assert_eq!(vmids(), vec![201, 9000]);
    assert_eq!(
        change_headers(&plan(&conn, &spec).await.out),
        vec![
            "# clone.web-2 (vmid 202 on pve1) will be created",
            "# clone.web-3 (vmid 203 on pve1) will be created",
        ]
    );
    assert!(apply(&conn, &spec).await.result.is_ok());

    // Destroying a clone takes only the clone.
    let args = DestroyArgs {
        targets: vec!["clone.web-2".into()],
        ..destroy_args(&spec)
    };
    let destroyed = destroy_with(&conn, &args).await;
    assert!(destroyed.result.is_ok(), "{:?}", destroyed.result);
    assert_eq!(vmids(), vec![201, 203, 9000]);

    // Destroying the template takes the clones made from it; the image stays cached.
    let args = DestroyArgs {
        targets: vec!["template.debian-12-base".into()],
        ..destroy_args(&spec)
    };
    let destroyed = destroy_with(&conn, &args).await;
    assert!(destroyed.result.is_ok(), "{:?}", destroyed.result);
    assert_eq!(
        change_headers(&destroyed.out),
        vec![
            "# clone.web-1 (vmid 201 on pve1) will be destroyed",
            "# clone.web-3 (vmid 203 on pve1) will be destroyed",
            "# template.debian-12-base (vmid 9000 on pve1) will be destroyed",
        ]
    );
    assert!(destroyed.out.contains("and what depends on them"));
    assert!(vmids().is_empty());
    assert_eq!(
        sim.volumes()
            .iter()
            .filter(|v| v.content == "import")
            .count(),
        1
    );
}

#[tokio::test]
async fn replace_rebuilds_a_resource_that_matches_the_spec() {
    let (sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    assert!(apply(&conn, &spec).await.result.is_ok());
    // A setting the spec does not manage: only a new VM loses it.
    sim.set_vm_config(202, "balloon", Some("0")).unwrap();

    let args = PlanArgs {
        replace: vec!["clone.web-2".into()],
        detailed_exitcode: true,
        ..plan_args(&spec)
    };
    let run = plan_with(&conn, &args).await;
    assert_eq!(run.code, 2, "{:?}", run.result);
    assert_eq!(
        change_headers(&run.out),
        vec!["# clone.web-2 (vmid 202 on pve1) must be replaced"]
    );
    assert!(
        run.out
            .contains("  #   because replacement requested with --replace\n"),
        "{}",
        run.out
    );
    snapshot_settings().bind(|| insta::assert_snapshot!("replace_clone_web_2_plan", run.out));

    sim.clear_requests();
    let args = ApplyArgs {
        replace: vec!["clone.web-2".into()],
        ..apply_args(&spec)
    };
    let applied = apply_with(&conn, &args).await;
    assert!(applied.result.is_ok(), "{:?}", applied.result);
    let writes = write_requests(&sim);
    assert!(
        writes.contains(&"DELETE /api2/json/nodes/pve1/qemu/202".to_string()),
        "{writes:?}"
    );
    assert!(
        writes
            .iter()
            .all(|w| !w.contains("/qemu/201") && !w.contains("/qemu/203")),
        "{writes:?}"
    );
    let web2 = sim.vms().into_iter().find(|vm| vm.vmid == 202).unwrap();
    assert!(web2.running);
    assert!(!web2.config.contains_key("balloon"), "a new VM");
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));

    let args = PlanArgs {
        replace: vec!["image.debian-12".into()],
        ..plan_args(&spec)
    };
    let run = plan_with(&conn, &args).await;
    assert_eq!(
        change_headers(&run.out),
        vec!["# image.debian-12 (on pve1) must be replaced"]
    );
}

#[tokio::test]
async fn colour_marks_actions_and_only_adds_escape_codes() {
    let (_sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let base = write_spec(dir.path(), "base.yaml", &quickstart_text());
    assert!(apply(&conn, &base).await.result.is_ok());
    let without_web3 = web2_with_4gib().replace(
        "  web-3:\n    vmid: 203\n    template: debian-12-base\n    cloud_init:\n      ipv4: 192.0.2.13/24\n      gateway: 192.0.2.1\n",
        "",
    );
    let spec = write_spec(dir.path(), "fleet.yaml", &without_web3);
    let args = PlanArgs {
        json: true,
        replace: vec!["clone.web-1".into()],
        ..plan_args(&spec)
    };
    let run = plan_with(&conn, &args).await;
    let plan: proxfleet::plan::Plan = serde_json::from_str(&run.out).expect("plan JSON reads back");
    assert_eq!(plan.counts(), (1, 1, 2));

    let plain = proxfleet::render::plan_text(&plan);
    let colored = proxfleet::render::plan_text_colored(&plan, true);
    assert!(!plain.contains('\u{1b}'));
    for (what, escape) in [
        ("green +", "\u{1b}[32m+"),
        ("yellow ~", "\u{1b}[33m~"),
        ("red -", "\u{1b}[31m-"),
    ] {
        assert!(colored.contains(escape), "{what}:\n{colored}");
    }
    assert!(
        colored.contains("\u{1b}[31m-\u{1b}[0m/\u{1b}[32m+\u{1b}[0m clone.web-1 {"),
        "-/+ for a replacement:\n{colored}"
    );
    assert_eq!(
        anstream::adapter::strip_str(&colored).to_string(),
        plain,
        "colour changes nothing but escape codes"
    );
}

fn in_quickstart_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        example("quickstart.yaml"),
        dir.path().join("proxfleet.yaml"),
    )
    .unwrap();
    dir
}

#[test]
fn detailed_exitcode_is_2_with_changes_0_without_and_1_on_error() {
    let dir = in_quickstart_dir();
    let code = |args: &[&str]| proxfleet(dir.path(), args).status.code();
    assert_eq!(code(&["--sim", "plan", "--detailed-exitcode"]), Some(2));
    assert_eq!(code(&["--sim", "plan"]), Some(0), "only with the flag");
    assert_eq!(code(&["--sim", "apply", "--auto-approve"]), Some(0));
    assert_eq!(code(&["--sim", "plan", "--detailed-exitcode"]), Some(0));
    assert_eq!(
        code(&[
            "--sim",
            "plan",
            "--detailed-exitcode",
            "--target",
            "clone.nope"
        ]),
        Some(1)
    );
    assert_eq!(
        code(&["--sim", "plan", "--detailed-exitcode", "--only", "vms"]),
        Some(1),
        "a usage error is 1, never 2"
    );
}

#[test]
fn the_binary_saves_a_plan_and_applies_the_file() {
    let dir = in_quickstart_dir();
    let planned = proxfleet(dir.path(), &["--sim", "plan", "--out", "plan.json"]);
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned.stderr));
    assert!(
        text(&planned.stdout).contains("proxfleet --sim apply plan.json"),
        "{}",
        text(&planned.stdout)
    );

    let both = proxfleet(
        dir.path(),
        &["--sim", "apply", "plan.json", "-f", "proxfleet.yaml"],
    );
    assert_eq!(
        both.status.code(),
        Some(1),
        "a plan file or a spec, not both"
    );
    assert!(
        text(&both.stderr).contains("cannot be used with"),
        "{}",
        text(&both.stderr)
    );

    let spec_as_plan = proxfleet(dir.path(), &["--sim", "apply", "proxfleet.yaml"]);
    assert_eq!(spec_as_plan.status.code(), Some(1));
    assert!(
        text(&spec_as_plan.stderr)
            .contains("cannot apply proxfleet.yaml: it is not a saved plan (not JSON"),
        "{}",
        text(&spec_as_plan.stderr)
    );

    let applied = proxfleet(dir.path(), &["--sim", "apply", "plan.json"]);
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied.stderr));
    assert!(text(&applied.stdout).contains("Apply complete: 5 succeeded"));

    let again = proxfleet(dir.path(), &["--sim", "apply", "plan.json"]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = text(&again.stderr);
    assert!(
        stderr.starts_with("error: the saved plan plan.json is stale"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: run `proxfleet --sim plan -f proxfleet.yaml --out plan.json` again"),
        "{stderr}"
    );
}

#[test]
fn the_binary_colours_only_when_colour_is_allowed() {
    let dir = in_quickstart_dir();
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_proxfleet"));
        cmd.args(["--sim", "plan"])
            .args(extra)
            .current_dir(dir.path())
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("CLICOLOR");
        for (name, value) in env {
            cmd.env(name, value);
        }
        let output = cmd.output().unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout).contains('\u{1b}')
    };
    assert!(!run(&[], &[]), "a pipe is not a terminal");
    assert!(run(&[], &[("CLICOLOR_FORCE", "1")]), "forced");
    assert!(!run(&["--no-color"], &[("CLICOLOR_FORCE", "1")]));
    assert!(!run(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]));
}
