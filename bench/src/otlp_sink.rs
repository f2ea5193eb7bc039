//! A trace collector that takes every OTLP/HTTP export and keeps nothing, so that a run can
//! measure what exporting spans costs the services without a real collector's own load.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// The running sink; it stops when dropped.
pub struct OtlpSink {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl OtlpSink {
    /// Listens on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind the OTLP sink")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Err(e) = serve(stream).await {
                        tracing::debug!(error = %e, "an OTLP export connection ended");
                    }
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// The value for the services' `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers every request on the connection with an empty 200, which is an empty export
/// response, after reading (and dropping) its body.
async fn serve(stream: TcpStream) -> anyhow::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut body = Vec::new();
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().context("a Content-Length")?;
            }
        }
        body.resize(length, 0);
        stream.read_exact(&mut body).await?;
        stream
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}
