//! The wire format of remote runs: hidden `<!-- labbook:KIND {json} -->` blocks in issue
//! bodies and comments, the visible text around them, and curve downsampling so a results
//! comment always fits GitHub's 65,536-character limit.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use labbook_models::backend::BackendChoice;
use serde::{Deserialize, Serialize};

/// Label of run-request issues.
pub const LABEL_REQUEST: &str = "run-request";
/// Label added when a request finished with a succeeded run.
pub const LABEL_DONE: &str = "done";
/// Label added when a request finished any other way.
pub const LABEL_FAILED: &str = "failed";
/// GitHub's limit for an issue body or comment, in characters.
pub const MAX_COMMENT: usize = 65_536;
/// What we aim for, leaving room for GitHub counting differently than we do.
const COMMENT_BUDGET: usize = 60_000;

pub const KIND_REQUEST: &str = "run-request";
pub const KIND_CLAIM: &str = "claim";
pub const KIND_RESULTS: &str = "results";
pub const KIND_NOT_ALLOWED: &str = "not-allowed";
/// A runner's refusal for a reason other than the author (an edit by someone else).
pub const KIND_REFUSED: &str = "refused";

/// `<!-- labbook:KIND {json} -->`. `<` and `>` inside JSON strings are escaped (`\u003c`,
/// `\u003e`), so no value can end the HTML comment early or look like another block.
pub fn hidden_block(kind: &str, value: &impl Serialize) -> String {
    let json = serde_json::to_string(value)
        .expect("block serialises")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e");
    format!("<!-- labbook:{kind} {json} -->")
}

/// The last `kind` block of `text`, parsed. Blocks are written after the visible text, so
/// the last one is ours even when a log tail or a metric name quotes a block's opening.
pub fn parse_block<T: serde::de::DeserializeOwned>(kind: &str, text: &str) -> Option<T> {
    let open = format!("<!-- labbook:{kind} ");
    let start = text.rfind(&open)? + open.len();
    let end = start + text[start..].find(" -->")?;
    serde_json::from_str(&text[start..end]).ok()
}

/// Whether `text` carries a `kind` block (parsable or not).
pub fn has_block(kind: &str, text: &str) -> bool {
    text.contains(&format!("<!-- labbook:{kind} "))
}

/// The run request, in the request issue's body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRequest {
    /// Format version.
    pub v: u32,
    /// Random id, to find the issue again after an uncertain create.
    pub id: String,
    /// The requester's run (R-n in their notebook).
    pub run: String,
    /// Full SHA of the commit to run.
    pub commit: String,
    /// `cpu`, `cuda` or `cuda:N`.
    pub backend: String,
    /// The run config (TOML), overrides applied, backend set.
    pub config: String,
    pub config_path: Option<String>,
    pub experiment: Option<String>,
    pub experiment_issue: Option<u64>,
    pub requester: String,
    /// GPUs the job needs (`run --remote --gpus N`, or the config's `devices`); absent: 1
    /// for a CUDA request, none for a CPU one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
}

impl RunRequest {
    /// The GPUs a runner hands this job: none for a CPU request.
    pub fn gpus_needed(&self) -> usize {
        match self.backend.parse::<BackendChoice>() {
            Ok(BackendChoice::Cuda(_)) => self.gpus.unwrap_or(1).max(1) as usize,
            _ => 0,
        }
    }
}

/// State of a claim comment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimState {
    /// Holding (or trying to hold) the request until `lease_until`.
    Active,
    /// Lost the race; ignored by everyone.
    Withdrawn,
    /// Results posted.
    Finished,
}

/// A runner's claim on a request; the claim comment doubles as the status comment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claim {
    pub runner: String,
    pub nonce: String,
    /// RFC 3339 UTC, on GitHub's clock; shown to people. Liveness is decided by
    /// `lease_secs` from the comment's `updated_at` where both are known.
    pub lease_until: String,
    pub state: ClaimState,
    /// The lease in seconds, counted from the comment's last edit on GitHub (its
    /// `updated_at`): only GitHub's clock decides, so a runner whose own clock is wrong
    /// can neither take over a live claim nor keep a dead one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_secs: Option<u64>,
}

