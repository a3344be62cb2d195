//! Images for real: a qcow2 made by `qemu-img`, served over HTTP on loopback, fetched by the
//! (simulated) node with download-url, or fetched, verified and uploaded by proxfleet itself
//! (`mode: upload`); a wrong checksum fails before anything is written. Compressed images
//! (gzip, xz, zstd, as their publishers ship them) and `.img` names, which a node cannot
//! import, go through proxfleet: verified as published, decompressed, checked for the format
//! their name in the storage says, and uploaded. Tests that need `qemu-img` or a compressor are
//! skipped where it is missing, except with `CI=true` (`common::system_tool`).

use std::process::Command;

use sha2::Digest;

use crate::common::*;

/// A 1 GiB (virtual) qcow2 made by qemu-img, served on loopback; returns its URL and sha256.
async fn serve_qcow2(dir: &std::path::Path) -> (String, String) {
    let path = dir.join("tiny.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg("1G")
        .status()
        .expect("qemu-img runs (install qemu-utils)");
    assert!(made.success());
    let bytes = std::fs::read(&path).unwrap();
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    let app = axum::Router::new().route(
        "/images/tiny.qcow2",
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { bytes }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/images/tiny.qcow2"), sha256)
}

fn spec_for(url: &str, sha256: &str, mode: &str) -> String {
    let quickstart = quickstart_text();
    let start = quickstart.find("images:").unwrap();
    let end = quickstart.find("templates:").unwrap();
    let images = format!(
        "images:\n  debian-12:\n    url: {url}\n    checksum: sha256:{sha256}\n    storage: local\n    node: pve1\n    mode: {mode}\n\n"
    );
    format!("{}{images}{}", &quickstart[..start], &quickstart[end..])
}

async fn check_mode(mode: &str) {
    if !system_tool("qemu-img", "qemu-utils") {
        return;
    }
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let (url, sha256) = serve_qcow2(dir.path()).await;
    let spec = write_spec(dir.path(), "real.yaml", &spec_for(&url, &sha256, mode));
    sim.clear_requests();
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    let uploads = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/upload"))
        .count();
    assert_eq!(
        uploads,
        usize::from(mode == "upload"),
        "{mode}: uploads sent"
    );
    let file = std::fs::metadata(dir.path().join("tiny.qcow2"))
        .unwrap()
        .len();
    let volume = sim
        .volumes()
        .into_iter()
        .find(|v| v.content == "import")
        .expect("the image is in local");
    assert_eq!(
        volume.volid,
        format!("local:import/tiny-{}.qcow2", &sha256[..12])
    );
    assert_eq!(volume.size, file, "the real file's bytes");
    let template = sim.vms().into_iter().find(|vm| vm.vmid == 9000).unwrap();
    assert!(
        template.config["scsi0"].contains("size=20G"),
        "imported (1G virtual) and grown: {}",
        template.config["scsi0"]
    );
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));
}

#[tokio::test]
async fn the_node_downloads_a_real_qcow2_and_verifies_it() {
    check_mode("download").await;
}

#[tokio::test]
async fn proxfleet_fetches_verifies_and_uploads_a_real_qcow2() {
    check_mode("upload").await;
}

#[tokio::test]
async fn a_wrong_checksum_fails_in_either_mode_and_writes_no_image() {
    if !system_tool("qemu-img", "qemu-utils") {
        return;
    }
    for mode in ["download", "upload"] {
        let (sim, conn) = sim().await;
        let dir = tempfile::tempdir().unwrap();
        let (url, _) = serve_qcow2(dir.path()).await;
        let wrong = "0".repeat(64);
        let spec = write_spec(dir.path(), "wrong.yaml", &spec_for(&url, &wrong, mode));
        let run = apply(&conn, &spec).await;
        assert!(run.result.is_err(), "{mode}");
        assert!(run.out.contains("checksum mismatch"), "{mode}: {}", run.out);
        assert!(
            sim.volumes().iter().all(|v| v.content != "import"),
            "{mode}: no image was stored"
        );
        assert!(
            sim.requests().iter().all(|r| !r.path.ends_with("/upload")),
            "{mode}: nothing uploaded"
        );
        assert!(sim.vms().is_empty(), "{mode}: nothing built from it");
    }
}

