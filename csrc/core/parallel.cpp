// parallel.cpp: the core's persistent thread pool and thread count (declared in parallel.h).
//
// Starting std::threads on every parallel_for cost 20-50 us a call; the pool's workers are started
// once and sleep on a condition variable between jobs, after a short spin (kSpin) that catches
// the next call of a multi-call operation without a wake-up. Sleeping matters: NumPy's BLAS runs
// between our calls and needs the cores.
//
// Process-wide rules:
// - One job at a time. A second thread calling while a job runs (two Python threads, the GIL
//   released) runs its job inline on its own thread instead of waiting: no deadlock, the same
//   bits (parallel_for's chunks do not depend on which thread runs them).
// - A call from inside a job (a worker, or the caller's own slot) runs inline.
// - fork: the child has none of the parent's workers. An atfork handler holds the job lock across
//   fork() (so no job is half-way) and gives the child a fresh, empty pool; the parent's is leaked
//   there, never touched (its threads do not exist in the child).
// - Exit: shutdown_pool (Python's atexit) joins the workers; later calls run inline.
#include "core/parallel.h"

#include <pthread.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace egg {

namespace {

// How long an idle worker (and a caller waiting for workers) spins before sleeping.
constexpr std::chrono::microseconds kSpin{20};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins up to kSpin until done() holds; true if it did.
template <class Done>
bool spin_until(Done done) {
  const auto end = std::chrono::steady_clock::now() + kSpin;
  for (unsigned i = 0;; ++i) {
    if (done()) return true;
    cpu_relax();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= end) return false;
  }
}

thread_local bool t_in_job = false;  // this thread runs a slot (workers: always)

class Pool {
 public:
  // Starts workers until there are `want` (fewer if the system refuses a thread); returns how
  // many there are. Called with the job lock held, so never during a job.
  std::size_t grow(std::size_t want) {
    while (threads_.size() < want) {
      try {
        // The generation now, not when the thread gets to run: the next job's increment may
        // come first, and a worker that read it as its starting point would never run that job.
        threads_.emplace_back(&Pool::loop, this, generation_.load(std::memory_order_relaxed));
      } catch (...) {  // std::system_error (no more threads) or bad_alloc: use those we have
        break;
      }
    }
    return threads_.size();
  }

  std::size_t size() const { return threads_.size(); }

