//! Everything a run sets up and must take down again: its databases, its queues, and the
//! service processes on loopback ports of their own. The services are started, seeded and
//! stopped by `scripts/run-local`, the launcher every local run of the shop goes through (it
//! seeds with `scripts/seed` and `bench/catalog.json`); the bench only says what it wants.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use common::testing::require_loopback;
use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use tokio::process::Command;

/// The launcher and the catalog it seeds, in the checkout the bench was built from.
const LAUNCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/run-local");
const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.json");
/// A bound on `run-local start`, which has its own (a minute for `/readyz`) and then seeds.
const START_WAIT: Duration = Duration::from_secs(300);
/// How long a service gets to exit after SIGTERM before the launcher kills it.
const STOP_WAIT_SECS: u32 = 5;

/// The options of every command that starts the services: where the binaries and the servers
/// are, and where results go.
#[derive(clap::Args)]
pub struct ServiceArgs {
    /// Where results and service logs go [default: target/bench, beside the binary's directory].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the auth, products and orders binaries are [default: the bench binary's directory].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// First of four consecutive ports for the services [default: free ports from the kernel].
    #[arg(long)]
    base_port: Option<u16>,
    /// RUST_LOG for the services.
    #[arg(long, default_value = "info")]
    log: String,
    /// More environment for every service, as NAME=VALUE (repeatable): to measure a setting
    /// such as OTEL_EXPORTER_OTLP_ENDPOINT. Without it the services get only what the run sets.
    #[arg(long = "service-env", value_name = "NAME=VALUE")]
    service_env: Vec<String>,
    /// Track the stock of every seeded product, starting at N units [default: not tracked]:
    /// every buy then takes its units in products' database, and orders' events give them back
    /// when an order is cancelled. Keep N above what the run buys (a short stock answers 409).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..=1_000_000_000))]
    stock: Option<i64>,
    /// A server-level PostgreSQL URL; the run's databases are created and dropped through it.
    #[arg(
        long,
        env = "PGURL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_url: String,
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
}

impl ServiceArgs {
    /// The settings these options give; refuses servers that are not on this machine, since
    /// the bench sends them load.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        require_loopback("PGURL", &self.pg_url)?;
        require_loopback("AMQP_URL", &self.amqp_url)?;
        let exe = std::env::current_exe().context("locate the bench binary")?;
        let exe_dir = exe
            .parent()
            .context("the bench binary has no directory")?
            .to_owned();
        let out_dir = match &self.out {
            Some(dir) => dir.clone(),
            // target/release/bench writes to target/bench.
            None => exe_dir.parent().unwrap_or(&exe_dir).join("bench"),
        };
        let out_dir = if out_dir.is_absolute() {
            out_dir
        } else {
            std::env::current_dir()?.join(out_dir)
        };
        Ok(Settings {
            pg_admin_url: self.pg_url.clone(),
            amqp_url: self.amqp_url.clone(),
            bin_dir: self.bin_dir.clone().unwrap_or(exe_dir),
            out_dir,
            service_log: self.log.clone(),
            service_env: self.service_env.clone(),
            stock: self.stock,
            base_port: self.base_port,
        })
    }
}

/// Where the run's servers are and where its files go.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A server-level PostgreSQL URL (its database is only used to create the others).
    pub pg_admin_url: String,
    pub amqp_url: String,
    pub bin_dir: PathBuf,
    pub out_dir: PathBuf,
    /// `RUST_LOG` for the services.
    pub service_log: String,
    /// More `NAME=VALUE` pairs for every service's environment.
    pub service_env: Vec<String>,
    /// The stock every seeded product starts with; `None`: not tracked.
    pub stock: Option<i64>,
    /// First of four consecutive ports; `None` asks the kernel for free ones.
    pub base_port: Option<u16>,
}