/// A file served on loopback under `/images/NAME`; returns its URL.
async fn serve_file(name: &str, bytes: Vec<u8>) -> String {
    let route = format!("/images/{name}");
    let app = axum::Router::new().route(
        &route,
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { bytes }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://{addr}{route}")
}

/// An image made by qemu-img (`qcow2` 1 GiB virtual, or `raw` 8 MiB), its bytes.
fn make_image(dir: &std::path::Path, format: &str) -> Vec<u8> {
    let path = dir.join(format!("made.{format}"));
    let size = if format == "raw" { "8M" } else { "1G" };
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", format])
        .arg(&path)
        .arg(size)
        .status()
        .expect("qemu-img runs (install qemu-utils)");
    assert!(made.success());
    std::fs::read(&path).unwrap()
}

/// `bytes` compressed by a command-line tool (`gzip`, `xz`, `zstd`), as publishers do.
fn compress(tool: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(["-c", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} runs: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "{tool}");
    output.stdout
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn compressed_images_are_verified_as_published_decompressed_and_uploaded_as_qcow2() {
    if !system_tool("qemu-img", "qemu-utils")
        || !system_tool("gzip", "gzip")
        || !system_tool("xz", "xz-utils")
        || !system_tool("zstd", "zstd")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = make_image(dir.path(), "qcow2");
    for (published, tool) in [
        ("tiny.qcow2.gz", "gzip"),
        ("tiny.img.xz", "xz"),
        ("tiny.qcow2.zst", "zstd"),
    ] {
        let compressed = compress(tool, &qcow2);
        let sha256 = sha256_hex(&compressed);
        let url = serve_file(published, compressed).await;

        // The node cannot do it: validation says so, before anything is sent.
        let (sim, conn) = sim().await;
        let spec = write_spec(
            dir.path(),
            "node.yaml",
            &spec_for(&url, &sha256, "download"),
        );
        let run = apply(&conn, &spec).await;
        let message = run
            .result
            .as_ref()
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(
            message.contains(&format!("`{published}` is compressed ({tool})"))
                && message.contains("`mode: upload`"),
            "{published}: {message}"
        );
        assert!(sim.requests().is_empty(), "{published}: nothing was sent");

        // proxfleet can: the qcow2 itself reaches the storage.
        let spec = write_spec(
            dir.path(),
            "upload.yaml",
            &spec_for(&url, &sha256, "upload"),
        );
        let run = apply(&conn, &spec).await;
        assert!(
            run.result.is_ok(),
            "{published}: {:?}\n{}",
            run.result,
            run.out
        );
        let volume = sim
            .volumes()
            .into_iter()
            .find(|v| v.content == "import")
            .expect("the image is in local");
        assert_eq!(
            volume.volid,
            format!("local:import/tiny-{}.qcow2", &sha256[..12]),
            "{published}: named by the published file's checksum, as qcow2"
        );
        assert_eq!(
            volume.size,
            qcow2.len() as u64,
            "{published}: the decompressed bytes"
        );
        assert!(
            sim.vms().iter().any(|vm| vm.vmid == 9000 && vm.template),
            "{published}: the template was built from it"
        );
        assert!(
            plan(&conn, &spec).await.out.starts_with("No changes."),
            "{published}"
        );
    }
}

#[tokio::test]
async fn a_raw_image_published_as_img_is_refused_with_the_name_that_fits_then_uploaded_as_raw() {
    if !system_tool("qemu-img", "qemu-utils") || !system_tool("gzip", "gzip") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = make_image(dir.path(), "raw");
    let compressed = compress("gzip", &raw);
    let sha256 = sha256_hex(&compressed);
    let url = serve_file("openwrt-combined.img.gz", compressed).await;
    let (sim, conn) = sim().await;
    let spec = write_spec(dir.path(), "raw.yaml", &spec_for(&url, &sha256, "upload"));
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_err());
    assert!(
        run.out.contains(&format!(
            "{url} is not a qcow2 image (it does not start with qcow2's `QFI\\xfb`), so it cannot be stored as `openwrt-combined.qcow2`; if it is a raw disk image, set `file_name: openwrt-combined.raw`"
        )),
        "{}",
        run.out
    );
    assert!(
        sim.volumes().iter().all(|v| v.content != "import"),
        "nothing uploaded"
    );

    let named = spec_for(&url, &sha256, "upload").replace(
        "    mode: upload\n",
        "    mode: upload\n    file_name: openwrt-combined.raw\n",
    );
    let spec = write_spec(dir.path(), "raw.yaml", &named);
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    let volume = sim
        .volumes()
        .into_iter()
        .find(|v| v.content == "import")
        .unwrap();
    assert_eq!(
        volume.volid,
        format!("local:import/openwrt-combined-{}.raw", &sha256[..12])
    );
    assert_eq!(volume.size, raw.len() as u64);
}

#[tokio::test]
async fn a_file_that_does_not_decompress_fails_after_its_checksum_and_uploads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = b"this is not xz at all".to_vec();
    let sha256 = sha256_hex(&bytes);
    let url = serve_file("broken.qcow2.xz", bytes).await;
    let (sim, conn) = sim().await;
    let spec = write_spec(
        dir.path(),
        "broken.yaml",
        &spec_for(&url, &sha256, "upload"),
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_err());
    assert!(
        run.out
            .contains(&format!("cannot decompress {url} as xz: ")),
        "{}",
        run.out
    );
    assert!(sim.requests().iter().all(|r| !r.path.ends_with("/upload")));
}

