//! The tax-ledger simulator (ledger-api.md), server side.
//!
//! [`LedgerSim::start`] binds, opens the SQLite store and returns a [`LedgerHandle`] once the server
//! accepts connections. The handle is the library's control surface: faults, outage window, counters,
//! queries of what the ledger holds, and [`LedgerHandle::shutdown`]. The same controls are served over
//! HTTP on the same port, without signature, to loopback peers only: `GET /control/counters`
//! ([`LedgerCounters`]), `GET /control/faults` and `POST /control/faults` (a [`LedgerFaultsPatch`];
//! answers the [`LedgerFaults`] now in force), `POST /control/down?seconds=N` (0 ends the outage),
//! `DELETE /control/entries/{entry_id}` (the ledger "loses" an entry, for reconciliation drills).
//!
//! Choices where the contract is silent:
//! - the signed `<path>` is the path without the query string (see `auth`);
//! - during an outage window every `/v1` request gets `503` with `Retry-After` (the time left); the
//!   control endpoints on the same port keep answering;
//! - at most [`LedgerConfig::max_connections`] connections ([`MAX_CONNECTIONS`] by default) are served
//!   at once; beyond that, new connections wait to be accepted until one closes (see `conn`);
//! - `exists` compares the canonical entry: every field as sent, `occurred_at` as text, an absent
//!   nullable field equal to `null`; an unknown field refuses the entry (`invalid_field:<name>`);
//! - a reversal must name a stored payment (else `reversal_of_unknown_entry`), agree with it on
//!   collection serial, insurance, year and payer (else `reversal_mismatch:<field>`), and all reversals
//!   of one payment together may not exceed its amount (else `reversal_exceeds_payment`): a void
//!   cancels all of it, refunds may be partial, a second void is refused.

pub mod cli;

mod auth;
mod conn;
mod counters;
mod entry;
mod faults;
mod http;
mod store;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::Date;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use auth::Secret;
pub use counters::{FaultCounters, LedgerCounters};
pub use faults::{FaultsError, LedgerFaults, LedgerFaultsPatch, MAX_OUTAGE_SECS, MAX_RETRY_AFTER_SECS, MAX_SLOW_MS};
pub use store::{StoreError, StoredEntry, Summary, SummaryLine};

use conn::{ConnInfo, CuttableListener};
use counters::Counters;
use faults::FaultState;
use store::Store;

/// Default bound on the connections served at once ([`LedgerConfig::max_connections`]). A body is
/// read in full (up to 4 MiB) before its signature can be checked, so this also bounds the memory
/// that request bodies can take, to 1 GiB.
pub const MAX_CONNECTIONS: usize = 256;

/// How long [`LedgerHandle::shutdown`] lets requests in flight finish before cutting them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Address to bind; port 0 picks a free port ([`LedgerHandle::addr`] tells which).
    pub listen: SocketAddr,
    /// Client keys: key id (`X-ZJ-Key-Id`) to shared secret. At least one.
    pub keys: BTreeMap<String, Secret>,
    /// SQLite file holding the entries (created if absent); `None` keeps them in memory.
    pub db: Option<PathBuf>,
    /// Faults in force from the start.
    pub faults: LedgerFaults,
    /// Seed of the fault decisions: the same seed and requests give the same faults.
    pub seed: u64,
    /// Most connections served at once (at least 1); further connections wait to be accepted until
    /// one closes. An idle keep-alive connection counts until it closes.
    pub max_connections: usize,
}

