use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::rotate::{rotated_files, rotated_name};
use super::*;
use crate::cri::api::{ContainerConfig, ContainerMetadata, PodSandboxConfig, PodSandboxMetadata};
use crate::cri::{image_spec, FakeRuntime, RuntimeService};

const LOG: &str = "\
2024-05-01T10:00:00.000000001Z stdout F first
2024-05-01T10:00:01.500000000Z stderr F second (stderr)
2024-05-01T10:00:02.000000000Z stdout P par
2024-05-01T10:00:02.100000000Z stdout P ti
2024-05-01T10:00:02.200000000Z stdout F al
2024-05-01T10:00:03+00:00 stdout F fourth
";

fn write_log(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("0.log");
    std::fs::write(&path, text).unwrap();
    path
}

async fn read(path: &Path, opts: LogOptions) -> String {
    let (tx, rx) = mpsc::channel(16);
    let reader = {
        let path = path.to_owned();
        tokio::spawn(async move { read_logs(&path, &opts, &tx, || async { false }).await })
    };
    let out = collect(rx).await;
    reader.await.unwrap().unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn records_parse_as_upstream() {
    let r = parse_cri_record(b"2024-05-01T10:00:00.1Z stdout F hello world\n").unwrap();
    assert_eq!(r.timestamp, "2024-05-01T10:00:00.1Z");
    assert_eq!(r.stream, LogStream::Stdout);
    assert!(!r.partial);
    assert_eq!(r.content, b"hello world\n");
    let r = parse_cri_record(b"2024-05-01T10:00:00Z stderr P:x part\n").unwrap();
    assert_eq!(
        (r.stream, r.partial, r.content),
        (LogStream::Stderr, true, &b"part"[..])
    );
    // An empty full line is still a line.
    let r = parse_cri_record(b"2024-05-01T10:00:00Z stdout F \n").unwrap();
    assert_eq!(r.content, b"\n");
    assert_eq!(parse_cri_record(b"garbage"), Err(RecordError::NoTimestamp));
    assert_eq!(
        parse_cri_record(b"2024-05-01T10:00:00Z stdout\n"),
        Err(RecordError::NoStream)
    );
    assert_eq!(
        parse_cri_record(b"2024-05-01T10:00:00Z stdin F x\n"),
        Err(RecordError::BadStream("stdin".into()))
    );
    assert_eq!(
        parse_cri_record(b"2024-05-01T10:00:00Z stdout F"),
        Err(RecordError::NoTag)
    );
    assert!(matches!(
        parse_cri_record(b"yesterday stdout F x\n"),
        Err(RecordError::BadTimestamp(_))
    ));
}

#[test]
fn timestamps_print_like_go() {
    assert_eq!(
        go_rfc3339_nano("2024-05-01T10:00:01.500000000Z"),
        "2024-05-01T10:00:01.5Z"
    );
    assert_eq!(
        go_rfc3339_nano("2024-05-01T10:00:01.000000000Z"),
        "2024-05-01T10:00:01Z"
    );
    assert_eq!(
        go_rfc3339_nano("2024-05-01T10:00:03+00:00"),
        "2024-05-01T10:00:03Z"
    );
    assert_eq!(
        go_rfc3339_nano("2024-05-01T12:00:03.120+02:00"),
        "2024-05-01T12:00:03.12+02:00"
    );
    assert_eq!(
        go_rfc3339_nano("2024-05-01T10:00:00.000000001Z"),
        "2024-05-01T10:00:00.000000001Z"
    );
}

#[test]
fn tail_counts_newlines_from_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    std::fs::write(&path, "a\nb\nc\n").unwrap();
    let mut f = std::fs::File::open(&path).unwrap();
    assert_eq!(tail_start(&mut f, 0).unwrap(), 6);
    assert_eq!(tail_start(&mut f, 1).unwrap(), 4);
    assert_eq!(tail_start(&mut f, 2).unwrap(), 2);
    assert_eq!(tail_start(&mut f, 3).unwrap(), 0);
    assert_eq!(tail_start(&mut f, 10).unwrap(), 0);
    // Many blocks.
    let long: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&path, &long).unwrap();
    let mut f = std::fs::File::open(&path).unwrap();
    let start = tail_start(&mut f, 3).unwrap() as usize;
    assert_eq!(&long[start..], "line 4997\nline 4998\nline 4999\n");
}

