//! `simdnorm::fuzz::half`: the body (decoder and contract checks) lives in the library so that
//! `tests/fuzz_corpus.rs` replays the corpus on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| simdnorm::fuzz::half(data));
