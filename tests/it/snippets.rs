//! `cloud_init.delivery: snippets` end to end, against a real OpenSSH server started on
//! loopback: its SFTP writes land in the directory the simulator serves as pve1's
//! `local:snippets/`, so the simulator sees what proxfleet wrote (and refuses to start a VM
//! whose `cicustom` names a file that is not there). Needs `sshd` and `ssh-keygen` (Debian's
//! `openssh-server`): skipped without them, except with `CI=true`, where they must be there. Runs as any user: sshd runs as the
//! current one, with its own host key and authorized keys.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proxfleet::commands::Connection;
use proxfleet::sim::{SimConfig, SimHandle};

use super::common::{
    apply, check, destroy, find_program, plan, quickstart_text, system_tool, write_spec,
};

const USER_DATA: &str =
    "#cloud-config\npackages:\n  - nginx\nruncmd:\n  - [systemctl, enable, --now, nginx]\n";
const VENDOR_DATA: &str = "#cloud-config\ntimezone: Europe/Vienna\n";
const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINeA4p1Q2dIqor6pOI1wJK37hZeBNvahZhylneTi+5ph";

/// An OpenSSH server on a free loopback port, stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// The directory it writes into: pve1's `local:snippets/` for the simulator.
    snippets: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sshd_binary() -> PathBuf {
    // `Sshd::start` asked `system_tool` first, which looks in the same places.
    find_program("sshd").expect("sshd is installed")
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "proxfleet-test",
            "-f",
        ])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (apt-get install -y openssh-client)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Sshd {
    /// `None` (the test is skipped) where OpenSSH is not installed, outside CI.
    fn start() -> Option<Sshd> {
        if !system_tool("sshd", "openssh-server") || !system_tool("ssh-keygen", "openssh-client") {
            return None;
        }
        let sshd = sshd_binary();
        // Run as root (CI), sshd insists on its privilege separation directory.
        if !Path::new("/run/sshd").exists() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        keygen(&root.join("host_key"));
        keygen(&root.join("client_key"));
        let snippets = root.join("snippets");
        std::fs::create_dir(&snippets).expect("snippets dir");
        std::fs::copy(root.join("client_key.pub"), root.join("authorized_keys"))
            .expect("authorized_keys");
        let port = free_port();
        let config = root.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {keys}\n\
                 PidFile {pid}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n",
                host_key = root.join("host_key").display(),
                keys = root.join("authorized_keys").display(),
                pid = root.join("sshd.pid").display(),
            ),
        )
        .expect("sshd_config");
        let log = std::fs::File::create(root.join("sshd.log")).expect("log");
        let mut child = Command::new(&sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", sshd.display()));
        let started = Instant::now();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let log = std::fs::read_to_string(root.join("sshd.log")).unwrap_or_default();
                panic!("sshd did not start listening on port {port} ({exited:?}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Sshd {
            child,
            port,
            dir,
            snippets,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A known_hosts file with this server's key, or (`wrong`) another key, for its address.
    fn known_hosts(&self, name: &str, wrong: bool) -> PathBuf {
        let key = if wrong {
            let other = self.path("other_host_key");
            if !other.exists() {
                keygen(&other);
            }
            other.with_extension("pub")
        } else {
            self.path("host_key.pub")
        };
        let public = std::fs::read_to_string(key).expect("public host key");
        let mut fields = public.split_whitespace();
        let (kind, body) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        let path = self.path(name);
        std::fs::write(&path, format!("[127.0.0.1]:{} {kind} {body}\n", self.port))
            .expect("known_hosts");
        path
    }

    /// The spec's `defaults` for this server.
    fn defaults(&self, known_hosts: &Path, insecure: bool) -> String {
        format!(
            "defaults:\n  storage:\n    snippets: local\n  ssh:\n    user: {user}\n    port: {port}\n    \
             key_file: {key}\n    known_hosts: {known}\n    insecure_ignore_host_key: {insecure}\n    \
             host:\n      pve1: 127.0.0.1\n    snippets_dir: {dir}\n\n",
            user = current_user(),
            port = self.port,
            key = self.path("client_key").display(),
            known = known_hosts.display(),
            dir = self.snippets.display(),
        )
    }
}

/// The quickstart with user-data for every clone (on the template), vendor-data for web-2, and
/// snippets as the delivery.
fn spec_text(defaults: &str) -> String {
    let body = quickstart_text()
        .replace(
            "      ipv4: dhcp\n",
            "      ipv4: dhcp\n      user_data: user-data.yaml\n      delivery: snippets\n",
        )
        .replace(
            "      ipv4: 192.0.2.12/24\n",
            "      ipv4: 192.0.2.12/24\n      vendor_data: vendor-data.yaml\n",
        );
    format!("{defaults}{body}")
}

async fn sim_with(sshd: &Sshd) -> (SimHandle, Connection) {
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(5)),
        snippets_dirs: BTreeMap::from([("pve1".to_string(), sshd.snippets.clone())]),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let conn = Connection::to_sim(&sim).expect("client for the simulator");
    (sim, conn)
}

