//! The simulator over plain HTTP, without proxfleet's client: envelopes, status codes and
//! wording as Proxmox answers, and the semantics proxfleet relies on (template conversion,
//! clones, digests, locks, download-url idempotency, resize, persistence).

use std::time::Duration;

use proxfleet::sim::{SimConfig, SimHandle};
use serde_json::{Value, json};

pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub(crate) async fn start(config: SimConfig) -> (SimHandle, Api) {
        let sim = SimHandle::start(config).await.unwrap();
        // No idle-connection timer: on a paused clock it would be the timer the clock jumps to
        // whenever the runtime waits for the simulator's answer.
        let http = reqwest::Client::builder()
            .pool_idle_timeout(None)
            .build()
            .unwrap();
        let api = Api {
            http,
            base: format!("{}/api2/json", sim.endpoint()),
            token: sim.token(),
        };
        (sim, api)
    }

    /// The same simulator, called with another token.
    pub(crate) fn as_token(&self, token: &str) -> Api {
        Api {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.to_string(),
        }
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("Authorization", format!("PVEAPIToken={}", self.token));
        req = if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
            req.query(form)
        } else {
            req.form(form)
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Call and report a transport failure (a dropped connection) instead of panicking.
    async fn try_call(
        &self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value), reqwest::Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("PVEAPIToken={}", self.token))
            .form(form)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.json().await?;
        Ok((status, body))
    }

    /// Call, expect a UPID, wait for the task; returns its exit status.
    pub(crate) async fn task(&self, method: &str, path: &str, form: &[(&str, &str)]) -> String {
        let (status, body) = self.call(method, path, form).await;
        assert_eq!(status, 200, "{method} {path}: {body}");
        let upid = body["data"]
            .as_str()
            .unwrap_or_else(|| panic!("UPID from {path}: {body}"))
            .to_string();
        self.wait(&upid).await
    }

    /// Wait for a task to end; returns its exit status.
    pub(crate) async fn wait(&self, upid: &str) -> String {
        let node = upid.split(':').nth(1).unwrap().to_string();
        let encoded: String = url::form_urlencoded::byte_serialize(upid.as_bytes()).collect();
        for _ in 0..500 {
            let (_, status) = self
                .call("GET", &format!("/nodes/{node}/tasks/{encoded}/status"), &[])
                .await;
            if status["data"]["status"] == "stopped" {
                return status["data"]["exitstatus"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("task {upid} did not finish");
    }

    async fn config(&self, vmid: u32) -> Value {
        self.call("GET", &format!("/nodes/pve1/qemu/{vmid}/config"), &[])
            .await
            .1["data"]
            .clone()
    }
}

pub(crate) fn fast() -> SimConfig {
    SimConfig {
        task_duration: Some(Duration::from_millis(2)),
        ..SimConfig::default()
    }
}

const IMAGE: &str = "local:import/noble.qcow2";
const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000001";

/// An image, a template 9000 built from it.
pub(crate) async fn template(api: &Api) {
    let exit = api
        .task(
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &[
                ("content", "import"),
                ("filename", "noble.qcow2"),
                ("url", "https://example.com/noble.img"),
                ("checksum", SHA),
                ("checksum-algorithm", "sha256"),
            ],
        )
        .await;
    assert_eq!(exit, "OK");
    let scsi0 = format!("local-lvm:0,import-from={IMAGE},discard=on");
    let exit = api
        .task(
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "9000"),
                ("name", "base"),
                ("scsi0", &scsi0),
                ("ide2", "local-lvm:cloudinit"),
                ("net0", "virtio,bridge=vmbr0"),
                ("efidisk0", "local-lvm:1,efitype=4m"),
                ("tpmstate0", "local-lvm:1,version=v2.0"),
            ],
        )
        .await;
    assert_eq!(exit, "OK");
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/9000/template", &[])
            .await,
        "OK"
    );
}

