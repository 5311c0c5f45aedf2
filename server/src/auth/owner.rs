//! Owner sessions: HS256 JWTs with a random `jti` (revocable one by one)
//! and an `epoch` (bumped by logout-all). Revocations live in SQLite.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::db::{meta_get, meta_set, Db};
use crate::error::{Error, Result};
use crate::secret::Secret;

const EPOCH_KEY: &str = "owner_epoch";
const SUBJECT: &str = "owner";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub epoch: u64,
}

pub struct OwnerAuth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    max_age_secs: i64,
    epoch: AtomicU64,
    /// jti → expiry; expired entries are pruned, the table keeps the truth.
    revoked: Mutex<HashMap<String, i64>>,
    db: Db,
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl OwnerAuth {
    pub fn new(secret: &Secret, max_age_hours: u32, db: Db) -> Result<OwnerAuth> {
        let (epoch, revoked) = db.with(|conn| {
            let epoch = meta_get(conn, EPOCH_KEY)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0u64);
            conn.execute(
                "DELETE FROM revoked_tokens WHERE expires_at < ?1",
                [now_secs()],
            )?;
            let mut stmt = conn.prepare("SELECT jti, expires_at FROM revoked_tokens")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<rusqlite::Result<HashMap<_, _>>>()?;
            Ok((epoch, rows))
        })?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        validation.sub = Some(SUBJECT.to_string());
        Ok(OwnerAuth {
            encoding: EncodingKey::from_secret(secret.expose()),
            decoding: DecodingKey::from_secret(secret.expose()),
            validation,
            max_age_secs: i64::from(max_age_hours) * 3600,
            epoch: AtomicU64::new(epoch),
            revoked: Mutex::new(revoked),
            db,
        })
    }

    pub fn max_age_secs(&self) -> i64 {
        self.max_age_secs
    }

    pub fn issue(&self) -> Result<(String, Claims)> {
        let iat = now_secs();
        let claims = Claims {
            sub: SUBJECT.into(),
            jti: hex::encode(rand::random::<[u8; 16]>()),
            iat,
            exp: iat + self.max_age_secs,
            epoch: self.epoch.load(Ordering::SeqCst),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::internal(format!("signing JWT: {e}")))?;
        Ok((token, claims))
    }

    pub fn verify(&self, token: &str) -> Result<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => {
                        Error::Unauthorized("session expired; log in again")
                    }
                    _ => Error::Unauthorized("invalid session token"),
                }
            })?;
        let claims = data.claims;
        if claims.epoch < self.epoch.load(Ordering::SeqCst) {
            return Err(Error::Unauthorized(
                "session was logged out everywhere; log in again",
            ));
        }
        let revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if revoked.contains_key(&claims.jti) {
            return Err(Error::Unauthorized("session was logged out"));
        }
        Ok(claims)
    }

    /// Whether a token verified earlier is still good: not expired, not
    /// revoked, not from before a logout-all. Long-lived connections
    /// (WebSockets) ask this as they go.
    pub fn still_valid(&self, jti: &str, exp: i64, epoch: u64) -> bool {
        if exp <= now_secs() || epoch < self.epoch.load(Ordering::SeqCst) {
            return false;
        }
        let revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        !revoked.contains_key(jti)
    }

    /// Revoke one token (logout); persisted before it returns.
    pub async fn revoke(&self, jti: &str, exp: i64) -> Result<()> {
        let (j, e) = (jti.to_string(), exp);
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT OR REPLACE INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)",
                    rusqlite::params![j, e],
                )?;
                Ok(())
            })
            .await?;
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_secs();
        revoked.retain(|_, exp| *exp >= now);
        revoked.insert(jti.to_string(), exp);
        Ok(())
    }

    /// Kill every token issued so far (logout-all); persisted before it returns.
    pub async fn bump_epoch(&self) -> Result<u64> {
        let next = self.epoch.load(Ordering::SeqCst) + 1;
        self.db
            .call(move |conn| meta_set(conn, EPOCH_KEY, &next.to_string()))
            .await?;
        self.epoch.store(next, Ordering::SeqCst);
        Ok(next)
    }
}
