//! The owner passphrase: an argon2id PHC string, verified off the runtime.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::StartupError;

// Everything here runs while mitzod starts.
type Result<T, E = StartupError> = std::result::Result<T, E>;
use crate::secret::Secret;

pub struct Passphrase {
    phc: String,
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase([redacted])")
    }
}

impl Passphrase {
    /// From a PHC string; only argon2id is accepted.
    pub fn from_hash(phc: &str, origin: &str) -> Result<Passphrase> {
        let phc = phc.trim();
        let parsed = PasswordHash::new(phc).map_err(|e| {
            StartupError::Credential(format!(
                "{origin}: not a PHC hash string ({e}); make one with `mitzod hash-passphrase`"
            ))
        })?;
        if parsed.algorithm.as_str() != "argon2id" {
            return Err(StartupError::Credential(format!(
                "{origin}: hash algorithm is {}, expected argon2id",
                parsed.algorithm
            )));
        }
        Ok(Passphrase {
            phc: phc.to_string(),
        })
    }

    /// From plaintext: hashed in memory now.
    pub fn from_plaintext(plain: &Secret) -> Result<Passphrase> {
        Ok(Passphrase { phc: hash(plain)? })
    }

    /// Runs the full argon2 computation whether or not it matches, so right
    /// and wrong answers take the same time.
    pub fn verify(&self, candidate: &[u8]) -> bool {
        match PasswordHash::new(&self.phc) {
            Ok(parsed) => Argon2::default()
                .verify_password(candidate, &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }
}

pub fn hash(plain: &Secret) -> Result<String> {
    if plain.is_empty() {
        return Err(StartupError::Credential("empty passphrase".into()));
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(plain.expose(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StartupError::Credential(format!("hashing passphrase: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash(&Secret::new("correct horse")).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let p = Passphrase::from_hash(&phc, "test").unwrap();
        assert!(p.verify(b"correct horse"));
        assert!(!p.verify(b"correct horsE"));
    }

    #[test]
    fn non_argon2id_refused() {
        let err = Passphrase::from_hash(
            "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY",
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("argon2id"), "{err}");
        assert!(Passphrase::from_hash("hunter2", "x").is_err());
    }
}
