// ReleaseGilIfHeld: lets a destructor that may block (joining a libzmesh thread, withdrawing a
// target) run without the GIL when Python dropped the last reference, and do nothing when the
// last reference went away on a C++ thread.
#pragma once

#include <Python.h>

namespace zmesh::python {

class ReleaseGilIfHeld {
 public:
  ReleaseGilIfHeld() {
    if (Py_IsInitialized() && PyGILState_Check()) state_ = PyEval_SaveThread();
  }
  ~ReleaseGilIfHeld() {
    if (state_ != nullptr) PyEval_RestoreThread(state_);
  }
  ReleaseGilIfHeld(const ReleaseGilIfHeld&) = delete;
  ReleaseGilIfHeld& operator=(const ReleaseGilIfHeld&) = delete;

 private:
  PyThreadState* state_ = nullptr;
};

}  // namespace zmesh::python
