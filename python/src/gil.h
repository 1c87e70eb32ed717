// ReleaseGilIfHeld: lets a destructor that may block (joining a libzmesh thread, withdrawing a
// target) run without the GIL when Python dropped the last reference, and do nothing when the
// last reference went away on a C++ thread.
#pragma once

#include <Python.h>

#include <type_traits>

namespace zmesh::python {

class ReleaseGilIfHeld {
 public:
  ReleaseGilIfHeld() {
    // Not while the interpreter finalizes: taking the GIL back could then end this thread with
    // pthread_exit from inside a destructor (see WithoutGil), and nothing else needs it anyway.
    if (Py_IsInitialized() && !_Py_IsFinalizing() && PyGILState_Check()) {
      state_ = PyEval_SaveThread();
    }
  }
  ~ReleaseGilIfHeld() {
    if (state_ != nullptr) PyEval_RestoreThread(state_);
  }
  ReleaseGilIfHeld(const ReleaseGilIfHeld&) = delete;
  ReleaseGilIfHeld& operator=(const ReleaseGilIfHeld&) = delete;

 private:
  PyThreadState* state_ = nullptr;
};

// Runs f() without the GIL, for the binding's methods. Deliberately not a scoped guard like
// pybind11::gil_scoped_release: at interpreter exit, a daemon thread that takes the GIL back is
// ended with pthread_exit, whose forced unwinding aborts the process (std::terminate) when it
// starts in a destructor. Started here, it unwinds like an exception and pybind11 lets it pass.
template <typename F>
auto WithoutGil(F&& f) -> decltype(f()) {
  PyThreadState* state = PyEval_SaveThread();
  // Only f() is guarded: the forced unwinding of PyEval_RestoreThread must not be caught.
  auto guarded = [&]() -> decltype(f()) {
    try {
      return f();
    } catch (...) {
      // f() threw (bad_alloc): take the GIL back before pybind11 makes it a Python error.
      PyEval_RestoreThread(state);
      throw;
    }
  };
  if constexpr (std::is_void_v<decltype(f())>) {
    guarded();
    PyEval_RestoreThread(state);
  } else {
    auto result = guarded();
    PyEval_RestoreThread(state);
    return result;
  }
}

}  // namespace zmesh::python
