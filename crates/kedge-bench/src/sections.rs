//! One function per table section; each turns its measurements into rows,
//! and a failure into an error row, so one broken part does not hide the
//! others.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

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
