//! TLS when the URL asks for it, through rustls (ring provider), with
//! libpq's `sslmode` meanings:
//!
//! | sslmode | TLS | certificate check |
//! |---|---|---|
//! | `disable` | never | |
//! | `prefer` (default) | if the server offers it | none (encryption only, as libpq) |
//! | `require` | always | none (encryption only, as libpq) |
//! | `verify-ca` | always | chain to `sslrootcert` |
//! | `verify-full` | always | chain to `sslrootcert` and host name |
//!
//! tokio-postgres itself knows only disable/prefer/require and no
//! `sslrootcert`, so [`split_tls_params`] takes those out of the URL first.

use std::sync::Arc;

use runstore_core::{Error, Result};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Nothing: encryption only (`prefer`, `require`).
    None,
    /// The chain to the root certificate (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// The URL as tokio-postgres can read it, what to verify, and the root
/// certificate file.
#[derive(Debug)]
pub(crate) struct TlsParams {
    pub url: String,
    pub verify: Verify,
    pub root_cert: Option<String>,
}

fn verify_of(mode: &str) -> Option<Verify> {
    match mode {
        "verify-ca" => Some(Verify::Chain),
        "verify-full" => Some(Verify::Full),
        _ => None,
    }
}

/// Takes `sslrootcert` out of a URL or key/value string and turns
/// `sslmode=verify-ca|verify-full` into `require` plus a [`Verify`] level.
pub(crate) fn split_tls_params(url: &str) -> TlsParams {
    let mut verify = Verify::None;
    let mut root_cert = None;
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else {
            return TlsParams {
                url: url.to_string(),
                verify,
                root_cert,
            };
        };
        let mut kept = Vec::new();
        for param in query.split('&') {
            match param.split_once('=') {
                Some(("sslrootcert", v)) => root_cert = Some(percent_decode(v)),
                Some(("sslmode", v)) if verify_of(v).is_some() => {
                    verify = verify_of(v).unwrap_or(Verify::None);
                    kept.push("sslmode=require".to_string());
                }
                _ => kept.push(param.to_string()),
            }
        }
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return TlsParams {
            url,
            verify,
            root_cert,
        };
    }
    let mut kept = Vec::new();
    for (key, raw, value) in key_values(url) {
        match key.as_str() {
            "sslrootcert" => root_cert = Some(value),
            "sslmode" if verify_of(&value).is_some() => {
                verify = verify_of(&value).unwrap_or(Verify::None);
                kept.push("sslmode=require".to_string());
            }
            _ => kept.push(raw),
        }
    }
    TlsParams {
        url: kept.join(" "),
        verify,
        root_cert,
    }
}

/// Splits a key/value connection string into `(key, raw text, value)`,
/// values optionally single-quoted with backslash escapes.
fn key_values(s: &str) -> Vec<(String, String, String)> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = i;
        let mut key = String::new();
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            key.push(chars[i]);
            i += 1;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i < chars.len() && chars[i] == '=' {
            i += 1;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
        }
        let raw: String = chars[start..i.min(chars.len())].iter().collect();
        out.push((key, raw, value));
    }
    out
}

/// Decodes `%XX` escapes of a URL query value.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rustls connector for these settings.
///
/// # Errors
/// [`Error::InvalidInput`] on `url` for `verify-ca`/`verify-full` without a
/// readable `sslrootcert` PEM file.
pub(crate) fn connector(params: &TlsParams) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::backend("setting up TLS", Some(Box::new(e))))?;
    let config = match params.verify {
        Verify::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed {
                provider,
                chain: None,
            }))
            .with_no_client_auth(),
        Verify::Chain | Verify::Full => {
            let webpki = webpki_verifier(params, provider.clone())?;
            if params.verify == Verify::Full {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Relaxed {
                        provider,
                        chain: Some(webpki),
                    }))
                    .with_no_client_auth()
            }
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn webpki_verifier(
    params: &TlsParams,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>> {
    let Some(path) = &params.root_cert else {
        return Err(Error::invalid(
            "url",
            "sslmode=verify-ca and verify-full need sslrootcert=<PEM file of the root certificate>",
        ));
    };
    let bad = |e: String| Error::invalid("url", format!("sslrootcert {path:?}: {e}"));
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// libpq's `require` (`chain` is `None`: encrypt, accept any certificate)
/// and `verify-ca` (the chain must lead to the root, the name may differ;
/// webpki checks the chain before the name). Handshake signatures are
/// always checked, so the session is bound to the presented key.
#[derive(Debug)]
struct Relaxed {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tls_params_from_both_url_forms() {
        let p = split_tls_params(
            "postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&x=1",
        );
        assert_eq!(p.url, "postgres://u:pw@h/db?sslmode=require&x=1");
        assert_eq!(
            (p.verify, p.root_cert.as_deref()),
            (Verify::Full, Some("/tmp/ca.pem"))
        );
        let p = split_tls_params("postgres://h/db?sslmode=require");
        assert_eq!(
            (p.url.as_str(), p.verify),
            ("postgres://h/db?sslmode=require", Verify::None)
        );
        let p =
            split_tls_params("host=h sslmode=verify-ca sslrootcert='/a b/ca.pem' password='x y'");
        assert_eq!(p.url, "host=h sslmode=require password='x y'");
        assert_eq!(
            (p.verify, p.root_cert.as_deref()),
            (Verify::Chain, Some("/a b/ca.pem"))
        );
        let p = split_tls_params("postgres://h/db?sslrootcert=ca.pem");
        assert_eq!(p.url, "postgres://h/db");
    }

    #[test]
    fn verify_modes_need_a_root_certificate() {
        let p = split_tls_params("postgres://h/db?sslmode=verify-full");
        let err = connector(&p).err().map(|e| e.kind());
        assert_eq!(err, Some(runstore_core::ErrorKind::InvalidInput));
        let p =
            split_tls_params("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem");
        assert_eq!(
            connector(&p).err().map(|e| e.kind()),
            Some(runstore_core::ErrorKind::InvalidInput)
        );
        assert!(connector(&split_tls_params("postgres://h/db?sslmode=require")).is_ok());
    }
}
