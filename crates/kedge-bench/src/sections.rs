//! One function per table section; each turns its measurements into rows,
//! and a failure into an error row, so one broken part does not hide the
//! others.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use crate::apply::{self, Op};
use crate::load;
use crate::probe::ReadyzProbe;
use crate::rawsql;
use crate::report::{Row, Verdict};
use crate::server::KedgeServer;
use crate::stats::{fmt_num, median, ms, Summary, MIB};
use crate::watch::{self, WatchPlan};

pub struct Plan {
    pub kedge: PathBuf,
    pub work: PathBuf,
    pub quick: bool,
    pub start_runs: usize,
    pub idle: Duration,
    pub idle_runs: usize,
    pub create_runs: usize,
    pub create_secs: f64,
    pub raw_secs: f64,
    pub create_max: u64,
    pub clients: usize,
    pub read_runs: usize,
    pub read_secs: f64,
    pub list_objects: u64,
    pub list_runs: usize,
    pub watch_runs: usize,
    pub watchers: usize,
    pub watch_writes: usize,
    pub watch_rate: f64,
    pub apply_runs: usize,
    pub apply_objects: usize,
    pub patch_secs: f64,
    pub kubectl: PathBuf,
}

const READYZ_POLL: Duration = Duration::from_millis(2);

fn runs_phrase(n: usize) -> String {
    if n == 1 {
        "1 run".to_string()
    } else {
        format!("median of {n} runs")
    }
}

fn secs(x: f64) -> String {
    format!("{x} s")
}

/// Start a server in `dir` and wait for it to be ready.
async fn ready_server(plan: &Plan, dir: &str) -> Result<KedgeServer> {
    let probe = ReadyzProbe::new()?;
    let mut s = KedgeServer::spawn(&plan.kedge, &plan.work.join(dir))?;
    s.wait_ready(&probe, Duration::from_millis(10)).await?;
    Ok(s)
}

// ---- 3. binary size ----

pub fn size(plan: &Plan) -> Vec<Row> {
    let metric = "Binary size";
    match std::fs::metadata(&plan.kedge) {
        Ok(m) => {
            let mib = m.len() as f64 / MIB;
            vec![Row::new(
                metric,
                format!("{} MiB", fmt_num(mib)),
                "<= 25 MiB",
                Verdict::from_check(mib <= 25.0),
                "size of the release binary (stripped by the profile); K3s is ~78 MB, for reference"
                    .to_string(),
                json!({ "bytes": m.len() }),
            )]
        }
        Err(e) => vec![Row::error(metric, &anyhow::Error::from(e))],
    }
}

// ---- 1. start time ----

pub async fn start(plan: &Plan) -> Vec<Row> {
    match start_inner(plan).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::error("Start to /readyz 200", &e)],
    }
}

async fn start_inner(plan: &Plan) -> Result<Vec<Row>> {
    let probe = ReadyzProbe::new()?;
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for i in 0..plan.start_runs {
        let dir = plan.work.join(format!("start-{i}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = KedgeServer::spawn(&plan.kedge, &dir)?;
        let c = ms(s.wait_ready(&probe, READYZ_POLL).await?);
        s.stop()?;
        let mut s = KedgeServer::spawn(&plan.kedge, &dir)?;
        let w = ms(s.wait_ready(&probe, READYZ_POLL).await?);
        s.stop()?;
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "[start] run {}/{}: cold {c:.1} ms, warm {w:.1} ms",
            i + 1,
            plan.start_runs
        );
        cold.push(c);
        warm.push(w);
    }
    let row = |metric: &str, v: &[f64], how: &str| {
        let s = Summary::of(v.to_vec());
        let m = median(v);
        Row::new(
            metric,
            format!(
                "{} ms (min {}, max {})",
                fmt_num(m),
                fmt_num(v.iter().copied().fold(f64::INFINITY, f64::min)),
                fmt_num(s.max)
            ),
            "< 300 ms",
            Verdict::from_check(m < 300.0),
            format!(
                "{how}; spawn -> first 200 of anonymous GET /readyz, new TLS conn every 2 ms; {}",
                runs_phrase(v.len())
            ),
            json!({ "median_ms": m, "runs_ms": v }),
        )
    };
    Ok(vec![
        row(
            "Cold start to /readyz 200",
            &cold,
            "fresh data dir (CA, certs, DB created)",
        ),
        row(
            "Warm start to /readyz 200",
            &warm,
            "existing data dir, after a SIGTERM stop",
        ),
    ])
}

// ---- 2 and 8. idle footprint ----

pub async fn idle(plan: &Plan) -> Vec<Row> {
    match idle_inner(plan).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::error("Idle RSS", &e)],
    }
}

