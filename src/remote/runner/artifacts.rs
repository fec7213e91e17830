//! What a job keeps and hands back besides its results: the GPUs it holds (and its config
//! renumbered to them), the record of the attempt that lets a re-claimed request resume
//! from its checkpoint, and the weights asset (the exported weights and every metric point
//! in one tar, uploaded to the `labbook-runs` release).
use super::*;

/// "on GPUs 2,3 (CUDA_VISIBLE_DEVICES)" for the status comment of a job holding GPUs.
pub(super) fn held_gpus(gpus: &[usize]) -> Option<String> {
    if gpus.is_empty() {
        return None;
    }
    let list: Vec<String> = gpus.iter().map(ToString::to_string).collect();
    Some(format!(
        "on GPU{} {} (CUDA_VISIBLE_DEVICES)",
        if gpus.len() > 1 { "s" } else { "" },
        list.join(",")
    ))
}

/// The request's config for a job that sees only its own `n` GPUs (`CUDA_VISIBLE_DEVICES`
/// renumbers them from 0): a CUDA `train.backend` becomes `cuda:0` and `train.devices`
/// `["cuda:0", …, "cuda:{n−1}"]`. Edited as TOML, not parsed as a run config, so keys of a
/// newer labbook pass through untouched.
pub(super) fn renumbered(config: &str, n: usize) -> std::result::Result<String, String> {
    let mut root: toml::Table = config
        .parse()
        .map_err(|e| format!("the request's config is not TOML: {e}"))?;
    let Some(train) = root.get_mut("train").and_then(|t| t.as_table_mut()) else {
        return Ok(config.to_string());
    };
    if train
        .get("backend")
        .and_then(|b| b.as_str())
        .is_some_and(|b| b.starts_with("cuda"))
    {
        train.insert("backend".into(), "cuda:0".into());
    }
    if let Some(devices) = train.get("devices").and_then(|d| d.as_array()) {
        if devices.len() != n {
            return Err(format!(
                "train.devices lists {} devices, the job was given {n} GPUs",
                devices.len()
            ));
        }
        let ids = (0..n).map(|i| toml::Value::from(format!("cuda:{i}")));
        train.insert("devices".into(), toml::Value::Array(ids.collect()));
    }
    Ok(root.to_string())
}

/// The job directory's record of the request it was made for (commit and config).
pub(super) const ATTEMPT: &str = "attempt.json";

/// The run and step to continue from when `job` holds an earlier attempt at `req` (same
/// commit and config) whose run left a checkpoint; `None` otherwise (the directory is then
/// started afresh).
pub(super) fn resumable(job: &Path, req: &RunRequest) -> Option<(crate::model::RunId, u64)> {
    let marker: Value =
        serde_json::from_str(&std::fs::read_to_string(job.join(ATTEMPT)).ok()?).ok()?;
    if marker["commit"] != req.commit.as_str() || marker["config"] != req.config.as_str() {
        return None;
    }
    let db = job.join("tracker.db");
    let conn = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    let latest = crate::store::latest_run_in(&conn).ok()??;
    // A finished run has nothing to continue (a runner that died before posting its
    // results): start afresh rather than fail on `--resume`.
    if latest.status == RunStatus::Succeeded.to_string() {
        return None;
    }
    let run = crate::model::RunId(latest.id);
    let dir = crate::recorder::run_dir(&db, run);
    if !crate::recorder::has_checkpoint(&dir) {
        return None;
    }
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).ok()?).ok()?;
    Some((run, state["step"].as_u64()?))
}

/// The release every runner uploads its jobs' weights to.
pub(super) const RUNS_RELEASE: &str = "labbook-runs";

/// Uploads `path` as request `n`'s asset of the [`RUNS_RELEASE`] release (created when
/// missing), replacing an asset of the same name left by an earlier attempt.
pub(super) async fn upload_weights(
    client: &mut Client,
    repo: &str,
    n: u64,
    path: &Path,
) -> Result<crate::github::client::AssetRef> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (release, assets) = client
        .ensure_release(
            repo,
            RUNS_RELEASE,
            "Weights and full-resolution curves of remote runs, one asset per run request (uploaded by `labbook runner`; `labbook pull-model R-n` fetches them).",
        )
        .await?;
    let name = asset_name(n);
    for (_, id) in assets.iter().filter(|(a, _)| *a == name) {
        client.delete_asset(repo, *id).await?;
    }
    client
        .upload_asset(repo, (release, RUNS_RELEASE), &name, data)
        .await
}

/// The id (`R-n`) of the job notebook's run.
pub(super) fn run_of(db: &Path) -> Option<String> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    let run = crate::store::latest_run_in(&conn).ok()??;
    Some(crate::model::RunId(run.id).to_string())
}

/// The name of request `n`'s asset in the `labbook-runs` release.
pub(super) fn asset_name(n: u64) -> String {
    format!("request-{n}.tar")
}

/// Packs the job's results for upload: `request-N.tar` in the job folder, holding
/// `curves.json` (every metric point of the run, `{"v": 1, "curves": {key: [[step, value
/// or null, wall seconds], …]}}`) and, when the run left a checkpoint, `model.safetensors`
/// (written by `export`, the job's own `labbook export-model`). `None` when the job's
/// notebook has no run.
pub(super) fn pack_asset(
    job: &Path,
    n: u64,
    db: &Path,
    export: impl FnOnce(&Path) -> std::result::Result<(), String>,
) -> std::result::Result<Option<PathBuf>, String> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open the job's notebook: {e}"))?;
    let Some(run) = crate::store::latest_run_in(&conn).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let mut curves = serde_json::Map::new();
    for key in crate::store::metric_keys_in(&conn, run.id).map_err(|e| e.to_string())? {
        let points: Vec<Value> = crate::store::metric_points_in(&conn, run.id, &key)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(s, v, w)| json!([s, v.is_finite().then_some(v), w]))
            .collect();
        curves.insert(key, Value::Array(points));
    }
    drop(conn);
    let curves_file = job.join("curves.json");
    std::fs::write(
        &curves_file,
        json!({ "v": 1, "curves": curves }).to_string(),
    )
    .map_err(|e| format!("cannot write {}: {e}", curves_file.display()))?;
    let checkpoint = crate::recorder::run_dir(db, crate::model::RunId(run.id));
    let model = job.join("model.safetensors");
    let _ = std::fs::remove_file(&model);
    let with_model = crate::recorder::has_checkpoint(&checkpoint);
    if with_model {
        export(&model)?;
    }
    let tar_path = job.join(asset_name(n));
    let file = std::fs::File::create(&tar_path)
        .map_err(|e| format!("cannot create {}: {e}", tar_path.display()))?;
    let mut tar = tar::Builder::new(file);
    let mut add = |path: &Path, name: &str| {
        tar.append_path_with_name(path, name)
            .map_err(|e| format!("cannot pack {name}: {e}"))
    };
    add(&curves_file, "curves.json")?;
    if with_model {
        add(&model, "model.safetensors")?;
    }
    tar.finish()
        .map_err(|e| format!("cannot finish {}: {e}", tar_path.display()))?;
    Ok(Some(tar_path))
}
