fn main() {
    brig_shim::run();
}
