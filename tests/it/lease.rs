//! One run at a time per project: two applies at once (one proceeds, the other stops before
//! any write, naming the holder), in one process on a shared simulator and as two processes on
//! `sim serve`; `destroy` behind the same lease; leases of killed runs taken over (expired, or
//! their process gone, a SIGKILLed one included); `unlock`; renewal during a long run; the
//! privilege `check` asks for; and the simulator's pool endpoints the lease relies on (an
//! atomic create, Proxmox's refusals).

use std::collections::BTreeMap;
use std::time::Duration;

use proxfleet::commands::progress::ProgressMode;
use proxfleet::commands::{self, CommandError, Connection, Interrupt, Io};
use proxfleet::lease::{self, Claim, Holder, LeaseError};
use proxfleet::sim::{SimConfig, SimHandle};
use time::OffsetDateTime;

use crate::common::*;
use crate::sim::Api;

const POOL: &str = "proxfleet-lease-default";

/// The non-GET requests a client sent since `before` (`request_counts` taken then).
fn writes_since(conn: &Connection, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    conn.client
        .request_counts()
        .into_iter()
        .filter(|(endpoint, _)| !endpoint.starts_with("GET "))
        .map(|(endpoint, n)| {
            let was = before.get(&endpoint).copied().unwrap_or(0);
            (endpoint, n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A lease comment of a run elsewhere (or here), as a killed run would leave it.
fn foreign(host: &str, pid: u32, expires_in: time::Duration) -> String {
    held_by("ops@pve!ci", host, pid, expires_in)
}

/// A lease comment of a run of `token`'s that took the lease five minutes ago.
fn held_by(token: &str, host: &str, pid: u32, expires_in: time::Duration) -> String {
    let now = OffsetDateTime::now_utc();
    Holder {
        holder: token.into(),
        host: host.into(),
        pid,
        run: "0badc0de".into(),
        since: now - time::Duration::minutes(5),
        expires: now + expires_in,
    }
    .encode()
}

/// The pid of a process that has ended.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// `proxfleet unlock -f FILE` with `answer` on standard input.
async fn unlock(conn: &Connection, file: &std::path::Path, yes: bool, answer: &str) -> Run {
    let args = proxfleet::cli::UnlockArgs {
        spec: proxfleet::cli::SpecArgs {
            file: file.to_path_buf(),
        },
        yes,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = answer.as_bytes();
    let result = {
        let mut io = Io {
            out: &mut out,
            color: false,
            err: &mut err,
            input: &mut input,
            progress: ProgressMode::Lines,
            verbose: 0,
            interrupt: Interrupt::default(),
        };
        commands::unlock::run(&args, conn, &mut io).await
    };
    Run {
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
        code: result.as_ref().map_or_else(CommandError::exit_code, |()| 0),
        result,
    }
}

#[tokio::test]
async fn of_two_concurrent_applies_one_proceeds_and_the_other_stops_before_any_write() {
    let (sim, first) = sim().await;
    let second = Connection::to_sim(&sim).unwrap();
    let spec = example("quickstart.yaml");
    let args = apply_args(&spec);
    for round in 1..=5 {
        let counts = (
            first.client.request_counts(),
            second.client.request_counts(),
        );
        let (a, b) = tokio::join!(apply_with(&first, &args), apply_with(&second, &args));
        let (winner, loser, loser_conn, loser_counts) = match (&a.result, &b.result) {
            (Ok(()), Err(_)) => (&a, &b, &second, &counts.1),
            (Err(_), Ok(())) => (&b, &a, &first, &counts.0),
            _ => panic!(
                "round {round}: exactly one must proceed\n{:?}\n{}{}\n{:?}\n{}{}",
                a.result, a.out, a.err, b.result, b.out, b.err
            ),
        };
        assert_eq!(loser.code, 1, "round {round}");
        let message = format!("{:?}", loser.result.as_ref().map_err(ToString::to_string));
        for needle in [
            "project `default` is locked by another run: lease proxfleet-lease-default held by root@pam!proxfleet (pid ",
            &format!("pid {} on ", std::process::id()),
            ", since ",
            ", expires ",
            "`proxfleet unlock`",
        ] {
            assert!(
                message.contains(needle),
                "round {round}: {needle} in {message}"
            );
        }
        // The loser's one write is the create that lost; it read nothing of the cluster.
        assert_eq!(
            writes_since(loser_conn, loser_counts),
            BTreeMap::from([("POST /pools".to_string(), 1)]),
            "round {round}"
        );
        assert!(
            loser.out.is_empty(),
            "round {round}: no plan shown: {}",
            loser.out
        );
        // The winner built (or, after a destroy, rebuilt) the fleet and released its lease.
        assert!(
            winner.out.contains("Apply complete"),
            "round {round}: {}",
            winner.out
        );
        let vmids: Vec<u32> = sim.vms().iter().map(|vm| vm.vmid).collect();
        assert_eq!(vmids, [201, 202, 203, 9000], "round {round}");
        assert!(
            lease::current(&first.client, "default")
                .await
                .unwrap()
                .is_none(),
            "round {round}: the lease is released"
        );
        // The next round has work to do.
        let gone = destroy(&first, &spec).await;
        assert!(gone.result.is_ok(), "{:?}\n{}", gone.result, gone.out);
    }
}

#[tokio::test]
async fn destroy_takes_the_lease_too() {
    let (sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    assert!(apply(&conn, &spec).await.result.is_ok());

    // A run of this process holds the project.
    let claim = Claim::this_process(&conn.client, Duration::from_secs(60));
    let held = lease::acquire(&conn.client, "default", &claim)
        .await
        .unwrap();
    let before = conn.client.request_counts();
    let refused = destroy(&conn, &spec).await;
    assert_eq!(refused.code, 1);
    let message = refused.result.as_ref().unwrap_err().to_string();
    assert!(
        message.contains(&format!(
            "held by root@pam!proxfleet (pid {} on {}, since ",
            std::process::id(),
            held.holder().host
        )),
        "{message}"
    );
    assert_eq!(
        writes_since(&conn, &before),
        BTreeMap::from([("POST /pools".to_string(), 1)])
    );
    assert_eq!(sim.vms().len(), 4, "nothing was destroyed");

    assert_eq!(held.release().await.unwrap(), lease::Released::Deleted);
    let run = destroy(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert!(sim.vms().is_empty());
    assert!(
        lease::current(&conn.client, "default")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_killed_runs_lease_is_taken_over_once_expired_or_when_its_process_is_gone() {
    let (sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    let host = lease::this_host();

    // Live elsewhere: refused, naming host and process.
    let live = foreign("build-7", 4242, time::Duration::minutes(2));
    assert!(conn.client.create_pool(POOL, &live).await.unwrap());
    let refused = apply(&conn, &spec).await;
    assert_eq!(refused.code, 1);
    let message = refused.result.as_ref().unwrap_err().to_string();
    assert!(
        message.contains("held by ops@pve!ci (pid 4242 on build-7, since "),
        "{message}"
    );
    assert!(sim.vms().is_empty());

    // Expired: taken over, and said so.
    let expired = foreign("build-7", 4242, time::Duration::seconds(-1));
    assert!(conn.client.set_pool_comment(POOL, &expired).await.unwrap());
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.err);
    assert!(
        run.err.contains(
            "note: took over the lease proxfleet-lease-default of project `default` from ops@pve!ci (pid 4242 on build-7"
        ) && run.err.contains(": it expired at "),
        "{}",
        run.err
    );
    assert_eq!(sim.vms().len(), 4);
    assert!(
        lease::current(&conn.client, "default")
            .await
            .unwrap()
            .is_none()
    );

    // Not expired, but on this host by a process that is gone: taken over at once.
    let dead_pid = dead_pid();
    let orphan = foreign(&host, dead_pid, time::Duration::minutes(2));
    assert!(conn.client.create_pool(POOL, &orphan).await.unwrap());
    let run = destroy(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.err);
    assert!(
        run.err.contains(&format!(
            "the run that held it (pid {dead_pid}) is gone from this host"
        )),
        "{}",
        run.err
    );

    // A run of this process that ended without releasing (its future dropped, as a kill
    // would end it): its lease is taken over at once too.
    let claim = Claim::this_process(&conn.client, Duration::from_secs(60));
    drop(
        lease::acquire(&conn.client, "default", &claim)
            .await
            .unwrap(),
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.err);
    assert!(run.err.contains("is gone from this host"), "{}", run.err);

    // A pool of that name that is not a lease is never taken over.
    assert!(conn.client.create_pool(POOL, "team pool").await.unwrap());
    let refused = apply(&conn, &spec).await;
    let message = refused.result.as_ref().unwrap_err().to_string();
    assert!(
        message.contains("its comment is not a proxfleet lease"),
        "{message}"
    );
}

#[tokio::test]
async fn unlock_names_the_lease_asks_and_removes_it() {
    let (_sim, conn) = sim().await;
    let spec = example("quickstart.yaml");

    let none = unlock(&conn, &spec, false, "").await;
    assert!(none.result.is_ok(), "{:?}", none.result);
    assert_eq!(
        none.out,
        "Project `default` holds no lease (proxfleet-lease-default): nothing to unlock.\n"
    );

    let held = foreign("build-7", 4242, time::Duration::minutes(2));
    assert!(conn.client.create_pool(POOL, &held).await.unwrap());
    let declined = unlock(&conn, &spec, false, "no\n").await;
    assert!(
        matches!(declined.result, Err(CommandError::NotConfirmed(_))),
        "{:?}",
        declined.result
    );
    assert!(
        declined.out.starts_with(
            "Lease proxfleet-lease-default of project `default`: held by ops@pve!ci (pid 4242 on build-7, since "
        ) && declined.out.contains(", not expired."),
        "{}",
        declined.out
    );
    assert!(
        declined
            .err
            .contains("Do you really want to remove the lease proxfleet-lease-default?"),
        "{}",
        declined.err
    );
    assert!(
        lease::current(&conn.client, "default")
            .await
            .unwrap()
            .is_some()
    );

    let removed = unlock(&conn, &spec, false, "yes\n").await;
    assert!(removed.result.is_ok(), "{:?}", removed.result);
    assert!(
        removed
            .out
            .ends_with("Removed the lease proxfleet-lease-default.\n")
    );
    assert!(
        lease::current(&conn.client, "default")
            .await
            .unwrap()
            .is_none()
    );

    // --yes does not ask; the next apply then goes through.
    assert!(conn.client.create_pool(POOL, &held).await.unwrap());
    let forced = unlock(&conn, &spec, true, "").await;
    assert!(forced.result.is_ok(), "{:?}", forced.result);
    assert!(forced.err.is_empty(), "{}", forced.err);
    assert!(apply(&conn, &spec).await.result.is_ok());
}

#[test]
fn unlock_runs_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        example("quickstart.yaml"),
        dir.path().join("proxfleet.yaml"),
    )
    .unwrap();
    let output = proxfleet(dir.path(), &["--sim", "unlock"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "Project `default` holds no lease (proxfleet-lease-default): nothing to unlock.\n"
    );
}

#[tokio::test]
async fn renewal_keeps_a_long_runs_lease_alive() {
    // Tasks slow enough that the quickstart takes well over its one-second lease.
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(400)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (long, late) = (
        Connection::to_sim(&sim).unwrap(),
        Connection::to_sim(&sim).unwrap(),
    );
    let spec = example("quickstart.yaml");
    let args = proxfleet::cli::ApplyArgs {
        lease_seconds: 1,
        ..apply_args(&spec)
    };
    let started = std::time::Instant::now();
    let ((long_run, long_took), late_run) = tokio::join!(
        async { (apply_with(&long, &args).await, started.elapsed()) },
        async {
            // Past the first expiry: only renewals keep the lease.
            tokio::time::sleep(Duration::from_millis(1600)).await;
            apply_with(&late, &args).await
        }
    );
    assert!(
        long_run.result.is_ok(),
        "{:?}\n{}",
        long_run.result,
        long_run.err
    );
    assert!(
        long_took > Duration::from_millis(1700),
        "the run must outlast its lease and the late start: {long_took:?}"
    );
    let message = late_run.result.as_ref().unwrap_err().to_string();
    assert!(message.contains("is locked by another run"), "{message}");
    assert!(
        lease::current(&long.client, "default")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_unrenewed_lease_runs_out_and_a_renewed_one_does_not() {
    let (_sim, conn) = sim().await;
    let here = Claim::this_process(&conn.client, Duration::from_millis(300));
    let elsewhere = Claim {
        host: "build-7".into(),
        ..here.clone()
    };
    let renewed = lease::acquire(&conn.client, "p", &here).await.unwrap();
    let first_expiry = renewed.holder().expires;
    tokio::time::sleep(Duration::from_millis(700)).await;
    match lease::acquire(&conn.client, "p", &elsewhere).await {
        Err(LeaseError::Held { holder, .. }) => assert!(holder.expires > first_expiry),
        other => panic!("{:?}", other.map(|l| l.holder().clone())),
    }
    assert_eq!(renewed.release().await.unwrap(), lease::Released::Deleted);

    // Dropped without release: no more renewals, so the lease ends on its own.
    drop(lease::acquire(&conn.client, "p", &here).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = lease::acquire(&conn.client, "p", &elsewhere).await.unwrap();
    assert_eq!(
        taken.taken_over().map(|(_, why)| *why),
        Some(lease::TakeOver::Expired)
    );
    assert_eq!(taken.release().await.unwrap(), lease::Released::Deleted);
}

#[tokio::test]
async fn the_simulator_creates_a_pool_once_and_refuses_as_proxmox_does() {
    let (sim, api) = Api::start(SimConfig::default()).await;
    // Eight creates of one id at once: exactly one is made.
    let answers = futures::future::join_all(
        (0..8).map(|_| api.call("POST", "/pools", &[("poolid", "race"), ("comment", "x")])),
    )
    .await;
    let made = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(made, 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 500);
        assert_eq!(
            body["message"].as_str().map(str::trim_end),
            Some("create pool failed: pool 'race' already exists")
        );
    }

    // The comment is rewritten through both forms of PUT and read back.
    let (status, _) = api
        .call("PUT", "/pools", &[("poolid", "race"), ("comment", "one")])
        .await;
    assert_eq!(status, 200);
    let (status, _) = api.call("PUT", "/pools/race", &[("comment", "two")]).await;
    assert_eq!(status, 200);
    let (_, listed) = api.call("GET", "/pools", &[("poolid", "race")]).await;
    assert_eq!(listed["data"][0]["comment"], "two");
    let (status, body) = api
        .call("PUT", "/pools", &[("poolid", "nope"), ("comment", "x")])
        .await;
    assert_eq!(
        (status, body["message"].as_str().map(str::trim_end)),
        (500, Some("update pools failed: pool 'nope' does not exist"))
    );

    // Only an empty pool is deleted.
    assert_eq!(
        api.call("POST", "/pools", &[("poolid", "race/sub")])
            .await
            .0,
        200
    );
    let (status, body) = api.call("DELETE", "/pools", &[("poolid", "race")]).await;
    assert_eq!(
        (status, body["message"].as_str().map(str::trim_end)),
        (
            500,
            Some("delete pool failed: pool 'race' is not empty (contains pool 'race/sub')")
        )
    );
    assert_eq!(
        api.call("DELETE", "/pools", &[("poolid", "race/sub")])
            .await
            .0,
        200
    );
    sim.insert_vm("pve1", 100, &[("name", "held")]).unwrap();
    let (status, _) = api
        .call("PUT", "/pools", &[("poolid", "race"), ("vms", "100")])
        .await;
    assert_eq!(status, 200);
    let (status, body) = api.call("DELETE", "/pools/race", &[]).await;
    assert_eq!(
        (status, body["message"].as_str().map(str::trim_end)),
        (
            500,
            Some("delete pool failed: pool 'race' is not empty (contains VM 100)")
        )
    );
    // A destroyed guest no longer counts.
    sim.remove_vm(100).unwrap();
    assert_eq!(api.call("DELETE", "/pools/race", &[]).await.0, 200);
    let (status, body) = api.call("DELETE", "/pools", &[("poolid", "race")]).await;
    assert_eq!(
        (status, body["message"].as_str().map(str::trim_end)),
        (500, Some("delete pool failed: pool 'race' does not exist"))
    );
}

#[tokio::test]
async fn check_asks_for_pool_allocate_on_pool_and_a_grant_there_lasts_across_runs() {
    const OPS: &str = "ops@pve!ci=11111111-2222-4333-8444-000000000009";
    // Everything the quickstart needs but the lease's privilege.
    let privileges = "Sys.Audit,Sys.AccessNetwork,VM.Allocate,VM.Clone,VM.Audit,VM.PowerMgmt,VM.Config.Disk,VM.Config.CDROM,VM.Config.CPU,VM.Config.Memory,VM.Config.Network,VM.Config.HWType,VM.Config.Options,VM.Config.Cloudinit,VM.GuestAgent.Audit,Datastore.Allocate,Datastore.AllocateSpace,Datastore.AllocateTemplate,Datastore.Audit,SDN.Use,Mapping.Use";
    let role = |name: &str, privs: &str| {
        (
            name.to_string(),
            privs.split(',').map(str::to_string).collect(),
        )
    };
    let acl = |text: &str| proxfleet::sim::AclEntry::parse(text).unwrap();
    let start = |acls: Vec<proxfleet::sim::AclEntry>| {
        SimHandle::start(SimConfig {
            task_duration: Some(Duration::from_millis(5)),
            tokens: vec![OPS.to_string()],
            roles: [role("Fleet", privileges), role("Lease", "Pool.Allocate")].into(),
            acls,
            ..SimConfig::default()
        })
    };
    let spec = example("quickstart.yaml");

    let sim = start(vec![acl("/:Fleet:ops@pve")]).await.unwrap();
    let conn = Connection::to_sim(&sim).unwrap();
    let run = check(&conn, &spec, false).await;
    assert_eq!(run.code, 1, "{}", run.out);
    for line in [
        "✗ /pool: the token lacks Pool.Allocate",
        "Pool.Allocate: create, renew and delete it (apply, destroy) (the run's lease)",
        "→ pveum acl modify /pool --tokens 'ops@pve!ci' --roles Proxfleet",
        "→ on /pool, not on the lease's own pool: Proxmox deletes a pool's ACL entries with the pool",
    ] {
        assert!(run.out.contains(line), "missing {line}\n{}", run.out);
    }
    // Without it, apply stops at the lease, before any other write.
    let refused = apply(&conn, &spec).await;
    let message = refused.result.as_ref().unwrap_err().to_string();
    assert!(
        message.contains(
            "cannot take the lease proxfleet-lease-default: POST /pools failed with HTTP 403"
        ) && message.contains("the token needs Pool.Allocate on /pool"),
        "{message}"
    );
    assert!(sim.vms().is_empty());

    // Granted on /pool: check passes, and apply and destroy (each making and deleting the
    // lease) both run with it.
    let sim = start(vec![acl("/:Fleet:ops@pve"), acl("/pool:Lease:ops@pve")])
        .await
        .unwrap();
    let conn = Connection::to_sim(&sim).unwrap();
    let run = check(&conn, &spec, false).await;
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(apply(&conn, &spec).await.result.is_ok());
    let again = destroy(&conn, &spec).await;
    assert!(again.result.is_ok(), "{:?}", again.result);
}

/// `proxfleet ARGS` in `dir` against the `sim serve` at `server` with `TOKEN`.
fn against(server: &TlsSim, dir: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_proxfleet"));
    command
        .args(args)
        .current_dir(dir)
        .env("PROXMOX_VE_ENDPOINT", format!("https://{}", server.listen))
        .env("PROXMOX_VE_API_TOKEN", SERVE_TOKEN)
        .env("PROXMOX_VE_CA_FILE", &server.ca)
        .env_remove("PROXMOX_VE_INSECURE")
        .env_remove("PROXFLEET_PROFILE")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    command
}

const SERVE_TOKEN: &str = "root@pam!lease=11111111-2222-4333-8444-00000000000a";

#[test]
fn separate_processes_on_sim_serve_one_runs_and_a_killed_ones_lease_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        example("quickstart.yaml"),
        dir.path().join("proxfleet.yaml"),
    )
    .unwrap();
    // Tasks slow enough that a destroy still holds its lease when it is seen and killed.
    let server = sim_serve_tls(dir.path(), &["--token", SERVE_TOKEN, "--task-ms", "400"]);
    assert!(server.ready, "sim serve --tls did not come up");
    let apply_args = ["apply", "--auto-approve"];

    // Two processes at once: one applies, the other stops naming the first's pid.
    let spawn = || {
        against(&server, dir.path(), &apply_args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (one, two) = (spawn(), spawn());
    let (one_pid, two_pid) = (one.id(), two.id());
    let (one, two) = (
        one.wait_with_output().unwrap(),
        two.wait_with_output().unwrap(),
    );
    let (winner_pid, loser) = match (one.status.code(), two.status.code()) {
        (Some(0), Some(1)) => (one_pid, &two),
        (Some(1), Some(0)) => (two_pid, &one),
        codes => panic!(
            "exactly one must proceed: {codes:?}\n{}\n{}",
            text(&one.stderr),
            text(&two.stderr)
        ),
    };
    let stderr = text(&loser.stderr);
    assert!(
        stderr.contains(&format!(
            "error: project `default` is locked by another run: lease proxfleet-lease-default held by root@pam!lease (pid {winner_pid} on {}, since ",
            lease::this_host()
        )),
        "{stderr}"
    );

    // A run killed while it holds the lease: the next run on this host takes it over at once.
    let destroying = against(&server, dir.path(), &["destroy", "--auto-approve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut destroying = destroying.unwrap();
    let held = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        let shown = against(&server, dir.path(), &["unlock"]).output().unwrap();
        text(&shown.stdout).contains("held by root@pam!lease")
    });
    destroying.kill().unwrap();
    let _ = destroying.wait();
    assert!(held, "the destroy took its lease");
    let rerun = against(&server, dir.path(), &apply_args).output().unwrap();
    let stderr = text(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "note: took over the lease proxfleet-lease-default of project `default` from root@pam!lease (pid {}",
            destroying.id()
        )) && stderr.contains("is gone from this host"),
        "{stderr}"
    );
}

/// A run killed while a task it started still runs (here a VM's `qmdestroy`, as a killed
/// rollout leaves it): Proxmox finishes the task whoever waits for it, and until then the VM
/// is listed, unlocked, as if it stayed. The run that takes the lease over waits for the
/// killed run's tasks before it observes, so it plans for what they leave: the clone is made
/// again, and nothing is left to plan.
#[tokio::test]
async fn the_tasks_a_killed_run_left_running_end_before_the_next_run_observes() {
    // The fleet made quickly, then the same cluster with realistic task times, scaled: a
    // destroy takes half a second.
    let dir = tempfile::tempdir().unwrap();
    let state_file = Some(dir.path().join("cluster.json"));
    let spec = example("quickstart.yaml");
    let quick = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(5)),
        state_file: state_file.clone(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let first = apply(&Connection::to_sim(&quick).unwrap(), &spec).await;
    assert!(first.result.is_ok(), "{:?}\n{}", first.result, first.err);
    quick.shutdown().await;
    let sim = SimHandle::start(SimConfig {
        task_duration: None,
        task_scale: 0.25,
        state_file,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let conn = Connection::to_sim(&sim).unwrap();
    let clone = sim
        .vms()
        .into_iter()
        .find(|vm| !vm.template)
        .expect("a clone");

    // The killed run: its lease, held by a process that is gone, and its destroy of the
    // clone, started and not awaited.
    let killed = held_by(
        conn.client.token_id(),
        &lease::this_host(),
        dead_pid(),
        time::Duration::minutes(2),
    );
    assert!(conn.client.create_pool(POOL, &killed).await.unwrap());
    let stopped = conn.client.stop_vm(&clone.node, clone.vmid).await.unwrap();
    conn.client
        .wait_task(&stopped, Duration::from_secs(30))
        .await
        .unwrap();
    let destroying = conn
        .client
        .delete_vm(&clone.node, clone.vmid, true)
        .await
        .unwrap();

    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.err);
    assert!(
        run.err.contains(&format!(
            "waiting for 1 task(s) the previous run left running: qmdestroy {} on {}",
            clone.vmid, clone.node
        )),
        "{}",
        run.err
    );
    let status = conn.client.task_status(&destroying).await.unwrap();
    assert_eq!(status.exitstatus.as_deref(), Some("OK"));
    let again = sim
        .vms()
        .into_iter()
        .find(|vm| vm.vmid == clone.vmid)
        .expect("the clone is made again");
    assert!(again.running && again.lock.is_none(), "{again:?}");
    let after = plan(&conn, &spec).await;
    assert!(after.out.starts_with("No changes."), "{}", after.out);
}

/// Two runs one after the other, the second's preflight read while the first still ran (the
/// first ended between the second's preflight and its lease): the cluster listing the
/// preflight read showed the first run's lease, so it is read again once the lease is the
/// second's, which then sees what the first made (and has nothing to do) instead of planning
/// to make it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_read_while_another_run_held_the_lease_is_not_observed() {
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(40)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let first = Connection::to_sim(&sim).unwrap();
    let second = Connection::to_sim(&sim).unwrap();
    let spec = example("quickstart.yaml");

    let preflight_while_held = async {
        while lease::current(&second.client, "default")
            .await
            .unwrap()
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        check(&second, &spec, false).await
    };
    let (applied, checked) = tokio::join!(apply(&first, &spec), preflight_while_held);
    assert!(
        applied.result.is_ok(),
        "{:?}\n{}",
        applied.result,
        applied.err
    );
    assert!(
        checked.result.is_ok(),
        "{:?}\n{}",
        checked.result,
        checked.err
    );
    assert!(
        !sim.vms().is_empty() && sim.vms().iter().all(|vm| vm.lock.is_none()),
        "the first run made the fleet: {:?}",
        sim.vms()
    );

    let before = second.client.request_counts();
    let run = apply(&second, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.err);
    assert!(run.out.contains("No changes."), "{}", run.out);
    let listed = |counts: &BTreeMap<String, u64>| {
        counts
            .get("GET /cluster/resources")
            .copied()
            .unwrap_or_default()
    };
    assert_eq!(
        listed(&second.client.request_counts()) - listed(&before),
        1,
        "the second run lists the cluster again after taking its lease"
    );
}

/// A run that gave up waiting for a task (its time-out passed) and ends while the task still
/// runs leaves its lease in place, expired, instead of deleting it; the next run takes it over
/// and waits for the task before it looks at the cluster. A task given up on that has ended by
/// the release leaves nothing behind.
#[tokio::test]
async fn a_run_that_gave_up_on_a_running_task_leaves_its_lease_for_the_next_to_wait() {
    // Realistic task times, scaled: a create takes about 100 ms, a destroy 250 ms.
    let sim = SimHandle::start(SimConfig {
        task_duration: None,
        task_scale: 0.25,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let conn = Connection::to_sim(&sim).unwrap();
    let client = &conn.client;
    let params = |name: &str| {
        vec![
            ("name".to_string(), name.to_string()),
            ("memory".to_string(), "512".to_string()),
        ]
    };
    let claim = Claim::this_process(client, Duration::from_secs(60));

    // Given up on, but ended by the release: the lease is deleted.
    let held = lease::acquire(client, "default", &claim).await.unwrap();
    let made = client.create_vm("pve1", 150, &params("a")).await.unwrap();
    assert!(matches!(
        client.wait_task(&made, Duration::from_millis(1)).await,
        Err(proxfleet::pve::PveError::TaskTimeout { .. })
    ));
    assert_eq!(client.tasks_given_up(), vec![made.clone()]);
    while client.task_status(&made).await.unwrap().running {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(held.release().await.unwrap(), lease::Released::Deleted);
    assert!(lease::current(client, "default").await.unwrap().is_none());
    assert!(client.tasks_given_up().is_empty(), "seen ended: forgotten");

    // Given up on and still running: the lease is left, expired.
    let held = lease::acquire(client, "default", &claim).await.unwrap();
    let destroying = client.delete_vm("pve1", 150, true).await.unwrap();
    assert!(
        client
            .wait_task(&destroying, Duration::from_millis(1))
            .await
            .is_err()
    );
    let run = held.holder().run.clone();
    assert_eq!(
        held.release().await.unwrap(),
        lease::Released::LeftForTasks(vec![destroying.clone()])
    );
    let left = lease::current(client, "default")
        .await
        .unwrap()
        .expect("the lease is left")
        .unwrap();
    assert_eq!(left.run, run);
    assert!(left.expired_at(OffsetDateTime::now_utc()), "{left:?}");

    // The next run (another client) takes it over and waits for the destroy first.
    let next = Connection::to_sim(&sim).unwrap();
    let spec = example("quickstart.yaml");
    let destroyed = destroy(&next, &spec).await;
    assert!(
        destroyed.result.is_ok(),
        "{:?}\n{}",
        destroyed.result,
        destroyed.err
    );
    assert!(
        destroyed.err.contains(": it expired at ")
            && destroyed.err.contains(
                "waiting for 1 task(s) the previous run left running: qmdestroy 150 on pve1"
            ),
        "{}",
        destroyed.err
    );
    let status = next.client.task_status(&destroying).await.unwrap();
    assert_eq!(status.exitstatus.as_deref(), Some("OK"));
    assert!(sim.vms().is_empty());
    assert!(lease::current(client, "default").await.unwrap().is_none());
}
