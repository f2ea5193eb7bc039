//! The ceiling of the login scenario: how many password verifications per second the machine
//! does with auth's own argon2 parameters, one thread per core, nothing else around them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use serde::Serialize;

/// A backstop on the verifications one thread runs, should the clock misbehave.
const MAX_PER_THREAD: u64 = 100_000;

/// What the measurement found.
#[derive(Debug, Clone, Serialize)]
pub struct Argon2Bound {
    pub threads: usize,
    pub verifications: u64,
    pub secs: f64,
    pub per_sec: f64,
    /// The PHC parameters verified against, as auth stores them.
    pub params: String,
    /// Each run's verifications per second; `per_sec` is their median, and the other figures
    /// are of the run closest to it.
    pub runs_per_sec: Vec<f64>,
}

/// Several measurements as one: the median rate, the other figures of the measurement
/// closest to it, and every measurement's rate in order.
pub fn summarize(measured: Vec<Argon2Bound>) -> anyhow::Result<Argon2Bound> {
    let rates: Vec<f64> = measured.iter().map(|m| m.per_sec).collect();
    let median = crate::stats::median(rates.iter().copied()).context("no argon2 runs")?;
    let mut bound = measured
        .into_iter()
        .min_by(|a, b| {
            (a.per_sec - median)
                .abs()
                .total_cmp(&(b.per_sec - median).abs())
        })
        .context("no argon2 runs")?;
    bound.per_sec = median;
    bound.runs_per_sec = rates;
    Ok(bound)
}

/// Runs `threads` threads verifying one password for about `duration`.
pub fn measure(threads: usize, duration: Duration) -> anyhow::Result<Argon2Bound> {
    let password = b"bench-password-for-argon2";
    // auth hashes and verifies with Argon2::default() (argon2id v19, m=19456 KiB, t=2, p=1);
    // the parameters travel in the PHC string, so verifying this hash costs what a login does.
    let phc = Argon2::default()
        .hash_password(password)
        .map_err(|e| anyhow!("hash: {e}"))?
        .to_string();
    let params = phc
        .split('$')
        .find(|part| part.starts_with("m="))
        .unwrap_or_default()
        .to_owned();
    let failed = AtomicBool::new(false);
    let started = Instant::now();
    let deadline = started + duration;
    let verifications: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (phc, failed) = (phc.as_str(), &failed);
                scope.spawn(move || {
                    let mut done = 0u64;
                    while Instant::now() < deadline && done < MAX_PER_THREAD {
                        if Argon2::default().verify_password(password, phc).is_err() {
                            failed.store(true, Ordering::Relaxed);
                            break;
                        }
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    let secs = started.elapsed().as_secs_f64();
    if failed.load(Ordering::Relaxed) {
        return Err(anyhow!("a correct password did not verify")).context("argon2 bound");
    }
    Ok(Argon2Bound {
        threads,
        verifications,
        secs,
        per_sec: verifications as f64 / secs,
        params,
        runs_per_sec: Vec::new(),
    })
}
