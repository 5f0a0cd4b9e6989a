//! AFL++ entry of the `expand` target (see `brig_fuzz::expand`).

fn main() {
    afl::fuzz!(|data: &[u8]| brig_fuzz::expand::run(data));
}
