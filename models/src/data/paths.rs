//! Where a config's data paths lead: `~` and `$VAR` expansion, a file, a directory or a
//! glob, and the stamps (size, modification time) a run records for them.
use std::path::PathBuf;

use super::{DataError, Source, err};

/// A data file as found when a run was created: enough to tell later whether two runs
/// read the same data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    pub path: PathBuf,
    pub bytes: u64,
    pub modified: Option<std::time::SystemTime>,
}

/// The training and held-out files `src` names, with their sizes and modification times,
/// without opening or scanning them (cheap, for the run record).
pub fn stamps(src: Source) -> Result<(Vec<FileStamp>, Vec<FileStamp>), DataError> {
    let stamp = |files: Vec<PathBuf>| {
        files
            .into_iter()
            .map(|path| {
                let meta = std::fs::metadata(&path).ok();
                FileStamp {
                    bytes: meta.as_ref().map_or(0, |m| m.len()),
                    modified: meta.and_then(|m| m.modified().ok()),
                    path: std::path::absolute(&path).unwrap_or(path),
                }
            })
            .collect::<Vec<_>>()
    };
    let train = stamp(resolve(src.path, "task.path")?);
    let valid = match src.val_path {
        Some(p) => stamp(resolve(p, "task.val_path")?),
        None => Vec::new(),
    };
    Ok((train, valid))
}

/// `~` and `$VAR` / `${VAR}` expanded, then a file, a directory (its files, sorted) or a
/// glob (its matches, sorted). Relative paths are taken from the working directory.
pub(super) fn resolve(spec: &str, key: &str) -> Result<Vec<PathBuf>, DataError> {
    let expanded = expand(spec).map_err(|v| {
        DataError(format!(
            "{key} = \"{spec}\": the environment variable {v} is not set"
        ))
    })?;
    let path = PathBuf::from(&expanded);
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|e| DataError(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return err(format!(
                "{key}: the directory {} has no files",
                path.display()
            ));
        }
        return Ok(files);
    }
    if path.is_file() {
        return Ok(vec![path]);
    }
    if expanded.contains(['*', '?', '[']) {
        let mut files: Vec<PathBuf> = glob::glob(&expanded)
            .map_err(|e| DataError(format!("{key} = \"{spec}\": not a valid pattern: {e}")))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            return err(format!("{key} = \"{spec}\": no file matches"));
        }
        return Ok(files);
    }
    err(format!("{}: no such file ({key})", path.display()))
}

/// A path from a config with `~` and `$VAR` expanded (an unset variable is an error).
pub fn expand_path(spec: &str) -> Result<PathBuf, DataError> {
    expand(spec).map(PathBuf::from).map_err(|v| {
        DataError(format!(
            "\"{spec}\": the environment variable {v} is not set"
        ))
    })
}

/// Expands a leading `~` and `$VAR`/`${VAR}`; an unset variable is an error naming it.
fn expand(spec: &str) -> Result<String, String> {
    let mut s = spec.to_string();
    if (s == "~" || s.starts_with("~/"))
        && let Some(home) = std::env::var_os("HOME")
    {
        s = format!("{}{}", home.to_string_lossy(), &s[1..]);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(j) => (&braced[..j], &braced[j + 1..]),
                None => (braced, ""),
            }
        } else {
            let j = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..j], &after[j..])
        };
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(&std::env::var(name).map_err(|_| name.to_string())?);
        }
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_and_tilde_expand() {
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("LABBOOK_TEST_DATA_DIR", "/data") };
        assert_eq!(
            expand("$LABBOOK_TEST_DATA_DIR/owt/train.bin").unwrap(),
            "/data/owt/train.bin"
        );
        assert_eq!(expand("${LABBOOK_TEST_DATA_DIR}x").unwrap(), "/datax");
        assert_eq!(expand("cost$").unwrap(), "cost$");
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(
                expand("~/c.txt").unwrap(),
                format!("{}/c.txt", home.to_string_lossy())
            );
        }
    }
}
