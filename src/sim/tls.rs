//! HTTPS for the simulator, as pveproxy serves it: a self-signed certificate made at start
//! (for `localhost`, `127.0.0.1` and `::1`) whose PEM is handed out so clients can verify it
//! (`--ca-file` for proxfleet, `verify=` for proxmoxer, `validate_certs`/`ca_path` for Ansible),
//! and the acceptor that sets `TCP_NODELAY` on every accepted connection before its handshake:
//! without it a new connection's small TLS records wait out the peer's delayed ACK (about 40 ms
//! on Linux), which made every request on a fresh connection that much slower.

use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsAcceptor;

use super::SimError;

/// A certificate and its key, PEM-encoded.
pub(crate) struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Make a self-signed certificate for the loopback names.
pub(crate) fn self_signed() -> Result<SelfSigned, SimError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|err| SimError::Tls(err.to_string()))?;
    Ok(SelfSigned {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    })
}

/// rustls configuration for serving `certificate`, with the ring crypto provider.
pub(crate) async fn server_config(
    certificate: &SelfSigned,
) -> Result<axum_server::tls_rustls::RustlsConfig, SimError> {
    // The process-wide provider may already be set (by another simulator or client): fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem(
        certificate.cert_pem.clone().into_bytes(),
        certificate.key_pem.clone().into_bytes(),
    )
    .await
    .map_err(|err| SimError::Tls(err.to_string()))
}

/// The TLS acceptor `sim serve --tls` serves with: `TCP_NODELAY` on the accepted socket, then
/// rustls' handshake.
pub(crate) fn acceptor(
    config: axum_server::tls_rustls::RustlsConfig,
) -> RustlsAcceptor<NoDelayAcceptor> {
    RustlsAcceptor::new(config).acceptor(NoDelayAcceptor::new())
}

#[cfg(test)]
mod tests {
    use axum_server::accept::Accept;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay_set() {
        let certificate = self_signed().unwrap();
        let acceptor = acceptor(server_config(&certificate).await.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // A client that completes the handshake (and then gets no answer: fine).
        let client = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap();
            let _ = http.get(format!("https://{address}/")).send().await;
        });
        let (stream, _) = listener.accept().await.unwrap();
        assert!(!stream.nodelay().unwrap(), "a fresh socket has Nagle on");
        let (tls, _service) = acceptor.accept(stream, ()).await.unwrap();
        assert!(tls.get_ref().0.nodelay().unwrap());
        drop(tls);
        client.abort();
    }
}