async fn idle_inner(plan: &Plan) -> Result<Vec<Row>> {
    // The servers idle side by side: one window serves every run.
    let mut servers = Vec::new();
    for i in 0..plan.idle_runs {
        let s = ready_server(plan, &format!("idle-{i}")).await?;
        let w0 = s.write_bytes()?;
        servers.push((s, Instant::now(), w0));
    }
    let window = plan.idle;
    eprintln!(
        "[idle] {} server(s) idle for {} s",
        servers.len(),
        window.as_secs()
    );
    tokio::time::sleep(window).await;
    let (mut rss, mut hwm, mut per_hour) = (Vec::new(), Vec::new(), Vec::new());
    let startup_bytes: Vec<u64> = servers.iter().map(|(_, _, w0)| *w0).collect();
    for (s, t0, w0) in &mut servers {
        let elapsed = t0.elapsed().as_secs_f64();
        let written = s.write_bytes()?.saturating_sub(*w0);
        rss.push(s.status_bytes("VmRSS")? as f64 / MIB);
        hwm.push(s.status_bytes("VmHWM")? as f64 / MIB);
        per_hour.push(written as f64 / elapsed * 3600.0);
        eprintln!(
            "[idle] pid {}: VmRSS {:.1} MiB, VmHWM {:.1} MiB, {written} B written in {elapsed:.1} s",
            s.pid()?,
            rss[rss.len() - 1],
            hwm[hwm.len() - 1]
        );
        s.stop()?;
    }
    let idle_phrase = if plan.quick {
        format!("{} s idle (--quick; full run: 60 s)", window.as_secs())
    } else {
        format!("{} s idle", window.as_secs())
    };
    let n = servers.len();
    let (rss_m, hwm_m, ph_m) = (median(&rss), median(&hwm), median(&per_hour));
    Ok(vec![
        Row::new(
            "Idle RSS (VmRSS)",
            format!("{} MiB", fmt_num(rss_m)),
            "<= 30 MiB",
            Verdict::from_check(rss_m <= 30.0),
            format!(
                "server --disable-agent, empty cluster, /proc/PID/status after {idle_phrase}; {}",
                runs_phrase(n)
            ),
            json!({ "median_mib": rss_m, "runs_mib": rss, "idle_s": window.as_secs() }),
        ),
        Row::new(
            "Peak RSS (VmHWM) at that point",
            format!("{} MiB", fmt_num(hwm_m)),
            "report",
            Verdict::Report,
            format!("same processes, start-up included; {}", runs_phrase(n)),
            json!({ "median_mib": hwm_m, "runs_mib": hwm }),
        ),
        Row::new(
            "Disk writes per idle hour",
            format!(
                "{} KiB/h ({} MiB/day)",
                fmt_num(ph_m / 1024.0),
                fmt_num(ph_m * 24.0 / MIB)
            ),
            "report (lower is better)",
            Verdict::Report,
            format!(
                "/proc/PID/io write_bytes over the {idle_phrase} window after ready, extrapolated; {}",
                runs_phrase(n)
            ),
            json!({
                "median_bytes_per_hour": ph_m,
                "median_bytes_per_day": ph_m * 24.0,
                "runs_bytes_per_hour": per_hour,
                "window_s": window.as_secs(),
                "startup_bytes": startup_bytes,
            }),
        ),
    ])
}

// ---- 4. creates, and the raw SQLite floor ----

pub async fn create(plan: &Plan) -> Vec<Row> {
    match create_inner(plan).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::error("Create throughput", &e)],
    }
}

