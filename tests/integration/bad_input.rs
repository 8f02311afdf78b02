//! The bad-input corpus (tests/bad-input/, described in its cases.toml): malformed recipes,
//! unknown keys, wrong types, missing files, empty or malformed data, ragged lists, NaN/inf and
//! out-of-range labels, wrong models, an output directory that cannot be made, a full disk, a
//! diverging loss. Each case must fail with exit code 2 (1 for `recipe check`, its contract), one
//! `error: ` message with the expected fragments, and no panic; a failed write must leave an
//! existing run as it was. Also `train.on_nan = "skip"`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{fixture, stderr};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-input")
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "default_run")]
    run: Vec<String>,
    #[serde(default = "default_exit")]
    exit: i32,
    #[serde(default)]
    check: bool,
    expect: Vec<String>,
    fsize: Option<u64>,
    prepare: Option<String>,
}

fn default_run() -> Vec<String> {
    vec!["train".into(), "recipe.toml".into()]
}

fn default_exit() -> i32 {
    2
}

#[derive(Debug, serde::Deserialize)]
struct Cases {
    case: Vec<Case>,
}

fn student() -> String {
    fixture("tiny-bert-ce").display().to_string()
}

/// Copy `from` into `to`, putting the fixture path in for @STUDENT@ and fixture files in for
/// `NAME.fixture` files.
fn copy_case(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            copy_case(&path, &to.join(&name));
        } else if let Some(target) = name.strip_suffix(".fixture") {
            let source = std::fs::read_to_string(&path).unwrap();
            std::fs::copy(fixture(source.trim()), to.join(target)).unwrap();
        } else {
            let bytes = std::fs::read(&path).unwrap();
            let bytes = match std::str::from_utf8(&bytes) {
                Ok(text) => text.replace("@STUDENT@", &student()).into_bytes(),
                Err(_) => bytes,
            };
            std::fs::write(to.join(&name), bytes).unwrap();
        }
    }
}

/// Run the binary in `dir`; with `fsize`, under that file size limit with SIGXFSZ ignored (so a
/// write past it fails with EFBIG, like a write to a full disk).
fn run_in(dir: &Path, args: &[String], fsize: Option<u64>) -> Output {
    let binary = env!("CARGO_BIN_EXE_crossdistill");
    let mut command = match fsize {
        Some(bytes) => {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("trap '' XFSZ; exec prlimit --fsize={bytes} \"$@\""))
                .arg("sh")
                .arg(binary);
            command
        }
        None => Command::new(binary),
    };
    command
        .args(args)
        .current_dir(dir)
        .env("HF_HUB_OFFLINE", "1")
        // Only the error: progress lines would come before it.
        .env("CROSSDISTILL_LOG", "warn")
        .output()
        .expect("the crossdistill binary runs")
}

/// Every file under `dir` (relative path → bytes), except the lock file and the resolved recipe
/// (a run rewrites it with the recipe it runs, before anything can fail).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path
                .file_name()
                .is_some_and(|n| n != ".lock" && n != "recipe.resolved.toml")
            {
                let relative = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn assert_no_panic(case: &str, output: &Output) {
    for text in [
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    ] {
        assert!(
            !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
            "{case}: {text}"
        );
    }
}

#[test]
fn every_bad_input_gives_one_clear_error_and_exit_code_2() {
    let cases: Cases =
        toml::from_str(&std::fs::read_to_string(corpus().join("cases.toml")).unwrap()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut folders: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut listed: Vec<String> = cases.case.iter().map(|c| c.name.clone()).collect();
    listed.sort();
    assert_eq!(
        folders, listed,
        "every folder is a case in cases.toml and back"
    );

    for case in &cases.case {
        let dir = root.path().join(&case.name);
        copy_case(&corpus().join(&case.name), &dir);
        let before = match case.prepare.as_deref() {
            Some("trained-run") => {
                let trained = run_in(&dir, &default_run(), None);
                assert!(
                    trained.status.success(),
                    "{}: {}",
                    case.name,
                    stderr(&trained)
                );
                Some(snapshot(&dir.join("run")))
            }
            Some(other) => panic!("{}: unknown prepare {other:?}", case.name),
            None => None,
        };
        let args: Vec<String> = case
            .run
            .iter()
            .map(|a| a.replace("@STUDENT@", &student()))
            .collect();
        let output = run_in(&dir, &args, case.fsize);
        let message = stderr(&output);
        assert_no_panic(&case.name, &output);
        assert_eq!(
            output.status.code(),
            Some(case.exit),
            "{}: exit code; stderr: {message}",
            case.name
        );
        assert!(
            message.starts_with("error: ") && message.matches("error: ").count() == 1,
            "{}: one `error: ` message expected, found: {message}",
            case.name
        );
        for fragment in &case.expect {
            assert!(
                message.contains(fragment),
                "{}: `{fragment}` missing from: {message}",
                case.name
            );
        }
        if let Some(before) = before {
            let after = snapshot(&dir.join("run"));
            assert_eq!(
                before.keys().collect::<Vec<_>>(),
                after.keys().collect::<Vec<_>>(),
                "{}: the failed run changed which files the run directory holds",
                case.name
            );
            for (path, bytes) in &before {
                assert!(
                    after[path] == *bytes,
                    "{}: the failed run changed {}",
                    case.name,
                    path.display()
                );
            }
            // With room again, the same command goes on from the kept checkpoint.
            let again = run_in(&dir, &args, None);
            assert!(again.status.success(), "{}: {}", case.name, stderr(&again));
        }
        if case.fsize.is_some() {
            let leftovers: Vec<String> = std::fs::read_dir(dir.join("run"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".staging-") || n.contains(".tmp-"))
                .collect();
            assert!(leftovers.is_empty(), "{}: left {leftovers:?}", case.name);
        }
        if case.check {
            let checked = run_in(
                &dir,
                &["recipe".into(), "check".into(), "recipe.toml".into()],
                None,
            );
            assert_no_panic(&case.name, &checked);
            assert_eq!(
                checked.status.code(),
                Some(1),
                "{}: recipe check",
                case.name
            );
            let report = String::from_utf8_lossy(&checked.stdout);
            for fragment in &case.expect {
                let fragment = fragment.trim_start_matches("error: ");
                assert!(
                    report.contains(fragment),
                    "{}: recipe check lacks `{fragment}`: {report}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn on_nan_skip_skips_the_diverging_batches_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    copy_case(&corpus().join("diverging-loss"), dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_crossdistill"))
        .args(["train", "recipe.toml", "--set", "train.on_nan=\"skip\""])
        .current_dir(dir.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains(
            "step 3: non-finite loss or gradient (loss NaN), batch skipped (rows at lines"
        ),
        "{message}"
    );
    assert!(dir.path().join("run/final/model.safetensors").is_file());
    assert!(dir.path().join("run/final/README.md").is_file());
}