impl LedgerConfig {
    /// One key, loopback on a free port, in memory, no faults, seed 0, [`MAX_CONNECTIONS`].
    pub fn new(key_id: impl Into<String>, secret: Secret) -> LedgerConfig {
        LedgerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            keys: BTreeMap::from([(key_id.into(), secret)]),
            db: None,
            faults: LedgerFaults::default(),
            seed: 0,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Why the simulator did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration holds no key, so no request could ever be accepted.
    #[error("ledger simulator: at least one key is needed")]
    NoKeys,
    /// A key id is empty.
    #[error("ledger simulator: a key id is empty")]
    EmptyKeyId,
    /// A secret is empty.
    #[error("ledger simulator: the secret of key {key_id:?} is empty")]
    EmptySecret {
        /// The key whose secret is empty.
        key_id: String,
    },
    /// The connection bound is 0 or beyond what the server can count.
    #[error("ledger simulator: max_connections must be 1..={max}, not {value}")]
    MaxConnections {
        /// The bound asked for.
        value: usize,
        /// The largest bound accepted.
        max: usize,
    },
    /// A fault setting is out of range.
    #[error("ledger simulator: {0}")]
    Faults(#[from] FaultsError),
    /// The store did not open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address could not be bound.
    #[error("ledger simulator: cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// State shared by the handle and every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    keys: BTreeMap<String, Secret>,
    store: Store,
    faults: FaultState,
    counters: Counters,
}

/// Starts the simulator (see [`LedgerSim::start`]).
#[derive(Debug)]
pub struct LedgerSim(());

impl LedgerSim {
    /// Checks `config`, opens the store, binds and starts serving; returns once connections are
    /// accepted.
    pub async fn start(config: LedgerConfig) -> Result<LedgerHandle, StartError> {
        if config.keys.is_empty() {
            return Err(StartError::NoKeys);
        }
        if let Some((key_id, _)) = config.keys.iter().find(|(id, secret)| id.is_empty() || secret.is_empty()) {
            return Err(if key_id.is_empty() {
                StartError::EmptyKeyId
            } else {
                StartError::EmptySecret { key_id: key_id.clone() }
            });
        }
        config.faults.check()?;
        let max = tokio::sync::Semaphore::MAX_PERMITS;
        if !(1..=max).contains(&config.max_connections) {
            return Err(StartError::MaxConnections { value: config.max_connections, max });
        }

        let store = Store::open(config.db).await?;
        let listener = match TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(source) => {
                store.close().await;
                return Err(StartError::Bind { addr: config.listen, source });
            }
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(source) => {
                store.close().await;
                return Err(StartError::Bind { addr: config.listen, source });
            }
        };

        let listener = CuttableListener::new(listener, config.max_connections);
        let shared = Arc::new(Shared {
            keys: config.keys,
            store,
            faults: FaultState::new(config.faults, config.seed),
            counters: Counters::default(),
        });
        let app = http::router(shared.clone()).into_make_service_with_connect_info::<ConnInfo>();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                // A dropped handle stops the server too.
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "ledger: server stopped");
            }
        });
        tracing::info!(%addr, "ledger simulator listening");
        Ok(LedgerHandle { addr, shared, stop: Some(stop), server: Some(server) })
    }
}

/// A running simulator. Dropping it stops the server (without waiting); [`LedgerHandle::shutdown`]
/// stops it and closes the store, so a new simulator can open the same file at once.
#[derive(Debug)]
pub struct LedgerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl LedgerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The faults in force.
    pub fn faults(&self) -> LedgerFaults {
        self.shared.faults.faults()
    }

    /// Replaces the faults in force (the seeded generator carries on where it was).
    pub fn set_faults(&self, faults: LedgerFaults) -> Result<(), FaultsError> {
        self.shared.faults.set(faults)
    }

    /// Changes some faults; returns those now in force.
    pub fn patch_faults(&self, patch: &LedgerFaultsPatch) -> Result<LedgerFaults, FaultsError> {
        self.shared.faults.patch(patch)
    }

    /// Opens an outage window of `length` from now (at most [`MAX_OUTAGE_SECS`]): every `/v1` request
    /// is answered `503` until it ends. `Duration::ZERO` ends any outage now.
    pub fn down_for(&self, length: Duration) {
        self.shared.faults.down_for(tokio::time::Instant::now(), length);
    }

    /// Ends any outage now.
    pub fn up(&self) {
        self.down_for(Duration::ZERO);
    }

    /// Whether an outage window is open.
    pub fn is_down(&self) -> bool {
        self.shared.faults.outage_left(tokio::time::Instant::now()).is_some()
    }

    /// The counts since start.
    pub fn counters(&self) -> LedgerCounters {
        self.shared.counters.snapshot()
    }

    /// The stored entry with this id.
    pub async fn entry(&self, entry_id: &str) -> Result<Option<StoredEntry>, StoreError> {
        self.shared.store.get(entry_id.to_owned()).await
    }

    /// The day's totals by local date (UTC+8), for one collection point or all.
    pub async fn summary(&self, date: Date, collection_point: Option<&str>) -> Result<Summary, StoreError> {
        self.shared.store.summary(date, collection_point.map(str::to_owned)).await
    }

    /// Deletes a stored entry, as if the ledger had lost it (for reconciliation drills: the daemon
    /// must then report it missing); true when there was one.
    pub async fn remove_entry(&self, entry_id: &str) -> Result<bool, StoreError> {
        self.shared.store.remove(entry_id.to_owned()).await
    }

    /// How many entries the ledger holds.
    pub async fn entry_count(&self) -> Result<u64, StoreError> {
        self.shared.store.count().await
    }

    /// Stops accepting, lets requests in flight finish (up to [`SHUTDOWN_GRACE`]), then closes the
    /// store.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
                tracing::warn!("ledger: requests still in flight after the grace period; cutting them");
                server.abort();
            }
        }
        self.shared.store.close().await;
        tracing::info!(addr = %self.addr, "ledger simulator stopped");
    }
}
