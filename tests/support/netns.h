// Network namespaces for multi-host tests: `ip` from iproute2, namespaces that clean up after
// themselves, and entering a namespace. Tests that use them need root (CAP_SYS_ADMIN,
// CAP_NET_ADMIN); every address they create lives only inside namespaces the test made.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace zmesh::testing {

// Path of the `ip` binary.
std::string IpPath();

// Runs `ip args...`; an error with its output when it fails.
[[nodiscard]] absl::Status Ip(const std::vector<std::string>& args);

// Deletes namespaces named "<prefix><pid>-..." whose creator (pid) no longer exists: leftovers of
// earlier runs that died before cleaning up.
void RemoveLeftoverNamespaces(absl::string_view prefix);

// Network namespaces created by this process; deleted by the destructor, in reverse order.
class Namespaces {
 public:
  Namespaces() = default;
  Namespaces(const Namespaces&) = delete;
  Namespaces& operator=(const Namespaces&) = delete;
  ~Namespaces();
  // Creates the namespace (replacing a leftover of the same name) with its loopback up.
  [[nodiscard]] absl::Status Add(const std::string& name);

 private:
  std::vector<std::string> names_;
};

// Creates bridge `bridge` (up) inside the existing namespace `bridge_ns`.
[[nodiscard]] absl::Status AddBridge(const std::string& bridge_ns, const std::string& bridge);

// Connects the existing namespace `host_ns` to the bridge: a veth pair with `veth` on the bridge
// side (in bridge_ns, enslaved to `bridge`) and "eth0" inside host_ns carrying `cidr_address`
// (e.g. "10.213.1.2/24"), both up. Cutting the host off later: `ip -n bridge_ns link set veth
// nomaster`; healing: `... master bridge`.
[[nodiscard]] absl::Status AttachHost(const std::string& bridge_ns, const std::string& bridge,
                                      const std::string& host_ns, const std::string& veth,
                                      const std::string& cidr_address);

// Moves the calling thread (and the threads it starts later) into the named namespace. Call it
// before any library starts threads (gRPC, ZeroMQ): threads started earlier stay where they
// were. `original_fd`, when not null, receives an fd of the namespace left (for
// ReturnToNamespace).
[[nodiscard]] absl::Status EnterNamespace(const std::string& name, int* original_fd);
// Returns to the namespace of `fd` and closes it.
void ReturnToNamespace(int fd);

// A bridge namespace shared by the tests of one binary: "<prefix><pid>-br" holding bridge "br0",
// which the test process moves into (so it reaches every host attached to the bridge). Create it
// once per binary, in SetUpTestSuite, before any library starts threads (see EnterNamespace).
class BridgeLab {
 public:
  static constexpr char kBridge[] = "br0";

  // Removes leftovers of earlier runs with the same prefix, creates the namespace and the
  // bridge, and enters the namespace.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BridgeLab>> Create(const std::string& prefix);
  BridgeLab(const BridgeLab&) = delete;
  BridgeLab& operator=(const BridgeLab&) = delete;
  // Returns to the original namespace, then deletes the bridge namespace.
  ~BridgeLab();

  const std::string& ns() const { return ns_; }
  // Cuts the host whose bridge-side veth is `veth` off the bridge, or attaches it again.
  [[nodiscard]] absl::Status Detach(const std::string& veth) const;
  [[nodiscard]] absl::Status Reattach(const std::string& veth) const;

 private:
  BridgeLab() = default;
  Namespaces namespaces_;
  std::string ns_;
  int original_netns_fd_ = -1;
};

}  // namespace zmesh::testing
