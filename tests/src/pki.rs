//! Certificates for mTLS tests, generated at test time: a CA, a server
//! certificate for `localhost` / `127.0.0.1`, and client certificates with
//! a chosen subject CN, all as PEM files in a directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key on disk.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA with a server certificate and one client certificate.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (PEM): clients trust it for the server, and the
    /// server trusts it for client certificates.
    pub ca: PathBuf,
    pub server: CertFiles,
    /// A client certificate with the CN given to [`TestPki::generate`].
    pub client: CertFiles,
    /// A client certificate for the same CN from another, untrusted CA.
    pub stranger: CertFiles,
}

fn write(dir: &Path, name: &str, cert: &rcgen::Certificate, key: &KeyPair) -> CertFiles {
    let files = CertFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.cert, cert.pem()).expect("writing a certificate");
    std::fs::write(&files.key, key.serialize_pem()).expect("writing a key");
    files
}

fn ca(cn: &str) -> (CertificateParams, KeyPair, rcgen::Certificate) {
    let key = KeyPair::generate().expect("generating a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-signing the CA");
    (params, key, cert)
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    sans: Vec<String>,
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("generating a key");
    let mut params = CertificateParams::new(sans).expect("certificate params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params
        .signed_by(&key, issuer)
        .expect("signing a certificate");
    (cert, key)
}

impl TestPki {
    /// Generates everything into `dir`; the client certificate's CN is
    /// `client_cn`.
    pub fn generate(dir: &Path, client_cn: &str) -> Self {
        std::fs::create_dir_all(dir).expect("creating the PKI directory");
        let (params, key, ca_cert) = ca("Prism test CA");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca_cert.pem()).expect("writing the CA");
        let issuer = Issuer::new(params, key);
        let (cert, key) = leaf(
            &issuer,
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let server = write(dir, "server", &cert, &key);
        let (cert, key) = leaf(
            &issuer,
            vec![],
            client_cn,
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let client = write(dir, "client", &cert, &key);
        let (params, key, _) = ca("Untrusted CA");
        let other = Issuer::new(params, key);
        let (cert, key) = leaf(
            &other,
            vec![],
            client_cn,
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let stranger = write(dir, "stranger", &cert, &key);
        TestPki {
            ca: ca_path,
            server,
            client,
            stranger,
        }
    }
}
