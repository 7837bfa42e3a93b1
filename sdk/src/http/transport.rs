//! One request over `wasi:http/outgoing-handler`, blocking.
//!
//! Written against the WASI bindings directly rather than wstd 0.6's async `Client`, for three
//! reasons:
//! - Failure order. wstd's `Client::send` drives "write the request body" and "wait for the
//!   response" concurrently and returns whichever fails first. When a host refuses a request
//!   or a server answers and closes early, the body's receiver is dropped and the body write
//!   fails with `ConnectionReset`, a symptom that can win over the cause (`HttpRequestDenied`)
//!   or over a good response, depending on host scheduling (the design notes report exactly
//!   that with wasmtime's default send path). Here the body is written first, its failure only
//!   remembered, and the response future decides: its error is the cause, and a response that
//!   arrived is returned even if the server stopped reading the body.
//! - Timeouts. Hosts may ignore `request-options` (certctl's does); [`Request::timeout`] is
//!   enforced here with a monotonic-clock deadline on every wait.
//! - Size: no async runtime, `http`, `anyhow` or futures crates; components are ~120 KB smaller.
//!
//! [`Request::timeout`]: super::Request::timeout

use std::time::Duration;

use wasip2::clocks::monotonic_clock;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use wasip2::io::poll::{self, Pollable};
use wasip2::io::streams::StreamError;

use super::{MAX_RESPONSE_BODY, Method, RawResponse, Target, cause};

/// `blocking-write-and-flush` takes at most 4096 bytes per call.
const WRITE_CHUNK: usize = 4096;
const READ_CHUNK: u64 = 64 * 1024;

pub(super) fn send(
    method: Method,
    target: &Target,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Option<Duration>,
) -> Result<RawResponse, String> {
    let deadline = timeout.map(Deadline::after);

    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&entries).map_err(|e| format!("request headers refused: {e:?}"))?;
    let request = OutgoingRequest::new(fields);
    request
        .set_method(&wasi_method(method))
        .map_err(|()| "method refused".to_string())?;
    request
        .set_scheme(Some(if target.https { &Scheme::Https } else { &Scheme::Http }))
        .map_err(|()| "scheme refused".to_string())?;
    request
        .set_authority(Some(&target.authority))
        .map_err(|()| "host refused".to_string())?;
    request
        .set_path_with_query(Some(&target.path_and_query))
        .map_err(|()| "path refused".to_string())?;
    let outgoing_body = request.body().map_err(|()| "request body unavailable".to_string())?;

    let options = timeout.map(|t| {
        let options = RequestOptions::new();
        let nanos = Some(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX));
        // Hosts may not support these; the deadline below applies regardless.
        let _ = options.set_connect_timeout(nanos);
        let _ = options.set_first_byte_timeout(nanos);
        let _ = options.set_between_bytes_timeout(nanos);
        options
    });

    let future = outgoing_handler::handle(request, options).map_err(|code| describe(&code))?;

    // The body goes first; if the host or server stops reading it, the response says why.
    let body_error = write_body(outgoing_body, body).err();

    let response = match wait_for_response(&future, deadline.as_ref()) {
        Waited::Response(r) => r,
        Waited::Failed(code) => return Err(describe(&code)),
        Waited::TimedOut => return Err(cause::timed_out(timeout)),
        Waited::Broken(why) => {
            return Err(match body_error {
                Some(body) => format!("{why} (sending the body failed: {body})"),
                None => why,
            });
        }
    };
    drop(future);

    let status = response.status();
    let headers = {
        let fields = response.headers();
        let entries = fields.entries();
        drop(fields);
        entries
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect()
    };
    let incoming = response
        .consume()
        .map_err(|()| "response body unavailable".to_string())?;
    let body = read_body(incoming, deadline.as_ref()).map_err(|e| match e {
        ReadError::TimedOut => cause::timed_out(timeout),
        ReadError::Failed(why) => why,
    })?;
    drop(response);
    Ok(RawResponse { status, headers, body })
}

fn wasi_method(method: Method) -> WasiMethod {
    match method {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Patch => WasiMethod::Patch,
        Method::Delete => WasiMethod::Delete,
        Method::Options => WasiMethod::Options,
    }
}

/// A point on the monotonic clock.
struct Deadline(monotonic_clock::Instant);

impl Deadline {
    fn after(t: Duration) -> Deadline {
        let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
        Deadline(monotonic_clock::now().saturating_add(nanos))
    }

    /// Blocks until `ready` is ready (true) or the deadline passes (false).
    fn wait(&self, ready: &Pollable) -> bool {
        let timer = monotonic_clock::subscribe_instant(self.0);
        let done = poll::poll(&[ready, &timer]);
        done.contains(&0)
    }
}

