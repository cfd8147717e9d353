//! Certificates and keys for a local control plane, made fresh at each start.
//!
//! One certificate authority signs the API server's serving certificate (for
//! 127.0.0.1 and localhost) and the client certificates. A client certificate
//! is an identity: its common name is the user name and its organisations are
//! the groups, and `system:masters` is the group the API server lets do anything.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// The files a control plane reads, all inside one folder.
pub struct Pki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_public_key: PathBuf,
    /// The PEM of the certificate authority, for kubeconfigs.
    pub ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A client identity: a certificate and its key, as PEM.
pub struct ClientIdentity {
    /// The user name, the certificate's common name.
    pub user: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    /// Makes the authority, the serving certificate and the service-account keys in `dir`.
    pub fn create(dir: &Path) -> Result<Pki> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{} local CA", crate::catalogue::PROJECT));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let ca_pem = issuer.pem();

        let serving_key = KeyPair::generate()?;
        let mut serving_params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        serving_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        let serving = serving_params.signed_by(&serving_key, &issuer)?;

        let service_account = KeyPair::generate()?;

        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            service_account_key: dir.join("sa.key"),
            service_account_public_key: dir.join("sa.pub"),
            ca_pem,
            issuer,
        };
        write_private(&pki.ca_cert, &pki.ca_pem)?;
        write_private(&pki.serving_cert, &serving.pem())?;
        write_private(&pki.serving_key, &serving_key.serialize_pem())?;
        write_private(&pki.service_account_key, &service_account.serialize_pem())?;
        write_private(&pki.service_account_public_key, &service_account.public_key_pem())?;
        Ok(pki)
    }

    /// A client certificate for user `name` in `groups`, signed by the authority.
    pub fn client(&self, name: &str, groups: &[&str]) -> Result<ClientIdentity> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        for group in groups {
            params.distinguished_name.push(DnType::OrganizationName, *group);
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ClientIdentity {
            user: name.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes a file that only the current user can read.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
