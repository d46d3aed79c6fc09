//! Test certificate authorities and server certificates, made with OpenSSL.

use std::net::IpAddr;
use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};

use crate::{Result, TestkitError};

fn tls_err(e: openssl::error::ErrorStack) -> TestkitError {
    TestkitError::Io {
        what: "cannot make a test certificate",
        path: "openssl".into(),
        source: std::io::Error::other(e),
    }
}

fn new_key() -> Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(tls_err)?;
    PKey::from_ec_key(EcKey::generate(&group).map_err(tls_err)?).map_err(tls_err)
}

fn serial() -> Result<openssl::asn1::Asn1Integer> {
    let mut bn = BigNum::new().map_err(tls_err)?;
    bn.rand(64, MsbOption::MAYBE_ZERO, false).map_err(tls_err)?;
    bn.to_asn1_integer().map_err(tls_err)
}

/// A self-signed certificate authority for one test.
pub struct TestCa {
    key: PKey<Private>,
    cert: X509,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate and its private key, in PEM.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: Vec<u8>,
    /// The private key.
    pub key_pem: Vec<u8>,
}

impl TestCa {
    /// A new CA whose subject's common name is `name`, valid for a day.
    ///
    /// # Errors
    /// When OpenSSL fails.
    pub fn new(name: &str) -> Result<TestCa> {
        let key = new_key()?;
        let mut subject = X509NameBuilder::new().map_err(tls_err)?;
        subject.append_entry_by_nid(Nid::COMMONNAME, name).map_err(tls_err)?;
        let subject = subject.build();
        let mut b = X509::builder().map_err(tls_err)?;
        b.set_version(2).map_err(tls_err)?;
        let serial = serial()?;
        b.set_serial_number(&serial).map_err(tls_err)?;
        b.set_subject_name(&subject).map_err(tls_err)?;
        b.set_issuer_name(&subject).map_err(tls_err)?;
        b.set_pubkey(&key).map_err(tls_err)?;
        let (not_before, not_after) =
            (Asn1Time::days_from_now(0).map_err(tls_err)?, Asn1Time::days_from_now(1).map_err(tls_err)?);
        b.set_not_before(&not_before).map_err(tls_err)?;
        b.set_not_after(&not_after).map_err(tls_err)?;
        b.append_extension(BasicConstraints::new().critical().ca().build().map_err(tls_err)?).map_err(tls_err)?;
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().map_err(tls_err)?)
            .map_err(tls_err)?;
        b.sign(&key, MessageDigest::sha256()).map_err(tls_err)?;
        Ok(TestCa { key, cert: b.build() })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> Vec<u8> {
        // Encoding a certificate we just built cannot fail.
        self.cert.to_pem().unwrap_or_default()
    }

    /// Writes the CA certificate to `path`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_cert(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.cert_pem()).map_err(|source| TestkitError::Io {
            what: "cannot write",
            path: path.into(),
            source,
        })
    }

    /// A server certificate for `dns_names` and `ips`, signed by this CA.
    ///
    /// # Errors
    /// When OpenSSL fails.
    pub fn issue_server(&self, dns_names: &[&str], ips: &[IpAddr]) -> Result<IssuedCert> {
        self.issue(dns_names.first().copied().unwrap_or("server"), dns_names, ips, true)
    }

    /// A certificate for a cluster node, which presents it both as a server (to peers that
    /// connect) and as a client (when it connects): both key usages, for `dns_names` and `ips`.
    ///
    /// # Errors
    /// When OpenSSL fails.
    pub fn issue_node(&self, name: &str, dns_names: &[&str], ips: &[IpAddr]) -> Result<IssuedCert> {
        self.issue_with(name, dns_names, ips, (true, true))
    }

    /// A client certificate whose common name is `user`, signed by this CA.
    ///
    /// # Errors
    /// When OpenSSL fails.
    pub fn issue_client(&self, user: &str) -> Result<IssuedCert> {
        self.issue(user, &[], &[], false)
    }

    fn issue(&self, cn: &str, dns_names: &[&str], ips: &[IpAddr], server: bool) -> Result<IssuedCert> {
        self.issue_with(cn, dns_names, ips, (server, !server))
    }

    fn issue_with(
        &self,
        cn: &str,
        dns_names: &[&str],
        ips: &[IpAddr],
        (server, client): (bool, bool),
    ) -> Result<IssuedCert> {
        let key = new_key()?;
        let mut subject = X509NameBuilder::new().map_err(tls_err)?;
        subject.append_entry_by_nid(Nid::COMMONNAME, cn).map_err(tls_err)?;
        let mut b = X509::builder().map_err(tls_err)?;
        b.set_version(2).map_err(tls_err)?;
        let serial = serial()?;
        b.set_serial_number(&serial).map_err(tls_err)?;
        b.set_subject_name(&subject.build()).map_err(tls_err)?;
        b.set_issuer_name(self.cert.subject_name()).map_err(tls_err)?;
        b.set_pubkey(&key).map_err(tls_err)?;
        let (not_before, not_after) =
            (Asn1Time::days_from_now(0).map_err(tls_err)?, Asn1Time::days_from_now(1).map_err(tls_err)?);
        b.set_not_before(&not_before).map_err(tls_err)?;
        b.set_not_after(&not_after).map_err(tls_err)?;
        b.append_extension(BasicConstraints::new().build().map_err(tls_err)?).map_err(tls_err)?;
        let mut usage = ExtendedKeyUsage::new();
        if server {
            usage.server_auth();
        }
        if client {
            usage.client_auth();
        }
        let usage = usage.build();
        b.append_extension(usage.map_err(tls_err)?).map_err(tls_err)?;
        if server {
            let mut san = SubjectAlternativeName::new();
            for d in dns_names {
                san.dns(d);
            }
            for ip in ips {
                san.ip(&ip.to_string());
            }
            let ext = san.build(&b.x509v3_context(Some(&self.cert), None)).map_err(tls_err)?;
            b.append_extension(ext).map_err(tls_err)?;
        }
        b.sign(&self.key, MessageDigest::sha256()).map_err(tls_err)?;
        Ok(IssuedCert {
            cert_pem: b.build().to_pem().map_err(tls_err)?,
            key_pem: key.private_key_to_pem_pkcs8().map_err(tls_err)?,
        })
    }
}
