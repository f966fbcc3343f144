#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cuma_fuzz::config_json(data));
