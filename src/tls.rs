//! TLS configuration shared by the adapters: certificates and keys loaded once here, in the
//! composition root, and handed to the HTTP server and the DICOM TLS listener as rustls
//! `ServerConfig`s, and to the audit forwarder (syslog over TLS) as a `ClientConfig`.
//!
//! All follow BCP 195 (RFC 9325) through rustls's safe defaults: TLS 1.2 and 1.3 only,
//! ECDHE key exchange, AEAD suites only (AES-GCM, ChaCha20-Poly1305); no renegotiation, no
//! compression. That is also what DICOM's BCP 195 TLS profiles (PS3.15 B.9–B.11) ask.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// A server configuration from a PEM certificate chain and a PEM private key, with
/// rustls's safe defaults (TLS 1.2 and 1.3 with AEAD suites only, as BCP 195 asks).
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    build(cert, key, None)
}

/// The DICOM TLS listener's configuration: [`server_config`], and when `client_ca` (a PEM
/// bundle of CA certificates) is given, client certificates are requested and verified
/// against it. A client without a certificate still completes the handshake (AE titles
/// that require one are refused after their A-ASSOCIATE-RQ, where we know the AE title);
/// a client presenting a certificate that does not verify fails the handshake.
pub fn dicom_server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    build(cert, key, client_ca)
}

fn build(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = read_certificates(cert, "certificate")?;
    let key = load_key(key)?;
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in read_certificates(path, "client CA")? {
                roots.add(ca).with_context(|| {
                    format!(
                        "{} holds a certificate that cannot be a trust anchor",
                        path.display()
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .with_context(|| {
                    format!(
                        "cannot verify client certificates with the CAs of {}",
                        path.display()
                    )
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .context("the certificate and the private key do not go together")?;
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file; at least one.
fn read_certificates(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)",
        path.display()
    );
    Ok(certs)
}

/// A client configuration that trusts only the CA certificates of `ca` (PEM; not the
/// system's store: an audit repository is a known node, vouched for by the region's own
/// CA) and, with `client`, presents that certificate chain and key (ATNA node
/// authentication). Same protocol versions and suites as the server.
pub fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(ca, "CA")? {
        roots.add(cert).with_context(|| {
            format!(
                "{} holds a certificate that is not a usable CA",
                ca.display()
            )
        })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                read_certificates(cert, "client certificate")?,
                load_key(key)?,
            )
            .with_context(|| {
                format!(
                    "the client certificate {} and the private key {} do not go together",
                    cert.display(),
                    key.display()
                )
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The private key of a PEM file. Its content never reaches a message.
fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| {
        format!(
            "cannot read a PEM private key from {} (expected a -----BEGIN PRIVATE KEY----- \
             block, unencrypted)",
            path.display()
        )
    })
}
