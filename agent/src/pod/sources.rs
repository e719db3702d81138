//! The API objects a pod's containers and volumes read (ConfigMaps and
//! Secrets of its namespace), fetched with `Api::get` through a small
//! per-pod cache. Entries are refreshed after [`RESYNC_PERIOD`], which is
//! how an updated ConfigMap reaches a running pod's volume (kubelet's
//! configMap manager re-reads on its own TTL too). A refresh that fails
//! keeps the cached copy and backs off (up to [`MAX_RETRY_PERIOD`]), so an
//! unreachable API server does not hold every sync for a request timeout. Secrets stay in memory
//! only for as long as the pod's worker lives. A claim is read until it is
//! bound; the host path of its volume is then kept (a bound claim's
//! volume does not change). Service-account tokens come from the pod's
//! [`TokenManager`], which asks the API server only when one is due for
//! refresh.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};
use kube::Api;

use super::env::{EnvSources, Refs};
use super::token::{jitter, ApiTokenSource, TokenManager};

/// How long a fetched object is trusted before it is read again.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(10);

/// The longest wait between reads of an object whose reads keep failing.
/// After a failure the cached copy is served and the next read waits
/// [`RESYNC_PERIOD`], doubling with each further failure up to this: with
/// the API server unreachable or silent, each read can hold a sync for up
/// to [`super::worker::API_REQUEST_TIMEOUT`], and a pod restarting during
/// an outage must not wait for one every sync.
pub const MAX_RETRY_PERIOD: Duration = Duration::from_secs(160);

/// A cached read: the object, or `None` when the API said 404.
struct Entry<T> {
    /// When it was last read, or last failed to be read.
    checked: Instant,
    object: Option<T>,
    /// Reads failed in a row since the last success.
    failures: u32,
}

impl<T> Entry<T> {
    /// How long after `checked` the object is read again.
    fn wait(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(8);
        (RESYNC_PERIOD * 2u32.pow(doublings)).min(MAX_RETRY_PERIOD)
    }
}

/// Per-pod cache of ConfigMaps and Secrets.
#[derive(Default)]
pub struct SourceCache {
    config_maps: HashMap<String, Entry<ConfigMap>>,
    secrets: HashMap<String, Entry<Secret>>,
    /// Claims whose volume's host path is known.
    claim_paths: HashMap<String, String>,
    /// Service-account tokens.
    tokens: TokenManager,
}

/// The host path of claim `name`'s volume, or kubelet's reason why not.
async fn claim_path(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Result<String, String>, kube::Error> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let Some(claim) = claims.get_opt(name).await? else {
        return Ok(Err(format!("persistentvolumeclaim \"{name}\" not found")));
    };
    let Some(volume) = claim
        .spec
        .and_then(|s| s.volume_name)
        .filter(|v| !v.is_empty())
    else {
        return Ok(Err(format!(
            "PersistentVolumeClaim is not bound: \"{name}\""
        )));
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let Some(pv) = pvs.get_opt(&volume).await? else {
        return Ok(Err(format!("persistentvolume \"{volume}\" not found")));
    };
    let spec = pv.spec.unwrap_or_default();
    match (spec.host_path, spec.local) {
        (Some(h), _) => Ok(Ok(h.path)),
        (None, Some(l)) => Ok(Ok(l.path)),
        _ => Ok(Err(format!(
            "persistentvolume \"{volume}\": only hostPath and local volumes are supported by Skiff"
        ))),
    }
}

async fn refresh<T>(
    api: &Api<T>,
    cache: &mut HashMap<String, Entry<T>>,
    names: &BTreeSet<String>,
    now: Instant,
) -> Result<(), kube::Error>
where
    T: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    cache.retain(|k, _| names.contains(k));
    for name in names {
        if cache
            .get(name)
            .is_some_and(|e| now.saturating_duration_since(e.checked) < e.wait())
        {
            continue;
        }
        let object = match api.get(name).await {
            Ok(o) => Some(o),
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => {
                // Keep serving a stale copy rather than failing the pod,
                // and back off before reading it again.
                if let Some(entry) = cache.get_mut(name) {
                    entry.checked = now;
                    entry.failures = entry.failures.saturating_add(1);
                    tracing::debug!(%name, retry_in = ?entry.wait(), "refresh failed, keeping cached copy: {e}");
                    continue;
                }
                return Err(e);
            }
        };
        cache.insert(
            name.clone(),
            Entry {
                checked: now,
                object,
                failures: 0,
            },
        );
    }
    Ok(())
}

