//! Connecting: the URL, the session settings every connection gets, the pool, and
//! error messages that name the server but never the password.

use super::PostgresOptions;
use crate::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres::{Config, NoTls};

/// Parses the URL and adds the session settings. `synchronous_commit=on` is forced
/// whatever the server's default, because an acknowledged write must be durable.
pub fn config(url: &str, options: &PostgresOptions) -> Result<Config, StoreError> {
    // The parser's message never echoes the URL, so no password can leak through it.
    let mut config: Config = url.parse().map_err(|e| {
        StoreError::Database(format!(
            "invalid database URL (expected postgres://user@host:port/dbname): {e}"
        ))
    })?;
    let mut session = config.get_options().unwrap_or_default().to_owned();
    session.push_str(&format!(
        " -c synchronous_commit=on -c statement_timeout={}",
        options.statement_timeout.as_millis()
    ));
    // On Citus, a transaction that writes many shards opens up to 16 connections to
    // each worker (the executor's pool) and by default keeps one of them afterwards:
    // the rest were opened and closed with every ingest transaction, a backend start
    // each time, which cost 5x the throughput in `candor-bench ingest --citus`. Keep
    // them. Plain PostgreSQL takes this as an unused placeholder setting.
    session.push_str(" -c citus.max_cached_conns_per_worker=16");
    config.options(session.trim());
    config.connect_timeout(options.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("candor");
    }
    Ok(config)
}

pub fn pool(config: &Config, options: &PostgresOptions) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            // Fast: a connection is checked by its state, not by a round trip, when it
            // is handed out; broken ones fail their query and are dropped.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size.max(2))
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| StoreError::Database(format!("cannot build connection pool: {e}")))
}

/// A connection outside the pool (for LISTEN, which holds it for good).
pub async fn connect(
    config: &Config,
) -> Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
    StoreError,
> {
    config.connect(NoTls).await.map_err(|e| {
        StoreError::Database(format!(
            "cannot connect to {}: {}",
            target(config),
            describe_error(&e)
        ))
    })
}

/// "cannot connect to host:port/dbname as user: why", for the first connection.
pub fn unreachable(config: &Config, e: deadpool_postgres::PoolError) -> StoreError {
    let why = match &e {
        deadpool_postgres::PoolError::Backend(e) => describe_error(e),
        other => other.to_string(),
    };
    StoreError::Database(format!("cannot connect to {}: {why}", target(config)))
}

/// Where we connect, without the password.
pub fn target(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    format!(
        "{}/{} as {}",
        if hosts.is_empty() {
            "localhost:5432".to_owned()
        } else {
            hosts.join(",")
        },
        config.get_dbname().unwrap_or("(default database)"),
        config.get_user().unwrap_or("(default user)")
    )
}

/// A database error as text: severity, SQLSTATE and message, but not the DETAIL line,
/// which can quote row values (a unique violation prints the key).
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                let c = cause.to_string();
                if !s.contains(&c) {
                    s.push_str(": ");
                    s.push_str(&c);
                }
                source = cause.source();
            }
            s
        }
    }
}
