//! [`OnnxDevice`]: where ONNX Runtime runs a teacher — its CPU execution provider, or the CUDA
//! execution provider of an `onnxruntime-gpu` library on GPU `N`.

use ort::ep::{ExecutionProviderDispatch, CUDA};

use crate::error::{Error, Result};

/// Where an ONNX teacher runs (`[teacher] device` of a `kind = "onnx"` teacher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnnxDevice {
    /// ONNX Runtime's CPU execution provider (any onnxruntime library).
    #[default]
    Cpu,
    /// `CUDAExecutionProvider` on this GPU (needs onnxruntime-gpu).
    Cuda(usize),
}

impl OnnxDevice {
    /// Read a device name: `cpu`, `cuda` (GPU 0) or `cuda:N`. This does not need a crossdistill
    /// built with `--features cuda`: ONNX Runtime brings its own CUDA code.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(OnnxDevice::Cpu),
            "cuda" => Ok(OnnxDevice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(OnnxDevice::Cuda)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "unknown device `{other}`; expected cpu, cuda or cuda:N"
                    ))
                }),
        }
    }

    /// The execution providers to register, in order: none for the CPU (ONNX Runtime's
    /// default); the CUDA provider with its device id, set to fail the session rather than
    /// fall back to the CPU silently.
    pub(super) fn execution_providers(self) -> Vec<ExecutionProviderDispatch> {
        match self {
            OnnxDevice::Cpu => Vec::new(),
            OnnxDevice::Cuda(ordinal) => vec![CUDA::default()
                .with_device_id(i32::try_from(ordinal).unwrap_or(i32::MAX))
                .build()
                .error_on_failure()],
        }
    }

    /// The error for a CUDA provider ONNX Runtime could not register (a CPU-only
    /// onnxruntime, missing CUDA/cuDNN libraries, no such GPU).
    pub(super) fn registration_error(self, model: &str, cause: &ort::Error) -> Error {
        let ordinal = match self {
            OnnxDevice::Cuda(ordinal) => ordinal,
            OnnxDevice::Cpu => 0,
        };
        Error::model(
            model,
            format!(
                "ONNX Runtime could not run the teacher on cuda:{ordinal}: registering CUDAExecutionProvider failed: {cause}"
            ),
        )
        .with_hint(
            "the CUDA execution provider comes with the `onnxruntime-gpu` package (`pip install onnxruntime-gpu`, with the CUDA and cuDNN libraries it names): point ORT_DYLIB_PATH at its libonnxruntime.so; or run this teacher on the CPU (device = \"cpu\", --device cpu)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_others_are_refused() {
        assert_eq!(OnnxDevice::parse("cpu").unwrap(), OnnxDevice::Cpu);
        assert_eq!(OnnxDevice::parse("cuda").unwrap(), OnnxDevice::Cuda(0));
        assert_eq!(OnnxDevice::parse("cuda:3").unwrap(), OnnxDevice::Cuda(3));
        let error = OnnxDevice::parse("gpu").unwrap_err().to_string();
        assert!(error.contains("unknown device `gpu`"), "{error}");
        assert!(OnnxDevice::Cpu.execution_providers().is_empty());
        let providers = OnnxDevice::Cuda(1).execution_providers();
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].name(), "CUDAExecutionProvider");
    }
}