/// What `apply` reports while an image travels: the node's download task's progress from its
/// log, and proxfleet's own fetch in upload mode, by quarters.
#[tokio::test]
async fn image_progress_is_reported_from_the_task_log_and_from_the_fetch() {
    if !system_tool("qemu-img", "qemu-utils") {
        return;
    }
    use proxfleet::apply::{ApplyOptions, Event, apply};
    use proxfleet::graph::DesiredGraph;
    use proxfleet::sim::{SimConfig, SimHandle};

    let dir = tempfile::tempdir().unwrap();
    let (url, sha256) = serve_qcow2(dir.path()).await;
    for (mode, expected) in [
        ("download", "download local:import/"),
        ("upload", "fetching http://"),
    ] {
        let sim = SimHandle::start(SimConfig {
            // Long enough for the progress lines of a download to be seen while it runs.
            task_duration: Some(std::time::Duration::from_millis(800)),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let conn = proxfleet::commands::Connection::to_sim(&sim).unwrap();
        let spec = write_spec(dir.path(), "progress.yaml", &spec_for(&url, &sha256, mode));
        let desired = DesiredGraph::build(&proxfleet::spec::load(&spec).unwrap().spec);
        let actual = proxfleet::observe::observe(&conn.client, &desired)
            .await
            .unwrap();
        let mut plan = proxfleet::diff::diff(&desired, &actual);
        plan.changes
            .retain(|c| c.key.to_string().starts_with("image."));
        let steps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink_steps = std::sync::Arc::clone(&steps);
        let report = apply(
            &conn.client,
            &plan,
            &desired,
            &actual,
            &ApplyOptions::default(),
            std::sync::Arc::new(move |event| {
                if let Event::Step { what, .. } = event {
                    sink_steps.lock().unwrap().push(what);
                }
            }),
        )
        .await;
        assert!(!report.failed(), "{report:?}");
        let steps = steps.lock().unwrap().clone();
        let progress: Vec<&String> = steps
            .iter()
            .filter(|s| s.starts_with(expected) && s.contains('%'))
            .collect();
        assert!(!progress.is_empty(), "{mode}: {steps:?}");
        if mode == "upload" {
            assert!(steps.iter().any(|s| s.contains("100% of")), "{steps:?}");
        } else {
            assert!(
                steps.iter().any(|s| s.ends_with("downloading: 50% done")),
                "{steps:?}"
            );
        }
    }
}