async fn create_inner(plan: &Plan) -> Result<Vec<Row>> {
    let (mut rates, mut p50s, mut p99s, mut errors) = (Vec::new(), Vec::new(), Vec::new(), 0u64);
    let (mut raw1, mut raw16) = (Vec::new(), Vec::new());
    let mut raw_errors = 0u64;
    let mut sample_len = 0usize;
    for r in 0..plan.create_runs {
        let dir = format!("create-{r}");
        let mut s = ready_server(plan, &dir).await?;
        let clients = s.clients(plan.clients).await?;
        load::create_namespace(&clients[0], "bench-create").await?;
        let run = load::create_load(
            &clients,
            "bench-create",
            "c-",
            Duration::from_secs_f64(plan.create_secs),
            plan.create_max,
        )
        .await?;
        drop(clients);
        s.stop()?;
        drop(s);
        let lat = Summary::of(run.latencies.clone());
        rates.push(run.rate());
        p50s.push(lat.p50);
        p99s.push(lat.p99);
        errors += run.errors;
        sample_len = run.sample.len();

        // The same bytes kedge stored, straight into SQLite, server stopped.
        let db = plan.work.join(&dir).join("raw.db");
        let (value, secs) = (run.sample.clone(), plan.raw_secs);
        let (db1, v1) = (db.clone(), value.clone());
        let one = tokio::task::spawn_blocking(move || {
            rawsql::insert_for(&db1, &v1, Duration::from_secs_f64(secs), 1)
        })
        .await
        .context("raw insert thread")??;
        let threads = plan.clients;
        let many = tokio::task::spawn_blocking(move || {
            rawsql::insert_for(&db, &value, Duration::from_secs_f64(secs), threads)
        })
        .await
        .context("raw insert threads")??;
        raw1.push(one.rate());
        raw16.push(many.rate());
        raw_errors += one.errors + many.errors;
        let _ = std::fs::remove_dir_all(plan.work.join(&dir));
        eprintln!(
            "[create] run {}/{}: kedge {:.0}/s (p50 {:.1} ms, p99 {:.1} ms, {} errors); raw SQLite {:.0}/s, 16 threads {:.0}/s",
            r + 1,
            plan.create_runs,
            run.rate(),
            lat.p50,
            lat.p99,
            run.errors,
            one.rate(),
            many.rate()
        );
    }
    let n = plan.create_runs;
    let (rate, raw, raw_many) = (median(&rates), median(&raw1), median(&raw16));
    let ratio = rate / raw;
    let clients = plan.clients;
    let window = secs(plan.create_secs);
    let raw_window = secs(plan.raw_secs);
    Ok(vec![
        Row::new(
            &format!("Create throughput, {clients} clients"),
            format!("{} creates/s", fmt_num(rate)),
            ">= 2,000/s",
            Verdict::from_check(rate >= 2000.0),
            format!(
                "{clients} kube::Clients (own TLS conns) POST ~1 KB ConfigMaps for {window}, fresh server; {}{}",
                runs_phrase(n),
                if errors > 0 { format!("; {errors} errors") } else { String::new() }
            ),
            json!({ "median_per_s": rate, "runs_per_s": rates, "errors": errors, "window_s": plan.create_secs }),
        ),
        Row::new(
            "Create latency p50 / p99",
            format!("{} / {} ms", fmt_num(median(&p50s)), fmt_num(median(&p99s))),
            "report",
            Verdict::Report,
            format!("same runs, POST -> 201 per request; {}", runs_phrase(n)),
            json!({ "p50_ms": median(&p50s), "p99_ms": median(&p99s), "runs_p50_ms": p50s, "runs_p99_ms": p99s }),
        ),
        Row::new(
            "Raw SQLite durable inserts, 1 connection",
            format!("{} rows/s", fmt_num(raw)),
            "report",
            Verdict::Report,
            format!(
                "same JSON bytes ({sample_len} B), kedge schema, WAL + synchronous=FULL, 1 txn per insert, {raw_window}; {}",
                runs_phrase(n)
            ),
            json!({ "median_per_s": raw, "runs_per_s": raw1, "value_bytes": sample_len }),
        ),
        Row::new(
            "kedge creates / raw SQLite inserts",
            fmt_num(ratio),
            ">= 0.5",
            Verdict::from_check(ratio >= 0.5),
            "ratio of the two medians above (group commit can exceed 1)".to_string(),
            json!({ "ratio": ratio }),
        ),
        Row::new(
            &format!("Raw SQLite, {clients} threads x own connection"),
            format!("{} rows/s", fmt_num(raw_many)),
            "report",
            Verdict::Report,
            format!(
                "as above, busy_timeout=5000, {raw_window}; {}{}",
                runs_phrase(n),
                if raw_errors > 0 { format!("; {raw_errors} busy errors") } else { String::new() }
            ),
            json!({ "median_per_s": raw_many, "runs_per_s": raw16, "errors": raw_errors }),
        ),
    ])
}

// ---- 5, 6, 7. reads, the big list and watches, on one server ----

pub async fn api(plan: &Plan, read: bool, list: bool, watch: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    let server = match ready_server(plan, "api").await {
        Ok(s) => s,
        Err(e) => return vec![Row::error("API server for reads", &e)],
    };
    if read {
        match read_rows(plan, &server).await {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(Row::error("Get / list latency", &e)),
        }
    }
    if list {
        match big_list_rows(plan, &server).await {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(Row::error("Big list", &e)),
        }
    }
    if watch {
        match watch_rows(plan, &server).await {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(Row::error("Watch lag", &e)),
        }
    }
    let mut server = server;
    if let Err(e) = server.stop() {
        eprintln!("stopping the API server: {e:#}");
    }
    rows
}

