//! Test helpers: a simulator per test, a connection to it, commands run with captured output,
//! and insta settings that keep snapshots in `snapshots/` at the repository root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use proxfleet::cli::{ApplyArgs, CheckArgs, DestroyArgs, PlanArgs, SelectArgs, SpecArgs};
use proxfleet::commands::progress::ProgressMode;
use proxfleet::commands::{self, CommandError, Connection, Interrupt, Io, Success};
use proxfleet::sim::{SimConfig, SimHandle};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An example spec by file name.
pub fn example(name: &str) -> PathBuf {
    root().join("examples").join(name)
}

/// insta settings: snapshots at the root, no module prefix.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// A fresh simulator with fast tasks, and a connection to it.
pub async fn sim() -> (SimHandle, Connection) {
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(5)),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let conn = Connection::to_sim(&sim).expect("client for the simulator");
    (sim, conn)
}

/// What a command printed and how it ended.
pub struct Run {
    pub out: String,
    pub err: String,
    pub result: Result<(), CommandError>,
    /// The exit code the binary would end with.
    pub code: i32,
}

async fn capture<F>(f: F) -> Run
where
    F: AsyncFnOnce(&mut Io<'_>) -> Result<Success, CommandError>,
{
    capture_with(&Interrupt::default(), f).await
}

async fn capture_with<F>(interrupt: &Interrupt, f: F) -> Run
where
    F: AsyncFnOnce(&mut Io<'_>) -> Result<Success, CommandError>,
{
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input: &[u8] = b"";
    let result = {
        let mut io = Io {
            out: &mut out,
            color: false,
            err: &mut err,
            input: &mut input,
            progress: ProgressMode::Lines,
            verbose: 0,
            interrupt: interrupt.clone(),
        };
        f(&mut io).await
    };
    Run {
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
        code: commands::exit_code(&result),
        result: result.map(|_| ()),
    }
}

fn spec_args(file: &Path) -> SpecArgs {
    SpecArgs {
        file: file.to_path_buf(),
    }
}

/// `proxfleet plan -f FILE`, to adjust before running it with `plan_with`.
pub fn plan_args(file: &Path) -> PlanArgs {
    PlanArgs {
        spec: spec_args(file),
        json: false,
        out: None,
        detailed_exitcode: false,
        select: SelectArgs::default(),
        replace: Vec::new(),
        no_color: false,
        skip_checks: false,
    }
}

/// `proxfleet apply -f FILE --auto-approve`, to adjust before running it with `apply_with`.
pub fn apply_args(file: &Path) -> ApplyArgs {
    ApplyArgs {
        plan_file: None,
        spec: spec_args(file),
        auto_approve: true,
        json: false,
        parallelism: 8,
        storage_parallelism: 4,
        shutdown_timeout: 60,
        select: SelectArgs::default(),
        replace: Vec::new(),
        no_color: false,
        skip_checks: false,
        lease_seconds: 120,
    }
}

/// `proxfleet destroy -f FILE --auto-approve`, to adjust before running it with `destroy_with`.
pub fn destroy_args(file: &Path) -> DestroyArgs {
    DestroyArgs {
        spec: spec_args(file),
        auto_approve: true,
        json: false,
        include_images: false,
        parallelism: 8,
        shutdown_timeout: 60,
        targets: Vec::new(),
        only: Vec::new(),
        skip: Vec::new(),
        no_color: false,
        lease_seconds: 120,
    }
}

/// `proxfleet check -f FILE` (with `--json` when asked).
pub async fn check(conn: &Connection, file: &Path, json: bool) -> Run {
    let args = CheckArgs {
        spec: spec_args(file),
        json,
    };
    capture(async |io| {
        commands::check::run(&args, conn, io)
            .await
            .map(|()| Success::Done)
    })
    .await
}

/// `proxfleet plan` with these arguments.
pub async fn plan_with(conn: &Connection, args: &PlanArgs) -> Run {
    capture(async |io| commands::plan::run(args, conn, io).await).await
}

/// `proxfleet apply` with these arguments.
pub async fn apply_with(conn: &Connection, args: &ApplyArgs) -> Run {
    capture(async |io| {
        commands::apply::run_apply(args, conn, io)
            .await
            .map(|()| Success::Done)
    })
    .await
}

/// `proxfleet apply` with these arguments, stopped as if by Ctrl-C when `interrupt` fires.
pub async fn apply_interruptible(
    conn: &Connection,
    args: &ApplyArgs,
    interrupt: &Interrupt,
) -> Run {
    capture_with(interrupt, async |io| {
        commands::apply::run_apply(args, conn, io)
            .await
            .map(|()| Success::Done)
    })
    .await
}

/// Run `run` until `reached` holds, then drop it, as SIGKILL would: its jobs go with it,
/// whatever it started in the cluster goes on. `reached` is asked first at each turn, so the
/// run is stopped at the first request that makes it hold. The run's outcome if it ended first.
pub async fn run_until<T>(run: impl Future<Output = T>, reached: impl Fn() -> bool) -> Option<T> {
    let reached = async {
        while !reached() {
            tokio::task::yield_now().await;
        }
    };
    tokio::select! {
        biased;
        () = reached => None,
        ended = run => Some(ended),
    }
}

/// `proxfleet destroy` with these arguments.
pub async fn destroy_with(conn: &Connection, args: &DestroyArgs) -> Run {
    capture(async |io| {
        commands::apply::run_destroy(args, conn, io)
            .await
            .map(|()| Success::Done)
    })
    .await
}

/// `proxfleet plan`.
pub async fn plan(conn: &Connection, file: &Path) -> Run {
    plan_with(conn, &plan_args(file)).await
}

/// `proxfleet plan --json`.
pub async fn plan_json(conn: &Connection, file: &Path) -> Run {
    let args = PlanArgs {
        json: true,
        ..plan_args(file)
    };
    plan_with(conn, &args).await
}

/// `proxfleet apply --auto-approve`.
pub async fn apply(conn: &Connection, file: &Path) -> Run {
    apply_with(conn, &apply_args(file)).await
}

/// `proxfleet destroy --auto-approve`.
pub async fn destroy(conn: &Connection, file: &Path) -> Run {
    destroy_with(conn, &destroy_args(file)).await
}

/// Write `text` as a spec file in `dir`.
pub fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write spec");
    path
}

/// The quickstart's text.
pub fn quickstart_text() -> String {
    std::fs::read_to_string(example("quickstart.yaml")).expect("quickstart exists")
}

/// Requests that change something (anything but GET) seen by the simulator, pool requests
/// aside: every apply and destroy makes and deletes its lease there (`lease.rs` counts those).
pub fn write_requests(sim: &SimHandle) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method != "GET" && !r.path.starts_with("/api2/json/pools"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The plan text's lines that start a change (`  # key ... will be ...`).
pub fn change_headers(plan_text: &str) -> Vec<String> {
    plan_text
        .lines()
        .filter(|l| l.starts_with("  # ") && !l.starts_with("  #   "))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The binary, run in `dir` without any cluster in the environment and without colour.
pub fn proxfleet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proxfleet"))
        .args(args)
        .current_dir(dir)
        .env_remove("PROXMOX_VE_ENDPOINT")
        .env_remove("PROXMOX_VE_API_TOKEN")
        .env_remove("CLICOLOR_FORCE")
        .env("NO_COLOR", "1")
        .output()
        .expect("binary runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether a system tool a test needs (`isoinfo`, `xorriso`, `sshd`, `qemu-img`, …) is
/// installed. On a machine without it the test is skipped, and one line on standard error
/// says so (once per tool, written past the test harness's capture so it shows); with
/// `CI=true` a missing tool fails the test instead, because `.ci/run` installs every one of
/// them and a skip there would hide a test that never ran.
pub fn system_tool(program: &str, package: &str) -> bool {
    use std::collections::BTreeSet;
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};

    if find_program(program).is_some() {
        return true;
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| matches!(v.as_str(), "true" | "1" | "yes"));
    assert!(
        !in_ci,
        "{program} is missing and CI=true: .ci/run must install it (apt-get install -y {package})"
    );
    static SAID: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    let said = SAID.get_or_init(|| Mutex::new(BTreeSet::new()));
    let first = said
        .lock()
        .map(|mut said| said.insert(program.to_string()))
        .unwrap_or(false);
    if first {
        // `eprintln!` would be captured by the harness and shown only on failure.
        let _ = writeln!(
            std::io::stderr(),
            "note: skipping the tests that need `{program}` (not installed; apt-get install -y {package}; required when CI=true)"
        );
    }
    false
}

/// A program on `PATH`, or in the sbin directories where Debian puts daemons such as `sshd`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// `proxfleet sim serve --tls` on a free loopback port, as another process: `extra` arguments
/// added (tokens, roles, ACLs, task durations), its certificate written to `dir/ca.pem`.
/// Killed when dropped.
pub struct TlsSim {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub listen: String,
    /// The certificate clients trust.
    pub ca: PathBuf,
    /// Whether it listened, with its certificate written, within 5 s.
    pub ready: bool,
}

impl Drop for TlsSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a [`TlsSim`] and wait (at most 5 s) until it listens.
pub fn sim_serve_tls(dir: &Path, extra: &[&str]) -> TlsSim {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let ca = dir.join("ca.pem");
    let child = Command::new(env!("CARGO_BIN_EXE_proxfleet"))
        .args(["sim", "serve", "--tls", "--listen", &listen])
        .args(extra)
        .arg("--ca-file")
        .arg(&ca)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sim serve starts");
    let ready = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        ca.exists() && std::net::TcpStream::connect(&listen).is_ok()
    });
    TlsSim {
        child,
        listen,
        ca,
        ready,
    }
}

/// `proxfleet apply -f SPEC --auto-approve` as a child process against `sim`.
pub fn apply_process(
    sim: &proxfleet::sim::SimHandle,
    spec: &std::path::Path,
    home: &std::path::Path,
) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_proxfleet"));
    command
        .args(["apply", "--auto-approve", "-f"])
        .arg(spec)
        .env("PROXMOX_VE_ENDPOINT", sim.endpoint())
        .env("PROXMOX_VE_API_TOKEN", sim.token())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("PROXFLEET_PROFILE");
    command
}

pub async fn run_process(mut command: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().expect("proxfleet runs"))
        .await
        .expect("joined")
}

/// The VM and the option (`scsi1`) that hold volume `volid`, if any does.
pub fn held_at(vms: &[proxfleet::sim::SimVm], volid: &str) -> Option<(u32, String)> {
    vms.iter().find_map(|vm| {
        vm.config
            .iter()
            .find(|(_, value)| value.split(',').next() == Some(volid))
            .map(|(slot, _)| (vm.vmid, slot.clone()))
    })
}