fn block(ready: &Pollable, deadline: Option<&Deadline>) -> bool {
    match deadline {
        Some(d) => d.wait(ready),
        None => {
            ready.block();
            true
        }
    }
}

fn write_body(outgoing: OutgoingBody, body: &[u8]) -> Result<(), String> {
    {
        let stream = outgoing
            .write()
            .map_err(|()| "request body stream unavailable".to_string())?;
        for chunk in body.chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(|e| match e {
                StreamError::Closed => "the request body was not read to the end".to_string(),
                StreamError::LastOperationFailed(err) => err.to_debug_string(),
            })?;
        }
        // The stream is a child of the body: it must be gone before `finish`.
    }
    OutgoingBody::finish(outgoing, None).map_err(|code| describe(&code))
}

enum Waited {
    Response(wasip2::http::types::IncomingResponse),
    Failed(ErrorCode),
    TimedOut,
    Broken(String),
}

fn wait_for_response(future: &FutureIncomingResponse, deadline: Option<&Deadline>) -> Waited {
    {
        let ready = future.subscribe();
        if !block(&ready, deadline) {
            return Waited::TimedOut;
        }
    }
    match future.get() {
        Some(Ok(Ok(response))) => Waited::Response(response),
        Some(Ok(Err(code))) => Waited::Failed(code),
        Some(Err(())) => Waited::Broken("the response was already taken".into()),
        None => Waited::Broken("the host reported the response ready, but it is not".into()),
    }
}

enum ReadError {
    TimedOut,
    Failed(String),
}

fn read_body(incoming: IncomingBody, deadline: Option<&Deadline>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| ReadError::Failed("response body stream unavailable".into()))?;
        let ready = stream.subscribe();
        loop {
            match stream.read(READ_CHUNK) {
                Ok(bytes) if bytes.is_empty() => {
                    if !block(&ready, deadline) {
                        return Err(ReadError::TimedOut);
                    }
                }
                Ok(bytes) => {
                    if body.len() + bytes.len() > MAX_RESPONSE_BODY {
                        return Err(ReadError::Failed(cause::body_too_large()));
                    }
                    body.extend_from_slice(&bytes);
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(err)) => {
                    return Err(ReadError::Failed(format!(
                        "reading the response body failed: {}",
                        err.to_debug_string()
                    )));
                }
            }
        }
        // `ready` and `stream` are children of `incoming`: dropped here, before `finish`.
    }
    // Trailers are not used; finishing releases the body.
    drop(IncomingBody::finish(incoming));
    Ok(body)
}

/// An operator-readable description of a `wasi:http` error.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => cause::REQUEST_DENIED.into(),
        ErrorCode::DnsTimeout => "DNS lookup timed out".into(),
        ErrorCode::DnsError(p) => match &p.rcode {
            Some(rcode) => format!("DNS lookup failed ({rcode})"),
            None => "DNS lookup failed".into(),
        },
        ErrorCode::DestinationNotFound => "destination not found (no such host)".into(),
        ErrorCode::DestinationUnavailable => "destination unavailable".into(),
        ErrorCode::DestinationIpProhibited => "destination address prohibited".into(),
        ErrorCode::DestinationIpUnroutable => "destination address unroutable".into(),
        ErrorCode::ConnectionRefused => cause::CONNECTION_REFUSED.into(),
        ErrorCode::ConnectionTerminated => "connection terminated".into(),
        ErrorCode::ConnectionTimeout => cause::CONNECTION_TIMEOUT.into(),
        ErrorCode::ConnectionReadTimeout => "timed out reading the response".into(),
        ErrorCode::ConnectionWriteTimeout => "timed out sending the request".into(),
        ErrorCode::ConnectionLimitReached => "connection limit reached".into(),
        ErrorCode::TlsProtocolError => "TLS protocol error".into(),
        ErrorCode::TlsCertificateError => "TLS certificate error (is the server's CA trusted by the host?)".into(),
        ErrorCode::TlsAlertReceived(p) => match &p.alert_message {
            Some(m) => format!("TLS alert received: {m}"),
            None => "TLS alert received".into(),
        },
        ErrorCode::HttpRequestBodySize(_) => "the request body is too large for the host".into(),
        ErrorCode::HttpResponseBodySize(_) => "the response body is too large for the host".into(),
        ErrorCode::HttpResponseIncomplete => "the response was incomplete".into(),
        ErrorCode::HttpResponseTimeout => "timed out waiting for the response".into(),
        ErrorCode::HttpProtocolError => "HTTP protocol error".into(),
        ErrorCode::InternalError(Some(m)) => format!("host error: {m}"),
        ErrorCode::InternalError(None) => "host error".into(),
        other => format!("{other:?}"),
    }
}
