//! `--device` values, parsed once for every binary: `auto`, `cpu`, `cuda` or `cuda:N`. Which
//! devices exist is the backend's to check (libtorch, or ONNX Runtime's CUDA provider).

/// A device as asked for on a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// The backend's best: CUDA device 0 when it sees one, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// A CUDA device by index.
    Cuda(u16),
}

impl std::str::FromStr for DeviceRequest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<u16>) {
                Some(Ok(i)) => Ok(Self::Cuda(i)),
                _ => Err(format!("unknown device `{other}` (use auto, cpu, cuda or cuda:N)")),
            },
        }
    }
}

impl std::fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceRequest;

    #[test]
    fn parses_every_spelling_and_refuses_the_rest() {
        assert_eq!("cuda".parse(), Ok(DeviceRequest::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceRequest::Cuda(3)));
        assert_eq!(" cpu ".parse(), Ok(DeviceRequest::Cpu));
        assert_eq!(
            "auto".parse::<DeviceRequest>().map(|d| d.to_string()),
            Ok("auto".into())
        );
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:99999999", ""] {
            assert!(bad.parse::<DeviceRequest>().is_err(), "{bad}");
        }
    }
}
