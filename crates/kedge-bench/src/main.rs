//! `kedge-bench`: starts real `kedge server` processes and measures start
//! time, footprint, API throughput and latency, watch lag, idle disk
//! writes, and `kubectl apply` and patch costs; prints one markdown table
//! and saves it (and JSON) under `bench-out/`. docs/benchmarks.md explains every method.
//!
//! It drives kedge only through its binary and its API, like any client;
//! the one kedge crate it links, `kedge-kubelet`, serves the node agent
//! section's CRI floor and clean-up.

mod agent;
mod apply;
mod devices;
mod load;
mod probe;
mod rawsql;
mod recovery;
mod report;
mod scheduler;
mod sections;
mod server;
mod stats;
mod testbed;
mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};

use crate::report::{Report, Row, Verdict};
use crate::sections::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Binary size
    Size,
    /// Cold and warm start to /readyz
    Start,
    /// Idle RSS, VmHWM and idle disk writes
    Idle,
    /// Create throughput and latency, raw SQLite floor
    Create,
    /// Get and list(100) latency
    Read,
    /// One list of 10,000 ConfigMaps
    List,
    /// Watch delivery lag
    Watch,
    /// kubectl apply of a 500-object manifest vs plain POSTs; patch and apply latency
    Apply,
    /// Node agent: pod start vs the CRI floor, idle footprint with pods, cold start to Node Ready (root + containerd)
    Agent,
    /// Scheduler throughput with 100 simulated nodes and 5,000 pending pods; create-to-bound p99
    Scheduler,
    /// Recovery: container crash -> Ready (real node), node lost -> pod elsewhere (kedge vs upstream defaults), scale 0 -> 50 bound
    Recovery,
    /// Device plugins: fake GPU unhealthy -> replacement pod Running, allocation overhead (root + containerd)
    Devices,
}

#[derive(Parser, Debug)]
#[command(name = "kedge-bench", about = "Benchmarks a kedge server binary")]
struct Cli {
    /// The kedge binary to measure
    #[arg(long, default_value = "target/release/kedge")]
    kedge: PathBuf,
    /// A ~1 minute smoke run: shorter windows, fewer runs
    #[arg(long)]
    quick: bool,
    /// Where results.md and results.json are written
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Scratch folder for the servers' data dirs [default: <out>/work]
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the scratch folder (server logs, databases) afterwards
    #[arg(long)]
    keep_work: bool,
    /// Run only these sections (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Repeated runs per figure (start: twice this) [default: 3, start 10; --quick: 3, start 5, read/watch 1]
    #[arg(long)]
    runs: Option<usize>,
    /// Idle window for RSS and idle writes, seconds [default: 60; --quick: 10]
    #[arg(long)]
    idle_secs: Option<u64>,
    /// Length of each create run, seconds [default: 15; --quick: 3]
    #[arg(long)]
    create_secs: Option<f64>,
    /// Stop a create run after this many creates in all
    #[arg(long, default_value_t = 1_000_000)]
    create_max: u64,
    /// Length of each get and each list(100) run, seconds [default: 10; --quick: 1]
    #[arg(long)]
    read_secs: Option<f64>,
    /// Objects in the big list
    #[arg(long, default_value_t = 10_000)]
    list_objects: u64,
    /// Concurrent watch streams
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Objects in the applied manifest (a multiple of 10)
    #[arg(long, default_value_t = 500)]
    apply_objects: usize,
    /// Length of each back-to-back patch/get window, seconds [default: 5; --quick: 2]
    #[arg(long)]
    patch_secs: Option<f64>,
    /// The kubectl binary [default: the Cloud SDK's kubectl.1.33, else /usr/bin/kubectl, else PATH]
    #[arg(long)]
    kubectl: Option<PathBuf>,
    /// Also write the table into the "Latest results" section of this file
    /// (between the kedge-bench:results markers), e.g. docs/benchmarks.md
    #[arg(long)]
    update_docs: Option<PathBuf>,
}