  // Slot 0 on the caller, slots 1.. on the first workers to claim them. Once the caller's own
  // slot returns it closes the job: a slot no worker has claimed by then is never run (the
  // chunks are all taken), and the caller waits only for the slots that did start. Waiting for
  // every helper to wake, even with nothing left to do, made a small job wait for the
  // scheduler (190 us a call instead of 12-57 us with fresh threads, on a loaded machine).
  void run(std::size_t slots, detail::SlotFn fn, void* ctx) {
    const std::size_t helpers = slots - 1;
    {
      std::lock_guard<std::mutex> lock(m_);
      fn_ = fn;
      ctx_ = ctx;
      wanted_ = helpers;
      started_ = 0;
      closed_ = false;
      finished_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    if (helpers >= threads_.size()) {
      wake_.notify_all();
    } else {
      for (std::size_t i = 0; i < helpers; ++i) wake_.notify_one();
    }
    fn(ctx, 0);
    std::size_t started;
    {
      std::lock_guard<std::mutex> lock(m_);
      closed_ = true;
      started = started_;
    }
    const auto finished = [&] { return finished_.load(std::memory_order_acquire) == started; };
    if (!spin_until(finished)) {
      std::unique_lock<std::mutex> lock(m_);
      done_.wait(lock, finished);
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void loop(std::uint64_t seen) {
    t_in_job = true;  // a parallel_for inside a slot runs inline
    for (;;) {
      const auto changed = [&] { return generation_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(changed)) {
        std::unique_lock<std::mutex> lock(m_);
        wake_.wait(lock, changed);
      }
      detail::SlotFn fn;
      void* ctx;
      std::size_t slot = 0;
      {
        // Read the job, its generation and claim a slot together: a worker that slept through
        // one job may only wake for the next, and must take that one's fields.
        std::lock_guard<std::mutex> lock(m_);
        if (stop_) return;
        seen = generation_.load(std::memory_order_relaxed);
        if (!closed_ && started_ < wanted_) slot = ++started_;
        fn = fn_;
        ctx = ctx_;
      }
      if (slot == 0) continue;  // closed, or enough workers took part
      fn(ctx, slot);
      finished_.fetch_add(1, std::memory_order_acq_rel);
      std::lock_guard<std::mutex> lock(m_);
      // started_ is final once closed_: if this was the last slot, the caller may be asleep.
      if (closed_ && finished_.load(std::memory_order_relaxed) == started_) done_.notify_one();
    }
  }

  std::mutex m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::size_t> finished_{0};  // slots of this job that returned
  detail::SlotFn fn_ = nullptr;
  void* ctx_ = nullptr;
  std::size_t wanted_ = 0;   // helper slots of this job
  std::size_t started_ = 0;  // helper slots claimed so far
  bool closed_ = false;      // the caller's slot returned: no more claims
  bool stop_ = false;
};

std::mutex g_job;          // held by the thread whose job uses the pool; guards the fields below
Pool* g_pool = nullptr;    // created on the first parallel call; see the fork rule above
bool g_shut_down = false;  // shutdown_pool ran: everything inline from now on
std::once_flag g_atfork;

void before_fork() { g_job.lock(); }
void after_fork_parent() { g_job.unlock(); }
void after_fork_child() {
  g_pool = nullptr;  // the parent's workers are not in this process: leak their pool, start anew
  g_job.unlock();
}

std::atomic<int> g_threads{0};

int default_threads() {
  if (const char* env = std::getenv("EGGROLL_NUM_THREADS")) {
    const std::string value(env);
    if (!value.empty()) {
      // The whole value must be a positive integer: atoi would take "3abc" as 3 and "abc" as 0.
      char* end = nullptr;
      errno = 0;
      const long n = std::strtol(value.c_str(), &end, 10);
      if (end == value.c_str() || *end != '\0' || errno == ERANGE || n < 1 || n > 1 << 16 ||
          value.find_first_of(" \t\n+") != std::string::npos) {
        throw std::invalid_argument("EGGROLL_NUM_THREADS='" + value +
                                    "' is not a positive integer (threads of eggroll_np's C++ "
                                    "core); unset it for every hardware thread");
      }
      return static_cast<int>(n);
    }
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

}  // namespace

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = default_threads();  // throws on a bad EGGROLL_NUM_THREADS, at every use until set
    g_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) { g_threads.store(n > 0 ? n : 0); }

std::size_t pool_workers() {
  std::lock_guard<std::mutex> lock(g_job);
  return g_pool == nullptr ? 0 : g_pool->size();
}

void shutdown_pool() {
  std::lock_guard<std::mutex> lock(g_job);  // waits for a job in flight
  g_shut_down = true;
  if (g_pool != nullptr) {
    g_pool->stop();
    delete g_pool;
    g_pool = nullptr;
  }
}

namespace detail {

void run_slots(std::size_t slots, SlotFn fn, void* ctx) {
  if (slots <= 1 || t_in_job) {
    fn(ctx, 0);
    return;
  }
  std::unique_lock<std::mutex> lock(g_job, std::try_to_lock);
  if (!lock.owns_lock() || g_shut_down) {  // another thread's job holds the pool
    fn(ctx, 0);
    return;
  }
  std::call_once(g_atfork, [] { pthread_atfork(before_fork, after_fork_parent, after_fork_child); });
  if (g_pool == nullptr) g_pool = new Pool;
  const std::size_t workers = g_pool->grow(slots - 1);
  if (workers == 0) {  // the system refused every thread
    fn(ctx, 0);
    return;
  }
  t_in_job = true;
  g_pool->run(std::min(slots, workers + 1), fn, ctx);
  t_in_job = false;
}

}  // namespace detail

}  // namespace egg
