//! Password hashing with argon2id on threads of its own, bounded in number and in memory, with
//! a queue bounded in length and in waiting time.

use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use argon2::password_hash::phc::Output;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};
use common::config::parse_or;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::oneshot;

use crate::domain::Password;

/// How long a hashing thread with nothing to do keeps its working memory before freeing it,
/// so a service past a burst of logins shrinks back to its idle size.
const KEEP_MEMORY_IDLE: Duration = Duration::from_secs(1);

/// How many hashes may wait for a thread, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashQueueConfig {
    /// `HASH_QUEUE_CAPACITY`, default 4 x `HASH_CONCURRENCY`: hashes waiting beyond the ones
    /// running. One more is refused at once with 503.
    pub capacity: usize,
    /// `HASH_QUEUE_DEADLINE_MS`, default 1000: a hash that waited longer for a thread is
    /// dropped unhashed and answered 503; its client has likely given up, or soon will.
    pub deadline: Duration,
}

impl HashQueueConfig {
    /// The defaults for `concurrency` hashing threads: room for four rounds of hashes.
    pub fn for_concurrency(concurrency: usize) -> Self {
        Self {
            capacity: 4 * concurrency.max(1),
            deadline: Duration::from_millis(1000),
        }
    }

    /// Reads the settings from the environment, with the defaults of [`Self::for_concurrency`].
    pub fn from_env(concurrency: usize) -> anyhow::Result<Self> {
        let default = Self::for_concurrency(concurrency);
        let capacity = parse_or("HASH_QUEUE_CAPACITY", default.capacity)?;
        anyhow::ensure!(capacity > 0, "HASH_QUEUE_CAPACITY must be at least 1");
        let deadline_ms = parse_or(
            "HASH_QUEUE_DEADLINE_MS",
            default.deadline.as_millis() as u64,
        )?;
        anyhow::ensure!(deadline_ms > 0, "HASH_QUEUE_DEADLINE_MS must be at least 1");
        Ok(Self {
            capacity,
            deadline: Duration::from_millis(deadline_ms),
        })
    }
}

/// Why a hash or a verification was not done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The queue was full: the request was refused without waiting.
    #[error("the password-hashing queue is full")]
    QueueFull,
    /// The request waited longer than the queue's deadline and was dropped unhashed.
    #[error("the password hash waited longer than its deadline")]
    DeadlinePassed,
    /// The hashing itself failed, or its threads are gone.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Hashes and verifies passwords. Each hash takes tens of milliseconds of CPU and 19 MiB, so
/// they run on `concurrency` threads of their own that take requests from one queue in
/// order: the rest wait their turn instead of starving the executor or the memory. The queue
/// is bounded in length and in waiting time, so a flood of logins is refused quickly rather
/// than making every login wait without end. A thread that has just finished a hash starts
/// the next one queued itself, with no task to wake in between, and verifies in the working
/// memory of its last verification instead of allocating and zeroing 19 MiB again.
#[derive(Clone)]
pub struct Hasher {
    /// The hashing threads stop once every clone of this is dropped.
    jobs: Sender<Job>,
    /// The hash of a random password, verified against when the email is unknown so that
    /// "no such user" costs the same time as "wrong password".
    dummy_hash: Arc<str>,
}

/// Work for a hashing thread, and when it was queued.
struct Job {
    queued: Instant,
    work: Work,
}

/// What a job does: hash in the thread's memory, or only answer that it expired.
type Work = Box<dyn FnOnce(&mut Memory, Outcome) + Send>;

/// Whether a job runs or is dropped for having waited past the deadline.
enum Outcome {
    Run,
    Expired,
}