#[tokio::test]
async fn whole_file_joins_partial_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_log(tmp.path(), LOG);
    assert_eq!(
        read(&path, LogOptions::default()).await,
        "first\nsecond (stderr)\npartial\nfourth\n"
    );
}

#[tokio::test]
async fn timestamps_prefix_each_output_line_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_log(tmp.path(), LOG);
    let opts = LogOptions {
        timestamps: true,
        ..LogOptions::default()
    };
    assert_eq!(
        read(&path, opts).await,
        "2024-05-01T10:00:00.000000001Z first\n\
         2024-05-01T10:00:01.5Z second (stderr)\n\
         2024-05-01T10:00:02Z partial\n\
         2024-05-01T10:00:03Z fourth\n"
    );
}

#[tokio::test]
async fn tail_lines_count_records_and_since_skips_older_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_log(tmp.path(), LOG);
    let tail = |n| LogOptions {
        tail_lines: Some(n),
        ..LogOptions::default()
    };
    assert_eq!(read(&path, tail(1)).await, "fourth\n");
    // Records, not joined lines: the last two records are the partial's end and "fourth".
    assert_eq!(read(&path, tail(2)).await, "al\nfourth\n");
    assert_eq!(read(&path, tail(0)).await, "");
    assert_eq!(
        read(&path, tail(100)).await,
        "first\nsecond (stderr)\npartial\nfourth\n"
    );
    let since = LogOptions {
        since: Some("2024-05-01T10:00:01.5Z".parse().unwrap()),
        ..LogOptions::default()
    };
    assert_eq!(
        read(&path, since).await,
        "second (stderr)\npartial\nfourth\n"
    );
}

#[tokio::test]
async fn limit_bytes_cuts_the_output_including_prefixes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_log(tmp.path(), LOG);
    let limit = |n, timestamps| LogOptions {
        limit_bytes: Some(n),
        timestamps,
        ..LogOptions::default()
    };
    assert_eq!(read(&path, limit(3, false)).await, "fir");
    assert_eq!(read(&path, limit(6, false)).await, "first\n");
    assert_eq!(read(&path, limit(9, false)).await, "first\nsec");
    assert_eq!(read(&path, limit(5, true)).await, "2024-");
}

#[tokio::test]
async fn bad_lines_are_skipped_and_a_last_line_without_newline_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_log(
        tmp.path(),
        "not a record\n2024-05-01T10:00:00Z stdout F ok\n2024-05-01T10:00:01Z stdout F tail",
    );
    assert_eq!(read(&path, LogOptions::default()).await, "ok\ntail");
}

#[tokio::test]
async fn missing_file_is_an_open_error() {
    let (tx, _rx) = mpsc::channel(1);
    let err = read_logs(
        Path::new("/nonexistent/kedge/0.log"),
        &LogOptions::default(),
        &tx,
        || async { false },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LogError::Open { .. }), "{err}");
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

async fn recv_until(rx: &mut mpsc::Receiver<Bytes>, got: &mut String, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(chunk)) => got.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(None) => panic!("stream ended before {want:?}; got {got:?}"),
            Err(_) => panic!("timed out waiting for {want:?}; got {got:?}"),
        }
    }
}

#[tokio::test]
async fn follow_reads_new_records_across_rotation_until_the_container_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_log(tmp.path(), "2024-05-01T10:00:00Z stdout F one\n");
    let running = Arc::new(AtomicBool::new(true));
    let (tx, mut rx) = mpsc::channel(16);
    let reader = {
        let (path, running) = (path.clone(), running.clone());
        let opts = LogOptions {
            follow: true,
            ..LogOptions::default()
        };
        tokio::spawn(async move {
            read_logs(&path, &opts, &tx, move || {
                let running = running.load(Ordering::SeqCst);
                async move { running }
            })
            .await
        })
    };
    let mut got = String::new();
    recv_until(&mut rx, &mut got, "one\n").await;
    // A record written in two pieces is only sent once complete.
    append(&path, "2024-05-01T10:00:01Z stdout F tw");
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&path, "o\n");
    recv_until(&mut rx, &mut got, "two\n").await;
    assert_eq!(got, "one\ntwo\n");

    // Rotation: the runtime writes a last record to the renamed file, then to a new one.
    let rotated = tmp.path().join("0.log.20240501-100002");
    std::fs::rename(&path, &rotated).unwrap();
    append(&rotated, "2024-05-01T10:00:02Z stdout F three\n");
    append(&path, "2024-05-01T10:00:03Z stdout F four\n");
    recv_until(&mut rx, &mut got, "four\n").await;
    assert_eq!(got, "one\ntwo\nthree\nfour\n");

    // The container stops; what it wrote last still arrives, then the stream ends.
    append(&path, "2024-05-01T10:00:04Z stdout F five\n");
    running.store(false, Ordering::SeqCst);
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the follower stops after the container does")
    {
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(got, "one\ntwo\nthree\nfour\nfive\n");
    reader.await.unwrap().unwrap();
}

