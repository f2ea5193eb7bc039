use std::process::ExitCode;

use clap::{Parser, Subcommand};
use products::{
    config::Config,
    migration::{LOCK_KEY, Migrator},
    startup::Application,
};

// glibc keeps freed blocks in per-thread arenas: argon2's 19 MiB buffers alone grew auth past
// 1 GiB after 600 logins. jemalloc's background thread hands freed memory back to the system.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The products service: the catalog, and buys turned into orders.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    common::config::load_dotenv();
    common::telemetry::init("products");
    let cli = Cli::parse();
    match run(cli.command.unwrap_or(Command::Serve)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "products failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    match command {
        Command::Serve => {
            let shutdown = common::shutdown::on_signal();
            let app = Application::build(config, shutdown).await?;
            app.run_until_stopped().await
        }
        Command::Migrate => {
            common::db::migrate_and_close::<Migrator>(&config.database, LOCK_KEY).await
        }
    }
}
