//! Custom cloud-init data, end to end on the simulator: clones with `user_data`, `vendor_data`
//! or `network_data` get a NoCloud seed ISO of their own in place of Proxmox's cloud-init drive;
//! the ISO is what the spec says (read back by the independent reader in `iso9660.rs`), named by
//! its content, converges, follows a changed user-data file, and goes away with its clone.

use proxfleet::graph::{DesiredGraph, Resource};
use proxfleet::qemu_config::propstr::nic_mac;

use super::common::{apply, destroy, plan, quickstart_text, sim, write_spec};

const USER_DATA: &str =
    "#cloud-config\npackages:\n  - nginx\nruncmd:\n  - [systemctl, enable, --now, nginx]\n";
const VENDOR_DATA: &str = "#cloud-config\ntimezone: Europe/Vienna\n";

/// The quickstart with custom user-data for every clone (on the template) and vendor-data for
/// web-2.
fn spec_text() -> String {
    quickstart_text()
        .replace(
            "      ipv4: dhcp\n",
            "      ipv4: dhcp\n      user_data: user-data.yaml\n",
        )
        .replace(
            "      ipv4: 192.0.2.12/24\n",
            "      ipv4: 192.0.2.12/24\n      vendor_data: vendor-data.yaml\n",
        )
}

#[tokio::test]
async fn clones_with_custom_data_boot_from_their_own_seed_iso_which_converges_and_follows_the_files()
 {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("user-data.yaml"), USER_DATA).expect("user-data");
    std::fs::write(dir.path().join("vendor-data.yaml"), VENDOR_DATA).expect("vendor-data");
    let spec = write_spec(dir.path(), "fleet.yaml", &spec_text());

    let planned = plan(&conn, &spec).await;
    assert!(
        planned.out.contains("ide2") && planned.out.contains("cloud-init seed ISO on local"),
        "{}",
        planned.out
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);

    // Each clone boots from its own seed; the template keeps Proxmox's drive.
    let loaded = proxfleet::spec::load(&spec).expect("spec loads");
    let desired = DesiredGraph::build(&loaded.spec);
    let vms = sim.vms();
    let volumes = sim.volumes();
    for vmid in [201, 202, 203] {
        let vm = vms.iter().find(|v| v.vmid == vmid).expect("clone exists");
        let ide2 = vm.config.get("ide2").cloned().unwrap_or_default();
        assert!(
            ide2.starts_with("local:iso/proxfleet-ci-") && ide2.ends_with(",media=cdrom"),
            "{ide2}"
        );
        assert!(
            !volumes
                .iter()
                .any(|v| v.volid.contains(&format!("vm-{vmid}-cloudinit"))),
            "Proxmox's cloud-init drive of {vmid} is freed"
        );
        // The ISO is the one the spec and the clone's MAC make.
        let desired_vm = desired
            .in_order()
            .find_map(|r| match r {
                Resource::Vm(d) if d.vmid == vmid => Some(d),
                _ => None,
            })
            .expect("desired clone");
        let plan = desired_vm.seed.as_ref().expect("a seed plan");
        let mac = vm.config.get("net0").and_then(|n| nic_mac(n));
        let iso = plan.build(&vm.config).expect("seed builds");
        assert_eq!(ide2, format!("{},media=cdrom", plan.volid(&iso)));
        assert!(volumes.iter().any(|v| v.volid == plan.volid(&iso)));

        let user_data =
            super::iso9660::file(&iso.bytes, "/user-data").expect("user-data in the seed");
        assert!(
            user_data.starts_with("#cloud-config\npackages:\n  - nginx\n"),
            "{user_data}"
        );
        assert!(
            user_data.contains("name: \"debian\"") || user_data.contains("name: debian"),
            "{user_data}"
        );
        assert!(user_data.contains(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINeA4p1Q2dIqor6pOI1wJK37hZeBNvahZhylneTi+5ph"
        ));
        let meta_data =
            super::iso9660::file(&iso.bytes, "/meta-data").expect("meta-data in the seed");
        assert!(
            meta_data.contains(&format!("web-{}", vmid - 200)),
            "{meta_data}"
        );
        let network = super::iso9660::file(&iso.bytes, "/network-config")
            .expect("network-config in the seed");
        let mac = mac.expect("net0 has a MAC").to_ascii_lowercase();
        assert!(network.contains(&mac), "{network}");
        assert!(
            network.contains(&format!("192.0.2.{}/24", vmid - 190)),
            "{network}"
        );
        let vendor = super::iso9660::file(&iso.bytes, "/vendor-data").unwrap_or_default();
        assert_eq!(vendor.contains("Europe/Vienna"), vmid == 202, "{vendor}");
    }
    let template = vms.iter().find(|v| v.vmid == 9000).expect("template");
    assert!(
        template
            .config
            .get("ide2")
            .is_some_and(|v| v.contains("cloudinit"))
    );

    // Idempotent.
    let again = plan(&conn, &spec).await;
    assert!(again.out.starts_with("No changes."), "{}", again.out);

    // A changed user-data is a visible change of each clone's seed; the old seeds go.
    let seeds_before: Vec<String> = sim
        .volumes()
        .into_iter()
        .filter(|v| v.volid.contains("proxfleet-ci-"))
        .map(|v| v.volid)
        .collect();
    assert_eq!(seeds_before.len(), 3);
    std::fs::write(
        dir.path().join("user-data.yaml"),
        USER_DATA.replace("nginx", "caddy"),
    )
    .expect("user-data");
    let changed = plan(&conn, &spec).await;
    assert_eq!(changed.out.matches("ide2").count(), 3, "{}", changed.out);
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    let seeds_after: Vec<String> = sim
        .volumes()
        .into_iter()
        .filter(|v| v.volid.contains("proxfleet-ci-"))
        .map(|v| v.volid)
        .collect();
    assert_eq!(seeds_after.len(), 3, "{seeds_after:?}");
    assert!(seeds_after.iter().all(|s| !seeds_before.contains(s)));
    assert!(plan(&conn, &spec).await.out.starts_with("No changes."));

    // destroy takes the seeds with the clones.
    let gone = destroy(&conn, &spec).await;
    assert!(gone.result.is_ok(), "{}\n{}", gone.out, gone.err);
    assert!(
        !sim.volumes()
            .iter()
            .any(|v| v.volid.contains("proxfleet-ci-"))
    );
}

#[tokio::test]
async fn custom_data_files_are_checked_when_the_spec_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("user-data.yaml"), "packages: [nginx]\n").expect("write");
    std::fs::write(dir.path().join("network.yaml"), "ethernets: {}\n").expect("write");
    let text = quickstart_text().replace(
        "      ipv4: dhcp\n",
        "      ipv4: dhcp\n      user_data: user-data.yaml\n      vendor_data: missing.yaml\n      network_data: network.yaml\n",
    );
    let spec = write_spec(dir.path(), "fleet.yaml", &text);
    let err = proxfleet::spec::load(&spec).expect_err("bad custom data");
    let text = err.to_string();
    assert!(
        text.contains("templates.debian-12-base.cloud_init.user_data"),
        "{text}"
    );
    assert!(text.contains("is not a cloud-init format"), "{text}");
    assert!(text.contains("cannot read"), "{text}");
    assert!(text.contains("no `version: 1` or `version: 2`"), "{text}");
}
