//! `bench`: the benchmark harness. Sets up databases, queues and the release service binaries
//! of its own on loopback (started and seeded by `scripts/run-local`), sweeps each scenario over
//! a range of concurrency, holds the buys against a bare broker-and-database harness and login
//! against the argon2 bound, and writes `results.md`, `results.json` and two SVG charts. Load
//! runs on loopback only; every loop is bounded in time and in count.

mod argon;
mod attack;
mod bare;
mod catalog_flood;
mod chart;
mod fixture;
mod http;
mod load;
mod otlp_sink;
mod procfs;
mod report;
mod scenario;
mod seed;
mod stats;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use common::messages::{CreateOrderReplyV1, CreateOrderV1, OrderLineV1};

use crate::fixture::{Fixture, Role, ServiceArgs};
use crate::load::{Pacer, Plan};
use crate::procfs::{CpuSample, GroupSample};
use crate::report::{Memory, PointResult, ProcessFigures, Results, RunFigures, ScenarioResult};
use crate::scenario::{Scenario, Targets};
use crate::stats::Summary;

const MAX_REQUESTS: u64 = 200_000;
/// Login runs at argon2's pace, a few dozen a second: a few seconds show it as well as ten.
const LOGIN_MEASURED_CAP: Duration = Duration::from_secs(3);
/// Tokio worker threads: one per core of the machine the bench was written for. The services
/// use the same cores, so more would only add contention.
const RUNTIME_WORKERS: usize = 2;
/// How long the services idle after seeding before their memory is read, and after all load.
const IDLE_BEFORE: Duration = Duration::from_secs(3);
const IDLE_AFTER: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(
    about = "Benchmark harness: throughput and latency of the services against their bounds (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up, seed, run every scenario's concurrency sweep, report, and clean up.
    Run(RunArgs),
    /// Abuse measurements against an auth already running on loopback (SECURITY.md).
    #[command(subcommand)]
    Attack(attack::Attack),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Short points (0.3 s warm-up, 2 s measured) and a sweep of 1, 8, 32: under two minutes.
    #[arg(long)]
    quick: bool,
    /// How many times each point runs; the report gives the medians [default: 3, --quick: 1].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=9))]
    runs: Option<u16>,
    /// Run only these scenarios (comma-separated names, as in the report).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Export the services' spans over OTLP to a collector in the bench process that keeps
    /// nothing, to measure what exporting costs (the collector's CPU counts as the bench's).
    #[arg(long)]
    export_spans: bool,
    #[command(flatten)]
    services: ServiceArgs,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "bench=info".into()),
        )
        .init();
    let command = Cli::parse().command;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_WORKERS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let outcome = match command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Attack(attack) => runtime.block_on(attack::run(attack)),
    };
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Whether every scenario had successes; an error when setup failed or the run was stopped.
async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut settings = args.services.settings()?;
    // Kept until the run ends; the services send to it.
    let sink = if args.export_spans {
        let sink = otlp_sink::OtlpSink::start().await?;
        settings
            .service_env
            .push(format!("OTEL_EXPORTER_OTLP_ENDPOINT={}", sink.endpoint()));
        Some(sink)
    } else {
        None
    };
    std::fs::create_dir_all(&settings.out_dir)
        .with_context(|| format!("create {}", settings.out_dir.display()))?;
    let out_dir = settings.out_dir.clone();
    let mut fixture = Fixture::new(settings);
    tracing::info!(
        run = fixture.id,
        out = %out_dir.display(),
        "setting up"
    );
    let outcome = tokio::select! {
        outcome = measure(&mut fixture, &args, started) => outcome,
        signal = interrupted() => Err(anyhow::anyhow!("stopped by {signal}")),
    };
    fixture.teardown().await;
    drop(sink);
    let results = outcome?;

    let markdown = report::markdown(&results);
    std::fs::write(out_dir.join("results.md"), &markdown).context("write results.md")?;
    let json = serde_json::to_vec_pretty(&results)?;
    std::fs::write(out_dir.join("results.json"), json).context("write results.json")?;
    chart::write_charts(&results, &out_dir).context("draw the charts")?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(markdown.as_bytes())?;
    stdout.flush()?;

    let empty: Vec<&str> = results
        .scenarios
        .iter()
        .filter(|s| s.points.iter().all(|p| p.summary.ok == 0))
        .map(|s| s.name.as_str())
        .collect();
    if !empty.is_empty() {
        tracing::error!(scenarios = ?empty, "scenarios with only errors");
    }
    Ok(empty.is_empty())
}

