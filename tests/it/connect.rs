//! Connection errors name the endpoint and say the likely cause: nothing listening, `https://`
//! to a plain HTTP port and `http://` to a TLS one, an untrusted certificate, a server that is
//! not Proxmox VE, an endpoint without a scheme, an unreadable CA file.

use std::time::Duration;

use proxfleet::pve::{ApiToken, ClientConfig, PveClient};
use proxfleet::sim::{SimConfig, SimHandle};

use super::common::sim_serve_tls;

const TOKEN: &str = "ops@pve!ci=1b6f1c52-0c8e-4d5f-9a3b-7e2d4c6f8a90";

fn client(endpoint: &str, ca_file: Option<std::path::PathBuf>) -> Result<PveClient, String> {
    PveClient::new(ClientConfig {
        endpoint: endpoint.to_string(),
        token: ApiToken::parse(TOKEN).expect("token"),
        insecure: false,
        ca_file,
        timeout: Duration::from_secs(10),
        read_retry: proxfleet::pve::ReadRetry::never(),
    })
    .map_err(|e| e.to_string())
}

async fn version_error(endpoint: &str) -> String {
    let client = client(endpoint, None).expect("client");
    client.version().await.expect_err("must fail").to_string()
}

#[tokio::test]
async fn refused_and_plain_http_errors_name_the_endpoint_and_the_cause() {
    let refused = version_error("http://127.0.0.1:1").await;
    assert!(refused.contains("http://127.0.0.1:1"), "{refused}");
    assert!(refused.contains("nothing listens there"), "{refused}");
    assert!(!refused.contains(TOKEN.split('=').nth(1).unwrap()));

    let sim = SimHandle::start(SimConfig::default()).await.expect("sim");
    let https_to_http = version_error(&sim.endpoint().replace("http://", "https://")).await;
    assert!(
        https_to_http.contains("does not speak TLS there"),
        "{https_to_http}"
    );

    let missing = client("pve1.example.com:8006", None)
        .err()
        .expect("refused");
    assert!(
        missing.contains("has no scheme: write https://pve1.example.com:8006"),
        "{missing}"
    );
    let ca = client("https://pve1:8006", Some("/nonexistent/ca.pem".into()))
        .err()
        .expect("refused");
    assert!(
        ca.contains("cannot read CA file /nonexistent/ca.pem"),
        "{ca}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_proxmox_is_named_as_such() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = axum::Router::new()
        .route(
            "/api2/json/version",
            axum::routing::get(|| async {
                axum::response::Html("<html><body>router login</body></html>")
            }),
        )
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                axum::response::Html("<html>404</html>"),
            )
        });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let endpoint = format!("http://{address}");
    let ok_html = version_error(&endpoint).await;
    assert!(ok_html.contains("answered with an HTML page"), "{ok_html}");
    assert!(
        ok_html.contains("does not look like Proxmox VE's API"),
        "{ok_html}"
    );
    let client = client(&endpoint, None).expect("client");
    let not_found = client.nodes().await.expect_err("404").to_string();
    assert!(
        not_found.contains("HTTP 404") && not_found.contains("HTML page"),
        "{not_found}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_a_tls_port_and_an_untrusted_certificate_say_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = sim_serve_tls(dir.path(), &["--token", TOKEN]);
    let (listen, ca, ready) = (server.listen.clone(), server.ca.clone(), server.ready);
    let plain = if ready {
        Some(version_error(&format!("http://{listen}")).await)
    } else {
        None
    };
    let untrusted = if ready {
        Some(version_error(&format!("https://{listen}")).await)
    } else {
        None
    };
    let trusted = if ready {
        Some(
            client(&format!("https://{listen}"), Some(ca.clone()))
                .expect("client")
                .version()
                .await,
        )
    } else {
        None
    };
    drop(server);
    assert!(ready, "sim serve --tls did not come up");
    let plain = plain.expect("ran");
    assert!(plain.contains(&format!("http://{listen}")), "{plain}");
    assert!(
        plain.contains("may expect TLS there: try https://"),
        "{plain}"
    );
    let untrusted = untrusted.expect("ran");
    assert!(
        untrusted.contains("certificate is not trusted: pass --ca-file"),
        "{untrusted}"
    );
    assert!(
        trusted.expect("ran").is_ok(),
        "with the CA file it connects"
    );
}