/// The file names in the snippets directory, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read snippets dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn snippets_are_written_over_sftp_referenced_by_cicustom_and_follow_the_files() {
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let (sim, conn) = sim_with(&sshd).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("user-data.yaml"), USER_DATA).expect("user-data");
    std::fs::write(dir.path().join("vendor-data.yaml"), VENDOR_DATA).expect("vendor-data");
    let known_hosts = sshd.known_hosts("known_hosts", false);
    let spec = write_spec(
        dir.path(),
        "fleet.yaml",
        &spec_text(&sshd.defaults(&known_hosts, false)),
    );

    let planned = plan(&conn, &spec).await;
    assert!(
        planned.out.lines().any(|line| line.contains("+ cicustom")
            && line.contains("\"user=local:snippets/proxfleet-web-1-user-")),
        "{}",
        planned.out
    );
    assert!(!planned.out.contains("seed ISO"), "{}", planned.out);
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);

    // Four snippets: each clone's user-data (its own user added), and web-2's vendor-data.
    let written = files(&sshd.snippets);
    assert_eq!(written.len(), 4, "{written:?}");
    let vms = sim.vms();
    for vmid in [201, 202, 203] {
        let vm = vms.iter().find(|v| v.vmid == vmid).expect("clone exists");
        assert!(vm.running, "VM {vmid} started: its cicustom files exist");
        let cicustom = vm.config.get("cicustom").cloned().unwrap_or_default();
        let name = format!("web-{}", vmid - 200);
        let user = cicustom
            .split(',')
            .find_map(|item| item.strip_prefix("user=local:snippets/"))
            .unwrap_or_else(|| panic!("VM {vmid}: cicustom {cicustom}"));
        assert!(
            user.starts_with(&format!("proxfleet-{name}-user-")) && user.ends_with(".yaml"),
            "{user}"
        );
        assert_eq!(cicustom.contains("vendor="), vmid == 202, "{cicustom}");
        // Proxmox's own drive stays: it generates meta-data and the network from ipconfig0.
        let ide2 = vm.config.get("ide2").cloned().unwrap_or_default();
        assert!(ide2.contains(&format!("vm-{vmid}-cloudinit")), "{ide2}");
        assert!(vm.config.contains_key("ipconfig0"));
        let text = std::fs::read_to_string(sshd.snippets.join(user)).expect("user snippet");
        assert!(
            text.starts_with("#cloud-config\npackages:\n  - nginx\n"),
            "{text}"
        );
        assert!(
            text.contains("name: \"debian\"") || text.contains("name: debian"),
            "{text}"
        );
        assert!(text.contains(SSH_KEY), "{text}");
    }
    let listed = conn
        .client
        .storage_content("pve1", "local", Some("snippets"))
        .await
        .expect("snippets listed");
    assert_eq!(listed.len(), 4, "{listed:?}");

    // Converged.
    let again = plan(&conn, &spec).await;
    assert!(again.out.starts_with("No changes."), "{}", again.out);

    // A changed user-data file is a visible change of each clone's cicustom: the new files
    // are written, the old ones removed.
    std::fs::write(
        dir.path().join("user-data.yaml"),
        USER_DATA.replace("nginx", "caddy"),
    )
    .expect("user-data");
    let changed = plan(&conn, &spec).await;
    assert_eq!(
        changed.out.matches("~ cicustom").count(),
        3,
        "{}",
        changed.out
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    let rewritten = files(&sshd.snippets);
    assert_eq!(rewritten.len(), 4, "{rewritten:?}");
    let users: Vec<&String> = rewritten.iter().filter(|f| f.contains("-user-")).collect();
    assert!(users.iter().all(|f| !written.contains(f)), "{rewritten:?}");
    let vendor: Vec<&String> = rewritten
        .iter()
        .filter(|f| f.contains("-vendor-"))
        .collect();
    assert!(vendor.iter().all(|f| written.contains(f)), "{rewritten:?}");
    for user in users {
        let text = std::fs::read_to_string(sshd.snippets.join(user)).expect("snippet");
        assert!(text.contains("caddy"), "{text}");
    }
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));

    // destroy takes the snippets with the clones.
    let gone = destroy(&conn, &spec).await;
    assert!(gone.result.is_ok(), "{}\n{}", gone.out, gone.err);
    assert_eq!(files(&sshd.snippets), Vec::<String>::new());
}

