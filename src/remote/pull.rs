//! `labbook pull-model R-n`: a remote run's weights and full-resolution curves, from the
//! release asset the runner uploaded (named in its accepted results comment), into
//! `runs/R-n/`; the curves replace the downsampled ones `sync` imported.
//!
//! The asset comes from GitHub and is checked like any untrusted input: it is found only
//! through results that pass [`accepted_results`] (the winning claim's runner), it is at most
//! [`MAX_ASSET`] bytes, and the tar may hold `model.safetensors` and `curves.json` only, as
//! plain files (no paths, no links).
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::protocol::accepted_results;
use super::request::{list_comments, remote_ref};
use crate::config::GithubConfig;
use crate::error::{Error, Result};
use crate::github::Token;
use crate::github::client::{Client, runtime};
use crate::model::RunId;
use crate::store::{MetricPoint, Store};

/// Largest asset downloaded (the weights of a large model fit; a runaway file does not).
pub const MAX_ASSET: u64 = 8 << 30;

/// What [`pull_model`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pulled {
    pub run: RunId,
    /// `runs/R-n/model.safetensors`, when the run left weights.
    pub model: Option<PathBuf>,
    /// Metric curves imported and their points.
    pub curves: usize,
    pub points: usize,
    /// The asset's size in bytes.
    pub bytes: u64,
}

/// Downloads run `run`'s weights asset into `dir` and replaces its curves in the notebook
/// with the asset's full-resolution ones (one transaction). Nothing is written when the
/// asset is missing, too large or malformed.
pub fn pull_model(
    store: &mut Store,
    gh: &GithubConfig,
    token: &Token,
    run: RunId,
    dir: &Path,
) -> Result<Pulled> {
    store.get_run(run)?;
    let remote = remote_ref(store, run)
        .ok_or_else(|| Error::Invalid(format!("{run} was not run remotely; nothing to pull")))?;
    let issue = remote.issue.ok_or_else(|| {
        Error::Invalid(format!(
            "{run}'s request never reached GitHub; nothing to pull"
        ))
    })?;
    let rt = runtime()?;
    let (bytes, size) = rt.block_on(async {
        let mut client = Client::new(gh, token)?;
        let listed = list_comments(&mut client, &remote.repo, issue, None, &gh.runners).await?;
        let (_, results) = accepted_results(&listed.comments).ok_or_else(|| {
            Error::Invalid(format!(
                "{run}: request #{issue} has no results yet; `labbook sync` says when it finishes"
            ))
        })?;
        let weights = results.weights.ok_or_else(|| {
            Error::Invalid(match results.weights_error {
                Some(e) => format!(
                    "{run}: the runner could not upload its weights ({e}); they are in its jobs/issue-{issue} folder"
                ),
                None => format!(
                    "{run}: the results of #{issue} name no weights (a runner older than weight uploads, or a run without a checkpoint)"
                ),
            })
        })?;
        let bytes = client
            .download_asset(&remote.repo, weights.id, MAX_ASSET)
            .await?;
        Ok::<_, Error>((bytes, weights.size))
    })?;
    if bytes.len() as u64 != size {
        return Err(Error::Invalid(format!(
            "{run}: the asset has {} bytes, its results say {size}; not used",
            bytes.len()
        )));
    }
    let (model, curves) = unpack(&bytes)?;
    let curves: Value = serde_json::from_slice(&curves)
        .map_err(|e| Error::Invalid(format!("{run}: the asset's curves.json: {e}")))?;
    let points = curve_points(&curves)
        .map_err(|e| Error::Invalid(format!("{run}: the asset's curves.json: {e}")))?;
    let keys: std::collections::BTreeSet<&str> = points.iter().map(|p| p.key.as_str()).collect();
    let n_keys = keys.len();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let model_path = match model {
        Some(m) => {
            let path = dir.join("model.safetensors");
            std::fs::write(&path, m).map_err(|e| Error::io(&path, e))?;
            Some(path)
        }
        None => None,
    };
    store.replace_curves(run, &points)?;
    Ok(Pulled {
        run,
        model: model_path,
        curves: n_keys,
        points: points.len(),
        bytes: size,
    })
}

/// The tar's `model.safetensors` (optional) and `curves.json`; anything else is refused.
fn unpack(bytes: &[u8]) -> Result<(Option<Vec<u8>>, Vec<u8>)> {
    let bad = |why: String| Error::Invalid(format!("the weights asset: {why}"));
    let mut archive = tar::Archive::new(bytes);
    let (mut model, mut curves) = (None, None);
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        if !entry.header().entry_type().is_file() {
            return Err(bad("holds something other than plain files".into()));
        }
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let slot = match name.as_str() {
            "model.safetensors" => &mut model,
            "curves.json" => &mut curves,
            other => {
                return Err(bad(format!(
                    "unexpected file {:?}",
                    crate::sanitize::untrusted_line(other)
                )));
            }
        };
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| bad(e.to_string()))?;
        *slot = Some(data);
    }
    let curves = curves.ok_or_else(|| bad("has no curves.json".into()))?;
    Ok((model, curves))
}

/// `{"v": 1, "curves": {key: [[step, value or null, wall], …]}}` as metric points (null
/// values, which were not finite, are left out).
fn curve_points(v: &Value) -> std::result::Result<Vec<MetricPoint>, String> {
    if v["v"].as_u64() != Some(1) {
        return Err("unknown format version".into());
    }
    let curves = v["curves"].as_object().ok_or("no curves")?;
    let mut out = Vec::new();
    for (key, points) in curves {
        let key = crate::sanitize::untrusted_line(key);
        for p in points
            .as_array()
            .ok_or_else(|| format!("{key}: not a list"))?
        {
            let step = p[0]
                .as_i64()
                .ok_or_else(|| format!("{key}: a point without a step"))?;
            let Some(value) = p[1].as_f64() else {
                continue;
            };
            out.push(MetricPoint {
                step,
                key: key.clone(),
                value,
                wall_time: p[2].as_f64().unwrap_or(0.0),
            });
        }
    }
    Ok(out)
}
