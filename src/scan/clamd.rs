//! ClamAV's daemon over TCP: `zINSTREAM\0`, then `[u32 BE length][bytes]` chunks, then a
//! zero length; clamd answers `stream: OK`, `stream: <name> FOUND` or `<reason> ERROR`.
//!
//! Every network step has a timeout and transport failures feed a circuit breaker. Anything
//! but an `OK` or `FOUND` reply is `ScanError::Unavailable`, never a clean verdict: in
//! particular clamd's `INSTREAM size limit exceeded` (input past its StreamMaxLength).
//! There is no retry in here: the input stream cannot be rewound, so retrying is the job's
//! business (with its backoff).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::breaker::CircuitBreaker;
use super::{ScanError, Scanner, Verdict};

/// Longest reply accepted; real replies are a signature name and a few words.
const MAX_REPLY: usize = 4096;

#[derive(Debug, Clone)]
pub struct ClamdOptions {
    /// `host:port`.
    pub addr: String,
    pub connect_timeout: Duration,
    /// Bound on each write, and on the wait for the verdict after the last chunk.
    pub io_timeout: Duration,
    pub chunk_size: usize,
    /// Consecutive transport failures that open the circuit…
    pub breaker_threshold: u32,
    /// …and how long it then stays open.
    pub breaker_cooldown: Duration,
}

impl ClamdOptions {
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(60),
            chunk_size: 64 * 1024,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

pub struct ClamdScanner {
    options: ClamdOptions,
    breaker: CircuitBreaker,
}

/// Why one exchange with clamd ended without a verdict.
enum Failure {
    /// clamd unreachable or misbehaving on the wire: counts towards the breaker.
    Transport(String),
    /// clamd answered, but with an error (e.g. size limit): it is alive.
    Refused(String),
    /// Reading our own input failed.
    Input(std::io::Error),
}

impl ClamdScanner {
    pub fn new(mut options: ClamdOptions) -> Self {
        // An empty read buffer would read as end of input and send clamd nothing: "clean".
        options.chunk_size = options.chunk_size.max(1);
        let breaker = CircuitBreaker::new(options.breaker_threshold, options.breaker_cooldown);
        Self { options, breaker }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    async fn connect(&self) -> Result<TcpStream, Failure> {
        let addr = &self.options.addr;
        match tokio::time::timeout(self.options.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(Failure::Transport(format!(
                "connect to clamd at {addr}: {e}"
            ))),
            Err(_) => Err(Failure::Transport(format!(
                "connect to clamd at {addr}: timed out after {:?}",
                self.options.connect_timeout
            ))),
        }
    }

    async fn write(&self, conn: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
        match tokio::time::timeout(self.options.io_timeout, conn.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write to clamd: {e}")),
            Err(_) => Err(format!(
                "write to clamd: timed out after {:?}",
                self.options.io_timeout
            )),
        }
    }

    /// Reads the NUL-terminated reply (or up to EOF).
    async fn read_reply(&self, conn: &mut TcpStream) -> Result<String, String> {
        let read = async {
            let mut reply = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                reply.extend_from_slice(&buf[..n]);
                if reply.contains(&0) || reply.len() > MAX_REPLY {
                    break;
                }
            }
            Ok::<_, std::io::Error>(reply)
        };
        let reply = match tokio::time::timeout(self.options.io_timeout, read).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(format!("read clamd reply: {e}")),
            Err(_) => {
                return Err(format!(
                    "no reply from clamd within {:?}",
                    self.options.io_timeout
                ));
            }
        };
        let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
        let text = String::from_utf8_lossy(&reply[..end.min(MAX_REPLY)]);
        Ok(text.trim().to_string())
    }

