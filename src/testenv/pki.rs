//! A throw-away certificate authority for the test environment: serving certificates for
//! the kube-apiservers and the HTTPS git server, client certificates for their users.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The test CA. Everything it signs is trusted only by the test environment.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    #[must_use]
    pub fn new(common_name: &str) -> Self {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("generate CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for loopback: IP SANs 127.0.0.1 and ::1, DNS `localhost`.
    #[must_use]
    pub fn loopback_server(&self, common_name: &str) -> CertPair {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("SAN");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(&params)
    }

    /// A client certificate; Kubernetes reads the user from CN and the group from O.
    #[must_use]
    pub fn client(&self, user: &str, group: Option<&str>) -> CertPair {
        self.sign(&client_params(user, group))
    }

    /// A client certificate that expired on 2021-01-01: what a leaf's kubeconfig holds when
    /// nobody rotated it in time.
    #[must_use]
    pub fn expired_client(&self, user: &str, group: Option<&str>) -> CertPair {
        let mut params = client_params(user, group);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.sign(&params)
    }

    fn sign(&self, params: &CertificateParams) -> CertPair {
        let key = KeyPair::generate().expect("generate key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign certificate");
        CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn client_params(user: &str, group: Option<&str>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, user);
    if let Some(group) = group {
        params
            .distinguished_name
            .push(DnType::OrganizationName, group);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// A fresh key pair as (private PKCS#8 PEM, public PEM), e.g. for service-account tokens.
#[must_use]
pub fn key_pair_pem() -> (String, String) {
    let key = KeyPair::generate().expect("generate key");
    (key.serialize_pem(), key.public_key_pem())
}
