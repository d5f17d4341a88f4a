//! Finding and loading the ONNX Runtime shared library (ort's `load-dynamic` feature).
//!
//! The library is not linked at build time; `scripts/fetch-onnxruntime.sh` puts the official
//! 1.32.0 build (from the sha256-pinned PyPI wheel) into `.onnxruntime/`. Lookup order:
//! 1. `ORT_DYLIB_PATH` if set and non-empty (an explicit setting is never silently replaced by
//!    another library: if it names a missing file that is an error);
//! 2. [`ORT_LIBRARY_FILE`] next to the running executable;
//! 3. `.onnxruntime/` + [`ORT_LIBRARY_FILE`] relative to the current directory, then to the
//!    crate's source folder (`CARGO_MANIFEST_DIR` at build time).
//!
//! Invariant: the library is loaded and the ort environment built at most once per process
//! ([`environment`]); a failed attempt leaves nothing behind and may be retried.

use super::RecognizeError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// File name of the ONNX Runtime library rekap is built and tested against.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.32.0";
/// Folder (relative to the repository root) where `scripts/fetch-onnxruntime.sh` puts it.
pub const ORT_LIBRARY_DIR: &str = ".onnxruntime";
/// Environment variable naming the library file explicitly.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// Where to look for the library, in order (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidates {
    /// `ORT_DYLIB_PATH` was set: only this file is acceptable.
    Explicit(PathBuf),
    /// Files to try in order; the first that exists wins.
    Search(Vec<PathBuf>),
}

/// The lookup list for this process (reads `ORT_DYLIB_PATH`, the executable's path and the
/// current directory).
pub fn default_candidates() -> Candidates {
    if let Some(p) = std::env::var_os(ORT_DYLIB_ENV).filter(|p| !p.is_empty()) {
        return Candidates::Explicit(PathBuf::from(p));
    }
    let mut list = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        list.push(dir.join(ORT_LIBRARY_FILE));
    }
    if let Ok(cwd) = std::env::current_dir() {
        list.push(cwd.join(ORT_LIBRARY_DIR).join(ORT_LIBRARY_FILE));
    }
    list.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(ORT_LIBRARY_DIR)
            .join(ORT_LIBRARY_FILE),
    );
    Candidates::Search(list)
}

/// The library file to load from `candidates`, or the error that says how to provision it.
/// Pure apart from checking whether files exist.
pub fn find_runtime(candidates: &Candidates) -> Result<PathBuf, RecognizeError> {
    match candidates {
        Candidates::Explicit(p) => {
            if p.is_file() {
                Ok(p.clone())
            } else {
                Err(RecognizeError::RuntimeEnvMissing { path: p.clone() })
            }
        }
        Candidates::Search(list) => list.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
            RecognizeError::RuntimeMissing {
                searched: list.clone(),
            }
        }),
    }
}

/// The process-wide ort environment, built on first use. Guarded by a mutex (not a OnceLock)
/// so that concurrent first calls cannot both try to build one (ort allows one per process).
static ENVIRONMENT: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);

/// Load ONNX Runtime (once per process, from [`default_candidates`]) and return the
/// environment sessions are built in.
pub fn environment() -> Result<ort::environment::Environment, RecognizeError> {
    let mut guard = ENVIRONMENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = guard.as_ref() {
        return Ok(env.clone());
    }
    let path = find_runtime(&default_candidates())?;
    // ort resolves relative paths against the executable's folder; give it an absolute one.
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let load_err = |message: String| RecognizeError::RuntimeLoad {
        path: path.clone(),
        message,
    };
    let env = ort::init_from(&path)
        .map_err(|e| load_err(e.to_string()))?
        .with_name("rekap")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    tracing::debug!(path = %path.display(), "loaded ONNX Runtime");
    *guard = Some(env.clone());
    Ok(env)
}

/// Load ONNX Runtime if needed and return the library path that is in use.
pub fn ensure_loaded() -> Result<PathBuf, RecognizeError> {
    environment()?;
    find_runtime(&default_candidates())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_error_says_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a").join(ORT_LIBRARY_FILE);
        let b = dir.path().join("b").join(ORT_LIBRARY_FILE);
        let err = find_runtime(&Candidates::Search(vec![a.clone(), b.clone()])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("scripts/fetch-onnxruntime.sh"), "{msg}");
        assert!(msg.contains("ORT_DYLIB_PATH"), "{msg}");
        assert!(msg.contains(&a.display().to_string()), "{msg}");
        assert!(msg.contains(&b.display().to_string()), "{msg}");
    }

    #[test]
    fn first_existing_candidate_wins() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("missing.so");
        let b = dir.path().join("b.so");
        let c = dir.path().join("c.so");
        std::fs::write(&b, b"").unwrap();
        std::fs::write(&c, b"").unwrap();
        let found = find_runtime(&Candidates::Search(vec![a, b.clone(), c])).unwrap();
        assert_eq!(found, b);
    }

    #[test]
    fn explicit_path_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.so");
        let msg = find_runtime(&Candidates::Explicit(p.clone()))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("ORT_DYLIB_PATH"), "{msg}");
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(find_runtime(&Candidates::Explicit(p.clone())).unwrap(), p);
    }
}
