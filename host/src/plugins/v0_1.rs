//! Contract `certctl:plugin@0.1.0`: bindings and the host side of its imports. A later contract
//! version gets its own module beside this one, and the runtime dispatches on the version a
//! component declares, so plugins built against 0.1.0 keep working.

use std::sync::Arc;

use super::sandbox::StoreState;

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "certctl:plugin/host",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub use generated::certctl::plugin::types::{DnsRecord, Event, PluginError, Severity};
use generated::certctl::plugin::{host_challenge, host_dns, host_keystore, host_kv, host_log, host_mail, types};
pub use generated::exports::certctl::plugin::{dns_solver, issuer, notifier};

pub const CONTRACT: &str = "0.1.0";

/// Adds the host's imports of this contract version to a linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<StoreState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    host_log::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    host_kv::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    host_keystore::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    host_challenge::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    host_mail::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    host_dns::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    types::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    Ok(())
}

impl types::Host for StoreState {}

impl host_log::Host for StoreState {
    async fn log(&mut self, level: host_log::Level, message: String) -> wasmtime::Result<()> {
        let level_name = match level {
            host_log::Level::Trace => "trace",
            host_log::Level::Debug => "debug",
            host_log::Level::Info => "info",
            host_log::Level::Warn => "warn",
            host_log::Level::Error => "error",
        };
        if self.log.push(level_name, &message) {
            match level {
                host_log::Level::Error => tracing::error!(plugin = %self.plugin, "{message}"),
                host_log::Level::Warn => tracing::warn!(plugin = %self.plugin, "{message}"),
                host_log::Level::Info => tracing::info!(plugin = %self.plugin, "{message}"),
                host_log::Level::Debug => tracing::debug!(plugin = %self.plugin, "{message}"),
                host_log::Level::Trace => tracing::trace!(plugin = %self.plugin, "{message}"),
            }
        }
        Ok(())
    }
}

/// The instance context of the call, or a trap: issuer imports are only linked for calls the
/// host makes on behalf of an instance.
fn context(state: &StoreState) -> wasmtime::Result<&super::sandbox::InstanceContext> {
    state
        .instance
        .as_ref()
        .ok_or_else(|| wasmtime::format_err!("host-kv/host-keystore used outside an instance call"))
}

impl host_kv::Host for StoreState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let ctx = context(self)?;
        ctx.store
            .kv_get(&ctx.id, &key)
            .await
            .map_err(|e| wasmtime::format_err!("host-kv storage failed: {e}"))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        let ctx = context(self)?;
        match ctx.store.kv_set(&ctx.id, &key, &value).await {
            Ok(result) => Ok(result),
            Err(e) => {
                tracing::error!(plugin = %self.plugin, error = %e, "host-kv write failed");
                Ok(Err("the host could not store the value; try again later".into()))
            }
        }
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let ctx = context(self)?;
        ctx.store
            .kv_delete(&ctx.id, &key)
            .await
            .map_err(|e| wasmtime::format_err!("host-kv storage failed: {e}"))
    }
}

fn key_type(alg: host_keystore::KeyAlgorithm) -> crate::model::KeyType {
    use crate::model::KeyType;
    use host_keystore::KeyAlgorithm as A;
    match alg {
        A::EcdsaP256 => KeyType::EcdsaP256,
        A::EcdsaP384 => KeyType::EcdsaP384,
        A::Rsa2048 => KeyType::Rsa2048,
        A::Rsa3072 => KeyType::Rsa3072,
        A::Rsa4096 => KeyType::Rsa4096,
        A::Ed25519 => KeyType::Ed25519,
    }
}

fn keystore_error(e: crate::keystore::KeystoreError) -> PluginError {
    use crate::keystore::KeystoreError as K;
    match e {
        K::NotFound(id) => PluginError::NotFound(format!("no key {id} belongs to this instance")),
        K::Store(_) => PluginError::Transient("the keystore is unavailable; try again later".into()),
        other => PluginError::Permanent(other.to_string()),
    }
}

