//! Virus scanning against a real clamd (Debian's clamav-daemon started by
//! scripts/start-clamd.sh with the project's signatures/). Tests that need clamd read
//! `CLAMD_ADDR`; without it they fail in CI and print a loud skip line elsewhere. The
//! failure-path tests (closed port, hanging server) need no clamd and always run.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chronicle::scan::{ClamdOptions, ClamdScanner, ScanError, ScanSettings, Scanner, Verdict};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::common::clamd_addr;

#[path = "../../src/scan/test_zip.rs"]
mod test_zip;

pub use test_zip::{Member, Method, zip};

pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The StreamMaxLength scripts/start-clamd.sh configures (64M).
const CLAMD_STREAM_MAX: u64 = 64 << 20;

fn clamd(addr: &str) -> ClamdScanner {
    ClamdScanner::new(ClamdOptions::new(addr))
}

async fn scan(scanner: &dyn Scanner, bytes: &[u8]) -> Result<Verdict, ScanError> {
    let mut input = bytes;
    scanner.scan(&mut input).await
}

fn signature(verdict: Verdict) -> String {
    match verdict {
        Verdict::Infected { signature } => signature,
        Verdict::Clean => panic!("expected an infection, got Clean"),
    }
}

#[tokio::test]
async fn clamd_finds_eicar_by_our_signature_name() {
    let Some(addr) = clamd_addr("clamd_finds_eicar_by_our_signature_name") else {
        return;
    };
    // Built the way the worker builds it: from the environment's settings.
    let settings = ScanSettings::from_lookup(&|k| (k == "CLAMD_ADDR").then(|| addr.clone()))
        .expect("settings");
    let scanner = settings.build().expect("scanner");
    assert_eq!(scanner.name(), "clamd");
    scanner.health().await.expect("clamd answers PING");

    let found = signature(scan(scanner.as_ref(), EICAR).await.unwrap());
    assert!(found.starts_with("Chronicle.Test.EICAR"), "{found}");
}

#[tokio::test]
async fn clamd_finds_eicar_inside_zips() {
    let Some(addr) = clamd_addr("clamd_finds_eicar_inside_zips") else {
        return;
    };
    let scanner = clamd(&addr);
    // Padded so deflate really compresses it: the raw archive does not contain EICAR.
    let padded = [&[b'x'; 4000][..], EICAR].concat();
    let archive = zip(&[
        Member::new("notes.txt", b"quarterly numbers", Method::Deflated),
        Member::new("tool.com", &padded, Method::Deflated),
    ]);
    assert!(!archive.windows(EICAR.len()).any(|w| w == EICAR));
    let found = signature(scan(&scanner, &archive).await.unwrap());
    assert!(found.starts_with("Chronicle.Test.EICAR"), "{found}");

    let nested = zip(&[Member::new("inner.zip", &archive, Method::Deflated)]);
    let found = signature(scan(&scanner, &nested).await.unwrap());
    assert!(
        found.starts_with("Chronicle.Test.EICAR"),
        "zip in zip: {found}"
    );
}

#[tokio::test]
async fn clamd_passes_clean_bytes() {
    let Some(addr) = clamd_addr("clamd_passes_clean_bytes") else {
        return;
    };
    let scanner = clamd(&addr);
    // Several INSTREAM chunks, and EICAR's text cut short.
    let mut bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    bytes.extend_from_slice(&EICAR[..60]);
    assert_eq!(scan(&scanner, &bytes).await.unwrap(), Verdict::Clean);
    assert_eq!(scan(&scanner, b"").await.unwrap(), Verdict::Clean);
    let archive = zip(&[Member::new("a.txt", b"hello", Method::Deflated)]);
    assert_eq!(scan(&scanner, &archive).await.unwrap(), Verdict::Clean);
}

#[tokio::test]
async fn clamd_size_limit_is_no_verdict_and_not_clamds_failure() {
    let Some(addr) = clamd_addr("clamd_size_limit_is_no_verdict_and_not_clamds_failure") else {
        return;
    };
    let scanner = ClamdScanner::new(ClamdOptions {
        breaker_threshold: 1,
        ..ClamdOptions::new(addr.as_str())
    });
    // Past StreamMaxLength clamd answers "INSTREAM size limit exceeded. ERROR" and hangs
    // up while we are still writing: that must never read as clean.
    let mut oversized = tokio::io::repeat(0).take(CLAMD_STREAM_MAX + (16 << 20));
    match scanner.scan(&mut oversized).await {
        Err(ScanError::Unavailable(reason)) => {
            assert!(reason.contains("size limit"), "{reason}")
        }
        other => panic!(
            "expected Unavailable (is clamd's StreamMaxLength 64M, as scripts/start-clamd.sh \
             sets?), got {other:?}"
        ),
    }
    // clamd answered, so it is alive: the breaker stays closed even at threshold 1.
    assert!(!scanner.breaker().is_open());
    let found = signature(scan(&scanner, EICAR).await.unwrap());
    assert!(found.starts_with("Chronicle.Test.EICAR"), "{found}");
}

/// A port nobody listens on.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

#[tokio::test]
async fn unreachable_clamd_is_unavailable_and_opens_the_circuit() {
    let scanner = ClamdScanner::new(ClamdOptions {
        breaker_threshold: 2,
        breaker_cooldown: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(2),
        ..ClamdOptions::new(closed_port().await)
    });
    for _ in 0..2 {
        match scan(&scanner, EICAR).await {
            Err(ScanError::Unavailable(reason)) => assert!(reason.contains("connect"), "{reason}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(scanner.breaker().is_open());
    let started = Instant::now();
    match scan(&scanner, EICAR).await {
        Err(ScanError::Unavailable(reason)) => assert!(reason.contains("circuit open"), "{reason}"),
        other => panic!("expected a fast circuit-open failure, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(matches!(
        scanner.health().await,
        Err(ScanError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_hanging_clamd_times_out_and_then_recovers_through_half_open() {
    // Accepts, reads everything, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = conn.read_to_end(&mut sink).await;
            });
        }
    });
    let scanner = ClamdScanner::new(ClamdOptions {
        io_timeout: Duration::from_millis(300),
        breaker_threshold: 1,
        breaker_cooldown: Duration::from_millis(200),
        ..ClamdOptions::new(addr)
    });
    match scan(&scanner, EICAR).await {
        Err(ScanError::Unavailable(reason)) => assert!(reason.contains("no reply"), "{reason}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(scanner.breaker().is_open());
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Cooldown over: one trial goes through (and times out again, reopening the circuit).
    match scan(&scanner, EICAR).await {
        Err(ScanError::Unavailable(reason)) => assert!(reason.contains("no reply"), "{reason}"),
        other => panic!("expected the half-open trial to reach the server, got {other:?}"),
    }
    assert!(scanner.breaker().is_open());
    server.abort();
}

/// An input whose reads fail, as a broken temp file would.
struct FailingInput;

impl AsyncRead for FailingInput {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Err(std::io::Error::other("disk on fire")))
    }
}

#[tokio::test]
async fn an_unreadable_input_is_an_io_error_not_a_scanner_failure() {
    let Some(addr) = clamd_addr("an_unreadable_input_is_an_io_error_not_a_scanner_failure") else {
        return;
    };
    let scanner = ClamdScanner::new(ClamdOptions {
        breaker_threshold: 1,
        ..ClamdOptions::new(addr)
    });
    assert!(matches!(
        scanner.scan(&mut FailingInput).await,
        Err(ScanError::Io(_))
    ));
    assert!(
        !scanner.breaker().is_open(),
        "our disk is not clamd's fault"
    );
}
