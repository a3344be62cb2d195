//! Images for real: a qcow2 made by `qemu-img`, served over HTTP on loopback, fetched by the
//! (simulated) node with download-url, or fetched, verified and uploaded by proxfleet itself
//! (`mode: upload`); a wrong checksum fails before anything is written.

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