impl SourceCache {
    /// Makes sure every referenced object is fresh, and fills the
    /// ConfigMaps and Secrets that exist into `out`.
    pub async fn load(
        &mut self,
        client: &kube::Client,
        namespace: &str,
        refs: &Refs,
        out: &mut EnvSources,
    ) -> Result<(), kube::Error> {
        let now = Instant::now();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        refresh(&cms, &mut self.config_maps, &refs.config_maps, now).await?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        refresh(&secrets, &mut self.secrets, &refs.secrets, now).await?;
        self.claim_paths.retain(|k, _| refs.claims.contains(k));
        out.claims.clear();
        for name in &refs.claims {
            if let Some(p) = self.claim_paths.get(name) {
                out.claims.insert(name.clone(), Ok(p.clone()));
                continue;
            }
            let path = claim_path(client, namespace, name).await?;
            if let Ok(p) = &path {
                self.claim_paths.insert(name.clone(), p.clone());
            }
            out.claims.insert(name.clone(), path);
        }
        let keys: Vec<_> = refs.tokens.iter().cloned().collect();
        self.tokens.retain(&keys);
        out.tokens.clear();
        let now = chrono::Utc::now().timestamp();
        for key in keys {
            let token = self
                .tokens
                .get(&ApiTokenSource(client), namespace, &key, now, jitter())
                .await;
            out.tokens.insert(key, token);
        }
        out.config_maps = self
            .config_maps
            .iter()
            .filter_map(|(k, e)| e.object.clone().map(|o| (k.clone(), o)))
            .collect();
        out.secrets = self
            .secrets
            .iter()
            .filter_map(|(k, e)| e.object.clone().map(|o| (k.clone(), o)))
            .collect();
        Ok(())
    }
}

/// The node's CPU (millicores) and memory (bytes), for `resourceFieldRef`
/// on limits a container does not set (kubelet uses node allocatable).
pub fn node_allocatable() -> (i64, i64) {
    let cpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<i64>().ok())
                })
        })
        .unwrap_or(0);
    (
        i64::try_from(cpu).unwrap_or(1).saturating_mul(1000),
        mem_kib.saturating_mul(1024),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A client whose server answers every GET with a ConfigMap while `up`,
    /// and fails at once otherwise; `calls` counts the requests.
    fn client(up: Arc<AtomicBool>, calls: Arc<AtomicUsize>) -> kube::Client {
        let service = tower::service_fn(move |_: http::Request<kube::client::Body>| {
            let (up, calls) = (up.clone(), calls.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if !up.load(Ordering::SeqCst) {
                    return Err::<http::Response<http_body_util::Full<bytes::Bytes>>, _>(
                        tower::BoxError::from("connection refused"),
                    );
                }
                let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"k":"v"}}"#;
                Ok(http::Response::new(http_body_util::Full::new(body.into())))
            }
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test]
    async fn failed_refreshes_keep_the_cached_copy_and_back_off() {
        let (up, calls) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicUsize::new(0)),
        );
        let api: Api<ConfigMap> = Api::namespaced(client(up.clone(), calls.clone()), "default");
        let names = BTreeSet::from(["cfg".to_string()]);
        let mut cache = HashMap::new();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // (seconds after t0, API up, reads made so far afterwards)
        let steps = [
            (0, true, 1),   // first read
            (5, true, 1),   // fresh
            (11, false, 2), // stale: read, fails, copy kept; next in 10 s
            (15, false, 2),
            (22, false, 3), // fails again: next in 20 s
            (35, false, 3),
            (43, true, 4), // back: read succeeds, failures reset
            (50, true, 4),
            (54, true, 5), // plain resync period again
        ];
        for (secs, is_up, want_calls) in steps {
            up.store(is_up, Ordering::SeqCst);
            refresh(&api, &mut cache, &names, at(secs))
                .await
                .unwrap_or_else(|e| panic!("at {secs} s: {e}"));
            assert_eq!(
                calls.load(Ordering::SeqCst),
                want_calls,
                "reads after {secs} s"
            );
            let data = cache["cfg"].object.as_ref().and_then(|c| c.data.clone());
            assert_eq!(data.unwrap()["k"], "v", "the copy is served at {secs} s");
        }
    }

    #[tokio::test]
    async fn a_first_read_that_fails_fails_the_load() {
        let api: Api<ConfigMap> = Api::namespaced(
            client(Arc::new(AtomicBool::new(false)), Default::default()),
            "default",
        );
        let mut cache = HashMap::new();
        let names = BTreeSet::from(["cfg".to_string()]);
        assert!(refresh(&api, &mut cache, &names, Instant::now())
            .await
            .is_err());
        assert!(cache.is_empty());
    }
}