#[tokio::test]
async fn a_host_key_that_is_not_the_recorded_one_is_refused_unless_checking_is_turned_off() {
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let (sim, conn) = sim_with(&sshd).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("user-data.yaml"), USER_DATA).expect("user-data");
    std::fs::write(dir.path().join("vendor-data.yaml"), VENDOR_DATA).expect("vendor-data");

    // Another key recorded for the address: refused, nothing written, no clone made.
    let wrong = sshd.known_hosts("known_hosts_wrong", true);
    let spec = write_spec(
        dir.path(),
        "fleet.yaml",
        &spec_text(&sshd.defaults(&wrong, false)),
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_err(), "{}\n{}", run.out, run.err);
    let shown = format!("{}\n{}", run.out, run.err);
    assert!(
        shown.contains(&format!(
            "the SSH host key of 127.0.0.1:{} (node pve1, SHA256:",
            sshd.port
        )) && shown.contains("does not match the one recorded in")
            && shown.contains("refusing to connect"),
        "{shown}"
    );
    assert!(files(&sshd.snippets).is_empty());
    assert!(!sim.vms().iter().any(|vm| vm.vmid == 201));

    // No key recorded for the address: refused too, with the command that records one.
    let empty = sshd.path("known_hosts_empty");
    std::fs::write(&empty, "").expect("known_hosts");
    let spec = write_spec(
        dir.path(),
        "fleet.yaml",
        &spec_text(&sshd.defaults(&empty, false)),
    );
    let run = apply(&conn, &spec).await;
    let shown = format!("{}\n{}", run.out, run.err);
    assert!(
        run.result.is_err() && shown.contains("is not in") && shown.contains("ssh-keyscan -p"),
        "{shown}"
    );
    assert!(files(&sshd.snippets).is_empty());

    // With the check turned off (and a warning), the same wrong known_hosts does not matter.
    let spec = write_spec(
        dir.path(),
        "fleet.yaml",
        &spec_text(&sshd.defaults(&wrong, true)),
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert!(
        run.err
            .contains("warning: defaults.ssh.insecure_ignore_host_key: the nodes' SSH host keys are not checked"),
        "{}",
        run.err
    );
    assert_eq!(files(&sshd.snippets).len(), 4);
    assert!(sim.vms().iter().any(|vm| vm.vmid == 201 && vm.running));
}

