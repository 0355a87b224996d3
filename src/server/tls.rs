//! TLS: the gate's own certificate (rustls, TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`) and the trust roots for `https://` upstreams.
//!
//! The server certificate lives behind an [`arc_swap::ArcSwap`] that the
//! handshake reads: a reload swaps in a new certificate for new handshakes
//! while established connections keep theirs, so nothing is dropped.
//!
//! Upstream roots are Mozilla's, compiled in (`webpki-roots`) rather than
//! read from the system: the gate ships as a static binary on minimal
//! images that have no CA bundle, and the result must not depend on the
//! host. `upstream.ca_file` adds a private CA. There is no switch to skip
//! verification.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate, key or CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// The file could not be read or holds no usable PEM item.
    #[error("{path}: {reason}")]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("{key} does not match the certificate in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The crypto provider every TLS configuration here uses: ring by default
/// (small, builds with a C compiler alone), aws-lc-rs with the `aws-lc-rs`
/// feature (docs/benchmarks.md compares the two).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto_provider())
}

/// The provider itself, for the process-wide default the revocation
/// store's client reads ([`crate::ops::store`]).
pub(crate) fn crypto_provider() -> CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    return rustls::crypto::ring::default_provider();
}

/// Load a certificate chain and its private key, checking they match.
pub(crate) fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let file_error = |path: &Path, reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, format!("invalid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(file_error(cert, "no certificate found".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_error(key, format!("cannot read a private key: {e}")))?;
    CertifiedKey::from_der(chain, private, &provider())
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            other => file_error(key, format!("unusable key: {other}")),
        })
        .map(Arc::new)
}

/// Load the certificates of a CA file (PEM, one or more).
pub(crate) fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            reason: format!("cannot read certificates: {e}"),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            reason: format!("invalid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: path.to_path_buf(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// The server certificate in use, swappable while connections run.
#[derive(Debug)]
pub(crate) struct CertStore {
    /// Read at each handshake; replaced whole on reload.
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    /// A store holding `key`.
    pub(crate) fn new(key: Arc<CertifiedKey>) -> CertStore {
        CertStore {
            current: ArcSwap::new(key),
        }
    }

    /// Use `key` for every handshake from now on.
    pub(crate) fn replace(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls server configuration: TLS 1.2 and 1.3 only, ALPN `h2` then
/// `http/1.1`, certificates from `store`.
pub(crate) fn server_config(
    store: Arc<CertStore>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client configuration for `https://` upstreams: Mozilla's roots plus
/// `extra` (a private CA), TLS 1.2 and 1.3.
pub(crate) fn upstream_client_config(
    extra: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        roots.add(cert.clone())?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
