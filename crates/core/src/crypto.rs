//! age encryption: X25519 recipients or one passphrase (scrypt). Keys never leave this
//! module except as fingerprints.

use crate::{Error, Result};
use age::secrecy::{ExposeSecret, SecretString};
use pgdrill_pg::Secret;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;

/// How new backups are encrypted. Empty = not encrypted.
#[derive(Clone, Default)]
pub struct EncryptionKeys {
    recipients: Vec<(String, age::x25519::Recipient)>,
    passphrase: Option<Secret>,
}

impl std::fmt::Debug for EncryptionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKeys")
            .field("recipients", &self.fingerprints())
            .field("passphrase", &self.passphrase.is_some())
            .finish()
    }
}

/// A short, stable fingerprint of a recipient public key.
pub fn fingerprint(recipient: &str) -> String {
    let d = Sha256::digest(recipient.trim().as_bytes());
    format!("sha256:{}", &hex::encode(d)[..16])
}

impl EncryptionKeys {
    pub fn new(recipients: &[String], passphrase: Option<Secret>) -> Result<Self> {
        if !recipients.is_empty() && passphrase.is_some() {
            return Err(Error::Invalid(
                "age cannot mix recipients and a passphrase in one file: configure either recipients or passphrase_env".into(),
            ));
        }
        let mut parsed = Vec::new();
        for r in recipients {
            let rec: age::x25519::Recipient = r.trim().parse().map_err(|e| {
                Error::Invalid(format!(
                    "{:?} is not an age X25519 recipient ({e}); it starts with age1",
                    r.trim()
                ))
            })?;
            parsed.push((r.trim().to_string(), rec));
        }
        if let Some(p) = &passphrase {
            if p.expose().is_empty() {
                return Err(Error::Invalid("the encryption passphrase is empty".into()));
            }
        }
        Ok(EncryptionKeys {
            recipients: parsed,
            passphrase,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.recipients.is_empty() || self.passphrase.is_some()
    }

    pub fn has_passphrase(&self) -> bool {
        self.passphrase.is_some()
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.recipients
            .iter()
            .map(|(s, _)| fingerprint(s))
            .collect()
    }

    /// Wraps `out` in an encrypting writer (or passes it through when disabled).
    pub fn wrap<W: Write>(&self, out: W) -> Result<Sink<W>> {
        let encryptor = if let Some(p) = &self.passphrase {
            age::Encryptor::with_user_passphrase(SecretString::from(p.expose().to_string()))
        } else if !self.recipients.is_empty() {
            age::Encryptor::with_recipients(
                self.recipients
                    .iter()
                    .map(|(_, r)| r as &dyn age::Recipient),
            )
            .map_err(|e| Error::Invalid(format!("cannot encrypt to the recipients: {e}")))?
        } else {
            return Ok(Sink::Plain(out));
        };
        let w = encryptor
            .wrap_output(out)
            .map_err(|e| Error::Failed(format!("cannot start encryption: {e}")))?;
        Ok(Sink::Age(w))
    }
}

/// The output of the encryption stage; `finish` writes age's last chunk.
pub enum Sink<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Age(w) => w.flush(),
        }
    }
}

impl<W: Write> Sink<W> {
    pub fn finish(self) -> std::io::Result<W> {
        match self {
            Sink::Plain(w) => Ok(w),
            Sink::Age(w) => w.finish(),
        }
    }
}

/// What can decrypt stored backups: identity files and/or a passphrase.
#[derive(Default)]
pub struct DecryptionKeys {
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    passphrase: Option<Secret>,
    /// The passphrase variable that was named but is not set (for the error message).
    unset_passphrase_var: Option<String>,
}

impl std::fmt::Debug for DecryptionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptionKeys")
            .field("identities", &self.identities.len())
            .field("passphrase", &self.passphrase.is_some())
            .finish()
    }
}

impl DecryptionKeys {
    pub fn new(identity_files: &[std::path::PathBuf], passphrase: Option<Secret>) -> Result<Self> {
        let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        for f in identity_files {
            identities.extend(read_identity_file(f)?);
        }
        Ok(DecryptionKeys {
            identities,
            passphrase,
            unset_passphrase_var: None,
        })
    }

