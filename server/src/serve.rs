//! `amber serve`: the gRPC server hosting one vault per lab.

pub mod admin;
pub mod audit;
pub mod catalog;
pub mod cluster;
pub mod cold;
pub mod compact;
pub mod config;
pub mod convert;
pub mod ingest;
pub mod log;
pub mod metrics;
pub mod reader;
pub mod repair;
pub mod restore;
pub mod retention;
pub mod share;
pub mod state;
pub mod status;
pub mod tokens;
pub mod vaults;
pub mod verify;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use amber_proto::v1::admin_server::AdminServer;
use amber_proto::v1::catalog_server::CatalogServer;
use amber_proto::v1::ingest_server::IngestServer;
use amber_proto::v1::restore_server::RestoreServer;
use anyhow::{Context, Result};
use tokio::sync::{Semaphore, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use amber_engine::backend::s3::S3Options;
use amber_engine::store::{StoreUrl, open_store, sub_store};
use cluster::ClusterKey;
use config::ServerConfig;
use log::Level;
use state::State;
use tokens::TokenStore;
use vaults::Vaults;

/// HTTP/2 flow-control window per stream, bytes.
pub const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// HTTP/2 flow-control window per connection, bytes.
pub const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// Options of `amber serve`.
pub struct ServeArgs {
    /// Address to listen on (overrides the configuration).
    pub listen: Option<SocketAddr>,
    /// TOML configuration file.
    pub config: Option<PathBuf>,
}

/// Runs the server until SIGTERM or SIGINT.
///
/// # Errors
/// Configuration, vault and listening errors.
pub fn run(args: &ServeArgs) -> Result<()> {
    let mut config = ServerConfig::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(config.limits.max_streams * 2 + 8)
        .thread_name("amber-serve")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: ServerConfig) -> Result<()> {
    let setup = config.clone();
    let (tokens, vaults) = tokio::task::spawn_blocking(move || open_places(&setup, &mut announce))
        .await
        .context("opening the vaults stopped")??;
    let state = Arc::new(State {
        tokens,
        vaults,
        metrics: Arc::new(metrics::Metrics::default()),
        limits: config.limits.clone(),
        draining: AtomicBool::new(false),
        streams: Arc::new(Semaphore::new(config.limits.max_streams)),
        queued: std::sync::atomic::AtomicUsize::new(0),
    });
    tokio::spawn(refresh(state.clone(), Duration::from_secs(config.refresh_seconds)));
    if config.forget_every_seconds > 0 && !config.retention.is_empty() {
        let every = Duration::from_secs(config.forget_every_seconds);
        tokio::spawn(retention::scheduled(state.clone(), every, config.retention.clone()));
    }
    if config.verify_every_seconds > 0 {
        let every = Duration::from_secs(config.verify_every_seconds);
        tokio::spawn(verify::scheduled(state.clone(), every, config.verify_subset.clone()));
    }
    if config.compact_every_seconds > 0 {
        let every = Duration::from_secs(config.compact_every_seconds);
        tokio::spawn(compact::scheduled(state.clone(), every, config.compact_grace_seconds));
    }
    let (abort_tx, abort_rx) = watch::channel(false);
    let (stop_metrics_tx, stop_metrics_rx) = watch::channel(false);
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        say(&format!("metrics on http://{}/metrics", listener.local_addr()?));
        let mut stop = stop_metrics_rx;
        tokio::spawn(metrics::serve_metrics(listener, state.metrics.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    let (router, health) = router(&config, &state, abort_rx).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    say(&format!("listening on {scheme}://{}", listener.local_addr()?));
    let shutdown = drain_on_signal(state.clone(), abort_tx, health);
    router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("the server stopped")?;
    let _ = stop_metrics_tx.send(true);
    // Every push has returned its permit (the drain waited for them), so this is the last
    // reference to the vaults: their indexes close here, before the process exits.
    drop(state);
    log::event(Level::Info, "-", "stopped", &[]);
    Ok(())
}

/// Opens the store, the cluster key, the tokens and every vault (blocking I/O).
fn open_places(config: &ServerConfig, announce: &mut dyn FnMut(&str, &str)) -> Result<(TokenStore, Vaults)> {
    let url = StoreUrl::parse(&config.store_name())?;
    let s3 = config.s3.apply(S3Options::from_env().map_err(anyhow::Error::msg)?);
    let store = open_store(&url, &s3)?;
    let cluster_key = match std::env::var("AMBER_CLUSTER_KEY").ok().filter(|v| !v.is_empty()) {
        Some(hex) => ClusterKey::from_hex(&hex).context("invalid AMBER_CLUSTER_KEY")?,
        // A local store's server may make its own key; a cluster's servers are given theirs.
        None => ClusterKey::load(&config.cluster_key_path(), url.local_path().is_some())?,
    };
    let shared = sub_store(&store, "server")?;
    let tokens = TokenStore::open_in(shared, "tokens.json")?;
    let state_dir = config.state_path();
    std::fs::create_dir_all(&state_dir).with_context(|| format!("cannot create {}", state_dir.display()))?;
    let places = vaults::Places {
        store: &store,
        state_dir: &state_dir,
        cluster_key: &cluster_key,
    };
    let vaults = Vaults::open(&places, &config.vault_names(), &tokens, announce)?;
    say(&format!("store {url}, state in {}", state_dir.display()));
    Ok((tokens, vaults))
}

/// Runs `work` on the blocking pool every `every`, the first time one period after the
/// start, until the runtime stops.
pub(crate) async fn periodically(every: Duration, work: impl Fn() + Send + Sync + Clone + 'static) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if tokio::task::spawn_blocking(work.clone()).await.is_err() {
            return;
        }
    }
}

/// Every `every`: reads the tokens again (tokens made or revoked by other servers of the
/// cluster) and brings each vault's index up to date with packs other writers stored.
async fn refresh(state: Arc<State>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let s = state.clone();
        let done = tokio::task::spawn_blocking(move || {
            if let Err(e) = s.tokens.refresh() {
                log::event(
                    Level::Warn,
                    "-",
                    "token refresh failed",
                    &[("error", &format!("{e:#}") as &dyn std::fmt::Display)],
                );
            }
            for vault in s.vaults.all() {
                if let Err(e) = amber_engine::repo::sync::sync_index(&vault.repo) {
                    log::event(
                        Level::Warn,
                        "-",
                        "index refresh failed",
                        &[
                            ("vault", &vault.name as &dyn std::fmt::Display),
                            ("error", &e.to_string()),
                        ],
                    );
                }
            }
        })
        .await;
        if done.is_err() {
            return;
        }
    }
}

