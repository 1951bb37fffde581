#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mover::fuzzing::sender_datagram(data));
