//! The `candor` command: parses the command line, loads configuration, sets up
//! logging, and hands over to `candor-server` for the real work.

use anyhow::{Context, Result};
use candor_server::app::{open_data, Application};
use candor_server::config::{demo, Settings};
use candor_server::datadir::{self, Mode};
use candor_server::{demo as demo_data, ledger, ops, receipts};
use clap::{Args, Parser, Subcommand};
use indicatif::ProgressBar;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: ingestion allocates many small, short-lived buffers per event, where
/// glibc's malloc spent about a tenth of the server's CPU in the benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "candor",
    version,
    about = "Consent-first customer data: opt-in events, a provable consent ledger, private insights."
)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Operator configuration file (TOML). Built-in defaults when absent.
    #[arg(long, env = "CANDOR_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database and keys). Overrides the config file.
    #[arg(long, env = "CANDOR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://user:password@host:port/db) instead of the embedded
    /// SQLite file. Overrides the config file.
    #[arg(long, env = "CANDOR_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Listen address, e.g. 127.0.0.1:8080. Overrides the config file.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Run as the demo operator: fixed demo credentials and synthetic data.
        #[arg(long)]
        demo: bool,
        /// Number of synthetic subjects the demo seeds.
        #[arg(long, default_value_t = demo_data::DEFAULT_SUBJECTS)]
        demo_subjects: usize,
        /// Seed for the demo's synthetic data.
        #[arg(long, default_value_t = demo_data::DEFAULT_SEED)]
        demo_seed: u64,
    },
    /// Create the data directory, the keys and the database (what `serve` does at its
    /// first start), so that `import` can run before the first `serve`.
    Init {
        #[command(flatten)]
        common: Common,
    },
    /// Work with the consent ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Work with consent receipts.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Bring in data from elsewhere.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// IAB TCF v2 TC strings: decode to JSON, encode from JSON.
    Tcf {
        #[command(subcommand)]
        command: TcfCommand,
    },
    /// IAB GPP strings: decode to JSON.
    Gpp {
        #[command(subcommand)]
        command: GppCommand,
    },
    /// The operator's keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Erase people (invariant 6): each subject's key, identifiers, consent state,
    /// events and insight data are deleted in one transaction, and a pseudonymous
    /// erasure record is appended to the ledger. Exactly one of --subject, --user-id,
    /// --from-file. Run it with the server stopped, like `import`, or through the API.
    Erase {
        #[command(flatten)]
        common: Common,
        /// The pseudonymous subject id (32 hex characters).
        #[arg(long, conflicts_with_all = ["user_id", "from_file"])]
        subject: Option<String>,
        /// A user id, resolved to its subject through the lookup hash.
        #[arg(long, conflicts_with = "from_file")]
        user_id: Option<String>,
        /// A file of subject ids, one a line; each erased on its own, bad lines named.
        #[arg(long)]
        from_file: Option<PathBuf>,
    },
    /// Write the ledger and all events as JSON Lines; or, with --subject or --user-id,
    /// everything held about one person as their own export (candor-my-data-v1).
    Export {
        #[command(flatten)]
        common: Common,
        /// Output file; standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
        /// One person's export, by their subject id (the pseudonym the ledger shows).
        #[arg(long, conflicts_with = "user_id")]
        subject: Option<String>,
        /// One person's export, by their user id.
        #[arg(long)]
        user_id: Option<String>,
    },
    /// Print the OpenAPI document the server serves at /openapi.json (for generating a
    /// client without a running server).
    Openapi,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Replace the receipt-signing key with a new one, with every node stopped.
    /// Records from the next one on are signed by the new key; older records and
    /// receipts stay verifiable through the key ring (`GET /v1/receipts/public-key`,
    /// certified by each key's predecessor). Publish the new ring afterwards.
    RotateSigning {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum TcfCommand {
    /// Print the decoded fields as JSON (the conformance vectors' shape); policy
    /// warnings go to stderr.
    Decode { string: String },
    /// Read that JSON on stdin and print the TC string.
    Encode,
}

#[derive(Subcommand)]
enum GppCommand {
    /// Print the section ids and decoded sections as JSON.
    Decode { string: String },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check the whole hash chain and every signature; name the first bad record.
    Verify {
        #[command(flatten)]
        common: Common,
        /// A checkpoint kept elsewhere (`ledger checkpoint`, or `GET
        /// /v1/ledger/checkpoint`): fail unless the ledger still extends it. Repeatable.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
    },
    /// Print a signed checkpoint of the ledger's head (records, last hash, time) to
    /// keep outside the database; `ledger verify --checkpoint` checks against it.
    Checkpoint {
        #[command(flatten)]
        common: Common,
        /// Write it to this file (created new) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Check one receipt (a JSON file as the API returned it) against the operator's
    /// key: one is required, since the key a receipt carries proves nothing by itself.
    Verify {
        file: PathBuf,
        /// The operator's public key: 64 hex characters, or a file holding them or the
        /// key ring as `GET /v1/receipts/public-key` serves it (covers rotated keys).
        #[arg(long, required_unless_present = "trust_embedded_key")]
        public_key: Option<String>,
        /// Check the receipt only against the key it carries: shows it is intact, not
        /// that the operator signed it.
        #[arg(long, conflicts_with = "public_key")]
        trust_embedded_key: bool,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Import consent records (JSON Lines) from another consent manager, all or nothing.
    Consents {
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

fn settings(common: &Common) -> Result<Settings> {
    let mut s = Settings::load(common.config.as_deref())?;
    if let Some(d) = &common.data_dir {
        s.data_dir = d.clone();
    }
    if let Some(url) = &common.database_url {
        let keep = s.database.take();
        let mut db = candor_server::config::DatabaseSettings::new(url.clone());
        if let Some(k) = keep {
            db = candor_server::config::DatabaseSettings { url: db.url, ..k };
        }
        s.database = Some(db);
    }
    Ok(s)
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CANDOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Serve {
            common,
            listen,
            demo,
            demo_subjects,
            demo_seed,
        } => serve(common, listen, demo, demo_subjects, demo_seed).await,
        Command::Openapi => {
            println!("{}", candor_server::openapi::json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger {
            command: LedgerCommand::Checkpoint { common, out },
        } => {
            let s = settings(&common)?;
            let opened = open_data(&s, Mode::Existing).await?;
            let now = candor_core::UnixMillis(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis() as i64,
            );
            let cp = ledger::checkpoint(opened.store.as_ref(), &opened.signer, now).await?;
            opened.store.shutdown().await;
            let text = serde_json::to_string_pretty(&ledger::checkpoint_json(&cp))?;
            match out {
                Some(p) => {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&p)
                        .with_context(|| format!("creating {}", p.display()))?;
                    writeln!(f, "{text}")?;
                    eprintln!(
                        "checkpoint of {} records written to {}",
                        cp.checkpoint.seq,
                        p.display()
                    );
                }
                None => println!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger {
            command: LedgerCommand::Verify { common, checkpoint },
        } => {
            let mut checkpoints = Vec::new();
            for p in &checkpoint {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                checkpoints.push(
                    ledger::parse_checkpoint(&text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
                );
            }
            let s = settings(&common)?;
            let opened = open_data(&s, Mode::Existing).await?;
            let key = opened.signer.verifying_key();
            let report = ledger::verify(opened.store.as_ref(), &key, &checkpoints).await?;
            opened.store.shutdown().await;
            match report {
                Ok(n) => {
                    println!("ledger OK: {n} records, chain and signatures verified");
                    Ok(ExitCode::SUCCESS)
                }
                Err(fault) => {
                    println!("ledger FAULT: {fault}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Receipt {
            command:
                ReceiptCommand::Verify {
                    file,
                    public_key,
                    trust_embedded_key,
                },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let ring = match public_key {
                Some(k) => {
                    // A key in hex, or a file holding one or the published key ring.
                    let given = match std::fs::read_to_string(&k) {
                        Ok(t) => t,
                        Err(_) => k.clone(),
                    };
                    Some(
                        receipts::parse_ring(&given)
                            .map_err(|e| anyhow::anyhow!("--public-key {k:?}: {e}"))?,
                    )
                }
                None => None,
            };
            let trust = match (&ring, trust_embedded_key) {
                (Some(r), _) => receipts::Trust::Ring(r),
                (None, true) => receipts::Trust::Embedded,
                (None, false) => anyhow::bail!(
                    "give the operator's key with --public-key, or --trust-embedded-key"
                ),
            };
            match receipts::verify(&text, trust) {
                Ok(kid) => {
                    println!("receipt OK: signed by key {kid}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("receipt INVALID: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Import {
            command: ImportCommand::Consents { file, common },
        } => {
            let s = settings(&common)?;
            let opened = open_data(&s, Mode::Existing).await?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let cmds = ops::parse_import(BufReader::new(f), &opened.catalog, &opened.master)?;
            let lines = cmds.len();
            let written = ops::apply_import(opened.store.as_ref(), cmds).await;
            let outcome = match &written {
                Ok(_) => "ok".to_owned(),
                Err(_) => "failed".to_owned(),
            };
            audit(
                opened.store.as_ref(),
                "import.consents",
                &outcome,
                format!("lines={lines}"),
            )
            .await;
            let written = written?;
            opened.store.shutdown().await;
            println!(
                "imported {lines} records ({written} changed consent and were added to the ledger)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::RotateSigning { common },
        } => rotate_signing(common).await,
        Command::Init { common } => {
            let s = settings(&common)?;
            let opened = open_data(&s, Mode::Create).await?;
            opened.store.shutdown().await;
            println!(
                "initialized {} (keys in {}; keep a copy of them apart from the database)",
                s.data_dir.display(),
                s.data_dir.join("keys").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Tcf { command } => codec_command(command),
        Command::Gpp {
            command: GppCommand::Decode { string },
        } => {
            let g = candor_codec::gpp::decode(string.trim())?;
            for w in &g.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&candor_codec::gpp::to_json(&g))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Erase {
            common,
            subject,
            user_id,
            from_file,
        } => erase_command(common, subject, user_id, from_file).await,
        Command::Export {
            common,
            out,
            subject,
            user_id,
        } if subject.is_some() || user_id.is_some() => {
            let s = settings(&common)?;
            let opened = open_data(&s, Mode::Existing).await?;
            let subject = match (subject, user_id) {
                (Some(id), _) => candor_core::SubjectId::parse(id.trim())
                    .map_err(|e| anyhow::anyhow!("--subject: {e}"))?,
                (None, Some(u)) => opened
                    .store
                    .resolve(
                        &opened
                            .master
                            .lookup_hash(candor_core::crypto::IdKind::UserId, &u),
                    )
                    .ok_or_else(|| anyhow::anyhow!("no one with this user id is held"))?,
                (None, None) => unreachable!("guarded above"),
            };
            let mut writer: Box<dyn std::io::Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let holder = candor_server::mydata::Holder {
                store: opened.store.as_ref(),
                catalog: &opened.catalog,
                fields: &s.fields,
                operator: &s.operator,
                keys: &opened.keys,
                current: opened.signer.verifying_key(),
                now: candor_core::UnixMillis(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64),
                ),
            };
            let result = ops::export_subject(&holder, subject, &mut writer).await;
            opened.store.shutdown().await;
            let events = result?;
            eprintln!("exported subject {subject} with {events} events");
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { common, out, .. } => {
            let s = settings(&common)?;
            let opened = open_data(&s, Mode::Existing).await?;
            let stats = opened.store.stats().await?;
            let pb = ProgressBar::new(stats.ledger_records + stats.events);
            let mut writer: Box<dyn std::io::Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let counts =
                ops::export(opened.store.as_ref(), &opened.catalog, &mut writer, &pb).await?;
            pb.finish_and_clear();
            opened.store.shutdown().await;
            eprintln!(
                "exported {} ledger records and {} events",
                counts.ledger, counts.events
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `candor erase`: the arguments name the subjects; `candor_server::erasure` does the
/// rest. Exit status 1 when any line or subject failed.
async fn erase_command(
    common: Common,
    subject: Option<String>,
    user_id: Option<String>,
    from_file: Option<PathBuf>,
) -> Result<ExitCode> {
    use candor_server::erasure;
    if subject.is_none() && user_id.is_none() && from_file.is_none() {
        anyhow::bail!("say whom to erase: --subject ID, --user-id ID or --from-file FILE");
    }
    // Read the file before opening anything: a missing file changes nothing.
    let lines = match &from_file {
        Some(p) => Some(erasure::parse_file(BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        ))?),
        None => None,
    };
    let s = settings(&common)?;
    let opened = open_data(&s, Mode::Existing).await?;
    let store = opened.store.as_ref();
    let lines = match (lines, subject, user_id) {
        (Some(lines), _, _) => lines,
        (None, Some(id), _) => vec![(1, erasure::parse_subject(&id))],
        (None, None, Some(user)) => {
            vec![(1, erasure::resolve_user_id(store, &opened.master, &user))]
        }
        (None, None, None) => Vec::new(),
    };
    let file = from_file.is_some();
    let reports = erasure::erase_lines(store, lines, |r| {
        let at = if file {
            format!("line {}: ", r.line)
        } else {
            String::new()
        };
        match &r.result {
            Ok(o) => println!("{at}{}", erasure::describe(o)),
            Err(e) => println!("{at}FAILED: {e}"),
        }
    })
    .await;
    let ok = reports.iter().filter(|r| r.result.is_ok()).count();
    let failed = reports.len() - ok;
    audit(
        store,
        "subject.erase",
        if failed == 0 { "ok" } else { "failed" },
        format!("erased={ok} failed={failed}"),
    )
    .await;
    opened.store.shutdown().await;
    println!("{ok} erased, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `candor keys rotate-signing`: the new key is written beside the old one, the
/// database records the hand-over (certified by the old key) from the record after
/// the head, then the new key replaces the old file. A crash between the last two
/// steps is finished at the next start (`open_data`).
async fn rotate_signing(common: Common) -> Result<ExitCode> {
    let s = settings(&common)?;
    if std::env::var(datadir::SIGNING_KEY_ENV).is_ok() {
        anyhow::bail!(
            "the signing key comes from {}: rotate it where it is kept (a secret manager), not here; this command rotates keys/{}",
            datadir::SIGNING_KEY_ENV,
            datadir::SIGNING_KEY_FILE
        );
    }
    let opened = open_data(&s, Mode::Existing).await?;
    let next = candor_core::receipt::ReceiptSigner::generate();
    datadir::write_next_signing_key(&s.data_dir, &next)?;
    let recorded = opened.store.rotate_signing_key(next.verifying_key()).await;
    if let Ok(k) = &recorded {
        let detail = format!(
            "key={} from_seq={}",
            candor_core::ledger::KeyId::of(&k.key),
            k.from_seq
        );
        audit(opened.store.as_ref(), "keys.rotate_signing", "ok", detail).await;
    }
    opened.store.shutdown().await;
    drop(opened);
    let k = match recorded {
        Ok(k) => k,
        Err(e) => {
            let _ =
                std::fs::remove_file(s.data_dir.join("keys").join(datadir::NEXT_SIGNING_KEY_FILE));
            return Err(e.into());
        }
    };
    datadir::promote_next_signing_key(&s.data_dir)?;
    let detail = format!(
        "key={} from_seq={}",
        candor_core::ledger::KeyId::of(&k.key),
        k.from_seq
    );
    let opened = open_data(&s, Mode::Existing).await?;
    audit(opened.store.as_ref(), "keys.rotate_signing", "ok", detail).await;
    opened.store.shutdown().await;
    println!(
        "signing key rotated: key {} signs from ledger record {} on; publish the new key ring (GET /v1/receipts/public-key)",
        candor_core::ledger::KeyId::of(&k.key),
        k.from_seq
    );
    Ok(ExitCode::SUCCESS)
}

/// Records a command-line admin action in the audit log (best effort, like the API's).
async fn audit(store: &dyn candor_store::Store, action: &str, outcome: &str, detail: String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let a = candor_store::AdminAction {
        time_ms: candor_core::UnixMillis(now),
        action: action.to_owned(),
        target: String::new(),
        outcome: outcome.to_owned(),
        detail,
    };
    if let Err(e) = store.record_admin_action(a).await {
        eprintln!("warning: not written to the admin audit log: {e}");
    }
}

fn codec_command(cmd: TcfCommand) -> Result<ExitCode> {
    match cmd {
        TcfCommand::Decode { string } => {
            let tc = candor_codec::tcf::decode(string.trim())?;
            for w in &tc.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&candor_codec::tcf::model_to_json(&tc.model))?
            );
        }
        TcfCommand::Encode => {
            let mut input = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)?;
            let v: serde_json::Value = serde_json::from_str(&input).context("stdin is not JSON")?;
            let model = candor_codec::tcf::from_json(&v)?;
            println!("{}", candor_codec::tcf::encode(&model)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    common: Common,
    listen: Option<SocketAddr>,
    demo: bool,
    n: usize,
    seed: u64,
) -> Result<ExitCode> {
    let mut s = settings(&common)?;
    if let Some(l) = listen {
        s.listen = l;
    }
    if demo {
        s = s.with_demo_credentials();
    }
    let app = Application::build(s).await?;
    // Listen for SIGINT/SIGTERM before saying we are up: a stop that arrives right
    // after the banner must shut down gracefully, not kill the process.
    let shutdown = shutdown_signal()?;
    let addr = app.local_addr();
    if demo {
        let st = app.state().clone();
        let stats = st.store.stats().await?;
        if stats.subjects == 0 {
            eprintln!("seeding the demo: {n} synthetic subjects (seed {seed})...");
            let r = demo_data::seed(&st, seed, n, "demo_backend").await?;
            eprintln!(
                "seeded {} subjects, {} consent records, {} events stored, {} dropped by the consent gate",
                r.subjects, r.consent_records, r.events_accepted, r.events_dropped
            );
        }
        demo_data::seed_advertiser(&st).await?;
        let redeemed = demo_data::seed_audiences(&st, seed, n).await?;
        if redeemed > 0 {
            eprintln!("seeded four segments and {redeemed} loyalty redemptions");
        }
        let shown = candor_server::demo_prompt::seed(&st, seed, 30).await?;
        if shown > 0 {
            eprintln!(
                "seeded a month of consent prompt counts: {shown} impressions over two variants"
            );
        }
        println!("Candor demo is running.");
        println!("  API:              http://{addr}/v1");
        println!("  OpenAPI:          http://{addr}/openapi.json");
        println!("  Health:           http://{addr}/healthz");
        println!(
            "  Demo page:        http://{addr}/demo/  (the consent prompt on an app-store page)"
        );
        println!("  Dashboard:        http://{addr}/admin/  (sign in with the admin token)");
        println!(
            "  Metrics:          http://{addr}/metrics  (Authorization: Bearer {})",
            demo::ADMIN_TOKEN
        );
        println!("  Server write key: {}", demo::SERVER_WRITE_KEY);
        println!("  Browser write key: {}", demo::BROWSER_WRITE_KEY);
        println!("  Admin token:      {}", demo::ADMIN_TOKEN);
        println!("  Subject token secret: {}", demo::SUBJECT_TOKEN_SECRET);
        println!(
            "  Advertiser key:   {}  ({}: ε={} δ={} per month; POST /v1/insights/query)",
            demo::ADVERTISER_KEY,
            demo_data::ADVERTISER_ID,
            demo_data::ADVERTISER_BUDGET.0,
            demo_data::ADVERTISER_BUDGET.1
        );
    } else {
        println!("Candor is listening on http://{addr}");
    }
    tracing::info!(%addr, "listening");
    app.run_until(shutdown).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves at SIGINT or SIGTERM; the handlers are installed when this is called.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
