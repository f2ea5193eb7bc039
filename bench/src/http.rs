//! The client side of the HTTP scenarios: one keep-alive HTTP/1.1 connection, opened again only
//! when it breaks. Plain hyper rather than a pooling client, because the client shares the two
//! cores with the services it measures and a connection per worker is all it needs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

/// How long a request may take before it counts as failed and the connection is dropped.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The `Idempotency-Key` header of `POST /products/buy`.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// An answer: its status and whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One request: what, where, with which token and extra headers.
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub bearer: Option<&'a str>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Sent as `application/json`.
    pub json: Option<Bytes>,
}

impl<'a> Call<'a> {
    pub fn get(path: &'a str) -> Self {
        Self {
            method: Method::GET,
            path,
            bearer: None,
            headers: Vec::new(),
            json: None,
        }
    }

    pub fn post(path: &'a str, json: impl Into<Bytes>) -> Self {
        Self {
            method: Method::POST,
            path,
            bearer: None,
            headers: Vec::new(),
            json: Some(json.into()),
        }
    }

    pub fn bearer(mut self, token: &'a str) -> Self {
        self.bearer = Some(token);
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// A keep-alive connection to one server on loopback.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    /// The address the connection comes from, when not the kernel's choice.
    local: Option<IpAddr>,
    open: Option<Open>,
}

struct Open {
    sender: SendRequest<Full<Bytes>>,
    /// Drives the connection; aborted when the connection is given up.
    driver: JoinHandle<()>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Conn {
    /// A connection to `addr`, opened at the first request.
    pub fn new(addr: SocketAddr) -> Self {
        let host = HeaderValue::try_from(addr.to_string()).expect("a socket address is ASCII");
        Self {
            addr,
            host,
            local: None,
            open: None,
        }
    }

    /// The same connection, opened from `local` (a loopback address such as 127.0.0.2), so
    /// the server sees another client.
    pub fn bound_to(mut self, local: IpAddr) -> Self {
        self.local = Some(local);
        self
    }

    /// Sends `call` and reads the whole answer. Any failure closes the connection, so the next
    /// call starts on a fresh one.
    pub async fn send(&mut self, call: Call<'_>) -> anyhow::Result<Answer> {
        let request = self.request(call)?;
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.round_trip(request)).await;
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.open = None;
                Err(e)
            }
            Err(_) => {
                self.open = None;
                Err(anyhow!("no answer within {REQUEST_TIMEOUT:?}"))
            }
        }
    }

    fn request(&self, call: Call<'_>) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(call.method)
            .uri(call.path)
            .header(HOST, self.host.clone());
        if let Some(token) = call.bearer {
            builder = builder.header(AUTHORIZATION, ["Bearer ", token].concat());
        }
        for (name, value) in call.headers {
            builder = builder.header(name, value);
        }
        let body = match call.json {
            Some(json) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(json)
            }
            None => Full::new(Bytes::new()),
        };
        builder.body(body).context("build the request")
    }

    async fn round_trip(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<Answer> {
        if self.open.as_ref().is_none_or(|o| o.sender.is_closed()) {
            self.open = Some(connect(self.addr, self.local).await?);
        }
        let Some(open) = self.open.as_mut() else {
            unreachable!("opened just above");
        };
        open.sender.ready().await.context("the connection closed")?;
        let response = open
            .sender
            .send_request(request)
            .await
            .context("send the request")?;
        let status = response.status();
        // Read to the end even when unused: the connection is only reusable after the body.
        let body = response
            .into_body()
            .collect()
            .await
            .context("read the answer")?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

async fn connect(addr: SocketAddr, local: Option<IpAddr>) -> anyhow::Result<Open> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .context("open a socket")?;
    if let Some(local) = local {
        socket
            .bind(SocketAddr::new(local, 0))
            .with_context(|| format!("bind to {local}"))?;
    }
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} took over {CONNECT_TIMEOUT:?}"))?
        .with_context(|| format!("connect to {addr}"))?;
    // Requests are small and each waits for its answer: Nagle would only add delay.
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake")?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection ended");
        }
    });
    Ok(Open { sender, driver })
}
