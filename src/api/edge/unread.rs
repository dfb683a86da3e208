//! A request answered before its body was read: the rest of the body is read (within
//! bounds) before the answer goes out, or the answer says `Connection: close`.
//!
//! Why: many answers come before the body is read — `401` for a missing token, `429`,
//! `403`, a `404` for an unknown file, `415`, a `413` decided from `Content-Length`, a
//! `503` during an outage. An HTTP/1.1 connection whose request body is left unread
//! cannot carry another request, so hyper closes it after the answer, without a
//! `Connection: close` the client could have seen. A client that reuses connections
//! from a pool (reqwest, browsers, `requests`) then sends its next request into a
//! connection being closed and gets a transport error instead of an answer — for a
//! `429` or `503`, instead of the `Retry-After` it needed.
//!
//! So every request's body is tracked. When the response is ready and the body was left
//! unfinished, it is read to its end if the rest is small (`DRAIN_BYTES`, declared or
//! seen) and arrives promptly (`DRAIN_FOR`): the connection then stays usable. Otherwise
//! the answer carries `Connection: close`, so the client knows not to reuse it. A request
//! with `Expect: 100-continue` whose body was never polled is not drained: its client
//! has not sent the body and is waiting to be told whether to (reading would tell it
//! to); the answer closes the connection. Requests without a body (every `GET`) and
//! HTTP/2 (whose streams are independent) pass untouched.
//!
//! Hand-written: tower-http has no such layer; the body wrapper is the only way to get
//! an unfinished body back from a handler that dropped it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use tokio::sync::oneshot;

/// The most of an unread body read after the answer is decided.
const DRAIN_BYTES: u64 = 1 << 20;
/// How long the rest of a body may take to arrive.
const DRAIN_FOR: Duration = Duration::from_secs(1);

pub async fn finish_unread_bodies(request: Request, next: Next) -> Response {
    let http1 = matches!(request.version(), Version::HTTP_10 | Version::HTTP_11);
    if !http1 || request.body().is_end_stream() {
        return next.run(request).await;
    }
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared: Option<u64> = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (tx, mut rx) = oneshot::channel();
    let request = request.map(|body| {
        Body::new(Tracked {
            inner: Some(body),
            seen: 0,
            polled: false,
            finished: false,
            unread: Some(tx),
        })
    });
    let mut response = next.run(request).await;
    // Nothing comes back for a body read to its end (or broken), or one still held.
    let Ok(rest) = rx.try_recv() else {
        return response;
    };
    let waiting_to_send = expects_continue && !rest.polled;
    let small = declared.is_none_or(|d| d.saturating_sub(rest.seen) <= DRAIN_BYTES);
    if !waiting_to_send && small && drain(rest.body).await {
        return response;
    }
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads `body` to its end within the bounds; whether it got there.
async fn drain(mut body: Body) -> bool {
    let read = async {
        let mut seen = 0u64;
        loop {
            match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if seen > DRAIN_BYTES {
                        return false;
                    }
                }
            }
        }
    };
    tokio::time::timeout(DRAIN_FOR, read).await.unwrap_or(false)
}

/// What a handler left of a body it did not read to its end.
struct Unread {
    body: Body,
    seen: u64,
    polled: bool,
}

/// A request body that hands itself back, if dropped unfinished, to the layer above.
struct Tracked {
    inner: Option<Body>,
    seen: u64,
    polled: bool,
    /// Read to its end, or broken (a client gone mid-body): nothing to hand back.
    finished: bool,
    unread: Option<oneshot::Sender<Unread>>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        this.polled = true;
        let polled = Pin::new(inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finished = true,
            Poll::Ready(Some(Ok(frame))) => {
                this.seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let (Some(body), Some(tx)) = (self.inner.take(), self.unread.take())
            && !body.is_end_stream()
        {
            let _ = tx.send(Unread {
                body,
                seen: self.seen,
                polled: self.polled,
            });
        }
    }
}
