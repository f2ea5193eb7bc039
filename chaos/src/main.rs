//! `chaos`: the load and fault driver. Sends buys, records a history, checks it against the
//! orders database (see RELIABILITY.md).

mod check;
mod load;
mod orders_db;
mod poison;
mod proxy;
mod stock;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::load::{Driver, LoadPlan, RetryPlan};

#[derive(Parser)]
#[command(about = "Load and fault driver with a history checker (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register users, send buys, retry the undecided ones, then check the history.
    Run(Box<RunArgs>),
    /// Publish poison messages to the order queue and wait for each in its dead-letter queue.
    Poison(PoisonArgs),
    /// A TCP fault proxy: SIGUSR1 partitions the link, SIGUSR2 heals it.
    Proxy(ProxyArgs),
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Where clients connect, on loopback.
    #[arg(long)]
    listen: String,
    /// The server behind the proxy, on loopback.
    #[arg(long)]
    upstream: String,
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long)]
    products: String,
    #[arg(long)]
    auth: String,
    #[arg(long)]
    orders: String,
    #[arg(long)]
    orders_db: String,
    #[arg(long)]
    products_db: String,
    /// Share of answered buys whose order is cancelled right away, in percent.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    cancel_percent: u32,
    /// Units added to every tracked product halfway through the load, as the admin.
    #[arg(long, default_value_t = 0)]
    restock: i64,
    /// The admin who restocks (scripts/seed's admin).
    #[arg(long)]
    admin_email: Option<String>,
    #[arg(long)]
    admin_password: Option<String>,
    /// Seconds the stock may take to settle once the retries are done.
    #[arg(long, default_value_t = 90)]
    settle_secs: u64,
    /// Buys started per second.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Buys in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    #[arg(long, default_value_t = 5)]
    users: usize,
    /// Where the history goes, one JSON op per line.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Client timeout per request, seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Hard cap on the buys of the load phase.
    #[arg(long, default_value_t = 20_000)]
    max_requests: u64,
    /// Time the retry phase may take, seconds.
    #[arg(long, default_value_t = 60)]
    retry_secs: u64,
    /// Attempts per undecided key in the retry phase.
    #[arg(long, default_value_t = 20)]
    retry_attempts: u32,
}

