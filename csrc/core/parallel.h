// parallel.h: the extension's thread count and a static-partition parallel_for over std::thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <thread>
#include <vector>

namespace egg {

// Threads used by the parallel entry points; 0 means "all hardware threads".
int num_threads();
void set_num_threads(int n);

// Runs fn(begin, end) over [0, n) in contiguous ranges, one per thread. Small jobs (fewer than
// min_per_thread items per extra thread) run inline: a thread start costs ~20-50 us.
template <class Fn>
void parallel_for(std::size_t n, std::size_t min_per_thread, Fn&& fn) {
  if (n == 0) return;
  std::size_t threads = static_cast<std::size_t>(std::max(1, num_threads()));
  threads = std::min(threads, std::max<std::size_t>(1, n / std::max<std::size_t>(1, min_per_thread)));
  if (threads <= 1) {
    fn(std::size_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  const std::size_t step = (n + threads - 1) / threads;
  for (std::size_t t = 1; t < threads; ++t) {
    const std::size_t b = t * step, e = std::min(n, b + step);
    if (b < e) pool.emplace_back([&fn, b, e] { fn(b, e); });
  }
  fn(std::size_t{0}, std::min(n, step));
  for (auto& th : pool) th.join();
}

}  // namespace egg
