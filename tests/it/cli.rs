//! The binary as a user runs it: the embedded simulator in a scratch directory, errors that
//! name file, line and field, and no panic on bad input.

use std::process::Command;

use crate::common::*;

#[test]
fn quickstart_on_the_embedded_simulator_persists_between_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        example("quickstart.yaml"),
        dir.path().join("proxfleet.yaml"),
    )
    .unwrap();

    let applied = proxfleet(dir.path(), &["--sim", "apply", "--auto-approve"]);
    assert!(
        applied.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&applied.stdout),
        text(&applied.stderr)
    );
    assert!(text(&applied.stdout).contains("Plan: 5 to add, 0 to change, 0 to destroy."));
    assert!(text(&applied.stdout).contains("Apply complete: 5 succeeded, 0 failed, 0 skipped."));
    assert!(
        dir.path().join(".proxfleet/sim-state.json").exists(),
        "state persisted"
    );

    let planned = proxfleet(dir.path(), &["--sim", "plan"]);
    assert!(planned.status.success(), "{}", text(&planned.stderr));
    assert!(
        text(&planned.stdout).starts_with("No changes."),
        "{}",
        text(&planned.stdout)
    );

    let destroyed = proxfleet(dir.path(), &["--sim", "destroy", "--auto-approve"]);
    assert!(destroyed.status.success(), "{}", text(&destroyed.stderr));
    assert!(
        text(&destroyed.stdout).contains("Plan: 0 to add, 0 to change, 4 to destroy."),
        "{}",
        text(&destroyed.stdout)
    );
}

#[test]
fn destroy_without_approval_and_without_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        example("quickstart.yaml"),
        dir.path().join("proxfleet.yaml"),
    )
    .unwrap();
    assert!(
        proxfleet(dir.path(), &["--sim", "apply", "--auto-approve"])
            .status
            .success()
    );
    let refused = proxfleet(dir.path(), &["--sim", "destroy"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("--auto-approve"),
        "{}",
        text(&refused.stderr)
    );
    let planned = proxfleet(dir.path(), &["--sim", "plan"]);
    assert!(
        text(&planned.stdout).starts_with("No changes."),
        "nothing was destroyed"
    );
}

#[test]
fn a_spec_error_names_file_line_and_field_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = quickstart_text().replace("    vmid: 202\n", "    vmid: 20\n");
    write_spec(dir.path(), "proxfleet.yaml", &bad);
    for args in [
        &["validate"][..],
        &["--sim", "plan"][..],
        &["--sim", "apply", "--auto-approve"][..],
    ] {
        let run = proxfleet(dir.path(), args);
        assert_eq!(
            run.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&run.stderr)
        );
        let stderr = text(&run.stderr);
        assert!(
            stderr.contains("error: clones.web-2.vmid: vmid 20 is out of range"),
            "{stderr}"
        );
        assert!(stderr.contains("--> proxfleet.yaml:"), "{stderr}");
        assert!(stderr.contains("= allowed: 100..=999999999"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn without_endpoint_the_error_suggests_sim() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        example("quickstart.yaml"),
        dir.path().join("proxfleet.yaml"),
    )
    .unwrap();
    let run = proxfleet(dir.path(), &["plan"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(text(&run.stderr).contains("--sim"), "{}", text(&run.stderr));
}

#[test]
fn the_token_secret_never_appears_in_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        example("quickstart.yaml"),
        dir.path().join("proxfleet.yaml"),
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_proxfleet"))
        .args(["-vv", "plan"])
        .current_dir(dir.path())
        .env("PROXMOX_VE_ENDPOINT", "http://127.0.0.1:9")
        .env("PROXMOX_VE_API_TOKEN", "root@pam!ci=s3cr3t-value-1234")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let all = format!("{}{}", text(&run.stdout), text(&run.stderr));
    assert!(!all.contains("s3cr3t-value-1234"), "{all}");
}

/// The role README.md tells operators to create for proxfleet's token.
const PROXFLEET_ROLE: &str = "Proxfleet=Sys.Audit,Sys.AccessNetwork,VM.Allocate,VM.Clone,VM.Audit,VM.Migrate,VM.PowerMgmt,VM.Config.Disk,VM.Config.CDROM,VM.Config.CPU,VM.Config.Memory,VM.Config.Network,VM.Config.HWType,VM.Config.Options,VM.Config.Cloudinit,VM.GuestAgent.Audit,Datastore.Allocate,Datastore.AllocateSpace,Datastore.AllocateTemplate,Datastore.Audit,SDN.Use,Mapping.Use,Pool.Allocate";

#[test]
fn sim_serve_tls_is_a_real_https_server_other_processes_can_verify() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        example("quickstart.yaml"),
        dir.path().join("proxfleet.yaml"),
    )
    .unwrap();
    let token = "ops@pve!ci=1b6f1c52-0c8e-4d5f-9a3b-7e2d4c6f8a90";
    let server = sim_serve_tls(
        dir.path(),
        &[
            "--token",
            token,
            // The privileges proxfleet documents it needs, and no more.
            "--role",
            PROXFLEET_ROLE,
            "--acl",
            "/:Proxfleet:ops@pve",
            "--task-ms",
            "5",
        ],
    );
    let (listen, ca, ready) = (&server.listen, &server.ca, server.ready);
    let run = |ca_file: Option<&std::path::Path>, args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_proxfleet"));
        cmd.args(args)
            .current_dir(dir.path())
            .env("PROXMOX_VE_ENDPOINT", format!("https://{listen}"))
            .env("PROXMOX_VE_API_TOKEN", token)
            .env_remove("PROXMOX_VE_CA_FILE");
        if let Some(ca_file) = ca_file {
            cmd.env("PROXMOX_VE_CA_FILE", ca_file);
        }
        cmd.output().unwrap()
    };
    let untrusted = ready.then(|| run(None, &["plan"]));
    let applied = ready.then(|| run(Some(ca), &["apply", "--auto-approve"]));
    let planned = ready.then(|| run(Some(ca), &["plan"]));
    drop(server);
    assert!(ready, "sim serve --tls did not come up");
    let untrusted = untrusted.unwrap();
    assert_eq!(
        untrusted.status.code(),
        Some(1),
        "TLS is verified by default"
    );
    let applied = applied.unwrap();
    assert!(
        applied.status.success(),
        "{}\n{}",
        text(&applied.stdout),
        text(&applied.stderr)
    );
    assert!(text(&applied.stdout).contains("Apply complete: 5 succeeded"));
    assert!(text(&planned.unwrap().stdout).starts_with("No changes."));
}
