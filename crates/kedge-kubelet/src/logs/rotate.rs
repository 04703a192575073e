//! Size-based rotation of container log files, as upstream's
//! `pkg/kubelet/logs/container_log_manager.go`.
//!
//! For each running container whose current file `N.log` is at least
//! `max_size`: rotated files beyond `max_files - 2` are removed (oldest first),
//! the current file is renamed `N.log.<YYYYmmdd-HHMMSS>`, and the runtime is
//! asked to reopen its log (CRI `ReopenContainerLog`), which creates a new
//! `N.log`. Should the reopen fail, the rename is undone. At most `max_files`
//! files exist per container afterwards (the current one included).
//!
//! Unlike upstream, rotated files are NOT gzip-compressed: compressing rewrites
//! every rotated byte a second time, which on an SD card costs more (wear, I/O
//! stalls) than the disk it saves, and log collectors read plain files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cri::api::{ContainerFilter, ContainerState, ContainerStateValue};
use crate::cri::RuntimeService;

use super::LogError;

/// Upstream's `containerLogMaxSize` default: 10 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Upstream's `containerLogMaxFiles` default.
pub const DEFAULT_MAX_FILES: usize = 5;

/// When to rotate and how much to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    pub max_size: u64,
    /// Files per container, the current one included; at least 2.
    pub max_files: usize,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// Rotates the logs of a runtime's running containers.
pub struct LogRotator<R> {
    runtime: Arc<R>,
    policy: RotationPolicy,
}

impl<R: RuntimeService + 'static> LogRotator<R> {
    pub fn new(runtime: Arc<R>, policy: RotationPolicy) -> Self {
        let policy = RotationPolicy {
            max_files: policy.max_files.max(2),
            ..policy
        };
        LogRotator { runtime, policy }
    }

    /// Every `interval` (upstream: 10 s), [`LogRotator::rotate_running`], until
    /// the task is dropped.
    pub async fn run(self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.rotate_running().await {
                tracing::warn!(error = %e, "container log rotation failed");
            }
        }
    }

    /// Checks each running container's log once; returns how many were rotated.
    /// A failure on one container is logged and does not stop the others.
    pub async fn rotate_running(&self) -> Result<usize, LogError> {
        let running = self
            .runtime
            .list_containers(Some(ContainerFilter {
                state: Some(ContainerStateValue {
                    state: ContainerState::ContainerRunning as i32,
                }),
                ..ContainerFilter::default()
            }))
            .await
            .map_err(LogError::List)?;
        let mut rotated = 0;
        for container in running {
            let status = match self.runtime.container_status(&container.id, false).await {
                Ok(s) => s.status,
                Err(e) => {
                    tracing::debug!(container = %container.id, error = %e, "no status for log rotation");
                    continue;
                }
            };
            let Some(log_path) = status.map(|s| s.log_path).filter(|p| !p.is_empty()) else {
                continue;
            };
            match self.rotate(&container.id, Path::new(&log_path)).await {
                Ok(true) => rotated += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(container = %container.id, error = %e, "rotating the container's log failed")
                }
            }
        }
        Ok(rotated)
    }

    /// Rotates one container's current log file `log_path` if it is at least
    /// `max_size`; true when it did.
    pub async fn rotate(&self, container_id: &str, log_path: &Path) -> Result<bool, LogError> {
        let rotate_err = |source| LogError::Rotate {
            path: log_path.to_owned(),
            source,
        };
        let size = match tokio::fs::metadata(log_path).await {
            Ok(m) => m.len(),
            // Not created yet, or just rotated and not reopened: nothing to do.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(rotate_err(e)),
        };
        if size < self.policy.max_size {
            return Ok(false);
        }
        let target = rotated_name(
            log_path,
            &jiff::Zoned::now().strftime("%Y%m%d-%H%M%S").to_string(),
        );
        if tokio::fs::try_exists(&target).await.map_err(rotate_err)? {
            // Rotated within this very second already; next round.
            return Ok(false);
        }
        remove_excess(log_path, self.policy.max_files.saturating_sub(2))
            .await
            .map_err(rotate_err)?;
        tokio::fs::rename(log_path, &target)
            .await
            .map_err(rotate_err)?;
        if let Err(source) = self.runtime.reopen_container_log(container_id).await {
            // Put it back, so the runtime keeps writing to the file its name says.
            if let Err(e) = tokio::fs::rename(&target, log_path).await {
                tracing::error!(path = %target.display(), error = %e, "cannot undo a log rotation");
            }
            return Err(LogError::Reopen {
                container_id: container_id.to_owned(),
                source,
            });
        }
        tracing::debug!(container = %container_id, from = %log_path.display(), to = %target.display(), size, "rotated container log");
        Ok(true)
    }
}

/// `N.log` → `N.log.<stamp>`.
pub(crate) fn rotated_name(log_path: &Path, stamp: &str) -> PathBuf {
    let mut name = log_path.as_os_str().to_owned();
    name.push(".");
    name.push(stamp);
    PathBuf::from(name)
}

/// The rotated files of `log_path` (`N.log.*`, leftovers `*.tmp` excluded),
/// oldest first.
pub(crate) async fn rotated_files(log_path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(base)) = (log_path.parent(), log_path.file_name()) else {
        return Ok(Vec::new());
    };
    let mut prefix = base.to_owned();
    prefix.push(".");
    let prefix = prefix.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && !name.ends_with(".tmp") {
            found.push(entry.path());
        }
    }
    // The stamps sort in time order.
    found.sort();
    Ok(found)
}

/// Removes the oldest rotated files until at most `keep` remain.
async fn remove_excess(log_path: &Path, keep: usize) -> std::io::Result<()> {
    let files = rotated_files(log_path).await?;
    let excess = files.len().saturating_sub(keep);
    for old in &files[..excess] {
        match tokio::fs::remove_file(old).await {
            Ok(()) => tracing::debug!(path = %old.display(), "removed old rotated log"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