impl Cli {
    fn plan(&self, work: PathBuf) -> Plan {
        let q = self.quick;
        let runs = |full: usize, quick: usize| self.runs.unwrap_or(if q { quick } else { full });
        Plan {
            kedge: self.kedge.clone(),
            work,
            quick: q,
            start_runs: self.runs.map_or(if q { 5 } else { 10 }, |r| r * 2),
            idle: Duration::from_secs(self.idle_secs.unwrap_or(if q { 10 } else { 60 })),
            idle_runs: runs(3, 3),
            create_runs: runs(3, 3),
            create_secs: self.create_secs.unwrap_or(if q { 3.0 } else { 15.0 }),
            raw_secs: if q { 2.0 } else { 10.0 },
            create_max: self.create_max,
            clients: 16,
            read_runs: runs(3, 1),
            read_secs: self.read_secs.unwrap_or(if q { 1.0 } else { 10.0 }),
            list_objects: self.list_objects,
            list_runs: 5,
            watch_runs: runs(3, 1),
            watchers: self.watchers,
            watch_writes: 200,
            watch_rate: 50.0,
            apply_runs: runs(3, 1),
            apply_objects: self.apply_objects,
            patch_secs: self.patch_secs.unwrap_or(if q { 2.0 } else { 5.0 }),
            kubectl: self.kubectl.clone().unwrap_or_else(apply::default_kubectl),
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kedge-bench: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kedge-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let kedge = std::fs::canonicalize(&cli.kedge)
        .with_context(|| format!("no kedge binary at {}", cli.kedge.display()))?;
    let work = cli.work_dir.clone().unwrap_or_else(|| cli.out.join("work"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let work = std::fs::canonicalize(&work)?;
    let mut plan = cli.plan(work.clone());
    plan.kedge = kedge;
    let wanted = |s: Section| cli.only.is_empty() || cli.only.contains(&s);
    let unit = apply::NAMESPACES * apply::PER_APP;
    anyhow::ensure!(
        cli.apply_objects > 0 && cli.apply_objects.is_multiple_of(unit),
        "--apply-objects must be a positive multiple of {unit}"
    );

    let mut rows: Vec<Row> = Vec::new();
    if wanted(Section::Size) {
        rows.extend(sections::size(&plan));
    }
    if wanted(Section::Start) {
        rows.extend(sections::start(&plan).await);
    }
    if wanted(Section::Idle) {
        rows.extend(sections::idle(&plan).await);
    }
    if wanted(Section::Create) {
        rows.extend(sections::create(&plan).await);
    }
    if wanted(Section::Read) || wanted(Section::List) || wanted(Section::Watch) {
        rows.extend(
            sections::api(
                &plan,
                wanted(Section::Read),
                wanted(Section::List),
                wanted(Section::Watch),
            )
            .await,
        );
    }
    if wanted(Section::Apply) {
        rows.extend(sections::apply(&plan).await);
    }
    if wanted(Section::Agent) {
        rows.extend(agent::agent(&plan).await);
    }
    if wanted(Section::Scheduler) {
        rows.extend(scheduler::scheduler(&plan).await);
    }
    if wanted(Section::Recovery) {
        rows.extend(recovery::recovery(&plan).await);
    }
    if wanted(Section::Devices) {
        rows.extend(devices::devices(&plan).await);
    }

    let report = Report {
        generated: jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M UTC")
            .to_string(),
        mode: if plan.quick { "quick" } else { "full" }.to_string(),
        host: host_description(),
        kedge: cli.kedge.display().to_string(),
        version: kedge_version(&plan.kedge).unwrap_or_else(|| "unknown version".to_string()),
        commit: git_commit(),
        rows,
    };
    let md = report.markdown();
    println!("\n{md}");
    std::fs::create_dir_all(&cli.out)?;
    write(&cli.out.join("results.md"), &md)?;
    write(
        &cli.out.join("results.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    let count = |v: Verdict| report.rows.iter().filter(|r| r.verdict == v).count();
    eprintln!(
        "targets: {} met, {} missed (or not measured)",
        count(Verdict::Pass),
        count(Verdict::Fail)
    );
    eprintln!(
        "wrote {0}/results.md and {0}/results.json",
        cli.out.display()
    );
    if let Some(doc) = &cli.update_docs {
        let text =
            std::fs::read_to_string(doc).with_context(|| format!("reading {}", doc.display()))?;
        let new = report::replace_results(&text, &md).with_context(|| {
            format!(
                "{} has no {} ... {} markers",
                doc.display(),
                report::RESULTS_START,
                report::RESULTS_END
            )
        })?;
        write(doc, &new)?;
        eprintln!("updated {}", doc.display());
    }
    if !cli.keep_work {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn host_description() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), {mem_gib:.0} GiB RAM, Linux {}",
        kernel.trim()
    )
}

/// `kedge --version`'s line, if it has one.
fn kedge_version(bin: &Path) -> Option<String> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !line.is_empty()).then_some(line)
}

fn git_commit() -> String {
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match out(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = out(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}+dirty")
            } else {
                c
            }
        }
        None => "unknown".to_string(),
    }
}
