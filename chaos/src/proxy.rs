//! `chaos proxy`: a TCP fault proxy between one service and its broker or database, switched by
//! signals so a scenario script can cut a link at the moment it chooses.
//!
//! SIGUSR1 partitions the link: nothing more gets through and every socket stays open, new ones
//! included, as when packets are silently dropped. SIGUSR2 heals it: the connections held
//! through the partition are dropped (as a firewall or NAT that lost their state would) and new
//! ones pass, so the service must notice and reconnect by itself.

use anyhow::Context;
use common::testing::{FaultRelay, RelayMode};
use tokio::signal::unix::{SignalKind, signal};

/// Runs until SIGTERM or SIGINT.
pub async fn run(listen: &str, upstream: &str) -> anyhow::Result<bool> {
    let relay = FaultRelay::start(listen, upstream)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    let mut partition = signal(SignalKind::user_defined1())?;
    let mut heal = signal(SignalKind::user_defined2())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tracing::info!(listen = %relay.addr(), upstream, "proxy passing traffic");
    loop {
        tokio::select! {
            _ = partition.recv() => {
                relay.set(RelayMode::Frozen);
                tracing::info!(upstream, "partitioned: nothing gets through");
            }
            _ = heal.recv() => {
                relay.set(RelayMode::Cut);
                relay.set(RelayMode::Pass);
                tracing::info!(upstream, "healed: held connections dropped, new ones pass");
            }
            _ = terminate.recv() => return Ok(true),
            _ = interrupt.recv() => return Ok(true),
        }
    }
}
