//! A TCP relay for fault injection: put it between a service and PostgreSQL or RabbitMQ, then
//! freeze it (a partition: the sockets stay open and nothing more gets through), cut it (a
//! stopped server: every connection is dropped and new ones are closed at once), and restore it.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    sync::watch,
    task::JoinSet,
};

/// What the relay does with the bytes and connections it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// Forwards both ways.
    Pass,
    /// Forwards nothing and keeps every socket open, new ones included, as when the network
    /// between the two ends silently drops packets.
    Frozen,
    /// Drops every connection it holds and closes new ones as they arrive, as a stopped server
    /// would.
    Cut,
}

/// A relay listening on a loopback port of its own, forwarding to one upstream address. It
/// stops, dropping every connection, when dropped.
pub struct FaultRelay {
    addr: SocketAddr,
    mode: watch::Sender<RelayMode>,
    refused: Arc<AtomicU64>,
    _tasks: JoinSet<()>,
}

impl FaultRelay {
    /// Starts a relay on `listen` (port 0 picks a free one) forwarding to `upstream`.
    pub async fn start(listen: &str, upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(RelayMode::Pass);
        let refused = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        tasks.spawn(accept(
            listener,
            upstream.to_owned(),
            mode.clone(),
            refused.clone(),
        ));
        Ok(Self {
            addr,
            mode,
            refused,
            _tasks: tasks,
        })
    }

    /// Starts a relay on a free loopback port in front of the server `url` names
    /// (`postgres://` or `amqp://`, port defaulting to 5432 or 5672).
    pub async fn in_front_of(url: &str) -> std::io::Result<Self> {
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        let parsed = url::Url::parse(url).map_err(|e| invalid(format!("{url}: {e}")))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| invalid(format!("{url} names no host")))?;
        let port = parsed.port().unwrap_or(match parsed.scheme() {
            "amqp" => 5672,
            _ => 5432,
        });
        Self::start("127.0.0.1:0", &format!("{host}:{port}")).await
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its `host:port` (the part between `@` and the next `/`) pointed at this relay.
    pub fn url_for(&self, url: &str) -> String {
        let after_at = url.find('@').map_or(0, |at| at + 1);
        let scheme_end = url.find("://").map_or(0, |i| i + 3);
        let start = after_at.max(scheme_end);
        let end = url[start..].find('/').map_or(url.len(), |i| start + i);
        format!("{}{}{}", &url[..start], self.addr, &url[end..])
    }

    /// Switches to `mode`; connections already open follow at once.
    pub fn set(&self, mode: RelayMode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> RelayMode {
        *self.mode.borrow()
    }

    /// How many connections arrived while the relay was cut and were closed at once.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

async fn accept(
    listener: TcpListener,
    upstream: String,
    mode: watch::Sender<RelayMode>,
    refused: Arc<AtomicU64>,
) {
    let mut links = JoinSet::new();
    loop {
        let inbound = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, _)) => inbound,
                Err(e) => {
                    tracing::warn!(error = %e, "relay: accept failed");
                    continue;
                }
            },
            // Reaps finished links so the set does not grow without bound.
            Some(_) = links.join_next(), if !links.is_empty() => continue,
        };
        if *mode.borrow() == RelayMode::Cut {
            refused.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        links.spawn(link(inbound, upstream.clone(), mode.subscribe()));
    }
}

/// One client connection: connects upstream once the relay passes traffic, then forwards
/// both ways until either side closes or the relay is cut.
async fn link(inbound: TcpStream, upstream: String, mut mode: watch::Receiver<RelayMode>) {
    // A client that arrives during a freeze waits, unanswered, like one behind a partition.
    if !matches!(
        mode.wait_for(|m| *m != RelayMode::Frozen).await.map(|m| *m),
        Ok(RelayMode::Pass)
    ) {
        return;
    }
    let Ok(outbound) = TcpStream::connect(&upstream).await else {
        return;
    };
    // Forwarded as they come: Nagle's delay on top of the peers' own would add tens of
    // milliseconds to every small AMQP frame.
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (client_read, client_write) = inbound.into_split();
    let (server_read, server_write) = outbound.into_split();
    tokio::select! {
        _ = forward(client_read, server_write, mode.clone()) => {}
        _ = forward(server_read, client_write, mode.clone()) => {}
        _ = mode.wait_for(|m| *m == RelayMode::Cut) => {}
    }
}

async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<RelayMode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read during a freeze are held, not dropped: a partition that heals delivers
        // what was in flight, as TCP would after retransmitting.
        match mode.wait_for(|m| *m != RelayMode::Frozen).await.map(|m| *m) {
            Ok(RelayMode::Pass) => {}
            _ => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn url_for_replaces_only_the_host_and_port() {
        let relay = FaultRelay::start("127.0.0.1:0", "127.0.0.1:9")
            .await
            .unwrap();
        let at = relay.addr();
        assert_eq!(
            relay.url_for("amqp://guest:guest@127.0.0.1:5672/%2f"),
            format!("amqp://guest:guest@{at}/%2f")
        );
        assert_eq!(
            relay.url_for("postgres://postgres@localhost:5432/db?x=1"),
            format!("postgres://postgres@{at}/db?x=1")
        );
        assert_eq!(
            relay.url_for("postgres://127.0.0.1:5432/db"),
            format!("postgres://{at}/db")
        );
    }

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, within: std::time::Duration) -> Option<Vec<u8>> {
        stream.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(within, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_frozen_relay_holds_bytes_until_it_passes_again_and_a_cut_one_drops_everyone() {
        let upstream = echo_server().await;
        let relay = FaultRelay::start("127.0.0.1:0", &upstream.to_string())
            .await
            .unwrap();
        let short = std::time::Duration::from_millis(300);
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, short).await.unwrap(), b"ping");

        relay.set(RelayMode::Frozen);
        assert!(round_trip(&mut client, short).await.is_none());
        relay.set(RelayMode::Pass);
        let mut held = [0u8; 4];
        tokio::time::timeout(short, client.read_exact(&mut held))
            .await
            .expect("the held bytes arrive once the relay passes again")
            .unwrap();
        assert_eq!(&held, b"ping");

        relay.set(RelayMode::Cut);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(short, client.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a cut closes the link"
        );
        let mut late = TcpStream::connect(relay.addr()).await.unwrap();
        assert!(round_trip(&mut late, short).await.is_none());
        assert_eq!(relay.refused(), 1);
    }
}