/// Checks that `key_id` belongs to the calling instance; another instance's key is reported
/// as not found, so ids reveal nothing.
async fn owned(ctx: &super::sandbox::InstanceContext, key_id: &str) -> Result<(), PluginError> {
    match ctx.keystore.info(key_id).await {
        Ok(info) if info.owner == ctx.key_owner() => Ok(()),
        Ok(_) => Err(keystore_error(crate::keystore::KeystoreError::NotFound(
            key_id.to_string(),
        ))),
        Err(e) => Err(keystore_error(e)),
    }
}

impl host_keystore::Host for StoreState {
    async fn generate_key(
        &mut self,
        algorithm: host_keystore::KeyAlgorithm,
    ) -> wasmtime::Result<Result<String, PluginError>> {
        let ctx = context(self)?;
        Ok(ctx
            .keystore
            .generate(&ctx.key_owner(), key_type(algorithm))
            .await
            .map(|k| k.id)
            .map_err(keystore_error))
    }

    async fn public_key(&mut self, key_id: String) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        let ctx = context(self)?;
        if let Err(e) = owned(ctx, &key_id).await {
            return Ok(Err(e));
        }
        Ok(ctx
            .keystore
            .info(&key_id)
            .await
            .map(|k| k.public_key)
            .map_err(keystore_error))
    }

    async fn sign(&mut self, key_id: String, data: Vec<u8>) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        let ctx = context(self)?;
        if let Err(e) = owned(ctx, &key_id).await {
            return Ok(Err(e));
        }
        Ok(ctx.keystore.sign(&key_id, &data).await.map_err(keystore_error))
    }
}

/// The broker and the issuer instance of the call, or a typed error: challenges are for issuer
/// calls the lifecycle makes on behalf of an instance.
fn broker(state: &StoreState) -> Result<(Arc<crate::challenge::ChallengeBroker>, String), PluginError> {
    match state.instance.as_ref() {
        Some(ctx) => match &ctx.challenges {
            Some(b) => Ok((b.clone(), ctx.id.clone())),
            None => Err(PluginError::Permanent("this server has no challenge broker".into())),
        },
        None => Err(PluginError::Permanent("challenges need an issuer instance".into())),
    }
}

impl host_challenge::Host for StoreState {
    async fn present_dns(
        &mut self,
        identifier: String,
        key_authorization: String,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        let (b, id) = match broker(self) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        let result = b.present_dns(&id, &identifier, &key_authorization).await;
        self.log.push(
            "host",
            &match &result {
                Ok(h) => format!("dns-01 for {identifier} presented (challenge {h})"),
                Err(e) => format!("dns-01 for {identifier} not presented: {e}"),
            },
        );
        Ok(result.map_err(Into::into))
    }

    async fn present_http(
        &mut self,
        token: String,
        key_authorization: String,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        let (b, id) = match broker(self) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        Ok(b.present_http(&id, &token, &key_authorization)
            .await
            .map_err(Into::into))
    }

    async fn present_persist(
        &mut self,
        identifier: String,
        issuer_domain_names: Vec<String>,
        account_uri: String,
        wildcard: bool,
    ) -> wasmtime::Result<Result<u64, PluginError>> {
        let (b, id) = match broker(self) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        let result = b
            .present_persist(&id, &identifier, &issuer_domain_names, &account_uri, wildcard)
            .await;
        self.log.push(
            "host",
            &match &result {
                Ok(h) => format!("dns-persist-01 for {identifier}: record requested (challenge {h})"),
                Err(e) => format!("dns-persist-01 for {identifier} not requested: {e}"),
            },
        );
        Ok(result.map_err(Into::into))
    }

