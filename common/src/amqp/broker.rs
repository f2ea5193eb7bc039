//! The process's one connection, kept alive by a supervisor task.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use lapin::{Connection, ConnectionProperties, Event, uri::AMQPUri};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// First pause after a failed connect; doubled after each further failure.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest pause between connect attempts, so a restarted broker is found within seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A TCP connect or AMQP handshake that hangs this long is abandoned and retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// lapin sends no event when the server closes a connection cleanly, so the supervisor also
/// looks at the connection's state this often.
const STATUS_POLL: Duration = Duration::from_millis(500);
/// How long [`Broker::close`] waits for the broker to confirm the close; a broker that has
/// gone silent must not keep the process from exiting.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// One established connection and the generation number it was published under.
#[derive(Clone)]
pub(crate) struct Live {
    /// Incremented on every successful connect; users compare it to notice a reconnect.
    pub(crate) generation: u64,
    pub(crate) connection: Arc<Connection>,
}

impl Live {
    pub(crate) fn is_open(&self) -> bool {
        self.connection.status().connected()
    }
}

/// A supervised connection: reconnects with backoff after the broker goes away. Cheap to clone.
///
/// A supervisor task connects (retrying with exponential backoff from 100 ms up to 5 s, with
/// jitter), watches the connection (lapin's event stream plus a poll of its state), and when it
/// dies publishes "disconnected" and connects again under a new generation number.
/// [`RpcClient`](super::RpcClient) and [`serve`](super::serve) pick up each new connection
/// themselves. Automatic recovery inside lapin is not used: rebuilding from scratch is one
/// code path that is exercised on every start.
#[derive(Clone)]
pub struct Broker {
    state: watch::Receiver<Option<Live>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("connected", &self.is_connected())
            .field("generation", &self.current().map(|l| l.generation))
            .finish()
    }
}

impl Broker {
    /// Starts the supervisor; it runs until `shutdown` is cancelled.
    ///
    /// Returns at once, before the first connection is made: a service can start (and report
    /// not ready) while RabbitMQ is still down. Must be called inside a Tokio runtime. After
    /// `shutdown` the current connection is left open so in-flight work can finish; it closes
    /// when the last handle is dropped, or at once with [`Broker::close`].
    pub fn start(url: impl Into<String>, shutdown: CancellationToken) -> Self {
        let (tx, rx) = watch::channel(None);
        // A child token, so close() can stop this supervisor without cancelling the process.
        let stop = shutdown.child_token();
        tokio::spawn(supervise(url.into(), tx, stop.clone()));
        Self { state: rx, stop }
    }

    /// Whether a connection is open right now (for `/readyz`).
    pub fn is_connected(&self) -> bool {
        self.current().is_some_and(|live| live.is_open())
    }

    /// Waits until a connection is open, at most `timeout`; returns whether one is.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut state = self.state.clone();
        let open = state.wait_for(|s| s.as_ref().is_some_and(Live::is_open));
        matches!(tokio::time::timeout(timeout, open).await, Ok(Ok(_)))
    }

    /// The current connection, if one is open, for opening channels of your own (say, to
    /// declare a queue at start-up). Do not close it; do not keep it across reconnects.
    pub fn connection(&self) -> Option<Arc<Connection>> {
        self.current()
            .filter(Live::is_open)
            .map(|live| live.connection)
    }

    /// Stops reconnecting and closes the current connection gracefully, waiting at most
    /// [`CLOSE_TIMEOUT`] for the broker to confirm. Call it last, once
    /// every consumer loop and client call has finished; until then the connection is kept.
    pub async fn close(&self) {
        self.stop.cancel();
        let Some(connection) = self.connection() else {
            return;
        };
        match tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "shutting down".into()))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "closing the AMQP connection failed"),
            Err(_) => tracing::warn!(
                timeout_ms = CLOSE_TIMEOUT.as_millis() as u64,
                "the broker did not confirm the close in time; leaving the connection"
            ),
        }
    }

    /// The connection last published by the supervisor (possibly one that just died).
    pub(crate) fn current(&self) -> Option<Live> {
        self.state.borrow().clone()
    }

    /// A receiver that sees every (re)connect and disconnect.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Live>> {
        self.state.clone()
    }
}