impl Claim {
    /// Active and not expired at `now` (GitHub's time), given the comment's `updated_at`.
    pub fn live(&self, updated_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        if self.state != ClaimState::Active {
            return false;
        }
        match (self.lease_secs, updated_at) {
            (Some(secs), Some(at)) => {
                at + chrono::TimeDelta::seconds(secs.min(MAX_LEASE_SECS) as i64) > now
            }
            _ => DateTime::parse_from_rfc3339(&self.lease_until)
                .is_ok_and(|t| t.with_timezone(&Utc) > now),
        }
    }
}

/// No lease counts for longer than this, whatever a claim says (a month, as the runner's
/// own durations).
const MAX_LEASE_SECS: u64 = 30 * 86_400;

/// One comment as the protocol sees it.
#[derive(Debug, Clone)]
pub struct CommentView {
    pub id: u64,
    pub body: String,
    /// The login that wrote it.
    pub author: String,
    /// GitHub's `updated_at`.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The claim that holds the request at `now` (GitHub's time): the live claim with the
/// smallest comment id (comment ids grow with creation order on GitHub). A runner that
/// posted a claim and then finds an earlier live claim has lost and withdraws.
pub fn winning_claim(comments: &[CommentView], now: DateTime<Utc>) -> Option<(u64, Claim)> {
    comments
        .iter()
        .filter_map(|c| parse_block::<Claim>(KIND_CLAIM, &c.body).map(|cl| (c, cl)))
        .filter(|(c, cl)| cl.live(c.updated_at, now))
        .min_by_key(|(c, _)| c.id)
        .map(|(c, cl)| (c.id, cl))
}

/// The results that count on a request: the newest results comment that carries the nonce
/// of a claim on the same request, written by the same login before it and not withdrawn.
/// A results block copied from another request (or written by someone who never held the
/// claim) has no such claim and is ignored.
pub fn accepted_results(comments: &[CommentView]) -> Option<(u64, Results)> {
    comments.iter().rev().find_map(|c| {
        let r = parse_block::<Results>(KIND_RESULTS, &c.body)?;
        let nonce = r.nonce.as_deref()?;
        let claimed = comments.iter().any(|k| {
            k.id < c.id
                && k.author == c.author
                && parse_block::<Claim>(KIND_CLAIM, &k.body)
                    .is_some_and(|cl| cl.nonce == nonce && cl.state != ClaimState::Withdrawn)
        });
        claimed.then_some((c.id, r))
    })
}

/// A point of a curve: step, value (`None` for NaN/inf), seconds since start.
pub type CurvePoint = (i64, Option<f64>, f64);

/// The machine-readable results of a remote run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub v: u32,
    pub runner: String,
    /// The nonce of the claim these results were run under; results count only with the
    /// winning claim's nonce, from that claim's author (`accepted_results`).
    #[serde(default)]
    pub nonce: Option<String>,
    /// `succeeded`, `failed`, `cancelled` or `crashed`.
    pub status: String,
    pub error: Option<String>,
    pub commit: String,
    pub backend: String,
    pub host: Option<String>,
    pub device: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub wall_time_s: f64,
    pub steps_done: i64,
    pub steps_total: Option<i64>,
    pub final_metrics: BTreeMap<String, f64>,
    /// Every metric curve, downsampled to fit the comment.
    pub curves: BTreeMap<String, Vec<CurvePoint>>,
    /// Points per curve before downsampling.
    pub points: BTreeMap<String, usize>,
    /// The step this attempt continued from: a checkpoint the runner's machine kept from an
    /// earlier attempt at the same request (same commit and config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
    /// The weights and full-resolution curves, uploaded as a release asset
    /// (`labbook pull-model R-n` fetches them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<crate::github::client::AssetRef>,
    /// Why there is no weights asset although the run has weights (an upload that failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_error: Option<String>,
    /// The Slurm job that ran the training step (`[runner] executor = "slurm"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<crate::remote::runner::slurm::SlurmJob>,
}

