//! Creating and dropping a whole database, on a plain PostgreSQL server or on a Citus
//! cluster, for the test suites and the benchmarks (each run gets its own database).
//!
//! On plain PostgreSQL this is `CREATE DATABASE`. On Citus a database is a cluster of
//! its own: node metadata lives per database, and the extension must exist in the
//! database on every node before the coordinator can add a worker. So when the server
//! the admin URL names is a Citus coordinator (its `pg_dist_node` lists workers), the
//! new database is created on every node, gets the extension everywhere, and the
//! coordinator's copy learns the same workers. Candor's migrations then see the
//! extension and distribute their tables (see [`super::schema`]).
//!
//! Operators do this once by hand (Citus' documentation); it lives here, beside the
//! store, because every test database and the `ingest --citus` benchmark need it.

use super::connect::describe_error;
use crate::StoreError;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// The advisory lock (in the admin database) under which Citus databases are joined to
/// their workers. An error on the way drops the admin connection, and the lock with it.
const PROVISION_LOCK: i64 = 0x6361_6e64_6f72_7076; // "candorpv"

/// What the admin URL's server is, as far as creating databases goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Server {
    /// Plain PostgreSQL (or Citus with no workers): one `CREATE DATABASE`.
    Plain,
    /// A Citus coordinator at `coordinator`, with these workers.
    Citus {
        coordinator: (String, u16),
        workers: Vec<(String, u16)>,
    },
}

fn parse(url: &str) -> Result<Config, StoreError> {
    url.parse()
        .map_err(|e| StoreError::Database(format!("invalid database URL: {e}")))
}

async fn connect(config: &Config) -> Result<Client, StoreError> {
    let (client, conn) = config
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Database(describe_error(&e)))?;
    tokio::spawn(conn);
    Ok(client)
}

fn db_err(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(describe_error(&e))
}

/// A valid SQL identifier made only of `[a-z0-9_]`, so it can be spliced into DDL.
fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(StoreError::Database(format!(
            "database name {name:?} must be [a-z_][a-z0-9_]* and at most 63 bytes"
        )))
    }
}

/// Finds out whether `admin_url` names a Citus coordinator with workers.
pub async fn server(admin_url: &str) -> Result<Server, StoreError> {
    let config = parse(admin_url)?;
    let client = connect(&config).await?;
    server_of(&client).await
}

async fn server_of(client: &Client) -> Result<Server, StoreError> {
    let has_citus = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
            &[],
        )
        .await
        .map_err(db_err)?
        .get::<_, bool>(0);
    if !has_citus {
        return Ok(Server::Plain);
    }
    let rows = client
        .query(
            "SELECT nodename, nodeport, groupid FROM pg_dist_node
              WHERE noderole = 'primary' AND isactive ORDER BY groupid",
            &[],
        )
        .await
        .map_err(db_err)?;
    let mut coordinator = None;
    let mut workers = Vec::new();
    for r in rows {
        let node = (r.get::<_, String>(0), r.get::<_, i32>(1) as u16);
        if r.get::<_, i32>(2) == 0 {
            coordinator = Some(node);
        } else {
            workers.push(node);
        }
    }
    match coordinator {
        Some(coordinator) if !workers.is_empty() => Ok(Server::Citus {
            coordinator,
            workers,
        }),
        _ => Ok(Server::Plain),
    }
}

/// `config`'s user, password and options, at another server and database. (`Config`
/// cannot clear its host list, so this starts from a fresh one.)
fn at(config: &Config, host: &str, port: u16, dbname: &str) -> Config {
    let mut c = Config::new();
    if let Some(user) = config.get_user() {
        c.user(user);
    }
    if let Some(password) = config.get_password() {
        c.password(password);
    }
    if let Some(options) = config.get_options() {
        c.options(options);
    }
    c.host(host).port(port).dbname(dbname);
    c
}

/// A URL for `name` on `config`'s first server. The password goes in as it is: test and
/// benchmark clusters have none, or a plain one.
fn url_for(config: &Config, name: &str) -> String {
    let user = config.get_user().unwrap_or("postgres");
    let (host, port) = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(Host::Tcp(h)), Some(p)) => (h.clone(), *p),
        (Some(Host::Tcp(h)), None) => (h.clone(), 5432),
        _ => ("127.0.0.1".to_owned(), 5432),
    };
    match config.get_password() {
        Some(pw) => format!(
            "postgres://{user}:{}@{host}:{port}/{name}",
            String::from_utf8_lossy(pw)
        ),
        None => format!("postgres://{user}@{host}:{port}/{name}"),
    }
}