async fn read_rows(plan: &Plan, server: &KedgeServer) -> Result<Vec<Row>> {
    const NS: &str = "bench-read";
    const OBJECTS: u64 = 100;
    let clients = server.clients(plan.clients).await?;
    load::create_namespace(&clients[0], NS).await?;
    load::seed(&clients, NS, "r-", OBJECTS).await?;
    let (_, list_bytes, items) = load::list_once(
        &clients[0],
        &format!("/api/v1/namespaces/{NS}/configmaps"),
        "r-",
    )
    .await?;
    anyhow::ensure!(items == OBJECTS as usize, "list(100) gave {items} items");
    let window = Duration::from_secs_f64(plan.read_secs);
    let (mut get50, mut get99, mut get_rate) = (Vec::new(), Vec::new(), Vec::new());
    let (mut list50, mut list99, mut list_rate) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..plan.read_runs {
        // Spread the names: consecutive requests hit different objects.
        let gets = load::read_load(&clients, window, |i| {
            format!(
                "/api/v1/namespaces/{NS}/configmaps/r-{}",
                (i * 37) % OBJECTS
            )
        })
        .await?;
        let lists = load::read_load(&clients, window, |_| {
            format!("/api/v1/namespaces/{NS}/configmaps")
        })
        .await?;
        let (g, l) = (Summary::of(gets), Summary::of(lists));
        get_rate.push(g.n as f64 / plan.read_secs);
        list_rate.push(l.n as f64 / plan.read_secs);
        eprintln!(
            "[read] run {}/{}: get p50 {:.2} p99 {:.2} ms ({:.0}/s); list(100) p50 {:.2} p99 {:.2} ms ({:.0}/s)",
            r + 1,
            plan.read_runs,
            g.p50,
            g.p99,
            get_rate[get_rate.len() - 1],
            l.p50,
            l.p99,
            list_rate[list_rate.len() - 1]
        );
        get50.push(g.p50);
        get99.push(g.p99);
        list50.push(l.p50);
        list99.push(l.p99);
    }
    let n = plan.read_runs;
    let clients_n = plan.clients;
    let window = secs(plan.read_secs);
    Ok(vec![
        Row::new(
            &format!("Get p50 / p99, {clients_n} clients"),
            format!(
                "{} / {} ms ({} gets/s)",
                fmt_num(median(&get50)),
                fmt_num(median(&get99)),
                fmt_num(median(&get_rate))
            ),
            "report",
            Verdict::Report,
            format!(
                "{clients_n} clients GET one of 100 ~1 KB ConfigMaps back to back for {window}; {}",
                runs_phrase(n)
            ),
            json!({ "p50_ms": median(&get50), "p99_ms": median(&get99), "per_s": median(&get_rate),
                    "runs_p50_ms": get50, "runs_p99_ms": get99 }),
        ),
        Row::new(
            &format!("List of 100 p50 / p99, {clients_n} clients"),
            format!(
                "{} / {} ms ({} lists/s)",
                fmt_num(median(&list50)),
                fmt_num(median(&list99)),
                fmt_num(median(&list_rate))
            ),
            "report",
            Verdict::Report,
            format!(
                "{clients_n} clients list a namespace of 100 ConfigMaps ({} KB JSON) for {window}; {}",
                list_bytes / 1000,
                runs_phrase(n)
            ),
            json!({ "p50_ms": median(&list50), "p99_ms": median(&list99), "per_s": median(&list_rate),
                    "runs_p50_ms": list50, "runs_p99_ms": list99, "response_bytes": list_bytes }),
        ),
    ])
}