async fn interrupted() -> &'static str {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Everything between setup and teardown.
async fn measure(
    fixture: &mut Fixture,
    args: &RunArgs,
    started: Instant,
) -> anyhow::Result<Results> {
    let (plan, sweep) = if args.quick {
        (
            Plan {
                warmup: Duration::from_millis(300),
                measured: Duration::from_secs(2),
                max_requests: MAX_REQUESTS,
            },
            vec![1, 8, 32],
        )
    } else {
        (
            Plan {
                warmup: Duration::from_secs(1),
                measured: Duration::from_secs(10),
                max_requests: MAX_REQUESTS,
            },
            vec![1, 8, 32, 64],
        )
    };
    let runs = usize::from(args.runs.unwrap_or(if args.quick { 1 } else { 3 }));
    fixture.start().await?;
    let addr = |role| fixture.service(role).addr;
    tracing::info!("seeding");
    let seeded = seed::seed(fixture, addr(Role::Auth), addr(Role::ProductsPerRequest)).await?;
    // In the column order of the report.
    let services: Vec<(String, u32)> = [
        Role::Auth,
        Role::ProductsPerRequest,
        Role::ProductsDirect,
        Role::Orders,
    ]
    .iter()
    .map(|&role| (role.name().to_owned(), fixture.service(role).pid))
    .collect();

    tokio::time::sleep(IDLE_BEFORE).await;
    let idle: Vec<Option<u64>> = services
        .iter()
        .map(|(_, pid)| procfs::rss_kib(*pid))
        .collect();

    let argon_secs = Duration::from_secs(if args.quick { 1 } else { 3 });
    let tokens = Tokens::new(Targets {
        auth: addr(Role::Auth),
        products_per_request: addr(Role::ProductsPerRequest),
        products_direct: addr(Role::ProductsDirect),
        seeded,
    });
    let wanted = |scenario: Scenario| {
        args.only.is_empty() || args.only.iter().any(|name| name == scenario.name())
    };

    // Everything the scenarios talk to is set up before the first of them runs: they take
    // turns point by point, so each is measured a few minutes at most from its bound.
    let stop = tokio_util::sync::CancellationToken::new();
    let broker = common::amqp::Broker::start(fixture.settings.amqp_url.clone(), stop.clone());
    if !broker.wait_connected(Duration::from_secs(10)).await {
        bail!("the orders-direct client could not connect to RabbitMQ");
    }
    let bare_db = fixture.database_url("bare")?;
    bare::prepare_database(&bare_db).await?;
    let amqp = fixture.settings.amqp_url.clone();
    let server = bare::Server::start(&amqp, &fixture.bare_queue, &bare_db).await?;
    let mut bare_clients = Vec::new();
    let mut members = Vec::new();
    for scenario in Scenario::REPORTED.into_iter().filter(|&s| wanted(s)) {
        let mut member_plan = plan;
        if scenario == Scenario::Login {
            member_plan.measured = plan.measured.min(LOGIN_MEASURED_CAP);
        }
        let worker: Worker = match scenario {
            Scenario::OrdersDirect => {
                let client = common::amqp::RpcClient::<CreateOrderV1>::new(
                    broker.clone(),
                    fixture.queue.clone(),
                    common::amqp::ReplyMode::Direct,
                    bare::CALL_TIMEOUT,
                );
                Box::new(move |_, pacer| Box::pin(orders_worker(client.clone(), pacer)))
            }
            Scenario::BarePerRequest | Scenario::BareDirect => {
                let mode = if scenario == Scenario::BareDirect {
                    bare::Mode::Direct
                } else {
                    bare::Mode::PerRequest
                };
                let client =
                    Arc::new(bare::Client::connect(&amqp, &fixture.bare_queue, mode).await?);
                bare_clients.push(client.clone());
                Box::new(move |_, pacer| Box::pin(bare_worker(client.clone(), pacer)))
            }
            _ => {
                let tokens = tokens.clone();
                Box::new(move |_, pacer| {
                    Box::pin(scenario::http_worker(scenario, tokens.current(), pacer))
                })
            }
        };
        members.push(Member {
            scenario,
            plan: member_plan,
            // The bare harness runs in the bench process: the services only idle beside it.
            services: if scenario.is_bare() {
                Vec::new()
            } else {
                services.clone()
            },
            worker,
        });
    }
    let measured = run_schedule(&members, &sweep, runs, argon_secs, &tokens).await;
    drop(members);
    for client in bare_clients {
        if let Ok(client) = Arc::try_unwrap(client) {
            client.close().await;
        }
    }
    server.stop().await;
    stop.cancel();
    broker.close().await;
    let (scenarios, mut argon2_runs) = measured?;
    if argon2_runs.is_empty() {
        // No login ran beside it: the bound is measured on its own.
        for _ in 0..runs {
            argon2_runs.push(measure_argon2(argon_secs).await?);
        }
    }
    let argon2 = argon::summarize(argon2_runs)?;

    tracing::info!(
        secs = IDLE_AFTER.as_secs(),
        "load done; idling before the last memory reading"
    );
    tokio::time::sleep(IDLE_AFTER).await;
    let memory = services
        .iter()
        .zip(idle)
        .map(|((name, pid), idle_kib)| Memory {
            service: name.clone(),
            idle_kib,
            after_kib: procfs::rss_kib(*pid),
        })
        .collect();

    let mut results = Results {
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        run_id: fixture.id.clone(),
        machine: report::Machine::detect(),
        mode: if args.quick { "quick" } else { "full" }.to_owned(),
        warmup_secs: plan.warmup.as_secs_f64(),
        measured_secs: plan.measured.as_secs_f64(),
        runs,
        max_requests: plan.max_requests,
        harness: format!(
            "tokio multi-thread runtime with {RUNTIME_WORKERS} worker threads; HTTP client: \
             hyper 1 HTTP/1.1 client connections, one keep-alive connection per worker and \
             server, no pool, {} s request timeout; bare harness: lapin client and server on \
             two connections of the bench process (so its CPU column covers both), {} s call \
             timeout; login measured for at most {} s",
            http::REQUEST_TIMEOUT.as_secs(),
            bare::CALL_TIMEOUT.as_secs(),
            LOGIN_MEASURED_CAP.as_secs()
        ),
        memory,
        argon2,
        scenarios,
        elapsed_secs: started.elapsed().as_secs_f64(),
    };
    report::fill_ratios(&mut results);
    Ok(results)
}

