// parallel.h: the extension's thread count and a static-partition parallel_for over std::thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace egg {

// Threads used by the parallel entry points; 0 means "all hardware threads".
int num_threads();
void set_num_threads(int n);

// Runs fn(begin, end) over [0, n) in contiguous ranges, one per thread. Small jobs (fewer than
// min_per_thread items per extra thread) run inline: a thread start costs ~20-50 us.
//
// An exception thrown by fn on any thread (std::bad_alloc from a worker's scratch, say) is caught
// there, every started thread is joined, and the first one is rethrown on the calling thread, where
// pybind11 turns it into a Python error: an exception escaping a std::thread would call
// std::terminate and kill the interpreter. When a thread cannot be started, its range runs on the
// calling thread instead.
template <class Fn>
void parallel_for(std::size_t n, std::size_t min_per_thread, Fn&& fn) {
  if (n == 0) return;
  std::size_t threads = static_cast<std::size_t>(std::max(1, num_threads()));
  threads = std::min(threads, std::max<std::size_t>(1, n / std::max<std::size_t>(1, min_per_thread)));
  if (threads <= 1) {
    fn(std::size_t{0}, n);
    return;
  }
  const std::size_t step = (n + threads - 1) / threads;
  std::vector<std::exception_ptr> errors(threads);
  auto guarded = [&fn, &errors](std::size_t slot, std::size_t b, std::size_t e) {
    try {
      fn(b, e);
    } catch (...) {
      errors[slot] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  std::size_t next = 1;  // first range no thread has taken
  try {
    pool.reserve(threads - 1);
    for (; next < threads; ++next) {
      const std::size_t b = next * step, e = std::min(n, b + step);
      if (b < e) pool.emplace_back(guarded, next, b, e);
    }
  } catch (...) {
    // No more threads (std::system_error) or no memory: the ranges left run on this thread.
  }
  for (std::size_t t = next; t < threads; ++t) {
    const std::size_t b = t * step, e = std::min(n, b + step);
    if (b < e) guarded(t, b, e);
  }
  guarded(0, std::size_t{0}, std::min(n, step));
  for (auto& th : pool) th.join();
  for (const auto& err : errors) {
    if (err) std::rethrow_exception(err);
  }
}

}  // namespace egg
