//! The `amber` CLI as a client of `amber serve`.

pub mod catalog;
pub mod cold;
pub mod pull;
pub mod pull_env;
pub mod pull_image;
pub mod pull_tar;
pub mod push;
pub mod push_env;
pub mod push_image;
pub mod push_tar;
pub mod push_tree;
pub mod push_volume;

use std::path::Path;

use amber_proto::v1::admin_client::AdminClient;
use amber_proto::v1::catalog_client::CatalogClient;
use amber_proto::v1::ingest_client::IngestClient;
use amber_proto::v1::restore_client::RestoreClient;
use anyhow::{Context, Result, anyhow, bail};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::cli::Global;

/// Largest message the client accepts.
const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// A connection to a server, with the token every call carries.
#[derive(Clone)]
pub struct Remote {
    channel: Channel,
    auth: MetadataValue<tonic::metadata::Ascii>,
    /// The vault named on the command line (empty: the token's).
    pub vault: String,
    /// Counters a progress display reads (pushes).
    pub progress: Option<std::sync::Arc<amber_engine::ops::progress::Progress>>,
}

impl Remote {
    /// Connects to `--server` with the token from `AMBER_TOKEN`.
    ///
    /// # Errors
    /// No server or token, a bad URL or CA certificate, or a failed connection.
    pub async fn connect(g: &Global) -> Result<Remote> {
        let url = g
            .server
            .clone()
            .context("no server: pass --server URL or set AMBER_SERVER")?;
        let token = std::env::var("AMBER_TOKEN").map_err(|_| anyhow!("no token: set AMBER_TOKEN"))?;
        let auth = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| anyhow!("AMBER_TOKEN holds characters a token cannot have"))?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("bad server URL {url:?}"))?
            .initial_stream_window_size(amber_server::serve::STREAM_WINDOW)
            .initial_connection_window_size(amber_server::serve::CONNECTION_WINDOW);
        if url.starts_with("https://") {
            endpoint = endpoint.tls_config(tls(g.ca_cert.as_deref())?)?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        Ok(Remote {
            channel,
            auth,
            vault: g.vault.clone().unwrap_or_default(),
            progress: None,
        })
    }

    /// A request carrying the token.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut().insert("authorization", self.auth.clone());
        req
    }

    /// The Ingest client.
    pub fn ingest(&self) -> IngestClient<Channel> {
        IngestClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// The Restore client.
    pub fn restore(&self) -> RestoreClient<Channel> {
        RestoreClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    /// The Catalog client.
    pub fn catalog(&self) -> CatalogClient<Channel> {
        CatalogClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    /// The Admin client.
    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }
}

fn tls(ca: Option<&Path>) -> Result<ClientTlsConfig> {
    let mut cfg = ClientTlsConfig::new();
    if let Some(path) = ca {
        let pem = std::fs::read(path).with_context(|| format!("cannot read CA certificate {}", path.display()))?;
        cfg = cfg.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(cfg)
}

/// A server's error status, with what the client was doing.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message} ({code:?})")]
pub struct RemoteError {
    /// What the client was doing.
    pub what: String,
    /// The status code (the `kind` of a JSON error document).
    pub code: tonic::Code,
    /// The server's message.
    pub message: String,
}

/// A server's error status as a CLI error naming the code.
pub fn failed(what: &str, s: &Status) -> anyhow::Error {
    anyhow::Error::new(RemoteError {
        what: what.to_string(),
        code: s.code(),
        message: s.message().to_string(),
    })
}

/// Runs a client command on a fresh runtime.
///
/// # Errors
/// What the command returns.
pub fn block_on<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(work)
}

/// Refuses a local-only option with `--server`.
///
/// # Errors
/// Always, naming the option.
pub fn local_only(option: &str) -> Result<()> {
    bail!("{option} is not available with --server")
}

/// Feeds everything `src` yields into `sha`; returns the byte count.
///
/// # Errors
/// Read errors.
pub fn hash_all(src: &mut dyn std::io::Read, sha: &mut ring::digest::Context) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1024 * 1024];
    let mut total = 0u64;
    loop {
        match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                sha.update(buf.get(..n).unwrap_or_default());
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
