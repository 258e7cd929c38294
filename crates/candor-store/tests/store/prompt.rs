//! The consent prompt's storage on every backend: anonymous daily totals that add up
//! (within a batch, across batches, concurrently and across a reopen, beside the
//! group-commit writer), and saved variants that round-trip and are replaced by id.

use crate::fixtures::*;
use crate::harness::Backend;
use candor_core::consent::Action;
use candor_store::{PromptCount, StoredVariant};

fn count(day: i32, variant: &str, purpose: &str, metric: &str, n: i64) -> PromptCount {
    PromptCount {
        day,
        variant: variant.into(),
        purpose: purpose.into(),
        metric: metric.into(),
        count: n,
    }
}

pub async fn prompt_counts_add_up(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    assert!(s.prompt_counts(0, i32::MAX).await.unwrap().is_empty());
    s.add_prompt_counts(vec![
        count(20_000, "a", "", "impression", 2),
        // the same key twice in one batch
        count(20_000, "a", "analytics", "granted", 1),
        count(20_000, "a", "analytics", "granted", 1),
        count(20_001, "b", "analytics", "refused", 5),
    ])
    .await
    .unwrap();
    // Concurrent batches from several tasks (several nodes, on PostgreSQL) while
    // consent changes go through the writer.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let st = store.clone();
        tasks.push(tokio::spawn(async move {
            st.add_prompt_counts(vec![
                count(20_000, "a", "", "impression", 1),
                count(20_001, "b", "analytics", "refused", 1),
            ])
            .await
            .unwrap();
            st.apply_consent(command(
                &*st,
                &format!("p{i}"),
                &[("analytics", Action::Grant)],
            ))
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    s.add_prompt_counts(Vec::new()).await.unwrap();
    let expected = vec![
        count(20_000, "a", "", "impression", 10),
        count(20_000, "a", "analytics", "granted", 2),
        count(20_001, "b", "analytics", "refused", 13),
    ];
    assert_eq!(s.prompt_counts(19_000, 21_000).await.unwrap(), expected);
    assert_eq!(
        s.prompt_counts(20_001, 20_001).await.unwrap(),
        expected[2..]
    );
    assert!(s.prompt_counts(20_002, 30_000).await.unwrap().is_empty());
    assert_eq!(s.stats().await.unwrap().ledger_records, 8);
    store.shutdown().await;
    let again = b.open().await;
    assert_eq!(again.prompt_counts(0, i32::MAX).await.unwrap(), expected);
    again.shutdown().await;
}

pub async fn prompt_variants_round_trip(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    assert!(s.prompt_variants().await.unwrap().is_empty());
    let v = |id: &str, def: &str, active: bool, ms: i64| StoredVariant {
        id: id.into(),
        definition: def.into(),
        active,
        updated_ms: ms,
    };
    s.save_prompt_variant(v("zeta", "{\"z\":1}", true, 1))
        .await
        .unwrap();
    s.save_prompt_variant(v("alpha", "{}", true, 2))
        .await
        .unwrap();
    s.save_prompt_variant(v("zeta", "{\"z\":2}", false, 3))
        .await
        .unwrap();
    let want = vec![v("alpha", "{}", true, 2), v("zeta", "{\"z\":2}", false, 3)];
    assert_eq!(s.prompt_variants().await.unwrap(), want);
    store.shutdown().await;
    let again = b.open().await;
    assert_eq!(again.prompt_variants().await.unwrap(), want);
    again.shutdown().await;
}
