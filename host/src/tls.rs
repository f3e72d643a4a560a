//! TLS, and optionally client certificates (mTLS), on the endpoint Traefik
//! polls: `[server] tls_cert_file`, `tls_key_file`, `client_ca_file`.
//!
//! Certificates are rotated by replacing the files: they are checked every
//! few seconds and the next connection uses the new ones, without a
//! restart. A replacement that does not load (half-written, a key that does
//! not match) is refused with an error naming the file, and the previous
//! certificates keep serving: a bad rotation never takes the endpoint down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

/// How often the files are checked for replacement.
const POLL: Duration = Duration::from_secs(2);

/// The files of `[server]` TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these
    /// CAs (PEM); others are refused during the handshake.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up from the files.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct TlsError {
    file: String,
    message: String,
}

impl TlsError {
    fn new(file: &Path, message: impl ToString) -> Self {
        Self {
            file: file.display().to_string(),
            message: message.to_string(),
        }
    }
}

/// The TLS set-up in use, replaced when the files change.
pub struct Tls {
    files: TlsFiles,
    current: ArcSwap<rustls::ServerConfig>,
}

impl Tls {
    /// Loads the files; an error here stops the start-up.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let config = server_config(&files)?;
        Ok(Arc::new(Self {
            files,
            current: ArcSwap::from_pointee(config),
        }))
    }

    /// For one new connection.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Reloads whenever a file changes, until the process ends: a good
    /// replacement goes live for the next connections; a bad one is logged
    /// and the certificates in use stay.
    pub fn watch(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut seen = self.stamps();
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = self.stamps();
                if now == seen {
                    continue;
                }
                seen = now;
                let files = self.files.clone();
                match tokio::task::spawn_blocking(move || server_config(&files)).await {
                    Ok(Ok(config)) => {
                        self.current.store(Arc::new(config));
                        tracing::info!("TLS certificates reloaded");
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "TLS certificates not reloaded; the previous ones stay in use")
                    }
                    Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
                }
            }
        })
    }

    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        let files = [
            Some(&self.files.cert),
            Some(&self.files.key),
            self.files.client_ca.as_ref(),
        ];
        files
            .into_iter()
            .flatten()
            .map(|f| {
                std::fs::metadata(f)
                    .ok()
                    .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
            })
            .collect()
    }
}

