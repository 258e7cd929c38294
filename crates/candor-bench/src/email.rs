//! `candor-bench email`: the send queue's rate to a local SMTP server (issue 16).
//!
//! The server is `scripts/smtp-sink` (aiosmtpd) with `--count-only`. First its own
//! receive rate, measured with `candor-mail` alone (the same connections, messages
//! composed up front, no bookkeeping): the ceiling. Then Candor in process on SQLite
//! with `N` confirmed subscribers (seeded through the store's consent path, each with
//! its ledger records): a campaign to all of them is started (fan-out timed) and sent
//! with the queue's durable bookkeeping on (each message moved to `committing` before
//! its dot, then to `sent`, in group-committed batches). Prints messages/s, the ratio
//! to the ceiling, the fan-out time, and peak RSS with bytes per subscriber.

use anyhow::{anyhow, Context, Result};
use candor_core::consent::{Action, Channel};
use candor_core::ledger::{Actor, Evidence};
use candor_core::{PurposeId, UnixMillis};
use candor_mail::{compose, Connection, Draft, EmailAddress, Envelope, SmtpSettings, TlsMode};
use candor_server::config::Settings;
use candor_server::email::campaigns;
use candor_server::Application;
use candor_store::email::{CampaignStatus, ListAction, ListChange, MessageStatus};
use candor_store::{Authority, ConsentCommand, PurposeChange};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

#[derive(clap::Args)]
pub struct Args {
    /// Subscribers of the campaign.
    #[arg(long, default_value_t = 100_000)]
    subscribers: usize,
    /// SMTP connections (Candor's and the ceiling's).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Messages the ceiling run sends.
    #[arg(long, default_value_t = 20_000)]
    ceiling_messages: usize,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Sink {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: PathBuf,
}

impl Sink {
    fn start(dir: &Path) -> Result<Self> {
        let python = std::env::var_os("CANDOR_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target/py-venv/bin/python"));
        let mut child = Command::new(&python)
            .arg(root().join("scripts/smtp-sink"))
            .arg("--dir")
            .arg(dir)
            .arg("--count-only")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "starting scripts/smtp-sink with {} (run scripts/test-all once for the venv with aiosmtpd, or set CANDOR_PYTHON)",
                    python.display()
                )
            })?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?)
            .read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .ok_or_else(|| anyhow!("smtp-sink said {line:?}"))?
            .parse()?;
        Ok(Self {
            child,
            port,
            log: dir.join("log.jsonl"),
            _dir: dir.to_owned(),
        })
    }

    fn received(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|s| s.lines().filter(|l| l.contains("\"accepted\"")).count())
            .unwrap_or(0)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's `VmRSS`/`VmHWM` in KiB.
fn rss_kib(field: &str) -> u64 {
    crate::ingest::rss_kib(std::process::id(), field)
}

fn address(i: usize) -> EmailAddress {
    EmailAddress::parse(&format!("s{i}@bench.example")).unwrap_or_else(|_| unreachable!())
}

/// The sink's own rate: `connections` clients sending pre-composed messages.
async fn ceiling(port: u16, connections: usize, total: usize) -> Result<f64> {
    let settings = SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::Never,
        credentials: None,
        hello_name: "bench".into(),
        timeout: Duration::from_secs(30),
        extra_root_pem: None,
    };
    let per = total / connections;
    let from = EmailAddress::parse("news@bench.example")?;
    let bodies: Vec<Vec<u8>> = (0..per)
        .map(|i| {
            compose(
                &Draft {
                    from: from.clone(),
                    from_name: None,
                    to: address(i),
                    subject: "Hello".into(),
                    text: "Hello.\nTo leave: https://candor.example/email/unsubscribe?t=x\n".into(),
                    html: Some("<p>Hello</p>".into()),
                    message_id: format!("b{i}@bench.example"),
                    headers: vec![],
                },
                SystemTime::now(),
            )
        })
        .collect::<Result<_, _>>()?;
    let bodies = std::sync::Arc::new(bodies);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (settings, bodies, from) = (settings.clone(), bodies.clone(), from.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Connection::open(&settings).await?;
            for (i, body) in bodies.iter().enumerate() {
                let env = Envelope {
                    from: from.clone(),
                    to: address(i),
                };
                let p = c.begin(&env, body).await?;
                p.commit().await?;
            }
            Ok::<_, candor_mail::SmtpError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((per * connections) as f64 / t0.elapsed().as_secs_f64())
}

fn config(port: u16, connections: usize) -> String {
    format!(
        r#"
[email]
from = "news@bench.example"
base_url = "https://candor.example"
rate_per_second = 100000
[email.smtp]
host = "127.0.0.1"
port = {port}
tls = "never"
connections = {connections}
[[email.lists]]
name = "news"
title = "News"
"#
    )
}

