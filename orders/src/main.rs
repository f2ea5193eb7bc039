use std::process::ExitCode;

use clap::{Parser, Subcommand};
use orders::{
    config::Config,
    migration::{LOCK_KEY, Migrator},
    startup::Application,
};

// glibc keeps freed blocks in per-thread arenas: argon2's 19 MiB buffers alone grew auth past
// 1 GiB after 600 logins. jemalloc's background thread hands freed memory back to the system.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Stores orders sent over RabbitMQ and shows users their orders.
#[derive(Parser)]
#[command(name = "orders", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the order consumer (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    common::config::load_dotenv();
    let cli = Cli::parse();
    common::telemetry::init("orders");
    match run(cli.command.unwrap_or(Command::Serve)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "orders failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    match command {
        Command::Serve => {
            let app = Application::build(config, common::shutdown::on_signal()).await?;
            app.run_until_stopped().await
        }
        Command::Migrate => {
            common::db::migrate_and_close::<Migrator>(&config.database, LOCK_KEY).await
        }
    }
}