#[tokio::test]
async fn errors_use_proxmox_envelopes_and_status_codes() {
    let (sim, api) = Api::start(fast()).await;
    let anonymous = reqwest::get(format!("{}/api2/json/version", sim.endpoint()))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(
        anonymous.json::<Value>().await.unwrap(),
        json!({"data": null, "message": "authentication failure\n"})
    );

    let (status, body) = api.call("GET", "/nodes/pve1/frobnicate", &[]).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            501,
            Some("Method 'GET /nodes/pve1/frobnicate' not implemented\n")
        )
    );

    let (status, body) = api
        .call(
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "100"),
                ("colour", "blue"),
                ("onboot", "true"),
                ("cores", "0"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "Parameter verification failed.\n");
    assert_eq!(
        body["errors"]["colour"],
        "property is not defined in schema and the schema does not allow additional properties"
    );
    assert_eq!(
        body["errors"]["onboot"],
        "type check ('boolean') failed - got 'true'"
    );
    assert_eq!(
        body["errors"]["cores"],
        "value must have a minimum value of 1"
    );

    let (status, body) = api.call("GET", "/version", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["release"], "9.1");
}

#[tokio::test]
async fn template_conversion_renames_disks_and_clones_get_locks_and_new_macs() {
    // Tasks long enough that both clones are still running when their locks are checked.
    let (sim, api) = Api::start(SimConfig {
        task_duration: Some(Duration::from_millis(300)),
        ..SimConfig::default()
    })
    .await;
    template(&api).await;
    let config = api.config(9000).await;
    assert_eq!(config["template"], 1);
    let scsi0 = config["scsi0"].as_str().unwrap();
    assert!(
        scsi0.starts_with("local-lvm:base-9000-disk-") && scsi0.contains("size=2G"),
        "{scsi0}"
    );
    assert!(config["ide2"].as_str().unwrap().contains("media=cdrom"));
    let mac = config["net0"].as_str().unwrap().to_string();
    assert!(mac.starts_with("virtio=BC:24:11:"), "{mac}");

    // Conversion is refused a second time, and a template cannot start.
    let (status, body) = api
        .call("POST", "/nodes/pve1/qemu/9000/template", &[])
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (500, Some("you can't convert a template to a template\n"))
    );
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/9000/status/start", &[])
            .await,
        "you can't start a vm if it's a template"
    );

    // Three linked clones at once; each is locked while its task runs.
    let (_, first) = api
        .call(
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "201"), ("name", "a"), ("full", "0")],
        )
        .await;
    let (_, second) = api
        .call(
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "202"), ("name", "b"), ("full", "0")],
        )
        .await;
    assert!(first["data"].as_str().unwrap().contains(":qmclone:9000:"));
    assert!(second["data"].is_string());
    let locked: Vec<_> = sim
        .vms()
        .into_iter()
        .filter(|vm| vm.lock.as_deref() == Some("clone"))
        .map(|vm| vm.vmid)
        .collect();
    assert_eq!(locked, vec![201, 202]);
    let (status, body) = api
        .call("POST", "/nodes/pve1/qemu/201/config", &[("memory", "1024")])
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (500, Some("VM is locked (clone)\n"))
    );
    assert_eq!(
        api.task(
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "203"), ("name", "c"), ("full", "1")]
        )
        .await,
        "OK"
    );
    for upid in [&first, &second] {
        assert_eq!(api.wait(upid["data"].as_str().unwrap()).await, "OK");
    }
    let clone = api.config(201).await;
    assert!(
        clone.get("lock").is_none() && clone.get("template").is_none(),
        "{clone}"
    );
    assert_ne!(
        clone["net0"].as_str().unwrap(),
        mac,
        "a clone gets a new MAC"
    );
    assert!(
        clone["scsi0"]
            .as_str()
            .unwrap()
            .starts_with("local-lvm:base-9000-disk-1/vm-201-disk-"),
        "{clone}"
    );
    let full = api.config(203).await;
    assert!(
        full["scsi0"]
            .as_str()
            .unwrap()
            .starts_with("local-lvm:vm-203-disk-"),
        "{full}"
    );

    // Linked clones from a VM that is not a template are refused; storage only with full.
    let (status, body) = api
        .call(
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "204"), ("full", "0"), ("storage", "local-lvm")],
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            500,
            Some("parameter 'storage' not allowed for linked clones\n")
        ),
        "{body}"
    );
}

