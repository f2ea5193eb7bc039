//! `bench attack`: the abuse measurements of SECURITY.md, against an auth service already
//! running on loopback (`scripts/run-local`, with its limits as configured).
//!
//! - `login-flood`: one address sends wrong-password logins, a fixed number over many
//!   connections, while real users log in one after another, each login from a loopback address
//!   of its own; reports the real users' login latency and statuses, and what the flood got.
//!   `--rounds` repeats the flood, each round from a fresh address, so that there are enough
//!   real logins for a p99: one flood is refused within a second, too soon for more than a few.
//! - `brute-force`: guesses at one account's password for a fixed time, each guess from one of
//!   many loopback addresses so that only the per-email limit can stop them; reports how many
//!   guesses were checked (answered 401) per minute.
//! - `catalog-flood` (`catalog_flood.rs`): starts its own products and measures its memory
//!   under many distinct listing pages.
//!
//! Every loop is bounded in count and time, and only loopback addresses are sent to.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use common::testing::require_loopback;
use hyper::StatusCode;

use crate::http::{Call, Conn};

/// The address round `r` of the flood comes from is the `r`th after this one.
const FLOOD_FROM: Ipv4Addr = Ipv4Addr::new(127, 2, 0, 1);
/// The `n`th real login comes from the `n`th address after this one, as logins from many homes
/// do, so the real users' own per-address limit is not what is measured.
const REAL_FROM: Ipv4Addr = Ipv4Addr::new(127, 3, 0, 1);
/// The `n`th account the setup registers does so from the `n`th address after this one, so that
/// the register limit per address counts nothing against anyone.
const REGISTER_FROM: Ipv4Addr = Ipv4Addr::new(127, 4, 0, 1);
/// Real accounts per round: the flood's victim is not among them, and they log in in turn, so
/// a real user's own per-email limit (10, then 1 a minute by default) is not what is measured.
const REAL_USERS: usize = 8;
/// A bound on everything one attack does besides its own limits.
const MAX_WALL: Duration = Duration::from_secs(600);
const PASSWORD: &str = "the real user's password";

#[derive(Subcommand)]
pub enum Attack {
    /// Wrong-password logins from one address while real users log in from others.
    LoginFlood(FloodArgs),
    /// Guesses at one account's password from many loopback addresses, for a fixed time.
    BruteForce(BruteArgs),
    /// Many distinct catalog pages over a catalog of long descriptions: products' memory.
    CatalogFlood(crate::catalog_flood::Args),
}

#[derive(Args)]
pub struct FloodArgs {
    /// auth's base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    auth: String,
    /// Flood attempts in all.
    #[arg(long, default_value_t = 2000)]
    attempts: usize,
    /// Flood connections, each sending its next attempt when the last is answered.
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// Floods one after another, each of `--attempts` from an address of its own; the real
    /// logins of all rounds make one latency distribution.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=200))]
    rounds: u16,
}

#[derive(Args)]
pub struct BruteArgs {
    /// auth's base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    auth: String,
    /// How long to guess.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Guesses in flight at once.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Loopback addresses the guesses come from in turn (127.0.0.10 and up).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=200))]
    addresses: u8,
}

/// Runs `attack` and prints its figures; `Ok(false)` when its check failed.
pub async fn run(attack: Attack) -> anyhow::Result<bool> {
    match attack {
        Attack::LoginFlood(args) => login_flood(args).await,
        Attack::BruteForce(args) => brute_force(args).await,
        Attack::CatalogFlood(args) => crate::catalog_flood::run(args).await,
    }
}

fn auth_addr(url: &str) -> anyhow::Result<SocketAddr> {
    require_loopback("--auth", url)?;
    let parsed = url::Url::parse(url).context("--auth: not a URL")?;
    let addrs = parsed
        .socket_addrs(|| Some(80))
        .context("--auth: no address")?;
    addrs.into_iter().next().context("--auth: no address")
}

fn credentials(email: &str, password: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "email": email, "password": password }).to_string())
}

fn unique_email(who: &str) -> String {
    format!("{who}.{}@bench.example", uuid::Uuid::new_v4().simple())
}

/// The `n`th loopback address after `first`.
fn nth_address(first: Ipv4Addr, n: usize) -> IpAddr {
    let n = u32::try_from(n).expect("fewer addresses than 127.0.0.0/8 holds");
    IpAddr::V4(Ipv4Addr::from(u32::from(first) + n))
}

