//! `candor-bench insights`: the privacy engine on synthetic features, beside Google's
//! library through PipelineDP and OpenDP's Python package on the same data.
//!
//! The query (issue 5's benchmark): per (app category × age band), the number of distinct
//! subjects and the sum of 30-day sessions clamped to `[lo, hi]`, each subject in at most
//! `k` groups, group keys private (partition selection), total cost (ε, δ).
//!
//! Candor runs its real path: daily features in the in-memory `FeatureIndex` (one entry
//! per subject, category and active day), `InsightQuery::compile`, `evaluate` (scan, fold
//! the 30 days, bound, clamp) and `candor_privacy::query::release` (partition selection and
//! discrete Laplace noise from OpenDP's samplers): everything the server does for a query
//! except HTTP and the one store write. The references get the easier input: one
//! pre-aggregated row per (subject, category) with the 30-day sum, in a CSV, loaded before
//! their clock starts (`bench/dp-ref`). RMSE is against the exact, unbounded answer over the
//! groups each library released (so suppression is not counted as error; the number of
//! released groups is printed beside it).

use anyhow::{bail, Context, Result};
use candor_core::SubjectId;
use candor_insights::query::{evaluate, InsightQuery, Measure, Metric, Permissions};
use candor_insights::{
    Category, DailyFeature, Day, DeclaredField, FeatureIndex, FeatureKind, Schema,
};
use candor_privacy::bounds::SelectionKey;
use candor_privacy::query::{prepare, release};
use candor_privacy::{Budget, Receipt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const BANDS: [&str; 6] = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"];
const CATS: usize = 20;
const DAY0: u32 = 20_400;
const DAYS: u32 = 30;

struct Opts {
    subjects: Vec<usize>,
    runs: usize,
    ref_runs: usize,
    refs: bool,
    epsilon: f64,
    delta: f64,
    k: u32,
    lo: f64,
    hi: f64,
    seed: u64,
}

/// `candor-bench insights`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Numbers of subjects, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000_000usize, 3_000_000, 10_000_000])]
    subjects: Vec<usize>,
    /// Runs of Candor's engine per size.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Runs of each reference implementation.
    #[arg(long, default_value_t = 3)]
    ref_runs: u64,
    /// Skip PipelineDP and OpenDP's Python package.
    #[arg(long)]
    no_refs: bool,
    #[arg(long, default_value_t = 1.0)]
    epsilon: f64,
    #[arg(long, default_value_t = 1e-6)]
    delta: f64,
    /// Groups each subject may contribute to.
    #[arg(long, default_value_t = 4)]
    k: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

impl From<Args> for Opts {
    fn from(a: Args) -> Self {
        Opts {
            subjects: a.subjects,
            runs: a.runs as usize,
            ref_runs: a.ref_runs as usize,
            refs: !a.no_refs,
            epsilon: a.epsilon,
            delta: a.delta,
            k: a.k,
            lo: 0.0,
            hi: 50.0,
            seed: a.seed,
        }
    }
}

/// Exact per-group truth: (distinct subjects, unbounded sum).
type Truth = BTreeMap<(String, String), (f64, f64)>;

fn category_weights() -> Vec<f64> {
    // Zipf-like popularity over 20 categories
    let w: Vec<f64> = (1..=CATS).map(|r| 1.0 / (r as f64).powf(0.8)).collect();
    let t: f64 = w.iter().sum();
    w.into_iter().map(|x| x / t).collect()
}

fn pick(rng: &mut ChaCha8Rng, w: &[f64]) -> usize {
    let mut x: f64 = rng.gen();
    for (i, p) in w.iter().enumerate() {
        if x < *p {
            return i;
        }
        x -= p;
    }
    w.len() - 1
}

/// Builds the index (and optionally the CSV the references read), returning the truth.
fn populate(ix: &FeatureIndex, n: usize, seed: u64, csv: Option<&Path>) -> Result<(Truth, usize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let weights = category_weights();
    // Names are unrelated to popularity (as real category names are): a library that keeps
    // "the first k groups" by name must not be favoured by the way the data was generated.
    let mut names: Vec<usize> = (0..CATS).collect();
    let mut shuffle = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    for i in (1..CATS).rev() {
        names.swap(i, shuffle.gen_range(0..=i));
    }
    let cats: Vec<Category> = names
        .iter()
        .map(|i| Category::parse(&format!("cat{i:02}")))
        .collect::<Option<_>>()
        .context("category names")?;
    let mut out = match csv {
        Some(p) => {
            let mut f = std::io::BufWriter::new(std::fs::File::create(p)?);
            writeln!(f, "subject,category,age_band,value")?;
            Some(f)
        }
        None => None,
    };
    let mut truth: Truth = BTreeMap::new();
    let mut rows = 0usize;
    let mut chosen = Vec::with_capacity(CATS);
    for i in 0..n {
        let s = SubjectId::random();
        let dense = u32::try_from(i)?;
        let band = BANDS[rng.gen_range(0..BANDS.len())];
        ix.set_declared(s, dense, "age_band", Some(band));
        // 1..=20 categories, mean about 4.5; a few subjects in all 20
        let m = if rng.gen_bool(0.002) {
            CATS
        } else {
            (1 + (rng.gen::<f64>().ln() / (1.0f64 - 1.0 / 3.5).ln()).floor() as usize).min(CATS)
        };
        chosen.clear();
        while chosen.len() < m {
            let c = pick(&mut rng, &weights);
            if !chosen.contains(&c) {
                chosen.push(c);
            }
        }
        let heavy = rng.gen_bool(0.01);
        for &c in &chosen {
            let active = rng.gen_range(1..=12u32);
            for _ in 0..active {
                let day = DAY0 + rng.gen_range(0..DAYS);
                let count = if heavy {
                    rng.gen_range(10..60)
                } else {
                    rng.gen_range(1..4)
                };
                ix.set_activity(
                    s,
                    dense,
                    &DailyFeature {
                        day: Day::from_days(day).context("day")?,
                        kind: FeatureKind::AppUsed,
                        category: cats[c].clone(),
                        count,
                    },
                );
            }
            rows += 1;
        }
        // the truth from what the index holds (a repeated day overwrites: counts are absolute)
        let mut per: HashMap<String, u64> = HashMap::new();
        for f in ix.features_of(&s) {
            *per.entry(f.category.as_str().to_owned()).or_default() += u64::from(f.count);
        }
        for (c, v) in per {
            let e = truth.entry((c.clone(), band.to_owned())).or_default();
            e.0 += 1.0;
            e.1 += v as f64;
            if let Some(f) = out.as_mut() {
                writeln!(f, "{i},{c},{band},{v}")?;
            }
        }
    }
    if let Some(mut f) = out {
        f.flush()?;
    }
    Ok((truth, rows))
}

/// This process's `VmRSS`/`VmHWM` in KiB.
fn rss_kib(field: &str) -> u64 {
    crate::ingest::rss_kib(std::process::id(), field)
}

struct Released {
    /// (category, band) → (count, sum)
    groups: BTreeMap<(String, String), (f64, f64)>,
}

fn rmse(truth: &Truth, r: &Released) -> (f64, f64, usize) {
    let (mut ec, mut es, mut n) = (0.0, 0.0, 0usize);
    for (k, (c, s)) in &r.groups {
        let (tc, ts) = truth.get(k).copied().unwrap_or((0.0, 0.0));
        ec += (c - tc).powi(2);
        es += (s - ts).powi(2);
        n += 1;
    }
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    ((ec / n as f64).sqrt(), (es / n as f64).sqrt(), n)
}

fn candor_query(o: &Opts) -> Result<InsightQuery> {
    Ok(InsightQuery {
        metric: Metric::Sum,
        feature: FeatureKind::AppUsed,
        measure: Some(Measure::Sessions),
        clamp: Some((o.lo, o.hi)),
        group_by: vec!["category".into(), "age_band".into()],
        keys: None,
        from: Day::from_days(DAY0).context("day")?,
        to: Day::from_days(DAY0 + DAYS - 1).context("day")?,
        categories: None,
        declared: BTreeMap::new(),
        conditions: vec![],
        max_groups_per_subject: o.k,
        epsilon: o.epsilon,
        delta: Some(o.delta),
    })
}

/// One Candor answer: (seconds, released groups).
fn candor_once(ix: &FeatureIndex, o: &Opts) -> Result<(f64, Released)> {
    let perm = Permissions {
        features: vec!["app_usage".into()],
        dimensions: vec!["category".into(), "age_band".into()],
        min_group_size: 0,
    };
    let t = Instant::now();
    let c = candor_query(o)?
        .compile(ix, &perm)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = prepare(&c.query).map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = SelectionKey::random().map_err(|e| anyhow::anyhow!("{e}"))?;
    let ev = evaluate(ix, &c, &plan, &|_| true, &key);
    let receipt = Receipt {
        sequence: 1,
        charged: c.query.budget,
        spent_after: c.query.budget,
        total: Budget::new(o.epsilon, o.delta).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let a = release(&c.query, &plan, ev.exact, receipt).map_err(|e| anyhow::anyhow!("{e}"))?;
    let secs = t.elapsed().as_secs_f64();
    let groups = a
        .groups
        .iter()
        .map(|g| {
            let p = g.key.parts();
            (
                (p[0].clone(), p[1].clone()),
                (g.count.unwrap_or(f64::NAN), g.value),
            )
        })
        .collect();
    Ok((secs, Released { groups }))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Runs one reference script; returns (median seconds, mean RMSE count, mean RMSE sum,
/// mean groups released, library version).
fn reference(
    python: &Path,
    script: &str,
    extra: &[&str],
    csv: &Path,
    o: &Opts,
    truth: &Truth,
) -> Result<(f64, f64, f64, f64, String)> {
    let out = csv.with_extension(format!("{script}{}.json", extra.join("")));
    let status = Command::new(python)
        .arg(format!("bench/dp-ref/{script}.py"))
        .args(["--csv", &csv.display().to_string()])
        .args(["--epsilon", &o.epsilon.to_string()])
        .args(["--delta", &o.delta.to_string()])
        .args(["--max-groups", &o.k.to_string()])
        .args(["--lo", &o.lo.to_string()])
        .args(["--hi", &o.hi.to_string()])
        .args(["--runs", &o.ref_runs.to_string()])
        .args(["--out", &out.display().to_string()])
        .args(extra)
        .status()
        .with_context(|| format!("running {script}"))?;
    if !status.success() {
        bail!("{script} failed: {status}");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    let mut secs = Vec::new();
    let (mut rc, mut rs, mut ng) = (0.0, 0.0, 0.0);
    let runs = v["runs"].as_array().context("runs")?;
    for r in runs {
        secs.push(r["seconds"].as_f64().context("seconds")?);
        let mut groups = BTreeMap::new();
        for g in r["groups"].as_array().context("groups")? {
            groups.insert(
                (
                    g["category"].as_str().unwrap_or_default().to_owned(),
                    g["age_band"].as_str().unwrap_or_default().to_owned(),
                ),
                (
                    g["count"].as_f64().unwrap_or(f64::NAN),
                    g["sum"].as_f64().unwrap_or(f64::NAN),
                ),
            );
        }
        let (c, s, n) = rmse(truth, &Released { groups });
        rc += c;
        rs += s;
        ng += n as f64;
    }
    let k = runs.len().max(1) as f64;
    let version = v["version"].as_str().unwrap_or("?").to_owned();
    Ok((pct(&mut secs, 0.5), rc / k, rs / k, ng / k, version))
}

fn venv_python() -> Result<PathBuf> {
    let venv = PathBuf::from("target/dp-venv");
    let py = venv.join("bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", "import pipeline_dp, opendp"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !ok {
        eprintln!("installing pipeline-dp and opendp into {}", venv.display());
        let s = Command::new("python3")
            .args(["-m", "venv", &venv.display().to_string()])
            .status()?;
        if !s.success() {
            bail!("python3 -m venv failed");
        }
        let s = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                "bench/dp-ref/requirements.txt",
            ])
            .status()?;
        if !s.success() {
            bail!("pip install failed");
        }
    }
    Ok(py)
}

pub fn run(a: Args) -> Result<()> {
    let o = Opts::from(a);
    if o.subjects.is_empty() {
        bail!("need at least one size");
    }
    println!(
        "insights: grouped count + clamped sum, 20 categories x 6 age bands, private keys \
         (partition selection), eps={} delta={} k={} clamp=[{}, {}], {} days of daily features",
        o.epsilon, o.delta, o.k, o.lo, o.hi, DAYS
    );
    println!(
        "secure noise (OpenSSL): {}",
        candor_privacy::RNG_IS_CRYPTOGRAPHICALLY_SECURE
    );
    let mut first = true;
    for &n in &o.subjects {
        let rss0 = rss_kib("VmRSS:");
        let schema = Schema {
            declared: vec![DeclaredField {
                name: "age_band".into(),
                values: BANDS.iter().map(|s| (*s).to_owned()).collect(),
            }],
            categories: candor_insights::features::sorted_categories(
                (0..CATS).filter_map(|i| Category::parse(&format!("cat{i:02}"))),
            ),
        };
        let ix = FeatureIndex::new(schema).map_err(|e| anyhow::anyhow!("{e}"))?;
        let csv = PathBuf::from(format!("target/insights-{n}.csv"));
        let with_refs = o.refs && first;
        let t = Instant::now();
        let (truth, _) = populate(&ix, n, o.seed, with_refs.then_some(csv.as_path()))?;
        let build = t.elapsed().as_secs_f64();
        let stats = ix.stats();
        let rss = rss_kib("VmRSS:").saturating_sub(rss0);
        let mut secs = Vec::new();
        let (mut rc, mut rs, mut ng) = (0.0, 0.0, 0.0);
        for _ in 0..o.runs {
            let (s, r) = candor_once(&ix, &o)?;
            let (c, sm, g) = rmse(&truth, &r);
            secs.push(s);
            rc += c;
            rs += sm;
            ng += g as f64;
        }
        let k = o.runs as f64;
        let p50 = pct(&mut secs, 0.5);
        let max = pct(&mut secs, 1.0);
        println!(
            "\ncandor  {n:>9} subjects  {:>10} daily rows  index built in {build:.1} s  \
             index RSS {:.0} MiB ({:.0} B/subject)  peak RSS {:.0} MiB",
            stats.daily_rows,
            rss as f64 / 1024.0,
            rss as f64 * 1024.0 / n as f64,
            rss_kib("VmHWM:") as f64 / 1024.0
        );
        println!(
            "        query p50 {:.3} s  max {:.3} s  ({:.1} M subjects/s)  RMSE count {:.1}  \
             RMSE sum {:.1}  groups released {:.0} of {}  (runs {})",
            p50,
            max,
            n as f64 / p50 / 1e6,
            rc / k,
            rs / k,
            ng / k,
            truth.len(),
            o.runs
        );
        if with_refs {
            let py = venv_python()?;
            // OpenDP as its docs show (the library truncates; k+1 works around its k-1
            // bug), and with truncation declared in the privacy unit (done in polars).
            for (label, script, extra) in [
                ("opendp", "opendp_ref", &[][..]),
                (
                    "opendp-declared",
                    "opendp_ref",
                    &["--truncation", "declared"][..],
                ),
                ("pipeline-dp", "pipelinedp_ref", &[][..]),
            ] {
                match reference(&py, script, extra, &csv, &o, &truth) {
                    Ok((t, c, s, g, version)) => println!(
                        "{label:<15} {version:<8} query p50 {t:.3} s  RMSE count {c:.1}  RMSE sum {s:.1}  \
                         groups released {g:.0}  (runs {})  candor is {:.0}x faster",
                        o.ref_runs,
                        t / p50
                    ),
                    Err(e) => println!("{label}: failed: {e:#}"),
                }
            }
            let _ = std::fs::remove_file(&csv);
        }
        first = false;
        drop(ix);
    }
    Ok(())
}
