//! Credentials: a profile of the config file selects endpoint and token; a config file that
//! holds a token and that everyone can read is refused; `PROXMOX_VE_INSECURE` takes yes/true/1;
//! `--sim` wins over an exported endpoint; every command's help lists the environment it reads.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use proxfleet::sim::{SimConfig, SimHandle};

use super::common::{example, text};

/// The binary in `dir` with `XDG_CONFIG_HOME=dir/config` and no cluster in the environment.
fn run(dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_proxfleet"));
    cmd.args(args)
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("NO_COLOR", "1");
    for name in [
        "PROXMOX_VE_ENDPOINT",
        "PROXMOX_VE_API_TOKEN",
        "PROXMOX_VE_INSECURE",
        "PROXMOX_VE_CA_FILE",
        "PROXFLEET_PROFILE",
        "PROXFLEET_CONFIG",
    ] {
        cmd.env_remove(name);
    }
    for (name, value) in envs {
        cmd.env(name, value);
    }
    cmd.output().expect("binary runs")
}

fn write_config(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
    let config = dir.join("config").join("proxfleet");
    std::fs::create_dir_all(&config).expect("config dir");
    let file = config.join("config.toml");
    std::fs::write(&file, text).expect("config");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_selects_endpoint_and_token_and_a_readable_secret_is_refused() {
    let sim = SimHandle::start(SimConfig::default()).await.expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = example("quickstart.yaml").display().to_string();
    let config = format!(
        "[profiles.lab]\nendpoint = \"{}\"\ntoken = \"{}\"\n\n[profiles.other]\nendpoint = \"http://127.0.0.1:1\"\n",
        sim.endpoint(),
        sim.token()
    );
    let file = write_config(dir.path(), &config, 0o600);
    let root = dir.path().to_path_buf();
    let spec_for = spec.clone();
    let (by_flag, by_env, missing, unknown) = tokio::task::spawn_blocking(move || {
        let show = |envs: &[(&str, &str)], extra: &[&str]| {
            let mut args = vec!["show", "-f", spec_for.as_str()];
            args.extend_from_slice(extra);
            run(&root, envs, &args)
        };
        (
            show(&[], &["--profile", "lab"]),
            show(&[("PROXFLEET_PROFILE", "lab")], &[]),
            show(&[], &[]),
            show(&[], &["--profile", "nope"]),
        )
    })
    .await
    .expect("runs");
    assert!(by_flag.status.success(), "{}", text(&by_flag.stderr));
    assert!(
        text(&by_flag.stdout).contains("owns nothing"),
        "{}",
        text(&by_flag.stdout)
    );
    assert!(by_env.status.success(), "{}", text(&by_env.stderr));
    // No profile chosen and none named `default`: no endpoint.
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no Proxmox VE endpoint"));
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains("profile nope is not in"),
        "{}",
        text(&unknown.stderr)
    );
    assert!(text(&unknown.stderr).contains("lab, other"));

    // World-readable with a token in it: refused, and the token is never echoed.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let root = dir.path().to_path_buf();
    let readable = tokio::task::spawn_blocking(move || {
        run(&root, &[], &["show", "-f", &spec, "--profile", "lab"])
    })
    .await
    .expect("runs");
    let stderr = text(&readable.stderr);
    assert_eq!(readable.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("everyone can read it") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    let secret = sim.token();
    let secret = secret.split('=').nth(1).expect("token secret");
    assert!(!stderr.contains(secret) && !text(&readable.stdout).contains(secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_is_read_and_the_environment_wins_over_the_profile() {
    let sim = SimHandle::start(SimConfig::default()).await.expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", sim.token())).expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    write_config(
        dir.path(),
        &format!(
            "[profiles.default]\nendpoint = \"http://127.0.0.1:1\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
        0o644,
    );
    let spec = example("quickstart.yaml").display().to_string();
    let endpoint = sim.endpoint();
    let root = dir.path().to_path_buf();
    let (from_env, profile_only) = tokio::task::spawn_blocking(move || {
        (
            run(
                &root,
                &[("PROXMOX_VE_ENDPOINT", &endpoint)],
                &["show", "-f", &spec],
            ),
            run(&root, &[], &["show", "-f", &spec]),
        )
    })
    .await
    .expect("runs");
    // The default profile's token file, the environment's endpoint.
    assert!(from_env.status.success(), "{}", text(&from_env.stderr));
    // The default profile's endpoint (nothing listens there): a connection error.
    assert_eq!(profile_only.status.code(), Some(1));
    assert!(
        text(&profile_only.stderr).contains("cannot reach the server"),
        "{}",
        text(&profile_only.stderr)
    );
}

#[test]
fn insecure_takes_yes_and_sim_wins_over_an_exported_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = example("quickstart.yaml").display().to_string();
    for value in ["yes", "true", "1"] {
        let planned = run(
            dir.path(),
            &[
                ("PROXMOX_VE_INSECURE", value),
                ("PROXMOX_VE_ENDPOINT", "https://pve.invalid:8006"),
            ],
            &["--sim", "plan", "-f", &spec],
        );
        assert!(
            planned.status.success(),
            "{value}: {}",
            text(&planned.stderr)
        );
        assert!(
            text(&planned.stdout).contains("Plan: 5 to add"),
            "{}",
            text(&planned.stdout)
        );
    }
    let bad = run(
        dir.path(),
        &[("PROXMOX_VE_INSECURE", "maybe")],
        &["--sim", "plan", "-f", &spec],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("not a yes/no value"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn every_command_help_lists_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec!["--help"],
        vec!["plan", "--help"],
        vec!["apply", "--help"],
        vec!["show", "--help"],
        vec!["inventory", "--help"],
        vec!["sim", "serve", "--help"],
    ] {
        let help = text(&run(dir.path(), &[], &args).stdout);
        for name in [
            "PROXMOX_VE_API_TOKEN",
            "PROXMOX_VE_ENDPOINT",
            "PROXMOX_VE_INSECURE",
            "PROXFLEET_PROFILE",
        ] {
            assert!(help.contains(name), "{args:?} lists {name}:\n{help}");
        }
    }
}
