//! `products serve` (the default) and `products migrate`.

// glibc keeps freed blocks in per-thread arenas: argon2's 19 MiB buffers alone grew auth past
// 1 GiB after 600 logins. jemalloc's background thread hands freed memory back to the system.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    common::service::main::<products::Products>()
}
