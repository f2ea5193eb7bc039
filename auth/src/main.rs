use std::process::ExitCode;

use auth::{config::Config, migration::Migrator, startup::Application};
use clap::{Parser, Subcommand};

// glibc keeps freed blocks in per-thread arenas: argon2's 19 MiB buffers alone grew auth past
// 1 GiB after 600 logins. jemalloc's background thread hands freed memory back to the system.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The auth service: users, passwords and access tokens.
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
    /// Operator commands.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Give the registered user with this email the admin role.
    Grant { email: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    common::config::load_dotenv();
    let cli = Cli::parse();
    common::telemetry::init("auth");
    match run(cli.command.unwrap_or(Command::Serve)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "auth failed");
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
            common::db::migrate_and_close::<Migrator>(&config.database, auth::migration::LOCK_KEY)
                .await
        }
        Command::Admin {
            command: AdminCommand::Grant { email },
        } => auth::admin::grant_with_config(&config.database, &email).await,
    }
}