async fn supervise(url: String, tx: watch::Sender<Option<Live>>, stop: CancellationToken) {
    let mut generation = 0u64;
    let mut backoff = BACKOFF_START;
    loop {
        let attempt = tokio::select! {
            _ = stop.cancelled() => return,
            attempt = tokio::time::timeout(CONNECT_TIMEOUT, connect(&url)) => attempt,
        };
        let connection = match attempt {
            Ok(Ok(connection)) => connection,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no handshake within {CONNECT_TIMEOUT:?}"),
                };
                let pause = jittered(backoff);
                tracing::warn!(
                    %error,
                    retry_in_ms = pause.as_millis() as u64,
                    "cannot connect to RabbitMQ"
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };

        generation += 1;
        backoff = BACKOFF_START;
        // Subscribed before publishing, so no event of this connection's life is missed.
        let events = connection.events_listener();
        let live = Live {
            generation,
            connection: Arc::new(connection),
        };
        tracing::info!(generation, "connected to RabbitMQ");
        tx.send_replace(Some(live.clone()));

        if watch_until_lost(&live.connection, events, &stop).await {
            tracing::warn!(generation, "lost the RabbitMQ connection; reconnecting");
            tx.send_replace(None);
        } else {
            // Stopped: keep publishing the connection so in-flight work can finish on it.
            return;
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<Connection> {
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "shop".to_owned());
    // The name shows in `rabbitmqctl list_connections`, which is how an operator finds us.
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Ok(Connection::connect_uri(with_frame_max(url)?, properties).await?)
}

/// The largest frame we offer RabbitMQ (it offers 128 KiB), unless `AMQP_URL` sets
/// `frame_max` itself. lapin keeps 32 frames of buffer each way per connection, so at
/// RabbitMQ's size that is 8 MiB of memory for requests and replies of a few hundred bytes to
/// a few KiB; bodies larger than a frame are simply split.
const FRAME_MAX: u32 = 8 * 1024;

/// `url` parsed, with `frame_max` set to [`FRAME_MAX`] when the URL does not choose one.
fn with_frame_max(url: &str) -> anyhow::Result<AMQPUri> {
    let mut uri: AMQPUri = url
        .parse()
        .map_err(|e: String| anyhow::anyhow!("AMQP_URL is not a valid AMQP URI: {e}"))?;
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    Ok(uri)
}

/// Returns `true` when the connection died, `false` when `stop` was cancelled first.
async fn watch_until_lost(
    connection: &Connection,
    events: impl futures::Stream<Item = Event> + Send + 'static,
    stop: &CancellationToken,
) -> bool {
    let mut events = std::pin::pin!(events);
    let mut poll = tokio::time::interval(STATUS_POLL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return false,
            event = events.next() => match event {
                // Channel-level failures are reported here too, so the state decides.
                Some(Event::Error(e)) if !connection.status().connected() => {
                    tracing::warn!(error = %e, "AMQP connection error");
                    return true;
                }
                Some(Event::Error(e)) => tracing::debug!(error = %e, "AMQP channel error"),
                Some(Event::ConnectionBlocked(reason)) => {
                    tracing::warn!(%reason, "RabbitMQ blocked publishing on this connection");
                }
                Some(Event::ConnectionUnblocked) => {
                    tracing::info!("RabbitMQ unblocked this connection");
                }
                Some(_) => {}
                None => return true,
            },
            _ = poll.tick() => {
                if !connection.status().connected() {
                    return true;
                }
            }
        }
    }
}

/// `base` plus up to 25% of random extra, so many processes restarted together do not knock
/// on the broker in lockstep.
fn jittered(base: Duration) -> Duration {
    // A v4 UUID is 122 random bits from the OS; enough randomness here without another crate.
    let random = uuid::Uuid::new_v4().as_u64_pair().0;
    let quarter = (base.as_millis() as u64 / 4).max(1);
    base + Duration::from_millis(random % quarter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_max_is_capped_unless_the_url_sets_it() {
        let uri = with_frame_max("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(uri.query.frame_max, Some(FRAME_MAX));
        let uri = with_frame_max("amqp://127.0.0.1:5672/%2f?frame_max=131072").unwrap();
        assert_eq!(uri.query.frame_max, Some(131_072));
        assert!(with_frame_max("http://nope").is_err());
    }
}