async fn big_list_rows(plan: &Plan, server: &KedgeServer) -> Result<Vec<Row>> {
    const NS: &str = "bench-list";
    let n = plan.list_objects;
    let clients = server.clients(plan.clients).await?;
    load::create_namespace(&clients[0], NS).await?;
    let t = Instant::now();
    load::seed(&clients, NS, "l-", n).await?;
    eprintln!(
        "[list] seeded {n} ConfigMaps in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    drop(clients);
    let client = server.client().await?;
    let path = format!("/api/v1/namespaces/{NS}/configmaps");
    // One unmeasured list first: connection set-up and first-touch costs.
    load::list_once(&client, &path, "l-").await?;
    let mut times = Vec::new();
    let mut bytes = 0;
    for i in 0..plan.list_runs {
        let (took, b, items) = load::list_once(&client, &path, "l-").await?;
        anyhow::ensure!(items as u64 == n, "list gave {items} of {n} items");
        bytes = b;
        times.push(ms(took));
        eprintln!(
            "[list] {}/{}: {:.1} ms, {b} bytes",
            i + 1,
            plan.list_runs,
            ms(took)
        );
    }
    let s = Summary::of(times.clone());
    let p50 = median(&times);
    Ok(vec![Row::new(
        &format!("List of {} ConfigMaps, one request", fmt_num(n as f64)),
        format!("p50 {} ms, max {} ms", fmt_num(p50), fmt_num(s.max)),
        "p50 < 150 ms",
        Verdict::from_check(p50 < 150.0),
        format!(
            "GET all ~1 KB ConfigMaps of one namespace as JSON ({:.1} MB), send -> last byte, after 1 warm-up; {} lists",
            bytes as f64 / 1e6,
            times.len()
        ),
        json!({ "p50_ms": p50, "max_ms": s.max, "runs_ms": times, "response_bytes": bytes, "objects": n }),
    )])
}

async fn watch_rows(plan: &Plan, server: &KedgeServer) -> Result<Vec<Row>> {
    const NS: &str = "bench-watch";
    let client = server.client().await?;
    load::create_namespace(&client, NS).await?;
    let (mut s50, mut s99, mut a50, mut a99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut expected, mut received) = (0usize, 0usize);
    for r in 0..plan.watch_runs {
        let prefix = format!("w{r}-");
        let run = watch::watch_lag(
            server,
            &WatchPlan {
                ns: NS,
                prefix: &prefix,
                watchers: plan.watchers,
                writes: plan.watch_writes,
                rate: plan.watch_rate,
            },
        )
        .await?;
        let (send, ack) = (
            Summary::of(run.lag_from_send),
            Summary::of(run.lag_from_ack),
        );
        eprintln!(
            "[watch] run {}/{}: {} of {} events; from send p50 {:.2} p99 {:.2} ms; from ack p50 {:.2} p99 {:.2} ms",
            r + 1,
            plan.watch_runs,
            run.received,
            run.expected,
            send.p50,
            send.p99,
            ack.p50,
            ack.p99
        );
        expected += run.expected;
        received += run.received;
        s50.push(send.p50);
        s99.push(send.p99);
        a50.push(ack.p50);
        a99.push(ack.p99);
    }
    let n = plan.watch_runs;
    let p99 = median(&s99);
    let complete = received == expected;
    let missing = if complete {
        String::new()
    } else {
        format!("; only {received} of {expected} events arrived")
    };
    Ok(vec![
        Row::new(
            &format!("Watch lag p50 / p99, {} watchers", plan.watchers),
            format!("{} / {} ms", fmt_num(median(&s50)), fmt_num(p99)),
            "p99 < 50 ms",
            Verdict::from_check(p99 < 50.0 && complete),
            format!(
                "{} streams on one namespace; {} paced writes ({} creates, then merge-patch updates) at {}/s; receive - write send time; {}{missing}",
                plan.watchers,
                plan.watch_writes,
                plan.watch_writes.div_ceil(2),
                plan.watch_rate,
                runs_phrase(n)
            ),
            json!({ "p50_ms": median(&s50), "p99_ms": p99, "runs_p50_ms": s50, "runs_p99_ms": s99,
                    "events_expected": expected, "events_received": received }),
        ),
        Row::new(
            "Watch lag from write ack p50 / p99",
            format!("{} / {} ms", fmt_num(median(&a50)), fmt_num(median(&a99))),
            "report",
            Verdict::Report,
            format!(
                "same events, receive - time the writer got its response (negative: event came first); {}",
                runs_phrase(n)
            ),
            json!({ "p50_ms": median(&a50), "p99_ms": median(&a99), "runs_p50_ms": a50, "runs_p99_ms": a99 }),
        ),
    ])
}

// ---- 9. kubectl apply of a big manifest; patch and apply latency ----

pub async fn apply(plan: &Plan) -> Vec<Row> {
    let mut server = match ready_server(plan, "apply").await {
        Ok(s) => s,
        Err(e) => return vec![Row::error("API server for apply", &e)],
    };
    let mut rows = Vec::new();
    // A server that died says so in the error row.
    let died = |server: &mut KedgeServer, e: anyhow::Error| match server.exited() {
        Some(why) => e.context(why),
        None => e,
    };
    match manifest_rows(plan, &server).await {
        Ok(r) => rows.extend(r),
        Err(e) => rows.push(Row::error(
            &format!("kubectl apply of {} objects", plan.apply_objects),
            &died(&mut server, e),
        )),
    }
    match patch_rows(plan, &server).await {
        Ok(r) => rows.extend(r),
        Err(e) => rows.push(Row::error("Patch / apply latency", &died(&mut server, e))),
    }
    if let Err(e) = server.stop() {
        eprintln!("stopping the apply server: {e:#}");
    }
    rows
}

/// How one manifest is put on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    ClientSide,
    ServerSide,
    /// `--validate=false`, for reference: kubectl without its own
    /// per-object OpenAPI work.
    ClientSideNoValidate,
    ServerSideNoValidate,
    Post,
}

