//! TLS on the client port (`tls-port`), with rustls and its `ring`
//! provider: the certificate chain and key from PEM files, and optionally
//! client certificates checked against a CA (`tls-auth-clients`).
//!
//! Everything is read and checked once at start, so a missing or bad file
//! stops the server with a message naming the option instead of failing the
//! first client.

use std::sync::Arc;

use tokio_rustls::{
    rustls::{
        self,
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
        server::WebPkiClientVerifier,
        RootCertStore, ServerConfig,
    },
    TlsAcceptor,
};

use crate::config::{Config, TlsAuthClients};

/// The acceptor for `tls-port`, or `None` when TLS is off.
pub fn acceptor(config: &Config) -> Result<Option<TlsAcceptor>, String> {
    if config.tls_port == 0 {
        return Ok(None);
    }
    let chain = certificates("tls-cert-file", &config.tls_cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&config.tls_key_file).map_err(|e| {
        format!(
            "bad value for option 'tls-key-file': cannot read a PEM private key from '{}': {e}",
            config.tls_key_file
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match config.tls_auth_clients {
        TlsAuthClients::No => builder.with_no_client_auth(),
        auth => {
            let mut roots = RootCertStore::empty();
            for ca in certificates("tls-ca-cert-file", &config.tls_ca_cert_file)? {
                roots.add(ca).map_err(|e| {
                    format!("bad value for option 'tls-ca-cert-file': unusable CA certificate: {e}")
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == TlsAuthClients::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("bad value for option 'tls-ca-cert-file': {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let server = builder.with_single_cert(chain, key).map_err(|e| {
        format!("bad value for option 'tls-key-file': it does not fit tls-cert-file: {e}")
    })?;
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// Every certificate of a PEM file; at least one.
fn certificates(option: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |why: String| format!("bad value for option '{option}': {why}");
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("cannot read '{path}': {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("'{path}' is not PEM certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(bad(format!("no certificate in '{path}'")));
    }
    Ok(certificates)
}
