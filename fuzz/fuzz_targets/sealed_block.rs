#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mover::fuzzing::sealed_block(data));