impl Way {
    const ALL: [Way; 5] = [
        Way::ClientSide,
        Way::ServerSide,
        Way::Post,
        Way::ClientSideNoValidate,
        Way::ServerSideNoValidate,
    ];

    fn tag(self) -> &'static str {
        match self {
            Way::ClientSide => "csa",
            Way::ServerSide => "ssa",
            Way::ClientSideNoValidate => "csanv",
            Way::ServerSideNoValidate => "ssanv",
            Way::Post => "post",
        }
    }

    /// kubectl's arguments before the file, and the verb it prints per
    /// object; None for plain POSTs.
    fn kubectl(self) -> Option<(&'static [&'static str], &'static str)> {
        match self {
            Way::ClientSide => Some((&["apply"], "created")),
            Way::ServerSide => Some((&["apply", "--server-side"], "serverside-applied")),
            Way::ClientSideNoValidate => Some((&["apply", "--validate=false"], "created")),
            Way::ServerSideNoValidate => Some((
                &["apply", "--server-side", "--validate=false"],
                "serverside-applied",
            )),
            Way::Post => None,
        }
    }
}

/// Wall time, server CPU and kubectl CPU of every run of one way.
#[derive(Default, Clone)]
struct WayRuns {
    wall_s: Vec<f64>,
    server_cpu_s: Vec<f64>,
    client_cpu_s: Vec<f64>,
}

async fn create_namespaces(client: &kube::Client, names: &[String]) -> Result<()> {
    for ns in names {
        load::create_namespace(client, ns).await?;
    }
    Ok(())
}

