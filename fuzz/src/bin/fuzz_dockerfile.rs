//! AFL++ entry of the `dockerfile` target (see `brig_fuzz::dockerfile`).

fn main() {
    afl::fuzz!(|data: &[u8]| brig_fuzz::dockerfile::run(data));
}
