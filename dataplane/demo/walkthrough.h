// The walkthrough of zmesh-demo: services on three nodes and a client that sends every kind of
// message, explained as it goes, each step checked.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace zmesh::client {
class DirectoryClient;
}  // namespace zmesh::client

namespace zmesh::demo {

// Prints the walkthrough for people and counts the checks that failed. Thread-compatible (the
// walkthrough prints from one thread).
class Reporter {
 public:
  explicit Reporter(std::ostream& out) : out_(out) {}

  // "== title" and an explanation, each line of it indented.
  void Step(absl::string_view title, absl::string_view explanation = "");
  // One indented line.
  void Say(absl::string_view line);
  // "[ok] what" or "[FAILED] what (detail)"; returns `ok`.
  bool Check(bool ok, absl::string_view what, absl::string_view detail = "");

  int checks() const { return checks_; }
  int failures() const { return failures_; }

 private:
  std::ostream& out_;
  int step_ = 0;
  int checks_ = 0;
  int failures_ = 0;
};

// A node of the demo: its name and the IPC directory of its running zmesh-proxy.
struct DemoNode {
  std::string name;
  std::string ipc_dir;
};

// Runs the walkthrough against running proxies (exactly three nodes) and the directory they use
// (for draining a node). Everything it starts (transports, servers, listeners) is stopped before
// it returns. An error status only when the services could not be set up; failed checks are
// counted in `reporter`.
[[nodiscard]] absl::Status RunWalkthrough(const std::vector<DemoNode>& nodes,
                                          client::DirectoryClient& directory, Reporter& reporter);

}  // namespace zmesh::demo