#[tokio::test]
async fn follow_stops_when_the_client_goes_away() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_log(tmp.path(), "2024-05-01T10:00:00Z stdout F one\n");
    let (tx, mut rx) = mpsc::channel(16);
    let reader = {
        let path = path.clone();
        let opts = LogOptions {
            follow: true,
            ..LogOptions::default()
        };
        tokio::spawn(async move { read_logs(&path, &opts, &tx, || async { true }).await })
    };
    assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"one\n"));
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the reader notices the closed receiver")
        .unwrap()
        .unwrap();
}

async fn fake_container(runtime: &FakeRuntime, log_dir: &Path) -> String {
    runtime.add_image("busybox");
    let sandbox = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "p".into(),
            namespace: "ns".into(),
            uid: "u1".into(),
            attempt: 0,
        }),
        log_directory: log_dir.display().to_string(),
        ..PodSandboxConfig::default()
    };
    let sid = runtime.run_pod_sandbox(sandbox.clone(), "").await.unwrap();
    let id = runtime
        .create_container(
            &sid,
            ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(image_spec("busybox")),
                log_path: "c/0.log".into(),
                ..ContainerConfig::default()
            },
            sandbox,
        )
        .await
        .unwrap();
    runtime.start_container(&id).await.unwrap();
    id
}

#[tokio::test]
async fn rotation_renames_reopens_and_keeps_max_files() {
    let tmp = tempfile::tempdir().unwrap();
    let runtime = Arc::new(FakeRuntime::new());
    let id = fake_container(&runtime, tmp.path()).await;
    let status = runtime
        .container_status(&id, false)
        .await
        .unwrap()
        .status
        .unwrap();
    let log = PathBuf::from(&status.log_path);
    assert_eq!(log, tmp.path().join("c/0.log"));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let rotator = LogRotator::new(
        runtime.clone(),
        RotationPolicy {
            max_size: 100,
            max_files: 3,
        },
    );

    // Small: left alone.
    std::fs::write(&log, "x".repeat(99)).unwrap();
    assert_eq!(rotator.rotate_running().await.unwrap(), 0);
    assert!(!runtime.calls().contains(&"ReopenContainerLog"));

    // Three older rotated files exist; at most max_files - 2 = 1 survives before the rename.
    for stamp in ["20240101-000001", "20240101-000002", "20240101-000003"] {
        std::fs::write(rotated_name(&log, stamp), stamp).unwrap();
    }
    std::fs::write(rotated_name(&log, "20240101-000004.tmp"), "tmp").unwrap();
    std::fs::write(&log, "y".repeat(100)).unwrap();
    assert_eq!(rotator.rotate_running().await.unwrap(), 1);
    assert!(runtime.calls().contains(&"ReopenContainerLog"));
    let rotated = rotated_files(&log).await.unwrap();
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    assert_eq!(rotated[0], rotated_name(&log, "20240101-000003"));
    assert_eq!(
        std::fs::read_to_string(&rotated[1]).unwrap(),
        "y".repeat(100)
    );
    // The fake runtime does not recreate the file; the real one does.
    assert!(!log.exists());
    assert!(!rotator.rotate(&id, &log).await.unwrap());

    // A failed reopen undoes the rename.
    std::fs::write(&log, "z".repeat(200)).unwrap();
    runtime.inject_error("ReopenContainerLog", tonic::Status::unavailable("down"));
    // The stamp of the previous rotation may be this second's: wait for the next one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = rotator.rotate(&id, &log).await.unwrap_err();
    assert!(matches!(err, LogError::Reopen { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "z".repeat(200));
}
