//! Report signatures: Ed25519 over a canonical serialisation, with each radiologist's
//! private key held server-side and sealed at rest.
//!
//! - The archive's **report key** (32 random bytes in a file readable by its owner only,
//!   outside the database: `report_key_file`, default `<data_dir>/report-signing.key`)
//!   seals every radiologist's Ed25519 private key with ChaCha20-Poly1305 (the user id as
//!   associated data, so a sealed key moved to another user does not open). A copy of the
//!   database alone cannot sign. Every node of a deployment needs the same file.
//! - A radiologist's key pair is made at their first signature; the public key and its id
//!   (the first 16 hex digits of its BLAKE3 hash) are stored in clear, so anyone can verify
//!   without the report key.
//! - What is signed is [`canonical`]: a JSON object with its fields in a fixed order and no
//!   whitespace, built from the stored values only. Verification rebuilds it from the
//!   database, so any stored byte changed afterwards fails.

use std::io::Write as _;
use std::path::Path;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::{Result, StoreError};

/// The archive's key that seals radiologists' private keys.
pub struct ReportKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for ReportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReportKey(<redacted>)")
    }
}

impl ReportKey {
    /// Reads the key at `path`, or makes one there (mode 0600) when the file does not
    /// exist.
    pub fn load_or_create(path: &Path) -> Result<ReportKey> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut fresh = [0u8; 32];
                SystemRandom::new().fill(&mut fresh).map_err(|_| {
                    StoreError::Config("no system randomness for the report key".into())
                })?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::io("cannot create the report key's directory", dir, e)
                    })?;
                }
                write_new_secret(path, &fresh)?;
                tracing::info!(path = %path.display(), "made the report signing key (keep it with the backups, apart from the database)");
                fresh.to_vec()
            }
            Err(e) => return Err(StoreError::io("cannot read the report key", path, e)),
        };
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            StoreError::Config(format!(
                "the report key {} must be exactly 32 bytes (it is {})",
                path.display(),
                bytes.len()
            ))
        })?;
        Ok(ReportKey::from_bytes(&key))
    }

    pub fn from_bytes(key: &[u8; 32]) -> ReportKey {
        ReportKey {
            key: LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, key).expect("32 bytes is the key length"),
            ),
        }
    }

    fn seal(&self, user_id: i64, secret: &[u8]) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Config("no system randomness".into()))?;
        let mut in_out = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(user_id.to_be_bytes()),
                &mut in_out,
            )
            .map_err(|_| StoreError::Config("cannot seal a signing key".into()))?;
        Ok(format!("{}.{}", hex::encode(nonce), hex::encode(in_out)))
    }

    fn open(&self, user_id: i64, sealed: &str) -> Result<Vec<u8>> {
        let wrong = || {
            StoreError::Corrupt(
                "a radiologist's signing key does not open with this report key (a different \
                 report_key_file, or a changed database row)"
                    .into(),
            )
        };
        let (nonce, body) = sealed.split_once('.').ok_or_else(wrong)?;
        let nonce: [u8; NONCE_LEN] = hex::decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(wrong)?;
        let mut in_out = hex::decode(body).map_err(|_| wrong())?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(user_id.to_be_bytes()),
                &mut in_out,
            )
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

/// Creates `path` with `bytes`, readable and writable by the owner only, durably.
fn write_new_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io("cannot create the report key", path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io("cannot write the report key", path, e))
}

/// A new key pair for `user_id`: (key id, public key hex, sealed PKCS#8 private key).
pub(crate) fn new_key_pair(
    report_key: &ReportKey,
    user_id: i64,
) -> Result<(String, String, String)> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| StoreError::Config("cannot make a signing key".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| StoreError::Config("cannot read the new signing key".into()))?;
    let public = pair.public_key().as_ref().to_vec();
    Ok((
        key_id(&public),
        hex::encode(&public),
        report_key.seal(user_id, pkcs8.as_ref())?,
    ))
}