/// Registers `email` with `password` as the setup's `n`th account (from an address of its
/// own); 201 or bust.
async fn register(addr: SocketAddr, n: usize, email: &str, password: &str) -> anyhow::Result<()> {
    let mut conn = Conn::new(addr).bound_to(nth_address(REGISTER_FROM, n));
    let answer = conn
        .send(Call::post("/auth/register", credentials(email, password)))
        .await?;
    if answer.status != StatusCode::CREATED {
        bail!(
            "registering {email} answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(())
}

/// What all of `tasks` (each one `who`) were answered, once each has finished.
async fn merged(
    tasks: Vec<tokio::task::JoinHandle<Statuses>>,
    who: &str,
) -> anyhow::Result<Statuses> {
    let mut statuses = Statuses::default();
    for task in tasks {
        statuses.merge(task.await.with_context(|| format!("{who} panicked"))?);
    }
    Ok(statuses)
}

/// Answers by status (or `error` for no answer).
#[derive(Default)]
struct Statuses(BTreeMap<String, usize>);

impl Statuses {
    fn count(&mut self, answer: &anyhow::Result<StatusCode>) {
        let key = match answer {
            Ok(status) => status.as_u16().to_string(),
            Err(_) => "error".to_owned(),
        };
        *self.0.entry(key).or_default() += 1;
    }

    fn merge(&mut self, other: Statuses) {
        for (key, n) in other.0 {
            *self.0.entry(key).or_default() += n;
        }
    }

    fn get(&self, key: &str) -> usize {
        self.0.get(key).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.0.values().sum()
    }

    fn show(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        parts.join(", ")
    }
}

/// The `q` quantile of `sorted` (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn login_flood(args: FloodArgs) -> anyhow::Result<bool> {
    let addr = auth_addr(&args.auth)?;
    if args.attempts == 0 || args.connections == 0 {
        bail!("--attempts and --connections must be positive");
    }
    let rounds = usize::from(args.rounds);
    let mut users = Vec::with_capacity(REAL_USERS * rounds);
    for n in 0..REAL_USERS * rounds {
        let email = unique_email("real");
        register(addr, n, &email, PASSWORD).await?;
        users.push(credentials(&email, PASSWORD));
    }
    let victim = unique_email("victim");
    register(addr, users.len(), &victim, "the victim's own password").await?;
    tracing::info!(
        attempts = args.attempts,
        connections = args.connections,
        rounds,
        "flood starts"
    );

    let started = Instant::now();
    let mut flood_statuses = Statuses::default();
    let mut real_statuses = Statuses::default();
    let mut latencies = Vec::new();
    let mut flood_secs = Vec::with_capacity(rounds);
    let mut logins = users.iter().cycle().enumerate();
    for round in 0..rounds {
        if started.elapsed() > MAX_WALL {
            bail!("the flood took longer than {MAX_WALL:?}, after {round} rounds");
        }
        let round_started = Instant::now();
        let flood = flood_round(
            addr,
            nth_address(FLOOD_FROM, round),
            &args,
            &victim,
            started,
        );
        let flooding = AtomicBool::new(true);
        // The real users log in one after another for as long as this round's flood lasts.
        let real = async {
            while flooding.load(Ordering::Relaxed) && started.elapsed() < MAX_WALL {
                let (n, body) = logins.next().expect("cycle never ends");
                let mut conn = Conn::new(addr).bound_to(nth_address(REAL_FROM, n));
                let sent = Instant::now();
                let answer = conn.send(Call::post("/auth/login", body.clone())).await;
                latencies.push(sent.elapsed());
                real_statuses.count(&answer.map(|a| a.status));
            }
        };
        let flood = async {
            let statuses = flood.await;
            flooding.store(false, Ordering::Relaxed);
            statuses
        };
        let (statuses, ()) = tokio::join!(flood, real);
        flood_statuses.merge(statuses?);
        flood_secs.push(round_started.elapsed().as_secs_f64());
    }
    latencies.sort();

    let p50 = quantile(&latencies, 0.50);
    let p99 = quantile(&latencies, 0.99);
    let ok = real_statuses.get("200") == real_statuses.total() && !latencies.is_empty();
    flood_secs.sort_by(f64::total_cmp);
    let mut out = String::new();
    writeln!(out, "## login flood")?;
    writeln!(out)?;
    writeln!(
        out,
        "flood: {rounds} round(s) of {} wrong-password logins over {} connections, each round \
         from an address of its own ({FLOOD_FROM} and up); a round lasted {:.1}-{:.1} s",
        args.attempts,
        args.connections,
        flood_secs.first().copied().unwrap_or_default(),
        flood_secs.last().copied().unwrap_or_default(),
    )?;
    writeln!(out, "flood answers: {}", flood_statuses.show())?;
    writeln!(
        out,
        "real users ({} accounts, each login from an address of its own, {REAL_FROM} and up): \
         {} logins during the floods; p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        users.len(),
        latencies.len(),
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    )?;
    writeln!(out, "real user answers: {}", real_statuses.show())?;
    if latencies.len() < 100 {
        writeln!(
            out,
            "(fewer than 100 real logins: the p99 is the slowest; more --rounds give a true p99)"
        )?;
    }
    let within = p99 <= Duration::from_millis(500);
    writeln!(
        out,
        "target (every real login 200, p99 within 500 ms): {}",
        if ok && within { "met" } else { "missed" }
    )?;
    print(&out)?;
    Ok(ok && within)
}

/// One flood: `--attempts` wrong-password logins from `from` over `--connections`
/// connections, half at `victim`'s account and half at emails nobody has (both cost a hash
/// where nothing refuses them first); what they were answered.
async fn flood_round(
    addr: SocketAddr,
    from: IpAddr,
    args: &FloodArgs,
    victim: &str,
    started: Instant,
) -> anyhow::Result<Statuses> {
    let next = Arc::new(AtomicUsize::new(0));
    let connections: Vec<_> = (0..args.connections)
        .map(|_| {
            let (next, victim, attempts) = (next.clone(), victim.to_owned(), args.attempts);
            tokio::spawn(async move {
                let mut conn = Conn::new(addr).bound_to(from);
                let mut statuses = Statuses::default();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= attempts || started.elapsed() > MAX_WALL {
                        break;
                    }
                    let email = if n % 2 == 0 {
                        victim.clone()
                    } else {
                        format!("nobody.{n}@bench.example")
                    };
                    let body = credentials(&email, &format!("wrong guess {n}"));
                    let answer = conn.send(Call::post("/auth/login", body)).await;
                    statuses.count(&answer.map(|a| a.status));
                }
                statuses
            })
        })
        .collect();
    merged(connections, "a flood connection").await
}