    async fn ready(&mut self, handle: u64) -> wasmtime::Result<Result<bool, PluginError>> {
        let (b, id) = match broker(self) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        Ok(b.ready(&id, handle).await.map_err(Into::into))
    }

    async fn cleanup(&mut self, handle: u64) -> wasmtime::Result<Result<(), PluginError>> {
        let (b, id) = match broker(self) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        Ok(b.cleanup(&id, handle).await.map_err(Into::into))
    }
}

impl From<super::PluginFailure> for PluginError {
    fn from(f: super::PluginFailure) -> Self {
        use super::PluginFailure as F;
        match f {
            F::InvalidConfig(m) => PluginError::InvalidConfig(m),
            F::Auth(m) => PluginError::Auth(m),
            F::NotFound(m) => PluginError::NotFound(m),
            F::RateLimited(s) => PluginError::RateLimited(s),
            F::Transient(m) => PluginError::Transient(m),
            F::Permanent(m) => PluginError::Permanent(m),
        }
    }
}

impl host_mail::Host for StoreState {
    async fn send(&mut self, message: host_mail::MailMessage) -> wasmtime::Result<Result<(), PluginError>> {
        let Some(mailer) = self.instance.as_ref().and_then(|ctx| ctx.mailer.clone()) else {
            return Ok(Err(PluginError::InvalidConfig(
                "this server has no SMTP relay: set CERTCTL_SMTP_HOST and CERTCTL_SMTP_FROM".into(),
            )));
        };
        let message = crate::mail::Message {
            to: message.to,
            subject: message.subject,
            text_body: message.text_body,
            html_body: message.html_body,
        };
        let recipients = message.to.len();
        let result = mailer.send(&message).await;
        let line = match &result {
            Ok(()) => format!("mail to {recipients} recipient(s) accepted by the relay"),
            Err(e) => format!("mail not sent: {e}"),
        };
        self.log.push("host", &line);
        Ok(result.map_err(Into::into))
    }
}

impl host_dns::Host for StoreState {
    async fn exchange(
        &mut self,
        server: String,
        message: Vec<u8>,
        transport: host_dns::Transport,
    ) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        let refuse = |log: &super::sandbox::CallLog, reason: String| {
            log.push("host", &format!("DNS message refused: {reason}"));
            PluginError::Auth(reason)
        };
        // HOST, HOST:PORT or [V6]:PORT.
        let (host, port) = match server.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => match p.parse::<u16>() {
                Ok(port) => (h.trim_start_matches('[').trim_end_matches(']').to_string(), port),
                Err(_) => {
                    return Ok(Err(PluginError::InvalidConfig(format!(
                        "{server:?}: port is not a number"
                    ))));
                }
            },
            _ => (server.trim_start_matches('[').trim_end_matches(']').to_string(), 53),
        };
        let allowed = self.hooks.allowed.clone();
        if !allowed.permits("dns", &host.to_ascii_lowercase(), port) {
            let reason = format!(
                "dns://{host}:{port} is not granted to plugin {}: add it to its outbound_hosts",
                self.plugin
            );
            return Ok(Err(refuse(&self.log, reason)));
        }
        let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(a) => a.collect(),
            Err(e) => return Ok(Err(PluginError::Transient(format!("cannot resolve {host}: {e}")))),
        };
        let Some(addr) = addrs.first().copied() else {
            return Ok(Err(PluginError::Transient(format!("{host} has no address"))));
        };
        if !allowed.allow_private_networks && addrs.iter().any(|a| super::grants::is_private(a.ip())) {
            let reason = format!(
                "{host} resolves to a private address and plugin {} has no private-network grant",
                self.plugin
            );
            return Ok(Err(refuse(&self.log, reason)));
        }
        let tcp = matches!(transport, host_dns::Transport::Tcp);
        let timeout = self.hooks.timeout;
        Ok(crate::dns::exchange(addr, &message, tcp, timeout)
            .await
            .map_err(PluginError::Transient))
    }
}