/// Keeps at most `max` points, evenly spaced by index, always the first and the last.
pub fn downsample(points: &[CurvePoint], max: usize) -> Vec<CurvePoint> {
    let max = max.max(2);
    if points.len() <= max {
        return points.to_vec();
    }
    let last = points.len() - 1;
    let mut out: Vec<CurvePoint> = (0..max - 1).map(|i| points[i * last / (max - 1)]).collect();
    out.push(points[last]);
    out.dedup_by_key(|p| p.0);
    out
}

/// 6 significant digits: the curves are for plots, and this halves their size.
pub fn round6(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    format!("{v:.5e}").parse().unwrap_or(v)
}

/// The results comment: a readable summary, the log tail on failure, and the results
/// block, always within GitHub's limit. To fit, in this order: curves are downsampled
/// (halving the points per curve), curves are dropped from the end, the log tail is left
/// out, final metrics are dropped from the end. The error is cut to 2,000 characters and
/// final metrics are rounded to 6 significant digits up front.
pub fn results_comment(results: &Results, log_tail: Option<&str>) -> String {
    let mut r = results.clone();
    if let Some(e) = &mut r.error
        && e.chars().count() > MAX_ERROR
    {
        *e = format!("{}…", e.chars().take(MAX_ERROR).collect::<String>());
    }
    let finals: Vec<(String, f64)> = std::mem::take(&mut r.final_metrics)
        .into_iter()
        .map(|(k, v)| (k, round6(v)))
        .collect();
    let mut finals_kept = finals.len();
    let mut log_tail = log_tail;
    let full = std::mem::take(&mut r.curves);
    let all_points = std::mem::take(&mut r.points);
    let mut keys: Vec<String> = full.keys().cloned().collect();
    let mut per_curve = full.values().map(Vec::len).max().unwrap_or(2).max(2);
    loop {
        r.curves = keys
            .iter()
            .map(|k| (k.clone(), downsample(&full[k], per_curve)))
            .collect();
        r.points = all_points
            .iter()
            .filter(|(k, _)| r.curves.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        r.final_metrics = finals[..finals_kept].iter().cloned().collect();
        let dropped = Dropped {
            curves: full.len() - keys.len(),
            final_metrics: finals.len() - finals_kept,
        };
        let text = render_results(&r, log_tail, dropped);
        if text.chars().count() <= COMMENT_BUDGET {
            return text;
        }
        if per_curve > 2 {
            per_curve = (per_curve / 2).max(2);
        } else if !keys.is_empty() {
            let n = keys.len();
            keys.truncate(n - (n / 8).max(1));
        } else if log_tail.is_some() {
            log_tail = None;
        } else if finals_kept > 0 {
            finals_kept -= (finals_kept / 8).max(1);
        } else {
            // Only fixed-size fields are left; cannot happen with the error cut above.
            return text;
        }
    }
}

/// Longest error message kept in a results comment, in characters.
const MAX_ERROR: usize = 2_000;

/// What `results_comment` left out to fit.
#[derive(Debug, Clone, Copy)]
struct Dropped {
    curves: usize,
    final_metrics: usize,
}

fn render_results(r: &Results, log_tail: Option<&str>, dropped: Dropped) -> String {
    let mut s = format!(
        "**Run {}** on `{}` (backend `{}`) — {} of {} steps in {}.\n\n",
        r.status,
        r.host.as_deref().unwrap_or("?"),
        r.backend,
        r.steps_done,
        r.steps_total
            .map(|t| t.to_string())
            .unwrap_or_else(|| "?".into()),
        human_secs(r.wall_time_s),
    );
    if let Some(j) = &r.slurm {
        s.push_str(&format!(
            "Slurm job {} on `{}`: {} after {}.\n\n",
            j.job_id,
            j.node.as_deref().unwrap_or("?"),
            j.state,
            j.elapsed.as_deref().unwrap_or("?")
        ));
    }
    if let Some(step) = r.resumed_from {
        s.push_str(&format!(
            "Resumed from step {step}: this machine's checkpoint of an earlier, interrupted attempt at this request.\n\n"
        ));
    }
    if let Some(e) = &r.error {
        s.push_str(&format!("Error: {}\n\n", one_line(e, 500)));
    }
    if let Some(w) = &r.weights {
        s.push_str(&format!(
            "Weights and full-resolution curves: [{}]({}) ({:.1} MB, release `{}`); `labbook pull-model R-n` fetches them into `runs/R-n/`.\n\n",
            w.name,
            w.url,
            w.size as f64 / 1e6,
            w.release
        ));
    }
    if let Some(e) = &r.weights_error {
        s.push_str(&format!(
            "The weights could not be uploaded ({}); they stay in the runner's `jobs/` folder.\n\n",
            one_line(e, 300)
        ));
    }
    if !r.final_metrics.is_empty() {
        s.push_str("| metric | final |\n|---|---|\n");
        for (k, v) in r.final_metrics.iter().take(40) {
            s.push_str(&format!("| {k} | {v:.4} |\n"));
        }
        s.push('\n');
    }
    let sampled = r
        .curves
        .iter()
        .any(|(k, v)| r.points.get(k).is_some_and(|n| *n > v.len()));
    if sampled || dropped.curves > 0 {
        s.push_str(&format!(
            "Curves are downsampled to fit a comment{}.\n\n",
            if dropped.curves == 0 {
                String::new()
            } else {
                format!("; {} curve(s) left out", dropped.curves)
            }
        ));
    }
    if dropped.final_metrics > 0 {
        s.push_str(&format!(
            "{} final metric(s) left out to fit a comment; the runner's `jobs/issue-N/tracker.db` has them all.\n\n",
            dropped.final_metrics
        ));
    }
    if let Some(log) = log_tail.filter(|l| !l.trim().is_empty()) {
        let tail = tail_chars(log, 8_000).replace("```", "'''");
        s.push_str(&format!(
            "<details><summary>log tail</summary>\n\n```\n{tail}\n```\n\n</details>\n\n"
        ));
    }
    s.push_str(&hidden_block(KIND_RESULTS, r));
    s
}

/// The last `n` characters of `text` (on a line boundary when possible).
pub fn tail_chars(text: &str, n: usize) -> &str {
    let count = text.chars().count();
    if count <= n {
        return text;
    }
    let start = text
        .char_indices()
        .nth(count - n)
        .map(|(i, _)| i)
        .unwrap_or(0);
    let cut = &text[start..];
    match cut.find('\n') {
        Some(i) if i + 1 < cut.len() => &cut[i + 1..],
        _ => cut,
    }
}

fn one_line(s: &str, max: usize) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line
    }
}

