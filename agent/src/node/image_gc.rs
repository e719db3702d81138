//! Image garbage collection (kubelet's image manager): when the file system
//! holding the agent's data dir (containerd's image store under it) is
//! fuller than the high threshold, unused images go, least recently used
//! first, until it is down to the low threshold.
//!
//! ```text
//!  every period: ListImages + ListContainers ──► ImageTracker (first seen, last used)
//!                statvfs(data dir) ──► usage% ≥ high? ──► to_remove(): unused,
//!                                       not pinned, older than min age, LRU first,
//!                                       until (100 − low)% is free ──► RemoveImage
//! ```
//!
//! An image is in use while any container (running or exited) was made
//! from it; pinned images (containerd pins the sandbox image) and the
//! sandbox image stay. Kubelet's defaults: high 85%, low 80%, minimum age
//! 2 minutes, every 5 minutes. Skiff has no registry on its nodes: a
//! removed image comes back only when its archive is imported again (the
//! built-in ones at the next agent start), so the thresholds are worth
//! setting with that in mind.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::cri::Cri;

/// kubelet's `imageGCHighThresholdPercent`.
pub const DEFAULT_HIGH_THRESHOLD_PERCENT: u8 = 85;
/// kubelet's `imageGCLowThresholdPercent`.
pub const DEFAULT_LOW_THRESHOLD_PERCENT: u8 = 80;
/// kubelet's `imageMinimumGCAge`.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(120);
/// How often kubelet's image GC runs.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(300);

/// When and how much to collect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageGcPolicy {
    /// Collect when the disk is at least this full (percent); 100 never.
    pub high_percent: u8,
    /// Collect down to this (percent).
    pub low_percent: u8,
    /// Images first seen more recently than this stay.
    pub min_age: Duration,
    /// Time between passes.
    pub period: Duration,
}

impl Default for ImageGcPolicy {
    fn default() -> Self {
        ImageGcPolicy {
            high_percent: DEFAULT_HIGH_THRESHOLD_PERCENT,
            low_percent: DEFAULT_LOW_THRESHOLD_PERCENT,
            min_age: DEFAULT_MIN_AGE,
            period: DEFAULT_PERIOD,
        }
    }
}

impl ImageGcPolicy {
    /// Checks the thresholds as kubelet does.
    pub fn validate(&self) -> Result<(), String> {
        if self.high_percent > 100 {
            return Err(format!(
                "--image-gc-high-threshold must be 0–100, not {}",
                self.high_percent
            ));
        }
        if self.low_percent > self.high_percent {
            return Err(format!(
                "--image-gc-low-threshold ({}) must not exceed --image-gc-high-threshold ({})",
                self.low_percent, self.high_percent
            ));
        }
        Ok(())
    }
}

/// One image as the runtime lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image id (`sha256:…`).
    pub id: String,
    /// Bytes.
    pub size: u64,
    /// Pinned by the runtime or the sandbox image: never removed.
    pub pinned: bool,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    first: Instant,
    last_used: Option<Instant>,
}

/// What the collector remembers between passes: when each image was first
/// seen and last in use (kubelet's `imageRecords`; lost on restart).
#[derive(Debug, Default)]
pub struct ImageTracker {
    seen: HashMap<String, Seen>,
}

impl ImageTracker {
    /// Records the images present and the ones in use at `now`; forgets
    /// images that are gone.
    pub fn update(&mut self, images: &[ImageInfo], in_use: &HashSet<String>, now: Instant) {
        let present: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.seen.retain(|id, _| present.contains(id.as_str()));
        for image in images {
            let s = self.seen.entry(image.id.clone()).or_insert(Seen {
                first: now,
                last_used: None,
            });
            if in_use.contains(&image.id) {
                s.last_used = Some(now);
            }
        }
    }

    /// The images to remove, in order, to bring a disk of `capacity` bytes
    /// with `available` free under `policy`'s low threshold; empty while
    /// it is under the high one.
    pub fn to_remove(
        &self,
        images: &[ImageInfo],
        in_use: &HashSet<String>,
        policy: &ImageGcPolicy,
        capacity: u64,
        available: u64,
        now: Instant,
    ) -> Vec<String> {
        if capacity == 0 {
            return Vec::new();
        }
        let used = capacity.saturating_sub(available);
        let usage_percent = used.saturating_mul(100) / capacity;
        if usage_percent < u64::from(policy.high_percent) {
            return Vec::new();
        }
        let target_free = capacity.saturating_mul(100 - u64::from(policy.low_percent)) / 100;
        let to_free = target_free.saturating_sub(available);
        let mut candidates: Vec<(&ImageInfo, Seen)> = images
            .iter()
            .filter(|i| !i.pinned && !in_use.contains(&i.id))
            .filter_map(|i| self.seen.get(&i.id).map(|s| (i, *s)))
            .filter(|(_, s)| now.saturating_duration_since(s.first) >= policy.min_age)
            .collect();
        // Least recently used first; never-used ones by when they appeared.
        candidates.sort_by_key(|(i, s)| (s.last_used.unwrap_or(s.first), s.first, i.id.clone()));
        let mut freed = 0u64;
        let mut out = Vec::new();
        for (image, _) in candidates {
            if freed >= to_free {
                break;
            }
            freed += image.size;
            out.push(image.id.clone());
        }
        out
    }
}

