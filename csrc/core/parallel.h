// parallel.h: the core's thread count and parallel_for over its persistent pool (parallel.cpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <vector>

namespace egg {

// Threads the parallel entry points use. Until set_num_threads picks a count: EGGROLL_NUM_THREADS
// when set (a positive integer; anything else throws std::invalid_argument naming it, which
// pybind11 raises as ValueError), else every hardware thread.
int num_threads();
// n > 0: use n threads; n <= 0: back to the default above.
void set_num_threads(int n);
// Joins the pool's workers (registered with Python's atexit); later calls run on the caller.
void shutdown_pool();
// Workers the pool has started so far (they sleep when idle); 0 before the first parallel call.
std::size_t pool_workers();

namespace detail {
using SlotFn = void (*)(void* ctx, std::size_t slot) noexcept;
// Runs fn(ctx, s) for s in [0, slots) at the same time, s = 0 on the calling thread, the others on
// the pool's workers, and returns when all have. Some slots may not run at all: a call nested in
// a parallel region, a call while another thread's job holds the pool, or a call after
// shutdown_pool runs only slot 0, inline. So slot 0 alone must be able to do all the work
// (parallel_for's slots take chunks from one shared counter).
void run_slots(std::size_t slots, SlotFn fn, void* ctx);
}  // namespace detail

// Chunks handed out per thread (see parallel_for).
inline constexpr std::size_t kChunksPerThread = 8;

// How many balanced parts a caller that splits its own work (by values rather than items) should
// make of `total` units, at least `min_per_part` each: kChunksPerThread per thread, or fewer.
// Callers use parts only to balance independent outputs (copies, fills): the part count moves no
// value.
inline std::size_t work_parts(std::size_t total, std::size_t min_per_part) {
  const std::size_t per_thread = static_cast<std::size_t>(std::max(1, num_threads()));
  return std::max<std::size_t>(
      1, std::min(per_thread * kChunksPerThread, total / std::max<std::size_t>(1, min_per_part)));
}

// Runs fn(begin, end) over [0, n) in contiguous chunks on up to num_threads() threads of the
// pool. Small jobs (fewer than min_per_thread items per extra thread) run inline.
//
// The chunks (kChunksPerThread per thread) are taken from a shared counter, not assigned one
// fixed range per thread: a thread slowed by work outside ours (OpenBLAS's idle threads spin for
// up to ~0.1 s after each GEMM, on a core one of ours needs) then takes fewer chunks instead of
// holding the whole call up. With one range per thread, a contraction right after the forward's
// GEMMs took 2.3x its time alone. Which thread runs a chunk never changes a value: every kernel
// writes its own outputs from its own inputs, the same bits for any partition.
//
// An exception thrown by fn on any thread (std::bad_alloc from a worker's scratch, say) is caught
// there, and the first one is rethrown on the calling thread once every slot has returned, where
// pybind11 turns it into a Python error: an exception escaping a worker would call
// std::terminate and kill the interpreter.
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
  struct Job {
    Fn& fn;
    std::size_t n, step;
    std::atomic<std::size_t> next{0};
    std::vector<std::exception_ptr> errors;
  } job{fn, n, step, {}, std::vector<std::exception_ptr>(threads)};
  detail::run_slots(threads, [](void* ctx, std::size_t slot) noexcept {
    auto& j = *static_cast<Job*>(ctx);
    try {
      for (;;) {
        const std::size_t b = j.next.fetch_add(1, std::memory_order_relaxed) * j.step;
        if (b >= j.n) break;
        j.fn(b, std::min(j.n, b + j.step));
      }
    } catch (...) {
      j.errors[slot] = std::current_exception();
    }
  }, &job);
  for (const auto& err : job.errors) {
    if (err) std::rethrow_exception(err);
  }
}

}  // namespace egg
