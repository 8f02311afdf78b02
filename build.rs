//! With the `cuda` feature: build the fused AdamW kernels (`src/train/fused_adamw.cu`) to PTX with
//! the CUDA toolkit's nvcc, as candle-kernels builds candle's own (so both need the same toolkit,
//! and the same driver runs both). PTX for `compute_75`, the oldest architecture CUDA 13 supports:
//! the driver compiles it for the GPU at hand, so no `CUDA_COMPUTE_CAP` is needed for it. Without
//! the feature nothing is built.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/train/fused_adamw.cu");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = std::env::var_os("NVCC")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CUDA_HOME").map(|home| PathBuf::from(home).join("bin/nvcc")))
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let ptx = out.join("fused_adamw.ptx");
    let status = Command::new(&nvcc)
        .args(["--ptx", "--gpu-architecture=compute_75", "--fmad=false", "-o"])
        .arg(&ptx)
        .arg("src/train/fused_adamw.cu")
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "the `cuda` feature needs the CUDA toolkit's nvcc ({}): {e}; set CUDA_HOME or NVCC (scripts/cuda-check build installs one)",
                nvcc.display()
            )
        });
    assert!(
        status.success(),
        "nvcc could not build src/train/fused_adamw.cu ({status})"
    );
}