/// What the loop needs.
#[derive(Clone, Debug)]
pub struct ImageGcParams {
    /// The agent's data dir (containerd's image store is on its file system).
    pub data_dir: PathBuf,
    /// This node (labels its containers).
    pub node_name: String,
    /// Thresholds and timing.
    pub policy: ImageGcPolicy,
}

/// One pass; returns the ids removed.
pub async fn collect(
    cri: &dyn Cri,
    params: &ImageGcParams,
    tracker: &mut ImageTracker,
    now: Instant,
) -> Result<Vec<String>, crate::cri::CriError> {
    let sandbox_image = cri
        .image_status(crate::images::PAUSE_IMAGE)
        .await?
        .map(|i| i.id);
    let images: Vec<ImageInfo> = cri
        .list_images()
        .await?
        .into_iter()
        .map(|i| ImageInfo {
            pinned: i.pinned || sandbox_image.as_deref() == Some(i.id.as_str()),
            size: i.size,
            id: i.id,
        })
        .collect();
    // Containers of every pod, not only this node's labels: an image a
    // container outside Skiff uses stays too.
    let in_use: HashSet<String> = cri
        .list_containers(None)
        .await?
        .into_iter()
        .map(|c| c.image_ref)
        .collect();
    tracker.update(&images, &in_use, now);
    let (capacity, available) = nix::sys::statvfs::statvfs(&params.data_dir)
        .map(|s| {
            let frag = s.fragment_size();
            (
                s.blocks().saturating_mul(frag),
                s.blocks_available().saturating_mul(frag),
            )
        })
        .unwrap_or((0, 0));
    let remove = tracker.to_remove(&images, &in_use, &params.policy, capacity, available, now);
    let mut removed = Vec::new();
    for id in remove {
        match cri.remove_image(&id).await {
            Ok(()) => {
                info!(image = %id, "image garbage-collected");
                removed.push(id);
            }
            Err(e) => warn!(image = %id, "removing image: {e}"),
        }
    }
    crate::metrics::global().images_collected(removed.len());
    Ok(removed)
}

/// Runs until dropped: a pass every `policy.period`.
pub async fn image_gc_loop(cri: Arc<dyn Cri>, params: ImageGcParams) {
    if params.policy.high_percent >= 100 {
        return;
    }
    let mut tracker = ImageTracker::default();
    let mut tick = tokio::time::interval(params.policy.period);
    loop {
        tick.tick().await;
        match collect(cri.as_ref(), &params, &mut tracker, Instant::now()).await {
            Ok(removed) if !removed.is_empty() => {
                debug!(count = removed.len(), "image garbage collection pass")
            }
            Ok(_) => {}
            Err(e) => warn!("image garbage collection: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, size: u64) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            size,
            pinned: false,
        }
    }

    #[test]
    fn removes_unused_images_lru_first_down_to_the_low_threshold() {
        let policy = ImageGcPolicy {
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::from_secs(120),
            period: DEFAULT_PERIOD,
        };
        let t0 = Instant::now();
        let images = vec![
            image("old", 10),
            image("recent", 10),
            image("used", 10),
            ImageInfo {
                id: "pause".into(),
                size: 10,
                pinned: true,
            },
            image("young", 10),
        ];
        let mut tracker = ImageTracker::default();
        let first: Vec<ImageInfo> = images[..4].to_vec();
        tracker.update(&first, &HashSet::from(["old".to_string()]), t0);
        let in_use = HashSet::from(["recent".to_string()]);
        tracker.update(&first, &in_use, t0 + Duration::from_secs(60));
        let in_use = HashSet::from(["used".to_string()]);
        let now = t0 + Duration::from_secs(200);
        tracker.update(&images, &in_use, now);
        // 90% used of 100 bytes: free 10 to reach 80% → the least recently
        // used unused image (old: last used at t0) is enough.
        assert_eq!(
            tracker.to_remove(&images, &in_use, &policy, 100, 10, now),
            ["old"]
        );
        // 100% used: 20 to free → old, then recent; `young` is too young,
        // `used` in use, `pause` pinned.
        assert_eq!(
            tracker.to_remove(&images, &in_use, &policy, 100, 0, now),
            ["old", "recent"]
        );
        // Under the high threshold: nothing.
        assert!(tracker
            .to_remove(&images, &in_use, &policy, 100, 20, now)
            .is_empty());
    }

    #[test]
    fn thresholds_are_checked() {
        let mut p = ImageGcPolicy::default();
        assert_eq!(p.validate(), Ok(()));
        p.low_percent = 90;
        assert!(p.validate().unwrap_err().contains("must not exceed"));
        p.high_percent = 101;
        assert!(p.validate().unwrap_err().contains("0–100"));
    }

    #[tokio::test]
    async fn a_pass_over_the_fake_runtime_removes_only_unused_images() {
        use crate::cri::ImageService;
        let rt = crate::cri::fake::FakeRuntime::with_images(&[
            crate::images::PAUSE_IMAGE,
            "skiff.local/unused:1",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let params = ImageGcParams {
            data_dir: dir.path().to_path_buf(),
            node_name: "n1".into(),
            policy: ImageGcPolicy {
                high_percent: 0,
                low_percent: 0,
                min_age: Duration::ZERO,
                period: DEFAULT_PERIOD,
            },
        };
        let mut tracker = ImageTracker::default();
        let removed = collect(&rt, &params, &mut tracker, Instant::now())
            .await
            .unwrap();
        assert_eq!(removed, ["sha256:skiff.local/unused:1"]);
        let left = rt.list_images().await.unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
