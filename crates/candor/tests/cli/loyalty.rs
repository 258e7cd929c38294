//! The loyalty points ledger as a process sees it (issue 14): a transaction answered
//! survives kill -9 (on both stores), and two nodes sharing one PostgreSQL keep every
//! balance right under concurrent earns and redemptions through both.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const USERS: usize = 6;

fn join(s: &Server, user: &str) {
    let r = client()
        .post(s.url("/v1/consent"))
        .basic_auth(SERVER_KEY, Some(""))
        .json(&json!({"userId": user, "choices": {"loyalty": "grant"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// One earn or redemption; `None` when the server is gone.
fn txn(base: &str, user: &str, n: usize) -> Option<(u16, Value)> {
    let body = if n % 5 == 4 {
        json!({"userId": user, "type": "redeem", "reward": "coffee", "idempotencyKey": format!("k{n}")})
    } else {
        json!({"userId": user, "type": "earn", "points": 60, "idempotencyKey": format!("k{n}")})
    };
    let r = client()
        .post(format!("{base}/v1/loyalty/transactions"))
        .basic_auth(SERVER_KEY, Some(""))
        .json(&body)
        .send()
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().ok()?))
}

fn wallet(s: &Server, user: &str) -> Value {
    client()
        .get(s.url(&format!("/v1/me/loyalty?userId={user}")))
        .basic_auth(SERVER_KEY, Some(""))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Every balance equals the sum of its history, never went below zero, and holds
/// every transaction in `acked` (user → key → transaction id).
fn consistent(s: &Server, acked: &HashMap<(String, String), i64>) {
    let mut seen = HashMap::new();
    for u in 0..USERS {
        let user = format!("u{u}");
        let w = wallet(s, &user);
        let mut running = 0;
        for t in w["history"].as_array().unwrap().iter().rev() {
            running += t["points"].as_i64().unwrap();
            assert!(running >= 0, "{user}'s balance went below zero");
            let key = t["idempotencyKey"].as_str().unwrap().to_owned();
            assert!(
                seen.insert((user.clone(), key), t["id"].as_i64().unwrap())
                    .is_none(),
                "a key stored twice"
            );
        }
        assert_eq!(w["balance"].as_i64(), Some(running), "{user}");
    }
    for (k, id) in acked {
        assert_eq!(seen.get(k), Some(id), "acknowledged transaction {k:?} lost");
    }
}

#[test]
fn acknowledged_loyalty_transactions_survive_kill_9() {
    for data in both() {
        let server = start(&data, 0);
        for u in 0..USERS {
            join(&server, &format!("u{u}"));
        }
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let done = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for w in 0..4 {
            let (base, acked, done) = (server.base.clone(), acked.clone(), done.clone());
            workers.push(std::thread::spawn(move || {
                for i in 0.. {
                    let n = i * 4 + w;
                    let user = format!("u{}", n % USERS);
                    let Some((status, v)) = txn(&base, &user, n) else {
                        return;
                    };
                    if status == 200 {
                        let id = v["transaction"]["id"].as_i64().unwrap();
                        acked.lock().unwrap().insert((user, format!("k{n}")), id);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        while done.load(Ordering::SeqCst) < 300 {
            std::thread::yield_now();
        }
        server.kill9();
        for w in workers {
            w.join().unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= 200, "{}", acked.len());
        let server = start(&data, 0);
        consistent(&server, &acked);
        // Sent again, an acknowledged key is the same transaction.
        for ((user, key), id) in acked.iter().take(20) {
            let n: usize = key[1..].parse().unwrap();
            let (status, v) = txn(&server.base, user, n).unwrap();
            assert_eq!((status, v["duplicate"].as_bool()), (200, Some(true)), "{v}");
            assert_eq!(v["transaction"]["id"].as_i64(), Some(*id));
        }
        server.stop();
    }
}

#[test]
fn two_nodes_keep_every_balance_right() {
    let Some(db) = fresh_database() else { return };
    let (da, db_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = crate::nodes::node(da.path(), &db);
    let b = crate::nodes::node(db_dir.path(), &db);
    for u in 0..USERS {
        join(&a, &format!("u{u}"));
    }
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let mut workers = Vec::new();
    for w in 0..4usize {
        // Two workers per node; every key is sent through both nodes at once.
        let base = if w % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let acked = acked.clone();
        workers.push(std::thread::spawn(move || {
            for i in 0..60usize {
                let n = i * 2 + w / 2;
                let user = format!("u{}", n % USERS);
                let (status, v) = txn(&base, &user, n).unwrap();
                assert!(status == 200 || status == 409, "{status} {v}");
                if status == 200 {
                    let id = v["transaction"]["id"].as_i64().unwrap();
                    let mut acked = acked.lock().unwrap();
                    let prev = acked.insert((user, format!("k{n}")), id);
                    // Through either node, one key is one transaction.
                    assert!(
                        prev.is_none_or(|p| p == id),
                        "{n}: two transactions for one key"
                    );
                }
            }
        }));
    }
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    consistent(&a, &acked);
    consistent(&b, &acked);
    a.stop();
    b.stop();
}