#[tokio::test]
async fn digests_locks_power_and_destroy_behave_as_proxmox() {
    let (_sim, api) = Api::start(fast()).await;
    template(&api).await;
    assert_eq!(
        api.task(
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "201"), ("name", "web")]
        )
        .await,
        "OK"
    );
    let digest = api.config(201).await["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        api.task(
            "POST",
            "/nodes/pve1/qemu/201/config",
            &[("memory", "1024"), ("digest", &digest)]
        )
        .await,
        "OK"
    );
    let (status, body) = api
        .call(
            "POST",
            "/nodes/pve1/qemu/201/config",
            &[("memory", "2048"), ("digest", &digest)],
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            500,
            Some("checksum mismatch (file change by other user?)\n")
        )
    );

    // Running: memory goes to pending, the name applies at once.
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/201/status/start", &[])
            .await,
        "OK"
    );
    assert_eq!(
        api.task(
            "POST",
            "/nodes/pve1/qemu/201/config",
            &[("memory", "4096"), ("name", "web2")]
        )
        .await,
        "OK"
    );
    let (_, pending) = api.call("GET", "/nodes/pve1/qemu/201/pending", &[]).await;
    let memory = pending["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "memory")
        .unwrap()
        .clone();
    assert_eq!(
        (memory["value"].as_str(), memory["pending"].as_str()),
        (Some("1024"), Some("4096"))
    );
    assert_eq!(
        api.config(201).await["memory"],
        "4096",
        "GET config shows pending values applied"
    );

    let (status, body) = api.call("DELETE", "/nodes/pve1/qemu/201", &[]).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (500, Some("VM 201 is running - destroy failed\n"))
    );
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/201/status/stop", &[])
            .await,
        "OK"
    );
    assert_eq!(api.task("DELETE", "/nodes/pve1/qemu/201", &[]).await, "OK");
    let (status, _) = api.call("GET", "/nodes/pve1/qemu/201/config", &[]).await;
    assert_eq!(status, 500);
}

#[tokio::test]
async fn resize_grows_and_refuses_to_shrink() {
    let (_sim, api) = Api::start(fast()).await;
    template(&api).await;
    assert_eq!(
        api.task(
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "201"), ("name", "web")]
        )
        .await,
        "OK"
    );
    assert_eq!(
        api.task(
            "PUT",
            "/nodes/pve1/qemu/201/resize",
            &[("disk", "scsi0"), ("size", "20G")]
        )
        .await,
        "OK"
    );
    assert!(
        api.config(201).await["scsi0"]
            .as_str()
            .unwrap()
            .contains("size=20G")
    );
    assert_eq!(
        api.task(
            "PUT",
            "/nodes/pve1/qemu/201/resize",
            &[("disk", "scsi0"), ("size", "+512M")]
        )
        .await,
        "OK"
    );
    assert!(
        api.config(201).await["scsi0"]
            .as_str()
            .unwrap()
            .contains("size=20992M")
    );
    assert_eq!(
        api.task(
            "PUT",
            "/nodes/pve1/qemu/201/resize",
            &[("disk", "scsi0"), ("size", "10G")]
        )
        .await,
        "shrinking disks is not supported"
    );
}

