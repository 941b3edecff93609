// parallel.h: the extension's thread count and a chunked parallel_for over std::thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace egg {

// Threads used by the parallel entry points; 0 means "all hardware threads".
int num_threads();
void set_num_threads(int n);

// Chunks handed out per thread (see parallel_for).
inline constexpr std::size_t kChunksPerThread = 8;

// How many balanced parts a caller that splits its own work (by values rather than items) should
// make of `total` units, at least `min_per_part` each: kChunksPerThread per thread, or fewer.
inline std::size_t work_parts(std::size_t total, std::size_t min_per_part) {
  const std::size_t per_thread = static_cast<std::size_t>(std::max(1, num_threads()));
  return std::max<std::size_t>(
      1, std::min(per_thread * kChunksPerThread, total / std::max<std::size_t>(1, min_per_part)));
}

// Runs fn(begin, end) over [0, n) in contiguous chunks. Small jobs (fewer than min_per_thread
// items per extra thread) run inline: a thread start costs ~20-50 us.
//
// The chunks (kChunksPerThread per thread) are taken from a shared counter, not assigned one
// fixed range per thread: a thread slowed by work outside ours (OpenBLAS's idle threads spin for
// up to ~0.1 s after each GEMM, on a core one of ours needs) then takes fewer chunks instead of
// holding the whole call up. With one range per thread, a contraction right after the forward's
// GEMMs took 2.3x its time alone. Which thread runs a chunk never changes a value: every kernel
// writes its own outputs from its own inputs, the same bits for any partition.
//
// An exception thrown by fn on any thread (std::bad_alloc from a worker's scratch, say) is caught
// there, every started thread is joined, and the first one is rethrown on the calling thread, where
// pybind11 turns it into a Python error: an exception escaping a std::thread would call
// std::terminate and kill the interpreter. When a thread cannot be started, the calling thread
// takes its chunks.
template <class Fn>
void parallel_for(std::size_t n, std::size_t min_per_thread, Fn&& fn) {
  if (n == 0) return;
  std::size_t threads = static_cast<std::size_t>(std::max(1, num_threads()));
  threads = std::min(threads, std::max<std::size_t>(1, n / std::max<std::size_t>(1, min_per_thread)));
  if (threads <= 1) {
    fn(std::size_t{0}, n);
    return;
  }
  const std::size_t chunks = std::min(n, threads * kChunksPerThread);
  const std::size_t step = (n + chunks - 1) / chunks;
  std::atomic<std::size_t> next{0};
  std::vector<std::exception_ptr> errors(threads);
  auto work = [&fn, &errors, &next, n, step](std::size_t slot) {
    try {
      for (;;) {
        const std::size_t b = next.fetch_add(1, std::memory_order_relaxed) * step;
        if (b >= n) break;
        fn(b, std::min(n, b + step));
      }
    } catch (...) {
      errors[slot] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  try {
    pool.reserve(threads - 1);
    for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(work, t);
  } catch (...) {
    // No more threads (std::system_error) or no memory: the threads running take every chunk.
  }
  work(0);
  for (auto& th : pool) th.join();
  for (const auto& err : errors) {
    if (err) std::rethrow_exception(err);
  }
}

}  // namespace egg