#[derive(clap::Args)]
struct PoisonArgs {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    #[arg(long)]
    queue: String,
    /// Seconds to wait for every poison message to reach the dead-letter queue.
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "chaos=info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args).await,
        Command::Poison(args) => poison::run(&args.amqp, &args.queue, args.wait).await,
        Command::Proxy(args) => proxy(&args).await,
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

// The driver breaks things on purpose: it refuses any target that is not this machine.
use common::testing::require_loopback;

async fn proxy(args: &ProxyArgs) -> anyhow::Result<bool> {
    for (what, addr) in [("--listen", &args.listen), ("--upstream", &args.upstream)] {
        require_loopback(what, &format!("tcp://{addr}"))?;
    }
    proxy::run(&args.listen, &args.upstream).await
}

async fn run(args: RunArgs) -> anyhow::Result<bool> {
    for (what, url) in [
        ("--products", &args.products),
        ("--auth", &args.auth),
        ("--orders", &args.orders),
        ("--orders-db", &args.orders_db),
        ("--products-db", &args.products_db),
    ] {
        require_loopback(what, url)?;
    }
    if args.rate == 0 || args.concurrency == 0 || args.users == 0 {
        bail!("--rate, --concurrency and --users must be positive");
    }
    let driver = Arc::new(Driver::new(
        &args.auth,
        &args.products,
        &args.orders,
        Duration::from_secs(args.timeout),
    )?);
    let ledgers = stock::Ledgers::connect(&args.products_db, &args.orders_db).await?;
    let initial_stock = ledgers.stock().await?;
    let mut users = Vec::with_capacity(args.users);
    for _ in 0..args.users {
        users.push(driver.register().await?);
    }
    let users = Arc::new(users);
    let products = Arc::new(driver.products().await?);
    let restocks = restock_halfway(&driver, &args, &initial_stock).await?;
    tracing::info!(
        users = users.len(),
        products = products.len(),
        tracked = initial_stock.len(),
        "load starts"
    );

    let plan = LoadPlan {
        rate: args.rate,
        concurrency: args.concurrency,
        duration: Duration::from_secs(args.duration),
        max_requests: args.max_requests,
        cancel_percent: args.cancel_percent,
    };
    let load::Loaded {
        buys: mut history,
        mut cancels,
    } = load::load(driver.clone(), users.clone(), products, &plan).await;
    let mut latencies: Vec<u64> = history.iter().map(check::Op::latency_ms).collect();

    let undecided = load::undecided(&history);
    tracing::info!(
        buys = history.len(),
        undecided = undecided.len(),
        cancels = cancels.len(),
        "load done; retrying"
    );
    let retry_plan = RetryPlan {
        per_key_attempts: args.retry_attempts,
        budget: Duration::from_secs(args.retry_secs),
        concurrency: args.concurrency,
    };
    history.extend(load::retry(driver.clone(), users.clone(), undecided, &retry_plan).await);
    let more = load::retry_cancels(driver, users.clone(), &cancels, &retry_plan).await;
    cancels.extend(more);
    let restocks = restocks.await.context("the restock task")?;

    if let Some(path) = &args.out {
        write_history(path, &history)?;
    }
    let user_ids: Vec<uuid::Uuid> = users.iter().map(|u| u.id).collect();
    let orders = orders_db::orders_of(&args.orders_db, &user_ids).await?;
    let report = check::check(&history, &orders);
    for anomaly in &report.anomalies {
        tracing::error!("{anomaly}");
    }
    let settled = ledgers
        .settle(
            &initial_stock,
            &restocks,
            Duration::from_secs(args.settle_secs),
        )
        .await;
    let cancel_anomalies = stock::cancel_anomalies(&cancels, &ledgers.cancelled().await?);
    for anomaly in settled.mismatches.iter().chain(&cancel_anomalies) {
        tracing::error!("{anomaly}");
    }
    if !settled.settled {
        tracing::error!(
            pending = settled.snapshot.pending,
            unsent = settled.snapshot.unsent,
            "the stock did not settle in {} s",
            args.settle_secs
        );
    }
    let p50 = check::percentile(&mut latencies, 0.50);
    let p99 = check::percentile(&mut latencies, 0.99);
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "buys={} ok={} unknown={} retried={} lost={} duplicated={} unexpected={} unresolved={} p50_ms={p50} p99_ms={p99} \
         cancelled={} cancel_anomalies={} restocks={} stock_mismatches={} pending={} unsent={} settled_ms={}",
        report.buys,
        report.ok,
        report.unknown,
        report.retried,
        report.lost,
        report.duplicated,
        report.unexpected,
        report.unresolved,
        load::answered_cancelled(&cancels).len(),
        cancel_anomalies.len(),
        restocks.len(),
        settled.mismatches.len(),
        settled.snapshot.pending,
        settled.snapshot.unsent,
        settled.took.as_millis(),
    )?;
    Ok(report.passed() && settled.settled && cancel_anomalies.is_empty())
}

/// With `--restock N`, adds N units to every tracked product halfway through the load, as the
/// admin, in a task of its own; the task answers what each restock learnt.
async fn restock_halfway(
    driver: &Arc<Driver>,
    args: &RunArgs,
    tracked: &std::collections::HashMap<uuid::Uuid, i64>,
) -> anyhow::Result<tokio::task::JoinHandle<Vec<stock::Restock>>> {
    let products: Vec<uuid::Uuid> = if args.restock > 0 {
        tracked.keys().copied().collect()
    } else {
        Vec::new()
    };
    let token = match (&args.admin_email, &args.admin_password) {
        _ if products.is_empty() => String::new(),
        (Some(email), Some(password)) => driver.login(email, password).await?,
        _ => bail!("--restock needs --admin-email and --admin-password"),
    };
    let (driver, add) = (driver.clone(), args.restock);
    let halfway = Duration::from_secs(args.duration) / 2;
    Ok(tokio::spawn(async move {
        tokio::time::sleep(halfway).await;
        let mut done = Vec::with_capacity(products.len());
        for product_id in products {
            let outcome = driver.restock(&token, product_id, add).await;
            tracing::info!(%product_id, add, ?outcome, "restocked");
            done.push(stock::Restock {
                product_id,
                add,
                outcome,
            });
        }
        done
    }))
}

fn write_history(path: &PathBuf, history: &[check::Op]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for op in history {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
