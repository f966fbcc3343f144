//! `--device auto|cpu|cuda|cuda:N` parsing and selection.

use crate::{Error, Result};
use cuma_model::device::DeviceRequest;
use tch::Device;

/// Resolves a device flag (parsed by [`DeviceRequest`], shared with `cuma-run`). `auto` picks
/// CUDA device 0 when libtorch sees one, else the CPU.
pub fn parse_device(flag: &str) -> Result<Device> {
    match flag.parse::<DeviceRequest>().map_err(Error::Invalid)? {
        DeviceRequest::Auto => Ok(Device::cuda_if_available()),
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Cuda(i) => cuda(usize::from(i)),
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

/// `device` as `--device` spells it (`cpu`, `cuda:N`), the inverse of [`parse_device`].
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Cpu => "cpu".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}
