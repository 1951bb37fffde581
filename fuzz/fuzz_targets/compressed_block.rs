#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mover::fuzzing::compressed_block(data));