async fn bare_worker(client: Arc<bare::Client>, mut pacer: Pacer) -> anyhow::Result<Pacer> {
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    while let Some(phase) = pacer.next() {
        let start = tokio::time::Instant::now();
        let outcome = client.call(&mut rng).await;
        pacer.record(phase, start, outcome);
    }
    Ok(pacer)
}

/// Sends orders what products would for a buy of 1-3 lines, by a random buyer, with a fresh
/// key: orders does not check that users or products exist, so none are needed.
async fn orders_worker(
    client: common::amqp::RpcClient<CreateOrderV1>,
    mut pacer: Pacer,
) -> anyhow::Result<Pacer> {
    use rand::Rng;
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    while let Some(phase) = pacer.next() {
        let lines = (0..rng.random_range(1..=3))
            .map(|i| OrderLineV1 {
                product_id: common::ids::ProductId::new(),
                name: format!("Product {i}"),
                unit_price_cents: rng.random_range(100..10_000),
                quantity: rng.random_range(1..=3),
            })
            .collect();
        let request = CreateOrderV1 {
            user_id: common::ids::UserId::new(),
            email: "buyer@example.com".to_owned(),
            lines,
            idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
            reservation_id: None,
        };
        let start = tokio::time::Instant::now();
        let outcome = match client.call(&request, Default::default()).await {
            Ok(CreateOrderReplyV1::Order(_)) => Ok(()),
            Ok(CreateOrderReplyV1::Problem(p)) => Err(format!("problem {}", p.status)),
            Err(e) => Err(e.to_string()),
        };
        pacer.record(phase, start, outcome);
    }
    Ok(pacer)
}

