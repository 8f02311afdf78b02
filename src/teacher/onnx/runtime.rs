//! ONNX Runtime discovery: the shared library is loaded at run time (`ort`'s `load-dynamic`),
//! once per process, from `ORT_DYLIB_PATH`, else from an installed `onnxruntime` Python package
//! (`pip install onnxruntime==1.31.1`; see [`find_onnxruntime`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;

use crate::error::{Error, Result};

/// The oldest ONNX Runtime this build can use, as (major, minor): `ort` is built against
/// ONNX Runtime API 31 and refuses older libraries.
pub(crate) const ONNXRUNTIME_MIN_VERSION: (u32, u32) = (1, ort::MINOR_VERSION);

/// The onnxruntime release error messages tell users to install (the one the tests run on).
pub(crate) const ONNXRUNTIME_PIP_VERSION: &str = "1.31.1";

/// The environment variable that names the ONNX Runtime library file, as `ort` reads it.
pub(crate) const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

/// The process's ONNX Runtime environment and the library it came from, set by the first
/// successful [`runtime`]. A failed initialisation leaves it empty, so a later call
/// (after the user fixed `ORT_DYLIB_PATH`) tries again.
static RUNTIME: Mutex<Option<(Environment, PathBuf)>> = Mutex::new(None);

fn install_hint() -> String {
    format!(
        "pip install onnxruntime=={ONNXRUNTIME_PIP_VERSION} (into the python3 on PATH or a venv at ./.venv-ort), \
         or set {ORT_DYLIB_PATH} to its library file, .../site-packages/onnxruntime/capi/libonnxruntime.so.{ONNXRUNTIME_PIP_VERSION}"
    )
}

fn required_version() -> String {
    format!(
        "{}.{} or newer",
        ONNXRUNTIME_MIN_VERSION.0, ONNXRUNTIME_MIN_VERSION.1
    )
}

/// Load ONNX Runtime (once per process): its environment and the path of the library in use.
///
/// The library is [`find_onnxruntime`]'s answer. Errors name what was looked for and where,
/// the version found against the version needed, and the `pip install` that fixes it.
pub(crate) fn runtime() -> Result<(Environment, PathBuf)> {
    // A poisoned lock means a panic inside ort's loader; the slot itself is still consistent.
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((environment, path)) = slot.as_ref() {
        return Ok((environment.clone(), path.clone()));
    }
    let path = find_onnxruntime()?;
    let builder = ort::init_from(&path).map_err(load_error)?;
    let environment = builder
        .with_name("crossdistill")
        .with_telemetry(false)
        .build()
        .map_err(|e| {
            Error::invalid(format!(
                "ONNX Runtime from {} loaded, but its environment could not be created: {e}",
                path.display()
            ))
        })?;
    *slot = Some((environment.clone(), path.clone()));
    Ok((environment, path))
}

/// Turn `ort`'s library-loading failure into a message that says what to install.
fn load_error(error: ort::LoadDynamicError) -> Error {
    match error {
        ort::LoadDynamicError::BadVersion { version_str, path } => Error::invalid(format!(
            "the ONNX Runtime library {} is version {version_str}, but crossdistill needs onnxruntime {} \
             (it is built against ONNX Runtime API {})",
            path.display(),
            required_version(),
            ONNXRUNTIME_MIN_VERSION.1
        ))
        .with_hint(install_hint()),
        ort::LoadDynamicError::Dlopen { error, path } => Error::invalid(format!(
            "cannot load the ONNX Runtime library {}: {error}",
            path.display()
        ))
        .with_hint(install_hint()),
        ort::LoadDynamicError::MissingApi { path } => Error::invalid(format!(
            "{} is not an ONNX Runtime library (it does not export OrtGetApiBase)",
            path.display()
        ))
        .with_hint(install_hint()),
        ort::LoadDynamicError::InvalidVersionString => Error::invalid(
            "the ONNX Runtime library reported a malformed version string",
        )
        .with_hint(install_hint()),
    }
}

