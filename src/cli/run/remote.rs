//! `labbook run --remote` (with `--sweep` too): check every point, file one request per
//! point; `remote_from` is the same without printing, for the TUI's run picker.
use super::*;

/// `labbook run CONFIG --remote`: checks everything, then files the request (see
/// `labbook::remote::request_run`); nothing is written when it refuses. With `--sweep`,
/// every point is checked first, then one request is filed per point (all in one sweep,
/// under the same experiment): each point is then a job of its own on the runner, which
/// can run them side by side on separate GPUs, and a failed point does not hold up the rest.
fn file_remote(
    env: &Env,
    config_file: &std::path::Path,
    a: &Args,
    warn: Warn,
) -> Result<FiledRemote> {
    let gh = env.config.github.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "no [github] section in the config; `run --remote` files requests in `[github] repo = \"owner/name\"` (see docs/remote-runs.md)"
        )
    })?;
    let axes = parse_sweeps(&a.sweep)?;
    let points = if axes.is_empty() {
        vec![Vec::new()]
    } else {
        grid(&axes)
    };
    let mut cfgs = Vec::new();
    for point in points {
        let mut cfg = load_config_with(config_file, &a.sets, &point, warn)?;
        if let Some(b) = &a.backend {
            cfg.set("train.backend", b)?;
        }
        cfg.validate()?;
        check_gpus(&cfg, a.gpus)?;
        cfgs.push((point, cfg));
    }
    let token = labbook::github::Token::discover()?;
    let mut store = env.open()?;
    let sweep_id =
        (!axes.is_empty()).then(|| format!("S{}", chrono::Utc::now().format("%Y%m%d-%H%M%S%.3f")));
    let mut filed = Vec::new();
    for (point, cfg) in &cfgs {
        let request = labbook::remote::RemoteRequest {
            config: cfg,
            config_path: Some(config_file),
            experiment: a.experiment,
            workdir: std::env::current_dir()?,
            gpus: a.gpus,
            sweep: sweep_id.as_deref().map(|id| (id, point.as_slice())),
        };
        match labbook::remote::request_run(&mut store, &gh, &token, &request) {
            Ok((run, issue)) => filed.push((run, issue, point.clone())),
            Err(e) if filed.is_empty() => return Err(e.into()),
            Err(e) => {
                let done: Vec<String> = filed
                    .iter()
                    .map(|(r, i, _)| format!("{r} (#{i})"))
                    .collect();
                anyhow::bail!(
                    "{e}\n{} of {} requests were filed before this one: {}; the rest were not",
                    filed.len(),
                    cfgs.len(),
                    done.join(", ")
                );
            }
        }
    }
    Ok(FiledRemote {
        repo: gh.repo,
        sweep: sweep_id,
        kind: cfgs[0].1.train.device_kind(),
        runs: filed,
    })
}

/// A sweep point's settings, `(key, value)`.
type Point = Vec<(String, String)>;

/// What `run --remote` filed.
pub struct FiledRemote {
    pub repo: String,
    pub sweep: Option<String>,
    pub kind: labbook_models::BackendChoice,
    /// (run, request issue, sweep point).
    pub runs: Vec<(RunId, u64, Point)>,
}

/// `labbook run ARGS... --remote` without printing: the TUI's run picker. The same clap
/// `Args` parse `args`, so it accepts and refuses what the command line does.
pub fn remote_from(env: &Env, args: &[String], warn: Warn) -> Result<Vec<(RunId, u64)>> {
    let argv = std::iter::once("run")
        .chain(args.iter().map(String::as_str))
        .chain(["--remote"]);
    let line = RunLine::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!(crate::cli::usage_error_line(&e.to_string())))?;
    let config_file = line.args.config_file.clone().expect("clap requires CONFIG");
    let filed = file_remote(env, &config_file, &line.args, warn)?;
    Ok(filed.runs.into_iter().map(|(r, i, _)| (r, i)).collect())
}

pub(super) fn remote(env: &Env, config_file: &std::path::Path, a: &Args, warn: Warn) -> Result<()> {
    let FiledRemote {
        repo,
        sweep: sweep_id,
        kind,
        runs: filed,
    } = file_remote(env, config_file, a, warn)?;
    if env.json {
        let runs: Vec<serde_json::Value> = filed
            .iter()
            .map(|(run, issue, _)| serde_json::json!({ "run": run, "status": "queued-remote", "repo": repo, "issue": issue }))
            .collect();
        return crate::cli::output::json(&match (sweep_id, runs.as_slice()) {
            (None, [one]) => one.clone(),
            (sweep, _) => serde_json::json!({ "sweep": sweep, "runs": runs }),
        });
    }
    for (run, issue, point) in &filed {
        println!("{run}");
        let at: Vec<String> = point.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!(
            "{run}: queued-remote as request #{issue} in {} (backend {}{}); `labbook sync` brings the results back",
            repo,
            kind,
            if at.is_empty() {
                String::new()
            } else {
                format!(", {}", at.join(" "))
            }
        );
    }
    Ok(())
}

/// `--gpus N` fits the run: a CUDA backend, and as many as the config's `devices`.
fn check_gpus(cfg: &RunConfig, gpus: Option<u32>) -> Result<()> {
    let Some(n) = gpus else {
        return Ok(());
    };
    let t = &cfg.train;
    if t.device_kind() == labbook_models::BackendChoice::Cpu {
        anyhow::bail!("--gpus {n}: this run's backend is cpu; add `--backend cuda`");
    }
    if !t.devices.is_empty() && t.devices.len() != n as usize {
        anyhow::bail!(
            "--gpus {n}, but the config's train.devices lists {} devices",
            t.devices.len()
        );
    }
    Ok(())
}