/// The rustls server configuration from the files.
fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| TlsError::new(&files.key, format!("no private key: {e}")))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new(&files.cert, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::new(ca, format!("not a CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::new(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::new(&files.key, format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read(file: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|e| TlsError::new(file, format!("cannot read: {e}")))
}

fn certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(file, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::new(file, "holds no certificate"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    //! A real server on loopback, real TLS clients: with and without
    //! client certificates, and certificates rotated under a running server.

    use super::*;
    use crate::engine::Generated;
    use crate::metrics::Metrics;
    use crate::publish::{Publisher, Snapshot};
    use crate::server::{AppState, serve};
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    /// A CA, and certificates it signs.
    struct Ca(CertifiedIssuer<'static, KeyPair>);

    impl Ca {
        fn new(name: &str) -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
        }

        fn pem(&self) -> String {
            self.0.pem()
        }

        /// (certificate PEM, key PEM) for `name`.
        fn issue(&self, name: &str) -> (String, String) {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .signed_by(&key, &self.0)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        }
    }

    struct Server {
        addr: std::net::SocketAddr,
        metrics: Arc<Metrics>,
        stop: tokio_util::sync::CancellationToken,
    }

    async fn start(files: TlsFiles) -> Server {
        let tls = Tls::load(files).unwrap();
        tls.clone().watch();
        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(AppState {
            publisher: Arc::new(Publisher::new(Duration::from_secs(30))),
            metrics: metrics.clone(),
            config_path: "/traefik".into(),
            token: None,
        });
        state.publisher.publish(Snapshot::new(
            Arc::default(),
            Generated::of_config("{}"),
            None,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(serve(
            listener,
            state,
            crate::server::Limits {
                request_timeout: Duration::from_secs(5),
                ..Default::default()
            },
            Some(tls),
            stop.clone().cancelled_owned(),
            Duration::from_secs(1),
        ));
        Server {
            addr,
            metrics,
            stop,
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        // Replaced as a rotation tool does: a new file renamed over the old.
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// GET /traefik as `localhost`, trusting only `ca`, with `identity`.
    async fn get(
        addr: std::net::SocketAddr,
        ca: &str,
        identity: Option<(&str, &str)>,
    ) -> Result<u16, String> {
        let mut client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
            .resolve("localhost", addr)
            .timeout(Duration::from_secs(5));
        if let Some((cert, key)) = identity {
            client = client
                .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
        }
        let client = client.build().unwrap();
        client
            .get(format!("https://localhost:{}/traefik", addr.port()))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e:?}"))
    }

    #[tokio::test]
    async fn https_only_and_certificates_rotate_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (ca1, ca2) = (Ca::new("ca one"), Ca::new("ca two"));
        let (cert, key) = ca1.issue("localhost");
        let files = TlsFiles {
            cert: write(dir.path(), "tls.crt", &cert),
            key: write(dir.path(), "tls.key", &key),
            client_ca: None,
        };
        let server = start(files).await;
        assert_eq!(get(server.addr, &ca1.pem(), None).await, Ok(200));
        let plain = reqwest::get(format!("http://{}/traefik", server.addr)).await;
        assert!(plain.is_err(), "plain HTTP answered: {plain:?}");

        // A broken replacement is refused; the certificate in use stays.
        write(
            dir.path(),
            "tls.crt",
            "-----BEGIN CERTIFICATE-----\nnot base64\n",
        );
        tokio::time::sleep(POLL * 2).await;
        assert_eq!(get(server.addr, &ca1.pem(), None).await, Ok(200));

        // A good one goes live for new connections.
        let (cert, key) = ca2.issue("localhost");
        write(dir.path(), "tls.key", &key);
        write(dir.path(), "tls.crt", &cert);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while get(server.addr, &ca2.pem(), None).await != Ok(200) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the new certificate never went live"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(get(server.addr, &ca1.pem(), None).await.is_err());
        server.stop.cancel();
    }

    #[tokio::test]
    async fn client_certificates_of_the_configured_ca_only() {
        let dir = tempfile::tempdir().unwrap();
        let (server_ca, client_ca, other_ca) =
            (Ca::new("server"), Ca::new("clients"), Ca::new("other"));
        let (cert, key) = server_ca.issue("localhost");
        let files = TlsFiles {
            cert: write(dir.path(), "tls.crt", &cert),
            key: write(dir.path(), "tls.key", &key),
            client_ca: Some(write(dir.path(), "clients.crt", &client_ca.pem())),
        };
        let server = start(files).await;
        let (good_cert, good_key) = client_ca.issue("traefik");
        let (bad_cert, bad_key) = other_ca.issue("traefik");
        assert_eq!(
            get(server.addr, &server_ca.pem(), Some((&good_cert, &good_key))).await,
            Ok(200)
        );
        let none = get(server.addr, &server_ca.pem(), None).await;
        assert!(none.is_err(), "no client certificate: {none:?}");
        let other = get(server.addr, &server_ca.pem(), Some((&bad_cert, &bad_key))).await;
        assert!(other.is_err(), "a certificate of another CA: {other:?}");
        let refused = server.metrics.tls_handshake_failures.get();
        assert!(refused >= 2, "refused handshakes counted: {refused}");
        server.stop.cancel();
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("ca");
        let (cert, key) = ca.issue("localhost");
        let (_, other_key) = ca.issue("elsewhere");
        let cert = write(dir.path(), "tls.crt", &cert);
        let files = |cert: &Path, key: &Path, ca: Option<&Path>| TlsFiles {
            cert: cert.into(),
            key: key.into(),
            client_ca: ca.map(Into::into),
        };
        let missing = dir.path().join("missing.key");
        let e = Tls::load(files(&cert, &missing, None))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("missing.key") && e.contains("cannot read"),
            "{e}"
        );
        let wrong = write(dir.path(), "wrong.key", &other_key);
        let e = Tls::load(files(&cert, &wrong, None))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("wrong.key") && e.contains("does not fit"), "{e}");
        let key = write(dir.path(), "tls.key", &key);
        let empty = write(dir.path(), "empty.crt", "");
        let e = Tls::load(files(&cert, &key, Some(&empty)))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("empty.crt") && e.contains("no certificate"),
            "{e}"
        );
        assert!(Tls::load(files(&cert, &key, None)).is_ok());
    }
}