#[tokio::test]
async fn download_url_is_idempotent_with_a_checksum_only() {
    let (_sim, api) = Api::start(fast()).await;
    let download = |checksum: Option<&'static str>| {
        let mut form = vec![
            ("content", "import"),
            ("filename", "noble.qcow2"),
            ("url", "https://example.com/noble.img"),
        ];
        if let Some(sum) = checksum {
            form.push(("checksum", sum));
            form.push(("checksum-algorithm", "sha256"));
        }
        form
    };
    assert_eq!(
        api.task(
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &download(Some(SHA))
        )
        .await,
        "OK"
    );
    assert_eq!(
        api.task(
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &download(Some(SHA))
        )
        .await,
        "OK",
        "same file, same checksum"
    );
    let other = "00000000000000000000000000000000000000000000000000000000000000ff";
    assert!(
        api.task(
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &download(Some(other))
        )
        .await
        .starts_with("checksum mismatch")
    );
    assert_eq!(
        api.task(
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &download(None)
        )
        .await,
        "refusing to override existing file 'noble.qcow2'"
    );
    let (status, body) = api
        .call(
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &[
                ("content", "import"),
                ("filename", "noble.img"),
                ("url", "https://example.com/noble.img"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"]["filename"].is_string());
    let (status, _) = api
        .call(
            "POST",
            "/nodes/pve1/storage/local-lvm/download-url",
            &download(None),
        )
        .await;
    assert_eq!(status, 500, "local-lvm has no import content");
    let (_, content) = api
        .call(
            "GET",
            "/nodes/pve1/storage/local/content",
            &[("content", "import")],
        )
        .await;
    assert_eq!(content["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn nextid_is_the_lowest_free_id_and_state_persists() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("sim.json");
    let (sim, api) = Api::start(SimConfig {
        state_file: Some(state.clone()),
        ..fast()
    })
    .await;
    sim.insert_vm("pve1", 100, &[("name", "a")]).unwrap();
    sim.insert_vm("pve1", 102, &[("name", "b")]).unwrap();
    assert_eq!(
        api.call("GET", "/cluster/nextid", &[]).await.1["data"],
        "101"
    );
    let (status, body) = api.call("GET", "/cluster/nextid", &[("vmid", "102")]).await;
    assert_eq!(
        (status, &body["errors"]["vmid"]),
        (400, &json!("VM 102 already exists"))
    );
    template(&api).await;
    sim.shutdown().await;

    let (again, api) = Api::start(SimConfig {
        state_file: Some(state),
        ..fast()
    })
    .await;
    let vmids: Vec<u32> = again.vms().iter().map(|vm| vm.vmid).collect();
    assert_eq!(vmids, vec![100, 102, 9000]);
    assert_eq!(api.config(9000).await["template"], 1);
}

#[tokio::test]
async fn tickets_log_in_and_writes_need_the_csrf_token() {
    let (sim, api) = Api::start(SimConfig {
        users: vec!["ops@pve:hunter2".into()],
        acls: vec![proxfleet::sim::AclEntry::parse("/vms:PVEVMAdmin:ops@pve").unwrap()],
        ..fast()
    })
    .await;
    sim.insert_vm("pve1", 100, &[("name", "a")]).unwrap();
    let http = reqwest::Client::new();
    let base = format!("{}/api2/json", sim.endpoint());
    let login = |password: &str| {
        http.post(format!("{base}/access/ticket"))
            .form(&[("username", "ops@pve"), ("password", password)])
            .send()
    };
    let wrong = login("nope").await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let session: Value = login("hunter2").await.unwrap().json().await.unwrap();
    let ticket = session["data"]["ticket"].as_str().unwrap().to_string();
    let csrf = session["data"]["CSRFPreventionToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ticket.starts_with("PVE:ops@pve:"));
    assert_eq!(session["data"]["username"], "ops@pve");

    let cookie = format!("PVEAuthCookie={ticket}");
    let read = http
        .get(format!("{base}/nodes/pve1/qemu/100/config"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200, "reads need no CSRF token");
    let write = |with_csrf: bool| {
        let mut req = http
            .put(format!("{base}/nodes/pve1/qemu/100/config"))
            .header("Cookie", &cookie)
            .form(&[("memory", "1024")]);
        if with_csrf {
            req = req.header("CSRFPreventionToken", &csrf);
        }
        req.send()
    };
    let refused = write(false).await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["message"],
        "Permission denied - invalid csrf token\n"
    );
    assert_eq!(write(true).await.unwrap().status().as_u16(), 200);

    let renewed: Value = login(&ticket).await.unwrap().json().await.unwrap();
    assert_ne!(
        renewed["data"]["ticket"].as_str(),
        Some(ticket.as_str()),
        "a ticket renews into a new one"
    );
    // Tokens keep working beside tickets.
    assert_eq!(api.call("GET", "/version", &[]).await.0, 200);
}

const ALICE_CI: &str = "alice@pve!ci=11111111-2222-4333-8444-555555555555";
const ALICE_FULL: &str = "alice@pve!full=66666666-2222-4333-8444-555555555555";
const BOB: &str = "bob@pve!deploy=77777777-2222-4333-8444-555555555555";

#[tokio::test]
async fn acls_and_privilege_separated_tokens_are_checked_as_proxmox_does() {
    let acl = |text: &str| proxfleet::sim::AclEntry::parse(text).unwrap();
    let (_sim, root) = Api::start(SimConfig {
        tokens: vec![
            proxfleet::sim::DEFAULT_TOKEN.to_string(),
            format!("{ALICE_CI},privsep=1"),
            ALICE_FULL.to_string(),
            BOB.to_string(),
        ],
        acls: vec![
            acl("/:PVEVMAdmin:alice@pve"),
            acl("/storage:PVEDatastoreUser:alice@pve"),
            acl("/:PVEAuditor:alice@pve!ci"),
            acl("/vms/9000:PVETemplateUser:bob@pve"),
            acl("/vms/300:PVEVMAdmin:bob@pve"),
        ],
        ..fast()
    })
    .await;
    template(&root).await;

    // A privilege-separated token has its user's privileges only where its own ACLs grant them.
    let ci = root.as_token(ALICE_CI);
    let (status, body) = ci.call("GET", "/nodes/pve1/qemu/9000/config", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = ci
        .call(
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "150"), ("memory", "512")],
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            403,
            Some("Permission check failed (/vms/150, VM.Allocate)\n")
        )
    );
    // Without separation the token has all of alice's privileges.
    let full = root.as_token(ALICE_FULL);
    let (status, body) = full
        .call(
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "150"), ("memory", "512")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // …but alice cannot use a bridge without SDN.Use.
    let (status, body) = full
        .call(
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", "151"), ("net0", "virtio,bridge=vmbr0")],
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            403,
            Some("Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)\n")
        )
    );

    // bob may clone template 9000 into 300 only: the schema's check (and/or on two paths).
    let bob = root.as_token(BOB);
    let (status, body) = bob
        .call("POST", "/nodes/pve1/qemu/9000/clone", &[("newid", "301")])
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("Permission check failed\n"))
    );
    let exit = bob
        .task(
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid", "300"), ("name", "b")],
        )
        .await;
    assert_eq!(exit, "OK");
    // bob sees only what he may audit; his changes need the matching VM.Config privilege.
    let (_, resources) = bob
        .call("GET", "/cluster/resources", &[("type", "vm")])
        .await;
    let mut seen: Vec<u64> = resources["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["vmid"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, vec![300, 9000]);
    let (status, body) = bob
        .call("PUT", "/nodes/pve1/qemu/9000/config", &[("memory", "4096")])
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("Permission check failed\n"))
    );
    let (status, _) = bob
        .call("PUT", "/nodes/pve1/qemu/300/config", &[("memory", "4096")])
        .await;
    assert_eq!(status, 200);

    // /access/permissions tells each caller what it has.
    let (_, perms) = ci.call("GET", "/access/permissions", &[]).await;
    assert_eq!(perms["data"]["/"]["VM.Audit"], 1, "{perms}");
    assert!(perms["data"]["/"].get("VM.Allocate").is_none(), "{perms}");
    let (status, _) = bob
        .call("GET", "/access/permissions", &[("userid", "alice@pve")])
        .await;
    assert_eq!(status, 403);
    // A wrong secret is an authentication failure, not a permission one.
    let (status, _) = root
        .as_token("alice@pve!ci=00000000-0000-4000-8000-000000000009")
        .call("GET", "/version", &[])
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(start_paused = true)]
async fn faults_on_demand_errors_drops_task_failures_locks_and_offline_nodes() {
    use proxfleet::sim::{Fault, FaultAction, FaultSpec};
    let (sim, api) = Api::start(SimConfig { nodes: 2, ..fast() }).await;
    template(&api).await;
    let clone_path = "/nodes/*/qemu/*/clone";

    // An HTTP error, once.
    sim.add_fault(
        Fault::on(
            "POST",
            clone_path,
            FaultAction::Error {
                status: 500,
                message: "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout"
                    .into(),
            },
        )
        .times(1),
    );
    let (status, body) = api
        .call("POST", "/nodes/pve1/qemu/9000/clone", &[("newid", "201")])
        .await;
    assert_eq!(status, 500);
    assert!(body["message"].as_str().unwrap().contains("got timeout"));
    assert!(!sim.vms().iter().any(|vm| vm.vmid == 201));
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/9000/clone", &[("newid", "201")])
            .await,
        "OK"
    );

    // A connection dropped before the request is handled changes nothing; one dropped after
    // it is handled leaves the change made and the client none the wiser.
    sim.add_fault(Fault::on("POST", clone_path, FaultAction::Drop { after: false }).times(1));
    assert!(
        api.try_call("POST", "/nodes/pve1/qemu/9000/clone", &[("newid", "202")])
            .await
            .is_err()
    );
    assert!(!sim.vms().iter().any(|vm| vm.vmid == 202));
    sim.add_fault(Fault::on("POST", clone_path, FaultAction::Drop { after: true }).times(1));
    assert!(
        api.try_call("POST", "/nodes/pve1/qemu/9000/clone", &[("newid", "202")])
            .await
            .is_err()
    );
    assert!(sim.vms().iter().any(|vm| vm.vmid == 202));

    // A task that fails: the request succeeds, the task ends with the message, and the clone it
    // was making is cleaned up.
    sim.add_fault(
        Fault::on(
            "POST",
            clone_path,
            FaultAction::TaskError("clone failed: disk quota exceeded".into()),
        )
        .times(1),
    );
    let exit = api
        .task("POST", "/nodes/pve1/qemu/9000/clone", &[("newid", "203")])
        .await;
    assert_eq!(exit, "clone failed: disk quota exceeded");
    assert!(!sim.vms().iter().any(|vm| vm.vmid == 203));

    // Latency on one path only (on the paused clock: the simulator waits with tokio's timers).
    sim.add_fault(Fault::on(
        "GET",
        "/version",
        FaultAction::Latency(Duration::from_millis(150)),
    ));
    let started = tokio::time::Instant::now();
    api.call("GET", "/version", &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    sim.clear_faults();

    // A held lock refuses changes with Proxmox's message until released.
    sim.inject(FaultSpec::parse("lock,vmid=201,lock=backup").unwrap())
        .unwrap();
    let (status, body) = api
        .call("PUT", "/nodes/pve1/qemu/201/config", &[("memory", "1024")])
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (500, Some("VM is locked (backup)\n"))
    );
    let (_, config) = api.call("GET", "/nodes/pve1/qemu/201/config", &[]).await;
    assert_eq!(config["data"]["lock"], "backup");
    sim.set_lock(201, None).unwrap();
    let (status, _) = api
        .call("PUT", "/nodes/pve1/qemu/201/config", &[("memory", "1024")])
        .await;
    assert_eq!(status, 200);

    // An offline node cannot be reached through the others.
    sim.inject(FaultSpec::parse("offline,node=pve2").unwrap())
        .unwrap();
    let (status, body) = api.call("GET", "/nodes/pve2/qemu", &[]).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (595, Some("no route to host pve2\n"))
    );
    let (_, nodes) = api.call("GET", "/nodes", &[]).await;
    assert_eq!(nodes["data"][1]["status"], "offline");
    sim.set_node_online("pve2", true).unwrap();
    let (status, _) = api.call("GET", "/nodes/pve2/qemu", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn networks_mappings_and_storage_state_are_listed_as_proxmox_does() {
    use proxfleet::sim::{AclEntry, SimBridge, SimPciMapping};
    let mut vlan_ready = SimBridge::new("pve2", "vmbr1");
    vlan_ready.vlan_aware = true;
    vlan_ready.ports = vec!["eno2".into()];
    let (sim, root) = Api::start(SimConfig {
        nodes: 2,
        tokens: vec![proxfleet::sim::DEFAULT_TOKEN.to_string(), BOB.to_string()],
        acls: vec![AclEntry::parse("/mapping/pci/gpu0:PVEMappingUser:bob@pve").unwrap()],
        pci_mappings: vec![
            SimPciMapping::new("gpu0", &[("pve1", "0000:01:00.0")]),
            SimPciMapping::new(
                "nic0",
                &[("pve1", "0000:02:00.0"), ("pve2", "0000:02:00.0")],
            ),
        ],
        bridges: vec![vlan_ready],
        ..fast()
    })
    .await;

    // Every node has eno1 and a vmbr0 over it, not VLAN-aware, as the installer leaves it.
    let (status, body) = root.call("GET", "/nodes/pve1/network", &[]).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["iface"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eno1", "vmbr0"]);
    let vmbr0 = &body["data"][1];
    assert_eq!(
        (
            vmbr0["type"].as_str(),
            vmbr0["bridge_ports"].as_str(),
            vmbr0["active"].as_u64(),
            vmbr0["cidr"].as_str()
        ),
        (
            Some("bridge"),
            Some("eno1"),
            Some(1),
            Some("198.51.100.11/24")
        )
    );
    assert!(vmbr0.get("bridge_vlan_aware").is_none(), "{vmbr0}");
    let (_, bridges) = root
        .call("GET", "/nodes/pve2/network", &[("type", "any_bridge")])
        .await;
    let vmbr1 = &bridges["data"][1];
    assert_eq!(
        (
            vmbr1["iface"].as_str(),
            vmbr1["bridge_vlan_aware"].as_u64(),
            vmbr1["bridge_vids"].as_str()
        ),
        (Some("vmbr1"), Some(1), Some("2-4094"))
    );
    assert_eq!(bridges["data"].as_array().unwrap().len(), 2, "no eth");
    // A bridge written but not applied yet reports no `active`.
    let mut pending = SimBridge::new("pve1", "vmbr9");
    pending.active = false;
    sim.add_bridge(pending).unwrap();
    let (_, body) = root
        .call("GET", "/nodes/pve1/network", &[("type", "bridge")])
        .await;
    assert!(body["data"][1].get("active").is_none(), "{body}");
    assert!(sim.add_bridge(SimBridge::new("pve7", "vmbr1")).is_err());

    // Mappings are listed to whoever may audit, use or modify them; `check-node` says when a
    // mapping has no device on a node.
    let (_, all) = root
        .call("GET", "/cluster/mapping/pci", &[("check-node", "pve2")])
        .await;
    assert_eq!(
        all["data"],
        json!([
            {"id": "gpu0", "description": "", "map": ["id=10de:2204,node=pve1,path=0000:01:00.0"],
             "checks": [{"severity": "warning", "message": "No mapping for node pve2."}]},
            {"id": "nic0", "description": "", "map": ["id=10de:2204,node=pve1,path=0000:02:00.0", "id=10de:2204,node=pve2,path=0000:02:00.0"],
             "checks": []},
        ])
    );
    let bob = root.as_token(BOB);
    let (status, seen) = bob.call("GET", "/cluster/mapping/pci", &[]).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = seen["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpu0"]);
    // The network list is open to every user (`user: all`).
    let (status, _) = bob.call("GET", "/nodes/pve1/network", &[]).await;
    assert_eq!(status, 200);

    // A disabled storage and one inactive on a node report no usage; `enabled=1` hides the
    // disabled one.
    sim.set_storage_enabled("local", false).unwrap();
    sim.set_storage_active("pve2", "local-lvm", false).unwrap();
    let (_, storages) = root.call("GET", "/nodes/pve2/storage", &[]).await;
    let state: Vec<(String, u64, u64, bool)> = storages["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["storage"].as_str().unwrap().to_string(),
                s["enabled"].as_u64().unwrap(),
                s["active"].as_u64().unwrap(),
                s.get("avail").is_some(),
            )
        })
        .collect();
    assert_eq!(
        state,
        [
            ("local".to_string(), 0, 0, false),
            ("local-lvm".to_string(), 1, 0, false),
            ("shared".to_string(), 1, 1, true),
        ]
    );
    let (_, enabled) = root
        .call("GET", "/nodes/pve1/storage", &[("enabled", "1")])
        .await;
    assert_eq!(enabled["data"].as_array().unwrap().len(), 2);
    assert!(sim.set_storage_enabled("nope", false).is_err());
    sim.set_storage_enabled("local", true).unwrap();
    let (_, storages) = root.call("GET", "/nodes/pve1/storage", &[]).await;
    assert_eq!(storages["data"][0]["active"], 1);

    // Storages can be added (or replaced) by id.
    sim.add_storage(proxfleet::sim::SimStorage {
        id: "vg0".into(),
        kind: "lvm".into(),
        content: vec!["images".into()],
        shared: false,
        total: 200 << 30,
    });
    let (_, vg0) = root
        .call("GET", "/nodes/pve1/storage", &[("storage", "vg0")])
        .await;
    assert_eq!(
        (
            vg0["data"][0]["type"].as_str(),
            vg0["data"][0]["avail"].as_u64()
        ),
        (Some("lvm"), Some(200 << 30))
    );
}

