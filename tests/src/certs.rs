//! Throwaway certificate authorities for the TLS cases, written as PEM files.

use std::path::{Path, PathBuf};

/// A CA and the certificates it signs.
pub struct Ca(rcgen::CertifiedIssuer<'static, rcgen::KeyPair>);

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("CA key");
        Ca(rcgen::CertifiedIssuer::self_signed(params, key).expect("self-signed CA"))
    }

    /// Writes `<stem>.crt` and `<stem>.key` into `dir`: a certificate for
    /// `names` (DNS names, or IP addresses such as "127.0.0.1") and no
    /// Common Name (etcd's gateway refuses client certificates with one).
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("certificate params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        let cert = params.signed_by(&key, &self.0).expect("signing");
        let (c, k) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::create_dir_all(dir).expect("certificate directory");
        std::fs::write(&c, cert.pem()).expect("writing a certificate");
        std::fs::write(&k, key.serialize_pem()).expect("writing a key");
        (c, k)
    }

    /// Writes the CA's own certificate to `<stem>.crt` in `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> PathBuf {
        let path = dir.join(format!("{stem}.crt"));
        std::fs::create_dir_all(dir).expect("certificate directory");
        std::fs::write(&path, self.0.pem()).expect("writing a CA certificate");
        path
    }
}
