//! Per-call store state: WASI with nothing granted, wasi:http through [`OutboundHooks`], a
//! memory cap summed over all linear memories, and capped log/stdout capture.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::http::OutboundHooks;

/// Limits for one call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Sum of all linear memories of the instance.
    pub memory_bytes: usize,
    /// CPU time the guest may run, in epoch ticks (see `EPOCH_TICK`).
    pub cpu_ticks: u64,
    /// Wall-clock limit for the whole call, including time blocked in host calls.
    pub wall: std::time::Duration,
    /// Log lines kept per call (host-log + stdout + stderr); more are counted, not kept.
    pub log_lines: usize,
    /// Bytes of stdout/stderr kept per call.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 * 1024 * 1024,
            cpu_ticks: 200, // 2 s of CPU at 10 ms ticks
            wall: std::time::Duration::from_secs(30),
            log_lines: 200,
            output_bytes: 64 * 1024,
        }
    }
}

/// Counts memory across all linear memories and refuses growth past the cap.
pub struct MemoryCap {
    cap: usize,
    total: usize,
    pub exceeded: Arc<AtomicBool>,
}

impl MemoryCap {
    pub fn new(cap: usize) -> Self {
        MemoryCap {
            cap,
            total: 0,
            exceeded: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let next = self.total + desired.saturating_sub(current);
        if next > self.cap {
            self.exceeded.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        self.total = next;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Captured output of one call: lines kept up to a limit, the rest counted.
#[derive(Default)]
pub struct CallLog {
    pub lines: Mutex<Vec<(String, String)>>,
    pub dropped: AtomicUsize,
    limit: usize,
}

impl CallLog {
    pub fn new(limit: usize) -> Arc<CallLog> {
        Arc::new(CallLog {
            lines: Mutex::new(Vec::new()),
            dropped: AtomicUsize::new(0),
            limit,
        })
    }

    /// Keeps a line (truncated to 2 KiB) if there is room; returns whether it was kept.
    pub fn push(&self, level: &str, message: &str) -> bool {
        let Ok(mut lines) = self.lines.lock() else {
            return false;
        };
        if lines.len() >= self.limit {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut msg: String = message.chars().take(2048).collect();
        if msg.len() < message.len() {
            msg.push('…');
        }
        lines.push((level.to_string(), msg));
        true
    }
}

/// stdout/stderr of a guest: kept up to `cap` bytes, the rest discarded (writes always succeed,
/// so a chatty plugin is not broken by its own output).
#[derive(Clone)]
pub struct CappedOutput {
    buf: Arc<Mutex<Vec<u8>>>,
    cap: usize,
    pub dropped: Arc<AtomicUsize>,
}

impl CappedOutput {
    pub fn new(cap: usize) -> Self {
        CappedOutput {
            buf: Arc::new(Mutex::new(Vec::new())),
            cap,
            dropped: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn contents(&self) -> String {
        self.buf
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CappedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if let Ok(mut buf) = self.buf.lock() {
            let room = self.cap.saturating_sub(buf.len());
            let keep = room.min(data.len());
            buf.extend_from_slice(&data[..keep]);
            self.dropped.fetch_add(data.len() - keep, Ordering::Relaxed);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The plugin instance a call is made for, with the host services scoped to it (issuers'
/// `host-kv` and `host-keystore`).
#[derive(Clone)]
pub struct InstanceContext {
    pub id: String,
    pub store: crate::store::Store,
    pub keystore: Arc<crate::keystore::Keystore>,
    /// The SMTP relay for notifiers' `host-mail`, when the server has one.
    pub mailer: Option<Arc<crate::mail::Mailer>>,
    /// The challenge broker for issuers' `host-challenge`.
    pub challenges: Option<Arc<crate::challenge::ChallengeBroker>>,
    /// The instance's own trust for outbound HTTPS (its `ca_bundle` configuration key), in
    /// place of the server-wide roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl InstanceContext {
    /// The keystore owner name of this instance's keys.
    pub fn key_owner(&self) -> String {
        format!("instance:{}", self.id)
    }
}

/// Everything a store holds for one call.
pub struct StoreState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub http: WasiHttpCtx,
    pub hooks: OutboundHooks,
    pub limiter: MemoryCap,
    pub log: Arc<CallLog>,
    pub plugin: String,
    pub instance: Option<InstanceContext>,
}

impl StoreState {
    pub fn new(
        plugin: &str,
        hooks: OutboundHooks,
        log: Arc<CallLog>,
        limits: &Limits,
        stdout: CappedOutput,
        stderr: CappedOutput,
    ) -> Self {
        // Nothing is granted: no preopened directories, no environment, no arguments, no
        // sockets. Only stdout/stderr, into capped buffers.
        let wasi = WasiCtx::builder()
            .stdout(stdout)
            .stderr(stderr)
            .allow_ip_name_lookup(false)
            .build();
        StoreState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks,
            limiter: MemoryCap::new(limits.memory_bytes),
            log,
            plugin: plugin.to_string(),
            instance: None,
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
