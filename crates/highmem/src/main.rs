fn main() {
    std::process::exit(highmem::cli::main());
}
