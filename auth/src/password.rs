//! Password hashing with argon2id, off the async runtime and bounded in concurrency.

use std::sync::Arc;

use anyhow::Context;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

use crate::domain::Password;

/// Hashes and verifies passwords. Each hash takes tens of milliseconds of CPU and 19 MiB, so
/// it runs on the blocking pool and at most `concurrency` run at once; the rest wait their
/// turn instead of starving the executor or the memory.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// The hash of a random password, verified against when the email is unknown so that
    /// "no such user" costs the same time as "wrong password".
    dummy_hash: Arc<str>,
}

impl Hasher {
    /// A hasher allowing `concurrency` hashes at once. Computes the dummy hash, so it takes
    /// as long as one hash.
    pub async fn new(concurrency: usize) -> anyhow::Result<Self> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut unguessable = [0u8; 32];
        rand::fill(&mut unguessable);
        let dummy_hash = run(&permits, move || hash(&unguessable))
            .await
            .context("computing the dummy password hash")?;
        Ok(Self {
            permits,
            dummy_hash: Arc::from(dummy_hash),
        })
    }

    /// The argon2id PHC string of `password`, with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let password = password.clone();
        run(&self.permits, move || hash(password.expose())).await
    }

    /// Whether `password` matches `stored`. With no stored hash (unknown user) it verifies
    /// against the dummy hash and answers `false`, taking about as long as a real check.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<String>,
    ) -> anyhow::Result<bool> {
        let password = password.clone();
        let known = stored.is_some();
        let phc: Arc<str> = stored.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let matches = run(&self.permits, move || {
            match Argon2::default().verify_password(password.expose(), phc.as_ref()) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                Err(e) => Err(anyhow::anyhow!("verifying a password hash: {e}")),
            }
        })
        .await?;
        Ok(known && matches)
    }
}

/// Runs `work` on the blocking pool once one of `permits` is free.
async fn run<T, F>(permits: &Arc<Semaphore>, work: F) -> anyhow::Result<T>
where
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .context("the hashing semaphore is closed")?;
    // The permit moves into the blocking task: if the request is dropped meanwhile, the hash
    // still counts against the limit until it really finishes.
    tokio::task::spawn_blocking(move || {
        let result = work();
        drop(permit);
        result
    })
    .await
    .context("the hashing task panicked")?
}

fn hash(password: &[u8]) -> anyhow::Result<String> {
    // Argon2::default() is argon2id v19 with m=19456 KiB, t=2, p=1 (OWASP's minimum), and
    // hash_password draws a 16-byte salt from the OS.
    Argon2::default()
        .hash_password(password)
        .map(|phc| phc.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(s: &str) -> Password {
        Password::parse(s.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_own_password_and_no_other() {
        let hasher = Hasher::new(2).await.unwrap();
        let phc = hasher.hash(&password("correct horse")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            hasher
                .verify(&password("correct horse"), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&password("correct horsE"), Some(phc))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = Hasher::new(2).await.unwrap();
        let a = hasher.hash(&password("same password")).await.unwrap();
        let b = hasher.hash(&password("same password")).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let hasher = Hasher::new(1).await.unwrap();
        assert!(
            !hasher
                .verify(&password("anything at all"), None)
                .await
                .unwrap()
        );
    }
}