/// Creates database `name` on the server `admin_url` names (any database on it that
/// the user may connect to) and returns the new database's URL. On a Citus coordinator
/// the database becomes a Citus cluster with the same workers.
pub async fn create_database(admin_url: &str, name: &str) -> Result<String, StoreError> {
    check_name(name)?;
    let config = parse(admin_url)?;
    let admin = connect(&config).await?;
    let server = server_of(&admin).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(db_err)?;
    if let Server::Citus {
        coordinator,
        workers,
    } = &server
    {
        for (host, port) in workers {
            let worker = connect(&at(&config, host, *port, "postgres")).await?;
            worker
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .map_err(db_err)?;
            let db = connect(&at(&config, host, *port, name)).await?;
            db.batch_execute("CREATE EXTENSION citus")
                .await
                .map_err(db_err)?;
        }
        // Adding a node alters the connecting role on the worker, which is shared by
        // every database there: two databases set up at once would collide ("tuple
        // concurrently updated"), so they take turns under a lock in the admin database.
        admin
            .execute("SELECT pg_advisory_lock($1)", &[&PROVISION_LOCK])
            .await
            .map_err(db_err)?;
        let db = connect(&at(&config, &coordinator.0, coordinator.1, name)).await?;
        db.batch_execute("CREATE EXTENSION citus")
            .await
            .map_err(db_err)?;
        db.execute(
            "SELECT citus_set_coordinator_host($1, $2)",
            &[&coordinator.0, &i32::from(coordinator.1)],
        )
        .await
        .map_err(db_err)?;
        for (host, port) in workers {
            db.execute("SELECT citus_add_node($1, $2)", &[host, &i32::from(*port)])
                .await
                .map_err(db_err)?;
        }
        admin
            .execute("SELECT pg_advisory_unlock($1)", &[&PROVISION_LOCK])
            .await
            .map_err(db_err)?;
    }
    let mut new = config.clone();
    new.dbname(name);
    Ok(url_for(&new, name))
}

/// The URLs of the database `url` names on every node: the coordinator's (that URL)
/// first, then each worker's. Only that URL on plain PostgreSQL. For tests and tools
/// that look behind the coordinator (where a subject's rows are, what is on disk).
pub async fn node_urls(url: &str) -> Result<Vec<String>, StoreError> {
    let config = parse(url)?;
    let name = config
        .get_dbname()
        .ok_or_else(|| StoreError::Database("the database URL names no database".into()))?
        .to_owned();
    let mut out = vec![url.to_owned()];
    if let Server::Citus { workers, .. } = server(url).await? {
        for (host, port) in workers {
            out.push(url_for(&at(&config, &host, port, &name), &name));
        }
    }
    Ok(out)
}

/// Drops database `name` (on every node of a Citus cluster), closing its sessions.
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    check_name(name)?;
    let config = parse(admin_url)?;
    let admin = connect(&config).await?;
    let server = server_of(&admin).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .map_err(db_err)?;
    if let Server::Citus { workers, .. } = server {
        for (host, port) in workers {
            // A session killed between PREPARE and COMMIT PREPARED leaves a prepared
            // transaction on the worker that keeps the database from being dropped;
            // the coordinator that would have resolved it is gone with the database.
            if let Ok(db) = connect(&at(&config, &host, port, name)).await {
                let gids = db
                    .query(
                        "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()",
                        &[],
                    )
                    .await
                    .map_err(db_err)?;
                for gid in gids {
                    let gid: String = gid.get(0);
                    db.batch_execute(&format!("ROLLBACK PREPARED '{}'", gid.replace('\'', "''")))
                        .await
                        .map_err(db_err)?;
                }
            }
            let worker = connect(&at(&config, &host, port, "postgres")).await?;
            worker
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .map_err(db_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_identifiers() {
        for ok in ["t_1", "api_abc", "cli_0f"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1x",
            "a-b",
            "A",
            "x; DROP DATABASE postgres",
            &"a".repeat(64),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_keep_user_and_server() {
        let c = parse("postgres://me:pw@10.0.0.1:6000/postgres").unwrap();
        assert_eq!(url_for(&c, "t_1"), "postgres://me:pw@10.0.0.1:6000/t_1");
        let w = at(&c, "10.0.0.2", 6001, "t_1");
        assert_eq!(url_for(&w, "t_1"), "postgres://me:pw@10.0.0.2:6001/t_1");
    }
}
