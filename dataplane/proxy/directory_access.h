// DirectoryAccess: what the proxy's control thread asks of the directory side. Implemented by
// DirectoryLink; tests use a fake.
#pragma once

#include <cstdint>
#include <string>

#include "zmesh/directory/v1/types.pb.h"

namespace zmesh::proxy {

// What the control thread needs from the directory side (DirectoryLink; fakes in tests). Calls
// come from the control thread and must not block.
class DirectoryAccess {
 public:
  virtual ~DirectoryAccess() = default;
  // Queue a write; the outcome of Register comes back through ControlServer::PostRegistered.
  virtual void Register(const directory::v1::Registration& registration) = 0;
  virtual void Unregister(const directory::v1::Registration& registration) = 0;
  // A fresh lookup; the answer comes back through ControlServer::PostLookup(token, ...).
  virtual void Lookup(uint64_t token, const std::string& exchange, const std::string& topic) = 0;
  // The watch stream is up.
  virtual bool connected() const = 0;
};

}  // namespace zmesh::proxy
