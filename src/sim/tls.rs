//! HTTPS for the simulator, as pveproxy serves it: a self-signed certificate made at start
//! (for `localhost`, `127.0.0.1` and `::1`) whose PEM is handed out so clients can verify it
//! (`--ca-file` for proxfleet, `verify=` for proxmoxer, `validate_certs`/`ca_path` for Ansible).

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
