//! Replays fuzz inputs given on the command line through `simdnorm::fuzz::<target>`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = &args[0];
    let body = simdnorm::fuzz::TARGETS
        .iter()
        .find(|(n, _)| n == target)
        .expect("target")
        .1;
    for f in &args[1..] {
        let data = std::fs::read(f).unwrap();
        let ok = std::panic::catch_unwind(|| body(&data)).is_ok();
        println!("{f}: {}", if ok { "ok" } else { "VIOLATION" });
    }
}