impl Hasher {
    /// A hasher with `concurrency` hashing threads and a queue as `queue` says. Computes the
    /// dummy hash, so it takes as long as one hash.
    pub async fn new(concurrency: usize, queue: HashQueueConfig) -> anyhow::Result<Self> {
        let (jobs, waiting) = crossbeam_channel::bounded::<Job>(queue.capacity.max(1));
        let deadline = queue.deadline;
        for n in 0..concurrency.max(1) {
            let waiting = waiting.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || hash_jobs(&waiting, deadline))
                .context("starting a password-hashing thread")?;
        }
        let mut unguessable = [0u8; 32];
        rand::fill(&mut unguessable);
        let dummy_hash = run(&jobs, move |_| hash(&unguessable))
            .await
            .map_err(anyhow::Error::new)
            .context("computing the dummy password hash")?;
        Ok(Self {
            jobs,
            dummy_hash: Arc::from(dummy_hash),
        })
    }

    /// Hashes and verifications waiting for a hashing thread (at most the queue's capacity).
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }

    /// The argon2id PHC string of `password`, with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let password = password.clone();
        run(&self.jobs, move |_| hash(password.expose())).await
    }

    /// Whether `password` matches `stored`. With no stored hash (unknown user) it verifies
    /// against the dummy hash and answers `false`, taking about as long as a real check.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let password = password.clone();
        let known = stored.is_some();
        let phc: Arc<str> = stored.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let matches = run(&self.jobs, move |memory| {
            verify(password.expose(), &phc, memory)
        })
        .await?;
        Ok(known && matches)
    }
}

/// Queues `work` for the hashing threads and waits for its result. Refuses at once when the
/// queue is full; answers [`HashError::DeadlinePassed`] when the job waited too long.
async fn run<T, F>(jobs: &Sender<Job>, work: F) -> Result<T, HashError>
where
    F: FnOnce(&mut Memory) -> anyhow::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let (answer, result) = oneshot::channel();
    let job = Job {
        queued: Instant::now(),
        work: Box::new(move |memory, outcome| {
            // The request was dropped while queued (its client went away): nobody is waiting.
            if answer.is_closed() {
                return;
            }
            let _ = answer.send(match outcome {
                Outcome::Run => work(memory).map_err(HashError::Failed),
                Outcome::Expired => Err(HashError::DeadlinePassed),
            });
        }),
    };
    jobs.try_send(job).map_err(|e| match e {
        TrySendError::Full(_) => HashError::QueueFull,
        TrySendError::Disconnected(_) => {
            HashError::Failed(anyhow::anyhow!("the password-hashing threads have stopped"))
        }
    })?;
    result
        .await
        .context("a password-hashing job panicked")
        .map_err(HashError::Failed)?
}