/// Where ONNX Runtime's shared library is: `ORT_DYLIB_PATH` when set (it must name an existing
/// file), else the newest `libonnxruntime` shipped by an `onnxruntime` Python package, looked
/// for in the venvs `$CROSSDISTILL_ORT_VENV`, `./.venv-ort` (what `scripts/ort-env` installs)
/// and `$VIRTUAL_ENV`, in `~/.local`, `/usr/local` and `/usr`, and where `python3` finds it.
pub(crate) fn find_onnxruntime() -> Result<PathBuf> {
    let from_env = std::env::var_os(ORT_DYLIB_PATH).filter(|v| !v.is_empty());
    if from_env.is_some() {
        return library_from_env(from_env);
    }
    let mut package_dirs = Vec::new();
    let mut looked = Vec::new();
    let venvs = [
        std::env::var_os("CROSSDISTILL_ORT_VENV").map(PathBuf::from),
        Some(PathBuf::from(".venv-ort")),
        std::env::var_os("VIRTUAL_ENV").map(PathBuf::from),
    ];
    let mut lib_dirs: Vec<PathBuf> = venvs.into_iter().flatten().map(|v| v.join("lib")).collect();
    if let Some(home) = std::env::var_os("HOME") {
        lib_dirs.push(PathBuf::from(home).join(".local/lib"));
    }
    lib_dirs.extend([PathBuf::from("/usr/local/lib"), PathBuf::from("/usr/lib")]);
    for lib in &lib_dirs {
        looked.push(format!("{}/python3*/{{site,dist}}-packages", lib.display()));
        package_dirs.extend(site_packages(lib).map(|d| d.join("onnxruntime")));
    }
    looked.push("the onnxruntime package of python3".to_string());
    if let Some(dir) = python_package_dir() {
        package_dirs.push(dir);
    }
    newest_library(&package_dirs).ok_or_else(|| {
        Error::invalid(format!(
            "the ONNX teacher needs the ONNX Runtime shared library (onnxruntime {}), but {ORT_DYLIB_PATH} is not set \
             and no onnxruntime Python package was found (looked in {})",
            required_version(),
            looked.join(", ")
        ))
        .with_hint(install_hint())
    })
}

fn library_from_env(value: Option<OsString>) -> Result<PathBuf> {
    let path = PathBuf::from(value.unwrap_or_default());
    if path.is_file() {
        return Ok(path);
    }
    let found = if path.is_dir() {
        "a directory"
    } else {
        "no such file"
    };
    Err(Error::invalid(format!(
        "{ORT_DYLIB_PATH} is {}, but that is {found}; the ONNX teacher needs the ONNX Runtime shared library \
         (onnxruntime {})",
        path.display(),
        required_version()
    ))
    .with_hint(format!(
        "point {ORT_DYLIB_PATH} at libonnxruntime.so.{ONNXRUNTIME_PIP_VERSION} (pip install onnxruntime=={ONNXRUNTIME_PIP_VERSION} \
         puts it in site-packages/onnxruntime/capi/), or unset it to use the installed onnxruntime Python package"
    )))
}

/// `DIR/python3*/site-packages` and `DIR/python3*/dist-packages` that exist, in name order.
fn site_packages(dir: &Path) -> impl Iterator<Item = PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut pythons: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path())
            .collect();
        pythons.sort();
        for python in pythons {
            for packages in ["site-packages", "dist-packages"] {
                let candidate = python.join(packages);
                if candidate.is_dir() {
                    found.push(candidate);
                }
            }
        }
    }
    found.into_iter()
}