/// `75s` → `1m 15s`.
pub fn human_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// A random hex id (std's randomly keyed hasher; no extra dependency).
pub fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(keys: usize, points: usize) -> Results {
        let curves: BTreeMap<String, Vec<CurvePoint>> = (0..keys)
            .map(|k| {
                (
                    format!("metric/{k:03}"),
                    (0..points as i64)
                        .map(|s| (s, Some(1.0 / (s as f64 + 1.3)), s as f64 * 0.01))
                        .collect(),
                )
            })
            .collect();
        Results {
            v: 2,
            runner: "gpu".into(),
            nonce: Some("n1".into()),
            status: "succeeded".into(),
            error: Some("oops --> not the end".into()),
            commit: "abc".into(),
            backend: "cpu".into(),
            host: Some("h".into()),
            device: None,
            started_at: None,
            finished_at: None,
            wall_time_s: 75.0,
            steps_done: points as i64,
            steps_total: Some(points as i64),
            final_metrics: BTreeMap::from([("loss".into(), 0.5)]),
            points: curves.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
            resumed_from: None,
            weights: None,
            weights_error: None,
            slurm: None,
            curves,
        }
    }

    #[test]
    fn blocks_round_trip_and_cannot_be_closed_early() {
        let r = results(2, 10);
        let text = format!("hello\n{}\nbye", hidden_block(KIND_RESULTS, &r));
        assert_eq!(text.matches("-->").count(), 1);
        let back: Results = parse_block(KIND_RESULTS, &text).unwrap();
        assert_eq!(back, r);
        assert!(parse_block::<Results>(KIND_CLAIM, &text).is_none());
    }

    #[test]
    fn big_results_are_downsampled_to_fit() {
        let r = results(12, 50_000);
        let text = results_comment(&r, Some(&"log line\n".repeat(10_000)));
        assert!(text.chars().count() <= MAX_COMMENT, "{}", text.len());
        let back: Results = parse_block(KIND_RESULTS, &text).unwrap();
        assert_eq!(back.curves.len(), 12);
        for (k, c) in &back.curves {
            assert!(c.len() >= 2 && c.len() < 50_000);
            assert_eq!(c.first().unwrap().0, 0, "{k}");
            assert_eq!(c.last().unwrap().0, 49_999, "{k}");
        }
        // Thousands of curves: some are left out, the comment still fits.
        let text = results_comment(&results(4_000, 10), None);
        assert!(text.chars().count() <= MAX_COMMENT);
        let back: Results = parse_block(KIND_RESULTS, &text).unwrap();
        assert!(back.curves.len() < 4_000 && !back.curves.is_empty());
        assert!(text.contains("left out"));
    }

    #[test]
    fn a_quoted_block_opening_in_the_visible_text_does_not_hide_the_block() {
        let mut r = results(1, 3);
        r.error = Some("panicked: <!-- labbook:results {broken".into());
        let text = results_comment(&r, Some("log says <!-- labbook:results {also broken -->\n"));
        let back: Results = parse_block(KIND_RESULTS, &text).unwrap();
        assert_eq!(back.error, r.error);
        // The block's own JSON cannot contain a block opening or an end of comment.
        let block = &text[text.rfind("<!-- labbook:results ").unwrap()..];
        assert_eq!(block.matches("<!--").count(), 1);
        assert_eq!(block.matches("-->").count(), 1);
    }

    #[test]
    fn thousands_of_final_metrics_and_a_huge_error_still_fit() {
        let mut r = results(3, 100);
        r.final_metrics = (0..5_000)
            .map(|k| {
                (
                    format!("eval/some_long_metric_name_{k:05}"),
                    1.0 / (k as f64 + 3.0),
                )
            })
            .collect();
        r.error = Some("x".repeat(200_000));
        let text = results_comment(&r, Some(&"log line\n".repeat(10_000)));
        assert!(
            text.chars().count() <= MAX_COMMENT,
            "{}",
            text.chars().count()
        );
        let back: Results = parse_block(KIND_RESULTS, &text).unwrap();
        assert!(!back.final_metrics.is_empty() && back.final_metrics.len() < 5_000);
        assert!(back.error.unwrap().chars().count() <= MAX_ERROR + 1);
        assert!(text.contains("final metric(s) left out"));
        // Kept values are rounded to 6 significant digits and belong to the run.
        let (k, v) = back.final_metrics.iter().next().unwrap();
        assert_eq!(*v, round6(r.final_metrics[k]));
    }

    #[test]
    fn earliest_live_claim_wins() {
        let now = chrono::Utc::now();
        let claim = |nonce: &str, secs: i64, state| CommentView {
            id: 0,
            author: "r".into(),
            updated_at: None,
            body: format!(
                "claimed\n{}",
                hidden_block(
                    KIND_CLAIM,
                    &Claim {
                        runner: "r".into(),
                        nonce: nonce.into(),
                        lease_until: (now + chrono::TimeDelta::seconds(secs)).to_rfc3339(),
                        state,
                        lease_secs: None,
                    }
                )
            ),
        };
        let mut cs = vec![
            claim("expired", -5, ClaimState::Active),
            claim("withdrawn", 60, ClaimState::Withdrawn),
            claim("b", 60, ClaimState::Active),
            claim("c", 60, ClaimState::Active),
        ];
        for (i, c) in cs.iter_mut().enumerate() {
            c.id = 10 + i as u64;
        }
        assert_eq!(winning_claim(&cs, now).unwrap().1.nonce, "b");
        assert!(winning_claim(&cs[..2], now).is_none());
    }

    fn view(id: u64, author: &str, body: String, updated_at: Option<DateTime<Utc>>) -> CommentView {
        CommentView {
            id,
            body,
            author: author.into(),
            updated_at,
        }
    }

    #[test]
    fn leases_are_counted_on_githubs_clock_from_the_comments_last_edit() {
        let github_now = Utc::now();
        // Written by a runner whose clock is two hours behind GitHub's: its `lease_until`
        // is long past on GitHub's clock, but the comment was edited a second ago.
        let claim = Claim {
            runner: "slow-clock".into(),
            nonce: "n".into(),
            lease_until: (github_now - chrono::TimeDelta::hours(2)).to_rfc3339(),
            state: ClaimState::Active,
            lease_secs: Some(60),
        };
        let edited = Some(github_now - chrono::TimeDelta::seconds(1));
        assert!(claim.live(edited, github_now));
        assert!(!claim.live(edited, github_now + chrono::TimeDelta::seconds(61)));
        let c = view(
            5,
            "bot",
            format!("x {}", hidden_block(KIND_CLAIM, &claim)),
            edited,
        );
        assert_eq!(winning_claim(&[c], github_now).unwrap().1.nonce, "n");
        // A lease of a century is cut to a month.
        let greedy = Claim {
            lease_secs: Some(100 * 365 * 86_400),
            ..claim
        };
        assert!(!greedy.live(edited, github_now + chrono::TimeDelta::days(31)));
    }

    #[test]
    fn only_results_under_a_claim_of_their_author_count() {
        let claim = |nonce: &str, state| Claim {
            runner: "gpu".into(),
            nonce: nonce.into(),
            lease_until: Utc::now().to_rfc3339(),
            state,
            lease_secs: Some(60),
        };
        let res = |nonce: &str| {
            let mut r = results(1, 3);
            r.nonce = Some(nonce.into());
            results_comment(&r, None)
        };
        let claim_text = |c: &Claim| hidden_block(KIND_CLAIM, c);
        let ok = vec![
            view(
                1,
                "bot",
                claim_text(&claim("n1", ClaimState::Finished)),
                None,
            ),
            view(2, "bot", res("n1"), None),
        ];
        assert_eq!(accepted_results(&ok).unwrap().0, 2);
        // Copied from another request: its nonce names no claim here.
        let copied = vec![view(2, "member", res("n1"), None)];
        assert!(accepted_results(&copied).is_none());
        // A claim's nonce, but posted by someone else than the claim's author.
        let other = vec![
            view(1, "bot", claim_text(&claim("n1", ClaimState::Active)), None),
            view(2, "member", res("n1"), None),
        ];
        assert!(accepted_results(&other).is_none());
        // Under a withdrawn claim, or without a nonce (an older runner): not counted.
        let withdrawn = vec![
            view(
                1,
                "bot",
                claim_text(&claim("n1", ClaimState::Withdrawn)),
                None,
            ),
            view(2, "bot", res("n1"), None),
        ];
        assert!(accepted_results(&withdrawn).is_none());
        let mut r = results(1, 3);
        r.nonce = None;
        let bare = vec![
            view(1, "bot", claim_text(&claim("n1", ClaimState::Active)), None),
            view(2, "bot", results_comment(&r, None), None),
        ];
        assert!(accepted_results(&bare).is_none());
    }

    #[test]
    fn downsample_keeps_ends() {
        let pts: Vec<CurvePoint> = (0..1000).map(|s| (s, Some(s as f64), 0.0)).collect();
        let d = downsample(&pts, 10);
        assert!(d.len() <= 10);
        assert_eq!(d[0].0, 0);
        assert_eq!(d.last().unwrap().0, 999);
        assert_eq!(downsample(&pts[..3], 10).len(), 3);
        assert_eq!(round6(0.123456789), 0.123457);
        assert_eq!(human_secs(75.0), "1m 15s");
    }
}
