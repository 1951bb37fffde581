#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mover::files::journal::fuzz::journal_load(data));