/// Delete `names` and wait until they are gone (their objects with them),
/// so the next measurement finds the store as the first one did.
async fn delete_namespaces(client: &kube::Client, names: &[String]) -> Result<()> {
    for ns in names {
        let path = format!("/api/v1/namespaces/{ns}");
        let (status, body) = load::send(client, "DELETE", &path, None, Vec::new()).await?;
        anyhow::ensure!(
            matches!(status, 200 | 202),
            "DELETE {path}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for ns in names {
        let path = format!("/api/v1/namespaces/{ns}");
        loop {
            let (status, _) = load::send(client, "GET", &path, None, Vec::new()).await?;
            if status == 404 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "namespace {ns} still there 120 s after its DELETE"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn manifest_rows(plan: &Plan, server: &KedgeServer) -> Result<Vec<Row>> {
    let n = plan.apply_objects;
    let version = apply::kubectl_version(&plan.kubectl)
        .with_context(|| format!("no working kubectl at {}", plan.kubectl.display()))?;
    let kubeconfig = server.dir.join("kubeconfig.yaml");
    let cache = server.dir.join("kubectl-cache");
    let files = server.dir.join("manifests");
    std::fs::create_dir_all(&files).with_context(|| format!("creating {}", files.display()))?;
    let pid = server.pid()?;
    let client = server.client().await?;
    let ns_set = |tag: &str| -> Vec<String> {
        (0..apply::NAMESPACES)
            .map(|i| format!("apply-{tag}-{}", char::from(b'a' + i as u8)))
            .collect()
    };
    let kubectl = |args: Vec<String>| {
        let (kc, cache) = (kubeconfig.clone(), cache.clone());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            apply::kubectl(&plan.kubectl, &kc, &cache, &args).await
        }
    };

    // Warm-up, unmeasured: kubectl fills its discovery and OpenAPI cache
    // (as any kubectl that ran before would have), the client connects.
    let warm = ns_set("warm");
    create_namespaces(&client, &warm).await?;
    let warm_file = files.join("warm.yaml");
    std::fs::write(
        &warm_file,
        apply::multi_doc_yaml(&apply::manifest_objects(
            &warm,
            apply::NAMESPACES * apply::PER_APP,
        )),
    )?;
    let warm_path = warm_file.to_string_lossy().to_string();
    let w1 = kubectl(vec!["apply".into(), "-f".into(), warm_path.clone()]).await?;
    let w2 = kubectl(vec![
        "apply".into(),
        "--server-side".into(),
        "-f".into(),
        warm_path,
    ])
    .await?;
    eprintln!(
        "[apply] warm-up ({version}): apply -f {:.2} s, --server-side {:.2} s",
        w1.wall.as_secs_f64(),
        w2.wall.as_secs_f64()
    );

    let mut results = vec![WayRuns::default(); Way::ALL.len()];
    let mut manifest_bytes = 0;
    for r in 0..plan.apply_runs {
        // Rotate the order, so no way always runs first.
        for k in 0..Way::ALL.len() {
            let w = (r + k) % Way::ALL.len();
            let way = Way::ALL[w];
            let names = ns_set(&format!("{}{r}", way.tag()));
            create_namespaces(&client, &names).await?;
            let objects = apply::manifest_objects(&names, n);
            let file = files.join(format!("{}-{r}.yaml", way.tag()));
            let text = apply::multi_doc_yaml(&objects);
            manifest_bytes = text.len();
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
            apply::settle(server).await?;
            let cpu0 = apply::process_cpu(pid)?;
            let (wall, client_cpu) = match way.kubectl() {
                Some((args, verb)) => {
                    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                    args.extend(["-f".to_string(), file.to_string_lossy().to_string()]);
                    let what = args.join(" ");
                    let run = kubectl(args).await?;
                    let done = apply::count_verb(&run.stdout, verb);
                    anyhow::ensure!(done == n, "kubectl {what}: {done} of {n} objects {verb}");
                    (run.wall, run.cpu_s)
                }
                None => (apply::post_all(&client, &objects).await?, f64::NAN),
            };
            let server_cpu = apply::process_cpu(pid)? - cpu0;
            delete_namespaces(&client, &names).await?;
            let runs = &mut results[w];
            runs.wall_s.push(wall.as_secs_f64());
            runs.server_cpu_s.push(server_cpu);
            runs.client_cpu_s.push(client_cpu);
            eprintln!(
                "[apply] run {}/{}: {way:?} {:.2} s (kedge CPU {server_cpu:.2} s, kubectl CPU {client_cpu:.2} s)",
                r + 1,
                plan.apply_runs,
                wall.as_secs_f64()
            );
        }
    }

    let get = |way: Way| {
        let i = Way::ALL.iter().position(|w| *w == way).unwrap_or(0);
        results[i].clone()
    };
    let (csa, ssa, post) = (get(Way::ClientSide), get(Way::ServerSide), get(Way::Post));
    let (csa_nv, ssa_nv) = (
        get(Way::ClientSideNoValidate),
        get(Way::ServerSideNoValidate),
    );
    let runs = plan.apply_runs;
    let time_row = |metric: String, w: &WayRuns, how: String| {
        let m = median(&w.wall_s);
        let (kc, kd) = (median(&w.client_cpu_s), median(&w.server_cpu_s));
        let cpu = if kc.is_nan() {
            format!("kedge CPU {} s", fmt_num(kd))
        } else {
            format!("CPU: kubectl {} s, kedge {} s", fmt_num(kc), fmt_num(kd))
        };
        Row::new(
            &metric,
            format!(
                "{} s ({} ms/object; {cpu})",
                fmt_num(m),
                fmt_num(m * 1000.0 / n as f64)
            ),
            "report",
            Verdict::Report,
            format!("{how}; {}", runs_phrase(runs)),
            json!({
                "median_s": m,
                "runs_s": w.wall_s,
                "objects": n,
                "median_kubectl_cpu_s": kc,
                "median_server_cpu_s": kd,
                "runs_kubectl_cpu_s": w.client_cpu_s,
                "runs_server_cpu_s": w.server_cpu_s,
            }),
        )
    };
    let floor = median(&post.wall_s);
    let ratio_row = |metric: &str, w: &WayRuns, nv: &WayRuns| {
        let (x, y) = (median(&w.wall_s) / floor, median(&nv.wall_s) / floor);
        Row::new(
            metric,
            format!("{}x ({}x with --validate=false)", fmt_num(x), fmt_num(y)),
            "report",
            Verdict::Report,
            format!(
                "ratio of the wall-time medians; in brackets the same apply with --validate=false ({} s), for reference",
                fmt_num(median(&nv.wall_s))
            ),
            json!({
                "ratio": x,
                "ratio_validate_false": y,
                "validate_false_median_s": median(&nv.wall_s),
                "validate_false_runs_s": nv.wall_s,
                "validate_false_runs_kubectl_cpu_s": nv.client_cpu_s,
                "validate_false_runs_server_cpu_s": nv.server_cpu_s,
            }),
        )
    };
    let what = format!(
        "one {n}-doc YAML ({} KB: ConfigMaps, Secrets, Services, Deployments) into {} new namespaces",
        manifest_bytes / 1000,
        apply::NAMESPACES
    );
    let mut rows = vec![
        time_row(
            format!("kubectl apply -f, {n} objects"),
            &csa,
            format!("kubectl {version}, {what}, default validation; spawn -> exit"),
        ),
        time_row(
            format!("kubectl apply --server-side -f, {n} objects"),
            &ssa,
            "same with --server-side".to_string(),
        ),
        time_row(
            format!("Plain POSTs of the same {n} objects, 1 client"),
            &post,
            "the floor: one kube::Client POSTs each object as JSON, one at a time".to_string(),
        ),
        ratio_row("kubectl apply -f / plain POSTs", &csa, &csa_nv),
        ratio_row(
            "kubectl apply --server-side -f / plain POSTs",
            &ssa,
            &ssa_nv,
        ),
    ];
    if let Some(r) = rows.first_mut() {
        r.data["kubectl"] = json!(plan.kubectl.display().to_string());
        r.data["kubectl_version"] = json!(version);
        r.data["manifest_bytes"] = json!(manifest_bytes);
        r.data["warmup_s"] = json!([w1.wall.as_secs_f64(), w2.wall.as_secs_f64()]);
    }
    Ok(rows)
}

async fn patch_rows(plan: &Plan, server: &KedgeServer) -> Result<Vec<Row>> {
    const NS: &str = "apply-latency";
    const NAME: &str = "lat";
    let client = server.client().await?;
    load::create_namespace(&client, NS).await?;
    let body = apply::deployment(NS, NAME).to_string().into_bytes();
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments");
    let (status, resp) = load::send(&client, "POST", &path, Some("application/json"), body).await?;
    anyhow::ensure!(
        status == 201,
        "POST {path}: HTTP {status}: {}",
        String::from_utf8_lossy(&resp)
    );
    // Each kind counts its requests across runs, so its flips continue.
    let mut next = [0u64; Op::ALL.len()];
    for (i, op) in Op::ALL.iter().enumerate() {
        apply::op_loop(
            &client,
            NS,
            NAME,
            *op,
            &mut next[i],
            Duration::from_secs(10),
            Some(20),
        )
        .await?;
    }
    apply::settle(server).await?;
    let window = Duration::from_secs_f64(plan.patch_secs);
    let mut p50 = vec![Vec::new(); Op::ALL.len()];
    let mut p99 = vec![Vec::new(); Op::ALL.len()];
    let mut rate = vec![Vec::new(); Op::ALL.len()];
    let mut unchanged = [0u64; Op::ALL.len()];
    for r in 0..plan.apply_runs {
        for (i, op) in Op::ALL.iter().enumerate() {
            let run = apply::op_loop(&client, NS, NAME, *op, &mut next[i], window, None).await?;
            let s = Summary::of(run.latencies);
            p50[i].push(s.p50);
            p99[i].push(s.p99);
            rate[i].push(s.n as f64 / plan.patch_secs);
            unchanged[i] += run.unchanged;
            eprintln!(
                "[apply] run {}/{}: {} p50 {:.2} p99 {:.2} ms ({:.0}/s)",
                r + 1,
                plan.apply_runs,
                op.key(),
                s.p50,
                s.p99,
                s.n as f64 / plan.patch_secs
            );
        }
    }
    apply::check_patched(&client, NS, NAME).await?;
    let n = plan.apply_runs;
    let window = secs(plan.patch_secs);
    Ok(Op::ALL
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let (metric, phrase) = (op.metric(), op.phrase());
            let (a, b, r) = (median(&p50[i]), median(&p99[i]), median(&rate[i]));
            let noop = unchanged[i];
            Row::new(
                metric,
                format!("{} / {} ms ({}/s)", fmt_num(a), fmt_num(b), fmt_num(r)),
                "report",
                if noop == 0 { Verdict::Report } else { Verdict::Fail },
                format!(
                    "{phrase}, back to back for {window}; {}{}",
                    runs_phrase(n),
                    if noop > 0 {
                        format!("; {noop} patches changed nothing")
                    } else {
                        String::new()
                    }
                ),
                json!({ "p50_ms": a, "p99_ms": b, "per_s": r, "runs_p50_ms": p50[i], "runs_p99_ms": p99[i],
                        "runs_per_s": rate[i], "unchanged": noop }),
            )
        })
        .collect())
}
