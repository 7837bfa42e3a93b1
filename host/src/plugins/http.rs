//! Outbound HTTP for plugins: the only way out of the sandbox.
//!
//! Every request is checked against the plugin's allowed hosts, its destination addresses are
//! resolved and checked against private ranges (unless granted), and it is sent by our own
//! client (rustls with the system roots plus the operator's CA bundle, so private CAs work),
//! pinned to the addresses that were checked. Bodies are capped both ways. A refusal reaches
//! the guest as `HttpRequestDenied` and is logged by the host.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::grants::{Allowed, is_private};
use super::sandbox::CallLog;

/// Caps on one request.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;
pub const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

pub struct OutboundHooks {
    pub plugin: String,
    pub allowed: Arc<Allowed>,
    pub tls: Arc<rustls::ClientConfig>,
    pub log: Arc<CallLog>,
    pub timeout: Duration,
}

fn deny(plugin: &str, log: &CallLog, reason: String) -> HttpError {
    tracing::warn!(plugin, %reason, "outbound request refused");
    log.push("host", &format!("outbound request refused: {reason}"));
    HttpError::HttpRequestDenied
}

fn map_reqwest(e: &reqwest::Error) -> HttpError {
    if e.is_timeout() {
        HttpError::ConnectionTimeout
    } else if e.is_connect() {
        let text = format!("{e:?}");
        if text.contains("certificate") || text.contains("Certificate") {
            HttpError::TlsCertificateError
        } else {
            HttpError::ConnectionRefused
        }
    } else if e.is_body() || e.is_decode() {
        HttpError::HttpResponseIncomplete
    } else {
        HttpError::HttpProtocolError
    }
}

impl OutboundHooks {
    async fn send(
        plugin: String,
        allowed: Arc<Allowed>,
        tls: Arc<rustls::ClientConfig>,
        log: Arc<CallLog>,
        timeout: Duration,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let host = uri.host().ok_or(HttpError::HttpRequestUriInvalid)?.to_string();
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        if !allowed.permits(&scheme, &host, port) {
            return Err(deny(
                &plugin,
                &log,
                format!("{scheme}://{host}:{port} is not granted to plugin {plugin}"),
            ));
        }
        let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare_host.as_str(), port))
            .await
            .map_err(|_| HttpError::DestinationNotFound)?
            .collect();
        if addrs.is_empty() {
            return Err(HttpError::DestinationNotFound);
        }
        if !allowed.allow_private_networks
            && let Some(bad) = addrs.iter().find(|a| is_private(a.ip()))
        {
            return Err(deny(
                &plugin,
                &log,
                format!(
                    "{host} resolves to {}, a private address, and plugin {plugin} has no private-network grant",
                    bad.ip()
                ),
            ));
        }

        let (parts, body) = request.into_parts();
        let body = Limited::new(body, MAX_REQUEST_BODY)
            .collect()
            .await
            .map_err(|_| HttpError::HttpRequestBodySize(None))?
            .to_bytes();

        // A fresh client per request, pinned to the addresses checked above (no DNS rebinding).
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .resolve_to_addrs(&bare_host, &addrs)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(|_| HttpError::InternalError(Some("building the HTTP client".into())))?;
        let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
            .map_err(|_| HttpError::HttpRequestMethodInvalid)?;
        let mut req = client.request(method, uri.to_string()).body(body);
        for (name, value) in parts.headers.iter() {
            if name != http::header::HOST {
                req = req.header(name.as_str(), value.as_bytes());
            }
        }
        let resp = req.send().await.map_err(|e| map_reqwest(&e))?;
        let status = resp.status().as_u16();
        let mut builder = http::Response::builder().status(status);
        for (name, value) in resp.headers() {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        let mut collected = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(|e| map_reqwest(&e))? {
            if collected.len() + chunk.len() > MAX_RESPONSE_BODY {
                return Err(HttpError::HttpResponseBodySize(Some(MAX_RESPONSE_BODY as u64)));
            }
            collected.extend_from_slice(&chunk);
        }
        let body: WasiBody = Full::new(Bytes::from(collected))
            .map_err(|never| match never {})
            .boxed_unsync();
        builder
            .body(body)
            .map_err(|_| HttpError::InternalError(Some("building the response".into())))
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let fut = Self::send(
            self.plugin.clone(),
            self.allowed.clone(),
            self.tls.clone(),
            self.log.clone(),
            self.timeout,
            request,
        );
        Box::new(async move {
            let resp = fut.await?;
            Ok((
                resp,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

/// The TLS client configuration of outbound connections (plugins' HTTP, SMTP): system roots plus
/// an optional extra CA bundle.
pub fn client_tls(extra_ca: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    client_tls_with(extra_ca, None)
}

/// [`client_tls`] plus the certificates of `extra_pem` (a plugin instance's `ca_bundle`).
pub fn client_tls_with(
    extra_ca: Option<&std::path::Path>,
    extra_pem: Option<&str>,
) -> anyhow::Result<rustls::ClientConfig> {
    use anyhow::Context;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = extra_pem {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("not PEM certificates: {e}"))?;
        if certs.is_empty() {
            anyhow::bail!("holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("an unusable certificate: {e}"))?;
        }
    }
    if let Some(path) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read the CA bundle {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("CA bundle {} is not valid PEM", path.display()))?;
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("CA bundle {} holds an unusable certificate", path.display()))?;
        }
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS client versions")?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
