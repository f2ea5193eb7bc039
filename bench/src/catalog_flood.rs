//! `bench attack catalog-flood`: the cache flood of issue 12. A catalog of long descriptions is
//! written straight into the run's products database, then one client asks products for many
//! distinct listing pages, a fixed number at a time, as an attacker filling a cache keyed by
//! the client's `limit` and `offset` would. Products' resident memory is read before, every
//! 10 ms during (its peak), at the end and after a short idle; the run fails when the peak
//! passes the bound.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::fixture::{Fixture, Role, ServiceArgs};
use crate::http::{Call, Conn};
use crate::procfs;

/// How often products' memory is read during the flood.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// How long products idles after seeding before its memory is read, and after the flood.
const IDLE: Duration = Duration::from_secs(3);

#[derive(clap::Args)]
pub struct Args {
    /// Products added to the catalog (besides the few of the demo catalog).
    #[arg(long, default_value_t = 2000)]
    products: u32,
    /// Characters in each one's description (5,000 is the most the catalog accepts).
    #[arg(long, default_value_t = 5000)]
    description_chars: u32,
    /// Distinct pages asked for: `?limit=LIMIT&offset=k` for k from 0.
    #[arg(long, default_value_t = 1000)]
    requests: u32,
    /// Page size of every request (200 is the most a client may ask for).
    #[arg(long, default_value_t = 200)]
    limit: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: u32,
    /// The bound: the run fails when products' peak resident memory passes this many MiB.
    #[arg(long, default_value_t = 64)]
    max_rss_mib: u64,
    #[command(flatten)]
    services: ServiceArgs,
}

/// What a run saw; written to `catalog-flood.json` and printed.
#[derive(Debug, Serialize)]
struct Figures {
    products: u32,
    description_chars: u32,
    requests: u32,
    limit: u32,
    concurrency: u32,
    secs: f64,
    ok: u32,
    refused: u32,
    failed: u32,
    rss_before_kib: Option<u64>,
    rss_peak_kib: u64,
    rss_after_kib: Option<u64>,
    rss_idle_after_kib: Option<u64>,
    max_rss_mib: u64,
}

/// Sets up, floods, reports and tears down; whether the peak stayed within the bound.
pub async fn run(args: Args) -> anyhow::Result<bool> {
    let settings = args.services.settings()?;
    std::fs::create_dir_all(&settings.out_dir)
        .with_context(|| format!("create {}", settings.out_dir.display()))?;
    let out_dir = settings.out_dir.clone();
    let mut fixture = Fixture::new(settings);
    tracing::info!(run = fixture.id, out = %out_dir.display(), "setting up");
    let outcome = tokio::select! {
        outcome = flood(&mut fixture, &args) => outcome,
        signal = crate::interrupted() => Err(anyhow::anyhow!("stopped by {signal}")),
    };
    fixture.teardown().await;
    let figures = outcome?;

    std::fs::write(
        out_dir.join("catalog-flood.json"),
        serde_json::to_vec_pretty(&figures)?,
    )
    .context("write catalog-flood.json")?;
    let mib =
        |kib: Option<u64>| kib.map_or("-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
    let report = format!(
        "catalog flood: {} distinct pages (limit {}, {} at a time) over {} products of {} \
         characters in {:.1} s: {} answered 200, {} refused, {} failed\n\
         products RSS (MiB): before {}, peak {}, after {}, after {} s idle {} (bound {})\n",
        figures.requests,
        figures.limit,
        figures.concurrency,
        figures.products,
        figures.description_chars,
        figures.secs,
        figures.ok,
        figures.refused,
        figures.failed,
        mib(figures.rss_before_kib),
        mib(Some(figures.rss_peak_kib)),
        mib(figures.rss_after_kib),
        IDLE.as_secs(),
        mib(figures.rss_idle_after_kib),
        figures.max_rss_mib,
    );
    use std::io::Write;
    std::io::stdout().write_all(report.as_bytes())?;
    let within = figures.rss_peak_kib <= figures.max_rss_mib * 1024;
    if !within {
        tracing::error!("products' resident memory passed the bound");
    }
    Ok(within)
}

async fn flood(fixture: &mut Fixture, args: &Args) -> anyhow::Result<Figures> {
    fixture.start().await?;
    seed(fixture, args).await?;
    let products = fixture.service(Role::ProductsPerRequest);
    let (pid, addr) = (products.pid, products.addr);
    tokio::time::sleep(IDLE).await;
    let rss_before_kib = procfs::rss_kib(pid);

    let peak = Arc::new(AtomicU64::new(rss_before_kib.unwrap_or(0)));
    let done = CancellationToken::new();
    let sampler = tokio::spawn(sample_peak(pid, peak.clone(), done.clone()));
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker(addr, args.limit, args.requests, next.clone())))
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        tally.add(worker.await.context("a flood worker panicked")?);
    }
    let secs = started.elapsed().as_secs_f64();
    let rss_after_kib = procfs::rss_kib(pid);
    done.cancel();
    sampler.await.context("the memory sampler panicked")?;
    tokio::time::sleep(IDLE).await;
    let rss_idle_after_kib = procfs::rss_kib(pid);
    Ok(Figures {
        products: args.products,
        description_chars: args.description_chars,
        requests: args.requests,
        limit: args.limit,
        concurrency: args.concurrency,
        secs,
        ok: tally.ok,
        refused: tally.refused,
        failed: tally.failed,
        rss_before_kib,
        rss_peak_kib: peak.load(Ordering::Relaxed).max(rss_after_kib.unwrap_or(0)),
        rss_after_kib,
        rss_idle_after_kib,
        max_rss_mib: args.max_rss_mib,
    })
}

/// Adds the catalog in one statement, as another replica or an import would: products learns
/// of it when its short cache expires, long before the flood starts.
async fn seed(fixture: &Fixture, args: &Args) -> anyhow::Result<()> {
    let db = Database::connect(&fixture.database_url("products")?)
        .await
        .context("connect to the run's products database")?;
    tracing::info!(
        products = args.products,
        chars = args.description_chars,
        "seeding the catalog"
    );
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO products (id, name, description, price_cents) \
         SELECT gen_random_uuid(), 'Flood product ' || n, \
                left(repeat('A long description of a product in a large catalog. ', 200), $2::int), \
                100 + n \
         FROM generate_series(1, $1::int) AS n",
        [
            i64::from(args.products).into(),
            i64::from(args.description_chars).into(),
        ],
    ))
    .await
    .context("insert the flood catalog")?;
    let _ = db.close().await;
    Ok(())
}

/// Takes the next offset until `requests` have been sent; one keep-alive connection.
async fn worker(addr: SocketAddr, limit: u32, requests: u32, next: Arc<AtomicU32>) -> Tally {
    let mut conn = Conn::new(addr);
    let mut tally = Tally::default();
    loop {
        let offset = next.fetch_add(1, Ordering::Relaxed);
        if offset >= requests {
            return tally;
        }
        let path = format!("/products?limit={limit}&offset={offset}");
        match conn.send(Call::get(&path)).await {
            Ok(answer) if answer.status.is_success() => tally.ok += 1,
            Ok(_) => tally.refused += 1,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), path, "request failed");
                tally.failed += 1;
            }
        }
    }
}

/// Keeps the highest resident memory of `pid` in `peak` until `done`.
async fn sample_peak(pid: u32, peak: Arc<AtomicU64>, done: CancellationToken) {
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            _ = ticks.tick() => {
                if let Some(kib) = procfs::rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    ok: u32,
    refused: u32,
    failed: u32,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.failed += other.failed;
    }
}