/// The service processes a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Auth,
    Orders,
    ProductsPerRequest,
    ProductsDirect,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Auth,
        Role::Orders,
        Role::ProductsPerRequest,
        Role::ProductsDirect,
    ];

    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Role::Auth => "auth",
            Role::Orders => "orders",
            Role::ProductsPerRequest => "products-per-request",
            Role::ProductsDirect => "products-direct",
        }
    }

    /// Its instance of `run-local`, which names its log file. The launcher always runs one
    /// instance of each service under the service's own name; the second products is an extra.
    fn instance(self) -> &'static str {
        match self {
            Role::Auth => "auth",
            Role::Orders => "orders",
            Role::ProductsPerRequest => "products",
            Role::ProductsDirect => "products-direct",
        }
    }
}

/// A running service process.
pub struct Service {
    pub role: Role,
    pub addr: SocketAddr,
    pub pid: u32,
}

/// The run's resources. Build it with [`Fixture::new`], then [`Fixture::start`]; whatever
/// happens after, [`Fixture::teardown`] removes what was actually created.
pub struct Fixture {
    pub settings: Settings,
    /// Unique to the run: in database and queue names.
    pub id: String,
    /// The queue the services send buys to; the run's other queues are named after it.
    pub queue: String,
    /// The bare harness's queue.
    pub bare_queue: String,
    created_databases: Vec<String>,
    /// Whether the launcher was asked to start anything, so there may be something to stop.
    launched: bool,
    pub services: Vec<Service>,
}