/// The id of a public key: the first 16 hex digits of its BLAKE3 hash.
pub fn key_id(public_key: &[u8]) -> String {
    blake3::hash(public_key).to_hex()[..16].to_owned()
}

/// Signs `message` with the sealed key of `user_id`; the signature in hex.
pub(crate) fn sign(
    report_key: &ReportKey,
    user_id: i64,
    sealed: &str,
    message: &[u8],
) -> Result<String> {
    let pkcs8 = report_key.open(user_id, sealed)?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
        .map_err(|_| StoreError::Corrupt("a sealed signing key is not an Ed25519 key".into()))?;
    Ok(hex::encode(pair.sign(message).as_ref()))
}

/// Whether `signature_hex` is `public_key_hex`'s signature of `message`.
pub fn verify(public_key_hex: &str, message: &[u8], signature_hex: &str) -> bool {
    let (Ok(public), Ok(signature)) = (hex::decode(public_key_hex), hex::decode(signature_hex))
    else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message, &signature)
        .is_ok()
}

/// What a report's signature covers, in this order. `serde_json` writes struct fields in
/// declaration order, without whitespace: the same values always give the same bytes.
#[derive(Debug, serde::Serialize)]
pub(crate) struct SignedReport<'a> {
    pub format: &'static str,
    pub report_id: i64,
    pub study_instance_uid: &'a str,
    pub patient_id: &'a str,
    pub accession_number: Option<&'a str>,
    pub template: &'a str,
    pub clinical_information: &'a str,
    pub technique: &'a str,
    pub findings: &'a str,
    pub impression: &'a str,
    pub agreement: Option<&'a str>,
    pub agreement_comment: Option<&'a str>,
    pub critical: bool,
    pub signer: &'a str,
    pub signer_key_id: &'a str,
    pub signed_at: i64,
    /// Last and only when there are some: reports signed without key images keep the
    /// bytes (and signatures) of before key images existed.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub key_images: &'a [super::KeyImage],
}

/// What an addendum's signature covers: the addendum, and the signature of the report it
/// amends (so that it cannot be moved to another report).
#[derive(Debug, serde::Serialize)]
pub(crate) struct SignedAddendum<'a> {
    pub format: &'static str,
    pub report_id: i64,
    pub addendum_id: i64,
    pub report_signature: &'a str,
    pub text: &'a str,
    pub signer: &'a str,
    pub signer_key_id: &'a str,
    pub signed_at: i64,
}

pub(crate) const REPORT_FORMAT: &str = "pacs-report-v1";
pub(crate) const ADDENDUM_FORMAT: &str = "pacs-addendum-v1";

/// The canonical bytes of a signed value.
pub(crate) fn canonical(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain structs serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_sign_and_verify() {
        let key = ReportKey::from_bytes(&[7; 32]);
        let (id, public, sealed) = new_key_pair(&key, 42).unwrap();
        assert_eq!(id, key_id(&hex::decode(&public).unwrap()));
        let sig = sign(&key, 42, &sealed, b"report").unwrap();
        assert!(verify(&public, b"report", &sig));
        assert!(!verify(&public, b"Report", &sig));
        // The sealed key opens only for its user and with its report key.
        assert!(sign(&key, 43, &sealed, b"report").is_err());
        assert!(sign(&ReportKey::from_bytes(&[8; 32]), 42, &sealed, b"report").is_err());
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn report_key_file_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/report.key");
        let a = ReportKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (_, public, sealed) = new_key_pair(&a, 1).unwrap();
        let b = ReportKey::load_or_create(&path).unwrap();
        let sig = sign(&b, 1, &sealed, b"x").unwrap();
        assert!(verify(&public, b"x", &sig));
        std::fs::write(dir.path().join("short.key"), b"short").unwrap();
        assert!(ReportKey::load_or_create(&dir.path().join("short.key")).is_err());
    }
}
