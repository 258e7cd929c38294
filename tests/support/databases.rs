//! Dropping a test's PostgreSQL database when the test's handle on it is dropped,
//! shared by the store and API test binaries.

/// Drops database `name` (on every node of a Citus cluster) on the server at
/// `admin_url`, waiting until it is done. `Drop` cannot await: this runs on a thread
/// with a runtime of its own, so it works inside or outside a test's runtime.
pub fn drop_database(admin_url: String, name: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let _ = candor_store::postgres::provision::drop_database(&admin_url, &name).await;
        });
    })
    .join();
}
