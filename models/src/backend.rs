//! Which compute device a run asks for, parsed from `backend = "cpu" | "cuda" | "cuda:N"`.
use std::{fmt, str::FromStr};

/// The CPU backend used for `backend = "cpu"`: `ndarray` measured faster than `flex` for
/// training on this project's model shapes (see `docs/performance.md`, section Engine).
pub type CpuBackend = burn::backend::NdArray;

/// Name of [`CpuBackend`], for reports.
pub const CPU_BACKEND_NAME: &str = "ndarray";

/// The device a run was asked to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BackendChoice {
    Cpu,
    Cuda(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    #[error("unknown backend `{0}`: expected `cpu`, `cuda` or `cuda:N`")]
    Unknown(String),
    #[error(
        "backend `{0}` needs CUDA, but this binary was built without it; rebuild with `--features cuda`"
    )]
    CudaNotCompiled(String),
}

impl BackendChoice {
    /// True when this binary can run the choice.
    pub fn check_available(self) -> Result<(), BackendError> {
        match self {
            BackendChoice::Cpu => Ok(()),
            BackendChoice::Cuda(_) if cfg!(feature = "cuda") => Ok(()),
            BackendChoice::Cuda(_) => Err(BackendError::CudaNotCompiled(self.to_string())),
        }
    }
}

impl FromStr for BackendChoice {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "cpu" => Ok(BackendChoice::Cpu),
            "cuda" => Ok(BackendChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(BackendChoice::Cuda)
                .ok_or_else(|| BackendError::Unknown(other.to_string())),
        }
    }
}

impl TryFrom<String> for BackendChoice {
    type Error = BackendError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BackendChoice> for String {
    fn from(b: BackendChoice) -> String {
        b.to_string()
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendChoice::Cpu => f.write_str("cpu"),
            BackendChoice::Cuda(0) => f.write_str("cuda"),
            BackendChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!("cpu".parse(), Ok(BackendChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(BackendChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(BackendChoice::Cuda(3)));
        assert_eq!(BackendChoice::Cuda(3).to_string(), "cuda:3");
        assert!(matches!(
            "gpu".parse::<BackendChoice>(),
            Err(BackendError::Unknown(_))
        ));
        assert!(matches!(
            "cuda:x".parse::<BackendChoice>(),
            Err(BackendError::Unknown(_))
        ));
    }

    #[test]
    fn cuda_without_feature_is_a_clear_error() {
        let r = BackendChoice::Cuda(0).check_available();
        if cfg!(feature = "cuda") {
            assert!(r.is_ok());
        } else {
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains("--features cuda"), "{msg}");
        }
    }
}