/// The `onnxruntime` package directory `python3` would import, without importing it.
fn python_package_dir() -> Option<PathBuf> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('onnxruntime'); \
             print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let dir = text.trim();
    (output.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// The version in a library file name: `libonnxruntime.so.1.31.1` → `[1, 31, 1]`,
/// `libonnxruntime.1.31.1.dylib` → `[1, 31, 1]`; `None` for other files.
fn library_version(file_name: &str) -> Option<Vec<u32>> {
    let rest = file_name.strip_prefix("libonnxruntime.so.").or_else(|| {
        file_name
            .strip_prefix("libonnxruntime.")
            .and_then(|r| r.strip_suffix(".dylib"))
    })?;
    rest.split('.').map(|part| part.parse().ok()).collect()
}

/// The newest `libonnxruntime` in the `capi/` folders of `package_dirs` (first found on a tie).
fn newest_library(package_dirs: &[PathBuf]) -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for dir in package_dirs {
        let Ok(entries) = std::fs::read_dir(dir.join("capi")) else {
            continue;
        };
        let mut files: Vec<(Vec<u32>, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((library_version(&e.file_name().to_string_lossy())?, e.path())))
            .collect();
        files.sort();
        for (version, path) in files {
            if best.as_ref().is_none_or(|(b, _)| version > *b) {
                best = Some((version, path));
            }
        }
    }
    best.map(|(_, path)| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_versions_come_from_file_names() {
        assert_eq!(
            library_version("libonnxruntime.so.1.31.1"),
            Some(vec![1, 31, 1])
        );
        assert_eq!(
            library_version("libonnxruntime.1.20.0.dylib"),
            Some(vec![1, 20, 0])
        );
        assert_eq!(library_version("libonnxruntime_providers_shared.so"), None);
        assert_eq!(library_version("libonnxruntime.so"), None);
    }

    #[test]
    fn the_newest_library_wins_across_packages() {
        let root = tempfile::tempdir().unwrap();
        let make = |package: &str, files: &[&str]| {
            let capi = root.path().join(package).join("capi");
            std::fs::create_dir_all(&capi).unwrap();
            for file in files {
                std::fs::write(capi.join(file), b"").unwrap();
            }
            root.path().join(package)
        };
        let old = make(
            "old",
            &[
                "libonnxruntime.so.1.20.0",
                "libonnxruntime_providers_shared.so",
            ],
        );
        let new = make("new", &["libonnxruntime.so.1.31.1"]);
        let missing = root.path().join("missing");
        assert_eq!(
            newest_library(&[missing.clone(), old.clone(), new.clone()]),
            Some(new.join("capi/libonnxruntime.so.1.31.1"))
        );
        assert_eq!(
            newest_library(std::slice::from_ref(&old)),
            Some(old.join("capi/libonnxruntime.so.1.20.0"))
        );
        assert_eq!(newest_library(&[missing]), None);
    }

    #[test]
    fn site_packages_are_found_under_python_dirs() {
        let root = tempfile::tempdir().unwrap();
        let lib = root.path().join("lib");
        std::fs::create_dir_all(lib.join("python3.11/site-packages")).unwrap();
        std::fs::create_dir_all(lib.join("python3.12/dist-packages")).unwrap();
        std::fs::create_dir_all(lib.join("perl5")).unwrap();
        let found: Vec<PathBuf> = site_packages(&lib).collect();
        assert_eq!(
            found,
            vec![
                lib.join("python3.11/site-packages"),
                lib.join("python3.12/dist-packages")
            ]
        );
    }

    #[test]
    fn ort_dylib_path_must_name_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = library_from_env(Some(dir.path().join("nope.so").into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.so, but that is no such file"), "{err}");
        assert!(err.contains("pip install onnxruntime==1.31.1"), "{err}");
        let err = library_from_env(Some(dir.path().into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("but that is a directory"), "{err}");
        let file = dir.path().join("libonnxruntime.so.1.31.1");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(library_from_env(Some(file.clone().into())).unwrap(), file);
    }

    #[test]
    fn an_old_runtime_is_named_with_both_versions() {
        // The error ort reports when the library's minor version is below its API version.
        let err = load_error(ort::LoadDynamicError::BadVersion {
            version_str: "1.20.0".into(),
            path: PathBuf::from("/x/libonnxruntime.so.1.20.0"),
        })
        .to_string();
        assert!(
            err.contains("/x/libonnxruntime.so.1.20.0 is version 1.20.0, but crossdistill needs onnxruntime 1.31 or newer"),
            "{err}"
        );
        assert!(err.contains("pip install onnxruntime==1.31.1"), "{err}");
    }
}