/// `n` confirmed subscribers through the store's consent path, in atomic batches.
async fn seed(st: &candor_server::state::AppState, n: usize) -> Result<()> {
    let p = st
        .catalog
        .purpose(&PurposeId::parse("email_marketing")?)
        .ok_or_else(|| anyhow!("no email_marketing purpose"))?
        .clone();
    let cmd = |i: usize, action: ListAction, grant: bool| ConsentCommand {
        identities: vec![candor_server::email::identity(&st.master, &address(i))],
        authority: Authority::Any,
        actor: Actor::EmailLink,
        create: true,
        changes: if grant {
            vec![PurposeChange {
                purpose: p.id.clone(),
                bit: p.bit,
                action: Action::Grant,
                notice_version: p.notice.version,
                notice_hash: p.notice.hash,
            }]
        } else {
            vec![]
        },
        channel: Channel::EmailConfirmation,
        evidence: Evidence::default(),
        time_ms: UnixMillis(st.now_ms()),
        list: Some(ListChange {
            list: "news".into(),
            notice_version: p.notice.version,
            notice_hash: p.notice.hash,
            action,
        }),
    };
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let asks = chunk
            .iter()
            .map(|&i| {
                cmd(
                    i,
                    ListAction::Request {
                        window_ms: 1,
                        max: 1,
                    },
                    false,
                )
            })
            .collect();
        st.store.apply_consents_atomically(asks).await?;
        let confirms = chunk
            .iter()
            .map(|&i| {
                cmd(
                    i,
                    ListAction::Confirm {
                        confirmation: "bench".into(),
                        origin: None,
                    },
                    true,
                )
            })
            .collect();
        st.store.apply_consents_atomically(confirms).await?;
    }
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(a))
}

async fn bench(a: Args) -> Result<()> {
    let base = std::env::temp_dir().join(format!("candor-bench-email-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("data"))?;
    println!(
        "candor-bench email: {} subscribers, {} SMTP connections, SQLite (synchronous=FULL)",
        a.subscribers, a.connections
    );

    let ceiling_sink = Sink::start(&base.join("sink-ceiling"))?;
    let ceiling = ceiling(ceiling_sink.port, a.connections, a.ceiling_messages).await?;
    drop(ceiling_sink);
    println!("ceiling: the SMTP server's own receive rate (candor-mail, no bookkeeping): {ceiling:.0} messages/s");

    let sink = Sink::start(&base.join("sink"))?;
    let mut s = Settings::parse(&config(sink.port, a.connections), "bench", &|_| None)?
        .with_demo_credentials();
    s.listen = "127.0.0.1:0".parse()?;
    s.data_dir = base.join("data");
    let app = Application::build(s).await?;
    let st = app.state().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));
    let rss0 = rss_kib("VmRSS:");
    let t = Instant::now();
    seed(&st, a.subscribers).await?;
    let seeded = t.elapsed();
    let rss1 = rss_kib("VmRSS:");
    println!(
        "seeded {} confirmed subscribers (two consent commands and two ledger records each) in {:.1} s; RSS +{:.0} MiB ({:.0} bytes per subscriber)",
        a.subscribers,
        seeded.as_secs_f64(),
        rss1.saturating_sub(rss0) as f64 / 1024.0,
        rss1.saturating_sub(rss0) as f64 * 1024.0 / a.subscribers.max(1) as f64
    );
    let mail = st
        .mail
        .clone()
        .ok_or_else(|| anyhow!("email not configured"))?;
    let id = campaigns::create(
        &st,
        &mail,
        campaigns::Draft {
            name: "Bench".into(),
            list: "news".into(),
            segment: None,
            subject_line: "{{ list.title }}: hello".into(),
            text_body: "Hello.\nTo leave: {{ unsubscribe_url }}\n".into(),
            html_body: Some("<p>Hello from {{ list.title }}.</p>".into()),
        },
    )
    .await
    .map_err(|e| anyhow!("{e}"))?;
    let t0 = Instant::now();
    let queued = campaigns::start(&st, &mail, id)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let fanout = t0.elapsed();
    println!(
        "fan-out: {queued} messages queued in {:.2} s ({:.0}/s)",
        fanout.as_secs_f64(),
        queued as f64 / fanout.as_secs_f64()
    );
    let mut last = (Instant::now(), 0usize);
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let c = st.store.email().campaign(id).await?;
        let received = sink.received();
        let now = Instant::now();
        println!(
            "  {:>5.1} s: {received} received ({:.0}/s this second)",
            (now - t0).as_secs_f64(),
            (received - last.1) as f64 / (now - last.0).as_secs_f64()
        );
        last = (now, received);
        if c.is_some_and(|c| c.status == CampaignStatus::Sent) {
            break;
        }
    }
    let total = t0.elapsed();
    let counts = st.store.email().campaign_counts().await?;
    let c = counts
        .iter()
        .find(|c| c.campaign == id)
        .ok_or_else(|| anyhow!("no counts"))?;
    let sent = c.get(MessageStatus::Sent);
    let rate = sent as f64 / total.as_secs_f64();
    println!(
        "sent {sent} (received {}) in {:.1} s including fan-out: {rate:.0} messages/s = {:.2}x the server's ceiling",
        sink.received(),
        total.as_secs_f64(),
        rate / ceiling
    );
    println!(
        "other statuses: {}",
        MessageStatus::ALL
            .iter()
            .filter(|s| **s != MessageStatus::Sent)
            .map(|s| format!("{} {}", s.as_str(), c.get(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("peak RSS {:.0} MiB", rss_kib("VmHWM:") as f64 / 1024.0);
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
