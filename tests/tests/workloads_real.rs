//! The workload controllers on a real node (`skiff server` with its
//! embedded agent, containerd, runc, CNI, the stock kubectl), one server per
//! test so the tests run side by side:
//! - a Deployment with a readiness probe rolls without ever dropping below
//!   `replicas - maxUnavailable` ready pods (followed through a `kubectl get
//!   --watch` of the pods), and `kubectl rollout undo|history` bring the
//!   previous template back;
//! - Jobs: completions with parallelism, a failing pod up to
//!   `backoffLimit`, and Indexed mode's `JOB_COMPLETION_INDEX`;
//! - a CronJob every minute starts on the minute boundary, and keeps only
//!   `successfulJobsHistoryLimit` finished Jobs;
//! - an HPA fed by `metrics.k8s.io` (the agent's CRI stats) scales a
//!   cpu-burning Deployment up, and back down once the burn stops.
//!
//! Durations are printed (`--nocapture`), not asserted: the machine is
//! shared, so outcomes fail a test, not slowness. The only time checks are
//! lower bounds the design imposes (a pod is not Ready before its probe can
//! pass; a failed Job pod is retried after the 10 s back-off) and a
//! CronJob run half a minute or more late.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde_json::Value;
use skiff_tests::{wait_until, Cluster, ClusterOptions, Kubectl};

/// Pod CIDRs `10.199.<n>.0/24`: this file's range is 125..=129.
const SUBNET_DEPLOYMENT: u8 = 125;
const SUBNET_JOB: u8 = 126;
const SUBNET_CRONJOB: u8 = 127;
const SUBNET_HPA: u8 = 128;

/// Starts a cluster on `subnet`, runs `test` on it, and prints the tail of
/// the server's log if it fails. The cluster is removed when it drops.
fn on_cluster(subnet: u8, test: impl FnOnce(&Kubectl) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let started = Instant::now();
    let cluster = Cluster::start(ClusterOptions { subnet })?;
    eprintln!("[{subnet}] cluster ready: {:?}", started.elapsed());
    cluster.log_failure(test(&cluster.kube()), 150)
}