async fn brute_force(args: BruteArgs) -> anyhow::Result<bool> {
    let addr = auth_addr(&args.auth)?;
    if args.secs == 0 || args.connections == 0 {
        bail!("--secs and --connections must be positive");
    }
    let duration = Duration::from_secs(args.secs).min(MAX_WALL);
    let victim = unique_email("brute");
    register(addr, 0, &victim, "a password nobody guesses").await?;
    tracing::info!(secs = duration.as_secs(), "guessing starts");

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let guessers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (next, victim, addresses) = (next.clone(), victim.clone(), args.addresses);
            tokio::spawn(async move {
                // One connection per source address, opened when first used.
                let mut conns: BTreeMap<u8, Conn> = BTreeMap::new();
                let mut statuses = Statuses::default();
                while started.elapsed() < duration {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let octet = 10 + (n % usize::from(addresses)) as u8;
                    let conn = conns.entry(octet).or_insert_with(|| {
                        Conn::new(addr).bound_to(IpAddr::V4(Ipv4Addr::new(127, 0, 0, octet)))
                    });
                    let body = credentials(&victim, &format!("guess number {n}"));
                    let answer = conn.send(Call::post("/auth/login", body)).await;
                    statuses.count(&answer.map(|a| a.status));
                }
                statuses
            })
        })
        .collect();
    let statuses = merged(guessers, "a guesser").await?;
    let secs = started.elapsed().as_secs_f64();
    let checked = statuses.get("401");
    let mut out = String::new();
    writeln!(out, "## brute force")?;
    writeln!(out)?;
    writeln!(
        out,
        "{} guesses at one account in {secs:.1} s from {} loopback addresses, {} at a time",
        statuses.total(),
        args.addresses,
        args.connections
    )?;
    writeln!(out, "answers: {}", statuses.show())?;
    writeln!(
        out,
        "guesses checked (401): {checked}, {:.0} a minute",
        checked as f64 * 60.0 / secs
    )?;
    print(&out)?;
    Ok(statuses.get("200") == 0)
}

/// Writes `report` to stdout: the figures are the command's output, its logs go to stderr.
fn print(report: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(report.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let ms = |n: u64| Duration::from_millis(n);
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(quantile(&sorted, 0.5), ms(50));
        assert_eq!(quantile(&sorted, 0.99), ms(99));
        assert_eq!(quantile(&[ms(7)], 0.99), ms(7));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn only_loopback_auth_urls_are_attacked() {
        assert!(auth_addr("http://127.0.0.1:3001").is_ok());
        assert!(auth_addr("http://10.0.0.1:3001").is_err());
        assert!(auth_addr("http://example.com").is_err());
    }
}
