// array_cache.cpp: a NumPy memory handler (NEP 49) that keeps freed large array buffers for reuse.
//
// Every generation allocates and frees the same large arrays (noise factors, layer outputs,
// gradients, optimizer moments). glibc serves each with a fresh mmap (or trims its heap after
// the free), so every generation pays a page fault and the kernel's zeroing per 4 KiB. This
// handler keeps up to `limit` bytes of freed buffers of at least kMinBytes and hands one back
// to the next request of (about) the same size, pages already resident. It is installed only in
// the context (PyDataMem_SetHandler is per context variable) of eggroll_np's own calls; an array
// remembers its handler, so one made here is freed here wherever it dies. Small buffers and
// everything else go to malloc/free untouched. A fresh buffer of 2 MiB or more starts on a 2 MiB
// boundary and asks for transparent huge pages, as NumPy's own allocator does from 4 MiB up
// (without that, the rl generation's 4 MiB arrays ran on 4 KiB pages while pure inference's
// had 2 MiB ones).
#include <pybind11/pybind11.h>

#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL egg_array_cache_ARRAY_API
#include <numpy/arrayobject.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace py = pybind11;

namespace egg {
namespace {

// Below this, malloc's small bins serve the request; from here up glibc may mmap the block or
// hand back heap memory it trims after the free, and either costs page faults next time.
constexpr std::size_t kMinBytes = std::size_t{64} << 10;

struct Cache {
  std::mutex mu;
  std::unordered_map<void*, std::size_t> live;  // large buffers handed out -> capacity
  std::multimap<std::size_t, void*> idle;       // freed large buffers by capacity
  std::size_t idle_bytes = 0, limit = std::size_t{256} << 20;
  std::size_t hits = 0, misses = 0;
};

// A huge page, and the size from which a fresh buffer is aligned to one and advised to use them.
constexpr std::size_t kHugePage = std::size_t{2} << 20;

// A fresh large buffer from malloc's family (std::free releases it), not yet touched.
void* fresh(std::size_t size) {
#if defined(__linux__)
  if (size >= kHugePage) {
    void* p = nullptr;
    if (posix_memalign(&p, kHugePage, size) != 0) return nullptr;
    // Advice only: where THP is off or unavailable the buffer keeps 4 KiB pages.
    (void)madvise(p, size / kHugePage * kHugePage, MADV_HUGEPAGE);
    return p;
  }
#endif
  return std::malloc(size);
}

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: arrays may be freed during interpreter exit
  return *c;
}

// An idle buffer of capacity in [size, size + size / 8], registered as live; nullptr if none.
void* take(Cache& c, std::size_t size) {
  auto it = c.idle.lower_bound(size);
  if (it == c.idle.end() || it->first > size + size / 8) {
    ++c.misses;
    return nullptr;
  }
  void* p = it->second;
  c.live.emplace(p, it->first);
  c.idle_bytes -= it->first;
  c.idle.erase(it);
  ++c.hits;
  return p;
}

void* cache_malloc(void*, std::size_t size) {
  if (size < kMinBytes) return std::malloc(size);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (void* p = take(c, size)) return p;
  void* p = fresh(size);
  if (p != nullptr) c.live.emplace(p, size);
  return p;
}

void* cache_calloc(void*, std::size_t nelem, std::size_t elsize) {
  if (elsize != 0 && nelem > SIZE_MAX / elsize) return nullptr;
  const std::size_t size = nelem * elsize;
  if (size < kMinBytes) return std::calloc(nelem, elsize);
  Cache& c = cache();
  void* p;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    p = take(c, size);
    if (p == nullptr && size < kHugePage) {
      // A fresh calloc of this size is a lazily zeroed mapping: cheaper than memset.
      p = std::calloc(nelem, elsize);
      if (p != nullptr) c.live.emplace(p, size);
      return p;
    }
    if (p == nullptr) {
      p = fresh(size);
      if (p == nullptr) return nullptr;
      c.live.emplace(p, size);
    }
  }
  std::memset(p, 0, size);
  return p;
}

void* cache_realloc(void*, void* ptr, std::size_t size) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (ptr != nullptr) c.live.erase(ptr);  // a resized buffer is malloc's own again
  void* p = std::realloc(ptr, size);
  if (p != nullptr && size >= kMinBytes) c.live.emplace(p, size);
  return p;
}

void cache_free(void*, void* ptr, std::size_t) {
  if (ptr == nullptr) return;
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.live.find(ptr);
    if (it != c.live.end()) {
      const std::size_t cap = it->second;
      c.live.erase(it);
      if (c.idle_bytes + cap <= c.limit) {
        c.idle.emplace(cap, ptr);
        c.idle_bytes += cap;
        return;
      }
    }
  }
  std::free(ptr);
}

PyDataMem_Handler handler = {
    "eggroll_np_array_cache",
    1,
    {nullptr, cache_malloc, cache_calloc, cache_realloc, cache_free},
};

void release_idle(Cache& c) {
  for (auto& [cap, p] : c.idle) std::free(p);
  c.idle.clear();
  c.idle_bytes = 0;
}

py::object handler_capsule() {
  static PyObject* capsule = nullptr;
  if (capsule == nullptr) {
    if (PyArray_API == nullptr && _import_array() < 0) throw py::error_already_set();
    capsule = PyCapsule_New(&handler, "mem_handler", nullptr);
    if (capsule == nullptr) throw py::error_already_set();
  }
  return py::reinterpret_borrow<py::object>(capsule);
}

}  // namespace

void register_array_cache(py::module_& m) {
  m.def(
      "array_cache_enter",
      [] {
        py::object cap = handler_capsule();
        PyObject* old = PyDataMem_SetHandler(cap.ptr());
        if (old == nullptr) throw py::error_already_set();
        return py::reinterpret_steal<py::object>(old);
      },
      "Make NumPy allocate through the array cache in this context; returns the previous "
      "handler (pass it to array_cache_exit).");
  m.def(
      "array_cache_exit",
      [](const py::object& previous) {
        PyObject* cur = PyDataMem_SetHandler(previous.ptr());
        if (cur == nullptr) throw py::error_already_set();
        Py_DECREF(cur);
      },
      py::arg("previous"), "Put back the handler array_cache_enter returned.");
  m.def(
      "array_cache_configure",
      [](std::size_t limit) {
        Cache& c = cache();
        std::lock_guard<std::mutex> lock(c.mu);
        c.limit = limit;
        if (c.idle_bytes > limit) release_idle(c);
      },
      py::arg("limit"), "Most bytes of freed buffers the cache keeps (0: none).");
  m.def(
      "array_cache_release",
      [] {
        Cache& c = cache();
        std::lock_guard<std::mutex> lock(c.mu);
        release_idle(c);
      },
      "Return every idle buffer to malloc.");
  m.def(
      "array_cache_stats",
      [] {
        Cache& c = cache();
        std::lock_guard<std::mutex> lock(c.mu);
        py::dict d;
        d["hits"] = c.hits;
        d["misses"] = c.misses;
        d["idle_bytes"] = c.idle_bytes;
        d["idle_buffers"] = c.idle.size();
        d["live_buffers"] = c.live.size();
        d["limit"] = c.limit;
        d["min_bytes"] = kMinBytes;
        return d;
      },
      "Counters of the array cache: hits, misses, idle_bytes/buffers, live_buffers, limit.");
}

}  // namespace egg