/// qemu-server's `check_hostpci_perm` (API2/Qemu.pm): `root@pam` sets anything; anyone else
/// (root's API tokens too) needs a mapping they may use, a raw `host` is refused even beside
/// one, and one of the two is needed.
#[tokio::test]
async fn pci_passthrough_needs_a_mapping_unless_root_pam_sets_it() {
    use proxfleet::sim::{AclEntry, SimPciMapping};
    let (_sim, root) = Api::start(SimConfig {
        tokens: vec![proxfleet::sim::DEFAULT_TOKEN.to_string(), BOB.to_string()],
        acls: vec![
            AclEntry::parse("/mapping/pci/gpu0:PVEMappingUser:bob@pve").unwrap(),
            AclEntry::parse("/vms/300:PVEVMAdmin:bob@pve").unwrap(),
        ],
        pci_mappings: vec![SimPciMapping::new("gpu0", &[("pve1", "0000:01:00.0")])],
        ..fast()
    })
    .await;
    let bob = root.as_token(BOB);
    let create = |hostpci: &'static str| [("vmid", "300"), ("hostpci0", hostpci)];
    for (hostpci, message) in [
        (
            "0000:01:00.0",
            "only root can set 'hostpci0' config for non-mapped devices\n",
        ),
        (
            "0000:01:00.0,mapping=gpu0",
            "only root can set 'hostpci0' config for non-mapped devices\n",
        ),
        ("pcie=1", "either 'host' or 'mapping' must be set.\n"),
    ] {
        let (status, body) = bob.call("POST", "/nodes/pve1/qemu", &create(hostpci)).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (500, Some(message)),
            "{hostpci}"
        );
    }
    assert_eq!(
        bob.task("POST", "/nodes/pve1/qemu", &create("mapping=gpu0,pcie=1"))
            .await,
        "OK"
    );
    // Only `root@pam` itself: its API token is another user to the check.
    let raw = [("vmid", "301"), ("hostpci0", "0000:01:00.0")];
    let (status, body) = root.call("POST", "/nodes/pve1/qemu", &raw).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            500,
            Some("only root can set 'hostpci0' config for non-mapped devices\n")
        )
    );
}
