//! Serves the HTTP router on the public listener with the limits that keep
//! slow or greedy clients from holding it: a connection permit taken before
//! `accept` (`http.max_connections`), seats per client network
//! (`http.max_connections_per_ip`, an IPv6 /64 counting as one), a deadline
//! for each request head (`http.header_timeout`, from its first byte), for
//! each request body (`http.body_timeout`, whole, then `408`), and for a
//! kept-alive connection waiting for its next request, or a client not
//! reading its answer (`http.idle_timeout`). A new connection that sends
//! nothing has the header deadline.

use crate::config::HttpConfig;
use crate::net::Seats;
use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// How long connections may finish their requests at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a busy connection re-checks its deadlines.
const RECHECK: Duration = Duration::from_secs(1);
/// How long a refused client may take to read its `503`.
const REFUSAL_WRITE: Duration = Duration::from_secs(5);

/// The timeouts of one connection.
#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    body: Duration,
    idle: Duration,
}

/// Serves `router` on `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    config: &HttpConfig,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let seats = Seats::new(config.max_connections, config.max_connections_per_ip, 0);
    let timeouts = Timeouts {
        header: config.header_timeout.0,
        body: config.body_timeout.0,
        idle: config.idle_timeout.0,
    };
    let mut connections = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let seat = match seats.take(peer.ip()) {
            Ok(seat) => seat,
            Err(refused) => {
                metrics::counter!("eas_http_connections_refused_total").increment(1);
                tracing::debug!(%peer, %refused, "HTTP connection refused");
                tokio::spawn(async move {
                    let _permit = permit;
                    refuse(stream).await;
                });
                continue;
            }
        };
        let router = router.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _seat = seat;
            connection(stream, peer, router, timeouts, stop).await;
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Answers a connection over its network's cap with `503` and closes it.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"success":false,"error":"too many connections from your network"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// What a connection is doing, for its deadlines.
struct Activity {
    /// Requests handed to the router and not answered yet.
    in_flight: usize,
    /// When the connection last became idle (opened, or a request answered).
    idle_since: Instant,
    /// When the first byte of the next request head arrived.
    head_since: Option<Instant>,
    /// A request was answered on this connection: it is kept alive, not new.
    served: bool,
}

type Shared = Arc<Mutex<Activity>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Activity> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Activity {
    /// When the connection must be closed, or None while a request is being
    /// handled (its body has its own deadline; the handler is ours).
    fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        if self.in_flight > 0 {
            return None;
        }
        // A new connection that says nothing is a head that does not come.
        Some(match self.head_since {
            Some(since) => since + timeouts.header,
            None if !self.served => self.idle_since + timeouts.header,
            None => self.idle_since + timeouts.idle,
        })
    }
}

/// Serves one connection until it ends, a deadline passes, or shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) {
    let activity: Shared = Arc::new(Mutex::new(Activity {
        in_flight: 0,
        idle_since: Instant::now(),
        head_since: None,
        served: false,
    }));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let router = router.clone();
            let activity = activity.clone();
            async move {
                {
                    let mut a = lock(&activity);
                    a.in_flight += 1;
                    a.head_since = None;
                }
                let expired = Arc::new(AtomicBool::new(false));
                let mut request = request.map(|body| {
                    Body::new(DeadlineBody {
                        inner: Body::new(body),
                        sleep: Box::pin(tokio::time::sleep(timeouts.body)),
                        expired: expired.clone(),
                    })
                });
                request.extensions_mut().insert(ConnectInfo(peer));
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                let response = if expired.load(Ordering::Relaxed) {
                    metrics::counter!("eas_http_timeouts_total", "phase" => "body").increment(1);
                    body_timeout_response()
                } else {
                    response
                };
                {
                    let mut a = lock(&activity);
                    a.in_flight = a.in_flight.saturating_sub(1);
                    a.idle_since = Instant::now();
                    a.served = true;
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The deadlines here replace hyper's header timer, which would also
    // cut idle keep-alive connections at the header timeout.
    builder.keep_alive(true).header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = lock(&activity).deadline(timeouts);
        let wake = deadline.unwrap_or_else(|| Instant::now() + RECHECK);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake) => {
                let deadline = lock(&activity).deadline(timeouts);
                if deadline.is_some_and(|d| d <= Instant::now()) {
                    let phase = if lock(&activity).head_since.is_some() { "header" } else { "idle" };
                    metrics::counter!("eas_http_timeouts_total", "phase" => phase).increment(1);
                    tracing::debug!(%peer, phase, "HTTP connection timed out");
                    return; // dropping the connection closes it
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

fn body_timeout_response() -> Response {
    let mut response = (
        axum::http::StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({
            "success": false,
            "error": "request body not received in time",
        })),
    )
        .into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// A request body that fails once `sleep` ends before it is whole.
struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new("request body timeout"))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when a request head starts to arrive.
struct Watched {
    inner: TcpStream,
    activity: Shared,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let mut a = lock(&self.activity);
            if a.in_flight == 0 && a.head_since.is_none() {
                a.head_since = Some(Instant::now());
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
