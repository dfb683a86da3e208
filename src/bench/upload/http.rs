//! A minimal keep-alive HTTP/1.1 client for the upload benchmark, over plain tokio TCP like
//! `bench auth`'s (reqwest is only a dev-dependency). It can stream a multipart body from
//! a generator, so a 1 GiB upload never exists in memory.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const BOUNDARY: &str = "chronicle-bench-boundary-7f3a9c";

pub struct Conn {
    stream: BufReader<TcpStream>,
}

/// A response: status, headers (names lowercased) and body (small JSON for every
/// route the bench calls).
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.body)?)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(tcp),
        })
    }

    /// A request with a small JSON (or empty) body.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> anyhow::Result<Response> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            bearer(token)
        );
        let writer = self.stream.get_mut();
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(body.as_bytes()).await?;
        self.read_response().await
    }

    /// `POST /v1/files` with one `file` part of `len` bytes, produced chunk by chunk by
    /// `fill` (called with the offset and a buffer to fill completely).
    pub async fn upload(
        &mut self,
        token: &str,
        filename: &str,
        len: u64,
        mut fill: impl FnMut(u64, &mut [u8]),
    ) -> anyhow::Result<Response> {
        let prefix = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let suffix = format!("\r\n--{BOUNDARY}--\r\n");
        let total = prefix.len() as u64 + len + suffix.len() as u64;
        let head = format!(
            "POST /v1/files HTTP/1.1\r\nHost: bench\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {total}\r\n{}\r\n",
            bearer(Some(token))
        );
        let writer = self.stream.get_mut();
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(prefix.as_bytes()).await?;
        let mut chunk = vec![0u8; CHUNK.min(len as usize).max(1)];
        let mut offset = 0u64;
        while offset < len {
            let n = chunk.len().min((len - offset) as usize);
            fill(offset, &mut chunk[..n]);
            writer.write_all(&chunk[..n]).await?;
            offset += n as u64;
        }
        writer.write_all(suffix.as_bytes()).await?;
        self.read_response().await
    }

    /// A request with `head` (request line and headers, without the final blank line)
    /// and a body of `len` bytes streamed from `fill` at `offset..offset + len`.
    pub async fn stream(
        &mut self,
        head: &str,
        offset: u64,
        len: u64,
        mut fill: impl FnMut(u64, &mut [u8]),
    ) -> anyhow::Result<Response> {
        let writer = self.stream.get_mut();
        writer
            .write_all(format!("{head}Content-Length: {len}\r\n\r\n").as_bytes())
            .await?;
        let mut chunk = vec![0u8; CHUNK.min(len as usize).max(1)];
        let mut done = 0u64;
        while done < len {
            let n = chunk.len().min((len - done) as usize);
            fill(offset + done, &mut chunk[..n]);
            writer.write_all(&chunk[..n]).await?;
            done += n as u64;
        }
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<Response> {
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        anyhow::ensure!(!line.is_empty(), "the server closed the connection");
        let status: u16 = line.split_whitespace().nth(1).unwrap_or("0").parse()?;
        let mut length = 0usize;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
            anyhow::ensure!(
                !lower.starts_with("transfer-encoding:"),
                "chunked responses are not expected from the routes the bench calls"
            );
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Bytes handed to the socket per write: large enough that syscalls are not the cost.
pub const CHUNK: usize = 256 * 1024;

fn bearer(token: Option<&str>) -> String {
    token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default()
}
