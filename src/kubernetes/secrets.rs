//! What a node needs to join a cluster: the bootstrap token and the
//! certificate key are secrets (their `Debug` output is redacted and the
//! renderer never logs them); the CA certificate hash is public.

use std::fmt;
use std::io::Read;

use super::api::Secret;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a bootstrap token is 6 and 16 characters of [a-z0-9] joined by a dot")]
    Token,
    #[error("a certificate key is 64 hexadecimal digits")]
    CertificateKey,
    #[error("`{0}` is not a CA certificate hash (sha256:<64 hex digits>)")]
    CaCertHash(String),
    #[error("no random bytes: {0}")]
    Random(String),
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn random_bytes(n: usize) -> Result<Vec<u8>, SecretError> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(buf)
}

/// A kubeadm bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken(Secret);

impl BootstrapToken {
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let ok = match text.split_once('.') {
            Some((id, secret)) => {
                id.len() == 6
                    && secret.len() == 16
                    && id.bytes().chain(secret.bytes()).all(is_token_char)
            }
            None => false,
        };
        if ok {
            Ok(BootstrapToken(Secret::new(text)))
        } else {
            Err(SecretError::Token)
        }
    }

    /// A fresh token from the system's random source.
    pub fn generate() -> Result<Self, SecretError> {
        const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut chars = Vec::with_capacity(23);
        while chars.len() < 22 {
            for b in random_bytes(32)? {
                // 252 = 7 × 36: rejecting the rest keeps every character equally likely.
                if b < 252 && chars.len() < 22 {
                    chars.push(ALPHABET[usize::from(b % 36)]);
                }
            }
        }
        chars.insert(6, b'.');
        let text = String::from_utf8(chars).map_err(|e| SecretError::Random(e.to_string()))?;
        Self::parse(&text)
    }

    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BootstrapToken(<redacted>)")
    }
}

/// The key that encrypts the control-plane certificates kubeadm uploads
/// for other control planes (`--upload-certs`): 32 bytes in hex.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateKey(Secret);

impl CertificateKey {
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(CertificateKey(Secret::new(text.to_ascii_lowercase())))
        } else {
            Err(SecretError::CertificateKey)
        }
    }

    pub fn generate() -> Result<Self, SecretError> {
        let hex: String = random_bytes(32)?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self::parse(&hex)
    }

    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

impl fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertificateKey(<redacted>)")
    }
}

/// `sha256:<hex>` of the cluster CA's public key (not a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaCertHash(String);

impl CaCertHash {
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        match text.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(CaCertHash(format!("sha256:{}", hex.to_ascii_lowercase())))
            }
            _ => Err(SecretError::CaCertHash(text.to_string())),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The cluster's join material. For the first control plane only `token`
/// and `certificate_key` are used (they are put into the init
/// configuration so that kubelab knows them beforehand); joining nodes need
/// the CA hash too, and joining control planes the certificate key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinSecrets {
    pub token: BootstrapToken,
    pub certificate_key: Option<CertificateKey>,
    pub ca_cert_hashes: Vec<CaCertHash>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked() {
        assert!(BootstrapToken::parse("abcdef.0123456789abcdef").is_ok());
        for bad in [
            "",
            "abcdef0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789abcdef.",
            "abc-ef.0123456789abcdef",
        ] {
            assert_eq!(BootstrapToken::parse(bad), Err(SecretError::Token), "{bad}");
        }
    }

    #[test]
    fn generated_secrets_are_well_formed_and_differ() {
        let a = BootstrapToken::generate().unwrap();
        let b = BootstrapToken::generate().unwrap();
        assert_ne!(a, b);
        assert!(BootstrapToken::parse(a.secret().expose()).is_ok());
        let k = CertificateKey::generate().unwrap();
        assert_eq!(k.secret().expose().len(), 64);
        assert_ne!(k, CertificateKey::generate().unwrap());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let k = CertificateKey::parse(&"ab".repeat(32)).unwrap();
        let s = JoinSecrets {
            token: t,
            certificate_key: Some(k),
            ca_cert_hashes: vec![CaCertHash::parse(&format!("sha256:{}", "0".repeat(64))).unwrap()],
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.contains("sha256:0000"), "{shown}");
    }

    #[test]
    fn keys_and_hashes_are_checked() {
        assert!(CertificateKey::parse(&"A".repeat(64)).is_ok());
        assert!(CertificateKey::parse(&"g".repeat(64)).is_err());
        assert!(CertificateKey::parse(&"a".repeat(63)).is_err());
        assert!(CaCertHash::parse(&format!("sha256:{}", "F".repeat(64))).is_ok());
        assert!(CaCertHash::parse(&"f".repeat(64)).is_err());
        assert!(CaCertHash::parse("sha256:abc").is_err());
    }
}