    async fn instream(
        &self,
        input: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> Result<Verdict, Failure> {
        let mut conn = self.connect().await?;
        self.write(&mut conn, b"zINSTREAM\0")
            .await
            .map_err(Failure::Transport)?;
        let mut frame = vec![0u8; 4 + self.options.chunk_size];
        loop {
            let n = input.read(&mut frame[4..]).await.map_err(Failure::Input)?;
            // A zero length is also the terminator clamd waits for.
            frame[..4].copy_from_slice(&(n as u32).to_be_bytes());
            if let Err(write_error) = self.write(&mut conn, &frame[..4 + n]).await {
                // clamd closes the connection once the stream passes StreamMaxLength, after
                // sending its reason: prefer that reply over our write error.
                return match self.read_reply(&mut conn).await {
                    Ok(reply) if !reply.is_empty() => parse_reply(&reply),
                    _ => Err(Failure::Transport(write_error)),
                };
            }
            if n == 0 {
                break;
            }
        }
        let reply = self
            .read_reply(&mut conn)
            .await
            .map_err(Failure::Transport)?;
        parse_reply(&reply)
    }

    /// `PING` → `PONG`, for readiness checks. Goes through the breaker like a scan.
    pub async fn ping(&self) -> Result<(), ScanError> {
        let attempt = self.acquire()?;
        let result = async {
            let mut conn = self.connect().await?;
            self.write(&mut conn, b"zPING\0")
                .await
                .map_err(Failure::Transport)?;
            match self
                .read_reply(&mut conn)
                .await
                .map_err(Failure::Transport)?
            {
                pong if pong == "PONG" => Ok(()),
                other => Err(Failure::Transport(format!(
                    "unexpected PING reply from clamd: {other:?}"
                ))),
            }
        }
        .await;
        match result {
            Ok(()) => {
                attempt.succeeded();
                Ok(())
            }
            Err(failure) => Err(self.settle(attempt, failure)),
        }
    }

    fn acquire(&self) -> Result<super::breaker::Attempt<'_>, ScanError> {
        self.breaker.try_acquire().map_err(|wait| {
            ScanError::Unavailable(if wait.is_zero() {
                "clamd circuit half-open: a trial scan is in progress; retry shortly".into()
            } else {
                format!(
                    "clamd circuit open after repeated failures; next try in {} ms",
                    wait.as_millis()
                )
            })
        })
    }

    /// Records a failure with the breaker (when it is clamd's) and turns it into an error.
    fn settle(&self, attempt: super::breaker::Attempt<'_>, failure: Failure) -> ScanError {
        match failure {
            Failure::Transport(reason) => {
                attempt.failed();
                tracing::warn!(addr = %self.options.addr, %reason, "clamd failed");
                ScanError::Unavailable(reason)
            }
            Failure::Refused(reason) => {
                attempt.succeeded();
                tracing::warn!(addr = %self.options.addr, %reason, "clamd refused the input");
                ScanError::Unavailable(reason)
            }
            Failure::Input(e) => {
                drop(attempt);
                ScanError::Io(e)
            }
        }
    }
}

fn parse_reply(reply: &str) -> Result<Verdict, Failure> {
    // "stream: OK", "stream: Name FOUND", "INSTREAM size limit exceeded. ERROR", …
    let body = reply.strip_prefix("stream:").unwrap_or(reply).trim();
    if body == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(name) = body.strip_suffix(" FOUND") {
        let signature = name.trim();
        if !signature.is_empty() {
            return Ok(Verdict::Infected {
                signature: signature.to_string(),
            });
        }
    }
    if body.ends_with("ERROR") {
        return Err(Failure::Refused(format!("clamd: {body}")));
    }
    Err(Failure::Transport(format!(
        "unexpected reply from clamd: {reply:?}"
    )))
}

#[async_trait::async_trait]
impl Scanner for ClamdScanner {
    fn name(&self) -> &'static str {
        "clamd"
    }

    async fn scan(
        &self,
        input: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> Result<Verdict, ScanError> {
        let attempt = self.acquire()?;
        match self.instream(input).await {
            Ok(verdict) => {
                attempt.succeeded();
                Ok(verdict)
            }
            Err(failure) => Err(self.settle(attempt, failure)),
        }
    }

    async fn health(&self) -> Result<(), ScanError> {
        self.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(reply: &str) -> Option<Verdict> {
        parse_reply(reply).ok()
    }

    #[test]
    fn replies_map_to_verdicts_and_everything_else_is_no_verdict() {
        assert_eq!(verdict("stream: OK"), Some(Verdict::Clean));
        assert_eq!(
            verdict("stream: Chronicle.Test.EICAR.UNOFFICIAL FOUND"),
            Some(Verdict::Infected {
                signature: "Chronicle.Test.EICAR.UNOFFICIAL".into()
            })
        );
        assert!(matches!(
            parse_reply("INSTREAM size limit exceeded. ERROR"),
            Err(Failure::Refused(_))
        ));
        assert!(matches!(parse_reply(""), Err(Failure::Transport(_))));
        assert!(matches!(
            parse_reply("stream: FOUND"),
            Err(Failure::Transport(_))
        ));
        assert!(matches!(
            parse_reply("stream: OKAY"),
            Err(Failure::Transport(_))
        ));
    }
}
