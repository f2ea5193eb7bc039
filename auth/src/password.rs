//! Password hashing with argon2id, off the async runtime and bounded in concurrency.

use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::phc::Output;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};
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
        let matches = run(&self.permits, move || verify(password.expose(), &phc)).await?;
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

/// Whether `password` hashes to the argon2 PHC string `phc`, with the algorithm, version,
/// parameters and salt `phc` names, compared in constant time: what argon2's `verify_password`
/// does, except where its working memory comes from. argon2 asks for zeroed memory, and
/// jemalloc zeroes a large block it reuses by handing its pages back to the kernel, so every
/// login faulted its 19 MiB in anew: about 5,500 page faults, a quarter of a login's CPU.
/// Memory filled by `vec!` reuses the pages of the last login instead.
fn verify(password: &[u8], phc: &str) -> anyhow::Result<bool> {
    fn invalid(e: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("verifying a password hash: {e}")
    }
    let hash = PasswordHash::new(phc).map_err(invalid)?;
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        anyhow::bail!("the stored password hash has no salt or no output");
    };
    let params = Params::try_from(&hash).map_err(invalid)?;
    let algorithm = Algorithm::try_from(hash.algorithm.as_str()).map_err(invalid)?;
    let version = hash
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(invalid)?
        .unwrap_or_default();
    let mut memory = vec![Block::default(); params.block_count()];
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let out = buffer
        .get_mut(..expected.len())
        .context("the stored password hash is too long")?;
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, out, &mut memory)
        .map_err(|e| anyhow::anyhow!("hashing a password to verify it: {e}"))?;
    // Output's equality is constant-time.
    Ok(Output::new(out).map_err(invalid)? == *expected)
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

    #[test]
    fn verification_agrees_with_argon2s_own_for_every_variant_and_parameter_set() {
        use argon2::PasswordVerifier;
        let variants = [
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(4096, 1, 1, None),
            ),
            (
                Algorithm::Argon2i,
                Version::V0x13,
                Params::new(2048, 3, 2, Some(16)),
            ),
            (
                Algorithm::Argon2d,
                Version::V0x10,
                Params::new(1024, 2, 1, Some(64)),
            ),
        ];
        for (algorithm, version, params) in variants {
            let argon2 = Argon2::new(algorithm, version, params.unwrap());
            let phc = argon2.hash_password(b"right").unwrap().to_string();
            for (attempt, matches) in [(&b"right"[..], true), (b"wrong", false), (b"", false)] {
                assert_eq!(verify(attempt, &phc).unwrap(), matches, "{phc}");
                assert_eq!(
                    argon2.verify_password(attempt, phc.as_str()).is_ok(),
                    matches,
                    "{phc}"
                );
            }
        }
    }

    #[test]
    fn a_stored_hash_that_is_not_a_phc_string_is_an_error_not_a_mismatch() {
        assert!(verify(b"x", "plaintext-password").is_err());
        assert!(verify(b"x", "$argon2id$v=19$m=4096,t=1,p=1").is_err());
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