fn cpu_samples(pids: &[(String, u32)]) -> Vec<Option<CpuSample>> {
    pids.iter().map(|(_, pid)| CpuSample::take(*pid)).collect()
}

/// The processes of the broker and of the database, by the names their servers run under,
/// in the order of [`report::INFRA_COLUMNS`].
fn infra_pids() -> Vec<(&'static str, Vec<u32>)> {
    vec![
        ("rabbitmq", procfs::pids_named(|comm| comm == "beam.smp")),
        ("postgresql", procfs::pids_named(|comm| comm == "postgres")),
    ]
}

/// What the kernel says about one run of a point.
struct RunReading {
    summary: Summary,
    services: Vec<ProcessFigures>,
    infra: Vec<ProcessFigures>,
    bench_cpu_percent: Option<f64>,
    /// The argon2 bound measured just before this run (login only).
    argon2_per_sec: Option<f64>,
}

impl RunReading {
    /// CPU ms of every process read, per successful request.
    fn cpu_ms_per_request(&self) -> Option<f64> {
        let percent: f64 = self
            .services
            .iter()
            .chain(&self.infra)
            .filter_map(|f| f.cpu_percent)
            .chain(self.bench_cpu_percent)
            .sum();
        (self.summary.throughput > 0.0).then(|| percent / 100.0 / self.summary.throughput * 1e3)
    }
}

/// How old the buyers' tokens may get before a run that uses them: auth's tokens live 15
/// minutes (`TOKEN_TTL_SECS`), and a full run takes longer than that.
const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(5 * 60);

/// The targets of the HTTP scenarios, with the buyers' tokens renewed as a long-running
/// client would renew them. A run's workers take the current targets when they start.
#[derive(Clone)]
struct Tokens {
    current: Arc<std::sync::RwLock<(Arc<Targets>, Instant)>>,
}

impl Tokens {
    fn new(targets: Targets) -> Self {
        Self {
            current: Arc::new(std::sync::RwLock::new((Arc::new(targets), Instant::now()))),
        }
    }

    fn current(&self) -> Arc<Targets> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone()
    }

    /// Logs every buyer in again when their tokens are older than [`TOKEN_REFRESH_AFTER`].
    async fn refresh_if_old(&self) -> anyhow::Result<()> {
        let (targets, issued) = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if issued.elapsed() < TOKEN_REFRESH_AFTER {
            return Ok(());
        }
        tracing::info!(
            age_secs = issued.elapsed().as_secs(),
            "logging the buyers in again for fresh tokens"
        );
        let mut renewed = Targets::clone(&targets);
        renewed.seeded.buyers = seed::log_in_again(targets.auth, &targets.seeded.buyers).await?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            (Arc::new(renewed), Instant::now());
        Ok(())
    }
}

/// What drives one scenario's workers: the closed loop of worker `index`.
type Worker = Box<
    dyn Fn(usize, Pacer) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<Pacer>> + Send>>,