#[tokio::test]
async fn the_simulator_refuses_to_start_a_vm_whose_cicustom_names_a_missing_snippet() {
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let (sim, conn) = sim_with(&sshd).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("user-data.yaml"), USER_DATA).expect("user-data");
    std::fs::write(dir.path().join("vendor-data.yaml"), VENDOR_DATA).expect("vendor-data");
    let known_hosts = sshd.known_hosts("known_hosts", false);
    let spec = write_spec(
        dir.path(),
        "fleet.yaml",
        &spec_text(&sshd.defaults(&known_hosts, false)),
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);

    // Someone removes web-1's snippet by hand: Proxmox cannot start web-1 any more.
    let vm = sim
        .vms()
        .into_iter()
        .find(|v| v.vmid == 201)
        .expect("web-1");
    let cicustom = vm.config.get("cicustom").cloned().unwrap_or_default();
    let volid = cicustom.trim_start_matches("user=").to_string();
    let file = volid.trim_start_matches("local:snippets/");
    std::fs::remove_file(sshd.snippets.join(file)).expect("remove snippet");
    sim.set_running(201, false).expect("stop web-1");
    let upid = conn.client.start_vm("pve1", 201).await.expect("start task");
    let err = conn
        .client
        .wait_task(&upid, Duration::from_secs(10))
        .await
        .expect_err("start fails");
    assert!(
        err.to_string()
            .contains(&format!("volume '{volid}' does not exist")),
        "{err}"
    );

    // The next apply puts the file back (its name is its content) and starts web-1.
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert!(sshd.snippets.join(file).is_file());
    assert!(sim.vms().iter().any(|v| v.vmid == 201 && v.running));
}

#[tokio::test]
async fn switching_between_iso_and_snippets_puts_the_right_drive_back_and_cleans_up() {
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let (sim, conn) = sim_with(&sshd).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("user-data.yaml"), USER_DATA).expect("user-data");
    std::fs::write(dir.path().join("vendor-data.yaml"), VENDOR_DATA).expect("vendor-data");
    let known_hosts = sshd.known_hosts("known_hosts", false);
    let snippets_text = spec_text(&sshd.defaults(&known_hosts, false));
    let iso_text = snippets_text.replace("      delivery: snippets\n", "      delivery: iso\n");
    let spec = write_spec(dir.path(), "fleet.yaml", &iso_text);
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    let seeds = |sim: &SimHandle| {
        sim.volumes()
            .into_iter()
            .filter(|v| v.volid.contains("proxfleet-ci-"))
            .count()
    };
    assert_eq!(seeds(&sim), 3);
    assert!(files(&sshd.snippets).is_empty());

    // iso → snippets: Proxmox's drive comes back in place of the seed ISO, which goes.
    let spec = write_spec(dir.path(), "fleet.yaml", &snippets_text);
    let planned = plan(&conn, &spec).await;
    assert_eq!(
        planned.out.matches("\"local-lvm:cloudinit\"").count(),
        3,
        "{}",
        planned.out
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert_eq!(seeds(&sim), 0);
    assert_eq!(files(&sshd.snippets).len(), 4);
    for vm in sim.vms().into_iter().filter(|v| !v.template) {
        let ide2 = vm.config.get("ide2").cloned().unwrap_or_default();
        assert!(
            ide2.contains(&format!("vm-{}-cloudinit", vm.vmid)),
            "{ide2}"
        );
        assert!(vm.config.contains_key("cicustom"));
    }
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));

    // snippets → iso: cicustom goes, and with it the snippets; the seed ISOs come back.
    let spec = write_spec(dir.path(), "fleet.yaml", &iso_text);
    let planned = plan(&conn, &spec).await;
    assert_eq!(
        planned.out.matches("- cicustom").count(),
        3,
        "{}",
        planned.out
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert_eq!(seeds(&sim), 3);
    assert!(files(&sshd.snippets).is_empty());
    assert!(
        sim.vms()
            .iter()
            .all(|vm| !vm.config.contains_key("cicustom"))
    );
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));
}