    /// Remembers that the passphrase variable `var` was named but is not set, so that a
    /// passphrase-encrypted backup says so instead of asking for the flag.
    pub fn with_unset_passphrase_var(mut self, var: Option<String>) -> Self {
        self.unset_passphrase_var = var;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.passphrase.is_none()
    }

    /// Wraps `input` (age ciphertext) in a decrypting reader. Errors: no or wrong key → exit 4;
    /// a damaged header → exit 3.
    pub fn decrypt<'a, R: Read + 'a>(&self, input: R, what: &str) -> Result<Box<dyn Read + 'a>> {
        Ok(Box::new(self.decrypt_stream(input, what)?))
    }

    /// Like [`DecryptionKeys::decrypt`], keeping age's reader, which can seek (to any 64 KiB
    /// chunk, each authenticated on its own) when `input` can.
    pub fn decrypt_stream<R: Read>(
        &self,
        input: R,
        what: &str,
    ) -> Result<age::stream::StreamReader<R>> {
        let d = age::Decryptor::new(input).map_err(|e| map_decrypt_err(e, what))?;
        if d.is_scrypt() {
            let Some(p) = &self.passphrase else {
                return Err(Error::Key(match &self.unset_passphrase_var {
                    Some(var) => format!(
                        "{what} is encrypted with a passphrase, but the variable {var} named by --passphrase-env or passphrase_env is not set: export it"
                    ),
                    None => format!(
                        "{what} is encrypted with a passphrase: set passphrase_env (or --passphrase-env VAR) to the variable holding it"
                    ),
                }));
            };
            let mut id = age::scrypt::Identity::new(SecretString::from(p.expose().to_string()));
            id.set_max_work_factor(22);
            d.decrypt(std::iter::once(&id as &dyn age::Identity))
                .map_err(|e| map_decrypt_err(e, what))
        } else {
            if self.identities.is_empty() {
                return Err(Error::Key(format!(
                    "{what} is encrypted to age recipients: give the identity file with --identity FILE (or identity_file in the config)"
                )));
            }
            d.decrypt(
                self.identities
                    .iter()
                    .map(|i| i.as_ref() as &dyn age::Identity),
            )
            .map_err(|e| map_decrypt_err(e, what))
        }
    }
}

fn map_decrypt_err(e: age::DecryptError, what: &str) -> Error {
    use age::DecryptError as D;
    match e {
        D::NoMatchingKeys => Error::Key(format!(
            "none of the given identities can decrypt {what}: use the identity file whose recipient encrypted it"
        )),
        D::DecryptionFailed | D::KeyDecryptionFailed => Error::Key(format!(
            "cannot decrypt {what}: the key or passphrase is wrong"
        )),
        D::ExcessiveWork { .. } => Error::Key(format!(
            "{what} uses a passphrase work factor above the allowed maximum"
        )),
        D::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Integrity(format!("{what} is truncated"))
        }
        other => Error::Integrity(format!("{what} is not a valid age file ({other})")),
    }
}

fn read_identity_file(path: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Key(format!(
            "cannot read the identity file {}: {e}",
            path.display()
        ))
    })?;
    let mut out: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id: age::x25519::Identity = line.parse().map_err(|_| {
            Error::Key(format!(
                "{} holds a line that is not an age identity (AGE-SECRET-KEY-1...)",
                path.display()
            ))
        })?;
        out.push(Box::new(id));
    }
    if out.is_empty() {
        return Err(Error::Key(format!(
            "{} holds no age identity",
            path.display()
        )));
    }
    Ok(out)
}

/// A fresh identity: (file text with a comment, public recipient).
pub fn generate_identity(created: &str) -> (String, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let text = format!(
        "# created: {created}\n# public key: {public}\n{}\n",
        id.to_string().expose_secret()
    );
    (text, public)
}

/// The public recipients of the identities in `path`.
pub fn identity_file_recipients(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Key(format!(
            "cannot read the identity file {}: {e}",
            path.display()
        ))
    })?;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Ok(id) = line.parse::<age::x25519::Identity>() {
            out.push(id.to_public().to_string());
        }
    }
    Ok(out)
}
