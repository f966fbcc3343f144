#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cuma_fuzz::onnx_external_data(data));
