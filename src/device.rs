//! `--device auto|cpu|cuda|cuda:N` parsing and selection.

use crate::{Error, Result};
use tch::Device;

/// Resolves a device flag. `auto` picks CUDA device 0 when libtorch sees one, else the CPU.
pub fn parse_device(flag: &str) -> Result<Device> {
    match flag {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => cuda(i),
            _ => Err(Error::Invalid(format!(
                "unknown device `{other}` (use auto, cpu, cuda or cuda:N)"
            ))),
        },
    }
}

fn cuda(i: usize) -> Result<Device> {
    let n = tch::Cuda::device_count() as usize;
    if i >= n {
        return Err(Error::Invalid(format!(
            "CUDA device {i} requested but libtorch sees {n} CUDA device(s)"
        )));
    }
    Ok(Device::Cuda(i))
}
