//! The gRPC listener's TLS configuration (rustls, ring) from `auth.tls`.
//! The listener runs the handshake itself (`crate::listener`), so that the
//! handshake timeout covers TLS and the HTTP/2 preface alike.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::SetupError;

/// The gRPC listener's TLS settings from `auth.tls`: its certificate and
/// key, and with `client_ca_file` client certificate verification
/// (required unless `require_client_cert` is false). Offers ALPN `h2`.
pub fn server_tls(
    config: &crate::config::TlsConfig,
) -> Result<Arc<rustls::ServerConfig>, SetupError> {
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            SetupError(format!(
                "auth.tls.{field} {}: cannot read: {e}",
                path.display()
            ))
        })
    };
    let invalid = |field: &str, what: String| SetupError(format!("auth.tls.{field}: {what}"));
    let certs = CertificateDer::pem_slice_iter(&read("cert_file", &config.cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("cert_file", format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("cert_file", "holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("key_file", &config.key_file)?)
        .map_err(|e| invalid("key_file", format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError(format!("TLS protocol versions: {e}")))?;
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read("client_ca_file", ca)?) {
                let cert = cert.map_err(|e| {
                    invalid("client_ca_file", format!("not a PEM certificate: {e}"))
                })?;
                roots
                    .add(cert)
                    .map_err(|e| invalid("client_ca_file", e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if config.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| invalid("client_ca_file", e.to_string()))?,
            )
        }
    };
    let mut tls = builder
        .with_single_cert(certs, key)
        .map_err(|e| invalid("key_file", format!("does not fit cert_file: {e}")))?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(tls))
}
