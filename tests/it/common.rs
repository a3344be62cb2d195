//! Test helpers: a simulator per test, a connection to it, commands run with captured output,
//! and insta settings that keep snapshots in `snapshots/` at the repository root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proxfleet::cli::{ApplyArgs, DestroyArgs, PlanArgs, SpecArgs};
use proxfleet::commands::{self, CommandError, Connection, Io};
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
}

async fn capture<F>(f: F) -> Run
where
    F: AsyncFnOnce(&mut Io<'_>) -> Result<(), CommandError>,
{
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input: &[u8] = b"";
    let result = {
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            input: &mut input,
        };
        f(&mut io).await
    };
    Run {
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
        result,
    }
}

fn spec_args(file: &Path) -> SpecArgs {
    SpecArgs {
        file: file.to_path_buf(),
    }
}

/// `proxfleet plan`.
pub async fn plan(conn: &Connection, file: &Path) -> Run {
    let args = PlanArgs {
        spec: spec_args(file),
        json: false,
    };
    capture(async |io| commands::plan::run(&args, conn, io).await).await
}

/// `proxfleet plan --json`.
pub async fn plan_json(conn: &Connection, file: &Path) -> Run {
    let args = PlanArgs {
        spec: spec_args(file),
        json: true,
    };
    capture(async |io| commands::plan::run(&args, conn, io).await).await
}

/// `proxfleet apply --auto-approve`.
pub async fn apply(conn: &Connection, file: &Path) -> Run {
    let args = ApplyArgs {
        spec: spec_args(file),
        auto_approve: true,
        parallelism: 8,
    };
    capture(async |io| commands::apply::run_apply(&args, conn, io).await).await
}

/// `proxfleet destroy --auto-approve`.
pub async fn destroy(conn: &Connection, file: &Path) -> Run {
    let args = DestroyArgs {
        spec: spec_args(file),
        auto_approve: true,
        include_images: false,
        parallelism: 8,
    };
    capture(async |io| commands::apply::run_destroy(&args, conn, io).await).await
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

/// Requests that change something (anything but GET) seen by the simulator.
pub fn write_requests(sim: &SimHandle) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method != "GET")
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
