// gil.h: ReleaseGil, the bindings' GIL release around a kernel call, safe at interpreter exit.
#pragma once

#include <Python.h>

namespace egg {

// pybind11's gil_scoped_release takes the GIL back in a noexcept destructor. At exit CPython ends
// a daemon thread that asks for the GIL with pthread_exit, a forced unwind, and a forced unwind
// leaving a noexcept function is std::terminate: the process aborted ("terminate called without
// an active exception") whenever a daemon thread was inside the core at exit. This destructor
// lets the unwind through, and the thread ends quietly.
class ReleaseGil {
 public:
  ReleaseGil() : state_(PyEval_SaveThread()) {}
  ~ReleaseGil() noexcept(false) { PyEval_RestoreThread(state_); }
  ReleaseGil(const ReleaseGil&) = delete;
  ReleaseGil& operator=(const ReleaseGil&) = delete;

 private:
  PyThreadState* state_;
};

}  // namespace egg