async fn router(
    config: &ServerConfig,
    state: &Arc<State>,
    abort: watch::Receiver<bool>,
) -> Result<(tonic::transport::server::Router, tonic_health::server::HealthReporter)> {
    let limits = &config.limits;
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(amber_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .build_v1()
        .context("cannot build the reflection service")?;
    // Python's grpcio-reflection and older grpcurl speak only v1alpha.
    let reflection_alpha = reflection_builder()
        .build_v1alpha()
        .context("cannot build the v1alpha reflection service")?;
    // HTTP/2's default 64 KiB windows make a 1 MiB frame wait for sixteen window updates;
    // these still bound what a peer can have in flight (2 MiB per stream, 8 MiB per
    // connection) while letting a push run at the speed of its disk.
    let mut builder = Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    if let Some(tls) = &config.tls {
        let cert = std::fs::read(&tls.cert).with_context(|| format!("cannot read {}", tls.cert.display()))?;
        let key = std::fs::read(&tls.key).with_context(|| format!("cannot read {}", tls.key.display()))?;
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .context("bad TLS certificate or key")?;
    }
    let ingest = IngestServer::new(ingest::IngestService::new(state.clone(), abort))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    let restore = RestoreServer::new(restore::RestoreService::new(state.clone()))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes * 2);
    let catalog = CatalogServer::new(catalog::CatalogService::new(state.clone()))
        .max_decoding_message_size(limits.max_message_bytes);
    let admin =
        AdminServer::new(admin::AdminService::new(state.clone())).max_decoding_message_size(limits.max_message_bytes);
    // Reported before the first connection is accepted, so a check never races startup.
    health.set_serving::<IngestServer<ingest::IngestService>>().await;
    health.set_serving::<RestoreServer<restore::RestoreService>>().await;
    health.set_serving::<CatalogServer<catalog::CatalogService>>().await;
    health.set_serving::<AdminServer<admin::AdminService>>().await;
    let router = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(ingest)
        .add_service(restore)
        .add_service(catalog)
        .add_service(admin);
    Ok((router, health))
}

/// Prints a line on stdout at once (tests and operators read it while the server runs).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn announce(vault: &str, token: &str) {
    say(&format!(
        "vault {vault}: created; the token below is shown only this once"
    ));
    say(&format!("admin token: {token}"));
}

/// Waits for SIGTERM or SIGINT, then drains: new pushes are refused, open ones get the
/// drain period to finish, then they are cut (each flushes what it stored) and the server
/// stops once they have all ended.
async fn drain_on_signal(state: Arc<State>, abort: watch::Sender<bool>, health: tonic_health::server::HealthReporter) {
    wait_for_signal().await;
    state.draining.store(true, Ordering::SeqCst);
    // Load balancers stop sending pushes here; reads go on until the server stops.
    health.set_not_serving::<IngestServer<ingest::IngestService>>().await;
    let drain = Duration::from_secs(state.limits.drain_seconds);
    log::event(Level::Info, "-", "draining", &[("seconds", &drain.as_secs())]);
    let all = u32::try_from(state.limits.max_streams).unwrap_or(u32::MAX);
    let finished = tokio::time::timeout(drain, state.streams.acquire_many(all)).await;
    if let Ok(Ok(permits)) = finished {
        drop(permits);
        return;
    }
    let _ = abort.send(true);
    log::event(Level::Warn, "-", "drain period over: cutting open pushes", &[]);
    let _ = tokio::time::timeout(Duration::from_secs(60), state.streams.acquire_many(all)).await;
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
