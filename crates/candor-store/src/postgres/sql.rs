//! Statement helpers: every hot statement goes through the connection's prepared
//! statement cache, so it is parsed and planned once per connection, not per call.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

pub async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Error> {
    let st = c.prepare_cached(sql).await?;
    c.query(&st, params).await
}

pub async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, Error> {
    let st = c.prepare_cached(sql).await?;
    c.query_opt(&st, params).await
}

pub async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Error> {
    let st = c.prepare_cached(sql).await?;
    c.execute(&st, params).await
}