/// Whether a pod (as JSON) is Ready and not being deleted.
fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Whether a pod (as JSON) still counts against a Job's parallelism.
fn is_active(pod: &Value) -> bool {
    let phase = &pod["status"]["phase"];
    pod["metadata"]["deletionTimestamp"].is_null() && phase != "Succeeded" && phase != "Failed"
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Seconds since the epoch of an RFC 3339 UTC time as the API server
/// writes it (`2026-11-23T23:59:00Z`).
fn seconds_since_epoch(rfc3339: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("not an RFC 3339 UTC time: {rfc3339:?}");
    let n = |range: std::ops::Range<usize>| -> anyhow::Result<i64> {
        rfc3339
            .get(range)
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    if rfc3339.len() != 20 || !rfc3339.ends_with('Z') {
        return Err(bad());
    }
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    // Days from civil (Howard Hinnant's algorithm), March-based years.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?)
}

fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Deployment: rolling update with readiness, undo, history

/// Ready after ~2 s: the probe reads a file the container writes late.
const ROLL_MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: roll
spec:
  replicas: 4
  minReadySeconds: 1
  selector:
    matchLabels:
      app: roll
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 1
      maxSurge: 1
  template:
    metadata:
      labels:
        app: roll
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: skiff.local/busybox:1
        command: ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 3600"]
        env:
        - name: ROLL
          value: "1"
        readinessProbe:
          exec:
            command: ["cat", "/tmp/ready"]
          periodSeconds: 1
"#;

/// (seconds since [`PodWatch::arm`], count) at every change.
type Timeline = Vec<(f64, usize)>;

/// How many of a set of pods match a predicate, as a `kubectl get --watch`
/// reports them, and the extremes of that count since [`PodWatch::arm`].
struct Tally {
    counts: fn(&Value) -> bool,
    matching: BTreeMap<String, bool>,
    min: usize,
    max: usize,
    events: usize,
    timeline: Timeline,
    armed_at: Option<Instant>,
    ended: Option<String>,
}

impl Tally {
    fn count(&self) -> usize {
        self.matching.values().filter(|m| **m).count()
    }

    fn apply(&mut self, event: &Value) {
        self.events += 1;
        let name = event["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let before = self.count();
        if event["type"] == "DELETED" {
            self.matching.remove(&name);
        } else {
            self.matching.insert(name, (self.counts)(&event["object"]));
        }
        let now = self.count();
        if let Some(at) = self.armed_at {
            self.min = self.min.min(now);
            self.max = self.max.max(now);
            if now != before {
                self.timeline.push((at.elapsed().as_secs_f64(), now));
            }
        }
    }
}

/// What a [`PodWatch`] saw between `arm` and `result`.
struct Seen {
    min: usize,
    max: usize,
    events: usize,
    timeline: Timeline,
}

/// A `kubectl get pods -l SELECTOR --watch --output-watch-events -o json`
/// running in the background, every event folded into a [`Tally`]. The
/// watch sees every change of every pod, so the extremes are exact rather
/// than sampled. The kubectl process is killed (by its pid) on drop.
struct PodWatch {
    child: Child,
    tally: Arc<Mutex<Tally>>,
}

impl PodWatch {
    fn start(k: &Kubectl, selector: &str, counts: fn(&Value) -> bool) -> anyhow::Result<PodWatch> {
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", &k.kubeconfig)
            .args([
                "get",
                "pods",
                "-l",
                selector,
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting kubectl get --watch")?;
        let stdout = child.stdout.take().context("kubectl stdout")?;
        let tally = Arc::new(Mutex::new(Tally {
            counts,
            matching: BTreeMap::new(),
            min: 0,
            max: 0,
            events: 0,
            timeline: Vec::new(),
            armed_at: None,
            ended: None,
        }));
        let shared = tally.clone();
        std::thread::spawn(move || {
            let stream = serde_json::Deserializer::from_reader(BufReader::new(stdout));
            for event in stream.into_iter::<Value>() {
                match event {
                    Ok(e) => shared.lock().unwrap().apply(&e),
                    Err(e) => {
                        shared.lock().unwrap().ended = Some(format!("bad JSON: {e}"));
                        return;
                    }
                }
            }
            shared.lock().unwrap().ended = Some("the watch ended".into());
        });
        let watch = PodWatch { child, tally };
        watch.arm();
        Ok(watch)
    }

    fn count(&self) -> usize {
        self.tally.lock().unwrap().count()
    }

    /// Records the extremes from the current count on (`start` arms too).
    fn arm(&self) {
        let mut t = self.tally.lock().unwrap();
        t.armed_at = Some(Instant::now());
        t.timeline.clear();
        (t.min, t.max) = (t.count(), t.count());
    }

    /// What the watch saw since `arm`; an error if it stopped early.
    fn result(&mut self) -> anyhow::Result<Seen> {
        let t = self.tally.lock().unwrap();
        if let Some(why) = &t.ended {
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            bail!("the pod watch stopped early ({why}): {err}");
        }
        Ok(Seen {
            min: t.min,
            max: t.max,
            events: t.events,
            timeline: t.timeline.clone(),
        })
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `ROLL` value of every live pod of the Deployment.
fn live_roll_values(k: &Kubectl) -> anyhow::Result<Vec<(String, bool)>> {
    let pods = k.json(&["get", "pods", "-l", "app=roll"])?;
    Ok(items(&pods)
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let env = &p["spec"]["containers"][0]["env"];
            let roll = env
                .as_array()
                .and_then(|e| e.iter().find(|v| v["name"] == "ROLL"))
                .and_then(|v| v["value"].as_str())
                .unwrap_or_default()
                .to_string();
            (roll, p["status"]["phase"] == "Running" && is_ready(p))
        })
        .collect())
}

#[test]
fn deployment_rolls_with_readiness_and_undo_restores_the_template() -> anyhow::Result<()> {
    on_cluster(SUBNET_DEPLOYMENT, |k| {
        let mut watch = PodWatch::start(k, "app=roll", is_ready)?;
        let t = Instant::now();
        k.apply(ROLL_MANIFEST)?;
        k.ok(&["rollout", "status", "deployment/roll", "--timeout=180s"])?;
        wait_until(Duration::from_secs(60), || Ok(watch.count() == 4))?;
        eprintln!("apply → 4 pods ready: {:?}", t.elapsed());

        // Roll: every pod is replaced, one at a time beyond the surge.
        watch.arm();
        let t = Instant::now();
        k.ok(&["set", "env", "deployment/roll", "ROLL=2"])?;
        let status = k.ok(&["rollout", "status", "deployment/roll", "--timeout=240s"])?;
        let rollout = t.elapsed();
        assert!(
            status.contains("successfully rolled out"),
            "rollout status: {status}"
        );
        wait_until(Duration::from_secs(60), || {
            let pods = live_roll_values(k)?;
            Ok(pods.len() == 4 && pods.iter().all(|(roll, ready)| roll == "2" && *ready))
        })?;
        let Seen {
            min,
            events,
            timeline,
            ..
        } = watch.result()?;
        // The probe gated readiness: no new pod was Ready before its
        // container's `sleep 2` ended (times have second resolution).
        for p in items(&k.json(&["get", "pods", "-l", "app=roll"])?) {
            let started = seconds_since_epoch(p["status"]["startTime"].as_str().unwrap_or("?"))?;
            let ready = condition(&p, "Ready").and_then(|c| c["lastTransitionTime"].as_str());
            let ready = seconds_since_epoch(ready.unwrap_or("?"))?;
            assert!(
                ready - started >= 1,
                "ready before the probe could pass: {p}"
            );
        }
        eprintln!("rolling update of 4 pods (maxSurge 1, maxUnavailable 1): {rollout:?}");
        eprintln!("lowest ready count during the roll: {min} ({events} watch events)");
        assert!(
            min >= 3,
            "ready pods dropped to {min}; (seconds, ready): {timeline:?}"
        );

        let history = k.ok(&["rollout", "history", "deployment/roll"])?;
        assert!(
            revisions(&history) == ["1", "2"],
            "rollout history: {history}"
        );

        // Undo: revision 1's template comes back as revision 3.
        let t = Instant::now();
        k.ok(&["rollout", "undo", "deployment/roll"])?;
        let d = k.json(&["get", "deployment", "roll"])?;
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "1",
            "undo did not restore the template: {d}"
        );
        k.ok(&["rollout", "status", "deployment/roll", "--timeout=240s"])?;
        wait_until(Duration::from_secs(60), || {
            let pods = live_roll_values(k)?;
            Ok(pods.len() == 4 && pods.iter().all(|(roll, ready)| roll == "1" && *ready))
        })?;
        eprintln!(
            "rollout undo → 4 pods of the old template ready: {:?}",
            t.elapsed()
        );
        let history = k.ok(&["rollout", "history", "deployment/roll"])?;
        assert!(
            revisions(&history) == ["2", "3"],
            "rollout history: {history}"
        );
        let rev3 = k.ok(&["rollout", "history", "deployment/roll", "--revision=3"])?;
        assert!(rev3.contains("ROLL:\t1"), "revision 3: {rev3}");
        // The old ReplicaSet was reused, not copied: still two of them.
        // It carries revision 3 and remembers it was revision 1; the other
        // is scaled to zero.
        let rss = k.json(&["get", "replicasets", "-l", "app=roll"])?;
        assert_eq!(items(&rss).len(), 2, "replicasets: {rss}");
        let annotations = |rs: &Value, key: &str| {
            rs["metadata"]["annotations"][key]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let (live, old): (Vec<Value>, Vec<Value>) = items(&rss)
            .into_iter()
            .partition(|rs| rs["spec"]["replicas"] == 4);
        assert_eq!((live.len(), old.len()), (1, 1), "replicasets: {rss}");
        assert_eq!(old[0]["spec"]["replicas"], 0, "{rss}");
        assert_eq!(
            annotations(&live[0], "deployment.kubernetes.io/revision"),
            "3"
        );
        assert_eq!(
            annotations(&live[0], "deployment.kubernetes.io/revision-history"),
            "1"
        );
        let d = k.json(&["get", "deployment", "roll"])?;
        let progressing = condition(&d, "Progressing").context("Progressing")?;
        assert_eq!(progressing["reason"], "NewReplicaSetAvailable", "{d}");
        assert!(condition(&d, "Available").is_some(), "{d}");
        assert_eq!(
            d["status"]["observedGeneration"],
            d["metadata"]["generation"]
        );
        Ok(())
    })
}

/// The revision numbers `kubectl rollout history` lists.
fn revisions(history: &str) -> Vec<&str> {
    history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

// ---------------------------------------------------------------------------
// Jobs

const JOBS_MANIFEST: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: ok
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: skiff.local/busybox:1
        command: ["sh", "-c", "exit 0"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: fail
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: skiff.local/busybox:1
        command: ["sh", "-c", "exit 1"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: idx
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: skiff.local/busybox:1
        command: ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX"]
"#;

/// Waits for a Job to reach condition `kind` (Complete or Failed).
fn wait_job(k: &Kubectl, name: &str, kind: &str) -> anyhow::Result<Value> {
    let mut job = Value::Null;
    wait_until(Duration::from_secs(150), || {
        job = k.json(&["get", "job", name])?;
        let other = if kind == "Complete" {
            "Failed"
        } else {
            "Complete"
        };
        if condition(&job, other).is_some() {
            bail!("job {name} is {other}, not {kind}: {job}");
        }
        Ok(condition(&job, kind).is_some())
    })
    .map_err(|e| anyhow::anyhow!("{e}; job {name}: {job}"))?;
    Ok(job)
}

#[test]
fn jobs_complete_fail_and_index_on_a_real_node() -> anyhow::Result<()> {
    on_cluster(SUBNET_JOB, |k| {
        let mut active = PodWatch::start(k, "job-name=ok", is_active)?;
        let t = Instant::now();
        k.apply(JOBS_MANIFEST)?;

        // kubectl's own wait, then the same through the API.
        k.ok(&[
            "wait",
            "--for=condition=complete",
            "job/ok",
            "--timeout=150s",
        ])?;
        let ok = wait_job(k, "ok", "Complete")?;
        eprintln!(
            "job ok (3 completions, parallelism 2) Complete: {:?}",
            t.elapsed()
        );
        assert_eq!(ok["status"]["succeeded"], 3, "{ok}");
        let pods = items(&k.json(&["get", "pods", "-l", "job-name=ok"])?);
        assert_eq!(pods.len(), 3, "one pod per completion: {pods:?}");
        assert!(pods.iter().all(|p| p["status"]["phase"] == "Succeeded"));
        let seen = active.result()?;
        assert_eq!(
            seen.max, 2,
            "active pods never beyond parallelism 2: {:?}",
            seen.timeline
        );

        let idx = wait_job(k, "idx", "Complete")?;
        eprintln!("job idx (Indexed, 3) Complete: {:?}", t.elapsed());
        assert_eq!(idx["status"]["completedIndexes"], "0-2", "{idx}");
        let mut seen = Vec::new();
        for pod in items(&k.json(&["get", "pods", "-l", "job-name=idx"])?) {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let logs = k.ok(&["logs", name])?;
            assert_eq!(logs.trim(), format!("index={index}"), "pod {name}");
            seen.push(index);
        }
        seen.sort();
        assert_eq!(seen, ["0", "1", "2"]);

        // backoffLimit 1: the second failed pod fails the Job (after the
        // controller's 10 s back-off before the retry).
        k.ok(&[
            "wait",
            "--for=condition=failed",
            "job/fail",
            "--timeout=150s",
        ])?;
        let fail = wait_job(k, "fail", "Failed")?;
        eprintln!("job fail (backoffLimit 1) Failed: {:?}", t.elapsed());
        let reason = &condition(&fail, "Failed").context("Failed condition")?["reason"];
        assert_eq!(reason, "BackoffLimitExceeded", "{fail}");
        assert_eq!(fail["status"]["failed"], 2, "{fail}");
        assert!(fail["status"]["succeeded"].as_i64().unwrap_or(0) == 0);
        let mut pods = items(&k.json(&["get", "pods", "-l", "job-name=fail"])?);
        assert_eq!(pods.len(), 2, "{pods:?}");
        assert!(pods.iter().all(|p| p["status"]["phase"] == "Failed"));
        // The retry waited out the 10 s pod-failure back-off.
        let time_of = |p: &Value, path: &str| {
            seconds_since_epoch(p.pointer(path).and_then(Value::as_str).unwrap_or("?"))
        };
        pods.sort_by_key(|p| {
            p["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_string)
        });
        let failed_at = time_of(
            &pods[0],
            "/status/containerStatuses/0/state/terminated/finishedAt",
        )?;
        let retried_at = time_of(&pods[1], "/metadata/creationTimestamp")?;
        eprintln!(
            "job fail: retry created {} s after the first pod failed",
            retried_at - failed_at
        );
        assert!(
            retried_at - failed_at >= 9,
            "no back-off before the retry: {pods:?}"
        );
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// CronJob

const CRONJOB_MANIFEST: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "*/1 * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: c
            image: skiff.local/busybox:1
            command: ["sh", "-c", "date"]
"#;

/// The CronJob's Jobs: (name, scheduled time in seconds, created at in
/// seconds, Complete).
fn cron_jobs(k: &Kubectl) -> anyhow::Result<Vec<(String, i64, i64, bool)>> {
    let jobs = k.json(&["get", "jobs"])?;
    let mut out = Vec::new();
    for j in items(&jobs) {
        let scheduled = j["metadata"]["annotations"]
            ["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .as_str()
            .with_context(|| format!("no scheduled-timestamp annotation: {j}"))?;
        out.push((
            j["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            seconds_since_epoch(scheduled)?,
            seconds_since_epoch(j["metadata"]["creationTimestamp"].as_str().unwrap_or("?"))?,
            condition(&j, "Complete").is_some(),
        ));
    }
    out.sort_by_key(|j| j.1);
    Ok(out)
}

#[test]
fn cronjob_runs_on_the_minute_and_keeps_its_history_limit() -> anyhow::Result<()> {
    on_cluster(SUBNET_CRONJOB, |k| {
        k.apply(CRONJOB_MANIFEST)?;
        // The first run is the first minute after the CronJob's creation.
        let cj = k.json(&["get", "cronjob", "tick"])?;
        let created =
            seconds_since_epoch(cj["metadata"]["creationTimestamp"].as_str().unwrap_or("?"))?;
        let boundary = (created / 60 + 1) * 60;
        eprintln!("cronjob created {} s before the minute", boundary - created);

        // The first Job, seen by polling: lateness by the test's clock too.
        let mut seen_at = 0.0;
        wait_until(Duration::from_secs(100), || {
            let found = !items(&k.json(&["get", "jobs"])?).is_empty();
            seen_at = now_secs_f64();
            Ok(found)
        })
        .context("the CronJob never created a Job")?;
        let jobs = cron_jobs(k)?;
        let (name, scheduled, created, _) = jobs[0].clone();
        eprintln!(
            "first job {name}: scheduled {scheduled}, created {} s later, seen by the test {:.2} s after the minute",
            created - scheduled,
            seen_at - scheduled as f64
        );
        assert_eq!(scheduled % 60, 0, "scheduled off the minute: {scheduled}");
        assert_eq!(
            scheduled, boundary,
            "the first run is the next minute after creation"
        );
        assert!(
            created - scheduled < 30,
            "ran {} s after its schedule",
            created - scheduled
        );
        assert!(name.starts_with("tick-"));

        // The second run: once it has completed, only it is kept
        // (successfulJobsHistoryLimit 1).
        let mut last = Vec::new();
        wait_until(Duration::from_secs(150), || {
            last = cron_jobs(k)?;
            Ok(last.iter().any(|j| j.1 > scheduled && j.3) && last.len() == 1)
        })
        .map_err(|e| anyhow::anyhow!("{e}: jobs {last:?}"))?;
        let (second, at, created, _) = last[0].clone();
        eprintln!(
            "second job {second}: created {} s after its minute; the first was removed",
            created - at
        );
        assert_eq!(at, scheduled + 60, "the next run is one minute later");
        let cj = k
            .json(&["get", "cronjob", "tick"])
            .context("reading the CronJob after its second run")?;
        assert!(
            !cj["status"]["lastSuccessfulTime"].is_null()
                && !cj["status"]["lastScheduleTime"].is_null(),
            "{cj}"
        );

        // `kubectl create job --from=cronjob/...` runs the template now.
        // Not in the second the last Job started: startTime has whole
        // seconds, the history limit breaks ties by name as Kubernetes
        // does, and "now" sorts before "tick-…", so it would be the one
        // deleted once complete (a CI run met exactly that).
        std::thread::sleep(Duration::from_millis(1100));
        k.ok(&["create", "job", "--from=cronjob/tick", "now"])
            .context("kubectl create job --from=cronjob/tick")?;
        k.ok(&[
            "wait",
            "--for=condition=complete",
            "job/now",
            "--timeout=120s",
        ])
        .with_context(|| format!("waiting for job/now; jobs {:?}", cron_jobs(k)))?;
        let now = k
            .json(&["get", "job", "now"])
            .context("reading job/now once complete")?;
        assert_eq!(
            now["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
            "manual"
        );
        assert_eq!(
            now["metadata"]["ownerReferences"][0]["name"], "tick",
            "{now}"
        );
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// HorizontalPodAutoscaler

/// Burns cpu while `BURN=1`. The cpu limit (a CFS quota) keeps each pod
/// at 100m, twice its request, so the HPA wants more replicas without the
/// test eating the shared machine.
const BURN_MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: burn
spec:
  replicas: 1
  selector:
    matchLabels:
      app: burn
  template:
    metadata:
      labels:
        app: burn
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: skiff.local/busybox:1
        command: ["sh", "-c", "if [ \"$BURN\" = 1 ]; then while :; do :; done; else exec sleep 3600; fi"]
        env:
        - name: BURN
          value: "1"
        resources:
          requests:
            cpu: 50m
          limits:
            cpu: 100m
"#;

/// `kubectl top pods -l app=burn`: the cpu in millicores of each pod.
fn top(k: &Kubectl) -> anyhow::Result<Vec<u64>> {
    let out = k.ok(&["top", "pods", "-l", "app=burn", "--no-headers"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|cpu| cpu.strip_suffix('m')?.parse().ok())
        .collect())
}

/// The Deployment's `spec.replicas`, then the HPA's utilization (read
/// second: the HPA writes its status after it rescales).
fn hpa_state(k: &Kubectl) -> anyhow::Result<(i64, Option<i64>)> {
    let d = k.json(&["get", "deployment", "burn"])?;
    let h = k.json(&["get", "hpa.v2.autoscaling", "burn"])?;
    let utilization =
        h["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"].as_i64();
    Ok((d["spec"]["replicas"].as_i64().unwrap_or(0), utilization))
}

#[test]
fn hpa_scales_a_cpu_burner_up_and_back_down() -> anyhow::Result<()> {
    on_cluster(SUBNET_HPA, |k| {
        k.apply(BURN_MANIFEST)?;
        k.ok(&["rollout", "status", "deployment/burn", "--timeout=120s"])?;

        // metrics.k8s.io from the agent's CRI stats, as kubectl top shows it.
        let t = Instant::now();
        let mut cpu = Vec::new();
        wait_until(Duration::from_secs(90), || {
            cpu = top(k).unwrap_or_default();
            Ok(cpu.first().is_some_and(|m| *m >= 50))
        })
        .map_err(|e| anyhow::anyhow!("{e}: kubectl top says {cpu:?}"))?;
        eprintln!(
            "kubectl top pods: {cpu:?} millicores after {:?}",
            t.elapsed()
        );
        assert!(
            // Unlimited, the loop would take a whole core (1000m).
            cpu[0] <= 250,
            "the cpu limit holds the burn near 100m: {cpu:?}"
        );

        let t = Instant::now();
        k.ok(&[
            "autoscale",
            "deployment",
            "burn",
            "--cpu-percent=50",
            "--min=1",
            "--max=3",
        ])?;
        k.ok(&[
            "patch",
            "hpa.v2.autoscaling",
            "burn",
            "--type=merge",
            "-p",
            r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":5}}}}"#,
        ])?;
        let mut state = (0, None);
        wait_until(Duration::from_secs(120), || {
            state = hpa_state(k)?;
            Ok(state.0 > 1 && state.1.is_some())
        })
        .map_err(|e| anyhow::anyhow!("{e}: (replicas, utilization) = {state:?}"))?;
        eprintln!(
            "autoscale → scaled up to {} at {}% utilization: {:?}",
            state.0,
            state.1.unwrap_or(0),
            t.elapsed()
        );
        assert!(state.1.unwrap_or(0) > 50, "{state:?}");
        wait_until(Duration::from_secs(120), || {
            state = hpa_state(k)?;
            Ok(state.0 == 3)
        })
        .map_err(|e| anyhow::anyhow!("{e}: (replicas, utilization) = {state:?}"))?;
        eprintln!("autoscale → 3 replicas (max): {:?}", t.elapsed());
        let described = k.ok(&["describe", "hpa", "burn"])?;
        assert!(described.contains("SuccessfulRescale"), "{described}");
        // kubectl get's TARGETS column (a server-side table) shows the figure.
        let row = k.ok(&["get", "hpa", "burn", "--no-headers"])?;
        eprintln!("kubectl get hpa: {}", row.trim());
        assert!(row.contains("%/50%"), "kubectl get hpa: {row}");

        // Stop the burn: the new pods sleep, utilization falls, and after
        // the short stabilization window the HPA scales back to 1.
        let t = Instant::now();
        k.ok(&["set", "env", "deployment/burn", "BURN=0"])?;
        wait_until(Duration::from_secs(180), || {
            state = hpa_state(k)?;
            Ok(state.0 == 1)
        })
        .map_err(|e| anyhow::anyhow!("{e}: (replicas, utilization) = {state:?}"))?;
        eprintln!(
            "burn stopped → scaled down to 1 at {:?}% utilization: {:?}",
            state.1,
            t.elapsed()
        );
        let mut h = Value::Null;
        wait_until(Duration::from_secs(30), || {
            h = k.json(&["get", "hpa.v2.autoscaling", "burn"])?;
            Ok(h["status"]["desiredReplicas"] == 1)
        })
        .map_err(|e| anyhow::anyhow!("{e}: {h}"))?;
        Ok(())
    })
}
