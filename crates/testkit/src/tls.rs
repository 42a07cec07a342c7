//! Certificates for test servers (slapd, PostgreSQL): a CA of their own and a server
//! certificate for `localhost` and `127.0.0.1` signed by it, plus an unrelated CA (to show a
//! client refuses a server its trusted CA did not sign).

use std::path::Path;

/// Writes `ca.pem`, `other-ca.pem`, `server.pem` and `server.key` into `dir`.
pub fn write_ca_and_server(dir: &Path) {
    let ca = |name: &str| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        (cert, key)
    };
    let (ca_cert, ca_key) = ca("Portcullis test CA");
    let (other, _) = ca("Some other CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("server certificate");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("ca");
    std::fs::write(dir.join("other-ca.pem"), other.pem()).expect("other ca");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("cert");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("key");
}