/// The loop of one hashing thread: runs jobs until the [`Hasher`] is dropped, drops unhashed
/// those that waited longer than `deadline`, and frees its working memory whenever it has
/// been idle for [`KEEP_MEMORY_IDLE`].
fn hash_jobs(queue: &Receiver<Job>, deadline: Duration) {
    let mut memory = Memory::default();
    loop {
        match queue.recv_timeout(KEEP_MEMORY_IDLE) {
            Ok(job) => {
                let outcome = if job.queued.elapsed() > deadline {
                    Outcome::Expired
                } else {
                    Outcome::Run
                };
                // A job that panics loses its answer (its caller gets an error), not the thread.
                drop(std::panic::catch_unwind(AssertUnwindSafe(|| {
                    (job.work)(&mut memory, outcome)
                })));
            }
            Err(RecvTimeoutError::Timeout) => memory.release(),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// A hashing thread's argon2 working memory, kept from one verification to the next. argon2
/// overwrites every block in its first pass before reading it, so what the last
/// verification left there changes nothing.
#[derive(Default)]
struct Memory {
    blocks: Vec<Block>,
}

impl Memory {
    /// `count` blocks: the ones already held when there are enough.
    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.blocks.len() < count {
            // Freed before the larger one is allocated, so the two never coexist.
            self.blocks = Vec::new();
            self.blocks = vec![Block::default(); count];
        }
        &mut self.blocks[..count]
    }

    fn release(&mut self) {
        self.blocks = Vec::new();
    }
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
/// does, except that it works in `memory` rather than in 19 MiB freshly allocated and zeroed.
fn verify(password: &[u8], phc: &str, memory: &mut Memory) -> anyhow::Result<bool> {
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
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let out = buffer
        .get_mut(..expected.len())
        .context("the stored password hash is too long")?;
    let blocks = memory.blocks(params.block_count());
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, out, blocks)
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
        let hasher = Hasher::new(2, HashQueueConfig::for_concurrency(2))
            .await
            .unwrap();
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
        // One memory for every check, as a hashing thread has: what each check leaves in it,
        // with other parameters or another password, must not change the next one's answer.
        let mut memory = Memory::default();
        for (algorithm, version, params) in variants {
            let argon2 = Argon2::new(algorithm, version, params.unwrap());
            let phc = argon2.hash_password(b"right").unwrap().to_string();
            for (attempt, matches) in [(&b"right"[..], true), (b"wrong", false), (b"", false)] {
                assert_eq!(
                    verify(attempt, &phc, &mut memory).unwrap(),
                    matches,
                    "{phc}"
                );
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
        let mut memory = Memory::default();
        assert!(verify(b"x", "plaintext-password", &mut memory).is_err());
        assert!(verify(b"x", "$argon2id$v=19$m=4096,t=1,p=1", &mut memory).is_err());
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = Hasher::new(2, HashQueueConfig::for_concurrency(2))
            .await
            .unwrap();
        let a = hasher.hash(&password("same password")).await.unwrap();
        let b = hasher.hash(&password("same password")).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let hasher = Hasher::new(1, HashQueueConfig::for_concurrency(1))
            .await
            .unwrap();
        assert!(
            !hasher
                .verify(&password("anything at all"), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn one_thread_answers_every_request_queued_behind_it() {
        // Room for all five in the queue, whenever the thread takes the first.
        let queue = HashQueueConfig {
            capacity: 5,
            ..HashQueueConfig::for_concurrency(1)
        };
        let hasher = Hasher::new(1, queue).await.unwrap();
        let phc = hasher.hash(&password("queued password")).await.unwrap();
        let attempts = [
            "queued password",
            "queued passworD",
            "queued password",
            "another password",
            "queued password",
        ];
        let checks = attempts.map(|attempt| {
            let (hasher, phc) = (hasher.clone(), phc.clone());
            tokio::spawn(async move { hasher.verify(&password(attempt), Some(phc)).await.unwrap() })
        });
        let mut answers = Vec::new();
        for check in checks {
            answers.push(check.await.unwrap());
        }
        assert_eq!(answers, [true, false, true, false, true]);
    }

    /// Occupies the only thread of `hasher` until the returned sender is dropped, and returns
    /// once the thread has started on it.
    async fn hold_the_thread(hasher: &Hasher) -> std::sync::mpsc::Sender<()> {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        let jobs = hasher.jobs.clone();
        tokio::spawn(async move {
            run(&jobs, move |_| {
                let _ = started.send(());
                // Returns when the test drops `release`.
                let _ = held.recv();
                Ok(())
            })
            .await
        });
        running.await.expect("the hashing thread starts the job");
        release
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_the_queued_work_still_runs() {
        let queue = HashQueueConfig {
            capacity: 1,
            deadline: Duration::from_secs(60),
        };
        let hasher = Hasher::new(1, queue).await.unwrap();
        let release = hold_the_thread(&hasher).await;
        let queued = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(&password("queued password")).await })
        };
        wait_for_queued(&hasher, 1).await;

        let refused = hasher.hash(&password("one too many")).await;

        assert!(matches!(refused, Err(HashError::QueueFull)), "{refused:?}");
        drop(release);
        let phc = queued.await.unwrap().expect("the queued hash runs");
        assert!(phc.starts_with("$argon2id$"));
    }

    #[tokio::test]
    async fn a_job_that_waited_past_the_deadline_is_dropped_unhashed() {
        let queue = HashQueueConfig {
            capacity: 4,
            deadline: Duration::from_millis(20),
        };
        let hasher = Hasher::new(1, queue).await.unwrap();
        let release = hold_the_thread(&hasher).await;
        let late = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(&password("late password")).await })
        };
        wait_for_queued(&hasher, 1).await;
        // The queued job must age past its deadline; this waits out time, not another task.
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(release);

        let late = late.await.unwrap();
        assert!(matches!(late, Err(HashError::DeadlinePassed)), "{late:?}");
        let fresh = hasher.hash(&password("fresh password")).await;
        assert!(fresh.is_ok(), "a job within its deadline runs: {fresh:?}");
    }

    async fn wait_for_queued(hasher: &Hasher, count: usize) {
        common::testing::wait_until(Duration::from_secs(10), "a job to be queued", || async {
            (hasher.queued() >= count).then_some(())
        })
        .await;
    }

    #[test]
    fn idle_memory_is_given_back_and_grown_again_on_demand() {
        let mut memory = Memory::default();
        assert_eq!(memory.blocks(64).len(), 64);
        assert_eq!(memory.blocks(16).len(), 16);
        assert_eq!(
            memory.blocks.len(),
            64,
            "a smaller request reuses the larger memory"
        );
        memory.release();
        assert_eq!(memory.blocks.capacity(), 0);
        assert_eq!(memory.blocks(32).len(), 32);
    }
}