impl Fixture {
    pub fn new(settings: Settings) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Self {
            queue: format!("BENCH_{id}"),
            bare_queue: format!("BENCH_{id}_bare"),
            id,
            settings,
            created_databases: Vec::new(),
            launched: false,
            services: Vec::new(),
        }
    }

    /// The name of the run's database for `purpose` (`auth`, `products`, `orders`, `bare`).
    pub fn database_name(&self, purpose: &str) -> String {
        format!("bench_{}_{purpose}", self.id)
    }

    /// A URL reaching the run's database for `purpose`.
    pub fn database_url(&self, purpose: &str) -> anyhow::Result<String> {
        let mut url = url::Url::parse(&self.settings.pg_admin_url).context("PGURL")?;
        url.set_path(&self.database_name(purpose));
        Ok(url.into())
    }

    pub fn service(&self, role: Role) -> &Service {
        self.services
            .iter()
            .find(|s| s.role == role)
            .expect("every role is started before any scenario runs")
    }

    /// The queue of orders' answers about reservations.
    fn resolve_queue(&self) -> String {
        format!("{}_RESOLVE", self.queue)
    }

    /// The queue both products processes take order events from.
    fn events_queue(&self) -> String {
        format!("{}.events", self.queue)
    }

    /// The catalog to seed: `bench/catalog.json`, or with `--stock` a copy of it in the output
    /// directory where every product has that stock.
    fn catalog(&self) -> anyhow::Result<PathBuf> {
        let Some(stock) = self.settings.stock else {
            return Ok(PathBuf::from(CATALOG));
        };
        let text = std::fs::read_to_string(CATALOG).with_context(|| format!("read {CATALOG}"))?;
        let mut products: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(&text).with_context(|| format!("parse {CATALOG}"))?;
        for product in &mut products {
            product.insert("stock".to_owned(), stock.into());
        }
        std::fs::create_dir_all(&self.settings.out_dir)?;
        let path = self.settings.out_dir.join("catalog-stocked.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&products)?)
            .with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// The launcher's state directory: the services' logs and pid files.
    fn state_dir(&self) -> PathBuf {
        self.settings.out_dir.join("services")
    }

    /// Creates the bare harness's database, then has the launcher create the services'
    /// databases, start auth, orders and the two products processes, and seed the catalog.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        // The bare harness is the bench's own, not a service: its database is made here.
        let admin = Database::connect(&self.settings.pg_admin_url)
            .await
            .with_context(|| {
                format!(
                    "PostgreSQL does not answer at {} (set PGURL)",
                    self.settings.pg_admin_url
                )
            })?;
        let name = self.database_name("bare");
        // Identifiers cannot be bound as parameters; the name is ours (hex and `_`).
        admin
            .execute_raw(Statement::from_string(
                DbBackend::Postgres,
                ["CREATE DATABASE \"", &name, "\""].concat(),
            ))
            .await
            .with_context(|| format!("create database {name}"))?;
        self.created_databases.push(name);
        let _ = admin.close().await;

        let ports = self.ports()?;
        let catalog = self.catalog()?;
        let mut launcher = self.launcher("start")?;
        launcher
            .arg("--bin-dir")
            .arg(&self.settings.bin_dir)
            .args(["--db-prefix", &format!("bench_{}_", self.id)])
            .arg("--catalog")
            .arg(&catalog)
            .args(["--instance", "products-direct=products"])
            // Only the variables of API.md: a DB_MAX_CONNECTIONS or RPC_TIMEOUT_MS left in the
            // caller's shell would silently change what is measured.
            .arg("--clean-env")
            .args(["--env", &format!("RUST_LOG={}", self.settings.service_log)])
            .args(["--env", &format!("AMQP_URL={}", self.settings.amqp_url)])
            .args(["--env", &format!("ORDER_QUEUE={}", self.queue)])
            .args(["--env", &format!("RESOLVE_QUEUE={}", self.resolve_queue())])
            .args([
                "--env",
                &format!("products:ORDER_EVENTS_QUEUE={}", self.events_queue()),
            ])
            .args([
                "--env",
                &format!("products-direct:ORDER_EVENTS_QUEUE={}", self.events_queue()),
            ])
            .args(["--env", "products:RPC_REPLY_MODE=per-request"])
            .args(["--env", "products-direct:RPC_REPLY_MODE=direct"])
            // The bench registers and logs in its buyers from 127.0.0.1 as fast as auth lets it,
            // and measures login at up to 64 at once: the abuse limits (429 past a burst per
            // address, 503 past a few queued hashes) would measure themselves instead.
            .args(["--env", "auth:RATE_LIMIT_ENABLED=false"])
            .args(["--env", "auth:HASH_QUEUE_CAPACITY=256"])
            .args(["--env", "auth:HASH_QUEUE_DEADLINE_MS=60000"]);
        for pair in &self.settings.service_env {
            launcher.args(["--env", pair]);
        }
        for (role, port) in Role::ALL.into_iter().zip(ports) {
            launcher.args(["--port", &format!("{}={port}", role.instance())]);
        }
        // Whatever happens from here, teardown stops what was started and drops what was made.
        self.launched = true;
        for purpose in ["auth", "products", "orders"] {
            self.created_databases.push(self.database_name(purpose));
        }
        let status = tokio::time::timeout(START_WAIT, launcher.status())
            .await
            .with_context(|| format!("scripts/run-local start took over {START_WAIT:?}"))?
            .context("run scripts/run-local start")?;
        if !status.success() {
            bail!(
                "scripts/run-local start failed ({status}); see above and {}",
                self.state_dir().display()
            );
        }

        for (role, port) in Role::ALL.into_iter().zip(ports) {
            let pid_file = self.state_dir().join(format!("{}.pid", role.instance()));
            let pid = std::fs::read_to_string(&pid_file)
                .with_context(|| format!("read {}", pid_file.display()))?
                .trim()
                .parse()
                .with_context(|| format!("{} holds no pid", pid_file.display()))?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            tracing::info!(service = role.name(), %addr, pid, "ready");
            self.services.push(Service { role, addr, pid });
        }
        Ok(())
    }

    /// `scripts/run-local COMMAND` on this run's services, with the PostgreSQL server and
    /// broker of the settings.
    fn launcher(&self, command: &str) -> anyhow::Result<Command> {
        let pg = url::Url::parse(&self.settings.pg_admin_url).context("PGURL")?;
        let mut launcher = Command::new(LAUNCHER);
        launcher
            .arg(command)
            .arg("--state-dir")
            .arg(self.state_dir())
            .env("PGHOST", pg.host_str().unwrap_or("127.0.0.1"))
            .env("PGPORT", pg.port().unwrap_or(5432).to_string())
            .env("PGUSER", pg.username())
            .env("AMQP_URL", &self.settings.amqp_url)
            .stdin(Stdio::null())
            // Its summary is for a person; stdout is the report's.
            .stdout(std::io::stderr())
            // A group of its own: a Ctrl-C at the terminal reaches the bench, which then stops
            // the services through it, instead of reaching the launcher too.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(password) = pg.password() {
            launcher.env("PGPASSWORD", password);
        }
        Ok(launcher)
    }

    fn ports(&self) -> anyhow::Result<[u16; 4]> {
        let mut ports = [0u16; 4];
        match self.settings.base_port {
            Some(base) => {
                for (i, port) in ports.iter_mut().enumerate() {
                    *port = base
                        .checked_add(u16::try_from(i)?)
                        .context("--base-port too high")?;
                    // The services bind 0.0.0.0, so that is where a port must be free.
                    TcpListener::bind((Ipv4Addr::UNSPECIFIED, *port))
                        .with_context(|| format!("port {port} is taken"))?;
                }
            }
            None => {
                // Held together until all four are known, so the kernel hands out four
                // different ports; released just before the services bind them.
                let held = (0..4)
                    .map(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)))
                    .collect::<Result<Vec<_>, _>>()
                    .context("find free ports")?;
                for (port, listener) in ports.iter_mut().zip(&held) {
                    *port = listener.local_addr()?.port();
                }
            }
        }
        Ok(ports)
    }

    /// Stops the services (SIGTERM, then SIGKILL), deletes the queues and drops the databases.
    /// Each step runs whatever the previous ones did; failures are logged, not returned.
    pub async fn teardown(&mut self) {
        if self.launched {
            match self.stop().await {
                Ok(()) => self.launched = false,
                Err(e) => tracing::warn!(error = format!("{e:#}"), "could not stop the services"),
            }
        }
        self.services.clear();
        if let Err(e) = self.delete_queues().await {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not delete the run's queues"
            );
        }
        if let Err(e) = self.drop_databases().await {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not drop the run's databases"
            );
        }
    }

    async fn stop(&self) -> anyhow::Result<()> {
        let status = self
            .launcher("stop")?
            .args(["--timeout", &STOP_WAIT_SECS.to_string()])
            .status()
            .await
            .context("run scripts/run-local stop")?;
        if !status.success() {
            bail!("scripts/run-local stop: {status} (a service had to be killed)");
        }
        Ok(())
    }

    async fn delete_queues(&self) -> anyhow::Result<()> {
        let connection =
            Connection::connect(&self.settings.amqp_url, ConnectionProperties::default())
                .await
                .context("connect to RabbitMQ")?;
        let queues = [
            self.queue.clone(),
            self.bare_queue.clone(),
            self.resolve_queue(),
            self.events_queue(),
        ];
        for queue in &queues {
            for name in [queue.clone(), common::amqp::dead_letter_queue(queue)] {
                // A channel per delete: an error closes the channel it happened on.
                let channel = connection.create_channel().await?;
                match channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await
                {
                    Ok(_) => tracing::debug!(queue = name, "deleted"),
                    Err(e) => tracing::warn!(queue = name, error = %e, "delete failed"),
                }
                let _ = channel.close(200, "done".into()).await;
            }
        }
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }

    async fn drop_databases(&mut self) -> anyhow::Result<()> {
        if self.created_databases.is_empty() {
            return Ok(());
        }
        let admin = Database::connect(&self.settings.pg_admin_url)
            .await
            .context("connect to PostgreSQL")?;
        for name in std::mem::take(&mut self.created_databases) {
            // FORCE: a pool the bench or a killed service left behind must not keep it alive.
            // IF EXISTS: a launcher that failed early may not have made them all.
            let dropped = admin
                .execute_raw(Statement::from_string(
                    DbBackend::Postgres,
                    ["DROP DATABASE IF EXISTS \"", &name, "\" WITH (FORCE)"].concat(),
                ))
                .await;
            if let Err(e) = dropped {
                tracing::warn!(database = name, error = %e, "drop failed");
            }
        }
        let _ = admin.close().await;
        Ok(())
    }
}

impl Drop for Fixture {
    /// The last resort should the bench panic between start and teardown: the services run in
    /// sessions of their own, so nothing else would end them.
    fn drop(&mut self) {
        if self.launched {
            let _ = std::process::Command::new(LAUNCHER)
                .arg("kill")
                .arg("--state-dir")
                .arg(self.state_dir())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status();
        }
    }
}