#[test]
fn snippets_need_a_storage_and_the_key_file_must_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("user-data.yaml"), USER_DATA).expect("user-data");
    std::fs::write(dir.path().join("vendor-data.yaml"), VENDOR_DATA).expect("vendor-data");
    let defaults = "defaults:\n  ssh:\n    key_file: keys/missing\n    port: 70000\n    snippets_dir: var/lib/vz/snippets\n\n";
    let spec = write_spec(dir.path(), "fleet.yaml", &spec_text(defaults));
    let err = proxfleet::spec::load(&spec).expect_err("invalid");
    let text = err.to_string();
    for expected in [
        "templates.debian-12-base.cloud_init.delivery: `delivery: snippets` needs a storage with the `snippets` content type",
        "defaults.ssh.key_file: cannot read",
        "defaults.ssh.port: port 70000 is out of range",
        "defaults.ssh.snippets_dir: `var/lib/vz/snippets` is not an absolute path",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}

#[test]
fn the_embedded_simulator_keeps_snippets_in_a_directory_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("user-data.yaml"), USER_DATA).expect("user-data");
    std::fs::write(dir.path().join("vendor-data.yaml"), VENDOR_DATA).expect("vendor-data");
    let defaults = "defaults:\n  storage:\n    snippets: local\n\n";
    write_spec(dir.path(), "fleet.yaml", &spec_text(defaults));
    let out = super::common::proxfleet(
        dir.path(),
        &["--sim", "apply", "-f", "fleet.yaml", "--auto-approve"],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        super::common::text(&out.stdout),
        super::common::text(&out.stderr)
    );
    let written = files(&dir.path().join(".proxfleet/sim-snippets/pve1"));
    assert_eq!(written.len(), 4, "{written:?}");
    let out = super::common::proxfleet(dir.path(), &["--sim", "plan", "-f", "fleet.yaml"]);
    assert!(
        super::common::text(&out.stdout).starts_with("No changes."),
        "{}",
        super::common::text(&out.stdout)
    );
    let out = super::common::proxfleet(
        dir.path(),
        &["--sim", "destroy", "-f", "fleet.yaml", "--auto-approve"],
    );
    assert!(out.status.success(), "{}", super::common::text(&out.stderr));
    assert!(files(&dir.path().join(".proxfleet/sim-snippets/pve1")).is_empty());
}

/// `proxfleet check` reaches every node that gets snippets over SSH before anything runs: a
/// host key that is not the recorded one is a failed check, the right one passes.
#[tokio::test]
async fn the_preflight_check_reaches_the_snippet_nodes_over_ssh() {
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let (_sim, conn) = sim_with(&sshd).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("user-data.yaml"), USER_DATA).expect("user-data");
    std::fs::write(dir.path().join("vendor-data.yaml"), VENDOR_DATA).expect("vendor-data");

    let wrong = sshd.known_hosts("known_hosts_wrong", true);
    let spec = write_spec(
        dir.path(),
        "fleet.yaml",
        &spec_text(&sshd.defaults(&wrong, false)),
    );
    let refused = check(&conn, &spec, false).await;
    assert!(refused.result.is_err(), "{}", refused.out);
    let ssh_line = refused
        .out
        .lines()
        .find(|l| l.trim_start().starts_with("✗ pve1:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        refused.out.contains("\nSSH\n") && ssh_line.contains("does not match the one recorded"),
        "{}",
        refused.out
    );

    let right = sshd.known_hosts("known_hosts_right", false);
    let spec = write_spec(
        dir.path(),
        "fleet.yaml",
        &spec_text(&sshd.defaults(&right, false)),
    );
    let passed = check(&conn, &spec, false).await;
    assert!(
        passed
            .out
            .contains("✓ pve1: reachable over SSH, host key as recorded"),
        "{}",
        passed.out
    );
}
