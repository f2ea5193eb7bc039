//! Everything a run sets up and must take down again: its databases, its queues, and the
//! service processes, started from release binaries on loopback ports of their own.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use tokio::process::{Child, Command};

use crate::http::{Call, Conn};

/// How long a service gets to answer `/readyz` with 200 after it is spawned.
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long a service gets to exit after SIGTERM before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(5);

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
    /// First of four consecutive ports; `None` asks the kernel for free ones.
    pub base_port: Option<u16>,
}

/// The service processes a run starts, in start order.
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

    /// The name reports and log files use.
    pub fn name(self) -> &'static str {
        match self {
            Role::Auth => "auth",
            Role::Orders => "orders",
            Role::ProductsPerRequest => "products-per-request",
            Role::ProductsDirect => "products-direct",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Role::Auth => "auth",
            Role::Orders => "orders",
            Role::ProductsPerRequest | Role::ProductsDirect => "products",
        }
    }

    /// Which database of the run it uses: both products processes share one.
    fn database(self) -> &'static str {
        match self {
            Role::Auth => "auth",
            Role::Orders => "orders",
            Role::ProductsPerRequest | Role::ProductsDirect => "products",
        }
    }
}

/// A running service process.
pub struct Service {
    pub role: Role,
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
}

/// The run's resources. Build it with [`Fixture::new`], then [`Fixture::start`]; whatever
/// happens after, [`Fixture::teardown`] removes what was actually created.
pub struct Fixture {
    pub settings: Settings,
    /// Unique to the run: in database and queue names.
    pub id: String,
    /// The queue the services send buys to.
    pub queue: String,
    /// The bare harness's queue.
    pub bare_queue: String,
    created_databases: Vec<String>,
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

    /// Creates the databases, then starts auth, orders and the two products processes, each
    /// once the one before is ready.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        for binary in ["auth", "orders", "products"] {
            let path = self.settings.bin_dir.join(binary);
            if !path.is_file() {
                bail!(
                    "{} is missing: build it with `cargo build --release -p auth -p products -p orders`",
                    path.display()
                );
            }
        }
        let admin = Database::connect(&self.settings.pg_admin_url)
            .await
            .with_context(|| {
                format!(
                    "PostgreSQL does not answer at {} (set PGURL)",
                    self.settings.pg_admin_url
                )
            })?;
        for purpose in ["auth", "products", "orders", "bare"] {
            let name = self.database_name(purpose);
            // Identifiers cannot be bound as parameters; the name is ours (hex and `_`).
            admin
                .execute_raw(Statement::from_string(
                    DbBackend::Postgres,
                    ["CREATE DATABASE \"", &name, "\""].concat(),
                ))
                .await
                .with_context(|| format!("create database {name}"))?;
            self.created_databases.push(name);
        }
        let _ = admin.close().await;

        let ports = self.ports()?;
        let auth_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0]));
        for (role, port) in Role::ALL.into_iter().zip(ports) {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let service = self.spawn(role, addr, auth_addr)?;
            self.services.push(service);
            let service = self.services.last_mut().expect("just pushed");
            wait_ready(service, &self.settings.out_dir).await?;
            tracing::info!(service = role.name(), %addr, pid = service.pid, "ready");
        }
        Ok(())
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

    fn spawn(&self, role: Role, addr: SocketAddr, auth: SocketAddr) -> anyhow::Result<Service> {
        let settings = &self.settings;
        let log_path = settings.out_dir.join(format!("{}.log", role.name()));
        let log =
            File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let mut command = Command::new(settings.bin_dir.join(role.binary()));
        command
            .arg("serve")
            // Only the variables of API.md: a DB_MAX_CONNECTIONS or RPC_TIMEOUT_MS left in the
            // caller's shell would silently change what is measured.
            .env_clear()
            .env("PORT", addr.port().to_string())
            .env("DATABASE_URL", self.database_url(role.database())?)
            .env("RUST_LOG", &settings.service_log)
            // Away from any `.env` in the caller's directory, which the services would read.
            .current_dir(&settings.out_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // A group of its own: a Ctrl-C at the terminal reaches the bench, which then stops
            // the services in order, instead of reaching everything at once.
            .process_group(0)
            // The last resort should the bench itself die mid-run.
            .kill_on_drop(true);
        if role != Role::Auth {
            command
                .env("AMQP_URL", &settings.amqp_url)
                .env("ORDER_QUEUE", &self.queue)
                .env(
                    "AUTH_JWKS_URL",
                    format!("http://{auth}/auth/.well-known/jwks.json"),
                );
        }
        match role {
            Role::ProductsPerRequest => {
                command.env("RPC_REPLY_MODE", "per-request");
            }
            Role::ProductsDirect => {
                command.env("RPC_REPLY_MODE", "direct");
            }
            Role::Auth | Role::Orders => {}
        }
        let child = command
            .spawn()
            .with_context(|| format!("start {}", role.name()))?;
        let pid = child.id().context("a just-spawned child has a pid")?;
        Ok(Service {
            role,
            addr,
            pid,
            child,
        })
    }

    /// Gives `email` the admin role with `auth admin grant`, as an operator would.
    pub async fn grant_admin(&self, email: &str) -> anyhow::Result<()> {
        let log_path = self.settings.out_dir.join("admin-grant.log");
        let log = File::create(&log_path)?;
        let mut child = Command::new(self.settings.bin_dir.join("auth"))
            .args(["admin", "grant", email])
            .env_clear()
            .env("DATABASE_URL", self.database_url("auth")?)
            .env("RUST_LOG", "warn")
            .current_dir(&self.settings.out_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("run auth admin grant")?;
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .context("auth admin grant took over 30 s")??;
        if !status.success() {
            bail!(
                "auth admin grant failed ({status}); see {}",
                log_path.display()
            );
        }
        Ok(())
    }

    /// Stops the services (SIGTERM, then SIGKILL), deletes the queues and drops the databases.
    /// Each step runs whatever the previous ones did; failures are logged, not returned.
    pub async fn teardown(&mut self) {
        for service in &self.services {
            if let Ok(pid) = i32::try_from(service.pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        for service in &mut self.services {
            match tokio::time::timeout_at(deadline, service.child.wait()).await {
                Ok(Ok(status)) => {
                    tracing::info!(service = service.role.name(), %status, "stopped");
                }
                _ => {
                    tracing::warn!(
                        service = service.role.name(),
                        "still running {STOP_WAIT:?} after SIGTERM; killing it"
                    );
                    let _ = service.child.kill().await;
                }
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

    async fn delete_queues(&self) -> anyhow::Result<()> {
        let connection =
            Connection::connect(&self.settings.amqp_url, ConnectionProperties::default())
                .await
                .context("connect to RabbitMQ")?;
        for queue in [&self.queue, &self.bare_queue] {
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

/// Polls `/readyz` until it answers 200, failing early if the process exits.
async fn wait_ready(service: &mut Service, out_dir: &Path) -> anyhow::Result<()> {
    let log = out_dir.join(format!("{}.log", service.role.name()));
    let deadline = Instant::now() + READY_WAIT;
    let mut conn = Conn::new(service.addr);
    loop {
        if let Some(status) = service.child.try_wait()? {
            bail!(
                "{} exited ({status}) before it was ready; see {}",
                service.role.name(),
                log.display()
            );
        }
        if let Ok(answer) = conn.send(Call::get("/readyz")).await
            && answer.status == hyper::StatusCode::OK
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not answer /readyz with 200 within {READY_WAIT:?}; see {}",
                service.role.name(),
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
