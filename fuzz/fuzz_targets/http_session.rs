#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailjournal::fuzzing::http_session(data));
