//! TLS for pgdrill's own connections, following libpq's `sslmode`:
//! `disable` → plain; `allow`/`prefer` (the default) → TLS when the server offers it, no
//! certificate check (as libpq); `require` → TLS, no certificate check unless `sslrootcert`
//! is given (then as `verify-ca`); `verify-ca` → chain checked, host name not;
//! `verify-full` → chain and host name checked. Roots: Mozilla's (webpki-roots) plus
//! `sslrootcert`. `pg_dump`/`pg_restore` get the same `sslmode` through `PGSSLMODE`.

use crate::conninfo::ConnSpec;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore,
    SignatureScheme,
};
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How one connection does TLS.
pub enum Tls {
    Off,
    On(SslMode, MakeRustlsConnect),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    None,
    Chain,
    Full,
}

/// The TLS setup `spec` asks for; errors name the bad setting.
pub fn for_spec(spec: &ConnSpec) -> Result<Tls, String> {
    let mode = spec.param("sslmode").unwrap_or("prefer");
    let rootcert = spec.param("sslrootcert");
    let (ssl_mode, check) = match mode {
        "disable" => return Ok(Tls::Off),
        "allow" | "prefer" => (SslMode::Prefer, Check::None),
        "require" if rootcert.is_some() => (SslMode::Require, Check::Chain),
        "require" => (SslMode::Require, Check::None),
        "verify-ca" => (SslMode::Require, Check::Chain),
        "verify-full" => (SslMode::Require, Check::Full),
        other => {
            return Err(format!(
            "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
        ))
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let config = if check == Check::None {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = rootcert {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read sslrootcert {path}: {e}"))?;
            for c in certs {
                let c = c.map_err(|e| format!("cannot read sslrootcert {path}: {e}"))?;
                roots.add(c).map_err(|e| {
                    format!("sslrootcert {path} holds an unusable certificate: {e}")
                })?;
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("cannot set up certificate verification: {e}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly {
                inner: webpki,
                check_name: check == Check::Full,
            }))
            .with_no_client_auth()
    };
    Ok(Tls::On(ssl_mode, MakeRustlsConnect::new(config)))
}

/// libpq's `prefer`/`require`: encrypt, do not authenticate the server.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (chain only) and `verify-full` (chain and host name).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        inter: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self.inner.verify_server_cert(end, inter, name, ocsp, now) {
            Err(TlsError::InvalidCertificate(CertificateError::NotValidForName))
                if !self.check_name =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(TlsError::InvalidCertificate(CertificateError::NotValidForNameContext {
                ..
            })) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmodes_map_like_libpq() {
        let t = |url: &str| for_spec(&ConnSpec::parse_with_env(url, &[]).expect("spec"));
        assert!(matches!(
            t("postgres://u@h/d?sslmode=disable"),
            Ok(Tls::Off)
        ));
        assert!(matches!(
            t("postgres://u@h/d"),
            Ok(Tls::On(SslMode::Prefer, _))
        ));
        assert!(matches!(
            t("postgres://u@h/d?sslmode=require"),
            Ok(Tls::On(SslMode::Require, _))
        ));
        assert!(matches!(
            t("postgres://u@h/d?sslmode=verify-full"),
            Ok(Tls::On(SslMode::Require, _))
        ));
        assert!(t("postgres://u@h/d?sslmode=bogus").is_err());
        assert!(t("postgres://u@h/d?sslmode=verify-ca&sslrootcert=/nonexistent.pem").is_err());
    }
}