>;

/// A scenario as the schedule runs it.
struct Member {
    scenario: Scenario,
    plan: Plan,
    /// The services whose CPU and memory its runs read.
    services: Vec<(String, u32)>,
    worker: Worker,
}

/// Runs every member at each concurrency of `sweep`, `runs` times, taking turns: at each
/// concurrency, run 1 goes through the members in [`Scenario::RUN_ORDER`], run 2 in the
/// reverse order, and so on, so a scenario's run sits next to its bound's run of the same
/// number, and the drift of the machine's speed over the minutes of a run falls on both.
/// Each login run follows a measurement of the argon2 bound, returned in order. A point's
/// figures are the medians of its runs; the scenarios come back in [`Scenario::REPORTED`]
/// order.
async fn run_schedule(
    members: &[Member],
    sweep: &[usize],
    runs: usize,
    argon_secs: Duration,
    tokens: &Tokens,
) -> anyhow::Result<(Vec<ScenarioResult>, Vec<argon::Argon2Bound>)> {
    let me = vec![("bench".to_owned(), std::process::id())];
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by_key(|&i| {
        Scenario::RUN_ORDER
            .iter()
            .position(|&s| s == members[i].scenario)
    });
    // readings[member][point][run]
    let mut readings: Vec<Vec<Vec<RunReading>>> = members
        .iter()
        .map(|_| sweep.iter().map(|_| Vec::with_capacity(runs)).collect())
        .collect();
    let mut argon2_runs = Vec::new();
    for (point, &concurrency) in sweep.iter().enumerate() {
        for run in 0..runs.max(1) {
            let turn: Vec<usize> = if run % 2 == 0 {
                order.clone()
            } else {
                order.iter().rev().copied().collect()
            };
            for i in turn {
                let member = &members[i];
                if member.scenario.uses_tokens() {
                    tokens.refresh_if_old().await?;
                }
                let argon2 = if member.scenario == Scenario::Login {
                    let bound = measure_argon2(argon_secs).await?;
                    let per_sec = bound.per_sec;
                    argon2_runs.push(bound);
                    Some(per_sec)
                } else {
                    None
                };
                let mut reading = run_once(
                    member.scenario,
                    concurrency,
                    member.plan,
                    &member.services,
                    &me,
                    &member.worker,
                )
                .await?;
                reading.argon2_per_sec = argon2;
                tracing::info!(
                    scenario = member.scenario.name(),
                    concurrency,
                    run = run + 1,
                    requests = reading.summary.requests,
                    throughput = format!("{:.1}", reading.summary.throughput),
                    p99_ms = reading.summary.p99_ms,
                    errors = reading.summary.errors,
                    "run done"
                );
                readings[i][point].push(reading);
            }
        }
    }
    let scenarios = members
        .iter()
        .zip(readings)
        .map(|(member, points)| {
            let scenario = member.scenario;
            Ok(ScenarioResult {
                name: scenario.name().to_owned(),
                description: scenario.describe().to_owned(),
                bound: scenario.bound().map(|b| b.name().to_owned()),
                points: sweep
                    .iter()
                    .zip(points)
                    .map(|(&concurrency, runs)| median_point(concurrency, &runs))
                    .collect::<anyhow::Result<_>>()?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((scenarios, argon2_runs))
}

/// One measurement of the argon2 bound, on a thread of the blocking pool.
async fn measure_argon2(secs: Duration) -> anyhow::Result<argon::Argon2Bound> {
    tracing::info!(secs = secs.as_secs(), "measuring the argon2 bound");
    tokio::task::spawn_blocking(move || argon::measure(RUNTIME_WORKERS, secs)).await?
}

async fn run_once<W, Fut>(
    scenario: Scenario,
    concurrency: usize,
    plan: Plan,
    services: &[(String, u32)],
    me: &[(String, u32)],
    worker: &W,
) -> anyhow::Result<RunReading>
where
    W: Fn(usize, Pacer) -> Fut,
    Fut: Future<Output = anyhow::Result<Pacer>> + Send + 'static,
{
    let infra = infra_pids();
    let infra_samples = || -> Vec<GroupSample> {
        infra
            .iter()
            .map(|(_, pids)| GroupSample::take(pids))
            .collect()
    };
    let (mut before, mut after) = (None, None);
    let run = load::run_point(
        concurrency,
        plan,
        worker,
        || before = Some((cpu_samples(services), cpu_samples(me), infra_samples())),
        || after = Some((cpu_samples(services), cpu_samples(me), infra_samples())),
    )
    .await
    .with_context(|| format!("{} at C={concurrency}", scenario.name()))?;
    let (Some(before), Some(after)) = (before, after) else {
        bail!("a point ended without its CPU readings");
    };
    let share = |a: &Option<CpuSample>, b: &Option<CpuSample>| match (a, b) {
        (Some(a), Some(b)) => Some(a.percent_until(b)),
        _ => None,
    };
    Ok(RunReading {
        summary: run.tally.summarize(run.wall),
        services: services
            .iter()
            .zip(before.0.iter().zip(&after.0))
            .map(|((name, pid), (a, b))| ProcessFigures {
                service: name.clone(),
                rss_kib: procfs::rss_kib(*pid),
                cpu_percent: share(a, b),
            })
            .collect(),
        infra: infra
            .iter()
            .zip(before.2.iter().zip(&after.2))
            .map(|((name, pids), (a, b))| ProcessFigures {
                service: (*name).to_owned(),
                rss_kib: None,
                cpu_percent: (!pids.is_empty()).then(|| a.percent_until(b)),
            })
            .collect(),
        bench_cpu_percent: share(&before.1[0], &after.1[0]),
        argon2_per_sec: None,
    })
}

/// One point from its runs: the medians of their figures, and the memory of the last.
fn median_point(concurrency: usize, readings: &[RunReading]) -> anyhow::Result<PointResult> {
    let summaries: Vec<Summary> = readings.iter().map(|r| r.summary.clone()).collect();
    let summary = Summary::median_of(&summaries).context("a point without runs")?;
    let last = readings.last().context("a point without runs")?;
    let median_of = |figures: &[ProcessFigures], pick: fn(&RunReading) -> &[ProcessFigures]| {
        figures
            .iter()
            .enumerate()
            .map(|(i, figure)| ProcessFigures {
                service: figure.service.clone(),
                rss_kib: figure.rss_kib,
                cpu_percent: stats::median(
                    readings.iter().filter_map(|r| pick(r).get(i)?.cpu_percent),
                ),
            })
            .collect()
    };
    Ok(PointResult {
        concurrency,
        summary,
        services: median_of(&last.services, |r| &r.services),
        infra: median_of(&last.infra, |r| &r.infra),
        bench_cpu_percent: stats::median(readings.iter().filter_map(|r| r.bench_cpu_percent)),
        cpu_ms_per_request: stats::median(
            readings.iter().filter_map(RunReading::cpu_ms_per_request),
        ),
        runs: readings
            .iter()
            .map(|r| RunFigures {
                throughput: r.summary.throughput,
                p99_ms: r.summary.p99_ms,
                argon2_per_sec: r.argon2_per_sec,
            })
            .collect(),
        ratio_to_bound: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_output_sits_beside_the_binary_directory() {
        let args = Cli::parse_from(["bench", "run", "--quick"]);
        let Command::Run(args) = args.command else {
            panic!("bench run parses as the run command");
        };
        let settings = args.services.settings().unwrap();
        let exe_dir = std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .to_owned();
        assert_eq!(settings.bin_dir, exe_dir);
        assert_eq!(settings.out_dir, exe_dir.parent().unwrap().join("bench"));
        assert!(args.quick);
    }
}
